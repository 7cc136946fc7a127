//! An in-process pipe: a bounded channel of byte buffers seen as `Write` on one side and
//! `Read` on the other.
//!
//! Owns handing a byte stream from one thread to another with bounded memory (the channel's
//! capacity times 1 MiB), so a stream read from the repository can feed a parser, or one
//! stream feed a second reader (the dump's row counter). Must not know what the bytes are.

use std::io::{Read, Write};

/// Sends what is written as owned buffers down a channel (the writer half of a pipe between
/// the repository reader and the archive parser).
pub struct ChannelWriter(pub crossbeam_channel::Sender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // At most 1 MiB per message: the channel's capacity then bounds its memory.
        let n = buf.len().min(1 << 20);
        self.0
            .send(buf[..n].to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "restore stopped"))?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads what a [`ChannelWriter`] sent; optionally records it (the archive's TOC prefix).
pub struct ChannelReader {
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    /// Everything read so far, when recording was asked for.
    pub record: Option<Vec<u8>>,
}

impl ChannelReader {
    /// Reads from `rx`; `record`: keep a copy of everything read (in `record`).
    pub fn new(rx: crossbeam_channel::Receiver<Vec<u8>>, record: bool) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            record: record.then(Vec::new),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        if let Some(r) = &mut self.record {
            r.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

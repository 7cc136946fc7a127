//! Writing a restored file past the page cache (`O_DIRECT`), in order, from any writes.
//!
//! Owns the alignment `O_DIRECT` asks for (buffer address, file offset and length in whole
//! blocks) and the fall-back to ordinary writes wherever the filesystem refuses it (tmpfs,
//! some FUSE and network filesystems) or for a file's last partial block. Must not decide
//! which files are written this way (that is [`super::tree`]: files streamed in order) nor
//! sync anything: the caller syncs the file as it would any other.
//!
//! Why: a buffered restore copies every byte into freshly allocated page-cache pages, then
//! writes them back at `fsync`. On the 2-core VMs this project runs on, that copy cost 1.5 to
//! 4 s of system time per GB, depending on how recently the guest had last touched the
//! memory it got (a plain `dd` of 1 GB with `fdatasync`: 0.7 to 3.6 s; with `O_DIRECT`: 0.7 s
//! every time). Written directly, a restore costs the same each time, leaves the host's page
//! cache to the database, and its `fsync` has no dirty pages to wait for. PostgreSQL reads
//! the restored files from disk when it starts, as it would after any restart.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

/// The alignment asked of addresses, offsets and lengths: the largest logical block size
/// in use (4 KiB disks; 512-byte ones accept it too).
const ALIGN: usize = 4096;
/// Bytes gathered before each direct write.
const CAPACITY: usize = 4 << 20;

/// A file written from its start, in order, through an aligned buffer with `O_DIRECT` when
/// the filesystem allows it, else as ordinary writes.
pub struct DirectFile {
    file: File,
    /// `CAPACITY + ALIGN` bytes; the aligned window starts at `start`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes in the window.
    len: usize,
    /// Where the window goes in the file.
    at: u64,
    direct: bool,
}

impl DirectFile {
    /// Writes to `file` (opened for writing, empty or sized in advance) from offset 0.
    pub fn new(file: File) -> Self {
        let direct = set_direct(&file, true);
        let buf = if direct {
            vec![0u8; CAPACITY + ALIGN]
        } else {
            Vec::new()
        };
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        DirectFile {
            file,
            buf,
            start,
            len: 0,
            at: 0,
            direct,
        }
    }

    /// Writes what is buffered (the last partial block as an ordinary write) and hands
    /// the file back, to be synced.
    pub fn finish(mut self) -> std::io::Result<File> {
        if self.direct {
            let whole = self.len - self.len % ALIGN;
            self.write_window(whole)?;
            if self.len > 0 {
                set_direct(&self.file, false);
                self.direct = false;
                let tail = &self.buf[self.start..self.start + self.len];
                self.file.write_all_at(tail, self.at)?;
            }
        }
        Ok(self.file)
    }

    /// Writes the window's first `n` bytes (whole blocks) at its place, and moves what
    /// follows them to the window's start.
    fn write_window(&mut self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let window = &self.buf[self.start..self.start + n];
        match self.file.write_all_at(window, self.at) {
            Ok(()) => {}
            // Refused at write time (some filesystems accept the flag but not the write):
            // the same bytes as an ordinary write, and ordinary writes from now on.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                set_direct(&self.file, false);
                self.file.write_all_at(window, self.at)?;
            }
            Err(e) => return Err(e),
        }
        self.at += n as u64;
        self.buf
            .copy_within(self.start + n..self.start + self.len, self.start);
        self.len -= n;
        Ok(())
    }
}

impl Write for DirectFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if !self.direct {
            let n = self.file.write_at(data, self.at)?;
            self.at += n as u64;
            return Ok(n);
        }
        let n = data.len().min(CAPACITY - self.len);
        let from = self.start + self.len;
        self.buf[from..from + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == CAPACITY {
            self.write_window(CAPACITY)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Turns `O_DIRECT` on or off for `file`; whether it is now as asked.
fn set_direct(file: &File, on: bool) -> bool {
    use rustix::fs::OFlags;
    let Ok(flags) = rustix::fs::fcntl_getfl(file) else {
        return false;
    };
    let wanted = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, wanted).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(sizes: &[usize], total: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 4096) as u8).collect();
        let file = File::create(&path).unwrap();
        file.set_len(total as u64).unwrap();
        let mut out = DirectFile::new(file);
        let mut at = 0;
        for &s in sizes.iter().cycle() {
            if at == total {
                break;
            }
            let n = s.min(total - at);
            out.write_all(&data[at..at + n]).unwrap();
            at += n;
        }
        out.finish().unwrap().sync_data().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "the file differs from what was written");
        back
    }

    #[test]
    fn writes_of_any_size_land_in_order_with_a_partial_last_block() {
        // Uneven writes across several windows, a file not a whole number of blocks.
        written(
            &[1, 8192, 5000, 3 << 20, 12 << 20],
            CAPACITY * 3 + 8192 * 5 + 123,
        );
        // Exactly whole windows; a file shorter than a block; an empty file.
        written(&[12 << 20], CAPACITY * 2);
        written(&[100], 777);
        written(&[100], 0);
    }

    #[test]
    fn the_direct_flag_is_off_once_finished() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut out = DirectFile::new(file);
        out.write_all(&[1u8; 5000]).unwrap();
        let file = out.finish().unwrap();
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::DIRECT));
    }
}

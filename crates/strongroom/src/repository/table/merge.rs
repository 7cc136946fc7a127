//! Reading fixed-size records sequentially, and the k-way merge of sorted sources.
//! Must not hold more than one pending item per source.

use super::*;
// ---------------------------------------------------------------------------------------------
// Reading fixed-size records sequentially

/// Reads fixed-size records from a byte range of a file with positioned reads, a buffer at a
/// time (the buffer is never larger than what is left).
pub(super) struct RecordReader {
    pub(super) file: File,
    pub(super) pos: u64,
    pub(super) end: u64,
    pub(super) record: usize,
    pub(super) capacity: usize,
    pub(super) buf: Vec<u8>,
    pub(super) at: usize,
}

impl RecordReader {
    pub(super) fn new(file: File, start: u64, end: u64, record: usize, buffer: usize) -> Self {
        RecordReader {
            file,
            pos: start,
            end,
            record,
            capacity: (buffer / record).max(1) * record,
            buf: Vec::new(),
            at: 0,
        }
    }

    pub(super) fn next(&mut self) -> io::Result<Option<&[u8]>> {
        if self.at == self.buf.len() {
            if self.pos >= self.end {
                return Ok(None);
            }
            let n = (self.end - self.pos).min(self.capacity as u64) as usize;
            self.buf.resize(n, 0);
            self.file.read_exact_at(&mut self.buf, self.pos)?;
            self.pos += n as u64;
            self.at = 0;
        }
        if self.buf.len() - self.at < self.record {
            return Err(invalid("record cut short"));
        }
        let r = &self.buf[self.at..self.at + self.record];
        self.at += self.record;
        Ok(Some(r))
    }
}

// ---------------------------------------------------------------------------------------------
// K-way merge

/// Merges ascending sources into one ascending stream, dropping exact repeats; the first
/// error ends it.
pub(super) struct Merge<T, S> {
    pub(super) sources: Vec<S>,
    pub(super) heap: BinaryHeap<Reverse<(T, usize)>>,
    pub(super) started: bool,
    pub(super) done: bool,
    pub(super) last: Option<T>,
}

impl<T: Ord + Copy, S: Iterator<Item = io::Result<T>>> Merge<T, S> {
    pub(super) fn new(sources: Vec<S>) -> Self {
        Merge {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            started: false,
            done: false,
            last: None,
        }
    }

    pub(super) fn pull(&mut self, i: usize) -> io::Result<()> {
        if let Some(item) = self.sources[i].next() {
            self.heap.push(Reverse((item?, i)));
        }
        Ok(())
    }

    pub(super) fn step(&mut self) -> io::Result<Option<T>> {
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                self.pull(i)?;
            }
        }
        while let Some(Reverse((item, i))) = self.heap.pop() {
            self.pull(i)?;
            if self.last != Some(item) {
                self.last = Some(item);
                return Ok(Some(item));
            }
        }
        Ok(None)
    }
}

impl<T: Ord + Copy, S: Iterator<Item = io::Result<T>>> Iterator for Merge<T, S> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

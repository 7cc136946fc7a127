//! Sorted runs on local disk: the chunk-index cache ([`Table`]) and the external sort of chunk
//! ids ([`IdSorter`]), so that backup, restore, check and prune use memory that does not grow
//! with the repository.
//!
//! Owns the local file formats (run files, the table manifest), the rule that keeps a table's
//! run count logarithmic, and crash consistency of the table directory. Must not know what
//! keys and values mean (chunk ids and locations are the index's), must not read or write the
//! repository's storage, and must not be the only copy of anything: a table is a cache that
//! the caller can always rebuild from the repository's `index/` objects. What the table covers
//! is recorded by the caller in the manifest's opaque `meta`.
//!
//! Why this shape. A hash map of every chunk costs about 100 bytes of RAM per chunk: 130 GB
//! for 10 TB of 8 KiB chunks. Here the records (32-byte key, `V`-byte value) live in immutable
//! files of sorted runs, and memory holds only a fence per block of 128 records: the first 8
//! bytes of the block's first key. Keys are uniformly distributed hashes, so a binary search
//! of the fences finds the one block that can hold a key, and one positioned read of that
//! block (6.6 KiB for the index's 52-byte records) answers the lookup. The in-memory cost is
//! 8 / 128 = 0.0625 bytes per record: 81 MB for 1.3 billion chunks (10 TB of 8 KiB chunks),
//! plus one block buffer per lookup in flight and 256 KiB to 1 MiB per run being iterated.
//! An LSM tree or B-tree would also do; sorted runs need no page management, no write-ahead
//! log and no in-place update, and a sequential scan of them is a merge, which is exactly
//! what prune and check need: [`IdSorter`] turns the chunk ids that kept snapshots reference
//! into a sorted stream in bounded memory, and [`merge_join`] walks it beside
//! [`Table::iter_merged`] without holding either side.
//!
//! Run file (`run-<16 hex digits>` in the table directory):
//! ```text
//! records: count × (key 32 ‖ value V), ascending by (key, value), no exact repeats
//! fences:  ceil(count / block_records) × u64 big-endian (first 8 key bytes of each block)
//! footer:  "SRRUN\0\0\x01" ‖ V (u32 LE) ‖ block_records (u32 LE) ‖ count (u64 LE)
//!          ‖ checksum of the records (u64 LE) ‖ checksum of fences and footer so far (u64 LE)
//! ```
//! Opening a run reads only the fences and footer, and checks their checksum and the file's
//! length. The records' checksum is checked by every full scan ([`Run::iter`], and so
//! [`Table::iter_merged`] and compaction), which also checks order and fences; a lookup
//! checks neither, since it reads one block. A damaged record can make a lookup miss (the
//! caller then stores a chunk again) or, if it garbles a value but not its key, return a wrong
//! location (the read that follows fails authentication); a garbled key is, but for odds of
//! 2^-256, no real chunk's id. Prune and check read by full scans, which check everything
//! before they are acted on. An [`io::ErrorKind::InvalidData`] error from any method means the cache is
//! damaged: [`Table::clear`] it and rebuild.
//!
//! Table manifest (`MANIFEST`), the commit point, rewritten as `MANIFEST.tmp` then renamed:
//! ```text
//! "SRTBL\0\0\x01" ‖ V (u32 LE) ‖ next run number (u64 LE) ‖ run count (u32 LE)
//! ‖ per run, oldest first: run number (u64 LE) ‖ record count (u64 LE)
//! ‖ meta length (u32 LE) ‖ meta ‖ checksum of all of the above (u64 LE)
//! ```
//! A run is written under a temporary name, renamed into place, and only then named by a new
//! manifest; runs a compaction replaced are deleted after it. A process killed at any moment
//! therefore leaves a directory that opens to the old or the new state; [`Table::open`]
//! deletes the table's own files the manifest does not name (`run-*`, `MANIFEST.tmp`), and
//! opens a missing, torn or garbled manifest, or one naming a run that fails its checks, as
//! an empty table. Nothing is fsynced: after a power loss the same checks catch a truncated
//! file, and the cache can be rebuilt. One process at a time: the caller holds a lock on the
//! directory.
//!
//! Compaction (size-tiered, run after every [`Table::add_run`]): runs are kept oldest first,
//! each more than twice the size of the next newer one. After a run is added, the newest
//! runs are merged, in one k-way merge, while the merged size so far is at least half the
//! size of the run before it. The invariant bounds the run count by 1 + log2(n / smallest
//! batch). A record is written once when added, at most once more as part of the newest run
//! of a merge, and otherwise only when its run is the older side of a merge, which makes its
//! run at least 1.5 times as large; so each record is rewritten O(log n) times and the total
//! writing is O(n log n). A lookup reads one block per run, so fewer runs mean faster
//! lookups: [`Table::compact_all`] merges everything into one run after a rebuild.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// A record's key: a 32-byte hash, uniformly distributed.
pub type Key = [u8; 32];

/// One record: a key and its fixed-size value.
pub type Record<const V: usize> = (Key, [u8; V]);

/// Records per block, and so per fence, in the runs a table writes unless told otherwise.
pub const DEFAULT_BLOCK_RECORDS: u32 = 128;

const RUN_MAGIC: &[u8; 8] = b"SRRUN\0\0\x01";
const FOOTER_LEN: usize = 40;
const MANIFEST_MAGIC: &[u8; 8] = b"SRTBL\0\0\x01";
const MANIFEST: &str = "MANIFEST";
const MANIFEST_TMP: &str = "MANIFEST.tmp";
const RUN_PREFIX: &str = "run-";
const WRITE_BUFFER: usize = 1 << 20;
const ITER_BUFFER: usize = 1 << 20;
const MERGE_BUFFER: usize = 256 << 10;
const SPILL_BUFFER: usize = 64 << 10;
/// Spill files an [`IdSorter`] merges into one at a time (bounds open files and buffers).
const FAN_IN: usize = 16;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn invalid_input(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.into())
}

fn prefix(key: &Key) -> u64 {
    u64::from_be_bytes(key[..8].try_into().expect("8 bytes"))
}

const fn record_len(v: usize) -> usize {
    32 + v
}

fn split_record<const V: usize>(bytes: &[u8]) -> Record<V> {
    let key: Key = bytes[..32].try_into().expect("32 bytes");
    let value: [u8; V] = bytes[32..32 + V].try_into().expect("V bytes");
    (key, value)
}

// ---------------------------------------------------------------------------------------------
// Checksum

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// An xxHash64-style streaming checksum (not bit-compatible with xxHash): catches torn and
/// garbled files, not tampering.
#[derive(Clone)]
struct Checksum {
    acc: [u64; 4],
    tail: [u8; 32],
    tail_len: usize,
    total: u64,
}

fn round(acc: u64, word: u64) -> u64 {
    acc.wrapping_add(word.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

impl Checksum {
    fn new() -> Self {
        Checksum {
            acc: [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)],
            tail: [0; 32],
            tail_len: 0,
            total: 0,
        }
    }

    fn stripe(acc: &mut [u64; 4], stripe: &[u8]) {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = round(*a, word(&stripe[i * 8..]));
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.tail_len > 0 {
            let take = (32 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 32 {
                return;
            }
            let tail = self.tail;
            Self::stripe(&mut self.acc, &tail);
            self.tail_len = 0;
        }
        let mut stripes = data.chunks_exact(32);
        for s in &mut stripes {
            Self::stripe(&mut self.acc, s);
        }
        let rest = stripes.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn finish(&self) -> u64 {
        let [a, b, c, d] = self.acc;
        let mut h = a
            .rotate_left(1)
            .wrapping_add(b.rotate_left(7))
            .wrapping_add(c.rotate_left(12))
            .wrapping_add(d.rotate_left(18))
            .wrapping_add(self.total);
        let mut words = self.tail[..self.tail_len].chunks_exact(8);
        for w in &mut words {
            h ^= round(0, word(w));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        }
        for &byte in words.remainder() {
            h ^= u64::from(byte).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

fn checksum(data: &[u8]) -> u64 {
    let mut sum = Checksum::new();
    sum.update(data);
    sum.finish()
}

// ---------------------------------------------------------------------------------------------
// Reading fixed-size records sequentially

/// Reads fixed-size records from a byte range of a file with positioned reads, a buffer at a
/// time (the buffer is never larger than what is left).
struct RecordReader {
    file: File,
    pos: u64,
    end: u64,
    record: usize,
    capacity: usize,
    buf: Vec<u8>,
    at: usize,
}

impl RecordReader {
    fn new(file: File, start: u64, end: u64, record: usize, buffer: usize) -> Self {
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

    fn next(&mut self) -> io::Result<Option<&[u8]>> {
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
struct Merge<T, S> {
    sources: Vec<S>,
    heap: BinaryHeap<Reverse<(T, usize)>>,
    started: bool,
    done: bool,
    last: Option<T>,
}

impl<T: Ord + Copy, S: Iterator<Item = io::Result<T>>> Merge<T, S> {
    fn new(sources: Vec<S>) -> Self {
        Merge {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            started: false,
            done: false,
            last: None,
        }
    }

    fn pull(&mut self, i: usize) -> io::Result<()> {
        if let Some(item) = self.sources[i].next() {
            self.heap.push(Reverse((item?, i)));
        }
        Ok(())
    }

    fn step(&mut self) -> io::Result<Option<T>> {
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

// ---------------------------------------------------------------------------------------------
// Runs

thread_local! {
    /// Each thread's block buffer for single lookups (one block, 6.6 KiB for the index).
    static BLOCK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's block buffer (a fresh one if it is in use already).
fn with_block<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BLOCK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let r = f(&mut buf);
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes one run file from records in ascending order, under a temporary name until
/// [`RunWriter::finish`] renames it into place.
pub struct RunWriter<const V: usize> {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    block_records: u32,
    count: u64,
    fences: Vec<u64>,
    last: Option<Record<V>>,
    sum: Checksum,
    renamed: bool,
}

impl<const V: usize> RunWriter<V> {
    /// Starts a run that will be at `path`, with a fence every `block_records` records.
    pub fn create(path: &Path, block_records: u32) -> io::Result<Self> {
        if block_records == 0 {
            return Err(invalid_input("block_records must be at least 1"));
        }
        let tmp = tmp_path(path);
        let file = File::create(&tmp)?;
        Ok(RunWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            block_records,
            count: 0,
            fences: Vec::new(),
            last: None,
            sum: Checksum::new(),
            renamed: false,
        })
    }

    /// Appends a record: ascending (key, value) order is required, an exact repeat is skipped.
    pub fn push(&mut self, key: &Key, value: &[u8; V]) -> io::Result<()> {
        if let Some((k, v)) = &self.last {
            match (key, value).cmp(&(k, v)) {
                Ordering::Less => return Err(invalid_input("run records out of order")),
                Ordering::Equal => return Ok(()),
                Ordering::Greater => {}
            }
        }
        let out = self.out.as_mut().expect("writer in use");
        if self.count % u64::from(self.block_records) == 0 {
            self.fences.push(prefix(key));
        }
        out.write_all(key)?;
        out.write_all(value)?;
        self.sum.update(key);
        self.sum.update(value);
        self.count += 1;
        self.last = Some((*key, *value));
        Ok(())
    }

    /// Records pushed so far (exact repeats not counted).
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether no record was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the fences and footer, renames the file into place and opens it.
    pub fn finish(mut self) -> io::Result<Run<V>> {
        let mut out = self.out.take().expect("writer in use");
        let mut tail = Vec::with_capacity(self.fences.len() * 8 + FOOTER_LEN);
        for f in &self.fences {
            tail.extend_from_slice(&f.to_be_bytes());
        }
        tail.extend_from_slice(RUN_MAGIC);
        tail.extend_from_slice(&(V as u32).to_le_bytes());
        tail.extend_from_slice(&self.block_records.to_le_bytes());
        tail.extend_from_slice(&self.count.to_le_bytes());
        tail.extend_from_slice(&self.sum.finish().to_le_bytes());
        let tail_sum = checksum(&tail);
        tail.extend_from_slice(&tail_sum.to_le_bytes());
        out.write_all(&tail)?;
        out.flush()?;
        drop(out);
        fs::rename(&self.tmp, &self.path)?;
        self.renamed = true;
        let file = File::open(&self.path)?;
        Ok(Run {
            path: std::mem::take(&mut self.path),
            file,
            count: self.count,
            block_records: self.block_records,
            fences: std::mem::take(&mut self.fences).into(),
            records_sum: self.sum.finish(),
        })
    }
}

impl<const V: usize> Drop for RunWriter<V> {
    fn drop(&mut self) {
        // Not finished (an error, or dropped on purpose): the temporary file goes.
        if !self.renamed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// An immutable run file of sorted records, with its fences in memory.
pub struct Run<const V: usize> {
    path: PathBuf,
    file: File,
    count: u64,
    block_records: u32,
    fences: Arc<[u64]>,
    records_sum: u64,
}

impl<const V: usize> Run<V> {
    /// Opens a run file, reading and checking only its fences and footer.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        if size < FOOTER_LEN as u64 {
            return Err(invalid(format!("{}: too short for a run", path.display())));
        }
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer, size - FOOTER_LEN as u64)?;
        if &footer[..8] != RUN_MAGIC {
            return Err(invalid(format!("{}: not a run file", path.display())));
        }
        let value_len = u32::from_le_bytes(footer[8..12].try_into().expect("4 bytes"));
        let block_records = u32::from_le_bytes(footer[12..16].try_into().expect("4 bytes"));
        let count = u64::from_le_bytes(footer[16..24].try_into().expect("8 bytes"));
        let records_sum = u64::from_le_bytes(footer[24..32].try_into().expect("8 bytes"));
        let tail_sum = u64::from_le_bytes(footer[32..40].try_into().expect("8 bytes"));
        if value_len as usize != V || block_records == 0 {
            return Err(invalid(format!(
                "{}: value length {value_len}, block {block_records}; expected value length {V}",
                path.display()
            )));
        }
        let blocks = count.div_ceil(u64::from(block_records));
        let records_end = count.checked_mul(record_len(V) as u64);
        let expected = records_end
            .and_then(|r| r.checked_add(blocks.checked_mul(8)?))
            .and_then(|r| r.checked_add(FOOTER_LEN as u64));
        let (Some(records_end), Some(expected)) = (records_end, expected) else {
            return Err(invalid(format!(
                "{}: impossible record count",
                path.display()
            )));
        };
        if expected != size {
            return Err(invalid(format!(
                "{}: {size} bytes, its footer says {expected}",
                path.display()
            )));
        }
        let mut tail = vec![0u8; blocks as usize * 8 + FOOTER_LEN - 8];
        file.read_exact_at(&mut tail, records_end)?;
        if checksum(&tail) != tail_sum {
            return Err(invalid(format!(
                "{}: fences fail their checksum",
                path.display()
            )));
        }
        let fences: Arc<[u64]> = tail[..blocks as usize * 8]
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Run {
            path: path.to_path_buf(),
            file,
            count,
            block_records,
            fences,
            records_sum,
        })
    }

    /// Where the run file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the run holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The blocks (first and last, inclusive) that can hold `key`, or none.
    fn blocks_for(&self, key: &Key) -> Option<(usize, usize)> {
        let p = prefix(key);
        // Blocks whose first key's prefix is ≤ p; the key can only be in one of them.
        let upto = self.fences.partition_point(|&f| f <= p);
        if upto == 0 {
            return None;
        }
        // Blocks starting with prefix p may be preceded by a block whose tail has it too.
        let first_eq = self.fences.partition_point(|&f| f < p);
        Some((first_eq.saturating_sub(1), upto - 1))
    }

    fn read_blocks(&self, first: usize, last: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let rec = record_len(V) as u64;
        let b = u64::from(self.block_records);
        let start = first as u64 * b;
        let end = ((last as u64 + 1) * b).min(self.count);
        buf.resize(((end - start) * rec) as usize, 0);
        self.file.read_exact_at(buf, start * rec)
    }

    /// Appends the values stored under `key` in `records` (whole records, sorted) to `out`.
    fn search(records: &[u8], key: &Key, out: &mut Vec<[u8; V]>) {
        let rec = record_len(V);
        let n = records.len() / rec;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if records[mid * rec..mid * rec + 32] < key[..] {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for r in records[lo * rec..].chunks_exact(rec) {
            if r[..32] != key[..] {
                break;
            }
            out.push(split_record::<V>(r).1);
        }
    }

    /// Appends the values stored under `key` to `out`, in ascending order.
    fn get_into(&self, key: &Key, buf: &mut Vec<u8>, out: &mut Vec<[u8; V]>) -> io::Result<()> {
        if let Some((first, last)) = self.blocks_for(key) {
            self.read_blocks(first, last, buf)?;
            Self::search(buf, key, out);
        }
        Ok(())
    }

    /// The values stored under `key`, ascending (several if the key was added with several).
    pub fn get_all(&self, key: &Key) -> io::Result<Vec<[u8; V]>> {
        let mut out = Vec::new();
        with_block(|buf| self.get_into(key, buf, &mut out))?;
        Ok(out)
    }

    /// Whether `key` is stored.
    pub fn contains(&self, key: &Key) -> io::Result<bool> {
        Ok(!self.get_all(key)?.is_empty())
    }

    /// Appends each key's values to `out[i]`, reusing the block last read when the next key
    /// falls in it.
    fn get_many_into(&self, keys: &[Key], out: &mut [Vec<[u8; V]>]) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut cached: Option<(usize, usize)> = None;
        let rec = record_len(V);
        let b = self.block_records as usize;
        for (key, out) in keys.iter().zip(out.iter_mut()) {
            let Some((first, last)) = self.blocks_for(key) else {
                continue;
            };
            match cached {
                Some((cf, cl)) if cf <= first && last <= cl => {
                    let from = ((first - cf) * b * rec).min(buf.len());
                    let to = ((last + 1 - cf) * b * rec).min(buf.len());
                    Self::search(&buf[from..to], key, out);
                }
                _ => {
                    self.read_blocks(first, last, &mut buf)?;
                    cached = Some((first, last));
                    Self::search(&buf, key, out);
                }
            }
        }
        Ok(())
    }

    /// The values of each key (as [`Run::get_all`]); keys in ascending order let consecutive
    /// keys in one block share its read, but any order gives the right answer.
    pub fn get_many(&self, keys: &[Key]) -> io::Result<Vec<Vec<[u8; V]>>> {
        let mut out = vec![Vec::new(); keys.len()];
        self.get_many_into(keys, &mut out)?;
        Ok(out)
    }

    /// Every record in ascending order, read 1 MiB at a time and checked as it goes.
    pub fn iter(&self) -> io::Result<RunIter<V>> {
        self.iter_with_buffer(ITER_BUFFER)
    }

    fn iter_with_buffer(&self, buffer: usize) -> io::Result<RunIter<V>> {
        let end = self.count * record_len(V) as u64;
        Ok(RunIter {
            reader: RecordReader::new(self.file.try_clone()?, 0, end, record_len(V), buffer),
            fences: Arc::clone(&self.fences),
            block_records: u64::from(self.block_records),
            records_sum: self.records_sum,
            index: 0,
            prev: None,
            sum: Checksum::new(),
            done: false,
        })
    }
}

/// The records of one run in ascending order; order, fences and the records' checksum are
/// checked as it goes (the checksum when it ends: act on what it yielded only after that).
pub struct RunIter<const V: usize> {
    reader: RecordReader,
    fences: Arc<[u64]>,
    block_records: u64,
    records_sum: u64,
    index: u64,
    prev: Option<Record<V>>,
    sum: Checksum,
    done: bool,
}

impl<const V: usize> RunIter<V> {
    fn step(&mut self) -> io::Result<Option<Record<V>>> {
        let Some(bytes) = self.reader.next()? else {
            if self.sum.finish() != self.records_sum {
                return Err(invalid("run records fail their checksum"));
            }
            return Ok(None);
        };
        self.sum.update(bytes);
        let record = split_record::<V>(bytes);
        if self.index % self.block_records == 0
            && self.fences.get((self.index / self.block_records) as usize)
                != Some(&prefix(&record.0))
        {
            return Err(invalid("run record disagrees with its fence"));
        }
        if self.prev.is_some_and(|p| p >= record) {
            return Err(invalid("run records out of order"));
        }
        self.prev = Some(record);
        self.index += 1;
        Ok(Some(record))
    }
}

impl<const V: usize> Iterator for RunIter<V> {
    type Item = io::Result<Record<V>>;

    fn next(&mut self) -> Option<io::Result<Record<V>>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
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

// ---------------------------------------------------------------------------------------------
// Table

/// A directory of runs and a manifest naming them: a rebuildable on-disk multimap from keys
/// to fixed-size values.
///
/// Lookups take `&self` and may run on several threads at once (each thread reuses one block
/// buffer); changes take `&mut self`. One process at a time per directory.
pub struct Table<const V: usize> {
    dir: PathBuf,
    block_records: u32,
    /// Oldest (largest) first, with their run numbers.
    runs: Vec<(u64, Run<V>)>,
    next_run: u64,
    meta: Vec<u8>,
}

/// Whether an error opening a table means its files are damaged (so it opens empty).
fn is_damage(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::NotFound
    )
}

/// A run's state as the manifest names it.
struct Listed {
    number: u64,
    count: u64,
}

struct Manifest {
    next_run: u64,
    runs: Vec<Listed>,
    meta: Vec<u8>,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("table manifest cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

impl Manifest {
    fn encode<const V: usize>(&self) -> io::Result<Vec<u8>> {
        let meta_len = u32::try_from(self.meta.len())
            .map_err(|_| invalid_input("table meta longer than 4 GiB"))?;
        let mut b = Vec::with_capacity(36 + self.runs.len() * 16 + self.meta.len());
        b.extend_from_slice(MANIFEST_MAGIC);
        b.extend_from_slice(&(V as u32).to_le_bytes());
        b.extend_from_slice(&self.next_run.to_le_bytes());
        b.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for r in &self.runs {
            b.extend_from_slice(&r.number.to_le_bytes());
            b.extend_from_slice(&r.count.to_le_bytes());
        }
        b.extend_from_slice(&meta_len.to_le_bytes());
        b.extend_from_slice(&self.meta);
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        Ok(b)
    }

    fn decode<const V: usize>(bytes: &[u8]) -> io::Result<Self> {
        if bytes.len() < 8 {
            return Err(invalid("table manifest cut short"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if checksum(body).to_le_bytes() != sum {
            return Err(invalid("table manifest fails its checksum"));
        }
        let mut c = Cursor(body);
        if c.take(8)? != MANIFEST_MAGIC {
            return Err(invalid("not a table manifest"));
        }
        if c.u32()? as usize != V {
            return Err(invalid("table written for another value length"));
        }
        let next_run = c.u64()?;
        let n = c.u32()? as usize;
        let mut runs = Vec::with_capacity(n.min(body.len() / 16));
        for _ in 0..n {
            let number = c.u64()?;
            let count = c.u64()?;
            if number >= next_run || runs.iter().any(|r: &Listed| r.number == number) {
                return Err(invalid(
                    "table manifest names a run twice or from the future",
                ));
            }
            runs.push(Listed { number, count });
        }
        let meta_len = c.u32()? as usize;
        let meta = c.take(meta_len)?.to_vec();
        if !c.0.is_empty() {
            return Err(invalid("table manifest has trailing bytes"));
        }
        Ok(Manifest {
            next_run,
            runs,
            meta,
        })
    }
}

fn run_name(number: u64) -> String {
    format!("{RUN_PREFIX}{number:016x}")
}

impl<const V: usize> Table<V> {
    /// Opens (creating if need be) the table in `dir`, with the default block size.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with_block_records(dir, DEFAULT_BLOCK_RECORDS)
    }

    /// Opens the table in `dir`, writing new runs with a fence every `block_records` records.
    pub fn open_with_block_records(dir: &Path, block_records: u32) -> io::Result<Self> {
        if block_records == 0 {
            return Err(invalid_input("block_records must be at least 1"));
        }
        fs::create_dir_all(dir)?;
        let mut table = Table {
            dir: dir.to_path_buf(),
            block_records,
            runs: Vec::new(),
            next_run: 0,
            meta: Vec::new(),
        };
        match table.load() {
            Ok(()) => {}
            Err(e) if is_damage(&e) => {
                // Torn or garbled: the cache starts over (the caller rebuilds it).
                table.runs.clear();
                table.meta.clear();
                table.write_manifest(&[], &[])?;
            }
            Err(e) => return Err(e),
        }
        table.remove_leftovers()?;
        Ok(table)
    }

    fn load(&mut self) -> io::Result<()> {
        let bytes = match fs::read(self.dir.join(MANIFEST)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.write_manifest(&[], &[]),
            Err(e) => return Err(e),
        };
        let manifest = Manifest::decode::<V>(&bytes)?;
        self.next_run = manifest.next_run;
        for listed in &manifest.runs {
            let run = Run::open(&self.dir.join(run_name(listed.number)))?;
            if run.len() != listed.count {
                return Err(invalid("run length disagrees with the table manifest"));
            }
            self.runs.push((listed.number, run));
        }
        self.meta = manifest.meta;
        Ok(())
    }

    /// Deletes the table's own files that the manifest does not name: leftovers of a killed
    /// process or of a compaction. Other files are left alone.
    fn remove_leftovers(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let ours = name.starts_with(RUN_PREFIX) || name == MANIFEST_TMP;
            let named = self.runs.iter().any(|(n, _)| run_name(*n) == name);
            if ours && !named {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Writes a manifest naming `runs` and `meta`: the commit point of every change.
    fn write_manifest(&self, runs: &[(u64, &Run<V>)], meta: &[u8]) -> io::Result<()> {
        let manifest = Manifest {
            next_run: self.next_run,
            runs: runs
                .iter()
                .map(|(number, run)| Listed {
                    number: *number,
                    count: run.len(),
                })
                .collect(),
            meta: meta.to_vec(),
        };
        let bytes = manifest.encode::<V>()?;
        let tmp = self.dir.join(MANIFEST_TMP);
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, self.dir.join(MANIFEST))
    }

    fn new_run_path(&mut self) -> (u64, PathBuf) {
        let number = self.next_run;
        self.next_run += 1;
        (number, self.dir.join(run_name(number)))
    }

    /// Adds records (any order; sorted here, exact repeats dropped) as a new run, then
    /// compacts; the caller bounds the batch, which is held in memory.
    pub fn add_run(&mut self, records: Vec<Record<V>>) -> io::Result<()> {
        let meta = self.meta.clone();
        self.add_run_with_meta(records, meta)
    }

    /// As [`Table::add_run`], committing `meta` in the same manifest write as the new run.
    pub fn add_run_with_meta(
        &mut self,
        mut records: Vec<Record<V>>,
        meta: Vec<u8>,
    ) -> io::Result<()> {
        let added = if records.is_empty() {
            None
        } else {
            records.sort_unstable();
            let (number, path) = self.new_run_path();
            let mut writer = RunWriter::create(&path, self.block_records)?;
            for (k, v) in &records {
                writer.push(k, v)?;
            }
            drop(records);
            Some((number, writer.finish()?))
        };
        let mut listed: Vec<(u64, &Run<V>)> = self.runs.iter().map(|(n, r)| (*n, r)).collect();
        if let Some((n, r)) = &added {
            listed.push((*n, r));
        }
        if let Err(e) = self.write_manifest(&listed, &meta) {
            if let Some((_, run)) = added {
                let path = run.path().to_path_buf();
                drop(run);
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        self.runs.extend(added);
        self.meta = meta;
        self.compact()
    }

    /// Applies the size-tiered rule (see the module docs) until it holds; [`Table::add_run`]
    /// calls it.
    pub fn compact(&mut self) -> io::Result<()> {
        loop {
            let n = self.runs.len();
            if n < 2 {
                return Ok(());
            }
            // Merge the newest runs while the merged size is at least half the one before.
            let mut first = n - 1;
            let mut acc = self.runs[first].1.len();
            while first > 0 && acc.saturating_mul(2) >= self.runs[first - 1].1.len() {
                first -= 1;
                acc += self.runs[first].1.len();
            }
            if first < n - 1 {
                self.merge(first, n - 1)?;
                continue;
            }
            // The rule holds at the newest end; an older pair may still break it (a merge
            // that failed part-way): merge the newest such pair.
            match (0..n - 1)
                .rev()
                .find(|&i| self.runs[i + 1].1.len().saturating_mul(2) >= self.runs[i].1.len())
            {
                Some(i) => self.merge(i, i + 1)?,
                None => return Ok(()),
            }
        }
    }

    /// Merges every run into one (fastest lookups, e.g. after a rebuild).
    pub fn compact_all(&mut self) -> io::Result<()> {
        if self.runs.len() >= 2 {
            self.merge(0, self.runs.len() - 1)?;
        }
        Ok(())
    }

    /// Replaces runs `first..=last` by their merge.
    fn merge(&mut self, first: usize, last: usize) -> io::Result<()> {
        let sources = self.runs[first..=last]
            .iter()
            .map(|(_, r)| r.iter_with_buffer(MERGE_BUFFER))
            .collect::<io::Result<Vec<_>>>()?;
        let (number, path) = self.new_run_path();
        let mut writer = RunWriter::create(&path, self.block_records)?;
        for record in Merge::new(sources) {
            let (k, v) = record?;
            writer.push(&k, &v)?;
        }
        let merged = writer.finish()?;
        let listed: Vec<(u64, &Run<V>)> = self.runs[..first]
            .iter()
            .map(|(n, r)| (*n, r))
            .chain(std::iter::once((number, &merged)))
            .chain(self.runs[last + 1..].iter().map(|(n, r)| (*n, r)))
            .collect();
        if let Err(e) = self.write_manifest(&listed, &self.meta) {
            drop(merged);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let old: Vec<_> = self
            .runs
            .splice(first..=last, std::iter::once((number, merged)))
            .collect();
        for (_, run) in old {
            let path = run.path().to_path_buf();
            drop(run);
            // Committed already: a file that stays is removed by the next open.
            let _ = fs::remove_file(path);
        }
        Ok(())
    }

    /// The values stored under `key` across all runs, ascending, without exact repeats.
    pub fn get_all(&self, key: &Key) -> io::Result<Vec<[u8; V]>> {
        let mut out = Vec::new();
        with_block(|buf| {
            self.runs
                .iter()
                .try_for_each(|(_, run)| run.get_into(key, buf, &mut out))
        })?;
        if self.runs.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
    }

    /// Whether `key` is stored (stops at the first run that has it, largest first).
    pub fn contains(&self, key: &Key) -> io::Result<bool> {
        let mut out = Vec::new();
        with_block(|buf| {
            for (_, run) in &self.runs {
                run.get_into(key, buf, &mut out)?;
                if !out.is_empty() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    /// The values of each key (as [`Table::get_all`]); ascending keys share block reads.
    pub fn get_many(&self, keys: &[Key]) -> io::Result<Vec<Vec<[u8; V]>>> {
        let mut out = vec![Vec::new(); keys.len()];
        for (_, run) in &self.runs {
            run.get_many_into(keys, &mut out)?;
        }
        if self.runs.len() > 1 {
            for values in &mut out {
                values.sort_unstable();
                values.dedup();
            }
        }
        Ok(out)
    }

    /// Every record of every run in ascending (key, value) order, exact repeats dropped, so
    /// a key's values come consecutively; checked as [`Run::iter`] is.
    pub fn iter_merged(&self) -> io::Result<MergedIter<V>> {
        let sources = self
            .runs
            .iter()
            .map(|(_, r)| r.iter_with_buffer(MERGE_BUFFER))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(MergedIter(Merge::new(sources)))
    }

    /// The caller's opaque record of what the table covers.
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// Replaces the caller's record of what the table covers (one manifest write).
    pub fn set_meta(&mut self, meta: Vec<u8>) -> io::Result<()> {
        let listed: Vec<(u64, &Run<V>)> = self.runs.iter().map(|(n, r)| (*n, r)).collect();
        self.write_manifest(&listed, &meta)?;
        self.meta = meta;
        Ok(())
    }

    /// Empties the table: no runs, empty meta.
    pub fn clear(&mut self) -> io::Result<()> {
        self.write_manifest(&[], &[])?;
        self.meta.clear();
        for (_, run) in std::mem::take(&mut self.runs) {
            let path = run.path().to_path_buf();
            drop(run);
            // Committed already: a file that stays is removed by the next open.
            let _ = fs::remove_file(path);
        }
        Ok(())
    }

    /// Records stored, summed over runs (a record in two runs is counted twice).
    pub fn stored_records(&self) -> u64 {
        self.runs.iter().map(|(_, r)| r.len()).sum()
    }

    /// Number of runs (a lookup reads one block from each).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The table's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The records of all of a table's runs in ascending order (see [`Table::iter_merged`]).
pub struct MergedIter<const V: usize>(Merge<Record<V>, RunIter<V>>);

impl<const V: usize> Iterator for MergedIter<V> {
    type Item = io::Result<Record<V>>;

    fn next(&mut self) -> Option<io::Result<Record<V>>> {
        self.0.next()
    }
}

// ---------------------------------------------------------------------------------------------
// External sort of ids

/// A sorted, deduplicated file of ids, already unlinked (it vanishes when closed).
struct Spill {
    file: File,
    ids: u64,
}

impl Spill {
    fn iter(self) -> SpillIter {
        let end = self.ids * 32;
        SpillIter(RecordReader::new(self.file, 0, end, 32, SPILL_BUFFER))
    }
}

struct SpillIter(RecordReader);

impl Iterator for SpillIter {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        match self.0.next() {
            Ok(Some(bytes)) => Some(Ok(bytes.try_into().expect("32 bytes"))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Where [`SortedIds`] reads from: the last in-memory batch or a spill file.
enum IdSource {
    Memory(std::vec::IntoIter<Key>),
    Spill(SpillIter),
}

impl Iterator for IdSource {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        match self {
            IdSource::Memory(ids) => ids.next().map(Ok),
            IdSource::Spill(s) => s.next(),
        }
    }
}

/// Sorts and deduplicates any number of 32-byte ids in bounded memory, spilling sorted
/// batches to unlinked temporary files.
///
/// Memory: the id buffer (`mem_limit_bytes`), plus, while merging, up to 64 KiB per spill
/// file being read (16 at a time while pushing; at the end, up to 15 per level of 16×).
pub struct IdSorter {
    dir: PathBuf,
    cap: usize,
    ids: Vec<Key>,
    /// Spills by level: a level-`l` spill merges `FAN_IN`^`l` batches.
    levels: Vec<Vec<Spill>>,
}

static SPILL_COUNTER: AtomicU64 = AtomicU64::new(0);

impl IdSorter {
    /// A sorter spilling into `tmp_dir` (which must exist) whenever its ids would exceed
    /// `mem_limit_bytes` (at least one id is held).
    pub fn new(tmp_dir: &Path, mem_limit_bytes: usize) -> Self {
        IdSorter {
            dir: tmp_dir.to_path_buf(),
            cap: (mem_limit_bytes / 32).max(1),
            ids: Vec::new(),
            levels: Vec::new(),
        }
    }

    /// Adds an id (repeats are fine).
    pub fn push(&mut self, id: Key) -> io::Result<()> {
        if self.ids.len() == self.ids.capacity() {
            if self.ids.len() >= self.cap {
                self.spill()?;
            } else {
                let want = (self.ids.len() * 2).max(1024).min(self.cap);
                self.ids.reserve_exact(want - self.ids.len());
            }
        }
        self.ids.push(id);
        Ok(())
    }

    /// A new read-write file in the directory, unlinked at once so that nothing is left
    /// behind even if the process is killed.
    fn anonymous_file(&self) -> io::Result<File> {
        loop {
            let n = SPILL_COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
            let path = self.dir.join(format!(".idsort-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    fs::remove_file(&path)?;
                    return Ok(file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn write_spill(&self, ids: impl Iterator<Item = io::Result<Key>>) -> io::Result<Spill> {
        let file = self.anonymous_file()?;
        let mut out = BufWriter::with_capacity(SPILL_BUFFER, &file);
        let mut count = 0u64;
        for id in ids {
            out.write_all(&id?)?;
            count += 1;
        }
        out.flush()?;
        drop(out);
        Ok(Spill { file, ids: count })
    }

    fn spill(&mut self) -> io::Result<()> {
        self.ids.sort_unstable();
        self.ids.dedup();
        let spill = self.write_spill(self.ids.iter().map(|id| Ok(*id)))?;
        self.ids.clear();
        let mut level = 0;
        let mut spill = spill;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(spill);
            if self.levels[level].len() < FAN_IN {
                return Ok(());
            }
            let group = std::mem::take(&mut self.levels[level]);
            let merged = Merge::new(group.into_iter().map(Spill::iter).collect());
            spill = self.write_spill(merged)?;
            level += 1;
        }
    }

    /// Every distinct id pushed, in ascending order.
    pub fn finish(mut self) -> SortedIds {
        self.ids.sort_unstable();
        self.ids.dedup();
        let mut sources = vec![IdSource::Memory(std::mem::take(&mut self.ids).into_iter())];
        for level in std::mem::take(&mut self.levels) {
            sources.extend(level.into_iter().map(|s| IdSource::Spill(s.iter())));
        }
        SortedIds(Merge::new(sources))
    }
}

/// The distinct ids an [`IdSorter`] was given, ascending; spill files vanish when it drops.
pub struct SortedIds(Merge<Key, IdSource>);

impl Iterator for SortedIds {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        self.0.next()
    }
}

// ---------------------------------------------------------------------------------------------
// Merge join

/// One step of [`merge_join`]: a key on both sides, in the table only, or among the ids only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined<const V: usize> {
    /// A table record whose key is among the ids (once per record: a key may have several).
    Both(Key, [u8; V]),
    /// A table record whose key is not among the ids.
    TableOnly(Key, [u8; V]),
    /// An id the table does not hold.
    IdOnly(Key),
}

/// Walks ascending `ids` (e.g. [`SortedIds`]; repeats are skipped) beside ascending `records`
/// (e.g. [`Table::iter_merged`]), holding one item of each; act on the result only after it
/// ended without error.
pub fn merge_join<const V: usize, I, R>(ids: I, records: R) -> MergeJoin<V, I, R>
where
    I: Iterator<Item = io::Result<Key>>,
    R: Iterator<Item = io::Result<Record<V>>>,
{
    MergeJoin {
        ids,
        records,
        id: None,
        record: None,
        last_id: None,
        last_key: None,
        ids_done: false,
        records_done: false,
        failed: false,
    }
}

/// The iterator [`merge_join`] returns.
pub struct MergeJoin<const V: usize, I, R> {
    ids: I,
    records: R,
    /// The current id and whether a record matched it.
    id: Option<(Key, bool)>,
    record: Option<Record<V>>,
    last_id: Option<Key>,
    last_key: Option<Key>,
    ids_done: bool,
    records_done: bool,
    failed: bool,
}

impl<const V: usize, I, R> MergeJoin<V, I, R>
where
    I: Iterator<Item = io::Result<Key>>,
    R: Iterator<Item = io::Result<Record<V>>>,
{
    fn step(&mut self) -> io::Result<Option<Joined<V>>> {
        loop {
            while self.id.is_none() && !self.ids_done {
                match self.ids.next().transpose()? {
                    Some(id) if self.last_id.is_some_and(|last| id <= last) => {
                        if self.last_id != Some(id) {
                            return Err(invalid_input("merge_join: ids out of order"));
                        }
                    }
                    Some(id) => {
                        self.last_id = Some(id);
                        self.id = Some((id, false));
                    }
                    None => self.ids_done = true,
                }
            }
            if self.record.is_none() && !self.records_done {
                match self.records.next().transpose()? {
                    Some(r) if self.last_key.is_some_and(|last| r.0 < last) => {
                        return Err(invalid_input("merge_join: records out of order"));
                    }
                    Some(r) => {
                        self.last_key = Some(r.0);
                        self.record = Some(r);
                    }
                    None => self.records_done = true,
                }
            }
            match (self.id, self.record) {
                (None, None) => return Ok(None),
                (Some((id, matched)), None) => {
                    self.id = None;
                    if !matched {
                        return Ok(Some(Joined::IdOnly(id)));
                    }
                }
                (None, Some((k, v))) => {
                    self.record = None;
                    return Ok(Some(Joined::TableOnly(k, v)));
                }
                (Some((id, matched)), Some((k, v))) => match id.cmp(&k) {
                    Ordering::Less => {
                        self.id = None;
                        if !matched {
                            return Ok(Some(Joined::IdOnly(id)));
                        }
                    }
                    Ordering::Greater => {
                        self.record = None;
                        return Ok(Some(Joined::TableOnly(k, v)));
                    }
                    Ordering::Equal => {
                        self.id = Some((id, true));
                        self.record = None;
                        return Ok(Some(Joined::Both(k, v)));
                    }
                },
            }
        }
    }
}

impl<const V: usize, I, R> Iterator for MergeJoin<V, I, R>
where
    I: Iterator<Item = io::Result<Key>>,
    R: Iterator<Item = io::Result<Record<V>>>,
{
    type Item = io::Result<Joined<V>>;

    fn next(&mut self) -> Option<io::Result<Joined<V>>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(j) => j.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    type Model = BTreeMap<Key, BTreeSet<[u8; 4]>>;

    fn key(a: u8, b: u8, c: u8) -> Key {
        let mut k = [0u8; 32];
        k[0] = a;
        k[7] = b;
        k[31] = c;
        k
    }

    /// Keys from a small space: 8-byte prefixes shared by several keys.
    fn all_small_keys() -> Vec<Key> {
        let mut keys = Vec::new();
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..5 {
                    keys.push(key(a, b, c));
                }
            }
        }
        keys.push([0xff; 32]);
        keys
    }

    fn key_strategy() -> impl Strategy<Value = Key> {
        prop_oneof![
            4 => (0u8..3, 0u8..3, 0u8..4).prop_map(|(a, b, c)| key(a, b, c)),
            1 => any::<[u8; 32]>(),
        ]
    }

    fn record_strategy() -> impl Strategy<Value = Record<4>> {
        (key_strategy(), 0u8..3).prop_map(|(k, v)| (k, [v, 0, 0, 1]))
    }

    fn files(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    fn check_against(table: &Table<4>, model: &Model, meta: &[u8]) {
        assert_eq!(table.meta(), meta);
        let mut keys: Vec<Key> = all_small_keys();
        keys.extend(model.keys().copied());
        keys.sort_unstable();
        keys.dedup();
        for k in &keys {
            let want: Vec<[u8; 4]> = model
                .get(k)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            assert_eq!(table.get_all(k).unwrap(), want, "get_all {k:?}");
            assert_eq!(table.contains(k).unwrap(), !want.is_empty());
        }
        let many = table.get_many(&keys).unwrap();
        for (k, got) in keys.iter().zip(&many) {
            let want: Vec<[u8; 4]> = model
                .get(k)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            assert_eq!(got, &want, "get_many {k:?}");
        }
        let merged: Vec<Record<4>> = table
            .iter_merged()
            .unwrap()
            .collect::<io::Result<_>>()
            .unwrap();
        let want: Vec<Record<4>> = model
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (*k, *v)))
            .collect();
        assert_eq!(merged, want);
        // The size-tiered invariant: each run more than twice the next newer one.
        for pair in table.runs.windows(2) {
            assert!(pair[1].1.len() * 2 < pair[0].1.len(), "run sizes {pair:?}");
        }
        // Exactly the named runs and the manifest are on disk.
        let mut expected: BTreeSet<String> = table.runs.iter().map(|(n, _)| run_name(*n)).collect();
        expected.insert(MANIFEST.to_string());
        assert_eq!(files(table.dir()), expected);
    }

    impl<const V: usize> std::fmt::Debug for Run<V> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Run({})", self.count)
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(Vec<Record<4>>),
        AddWithMeta(Vec<Record<4>>, Vec<u8>),
        SetMeta(Vec<u8>),
        CompactAll,
        Reopen,
        Clear,
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => prop::collection::vec(record_strategy(), 0..40).prop_map(Op::Add),
            2 => (
                prop::collection::vec(record_strategy(), 0..20),
                prop::collection::vec(any::<u8>(), 0..8)
            )
                .prop_map(|(r, m)| Op::AddWithMeta(r, m)),
            1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Op::SetMeta),
            1 => Just(Op::CompactAll),
            2 => Just(Op::Reopen),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn table_agrees_with_model(
            block in 1u32..5,
            ops in prop::collection::vec(op_strategy(), 1..14),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t");
            let mut table = Table::<4>::open_with_block_records(&path, block).unwrap();
            let mut model = Model::new();
            let mut meta = Vec::new();
            for op in ops {
                match op {
                    Op::Add(records) => {
                        for (k, v) in &records {
                            model.entry(*k).or_default().insert(*v);
                        }
                        table.add_run(records).unwrap();
                    }
                    Op::AddWithMeta(records, m) => {
                        for (k, v) in &records {
                            model.entry(*k).or_default().insert(*v);
                        }
                        table.add_run_with_meta(records, m.clone()).unwrap();
                        meta = m;
                    }
                    Op::SetMeta(m) => {
                        table.set_meta(m.clone()).unwrap();
                        meta = m;
                    }
                    Op::CompactAll => {
                        table.compact_all().unwrap();
                        prop_assert!(table.run_count() <= 1);
                    }
                    Op::Reopen => {
                        drop(table);
                        table = Table::open_with_block_records(&path, block).unwrap();
                    }
                    Op::Clear => {
                        table.clear().unwrap();
                        model.clear();
                        meta.clear();
                    }
                }
                check_against(&table, &model, &meta);
            }
            let stored: usize = model.values().map(|s| s.len()).sum();
            prop_assert!(table.stored_records() >= stored as u64);
        }

        #[test]
        fn id_sorter_yields_sorted_distinct_ids(
            ids in prop::collection::vec(key_strategy(), 0..600),
            limit in 0usize..200,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut sorter = IdSorter::new(dir.path(), limit);
            for id in &ids {
                sorter.push(*id).unwrap();
            }
            // Spill files are unlinked as soon as they are created.
            prop_assert!(files(dir.path()).is_empty());
            let got: Vec<Key> = sorter.finish().collect::<io::Result<_>>().unwrap();
            let want: Vec<Key> = ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn merge_join_pairs_ids_with_records(
            ids in prop::collection::vec(key_strategy(), 0..60),
            records in prop::collection::vec(record_strategy(), 0..60),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut table = Table::<4>::open_with_block_records(&dir.path().join("t"), 2).unwrap();
            table.add_run(records[..records.len() / 2].to_vec()).unwrap();
            table.add_run(records[records.len() / 2..].to_vec()).unwrap();
            let mut sorter = IdSorter::new(dir.path(), 64);
            for id in &ids {
                sorter.push(*id).unwrap();
            }
            let joined: Vec<Joined<4>> = merge_join(sorter.finish(), table.iter_merged().unwrap())
                .collect::<io::Result<_>>()
                .unwrap();
            // The model: every distinct record once, each id not in the table once, in order.
            let id_set: BTreeSet<Key> = ids.iter().copied().collect();
            let record_set: BTreeSet<Record<4>> = records.iter().copied().collect();
            let keys: BTreeSet<Key> = record_set.iter().map(|r| r.0).collect();
            let mut want: Vec<(Key, Option<[u8; 4]>, Joined<4>)> = record_set
                .iter()
                .map(|&(k, v)| {
                    let j = if id_set.contains(&k) { Joined::Both(k, v) } else { Joined::TableOnly(k, v) };
                    (k, Some(v), j)
                })
                .collect();
            want.extend(id_set.difference(&keys).map(|&k| (k, None, Joined::IdOnly(k))));
            want.sort_by_key(|a| (a.0, a.1));
            let want: Vec<Joined<4>> = want.into_iter().map(|w| w.2).collect();
            prop_assert_eq!(joined, want);
        }
    }

    #[test]
    fn merge_join_skips_repeated_ids_and_refuses_disorder() {
        let (a, b, c) = (key(1, 0, 0), key(2, 0, 0), key(3, 0, 0));
        let ids = [a, a, b, c, c].map(Ok);
        let records = [(a, [1; 4]), (a, [2; 4]), (c, [3; 4])].map(Ok);
        let joined: Vec<Joined<4>> = merge_join(ids.into_iter(), records.into_iter())
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(
            joined,
            [
                Joined::Both(a, [1; 4]),
                Joined::Both(a, [2; 4]),
                Joined::IdOnly(b),
                Joined::Both(c, [3; 4]),
            ]
        );
        let ids = [b, a].map(Ok);
        let records: [io::Result<Record<4>>; 0] = [];
        let result: io::Result<Vec<Joined<4>>> =
            merge_join(ids.into_iter(), records.into_iter()).collect();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn checksum_streams() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = checksum(&data);
        for step in [1, 3, 8, 31, 32, 33, 52, 999] {
            let mut sum = Checksum::new();
            for piece in data.chunks(step) {
                sum.update(piece);
            }
            assert_eq!(sum.finish(), whole, "step {step}");
        }
        assert_ne!(checksum(&data[..999]), whole);
        let mut flipped = data.clone();
        flipped[500] ^= 1;
        assert_ne!(checksum(&flipped), whole);
    }

    /// Keys sharing 8-byte prefixes across block boundaries, with repeated keys, and a block
    /// of one, two and three records.
    #[test]
    fn lookups_across_blocks_with_equal_prefixes() {
        let mut records: Vec<Record<4>> = Vec::new();
        for a in [1u8, 2, 4] {
            for c in 0..7u8 {
                let copies = if c % 3 == 0 { 3 } else { 1 };
                for v in 0..copies {
                    records.push((key(a, 5, c * 2), [v, c, a, 0]));
                }
            }
        }
        records.push((key(3, 0, 0), [9; 4]));
        records.sort_unstable();
        for block in [1u32, 2, 3, 128] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("run");
            let mut writer = RunWriter::<4>::create(&path, block).unwrap();
            for (k, v) in &records {
                writer.push(k, v).unwrap();
                writer.push(k, v).unwrap(); // an exact repeat is skipped
            }
            assert_eq!(writer.len(), records.len() as u64);
            let run = writer.finish().unwrap();
            assert_eq!(files(dir.path()), BTreeSet::from(["run".to_string()]));
            for run in [run, Run::open(&path).unwrap()] {
                let mut probes: Vec<Key> = records.iter().map(|r| r.0).collect();
                for a in 0..6 {
                    for c in 0..16 {
                        probes.push(key(a, 5, c));
                        probes.push(key(a, 4, c));
                        probes.push(key(a, 6, c));
                    }
                }
                probes.push([0; 32]);
                probes.push([0xff; 32]);
                probes.sort_unstable();
                probes.dedup();
                let many = run.get_many(&probes).unwrap();
                for (p, got_many) in probes.iter().zip(many) {
                    let want: Vec<[u8; 4]> =
                        records.iter().filter(|r| r.0 == *p).map(|r| r.1).collect();
                    assert_eq!(run.get_all(p).unwrap(), want, "block {block} key {p:?}");
                    assert_eq!(got_many, want, "get_many block {block} key {p:?}");
                    assert_eq!(run.contains(p).unwrap(), !want.is_empty());
                }
                let all: Vec<Record<4>> = run.iter().unwrap().collect::<io::Result<_>>().unwrap();
                assert_eq!(all, records);
            }
        }
    }

    #[test]
    fn run_writer_refuses_disorder_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let mut writer = RunWriter::<4>::create(&path, 4).unwrap();
        writer.push(&key(2, 0, 0), &[0; 4]).unwrap();
        let err = writer.push(&key(1, 0, 0), &[0; 4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        drop(writer);
        assert!(files(dir.path()).is_empty());
        assert!(Run::<4>::open(&path).is_err());
        let empty = RunWriter::<4>::create(&path, 4).unwrap().finish().unwrap();
        assert!(empty.is_empty());
        assert!(empty.get_all(&key(1, 0, 0)).unwrap().is_empty());
        assert_eq!(Run::<4>::open(&path).unwrap().iter().unwrap().count(), 0);
        // A run of another value length does not open.
        assert_eq!(
            Run::<5>::open(&path).err().unwrap().kind(),
            io::ErrorKind::InvalidData
        );
    }

    fn sample_table(path: &Path) -> (Table<4>, Model) {
        let mut table = Table::<4>::open_with_block_records(path, 3).unwrap();
        let mut model = Model::new();
        for batch in 0..5u8 {
            let records: Vec<Record<4>> = (0..20u8)
                .map(|i| (key(i % 4, i, batch), [batch, i, 0, 0]))
                .collect();
            for (k, v) in &records {
                model.entry(*k).or_default().insert(*v);
            }
            table.add_run_with_meta(records, vec![batch]).unwrap();
        }
        (table, model)
    }

    #[test]
    fn torn_or_garbled_manifest_opens_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let (table, model) = sample_table(&path);
        check_against(&table, &model, &[4]);
        drop(table);
        let good = fs::read(path.join(MANIFEST)).unwrap();
        let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        for i in 0..good.len() {
            let mut g = good.clone();
            g[i] ^= 0x40;
            damaged.push(g);
        }
        let mut longer = good.clone();
        longer.push(0);
        damaged.push(longer);
        for bad in damaged {
            let (table, _) = sample_table(&path);
            drop(table);
            fs::write(path.join(MANIFEST), &bad).unwrap();
            let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
            check_against(&table, &Model::new(), &[]);
            assert_eq!(table.run_count(), 0);
            drop(table);
            fs::remove_dir_all(&path).unwrap();
        }
        // The good manifest still opens to the same state.
        let (table, model) = sample_table(&path);
        drop(table);
        let table = Table::<4>::open(&path).unwrap();
        check_against(&table, &model, &[4]);
    }

    #[test]
    fn damaged_run_opens_empty_and_scans_catch_garbled_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let (table, model) = sample_table(&path);
        let run_path = table.runs[0].1.path().to_path_buf();
        drop(table);
        // A garbled record: lookups still work elsewhere, a scan reports it.
        let mut bytes = fs::read(&run_path).unwrap();
        bytes[40] ^= 1;
        fs::write(&run_path, &bytes).unwrap();
        let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        assert_eq!(table.meta(), &[4]);
        let result: io::Result<Vec<_>> = table.iter_merged().unwrap().collect();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        drop(table);
        // A truncated run named by the manifest: the table opens empty.
        fs::write(&run_path, &bytes[..bytes.len() - 1]).unwrap();
        let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        check_against(&table, &Model::new(), &[]);
        drop(table);
        // A missing one too.
        let (table, _) = sample_table(&path);
        let run_path = table.runs[0].1.path().to_path_buf();
        drop(table);
        fs::remove_file(run_path).unwrap();
        let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        check_against(&table, &Model::new(), &[]);
        drop(model);
        // A table of another value length opens empty.
        drop(table);
        let (table, _) = sample_table(&path);
        drop(table);
        let other = Table::<8>::open(&path).unwrap();
        assert_eq!(other.run_count(), 0);
    }

    #[test]
    fn leftovers_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let (table, model) = sample_table(&path);
        drop(table);
        for name in [
            "run-00000000000000ff",
            "run-0000000000000100.tmp",
            MANIFEST_TMP,
        ] {
            fs::write(path.join(name), b"leftover").unwrap();
        }
        fs::write(path.join("notes.txt"), b"not ours").unwrap();
        fs::create_dir(path.join("run-dir")).unwrap();
        let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        let mut expected: BTreeSet<String> = table.runs.iter().map(|(n, _)| run_name(*n)).collect();
        expected.extend([MANIFEST, "notes.txt", "run-dir"].map(String::from));
        assert_eq!(files(&path), expected);
        fs::remove_file(path.join("notes.txt")).unwrap();
        fs::remove_dir(path.join("run-dir")).unwrap();
        check_against(&table, &model, &[4]);
    }

    /// Killing the process between writing a run and committing the manifest leaves the old
    /// state (simulated: the new run file is there, the manifest is the old one).
    #[test]
    fn uncommitted_run_is_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let (table, model) = sample_table(&path);
        let old_manifest = fs::read(path.join(MANIFEST)).unwrap();
        drop(table);
        let mut table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        table
            .add_run_with_meta(vec![(key(9, 9, 9), [1; 4])], vec![9])
            .unwrap();
        table.compact_all().unwrap();
        drop(table);
        fs::write(path.join(MANIFEST), old_manifest).unwrap();
        // The old runs were deleted by the compaction: the old manifest names missing runs,
        // which opens empty; without compaction it opens to the old state.
        let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        check_against(&table, &Model::new(), &[]);
        drop(table);
        fs::remove_dir_all(&path).unwrap();
        let (table, _) = sample_table(&path);
        let old_manifest = fs::read(path.join(MANIFEST)).unwrap();
        let runs_before = table.run_count();
        drop(table);
        let mut table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        table
            .add_run_with_meta(vec![(key(9, 9, 9), [1; 4])], vec![9])
            .unwrap();
        assert_eq!(table.run_count(), runs_before + 1, "no compaction expected");
        drop(table);
        fs::write(path.join(MANIFEST), old_manifest).unwrap();
        let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        check_against(&table, &model, &[4]);
    }

    #[test]
    fn run_count_stays_logarithmic() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = Table::<4>::open_with_block_records(&dir.path().join("t"), 16).unwrap();
        let mut n = 0u64;
        let mut seed = 1u64;
        for batch in 0..300u64 {
            let size = 1 + (batch * 37 % 23);
            let records: Vec<Record<4>> = (0..size)
                .map(|_| {
                    let mut k = [0u8; 32];
                    for chunk in k.chunks_mut(8) {
                        chunk.copy_from_slice(&splitmix(&mut seed).to_le_bytes());
                    }
                    (k, [0; 4])
                })
                .collect();
            n += size;
            table.add_run(records).unwrap();
            let bound = 1 + (n as f64).log2().ceil() as usize;
            assert!(
                table.run_count() <= bound,
                "{} runs for {n}",
                table.run_count()
            );
        }
        assert_eq!(table.stored_records(), n);
    }

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_key(seed: &mut u64) -> Key {
        let mut k = [0u8; 32];
        for chunk in k.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix(seed).to_le_bytes());
        }
        k
    }

    fn status(field: &str) -> String {
        fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "?".to_string())
    }

    fn rate<F: FnMut(&Key) -> bool>(keys: &[Key], mut f: F) -> (f64, usize) {
        let start = std::time::Instant::now();
        let found = keys.iter().filter(|k| f(k)).count();
        (keys.len() as f64 / start.elapsed().as_secs_f64(), found)
    }

    /// `cargo test --release -- --ignored --nocapture bench_lookups`
    #[test]
    #[ignore]
    fn bench_lookups() {
        const N: u64 = 2_000_000;
        const BATCH: u64 = 100_000;
        const PROBES: usize = 200_000;
        println!("start: VmRSS {} VmHWM {}", status("VmRSS"), status("VmHWM"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let mut table = Table::<20>::open(&path).unwrap();
        let start = std::time::Instant::now();
        let mut seed = 42u64;
        for _ in 0..N / BATCH {
            let records: Vec<Record<20>> = (0..BATCH)
                .map(|i| (random_key(&mut seed), [i as u8; 20]))
                .collect();
            table.add_run(records).unwrap();
        }
        println!(
            "built {N} records in {:.1} s: {} runs {:?}",
            start.elapsed().as_secs_f64(),
            table.run_count(),
            table.runs.iter().map(|(_, r)| r.len()).collect::<Vec<_>>()
        );
        let fence_bytes: usize = table.runs.iter().map(|(_, r)| r.fences.len() * 8).sum();
        println!(
            "after build: fences {fence_bytes} bytes; VmRSS {} VmHWM {} (includes the \
             harness's 100k-record batch, 5.2 MB, kept by the allocator)",
            status("VmRSS"),
            status("VmHWM")
        );
        // Hits: keys regenerated from the same seed, sampled; misses: fresh random keys.
        let mut seed = 42u64;
        let mut hits: Vec<Key> = (0..N).map(|_| random_key(&mut seed)).step_by(10).collect();
        hits.truncate(PROBES);
        let mut shuffle = 7u64;
        for i in (1..hits.len()).rev() {
            hits.swap(i, (splitmix(&mut shuffle) % (i as u64 + 1)) as usize);
        }
        let mut seed = 4242u64;
        let misses: Vec<Key> = (0..PROBES).map(|_| random_key(&mut seed)).collect();
        for phase in ["tiered", "compacted"] {
            if phase == "compacted" {
                let start = std::time::Instant::now();
                table.compact_all().unwrap();
                println!("compact_all: {:.1} s", start.elapsed().as_secs_f64());
            }
            let runs = table.run_count();
            let (r, found) = rate(&hits, |k| !table.get_all(k).unwrap().is_empty());
            assert_eq!(found, hits.len());
            println!("{phase} ({runs} runs): get_all hits   {r:>10.0} lookups/s");
            let (r, found) = rate(&misses, |k| table.contains(k).unwrap());
            assert_eq!(found, 0);
            println!("{phase} ({runs} runs): contains misses {r:>10.0} lookups/s");
            let (r, _) = rate(&hits, |k| table.contains(k).unwrap());
            println!("{phase} ({runs} runs): contains hits  {r:>10.0} lookups/s");
            let mut sorted = misses.clone();
            sorted.extend_from_slice(&hits);
            sorted.sort_unstable();
            let start = std::time::Instant::now();
            let got = table.get_many(&sorted).unwrap();
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(got.iter().filter(|v| !v.is_empty()).count(), hits.len());
            println!(
                "{phase} ({runs} runs): get_many sorted  {:>10.0} lookups/s (half hits)",
                sorted.len() as f64 / secs
            );
            let start = std::time::Instant::now();
            let mut count = 0u64;
            for r in table.iter_merged().unwrap() {
                r.unwrap();
                count += 1;
            }
            assert_eq!(count, N);
            println!(
                "{phase} ({runs} runs): iter_merged {:.0} records/s",
                count as f64 / start.elapsed().as_secs_f64()
            );
        }
        println!(
            "end: VmRSS {} VmHWM {} (includes the harness's probe keys and results, ~35 MB)",
            status("VmRSS"),
            status("VmHWM")
        );
        let start = std::time::Instant::now();
        let mut sorter = IdSorter::new(dir.path(), 8 << 20);
        let mut seed = 42u64;
        for _ in 0..N {
            let id = random_key(&mut seed);
            sorter.push(id).unwrap();
            sorter.push(id).unwrap();
        }
        let joined = merge_join(sorter.finish(), table.iter_merged().unwrap())
            .filter(|j| matches!(j, Ok(Joined::Both(..))))
            .count();
        assert_eq!(joined as u64, N);
        println!(
            "IdSorter (8 MiB limit) of {} ids + merge_join: {:.1} s; VmRSS {} VmHWM {}",
            2 * N,
            start.elapsed().as_secs_f64(),
            status("VmRSS"),
            status("VmHWM")
        );
    }
}

//! Sorted runs on local disk: the chunk-index cache ([`Table`]) and the external sort of chunk
//! ids ([`IdSorter`]), so that backup, restore, check and prune use memory that does not grow
//! with the repository.
//!
//! Owns the local file formats (run files, the table manifest), the rule that keeps a table's
//! run count logarithmic, crash consistency of the table directory, and authenticating what
//! it reads back with a key the caller gives ([`Table::open_keyed`]). Must not know what
//! keys and values mean (chunk ids and locations are the index's), must not read or write the
//! repository's storage, must not choose or check where its directory is (the caller makes
//! sure only its own user can write there), and must not be the only copy of anything: a
//! table is a cache that the caller can always rebuild from the repository's `index/`
//! objects. What the table covers is recorded by the caller in the manifest's opaque `meta`.
//!
//! Why this shape. A hash map of every chunk costs about 100 bytes of RAM per chunk: 130 GB
//! for 10 TB of 8 KiB chunks. Here the records (32-byte key, `V`-byte value) live in immutable
//! files of sorted runs, and memory holds only a fence per block of 128 records: the first 8
//! bytes of the block's first key. Keys are uniformly distributed hashes, so a binary search
//! of the fences finds the one block that can hold a key, and one positioned read of that
//! block (6.6 KiB for the index's 52-byte records) answers the lookup; of the part of it
//! around the key's interpolated place, where that part is sure to hold it
//! ([`Run::read_near`]). The in-memory cost is
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
//! damaged: [`Table::clear`] it and rebuild. These checksums catch damage, not tampering:
//! anyone can recompute them (see authentication below).
//!
//! Table manifest (`MANIFEST`), the commit point, rewritten as `MANIFEST.tmp` then renamed:
//! ```text
//! "SRTBL\0\0\x02" ‖ V (u32 LE) ‖ next run number (u64 LE) ‖ run count (u32 LE)
//! ‖ per run, oldest first: run number (u64 LE) ‖ record count (u64 LE)
//!   ‖ BLAKE3 of the whole run file (32)
//! ‖ meta length (u32 LE) ‖ meta ‖ tag: keyed BLAKE3 of all of the above (32)
//! ```
//! A run is written under a temporary name, renamed into place, and only then named by a new
//! manifest; runs a compaction replaced are deleted after it. A process killed at any moment
//! therefore leaves a directory that opens to the old or the new state; [`Table::open`]
//! deletes the table's own files the manifest does not name (`run-*`, `MANIFEST.tmp`), and
//! opens a missing, torn or garbled manifest, or one naming a run that fails its checks, as
//! an empty table ([`Table::discarded`] says why). Nothing is fsynced: after a power loss the
//! same checks catch a truncated file, and the cache can be rebuilt. One process at a time:
//! the caller holds a lock on the directory.
//!
//! Authentication. Whoever can write the directory could otherwise hand the caller any
//! records it likes, with checksums that pass: for the index cache, entries claiming chunks
//! the repository does not hold, so that a backup would skip storing them and its snapshot
//! would not restore. So the manifest's tag is BLAKE3 in keyed mode under a key the caller
//! derives from its secrets ([`Table::open_keyed`]; [`Table::open`] uses a fixed public key,
//! for tables in private temporary directories, where the tag only catches damage). The
//! manifest names each run's BLAKE3 hash, computed while the run is written, and a keyed
//! open reads every run once, in 1 MiB pieces, checking it against that hash before anything
//! is looked up; a run read later is read through the descriptor that was checked (the file
//! is created mode 0600, so only its owner could change it in place). What the caller keeps
//! beside the table (the index's pack table) it covers itself, through `meta`, which the tag
//! covers. Why one hash per run checked at open rather than a MAC per block checked by each
//! lookup: it keeps memory at the fences alone (per-block tags of 16 bytes would triple it,
//! 0.19 bytes per record) and keeps lookups, scans and the run format as they were; the cost
//! is one sequential read of the table per open, about 52 bytes per chunk (measured: see
//! `repository::cache`). Every file here is opened with `O_NOFOLLOW` and created new
//! (`O_EXCL`), so a link planted in the directory is never followed.
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
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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
const MANIFEST_MAGIC: &[u8; 8] = b"SRTBL\0\0\x02";
const TAG_LEN: usize = 32;
/// The manifest key of [`Table::open`]: public, so its tag catches damage, not tampering.
const PUBLIC_KEY: [u8; 32] = *b"strongroom table, public key v2.";
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

/// Opens an existing file for reading, refusing to follow a link in its place (a link
/// there is an [`io::ErrorKind::InvalidData`] error: the table is not as it left it).
fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                invalid(format!("{} is a link", path.display()))
            } else {
                e
            }
        })
}

/// Creates `path` anew (mode 0600, read and write), removing a leftover of that name first;
/// never follows a link in its place (`O_EXCL`, `O_NOFOLLOW`).
pub(super) fn create_private(path: &Path) -> io::Result<File> {
    let create = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // A leftover of a killed process (or something planted): unlinking removes the
            // name, never what a link points to.
            fs::remove_file(path)?;
            create()
        }
        r => r,
    }
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

mod checksum;
mod merge;
mod run;
mod sort;

use checksum::*;
use merge::*;
use run::*;
pub use run::{Run, RunIter, RunWriter};
pub use sort::{IdSorter, Joined, MergeJoin, SortedIds, merge_join};

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
    /// Authenticates the manifest: the caller's key, or [`PUBLIC_KEY`].
    key: [u8; 32],
    /// Whether runs are checked against their hashes at open (a caller's key was given).
    keyed: bool,
    /// Why the table opened empty though its directory held one.
    discarded: Option<String>,
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
    hash: [u8; 32],
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
    fn encode<const V: usize>(&self, key: &[u8; 32]) -> io::Result<Vec<u8>> {
        let meta_len = u32::try_from(self.meta.len())
            .map_err(|_| invalid_input("table meta longer than 4 GiB"))?;
        let mut b = Vec::with_capacity(60 + self.runs.len() * 48 + self.meta.len());
        b.extend_from_slice(MANIFEST_MAGIC);
        b.extend_from_slice(&(V as u32).to_le_bytes());
        b.extend_from_slice(&self.next_run.to_le_bytes());
        b.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for r in &self.runs {
            b.extend_from_slice(&r.number.to_le_bytes());
            b.extend_from_slice(&r.count.to_le_bytes());
            b.extend_from_slice(&r.hash);
        }
        b.extend_from_slice(&meta_len.to_le_bytes());
        b.extend_from_slice(&self.meta);
        let tag = blake3::keyed_hash(key, &b);
        b.extend_from_slice(tag.as_bytes());
        Ok(b)
    }

    fn decode<const V: usize>(bytes: &[u8], key: &[u8; 32]) -> io::Result<Self> {
        if bytes
            .get(..8)
            .is_some_and(|m| m[..7] == MANIFEST_MAGIC[..7] && m[7] != MANIFEST_MAGIC[7])
        {
            return Err(invalid("table manifest written by another version"));
        }
        if bytes.len() < 8 + TAG_LEN {
            return Err(invalid("table manifest cut short"));
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(key, body) != <[u8; 32]>::try_from(tag).expect("32 bytes") {
            return Err(invalid(
                "table manifest fails authentication (changed, or written under another key)",
            ));
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
        let mut runs = Vec::with_capacity(n.min(body.len() / 48));
        for _ in 0..n {
            let number = c.u64()?;
            let count = c.u64()?;
            let hash: [u8; 32] = c.take(32)?.try_into().expect("32 bytes");
            if number >= next_run || runs.iter().any(|r: &Listed| r.number == number) {
                return Err(invalid(
                    "table manifest names a run twice or from the future",
                ));
            }
            runs.push(Listed {
                number,
                count,
                hash,
            });
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
    /// Opens (creating if need be) the table in `dir`, with the default block size, for a
    /// directory no one else can write: its checks catch damage, not tampering (see
    /// [`Table::open_keyed`]).
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with_block_records(dir, DEFAULT_BLOCK_RECORDS)
    }

    /// As [`Table::open`], writing new runs with a fence every `block_records` records.
    pub fn open_with_block_records(dir: &Path, block_records: u32) -> io::Result<Self> {
        Self::open_with(dir, block_records, None)
    }

    /// Opens (creating if need be) the table in `dir`, authenticated under `key` (see the
    /// module docs): its manifest must carry a tag made with `key`, and every run is read
    /// once and checked against the hash the manifest names, before this returns. A table
    /// that fails opens empty, and [`Table::discarded`] says why.
    pub fn open_keyed(dir: &Path, key: &[u8; 32]) -> io::Result<Self> {
        Self::open_with(dir, DEFAULT_BLOCK_RECORDS, Some(key))
    }

    pub(super) fn open_with(
        dir: &Path,
        block_records: u32,
        key: Option<&[u8; 32]>,
    ) -> io::Result<Self> {
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
            key: key.copied().unwrap_or(PUBLIC_KEY),
            keyed: key.is_some(),
            discarded: None,
        };
        match table.load() {
            Ok(()) => {}
            Err(e) if is_damage(&e) => {
                // Torn, garbled or forged: the cache starts over (the caller rebuilds it).
                table.discarded = Some(e.to_string());
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
        let mut bytes = Vec::new();
        match open_nofollow(&self.dir.join(MANIFEST)) {
            Ok(mut f) => f.read_to_end(&mut bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.write_manifest(&[], &[]),
            Err(e) => return Err(e),
        };
        let manifest = Manifest::decode::<V>(&bytes, &self.key)?;
        self.next_run = manifest.next_run;
        for listed in &manifest.runs {
            let mut run = Run::open(&self.dir.join(run_name(listed.number)))?;
            if run.len() != listed.count {
                return Err(invalid("run length disagrees with the table manifest"));
            }
            if self.keyed {
                run.check_hash(&listed.hash)?;
            }
            run.hash = listed.hash;
            self.runs.push((listed.number, run));
        }
        self.meta = manifest.meta;
        Ok(())
    }

    /// Why the table opened empty though its directory held one (damaged, failed
    /// authentication, another format); `None` when it opened as it was.
    pub fn discarded(&self) -> Option<&str> {
        self.discarded.as_deref()
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
                    hash: run.hash,
                })
                .collect(),
            meta: meta.to_vec(),
        };
        let bytes = manifest.encode::<V>(&self.key)?;
        let tmp = self.dir.join(MANIFEST_TMP);
        create_private(&tmp)?.write_all(&bytes)?;
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

    /// Replaces every run by one run of `records` (ascending (key, value) order required,
    /// exact repeats skipped) and the caller's record by `meta` (asked once the records are
    /// written), in one manifest write: how a caller drops records without rebuilding (a
    /// prune removing deleted packs). The new run is streamed to disk, so `records` may be
    /// a scan of this table's own runs ([`Table::iter_merged`]).
    pub fn replace_all(
        &mut self,
        records: impl Iterator<Item = io::Result<Record<V>>>,
        meta: impl FnOnce() -> Vec<u8>,
    ) -> io::Result<()> {
        let (number, path) = self.new_run_path();
        let mut writer = RunWriter::create(&path, self.block_records)?;
        for record in records {
            let (k, v) = record?;
            writer.push(&k, &v)?;
        }
        let run = writer.finish()?;
        let meta = meta();
        let listed: Vec<(u64, &Run<V>)> = if run.is_empty() {
            Vec::new()
        } else {
            vec![(number, &run)]
        };
        if let Err(e) = self.write_manifest(&listed, &meta) {
            drop(run);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let old = std::mem::take(&mut self.runs);
        if run.is_empty() {
            drop(run);
            let _ = fs::remove_file(&path);
        } else {
            self.runs.push((number, run));
        }
        self.meta = meta;
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

#[cfg(test)]
mod speed;
#[cfg(test)]
mod tests;

//! The backup pipeline: chunks in, packs and an index out.
//!
//! Owns the streaming path from an engine's chunks to durable packs, with bounded memory
//! (docs/ARCHITECTURE.md, "Invariants": memory is bounded) and both cores busy. Must not know what the chunks mean: engines decide the
//! chunk boundaries and hand over batches in order.
//!
//! ```text
//!  engine ──batches──▶ workers (one per core): keyed hash, dedup; a changed page against
//!                      the parent's at its position (page deltas, `delta`); the batch's
//!                      new chunks become one segment: zstd, seal
//!                          │ (out of order)
//!                          ▼
//!                      collector: restores order, builds chunk-id lists, fills packs
//!                          │ (16 MiB packs, one queued)
//!                          ▼
//!                      uploaders (2): put pack (atomic, durable)
//! ```
//! In flight at most: 4 queued batches + one per worker + the reorder window, one pack being
//! filled, one queued and two uploading: about 90 MB whatever the database size.
//!
//! Dedup: a chunk is new if neither the repository index nor this session has seen it; the
//! first worker to claim an id encodes it, the rest only record the id. Claims are held in
//! memory only until the chunk's pack is durable and indexed: every [`INDEX_FLUSH`] entries
//! the session writes an index object and hands the entries to the index
//! ([`Index::remember`], on local disk), so a first backup of any size keeps its memory.
//!
//! Page deltas (docs/ARCHITECTURE.md, "Page deltas"): an engine names a file's parent
//! ([`ChunkSink::base_on`]); each batch then carries its position, the worker compares each
//! page with the parent's record and reads the bases of changed pages itself, and the
//! collector writes a record blob beside each list blob.
//!
//! Ordering (docs/ARCHITECTURE.md, "Invariants": the manifest is the commit point): [`BackupWriter::finish`] writes the index object only after every
//! pack upload returned, and the caller writes the manifest only after `finish`.

use super::Repository;
use super::delta::{self, Parent};
use super::index::{Entry, Index};
use super::pack::{self, Coding, FinishedPack, Layout, PACK_TARGET, PackBuilder};
use super::snapshot::{Chunking, DeltaRecord, FileEntry, IDS_PER_LIST, TreeEntry};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::progress::Progress;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Index entries gathered before they are written out as one index object.
///
/// 64 Ki entries (~3.4 MB sealed): the entries waiting, the ids claimed and the batch handed
/// to the session table all scale with it, and at 262 Ki a backup of 10 GB after a 1% update
/// peaked at 246 MB against 100 MB for 1 GB (bench/memory.sh); at 10 TB this is ~20 K index
/// objects, which the local cache reads once.
const INDEX_FLUSH: usize = 65_536;

/// A run of consecutive chunks handed over by an engine: the bytes, and where each chunk ends.
pub struct Batch {
    /// Concatenated chunk bytes.
    pub data: Vec<u8>,
    /// End offset of each chunk within `data`, increasing; the last equals `data.len()`.
    pub ends: Vec<usize>,
}

/// What travels down the pipeline: a batch of chunks, or the end of the file they belong to.
enum Item {
    /// A batch, the position of its first chunk in its file, and the parent file's view
    /// when changed pages may be stored as deltas.
    Batch(Batch, u64, Option<Arc<Parent>>),
    EndFile(FileEnd),
    /// A whole file stored by an earlier snapshot, taken over as it is.
    Reused(FileEntry),
}

/// A file's end, with what the collector needs to make its entry.
struct FileEnd {
    name: String,
    chunking: Chunking,
    tree: Option<TreeEntry>,
}

struct Numbered {
    seq: u64,
    item: Item,
}

struct Processed {
    seq: u64,
    ids: Vec<ChunkId>,
    /// The batch's positions stored as deltas, in order.
    records: Vec<DeltaRecord>,
    segment: Option<pack::Segment>,
    bytes: u64,
    end: Option<FileEnd>,
    reused: Option<FileEntry>,
}

/// Keeps the first error any pipeline thread hit.
#[derive(Default)]
struct Failure(Mutex<Option<Error>>);

impl Failure {
    fn set(&self, e: Error) {
        let mut g = self.0.lock().expect("failure lock");
        if g.is_none() {
            *g = Some(e);
        }
    }
    fn is_set(&self) -> bool {
        self.0.lock().expect("failure lock").is_some()
    }
    fn take(&self) -> Option<Error> {
        self.0.lock().expect("failure lock").take()
    }
}

/// What a backup session added to the repository.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteStats {
    /// Chunks stored for the first time.
    pub new_chunks: u64,
    /// Chunks already present (deduplicated).
    pub reused_chunks: u64,
    /// Bytes of packs and index objects written.
    pub added: u64,
    /// Logical bytes handed in.
    pub size: u64,
}

/// One backup's writing session: any number of files, then [`BackupWriter::finish`].
pub struct BackupWriter<'r> {
    repo: &'r Repository,
    index: Index,
    claimed: Mutex<HashSet<ChunkId>>,
    new_entries: Mutex<Vec<Entry>>,
    pack_bytes: AtomicU64,
    new_chunks: AtomicU64,
    reused_chunks: AtomicU64,
    size: AtomicU64,
}

/// Where an engine sends its batches.
pub struct ChunkSink<'a> {
    tx: Sender<Numbered>,
    seq: u64,
    failure: &'a Failure,
    progress: &'a dyn Progress,
    /// Position in the current file of the next chunk pushed.
    position: u64,
    /// The current file's parent, when its changed pages may be stored as deltas.
    parent: Option<Arc<Parent>>,
    /// Whether this session can read what it stores against (not with an append-only key).
    deltas: bool,
}

impl ChunkSink<'_> {
    /// Hands a batch to the pipeline; fails when the pipeline has failed.
    pub fn push(&mut self, batch: Batch) -> Result<()> {
        let n = batch.data.len() as u64;
        let first = self.position;
        self.position += batch.ends.len() as u64;
        self.send(Item::Batch(batch, first, self.parent.clone()))?;
        self.progress.advance(n);
        Ok(())
    }

    /// Stores the coming file's changed pages as deltas against `parent`, the file an
    /// earlier snapshot stored under this name (docs/ARCHITECTURE.md, "Page deltas"). Call
    /// before the file's first batch; the caller passes only a file cut into the same fixed
    /// chunks whose chunks are all still stored ([`BackupWriter::still_stored`] says so).
    pub fn base_on(&mut self, parent: Option<FileEntry>) {
        self.parent = parent
            .filter(|_| self.deltas)
            .map(|e| Arc::new(Parent::new(e)));
    }

    /// Ends the current file: every batch pushed since the previous end belongs to a file
    /// called `name` (in a session of many files, see [`BackupWriter::write_files`]).
    pub fn end_file(
        &mut self,
        name: &str,
        chunking: Chunking,
        tree: Option<TreeEntry>,
    ) -> Result<()> {
        (self.position, self.parent) = (0, None);
        self.send(Item::EndFile(FileEnd {
            name: name.to_string(),
            chunking,
            tree,
        }))
    }

    /// Takes over `entry`, a file an earlier snapshot stored, between two files: its chunks
    /// are referenced, not read. The caller has made sure every one of them is still stored
    /// ([`BackupWriter::still_stored`]).
    pub fn reuse_file(&mut self, entry: FileEntry) -> Result<()> {
        let n = entry.size;
        self.send(Item::Reused(entry))?;
        self.progress.advance(n);
        Ok(())
    }

    fn send(&mut self, item: Item) -> Result<()> {
        let seq = self.seq;
        self.seq += 1;
        if self.tx.send(Numbered { seq, item }).is_err() {
            return Err(self
                .failure
                .take()
                .unwrap_or_else(|| Error::Internal("the backup pipeline stopped".into())));
        }
        Ok(())
    }
}

fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

impl<'r> BackupWriter<'r> {
    /// Starts a session, loading the repository's index for deduplication.
    pub fn new(repo: &'r Repository) -> Result<Self> {
        Ok(BackupWriter {
            index: repo.load_index()?,
            repo,
            claimed: Mutex::default(),
            new_entries: Mutex::default(),
            pack_bytes: AtomicU64::new(0),
            new_chunks: AtomicU64::new(0),
            reused_chunks: AtomicU64::new(0),
            size: AtomicU64::new(0),
        })
    }

    fn is_new(&self, id: &ChunkId) -> bool {
        // A chunk whose only copy is in a missing or damaged pack is stored again: a new
        // snapshot must never reference data the repository cannot give back.
        !self.index.vouches_for(id) && self.claimed.lock().expect("claim lock").insert(*id)
    }

    /// Stores one file whose chunks `produce` pushes, in order, into the sink it is given.
    pub fn write_file<F>(
        &self,
        name: &str,
        chunking: Chunking,
        progress: &dyn Progress,
        produce: F,
    ) -> Result<FileEntry>
    where
        F: FnOnce(&mut ChunkSink<'_>) -> Result<()>,
    {
        let coding = self.coding_for(chunking);
        let mut files = self.write_files(coding, progress, |sink| {
            produce(sink)?;
            sink.end_file(name, chunking, None)
        })?;
        Ok(files.pop().expect("one file was ended"))
    }

    /// The repository this session writes to.
    pub fn repository(&self) -> &'r Repository {
        self.repo
    }

    /// How segments of chunks cut this way are encoded: pages at the repository's level as
    /// they are; streams (logical dumps) at its stream level, laid out by columns where they
    /// are rows of text and the repository's format allows ([`RepoConfig::stream_layout`]).
    ///
    /// [`RepoConfig::stream_layout`]: super::RepoConfig::stream_layout
    pub fn coding_for(&self, chunking: Chunking) -> Coding {
        match chunking {
            Chunking::Fixed { .. } => Coding::pages(self.repo.config().compression_level),
            Chunking::ContentDefined => Coding {
                level: self.repo.config().stream_compression_level,
                layout: self.repo.config().stream_layout(),
            },
        }
    }

    /// Stores many files in one session: `produce` pushes each file's chunks and then calls
    /// [`ChunkSink::end_file`]. The pipeline runs once for all of them, so packs fill across
    /// file boundaries (a cluster is thousands of small files; a pipeline per file would ship
    /// a part-filled pack after each). Returns the entries in the order the files ended.
    pub fn write_files<F>(
        &self,
        coding: Coding,
        progress: &dyn Progress,
        produce: F,
    ) -> Result<Vec<FileEntry>>
    where
        F: FnOnce(&mut ChunkSink<'_>) -> Result<()>,
    {
        let failure = Failure::default();
        let (batch_tx, batch_rx) = bounded::<Numbered>(4);
        let (done_tx, done_rx) = bounded::<Processed>(4);
        let (pack_tx, pack_rx) = bounded::<FinishedPack>(1);

        let result = std::thread::scope(|s| {
            for _ in 0..workers() {
                let (rx, tx, failure) = (batch_rx.clone(), done_tx.clone(), &failure);
                s.spawn(move || {
                    if let Err(e) = self.work(coding, rx, tx) {
                        failure.set(e);
                    }
                });
            }
            drop((batch_rx, done_tx));
            for _ in 0..2 {
                let (rx, failure) = (pack_rx.clone(), &failure);
                s.spawn(move || {
                    // Record the failure before the receiver drops, so the real storage error
                    // wins over the collector's "upload stopped".
                    if let Err(e) = self.upload(&rx) {
                        failure.set(e);
                    }
                    drop(rx);
                });
            }
            drop(pack_rx);
            let collector = s.spawn(|| {
                let r = self.collect(done_rx, pack_tx, &failure);
                if let Err(e) = &r {
                    failure.set(Error::Internal(e.to_string()));
                }
                r
            });
            let mut sink = ChunkSink {
                tx: batch_tx,
                seq: 0,
                failure: &failure,
                progress,
                position: 0,
                parent: None,
                deltas: self.repo.key().role() == crate::crypto::KeyRole::Full,
            };
            let produced = produce(&mut sink);
            drop(sink);
            let collected = collector.join().expect("collector thread panicked");
            (produced, collected)
        });
        // Uploaders have joined with the scope: every pack is durable or an error is recorded.
        let (produced, collected) = result;
        if let Some(e) = failure.take() {
            return Err(e);
        }
        produced?;
        let files = collected?;
        self.size
            .fetch_add(files.iter().map(|f| f.size).sum(), Ordering::Relaxed);
        Ok(files)
    }

    fn work(&self, coding: Coding, rx: Receiver<Numbered>, tx: Sender<Processed>) -> Result<()> {
        let mut z = zstd::bulk::Compressor::new(coding.level)
            .map_err(|e| Error::Internal(format!("zstd initialisation failed: {e}")))?;
        let mut bases = delta::Bases::default();
        let key = self.repo.key();
        for Numbered { seq, item } in rx {
            let (end, reused) = match item {
                Item::Batch(b, first, parent) => {
                    let at = (first, parent.as_deref());
                    if !self.process(seq, b, at, key, (&mut z, coding.layout, &mut bases), &tx)? {
                        break;
                    }
                    continue;
                }
                Item::EndFile(end) => (Some(end), None),
                Item::Reused(entry) => (None, Some(entry)),
            };
            let p = Processed {
                seq,
                ids: Vec::new(),
                records: Vec::new(),
                segment: None,
                bytes: 0,
                end,
                reused,
            };
            if tx.send(p).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Hashes, dedups and encodes one batch (a changed page as a delta against the parent's
    /// page at its position, `at`, when that pays); false when the collector is gone.
    fn process(
        &self,
        seq: u64,
        batch: Batch,
        at: (u64, Option<&Parent>),
        key: &crate::crypto::MasterKey,
        (z, layout, bases): (
            &mut zstd::bulk::Compressor<'static>,
            Layout,
            &mut delta::Bases,
        ),
        tx: &Sender<Processed>,
    ) -> Result<bool> {
        let (first, parent) = at;
        let mut ids = Vec::with_capacity(batch.ends.len());
        let mut records = Vec::new();
        let mut new: Vec<(ChunkId, &[u8])> = Vec::new();
        // Changed pages that may become deltas.
        let mut changed: Vec<delta::Changed> = Vec::new();
        let mut start = 0;
        for (i, &end) in batch.ends.iter().enumerate() {
            let data = &batch.data[start..end];
            start = end;
            let id = key.chunk_id(data);
            let position = first + i as u64;
            let before = match parent {
                Some(p) => p.at(self.repo, &self.index, position)?,
                None => None,
            };
            if let Some(b) = before {
                if let Some(r) = b.record.filter(|_| b.is_unchanged(&id)) {
                    // Unchanged since the parent, which stored it as a delta: so do we.
                    if self.index.vouches_for(&b.stored) && self.index.vouches_for(&r.base) {
                        ids.push(b.stored);
                        records.push(DeltaRecord { position, ..r });
                        continue;
                    }
                } else if !b.is_unchanged(&id)
                    && !self.index.vouches_for(&id)
                    && !self.claimed.lock().expect("claim lock").contains(&id)
                {
                    changed.push(delta::Changed {
                        at: i,
                        content: id,
                        base: b.base(),
                    });
                    ids.push(id);
                    continue;
                }
            }
            if self.is_new(&id) {
                new.push((id, data));
            }
            ids.push(id);
        }
        // A delta's id is new by construction (a hash over its base and the change): only
        // this session's claims are asked, not the index.
        let deltas = if changed.is_empty() {
            Vec::new()
        } else {
            bases.encode_batch(
                self.repo,
                &self.index,
                (&batch.data, &batch.ends, first),
                &changed,
                &mut ids,
                &mut records,
                |d| self.claimed.lock().expect("claim lock").insert(*d),
            )
        };
        for c in &changed {
            if ids[c.at] == c.content && self.is_new(&c.content) {
                let s = if c.at == 0 { 0 } else { batch.ends[c.at - 1] };
                new.push((c.content, &batch.data[s..batch.ends[c.at]]));
            }
        }
        new.extend(deltas.iter().map(|(id, blob)| (*id, blob.as_slice())));
        self.new_chunks
            .fetch_add(new.len() as u64, Ordering::Relaxed);
        self.reused_chunks
            .fetch_add((ids.len() - new.len()) as u64, Ordering::Relaxed);
        let segment = (!new.is_empty()).then(|| pack::encode_segment(key, z, &new, layout));
        let bytes = batch.data.len() as u64;
        records.sort_unstable_by_key(|r| r.position);
        Ok(tx
            .send(Processed {
                seq,
                ids,
                records,
                segment,
                bytes,
                end: None,
                reused: None,
            })
            .is_ok())
    }

    /// Whether every chunk of `file` (of snapshot `snap`), and every list blob naming them,
    /// is still stored in a pack the repository vouches for: only then may a new snapshot
    /// take the file over without reading it ([`ChunkSink::reuse_file`]).
    pub fn still_stored(&self, snap: &super::snapshot::Snapshot, file: &FileEntry) -> Result<bool> {
        for l in &file.lists {
            match ChunkId::from_hex(l) {
                Some(id) if self.index.vouches_for(&id) => {}
                _ => return Ok(false),
            }
        }
        // Page deltas need their record blobs and their bases too.
        let Some(records) = file.delta_ids() else {
            return Ok(false);
        };
        if !records.iter().all(|id| self.index.vouches_for(id)) {
            return Ok(false);
        }
        let mut all = true;
        let read =
            super::reader::for_each_window(self.repo, &self.index, snap, file, |_, ids, _| {
                all &= ids.iter().all(|id| self.index.vouches_for(id));
                Ok(())
            })
            .and_then(|()| {
                super::usage::for_each_base(self.repo, &self.index, snap, &records, |b| {
                    all &= self.index.vouches_for(&b);
                    Ok(())
                })
            });
        if let Err(e) = read {
            // Damage the index does not know yet: read the file instead.
            tracing::warn!("{e}; reading {} again instead of reusing it", file.name);
            return Ok(false);
        }
        Ok(all)
    }

    /// Restores order, writes list blobs, fills packs; returns the entries of the files
    /// ended, in order.
    fn collect(
        &self,
        rx: Receiver<Processed>,
        tx: Sender<FinishedPack>,
        failure: &Failure,
    ) -> Result<Vec<FileEntry>> {
        let key = self.repo.key();
        let mut z = zstd::bulk::Compressor::new(1)
            .map_err(|e| Error::Internal(format!("zstd initialisation failed: {e}")))?;
        let mut pending: BTreeMap<u64, Processed> = BTreeMap::new();
        let mut next = 0u64;
        let mut pack = PackBuilder::default();
        let mut list: Vec<u8> = Vec::with_capacity(IDS_PER_LIST * 32);
        let mut lists = Vec::new();
        // The current list's delta records, and one entry per list blob written.
        let mut recs: Vec<u8> = Vec::new();
        let mut deltas: Vec<Option<ChunkId>> = Vec::new();
        let mut chunks = 0u64;
        let mut size = 0u64;
        let mut files = Vec::new();
        let send = |pack: &mut PackBuilder| -> Result<()> {
            tx.send(pack.finish(key))
                .map_err(|_| Error::Internal("pack upload stopped".into()))
        };
        // A list blob, and beside it the blob of its positions' delta records (if any).
        let mut flush_list = |list: &mut Vec<u8>,
                              recs: &mut Vec<u8>,
                              pack: &mut PackBuilder,
                              lists: &mut Vec<_>,
                              deltas: &mut Vec<Option<ChunkId>>| {
            let id = key.chunk_id(list);
            let rid = (!recs.is_empty()).then(|| key.chunk_id(recs));
            let mut blobs: Vec<(ChunkId, &[u8])> = Vec::new();
            if self.is_new(&id) {
                blobs.push((id, list.as_slice()));
            }
            if let Some(r) = rid.filter(|r| self.is_new(r)) {
                blobs.push((r, recs.as_slice()));
            }
            if !blobs.is_empty() {
                pack.add(&pack::encode_segment(key, &mut z, &blobs, Layout::AsIs));
            }
            lists.push(id);
            deltas.push(rid);
            list.clear();
            recs.clear();
        };
        for p in rx {
            if failure.is_set() {
                // An uploader failed: stop reading the database instead of finishing the pass.
                return Err(Error::Internal("the backup pipeline stopped".into()));
            }
            pending.insert(p.seq, p);
            while let Some(p) = pending.remove(&next) {
                next += 1;
                size += p.bytes;
                if let Some(seg) = &p.segment {
                    pack.add(seg);
                    if pack.len() >= PACK_TARGET {
                        send(&mut pack)?;
                    }
                }
                let mut records = p.records.iter().peekable();
                for id in &p.ids {
                    if let Some(r) = records.next_if(|r| r.position == chunks) {
                        r.encode_into(&mut recs);
                    }
                    list.extend_from_slice(&id.0);
                    chunks += 1;
                    if list.len() == IDS_PER_LIST * 32 {
                        flush_list(&mut list, &mut recs, &mut pack, &mut lists, &mut deltas);
                        if pack.len() >= PACK_TARGET {
                            send(&mut pack)?;
                        }
                    }
                }
                if let Some(entry) = p.reused {
                    files.push(entry);
                }
                if let Some(end) = p.end {
                    if !list.is_empty() {
                        flush_list(&mut list, &mut recs, &mut pack, &mut lists, &mut deltas);
                        if pack.len() >= PACK_TARGET {
                            send(&mut pack)?;
                        }
                    }
                    files.push(FileEntry {
                        name: end.name,
                        size,
                        chunks,
                        chunking: end.chunking,
                        lists: lists.iter().map(|l: &ChunkId| l.to_hex()).collect(),
                        deltas: if deltas.iter().any(Option::is_some) {
                            deltas.iter().map(|d| d.map(|d| d.to_hex())).collect()
                        } else {
                            Vec::new()
                        },
                        tree: end.tree,
                    });
                    lists.clear();
                    deltas.clear();
                    (size, chunks) = (0, 0);
                }
            }
        }
        if !pending.is_empty() {
            // A worker stopped early; the recorded failure says why.
            return Err(Error::Internal("the backup pipeline stopped".into()));
        }
        // Chunks after the last end belong to a file whose producer failed: its own error
        // is what the session reports.
        if !pack.is_empty() {
            send(&mut pack)?;
        }
        Ok(files)
    }

    fn upload(&self, rx: &Receiver<FinishedPack>) -> Result<()> {
        for p in rx {
            self.repo.storage().put(&p.id.object_key(), &p.bytes)?;
            self.pack_bytes
                .fetch_add(p.bytes.len() as u64, Ordering::Relaxed);
            let full = {
                let mut entries = self.new_entries.lock().expect("entries lock");
                entries.extend(p.entries);
                (entries.len() >= INDEX_FLUSH).then(|| std::mem::take(&mut *entries))
            };
            // Index entries of packs already durable may be written at any time; doing it as
            // they accumulate keeps this session's memory from growing with the database.
            if let Some(entries) = full {
                let n = self.repo.write_index(&entries)?;
                self.pack_bytes.fetch_add(n, Ordering::Relaxed);
                // From now on the index answers for these chunks (from disk), so the set of
                // ids claimed in memory holds only what is in flight: memory stays bounded
                // whatever the size of a first backup.
                self.index.remember(&entries)?;
                let mut claimed = self.claimed.lock().expect("claim lock");
                for (id, _) in &entries {
                    claimed.remove(id);
                }
            }
        }
        Ok(())
    }

    /// Writes the index for everything this session stored; call before writing the manifest.
    pub fn finish(self) -> Result<WriteStats> {
        let entries = self.new_entries.into_inner().expect("entries lock");
        let index_bytes = self.repo.write_index(&entries)?;
        Ok(WriteStats {
            new_chunks: self.new_chunks.into_inner(),
            reused_chunks: self.reused_chunks.into_inner(),
            added: self.pack_bytes.into_inner() + index_bytes,
            size: self.size.into_inner(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chunker::{CdcBatcher, FixedBatcher};
    use crate::crypto::KdfParams;
    use crate::progress::Silent;
    use crate::repository::layout::ObjectKind;
    use crate::repository::snapshot::{FileEntry, Snapshot};
    use crate::storage::Storage;

    /// An encrypted repository in memory, with a cheap key derivation.
    pub(crate) fn memory_repo() -> Repository {
        let cheap = KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        Repository::init(Storage::from_url("memory://").unwrap(), Some(b"pw"), cheap).unwrap()
    }

    /// `n` pseudo-random 4 KiB pages.
    pub(crate) fn pages(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::hotel::Rng::new(seed);
        (0..n * 4096 / 8)
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .collect()
    }

    /// Stores `data` as one page-chunked file in a session of its own.
    pub(crate) fn store_pages(repo: &Repository, data: &[u8]) -> (FileEntry, WriteStats) {
        store_pages_on(repo, data, None)
    }

    /// [`store_pages`], its changed pages stored against `parent` (page deltas).
    pub(crate) fn store_pages_on(
        repo: &Repository,
        data: &[u8],
        parent: Option<&FileEntry>,
    ) -> (FileEntry, WriteStats) {
        let w = BackupWriter::new(repo).unwrap();
        let f = w
            .write_file("main.db", Chunking::Fixed { size: 4096 }, &Silent, |sink| {
                sink.base_on(parent.cloned());
                let mut b = FixedBatcher::new(4096);
                for page in data.chunks(4096) {
                    if let Some(x) = b.push(page) {
                        sink.push(x)?;
                    }
                }
                if let Some(x) = b.finish() {
                    sink.push(x)?;
                }
                Ok(())
            })
            .unwrap();
        (f, w.finish().unwrap())
    }

    /// Stores `data` as one content-defined stream in a session of its own.
    pub(crate) fn store_stream(repo: &Repository, data: &[u8]) -> FileEntry {
        let w = BackupWriter::new(repo).unwrap();
        let f = w
            .write_file("dump", Chunking::ContentDefined, &Silent, |sink| {
                let mut b = CdcBatcher::new();
                for piece in data.chunks(100_000) {
                    if let Some(x) = b.push(piece) {
                        sink.push(x)?;
                    }
                }
                if let Some(x) = b.finish() {
                    sink.push(x)?;
                }
                Ok(())
            })
            .unwrap();
        w.finish().unwrap();
        f
    }

    /// A manifest holding `files`, as a backup would write it.
    pub(crate) fn snapshot_of(repo: &Repository, files: Vec<FileEntry>) -> Snapshot {
        let mut s = crate::repository::snapshot::tests::sample("", "test", &[]);
        s.files = files;
        repo.write_snapshot(&mut s).unwrap();
        s
    }

    #[test]
    fn a_session_stores_each_page_once_and_a_second_adds_nothing() {
        let repo = memory_repo();
        let half = pages(300, 1);
        let data = [half.as_slice(), half.as_slice()].concat();
        let (f, stats) = store_pages(&repo, &data);
        assert_eq!((f.size, f.chunks), (data.len() as u64, 600));
        // 300 distinct pages (the list blob naming all 600 is stored but not counted).
        assert_eq!(stats.new_chunks, 300);
        assert_eq!(stats.reused_chunks, 300);
        assert_eq!(stats.size, data.len() as u64);
        let listed = |kind: ObjectKind| repo.storage().list(kind.folder()).unwrap().len();
        assert_eq!(listed(ObjectKind::Index), 1);
        assert!(listed(ObjectKind::Pack) >= 1);

        let (again, stats) = store_pages(&repo, &data);
        assert_eq!(again, f, "the same content gives the same chunk lists");
        assert_eq!((stats.new_chunks, stats.added), (0, 0));
        assert_eq!(
            listed(ObjectKind::Index),
            1,
            "no index object for nothing new"
        );

        // Every indexed chunk points into a pack that exists.
        let index = repo.load_index().unwrap();
        for (_, loc) in index.entries() {
            assert!(repo.storage().exists(&loc.pack.object_key()).unwrap());
        }
    }

    #[test]
    fn one_session_stores_many_files_in_shared_packs() {
        let repo = memory_repo();
        let w = BackupWriter::new(&repo).unwrap();
        let sizes = [3 * 4096, 0, 4096 + 100, 8 * 4096];
        let chunking = Chunking::Fixed { size: 4096 };
        let files = w
            .write_files(Coding::pages(3), &Silent, |sink| {
                for (i, n) in sizes.iter().enumerate() {
                    let data = pages(9, i as u64)[..*n].to_vec();
                    let mut b = FixedBatcher::new(4096);
                    if let Some(x) = b.push(&data) {
                        sink.push(x)?;
                    }
                    if let Some(x) = b.finish() {
                        sink.push(x)?;
                    }
                    let tree = TreeEntry {
                        mode: 0o600,
                        ..TreeEntry::default()
                    };
                    sink.end_file(&format!("base/{i}"), chunking, Some(tree))?;
                }
                Ok(())
            })
            .unwrap();
        let got: Vec<(String, u64, u64)> = files
            .iter()
            .map(|f| (f.name.clone(), f.size, f.chunks))
            .collect();
        assert_eq!(
            got,
            vec![
                ("base/0".into(), 3 * 4096, 3),
                ("base/1".into(), 0, 0),
                ("base/2".into(), 4196, 2),
                ("base/3".into(), 8 * 4096, 8),
            ]
        );
        assert!(files[1].lists.is_empty());
        assert_eq!(files[0].tree.as_ref().unwrap().mode, 0o600);
        w.finish().unwrap();
        // Small files share one pack instead of shipping one part-filled pack each.
        let packs = repo.storage().list(ObjectKind::Pack.folder()).unwrap();
        assert_eq!(packs.len(), 1);
        // And each reads back.
        let snap = snapshot_of(&repo, files.clone());
        let index = repo.load_index().unwrap();
        for (i, f) in snap.files.iter().enumerate() {
            let mut out = Vec::new();
            crate::repository::reader::stream_file(&repo, &index, &snap, f, &mut out, &Silent)
                .unwrap();
            assert_eq!(out, pages(9, i as u64)[..sizes[i]].to_vec(), "{}", f.name);
        }
    }

    #[test]
    fn a_failing_producer_fails_the_file_with_its_own_error() {
        let repo = memory_repo();
        let w = BackupWriter::new(&repo).unwrap();
        let data = pages(8, 2);
        let r = w.write_file("main.db", Chunking::Fixed { size: 4096 }, &Silent, |sink| {
            let mut b = FixedBatcher::new(4096);
            b.push(&data);
            sink.push(b.finish().unwrap())?;
            Err(Error::Source("the source went away".into()))
        });
        let e = r.unwrap_err();
        assert_eq!(e.to_string(), "the source went away");
        assert!(
            repo.storage()
                .list(ObjectKind::Snapshot.folder())
                .unwrap()
                .is_empty()
        );
    }
}

//! Chunk usage: which chunks a snapshot needs, and which snapshots a damaged object affects.
//!
//! Owns walking a snapshot's chunk lists (streaming, one restore window at a time) and the
//! sorted, on-disk set of chunk ids a set of snapshots needs ([`SortedIds`]), shared by
//! `check` (which snapshots a damaged pack breaks, what no snapshot needs), `verify` (naming
//! the other snapshots a failed test restore's damage reaches) and `prune` (what is still
//! referenced). Memory is bounded whatever the snapshots' size. Must not decide what to do
//! about damage: callers report or keep.

use super::Repository;
use super::index::Index;
use super::reader;
use super::snapshot::{DeltaRecord, Snapshot};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use std::collections::BTreeSet;

/// Ids of the snapshots a damaged or missing object (as named in `err`) affects.
pub fn snapshots_affected_by(repo: &Repository, index: &Index, err: &Error) -> Result<Vec<String>> {
    let bad: BTreeSet<ChunkId> = match err {
        Error::DamagedData { pack, segment, .. } => {
            let mut bad = BTreeSet::new();
            index.for_each(|id, l| {
                if l.pack == *pack && segment.is_none_or(|o| l.offset == o) {
                    bad.insert(id);
                }
            })?;
            bad
        }
        Error::MissingChunk(c) => [*c].into(),
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for snap in repo.snapshots()? {
        let mut hit = false;
        if for_each_chunk(repo, index, &snap, |c| {
            hit |= bad.contains(&c);
            Ok(())
        })
        .is_err()
        {
            hit = true;
        }
        if hit {
            out.push(snap.short_id().to_string());
        }
    }
    Ok(out)
}

/// List blobs fetched at once (up to 16 MB of ids).
const LISTS_PER_FETCH: usize = 256;

/// Calls `each` with every chunk id `snap` needs (list blobs, then the files' chunks, then
/// page deltas' record blobs and bases; repeats included, in no promised order), streaming:
/// memory is one batch of list blobs, whatever the size.
pub fn for_each_chunk(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    mut each: impl FnMut(ChunkId) -> Result<()>,
) -> Result<()> {
    let lists = snap.list_ids()?;
    for l in &lists {
        each(*l)?;
    }
    // List blobs of many files fetched together: a physical snapshot is a thousand small
    // files, and one request per file costs a round trip each on S3 (~46 ms on Garage).
    // Order does not matter to any caller.
    let object = Snapshot::object_key(&snap.id);
    for group in lists.chunks(LISTS_PER_FETCH) {
        let bodies: std::sync::Mutex<Vec<Vec<u8>>> = Default::default();
        reader::fetch(repo, index, group, |chunks| {
            let mut b = bodies.lock().expect("lock");
            for (_, data) in chunks {
                if data.len() % 32 != 0 {
                    return Err(Error::corrupt(&object, "chunk list of odd length"));
                }
                b.push(data.to_vec());
            }
            Ok(())
        })?;
        for body in bodies.into_inner().expect("lock") {
            for raw in body.chunks_exact(32) {
                each(ChunkId(raw.try_into().expect("32 bytes")))?;
            }
        }
    }
    let records = snap.delta_ids()?;
    for r in &records {
        each(*r)?;
    }
    for_each_base(repo, index, snap, &records, each)
}

/// Calls `each` with the base of every page delta the record blobs `records` (of `snap`)
/// list: the whole pages those deltas are rebuilt from (docs/ARCHITECTURE.md, "Page deltas").
pub fn for_each_base(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    records: &[ChunkId],
    mut each: impl FnMut(ChunkId) -> Result<()>,
) -> Result<()> {
    let object = Snapshot::object_key(&snap.id);
    // A record is 72 bytes where a list entry is 32: fewer blobs per fetch, the same memory.
    for group in records.chunks(LISTS_PER_FETCH / 2) {
        let bodies: std::sync::Mutex<Vec<Vec<u8>>> = Default::default();
        reader::fetch(repo, index, group, |chunks| {
            let mut b = bodies.lock().expect("lock");
            for (_, data) in chunks {
                b.push(data.to_vec());
            }
            Ok(())
        })?;
        for body in bodies.into_inner().expect("lock") {
            let parsed = DeltaRecord::parse(&body)
                .ok_or_else(|| Error::corrupt(&object, "damaged page delta records"))?;
            for r in parsed {
                each(r.base)?;
            }
        }
    }
    Ok(())
}

/// Chunk ids sorted and distinct, in an unlinked temporary file: what a set of snapshots
/// needs, gathered in bounded memory (`repository::table::IdSorter`) and read back in order
/// as often as needed.
pub struct SortedIds {
    file: std::fs::File,
    /// Number of ids.
    pub len: u64,
}

/// Walks the index in chunk-id order beside `needed`: `each` gets every indexed chunk, its
/// location and whether it is needed (a chunk an append-only key listed more than once,
/// once per healthy pack: `Index::for_each_guarded`). Returns the finished cursor, whose skipped ids are the
/// needed chunks no index names (up to `keep_skipped` of them kept).
pub fn walk_index(
    index: &Index,
    needed: &SortedIds,
    keep_skipped: usize,
    mut each: impl FnMut(ChunkId, super::index::Location, bool),
) -> Result<IdCursor> {
    let mut cursor = needed.cursor()?;
    cursor.keep_skipped = keep_skipped;
    let mut failed = None;
    // A chunk comes once per location kept: the cursor is asked once per chunk.
    let mut last: Option<(ChunkId, bool)> = None;
    index.for_each_guarded(|id, loc| {
        let live = match last {
            Some((l, live)) if l == id => Ok(live),
            _ => cursor.contains(&id),
        };
        match live {
            Ok(live) => {
                last = Some((id, live));
                each(id, loc, live)
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    cursor.finish()?;
    Ok(cursor)
}

/// Reads a [`SortedIds`] in ascending order, answering membership for ascending queries.
pub struct IdCursor {
    reader: std::io::BufReader<std::fs::File>,
    next: Option<ChunkId>,
    /// Ids passed over without being asked for (ascending queries skipped them).
    pub skipped: u64,
    /// The first id skipped.
    pub first_skipped: Option<ChunkId>,
    /// Skipped ids, kept up to [`IdCursor::keep_skipped`] of them.
    pub skipped_ids: Vec<ChunkId>,
    /// How many skipped ids to keep (0 by default).
    pub keep_skipped: usize,
}

fn tmp_io(dir: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io("sorting chunk ids in", dir, e)
}

impl SortedIds {
    /// The distinct chunks every snapshot in `snaps` needs. `tmp` holds the spill files
    /// (unlinked as they are made); `mem` bounds the ids held in memory.
    /// `on_error` decides what a snapshot whose chunk lists cannot be read means: its
    /// error ends the sort; `Ok` goes on without the rest of that snapshot.
    pub fn needed_by(
        repo: &Repository,
        index: &Index,
        snaps: &[Snapshot],
        tmp: &std::path::Path,
        mem: usize,
        mut on_error: impl FnMut(&Snapshot, Error) -> Result<()>,
    ) -> Result<SortedIds> {
        use std::io::Write;
        let err = tmp_io(tmp);
        let mut sorter = super::table::IdSorter::new(tmp, mem);
        for s in snaps {
            if let Err(e) = for_each_chunk(repo, index, s, |id| sorter.push(id.0).map_err(&err)) {
                on_error(s, e)?;
            }
        }
        let file = tempfile::tempfile_in(tmp).map_err(&err)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut len = 0u64;
        for id in sorter.finish() {
            w.write_all(&id.map_err(&err)?).map_err(&err)?;
            len += 1;
        }
        let file = w.into_inner().map_err(|e| err(e.into_error()))?;
        Ok(SortedIds { file, len })
    }

    /// A cursor from the first id.
    pub fn cursor(&self) -> Result<IdCursor> {
        use std::io::Seek;
        let mut f = self
            .file
            .try_clone()
            .map_err(|e| Error::io("reading sorted chunk ids", "a temporary file", e))?;
        f.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::io("reading sorted chunk ids", "a temporary file", e))?;
        let mut c = IdCursor {
            reader: std::io::BufReader::with_capacity(1 << 20, f),
            next: None,
            skipped: 0,
            first_skipped: None,
            skipped_ids: Vec::new(),
            keep_skipped: 0,
        };
        c.advance()?;
        Ok(c)
    }
}

impl IdCursor {
    fn advance(&mut self) -> Result<()> {
        use std::io::Read;
        let mut buf = [0u8; 32];
        self.next = match self.reader.read_exact(&mut buf) {
            Ok(()) => Some(ChunkId(buf)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => return Err(Error::io("reading sorted chunk ids", "a temporary file", e)),
        };
        Ok(())
    }

    /// Whether `id` is in the set; queries must come in ascending order. Ids below `id`
    /// that were never asked for are counted as skipped.
    pub fn contains(&mut self, id: &ChunkId) -> Result<bool> {
        while let Some(n) = self.next {
            if n >= *id {
                break;
            }
            self.skip(n);
            self.advance()?;
        }
        if self.next == Some(*id) {
            self.advance()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Skips to the end, counting what was never asked for.
    pub fn finish(&mut self) -> Result<()> {
        while self.finish_one()? {}
        Ok(())
    }

    /// Skips one id never asked for; false at the end.
    pub fn finish_one(&mut self) -> Result<bool> {
        let Some(n) = self.next else {
            return Ok(false);
        };
        self.skip(n);
        self.advance()?;
        Ok(true)
    }

    fn skip(&mut self, n: ChunkId) {
        self.skipped += 1;
        self.first_skipped.get_or_insert(n);
        if self.skipped_ids.len() < self.keep_skipped {
            self.skipped_ids.push(n);
        }
    }
}

//! The restore pipeline: chunk ids in, verified plaintext chunks out.
//!
//! Owns fetching chunks efficiently: grouped by pack, neighbouring segments coalesced into one
//! ranged read, several reads in flight (object stores reward parallel requests), every
//! segment authenticated and every chunk checked against its id before it is handed on,
//! and a chunk that fails read from the other places the index lists it (`from_elsewhere`).
//! Must not decide where the bytes go: callers pass a sink.
//!
//! Page deltas (docs/ARCHITECTURE.md, "Page deltas") are handed over as the pages they stand
//! for: [`fetch`] rebuilds them a ranged read at a time, fetching their bases in a second
//! round. Callers that read the file's delta records fetch a step's bases in the same round
//! as everything else, so a parent's segment is opened once: [`stream_file`] writes each
//! base where its page goes and patches it there; the SQLite restore keeps the bases
//! ([`fetch_with_bases`]). Lookups go in ascending id order, all at once
//! (`Index::get_many`), in contiguous runs on several threads when a fetch has many (`look_up`):
//! a step's reads start only once its lookups are done.
//!
//! Memory is bounded by the window the caller asks for, not by the file: a file is restored
//! window by window ([`WINDOW_LISTS`] list blobs, 512 MiB of 4 KiB pages, at a time: the
//! window costs ~6 MB of bookkeeping, the data itself streams).
//!
//! A stream in order ([`stream_file`]) adds a fixed pipeline: [`STREAM_BUFFERS`] steps of
//! [`STREAM_STEP_BYTES`] (one filled while the other is written, handed back and forth), one
//! ranged read of up to [`MAX_READ`] per reader and the segments being opened (about 1 MiB
//! each, two per reader while decompressing): at most 2 × 12 + 4 × 8 + 4 × 2 = 64 MiB,
//! whatever the file's size (measured: 55 MB above the program's own on a 184 MB export).
//! The step and read buffers are kept from step to step, not freed and allocated again:
//! glibc keeps freed blocks of several megabytes in its per-thread arenas, so with a fresh
//! buffer per step and per read the same export peaked anywhere between 87 and 105 MB of RSS
//! from run to run (78 MB every run now, in a debug build that takes 20 MB by itself).

use super::Repository;
use super::index::{Index, Location};
use super::pack::{self, BlobKind};
use super::patch;
use super::snapshot::{Chunking, DeltaRecord, FileEntry, Snapshot};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::id::PackId;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Blobs closer than this in one pack are fetched with one read.
const MAX_GAP: u64 = 256 * 1024;
/// Upper bound of one ranged read.
const MAX_READ: u64 = 8 * 1024 * 1024;
/// Parallel reads.
const READERS: usize = 4;
/// List blobs resolved per restore window.
pub const WINDOW_LISTS: usize = 64;

struct Read {
    pack: PackId,
    start: u64,
    end: u64,
    members: Vec<(ChunkId, Location)>,
}

/// Fetches `ids` (duplicates allowed) and hands every distinct chunk, verified, to `sink`
/// exactly once: a segment's worth at a time, from several threads. A page delta among them
/// is handed over as the page it stands for (its base fetched and applied: [`apply_deltas`]).
pub fn fetch<S>(repo: &Repository, index: &Index, ids: &[ChunkId], sink: S) -> Result<()>
where
    S: Fn(&[(ChunkId, &[u8])]) -> Result<()> + Sync,
{
    fetch_reusing(repo, index, ids, &ReadBuffers::default(), &sink)
}

/// What a fetch does with the page deltas it meets.
#[derive(Clone, Copy)]
enum Deltas<'a> {
    /// Damage: only whole pages are expected (when fetching the bases of deltas).
    Refuse,
    /// Rebuilt at once, a ranged read's worth at a time, their bases fetched in a second
    /// round ([`apply_deltas`]).
    Apply,
    /// Gathered for the caller, who asked for their bases in the same round
    /// ([`fetch_with_bases`], and a stream's step).
    Gather(&'a Mutex<Vec<(ChunkId, Vec<u8>)>>),
}

/// [`fetch`] of `ids` whose deltas' bases, `bases`, the caller knows from the file's delta
/// records: the bases are read in the same round as the rest. A delta's base sits in the
/// segment of the parent's page at its position, beside the unchanged pages around it that
/// are fetched anyway: two rounds would open each such segment twice (measured: the restore
/// of a delta snapshot took 1.8x the full one's time). Memory: the bases and the rebuilt
/// pages of `ids`, so callers pass a step's worth, not a whole file's. A base missing from
/// `bases` costs only a second round.
pub fn fetch_with_bases<S>(
    repo: &Repository,
    index: &Index,
    ids: &[ChunkId],
    bases: &[ChunkId],
    sink: S,
) -> Result<()>
where
    S: Fn(&[(ChunkId, &[u8])]) -> Result<()> + Sync,
{
    gather_with_bases(repo, index, ids, bases, &ReadBuffers::default(), &sink)
}

fn gather_with_bases(
    repo: &Repository,
    index: &Index,
    ids: &[ChunkId],
    bases: &[ChunkId],
    buffers: &ReadBuffers,
    sink: &Sink<'_>,
) -> Result<()> {
    if bases.is_empty() {
        return fetch_reusing(repo, index, ids, buffers, sink);
    }
    let wanted: HashSet<ChunkId> = ids.iter().copied().collect();
    let base_set: HashSet<ChunkId> = bases.iter().copied().collect();
    let all: Vec<ChunkId> = ids.iter().chain(bases).copied().collect();
    let kept: Mutex<HashMap<ChunkId, Vec<u8>>> = Mutex::default();
    let gathered: Mutex<Vec<(ChunkId, Vec<u8>)>> = Mutex::default();
    fetch_blobs(
        repo,
        index,
        &all,
        buffers,
        Deltas::Gather(&gathered),
        &|chunks| {
            let mut out = Vec::with_capacity(chunks.len());
            for (id, data) in chunks {
                if base_set.contains(id) {
                    kept.lock().expect("lock").insert(*id, data.to_vec());
                }
                if wanted.contains(id) {
                    out.push((*id, *data));
                }
            }
            if out.is_empty() { Ok(()) } else { sink(&out) }
        },
    )?;
    let kept = kept.into_inner().expect("lock");
    let mut later = Vec::new();
    let mut pages: Vec<(ChunkId, Vec<u8>)> = Vec::new();
    for (id, blob) in gathered.into_inner().expect("lock") {
        let base = patch::base_of(&blob).expect("a delta is longer than 32 bytes");
        let Some(data) = kept.get(&base) else {
            later.push((id, blob));
            continue;
        };
        let mut page = Vec::new();
        patch::apply(data, &blob, &mut page).ok_or_else(|| misfit(&id, &base))?;
        pages.push((id, page));
    }
    let refs: Vec<(ChunkId, &[u8])> = pages.iter().map(|(id, p)| (*id, p.as_slice())).collect();
    if !refs.is_empty() {
        sink(&refs)?;
    }
    apply_deltas(repo, index, later, buffers, sink)
}

fn misfit(id: &ChunkId, base: &ChunkId) -> Error {
    Error::Internal(format!(
        "page delta {} does not fit its base {}",
        &id.to_hex()[..16],
        &base.to_hex()[..16]
    ))
}

/// What receives fetched chunks (a segment's worth, or one rebuilt page, at a time).
type Sink<'a> = dyn Fn(&[(ChunkId, &[u8])]) -> Result<()> + Sync + 'a;

/// The buffers of ranged reads (up to [`MAX_READ`] each, one per reader), kept from one
/// [`fetch_reusing`] to the next: a caller that fetches step after step allocates them once
/// instead of an 8 MB buffer per read (see the module's memory note).
#[derive(Default)]
struct ReadBuffers(Mutex<Vec<Vec<u8>>>);

impl ReadBuffers {
    fn take(&self) -> Vec<u8> {
        self.0.lock().expect("lock").pop().unwrap_or_default()
    }
    fn give_back(&self, buf: Vec<u8>) {
        self.0.lock().expect("lock").push(buf);
    }
}

/// [`fetch`], reading into the buffers `buffers` holds (and leaving them there).
fn fetch_reusing(
    repo: &Repository,
    index: &Index,
    ids: &[ChunkId],
    buffers: &ReadBuffers,
    sink: &Sink<'_>,
) -> Result<()> {
    fetch_blobs(repo, index, ids, buffers, Deltas::Apply, sink)
}

/// The fetch itself; `deltas` says what to do with a page delta among `ids`.
fn fetch_blobs(
    repo: &Repository,
    index: &Index,
    ids: &[ChunkId],
    buffers: &ReadBuffers,
    deltas: Deltas<'_>,
    sink: &Sink<'_>,
) -> Result<()> {
    // Looked up in ascending order, all at once: neighbours share the cache's block reads.
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut locs: Vec<(ChunkId, Location)> = Vec::with_capacity(sorted.len());
    for (id, loc) in sorted.iter().zip(look_up(index, &sorted)) {
        locs.push((*id, loc.ok_or(Error::MissingChunk(*id))?));
    }
    locs.sort_by_key(|(_, l)| (l.pack, l.offset, l.inner_offset));
    let mut reads: Vec<Read> = Vec::new();
    for (id, loc) in locs {
        let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.len as u64);
        match reads.last_mut() {
            Some(r)
                if r.pack == loc.pack && start <= r.end + MAX_GAP && end - r.start <= MAX_READ =>
            {
                r.end = r.end.max(end);
                r.members.push((id, loc));
            }
            _ => reads.push(Read {
                pack: loc.pack,
                start,
                end,
                members: vec![(id, loc)],
            }),
        }
    }
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..READERS.min(reads.len()) {
            s.spawn(|| {
                let mut buf = buffers.take();
                loop {
                    if failure.lock().expect("lock").is_some() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = reads.get(i) else { break };
                    let res = read_one(repo, index, r, &mut buf, buffers, deltas, sink);
                    if let Err(e) = res {
                        failure.lock().expect("lock").get_or_insert(e);
                        break;
                    }
                }
                buffers.give_back(buf);
            });
        }
    });
    match failure.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Ids looked up together below which a fetch does not split its lookups.
const LOOKUPS_PER_THREAD: usize = 1024;

/// [`Index::get_many`] of `sorted` (ascending), split into contiguous runs looked up on
/// [`READERS`] threads at once when there are many: a stream's step waits for its lookups
/// before any read starts, and a delta snapshot's step looks up half again as many ids
/// (pages, bases, deltas). Contiguous runs keep neighbours sharing the cache's blocks.
fn look_up(index: &Index, sorted: &[ChunkId]) -> Vec<Option<Location>> {
    let threads = READERS.min(sorted.len() / LOOKUPS_PER_THREAD).max(1);
    if threads == 1 {
        return index.get_many(sorted);
    }
    let per = sorted.len().div_ceil(threads);
    std::thread::scope(|s| {
        let runs: Vec<_> = sorted
            .chunks(per)
            .map(|run| s.spawn(move || index.get_many(run)))
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("index lookup thread"))
            .collect()
    })
}

/// One ranged read: its segments opened, whole chunks handed on, deltas gathered and then
/// applied (so what waits for a base is at most one read's worth).
fn read_one(
    repo: &Repository,
    index: &Index,
    r: &Read,
    buf: &mut Vec<u8>,
    buffers: &ReadBuffers,
    deltas: Deltas<'_>,
    sink: &Sink<'_>,
) -> Result<()> {
    let key = repo.key();
    let object = r.pack.object_key();
    repo.storage()
        .get_range_into(&object, r.start, r.end - r.start, buf)
        .map_err(|e| match e {
            Error::Corrupt { detail, .. } => Error::DamagedData {
                pack: r.pack,
                segment: None,
                detail,
            },
            Error::Missing { .. } => Error::DamagedData {
                pack: r.pack,
                segment: None,
                detail: "the pack is missing from the repository".into(),
            },
            other => other,
        })?;
    let mut pending: Vec<(ChunkId, Vec<u8>)> = Vec::new();
    for seg in r.members.chunk_by(|a, b| a.1.offset == b.1.offset) {
        let loc = seg[0].1;
        let from = (loc.offset as u64 - r.start) as usize;
        let sealed = &buf[from..from + loc.len as usize];
        let opened = pack::decode_segment(key, r.pack, loc.offset, sealed).and_then(|plain| {
            let mut whole = Vec::with_capacity(seg.len());
            for (id, l) in seg {
                match (pack::blob_from_segment(key, &plain, *id, l)?, deltas) {
                    ((data, BlobKind::Whole), _) => whole.push((*id, data)),
                    ((data, BlobKind::Delta), Deltas::Apply) => pending.push((*id, data.to_vec())),
                    ((data, BlobKind::Delta), Deltas::Gather(g)) => {
                        g.lock().expect("lock").push((*id, data.to_vec()))
                    }
                    ((_, BlobKind::Delta), Deltas::Refuse) => return Err(base_is_delta(*id, l)),
                }
            }
            sink(&whole)
        });
        match opened {
            Ok(()) => {}
            Err(e) if e.is_damage() => {
                from_elsewhere(repo, index, seg, buffers, deltas, sink).map_err(|_| e)?
            }
            Err(e) => return Err(e),
        }
    }
    apply_deltas(repo, index, pending, buffers, sink)
}

fn base_is_delta(id: ChunkId, loc: &Location) -> Error {
    Error::DamagedData {
        pack: loc.pack,
        segment: Some(loc.offset),
        detail: format!(
            "chunk {} is a page delta where a whole page (a delta's base) was expected",
            &id.to_hex()[..16]
        ),
    }
}

/// Rebuilds the pages `pending` stands for (`(id, delta blob)`: `patch`'s format), fetching
/// their bases in one go, and hands each to `sink` under the delta's id.
/// The blob and the base were each checked against their keyed ids, so the page is too.
fn apply_deltas(
    repo: &Repository,
    index: &Index,
    pending: Vec<(ChunkId, Vec<u8>)>,
    buffers: &ReadBuffers,
    sink: &Sink<'_>,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut by_base: HashMap<ChunkId, Vec<usize>> = HashMap::new();
    for (i, (_, blob)) in pending.iter().enumerate() {
        let base = patch::base_of(blob).expect("a delta is longer than 32 bytes");
        by_base.entry(base).or_default().push(i);
    }
    let bases: Vec<ChunkId> = by_base.keys().copied().collect();
    fetch_blobs(repo, index, &bases, buffers, Deltas::Refuse, &|chunks| {
        let mut page = Vec::new();
        for (base, data) in chunks {
            for &i in by_base.get(base).into_iter().flatten() {
                let (id, blob) = &pending[i];
                patch::apply(data, blob, &mut page).ok_or_else(|| misfit(id, base))?;
                sink(&[(*id, &page)])?;
            }
        }
        Ok(())
    })
}

/// Reads the chunks of a segment that failed (damaged, or not what its ids say) from the
/// other places the index lists them, one by one: a chunk stored again after damage, or
/// the honest copy beside junk a stolen append-only host wrote under the same id (every
/// chunk is checked against its keyed id, so junk is caught; this is what keeps it from
/// costing a restore). Fails when some chunk is nowhere else readable.
fn from_elsewhere(
    repo: &Repository,
    index: &Index,
    seg: &[(ChunkId, Location)],
    buffers: &ReadBuffers,
    deltas: Deltas<'_>,
    sink: &Sink<'_>,
) -> Result<()> {
    let key = repo.key();
    for (id, failed) in seg {
        let mut found = None;
        for alt in index.alternatives(id, failed) {
            let got = repo
                .storage()
                .get_range(&alt.pack.object_key(), alt.offset as u64, alt.len as u64)
                .and_then(|sealed| pack::decode_segment(key, alt.pack, alt.offset, &sealed))
                .and_then(|plain| {
                    pack::blob_from_segment(key, &plain, *id, &alt).map(|(d, k)| (d.to_vec(), k))
                });
            if let Ok(chunk) = got {
                tracing::warn!(
                    "chunk {} did not read back from {}; read it from {} instead",
                    id.to_hex(),
                    failed.pack.object_key(),
                    alt.pack.object_key()
                );
                found = Some(chunk);
                break;
            }
        }
        match (found.ok_or(Error::MissingChunk(*id))?, deltas) {
            ((chunk, BlobKind::Whole), _) => sink(&[(*id, &chunk)])?,
            ((blob, BlobKind::Delta), Deltas::Apply) => {
                apply_deltas(repo, index, vec![(*id, blob)], buffers, sink)?
            }
            ((blob, BlobKind::Delta), Deltas::Gather(g)) => {
                g.lock().expect("lock").push((*id, blob))
            }
            ((_, BlobKind::Delta), Deltas::Refuse) => return Err(base_is_delta(*id, failed)),
        }
    }
    Ok(())
}

/// Calls `each(position, chunk ids, delta records)` for consecutive windows of a file's
/// chunk list, where `position` is the index of the window's first chunk and the records
/// (ascending) are those of the window's positions stored as page deltas.
pub fn for_each_window<F>(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    file: &FileEntry,
    mut each: F,
) -> Result<()>
where
    F: FnMut(u64, &[ChunkId], &[DeltaRecord]) -> Result<()>,
{
    let object = Snapshot::object_key(&snap.id);
    let mut position = 0u64;
    for (k, group) in file.lists.chunks(WINDOW_LISTS).enumerate() {
        let list_ids: Vec<ChunkId> = group
            .iter()
            .map(|h| ChunkId::from_hex(h).ok_or_else(|| Error::corrupt(&object, "bad list id")))
            .collect::<Result<_>>()?;
        let record_ids: Vec<ChunkId> = file
            .deltas
            .iter()
            .skip(k * WINDOW_LISTS)
            .take(group.len())
            .flatten()
            .map(|h| {
                ChunkId::from_hex(h).ok_or_else(|| Error::corrupt(&object, "bad delta record id"))
            })
            .collect::<Result<_>>()?;
        let wanted: Vec<ChunkId> = list_ids.iter().chain(&record_ids).copied().collect();
        let bodies: Mutex<HashMap<ChunkId, Vec<u8>>> = Mutex::default();
        fetch(repo, index, &wanted, |chunks| {
            for (id, data) in chunks {
                bodies.lock().expect("lock").insert(*id, data.to_vec());
            }
            Ok(())
        })?;
        let bodies = bodies.into_inner().expect("lock");
        let mut window = Vec::with_capacity(group.len() * super::snapshot::IDS_PER_LIST);
        for l in &list_ids {
            if bodies[l].len() % 32 != 0 {
                return Err(Error::corrupt(&object, "chunk list of odd length"));
            }
            for raw in bodies[l].chunks_exact(32) {
                window.push(ChunkId(raw.try_into().expect("32 bytes")));
            }
        }
        let mut records = Vec::new();
        for r in &record_ids {
            records.extend(
                DeltaRecord::parse(&bodies[r])
                    .ok_or_else(|| Error::corrupt(&object, "damaged page delta records"))?,
            );
        }
        each(position, &window, &records)?;
        position += window.len() as u64;
    }
    if position != file.chunks {
        return Err(Error::corrupt(
            object,
            format!(
                "file {} lists {position} chunks, manifest says {}",
                file.name, file.chunks
            ),
        ));
    }
    Ok(())
}

/// Plaintext bytes gathered per step of [`stream_file`]: the step's chunks are fetched in
/// parallel, then written in order while the next step is fetched.
const STREAM_STEP_BYTES: u64 = 12 * 1024 * 1024;
/// Step buffers of [`stream_file`]: one being filled while the other is written.
const STREAM_BUFFERS: usize = 2;

/// Writes a file's bytes, in order, to `out`: for streams (logical dumps) whose consumer
/// reads sequentially. Memory: the fixed pipeline of the module's note (at most 64 MiB),
/// whatever the file's size, plus one window's ids.
pub fn stream_file(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    file: &FileEntry,
    out: &mut dyn std::io::Write,
    progress: &dyn crate::progress::Progress,
) -> Result<()> {
    // Filled steps go to the writer; written ones come back to be filled again.
    let (full_tx, full_rx) = crossbeam_channel::bounded::<Vec<u8>>(1);
    let (empty_tx, empty_rx) = crossbeam_channel::bounded::<Vec<u8>>(STREAM_BUFFERS);
    for _ in 0..STREAM_BUFFERS {
        empty_tx.send(Vec::new()).expect("room for every buffer");
    }
    let reads = ReadBuffers::default();
    std::thread::scope(|s| {
        let producer = s.spawn(move || -> Result<()> {
            // Once the writer stopped, the remaining windows are skipped.
            let mut stopped = false;
            for_each_window(repo, index, snap, file, |first, ids, records| {
                let mut start = 0;
                while start < ids.len() && !stopped {
                    let mut end = start;
                    let mut places: Vec<(ChunkId, usize)> = Vec::new();
                    let mut bytes = 0usize;
                    while end < ids.len() && (end == start || (bytes as u64) < STREAM_STEP_BYTES) {
                        places.push((ids[end], bytes));
                        // Fixed chunks have their size (the last one what is left), without
                        // an index lookup (and a page delta is stored shorter than its page);
                        // a stream's chunks are as long as the index says.
                        bytes += match file.chunking {
                            Chunking::Fixed { size } => (size as u64)
                                .min(file.size.saturating_sub((first + end as u64) * size as u64))
                                as usize,
                            Chunking::ContentDefined => {
                                let loc =
                                    index.get(&ids[end]).ok_or(Error::MissingChunk(ids[end]))?;
                                loc.inner_len as usize
                            }
                        };
                        end += 1;
                    }
                    // The writer stopped (and dropped its end) once no buffer comes back;
                    // its error is the one reported.
                    let Ok(mut buf) = empty_rx.recv() else {
                        stopped = true;
                        break;
                    };
                    // The step's delta records: where each delta's page goes.
                    let from = records.partition_point(|r| r.position < first + start as u64);
                    let step_records: Vec<(DeltaRecord, usize)> = records[from..]
                        .iter()
                        .take_while(|r| r.position < first + end as u64)
                        .map(|r| (*r, places[(r.position - first) as usize - start].1))
                        .collect();
                    fill_step(repo, index, &step_records, places, bytes, &reads, &mut buf)?;
                    stopped = full_tx.send(buf).is_err();
                    start = end;
                }
                Ok(())
            })
        });
        let mut written: Result<()> = Ok(());
        for buf in full_rx.iter() {
            if let Err(e) = out.write_all(&buf) {
                written = Err(output_error(&file.name, e));
                break;
            }
            progress.advance(buf.len() as u64);
            // The producer may have finished: then nobody takes it back.
            let _ = empty_tx.send(buf);
        }
        drop((full_rx, empty_tx));
        let produced = producer.join().expect("restore reader thread");
        produced.and(written)
    })
}

/// Fetches the chunks `step` lists into `buf`, `bytes` long, each chunk at every place
/// `places` gives it (`(id, offset)`; a step may hold a chunk more than once: zero pages).
fn fill_step(
    repo: &Repository,
    index: &Index,
    records: &[(DeltaRecord, usize)],
    mut places: Vec<(ChunkId, usize)>,
    bytes: usize,
    reads: &ReadBuffers,
    buf: &mut Vec<u8>,
) -> Result<()> {
    // A page delta's base is written where the delta's page goes, and the delta applied to
    // it there once the round is over: no copy of the base, none of the page (page faults
    // and copies of such copies took half again the time of a full snapshot's restore).
    // Places come in file order (offsets ascending): where each page ends is where the next
    // begins.
    let ends: Vec<usize> = places
        .iter()
        .skip(1)
        .map(|(_, at)| *at)
        .chain([bytes])
        .collect();
    let mut delta_at: Vec<(ChunkId, usize, ChunkId, usize)> = Vec::with_capacity(records.len());
    for (r, at) in records {
        let i = places
            .binary_search_by_key(at, |(_, a)| *a)
            .expect("a record's position is in its step");
        delta_at.push((places[i].0, *at, r.base, ends[i]));
    }
    // delta_at is in offset order here (records ascend by position).
    places.retain(|(_, at)| delta_at.binary_search_by_key(at, |d| d.1).is_err());
    places.extend(delta_at.iter().map(|(_, at, base, _)| (*base, *at)));
    places.sort_unstable();
    delta_at.sort_unstable();
    // The pages, the bases, and the deltas themselves (gathered, applied after the round).
    let wanted: Vec<ChunkId> = places
        .iter()
        .map(|(id, _)| *id)
        .chain(delta_at.iter().map(|(d, _, _, _)| *d))
        .collect();
    // Every byte of the step is written by its chunks (a missing one fails the fetch), so a
    // buffer kept from the last step is cut to size, not zeroed again (1 GB of memset in a
    // restore of 1 GB, 4% of its CPU time).
    if buf.len() < bytes {
        buf.reserve_exact(bytes - buf.len());
        buf.resize(bytes, 0);
    } else {
        buf.truncate(bytes);
    }
    let out = Mutex::new(buf.as_mut_slice());
    let gathered: Mutex<Vec<(ChunkId, Vec<u8>)>> = Mutex::default();
    let place = |id: &ChunkId, data: &[u8], out: &mut [u8]| -> Result<()> {
        let first = places.partition_point(|(p, _)| p < id);
        for (_, at) in places[first..].iter().take_while(|(p, _)| p == id) {
            let slot = out.get_mut(*at..*at + data.len()).ok_or_else(|| {
                Error::Internal(format!(
                    "chunk {} is longer than its place in the file",
                    &id.to_hex()[..16]
                ))
            })?;
            slot.copy_from_slice(data);
        }
        Ok(())
    };
    fetch_blobs(
        repo,
        index,
        &wanted,
        reads,
        Deltas::Gather(&gathered),
        &|chunks| {
            let mut out = out.lock().expect("lock");
            for (id, data) in chunks {
                place(id, data, &mut out)?;
            }
            Ok(())
        },
    )?;
    // Deltas of this step whose records did not say so (none, unless the manifest is
    // inconsistent) are rebuilt the slow way.
    let mut later = Vec::new();
    let out = out.into_inner().expect("lock");
    for (id, blob) in gathered.into_inner().expect("lock") {
        let first = delta_at.partition_point(|(d, _, _, _)| *d < id);
        let mut here = delta_at[first..]
            .iter()
            .take_while(|(d, _, _, _)| *d == id)
            .peekable();
        if here.peek().is_none() {
            later.push((id, blob));
            continue;
        }
        for (_, at, base, end) in here {
            if patch::base_of(&blob) != Some(*base) {
                return Err(misfit(&id, base));
            }
            let page = out.get_mut(*at..*end).ok_or_else(|| misfit(&id, base))?;
            patch::apply_in_place(page, &blob).ok_or_else(|| misfit(&id, base))?;
        }
    }
    let out = Mutex::new(out);
    apply_deltas(repo, index, later, reads, &|chunks| {
        let mut out = out.lock().expect("lock");
        for (id, data) in chunks {
            place(id, data, &mut out)?;
        }
        Ok(())
    })
}

/// The distinct bases of the `records` whose positions lie in `from..to`.
pub fn bases_between(records: &[DeltaRecord], from: u64, to: u64) -> Vec<ChunkId> {
    let first = records.partition_point(|r| r.position < from);
    let mut bases: Vec<ChunkId> = records[first..]
        .iter()
        .take_while(|r| r.position < to)
        .map(|r| r.base)
        .collect();
    bases.sort_unstable();
    bases.dedup();
    bases
}

/// The error for the output of a [`stream_file`] of file `name` failing.
pub fn output_error(name: &str, source: std::io::Error) -> Error {
    Error::Output {
        file: name.to_string(),
        source,
    }
}

/// True when `e` says the consumer of a [`stream_file`] stopped taking data (a restore tool
/// that exited, a closed pipe), as opposed to the repository failing to give it.
pub fn is_output_error(e: &Error) -> bool {
    matches!(e, Error::Output { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::repository::writer::tests::{
        memory_repo, pages, snapshot_of, store_pages, store_stream,
    };

    /// A writer that takes `left` bytes, then fails like a closed pipe.
    struct Closing {
        left: usize,
    }

    impl std::io::Write for Closing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn streams_read_back_in_order_and_windows_cover_every_chunk() {
        let repo = memory_repo();
        let data = pages(700, 3);
        let stream = store_stream(&repo, &data);
        let (paged, _) = store_pages(&repo, &data);
        let snap = snapshot_of(&repo, vec![stream.clone(), paged.clone()]);
        let index = repo.load_index().unwrap();
        let mut out = Vec::new();
        stream_file(&repo, &index, &snap, &stream, &mut out, &Silent).unwrap();
        assert!(out == data, "the stream reads back byte for byte");
        let mut seen = 0u64;
        for_each_window(&repo, &index, &snap, &paged, |first, ids, _| {
            assert_eq!(first, seen);
            seen += ids.len() as u64;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, paged.chunks);
    }

    #[test]
    fn a_file_of_several_steps_with_repeated_pages_streams_back_in_order() {
        // More steps than step buffers (they go round), and one page repeated within every
        // step and across steps (as zero pages are; not zeros here, which a buffer left
        // unwritten would also hold): each copy lands in its own place.
        let repo = memory_repo();
        let random = pages(4200, 5);
        let mut data = Vec::new();
        for (i, page) in random.chunks(4096).enumerate() {
            data.extend_from_slice(page);
            if i % 2 == 0 {
                data.extend_from_slice(&[0x5a; 4096]);
            }
        }
        assert!(data.len() as u64 > STREAM_BUFFERS as u64 * STREAM_STEP_BYTES);
        let (paged, _) = store_pages(&repo, &data);
        let snap = snapshot_of(&repo, vec![paged.clone()]);
        let index = repo.load_index().unwrap();
        let mut out = Vec::new();
        stream_file(&repo, &index, &snap, &paged, &mut out, &Silent).unwrap();
        assert_eq!(out.len(), data.len());
        assert!(out == data, "the file reads back byte for byte");
    }

    #[test]
    fn a_closed_output_is_told_apart_from_damage() {
        let repo = memory_repo();
        let data = pages(64, 4);
        let stream = store_stream(&repo, &data);
        let snap = snapshot_of(&repo, vec![stream.clone()]);
        let index = repo.load_index().unwrap();
        let e = stream_file(
            &repo,
            &index,
            &snap,
            &stream,
            &mut Closing { left: 1000 },
            &Silent,
        )
        .unwrap_err();
        assert!(is_output_error(&e) && !e.is_damage(), "{e}");

        // One flipped byte in the pack: the damage names the pack.
        let (_, loc) = index.entries()[0];
        let key = loc.pack.object_key();
        let mut bytes = repo.storage().get(&key).unwrap();
        bytes[loc.offset as usize + 30] ^= 0x01;
        repo.storage().put(&key, &bytes).unwrap();
        let e = stream_file(&repo, &index, &snap, &stream, &mut Vec::new(), &Silent).unwrap_err();
        assert!(e.is_damage() && !is_output_error(&e), "{e}");
        assert!(e.to_string().contains(&key), "{e}");

        // A chunk no index lists.
        let empty = Index::default();
        let e = stream_file(&repo, &empty, &snap, &stream, &mut Vec::new(), &Silent).unwrap_err();
        assert!(matches!(e, Error::MissingChunk(_)), "{e}");
    }
}

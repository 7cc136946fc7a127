//! Repository integrity (`strongroom check`): is everything a snapshot needs present, and
//! (reading the data) intact?
//!
//! Owns the `check` job. Without read-data it proves that every manifest opens, every chunk
//! list it names resolves, every chunk is in the index and every pack the index names exists.
//! With read-data it reads every object (packs, indexes, manifests, journal, drill reports,
//! the alert state, key slots, archived WAL),
//! checks each pack's hash against its name and authenticates every blob, and names the
//! snapshots each damaged object affects. It also accounts for data no snapshot needs (packs
//! of interrupted backups, temporary objects of interrupted writes), which prune reclaims.
//!
//! Its one change to the repository is the damage record (`repository::damage`): every pack
//! found missing or damaged is recorded, so the next backup stores those chunks again instead
//! of building on them, and a pack a full read finds sound again loses its record. Must not
//! delete or rewrite data.

use crate::engine::postgres::wal;
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::archive::Archive;
use crate::repository::index::Location;
use crate::repository::journal::JournalRecord;
use crate::repository::layout::ObjectKind;
use crate::repository::pack;
use crate::repository::snapshot::Snapshot;
use crate::repository::table::Table;
use crate::repository::usage::{SortedIds, for_each_chunk, walk_index};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One thing found wrong.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The object at fault.
    pub object: String,
    /// What is wrong with it.
    pub detail: String,
    /// Snapshots that cannot be fully restored because of it.
    pub snapshots: Vec<String>,
    #[serde(skip)]
    chunks: HashSet<ChunkId>,
}

/// Outcome of `check`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// Whether nothing was found wrong.
    pub ok: bool,
    /// Snapshots examined.
    pub snapshots: usize,
    /// Packs in the repository.
    pub packs: usize,
    /// Chunks in the index.
    pub chunks: usize,
    /// Bytes read (with `--read-data`).
    pub bytes_read: u64,
    /// What is wrong.
    pub problems: Vec<Problem>,
    /// Data no snapshot needs: not a problem, but space prune will reclaim.
    pub unreferenced: Unreferenced,
    /// Locks held when the check ran (its own included).
    pub locks: Vec<LockNote>,
    /// Prune deletions marked and not finished (the next prune finishes them).
    pub pending_deletions: usize,
}

/// A lock found by `check`.
#[derive(Clone, Debug, Serialize)]
pub struct LockNote {
    /// Who holds it, since when.
    pub holder: String,
    /// Why it is stale, when it is (`strongroom unlock` removes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// Stored data that no snapshot references.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Unreferenced {
    /// Packs none of whose chunks a snapshot needs (left by interrupted or failed backups).
    pub packs: usize,
    /// Their size in bytes.
    pub pack_bytes: u64,
    /// Indexed chunks no snapshot needs.
    pub chunks: usize,
    /// Temporary objects left by interrupted writes.
    pub temporary_objects: usize,
    /// Their size in bytes.
    pub temporary_bytes: u64,
}

impl CheckReport {
    /// The problems as one phrase (`a problem: …`, `3 problems, first: …`); `None` when
    /// none was found.
    pub fn problems_found(&self) -> Option<String> {
        let first = self.problems.first()?.describe();
        Some(match self.problems.len() {
            1 => format!("a problem: {first}"),
            n => format!("{n} problems, first: {first}"),
        })
    }
}

impl Problem {
    /// The problem as one phrase: the object, then what is wrong, naming the object once
    /// (a detail taken from an error often names it already).
    pub fn describe(&self) -> String {
        if self.detail.contains(&self.object) {
            self.detail.clone()
        } else {
            format!("{}: {}", self.object, self.detail)
        }
    }
}

fn problem(object: impl Into<String>, detail: impl Into<String>) -> Problem {
    Problem {
        object: object.into(),
        detail: detail.into(),
        snapshots: Vec::new(),
        chunks: HashSet::new(),
    }
}

/// At most this many missing chunks are named one by one (their count is always exact).
const MAX_NAMED: usize = 100_000;

/// Every indexed chunk by pack, in a temporary sorted table on local disk.
struct Members {
    table: Table<48>,
    /// Per pack, where its furthest segment ends (for a truncation check without reads).
    ends: HashMap<PackId, u64>,
    _dir: tempfile::TempDir,
}

impl Members {
    fn build(index: &crate::repository::index::Index, tmp: &std::path::Path) -> Result<Members> {
        let dir = tempfile::Builder::new()
            .prefix("check-")
            .tempdir_in(tmp)
            .map_err(|e| Error::io("making a scratch directory in", tmp, e))?;
        let err = |e: std::io::Error| Error::io("sorting index entries by pack in", tmp, e);
        let mut table = Table::<48>::open(dir.path()).map_err(err)?;
        let mut ends: HashMap<PackId, u64> = HashMap::new();
        let mut batch = Vec::new();
        let mut failed = None;
        index.for_each(|id, l| {
            let end = ends.entry(l.pack).or_default();
            *end = (*end).max(l.offset as u64 + l.len as u64);
            let mut v = [0u8; 48];
            v[..32].copy_from_slice(&id.0);
            for (i, n) in [l.offset, l.len, l.inner_offset, l.inner_len]
                .into_iter()
                .enumerate()
            {
                v[32 + i * 4..36 + i * 4].copy_from_slice(&n.to_le_bytes());
            }
            batch.push((l.pack.0, v));
            if batch.len() >= 512 * 1024 {
                if let Err(e) = table.add_run(std::mem::take(&mut batch)) {
                    failed.get_or_insert(e);
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(err(e));
        }
        table.add_run(batch).map_err(err)?;
        Ok(Members {
            table,
            ends,
            _dir: dir,
        })
    }

    /// The chunks the index places in `pack`.
    fn of(&self, pack: &PackId) -> Result<Vec<(ChunkId, Location)>> {
        let values = self
            .table
            .get_all(&pack.0)
            .map_err(|e| Error::io("reading index entries by pack in", self.table.dir(), e))?;
        Ok(values
            .into_iter()
            .map(|v| {
                let n =
                    |i: usize| u32::from_le_bytes(v[32 + i * 4..36 + i * 4].try_into().expect("4"));
                (
                    ChunkId(v[..32].try_into().expect("32 bytes")),
                    Location {
                        pack: *pack,
                        offset: n(0),
                        len: n(1),
                        inner_offset: n(2),
                        inner_len: n(3),
                    },
                )
            })
            .collect())
    }
}

/// Runs the consistency check and records it in the journal.
pub fn run(repo: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("check", None, None, started_at);
    let report = match examine(repo, read_data, progress) {
        Ok(r) => r,
        Err(e) => {
            let mut rec = JournalRecord::new("check", started_at);
            rec.failed(&e);
            running.ended(repo, &rec);
            return Err(e);
        }
    };
    let mut rec = JournalRecord::new("check", started_at);
    rec.ok = report.ok;
    rec.size = report.bytes_read;
    rec.error = report.problems_found();
    running.ended(repo, &rec);
    Ok(report)
}

fn examine(repo: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    let storage = repo.storage();
    let mut problems = Vec::new();
    // The index before the packs: a pack is durable before any index object names it, so a
    // backup running meanwhile cannot make one of its packs look missing.
    let _lock = repo.read_lock("check");
    let index = repo.load_index()?;
    let packs: HashMap<PackId, u64> = storage
        .list(ObjectKind::Pack.folder())?
        .into_iter()
        .filter_map(|o| PackId::from_object_key(&o.key).map(|p| (p, o.size)))
        .collect();
    for (object, why) in index.unreadable() {
        problems.push(problem(object, why));
    }
    // The local cache remembers index objects read earlier: read every one again, so one
    // damaged since is named.
    let unreadable: HashSet<&String> = index.unreadable().iter().map(|(o, _)| o).collect();
    for o in storage.list(ObjectKind::Index.folder())? {
        if unreadable.contains(&o.key) {
            continue;
        }
        match repo.read_index(&o.key) {
            Ok(_) => {}
            Err(e) if e.is_damage() => problems.push(problem(&o.key, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    let recorded = repo.damaged_packs()?;
    // Each pack's chunks as the index places them, sorted by pack on local disk: memory
    // stays bounded whatever the repository's size.
    let members = Members::build(&index, &crate::repository::cache::scratch_dir(repo))?;
    for (p, max_end) in &members.ends {
        let ids = || -> Result<HashSet<ChunkId>> {
            Ok(members.of(p)?.into_iter().map(|(c, _)| c).collect())
        };
        if let Some(&size) = packs.get(p).filter(|&&size| *max_end > size) {
            let short: HashSet<ChunkId> = members
                .of(p)?
                .into_iter()
                .filter(|(_, l)| l.offset as u64 + l.len as u64 > size)
                .map(|(c, _)| c)
                .collect();
            if !short.is_empty() {
                let detail = format!("truncated: {size} bytes, shorter than the index says");
                note_damage(repo, p, &detail);
                let mut pr = problem(p.object_key(), detail);
                pr.chunks = short;
                problems.push(pr);
            }
        }
        if !packs.contains_key(p) && index.is_doomed(p) {
            // A prune is deleting it, and every chunk in it that a snapshot needs was
            // copied first (a pack is only doomed once that is so).
        } else if !packs.contains_key(p) {
            let mut pr = problem(p.object_key(), "missing, but the index refers to it");
            pr.chunks = ids()?;
            problems.push(pr);
            // Looked for once more before it is recorded: listings can lag behind writes.
            if !recorded.contains(p) && !storage.exists(&p.object_key()).unwrap_or(true) {
                note_damage(repo, p, "missing");
            }
        } else if recorded.contains(p) && !read_data {
            // Found damaged by an earlier check or verify; only a full read clears it.
            let detail = repo
                .read_damage(p)
                .map(|r| {
                    format!(
                        "recorded damaged on {}: {}",
                        r.found_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                        r.detail
                    )
                })
                .unwrap_or_else(|e| format!("recorded damaged ({e})"));
            let mut pr = problem(p.object_key(), detail);
            pr.chunks = ids()?;
            problems.push(pr);
        }
    }
    let mut bytes_read = 0;
    // Where physical snapshots need WAL: for naming what a damaged or missing WAL file breaks.
    let kept = repo.snapshots().unwrap_or_default();
    let wal_needs = wal::needs_of(&kept);
    if read_data {
        let total: u64 = packs.values().sum();
        progress.begin("read data", Some(total));
        let mut sorted: Vec<_> = packs.iter().collect();
        sorted.sort();
        for (p, size) in sorted {
            let object = p.object_key();
            let bytes = match read_whole(storage, &object, *size) {
                Ok(b) => b,
                Err(Error::Missing { .. }) if index.is_doomed(p) => continue,
                // A store that fails to answer says nothing about the data: the check
                // fails as the store's failure, and records no damage.
                Err(e) if !e.is_damage() => return Err(e),
                Err(e) => {
                    if e.is_damage() {
                        note_damage(repo, p, &e.to_string());
                    }
                    let mut pr = problem(&object, e.to_string());
                    pr.chunks = members.of(p)?.into_iter().map(|(c, _)| c).collect();
                    problems.push(pr);
                    continue;
                }
            };
            bytes_read += bytes.len() as u64;
            progress.advance(*size);
            let whole = pack::read_pack(repo.key(), &object, *p, &bytes);
            // Whatever the trailer says, authenticate every chunk the index places in this pack.
            let mut bad = HashSet::new();
            let mut first_err = None;
            let mut in_pack: Vec<(ChunkId, Location)> = members.of(p)?;
            in_pack.sort_by_key(|(_, l)| (l.offset, l.inner_offset));
            for seg in in_pack.chunk_by(|a, b| a.1.offset == b.1.offset) {
                let loc = seg[0].1;
                let (s, e) = (loc.offset as usize, loc.offset as usize + loc.len as usize);
                let opened = bytes
                    .get(s..e)
                    .ok_or_else(|| Error::corrupt(&object, "shorter than the index says"))
                    .and_then(|sealed| pack::decode_segment(repo.key(), *p, loc.offset, sealed));
                for (id, l) in seg {
                    let res = match &opened {
                        Ok(plain) => {
                            pack::chunk_from_segment(repo.key(), plain, *id, l).map(|_| ())
                        }
                        Err(e) => Err(Error::corrupt(&object, e.to_string())),
                    };
                    if let Err(err) = res {
                        bad.insert(*id);
                        first_err.get_or_insert(err);
                    }
                }
            }
            match (first_err, whole) {
                (Some(e), _) => {
                    let detail = match bad.len() {
                        1 => format!("a damaged chunk: {e}"),
                        n => format!("{n} damaged chunks, first: {e}"),
                    };
                    note_damage(repo, p, &detail);
                    let mut pr = problem(&object, detail);
                    pr.chunks = bad;
                    problems.push(pr);
                }
                (None, Err(e)) => {
                    note_damage(repo, p, &e.to_string());
                    problems.push(problem(
                        &object,
                        format!("{e} (no indexed chunk is affected)"),
                    ))
                }
                (None, Ok(_)) => {
                    if recorded.contains(p) {
                        match repo.clear_damage(p) {
                            Ok(()) => {
                                tracing::info!(pack = %object, "read sound again; its damage record is removed")
                            }
                            Err(e) => tracing::warn!(
                                "could not remove the damage record of {object}: {e}"
                            ),
                        }
                    }
                }
            }
        }
        progress.end();
        for o in storage.list(ObjectKind::Key.folder())? {
            bytes_read += o.size;
            if let Err(e) = crate::repository::read_key_slot(storage, &o.key) {
                problems.push(problem(o.key, e.to_string()));
            }
        }
        for o in storage.list(ObjectKind::Journal.folder())? {
            bytes_read += o.size;
            if let Err(e) = repo.read_journal_object(&o.key) {
                problems.push(problem(o.key, e.to_string()));
            }
        }
        for o in storage.list(ObjectKind::Drill.folder())? {
            bytes_read += o.size;
            if let Err(e) = crate::drill::read_report(repo, &o.key) {
                problems.push(problem(o.key, e.to_string()));
            }
        }
        // What status remembers of the alerts it sent.
        for o in storage.list(ObjectKind::State.folder())? {
            bytes_read += o.size;
            if o.key == crate::monitor::notify::state_key() {
                if let Err(e) = crate::monitor::notify::read_state(repo) {
                    problems.push(problem(o.key, e.to_string()));
                }
            }
        }
        // The WAL archive: every file authenticated and checked against its hash.
        for o in storage.list(ObjectKind::Wal.folder())? {
            bytes_read += o.size;
            let Some(rest) = ObjectKind::Wal.name_of(&o.key) else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(cluster), Some(tli), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                problems.push(problem(&o.key, "not where an archived WAL file belongs"));
                continue;
            };
            if let Err(e) = Archive::new(repo, cluster).get(tli, name) {
                let mut pr = problem(&o.key, e.to_string());
                pr.snapshots = wal_dependents(&wal_needs, cluster, name);
                problems.push(pr);
            }
        }
    }
    // WAL continuity where physical snapshots need it (a listing, and the timelines'
    // history files and origin records; the source's timeline by those records alone).
    if !wal_needs.is_empty() {
        for report in wal::verify(repo, &kept, &Default::default())? {
            let archive = Archive::new(repo, &report.system_identifier);
            for t in &report.timelines {
                for g in t.gaps.iter().filter(|g| g.needed) {
                    let mut pr = problem(
                        archive.object_key(&wal::timeline_folder(t.timeline), &g.from),
                        format!(
                            "WAL segments {} to {} of cluster {} are missing: recovery from physical snapshots before them stops there (`strongroom wal verify` lists the archive)",
                            g.from, g.to, report.system_identifier
                        ),
                    );
                    pr.snapshots = wal_dependents(&wal_needs, &report.system_identifier, &g.from);
                    problems.push(pr);
                }
            }
        }
    }
    // Every snapshot: manifest, chunk lists, chunks. The chunks they need are sorted on
    // local disk, then walked beside the index in chunk-id order: chunks no index names, and
    // what no snapshot needs, in bounded memory.
    let listed = storage.list(ObjectKind::Snapshot.folder())?;
    let mut snaps = Vec::new();
    let mut all_lists_read = true;
    for o in &listed {
        let Some(id) = ObjectKind::Snapshot.name_of(&o.key) else {
            continue;
        };
        match repo.read_snapshot(id) {
            Ok(s) => snaps.push(s),
            Err(e) => {
                let mut pr = problem(&o.key, e.to_string());
                pr.snapshots.push(id.to_string());
                problems.push(pr);
                all_lists_read = false;
            }
        }
    }
    let snapshots = snaps.len();
    let tmp = crate::repository::cache::scratch_dir(repo);
    let mut unlisted = Vec::new();
    let needed = SortedIds::needed_by(repo, &index, &snaps, &tmp, 64 << 20, |s, e| {
        let mut pr = problem(
            Snapshot::object_key(&s.id),
            format!("cannot read its chunk lists: {e}"),
        );
        pr.snapshots.push(s.id.clone());
        unlisted.push(pr);
        Ok(())
    })?;
    all_lists_read &= unlisted.is_empty();
    problems.extend(unlisted);
    let mut unreferenced = Unreferenced::default();
    let mut needed_packs: HashSet<PackId> = HashSet::new();
    // Ids the walk passes over are needed but in no index.
    let mut cursor = walk_index(&index, &needed, MAX_NAMED, |_, loc, live| {
        if live {
            needed_packs.insert(loc.pack);
        } else {
            unreferenced.chunks += 1;
        }
    })?;
    if let Some(first) = cursor.first_skipped {
        let mut pr = problem(
            format!("chunk {first}"),
            match cursor.skipped {
                1 => "a chunk that a snapshot needs is not in any index".to_string(),
                n => format!("{n} chunks that snapshots need are not in any index"),
            },
        );
        pr.chunks = std::mem::take(&mut cursor.skipped_ids)
            .into_iter()
            .collect();
        problems.push(pr);
    }
    // Name the snapshots each problem breaks: one more pass over what they need, only when
    // something is wrong.
    let bad: HashSet<ChunkId> = problems
        .iter()
        .flat_map(|p| p.chunks.iter().copied())
        .collect();
    if !bad.is_empty() {
        for s in &snaps {
            let mut hit: HashSet<ChunkId> = HashSet::new();
            let _ = for_each_chunk(repo, &index, s, |c| {
                if bad.contains(&c) {
                    hit.insert(c);
                }
                Ok(())
            });
            for pr in problems.iter_mut() {
                if !pr.snapshots.contains(&s.id) && pr.chunks.iter().any(|c| hit.contains(c)) {
                    pr.snapshots.push(s.id.clone());
                }
            }
        }
    }
    // What no snapshot needs, counted only when every snapshot's lists were read (else a
    // chunk of an unreadable one would look unneeded); an unreadable index object hides
    // which packs its chunks are in: then nothing is called unneeded.
    if !(all_lists_read && index.unreadable().is_empty()) {
        unreferenced = Unreferenced::default();
    } else {
        for (p, size) in &packs {
            if !needed_packs.contains(p) {
                unreferenced.packs += 1;
                unreferenced.pack_bytes += size;
            }
        }
    }
    for o in storage.list_temporary()? {
        unreferenced.temporary_objects += 1;
        unreferenced.temporary_bytes += o.size;
    }
    // Locks and deletion marks: read (they are small), never changed here.
    let now = jiff::Timestamp::now();
    let mut locks = Vec::new();
    for l in repo.locks()? {
        if let Err(why) = &l.record {
            problems.push(problem(
                ObjectKind::Lock.key(&l.name),
                format!("{why}; `strongroom unlock` removes it"),
            ));
        }
        locks.push(LockNote {
            holder: l.describe(),
            stale: l.stale(now),
        });
    }
    let mut pending_deletions = 0;
    for (name, mark) in repo.marks()? {
        match mark {
            Ok(_) => pending_deletions += 1,
            Err(e) => problems.push(problem(
                ObjectKind::Deletion.key(&name),
                format!("{e}; this prune's deletion cannot finish (it deletes nothing until the mark is removed by hand)"),
            )),
        }
    }
    Ok(CheckReport {
        ok: problems.is_empty(),
        snapshots,
        packs: packs.len(),
        chunks: index.len(),
        bytes_read,
        problems,
        unreferenced,
        locks,
        pending_deletions,
    })
}

/// Reads a whole object whose listing said `size` bytes. A body of another length is a
/// transfer cut short (a truncated object lists its truncated size), so it is read again;
/// twice short is the store failing, not damage.
fn read_whole(storage: &crate::storage::Storage, object: &str, size: u64) -> Result<Vec<u8>> {
    for _ in 0..2 {
        let bytes = storage.get(object)?;
        if bytes.len() as u64 == size {
            return Ok(bytes);
        }
        tracing::warn!(
            "{object}: {} bytes arrived of the {size} listed; reading it again",
            bytes.len()
        );
    }
    Err(Error::Storage {
        location: object.to_string(),
        detail: format!("the store twice sent fewer or more bytes than the {size} it lists"),
        transient: true,
    })
}

/// Physical snapshots of `cluster` that need WAL file `name` to become consistent (it lies
/// between their start and stop on their timeline).
fn wal_dependents(needs: &[wal::NeededFrom], cluster: &str, name: &str) -> Vec<String> {
    let Some(file) = wal::WalName::parse(name) else {
        return Vec::new();
    };
    needs
        .iter()
        .filter(|n| n.cluster == cluster && n.timeline == file.timeline)
        .filter(|n| {
            file.segment_number(n.segment_size).is_some_and(|seg| {
                seg >= n.start.segment(n.segment_size)
                    && seg <= n.stop.segment_before(n.segment_size)
            })
        })
        .map(|n| n.snapshot.clone())
        .collect()
}

/// Records a pack as damaged; a failure to record is logged, never the check's outcome.
fn note_damage(repo: &Repository, pack: &PackId, detail: &str) {
    if let Err(e) = repo.record_damage(pack, detail) {
        tracing::warn!("could not record {} as damaged: {e}", pack.object_key());
    }
}

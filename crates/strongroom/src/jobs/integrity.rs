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
use crate::repository::cache::scratch_dir;
use crate::repository::index::{Index, Location};
use crate::repository::journal::JournalRecord;
use crate::repository::layout::ObjectKind;
use crate::repository::pack;
use crate::repository::snapshot::Snapshot;
use crate::repository::table::Table;
use crate::repository::usage::{SortedIds, for_each_chunk, walk_index};
use crate::storage::Storage;
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
    /// On a repository with object lock: how far the locks cover the kept snapshots
    /// (`jobs::locking::coverage`, added by the caller, which knows the retention policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<crate::jobs::locking::LockCoverage>,
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
    fn build(index: &Index, tmp: &std::path::Path) -> Result<Members> {
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
                        // Whose it is does not matter to checking what a pack holds.
                        from_host: false,
                    },
                )
            })
            .collect())
    }
}

/// Runs the consistency check and records it in the journal.
pub fn run(repo: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    repo.require_full("check the repository")?;
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

/// The check as its steps, in order. Each step adds what it finds to the examination's
/// problems, so they are reported in this order.
fn examine(repo: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    // The index before the packs: a pack is durable before any index object names it, so a
    // backup running meanwhile cannot make one of its packs look missing.
    let _lock = repo.read_lock("check");
    let mut ex = Examination::begin(repo)?;
    ex.index_objects_readable()?;
    let indexed = ex.indexed_packs()?;
    ex.packs_present(&indexed, read_data)?;
    // Where physical snapshots need WAL: for naming what a damaged or missing WAL file breaks.
    let kept = repo.snapshots().unwrap_or_default();
    let wal_needs = wal::needs_of(&kept);
    if read_data {
        ex.read_packs(&indexed, progress)?;
        ex.read_small_objects()?;
        ex.read_archived_wal(&wal_needs)?;
    }
    if !wal_needs.is_empty() {
        ex.wal_continuous(&kept, &wal_needs)?;
    }
    ex.read_manifests()?;
    ex.chunks_indexed()?;
    ex.name_broken_snapshots();
    ex.count_unneeded()?;
    ex.locks_and_marks()?;
    Ok(ex.report())
}

/// The packs as the index and the damage record know them: what the pack steps hold the
/// store's listing against.
struct IndexedPacks {
    /// Packs recorded damaged when the check began.
    recorded: HashSet<PackId>,
    /// Each pack's chunks as the index places them.
    members: Members,
}

/// One examination: what its steps share, and what they find.
struct Examination<'a> {
    repo: &'a Repository,
    storage: &'a Storage,
    /// The index, loaded under the lock before the packs were listed.
    index: Index,
    /// Every pack the store lists, with its size.
    packs: HashMap<PackId, u64>,
    /// What is wrong, in the order found.
    problems: Vec<Problem>,
    /// Bytes read (with read-data).
    bytes_read: u64,
    /// The snapshots whose manifest opened.
    snaps: Vec<Snapshot>,
    /// Whether every snapshot's manifest and chunk lists were read.
    all_lists_read: bool,
    /// Packs holding a chunk a snapshot needs.
    needed_packs: HashSet<PackId>,
    /// Chunks the index places, as the walk beside the needed ids counts them.
    indexed_chunks: usize,
    /// What no snapshot needs, as reported.
    unreferenced: Unreferenced,
    /// The locks found, as reported.
    locks: Vec<LockNote>,
    /// Deletions marked and not finished, as reported.
    pending_deletions: usize,
}

impl<'a> Examination<'a> {
    /// Loads the index, then lists the packs (in this order: see `examine`).
    fn begin(repo: &'a Repository) -> Result<Self> {
        let storage = repo.storage();
        let index = repo.load_index()?;
        let packs = storage
            .list(ObjectKind::Pack.folder())?
            .into_iter()
            .filter_map(|o| PackId::from_object_key(&o.key).map(|p| (p, o.size)))
            .collect();
        Ok(Examination {
            repo,
            storage,
            index,
            packs,
            problems: Vec::new(),
            bytes_read: 0,
            snaps: Vec::new(),
            all_lists_read: true,
            needed_packs: HashSet::new(),
            indexed_chunks: 0,
            unreferenced: Unreferenced::default(),
            locks: Vec::new(),
            pending_deletions: 0,
        })
    }

    /// Every index object reads: those the load could not read, then every listed one read
    /// again, because the local cache remembers index objects read earlier and one damaged
    /// since would otherwise go unnamed.
    fn index_objects_readable(&mut self) -> Result<()> {
        for (object, why) in self.index.unreadable() {
            self.problems.push(problem(object, why));
        }
        let unreadable: HashSet<&String> = self.index.unreadable().iter().map(|(o, _)| o).collect();
        for o in self.storage.list(ObjectKind::Index.folder())? {
            if unreadable.contains(&o.key) {
                continue;
            }
            match self.repo.read_index(&o.key) {
                Ok(_) => {}
                Err(e) if e.is_damage() => self.problems.push(problem(&o.key, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The damage record, and each pack's chunks as the index places them, sorted by pack on
    /// local disk: memory stays bounded whatever the repository's size.
    fn indexed_packs(&self) -> Result<IndexedPacks> {
        let recorded = self.repo.damaged_packs()?;
        let members = Members::build(&self.index, &scratch_dir(self.repo))?;
        Ok(IndexedPacks { recorded, members })
    }

    /// Every pack the index names is there (unless a prune is deleting it) and as long as the
    /// index says, without reading it; without read-data, a pack recorded damaged stays a
    /// problem, since only a full read clears it.
    fn packs_present(&mut self, indexed: &IndexedPacks, read_data: bool) -> Result<()> {
        for (p, max_end) in &indexed.members.ends {
            if let Some(&size) = self.packs.get(p).filter(|&&size| *max_end > size) {
                self.truncated(&indexed.members, p, size)?;
            }
            let listed = self.packs.contains_key(p);
            if !listed && self.index.is_doomed(p) {
                // A prune is deleting it, and every chunk in it that a snapshot needs was
                // copied first (a pack is only doomed once that is so).
            } else if !listed {
                self.pack_problem(&indexed.members, p, "missing, but the index refers to it")?;
                // Looked for once more before it is recorded: listings can lag behind writes.
                if !indexed.recorded.contains(p)
                    && !self.storage.exists(&p.object_key()).unwrap_or(true)
                {
                    note_damage(self.repo, p, "missing");
                }
            } else if indexed.recorded.contains(p) && !read_data {
                // Found damaged by an earlier check or verify.
                let detail = recorded_damage(self.repo, p);
                self.pack_problem(&indexed.members, p, detail)?;
            }
        }
        Ok(())
    }

    /// A pack shorter than the index says: the chunks past its end are lost, and it is
    /// recorded damaged.
    fn truncated(&mut self, members: &Members, p: &PackId, size: u64) -> Result<()> {
        let short: HashSet<ChunkId> = members
            .of(p)?
            .into_iter()
            .filter(|(_, l)| l.offset as u64 + l.len as u64 > size)
            .map(|(c, _)| c)
            .collect();
        if !short.is_empty() {
            let detail = format!("truncated: {size} bytes, shorter than the index says");
            note_damage(self.repo, p, &detail);
            let mut pr = problem(p.object_key(), detail);
            pr.chunks = short;
            self.problems.push(pr);
        }
        Ok(())
    }

    /// A problem with a whole pack: every chunk the index places in it is affected.
    fn pack_problem(
        &mut self,
        members: &Members,
        p: &PackId,
        detail: impl Into<String>,
    ) -> Result<()> {
        let mut pr = problem(p.object_key(), detail);
        pr.chunks = members.of(p)?.into_iter().map(|(c, _)| c).collect();
        self.problems.push(pr);
        Ok(())
    }

    /// With read-data: every listed pack read whole, in name order, and every chunk the index
    /// places in it authenticated.
    fn read_packs(&mut self, indexed: &IndexedPacks, progress: &dyn Progress) -> Result<()> {
        let total: u64 = self.packs.values().sum();
        progress.begin("read data", Some(total));
        let mut sorted: Vec<(PackId, u64)> = self.packs.iter().map(|(p, s)| (*p, *s)).collect();
        sorted.sort();
        for (p, size) in sorted {
            self.read_pack(indexed, &p, size, progress)?;
        }
        progress.end();
        Ok(())
    }

    /// One pack read and its chunks authenticated: found damaged, it is recorded so; found
    /// sound, an earlier record of its damage is removed.
    fn read_pack(
        &mut self,
        indexed: &IndexedPacks,
        p: &PackId,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let object = p.object_key();
        let bytes = match read_whole(self.storage, &object, size) {
            Ok(b) => b,
            Err(Error::Missing { .. }) if self.index.is_doomed(p) => return Ok(()),
            // A store that fails to answer says nothing about the data: the check
            // fails as the store's failure, and records no damage.
            Err(e) if !e.is_damage() => return Err(e),
            Err(e) => {
                note_damage(self.repo, p, &e.to_string());
                return self.pack_problem(&indexed.members, p, e.to_string());
            }
        };
        self.bytes_read += bytes.len() as u64;
        progress.advance(size);
        let whole = pack::read_pack(self.repo.key(), &object, *p, &bytes);
        // Whatever the trailer says, authenticate every chunk the index places in this pack.
        let (bad, first_err) = authenticate(self.repo, &object, p, &bytes, indexed.members.of(p)?);
        match (first_err, whole) {
            (Some(e), _) => {
                let detail = match bad.len() {
                    1 => format!("a damaged chunk: {e}"),
                    n => format!("{n} damaged chunks, first: {e}"),
                };
                note_damage(self.repo, p, &detail);
                let mut pr = problem(&object, detail);
                pr.chunks = bad;
                self.problems.push(pr);
            }
            (None, Err(e)) => {
                note_damage(self.repo, p, &e.to_string());
                self.problems.push(problem(
                    &object,
                    format!("{e} (no indexed chunk is affected)"),
                ))
            }
            (None, Ok(_)) if indexed.recorded.contains(p) => clear_damage(self.repo, p),
            (None, Ok(_)) => {}
        }
        Ok(())
    }

    /// With read-data: the small objects read and authenticated (key slots, captured SQLite
    /// frame segments, the journal, drill reports, the alert state, what status remembers of the alerts it sent, and a
    /// copy's record of the snapshots its forget removed).
    fn read_small_objects(&mut self) -> Result<()> {
        let repo = self.repo;
        let alerts = crate::monitor::notify::state_key();
        type Reader<'r> = &'r dyn Fn(&str) -> Result<()>;
        let readers: [(ObjectKind, Reader); 5] = [
            (ObjectKind::Key, &|o| {
                crate::repository::read_key_slot(repo.storage(), o).map(drop)
            }),
            // Captured SQLite frames: each segment authenticated and parsed.
            (ObjectKind::Frames, &|o| {
                let name = ObjectKind::Frames.name_of(o).unwrap_or_default();
                let (chain, seq) = name.split_once('/').unwrap_or_default();
                let seq = u64::from_str_radix(seq, 16)
                    .map_err(|_| Error::corrupt(o, "not where a frame segment belongs"))?;
                let body = crate::repository::frames::Chain::new(repo, chain).get(seq)?;
                crate::engine::sqlite::replica::Segment::decode(o, &body).map(drop)
            }),
            (ObjectKind::Journal, &|o| {
                repo.read_journal_object(o).map(drop)
            }),
            (ObjectKind::Drill, &|o| {
                crate::jobs::drill::read_report(repo, o).map(drop)
            }),
            (ObjectKind::State, &|o| {
                if o == alerts {
                    crate::monitor::notify::read_state(repo).map(drop)
                } else if o == crate::repository::forgotten::key() {
                    repo.forgotten().map(drop)
                } else {
                    Ok(())
                }
            }),
        ];
        for (kind, read) in readers {
            for o in self.storage.list(kind.folder())? {
                self.bytes_read += o.size;
                if let Err(e) = read(&o.key) {
                    self.problems.push(problem(o.key, e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// With read-data: the WAL archive, every file authenticated and checked against its
    /// hash; a damaged one breaks the physical snapshots that need it.
    fn read_archived_wal(&mut self, wal_needs: &[wal::NeededFrom]) -> Result<()> {
        for o in self.storage.list(ObjectKind::Wal.folder())? {
            self.bytes_read += o.size;
            let Some(rest) = ObjectKind::Wal.name_of(&o.key) else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(cluster), Some(tli), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                self.problems
                    .push(problem(&o.key, "not where an archived WAL file belongs"));
                continue;
            };
            let e = match Archive::new(self.repo, cluster).get(tli, name) {
                Ok(_) => continue,
                // A piece `wal receive` deleted since the listing: its segment is archived
                // whole now.
                Err(crate::Error::NotArchived { .. })
                    if crate::engine::postgres::pieces::Piece::parse(name).is_some() =>
                {
                    continue;
                }
                Err(e) => e,
            };
            let mut pr = problem(&o.key, e.to_string());
            pr.snapshots = wal::dependents(wal_needs, cluster, name);
            self.problems.push(pr);
        }
        Ok(())
    }

    /// WAL continuity where physical snapshots need it (a listing, and the timelines' history
    /// files and origin records; the source's timeline by those records alone): a gap stops
    /// the recovery of the snapshots that need what it lacks.
    fn wal_continuous(&mut self, kept: &[Snapshot], wal_needs: &[wal::NeededFrom]) -> Result<()> {
        for report in
            crate::engine::postgres::continuity::verify(self.repo, kept, &Default::default())?
        {
            let archive = Archive::new(self.repo, &report.system_identifier);
            for t in &report.timelines {
                for g in t.gaps.iter().filter(|g| g.needed) {
                    let mut pr = problem(
                        archive.object_key(&wal::timeline_folder(t.timeline), &g.from),
                        format!(
                            "WAL segments {} to {} of cluster {} are missing: recovery from physical snapshots before them stops there (`strongroom wal verify` lists the archive)",
                            g.from, g.to, report.system_identifier
                        ),
                    );
                    pr.snapshots = wal::dependents(wal_needs, &report.system_identifier, &g.from);
                    self.problems.push(pr);
                }
            }
        }
        Ok(())
    }

    /// Every listed snapshot's manifest opens; one that does not is a problem of its own
    /// snapshot.
    fn read_manifests(&mut self) -> Result<()> {
        for o in self.storage.list(ObjectKind::Snapshot.folder())? {
            let Some(id) = ObjectKind::Snapshot.name_of(&o.key) else {
                continue;
            };
            match self.repo.read_snapshot(id) {
                Ok(s) => self.snaps.push(s),
                Err(e) => {
                    let mut pr = problem(&o.key, e.to_string());
                    pr.snapshots.push(id.to_string());
                    self.problems.push(pr);
                    self.all_lists_read = false;
                }
            }
        }
        Ok(())
    }

    /// Every chunk a snapshot needs is in the index. The snapshots' chunk lists are read and
    /// the ids they need sorted on local disk, then walked beside the index in chunk-id order:
    /// chunks no index names, and what no snapshot needs, in bounded memory.
    fn chunks_indexed(&mut self) -> Result<()> {
        let tmp = scratch_dir(self.repo);
        let mut unlisted = Vec::new();
        let needed = SortedIds::needed_by(
            self.repo,
            &self.index,
            &self.snaps,
            &tmp,
            64 << 20,
            |s, e| {
                let mut pr = problem(
                    Snapshot::object_key(&s.id),
                    format!("cannot read its chunk lists: {e}"),
                );
                pr.snapshots.push(s.id.clone());
                unlisted.push(pr);
                Ok(())
            },
        )?;
        self.all_lists_read &= unlisted.is_empty();
        self.problems.extend(unlisted);
        // Ids the walk passes over are needed but in no index.
        let mut cursor = walk_index(&self.index, &needed, MAX_NAMED, |_, loc, live| {
            self.indexed_chunks += 1;
            if live {
                self.needed_packs.insert(loc.pack);
            } else {
                self.unreferenced.chunks += 1;
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
            self.problems.push(pr);
        }
        Ok(())
    }

    /// Names the snapshots each problem breaks: one more pass over what they need, only when
    /// something is wrong; after every step that finds damaged or missing chunks.
    fn name_broken_snapshots(&mut self) {
        let bad: HashSet<ChunkId> = self
            .problems
            .iter()
            .flat_map(|p| p.chunks.iter().copied())
            .collect();
        if bad.is_empty() {
            return;
        }
        for s in &self.snaps {
            let mut hit: HashSet<ChunkId> = HashSet::new();
            let _ = for_each_chunk(self.repo, &self.index, s, |c| {
                if bad.contains(&c) {
                    hit.insert(c);
                }
                Ok(())
            });
            for pr in self.problems.iter_mut() {
                if !pr.snapshots.contains(&s.id) && pr.chunks.iter().any(|c| hit.contains(c)) {
                    pr.snapshots.push(s.id.clone());
                }
            }
        }
    }

    /// What no snapshot needs (prune reclaims it): packs, counted only when every snapshot's
    /// lists were read (else a chunk of an unreadable one would look unneeded) and every index
    /// object (one unreadable hides which packs its chunks are in: then nothing is called
    /// unneeded); and the temporary objects of interrupted writes.
    fn count_unneeded(&mut self) -> Result<()> {
        if !(self.all_lists_read && self.index.unreadable().is_empty()) {
            self.unreferenced = Unreferenced::default();
        } else {
            for (p, size) in &self.packs {
                if !self.needed_packs.contains(p) {
                    self.unreferenced.packs += 1;
                    self.unreferenced.pack_bytes += size;
                }
            }
        }
        for o in self.storage.list_temporary()? {
            self.unreferenced.temporary_objects += 1;
            self.unreferenced.temporary_bytes += o.size;
        }
        Ok(())
    }

    /// Locks and deletion marks: read (they are small), never changed here; one unreadable is
    /// a problem.
    fn locks_and_marks(&mut self) -> Result<()> {
        let now = jiff::Timestamp::now();
        for l in self.repo.locks()? {
            if let Err(why) = &l.record {
                self.problems.push(problem(
                    ObjectKind::Lock.key(&l.name),
                    format!("{why}; `strongroom unlock` removes it"),
                ));
            }
            self.locks.push(LockNote {
                holder: l.describe(),
                stale: l.stale(now),
            });
        }
        for (name, mark) in self.repo.marks()? {
            match mark {
                Ok(_) => self.pending_deletions += 1,
                Err(e) => self.problems.push(problem(
                    ObjectKind::Deletion.key(&name),
                    format!("{e}; this prune's deletion cannot finish (it deletes nothing until the mark is removed by hand)"),
                )),
            }
        }
        Ok(())
    }

    /// The report of what the steps found.
    fn report(self) -> CheckReport {
        CheckReport {
            ok: self.problems.is_empty(),
            snapshots: self.snaps.len(),
            packs: self.packs.len(),
            chunks: self.indexed_chunks,
            bytes_read: self.bytes_read,
            problems: self.problems,
            unreferenced: self.unreferenced,
            locks: self.locks,
            pending_deletions: self.pending_deletions,
            object_lock: None,
        }
    }
}

/// Authenticates, segment by segment, every chunk the index places in a pack against the
/// pack's bytes: the chunks that fail, and the first failure.
fn authenticate(
    repo: &Repository,
    object: &str,
    p: &PackId,
    bytes: &[u8],
    mut in_pack: Vec<(ChunkId, Location)>,
) -> (HashSet<ChunkId>, Option<Error>) {
    let mut bad = HashSet::new();
    let mut first_err = None;
    in_pack.sort_by_key(|(_, l)| (l.offset, l.inner_offset));
    for seg in in_pack.chunk_by(|a, b| a.1.offset == b.1.offset) {
        let loc = seg[0].1;
        let (s, e) = (loc.offset as usize, loc.offset as usize + loc.len as usize);
        let opened = bytes
            .get(s..e)
            .ok_or_else(|| Error::corrupt(object, "shorter than the index says"))
            .and_then(|sealed| pack::decode_segment(repo.key(), *p, loc.offset, sealed));
        for (id, l) in seg {
            let res = match &opened {
                Ok(plain) => pack::chunk_from_segment(repo.key(), plain, *id, l).map(|_| ()),
                Err(e) => Err(Error::corrupt(object, e.to_string())),
            };
            if let Err(err) = res {
                bad.insert(*id);
                first_err.get_or_insert(err);
            }
        }
    }
    (bad, first_err)
}

/// What the damage record says of a pack, for a check that does not read it.
fn recorded_damage(repo: &Repository, p: &PackId) -> String {
    repo.read_damage(p)
        .map(|r| {
            format!(
                "recorded damaged on {}: {}",
                r.found_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                r.detail
            )
        })
        .unwrap_or_else(|e| format!("recorded damaged ({e})"))
}

/// Reads a whole object whose listing said `size` bytes. A body of another length is a
/// transfer cut short (a truncated object lists its truncated size), so it is read again;
/// twice short is the store failing, not damage.
fn read_whole(storage: &Storage, object: &str, size: u64) -> Result<Vec<u8>> {
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

/// Records a pack as damaged; a failure to record is logged, never the check's outcome.
fn note_damage(repo: &Repository, pack: &PackId, detail: &str) {
    if let Err(e) = repo.record_damage(pack, detail) {
        tracing::warn!("could not record {} as damaged: {e}", pack.object_key());
    }
}

/// Removes the damage record of a pack a full read found sound again; a failure to remove it
/// is logged, never the check's outcome.
fn clear_damage(repo: &Repository, pack: &PackId) {
    let object = pack.object_key();
    match repo.clear_damage(pack) {
        Ok(()) => tracing::info!(pack = %object, "read sound again; its damage record is removed"),
        Err(e) => tracing::warn!("could not remove the damage record of {object}: {e}"),
    }
}

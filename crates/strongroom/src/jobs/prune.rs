//! Prune: delete what no remaining snapshot needs, without ever deleting what one does.
//!
//! Owns the `prune` job: which packs are garbage, which are worth repacking, which index
//! objects the repack supersedes, which packs no index names (left by a killed backup) and
//! which archived WAL no kept physical snapshot needs; then the two-phase delete
//! (`repository::deletion`). Must not choose which snapshots to keep (`retention` and the
//! `forget` job do) and must not delete anything that is not named in a deletion mark.
//!
//! The order is the safety argument (docs/ARCHITECTURE.md, "Invariants": prune never deletes
//! what a retained snapshot needs):
//! 1. Finish earlier marks (a prune killed before it finished).
//! 2. Plan from one listing of the snapshots: every chunk they reference (list blobs
//!    included) is live. A manifest, list blob or index object that cannot be read stops
//!    the prune: it could not know what that snapshot needs.
//! 3. Repack: the live chunks of packs mostly dead are copied into new packs,
//!    re-compressed and re-sealed; new index objects name them. Only as many packs as the
//!    prune's read budget allows (`repack`: most freed per byte read first). Then every
//!    index object that names a pack to be deleted is rewritten without those entries. Nothing is
//!    deleted yet: a stale index entry can never shadow a live one, because readers prefer a
//!    copy in a pack no mark names.
//! 4. Write the mark, then list the locks it must outwait.
//! 5. Sweep: once those locks are gone, check snapshots that appeared since the plan for
//!    references into marked packs (a backup that loaded the index before the mark may
//!    have built on them) and spare those packs, indexing them again; then delete the
//!    superseded index objects, then the packs, then the expired WAL, then the mark; and
//!    bring the local index cache in step (`Repository::cache_after_prune`).
//!
//! A kill at any point leaves either no mark (only extra packs and index objects, which the
//! next prune treats like any others) or a mark the next prune finishes from where it was.

use crate::engine::postgres::wal;
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::cache;
use crate::repository::deletion::DeletionMark;
use crate::repository::expiring::ExpiringVersion;
use crate::repository::index::Entry;
use crate::repository::journal::JournalRecord;
use crate::repository::layout::ObjectKind;
use crate::repository::lock::{LockGuard, LockKind};
use crate::repository::pack;
use crate::repository::usage::{SortedIds, for_each_chunk, walk_index};
pub use repack::RepackBudget;
use repack::{Candidate, PackMap};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

mod repack;

/// Memory for sorting the chunk ids snapshots need (the rest spills to local disk).
const SORT_MEMORY: usize = 64 << 20;

/// What one pack holds, and how much of it is needed.
#[derive(Clone, Copy, Default)]
struct PackUsage {
    total: u64,
    live: u64,
    live_chunks: u64,
}

/// How a prune runs.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Packs whose live share of chunk bytes is below this are repacked (0 never, 1 always
    /// when anything in them is dead).
    pub repack_below: f64,
    /// How much of old segments one prune's repack reads at most (the packs that free most
    /// per byte read first); the rest waits for the next prune.
    pub max_repack: RepackBudget,
    /// How long the sweep waits for jobs older than the mark before leaving the deletion to
    /// the next prune.
    pub max_wait: Duration,
    /// Only say what would be done.
    pub dry_run: bool,
    /// Snapshots to count as already forgotten (a dry run of `forget --prune`, which
    /// removed nothing yet).
    pub assume_forgotten: HashSet<String>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            repack_below: 0.5,
            max_repack: RepackBudget::default(),
            max_wait: Duration::from_secs(600),
            dry_run: false,
            assume_forgotten: HashSet::new(),
        }
    }
}

/// What a prune did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshots whose data is kept.
    pub snapshots: usize,
    /// Packs in the repository before.
    pub packs: usize,
    /// Their bytes.
    pub pack_bytes: u64,
    /// Packs deleted: those no snapshot needs anything of, and those repacked.
    pub packs_deleted: usize,
    /// Of those, packs whose needed chunks were first copied into new packs.
    pub packs_repacked: usize,
    /// Packs no index object named (left by a killed backup), deleted.
    pub orphan_packs: usize,
    /// Bytes of all packs deleted (whole, repacked, orphans).
    pub bytes_deleted: u64,
    /// Bytes of the new packs the repack wrote.
    pub bytes_written: u64,
    /// Bytes of old segments the repack read (or, dry, would read): at most what
    /// `max_repack` allows.
    pub bytes_read: u64,
    /// Bytes no snapshot needs, left in packs kept because they are mostly needed.
    pub unused_bytes_kept: u64,
    /// Index objects replaced.
    pub index_superseded: usize,
    /// Archived WAL files deleted (older than any kept physical snapshot needs).
    pub wal_deleted: usize,
    /// Their bytes.
    pub wal_bytes: u64,
    /// Packs kept after all because a snapshot taken during the prune uses them.
    pub spared: usize,
    /// Bytes freed: deleted packs and WAL, less what the repack wrote.
    pub freed: i64,
    /// When the deletion is left to the next prune: why.
    pub pending: Option<String>,
    /// Object lock only: hidden object versions still locked, whose delete waits for their
    /// lock to end (a later prune deletes them).
    pub versions_waiting_for_lock: usize,
    /// Their bytes: stored (and billed) until then.
    pub bytes_waiting_for_lock: u64,
    /// When the first of them may be deleted.
    pub next_lock_end: Option<jiff::Timestamp>,
    /// Object lock only: hidden versions whose lock had ended, deleted now (or, dry, that
    /// would be).
    pub versions_released: usize,
    /// Their bytes.
    pub bytes_released: u64,
}

/// Runs a prune and records it in the journal.
pub fn run(repo: &Repository, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    repo.require_full("prune the repository")?;
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("prune", None, None, started_at);
    let result = prune(repo, opts, progress);
    let mut rec = JournalRecord::new("prune", started_at);
    match &result {
        Ok(r) => {
            rec.size = r.bytes_deleted + r.wal_bytes;
            rec.added = r.bytes_written;
        }
        Err(e) => rec.failed(e),
    }
    if !opts.dry_run || result.is_err() {
        running.ended(repo, &rec);
    }
    result
}

fn prune(repo: &Repository, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    let lock = repo.lock(LockKind::Prune, "prune")?;
    let mut report = steps(repo, opts, progress, &lock)?;
    if repo.storage().object_lock().is_some() {
        let r = release(repo, jiff::Timestamp::now(), opts.dry_run)?;
        report.versions_waiting_for_lock = r.waiting.len();
        report.bytes_waiting_for_lock = r.waiting.iter().map(|v| v.size).sum();
        report.next_lock_end = r.waiting.iter().filter_map(|v| v.until).min();
        report.versions_released = r.released;
        report.bytes_released = r.released_bytes;
    }
    Ok(report)
}

/// What [`release`] did.
#[derive(Debug, Default)]
pub struct Released {
    /// Hidden versions still locked (or not yet hidden: a sweep killed between recording
    /// and hiding them), kept in the expiring list.
    pub waiting: Vec<ExpiringVersion>,
    /// Versions deleted.
    pub released: usize,
    /// Their bytes.
    pub released_bytes: u64,
}

/// Splits the expiring versions at `now`: those whose lock has ended (due), and those that
/// wait. Pure, so the planning is tested with any clock.
pub fn due_at(
    versions: Vec<ExpiringVersion>,
    now: jiff::Timestamp,
) -> (Vec<ExpiringVersion>, Vec<ExpiringVersion>) {
    versions.into_iter().partition(|v| v.due(now))
}

/// Object lock only: deletes the versions earlier prunes and forgets hid whose lock has
/// ended by `now` (never asking S3 to delete one still locked), then the delete markers
/// left alone in front of nothing; the rest stays in the expiring list for a later prune.
/// A version S3 still refuses (its lock was extended meanwhile) has its date read again.
/// A recorded version that is still its object's current one (a sweep killed between
/// recording and hiding it) waits: the sweep that finishes hides it first.
pub fn release(repo: &Repository, now: jiff::Timestamp, dry_run: bool) -> Result<Released> {
    repo.require_full("delete what a prune released")?;
    let storage = repo.storage();
    let (lists, versions) = repo.expiring()?;
    let mut seen = HashSet::new();
    let versions: Vec<ExpiringVersion> = versions
        .into_iter()
        .filter(|v| seen.insert((v.key.clone(), v.version.clone())))
        .collect();
    let (due, mut waiting) = due_at(versions, now);
    let mut out = Released::default();
    if dry_run {
        out.released = due.len();
        out.released_bytes = due.iter().map(|v| v.size).sum();
        out.waiting = waiting;
        return Ok(out);
    }
    if due.is_empty() {
        out.waiting = waiting;
        return Ok(out);
    }
    for mut v in due {
        let current = storage.lock_of(&v.key, None)?;
        if current.is_some_and(|c| c.version.as_deref() == Some(v.version.as_str())) {
            waiting.push(v);
            continue;
        }
        if storage.delete_version(&v.key, &v.version)? {
            out.released += 1;
            out.released_bytes += v.size;
            // The delete marker in front of it now hides nothing: remove it too, so
            // listings do not wade through markers. Only when nothing else remains.
            let rest: Vec<_> = storage
                .versions(&v.key)?
                .into_iter()
                .filter(|r| r.key == v.key)
                .collect();
            if !rest.is_empty() && rest.iter().all(|r| r.delete_marker) {
                for r in rest {
                    storage.delete_version(&r.key, &r.version)?;
                }
            }
        } else {
            v.until = storage
                .lock_of(&v.key, Some(&v.version))?
                .and_then(|s| s.until)
                .or(Some(now + jiff::SignedDuration::from_hours(24)));
            waiting.push(v);
        }
    }
    repo.replace_expiring(&lists, &waiting)?;
    out.waiting = waiting;
    Ok(out)
}

fn steps(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
    lock: &LockGuard,
) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    // 1. Earlier marks first: a new plan on top of an unfinished one would count packs
    //    already doomed.
    for (name, mark) in repo.marks()? {
        let mark = match mark {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("deletion mark {name} cannot be read ({e}); it is left alone");
                continue;
            }
        };
        if opts.dry_run {
            report.pending = Some(format!(
                "an earlier prune's deletion ({name}) is not finished; the next prune finishes it first"
            ));
            return Ok(report);
        }
        let sweep = sweep(repo, &name, mark, opts, lock)?;
        report.add_sweep(&sweep);
        if let Some(why) = sweep.pending {
            report.pending = Some(why);
            return Ok(report);
        }
    }
    // The journal's one-record objects become a segment, so reads stay fast at thousands
    // of records (a record written meanwhile stays single until the next prune).
    if !opts.dry_run {
        if let Err(e) = repo.compact_journal(jiff::Timestamp::now()) {
            tracing::warn!("could not fold the journal's records into a segment: {e}");
        }
    }
    // 2. Plan.
    let clock = Instant::now();
    let plan = plan(repo, opts)?;
    tracing::debug!(seconds = clock.elapsed().as_secs_f64(), "prune planned");
    report.snapshots = plan.considered.len();
    report.packs = plan.pack_sizes.len();
    report.pack_bytes = plan.pack_sizes.values().sum();
    report.unused_bytes_kept = plan.unused_kept;
    if opts.dry_run {
        report.packs_deleted = plan.delete.len() + plan.repack.len();
        report.packs_repacked = plan.repack.len();
        report.bytes_read = plan.repack_read;
        report.orphan_packs = plan.orphans.len();
        report.bytes_deleted = plan
            .delete
            .iter()
            .chain(&plan.repack)
            .chain(&plan.orphans)
            .map(|p| plan.pack_sizes.get(p).copied().unwrap_or(0))
            .sum();
        report.index_superseded = plan.superseded.len();
        report.wal_deleted = plan.wal.len();
        report.wal_bytes = plan.wal.iter().map(|w| w.stored).sum();
        report.freed = (report.bytes_deleted + report.wal_bytes) as i64;
        return Ok(report);
    }
    if plan.is_empty() {
        return Ok(report);
    }
    // 3. Copy what is live out of the packs to repack, then rewrite the index objects.
    let repacked = repack::repack(
        repo,
        &plan.repack,
        &plan.live_in,
        plan.repack_read,
        progress,
    )?;
    report.bytes_written = repacked.bytes;
    report.bytes_read = plan.repack_read;
    tracing::debug!(
        seconds = clock.elapsed().as_secs_f64(),
        read = plan.repack_read,
        "prune repacked"
    );
    let mut doomed: Vec<PackId> = plan.delete.clone();
    doomed.extend(repacked.emptied.iter().copied());
    let (superseded, derived) = rewrite_index(repo, &plan.index_objects, &doomed)?;
    report.index_superseded = superseded.len();
    tracing::debug!(
        seconds = clock.elapsed().as_secs_f64(),
        "prune rewrote the index"
    );
    // 4. The mark, then the locks it must outwait.
    let now = jiff::Timestamp::now();
    let name = Repository::new_mark_name(now);
    let damaged = repo.damaged_packs()?;
    let mut mark = DeletionMark {
        created: now,
        hostname: crate::hostname(),
        pid: std::process::id(),
        considered: plan.considered.clone(),
        packs: doomed.iter().map(PackId::to_hex).collect(),
        orphans: plan.orphans.iter().map(PackId::to_hex).collect(),
        index: superseded.clone(),
        wal: plan.wal.iter().map(|w| w.key.clone()).collect(),
        temporary: plan.temporary.iter().map(|o| o.key.clone()).collect(),
        damage: doomed
            .iter()
            .chain(&plan.orphans)
            .filter(|p| damaged.contains(p))
            .map(PackId::to_hex)
            .collect(),
        ..DeletionMark::default()
    };
    repo.write_mark(&name, &mark)?;
    mark.waiting_for = Some(
        repo.locks()?
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != lock.name())
            .collect(),
    );
    repo.write_mark(&name, &mark)?;
    crate::fault::pause("before-sweep");
    // 5. Sweep.
    let sweep = sweep(repo, &name, mark, opts, lock)?;
    report.add_sweep(&sweep);
    tracing::debug!(seconds = clock.elapsed().as_secs_f64(), "prune swept");
    if sweep.pending.is_none() {
        // The local cache follows what this prune did, so the next job need not read every
        // index object again (a sweep left to a later prune leaves that to the next job).
        let changes = cache::PruneChanges {
            superseded,
            dropped: sweep.dropped.clone(),
            derived,
            added: repacked.index_objects,
            added_entries: repacked.entries,
        };
        if let Err(e) = repo.cache_after_prune(&changes) {
            tracing::warn!(
                "the local index cache could not follow the prune ({e}); the next job rebuilds it"
            );
        }
        tracing::debug!(
            seconds = clock.elapsed().as_secs_f64(),
            "prune updated the local cache"
        );
    }
    report.packs_repacked = repacked.emptied.len();
    report.pending = sweep.pending;
    report.freed = (report.bytes_deleted + report.wal_bytes) as i64 - report.bytes_written as i64;
    Ok(report)
}

impl PruneReport {
    fn add_sweep(&mut self, s: &Swept) {
        self.packs_deleted += s.packs;
        self.orphan_packs += s.orphans;
        self.bytes_deleted += s.bytes;
        self.wal_deleted += s.wal;
        self.wal_bytes += s.wal_bytes;
        self.spared += s.spared;
    }
}

/// What the plan decided.
struct Plan {
    considered: Vec<String>,
    /// Every pack present, with its size.
    pack_sizes: HashMap<PackId, u64>,
    /// Packs with nothing live.
    delete: Vec<PackId>,
    /// Packs to repack, with the live chunks to copy out of each, and the bytes of segments
    /// the repack reads.
    repack: Vec<PackId>,
    live_in: PackMap<Vec<(ChunkId, crate::repository::index::Location)>>,
    repack_read: u64,
    /// Present packs no index object names.
    orphans: Vec<PackId>,
    /// Index objects when the plan was made.
    index_objects: Vec<String>,
    /// Index objects that name a pack to delete or repack.
    superseded: Vec<String>,
    /// Unused bytes left in kept packs.
    unused_kept: u64,
    wal: Vec<wal::Expired>,
    /// Temporary objects of interrupted writes.
    temporary: Vec<crate::storage::ObjectInfo>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.delete.is_empty()
            && self.repack.is_empty()
            && self.orphans.is_empty()
            && self.wal.is_empty()
            && self.temporary.is_empty()
    }
}

fn plan(repo: &Repository, opts: &PruneOptions) -> Result<Plan> {
    let started = Instant::now();
    let (mut snaps, mut damaged) = repo.snapshots_lenient()?;
    snaps.retain(|s| !opts.assume_forgotten.contains(&s.id));
    damaged.retain(|(id, _)| !opts.assume_forgotten.contains(id));
    if let Some((id, e)) = damaged.first() {
        return Err(Error::Failed(format!(
            "snapshot {} cannot be read ({e}), so prune cannot know which data it needs; forget it (`strongroom forget {}`) and prune again",
            crate::repository::snapshot::short_id(id),
            crate::repository::snapshot::short_id(id)
        )));
    }
    // Index objects are listed before packs, as `load_index` does: a backup's packs are
    // durable before its index object, so no indexed pack can look missing.
    let index_objects: Vec<String> = repo
        .storage()
        .list(ObjectKind::Index.folder())?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let index = repo.load_index()?;
    if let Some((object, why)) = index.unreadable().first() {
        return Err(Error::Failed(format!(
            "index object {object} cannot be read ({why}); run `strongroom repair index` before pruning"
        )));
    }
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        snapshots = snaps.len(),
        "prune plan: snapshots and index loaded"
    );
    let pack_sizes: HashMap<PackId, u64> = repo
        .storage()
        .list(ObjectKind::Pack.folder())?
        .into_iter()
        .filter_map(|o| Some((PackId::from_object_key(&o.key)?, o.size)))
        .collect();
    // What every snapshot needs, sorted on local disk (memory stays bounded whatever the
    // repository's size); then one pass over the index, in chunk-id order, beside it.
    let tmp = cache::scratch_dir(repo);
    let live = SortedIds::needed_by(repo, &index, &snaps, &tmp, SORT_MEMORY, |_, e| Err(e)).map_err(|e| {
        if e.is_damage() {
            Error::Failed(format!(
                "the chunk lists of a snapshot cannot be read ({e}), so prune cannot know which data it needs; run `strongroom check`, then `strongroom repair index` if chunks are missing from the index"
            ))
        } else {
            e
        }
    })?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        needed = live.len,
        "prune plan: needed chunks sorted"
    );
    // Per pack: bytes of all chunks, bytes and count of live ones (where the index places
    // them: a healthy copy when there is one).
    let mut usage: PackMap<PackUsage> = PackMap::default();
    let cursor = walk_index(&index, &live, 0, |_, loc, needed| {
        let u = usage.entry(loc.pack).or_default();
        u.total += loc.inner_len as u64;
        if needed {
            u.live += loc.inner_len as u64;
            u.live_chunks += 1;
        }
    })?;
    if let Some(c) = cursor.first_skipped {
        let first = &c.to_hex()[..16];
        return Err(Error::Failed(match cursor.skipped {
            1 => format!(
                "a chunk that a snapshot needs ({first}) is in no index object; run `strongroom repair index` before pruning"
            ),
            n => format!(
                "{n} chunks that snapshots need are in no index object (first: {first}); run `strongroom repair index` before pruning"
            ),
        }));
    }
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "prune plan: index walked"
    );
    let indexed: HashSet<PackId> = index.packs().iter().copied().collect();
    let recorded_damaged = repo.damaged_packs()?;
    let mut delete = Vec::new();
    let mut candidates = Vec::new();
    let mut unused_kept = 0u64;
    let mut sorted_packs: Vec<&PackId> = indexed.iter().collect();
    sorted_packs.sort();
    for pack in sorted_packs {
        let Some(&size) = pack_sizes.get(pack) else {
            continue; // missing: damage for `check` to report, not garbage
        };
        let u = usage.get(pack).copied().unwrap_or_default();
        let c = Candidate {
            pack: *pack,
            size,
            total: u.total,
            live: u.live,
            live_chunks: u.live_chunks,
            read: size,
        };
        if u.live == 0 {
            delete.push(*pack);
        } else if u.live < u.total
            && !recorded_damaged.contains(pack)
            && (u.live as f64) < opts.repack_below * u.total as f64
        {
            candidates.push(c);
        } else {
            unused_kept += c.unused();
        }
    }
    drop(usage);
    // Which of them this prune repacks, and the live chunks to copy out of each: a second
    // pass, bounded by repack::REPACK_MAX_CHUNKS.
    let budget = opts.max_repack.bytes(pack_sizes.values().sum());
    let chosen = repack::choose(&index, &live, candidates, budget)?;
    unused_kept += chosen.unused_left;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "prune plan: packs to repack chosen"
    );
    let (repack, live_in, repack_read) = (chosen.packs, chosen.live_in, chosen.read);
    let mut orphans: Vec<PackId> = pack_sizes
        .keys()
        .filter(|p| !indexed.contains(p))
        .copied()
        .collect();
    orphans.sort();
    // A dry run counts the index objects a repack would supersede; a real one finds them
    // as it rewrites them (each object read once).
    let mut superseded = Vec::new();
    if opts.dry_run {
        let doomed: HashSet<PackId> = delete.iter().chain(&repack).copied().collect();
        for object in &index_objects {
            let entries = repo.read_index(object)?;
            if entries.iter().any(|(_, l)| doomed.contains(&l.pack)) {
                superseded.push(object.clone());
            }
        }
    }
    let mut wal = wal::expired(repo, &snaps)?;
    // SQLite frame segments whose base snapshot is gone: nothing can replay them.
    for (key, stored) in crate::repository::frames::Chain::orphaned(repo, &snaps)? {
        wal.push(wal::Expired { key, stored });
    }
    let temporary = repo.storage().list_temporary()?;
    Ok(Plan {
        considered: snaps.iter().map(|s| s.id.clone()).collect(),
        pack_sizes,
        delete,
        repack,
        live_in,
        repack_read,
        orphans,
        index_objects,
        superseded,
        unused_kept,
        wal,
        temporary,
    })
}

/// Writes, for every index object in `objects` that names a pack in `doomed`, a new object
/// without those entries; returns the superseded objects. Entries of other packs (missing
/// or damaged ones included: that is for `check` to report) are kept as they were.
/// Also returns the objects written in their place.
fn rewrite_index(
    repo: &Repository,
    objects: &[String],
    doomed: &[PackId],
) -> Result<(Vec<String>, Vec<String>)> {
    let doomed: HashSet<PackId> = doomed.iter().copied().collect();
    let mut superseded = Vec::new();
    let mut derived = Vec::new();
    for object in objects {
        let entries = repo.read_index(object)?;
        if !entries.iter().any(|(_, l)| doomed.contains(&l.pack)) {
            continue;
        }
        let kept: Vec<Entry> = entries
            .into_iter()
            .filter(|(_, l)| !doomed.contains(&l.pack))
            .collect();
        derived.extend(repo.write_index_named(&kept)?.1);
        superseded.push(object.clone());
    }
    Ok((superseded, derived))
}

/// What one sweep deleted.
#[derive(Default)]
struct Swept {
    packs: usize,
    orphans: usize,
    bytes: u64,
    wal: usize,
    wal_bytes: u64,
    spared: usize,
    pending: Option<String>,
    /// Packs deleted (or already gone), once the sweep has finished.
    dropped: HashSet<PackId>,
}

/// Waits for the locks the mark must outwait, spares packs that newer snapshots use, then
/// deletes what the mark names and the mark itself.
fn sweep(
    repo: &Repository,
    name: &str,
    mut mark: DeletionMark,
    opts: &PruneOptions,
    own: &LockGuard,
) -> Result<Swept> {
    let mut out = Swept::default();
    let begun = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let now = jiff::Timestamp::now();
        let blocking = repo.locks()?.into_iter().find(|l| {
            l.name != own.name()
                && mark
                    .waiting_for
                    .as_ref()
                    .is_none_or(|w| w.contains(&l.name))
                && l.stale(now).is_none()
        });
        let Some(lock) = blocking else { break };
        if begun.elapsed() >= opts.max_wait {
            out.pending = Some(format!(
                "the deletion waits for {}, which began before it; the next prune finishes it",
                lock.describe()
            ));
            return Ok(out);
        }
        tracing::info!("waiting for {} before deleting", lock.describe());
        std::thread::sleep(pause.min(opts.max_wait.saturating_sub(begun.elapsed())));
        pause = (pause * 2).min(Duration::from_secs(10));
    }
    if !mark.checked {
        spare(repo, &mut mark)?;
        mark.checked = true;
        repo.write_mark(name, &mark)?;
    }
    out.spared = mark.spared.len();
    out.dropped = mark.doomed_packs().collect();
    // Deleted through `delete_objects`: on a repository with object lock each version is
    // recorded before it is hidden, for `release` to delete once its lock ends.
    let storage = repo.storage();
    repo.delete_objects(&mark.index)?;
    let sizes: HashMap<PackId, u64> = storage
        .list(ObjectKind::Pack.folder())?
        .into_iter()
        .filter_map(|o| Some((PackId::from_object_key(&o.key)?, o.size)))
        .collect();
    let orphans: HashSet<&String> = mark.orphans.iter().collect();
    let mut packs = Vec::new();
    for pack in mark.doomed_packs() {
        let Some(size) = sizes.get(&pack) else {
            continue; // deleted by an earlier, interrupted sweep
        };
        packs.push(pack.object_key());
        out.bytes += size;
        if orphans.contains(&pack.to_hex()) {
            out.orphans += 1;
        } else {
            out.packs += 1;
        }
    }
    repo.delete_objects(&packs)?;
    let damage: Vec<String> = mark
        .damage
        .iter()
        .filter(|d| !mark.spared.contains(d))
        .map(|d| ObjectKind::Damage.key(d))
        .collect();
    repo.delete_objects(&damage)?;
    let wal_sizes: HashMap<String, u64> = if mark.wal.is_empty() {
        HashMap::new()
    } else {
        // The mark names archived WAL and SQLite frame segments alike.
        let mut listed = storage.list(ObjectKind::Wal.folder())?;
        listed.extend(storage.list(ObjectKind::Frames.folder())?);
        listed.into_iter().map(|o| (o.key, o.size)).collect()
    };
    let mut wal = Vec::new();
    for key in &mark.wal {
        if let Some(size) = wal_sizes.get(key) {
            wal.push(key.clone());
            out.wal += 1;
            out.wal_bytes += size;
        }
    }
    repo.delete_objects(&wal)?;
    for key in &mark.temporary {
        storage.delete(key)?;
    }
    repo.delete_mark(name)?;
    Ok(out)
}

/// Spares the marked packs that snapshots newer than the plan use, or that an index object
/// now names (an orphan that was a running backup's), and indexes spared packs again.
fn spare(repo: &Repository, mark: &mut DeletionMark) -> Result<()> {
    let doomed: HashSet<PackId> = mark.doomed_packs().collect();
    let considered: HashSet<&String> = mark.considered.iter().collect();
    let mut spared: HashSet<PackId> = HashSet::new();
    // Snapshots before the index: a backup writes its index objects before its manifest, so
    // the index loaded next names every chunk a listed snapshot needs.
    let (snaps, damaged) = repo.snapshots_lenient()?;
    if let Some((id, e)) = damaged.iter().find(|(id, _)| !considered.contains(id)) {
        return Err(Error::Failed(format!(
            "snapshot {} appeared during the prune and cannot be read ({e}); the deletion waits (forget it, then prune again)",
            crate::repository::snapshot::short_id(id)
        )));
    }
    let newer: Vec<_> = snaps
        .iter()
        .filter(|s| !considered.contains(&s.id))
        .collect();
    // Only a snapshot taken since the plan, or an orphan, can spare anything: without
    // either, the index is not loaded again (that would read every index object the
    // repack and the rewrite just wrote).
    if !newer.is_empty() || !mark.orphans.is_empty() {
        let index = repo.load_index()?;
        for snap in newer {
            for_each_chunk(repo, &index, snap, |c| match index.get(&c) {
                Some(loc) if doomed.contains(&loc.pack) => {
                    spared.insert(loc.pack);
                    Ok(())
                }
                Some(_) => Ok(()),
                None => Err(Error::Failed(format!(
                    "snapshot {} (taken during the prune) needs chunk {} which no index object lists; the deletion waits: run `strongroom repair index`",
                    snap.short_id(),
                    &c.to_hex()[..16]
                ))),
            })?;
        }
        let indexed: HashSet<PackId> = index.packs().iter().copied().collect();
        for o in &mark.orphans {
            if let Some(p) = PackId::from_hex(o).filter(|p| indexed.contains(p)) {
                spared.insert(p);
            }
        }
    }
    // A spared pack's entries may be gone from the rewritten index objects: index it again
    // from its own trailer before any superseded object is deleted.
    for p in &spared {
        let object = p.object_key();
        let whole = repo.storage().get(&object)?;
        let entries = pack::read_pack(repo.key(), &object, *p, &whole)?;
        repo.write_index(&entries)?;
        tracing::info!(
            "{object} is kept: a snapshot taken during the prune uses it, or a backup indexed it"
        );
    }
    mark.spared = spared.iter().map(PackId::to_hex).collect();
    mark.spared.sort();
    // A base snapshot taken during the prune (continuous capture starting a chain) keeps
    // the segments the plan saw without one.
    crate::repository::frames::spare_based(&mut mark.wal, &snaps);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which hidden versions a prune deletes depends only on their recorded lock date and
    /// its clock: due at or after the date, waiting before it, due at once without a lock.
    #[test]
    fn hidden_versions_are_due_when_their_lock_ends_by_the_prunes_clock() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let v = |key: &str, until: Option<&str>| ExpiringVersion {
            key: key.into(),
            version: format!("v-{key}"),
            size: 10,
            until: until.map(t),
        };
        let versions = vec![
            v("data/aa/a", Some("2026-12-07T00:00:00Z")),
            v("data/bb/b", Some("2026-12-09T00:00:00Z")),
            v("index/c", None),
        ];
        let keys = |vs: &[ExpiringVersion]| vs.iter().map(|v| v.key.clone()).collect::<Vec<_>>();
        let (due, waiting) = due_at(versions.clone(), t("2026-12-06T12:00:00Z"));
        assert_eq!(keys(&due), ["index/c"]);
        assert_eq!(keys(&waiting), ["data/aa/a", "data/bb/b"]);
        let (due, waiting) = due_at(versions.clone(), t("2026-12-07T00:00:00Z"));
        assert_eq!(keys(&due), ["data/aa/a", "index/c"]);
        assert_eq!(keys(&waiting), ["data/bb/b"]);
        let (due, waiting) = due_at(versions, t("2027-01-01T00:00:00Z"));
        assert_eq!(due.len(), 3);
        assert!(waiting.is_empty());
    }
}

//! The copy job (`strongroom copy`): snapshots and the WAL archive of one repository into
//! another of its family (made with `init --copy-of`), object by object, as they are.
//!
//! Owns what a copy moves and in which order, that every object is authenticated before it
//! is written, and the job's journal record (in the source's journal, one per destination).
//! Must not decrypt and re-encrypt: source and destination share the master key
//! (`repository::CopyOf`), so packs, manifests and archived WAL are written byte for byte as
//! the source holds them. Must not delete or rewrite anything in either repository but
//! damage records: its only writes to the source are its lock, its journal record and the
//! damage record of a pack it found damaged (as `check` writes them), and in the
//! destination it removes the damage record of a pack it wrote there again.
//!
//! Why raw objects: restic and rustic `copy` decrypt every blob and encrypt it again under
//! the destination's keys, so a snapshot's whole content is read and uploaded again, and the
//! copy deduplicates only when it was made with the same chunker parameters. A copy here
//! shares the keys and the compression levels, so a chunk has the same id in both and a pack
//! the destination lacks is one GET and one PUT.
//!
//! Order, per snapshot the destination lacks (oldest first), after the whole WAL archive
//! (physical snapshots need their WAL there before their manifest):
//! 1. its chunk lists are walked a window at a time; each chunk the destination's index
//!    cannot vouch for is looked up in the source's index, which says which pack holds it;
//!    the packs holding list blobs are brought first, since the lists are read from the
//!    destination (never twice from the source);
//! 2. each such pack is read whole from the source, checked against its name and every
//!    segment authenticated with every chunk hashed against its id (`pack::verify`), then
//!    written; a pack the destination lists but no index object names there (a copy killed
//!    before its index objects) is indexed from its trailer instead, without reading the
//!    source;
//! 3. index objects name only packs already written (every 65,536 entries, and the rest
//!    before the manifest);
//! 4. the manifest, last (the commit point, as for a backup), read again and authenticated.
//!
//! A kill at any point leaves the destination consistent (a manifest only after everything
//! it needs) and the next run moves nothing already there: it lists what the destination
//! has. A damaged source object is never written: it is named with the snapshots it
//! affects, those snapshots are not copied, and the rest is.

use crate::access::Access;
use crate::engine::postgres::wal::{self, NeededFrom};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{ChunkId, PackId};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::archive;
use crate::repository::index::{Entry, Index};
use crate::repository::journal::{CopyFigures, JournalRecord};
use crate::repository::layout::ObjectKind;
use crate::repository::lock::LockKind;
use crate::repository::pack;
use crate::repository::reader;
use crate::repository::snapshot::{self, DeltaRecord, Filter, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Index entries gathered before they are written as one index object (as a backup does).
const INDEX_FLUSH: usize = 65_536;
/// List blobs resolved per window (up to 16 MB of ids).
const LISTS_PER_WINDOW: usize = 256;
/// Chunk ids looked up in one go (see `Job::lacking`).
const LOOKUP_RUN: usize = 16 * 1024;
/// Objects copied at once: an object store rewards parallel requests; each holds one pack
/// (16 MiB) or WAL segment in memory.
const COPIERS: usize = 3;

/// What to copy.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Snapshot references (ids, prefixes, `latest`); empty: every snapshot the destination
    /// lacks.
    pub references: Vec<String>,
    /// Narrows the snapshots copied, and what `latest` means.
    pub filter: Filter,
}

/// What one copy into one destination did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    /// The contract's figures (destination, snapshots, WAL files, bytes).
    #[serde(flatten)]
    pub figures: CopyFigures,
    /// Packs read from the source and written to the destination.
    pub packs_copied: usize,
    /// Packs found at the destination that no index object named there (left by a copy
    /// that was killed), indexed from their trailers instead of copied again.
    pub packs_indexed: usize,
    /// Snapshots the destination lacks because its own `forget` removed them
    /// (`state/forgotten`): not copied again unless named.
    pub snapshots_forgotten_there: usize,
    /// What could not be copied: each object at fault, why, and the snapshots it kept from
    /// the destination. Empty when everything asked for is durable there.
    pub failures: Vec<CopyFailure>,
}

/// An object that stopped snapshots (or a WAL file) from being copied.
#[derive(Clone, Debug, Serialize)]
pub struct CopyFailure {
    /// The object at fault (`data/ab/…`, `wal/…`, `snapshots/…`, `chunk …`).
    pub object: String,
    /// What is wrong with it.
    pub detail: String,
    /// The stable name of the failure's kind (`damaged_data`, `locked`).
    pub kind: ErrorKind,
    /// Snapshots not copied because of it.
    pub snapshots: Vec<String>,
}

impl CopyReport {
    /// The failures as one sentence, `None` when there are none.
    pub fn failures_found(&self) -> Option<String> {
        let first = self.failures.first()?;
        let mut stopped: BTreeSet<&str> = BTreeSet::new();
        for f in &self.failures {
            stopped.extend(f.snapshots.iter().map(|s| snapshot::short_id(s)));
        }
        let named = |snaps: &[String]| match snaps {
            [] => String::new(),
            [one] => format!(" (snapshot {} not copied)", snapshot::short_id(one)),
            many => format!(
                " (snapshots {} not copied)",
                many.iter()
                    .map(|s| snapshot::short_id(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let what = first.describe();
        let lead = match (self.failures.len(), stopped.len()) {
            (1, _) => format!("{what}{}", named(&first.snapshots)),
            (n, 0) => format!("{n} objects were not copied, first: {what}"),
            (n, s) => format!(
                "{n} objects were not copied ({} kept back), first: {what}{}",
                crate::counted(s, "snapshot"),
                named(&first.snapshots)
            ),
        };
        Some(format!(
            "{lead}; everything else was copied to {}",
            self.figures.repository
        ))
    }

    /// The kind of the first failure, when there is one.
    pub fn failure_kind(&self) -> Option<ErrorKind> {
        self.failures.first().map(|f| f.kind)
    }
}

impl CopyFailure {
    /// The failure as one phrase, naming the object once.
    pub fn describe(&self) -> String {
        if self.detail.contains(&self.object) {
            self.detail.clone()
        } else {
            format!("{}: {}", self.object, self.detail)
        }
    }
}

/// Copies what `options` names from `source` into the repository `destination` gives
/// access to, and records the job in the source's journal (an operator's mistake, such as
/// a destination that is not a copy, is not recorded: see `journal::is_job_failure`).
/// Failures of single objects are in the report (`failures`); an error is returned when the
/// job could not go on at all (an unreachable store, a wrong password).
pub fn run(
    source: &Repository,
    destination: &Access,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    source.require_full("copy snapshots")?;
    let started_at = jiff::Timestamp::now();
    let url = destination.url()?;
    let running = source.job_started("copy", None, None, started_at);
    let result = destination
        .open()
        .and_then(|dest| copy(source, &dest, &url, options, progress));
    let mut rec = JournalRecord::new("copy", started_at);
    match &result {
        Ok(report) => {
            rec.size = report.figures.bytes_read;
            rec.added = report.figures.bytes_written;
            rec.copy = Some(report.figures.clone());
            if let Some(sentence) = report.failures_found() {
                rec.ok = false;
                rec.error = Some(sentence);
                rec.error_kind = report.failure_kind().map(|k| k.name().to_string());
            }
        }
        // A reference that names no snapshot copied nothing and broke nothing (as for a
        // restore, finding the snapshot is not journaled).
        Err(Error::NoSnapshot(_) | Error::NoMatchingSnapshot) => return result,
        Err(e) => {
            rec.failed(e);
            rec.copy = Some(CopyFigures {
                repository: url.clone(),
                ..CopyFigures::default()
            });
        }
    }
    running.ended(source, &rec);
    result
}

fn copy(
    source: &Repository,
    dest: &Repository,
    url: &str,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    crate::copies::check_family(source, dest)?;
    // The source is read: a prune there waits for this lock (a read-only bucket during a
    // disaster gets a warning instead). The destination is written like a backup writes:
    // a prune there does not delete what this copy builds on until the lock is gone.
    let _source_lock = source.read_lock("copy");
    let _dest_lock = dest.lock(LockKind::Shared, "copy")?;
    let mut job = Job::new(source, dest, url, progress);
    let wanted = job.wanted(options)?;
    let needs = wal::needs_of(&wanted);
    job.copy_wal(&needs)?;
    job.open_indexes()?;
    progress.begin("copy", None);
    for snap in &wanted {
        job.copy_snapshot(snap)?;
    }
    progress.end();
    Ok(job.report())
}

/// One copy job's state.
struct Job<'a> {
    source: &'a Repository,
    dest: &'a Repository,
    progress: &'a dyn Progress,
    /// The source's index: which pack holds a chunk.
    src_index: Index,
    /// The destination's index: what it already holds (plus what this run indexed).
    dst_index: Index,
    /// Packs the destination lists, with their sizes (the one listing of its packs).
    dst_packs: HashMap<PackId, u64>,
    /// Packs the destination records as damaged: copied again over the damaged one.
    dst_damaged: HashSet<PackId>,
    /// Archived WAL files the destination holds (listed, and copied by this run).
    dst_wal: HashSet<String>,
    /// WAL files that could not be copied.
    failed_wal: HashSet<String>,
    /// Packs the destination holds and this run indexed (copied or found).
    done: Mutex<HashSet<PackId>>,
    /// Source packs found damaged this run, with the error (not read again).
    bad: Mutex<HashMap<PackId, Error>>,
    /// Index entries of packs written and not yet in an index object.
    pending: Mutex<Vec<Entry>>,
    report: Mutex<CopyReport>,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    packs_copied: AtomicUsize,
    packs_indexed: AtomicUsize,
}

/// The object an error is about, for naming it in a failure.
fn object_of(e: &Error) -> String {
    match e {
        Error::DamagedData { pack, .. } => pack.object_key(),
        Error::Corrupt { object, .. } | Error::Missing { object, .. } => object.clone(),
        Error::MissingChunk(c) => format!("chunk {c}"),
        other => other.to_string(),
    }
}

/// Whether an error is one object's trouble (a snapshot or file is not copied, the job goes
/// on) rather than the job's (it stops).
fn is_object_failure(e: &Error) -> bool {
    e.is_damage() || matches!(e, Error::Locked(_))
}

impl<'a> Job<'a> {
    fn new(
        source: &'a Repository,
        dest: &'a Repository,
        url: &str,
        progress: &'a dyn Progress,
    ) -> Self {
        Job {
            source,
            dest,
            progress,
            src_index: Index::default(),
            dst_index: Index::default(),
            dst_packs: HashMap::new(),
            dst_damaged: HashSet::new(),
            dst_wal: HashSet::new(),
            failed_wal: HashSet::new(),
            done: Mutex::default(),
            bad: Mutex::default(),
            pending: Mutex::default(),
            report: Mutex::new(CopyReport {
                figures: CopyFigures {
                    repository: url.to_string(),
                    ..CopyFigures::default()
                },
                ..CopyReport::default()
            }),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            packs_copied: AtomicUsize::new(0),
            packs_indexed: AtomicUsize::new(0),
        }
    }

    /// Records that `snapshot` (if any) was not copied because of `e`; one failure per
    /// object, naming every snapshot it kept back.
    fn fail(&self, e: &Error, snapshot: Option<&str>) {
        let object = object_of(e);
        let mut report = self.report.lock().expect("report lock");
        let at = match report.failures.iter().position(|f| f.object == object) {
            Some(i) => i,
            None => {
                report.failures.push(CopyFailure {
                    object,
                    detail: e.to_string(),
                    kind: e.kind(),
                    snapshots: Vec::new(),
                });
                report.failures.len() - 1
            }
        };
        if let Some(s) = snapshot {
            let snaps = &mut report.failures[at].snapshots;
            if !snaps.iter().any(|x| x == s) {
                snaps.push(s.to_string());
            }
        }
    }

    /// The snapshots to copy, oldest first; counts those the destination has already. A
    /// manifest of the source that cannot be read is a failure of its own.
    fn wanted(&mut self, options: &CopyOptions) -> Result<Vec<Snapshot>> {
        let present: HashSet<String> = self
            .dest
            .storage()
            .list(ObjectKind::Snapshot.folder())?
            .iter()
            .filter_map(|o| ObjectKind::Snapshot.name_of(&o.key).map(str::to_string))
            .collect();
        // What the destination's own retention removed stays removed, unless named.
        let forgotten = if options.references.is_empty() {
            self.dest.forgotten()?
        } else {
            BTreeSet::new()
        };
        let mut count_forgotten = 0;
        let mut absent = |id: &str| {
            if present.contains(id) {
                return false;
            }
            let gone = forgotten.contains(id);
            count_forgotten += usize::from(gone);
            !gone
        };
        let listed = self.source.storage().list(ObjectKind::Snapshot.folder())?;
        let everything = options.references.is_empty()
            && options.filter.source.is_none()
            && options.filter.tags.is_empty();
        let chosen: Vec<Snapshot> = if everything {
            // Only the manifests the destination lacks are read: a daily copy reads one.
            let ids: Vec<(String, u64)> = listed
                .iter()
                .filter_map(|o| {
                    let id = ObjectKind::Snapshot.name_of(&o.key)?;
                    Some((id.to_string(), o.size))
                })
                .collect();
            let count_present = ids.iter().filter(|(id, _)| present.contains(id)).count();
            let missing: Vec<(String, u64)> =
                ids.into_iter().filter(|(id, _)| absent(id)).collect();
            self.report
                .lock()
                .expect("report lock")
                .figures
                .snapshots_present = count_present;
            let read = crate::storage::read_each(&missing, |(id, _)| self.source.read_snapshot(id));
            let mut out = Vec::new();
            for ((id, size), r) in missing.iter().zip(read) {
                self.bytes_read.fetch_add(*size, Ordering::Relaxed);
                match r {
                    Ok(s) => out.push(s),
                    // Forgotten in the source since the listing.
                    Err(Error::Missing { .. }) => {}
                    Err(e) if e.is_damage() => self.fail(&e, Some(id)),
                    Err(e) => return Err(e),
                }
            }
            out
        } else {
            let (all, damaged) = self.source.snapshots_lenient()?;
            self.bytes_read
                .fetch_add(listed.iter().map(|o| o.size).sum(), Ordering::Relaxed);
            let picked: Vec<Snapshot> = if options.references.is_empty() {
                all.iter()
                    .filter(|s| options.filter.matches(s))
                    .cloned()
                    .collect()
            } else {
                let mut picked: BTreeMap<String, Snapshot> = BTreeMap::new();
                for r in &options.references {
                    let wanted = r.to_ascii_lowercase();
                    if let Some((id, e)) = damaged
                        .iter()
                        .find(|(id, _)| wanted.len() >= 6 && id.starts_with(&wanted))
                    {
                        self.fail(e, Some(id));
                        continue;
                    }
                    let s = snapshot::resolve(&all, r, &options.filter)?;
                    picked.insert(s.id.clone(), s.clone());
                }
                picked.into_values().collect()
            };
            self.report
                .lock()
                .expect("report lock")
                .figures
                .snapshots_present = picked.iter().filter(|s| present.contains(&s.id)).count();
            let missing: Vec<Snapshot> = picked.into_iter().filter(|s| absent(&s.id)).collect();
            if options.references.is_empty() {
                for (id, e) in damaged.iter().filter(|(id, _)| absent(id)) {
                    self.fail(e, Some(id));
                }
            }
            missing
        };
        self.report
            .lock()
            .expect("report lock")
            .snapshots_forgotten_there = count_forgotten;
        let mut chosen = chosen;
        chosen.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok(chosen)
    }

    /// Every archived WAL file of the source the destination lacks, authenticated first;
    /// one that fails is named with the physical snapshots that need it.
    fn copy_wal(&mut self, needs: &[NeededFrom]) -> Result<()> {
        // Captured SQLite frames travel with the WAL: a copy restores to the same second.
        let mut listed = Vec::new();
        self.dst_wal = Default::default();
        for kind in [ObjectKind::Wal, ObjectKind::Frames] {
            listed.extend(self.source.storage().list(kind.folder())?);
            self.dst_wal.extend(
                self.dest
                    .storage()
                    .list(kind.folder())?
                    .into_iter()
                    .map(|o| o.key),
            );
        }
        let todo: Vec<_> = listed
            .into_iter()
            .filter(|o| !self.dst_wal.contains(&o.key))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        self.progress
            .begin("WAL", Some(todo.iter().map(|o| o.size).sum()));
        let copied: Mutex<Vec<String>> = Mutex::default();
        let failed: Mutex<Vec<String>> = Mutex::default();
        let this = &*self;
        in_parallel(&todo, |o| {
            let sealed = match this.source.storage().get(&o.key) {
                Ok(b) => b,
                // Expired by a prune of the source since the listing.
                Err(Error::Missing { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            this.bytes_read
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
            let opened = if o.key.starts_with(ObjectKind::Frames.folder()) {
                crate::repository::frames::open(this.source, &o.key, &sealed).map(drop)
            } else {
                archive::open(this.source, &o.key, &sealed).map(drop)
            };
            if let Err(e) = opened {
                if !e.is_damage() {
                    return Err(e);
                }
                this.fail(&e, None);
                let dependents = ObjectKind::Wal
                    .name_of(&o.key)
                    .and_then(|rest| {
                        let mut parts = rest.splitn(3, '/');
                        let (cluster, _, name) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(wal::dependents(needs, cluster, name))
                    })
                    .unwrap_or_default();
                for s in dependents {
                    this.fail(&e, Some(&s));
                }
                failed.lock().expect("lock").push(o.key.clone());
                return Ok(());
            }
            this.dest.storage().put(&o.key, &sealed)?;
            this.bytes_written
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
            this.progress.advance(o.size);
            copied.lock().expect("lock").push(o.key.clone());
            Ok(())
        })?;
        self.progress.end();
        let copied = copied.into_inner().expect("lock");
        self.report
            .lock()
            .expect("report lock")
            .figures
            .wal_files_copied = copied.len();
        self.dst_wal.extend(copied);
        self.failed_wal = failed.into_inner().expect("lock").into_iter().collect();
        Ok(())
    }

    /// Loads both indexes and lists the destination's packs (after its index objects: a
    /// pack is durable before any index object names it).
    fn open_indexes(&mut self) -> Result<()> {
        self.src_index = self.source.load_index()?;
        self.dst_index = self.dest.load_index()?;
        self.dst_packs = self
            .dest
            .storage()
            .list(ObjectKind::Pack.folder())?
            .into_iter()
            .filter_map(|o| Some((PackId::from_object_key(&o.key)?, o.size)))
            .collect();
        self.dst_damaged = self.dest.damaged_packs()?;
        Ok(())
    }

    /// Copies one snapshot, or names why it was not copied (the job goes on); an error
    /// only when the job cannot go on.
    fn copy_snapshot(&self, snap: &Snapshot) -> Result<()> {
        if let Some(e) = self.missing_wal(snap) {
            self.fail(&e, Some(&snap.id));
            return Ok(());
        }
        let result = self.bring_snapshot(snap);
        // Packs written are indexed whatever happened to the snapshot: the next run then
        // finds them without reading their trailers.
        let flushed = self.flush_index(0);
        match result.and(flushed) {
            Ok(()) => {}
            Err(e) if is_object_failure(&e) => {
                self.fail(&e, Some(&snap.id));
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let object = Snapshot::object_key(&snap.id);
        let sealed = match self.source.sealed_snapshot(&snap.id) {
            Ok(s) => s,
            Err(e) if e.is_damage() => {
                self.fail(&e, Some(&snap.id));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.bytes_read
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        crate::fault::pause("copy-before-commit");
        // Signals held off: an interrupt removes the lock, and a manifest written after that
        // could name packs a prune of the destination, no longer waiting, is deleting.
        crate::interrupt::critical(|| self.dest.storage().put(&object, &sealed))?;
        self.bytes_written
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        self.report
            .lock()
            .expect("report lock")
            .figures
            .snapshots_copied += 1;
        Ok(())
    }

    /// For a physical snapshot that relies on the archive: the first WAL segment it needs
    /// (start to stop) that the destination lacks after the WAL was copied, as an error.
    fn missing_wal(&self, snap: &Snapshot) -> Option<Error> {
        let need = wal::needs_of(std::slice::from_ref(snap)).pop()?;
        let size = need.segment_size;
        for n in need.start.segment(size)..=need.stop.segment_before(size) {
            let name = wal::segment_name(need.timeline, n, size);
            let key = ObjectKind::Wal.key(&format!(
                "{}/{}/{name}",
                need.cluster,
                wal::timeline_folder(need.timeline)
            ));
            if self.failed_wal.contains(&key) {
                return Some(Error::corrupt(key, "damaged in the source (see above)"));
            }
            if !self.dst_wal.contains(&key) {
                return Some(Error::Missing {
                    object: key,
                    context: format!(
                        " the source holds; snapshot {} needs it to become consistent",
                        snap.short_id()
                    ),
                });
            }
        }
        None
    }

    /// Makes sure the destination holds every chunk `snap` needs.
    fn bring_snapshot(&self, snap: &Snapshot) -> Result<()> {
        let lists = snap.list_ids()?;
        let mut needed: BTreeSet<PackId> = BTreeSet::new();
        for group in lists.chunks(LISTS_PER_WINDOW) {
            // The list blobs first: they are read from the destination.
            let packs = self.lacking(group.to_vec())?;
            self.bring(&packs)?;
            let mut ids = Vec::new();
            for body in self.read_lists(group)? {
                if body.len() % 32 != 0 {
                    return Err(Error::corrupt(
                        Snapshot::object_key(&snap.id),
                        "chunk list of odd length",
                    ));
                }
                ids.extend(
                    body.chunks_exact(32)
                        .map(|raw| ChunkId(raw.try_into().expect("32 bytes"))),
                );
            }
            needed.extend(self.lacking(ids)?);
        }
        // Page deltas: their record blobs, then the bases the records name.
        let records = snap.delta_ids()?;
        for group in records.chunks(LISTS_PER_WINDOW) {
            let packs = self.lacking(group.to_vec())?;
            self.bring(&packs)?;
            let mut bases = Vec::new();
            for body in self.read_lists(group)? {
                let parsed = DeltaRecord::parse(&body).ok_or_else(|| {
                    Error::corrupt(Snapshot::object_key(&snap.id), "damaged page delta records")
                })?;
                bases.extend(parsed.iter().map(|r| r.base));
            }
            needed.extend(self.lacking(bases)?);
        }
        self.bring(&needed)
    }

    /// The source packs to bring for chunks `ids`: none for a chunk the destination holds
    /// already (its index vouches for it, or this run brought its pack). Both indexes are
    /// asked in ascending order, all at once, so neighbouring ids share the cache's block
    /// reads (one lookup at a time read 2-8 GB of the page cache per daily copy of 1 GB).
    fn lacking(&self, mut ids: Vec<ChunkId>) -> Result<BTreeSet<PackId>> {
        ids.sort_unstable();
        ids.dedup();
        let done = self.done.lock().expect("done lock");
        let mut packs = BTreeSet::new();
        // In runs of ascending ids: the lookups' own memory stays bounded by a run, and
        // neighbours still share blocks.
        for run in ids.chunks(LOOKUP_RUN) {
            let absent: Vec<ChunkId> = run
                .iter()
                .zip(self.dst_index.healthy_many(run))
                .filter(|(_, there)| there.is_none())
                .map(|(id, _)| *id)
                .collect();
            for (id, loc) in absent.iter().zip(self.src_index.get_many(&absent)) {
                let pack = loc.ok_or(Error::MissingChunk(*id))?.pack;
                if !done.contains(&pack) {
                    packs.insert(pack);
                }
            }
        }
        Ok(packs)
    }

    /// The bodies of the list (or delta record) blobs `ids`, read from the destination (every one is there
    /// by now): through its index, or for those in packs this run brought, at the places
    /// the source's index gives (the pack is the same bytes in both).
    fn read_lists(&self, ids: &[ChunkId]) -> Result<Vec<Vec<u8>>> {
        let (known, brought): (Vec<ChunkId>, Vec<ChunkId>) =
            ids.iter().partition(|id| self.dst_index.vouches_for(id));
        let bodies: Mutex<HashMap<ChunkId, Vec<u8>>> = Mutex::default();
        let sink = |chunks: &[(ChunkId, &[u8])]| {
            let mut b = bodies.lock().expect("lock");
            for (id, data) in chunks {
                b.insert(*id, data.to_vec());
            }
            Ok(())
        };
        reader::fetch(self.dest, &self.dst_index, &known, sink)?;
        reader::fetch(self.dest, &self.src_index, &brought, sink)?;
        let bodies = bodies.into_inner().expect("lock");
        // A list blob named twice (two identical files) was fetched once.
        ids.iter()
            .map(|id| bodies.get(id).cloned().ok_or(Error::MissingChunk(*id)))
            .collect()
    }

    /// Brings `packs` to the destination, several at once.
    fn bring(&self, packs: &BTreeSet<PackId>) -> Result<()> {
        let todo: Vec<PackId> = {
            let done = self.done.lock().expect("done lock");
            packs
                .iter()
                .filter(|p| !done.contains(p))
                .copied()
                .collect()
        };
        // The first damage found is the snapshot's; the packs after it are still brought
        // (other snapshots may need them), so one damaged pack costs only what it holds.
        let first_damage: Mutex<Option<Error>> = Mutex::default();
        in_parallel(&todo, |p| match self.bring_pack(*p) {
            Ok(()) => Ok(()),
            Err(e) if is_object_failure(&e) => {
                first_damage.lock().expect("lock").get_or_insert(e);
                Ok(())
            }
            Err(e) => Err(e),
        })?;
        match first_damage.into_inner().expect("lock") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One pack: indexed from its trailer when the destination has it already, else read
    /// from the source, verified, and written.
    fn bring_pack(&self, p: PackId) -> Result<()> {
        if let Some(e) = self.bad.lock().expect("bad lock").get(&p) {
            return Err(same_error(e));
        }
        let object = p.object_key();
        if let Some(&size) = self
            .dst_packs
            .get(&p)
            .filter(|_| !self.dst_damaged.contains(&p))
        {
            if self.dst_index.is_doomed(&p) {
                return Err(Error::Locked(format!(
                    "a prune of {} is deleting {object}, which holds chunks to copy; run copy again once that prune has finished",
                    self.dest.storage().url()
                )));
            }
            match self.dest.pack_trailer(p, size) {
                Ok(entries) => {
                    self.packs_indexed.fetch_add(1, Ordering::Relaxed);
                    return self.brought(p, entries);
                }
                // Damaged at the destination: copied again over it.
                Err(e) if e.is_damage() => {
                    tracing::warn!("{e}; copying it again from the source")
                }
                Err(e) => return Err(e),
            }
        }
        let bytes = match self.source.storage().get(&object) {
            Ok(b) => b,
            Err(Error::Missing { .. }) => {
                return Err(self.damaged(
                    p,
                    Error::DamagedData {
                        pack: p,
                        segment: None,
                        detail: "the pack is missing from the source repository".into(),
                    },
                ));
            }
            Err(e) => return Err(e),
        };
        self.bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let entries = match pack::verify(self.source.key(), p, &bytes) {
            Ok(entries) => entries,
            Err(e) if e.is_damage() => return Err(self.damaged(p, e)),
            Err(e) => return Err(e),
        };
        self.dest.storage().put(&object, &bytes)?;
        let n = bytes.len() as u64;
        self.bytes_written.fetch_add(n, Ordering::Relaxed);
        self.packs_copied.fetch_add(1, Ordering::Relaxed);
        self.progress.advance(n);
        if self.dst_damaged.contains(&p) {
            // The same bytes as the source's, which verified: the record no longer holds.
            if let Err(e) = self.dest.clear_damage(&p) {
                tracing::warn!("could not remove the damage record of {object} there: {e}");
            }
        }
        self.brought(p, entries)
    }

    /// A source pack found damaged: recorded in the source (as `check` records it, so its
    /// next backup stores those chunks again), remembered, and never written.
    fn damaged(&self, p: PackId, e: Error) -> Error {
        tracing::warn!("{e}; it is not copied");
        if let Err(why) = self.source.record_damage(&p, &e.to_string()) {
            tracing::warn!("could not record {} as damaged: {why}", p.object_key());
        }
        let again = same_error(&e);
        self.bad.lock().expect("bad lock").insert(p, e);
        again
    }

    /// Notes a pack now held by the destination and its entries, writing an index object
    /// once enough entries have gathered.
    fn brought(&self, p: PackId, entries: Vec<Entry>) -> Result<()> {
        self.pending.lock().expect("pending lock").extend(entries);
        self.done.lock().expect("done lock").insert(p);
        self.flush_index(INDEX_FLUSH)
    }

    /// Writes the pending entries as an index object when there are at least `at_least`
    /// (and any at all). Every pack they name is written already.
    fn flush_index(&self, at_least: usize) -> Result<()> {
        let entries = {
            let mut pending = self.pending.lock().expect("pending lock");
            if pending.is_empty() || pending.len() < at_least {
                return Ok(());
            }
            std::mem::take(&mut *pending)
        };
        crate::fault::pause("copy-before-index");
        let n = self.dest.write_index(&entries)?;
        self.bytes_written.fetch_add(n, Ordering::Relaxed);
        self.dst_index.remember(&entries)
    }

    fn report(self) -> CopyReport {
        let mut report = self.report.into_inner().expect("report lock");
        report.figures.bytes_read = self.bytes_read.into_inner();
        report.figures.bytes_written = self.bytes_written.into_inner();
        report.packs_copied = self.packs_copied.into_inner();
        report.packs_indexed = self.packs_indexed.into_inner();
        report
    }
}

/// The same failure again, for each snapshot a damaged pack keeps back.
fn same_error(e: &Error) -> Error {
    match e {
        Error::DamagedData {
            pack,
            segment,
            detail,
        } => Error::DamagedData {
            pack: *pack,
            segment: *segment,
            detail: detail.clone(),
        },
        Error::Locked(s) => Error::Locked(s.clone()),
        other => Error::corrupt(object_of(other), other.to_string()),
    }
}

/// Calls `each` for every item on [`COPIERS`] threads; the first error stops the others
/// (after the items they hold) and is returned.
fn in_parallel<T: Sync>(items: &[T], each: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..COPIERS.min(items.len()) {
            s.spawn(|| {
                loop {
                    if failure.lock().expect("lock").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    if let Err(e) = each(item) {
                        failure.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failure.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;

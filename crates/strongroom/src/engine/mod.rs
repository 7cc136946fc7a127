//! Database engines: how a live database becomes chunks, and chunks a database again.
//!
//! Owns the seam between databases and the repository. Each engine captures a consistent
//! state with its metadata, says which sort of target each of its snapshot kinds restores
//! into and which snapshot `latest` means for a restore when it has a rule of its own (a
//! base backup that ends before a recovery target), restores a snapshot into a target, and
//! test-restores it into a scratch place for verification, and writes it out as the
//! database's own artifact for `strongroom export` ([`export`]). Here, too, the one refusal
//! of a target of the wrong sort ([`misfit`]). Must not know how chunks are stored (the
//! repository's writer and reader do).
//!
//! Adding an engine is a module in this folder, its arms in [`for_source`],
//! [`for_snapshot`] and [`for_target`], and outside it only the names that say which engine
//! a thing is: a `source::Location` variant (with `parse_location`), an
//! `snapshot::EngineKind`; and for a new sort of target, a [`Target`] variant, an
//! `error::TargetSort` and the command line's flag for it (`commands/restore.rs`,
//! `failure.rs`). The restore and verify jobs do not change.

pub mod checks;
pub mod export;
pub mod phases;
pub mod postgres;
pub mod schema;
pub mod sqlite;

use crate::error::{Error, Result, TargetSort};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::{
    BackupKind, EngineKind, FileEntry, Filter, Metadata, Snapshot, WalRange,
};
use crate::repository::writer::BackupWriter;
use crate::source::{Location, Source};
pub use checks::CheckOutcome;
pub use phases::Phases;
use std::path::PathBuf;

/// What an engine captured.
pub struct Captured {
    /// What sort of backup it is.
    pub kind: BackupKind,
    /// Stored files.
    pub files: Vec<FileEntry>,
    /// Facts about the database at the captured moment.
    pub metadata: Metadata,
    /// The WAL range a physical backup needs replayed.
    pub wal: Option<WalRange>,
}

/// Where a restore goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// A SQLite file path.
    File(PathBuf),
    /// A PostgreSQL database URL (created when missing).
    Database(String),
    /// A PostgreSQL data directory (physical snapshots).
    DataDirectory(PathBuf),
}

impl Target {
    /// The identity of the database at this target, spelled as a source's would be
    /// ([`Location::identity`]): a restore replaces a source's own database exactly when
    /// the two are equal.
    pub fn identity(&self) -> String {
        match self {
            Target::File(p) => Location::Sqlite(p.clone()).identity(),
            Target::Database(url) => Location::Postgres(url.clone()).identity(),
            Target::DataDirectory(p) => std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
        }
    }

    /// The source location this target names; `None` for a data directory, which is no
    /// source's location (sources are reached through their server).
    pub fn location(&self) -> Option<Location> {
        match self {
            Target::File(p) => Some(Location::Sqlite(p.clone())),
            Target::Database(url) => Some(Location::Postgres(url.clone())),
            Target::DataDirectory(_) => None,
        }
    }

    /// The sort of place this is.
    pub fn sort(&self) -> TargetSort {
        match self {
            Target::File(_) => TargetSort::File,
            Target::Database(_) => TargetSort::Database,
            Target::DataDirectory(_) => TargetSort::DataDirectory,
        }
    }

    /// Whether `snap` can be restored here, as its engine says ([`Engine::restores_into`]):
    /// a SQLite snapshot into a file, a logical PostgreSQL one into a database, a physical
    /// one into a data directory.
    pub fn fits(&self, snap: &Snapshot) -> bool {
        sort_for(snap) == Some(self.sort())
    }

    /// Whether this target is `source`'s own database, whoever connects to it (its hooks
    /// then apply).
    pub fn is_location_of(&self, source: &Source) -> bool {
        self.location()
            .is_some_and(|l| l.database() == source.location.database())
    }
}

/// Where test restores happen.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// Directory for files (test-restored SQLite databases, spooled dumps).
    pub dir: PathBuf,
    /// PostgreSQL server for test restores; `None` uses the source's own server.
    pub postgres: Option<String>,
    /// Where a physical snapshot's recovery stops; `None`: as soon as it is consistent
    /// (verify). A drill recovers to a point after the snapshot.
    pub recovery: Option<RecoveryTarget>,
    /// Marks the test restore's phases as it passes them (a drill reads them).
    pub phases: Phases,
}

impl Scratch {
    /// The scratch place `[verify]` configures: its `scratch_dir` (default: the system's
    /// temporary directory) and `scratch_postgres`.
    pub fn configured(settings: &crate::config::VerifySettings) -> Scratch {
        Scratch {
            dir: settings
                .scratch_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            postgres: settings.scratch_postgres.clone(),
            ..Scratch::default()
        }
    }
}

/// Where a recovery that replays a log (PostgreSQL WAL) stops.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RecoveryTarget {
    /// The end of the archive (following the newest timeline).
    #[default]
    Latest,
    /// As soon as the snapshot is consistent: its own end.
    Immediate,
    /// The last transaction committed at or before this time.
    Time(jiff::Timestamp),
    /// This WAL position (`X/Y`).
    Lsn(String),
    /// This transaction id, included.
    Xid(u64),
    /// A restore point made with `pg_create_restore_point`.
    Name(String),
}

/// Restore options common to engines (the restore sequence reads `force`, `keep_old` and the
/// hooks; engines read the rest).
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Replace a non-empty target (its old data is kept aside until the restore succeeded).
    pub force: bool,
    /// Keep the old data aside even after success.
    pub keep_old: bool,
    /// Run the engine's full (slow) integrity check before moving the result into place,
    /// instead of its structural quick check. `verify` always runs the full one.
    pub full_check: bool,
    /// Parallel jobs for engines that restore in parallel (`None`: one per core).
    pub jobs: Option<usize>,
    /// Shell command run just before the restored data replaces the target.
    pub before_restore: Option<String>,
    /// Shell command run after the replacement (also after a failure once `before_restore`
    /// ran, so a stopped application is started again).
    pub after_restore: Option<String>,
    /// Where recovery stops (physical snapshots).
    pub recovery: RecoveryTarget,
    /// Which timeline recovery follows (physical snapshots; default: the source's own).
    pub timeline: postgres::timeline::TimelineRequest,
    /// Keep WAL archiving on in a restored data directory that is not the source's own
    /// (physical snapshots; the source's own always keeps it).
    pub archive: bool,
    /// Where the snapshot's source is now ([`crate::config::Config::location_of`]): a
    /// PostgreSQL restore asks its server which timeline it is on (physical snapshots).
    pub source_location: Option<Location>,
    /// A server will be started on the restored data directory with `pg_ctl`
    /// (`restore --start`): refused before anything is written where that cannot work (the
    /// source's own directory of a cluster whose configuration lives elsewhere).
    pub start: bool,
}

/// What a restore target holds before the restore, as its engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Nothing is there: the restore creates it.
    Absent,
    /// It exists but holds nothing of the user's (an empty database).
    Empty,
    /// It holds data.
    Occupied {
        /// What, for the refusal ("hotel.db already exists").
        what: String,
        /// What the old data is called in messages ("file", "database").
        old: &'static str,
    },
}

impl TargetState {
    /// Whether something exists at the target (empty or not).
    pub fn exists(&self) -> bool {
        !matches!(self, TargetState::Absent)
    }
}

/// What a swap did: where the old data went, and anything that went wrong after the new
/// copy was already in place.
#[derive(Clone, Debug, Default)]
pub struct Swapped {
    /// Where the replaced data now is, for people ("/srv/.hotel.db.strongroom-old-…",
    /// "database hotel_old_3fa4c1"); `None` when nothing was replaced.
    pub old: Option<String>,
    /// Stray files moved aside with the old data (a stale `-wal` beside a deleted database).
    pub moved_aside: Vec<String>,
    /// A failure after the new copy was in place (syncing its directory, say): the restore
    /// then keeps the old data and says so.
    pub incomplete: Option<String>,
}

/// A snapshot restored beside its target and checked; the target is still untouched.
///
/// The restore sequence (`crate::jobs::restore`) drives it: [`Staged::ready`], the
/// `before_restore` hook, [`Staged::swap`] (signals held off), the `after_restore` hook,
/// then [`Staged::discard_old`] unless the old data is to be kept. Dropping a staged copy
/// that was not swapped in removes it.
pub trait Staged {
    /// The target, as people name it (a path, a redacted URL).
    fn target(&self) -> String;
    /// Bytes the restored copy holds.
    fn bytes(&self) -> u64;
    /// Everything that can still be refused without changing anything, done just before the
    /// application is stopped (a fresh connection for the swap, say).
    fn ready(&mut self) -> Result<()>;
    /// Moves the old data aside (when there is any) and the restored copy into place. On
    /// failure everything is as it was and the error says so; also refuses a target that
    /// came into use or stopped being empty since [`Engine::inspect`].
    fn swap(&mut self) -> Result<Swapped>;
    /// Removes the old data after a successful swap.
    fn discard_old(&mut self) -> Result<()>;
    /// What the user should hear about choices the restore made (a timeline, archiving).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// The timeline recovery follows, for a physical restore that recovers from the archive.
    fn timeline(&self) -> Option<u32> {
        None
    }
    /// The check the restored copy passed (`integrity_check`, `quick_check`), when the
    /// engine ran one of its own.
    fn checked(&self) -> Option<&'static str> {
        None
    }
    /// When the last transaction the copy holds was captured, for a restore that replayed
    /// captured transactions (SQLite continuous capture).
    fn reached(&self) -> Option<jiff::Timestamp> {
        None
    }
}

/// A database engine.
pub trait Engine {
    /// The engine as recorded in snapshots.
    fn kind(&self) -> EngineKind;
    /// The backup kinds it takes; the first is the default.
    fn backup_kinds(&self) -> &'static [BackupKind];
    /// The sort of target its snapshots of `kind` restore into; `None` for a kind this
    /// build cannot restore.
    fn restores_into(&self, kind: &BackupKind) -> Option<TargetSort>;
    /// The snapshot `latest` means, among `all` (the repository's listing, oldest first)
    /// under `filter`, for a restore into `target` that recovers to `recovery`, when this
    /// engine has a rule of its own for it: a physical PostgreSQL restore starts from the
    /// newest base backup that ends before the recovery target; a SQLite one from the base
    /// snapshot whose captured frames reach furthest (`repo` lists its chain). `None`: the restore job's
    /// rule applies (the newest snapshot the target takes).
    fn latest_for(
        &self,
        repo: &Repository,
        all: &[Snapshot],
        filter: &Filter,
        target: &Target,
        recovery: &RecoveryTarget,
    ) -> Option<Result<Snapshot>> {
        let _ = (repo, all, filter, target, recovery);
        None
    }
    /// Whether `target` is where `snap` was taken from (the source's own database, or data
    /// directory): a restore there is a real recovery, whose failure is the source's;
    /// anywhere else it is a side copy.
    fn is_source(&self, snap: &Snapshot, target: &Target) -> bool {
        is_source_database(snap, target)
    }
    /// Captures a consistent snapshot of the source, of `kind` (one of
    /// [`Engine::backup_kinds`]), through `writer`.
    fn backup(
        &self,
        source: &Source,
        kind: &BackupKind,
        writer: &BackupWriter<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured>;
    /// Looks at a restore target without changing it: refuses one of the wrong sort, one it
    /// cannot restore into, or a request that cannot work there (`opts`), and says what it
    /// holds.
    fn inspect(
        &self,
        snap: &Snapshot,
        target: &Target,
        opts: &RestoreOptions,
    ) -> Result<TargetState>;
    /// Restores `snap` beside `target` (found as `state`) and checks the copy; the target is
    /// not touched. The copy is removed if the result is dropped before its swap.
    #[allow(clippy::too_many_arguments)]
    fn stage(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        target: &Target,
        state: &TargetState,
        opts: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Staged>>;
    /// Restores `snap` into a scratch place, runs the engine's integrity checks, the row-count
    /// comparison and the source's configured checks, and always removes the scratch copy.
    /// `source` is the configured source the snapshot came from, when it still resolves.
    fn test_restore(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        scratch: &Scratch,
        source: Option<&Source>,
        progress: &dyn Progress,
    ) -> Result<Vec<CheckOutcome>>;
    /// The files an export of `snap` writes, in order (see [`export`]): refuses a kind this
    /// build cannot export, before anything is read.
    fn export_files(&self, snap: &Snapshot) -> Result<Vec<export::ExportFile>>;
    /// Writes `snap` into `sink` as the database's own artifact (a SQLite file, a `pg_dump`
    /// archive and its globals, a data directory's tar), the files in the order
    /// [`Engine::export_files`] announced, streaming: nothing is held whole in memory.
    fn export(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        sink: &mut dyn export::ExportSink,
        progress: &dyn Progress,
    ) -> Result<()>;
}

/// The engine that handles a source.
pub fn for_source(source: &Source) -> Result<Box<dyn Engine>> {
    match &source.location {
        Location::Sqlite(_) => Ok(Box::new(sqlite::Sqlite)),
        Location::Postgres(_) => Ok(Box::new(postgres::Postgres)),
    }
}

/// The engine that restores into a sort of target (before a snapshot is chosen: which
/// rule chooses it).
pub fn for_target(target: &Target) -> Box<dyn Engine> {
    match target {
        Target::File(_) => Box::new(sqlite::Sqlite),
        Target::Database(_) | Target::DataDirectory(_) => Box::new(postgres::Postgres),
    }
}

/// The sort of target `snap` restores into; `None` when this build cannot restore it.
fn sort_for(snap: &Snapshot) -> Option<TargetSort> {
    for_snapshot(snap).ok()?.restores_into(&snap.kind)
}

/// The target `snap` restores into: `given`, when it is of the sort the snapshot needs;
/// otherwise [`misfit`]'s refusal.
pub fn target_for<'t>(snap: &Snapshot, given: Option<&'t Target>) -> Result<&'t Target> {
    match given {
        Some(t) if t.fits(snap) => Ok(t),
        _ => Err(misfit(snap, given)),
    }
}

/// The one refusal of a restore of `snap` into `given` (or into nothing), whichever path
/// finds it: [`Error::TargetMismatch`] (kind `bad_input`) naming the sort of target the
/// snapshot needs and the sort given, or [`Error::Unsupported`] for a snapshot this build
/// cannot restore at all.
pub fn misfit(snap: &Snapshot, given: Option<&Target>) -> Error {
    match sort_for(snap) {
        Some(needs) => Error::TargetMismatch {
            snapshot: snap.short_id().into(),
            engine: snap.engine.to_string(),
            kind: snap.kind.to_string(),
            given: given.map(Target::sort),
            needs,
        },
        None => Error::Unsupported(format!(
            "restoring {} {} snapshots is not available in this build",
            snap.engine, snap.kind
        )),
    }
}

/// Whether `target` names the database `snap` was taken of (its recorded location, else its
/// recorded source): the rule [`Engine::is_source`] starts from.
pub fn is_source_database(snap: &Snapshot, target: &Target) -> bool {
    let source = snap.source_location.as_deref().unwrap_or(&snap.source);
    match (target.location(), crate::source::parse_location(source)) {
        (Some(t), Some(s)) => t.database() == s.database(),
        _ => false,
    }
}

/// The engine that wrote a snapshot.
pub fn for_snapshot(snap: &Snapshot) -> Result<Box<dyn Engine>> {
    match &snap.engine {
        EngineKind::Sqlite => Ok(Box::new(sqlite::Sqlite)),
        EngineKind::Postgres => Ok(Box::new(postgres::Postgres)),
        EngineKind::Other(other) => Err(Error::Unsupported(format!(
            "snapshot {} was taken by engine {other:?}, which this build cannot restore",
            snap.short_id()
        ))),
    }
}

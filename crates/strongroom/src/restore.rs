//! The restore job: one snapshot into a target, through the one restore safety sequence.
//!
//! Owns the sequence that guards a target (docs/ARCHITECTURE.md, "Invariants": a restore
//! never destroys data silently), written once for every engine:
//!
//! 1. the engine inspects the target; one that holds data is refused unless `force`;
//! 2. the engine restores the snapshot *beside* the target and checks the copy (integrity,
//!    row counts); the target is untouched, and any failure removes the copy;
//! 3. the engine's last checks that need no change (a fresh connection, say);
//! 4. the `before_restore` hook (stop the application); its failure changes nothing;
//! 5. the swap: old data aside, the copy into place, as one step for signals; a failed swap
//!    puts everything back;
//! 6. the `after_restore` hook, which also runs when the swap failed, so a stopped
//!    application is started again;
//! 7. the old data is discarded, unless `keep_old`, or the after hook failed, or something
//!    went wrong after the copy was in place: then it is kept and the error says where.
//!
//! Engines supply only what differs ([`Engine::inspect`], [`Engine::stage`], [`Staged`]):
//! a SQLite file and its sidecars, a PostgreSQL database renamed on its server, and next a
//! PostgreSQL data directory. Also records the job in the journal. Must not resolve
//! snapshot references or know how an engine builds its copy.

use crate::config::Config;
use crate::engine::{self, Engine, RestoreOptions, Target, TargetState};
use crate::error::{Error, ErrorKind, Result};
use crate::interrupt;
use crate::process::run_hook;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{Filter, Snapshot, is_latest, resolve_one_source};
use crate::source::{Source, SourceMatch, parse_location};
use serde::Serialize;

/// What a restore did, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreOutcome {
    /// Where the data went.
    pub target: String,
    /// Bytes written.
    pub bytes: u64,
    /// Where the replaced data was kept, when it was kept.
    pub old_kept_at: Option<String>,
    /// Stray files that were moved aside (e.g. a stale `-wal` beside a deleted database).
    pub moved_aside: Vec<String>,
    /// Choices the restore made that the user should hear about (timeline, archiving).
    pub notes: Vec<String>,
    /// The timeline a physical restore's recovery follows.
    pub timeline: Option<u32>,
}

/// Which snapshot a restore into `target` means: `reference` under `filter`, where
/// `latest` never crosses sources. `latest` only considers snapshots that can restore into
/// the target's kind (a SQLite file, a database, a data directory), when any can: another
/// source's snapshots of another kind make nothing ambiguous. Without a source in the
/// filter, a target that is a source's own database (whoever connects to it) says which
/// source `latest` is of.
pub fn snapshot_for(
    repo: &Repository,
    config: &Config,
    reference: &str,
    filter: &Filter,
    target: Option<&Target>,
) -> Result<Snapshot> {
    repo.resolve_with(reference, |all| {
        let mut filter = filter.clone();
        if !is_latest(reference) {
            return resolve_one_source(all, reference, &filter).cloned();
        }
        let fitting: Vec<Snapshot>;
        let pool = match target {
            Some(t) if all.iter().any(|s| t.fits(s) && filter.matches(s)) => {
                fitting = all.iter().filter(|s| t.fits(s)).cloned().collect();
                &fitting[..]
            }
            // None fits: the newest is resolved, and the caller says which target its kind
            // needs.
            _ => all,
        };
        if let (None, Some(t)) = (&filter.source, target) {
            filter.source = sources_at(config, pool, t);
        }
        resolve_one_source(pool, reference, &filter).cloned()
    })
}

/// The physical snapshot a point-in-time restore starts from: for `latest`, the newest
/// physical snapshot that ends before the recovery target (by stop time for `--time`, stop
/// LSN for `--lsn`; the newest for the other targets), never crossing sources.
pub fn physical_snapshot_for(
    repo: &Repository,
    reference: &str,
    filter: &Filter,
    recovery: &crate::engine::RecoveryTarget,
) -> Result<Snapshot> {
    use crate::engine::RecoveryTarget;
    use crate::engine::postgres::cluster::Lsn;
    use crate::repository::snapshot::BackupKind;
    if !is_latest(reference) {
        return repo.resolve(reference, filter);
    }
    repo.resolve_with(reference, |all| {
        let fits: Vec<Snapshot> = all
            .iter()
            .filter(|s| s.kind == BackupKind::Physical)
            .filter(|s| match recovery {
                RecoveryTarget::Time(t) => {
                    let stop = s
                        .metadata
                        .extra
                        .get(crate::engine::postgres::physical::keys::STOP_TIME)
                        .and_then(|v| v.as_str())
                        .and_then(|v| v.parse::<jiff::Timestamp>().ok())
                        .unwrap_or(s.finished_at);
                    stop <= *t
                }
                RecoveryTarget::Lsn(l) => {
                    let stop = s.wal.as_ref().and_then(|w| Lsn::parse(&w.stop_lsn));
                    matches!((stop, Lsn::parse(l)), (Some(a), Some(b)) if a <= b)
                }
                _ => true,
            })
            .cloned()
            .collect();
        if fits.is_empty() && all.iter().any(|s| s.kind == BackupKind::Physical && filter.matches(s)) {
            return Err(crate::Error::NoSnapshot(
                "no physical snapshot ends before the recovery target; choose a later target or an older base backup by id".into(),
            ));
        }
        if fits.is_empty() {
            return Err(crate::Error::NoSnapshot(
                "the repository has no physical snapshots; take one with `strongroom backup --kind physical`".into(),
            ));
        }
        resolve_one_source(&fits, reference, filter).cloned()
    })
}

/// The URL of the PostgreSQL server `snap` was taken from: its configured source's, else
/// the URL it recorded; `None` for other engines or when neither is known.
pub fn source_url(config: &Config, snap: &Snapshot) -> Option<String> {
    let location = config
        .source_for(&snap.source)
        .map(|s| s.location)
        .or_else(|| parse_location(&snap.source))
        .or_else(|| snap.source_location.as_deref().and_then(parse_location))?;
    match location {
        crate::source::Location::Postgres(url) => Some(url),
        _ => None,
    }
}

/// Every recorded source among `all` whose database is the target's: by the recorded name
/// or location, or the configured source the name stands for.
fn sources_at(config: &Config, all: &[Snapshot], target: &Target) -> Option<SourceMatch> {
    let wanted = target.location()?.database();
    let at_target = |name: &str| {
        parse_location(name).is_some_and(|l| l.database() == wanted)
            || config
                .source_for(name)
                .is_some_and(|src| src.location.database() == wanted)
    };
    let mut own: Option<SourceMatch> = None;
    for snap in all {
        let mut names = std::iter::once(&snap.source).chain(&snap.source_location);
        if names.any(|n| at_target(n)) {
            match &mut own {
                Some(m) => m.add(&snap.source),
                None => own = Some(SourceMatch::new(&snap.source)),
            }
        }
    }
    own
}

/// Whose `before_restore`/`after_restore` hooks a restore runs.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// The source whose hooks run, if any.
    pub from: Option<Source>,
    /// The snapshot's source, when it has hooks that do not run (the target is not its
    /// database): worth telling the user.
    pub skipped: Option<Source>,
}

/// Hooks (stop and start the application) belong to the database being replaced: those of
/// the configured source whose database `target` is. A restore into any other place runs
/// none, so a drill never stops production, unless `asked`: then the snapshot's source's.
pub fn hooks_for(config: &Config, snap: &Snapshot, target: &Target, asked: bool) -> Hooks {
    let snapshot_source = config.source_for(&snap.source);
    let from = match target.location().and_then(|l| config.source_at(&l)) {
        Some(replaced) => Some(replaced),
        None if asked => snapshot_source.clone(),
        None => None,
    };
    let skipped = snapshot_source
        .filter(|s| from.is_none() && (s.before_restore.is_some() || s.after_restore.is_some()));
    Hooks { from, skipped }
}

/// Restores `snap` into `target` and records the job in the journal.
pub fn run(
    repo: &Repository,
    snap: &Snapshot,
    target: &Target,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("restore", Some(&snap.source), Some(&snap.id), started_at);
    let result =
        engine::for_snapshot(snap).and_then(|e| restore(&*e, repo, snap, target, opts, progress));
    let mut rec = JournalRecord::new("restore", started_at);
    rec.source = Some(snap.source.clone());
    rec.snapshot = Some(snap.id.clone());
    rec.side = !replaces_source(snap, target);
    match &result {
        Ok(o) => rec.size = o.bytes,
        Err(e) => rec.failed(e),
    }
    running.ended(repo, &rec);
    result
}

/// Whether `target` is the database (or data directory, as recorded at backup) the
/// snapshot was taken of: a real recovery, whose failure is the source's. Anything else is
/// a side copy.
fn replaces_source(snap: &Snapshot, target: &Target) -> bool {
    if let Target::DataDirectory(dir) = target {
        // One rule with the restore's archiving decision: the recorded directory, on the
        // host that took the backup.
        return crate::engine::postgres::physical::recovery::is_source_dir(snap, dir);
    }
    let source = snap.source_location.as_deref().unwrap_or(&snap.source);
    match (target.location(), parse_location(source)) {
        (Some(t), Some(s)) => t.database() == s.database(),
        _ => false,
    }
}

/// The restore safety sequence (see the module docs).
fn restore(
    engine: &dyn Engine,
    repo: &Repository,
    snap: &Snapshot,
    target: &Target,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let state = engine.inspect(snap, target)?;
    if let TargetState::Occupied { what, old } = &state {
        if !opts.force {
            return Err(Error::TargetNotEmpty {
                target: what.clone(),
                old,
            });
        }
    }
    let _lock = repo.read_lock("restore");
    let index = repo.load_index()?;
    let mut staged = engine.stage(repo, &index, snap, target, &state, opts, progress)?;
    staged.ready()?;
    let shown = staged.target();
    let hook_env = [
        ("STRONGROOM_SNAPSHOT", snap.id.clone()),
        ("STRONGROOM_SOURCE", snap.source.clone()),
        ("STRONGROOM_TARGET", shown.clone()),
    ];
    if let Some(h) = &opts.before_restore {
        run_hook("before_restore", h, &hook_env)?;
    }
    let swapped = interrupt::critical(|| staged.swap());
    let after = match &opts.after_restore {
        Some(h) => run_hook("after_restore", h, &hook_env),
        None => Ok(()),
    };
    let swapped = swapped?;
    let trouble = match (&swapped.incomplete, &after) {
        (Some(t), _) => Some((t.clone(), ErrorKind::LocalIo)),
        (None, Err(e)) => Some((e.to_string(), e.kind())),
        (None, Ok(())) => None,
    };
    if let Some((trouble, cause)) = trouble {
        return Err(Error::InPlace {
            target: shown,
            trouble,
            old: swapped.old,
            cause,
        });
    }
    let (mut old_kept_at, mut moved_aside) = (swapped.old, swapped.moved_aside);
    if old_kept_at.is_some() && !opts.keep_old {
        match staged.discard_old() {
            Ok(()) => {
                old_kept_at = None;
                moved_aside.clear();
            }
            Err(e) => {
                let old = old_kept_at.as_deref().unwrap_or_default();
                tracing::warn!("could not remove the old data ({e}); it is kept at {old}")
            }
        }
    }
    Ok(RestoreOutcome {
        target: shown,
        bytes: staged.bytes(),
        old_kept_at,
        moved_aside,
        notes: staged.notes(),
        timeline: staged.timeline(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::repository::snapshot::tests::sample;
    use crate::repository::snapshot::{BackupKind, EngineKind};
    use crate::storage::Storage;

    fn repo() -> Repository {
        let kdf = KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
        };
        Repository::init(Storage::from_url("memory://").unwrap(), Some(b"pw"), kdf).unwrap()
    }

    fn stored(repo: &Repository, source: &str, engine: EngineKind, kind: BackupKind, at: i64) {
        let mut s = sample("", source, &[]);
        s.engine = engine;
        s.kind = kind;
        s.started_at = jiff::Timestamp::from_second(at).unwrap();
        s.finished_at = s.started_at;
        repo.write_snapshot(&mut s).unwrap();
    }

    #[test]
    fn latest_only_weighs_snapshots_the_target_can_take() {
        let r = repo();
        let config = Config::default();
        stored(
            &r,
            "postgres://app@db:5432/hotel",
            EngineKind::Postgres,
            BackupKind::Logical,
            10,
        );
        stored(
            &r,
            "postgres://app@db:5432/hotel",
            EngineKind::Postgres,
            BackupKind::Physical,
            20,
        );
        stored(
            &r,
            "sqlite:/srv/dev.db",
            EngineKind::Sqlite,
            BackupKind::Full,
            30,
        );
        let none = Filter::default();
        let at = |t: Target| snapshot_for(&r, &config, "latest", &none, Some(&t));
        let logical = at(Target::Database("postgres://postgres@scratch/new".into())).unwrap();
        assert_eq!(
            (logical.engine, logical.kind),
            (EngineKind::Postgres, BackupKind::Logical),
            "one source has logical snapshots: nothing is ambiguous"
        );
        let file = at(Target::File("/tmp/elsewhere.db".into())).unwrap();
        assert_eq!(file.source, "sqlite:/srv/dev.db");
        // A second source of the same kind is ambiguous again.
        stored(
            &r,
            "sqlite:/srv/other.db",
            EngineKind::Sqlite,
            BackupKind::Full,
            40,
        );
        assert!(matches!(
            at(Target::File("/tmp/elsewhere.db".into())),
            Err(Error::AmbiguousLatest { .. })
        ));
        // No snapshot fits: the newest is resolved (the caller names the target it needs).
        let r = repo();
        stored(
            &r,
            "sqlite:/srv/dev.db",
            EngineKind::Sqlite,
            BackupKind::Full,
            30,
        );
        let s = snapshot_for(
            &r,
            &config,
            "latest",
            &none,
            Some(&Target::Database("postgres://x@y/z".into())),
        );
        assert_eq!(s.unwrap().engine, EngineKind::Sqlite);
    }
}

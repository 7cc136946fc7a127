//! The restore job: one request (a snapshot reference, a target, a recovery target and the
//! person's choices) in, one snapshot restored through the one restore safety sequence out.
//!
//! Owns, in this order: which snapshot a restore means (the repository resolves the
//! reference; `latest` weighs only snapshots the target takes, or follows the engine's own
//! rule, [`Engine::latest_for`]), the refusal of a target of the wrong sort (the engine
//! seam's [`engine::misfit`]), whose hooks run, and the sequence that guards a target
//! (docs/ARCHITECTURE.md, "Invariants": a restore never destroys data silently), written
//! once for every engine:
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
//! a SQLite file and its sidecars, a PostgreSQL database renamed on its server, a PostgreSQL
//! data directory. Also records the job in the journal. Must not know what an engine's
//! snapshots record or how it builds its copy, and must not print (the outcome says what
//! the caller tells the person).

use crate::config::Config;
use crate::engine::postgres::timeline::TimelineRequest;
use crate::engine::{self, Engine, RecoveryTarget, RestoreOptions, Target, TargetState};
use crate::error::{Error, ErrorKind, Result};
use crate::interrupt;
use crate::process::run_hook;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{Filter, Snapshot, is_latest, resolve_one_source};
use crate::source::{Source, SourceMatch, parse_location};
use serde::Serialize;

/// What a restore is asked to do: everything a caller hands over.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// The snapshot: an id, a unique prefix of one, or `latest`.
    pub reference: String,
    /// Which sources and tags `reference` is taken among.
    pub filter: Filter,
    /// Where the data goes; `None` when none was given (refused once the snapshot says
    /// which sort it needs).
    pub target: Option<Target>,
    /// Where recovery stops (physical snapshots).
    pub recovery: RecoveryTarget,
    /// Which timeline recovery follows (physical snapshots; default: the source's own).
    pub timeline: TimelineRequest,
    /// Replace a non-empty target (its old data is kept aside until the restore succeeded).
    pub force: bool,
    /// Keep the old data aside even after success.
    pub keep_old: bool,
    /// The engine's full (slow) integrity check instead of its quick one.
    pub full_check: bool,
    /// Parallel jobs for engines that restore in parallel (`None`: one per core).
    pub jobs: Option<usize>,
    /// Keep WAL archiving on in a restored data directory that is not the source's own.
    pub archive: bool,
    /// Run the snapshot's source's hooks even when the target is not its own database.
    pub run_hooks: bool,
    /// A server will be started on the restored data directory (`restore --start`).
    pub start: bool,
}

/// What a restore did, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreOutcome {
    /// The snapshot restored.
    pub snapshot: Snapshot,
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
    /// The engine's own check the copy passed, when it ran one (`integrity_check`).
    pub checked: Option<&'static str>,
    /// When the last captured transaction the copy holds was captured (SQLite replay).
    pub reached: Option<jiff::Timestamp>,
    /// The timeline a physical restore's recovery follows.
    pub timeline: Option<u32>,
    /// Why the snapshot's source's `before_restore`/`after_restore` hooks did not run, when
    /// it has some: the target is not its database (the caller says how to run them).
    pub hooks_skipped: Option<String>,
}

/// Restores the snapshot `request` names into its target through the restore safety
/// sequence, and records the job in the journal: resolves the reference, refuses a target
/// of the wrong sort, and runs the hooks of the database being replaced. Finding the
/// snapshot and refusing the target are not journaled (nothing was restored).
pub fn run(
    repo: &Repository,
    config: &Config,
    request: RestoreRequest,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    repo.require_full("restore a snapshot")?;
    let given = request.target.as_ref();
    let snap = snapshot_for(
        repo,
        config,
        &request.reference,
        &request.filter,
        given,
        &request.recovery,
    )?;
    let target = engine::target_for(&snap, given)?;
    let hooks = hooks_for(config, &snap, target, request.run_hooks);
    let source = hooks.from.as_ref();
    let opts = RestoreOptions {
        force: request.force,
        keep_old: request.keep_old,
        full_check: request.full_check,
        jobs: request.jobs,
        before_restore: source.and_then(|s| s.before_restore.clone()),
        after_restore: source.and_then(|s| s.after_restore.clone()),
        recovery: request.recovery.clone(),
        timeline: request.timeline,
        archive: request.archive,
        source_location: config.location_of(&snap.source, snap.source_location.as_deref()),
        start: request.start,
    };
    let mut outcome = restore_journaled(repo, &snap, target, &opts, progress)?;
    outcome.hooks_skipped = hooks.skipped.map(|s| {
        format!(
            "not running source {}'s before_restore/after_restore hooks: {} is not its own database",
            s.name,
            target.identity()
        )
    });
    Ok(outcome)
}

/// Which snapshot a restore into `target` means: `reference` under `filter`, where
/// `latest` never crosses sources. For `latest`, an engine with a rule of its own for the
/// target decides ([`Engine::latest_for`]: a point-in-time restore's base backup);
/// otherwise only snapshots that can restore into the target's kind (a SQLite file, a
/// database, a data directory) are considered, when any can: another source's snapshots of
/// another kind make nothing ambiguous. Without a source in the filter, a target that is a
/// source's own database (whoever connects to it) says which source `latest` is of.
fn snapshot_for(
    repo: &Repository,
    config: &Config,
    reference: &str,
    filter: &Filter,
    target: Option<&Target>,
    recovery: &RecoveryTarget,
) -> Result<Snapshot> {
    repo.resolve_with(reference, |all| {
        let mut filter = filter.clone();
        if !is_latest(reference) {
            return resolve_one_source(all, reference, &filter).cloned();
        }
        if let Some(t) = target {
            if let Some(chosen) = engine::for_target(t).latest_for(repo, all, &filter, t, recovery)
            {
                return chosen;
            }
        }
        let fitting: Vec<Snapshot>;
        let pool = match target {
            Some(t) if all.iter().any(|s| t.fits(s) && filter.matches(s)) => {
                fitting = all.iter().filter(|s| t.fits(s)).cloned().collect();
                &fitting[..]
            }
            // None fits: the newest is resolved, and the refusal says which target its kind
            // needs.
            _ => all,
        };
        if let (None, Some(t)) = (&filter.source, target) {
            filter.source = sources_at(config, pool, t);
        }
        resolve_one_source(pool, reference, &filter).cloned()
    })
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
struct Hooks {
    /// The source whose hooks run, if any.
    from: Option<Source>,
    /// The snapshot's source, when it has hooks that do not run (the target is not its
    /// database): worth telling the user.
    skipped: Option<Source>,
}

/// Hooks (stop and start the application) belong to the database being replaced: those of
/// the configured source whose database `target` is. A restore into any other place runs
/// none, so a drill never stops production, unless `asked`: then the snapshot's source's.
/// A target that is no source's location (a data directory: sources are reached through
/// their server) runs none and tells of none, asked or not: stopping the server is the
/// person's (the restore refuses a directory a server runs on).
fn hooks_for(config: &Config, snap: &Snapshot, target: &Target, asked: bool) -> Hooks {
    let Some(location) = target.location() else {
        return Hooks::default();
    };
    let snapshot_source = config.source_for(&snap.source);
    let from = match config.source_at(&location) {
        Some(replaced) => Some(replaced),
        None if asked => snapshot_source.clone(),
        None => None,
    };
    let skipped = snapshot_source
        .filter(|s| from.is_none() && (s.before_restore.is_some() || s.after_restore.is_some()));
    Hooks { from, skipped }
}

/// Restores `snap` into `target` and records the job in the journal.
fn restore_journaled(
    repo: &Repository,
    snap: &Snapshot,
    target: &Target,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("restore", Some(&snap.source), Some(&snap.id), started_at);
    let engine = engine::for_snapshot(snap);
    // A real recovery's failure is the source's; anything else is a side copy.
    let side = !engine.as_ref().is_ok_and(|e| e.is_source(snap, target));
    let result = engine.and_then(|e| restore(&*e, repo, snap, target, opts, progress));
    let mut rec = JournalRecord::new("restore", started_at);
    rec.source = Some(snap.source.clone());
    rec.snapshot = Some(snap.id.clone());
    rec.side = side;
    match &result {
        Ok(o) => rec.size = o.bytes,
        Err(e) => rec.failed(e),
    }
    running.ended(repo, &rec);
    result
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
    let state = engine.inspect(snap, target, opts)?;
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
        snapshot: snap.clone(),
        target: shown,
        bytes: staged.bytes(),
        old_kept_at,
        moved_aside,
        notes: staged.notes(),
        checked: staged.checked(),
        reached: staged.reached(),
        timeline: staged.timeline(),
        hooks_skipped: None,
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
        let latest = RecoveryTarget::Latest;
        let at = |t: Target| snapshot_for(&r, &config, "latest", &none, Some(&t), &latest);
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
            &RecoveryTarget::Latest,
        );
        assert_eq!(s.unwrap().engine, EngineKind::Sqlite);
    }
}

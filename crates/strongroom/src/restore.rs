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

use crate::engine::{self, Engine, RestoreOptions, Target, TargetState};
use crate::error::{Error, ErrorKind, Result};
use crate::interrupt;
use crate::process::run_hook;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::Snapshot;
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
    let _running = repo.job_started("restore", Some(&snap.source), Some(&snap.id), started_at);
    let result =
        engine::for_snapshot(snap).and_then(|e| restore(&*e, repo, snap, target, opts, progress));
    let mut rec = JournalRecord::new("restore", started_at);
    rec.source = Some(snap.source.clone());
    rec.snapshot = Some(snap.id.clone());
    match &result {
        Ok(o) => rec.size = o.bytes,
        Err(e) => rec.failed(e),
    }
    repo.record(&rec);
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
    let state = engine.inspect(snap, target)?;
    if let TargetState::Occupied { what, old } = &state {
        if !opts.force {
            return Err(Error::TargetNotEmpty {
                target: what.clone(),
                old,
            });
        }
    }
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
    })
}

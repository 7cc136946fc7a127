//! Verification by real test restores.
//!
//! Owns `verify`: for each snapshot, read and authenticate every object it needs by restoring
//! it into a scratch place, run the engine's integrity checks, compare row counts with those
//! captured at backup time, run the source's configured checks, and always remove the scratch
//! copy. Every snapshot gets its own outcome and journal record, whatever fails: a damaged
//! manifest, an unreachable server or a failed restore is a failed check of that snapshot.
//! Must not change the repository except for the journal record, the record of a pack
//! it found damaged (`repository::damage`), which keeps the next backup off it, and the
//! vouch for a snapshot an append-only key wrote that passed (`Repository::vouch`: the same
//! manifest sealed under the full key, so retention counts it).

use crate::engine::{self, CheckOutcome, Scratch};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::index::Index;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::Snapshot;
use crate::repository::usage::snapshots_affected_by;
use crate::repository::{Damaged, Repository};
use crate::source::Source;
use serde::Serialize;
use std::time::Instant;

/// Outcome for one snapshot (contract: `verify --json`).
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotVerification {
    /// Snapshot id.
    pub id: String,
    /// Whether every check passed.
    pub ok: bool,
    /// Seconds the test restore took.
    pub restore_seconds: f64,
    /// Each check.
    pub checks: Vec<CheckOutcome>,
}

/// Outcome of a verify run (contract: `verify --json`).
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// Whether every snapshot passed.
    pub ok: bool,
    /// Per snapshot.
    pub snapshots: Vec<SnapshotVerification>,
}

/// Test-restores each snapshot and reports every one of them, damaged manifests included
/// (`damaged`, from [`Repository::snapshots_lenient`]): an error while verifying one snapshot
/// is a failed check of that snapshot, never the end of the run, so one unreachable server
/// cannot hide another snapshot's damage. `source_for` finds the configured source of a
/// snapshot's recorded source name (for its checks and server). Each snapshot gets its
/// journal record. Fails only when the repository itself cannot be read at all.
pub fn run(
    repo: &Repository,
    snaps: &[Snapshot],
    damaged: &[Damaged],
    source_for: &dyn Fn(&str) -> Option<Source>,
    scratch: &Scratch,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    repo.require_full("verify a snapshot")?;
    let _lock = repo.read_lock("verify");
    let index = repo.load_index();
    let mut out = Vec::new();
    for snap in snaps {
        let started_at = jiff::Timestamp::now();
        let _running = repo.job_started("verify", Some(&snap.source), Some(&snap.id), started_at);
        let t = Instant::now();
        let (checks, kind) = match &index {
            Ok(index) => test_restore(repo, index, snap, source_for, scratch, progress),
            Err(e) => (
                vec![failed(
                    "index",
                    format!("the repository index cannot be read: {e}"),
                )],
                e.kind(),
            ),
        };
        out.push(finish(
            repo,
            started_at,
            t,
            snap.id.clone(),
            Some(snap),
            checks,
            kind,
        ));
    }
    for (id, e) in damaged {
        let started_at = jiff::Timestamp::now();
        let checks = vec![failed(
            "manifest",
            format!(
                "{e}; the snapshot cannot be read, so neither its source nor its data is known"
            ),
        )];
        out.push(finish(
            repo,
            started_at,
            Instant::now(),
            id.clone(),
            None,
            checks,
            ErrorKind::DamagedData,
        ));
    }
    Ok(VerifyReport {
        ok: out.iter().all(|s| s.ok),
        snapshots: out,
    })
}

/// A failed check.
fn failed(name: &str, detail: String) -> CheckOutcome {
    CheckOutcome {
        name: name.into(),
        ok: false,
        detail,
    }
}

/// One snapshot's checks, and the kind of failure should one fail: an error becomes a failed
/// check, `read` for damage (with the other snapshots it affects), `restore` for anything
/// else, of the error's own kind. Drills test-restore through it too.
pub(crate) fn test_restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    source_for: &dyn Fn(&str) -> Option<Source>,
    scratch: &Scratch,
    progress: &dyn Progress,
) -> (Vec<CheckOutcome>, ErrorKind) {
    let result = engine::for_snapshot(snap).and_then(|e| {
        e.test_restore(
            repo,
            index,
            snap,
            scratch,
            source_for(&snap.source).as_ref(),
            progress,
        )
    });
    match result {
        // The engine's own `connect` check fails when its server cannot be reached.
        Ok(c) if c.iter().any(|c| !c.ok && c.name == "connect") => (c, ErrorKind::SourceFailed),
        Ok(c) => (c, ErrorKind::CheckFailed),
        Err(e) if e.is_damage() => {
            // What a test restore finds damaged, the next backup must not build on.
            if let Error::DamagedData { pack, detail, .. } = &e {
                if let Err(w) = repo.record_damage(pack, detail) {
                    tracing::warn!("could not record {} as damaged: {w}", pack.object_key());
                }
            }
            let others = snapshots_affected_by(repo, index, &e).unwrap_or_default();
            let detail = if others.is_empty() {
                e.to_string()
            } else {
                format!("{e}; affects snapshot(s) {}", others.join(", "))
            };
            (vec![failed("read", detail)], e.kind())
        }
        Err(e) => (vec![failed("restore", e.to_string())], e.kind()),
    }
}

/// Journals one snapshot's outcome and makes its report entry.
fn finish(
    repo: &Repository,
    started_at: jiff::Timestamp,
    t: Instant,
    id: String,
    snap: Option<&Snapshot>,
    checks: Vec<CheckOutcome>,
    kind: ErrorKind,
) -> SnapshotVerification {
    let mut checks = checks;
    // A snapshot an append-only key wrote that passed: vouched for, so retention counts it.
    if let Some(s) = snap.filter(|s| s.unvouched && checks.iter().all(|c| c.ok)) {
        let vouched = repo.vouch(&s.id);
        checks.push(CheckOutcome {
            name: "vouch".into(),
            ok: vouched.is_ok(),
            detail: match vouched {
                Ok(_) => "written by an append-only key; sealed again under the full key, so retention counts it from now on".into(),
                Err(e) => format!("passed, but could not be marked as checked ({e}); retention does not count it yet"),
            },
        });
    }
    let ok = checks.iter().all(|c| c.ok);
    let mut rec = JournalRecord::new("verify", started_at);
    rec.source = snap.map(|s| s.source.clone());
    rec.snapshot = Some(id.clone());
    rec.ok = ok;
    rec.size = snap.map_or(0, |s| s.size);
    if !ok {
        rec.error_kind = Some(kind.name().into());
        rec.error = Some(
            checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    repo.record(&rec);
    SnapshotVerification {
        id,
        ok,
        restore_seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        checks,
    }
}

//! Verification by real test restores.
//!
//! Owns `verify`: for each snapshot, read and authenticate every object it needs by restoring
//! it into a scratch place, run the engine's integrity checks, compare row counts with those
//! captured at backup time, run the source's configured checks, and always remove the scratch
//! copy. Must not change the repository except for the journal record.

use crate::engine::{self, CheckOutcome, Scratch};
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::Snapshot;
use crate::repository::usage::snapshots_affected_by;
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

/// Test-restores each snapshot; `source_for` finds the configured source of a snapshot's
/// recorded source name (for its checks and server).
pub fn run(
    repo: &Repository,
    snaps: &[Snapshot],
    source_for: &dyn Fn(&str) -> Option<Source>,
    scratch: &Scratch,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let index = repo.load_index()?;
    let mut out = Vec::new();
    for snap in snaps {
        let started_at = jiff::Timestamp::now();
        let t = Instant::now();
        let checks = match engine::for_snapshot(snap).and_then(|e| {
            e.test_restore(
                repo,
                &index,
                snap,
                scratch,
                source_for(&snap.source).as_ref(),
                progress,
            )
        }) {
            Ok(c) => c,
            Err(e) if e.is_damage() => {
                let others = snapshots_affected_by(repo, &index, &e).unwrap_or_default();
                let detail = if others.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}; affects snapshot(s) {}", others.join(", "))
                };
                vec![CheckOutcome {
                    name: "read".into(),
                    ok: false,
                    detail,
                }]
            }
            Err(e) => return Err(e),
        };
        let ok = checks.iter().all(|c| c.ok);
        let mut rec = JournalRecord::new("verify", started_at);
        rec.source = Some(snap.source.clone());
        rec.snapshot = Some(snap.id.clone());
        rec.ok = ok;
        rec.size = snap.size;
        if !ok {
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
        out.push(SnapshotVerification {
            id: snap.id.clone(),
            ok,
            restore_seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            checks,
        });
    }
    Ok(VerifyReport {
        ok: out.iter().all(|s| s.ok),
        snapshots: out,
    })
}

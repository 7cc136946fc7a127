//! The restore job: one snapshot into a target, journaled.
//!
//! Owns dispatching to the snapshot's engine and recording the job. The safety rules
//! (refuse non-empty targets, keep old data aside, write to a temporary place and move into
//! position at the end: invariant 3) live in each engine. Must not resolve references.

use crate::engine::{self, RestoreOptions, RestoreOutcome, Target};
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::Snapshot;

/// Restores `snap` into `target` and records the job in the journal.
pub fn run(
    repo: &Repository,
    snap: &Snapshot,
    target: &Target,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let started_at = jiff::Timestamp::now();
    let result = engine::for_snapshot(snap).and_then(|e| {
        let index = repo.load_index()?;
        e.restore(repo, &index, snap, target, opts, progress)
    });
    let mut rec = JournalRecord::new("restore", started_at);
    rec.source = Some(snap.source.clone());
    rec.snapshot = Some(snap.id.clone());
    match &result {
        Ok(o) => rec.size = o.bytes,
        Err(e) => {
            rec.ok = false;
            rec.error = Some(e.to_string());
        }
    }
    repo.record(&rec);
    result
}

//! Chunk usage: which chunks a snapshot needs, and which snapshots a damaged object affects.
//!
//! Owns walking a snapshot's chunk lists into the set of chunk ids it references, shared by
//! `check` (which snapshots a damaged pack breaks), `verify` (naming the other snapshots a
//! failed test restore's damage reaches) and the prune to come (what is still referenced).
//! Must not decide what to do about damage: callers report or keep.

use super::Repository;
use super::index::Index;
use super::reader;
use super::snapshot::Snapshot;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use std::collections::{BTreeSet, HashSet};

/// Every chunk id a snapshot needs, its list blobs included.
pub fn snapshot_chunks(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
) -> Result<HashSet<ChunkId>> {
    let mut used: HashSet<ChunkId> = snap.list_ids()?.into_iter().collect();
    for f in &snap.files {
        reader::for_each_window(repo, index, snap, f, |_, ids| {
            used.extend(ids.iter().copied());
            Ok(())
        })?;
    }
    Ok(used)
}

/// Ids of the snapshots a damaged or missing object (as named in `err`) affects.
pub fn snapshots_affected_by(repo: &Repository, index: &Index, err: &Error) -> Result<Vec<String>> {
    let bad: BTreeSet<ChunkId> = match err {
        Error::DamagedData { pack, segment, .. } => {
            let mut bad = BTreeSet::new();
            index.for_each(|id, l| {
                if l.pack == *pack && segment.is_none_or(|o| l.offset == o) {
                    bad.insert(id);
                }
            })?;
            bad
        }
        Error::MissingChunk(c) => [*c].into(),
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for snap in repo.snapshots()? {
        let hit = match snapshot_chunks(repo, index, &snap) {
            Ok(used) => used.iter().any(|c| bad.contains(c)),
            Err(_) => true,
        };
        if hit {
            out.push(snap.short_id().to_string());
        }
    }
    Ok(out)
}

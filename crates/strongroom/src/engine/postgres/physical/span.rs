//! How far past a physical snapshot a recovery can surely be sent, and when the WAL
//! archive of a cluster last grew on the source's timeline: what a drill needs to pick a point in time and to
//! measure the data-loss window.
//!
//! Owns reading the archive's listing for those two answers (with the timelines' history
//! files and origin records for the second). Must not write anything and must not fetch WAL
//! segments.

use super::PhysicalMetadata;
use crate::engine::postgres::cluster::Lsn;
use crate::engine::postgres::timeline::judge;
use crate::engine::postgres::wal::{self, WalKind, WalName, segment_name};
use crate::error::Result;
use crate::repository::Repository;
use crate::repository::archive::Archive;
use crate::repository::snapshot::Snapshot;
use std::collections::HashSet;

/// WAL positions a recovery from a snapshot can be sent to: after its end (`after`,
/// exclusive: the snapshot is consistent there) up to `upto`, the start of the newest
/// segment archived without a gap from the snapshot's start on its timeline. Any position
/// in between is reached: records start at or after it inside the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The snapshot's stop position.
    pub after: Lsn,
    /// The start of the newest unbroken archived segment.
    pub upto: Lsn,
}

/// The span past `snap` that the archive can replay; `None` when the snapshot carries its
/// own WAL, records no WAL range, or nothing was archived after its end.
pub fn recovery_span(repo: &Repository, snap: &Snapshot) -> Result<Option<Span>> {
    if PhysicalMetadata::of(snap).wal_included {
        return Ok(None);
    }
    let Some(need) = wal::needs_of(std::slice::from_ref(snap)).into_iter().next() else {
        return Ok(None);
    };
    let (tli, seg) = (need.timeline, need.segment_size);
    let folder = wal::timeline_folder(tli);
    let listed = Archive::new(repo, &need.cluster).list()?;
    let present: HashSet<u64> = listed
        .iter()
        .filter(|l| l.timeline == folder)
        .filter_map(|l| WalName::parse(&l.name))
        .filter(|n| n.kind == WalKind::Segment)
        .filter_map(|n| n.segment_number(seg))
        .collect();
    let mut n = need.start.segment(seg);
    if !present.contains(&n) {
        return Ok(None);
    }
    while present.contains(&(n + 1)) {
        n += 1;
    }
    let upto = Lsn(n * seg);
    tracing::debug!(
        newest = segment_name(tli, n, seg),
        "newest unbroken archived segment"
    );
    Ok((upto > need.stop).then_some(Span {
        after: need.stop,
        upto,
    }))
}

/// When the newest WAL segment on the source's timeline of cluster `system_id` was archived
/// (by the origin records of the newest of `snaps`, see
/// [`crate::engine::postgres::timeline::judge`]: a fork a side copy archives says nothing
/// about the source), as the store dates its objects; `None` when nothing is archived there
/// or the store gives no times.
pub fn newest_archived(
    repo: &Repository,
    system_id: &str,
    snaps: &[Snapshot],
) -> Result<Option<jiff::Timestamp>> {
    let judged = judge::read(repo, system_id, snaps, None)?;
    Ok(judged.newest().map(|(_, t)| t))
}

//! WAL continuity: what the archive of each cluster holds per timeline, the gaps in it, and
//! which of them a kept physical snapshot's recovery would run into (`wal verify`, `check`).
//!
//! Owns the continuity report ([`ClusterReport`], [`TimelineReport`], [`Gap`]) and the rule of
//! which gaps are needed. Reads the archive's listing and asks [`super::timeline::judge`]
//! which timeline is the source's and what the others are. Must not read WAL contents or
//! change the archive. Separate from [`super::wal`] (names, segment arithmetic, push and
//! fetch) so that `wal` needs nothing of timelines, and timelines build on `wal`.

use super::timeline::judge::{self, Role};
use super::timeline::{ArchiveView, Found, Origin};
use super::wal::{DEFAULT_SEGMENT_SIZE, NeededFrom, WalKind, WalName, needs_of, segment_name};
use crate::error::Result;
use crate::repository::Repository;
use crate::repository::archive::Archive;
use crate::repository::snapshot::Snapshot;
use serde::Serialize;
use std::collections::BTreeMap;

/// A run of missing segments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The first missing segment.
    pub from: String,
    /// The last missing segment.
    pub to: String,
    /// Whether a kept physical snapshot needs it to recover (it lies after one's start on
    /// its timeline or a later one).
    pub needed: bool,
}

/// The archive of one timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineReport {
    /// Timeline id.
    pub timeline: u32,
    /// Oldest archived segment.
    pub first: Option<String>,
    /// Newest archived segment.
    pub last: Option<String>,
    /// Complete segments archived.
    pub segments: u64,
    /// `.partial` files archived.
    pub partial: u64,
    /// Whether its `.history` file is archived (timeline 1 has none).
    pub history: bool,
    /// How far `wal receive`'s pieces reach past the newest complete segment (an LSN), when
    /// they do: the segment being received.
    pub received: Option<String>,
    /// Missing runs between `first` and `last`.
    pub gaps: Vec<Gap>,
    /// What it is to the source: its own timeline, one it descends from, or a fork.
    pub role: Role,
    /// The timeline it branched from, per its history file.
    pub branched_from: Option<u32>,
    /// Where (LSN) it branched, per its history file.
    pub branched_at: Option<String>,
    /// Where it was first pushed from, when recorded.
    pub origin: Option<Origin>,
}

/// The archive of one cluster.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    /// System identifier.
    pub system_identifier: String,
    /// WAL segment size assumed (from its physical snapshots, else 16 MiB).
    pub segment_size: u64,
    /// Per timeline.
    pub timelines: Vec<TimelineReport>,
    /// Bytes stored.
    pub stored: u64,
    /// Whether no needed segment is missing.
    pub ok: bool,
    /// The timeline the source is on, which recoveries follow by default.
    pub source_timeline: u32,
    /// How that is known: `server`, `pushed` (its data directory's records) or `newest`.
    pub source_timeline_found: Found,
}

/// Checks WAL continuity per cluster and timeline for the kept snapshots `snaps`, and says
/// which timeline is the source's ([`super::timeline::judge`]; `servers` holds what
/// sources' servers reported, by cluster) and what the others are. A gap is needed when it
/// lies at or after the start of a physical snapshot on the same timeline, or on an earlier
/// one when the timeline is on the source's line; a fork's gaps are needed only by
/// snapshots taken on the fork itself.
pub fn verify(
    repo: &Repository,
    snaps: &[Snapshot],
    servers: &BTreeMap<String, u32>,
) -> Result<Vec<ClusterReport>> {
    let needs = needs_of(snaps);
    let mut clusters = Archive::clusters(repo)?;
    for n in &needs {
        if !clusters.contains(&n.cluster) {
            clusters.push(n.cluster.clone());
        }
    }
    clusters
        .iter()
        .map(|c| verify_cluster(repo, c, snaps, &needs, servers.get(c).copied()))
        .collect()
}

fn verify_cluster(
    repo: &Repository,
    cluster: &str,
    snaps: &[Snapshot],
    needs: &[NeededFrom],
    server: Option<u32>,
) -> Result<ClusterReport> {
    let mine: Vec<&NeededFrom> = needs.iter().filter(|n| n.cluster == cluster).collect();
    let segment_size = mine
        .first()
        .map(|n| n.segment_size)
        .unwrap_or(DEFAULT_SEGMENT_SIZE);
    let archive = Archive::new(repo, cluster);
    let listed = archive.list()?;
    let stored = listed.iter().map(|l| l.stored).sum();
    let view = ArchiveView::from_listing(&archive, &listed, segment_size)?;
    let judged = judge::judge(view, server, judge::newest_of(snaps, cluster));
    let mut per: BTreeMap<u32, (Vec<u64>, u64, bool)> = BTreeMap::new();
    for l in &listed {
        let Some(name) = WalName::parse(&l.name) else {
            continue;
        };
        let entry = per.entry(name.timeline).or_default();
        match name.kind {
            WalKind::Segment => entry.0.extend(name.segment_number(segment_size)),
            WalKind::Partial => entry.1 += 1,
            WalKind::History => entry.2 = true,
            WalKind::Backup => {}
        }
    }
    for n in &mine {
        per.entry(n.timeline).or_default();
    }
    let mut timelines = Vec::new();
    for (tli, (mut segs, partial, history)) in per {
        segs.sort_unstable();
        let role = judged.role(tli);
        let name = |n: u64| segment_name(tli, n, segment_size);
        let branched = judged.branched(tli);
        let received = judged.view.timelines.get(&tli).and_then(|t| {
            t.pieces
                .iter()
                .filter(|(n, _)| segs.last().is_none_or(|l| *n > l))
                .map(|(n, r)| n * segment_size + r.contiguous())
                .filter(|end| end % segment_size != 0)
                .max()
                .map(|end| super::cluster::Lsn(end).to_string())
        });
        timelines.push(TimelineReport {
            received,
            timeline: tli,
            first: segs.first().map(|&n| name(n)),
            last: segs.last().map(|&n| name(n)),
            segments: segs.len() as u64,
            partial,
            history,
            gaps: gaps(tli, &segs, &mine, segment_size, role != Role::Fork),
            role,
            branched_from: branched.map(|(p, _)| p),
            branched_at: branched.map(|(_, at)| at.to_string()),
            origin: judged
                .view
                .timelines
                .get(&tli)
                .and_then(|t| t.origin.clone()),
        });
    }
    Ok(ClusterReport {
        system_identifier: cluster.to_string(),
        segment_size,
        ok: timelines.iter().all(|t| t.gaps.iter().all(|g| !g.needed)),
        timelines,
        stored,
        source_timeline: judged.source.id,
        source_timeline_found: judged.source.how,
    })
}

/// The gaps of timeline `tli`, whose archived segments are `segs` (sorted), for the
/// snapshots `mine` of its cluster; snapshots on earlier timelines count only when `tli` is
/// on the source's line (`on_line`).
fn gaps(
    tli: u32,
    segs: &[u64],
    mine: &[&NeededFrom],
    segment_size: u64,
    on_line: bool,
) -> Vec<Gap> {
    let name = |n: u64| segment_name(tli, n, segment_size);
    // The oldest start on this timeline or an earlier one: everything after it on this
    // timeline is needed.
    let needed_from = mine
        .iter()
        .filter(|n| n.timeline == tli || (on_line && n.timeline < tli))
        .map(|n| {
            if n.timeline == tli {
                n.start.segment(segment_size)
            } else {
                0
            }
        })
        .min();
    let mut gaps = Vec::new();
    // A snapshot on this timeline needs its start segment onwards, archived or not.
    let own = mine.iter().filter(|n| n.timeline == tli);
    if let Some(start) = own.clone().map(|n| n.start.segment(segment_size)).min() {
        match segs.first().copied() {
            Some(first) if first <= start => {}
            Some(first) => gaps.push(Gap {
                from: name(start),
                to: name(first - 1),
                needed: true,
            }),
            None => gaps.push(Gap {
                from: name(start),
                to: name(start),
                needed: true,
            }),
        }
    }
    // …and through its stop, whatever was archived after it.
    let own_stop = own.map(|n| n.stop.segment_before(segment_size)).max();
    if let (Some(stop), Some(&last)) = (own_stop, segs.last()) {
        if last < stop {
            gaps.push(Gap {
                from: name(last + 1),
                to: name(stop),
                needed: true,
            });
        }
    }
    for w in segs.windows(2) {
        if w[1] > w[0] + 1 {
            gaps.push(Gap {
                from: name(w[0] + 1),
                to: name(w[1] - 1),
                needed: needed_from.is_some_and(|f| w[1] > f),
            });
        }
    }
    gaps
}

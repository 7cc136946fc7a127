//! Which timeline of a cluster's archive is the source's, and what the others are to it,
//! for judging the archive as a whole: `status`'s WAL age, the runbook's point-in-time
//! window, a drill's RPO and `wal verify`.
//!
//! Owns the source's timeline for a whole cluster ([`judge`]: the rule of
//! [`super::source_timeline`], with the newest timeline when nothing says otherwise), each
//! other timeline's role (the source's own past, or a fork and where it branched), and the
//! newest archive time on the source's own line. Must not write anything, and reads only
//! through [`ArchiveView`] and [`super::server_timeline`].
//!
//! Why: a side copy restored with `--archive` archives its fork into the same cluster's
//! folder. Judged by the cluster's newest file, the copy's archiving would hide a stopped
//! production archive, and a fork left behind would page for nothing.

use super::{ArchiveView, Found, Reach, SourceTimeline, source_timeline};
use crate::config::Config;
use crate::engine::postgres::cluster::Lsn;
use crate::engine::postgres::physical::PhysicalMetadata;
use crate::engine::postgres::wal::{self, DEFAULT_SEGMENT_SIZE, segment_name};
use crate::error::Result;
use crate::repository::Repository;
use crate::repository::snapshot::{BackupKind, Snapshot};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a timeline of the archive is to the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The timeline the source is on.
    Source,
    /// One the source's timeline descends from: the source's own past.
    Ancestor,
    /// Any other: a promoted copy's, which the source never took.
    Fork,
}

/// One cluster's archive with the source's timeline known.
#[derive(Clone, Debug)]
pub struct Judged {
    /// The archive.
    pub view: ArchiveView,
    /// The timeline the source is on, and how that is known.
    pub source: SourceTimeline,
}

impl Judged {
    /// What timeline `id` is to the source.
    pub fn role(&self, id: u32) -> Role {
        if id == self.source.id {
            return Role::Source;
        }
        let past = self
            .view
            .timelines
            .get(&self.source.id)
            .is_some_and(|t| t.history.iter().any(|&(p, _)| p == id));
        if past { Role::Ancestor } else { Role::Fork }
    }

    /// Where timeline `id` branched: its parent and the switch point, from its history file.
    pub fn branched(&self, id: u32) -> Option<(u32, Lsn)> {
        self.view.timelines.get(&id)?.history.last().copied()
    }

    /// The forks, lowest id first.
    pub fn forks(&self) -> Vec<u32> {
        let ids = self.view.timelines.keys().copied();
        ids.filter(|&id| self.role(id) == Role::Fork).collect()
    }

    /// The newest segment archived (or received in part, [`super::ArchiveView`]'s pieces)
    /// on the source's line, with when the store dates it: on
    /// the source's timeline, or on an ancestor up to the segment holding the switch away
    /// from it (what the ancestor archived later came from another server).
    pub fn newest(&self) -> Option<(String, jiff::Timestamp)> {
        let seg = self.view.segment_size;
        let own = self.view.timelines.get(&self.source.id);
        let mut line: Vec<(u32, Option<u64>)> = vec![(self.source.id, None)];
        for &(t, switch) in own.map_or(&[][..], |t| &t.history[..]) {
            line.push((t, Some(switch.segment(seg))));
        }
        line.iter()
            .filter_map(|&(tli, upto)| {
                let t = self.view.timelines.get(&tli)?;
                // A segment's received pieces count: the newest piece is the newest WAL.
                t.segments
                    .iter()
                    .chain(t.pieces.iter().map(|(n, r)| (n, &r.newest)))
                    .filter(|(n, _)| upto.is_none_or(|u| **n <= u))
                    .filter_map(|(n, at)| Some((at.as_ref()?, tli, *n)))
                    .max()
            })
            .max()
            .map(|(at, tli, n)| (segment_name(tli, n, seg), *at))
    }

    /// How far a recovery from `snap` along the source's timeline reaches; `None` when the
    /// snapshot records no archive need or the source's timeline does not pass through it.
    pub fn reach_from(&self, snap: &Snapshot) -> Option<Reach> {
        let need = wal::needs_of(std::slice::from_ref(snap))
            .into_iter()
            .next()?;
        let hops = self.view.hops(need.timeline, need.start, self.source.id)?;
        Some(self.view.reach(&hops))
    }

    /// The source's timeline as people read it, with how it is known:
    /// `timeline 1 (pushed from /srv/pg on db1), the source's: its server reports it`.
    pub fn describe_source(&self) -> String {
        format!(
            "{}, the source's: {}",
            self.view.describe(self.source.id),
            self.source.how.clause()
        )
    }

    /// A fork as people read it: `timeline 2 (pushed from … on …), branched from timeline 1
    /// at 0/5800000`.
    pub fn describe_fork(&self, id: u32) -> String {
        match self.branched(id) {
            Some((p, at)) => format!(
                "{}, branched from timeline {p} at {at}",
                self.view.describe(id)
            ),
            None => self.view.describe(id),
        }
    }
}

/// Judges `view`: the source is on `server`'s timeline when its server answered, else the
/// newest one `newest` (the cluster's newest physical snapshot)'s data directory and host
/// pushed to, else the newest timeline passing through that snapshot, else the newest.
pub fn judge(view: ArchiveView, server: Option<u32>, newest: Option<&Snapshot>) -> Judged {
    let through = newest
        .and_then(|s| wal::needs_of(std::slice::from_ref(s)).into_iter().next())
        .and_then(|n| view.candidates(n.timeline, n.start).last().map(|c| c.id));
    let id = through
        .or_else(|| view.timelines.keys().next_back().copied())
        .or_else(|| newest.and_then(|s| s.wal.as_ref()).map(|w| w.timeline))
        .unwrap_or(1);
    let otherwise = SourceTimeline {
        id,
        how: Found::Newest,
    };
    let source = source_timeline(&view, server, newest, otherwise);
    Judged { view, source }
}

/// The newest physical snapshot among `snaps` of cluster `cluster`.
pub fn newest_of<'a>(snaps: &'a [Snapshot], cluster: &str) -> Option<&'a Snapshot> {
    snaps
        .iter()
        .filter(|s| s.kind == BackupKind::Physical && cluster_of(s).as_deref() == Some(cluster))
        .max_by_key(|s| s.finished_at)
}

/// The cluster (system identifier) a physical snapshot recorded.
pub fn cluster_of(snap: &Snapshot) -> Option<String> {
    PhysicalMetadata::of(snap).system_identifier
}

/// The WAL segment size a snapshot recorded, else the default.
pub fn segment_size_of(snap: Option<&Snapshot>) -> u64 {
    snap.and_then(|s| PhysicalMetadata::of(s).wal_segment_size)
        .unwrap_or(DEFAULT_SEGMENT_SIZE)
}

/// Reads and judges the archive of `cluster`, whose snapshots are among `snaps`; `server`
/// is the timeline its source's server reported, when asked.
pub fn read(
    repo: &Repository,
    cluster: &str,
    snaps: &[Snapshot],
    server: Option<u32>,
) -> Result<Judged> {
    let newest = newest_of(snaps, cluster);
    let view = ArchiveView::read(repo, cluster, segment_size_of(newest))?;
    Ok(judge(view, server, newest))
}

/// Asks the server of each cluster's newest physical snapshot among `snaps` (its configured
/// source's URL, else the one it recorded) which timeline it is on: the clusters whose
/// server answered and is that cluster. Costs a connection per cluster (and the connect
/// timeout for a server that does not answer).
pub fn servers(config: &Config, snaps: &[Snapshot]) -> BTreeMap<String, u32> {
    let mut clusters: Vec<String> = snaps.iter().filter_map(cluster_of).collect();
    clusters.sort_unstable();
    clusters.dedup();
    clusters
        .into_iter()
        .filter_map(|c| {
            let url = crate::engine::postgres::source_url(config, newest_of(snaps, &c)?)?;
            let timeline = super::server_timeline(&url, &c)?;
            Some((c, timeline))
        })
        .collect()
}

#[cfg(test)]
mod tests;

//! PostgreSQL timelines in the WAL archive: which timelines pass through a physical
//! snapshot's start, how far each of them reaches, where each was pushed from, and which one
//! a recovery follows.
//!
//! Owns reading timeline history files (`0000000N.history`: parent timeline and switch point
//! per line), the origin record a timeline gets when it is first pushed to
//! (`wal/<cluster>/<tli>/strongroom.origin`: the data directory and host that pushed it,
//! stored through [`crate::repository::archive`] like any archived file), the reach of a
//! timeline from a snapshot, and the choice of timeline for a recovery target ([`choose`],
//! pure), asking a running server which timeline it is on ([`server_timeline`]), which
//! timeline the source is on ([`source_timeline`]; for a whole cluster's archive, and the
//! roles of the others, [`judge`]). Must not
//! write WAL files or recovery settings (those are [`super::wal`]'s and
//! [`super::physical::recovery`]'s), and must not start servers.
//!
//! Why: a restored side copy that promotes forks a timeline; when it archives into the same
//! repository, PostgreSQL's `recovery_target_timeline = 'latest'` follows the copy's
//! timeline instead of the source's, and a target on the source's timeline past the fork is
//! never reached.

use super::cluster::Lsn;
use super::wal::{WalKind, WalName};
use crate::engine::RecoveryTarget;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::archive::{Archive, Listed};
use crate::repository::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Name of a timeline's origin record in its archive folder (never a WAL file name, so
/// `wal fetch` cannot serve it and continuity checks pass it by).
pub const ORIGIN: &str = "strongroom.origin";

/// Where a timeline was first pushed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The timeline.
    pub timeline: u32,
    /// The pushing server's data directory (absolute).
    pub data_directory: String,
    /// The host it ran on.
    pub hostname: String,
    /// The first file pushed to it that wrote this record.
    pub first: String,
    /// When.
    pub pushed_at: jiff::Timestamp,
}

impl Origin {
    /// Whether this timeline was pushed by the data directory `dir` on `host`.
    pub fn is(&self, dir: &str, host: &str) -> bool {
        self.hostname == host && same_dir(&self.data_directory, dir)
    }
}

/// Whether two paths name the same directory (resolved when they exist here).
pub fn same_dir(a: &str, b: &str) -> bool {
    let canon = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| Path::new(p).to_path_buf());
    a.trim_end_matches('/') == b.trim_end_matches('/') || canon(a) == canon(b)
}

/// Writes the origin record of `name`'s timeline when it has none: called after each push
/// of a segment or history file. A `.partial` or `.backup` file never writes it: a promoted
/// copy pushes its parent timeline's last segment as `.partial`, and must not claim it.
/// Timelines archived before records existed get one at their next push.
pub fn record_origin(archive: &Archive, name: &WalName, data_dir: &Path) -> Result<()> {
    if !matches!(name.kind, WalKind::Segment | WalKind::History) {
        return Ok(());
    }
    let folder = name.timeline_folder();
    if archive.has(&folder, ORIGIN)? {
        return Ok(());
    }
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let origin = Origin {
        timeline: name.timeline,
        data_directory: dir.display().to_string(),
        hostname: crate::hostname(),
        first: name.name.clone(),
        pushed_at: jiff::Timestamp::now(),
    };
    let json = serde_json::to_vec(&origin).map_err(|e| Error::Internal(e.to_string()))?;
    match archive.put(&folder, ORIGIN, &json, 3) {
        // Another pusher wrote it meanwhile: the first one stands.
        Ok(_) | Err(Error::WalConflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The timeline the server at `url` is on, when it answers and is cluster `cluster`
/// (another cluster's timeline means nothing here); `None` otherwise.
pub fn server_timeline(url: &str, cluster: &str) -> Option<u32> {
    let asked = (|| -> std::result::Result<(String, i32), String> {
        let conn = super::server::Conn::parse(url).map_err(|e| e.to_string())?;
        let mut client = conn.connect().map_err(|e| e.to_string())?;
        let row = client
            .query_one(
                "SELECT (SELECT system_identifier FROM pg_control_system())::text, \
                 CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
                 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
                &[],
            )
            .map_err(|e| e.to_string())?;
        Ok((row.get(0), row.get(1)))
    })();
    match asked {
        Ok((id, tli)) if id == cluster && tli > 0 => Some(tli as u32),
        Ok((id, _)) => {
            tracing::info!(
                "the source's server is cluster {id}, not {cluster}: its timeline is not the snapshot's"
            );
            None
        }
        Err(e) => {
            tracing::info!(
                "could not ask the source's server which timeline it is on ({e}); going by the archive's records"
            );
            None
        }
    }
}

/// Parses a timeline history file: `(parent timeline, switch point)` per line, oldest first.
pub fn parse_history(text: &str) -> Vec<(u32, Lsn)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let tli = f.next()?.parse::<u32>().ok()?;
            Some((tli, Lsn::parse(f.next()?)?))
        })
        .collect()
}

/// What the archive holds of one timeline.
#[derive(Clone, Debug, Default)]
pub struct TimelineView {
    /// Its history: the timelines it descends from and where each switched, oldest first
    /// (empty for timeline 1 or when its history file is not archived).
    pub history: Vec<(u32, Lsn)>,
    /// Archived segments by number, with when the store says each was written.
    pub segments: BTreeMap<u64, Option<jiff::Timestamp>>,
    /// Segments not archived whole that `wal receive` holds pieces of, by number: the byte
    /// ranges held and when the newest piece was written ([`super::pieces`]).
    pub pieces: BTreeMap<u64, Received>,
    /// Where it was first pushed from, when recorded.
    pub origin: Option<Origin>,
}

/// The pieces of one segment: the byte ranges they hold and when the newest was written.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// `(from, to)` offsets in the segment, one per piece.
    pub ranges: Vec<(u64, u64)>,
    /// When the newest piece was written, as the store dates it.
    pub newest: Option<jiff::Timestamp>,
}

impl Received {
    /// How far the pieces reach without a gap from the segment's start.
    pub fn contiguous(&self) -> u64 {
        super::pieces::contiguous(&self.ranges)
    }
}

/// The timelines of one cluster's archive.
#[derive(Clone, Debug, Default)]
pub struct ArchiveView {
    /// The cluster's WAL segment size.
    pub segment_size: u64,
    /// Every timeline seen, by id.
    pub timelines: BTreeMap<u32, TimelineView>,
    /// WAL files archived (segments, partials, history and backup files; origin records are
    /// not WAL and not counted).
    pub files: usize,
    /// Bytes those files take in the repository.
    pub stored: u64,
}

/// How far a recovery along one timeline can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    /// The end of the last segment archived without a gap along the way.
    pub lsn: Lsn,
    /// When the newest segment along the way was archived, as the store dates it.
    pub archived: Option<jiff::Timestamp>,
}

/// A timeline a recovery from a snapshot can follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The timeline.
    pub id: u32,
    /// How far it reaches from the snapshot's start.
    pub reach: Reach,
}

impl ArchiveView {
    /// Reads the archive of `cluster`: one listing, then each history file and origin record.
    pub fn read(repo: &Repository, cluster: &str, segment_size: u64) -> Result<ArchiveView> {
        let archive = Archive::new(repo, cluster);
        Self::from_listing(&archive, &archive.list()?, segment_size)
    }

    /// The view of `archive` from its listing `listed` (a caller that lists it anyway need
    /// not list it twice): reads each history file and origin record.
    pub fn from_listing(
        archive: &Archive,
        listed: &[Listed],
        segment_size: u64,
    ) -> Result<ArchiveView> {
        let mut view = ArchiveView {
            segment_size,
            ..ArchiveView::default()
        };
        for l in listed {
            if l.name == ORIGIN {
                let Some(id) = u32::from_str_radix(&l.timeline, 16).ok() else {
                    continue;
                };
                match archive
                    .get(&l.timeline, ORIGIN)
                    .map(|b| serde_json::from_slice(&b))
                {
                    Ok(Ok(o)) => view.timelines.entry(id).or_default().origin = Some(o),
                    Ok(Err(e)) => tracing::warn!("unreadable origin record of timeline {id}: {e}"),
                    Err(e) => tracing::warn!("{e}"),
                }
                continue;
            }
            let Some(name) = WalName::parse(&l.name) else {
                if let Some(p) = super::pieces::Piece::parse(&l.name)
                    && let Some(n) = p.segment.segment_number(segment_size)
                {
                    view.files += 1;
                    view.stored += l.stored;
                    let t = view.timelines.entry(p.segment.timeline).or_default();
                    let r = t.pieces.entry(n).or_default();
                    r.ranges.push((p.from, p.to));
                    r.newest = r.newest.max(l.modified);
                }
                continue;
            };
            view.files += 1;
            view.stored += l.stored;
            let t = view.timelines.entry(name.timeline).or_default();
            match name.kind {
                WalKind::Segment => {
                    if let Some(n) = name.segment_number(segment_size) {
                        t.segments.insert(n, l.modified);
                    }
                }
                WalKind::History => {
                    let text = archive.get(&l.timeline, &l.name)?;
                    t.history = parse_history(&String::from_utf8_lossy(&text));
                }
                WalKind::Partial | WalKind::Backup => {}
            }
        }
        Ok(view)
    }

    /// The stretches a recovery from `(from, start)` replays to follow timeline `to`:
    /// `(timeline, begin, switch away)`, the last one open. `None` when `to` does not pass
    /// through `from` after `start` (its history does not switch away from `from` after it).
    pub fn hops(&self, from: u32, start: Lsn, to: u32) -> Option<Vec<(u32, Lsn, Option<Lsn>)>> {
        if to == from {
            return Some(vec![(from, start, None)]);
        }
        let history = &self.timelines.get(&to)?.history;
        let i = history
            .iter()
            .position(|&(t, switch)| t == from && switch > start)?;
        let mut hops = Vec::new();
        let mut begin = start;
        for (k, &(t, switch)) in history.iter().enumerate().skip(i) {
            if k > i && switch < begin {
                return None;
            }
            hops.push((t, begin, Some(switch)));
            begin = switch;
        }
        hops.push((to, begin, None));
        Some(hops)
    }

    /// How far a recovery along `hops` gets: on each stretch, the segments before the one
    /// holding the switch point (the child timeline has that one), then the open end as far
    /// as segments run unbroken, and into the first missing one as far as its received
    /// pieces run from its start.
    pub fn reach(&self, hops: &[(u32, Lsn, Option<Lsn>)]) -> Reach {
        let seg = self.segment_size;
        let mut archived = None;
        let empty = BTreeMap::new();
        let no_pieces = BTreeMap::new();
        for &(tli, begin, end) in hops {
            let line = self.timelines.get(&tli);
            let segments = line.map_or(&empty, |t| &t.segments);
            let pieces = line.map_or(&no_pieces, |t| &t.pieces);
            let mut n = begin.segment(seg);
            loop {
                if end.is_some_and(|e| n >= e.segment(seg)) {
                    break;
                }
                match segments.get(&n) {
                    Some(at) => archived = archived.max(*at),
                    None => {
                        let (held, at) = pieces
                            .get(&n)
                            .map_or((0, None), |r| (r.contiguous(), r.newest));
                        if held > 0 {
                            archived = archived.max(at);
                        }
                        return Reach {
                            lsn: Lsn((n * seg + held).max(begin.0)),
                            archived,
                        };
                    }
                }
                n += 1;
            }
        }
        // Unreachable in practice: the last hop is open.
        Reach {
            lsn: Lsn(0),
            archived,
        }
    }

    /// Every timeline a recovery from `(from, start)` can follow, with its reach, lowest id
    /// first; `from` itself always.
    pub fn candidates(&self, from: u32, start: Lsn) -> Vec<Candidate> {
        let mut ids: Vec<u32> = self.timelines.keys().copied().collect();
        if !ids.contains(&from) {
            ids.push(from);
            ids.sort_unstable();
        }
        ids.into_iter()
            .filter_map(|id| {
                let hops = self.hops(from, start, id)?;
                Some(Candidate {
                    id,
                    reach: self.reach(&hops),
                })
            })
            .collect()
    }

    /// The newest timeline recorded as pushed from data directory `dir` on `host`.
    pub fn pushed_by(&self, dir: &str, host: &str) -> Option<u32> {
        self.timelines
            .iter()
            .rev()
            .find(|(_, t)| t.origin.as_ref().is_some_and(|o| o.is(dir, host)))
            .map(|(id, _)| *id)
    }

    /// A timeline as people read it: `timeline 2 (pushed from /srv/copy on db2)`.
    pub fn describe(&self, id: u32) -> String {
        match self.timelines.get(&id).and_then(|t| t.origin.as_ref()) {
            Some(o) => format!(
                "timeline {id} (pushed from {} on {})",
                o.data_directory, o.hostname
            ),
            None => format!("timeline {id}"),
        }
    }
}

/// Which timeline a restore was asked to follow (`--timeline`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimelineRequest {
    /// The one the source itself is on (the default).
    #[default]
    Source,
    /// The snapshot's own timeline (PostgreSQL's `current`).
    Current,
    /// The newest timeline that passes through the snapshot (PostgreSQL's `latest`).
    Latest,
    /// This one.
    Number(u32),
}

impl std::str::FromStr for TimelineRequest {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "current" => Ok(TimelineRequest::Current),
            "latest" => Ok(TimelineRequest::Latest),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(TimelineRequest::Number)
                .ok_or_else(|| {
                    format!("{s:?} is not a timeline: give a number, current or latest")
                }),
        }
    }
}

/// How the source's own timeline was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Found {
    /// Its server said so.
    Server,
    /// Its data directory pushed to it last (origin records).
    Pushed,
    /// Nothing says otherwise: the snapshot's own timeline.
    Snapshot,
    /// Nothing says otherwise: the newest timeline (judging a whole cluster's archive).
    Newest,
}

impl Found {
    /// How it was found, as a clause: `its server reports it`.
    pub fn clause(self) -> &'static str {
        match self {
            Found::Server => "its server reports it",
            Found::Pushed => "its data directory pushed to it last",
            Found::Snapshot => "no record says otherwise",
            Found::Newest => "the newest; no record says which the source is on",
        }
    }
}

/// The data directory and host a physical snapshot was taken from, as its origin records
/// would name them.
pub fn pushed_from(snap: &Snapshot) -> Option<(String, &str)> {
    let dir = super::physical::PhysicalMetadata::of(snap).data_directory?;
    Some((dir, snap.hostname.as_str()))
}

/// The timeline the source of `snap` is on: `server`'s answer when it gave one, else the
/// newest timeline the snapshot's data directory and host pushed to, else `otherwise`.
/// The one rule for restores, `status`, the runbook and `wal verify`.
pub fn source_timeline(
    view: &ArchiveView,
    server: Option<u32>,
    snap: Option<&Snapshot>,
    otherwise: SourceTimeline,
) -> SourceTimeline {
    if let Some(id) = server {
        return SourceTimeline {
            id,
            how: Found::Server,
        };
    }
    match snap
        .and_then(pushed_from)
        .and_then(|(dir, host)| view.pushed_by(&dir, host))
    {
        Some(id) => SourceTimeline {
            id,
            how: Found::Pushed,
        },
        None => otherwise,
    }
}

/// The timeline the source is on, and how that is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SourceTimeline {
    /// The timeline.
    pub id: u32,
    /// How it was found.
    pub how: Found,
}

/// The timeline a recovery follows, and what to tell the user about the choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The timeline (`recovery_target_timeline`).
    pub timeline: u32,
    /// Why it was chosen, when there was a choice to make.
    pub note: Option<String>,
}

/// Whether a recovery along a timeline reaching `reach` gets to `target`; `None` when that
/// cannot be told (a transaction id or restore point name).
fn holds(reach: &Reach, target: &RecoveryTarget) -> Option<bool> {
    match target {
        RecoveryTarget::Latest | RecoveryTarget::Immediate => Some(true),
        RecoveryTarget::Lsn(l) => Some(Lsn::parse(l).is_none_or(|l| l <= reach.lsn)),
        // A commit at or after the target must exist; it was archived after it was made
        // (as the store dates it: Azure to the whole second).
        RecoveryTarget::Time(t) => Some(
            reach
                .archived
                .is_none_or(|a| crate::storage::written_at_or_after(a, *t)),
        ),
        RecoveryTarget::Xid(_) | RecoveryTarget::Name(_) => None,
    }
}

fn target_text(target: &RecoveryTarget) -> String {
    match target {
        RecoveryTarget::Latest => "the end of the archive".into(),
        RecoveryTarget::Immediate => "consistency".into(),
        RecoveryTarget::Time(t) => t.to_string(),
        RecoveryTarget::Lsn(l) => format!("LSN {l}"),
        RecoveryTarget::Xid(x) => format!("transaction {x}"),
        RecoveryTarget::Name(n) => format!("restore point {n:?}"),
    }
}

fn reach_text(view: &ArchiveView, c: &Candidate) -> String {
    let at = c
        .reach
        .archived
        .map(|t| format!(", archived until {}", t.strftime("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    format!("{} reaches {}{at}", view.describe(c.id), c.reach.lsn)
}

/// Chooses the timeline a recovery of snapshot `snap` (started on `from` at `start`) follows
/// to `target`: the one asked for, else the source's own when it holds the target, else the
/// newest that does. Refuses, naming how far each timeline reaches, when the chosen one
/// cannot get there.
pub fn choose(
    view: &ArchiveView,
    snap: &str,
    (from, start): (u32, Lsn),
    target: &RecoveryTarget,
    request: TimelineRequest,
    source: &SourceTimeline,
) -> Result<Chosen> {
    let cands = view.candidates(from, start);
    let all = || {
        cands
            .iter()
            .map(|c| reach_text(view, c))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let find = |id: u32| cands.iter().find(|c| c.id == id);
    let asked = match request {
        TimelineRequest::Source => None,
        TimelineRequest::Current => Some(from),
        TimelineRequest::Latest => cands.iter().map(|c| c.id).max(),
        TimelineRequest::Number(n) => Some(n),
    };
    if let Some(id) = asked {
        let Some(c) = find(id) else {
            return Err(Error::Timeline(format!(
                "timeline {id} does not pass through snapshot {snap} (taken on timeline {from} at {start}); timelines that do: {}",
                all()
            )));
        };
        if holds(&c.reach, target) == Some(false) {
            return Err(Error::Timeline(format!(
                "{} does not reach {} from snapshot {snap}: {}; choose an earlier target or another timeline",
                view.describe(id),
                target_text(target),
                all()
            )));
        }
        return Ok(Chosen {
            timeline: id,
            note: None,
        });
    }
    let how = source.how.clause();
    let (own, mut why) = match find(source.id) {
        Some(c) => (c, format!("the source's own ({how})")),
        None => (
            find(from).expect("the snapshot's own timeline is a candidate"),
            format!(
                "the snapshot's own: the source is on timeline {}, which does not pass through the snapshot",
                source.id
            ),
        ),
    };
    let holders: Vec<&Candidate> = cands
        .iter()
        .filter(|c| holds(&c.reach, target) != Some(false))
        .collect();
    let chosen = if holders.iter().any(|c| c.id == own.id) {
        own
    } else if let Some(c) = holders.last() {
        why = format!(
            "{}; {} does not reach {} (it reaches {})",
            "the newest timeline that reaches the target",
            view.describe(own.id),
            target_text(target),
            own.reach.lsn
        );
        c
    } else {
        return Err(Error::Timeline(format!(
            "no timeline reaches {} from snapshot {snap}: {}; choose an earlier target",
            target_text(target),
            all()
        )));
    };
    let others: Vec<String> = cands
        .iter()
        .filter(|c| c.id != chosen.id)
        .map(|c| view.describe(c.id))
        .collect();
    let note = (!others.is_empty() || chosen.id != own.id).then(|| {
        format!(
            "recovery follows {}: {why}; forks that also pass through snapshot {snap}: {} (--timeline picks one)",
            view.describe(chosen.id),
            if others.is_empty() { "none".to_string() } else { others.join(", ") }
        )
    });
    Ok(Chosen {
        timeline: chosen.id,
        note,
    })
}

pub mod judge;

#[cfg(test)]
mod tests;

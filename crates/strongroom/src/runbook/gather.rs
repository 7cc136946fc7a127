//! Reading what a runbook is written from: snapshots, drill records and, per cluster, which
//! timeline the source is on and how far a recovery along it reaches.
//!
//! Owns the reads only (one listing of the manifests, one journal query, one listing per
//! PostgreSQL cluster that has physical snapshots, with its history files and origin
//! records; the source's timeline by those records, never by asking its server). Must not write to the repository or
//! decide anything the runbook says.

use super::{Inputs, TimelineFacts};
use crate::config::Config;
use crate::engine::postgres::timeline::judge::{self, Judged};
use crate::error::Result;
use crate::repository::Repository;
use crate::repository::journal::JournalQuery;
use crate::repository::snapshot::BackupKind;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where a runbook's inputs come from besides the repository.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// The configuration in force.
    pub config: &'a Config,
    /// The config file it was read from (absolute), if any.
    pub config_path: Option<PathBuf>,
    /// The repository URL as given (credentials are stripped when rendered).
    pub repository: String,
    /// Only this source, when given.
    pub only_source: Option<String>,
    /// The time the runbook is written at.
    pub now: jiff::Timestamp,
    /// The program that restores, as the page names it.
    pub program: String,
}

/// Reads `repo` for a runbook in `cx`. Only the snapshot listing must succeed: what else
/// cannot be read (damaged manifests, the journal, a WAL listing) becomes a note on the page.
pub fn gather(repo: &Repository, cx: Context) -> Result<Inputs> {
    let mut notes = Vec::new();
    let (snapshots, damaged) = repo.snapshots_lenient()?;
    if !damaged.is_empty() {
        notes.push(format!(
            "{} snapshot manifest(s) are damaged and left out of this page; run `strongroom check`.",
            damaged.len()
        ));
    }
    let query = JournalQuery {
        job: Some("drill".into()),
        ..JournalQuery::default()
    };
    // Secondary facts: a failure to read them must not cost the restore commands.
    let drills = repo.query_journal(&query).unwrap_or_else(|e| {
        notes.push(format!(
            "The journal could not be read ({e}); drills are not shown."
        ));
        Vec::new()
    });
    let clusters: BTreeSet<String> = snapshots
        .iter()
        .filter(|s| s.kind == BackupKind::Physical)
        .filter_map(judge::cluster_of)
        .collect();
    let mut wal_newest = BTreeMap::new();
    let mut wal_timelines = BTreeMap::new();
    for cluster in clusters {
        // The records alone: a runbook is read when the server may be down.
        match judge::read(repo, &cluster, &snapshots, None) {
            Ok(j) => {
                let reach = judge::newest_of(&snapshots, &cluster).and_then(|s| j.reach_from(s));
                let to = reach
                    .and_then(|r| r.archived)
                    .or_else(|| j.newest().map(|(_, t)| t));
                wal_newest.extend(to.map(|t| (cluster.clone(), t)));
                wal_timelines.insert(cluster, facts(&j));
            }
            Err(e) => notes.push(format!(
                "The WAL archive of cluster {cluster} could not be read ({e}); its \
                 point-in-time window is not shown."
            )),
        }
    }
    let mut captured = BTreeMap::new();
    let mut names: Vec<&str> = snapshots
        .iter()
        .filter(|s| crate::engine::sqlite::replica::base_position(s).is_some())
        .map(|s| s.source.as_str())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mine: Vec<_> = snapshots
            .iter()
            .filter(|s| s.source == name)
            .cloned()
            .collect();
        match crate::jobs::replicate::standing_of(repo, &mine, name, cx.now) {
            Ok(Some(st)) => {
                captured.insert(name.to_string(), (st.point(), st.basis()));
            }
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "The captured frames of {name} could not be listed ({e}); how much a loss would cost is not shown."
            )),
        }
    }
    Ok(Inputs {
        config: cx.config.clone(),
        config_path: cx.config_path,
        repository: cx.repository,
        snapshots,
        drills,
        wal_newest,
        wal_timelines,
        captured,
        only_source: cx.only_source,
        now: cx.now,
        program: cx.program,
        notes,
    })
}

/// The source's timeline of a judged archive and its forks, for the page.
fn facts(j: &Judged) -> TimelineFacts {
    TimelineFacts {
        source: j.source.id,
        described: j.describe_source(),
        forks: j
            .forks()
            .into_iter()
            .map(|id| (id, j.describe_fork(id)))
            .collect(),
    }
}

//! Reading what a runbook is written from: snapshots, drill records and when each cluster's
//! newest WAL segment was archived.
//!
//! Owns the reads only (one listing of the manifests, one journal query, one listing per
//! PostgreSQL cluster that has physical snapshots). Must not write to the repository or
//! decide anything the runbook says.

use super::Inputs;
use crate::config::Config;
use crate::engine::postgres::wal;
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
        .filter_map(|s| {
            s.metadata
                .extra
                .get(wal::keys::SYSTEM_IDENTIFIER)?
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let mut wal_newest = BTreeMap::new();
    for cluster in clusters {
        match crate::engine::postgres::physical::span::newest_archived(repo, &cluster) {
            Ok(Some(t)) => {
                wal_newest.insert(cluster, t);
            }
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "The WAL archive of cluster {cluster} could not be listed ({e}); its \
                 point-in-time window is not shown."
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
        only_source: cx.only_source,
        now: cx.now,
        program: cx.program,
        notes,
    })
}

//! Database engines: how a live database becomes chunks, and chunks a database again.
//!
//! Owns the seam between databases and the repository. Each engine captures a consistent
//! state with its metadata, restores a snapshot into a target, and test-restores it into a
//! scratch place for verification. Adding an engine touches this folder and nothing else.
//! Must not know how chunks are stored (the repository's writer and reader do).

pub mod sqlite;

use crate::config::{CheckConfig, Source};
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::{FileEntry, Metadata, Snapshot};
use crate::repository::writer::BackupWriter;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What an engine captured.
pub struct Captured {
    /// `full`, `logical` or `physical`.
    pub kind: String,
    /// Stored files.
    pub files: Vec<FileEntry>,
    /// Facts about the database at the captured moment.
    pub metadata: Metadata,
}

/// Where a restore goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// A SQLite file path.
    File(PathBuf),
}

/// Restore options common to engines.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Replace a non-empty target (its old data is kept aside until the restore succeeded).
    pub force: bool,
    /// Keep the old data aside even after success.
    pub keep_old: bool,
    /// Run the engine's full (slow) integrity check before moving the result into place,
    /// instead of its structural quick check. `verify` always runs the full one.
    pub full_check: bool,
}

/// What a restore did, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreOutcome {
    /// Where the data went.
    pub target: String,
    /// Bytes written.
    pub bytes: u64,
    /// Where the replaced data was kept, when it was kept.
    pub old_kept_at: Option<String>,
    /// Stray files that were moved aside (e.g. a stale `-wal` beside a deleted database).
    pub moved_aside: Vec<String>,
}

/// One named check's result.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheckResult {
    /// Check name.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// A database engine.
pub trait Engine {
    /// The engine's name as recorded in snapshots (`sqlite`, `postgres`).
    fn name(&self) -> &'static str;
    /// The backup kinds it takes; the first is the default.
    fn kinds(&self) -> &'static [&'static str];
    /// Captures a consistent snapshot of the source through `writer`.
    fn backup(
        &self,
        source: &Source,
        writer: &BackupWriter<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured>;
    /// Restores `snap` into `target`.
    fn restore(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        target: &Target,
        opts: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome>;
    /// Restores `snap` into a scratch place under `scratch`, runs the engine's integrity checks,
    /// the row-count comparison and `checks`, and removes the scratch copy.
    fn test_restore(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        scratch: &Path,
        checks: &[CheckConfig],
        progress: &dyn Progress,
    ) -> Result<Vec<CheckResult>>;
}

/// The engine that handles a source.
pub fn for_source(source: &Source) -> Result<Box<dyn Engine>> {
    match &source.location {
        crate::config::Location::Sqlite(_) => Ok(Box::new(sqlite::Sqlite)),
        crate::config::Location::Postgres(_) => Err(crate::Error::Source(format!(
            "source {}: PostgreSQL backups are not available in this build yet",
            source.name
        ))),
    }
}

/// The engine that wrote a snapshot.
pub fn for_snapshot(snap: &Snapshot) -> Result<Box<dyn Engine>> {
    match snap.engine.as_str() {
        "sqlite" => Ok(Box::new(sqlite::Sqlite)),
        other => Err(crate::Error::Source(format!(
            "snapshot {} was taken by engine {other:?}, which this build cannot restore",
            snap.short_id()
        ))),
    }
}

/// Compares captured row counts with counts found after a restore.
pub fn compare_row_counts(
    expected: &std::collections::BTreeMap<String, u64>,
    found: &std::collections::BTreeMap<String, u64>,
) -> CheckResult {
    let mut diffs = Vec::new();
    for (t, n) in expected {
        match found.get(t) {
            Some(m) if m == n => {}
            Some(m) => diffs.push(format!("{t}: expected {n}, found {m}")),
            None => diffs.push(format!("{t}: table missing")),
        }
    }
    for t in found.keys().filter(|t| !expected.contains_key(*t)) {
        diffs.push(format!("{t}: unexpected table"));
    }
    let total: u64 = found.values().sum();
    CheckResult {
        name: "row counts".into(),
        ok: diffs.is_empty(),
        detail: if diffs.is_empty() {
            format!("{} tables, {total} rows, all as captured", found.len())
        } else {
            diffs.join("; ")
        },
    }
}

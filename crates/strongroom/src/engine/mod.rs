//! Database engines: how a live database becomes chunks, and chunks a database again.
//!
//! Owns the seam between databases and the repository. Each engine captures a consistent
//! state with its metadata, restores a snapshot into a target, and test-restores it into a
//! scratch place for verification. Adding an engine touches this folder and nothing else.
//! Must not know how chunks are stored (the repository's writer and reader do).

pub mod postgres;
pub mod sqlite;

use crate::config::Source;
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::{FileEntry, Metadata, Snapshot};
use crate::repository::writer::BackupWriter;
use serde::Serialize;
use std::path::PathBuf;

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
    /// A PostgreSQL database URL (created when missing).
    Database(String),
}

/// Where test restores happen.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// Directory for files (test-restored SQLite databases, spooled dumps).
    pub dir: PathBuf,
    /// PostgreSQL server for test restores; `None` uses the source's own server.
    pub postgres: Option<String>,
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
    /// Parallel jobs for engines that restore in parallel (`None`: one per core).
    pub jobs: Option<usize>,
    /// Shell command run just before the restored data replaces the target.
    pub before_restore: Option<String>,
    /// Shell command run after the replacement (also after a failure once `before_restore`
    /// ran, so a stopped application is started again).
    pub after_restore: Option<String>,
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
    /// Captures a consistent snapshot of the source, of `kind` (one of [`Engine::kinds`]),
    /// through `writer`.
    fn backup(
        &self,
        source: &Source,
        kind: &str,
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
    /// Restores `snap` into a scratch place, runs the engine's integrity checks, the row-count
    /// comparison and the source's configured checks, and always removes the scratch copy.
    /// `source` is the configured source the snapshot came from, when it still resolves.
    fn test_restore(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        scratch: &Scratch,
        source: Option<&Source>,
        progress: &dyn Progress,
    ) -> Result<Vec<CheckResult>>;
}

/// The engine that handles a source.
pub fn for_source(source: &Source) -> Result<Box<dyn Engine>> {
    match &source.location {
        crate::config::Location::Sqlite(_) => Ok(Box::new(sqlite::Sqlite)),
        crate::config::Location::Postgres(_) => Ok(Box::new(postgres::Postgres)),
    }
}

/// The engine that wrote a snapshot.
pub fn for_snapshot(snap: &Snapshot) -> Result<Box<dyn Engine>> {
    match snap.engine.as_str() {
        "sqlite" => Ok(Box::new(sqlite::Sqlite)),
        "postgres" => Ok(Box::new(postgres::Postgres)),
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

/// Runs a restore hook through `sh -c`, its output on our standard error (standard output is
/// for `--json`). `what` names the hook in errors.
pub fn run_hook(what: &str, command: &str, env: &[(&str, String)]) -> Result<()> {
    use std::os::fd::AsFd;
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null());
    tracing::info!(hook = what, command, "running hook");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("STRONGROOM_PASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .status()
        .map_err(|e| crate::Error::Failed(format!("{what} hook could not start: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(crate::Error::Failed(format!(
            "{what} hook `{command}` {}",
            postgres::describe_exit(status)
        )))
    }
}

//! What a source is: a database strongroom backs up, named in the config or by URL.
//!
//! Owns the resolved [`Source`] (where the database is, its checks, hooks and settings), the
//! [`Location`] a source URL names, and the text of PostgreSQL connection strings
//! ([`conninfo`]). Every layer speaks of sources through these types: the config resolves
//! a SOURCE argument to one, engines read from one. Must not open databases or read files.

pub mod conninfo;

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How long a backup waits for a busy database to let it read, unless the source sets
/// `lock_timeout`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How row counts are captured.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RowCounts {
    /// Count every row.
    #[default]
    Exact,
    /// Use the planner's estimates.
    Estimate,
}

/// A named SQL statement that must return one truthy value.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    /// Shown in reports.
    pub name: String,
    /// The statement.
    pub sql: String,
}

/// What a SOURCE resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// The name recorded in snapshots: the config name, or the URL as given.
    pub name: String,
    /// Where the database is.
    pub location: Location,
    /// The schema-version query, if configured.
    pub schema_version_query: Option<String>,
    /// Configured checks.
    pub checks: Vec<SqlCheck>,
    /// Command run before a restore replaces the database.
    pub before_restore: Option<String>,
    /// Command run after a restore replaced the database.
    pub after_restore: Option<String>,
    /// How row counts are captured.
    pub row_counts: RowCounts,
    /// The `[sources.NAME]` table this source comes from, when the config names it (by name
    /// or by URL): messages say where connection settings came from.
    pub config_name: Option<String>,
    /// How long a backup waits and retries for a busy database's read lock (SQLite).
    pub lock_timeout: Duration,
    /// Where a backup spools what it read so it can let writers go early (SQLite in
    /// rollback-journal mode); `None`: the system's temporary directory.
    pub spool_dir: Option<PathBuf>,
}

impl Source {
    /// A source named `name` at `location`, with no checks, hooks or settings of its own.
    pub fn new(name: impl Into<String>, location: Location) -> Source {
        Source {
            name: name.into(),
            location,
            schema_version_query: None,
            checks: Vec::new(),
            before_restore: None,
            after_restore: None,
            row_counts: RowCounts::default(),
            config_name: None,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            spool_dir: None,
        }
    }
}

/// A database location parsed from a source URL.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

/// Parses `sqlite:PATH` or `postgres://…` / `postgresql://…`.
pub fn parse_location(url: &str) -> Option<Location> {
    if let Some(p) = url.strip_prefix("sqlite://") {
        return (!p.is_empty()).then(|| Location::Sqlite(PathBuf::from(p)));
    }
    if let Some(p) = url.strip_prefix("sqlite:") {
        return (!p.is_empty()).then(|| Location::Sqlite(PathBuf::from(p)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Some(Location::Postgres(url.to_string()));
    }
    None
}

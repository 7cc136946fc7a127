//! The PostgreSQL engine: logical snapshots (`pg_dump`) today; physical base backups and WAL
//! archiving will sit beside them as `physical` and `wal`.
//!
//! Owns dispatching by kind and what all kinds share: reaching the server ([`server`]) and
//! its client programs ([`tools`]). Must not know how chunks are stored.

pub mod archive;
pub mod logical;
pub mod properties;
pub mod server;
pub mod tls;
pub mod tools;

pub use server::redact_url;
pub use tools::describe_exit;

use super::{Captured, CheckResult, Engine, RestoreOptions, RestoreOutcome, Scratch, Target};
use crate::config::{Location, Source};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::Snapshot;
use crate::repository::writer::BackupWriter;

/// The PostgreSQL engine.
pub struct Postgres;

impl Engine for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &["logical"]
    }

    fn backup(
        &self,
        source: &Source,
        kind: &str,
        writer: &BackupWriter<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured> {
        let Location::Postgres(url) = &source.location else {
            return Err(Error::Source(format!(
                "source {} is not a PostgreSQL database",
                source.name
            )));
        };
        match kind {
            "logical" => logical::backup(source, url, writer, progress),
            other => Err(Error::Source(format!(
                "--kind {other} is not available for PostgreSQL in this build (kinds: logical)"
            ))),
        }
    }

    fn restore(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        target: &Target,
        opts: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<RestoreOutcome> {
        match (snap.kind.as_str(), target) {
            ("logical", Target::Database(url)) => {
                logical::restore(repo, index, snap, url, opts, progress)
            }
            ("logical", _) => Err(Error::Target(format!(
                "snapshot {} is a logical PostgreSQL backup: restore it with --target-db postgres://…",
                snap.short_id()
            ))),
            (kind, _) => Err(Error::Target(format!(
                "snapshot {} is of kind {kind}, which this build cannot restore",
                snap.short_id()
            ))),
        }
    }

    fn test_restore(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        scratch: &Scratch,
        source: Option<&Source>,
        progress: &dyn Progress,
    ) -> Result<Vec<CheckResult>> {
        // Where to test-restore: the configured scratch server, else the source's server.
        let url = match (&scratch.postgres, source.map(|s| &s.location)) {
            (Some(u), _) => u.clone(),
            (None, Some(Location::Postgres(u))) => u.clone(),
            _ if snap.source.starts_with("postgres") => snap.source.clone(),
            _ => {
                return Err(Error::Config(format!(
                    "snapshot {} came from source {:?}, which the config no longer names: set \
                     [verify] scratch_postgres to a server for test restores",
                    snap.short_id(),
                    snap.source
                )));
            }
        };
        let checks = source.map(|s| s.checks.as_slice()).unwrap_or_default();
        logical::test_restore(repo, index, snap, &url, scratch, checks, progress)
    }
}

//! The PostgreSQL engine: logical snapshots (`pg_dump`) today; physical base backups and WAL
//! archiving will sit beside them as `physical` and `wal`.
//!
//! Owns dispatching by kind and what all kinds share: reaching the server ([`server`]) and
//! its client programs ([`tools`]). Must not know how chunks are stored.

pub mod dump_format;
pub mod logical;
pub mod properties;
pub mod server;
pub mod tls;
pub mod tools;

use super::{Captured, CheckOutcome, Engine, RestoreOptions, Scratch, Staged, Target, TargetState};
use crate::error::{Error, Result, TargetSort};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::{BackupKind, EngineKind, Snapshot};
use crate::repository::writer::BackupWriter;
use crate::source::{Location, Source};

/// The database URL a logical snapshot restores into; refuses other snapshots and targets.
fn logical_target<'t>(snap: &Snapshot, target: &'t Target) -> Result<&'t str> {
    match (&snap.kind, target) {
        (BackupKind::Logical, Target::Database(url)) => Ok(url),
        (BackupKind::Logical, _) => Err(Error::TargetMismatch {
            snapshot: snap.short_id().into(),
            what: "a logical PostgreSQL backup".into(),
            needs: TargetSort::Database,
        }),
        (kind, _) => Err(Error::Unsupported(format!(
            "snapshot {} is of kind {kind}, which this build cannot restore",
            snap.short_id()
        ))),
    }
}

/// The PostgreSQL engine.
pub struct Postgres;

impl Engine for Postgres {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn backup_kinds(&self) -> &'static [BackupKind] {
        &[BackupKind::Logical]
    }

    fn backup(
        &self,
        source: &Source,
        kind: &BackupKind,
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
            BackupKind::Logical => logical::backup(source, url, writer, progress),
            other => Err(Error::KindMismatch {
                kind: other.to_string(),
                engine: "postgres".into(),
                source_name: source.name.clone(),
                kinds: "logical".into(),
            }),
        }
    }

    fn inspect(&self, snap: &Snapshot, target: &Target) -> Result<TargetState> {
        logical::inspect(logical_target(snap, target)?)
    }

    fn stage(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        target: &Target,
        state: &TargetState,
        opts: &RestoreOptions,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Staged>> {
        let url = logical_target(snap, target)?;
        logical::stage(repo, index, snap, url, state, opts, progress)
    }

    fn test_restore(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        scratch: &Scratch,
        source: Option<&Source>,
        progress: &dyn Progress,
    ) -> Result<Vec<CheckOutcome>> {
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

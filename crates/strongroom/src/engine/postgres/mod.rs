//! The PostgreSQL engine: logical snapshots (`pg_dump`), physical base backups restored to a
//! point in time, and WAL archiving (`wal`).
//!
//! Owns dispatching by kind (backup, restore, test restore, export) and what all kinds share: reaching the server ([`server`]) and
//! its client programs ([`tools`]). Must not know how chunks are stored.

pub mod archiver;
pub mod cluster;
pub mod continuity;
pub mod dump_format;
pub mod logical;
pub mod physical;
pub mod pieces;
pub mod properties;
pub mod receive;
pub mod server;
pub mod timeline;
pub mod tls;
pub mod tools;
pub mod wal;

use super::export::{ExportFile, ExportSink};
use super::{
    Captured, CheckOutcome, Engine, RecoveryTarget, RestoreOptions, Scratch, Staged, Target,
    TargetState, misfit,
};
use crate::error::{Error, Result, TargetSort};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::{BackupKind, EngineKind, Filter, Snapshot};
use crate::repository::writer::BackupWriter;
use crate::source::{Location, Source, parse_location};

/// The database URL a logical snapshot restores into; refuses other snapshots and targets.
fn logical_target<'t>(snap: &Snapshot, target: &'t Target) -> Result<&'t str> {
    match (&snap.kind, target) {
        (BackupKind::Logical, Target::Database(url)) => Ok(url),
        _ => Err(misfit(snap, Some(target))),
    }
}

/// The data directory a physical snapshot restores into; refuses other targets.
fn physical_target<'t>(snap: &Snapshot, target: &'t Target) -> Result<&'t std::path::Path> {
    match target {
        Target::DataDirectory(dir) => Ok(dir),
        _ => Err(misfit(snap, Some(target))),
    }
}

/// A server to test-restore on: its connection settings and, for messages, where they came
/// from.
pub struct ScratchServer {
    /// Connection settings (password from the URL, `PGPASSWORD` or the password file).
    pub conn: server::Conn,
    /// Where the URL came from, e.g. "from source prod in the config".
    pub from: String,
}

/// Where a logical snapshot is test-restored: the server `[verify] scratch_postgres` names,
/// else the configured source's own server (its URL, which may hold the user, host and
/// password, as `backup` used it), else the snapshot's recorded source URL (recorded without
/// password: `PGPASSWORD` or the password file supply it, as for `backup`).
fn scratch_server(
    snap: &Snapshot,
    scratch: &Scratch,
    source: Option<&Source>,
) -> Result<ScratchServer> {
    let (url, from) = match (&scratch.postgres, source) {
        (Some(u), _) => (
            u.clone(),
            "from [verify] scratch_postgres in the config".to_string(),
        ),
        (None, Some(s)) => match (&s.location, &s.config_name) {
            (Location::Postgres(u), Some(name)) => {
                (u.clone(), format!("from source {name} in the config"))
            }
            (Location::Postgres(u), None) => (u.clone(), recorded(snap)),
            (Location::Sqlite(_), _) => return Err(unplaced(snap)),
        },
        // The recorded source, or the location recorded beside a config name.
        (None, None) => match [Some(&snap.source), snap.source_location.as_ref()]
            .into_iter()
            .flatten()
            .find(|u| matches!(parse_location(u), Some(Location::Postgres(_))))
        {
            Some(u) => (u.clone(), recorded(snap)),
            None => return Err(unplaced(snap)),
        },
    };
    Ok(ScratchServer {
        conn: server::Conn::parse(&url)?,
        from,
    })
}

/// The URL of the PostgreSQL server `snap` was taken from: its configured source's, else
/// the URL it recorded; `None` for other engines or when neither is known.
pub fn source_url(config: &crate::config::Config, snap: &Snapshot) -> Option<String> {
    postgres_url(config.location_of(&snap.source, snap.source_location.as_deref()))
}

/// The URL a location names when it is a PostgreSQL one.
pub fn postgres_url(location: Option<Location>) -> Option<String> {
    match location? {
        Location::Postgres(url) => Some(url),
        _ => None,
    }
}

/// Where a URL recorded in the snapshot came from, for messages.
fn recorded(snap: &Snapshot) -> String {
    format!("the source URL recorded in snapshot {}", snap.short_id())
}

/// No server to test-restore a logical snapshot on.
fn unplaced(snap: &Snapshot) -> Error {
    Error::Config(format!(
        "snapshot {} came from source {:?}, which the config no longer names as a PostgreSQL \
         database: set [verify] scratch_postgres to a server for test restores",
        snap.short_id(),
        snap.source
    ))
}

/// The PostgreSQL engine.
pub struct Postgres;

impl Engine for Postgres {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn backup_kinds(&self) -> &'static [BackupKind] {
        &[BackupKind::Logical, BackupKind::Physical]
    }

    fn restores_into(&self, kind: &BackupKind) -> Option<TargetSort> {
        match kind {
            BackupKind::Logical => Some(TargetSort::Database),
            BackupKind::Physical => Some(TargetSort::DataDirectory),
            _ => None,
        }
    }

    fn latest_for(
        &self,
        _repo: &Repository,
        all: &[Snapshot],
        filter: &Filter,
        target: &Target,
        recovery: &RecoveryTarget,
    ) -> Option<Result<Snapshot>> {
        match target {
            Target::DataDirectory(_) => Some(physical::base::latest_base(all, filter, recovery)),
            _ => None,
        }
    }

    fn is_source(&self, snap: &Snapshot, target: &Target) -> bool {
        match target {
            // One rule with the restore's archiving decision: the recorded directory, on the
            // host that took the backup.
            Target::DataDirectory(dir) => physical::recovery::is_source_dir(snap, dir),
            _ => super::is_source_database(snap, target),
        }
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
            BackupKind::Physical => physical::backup::backup(source, url, writer, progress),
            other => Err(Error::KindMismatch {
                kind: other.to_string(),
                engine: "postgres".into(),
                source_name: source.name.clone(),
                kinds: "logical, physical".into(),
            }),
        }
    }

    fn inspect(
        &self,
        snap: &Snapshot,
        target: &Target,
        opts: &RestoreOptions,
    ) -> Result<TargetState> {
        if snap.kind == BackupKind::Physical {
            return physical::restore::inspect(snap, physical_target(snap, target)?, opts);
        }
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
        if snap.kind == BackupKind::Physical {
            let dir = physical_target(snap, target)?;
            return physical::restore::stage(repo, index, snap, dir, state, opts, progress);
        }
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
        let checks = source.map(|s| s.checks.as_slice()).unwrap_or_default();
        if snap.kind == BackupKind::Physical {
            return physical::verify::test_restore(repo, index, snap, scratch, checks, progress);
        }
        let server = scratch_server(snap, scratch, source)?;
        logical::test_restore(repo, index, snap, &server, scratch, checks, progress)
    }

    fn export_files(&self, snap: &Snapshot) -> Result<Vec<ExportFile>> {
        match snap.kind {
            BackupKind::Logical => Ok(logical::export::export_files(snap)),
            BackupKind::Physical => Ok(vec![physical::export::TAR]),
            _ => Err(unexportable(snap)),
        }
    }

    fn export(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        sink: &mut dyn ExportSink,
        progress: &dyn Progress,
    ) -> Result<()> {
        match snap.kind {
            BackupKind::Logical => logical::export::export(repo, index, snap, sink, progress),
            BackupKind::Physical => {
                let out = sink.file(physical::export::TAR.suffix)?;
                physical::export::export(repo, index, snap, out, progress)
            }
            _ => Err(unexportable(snap)),
        }
    }
}

/// A PostgreSQL snapshot of a kind this build does not know.
fn unexportable(snap: &Snapshot) -> Error {
    Error::Unsupported(format!(
        "exporting postgres {} snapshots is not available in this build",
        snap.kind
    ))
}

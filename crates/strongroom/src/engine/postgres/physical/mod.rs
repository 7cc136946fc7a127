//! PostgreSQL physical snapshots: a base backup of the whole cluster, restored into a data
//! directory and recovered to a point in time through the WAL archive.
//!
//! Owns what a physical snapshot is made of (one tree entry per file, directory and link of
//! the data directory, `backup_label`, `tablespace_map`, and the WAL from start to stop when
//! the archive cannot give it) and what it records about its cluster ([`metadata`]), taking
//! one ([`backup`]), which one a recovery to a point starts from ([`base`]), restoring one
//! ([`restore`]), starting a server on the result ([`start`]), proving one restores
//! ([`verify`]: a throwaway server recovers it) and writing one out as a tar that starts
//! without strongroom ([`export`]). Must not know how chunks are stored, and
//! must not touch the WAL archive's objects (that is [`super::wal`]).
//!
//! Why read the data directory rather than stream `BASE_BACKUP` over the replication
//! protocol: tokio-postgres cannot open replication connections, the servers that matter
//! here run on the host that backs them up (the strategy's setup), and reading the files
//! directly lets dedup see 8 KiB pages at their place: an unchanged page costs a hash, not a
//! transfer. The server is still asked where its data directory is (`data_directory`), and
//! its system identifier is compared with the directory's `pg_control`, so a backup never
//! reads the wrong cluster.

pub mod backup;
pub mod base;
pub mod direct;
pub mod export;
pub mod metadata;
pub mod recovery;
pub mod restore;
pub mod span;
pub mod start;
pub mod tree;
pub mod verify;

pub use metadata::PhysicalMetadata;

/// Stored name of the backup label `pg_backup_stop` returns.
pub const BACKUP_LABEL: &str = "backup_label";
/// Stored name of the tablespace map `pg_backup_stop` returns.
pub const TABLESPACE_MAP: &str = "tablespace_map";
/// Name prefix of the snapshot's own WAL files (when the archive cannot give them).
pub const WAL_PREFIX: &str = "pg_wal/";
/// The file written last on restore: without it the directory cannot start.
pub const PG_CONTROL: &str = "global/pg_control";

/// Whether the cluster kept its configuration outside its data directory (Debian's
/// `/etc/postgresql/<version>/<cluster>`): the snapshot holds no `postgresql.conf`, so a
/// restored copy cannot start with `pg_ctl -D` until it is given one.
pub fn config_elsewhere(snap: &crate::repository::snapshot::Snapshot) -> bool {
    !snap.files.iter().any(|f| f.name == "postgresql.conf")
}

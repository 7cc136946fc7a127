//! PostgreSQL physical snapshots: a base backup of the whole cluster, restored into a data
//! directory and recovered to a point in time through the WAL archive.
//!
//! Owns what a physical snapshot is made of (one tree entry per file, directory and link of
//! the data directory, `backup_label`, `tablespace_map`, and the WAL from start to stop when
//! the archive cannot give it), taking one ([`backup`]), restoring one ([`restore`]) and
//! proving one restores ([`verify`]: a throwaway server recovers it). Must not know how
//! chunks are stored, and must not touch the WAL archive's objects (that is [`super::wal`]).
//!
//! Why read the data directory rather than stream `BASE_BACKUP` over the replication
//! protocol: tokio-postgres cannot open replication connections, the servers that matter
//! here run on the host that backs them up (the strategy's setup), and reading the files
//! directly lets dedup see 8 KiB pages at their place: an unchanged page costs a hash, not a
//! transfer. The server is still asked where its data directory is (`data_directory`), and
//! its system identifier is compared with the directory's `pg_control`, so a backup never
//! reads the wrong cluster.

pub mod backup;
pub mod recovery;
pub mod restore;
pub mod span;
pub mod tree;
pub mod verify;

use crate::repository::snapshot::Snapshot;

/// Stored name of the backup label `pg_backup_stop` returns.
pub const BACKUP_LABEL: &str = "backup_label";
/// Stored name of the tablespace map `pg_backup_stop` returns.
pub const TABLESPACE_MAP: &str = "tablespace_map";
/// Name prefix of the snapshot's own WAL files (when the archive cannot give them).
pub const WAL_PREFIX: &str = "pg_wal/";
/// The file written last on restore: without it the directory cannot start.
pub const PG_CONTROL: &str = "global/pg_control";

/// Metadata keys a physical snapshot records.
pub mod keys {
    /// Whether the snapshot carries the WAL from its start to its stop itself (archiving was
    /// off or went elsewhere): restorable to its end, not to later points.
    pub const WAL_INCLUDED: &str = "wal_included";
    /// The server's data directory at backup time.
    pub const DATA_DIRECTORY: &str = "data_directory";
    /// Owner (uid, gid) of the data directory at backup time.
    pub const OWNER: &str = "data_directory_owner";
    /// Major version.
    pub const MAJOR: &str = "major_version";
    /// Tablespaces: oid → original location.
    pub const TABLESPACES: &str = "tablespaces";
    /// When the backup stopped, as the server's clock said (RFC 3339).
    pub const STOP_TIME: &str = "stop_time";
    /// The bootstrap superuser (role oid 10), for connecting to a test-restored cluster.
    pub const SUPERUSER: &str = "bootstrap_superuser";
    /// The database the source URL names (whose tables `row_counts` lists).
    pub const DATABASE: &str = "database";
}

/// Whether the snapshot carries its WAL itself.
pub fn wal_included(snap: &Snapshot) -> bool {
    snap.metadata
        .extra
        .get(keys::WAL_INCLUDED)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Whether the cluster kept its configuration outside its data directory (Debian's
/// `/etc/postgresql/<version>/<cluster>`): the snapshot holds no `postgresql.conf`, so a
/// restored copy cannot start with `pg_ctl -D` until it is given one.
pub fn config_elsewhere(snap: &Snapshot) -> bool {
    !snap.files.iter().any(|f| f.name == "postgresql.conf")
}

/// The major version a physical snapshot was taken of.
pub fn major(snap: &Snapshot) -> Option<u32> {
    snap.metadata
        .extra
        .get(keys::MAJOR)
        .and_then(|v| v.as_u64())
        .map(|v| v as u32)
}

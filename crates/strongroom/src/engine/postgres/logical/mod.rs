//! Logical PostgreSQL snapshots: `pg_dump` streamed into the repository, `pg_restore` out.
//!
//! Backup: one repeatable-read transaction exports its snapshot and `pg_dump --snapshot`
//! dumps exactly that state. Exact row counts are counted in the dump stream itself as it
//! passes (no second scan of every table, and no way to disagree with the dump); the same
//! transaction reads the schema version. `pg_dump` writes its custom
//! format *uncompressed* (`-Z0`): our pipeline compresses with zstd on every core after
//! content-defined chunking, and compressed input would defeat both the chunker's dedup and
//! the compressor. Its table data is re-framed on the way in (`reframe`: `-Z0` prefixes
//! every row with its length, which costs zstd 6% of the stored size). Nothing is spooled to disk (docs/ARCHITECTURE.md, "Invariants": memory is bounded). The roles and other globals
//! (`pg_dumpall --globals-only`) are stored beside the dump, without password hashes unless
//! the role is a superuser, so a restore onto a fresh server can recreate the owners.
//!
//! Why not `pg_dump -Fd -j`: it parallelises across tables, but a booking database is one
//! big table; measured on 702 MB (4 M bookings), `-Fd -j2` took 3.06 s against 2.96 s for
//! one stream, and it would need a local copy of the whole dump.
//!
//! Restore never touches the target until the end (docs/ARCHITECTURE.md, "Invariants": a restore never destroys data silently): the snapshot is restored
//! into a new database beside it, row counts are checked, then the `before_restore` hook
//! runs, the old database is renamed aside, the new one renamed into place, the
//! `after_restore` hook runs, and the old one is dropped (or kept with `--keep-old`; also
//! kept when `after_restore` fails). The application is down only for the two renames.
//! Table data streams from the repository through parallel `COPY` connections (see
//! `dump_format`); archives that path cannot take (non-UTF-8 data, large objects) go through
//! `pg_restore -j`, which needs a seekable file: the dump is spooled to `$TMPDIR` for it.
//! An export (`export`) writes the stored archive out unchanged, with the globals beside it.
//! Must not know how chunks are stored.

mod admin;
mod backup;
pub(in crate::engine::postgres) mod catalog;
mod copy;
pub mod export;
mod load;
mod reframe;
mod restore;
mod verify;
pub(in crate::engine::postgres) use verify::run_checks;

pub use backup::backup;
pub use restore::{inspect, stage};
pub use verify::test_restore;

use super::server::Conn;
use crate::error::{Error, Result};
use crate::repository::snapshot::{FileEntry, Snapshot};

/// The dump in `pg_dump`'s custom format, uncompressed.
pub const DUMP_FILE: &str = "database.dump";
/// `pg_dumpall --globals-only` output: roles, memberships, tablespaces.
pub const GLOBALS_FILE: &str = "globals.sql";
/// Metadata key holding the database-level [`Properties`].
pub const PROPERTIES_KEY: &str = "database_properties";

/// Facts about the server and database read at backup or restore time.
pub(in crate::engine::postgres) struct Facts {
    pub(in crate::engine::postgres) version_num: u32,
    pub(in crate::engine::postgres) version: String,
    pub(in crate::engine::postgres) superuser: bool,
    createdb: bool,
}

impl Facts {
    pub(in crate::engine::postgres) fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

pub(in crate::engine::postgres) fn facts(
    client: &mut postgres::Client,
    conn: &Conn,
) -> Result<Facts> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
             r.rolsuper, r.rolcreatedb FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .map_err(|e| Error::Source(conn.explain(&e)))?;
    let version: String = row.get(1);
    Ok(Facts {
        version_num: row.get::<_, i32>(0) as u32,
        version: version
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        superuser: row.get(2),
        createdb: row.get(3),
    })
}

pub(super) fn file<'s>(snap: &'s Snapshot, name: &str) -> Option<&'s FileEntry> {
    snap.files.iter().find(|f| f.name == name)
}

pub(super) fn extra_str<'s>(snap: &'s Snapshot, key: &str) -> Option<&'s str> {
    snap.metadata.extra.get(key).and_then(|v| v.as_str())
}

pub(in crate::engine::postgres) fn estimated(snap: &Snapshot) -> bool {
    snap.metadata
        .extra
        .get("row_counts_estimated")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

pub(super) fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

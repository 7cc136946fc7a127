//! Exporting a logical snapshot: the stored `pg_dump` archive as it is, and the globals
//! beside it.
//!
//! The snapshot stores what `pg_dump --format=custom -Z0` wrote to its pipe (`backup`),
//! table data re-framed (`reframe`: the same rows in fewer, larger length-prefixed frames):
//! a custom-format archive, uncompressed, without data offsets in its table of contents
//! (pg_dump could not seek back into a pipe). Nothing is transformed on the way out, so
//! `pg_restore --list`, `-d`, `--create` and `-j` (which then scans for each table's data)
//! all work on it. The globals are `pg_dumpall --globals-only` SQL, for `psql -f`. Owns which files a
//! logical export writes and in which order. Must not restore.

use super::{DUMP_FILE, GLOBALS_FILE, file};
use crate::engine::export::{ExportFile, ExportSink, copy_file, stored};
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::Snapshot;

/// The archive at the path asked for.
const DUMP: ExportFile = ExportFile {
    suffix: "",
    what: "pg_dump custom-format archive",
};
/// The globals beside it.
const GLOBALS: ExportFile = ExportFile {
    suffix: ".globals.sql",
    what: "roles and tablespaces as SQL (pg_dumpall --globals-only)",
};

/// The archive, and the globals when the snapshot holds them (a server that hid its
/// catalogs from `pg_dumpall` left them out; the snapshot's `globals` fact says why).
pub fn export_files(snap: &Snapshot) -> Vec<ExportFile> {
    let mut out = vec![DUMP];
    if file(snap, GLOBALS_FILE).is_some() {
        out.push(GLOBALS);
    }
    out
}

/// Writes the archive, then the globals, into `sink`.
pub fn export(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    sink: &mut dyn ExportSink,
    progress: &dyn Progress,
) -> Result<()> {
    let dump = stored(snap, DUMP_FILE)?;
    let globals = file(snap, GLOBALS_FILE);
    progress.begin("export", Some(dump.size + globals.map_or(0, |g| g.size)));
    let copied = (|| {
        copy_file(repo, index, snap, dump, sink.file(DUMP.suffix)?, progress)?;
        if let Some(g) = globals {
            copy_file(repo, index, snap, g, sink.file(GLOBALS.suffix)?, progress)?;
        }
        Ok(())
    })();
    progress.end();
    copied
}

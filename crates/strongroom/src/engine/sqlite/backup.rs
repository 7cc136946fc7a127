//! Taking a SQLite snapshot: every page of one read transaction, with the metadata read in
//! the same transaction.
//!
//! Owns the page read through `sqlite_dbpage` and the facts a SQLite snapshot records (page
//! size and count, journal mode, version, row counts, schema version). Must not write to the
//! database.

use super::{MAIN_FILE, open_existing, row_counts, schema_version, source_err};
use crate::chunker::{FixedBatcher, page_chunk_size};
use crate::engine::Captured;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::snapshot::{BackupKind, Chunking, Metadata};
use crate::repository::writer::BackupWriter;
use crate::source::Source;
use std::collections::BTreeMap;
use std::path::Path;

/// Reads one consistent snapshot of the database into the writer.
pub(super) fn capture(
    path: &Path,
    source: &Source,
    writer: &BackupWriter<'_>,
    progress: &dyn Progress,
) -> Result<Captured> {
    if !path.exists() {
        return Err(Error::Source(format!(
            "source database {} does not exist",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Source(format!(
            "source {} is a directory, not a SQLite database",
            path.display()
        )));
    }
    let mut conn = open_existing(path)?;
    let tx = conn.transaction().map_err(|e| source_err(path, e))?;
    // The first read starts the read transaction; everything below sees the same snapshot.
    let page_size: i64 = tx
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| source_err(path, e))?;
    let page_count: i64 = tx
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| source_err(path, e))?;
    let journal_mode: String = tx
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| source_err(path, e))?;
    let counts = row_counts(&tx, path)?;
    let schema = schema_version(&tx, path, source.schema_version_query.as_deref())?;
    let version: String = tx
        .query_row("SELECT sqlite_version()", [], |r| r.get(0))
        .map_err(|e| source_err(path, e))?;
    let (page_size, page_count) = (page_size as usize, page_count as u64);
    let chunk = page_chunk_size(page_size);
    let size = page_size as u64 * page_count;
    progress.begin("backup", Some(size));

    let file = writer.write_file(MAIN_FILE, Chunking::Fixed { size: chunk as u32 }, progress, |sink| {
        let mut stmt = tx
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => Error::Source(
                    "this build of SQLite lacks the sqlite_dbpage table (SQLITE_ENABLE_DBPAGE_VTAB); build strongroom from its workspace, whose .cargo/config.toml enables it".into(),
                ),
                e => source_err(path, e),
            })?;
        let mut rows = stmt.query([]).map_err(|e| source_err(path, e))?;
        let mut batcher = FixedBatcher::new(chunk);
        let zero = vec![0u8; page_size];
        let mut expected = 1u64;
        while let Some(row) = rows.next().map_err(|e| source_err(path, e))? {
            let pgno: i64 = row.get(0).map_err(|e| Error::sqlite(path, e))?;
            let pgno = pgno as u64;
            if pgno > page_count {
                break;
            }
            // Pages the table skips (never the case today) are zero-filled to keep offsets.
            while expected < pgno {
                if let Some(b) = batcher.push(&zero) {
                    sink.push(b)?;
                }
                expected += 1;
            }
            let data = row.get_ref(1).map_err(|e| Error::sqlite(path, e))?;
            let bytes = data.as_blob().map_err(|e| Error::sqlite(path, rusqlite::Error::from(e)))?;
            if bytes.len() != page_size {
                return Err(Error::Source(format!("{}: page {pgno} has {} bytes, expected {page_size}", path.display(), bytes.len())));
            }
            if let Some(b) = batcher.push(bytes) {
                sink.push(b)?;
            }
            expected += 1;
        }
        while expected <= page_count {
            if let Some(b) = batcher.push(&zero) {
                sink.push(b)?;
            }
            expected += 1;
        }
        if let Some(b) = batcher.finish() {
            sink.push(b)?;
        }
        Ok(())
    });
    progress.end();
    let file = file?;
    tx.commit().map_err(|e| source_err(path, e))?;
    let mut extra = BTreeMap::new();
    extra.insert("page_size".into(), page_size.into());
    extra.insert("page_count".into(), page_count.into());
    extra.insert("journal_mode".into(), journal_mode.into());
    extra.insert("sqlite_version".into(), version.clone().into());
    Ok(Captured {
        kind: BackupKind::Full,
        files: vec![file],
        metadata: Metadata {
            row_counts: counts,
            schema_version: schema,
            server_version: version,
            extra,
        },
    })
}

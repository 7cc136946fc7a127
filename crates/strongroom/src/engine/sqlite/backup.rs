//! Taking a SQLite snapshot: every page of one read transaction, with the metadata read in
//! the same transaction.
//!
//! Owns getting the read lock of a busy database (waiting and retrying up to the source's
//! `lock_timeout`), the page read through `sqlite_dbpage`, holding the lock no longer than
//! reading takes (rollback-journal databases are spooled to a local file first), and the
//! facts a SQLite snapshot records (page size and count, journal mode, version, row counts,
//! schema version). Must not write to the database.

use super::{MAIN_FILE, open_existing, row_counts, schema_version, source_err};
use crate::chunker::{BATCH_BYTES, FixedBatcher, page_chunk_size};
use crate::engine::Captured;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::progress::Progress;
use crate::repository::snapshot::{BackupKind, Chunking, FileEntry, Metadata};
use crate::repository::writer::{BackupWriter, ChunkSink};
use crate::source::Source;
use rusqlite::{Connection, ErrorCode};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the read transaction found before reading the pages.
struct Facts {
    page_size: usize,
    page_count: u64,
    journal_mode: String,
    counts: BTreeMap<String, u64>,
    schema: Option<String>,
    version: String,
}

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
    let conn = open_existing(path)?;
    let locked_at = begin_read(&conn, path, source)?;
    // Everything below, up to the COMMIT, sees the same snapshot as the pages.
    let facts = read_facts(&conn, path, source)?;
    let chunk = page_chunk_size(facts.page_size);
    let size = facts.page_size as u64 * facts.page_count;
    let chunking = Chunking::Fixed { size: chunk as u32 };
    let file = if facts.journal_mode.eq_ignore_ascii_case("wal") {
        // Writers carry on in WAL mode: stream the pages straight into the pipeline.
        let file = stream_pages(&conn, path, source, &facts, writer, progress)?;
        end_read(&conn, path, locked_at)?;
        file
    } else {
        // Rollback journal: writers wait for as long as the read lock is held, so the pages go
        // to a local spool file and the lock is released before anything is uploaded.
        let dir = source.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
        // In a scratch directory of its own: removed on drop and on interrupts, and a
        // SIGKILL's leftover (a plaintext copy of the database) by the next spooling backup.
        let scratch = interrupt::ScratchDir::new(&dir, "strongroom-spool-", "the backup's spool")?;
        let spool_path = scratch.path().join("pages");
        // A plaintext copy of the database: readable by us alone (and its directory is 0700).
        let mut spool = std::fs::OpenOptions::new()
            .create_new(true)
            .mode(0o600)
            .read(true)
            .write(true)
            .open(&spool_path)
            .map_err(|e| Error::io("creating the backup's spool file", &spool_path, e))?;
        let spool_err = |e| Error::io("writing the backup's spool file", &spool_path, e);
        progress.begin("reading", Some(size));
        {
            let mut out = BufWriter::with_capacity(BATCH_BYTES, &mut spool);
            read_pages(&conn, path, &facts, |page| {
                progress.advance(page.len() as u64);
                out.write_all(page).map_err(spool_err)
            })?;
            out.flush().map_err(spool_err)?;
        }
        progress.end();
        end_read(&conn, path, locked_at)?;
        drop(conn);
        spool.seek(SeekFrom::Start(0)).map_err(spool_err)?;
        let mut input = BufReader::with_capacity(BATCH_BYTES, spool);
        progress.begin("backup", Some(size));
        let parent = parent_file(writer, source, chunking);
        let stored = writer.write_file(MAIN_FILE, chunking, progress, |sink| {
            sink.base_on(parent);
            let mut batcher = FixedBatcher::new(chunk);
            let mut buf = vec![0u8; BATCH_BYTES.max(chunk)];
            let mut left = size;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                input
                    .read_exact(&mut buf[..n])
                    .map_err(|e| Error::io("reading the backup's spool file", &spool_path, e))?;
                push(&mut batcher, sink, &buf[..n])?;
                left -= n as u64;
            }
            finish(batcher, sink)
        });
        progress.end();
        stored?
    };
    Ok(captured(facts, file))
}

/// A snapshot of the pages `conn`'s read transaction (already begun, WAL mode) sees; the
/// transaction stays open. Continuous capture takes its base snapshots this way, in the
/// transaction it pinned at a known WAL position.
pub(super) fn capture_in(
    conn: &Connection,
    path: &Path,
    source: &Source,
    writer: &BackupWriter<'_>,
    progress: &dyn Progress,
) -> Result<Captured> {
    let facts = read_facts(conn, path, source)?;
    let file = stream_pages(conn, path, source, &facts, writer, progress)?;
    Ok(captured(facts, file))
}

/// The newest earlier snapshot's `main.db` of `source`, cut into the same chunks: changed
/// pages are stored as deltas against it (docs/ARCHITECTURE.md, "Page deltas"). `None` when
/// there is none, or the snapshots cannot be read (then every page is stored whole, as
/// before: a parent only saves space).
fn parent_file(
    writer: &BackupWriter<'_>,
    source: &Source,
    chunking: Chunking,
) -> Option<FileEntry> {
    let repo = writer.repository();
    if repo.role() != crate::crypto::KeyRole::Full {
        return None;
    }
    // Headers from the local cache (one listing), then the one manifest needed: not every
    // manifest for every backup.
    let parent = repo.snapshot_headers().and_then(|(headers, _)| {
        let identity = source.location.identity();
        headers
            .iter()
            .rev()
            .find(|s| !s.unvouched && (s.source == source.name || s.identity() == identity))
            .map(|s| repo.read_snapshot(&s.id))
            .transpose()
    });
    match parent {
        Ok(parent) => parent?
            .files
            .into_iter()
            .find(|f| f.name == MAIN_FILE && f.chunking == chunking && f.chunks > 0),
        Err(e) => {
            tracing::warn!("{e}; storing every page whole");
            None
        }
    }
}

/// Streams every page of the read transaction into the pipeline as `main.db`.
fn stream_pages(
    conn: &Connection,
    path: &Path,
    source: &Source,
    facts: &Facts,
    writer: &BackupWriter<'_>,
    progress: &dyn Progress,
) -> Result<crate::repository::snapshot::FileEntry> {
    let chunk = page_chunk_size(facts.page_size);
    let size = facts.page_size as u64 * facts.page_count;
    let chunking = Chunking::Fixed { size: chunk as u32 };
    let parent = parent_file(writer, source, chunking);
    progress.begin("backup", Some(size));
    let file = writer.write_file(MAIN_FILE, chunking, progress, |sink| {
        sink.base_on(parent);
        let mut batcher = FixedBatcher::new(chunk);
        read_pages(conn, path, facts, |page| push(&mut batcher, sink, page))?;
        finish(batcher, sink)
    });
    progress.end();
    file
}

/// What a capture recorded: the file and the facts read beside it.
fn captured(facts: Facts, file: crate::repository::snapshot::FileEntry) -> Captured {
    let mut extra = BTreeMap::new();
    extra.insert("page_size".into(), facts.page_size.into());
    extra.insert("page_count".into(), facts.page_count.into());
    extra.insert("journal_mode".into(), facts.journal_mode.into());
    extra.insert("sqlite_version".into(), facts.version.clone().into());
    Captured {
        kind: BackupKind::Full,
        files: vec![file],
        metadata: Metadata {
            row_counts: facts.counts,
            schema_version: facts.schema,
            server_version: facts.version,
            extra,
        },
        wal: None,
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// `90s`, `5m`, `2h`: how a setting's duration reads in messages.
fn duration_text(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{}ms", d.as_millis()),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The setting that bounds the wait, as a person finds it.
fn lock_timeout_setting(source: &Source) -> String {
    match &source.config_name {
        Some(name) => format!("lock_timeout in [sources.{name}]"),
        None => "lock_timeout of a [sources.NAME] table naming this database".into(),
    }
}

/// Starts the read transaction: waits while writers hold the database locked, retrying up to
/// the source's `lock_timeout`. Returns when the lock was taken.
fn begin_read(conn: &Connection, path: &Path, source: &Source) -> Result<Instant> {
    let deadline = Instant::now() + source.lock_timeout;
    let mut waiting = false;
    let mut pause = Duration::from_millis(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A commit in progress is over within a second; past that, say that we wait.
        let patience = if waiting {
            left
        } else {
            left.min(Duration::from_secs(1))
        };
        conn.busy_timeout(patience)
            .map_err(|e| Error::sqlite(path, e))?;
        // The first read of a deferred transaction takes the read lock (SHARED, or a WAL
        // read mark) and keeps it until COMMIT.
        let attempt = conn
            .execute_batch("BEGIN")
            .and_then(|()| conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())));
        let e = match attempt {
            Ok(()) => return Ok(Instant::now()),
            Err(e) => e,
        };
        let _ = conn.execute_batch("ROLLBACK");
        if !is_busy(&e) {
            return Err(source_err(path, e));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Source(format!(
                "{} stayed locked by other connections for {}, the longest a backup waits \
                 for its read lock ({}); raise it, or back up when writers pause",
                path.display(),
                duration_text(source.lock_timeout),
                lock_timeout_setting(source)
            )));
        }
        if !waiting {
            waiting = true;
            tracing::warn!(
                "{} is locked by another connection; waiting up to {} for it ({})",
                path.display(),
                duration_text(source.lock_timeout),
                lock_timeout_setting(source)
            );
        }
        // SQLite's busy handler has waited already, unless SQLite chose not to ask it (it
        // does not when waiting could deadlock): a short pause keeps this from spinning.
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Ends the read transaction, letting writers go on.
fn end_read(conn: &Connection, path: &Path, locked_at: Instant) -> Result<()> {
    conn.execute_batch("COMMIT")
        .map_err(|e| source_err(path, e))?;
    tracing::info!(
        seconds = locked_at.elapsed().as_secs_f64(),
        "read lock on {} released",
        path.display()
    );
    Ok(())
}

/// The page facts, row counts, schema version and SQLite version, inside the read
/// transaction.
fn read_facts(conn: &Connection, path: &Path, source: &Source) -> Result<Facts> {
    let pragma = |sql: &str| -> Result<rusqlite::types::Value> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| source_err(path, e))
    };
    let int = |v: rusqlite::types::Value| match v {
        rusqlite::types::Value::Integer(i) => i,
        _ => 0,
    };
    let page_size = int(pragma("PRAGMA page_size")?) as usize;
    let page_count = int(pragma("PRAGMA page_count")?) as u64;
    let journal_mode = match pragma("PRAGMA journal_mode")? {
        rusqlite::types::Value::Text(t) => t,
        _ => String::new(),
    };
    let counts = row_counts(conn, path)?;
    let schema = schema_version(conn, path, source.schema_version_query.as_deref())?;
    let version = match pragma("SELECT sqlite_version()")? {
        rusqlite::types::Value::Text(t) => t,
        _ => String::new(),
    };
    Ok(Facts {
        page_size,
        page_count,
        journal_mode,
        counts,
        schema,
        version,
    })
}

fn push(batcher: &mut FixedBatcher, sink: &mut ChunkSink<'_>, bytes: &[u8]) -> Result<()> {
    match batcher.push(bytes) {
        Some(b) => sink.push(b),
        None => Ok(()),
    }
}

fn finish(batcher: FixedBatcher, sink: &mut ChunkSink<'_>) -> Result<()> {
    match batcher.finish() {
        Some(b) => sink.push(b),
        None => Ok(()),
    }
}

/// Hands every page of the read transaction to `page`, in order, exactly `page_count` of
/// them (pages the table skips, never the case today, as zeros to keep offsets).
fn read_pages(
    conn: &Connection,
    path: &Path,
    facts: &Facts,
    mut page: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let page_size = facts.page_size;
    let mut stmt = conn
        .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                Error::Source(
                    "this build of SQLite lacks the sqlite_dbpage table \
                     (SQLITE_ENABLE_DBPAGE_VTAB); build strongroom from its workspace, whose \
                     .cargo/config.toml enables it"
                        .into(),
                )
            }
            e => source_err(path, e),
        })?;
    let mut rows = stmt.query([]).map_err(|e| source_err(path, e))?;
    let zero = vec![0u8; page_size];
    let mut expected = 1u64;
    while let Some(row) = rows.next().map_err(|e| source_err(path, e))? {
        let pgno: i64 = row.get(0).map_err(|e| Error::sqlite(path, e))?;
        let pgno = pgno as u64;
        if pgno > facts.page_count {
            break;
        }
        while expected < pgno {
            page(&zero)?;
            expected += 1;
        }
        let data = row.get_ref(1).map_err(|e| Error::sqlite(path, e))?;
        let bytes = data
            .as_blob()
            .map_err(|e| Error::sqlite(path, rusqlite::Error::from(e)))?;
        if bytes.len() != page_size {
            return Err(Error::Source(format!(
                "{}: page {pgno} has {} bytes, expected {page_size}",
                path.display(),
                bytes.len()
            )));
        }
        page(bytes)?;
        expected += 1;
    }
    while expected <= facts.page_count {
        page(&zero)?;
        expected += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::repository::writer::tests::{memory_repo, snapshot_of};
    use crate::source::Location;
    use std::sync::Mutex;

    /// A rollback-journal database of `rows` rows of random 2 KiB blobs.
    fn rollback_db(dir: &Path, rows: u32) -> std::path::PathBuf {
        let path = dir.join("busy.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "PRAGMA journal_mode = DELETE; CREATE TABLE t(b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO t SELECT randomblob(2048) FROM n;"
        ))
        .unwrap();
        path
    }

    fn source(path: &Path) -> Source {
        Source::new("busy", Location::Sqlite(path.to_path_buf()))
    }

    /// Once the pages are in the pipeline, a writer that will not wait at all commits.
    struct WriteDuringUpload {
        writer: Mutex<Connection>,
        phase: Mutex<String>,
        wrote: Mutex<Option<rusqlite::Result<usize>>>,
    }

    impl Progress for WriteDuringUpload {
        fn begin(&self, label: &str, _total: Option<u64>) {
            *self.phase.lock().unwrap() = label.to_string();
        }
        fn advance(&self, _n: u64) {
            let mut wrote = self.wrote.lock().unwrap();
            if *self.phase.lock().unwrap() == "backup" && wrote.is_none() {
                let c = self.writer.lock().unwrap();
                *wrote = Some(c.execute("INSERT INTO t VALUES (zeroblob(10))", []));
            }
        }
    }

    #[test]
    fn rollback_mode_releases_the_lock_before_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let path = rollback_db(dir.path(), 600);
        let before = std::fs::read(&path).unwrap();
        let writer = Connection::open(&path).unwrap();
        writer.busy_timeout(Duration::ZERO).unwrap();
        let progress = WriteDuringUpload {
            writer: Mutex::new(writer),
            phase: Mutex::default(),
            wrote: Mutex::default(),
        };
        let repo = memory_repo();
        let w = BackupWriter::new(&repo).unwrap();
        let spool_dir = dir.path().join("spool");
        std::fs::create_dir(&spool_dir).unwrap();
        let src = Source {
            spool_dir: Some(spool_dir.clone()),
            ..source(&path)
        };
        let captured = capture(&path, &src, &w, &progress).unwrap();
        w.finish().unwrap();
        let wrote = progress.wrote.lock().unwrap().take();
        assert!(
            matches!(wrote, Some(Ok(1))),
            "a writer must not wait while pages are uploaded: {wrote:?}"
        );
        assert_eq!(
            captured.metadata.row_counts["t"], 600,
            "counted in the read"
        );
        assert_eq!(captured.metadata.extra["journal_mode"], "delete");
        assert_eq!(
            std::fs::read_dir(&spool_dir).unwrap().count(),
            0,
            "the spool file is removed"
        );
        // The stored pages are those of the read transaction, not the later write.
        let snap = snapshot_of(&repo, captured.files);
        let mut restored = Vec::new();
        let index = repo.load_index().unwrap();
        crate::repository::reader::stream_file(
            &repo,
            &index,
            &snap,
            &snap.files[0],
            &mut restored,
            &Silent,
        )
        .unwrap();
        assert!(restored == before, "the pages of the read transaction");
    }

    #[test]
    fn a_database_locked_past_lock_timeout_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = rollback_db(dir.path(), 10);
        let holder = Connection::open(&path).unwrap();
        // In rollback-journal mode an exclusive transaction keeps every reader out.
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let repo = memory_repo();
        let w = BackupWriter::new(&repo).unwrap();
        let src = Source {
            lock_timeout: Duration::from_millis(300),
            config_name: Some("busy".into()),
            ..source(&path)
        };
        let e = capture(&path, &src, &w, &Silent).err().expect("refused");
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains("lock_timeout in [sources.busy]"),
            "{msg}"
        );
        assert_eq!(e.kind(), crate::ErrorKind::SourceFailed);
        holder.execute_batch("COMMIT").unwrap();
        let captured = capture(&path, &src, &w, &Silent).unwrap();
        assert_eq!(captured.metadata.row_counts["t"], 10);
    }
}

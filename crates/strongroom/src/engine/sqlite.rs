//! The SQLite engine: online, transactionally consistent page snapshots of a live database.
//!
//! Owns reading a SQLite database while its application keeps writing, capturing its metadata
//! in the same transaction, and writing a restored database safely. Must not know how chunks
//! are stored.
//!
//! Why `sqlite_dbpage` under a read transaction: copying the file of a live database is not a
//! backup (with a writer running, 10 of 20 such copies came out corrupt here), and the online
//! backup API needs a second database to write into. Reading every page through SQLite's
//! `sqlite_dbpage` virtual table inside one read transaction yields exactly the pages of that
//! transaction's snapshot, WAL frames included, streamed straight into the pipeline. In WAL
//! mode writers carry on untouched (checkpoints wait, the WAL grows for the duration). In
//! rollback-journal mode writers wait on their busy timeout for as long as the read
//! transaction lasts, which is the whole backup, uploads included, since the pipeline's
//! buffers are bounded: seconds to a local repository, the upload time to a remote one.
//! Spooling rollback-mode pages to a local file to release the lock early is the known
//! improvement; production sources are WAL or PostgreSQL. Row counts, schema version
//! and page facts are read in the same transaction, so they describe exactly those pages.
//!
//! Restores write a temporary file beside the target, fsync it, run `PRAGMA quick_check`
//! (`integrity_check` with `--full-check`, and always in `verify`) and only then rename it
//! into place. Why not always the full check: every page is already authenticated by its keyed
//! hash, and `integrity_check` costs 24 s of CPU on a 785 MB database, six times the whole
//! restore budget (an RTO tool must not spend most of its time re-proving indexes);
//! `quick_check` still proves every page and b-tree sound in 1.8 s; a stale `-wal`, `-shm` or `-journal` beside the target
//! is moved aside first, because SQLite would otherwise replay it into the restored pages.

use super::{Captured, CheckResult, Engine, RestoreOptions, RestoreOutcome, Scratch, Target};
use crate::chunker::{FixedBatcher, page_chunk_size};
use crate::config::{CheckConfig, Location, Source};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{Chunking, FileEntry, Metadata, Snapshot};
use crate::repository::writer::BackupWriter;
use crate::storage::sync_dir;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name of the database inside a SQLite snapshot.
pub const MAIN_FILE: &str = "main.db";

/// The SQLite engine.
pub struct Sqlite;

fn source_path(source: &Source) -> &Path {
    match &source.location {
        Location::Sqlite(p) => p,
        Location::Postgres(_) => unreachable!("the SQLite engine only gets SQLite sources"),
    }
}

fn is_not_a_db(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase)
}

fn source_err(path: &Path, e: rusqlite::Error) -> Error {
    if is_not_a_db(&e) {
        Error::Source(format!("{} is not a SQLite database", path.display()))
    } else {
        Error::sqlite(path, e)
    }
}

/// Opens an existing database without creating it.
fn open_existing(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| source_err(path, e))?;
    c.busy_timeout(Duration::from_secs(30))
        .map_err(|e| Error::sqlite(path, e))?;
    Ok(c)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Exact row counts of every user table (virtual tables excluded).
pub fn row_counts(c: &Connection, path: &Path) -> Result<BTreeMap<String, u64>> {
    let mut stmt = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
        )
        .map_err(|e| source_err(path, e))?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| source_err(path, e))?;
    let mut out = BTreeMap::new();
    for n in names {
        let count: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM {}", quote_ident(&n)),
                [],
                |r| r.get(0),
            )
            .map_err(|e| Error::sqlite(path, e))?;
        out.insert(n, count as u64);
    }
    Ok(out)
}

/// Migration tables the contract names, with the query giving the newest applied migration.
pub(crate) const MIGRATION_QUERIES: &[(&str, &str)] = &[
    (
        "_prisma_migrations",
        "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY finished_at DESC, migration_name DESC LIMIT 1",
    ),
    (
        "_sqlx_migrations",
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version DESC LIMIT 1",
    ),
    (
        "schema_migrations",
        "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1",
    ),
    (
        "flyway_schema_history",
        "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL ORDER BY installed_rank DESC LIMIT 1",
    ),
    (
        "__diesel_schema_migrations",
        "SELECT version FROM __diesel_schema_migrations ORDER BY version DESC LIMIT 1",
    ),
];

fn value_text(v: rusqlite::types::Value) -> Option<String> {
    use rusqlite::types::Value;
    match v {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(f.to_string()),
        Value::Text(t) => Some(t),
        Value::Blob(b) => Some(hex::encode(b)),
    }
}

/// The schema version per the contract: a configured query, else the newest migration in a
/// known migration table, else a non-zero `PRAGMA user_version`, else `None`.
pub fn schema_version(c: &Connection, path: &Path, query: Option<&str>) -> Result<Option<String>> {
    if let Some(q) = query {
        let v: Option<rusqlite::types::Value> =
            c.query_row(q, [], |r| r.get(0)).optional().map_err(|e| {
                Error::Config(format!(
                    "schema_version_query failed on {}: {e}",
                    path.display()
                ))
            })?;
        return Ok(v.and_then(value_text));
    }
    for (table, q) in MIGRATION_QUERIES {
        let exists: bool = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| source_err(path, e))?
            > 0;
        if exists {
            // A migration table of another shape than expected is not an error: fall through.
            if let Ok(Some(v)) = c
                .query_row(q, [], |r| r.get::<_, rusqlite::types::Value>(0))
                .optional()
            {
                return Ok(value_text(v));
            }
        }
    }
    let uv: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| source_err(path, e))?;
    Ok((uv != 0).then(|| uv.to_string()))
}

/// How thoroughly a restored database is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thoroughness {
    /// `PRAGMA quick_check`: every page and b-tree structure, in time linear in the size
    /// (1.8 s on 785 MB here).
    Quick,
    /// `PRAGMA integrity_check`: also every index against its table (24 s on 785 MB here).
    Full,
}

impl Thoroughness {
    fn pragma(self) -> &'static str {
        match self {
            Thoroughness::Quick => "quick_check",
            Thoroughness::Full => "integrity_check",
        }
    }
}

/// Integrity problems found by `PRAGMA quick_check` or `integrity_check` (empty when sound).
pub fn integrity_problems(c: &Connection, path: &Path, how: Thoroughness) -> Result<Vec<String>> {
    // The full check revisits pages many times; through read() that costs more in system calls
    // than the check itself (36 s against 24 s on 785 MB), so it reads memory-mapped. The
    // mapped pages are the page cache, not our heap, but they count in RSS, so the linear
    // quick check (the restore path, with its memory budget) reads normally.
    if how == Thoroughness::Full {
        let _ = c.query_row("PRAGMA mmap_size = 1099511627776", [], |_| Ok(()));
    }
    let mut stmt = c
        .prepare(&format!("PRAGMA {}(20)", how.pragma()))
        .map_err(|e| source_err(path, e))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| source_err(path, e))?;
    Ok(if rows == ["ok"] { Vec::new() } else { rows })
}

/// Whether a check's single value counts as passing.
fn truthy(v: &rusqlite::types::Value) -> bool {
    use rusqlite::types::Value;
    match v {
        Value::Null => false,
        Value::Integer(i) => *i != 0,
        Value::Real(f) => *f != 0.0,
        Value::Text(t) => !matches!(
            t.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "f" | "false" | "no"
        ),
        Value::Blob(b) => !b.is_empty(),
    }
}

/// Runs configured checks against a database.
pub fn run_checks(c: &Connection, checks: &[CheckConfig]) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|chk| {
            let r = c
                .query_row(&chk.sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
                .optional();
            let (ok, detail) = match r {
                Ok(Some(v)) => (
                    truthy(&v),
                    format!(
                        "returned {}",
                        value_text(v).unwrap_or_else(|| "NULL".into())
                    ),
                ),
                Ok(None) => (false, "returned no row".into()),
                Err(e) => (false, format!("failed: {e}")),
            };
            CheckResult {
                name: chk.name.clone(),
                ok,
                detail,
            }
        })
        .collect()
}

/// Reads one consistent snapshot of the database into the writer.
fn capture(
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
        kind: "full".into(),
        files: vec![file],
        metadata: Metadata {
            row_counts: counts,
            schema_version: schema,
            server_version: version,
            extra,
        },
    })
}

/// Writes the pages of `file` into `out` at their offsets.
fn write_pages(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    file: &FileEntry,
    out: &File,
    out_path: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let chunk = match file.chunking {
        Chunking::Fixed { size } => size as u64,
        Chunking::ContentDefined => {
            return Err(Error::corrupt(
                Snapshot::object_key(&snap.id),
                "a SQLite file must use fixed chunks",
            ));
        }
    };
    out.set_len(file.size)
        .map_err(|e| Error::io("writing the restored database to", out_path, e))?;
    progress.begin("restore", Some(file.size));
    let res = reader::for_each_window(repo, index, snap, file, |first, ids| {
        let mut at: HashMap<_, Vec<u64>> = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            at.entry(*id).or_default().push(first + i as u64);
        }
        reader::fetch(repo, index, ids, |chunks| {
            // Runs of consecutive pages become one write (a fresh full backup's segment is
            // 256 consecutive pages).
            let mut placed: Vec<(u64, &[u8])> = chunks
                .iter()
                .flat_map(|(id, data)| at[id].iter().map(move |&pos| (pos, *data)))
                .collect();
            placed.sort_unstable_by_key(|(pos, _)| *pos);
            let mut run: Vec<u8> = Vec::new();
            let mut run_start = 0u64;
            let flush = |run: &mut Vec<u8>, start: u64| -> Result<()> {
                if !run.is_empty() {
                    out.write_all_at(run, start * chunk)
                        .map_err(|e| Error::io("writing the restored database to", out_path, e))?;
                    progress.advance(run.len() as u64);
                    run.clear();
                }
                Ok(())
            };
            for (pos, data) in placed {
                let full = data.len() as u64 == chunk;
                if run.is_empty()
                    || pos != run_start + run.len() as u64 / chunk
                    || run.len() as u64 % chunk != 0
                {
                    flush(&mut run, run_start)?;
                    run_start = pos;
                }
                run.extend_from_slice(data);
                if !full {
                    flush(&mut run, run_start)?;
                }
            }
            flush(&mut run, run_start)
        })
    });
    progress.end();
    res?;
    Ok(())
}

/// Restores the snapshot into a new temporary file in `dir`, synced, and checks it; returns
/// the file and the problems the check found (the caller decides what they mean).
fn restore_checked(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    dir: &Path,
    stem: &str,
    how: Thoroughness,
    progress: &dyn Progress,
) -> Result<(tempfile::NamedTempFile, Vec<String>)> {
    let file = snap
        .files
        .iter()
        .find(|f| f.name == MAIN_FILE)
        .ok_or_else(|| {
            Error::corrupt(
                Snapshot::object_key(&snap.id),
                "no database file in the snapshot",
            )
        })?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{stem}.strongroom-"))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    let t = std::time::Instant::now();
    write_pages(repo, index, snap, file, tmp.as_file(), tmp.path(), progress)?;
    tracing::info!(
        seconds = t.elapsed().as_secs_f64(),
        bytes = file.size,
        "pages written"
    );
    // The check reads through the page cache, so it need not wait for the data to reach the
    // disk: fsync in parallel, and move into place only when both are done.
    let t = std::time::Instant::now();
    let (synced, problems) = std::thread::scope(|s| {
        let sync = s.spawn(|| tmp.as_file().sync_all());
        let problems =
            open_existing(tmp.path()).and_then(|c| integrity_problems(&c, tmp.path(), how));
        (sync.join().expect("fsync thread"), problems)
    });
    synced.map_err(|e| Error::io("syncing the restored database", tmp.path(), e))?;
    let problems = problems?;
    tracing::info!(
        seconds = t.elapsed().as_secs_f64(),
        check = how.pragma(),
        "synced and integrity checked"
    );
    remove_sidecars(tmp.path());
    Ok((tmp, problems))
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_sidecars(path: &Path) {
    for s in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sidecar(path, s));
    }
}

/// Whether another process holds a POSIX lock anywhere on `path` (`F_GETLK` asks the kernel
/// without taking one). SQLite locks through exactly these locks.
fn locked_elsewhere(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return false;
    };
    // SAFETY: `flock` is plain data; F_GETLK only writes into the struct we pass.
    unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 0;
        libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) == 0
            && fl.l_type != libc::F_UNLCK as libc::c_short
    }
}

/// Refuses a target another process has open. WAL-mode connections keep a lock on the
/// `-shm` file for as long as they are open; rollback-mode ones lock the database file only
/// during a transaction, so an idle one cannot be seen (nothing can see it).
fn ensure_not_in_use(path: &Path) -> Result<()> {
    if locked_elsewhere(path) || locked_elsewhere(&sidecar(path, "-shm")) {
        return Err(Error::Target(format!(
            "{} is in use by another process; stop the application before restoring over it",
            path.display()
        )));
    }
    Ok(())
}

fn now_tag() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn kinds(&self) -> &'static [&'static str] {
        &["full"]
    }

    fn backup(
        &self,
        source: &Source,
        _kind: &str,
        writer: &BackupWriter<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured> {
        capture(source_path(source), source, writer, progress)
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
        let Target::File(target) = target else {
            return Err(Error::Target(format!(
                "snapshot {} is a SQLite database: restore it with --to PATH",
                snap.short_id()
            )));
        };
        let name = target
            .file_name()
            .ok_or_else(|| Error::Target(format!("{} is not a file path", target.display())))?
            .to_string_lossy()
            .to_string();
        if target.is_dir() {
            return Err(Error::Target(format!(
                "{} is a directory; give the path of the database file",
                target.display()
            )));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating directory", &dir, e))?;
        let exists = target.exists();
        if exists && !opts.force {
            return Err(Error::Target(format!(
                "{} already exists; pass --force to replace it (the old file is kept aside until the restore has succeeded)",
                target.display()
            )));
        }
        if exists {
            ensure_not_in_use(target)?;
        }
        let how = if opts.full_check {
            Thoroughness::Full
        } else {
            Thoroughness::Quick
        };
        let (tmp, problems) = restore_checked(repo, index, snap, &dir, &name, how, progress)?;
        if !problems.is_empty() {
            return Err(Error::corrupt(
                Snapshot::object_key(&snap.id),
                format!(
                    "the restored database fails PRAGMA {}: {}; the target was not touched",
                    how.pragma(),
                    problems.join("; ")
                ),
            ));
        }
        let bytes = tmp.as_file().metadata().map(|m| m.len()).unwrap_or(0);

        let hook_env = [
            ("STRONGROOM_SNAPSHOT", snap.id.clone()),
            ("STRONGROOM_SOURCE", snap.source.clone()),
            ("STRONGROOM_TARGET", target.display().to_string()),
        ];
        if let Some(h) = &opts.before_restore {
            super::run_hook("before_restore", h, &hook_env)?;
        }
        let swapped = (|| -> Result<RestoreOutcome> {
            // Move the old database and every sidecar aside: SQLite would replay a stale -wal or
            // -journal into the restored pages.
            // The application may have opened the database while we restored: look again.
            if exists {
                ensure_not_in_use(target)?;
            }
            let tag = format!(
                "{}-{}",
                now_tag(),
                hex::encode(crate::crypto::random_bytes::<3>())
            );
            let aside = dir.join(format!(".{name}.strongroom-old-{tag}"));
            // Every rename is recorded so that any failure puts everything back as it was.
            let mut renames: Vec<(PathBuf, PathBuf)> = Vec::new();
            let undo = |renames: &mut Vec<(PathBuf, PathBuf)>| {
                while let Some((from, to)) = renames.pop() {
                    let _ = std::fs::rename(&to, &from);
                }
            };
            let mut plan = Vec::new();
            if exists {
                plan.push((target.clone(), aside.clone()));
            }
            for s in ["-wal", "-journal", "-shm"] {
                let side = sidecar(target, s);
                if side.exists() {
                    plan.push((side, sidecar(&aside, s)));
                }
            }
            for (from, to) in plan {
                if let Err(e) = std::fs::rename(&from, &to) {
                    undo(&mut renames);
                    return Err(Error::io("moving aside (nothing was changed)", from, e));
                }
                renames.push((from, to));
            }
            let placed = if exists {
                tmp.persist(target).map(|_| ())
            } else {
                tmp.persist_noclobber(target).map(|_| ())
            };
            if let Err(e) = placed {
                undo(&mut renames);
                return Err(Error::io(
                    "moving the restored database into place (the old files were put back) at",
                    target,
                    e.error,
                ));
            }
            let old_kept_at = exists.then(|| aside.display().to_string());
            let mut moved: Vec<String> = renames
                .iter()
                .filter(|(from, _)| from != target)
                .map(|(_, to)| to.display().to_string())
                .collect();
            if let Err(e) = sync_dir(&dir) {
                // The restore is in place; say so, and where the old data is.
                return Err(Error::Target(format!(
                    "the restored database is in place at {} but syncing its directory failed ({e}); the old data is kept at {}",
                    target.display(),
                    old_kept_at.as_deref().unwrap_or("-")
                )));
            }
            let discard = exists && !opts.keep_old;
            if discard {
                let _ = std::fs::remove_file(&aside);
                for m in moved.drain(..) {
                    let _ = std::fs::remove_file(m);
                }
            }
            Ok(RestoreOutcome {
                target: target.display().to_string(),
                bytes,
                old_kept_at: old_kept_at.filter(|_| !discard),
                moved_aside: moved,
            })
        })();
        let after = match &opts.after_restore {
            Some(h) => super::run_hook("after_restore", h, &hook_env),
            None => Ok(()),
        };
        let outcome = swapped?;
        after.map_err(|e| {
            Error::Failed(format!(
                "the restore is in place at {}, but {e}",
                target.display()
            ))
        })?;
        Ok(outcome)
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
        let checks = source.map(|s| s.checks.as_slice()).unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("strongroom-verify-")
            .tempdir_in(&scratch.dir)
            .map_err(|e| Error::io("creating a scratch directory in", &scratch.dir, e))?;
        let mut results = Vec::new();
        let how = Thoroughness::Full;
        let (tmp, problems) =
            restore_checked(repo, index, snap, dir.path(), "verify", how, progress)?;
        results.push(CheckResult {
            name: how.pragma().into(),
            ok: problems.is_empty(),
            detail: if problems.is_empty() {
                "ok".into()
            } else {
                problems.join("; ")
            },
        });
        if !problems.is_empty() {
            return Ok(results);
        }
        let c = open_existing(tmp.path())?;
        let found = row_counts(&c, tmp.path())?;
        results.push(super::compare_row_counts(&snap.metadata.row_counts, &found));
        results.extend(run_checks(&c, checks));
        drop(c);
        remove_sidecars(tmp.path());
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::Value;

    #[test]
    fn truthiness() {
        for (v, want) in [
            (Value::Integer(1), true),
            (Value::Integer(0), false),
            (Value::Null, false),
            (Value::Text("t".into()), true),
            (Value::Text("false".into()), false),
            (Value::Text("0".into()), false),
            (Value::Real(0.5), true),
        ] {
            assert_eq!(truthy(&v), want, "{v:?}");
        }
    }

    #[test]
    fn schema_version_detection() {
        let c = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        assert_eq!(schema_version(&c, p, None).unwrap(), None);
        c.execute_batch("PRAGMA user_version = 7").unwrap();
        assert_eq!(schema_version(&c, p, None).unwrap().as_deref(), Some("7"));
        c.execute_batch(
            "CREATE TABLE _prisma_migrations (id TEXT, migration_name TEXT, finished_at TEXT, rolled_back_at TEXT);
             INSERT INTO _prisma_migrations VALUES ('1', '20240101_init', '2024-01-01', NULL),
               ('2', '20240301_add_rooms', '2024-03-01', NULL), ('3', '20240401_bad', '2024-04-01', '2024-04-02');",
        )
        .unwrap();
        assert_eq!(
            schema_version(&c, p, None).unwrap().as_deref(),
            Some("20240301_add_rooms")
        );
        assert_eq!(
            schema_version(&c, p, Some("SELECT 'v9'"))
                .unwrap()
                .as_deref(),
            Some("v9")
        );
        assert!(schema_version(&c, p, Some("SELECT nope")).is_err());
    }

    #[test]
    fn checks_and_counts() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE a(x); INSERT INTO a VALUES (1),(2); CREATE TABLE \"we\"\"ird\"(y);",
        )
        .unwrap();
        let counts = row_counts(&c, Path::new("m")).unwrap();
        assert_eq!(counts.get("a"), Some(&2));
        assert_eq!(counts.get("we\"ird"), Some(&0));
        let r = run_checks(
            &c,
            &[
                CheckConfig {
                    name: "two".into(),
                    sql: "SELECT count(*) = 2 FROM a".into(),
                },
                CheckConfig {
                    name: "bad".into(),
                    sql: "SELECT nope".into(),
                },
                CheckConfig {
                    name: "empty".into(),
                    sql: "SELECT 1 WHERE 0".into(),
                },
            ],
        );
        assert_eq!(
            r.iter().map(|c| c.ok).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        let mut exp = counts.clone();
        assert!(super::super::compare_row_counts(&exp, &counts).ok);
        exp.insert("a".into(), 3);
        let cr = super::super::compare_row_counts(&exp, &counts);
        assert!(
            !cr.ok && cr.detail.contains("a: expected 3, found 2"),
            "{}",
            cr.detail
        );
    }
}

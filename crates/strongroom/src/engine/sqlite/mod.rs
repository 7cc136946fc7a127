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
//! transaction's snapshot, WAL frames included. In WAL mode writers carry on untouched
//! (checkpoints wait, the WAL grows for the duration), so the pages stream straight into the
//! pipeline. In rollback-journal mode writers wait on their busy timeout for as long as the
//! read transaction lasts; streaming would make that the whole backup, uploads included (the
//! pipeline's buffers are bounded), so the pages go to a local spool file and the lock is
//! released before the pipeline reads the spool: writers wait only for the local read. A busy
//! database is waited for: the backup retries for its read lock up to the source's
//! `lock_timeout`. Row counts, schema version and page facts are read in the same
//! transaction, so they describe exactly those pages.
//!
//! Restores write a temporary file beside the target, fsync it, run `PRAGMA quick_check`
//! (`integrity_check` with `--full-check`, and always in `verify`) and only then rename it
//! into place. Why not always the full check: every page is already authenticated by its keyed
//! hash, and `integrity_check` costs 24 s of CPU on a 785 MB database, six times the whole
//! restore budget (an RTO tool must not spend most of its time re-proving indexes);
//! `quick_check` still proves every page and b-tree sound in 1.8 s; a stale `-wal`, `-shm` or `-journal` beside the target
//! is moved aside first, because SQLite would otherwise replay it into the restored pages.
//!
//! An export (`strongroom export`) writes the same pages in order as one plain database file.

mod backup;
pub mod replica;
mod restore;
mod target;

use super::checks::{CheckOutcome, compare_row_counts, truthy_text};
use super::export::{ExportFile, ExportSink, copy_file, stored};
use super::{Captured, Engine, RestoreOptions, Scratch, Staged, Target, TargetState};
use crate::error::{Error, Result, TargetSort};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::{BackupKind, EngineKind, Snapshot};
use crate::repository::writer::BackupWriter;
use crate::source::{Location, Source, SqlCheck};
use restore::{remove_sidecars, restore_checked};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The name of a database's `-wal`, `-shm` or `-journal` (`suffix`) beside it.
fn sidecar(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    std::path::PathBuf::from(s)
}

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
    for (table, q) in super::schema::MIGRATION_QUERIES {
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

/// Whether a check's single value counts as passing ([`truthy_text`] on its text; a blob
/// passes when it is not empty).
fn truthy(v: &rusqlite::types::Value) -> bool {
    use rusqlite::types::Value;
    match v {
        Value::Null => false,
        Value::Integer(i) => *i != 0,
        Value::Real(f) => *f != 0.0,
        Value::Text(t) => truthy_text(Some(t)),
        Value::Blob(b) => !b.is_empty(),
    }
}

/// Runs configured checks against a database.
pub fn run_checks(c: &Connection, checks: &[SqlCheck]) -> Vec<CheckOutcome> {
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
            CheckOutcome {
                name: chk.name.clone(),
                ok,
                detail,
            }
        })
        .collect()
}

impl Engine for Sqlite {
    fn kind(&self) -> EngineKind {
        EngineKind::Sqlite
    }

    fn backup_kinds(&self) -> &'static [BackupKind] {
        &[BackupKind::Full]
    }

    fn restores_into(&self, _kind: &BackupKind) -> Option<TargetSort> {
        Some(TargetSort::File)
    }

    fn backup(
        &self,
        source: &Source,
        _kind: &BackupKind,
        writer: &BackupWriter<'_>,
        progress: &dyn Progress,
    ) -> Result<Captured> {
        backup::capture(source_path(source), source, writer, progress)
    }

    fn latest_for(
        &self,
        repo: &Repository,
        all: &[Snapshot],
        filter: &crate::repository::snapshot::Filter,
        _target: &Target,
        recovery: &super::RecoveryTarget,
    ) -> Option<Result<Snapshot>> {
        replica::latest_for(repo, all, filter, recovery)
    }

    fn inspect(
        &self,
        snap: &Snapshot,
        target: &Target,
        _opts: &RestoreOptions,
    ) -> Result<TargetState> {
        restore::inspect(snap, target)
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
        restore::stage(repo, index, snap, target, state, opts, progress)
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
        let dir = crate::interrupt::ScratchDir::new(
            &scratch.dir,
            "strongroom-verify-",
            "the test restore's directory",
        )?;
        let mut results = Vec::new();
        let how = Thoroughness::Full;
        // The pages are read from the repository and written as they come; the structural
        // check runs while they are synced, as before a real restore's swap.
        scratch.phases.begin("restore");
        // The snapshot itself: its recorded row counts are compared below.
        let (tmp, _removed, problems, _file, _) = restore_checked(
            repo,
            index,
            snap,
            dir.path(),
            dir.path(),
            "verify",
            how,
            None,
            progress,
        )?;
        scratch.phases.begin("checks");
        results.push(CheckOutcome {
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
        let c = open_existing(&tmp)?;
        let found = row_counts(&c, &tmp)?;
        results.push(compare_row_counts(&snap.metadata.row_counts, &found));
        results.extend(run_checks(&c, checks));
        drop(c);
        remove_sidecars(&tmp);
        Ok(results)
    }

    fn export_files(&self, _snap: &Snapshot) -> Result<Vec<ExportFile>> {
        Ok(vec![ExportFile {
            suffix: "",
            what: "SQLite database file",
        }])
    }

    /// The database file, page after page as the snapshot holds them: exactly the file a
    /// restore writes (without its quick check: the pages are authenticated one by one and
    /// the file's length is checked, and an encrypted file cannot be opened here).
    fn export(
        &self,
        repo: &Repository,
        index: &Index,
        snap: &Snapshot,
        sink: &mut dyn ExportSink,
        progress: &dyn Progress,
    ) -> Result<()> {
        let file = stored(snap, MAIN_FILE)?;
        progress.begin("export", Some(file.size));
        let copied = copy_file(repo, index, snap, file, sink.file("")?, progress);
        progress.end();
        copied.map(|_| ())
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
                SqlCheck {
                    name: "two".into(),
                    sql: "SELECT count(*) = 2 FROM a".into(),
                },
                SqlCheck {
                    name: "bad".into(),
                    sql: "SELECT nope".into(),
                },
                SqlCheck {
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
        assert!(super::compare_row_counts(&exp, &counts).ok);
        exp.insert("a".into(), 3);
        let cr = super::compare_row_counts(&exp, &counts);
        assert!(
            !cr.ok && cr.detail.contains("a: expected 3, found 2"),
            "{}",
            cr.detail
        );
    }
}

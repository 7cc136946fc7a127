//! Logical PostgreSQL snapshots: `pg_dump` streamed into the repository, `pg_restore` out.
//!
//! Backup: one repeatable-read transaction exports its snapshot and `pg_dump --snapshot`
//! dumps exactly that state. Exact row counts are counted in the dump stream itself as it
//! passes (no second scan of every table, and no way to disagree with the dump); the same
//! transaction reads the schema version. `pg_dump` writes its custom
//! format *uncompressed* (`-Z0`): our pipeline compresses with zstd on every core after
//! content-defined chunking, and compressed input would defeat both the chunker's dedup and
//! the compressor. Nothing is spooled to disk (invariant 5). The roles and other globals
//! (`pg_dumpall --globals-only`) are stored beside the dump, without password hashes unless
//! the role is a superuser, so a restore onto a fresh server can recreate the owners.
//!
//! Why not `pg_dump -Fd -j`: it parallelises across tables, but a booking database is one
//! big table; measured on 702 MB (4 M bookings), `-Fd -j2` took 3.06 s against 2.96 s for
//! one stream, and it would need a local copy of the whole dump.
//!
//! Restore never touches the target until the end (invariant 3): the snapshot is restored
//! into a new database beside it, row counts are checked, then the `before_restore` hook
//! runs, the old database is renamed aside, the new one renamed into place, the
//! `after_restore` hook runs, and the old one is dropped (or kept with `--keep-old`; also
//! kept when `after_restore` fails). The application is down only for the two renames.
//! Table data streams from the repository through parallel `COPY` connections (see
//! `archive`); archives that path cannot take (non-UTF-8 data, large objects) go through
//! `pg_restore -j`, which needs a seekable file: the dump is spooled to `$TMPDIR` for it.
//! Must not know how chunks are stored.

use super::archive;
use super::properties::Properties;
use super::server::{Conn, conninfo_value, ident, literal};
use super::tools::{self, Tool, describe_exit, stderr_gist};
use crate::chunker::CdcBatcher;
use crate::config::{CheckConfig, RowCounts, Source};
use crate::engine::{Captured, CheckResult, RestoreOptions, RestoreOutcome, Scratch};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{Chunking, FileEntry, Metadata, Snapshot};
use crate::repository::writer::BackupWriter;
use crate::scratch;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

/// The dump in `pg_dump`'s custom format, uncompressed.
pub const DUMP_FILE: &str = "database.dump";
/// `pg_dumpall --globals-only` output: roles, memberships, tablespaces.
pub const GLOBALS_FILE: &str = "globals.sql";
/// Metadata key holding the database-level [`Properties`].
pub const PROPERTIES_KEY: &str = "database_properties";

/// Facts about the server and database read at backup or restore time.
struct Facts {
    version_num: u32,
    version: String,
    superuser: bool,
    createdb: bool,
}

impl Facts {
    fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

fn facts(client: &mut postgres::Client, conn: &Conn) -> Result<Facts> {
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

/// Kills a child process when dropped unless it was waited for.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let mut c = self.0.take().expect("child waited once");
        c.wait()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a child's standard error in the background, keeping the last 64 KiB.
fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<Vec<u8>> {
    let mut err = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 65536 {
                kept.drain(..kept.len() - 65536);
            }
        }
        kept
    })
}

/// Which relations are user tables: not in system schemas, not owned by an extension.
const USER_TABLE: &str = "c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_(toast|temp)' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                     AND d.objid = c.oid AND d.deptype = 'e')";

/// A table's key in `row_counts`: `public` tables by bare name, others qualified.
fn table_key(ns: &str, rel: &str) -> String {
    if ns == "public" {
        rel.to_string()
    } else {
        format!("{ns}.{rel}")
    }
}

/// User tables as (key in `row_counts`, qualified name, whose data the dump leaves out).
/// A hot standby cannot read unlogged tables, and `pg_dump` skips their data there.
fn user_tables(client: &mut postgres::Client, conn: &Conn) -> Result<Vec<(String, String, bool)>> {
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname, c.relname, c.relpersistence = 'u' AND pg_is_in_recovery() \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE {USER_TABLE} ORDER BY 1, 2"
            ),
            &[],
        )
        .map_err(|e| Error::Source(conn.explain(&e)))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (ns, rel): (String, String) = (r.get(0), r.get(1));
            (
                table_key(&ns, &rel),
                format!("{}.{}", ident(&ns), ident(&rel)),
                r.get(2),
            )
        })
        .collect())
}

/// A table as (schema, name).
type Table = (String, String);

/// Every user table with the tables whose rows `count(*)` on it sees: itself and, through
/// partitioning or inheritance, its descendants (each once, also below a diamond). Catalog
/// reads only, so no table locks. `None` when a descendant is a foreign table: its rows are
/// not in the dump, yet `count(*)` on the parent reads them.
fn table_members(
    client: &mut postgres::Client,
    conn: &Conn,
) -> Result<Option<BTreeMap<String, Vec<Table>>>> {
    let rows = client
        .query(
            &format!(
                "WITH RECURSIVE t(root, rel) AS ( \
                   SELECT c.oid, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE {USER_TABLE} \
                   UNION SELECT t.root, i.inhrelid FROM t JOIN pg_inherits i ON i.inhparent = t.rel) \
                 SELECT rn.nspname, rc.relname, mn.nspname, mc.relname, mc.relkind = 'f' FROM t \
                 JOIN pg_class rc ON rc.oid = t.root JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
                 JOIN pg_class mc ON mc.oid = t.rel JOIN pg_namespace mn ON mn.oid = mc.relnamespace \
                 ORDER BY rn.nspname, rc.relname, t.root"
            ),
            &[],
        )
        .map_err(|e| Error::Source(conn.explain(&e)))?;
    if rows.iter().any(|r| r.get::<_, bool>(4)) {
        return Ok(None);
    }
    // Rows come grouped by root. Two tables with one key (`public."a.b"` and `a.b`): the
    // later one wins in the map, as in `row_counts`, which the restore's check uses.
    let mut groups: Vec<(Table, Vec<Table>)> = Vec::new();
    for r in &rows {
        let (root, member): (Table, Table) = ((r.get(0), r.get(1)), (r.get(2), r.get(3)));
        match groups.last_mut() {
            Some((g, members)) if *g == root => members.push(member),
            _ => groups.push((root, vec![member])),
        }
    }
    Ok(Some(
        groups
            .into_iter()
            .map(|((ns, rel), members)| (table_key(&ns, &rel), members))
            .collect(),
    ))
}

/// Row counts of every user table: exact, or the planner's estimates.
fn row_counts(
    client: &mut postgres::Client,
    conn: &Conn,
    how: RowCounts,
) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (key, qualified, skipped) in user_tables(client, conn)? {
        if skipped {
            out.insert(key, 0);
            continue;
        }
        let sql = match how {
            RowCounts::Exact => format!("SELECT count(*)::int8 FROM {qualified}"),
            RowCounts::Estimate => format!(
                "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = {}::regclass",
                literal(&qualified)
            ),
        };
        let n: i64 = client
            .query_one(&sql, &[])
            .map_err(|e| Error::Source(format!("counting rows of {key}: {}", conn.explain(&e))))?
            .get(0);
        out.insert(key, n as u64);
    }
    Ok(out)
}

/// The schema version per the contract: a configured query, else the newest migration in a
/// known migration table. Runs each probe in a savepoint so a failing one leaves the
/// transaction usable.
fn schema_version(
    client: &mut postgres::Client,
    conn: &Conn,
    query: Option<&str>,
) -> Result<Option<String>> {
    let first_text = |client: &mut postgres::Client,
                      q: &str|
     -> std::result::Result<Option<String>, postgres::Error> {
        // A savepoint, not `client.transaction()`: that would send BEGIN/COMMIT and end the
        // snapshot-exporting transaction under pg_dump's feet.
        client.batch_execute("SAVEPOINT strongroom_probe")?;
        let r = client.query_opt(&format!("SELECT v::text FROM ({q}) AS s(v) LIMIT 1"), &[]);
        match r {
            Ok(row) => {
                client.batch_execute("RELEASE SAVEPOINT strongroom_probe")?;
                Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
            }
            Err(e) => {
                client.batch_execute("ROLLBACK TO SAVEPOINT strongroom_probe")?;
                Err(e)
            }
        }
    };
    if let Some(q) = query {
        return first_text(client, q).map_err(|e| {
            Error::Config(format!(
                "schema_version_query failed on {}: {}",
                conn.display(),
                conn.explain(&e)
            ))
        });
    }
    for (table, q) in crate::engine::sqlite::MIGRATION_QUERIES {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .map_err(|e| Error::Source(conn.explain(&e)))?
            .get(0);
        if exists {
            if let Ok(Some(v)) = first_text(client, q) {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// Takes a logical snapshot of the database at `url`.
pub fn backup(
    source: &Source,
    url: &str,
    writer: &BackupWriter<'_>,
    progress: &dyn Progress,
) -> Result<Captured> {
    let conn = Conn::parse(url)?;
    let mut client = conn.connect()?;
    let f = facts(&mut client, &conn)?;
    let pg_dump = tools::find(
        "pg_dump",
        f.major(),
        &format!(
            "the server at {} runs PostgreSQL {}",
            conn.server(),
            f.version
        ),
    )?;
    let (db_size, encoding, collate, ctype, owner): (i64, String, String, String, String) = {
        let r = client
            .query_one(
                "SELECT pg_database_size(d.oid), pg_encoding_to_char(d.encoding), d.datcollate::text, \
                 d.datctype::text, pg_get_userbyid(d.datdba)::text FROM pg_database d \
                 WHERE d.datname = current_database()",
                &[],
            )
            .map_err(|e| Error::Source(conn.explain(&e)))?;
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
    };
    // The collation provider (PostgreSQL 15+: ICU; 17+: builtin), read through to_jsonb
    // because its columns differ between versions.
    let provider: Option<(String, Option<String>)> = client
        .query_one(
            "SELECT j ->> 'datlocprovider', COALESCE(j ->> 'datlocale', j ->> 'daticulocale') \
             FROM (SELECT to_jsonb(d) AS j FROM pg_database d \
                   WHERE d.datname = current_database()) s",
            &[],
        )
        .ok()
        .and_then(|r| {
            let p: Option<String> = r.get(0);
            let name = match p.as_deref()? {
                "i" => "icu",
                "b" => "builtin",
                _ => return None,
            };
            Some((name.to_string(), r.get(1)))
        });
    // Outside the dump's snapshot: shared catalogs are not versioned by it anyway.
    let props = match Properties::read(&mut client) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %conn.explain(&e), "database settings and privileges not readable; they will not be in the snapshot");
            None
        }
    };
    tracing::info!(server = %conn.display(), version = %f.version, pg_dump = %pg_dump.path.display(), "dumping");

    // One snapshot for the dump and the counts.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .map_err(|e| Error::Source(conn.explain(&e)))?;
    let snapshot_id: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .map_err(|e| Error::Source(conn.explain(&e)))?
        .get(0);
    // Exact counts come from the dump itself (see `archive::count_data`); what a table's
    // count(*) covers (partitions, inheritance children) is read from the catalogs here.
    let members = match source.row_counts {
        RowCounts::Exact => table_members(&mut client, &conn)?,
        RowCounts::Estimate => None,
    };
    // Otherwise the prober counts with SQL, while pg_dump holds its locks.
    let sql_counts = match (source.row_counts, &members) {
        (RowCounts::Estimate, _) => Some(RowCounts::Estimate),
        (RowCounts::Exact, None) => Some(RowCounts::Exact),
        (RowCounts::Exact, Some(_)) => None,
    };

    let mut cmd = Command::new(&pg_dump.path);
    cmd.args([
        "--format=custom",
        "-Z0",
        "--no-sync",
        "--no-password",
        "--snapshot",
    ])
    .arg(&snapshot_id)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    conn.apply_env(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Source(format!("could not start {}: {e}", pg_dump.path.display())))?;
    let stderr = collect_stderr(&mut child);
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut child = ChildGuard(Some(child));

    progress.begin("dump", None);
    let cancel = client.cancel_token();
    // The prober waits for pg_dump's first bytes: by then pg_dump holds its ACCESS SHARE
    // locks on every table. Reading tables earlier would take some locks first, and a
    // migration queued for ACCESS EXCLUSIVE between the two would wait on us while pg_dump
    // waits on it, a cycle through this process that PostgreSQL cannot see.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let mut started = Some(started_tx);
    // A copy of the stream goes to the row counter (bounded: four 1 MiB buffers).
    let (tee_tx, tee_rx) = crossbeam_channel::bounded::<Vec<u8>>(4);
    let mut tee = members.is_some().then_some(tee_tx);
    // The counter's word, from the archive's TOC, on whether it can count the rows.
    let (verdict_tx, verdict_rx) = std::sync::mpsc::channel::<bool>();
    let (dumped, probed, streamed) = std::thread::scope(|s| {
        let counter = s.spawn(move || {
            let mut r = ChannelReader::new(tee_rx, false);
            let toc = archive::read_toc(&mut r)?; // a dump cut short: no word, no counting
            let countable = archive::countable(&toc);
            let _ = verdict_tx.send(countable.is_ok());
            countable?;
            archive::count_data(&mut r, &toc)
        });
        let prober = s.spawn(|| -> Result<_> {
            let started_rx = started_rx; // moved in: a Receiver is not Sync
            if started_rx.recv().is_err() {
                return Err(Error::Source(
                    "pg_dump wrote nothing; no snapshot was recorded".into(),
                ));
            }
            let verdict_rx = verdict_rx;
            let how = sql_counts.or_else(|| {
                // Only if the counter cannot count: then now, while pg_dump holds its locks.
                (verdict_rx.recv() == Ok(false)).then_some(RowCounts::Exact)
            });
            let counted = match how {
                Some(how) => Some(row_counts(&mut client, &conn, how)?),
                None => None,
            };
            let schema =
                schema_version(&mut client, &conn, source.schema_version_query.as_deref())?;
            Ok((counted, schema))
        });
        let dumped = writer.write_file(DUMP_FILE, Chunking::ContentDefined, progress, |sink| {
            let mut batcher = CdcBatcher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(Error::Source(format!("reading pg_dump's output: {e}")));
                    }
                };
                if let Some(t) = started.take() {
                    let _ = t.send(());
                }
                // A counter that gave up (an archive it does not know) stops taking copies.
                if tee
                    .as_ref()
                    .is_some_and(|t| t.send(buf[..n].to_vec()).is_err())
                {
                    tee = None;
                }
                if let Some(b) = batcher.push(&buf[..n]) {
                    sink.push(b)?;
                }
            }
            if let Some(b) = batcher.finish() {
                sink.push(b)?;
            }
            Ok(())
        });
        drop(started.take()); // a dump that never started releases the prober
        drop(tee.take()); // end of stream for the counter
        if dumped.is_err() {
            // The pipeline failed (storage gone, disk full): stop pg_dump first, which
            // releases its locks, then the prober's query.
            if let Some(c) = child.0.as_mut() {
                let _ = c.kill();
            }
            let _ = cancel.cancel_query(postgres::NoTls);
        }
        let streamed = counter.join().expect("row counter thread");
        (dumped, prober.join().expect("probe thread"), streamed)
    });
    progress.end();
    drop(stdout);
    if let Err(e) = dumped {
        drop(child); // kills pg_dump
        let _ = stderr.join();
        return Err(e);
    }
    // pg_dump's exit status decides before anything else: a truncated stream is not a dump.
    let status = child.wait();
    let err_text = stderr.join().unwrap_or_default();
    let status = status.map_err(|e| Error::Source(format!("waiting for pg_dump: {e}")))?;
    if !status.success() {
        return Err(Error::Source(format!(
            "pg_dump {} while dumping {}: {}; no snapshot was recorded",
            describe_exit(status),
            conn.display(),
            stderr_gist(&err_text)
        )));
    }
    let dump = dumped?;
    let (counted, schema) = probed?;
    let counts = match counted {
        Some(c) => c,
        None => match streamed {
            Ok(rows) => members
                .unwrap_or_default()
                .into_iter()
                .map(|(key, tables)| {
                    let n = tables.iter().map(|t| rows.get(t).copied().unwrap_or(0));
                    (key, n.sum::<u64>())
                })
                .collect(),
            Err(archive::Unsupported(why)) => {
                // The TOC was fine but its data was not (never seen: pg_dump succeeded).
                // Still the dump's snapshot, though pg_dump's locks are gone.
                tracing::warn!(%why, "rows not countable from the dump; counting with SQL");
                row_counts(&mut client, &conn, RowCounts::Exact)?
            }
        },
    };
    client
        .batch_execute("COMMIT")
        .map_err(|e| Error::Source(conn.explain(&e)))?;

    let (globals_file, globals_note) =
        dump_globals(&pg_dump, &conn, f.superuser, writer, progress)?;
    let mut files = vec![dump];
    files.extend(globals_file);

    let mut extra = BTreeMap::new();
    extra.insert("pg_dump_version".into(), pg_dump.version.clone().into());
    extra.insert("database".into(), conn.dbname().into());
    extra.insert("database_size".into(), (db_size as u64).into());
    extra.insert("encoding".into(), encoding.into());
    extra.insert("lc_collate".into(), collate.into());
    extra.insert("lc_ctype".into(), ctype.into());
    extra.insert("owner".into(), owner.into());
    if let Some((p, l)) = provider {
        extra.insert("locale_provider".into(), p.into());
        if let Some(l) = l {
            extra.insert("provider_locale".into(), l.into());
        }
    }
    extra.insert("globals".into(), globals_note.into());
    if let Some(p) = props.filter(|p| !p.is_default()) {
        extra.insert(
            PROPERTIES_KEY.into(),
            serde_json::to_value(p).expect("properties serialize"),
        );
    }
    extra.insert(
        "row_counts_estimated".into(),
        (source.row_counts == RowCounts::Estimate).into(),
    );
    Ok(Captured {
        kind: "logical".into(),
        files,
        metadata: Metadata {
            row_counts: counts,
            schema_version: schema,
            server_version: f.version,
            extra,
        },
    })
}

/// Stores `pg_dumpall --globals-only`; a failure here is reported in the metadata, not fatal:
/// the database dump is what matters, and managed services often hide the catalogs.
fn dump_globals(
    pg_dump: &Tool,
    conn: &Conn,
    superuser: bool,
    writer: &BackupWriter<'_>,
    progress: &dyn Progress,
) -> Result<(Option<FileEntry>, String)> {
    let pg_dumpall = match tools::sibling(pg_dump, "pg_dumpall") {
        Ok(t) => t,
        Err(e) => return Ok((None, format!("missing: {e}"))),
    };
    let mut cmd = Command::new(&pg_dumpall.path);
    // As a connection string: a database name holding '=' would be read as one anyway.
    cmd.args(["--globals-only", "--no-sync", "--no-password", "-l"])
        .arg(format!("dbname={}", conninfo_value(conn.dbname())))
        .stdin(Stdio::null());
    if !superuser {
        cmd.arg("--no-role-passwords");
    }
    conn.apply_env(&mut cmd);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return Ok((None, format!("missing: could not start pg_dumpall: {e}"))),
    };
    if !out.status.success() {
        let why = stderr_gist(&out.stderr);
        tracing::warn!(%why, "pg_dumpall --globals-only failed; roles are not in the snapshot");
        return Ok((None, format!("missing: {why}")));
    }
    let file = writer.write_file(GLOBALS_FILE, Chunking::ContentDefined, progress, |sink| {
        let mut b = CdcBatcher::new();
        if let Some(x) = b.push(&out.stdout) {
            sink.push(x)?;
        }
        if let Some(x) = b.finish() {
            sink.push(x)?;
        }
        Ok(())
    })?;
    let note = if superuser {
        "complete"
    } else {
        "without passwords"
    };
    Ok((Some(file), note.into()))
}

fn file<'s>(snap: &'s Snapshot, name: &str) -> Option<&'s FileEntry> {
    snap.files.iter().find(|f| f.name == name)
}

fn extra_str<'s>(snap: &'s Snapshot, key: &str) -> Option<&'s str> {
    snap.metadata.extra.get(key).and_then(|v| v.as_str())
}

/// Connects to a maintenance database on the server of `target` (`postgres`, else
/// `template1`): where databases are created, renamed and dropped.
fn admin(target: &Conn) -> Result<(Conn, postgres::Client)> {
    let mut last = None;
    // Never the target itself: a database cannot be renamed by a session connected to it.
    for db in ["postgres", "template1"]
        .into_iter()
        .filter(|d| *d != target.dbname())
    {
        let c = target.with_dbname(db);
        match c.connect() {
            Ok(client) => return Ok((c, client)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried at least one"))
}

fn database_exists(client: &mut postgres::Client, admin: &Conn, name: &str) -> Result<bool> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(|e| Error::Target(admin.explain(&e)))?
        .is_some())
}

/// Relations, functions, types, schemas and large objects of the user's: what makes a
/// database non-empty.
fn user_objects(conn: &Conn) -> Result<i64> {
    let mut c = conn.connect()?;
    Ok(c.query_one(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)') \
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) \
              + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname !~ '^pg_(toast|temp)' AND t.typrelid = 0 AND t.typcategory <> 'A') \
              + (SELECT count(*) FROM pg_namespace n WHERE n.nspname NOT IN \
                 ('public', 'pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)') \
              + (SELECT count(*) FROM pg_largeobject_metadata)",
        &[],
    )
    .map_err(|e| Error::Target(conn.explain(&e)))?
    .get(0))
}

fn sessions_on(client: &mut postgres::Client, admin: &Conn, name: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT coalesce(nullif(application_name, ''), usename::text, 'a session') FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .map_err(|e| Error::Target(admin.explain(&e)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Drops a database, ending sessions on it first (temporary databases only).
fn drop_database(admin: &Conn, name: &str) {
    let Ok(mut c) = admin.connect() else {
        eprintln!(
            "strongroom: could not connect to {} to drop temporary database {name}; drop it by hand",
            admin.server()
        );
        return;
    };
    let v: i32 = c
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map(|r| r.get(0))
        .unwrap_or(0);
    let sql = if v >= 130000 {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name))
    } else {
        let _ = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        );
        format!("DROP DATABASE IF EXISTS {}", ident(name))
    };
    if let Err(e) = c.batch_execute(&sql) {
        eprintln!(
            "strongroom: could not drop temporary database {name} on {}: {}; drop it by hand",
            admin.server(),
            admin.explain(&e)
        );
    }
}

/// Drops roles a test restore created.
fn drop_roles(admin: &Conn, roles: &[String]) {
    let dropped = admin.connect().and_then(|mut c| {
        for r in roles {
            c.batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(r)))
                .map_err(|e| Error::Target(admin.explain(&e)))?;
        }
        Ok(())
    });
    if let Err(e) = dropped {
        eprintln!(
            "strongroom: could not drop the roles {} created for a test restore on {}: {e}; drop them by hand",
            roles.join(", "),
            admin.server()
        );
    }
}

/// A temporary file in `dir`, removed when both returned values drop, and on interrupts
/// (which skip destructors).
fn temp_file(
    dir: &std::path::Path,
    prefix: &str,
    what: &str,
) -> Result<(tempfile::NamedTempFile, scratch::Guard)> {
    let f = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".dump")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    let path = f.path().to_path_buf();
    let guard = scratch::guard(format!("{what} {}", path.display()), move || {
        let _ = std::fs::remove_file(&path);
    });
    Ok((f, guard))
}

/// A fresh database name beside `base`, within PostgreSQL's 63-byte limit.
fn side_name(base: &str, tag: &str) -> String {
    let suffix = format!("_{tag}_{}", hex::encode(crate::crypto::random_bytes::<3>()));
    let mut b = base.to_string();
    while b.len() + suffix.len() > 63 {
        b.pop();
    }
    format!("{b}{suffix}")
}

/// Creates an empty database for a restore, with the source's encoding and locale when the
/// server has them; registers it for removal on failure or interrupt.
fn create_scratch_db(
    client: &mut postgres::Client,
    admin: &Conn,
    snap: &Snapshot,
    name: &str,
) -> Result<scratch::Guard> {
    // Held against signals: a CREATE cut short by exit would still complete on the server,
    // after the cleanup had found nothing to drop.
    scratch::critical(|| create_db_now(client, admin, snap, name))
}

fn create_db_now(
    client: &mut postgres::Client,
    admin: &Conn,
    snap: &Snapshot,
    name: &str,
) -> Result<scratch::Guard> {
    let enc = extra_str(snap, "encoding").unwrap_or("UTF8");
    let mut sql = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {}",
        ident(name),
        literal(enc)
    );
    let mut with_locale = match (extra_str(snap, "lc_collate"), extra_str(snap, "lc_ctype")) {
        (Some(c), Some(t)) => format!("{sql} LC_COLLATE {} LC_CTYPE {}", literal(c), literal(t)),
        _ => sql.clone(),
    };
    match (
        extra_str(snap, "locale_provider"),
        extra_str(snap, "provider_locale"),
    ) {
        (Some("icu"), Some(l)) => {
            with_locale.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(l)))
        }
        (Some("builtin"), Some(l)) => with_locale.push_str(&format!(
            " LOCALE_PROVIDER builtin BUILTIN_LOCALE {}",
            literal(l)
        )),
        _ => {}
    }
    if let Err(e) = client.batch_execute(&with_locale) {
        let msg = admin.explain(&e);
        if with_locale == sql
            || !(msg.contains("locale") || msg.contains("collation") || msg.contains("encoding"))
        {
            return Err(Error::Target(format!(
                "could not create database {name}: {msg}"
            )));
        }
        tracing::warn!(%msg, "the source's locale is not available on the target; using the server default");
        sql.push(' ');
        client.batch_execute(sql.trim_end()).map_err(|e| {
            Error::Target(format!(
                "could not create database {name}: {}",
                admin.explain(&e)
            ))
        })?;
    }
    let (a, n) = (admin.clone(), name.to_string());
    Ok(scratch::guard(
        format!("temporary database {name} on {}", admin.server()),
        move || drop_database(&a, &n),
    ))
}

/// Creates the roles of the snapshot's globals that the server lacks (superusers only).
/// `bare`: names only (no login, password or memberships), for a test restore's roles.
fn restore_roles(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    client: &mut postgres::Client,
    admin: &Conn,
    bare: bool,
) -> Result<Vec<String>> {
    let Some(g) = file(snap, GLOBALS_FILE) else {
        return Ok(Vec::new());
    };
    let mut sql = Vec::new();
    reader::stream_file(repo, index, snap, g, &mut sql, &crate::progress::Silent)?;
    let created = create_missing_roles(client, admin, &String::from_utf8_lossy(&sql), bare)?;
    if !created.is_empty() {
        tracing::info!(roles = ?created, server = %admin.server(), "created roles from the snapshot's globals");
    }
    Ok(created)
}

/// The SQL identifier at the start of `s` (bare, or quoted with `""` for a quote) and what
/// follows it.
fn leading_ident(s: &str) -> Option<(String, &str)> {
    let Some(q) = s.strip_prefix('"') else {
        let end = s.find([' ', ';', ',']).unwrap_or(s.len());
        return (end > 0).then(|| (s[..end].to_string(), &s[end..]));
    };
    let mut name = String::new();
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if chars.peek().map(|&(_, n)| n) != Some('"') {
                return Some((name, &q[i + 1..]));
            }
            chars.next();
        }
        name.push(c);
    }
    None
}

/// Creates the roles the snapshot's globals define and the server lacks (superusers only):
/// existing roles are never altered. Returns the roles created.
fn create_missing_roles(
    client: &mut postgres::Client,
    admin: &Conn,
    globals: &str,
    bare: bool,
) -> Result<Vec<String>> {
    let existing: std::collections::HashSet<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .map_err(|e| Error::Target(admin.explain(&e)))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let role_of = |stmt: &str, prefix: &str| Some(leading_ident(stmt.strip_prefix(prefix)?)?.0);
    // `GRANT role TO member …`: the member, whose memberships the statement changes.
    let member_of = |stmt: &str| {
        let (_, rest) = leading_ident(stmt.strip_prefix("GRANT ")?)?;
        Some(leading_ident(rest.strip_prefix(" TO ")?)?.0)
    };
    let mut created = Vec::new();
    for line in globals.lines() {
        let stmt = line.trim();
        if let Some(r) = role_of(stmt, "CREATE ROLE ") {
            if !existing.contains(&r) {
                client.batch_execute(stmt).map_err(|e| {
                    Error::Target(format!("creating role {r}: {}", admin.explain(&e)))
                })?;
                created.push(r);
            }
        } else if bare {
            continue;
        } else if let Some(r) = role_of(stmt, "ALTER ROLE ") {
            if created.contains(&r) {
                client.batch_execute(stmt).map_err(|e| {
                    Error::Target(format!("configuring role {r}: {}", admin.explain(&e)))
                })?;
            }
        } else if member_of(stmt).is_some_and(|m| created.contains(&m)) {
            // Memberships of new roles only; a grantor that does not exist here is not fatal.
            if let Err(e) = client.batch_execute(stmt) {
                tracing::warn!(statement = stmt, error = %admin.explain(&e), "role membership not restored");
            }
        }
    }
    Ok(created)
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

/// Restores the dump into the existing, empty database `db` with `pg_restore`. Returns the
/// row-count check when it could run alongside the restore's last phase.
#[allow(clippy::too_many_arguments)]
fn pg_restore_into(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    db: &Conn,
    superuser: bool,
    jobs: usize,
    spool_dir: &std::path::Path,
    progress: &dyn Progress,
) -> Result<Option<CheckResult>> {
    let dump = file(snap, DUMP_FILE).ok_or_else(|| {
        Error::corrupt(
            Snapshot::object_key(&snap.id),
            "no database dump in the snapshot",
        )
    })?;
    let dump_major = extra_str(snap, "pg_dump_version")
        .and_then(tools::parse_version)
        .map(|(m, _)| m)
        .unwrap_or(0);
    let pg_restore = tools::find(
        "pg_restore",
        dump_major,
        &format!(
            "snapshot {} was written by pg_dump {dump_major}",
            snap.short_id()
        ),
    )?;
    let mut cmd = Command::new(&pg_restore.path);
    cmd.arg("--exit-on-error")
        .arg("--no-password")
        .arg("-d")
        .arg(format!("dbname={}", conninfo_value(db.dbname())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !superuser {
        // Managed services: objects belong to the restoring role, as they did to the owner.
        cmd.arg("--no-owner");
    }
    db.apply_env(&mut cmd);
    let jobs = jobs.max(1);
    // The COPY connections speak UTF-8 (the SQL client insists), so the fast path takes only
    // dumps whose data is UTF-8; others keep their bytes through pg_restore.
    let utf8 = extra_str(snap, "encoding") == Some("UTF8");
    if jobs > 1 && utf8 && std::env::var_os("STRONGROOM_PG_PLAIN_RESTORE").is_none() {
        let t = std::time::Instant::now();
        if let Some(counts) = parallel_copy_restore(
            repo,
            index,
            snap,
            dump,
            db,
            &pg_restore,
            superuser,
            jobs,
            spool_dir,
            progress,
        )? {
            tracing::info!(
                seconds = t.elapsed().as_secs_f64(),
                jobs,
                "restored with parallel COPY"
            );
            return Ok(Some(counts));
        }
    }
    progress.begin("restore", Some(dump.size));
    let result = if jobs > 1 {
        // Parallel restore needs a seekable archive: spool it, then restore from the file.
        let (spool, _removed) = temp_file(spool_dir, ".strongroom-restore-", "spool file")?;
        let t = std::time::Instant::now();
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, spool.as_file());
            reader::stream_file(repo, index, snap, dump, &mut w, progress)?;
            w.flush()
                .map_err(|e| Error::io("writing the spool file", spool.path(), e))?;
        }
        progress.end();
        tracing::info!(seconds = t.elapsed().as_secs_f64(), "dump spooled");
        progress.begin("pg_restore", None);
        cmd.arg("-j").arg(jobs.to_string()).arg(spool.path());
        cmd.stdin(Stdio::null());
        let t = std::time::Instant::now();
        let out = cmd.output().map_err(|e| {
            Error::Target(format!(
                "could not start {}: {e}",
                pg_restore.path.display()
            ))
        })?;
        tracing::info!(
            seconds = t.elapsed().as_secs_f64(),
            jobs,
            "pg_restore finished"
        );
        (out.status, out.stderr)
    } else {
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::Target(format!(
                "could not start {}: {e}",
                pg_restore.path.display()
            ))
        })?;
        let stderr = collect_stderr(&mut child);
        let mut stdin = child.stdin.take().expect("stdin piped");
        let mut guard = ChildGuard(Some(child));
        let streamed = reader::stream_file(repo, index, snap, dump, &mut stdin, progress);
        drop(stdin);
        let status = guard
            .wait()
            .map_err(|e| Error::Target(format!("waiting for pg_restore: {e}")))?;
        let err = stderr.join().unwrap_or_default();
        // When pg_restore failed and so stopped reading, its message is the cause; when the
        // repository failed to give the data, that is.
        if let Err(e) = streamed {
            if status.success() || !reader::is_output_error(&e) {
                return Err(e);
            }
        }
        (status, err)
    };
    progress.end();
    let (status, err) = result;
    if !status.success() {
        return Err(Error::Target(format!(
            "pg_restore {} restoring snapshot {}: {}",
            describe_exit(status),
            snap.short_id(),
            stderr_gist(&err)
        )));
    }
    Ok(None)
}

/// Runs configured checks in a database.
fn run_checks(client: &mut postgres::Client, checks: &[CheckConfig]) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|chk| {
            let r = client.query_opt(
                &format!(
                    "SELECT v::text FROM ({}) AS s(v) LIMIT 1",
                    chk.sql.trim_end_matches(';')
                ),
                &[],
            );
            let (ok, detail) = match r {
                Ok(Some(row)) => {
                    let v: Option<String> = row.get(0);
                    let ok = v.as_deref().is_some_and(|t| {
                        !matches!(
                            t.trim().to_ascii_lowercase().as_str(),
                            "" | "0" | "f" | "false" | "no"
                        )
                    });
                    (
                        ok,
                        format!("returned {}", v.unwrap_or_else(|| "NULL".into())),
                    )
                }
                Ok(None) => (false, "returned no row".into()),
                Err(e) => (
                    false,
                    format!(
                        "failed: {}",
                        e.as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or_else(|| e.to_string())
                    ),
                ),
            };
            CheckResult {
                name: chk.name.clone(),
                ok,
                detail,
            }
        })
        .collect()
}

fn estimated(snap: &Snapshot) -> bool {
    snap.metadata
        .extra
        .get("row_counts_estimated")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// Compares the restored database's row counts with the snapshot's.
fn count_check(db: &Conn, snap: &Snapshot) -> Result<CheckResult> {
    if estimated(snap) {
        return Ok(CheckResult {
            name: "row counts".into(),
            ok: true,
            detail: "the snapshot holds estimates (row_counts = \"estimate\"); not compared".into(),
        });
    }
    let mut c = db.connect()?;
    let found = row_counts(&mut c, db, RowCounts::Exact)?;
    Ok(crate::engine::compare_row_counts(
        &snap.metadata.row_counts,
        &found,
    ))
}

/// Restores a logical snapshot into the database at `url` (see the module docs for the order).
pub fn restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    url: &str,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let target = Conn::parse(url)?;
    let name = target.dbname().to_string();
    let (admin_conn, mut client) = admin(&target).map_err(|e| Error::Target(e.to_string()))?;
    let f = facts(&mut client, &admin_conn).map_err(|e| Error::Target(e.to_string()))?;
    if !f.superuser && !f.createdb {
        return Err(Error::Target(format!(
            "role {:?} may not create databases on {}; a restore builds the new database beside \
             the target, so grant it CREATEDB or restore as a role that has it",
            target.user(),
            target.server()
        )));
    }
    let exists = database_exists(&mut client, &admin_conn, &name)?;
    if exists {
        let n = user_objects(&target)?;
        if n > 0 && !opts.force {
            return Err(Error::Target(format!(
                "database {name} on {} is not empty ({n} tables, views, sequences or functions); \
                 pass --force to replace it (the old database is kept aside until the restore has \
                 succeeded)",
                target.server()
            )));
        }
    }
    let t = std::time::Instant::now();
    let tmp = side_name(&name, "restoring");
    let guard = create_scratch_db(&mut client, &admin_conn, snap, &tmp)?;
    if f.superuser {
        restore_roles(repo, index, snap, &mut client, &admin_conn, false)?;
    }
    let db = target.with_dbname(&tmp);
    let precounted = pg_restore_into(
        repo,
        index,
        snap,
        &db,
        f.superuser,
        opts.jobs.unwrap_or_else(default_jobs),
        &std::env::temp_dir(),
        progress,
    )?;
    if f.superuser {
        if let Some(owner) = extra_str(snap, "owner") {
            let _ = client.batch_execute(&format!(
                "ALTER DATABASE {} OWNER TO {}",
                ident(&tmp),
                ident(owner)
            ));
        }
    }
    let t_count = std::time::Instant::now();
    let counts = match precounted {
        Some(c) => c,
        None => count_check(&db, snap)?,
    };
    tracing::info!(
        seconds = t_count.elapsed().as_secs_f64(),
        "row counts checked"
    );
    if !counts.ok {
        return Err(Error::Failed(format!(
            "the restored copy of snapshot {} does not match its row counts ({}); the target was not touched",
            snap.short_id(),
            counts.detail
        )));
    }
    tracing::info!(
        seconds = t.elapsed().as_secs_f64(),
        "restored beside the target"
    );

    if let Some(p) = snap.metadata.extra.get(PROPERTIES_KEY) {
        let props: Properties = serde_json::from_value(p.clone()).map_err(|e| {
            Error::corrupt(
                format!("snapshot {}", snap.short_id()),
                format!("its metadata {PROPERTIES_KEY} is unreadable: {e}"),
            )
        })?;
        for (stmt, err) in props.apply(&mut client, &admin_conn, &tmp) {
            tracing::warn!(statement = %stmt, error = %err, "database property not restored");
        }
    }

    // The swap: hooks around two renames.
    let hook_env = [
        ("STRONGROOM_SNAPSHOT", snap.id.clone()),
        ("STRONGROOM_SOURCE", snap.source.clone()),
        ("STRONGROOM_TARGET", target.display()),
    ];
    // A fresh connection: the first one has sat idle through the whole restore, and an
    // idle_session_timeout or a proxy may have closed it.
    drop(client);
    let (admin_conn, mut client) = admin(&target).map_err(|e| {
        Error::Target(format!(
            "{e}; the restored copy was dropped and the target was not touched"
        ))
    })?;
    if let Some(h) = &opts.before_restore {
        crate::engine::run_hook("before_restore", h, &hook_env)?;
    }
    // Without --force the target was empty when the restore began; it must still be.
    let must_be_empty = (exists && !opts.force).then_some(&target);
    // The renames and the disarming happen as one step for signals: an interrupt between
    // them would drop the restored database after the old one had moved aside.
    let swapped = scratch::critical(|| {
        let r = swap(&mut client, &admin_conn, &tmp, &name, exists, must_be_empty);
        if r.is_ok() {
            guard.disarm();
        } else {
            drop(guard);
        }
        r
    });
    let after = match &opts.after_restore {
        Some(h) => crate::engine::run_hook("after_restore", h, &hook_env),
        None => Ok(()),
    };
    let old = swapped?;
    let mut old_kept_at = old.clone();
    if let (Some(o), Err(e)) = (&old, &after) {
        // The restored data is in place but the check after it failed: keep the old data.
        return Err(Error::Failed(format!(
            "the restore is in place in {name}, but {e}; the old database is kept as {o}"
        )));
    }
    if let Some(o) = &old {
        if !opts.keep_old {
            match client.batch_execute(&format!("DROP DATABASE {}", ident(o))) {
                Ok(()) => old_kept_at = None,
                Err(e) => {
                    tracing::warn!(database = %o, error = %admin_conn.explain(&e), "could not drop the old database; it is kept")
                }
            }
        }
    }
    after.map_err(|e| Error::Failed(format!("the restore is in place in {name}, but {e}")))?;
    Ok(RestoreOutcome {
        target: target.display(),
        bytes: file(snap, DUMP_FILE).map(|f| f.size).unwrap_or(0),
        old_kept_at: old_kept_at.map(|o| format!("database {o}")),
        moved_aside: Vec::new(),
    })
}

/// Renames the old database aside (when there is one) and the restored one into place;
/// puts the old one back if the second rename fails. Returns the old database's new name.
/// `must_be_empty`: the target, when only an empty one may be replaced (no `--force`).
fn swap(
    client: &mut postgres::Client,
    admin: &Conn,
    tmp: &str,
    name: &str,
    exists: bool,
    must_be_empty: Option<&Conn>,
) -> Result<Option<String>> {
    let busy = |client: &mut postgres::Client| -> Result<()> {
        // A backend outlives its client's disconnect by a moment (our own emptiness check
        // just closed one): look again for up to a second before calling the target busy.
        let mut looks = 0;
        let s = loop {
            let s = sessions_on(client, admin, name)?;
            if s.is_empty() {
                return Ok(());
            }
            looks += 1;
            if looks > 10 {
                break s;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        Err(Error::Target(format!(
            "database {name} on {} is in use by {} session(s) ({}); stop the application (a \
             before_restore hook can) and retry; the target was not touched",
            admin.server(),
            s.len(),
            s.join(", ")
        )))
    };
    let mut old = None;
    if exists {
        if let Some(target) = must_be_empty {
            let n = user_objects(target)?;
            if n > 0 {
                return Err(Error::Target(format!(
                    "database {name} on {} gained {n} objects during the restore; pass --force \
                     to replace it; the target was not touched",
                    admin.server()
                )));
            }
        }
        busy(client)?;
        let aside = side_name(name, "old");
        client
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(name),
                ident(&aside)
            ))
            .map_err(|e| {
                Error::Target(format!(
                    "could not move database {name} aside: {}; the target was not touched",
                    admin.explain(&e)
                ))
            })?;
        old = Some(aside);
    }
    if let Err(e) = client.batch_execute(&format!(
        "ALTER DATABASE {} RENAME TO {}",
        ident(tmp),
        ident(name)
    )) {
        let state = match &old {
            None => "nothing was replaced".to_string(),
            Some(a) => match client.batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(a),
                ident(name)
            )) {
                Ok(()) => "the old database was put back".to_string(),
                Err(back) => format!(
                    "putting the old database back failed too ({}); it is database {a}: rename \
                     it to {name} by hand",
                    admin.explain(&back)
                ),
            },
        };
        return Err(Error::Target(format!(
            "could not move the restored database into place as {name}: {}; {state}",
            admin.explain(&e)
        )));
    }
    Ok(old)
}

/// Restores a logical snapshot into a temporary database on the server at `url`, checks it,
/// and drops it whatever happens.
pub fn test_restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    url: &str,
    scratch_place: &Scratch,
    checks: &[CheckConfig],
    progress: &dyn Progress,
) -> Result<Vec<CheckResult>> {
    let server = Conn::parse(url)?;
    let (admin_conn, mut client) = admin(&server)?;
    let f = facts(&mut client, &admin_conn)?;
    if !f.superuser && !f.createdb {
        return Err(Error::Failed(format!(
            "role {:?} may not create databases on {}, which a test restore needs; grant it \
             CREATEDB or set [verify] scratch_postgres",
            server.user(),
            server.server()
        )));
    }
    let name = side_name(
        "strongroom_verify",
        &snap.short_id()[..8.min(snap.short_id().len())],
    );
    let mut results = Vec::new();
    // A separate scratch server lacks the source's roles, which the dump's OWNER TO and
    // GRANTs name: they are created bare (no login, no password) and dropped afterwards,
    // after the database (guards drop in reverse order).
    let _roles = if f.superuser {
        // Held against signals: a role created but not yet registered would stay behind.
        let made = scratch::critical(|| {
            let created = restore_roles(repo, index, snap, &mut client, &admin_conn, true)?;
            let a = admin_conn.clone();
            Ok::<_, Error>((!created.is_empty()).then(|| {
                scratch::guard(
                    format!("roles {} on {}", created.join(", "), admin_conn.server()),
                    move || drop_roles(&a, &created),
                )
            }))
        });
        match made {
            Ok(g) => g,
            Err(e) if e.is_damage() => return Err(e),
            Err(e) => {
                results.push(CheckResult {
                    name: "roles".into(),
                    ok: false,
                    detail: e.to_string(),
                });
                return Ok(results);
            }
        }
    } else {
        None
    };
    let _guard = create_scratch_db(&mut client, &admin_conn, snap, &name)?;
    let db = server.with_dbname(&name);
    let restored = pg_restore_into(
        repo,
        index,
        snap,
        &db,
        f.superuser,
        default_jobs(),
        &scratch_place.dir,
        progress,
    );
    let precounted = match restored {
        Ok(c) => {
            results.push(CheckResult {
                name: "pg_restore".into(),
                ok: true,
                detail: format!(
                    "restored into temporary database {name} on {}",
                    server.server()
                ),
            });
            c
        }
        Err(e) if e.is_damage() => return Err(e),
        Err(e) => {
            results.push(CheckResult {
                name: "pg_restore".into(),
                ok: false,
                detail: e.to_string(),
            });
            return Ok(results);
        }
    };
    results.push(match precounted {
        Some(c) => c,
        None => count_check(&db, snap)?,
    });
    let mut c = db.connect()?;
    results.extend(run_checks(&mut c, checks));
    Ok(results)
}

/// Sends what is written as owned buffers down a channel (the writer half of a pipe between
/// the repository reader and the archive parser).
struct ChannelWriter(crossbeam_channel::Sender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // At most 1 MiB per message: the channel's capacity then bounds its memory.
        let n = buf.len().min(1 << 20);
        self.0
            .send(buf[..n].to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "restore stopped"))?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads what a [`ChannelWriter`] sent; optionally records it (the archive's TOC prefix).
struct ChannelReader {
    rx: crossbeam_channel::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    record: Option<Vec<u8>>,
}

impl ChannelReader {
    /// Reads from `rx`; `record`: keep a copy of everything read (in `record`).
    fn new(rx: crossbeam_channel::Receiver<Vec<u8>>, record: bool) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            record: record.then(Vec::new),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        if let Some(r) = &mut self.record {
            r.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// Table data handed to the COPY connections in pieces of about this size, cut at row ends.
const COPY_PIECE: usize = 4 << 20;

/// A parallel-restore worker: one connection, `COPY` of each piece it receives.
fn load_pieces(
    db: &Conn,
    setup: &str,
    pieces: crossbeam_channel::Receiver<(std::sync::Arc<str>, Vec<u8>)>,
) -> Result<()> {
    let mut c = db.connect()?;
    c.batch_execute(setup)
        .map_err(|e| Error::Target(db.explain(&e)))?;
    for (stmt, piece) in pieces {
        let mut w = c
            .copy_in(&*stmt)
            .map_err(|e| Error::Target(db.explain(&e)))?;
        w.write_all(&piece)
            .map_err(|e| Error::Target(format!("loading table data into {}: {e}", db.dbname())))?;
        w.finish()
            .map_err(|e| Error::Target(format!("loading table data: {}", db.explain(&e))))?;
    }
    Ok(())
}

/// The fast restore: schema and post-data through `pg_restore` from a TOC-only file, table
/// data streamed from the repository through `jobs` parallel `COPY` connections (a big
/// table is split across them). Returns `Ok(false)`, having changed nothing, when the
/// archive has something this path does not handle (large objects, compression, an unknown
/// version); the caller then uses plain `pg_restore`.
#[allow(clippy::too_many_arguments)]
fn parallel_copy_restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    dump: &FileEntry,
    db: &Conn,
    pg_restore: &Tool,
    superuser: bool,
    jobs: usize,
    spool_dir: &std::path::Path,
    progress: &dyn Progress,
) -> Result<Option<CheckResult>> {
    use archive::{BLK_DATA, SECTION_DATA};
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(8);
    let mut reader = ChannelReader::new(rx, true);
    progress.begin("restore", Some(dump.size));
    let outcome = std::thread::scope(|s| -> Result<Option<CheckResult>> {
        let producer = s.spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
            let r = reader::stream_file(repo, index, snap, dump, &mut w, progress);
            let flushed = w.flush();
            match r {
                Ok(()) => flushed.map_err(|e| reader::output_error(&dump.name, e)),
                Err(e) => Err(e),
            }
        });
        let result = (|| -> Result<Option<CheckResult>> {
            let toc = match archive::read_toc(&mut reader) {
                Ok(t) => t,
                Err(archive::Unsupported(why)) => {
                    tracing::info!(%why, "plain pg_restore");
                    return Ok(None);
                }
            };
            let handled = |e: &archive::Entry| {
                e.section != SECTION_DATA
                    || (e.desc == "TABLE DATA" && !e.copy_stmt.is_empty())
                    || (e.desc == "SEQUENCE SET" && !e.had_dumper)
            };
            if toc.compressed || !toc.entries.iter().all(handled) {
                tracing::info!("archive has data this path does not load; plain pg_restore");
                return Ok(None);
            }
            let toc_bytes = reader.record.take().unwrap_or_default();
            let (mut tocfile, _removed) = temp_file(spool_dir, ".strongroom-toc-", "TOC file")?;
            tocfile
                .write_all(&toc_bytes)
                .and_then(|_| tocfile.flush())
                .map_err(|e| Error::io("writing the TOC file", tocfile.path(), e))?;
            let run = |section: &str, jobs: usize| -> Result<()> {
                let mut cmd = Command::new(&pg_restore.path);
                cmd.arg("--exit-on-error")
                    .arg("--no-password")
                    .arg(format!("--section={section}"))
                    .arg("-j")
                    .arg(jobs.to_string())
                    .arg("-d")
                    .arg(format!("dbname={}", conninfo_value(db.dbname())))
                    .arg(tocfile.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                if !superuser {
                    cmd.arg("--no-owner");
                }
                db.apply_env(&mut cmd);
                let out = cmd.output().map_err(|e| {
                    Error::Target(format!(
                        "could not start {}: {e}",
                        pg_restore.path.display()
                    ))
                })?;
                if !out.status.success() {
                    return Err(Error::Target(format!(
                        "pg_restore ({section}) {} restoring snapshot {}: {}",
                        describe_exit(out.status),
                        snap.short_id(),
                        stderr_gist(&out.stderr)
                    )));
                }
                Ok(())
            };
            let t = std::time::Instant::now();
            run("pre-data", 1)?;
            tracing::info!(seconds = t.elapsed().as_secs_f64(), "schema restored");

            // Session settings pg_restore would apply, from the archive's special entries.
            let mut setup = String::from(
                "SET synchronous_commit = off; SET row_security = off; SET statement_timeout = 0;",
            );
            for e in &toc.entries {
                if e.desc == "ENCODING" || e.desc == "STDSTRINGS" {
                    setup.push_str(&e.defn);
                }
            }
            let by_id: std::collections::HashMap<i64, &archive::Entry> =
                toc.entries.iter().map(|e| (e.dump_id, e)).collect();
            let t = std::time::Instant::now();
            let (ptx, prx) = crossbeam_channel::bounded::<(std::sync::Arc<str>, Vec<u8>)>(jobs * 2);
            // One failed worker stops the feeding: the others need not load the rest first.
            let failed = std::sync::atomic::AtomicBool::new(false);
            let loaded = std::thread::scope(|s2| -> Result<()> {
                let workers: Vec<_> = (0..jobs)
                    .map(|_| {
                        let (prx, setup, failed) = (prx.clone(), setup.clone(), &failed);
                        s2.spawn(move || -> Result<()> {
                            let r = load_pieces(db, &setup, prx);
                            if r.is_err() {
                                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            r
                        })
                    })
                    .collect();
                drop(prx);
                let stop = || failed.load(std::sync::atomic::Ordering::SeqCst);
                let fed = (|| -> Result<()> {
                    let corrupt = |what: &str| {
                        Error::corrupt(
                            Snapshot::object_key(&snap.id),
                            format!("the dump's data section is malformed: {what}"),
                        )
                    };
                    let isz = toc.int_size;
                    loop {
                        let mut kind = [0u8; 1];
                        match reader.read(&mut kind) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e) => return Err(corrupt(&e.to_string())),
                        }
                        if kind[0] != BLK_DATA {
                            return Err(corrupt(&format!("block type {}", kind[0])));
                        }
                        let id =
                            archive::int(&mut reader, isz).map_err(|e| corrupt(&e.to_string()))?;
                        let entry = by_id
                            .get(&id)
                            .ok_or_else(|| corrupt("data for an unknown entry"))?;
                        let stmt: std::sync::Arc<str> =
                            entry.copy_stmt.trim_end().trim_end_matches(';').into();
                        let mut buf: Vec<u8> = Vec::with_capacity(COPY_PIECE + (1 << 20));
                        loop {
                            let len = archive::int(&mut reader, isz)
                                .map_err(|e| corrupt(&e.to_string()))?;
                            if len == 0 {
                                break;
                            }
                            if !(0..=1 << 30).contains(&len) {
                                return Err(corrupt("chunk length out of range"));
                            }
                            let start = buf.len();
                            buf.resize(start + len as usize, 0);
                            reader
                                .read_exact(&mut buf[start..])
                                .map_err(|e| corrupt(&e.to_string()))?;
                            if buf.len() >= COPY_PIECE {
                                if let Some(cut) = buf.iter().rposition(|&b| b == b'\n') {
                                    let rest = buf.split_off(cut + 1);
                                    let piece = std::mem::replace(&mut buf, rest);
                                    if stop() || ptx.send((stmt.clone(), piece)).is_err() {
                                        return Ok(()); // a worker failed; its error wins
                                    }
                                }
                            }
                        }
                        if !buf.is_empty() && ptx.send((stmt, buf)).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(())
                })();
                drop(ptx);
                let mut first: Option<Error> = None;
                for w in workers {
                    if let Err(e) = w.join().expect("COPY worker") {
                        first.get_or_insert(e);
                    }
                }
                fed?;
                first.map_or(Ok(()), Err)
            });
            loaded?;
            tracing::info!(
                seconds = t.elapsed().as_secs_f64(),
                jobs,
                "table data loaded"
            );
            let mut c = db.connect()?;
            for e in toc.entries.iter().filter(|e| e.desc == "SEQUENCE SET") {
                c.batch_execute(&e.defn).map_err(|err| {
                    Error::Target(format!("setting sequence {}: {}", e.tag, db.explain(&err)))
                })?;
            }
            let t = std::time::Instant::now();
            // Rows are final once the data is in: count them while indexes are built
            // (CREATE INDEX's SHARE lock lets the count's ACCESS SHARE through). Primary keys
            // and constraints take stronger locks and queue behind the count; no cycle.
            let (post, counted) = std::thread::scope(|s3| {
                let counter = s3.spawn(|| count_check(db, snap));
                (run("post-data", jobs), counter.join().expect("row counter"))
            });
            post?;
            let counted = counted?;
            tracing::info!(
                seconds = t.elapsed().as_secs_f64(),
                "indexes and constraints restored"
            );
            Ok(Some(counted))
        })();
        drop(reader); // stops the producer if we return early
        let produced = producer.join().expect("restore reader thread");
        match (result, produced) {
            (Ok(None), _) => Ok(None),
            (Ok(Some(c)), Ok(())) => Ok(Some(c)),
            (Ok(Some(_)), Err(e)) => Err(e),
            (Err(e), Err(p)) if !reader::is_output_error(&p) => {
                tracing::debug!(error = %e, "data load stopped by the repository failing");
                Err(p)
            }
            (Err(e), _) => Err(e),
        }
    });
    progress.end();
    outcome
}

#[cfg(test)]
mod tests {
    use super::leading_ident;

    #[test]
    fn identifiers_at_the_start_of_globals_statements() {
        assert_eq!(
            leading_ident("app TO reporting_app;"),
            Some(("app".into(), " TO reporting_app;"))
        );
        assert_eq!(
            leading_ident(r#""we ""quote"" it" TO x"#),
            Some((r#"we "quote" it"#.into(), " TO x"))
        );
        assert_eq!(leading_ident("owner;"), Some(("owner".into(), ";")));
        assert_eq!(leading_ident(r#""unterminated"#), None);
        assert_eq!(leading_ident(" TO"), None);
    }
}

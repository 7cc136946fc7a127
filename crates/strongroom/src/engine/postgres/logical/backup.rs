//! Taking a logical snapshot: `pg_dump` of one exported snapshot, streamed into the repository
//! while its rows are counted, and the globals beside it.
//!
//! Owns the backup's threads (the dump's reader, the row counter fed a copy of the stream,
//! the prober that reads the schema version once `pg_dump` holds its locks) and the
//! metadata a logical snapshot records. Must not restore.

use super::super::dump_format;
use super::super::properties::Properties;
use super::super::server::Conn;
use super::super::tools::{self, Tool};
use super::catalog::{row_counts, schema_version, table_members};
use super::reframe::reframe;
use super::{DUMP_FILE, GLOBALS_FILE, PROPERTIES_KEY, facts};
use crate::chunker::CdcBatcher;
use crate::engine::Captured;
use crate::error::{Error, Result};
use crate::pipe::{ChannelReader, ChannelWriter};
use crate::process::{ChildGuard, collect_stderr, describe_exit, stderr_gist};
use crate::progress::Progress;
use crate::repository::snapshot::{BackupKind, Chunking, FileEntry, Metadata};
use crate::repository::writer::BackupWriter;
use crate::source::conninfo::conninfo_value;
use crate::source::{RowCounts, Source};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

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
    // Exact counts come from the dump itself (see `dump_format::count_data`); what a table's
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
    let stdout = child.stdout.take().expect("stdout piped");
    let mut child = ChildGuard::new(child);

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
    let (dumped, probed, streamed, reframed) = std::thread::scope(|s| {
        let counter = s.spawn(move || {
            let mut r = ChannelReader::new(tee_rx, false);
            let toc = dump_format::read_toc(&mut r)?; // a dump cut short: no word, no counting
            let countable = dump_format::countable(&toc);
            let _ = verdict_tx.send(countable.is_ok());
            countable?;
            dump_format::count_data(&mut r, &toc)
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
        // pg_dump's output is re-framed on its way in (see `reframe`), on a thread of its own.
        let (frame_tx, frame_rx) = crossbeam_channel::bounded::<Vec<u8>>(4);
        let reframer = s.spawn(move || {
            let mut input = std::io::BufReader::with_capacity(1 << 20, stdout);
            let mut out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(frame_tx));
            reframe(&mut input, &mut out).and_then(|()| out.flush())
        });
        let mut reframed = ChannelReader::new(frame_rx, false);
        let dumped = writer.write_file(DUMP_FILE, Chunking::ContentDefined, progress, |sink| {
            let mut batcher = CdcBatcher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match reframed.read(&mut buf) {
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
        drop(reframed); // a pipeline that stopped early stops the re-framer, and so pg_dump
        drop(started.take()); // a dump that never started releases the prober
        drop(tee.take()); // end of stream for the counter
        if dumped.is_err() {
            // The pipeline failed (storage gone, disk full): stop pg_dump first, which
            // releases its locks, then the prober's query.
            child.kill();
            let _ = cancel.cancel_query(postgres::NoTls);
        }
        let streamed = counter.join().expect("row counter thread");
        let reframed = reframer.join().expect("re-framing thread");
        (
            dumped,
            prober.join().expect("probe thread"),
            streamed,
            reframed,
        )
    });
    progress.end();
    if let Err(e) = dumped {
        drop(child); // kills pg_dump
        let _ = stderr.join();
        return Err(e);
    }
    // Output that does not parse is our failure to report; one cut short is pg_dump's.
    let cut_short = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe
        )
    };
    if let Err(e) = &reframed {
        if !cut_short(e) {
            drop(child); // kills pg_dump
            let _ = stderr.join();
            return Err(Error::Source(format!(
                "pg_dump's output is not the custom archive expected ({e}); no snapshot was recorded"
            )));
        }
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
    // pg_dump said it succeeded, yet its archive ended early: never a snapshot.
    reframed.map_err(|e| {
        Error::Source(format!(
            "pg_dump's archive ended early ({e}) though pg_dump reported success; no snapshot was recorded"
        ))
    })?;
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
            Err(dump_format::Unsupported(why)) => {
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
        kind: BackupKind::Logical,
        files,
        metadata: Metadata {
            row_counts: counts,
            schema_version: schema,
            server_version: f.version,
            extra,
        },
        wal: None,
    })
}

/// Stores `pg_dumpall --globals-only`; a failure here is reported in the metadata, not fatal:
/// the database dump is what matters, and managed services often hide the catalogs.
pub(super) fn dump_globals(
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

//! The fast restore path: schema and indexes through `pg_restore` from a TOC-only file,
//! table data streamed from the repository through several `COPY` connections at once.
//!
//! Owns splitting the dump's data blocks into pieces cut at row ends and feeding them to the
//! workers, one failed worker stopping the feed. Must not decide whether this path applies
//! beyond what the archive itself says (the caller falls back to `pg_restore`).

use super::super::dump_format;
use super::super::server::Conn;
use super::super::tools::Tool;
use super::catalog::count_check;
use crate::engine::checks::CheckOutcome;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::pipe::{ChannelReader, ChannelWriter};
use crate::process::{describe_exit, stderr_gist};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{FileEntry, Snapshot};
use crate::source::conninfo::conninfo_value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// Table data handed to the COPY connections in pieces of about this size, cut at row ends.
pub(super) const COPY_PIECE: usize = 4 << 20;

/// A parallel-restore worker: one connection, `COPY` of each piece it receives.
pub(super) fn load_pieces(
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
pub(super) fn parallel_copy_restore(
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
) -> Result<Option<CheckOutcome>> {
    use dump_format::{BLK_DATA, SECTION_DATA};
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(8);
    let mut reader = ChannelReader::new(rx, true);
    progress.begin("restore", Some(dump.size));
    let outcome = std::thread::scope(|s| -> Result<Option<CheckOutcome>> {
        let producer = s.spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
            let r = reader::stream_file(repo, index, snap, dump, &mut w, progress);
            let flushed = w.flush();
            match r {
                Ok(()) => flushed.map_err(|e| reader::output_error(&dump.name, e)),
                Err(e) => Err(e),
            }
        });
        let result = (|| -> Result<Option<CheckOutcome>> {
            let toc = match dump_format::read_toc(&mut reader) {
                Ok(t) => t,
                Err(dump_format::Unsupported(why)) => {
                    tracing::info!(%why, "plain pg_restore");
                    return Ok(None);
                }
            };
            let handled = |e: &dump_format::Entry| {
                e.section != SECTION_DATA
                    || (e.desc == "TABLE DATA" && !e.copy_stmt.is_empty())
                    || (e.desc == "SEQUENCE SET" && !e.had_dumper)
            };
            if toc.compressed || !toc.entries.iter().all(handled) {
                tracing::info!("archive has data this path does not load; plain pg_restore");
                return Ok(None);
            }
            let toc_bytes = reader.record.take().unwrap_or_default();
            let (mut tocfile, _removed) =
                interrupt::temp_file(spool_dir, ".strongroom-toc-", ".dump", "TOC file")?;
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
            let by_id: std::collections::HashMap<i64, &dump_format::Entry> =
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
                        let id = dump_format::int(&mut reader, isz)
                            .map_err(|e| corrupt(&e.to_string()))?;
                        let entry = by_id
                            .get(&id)
                            .ok_or_else(|| corrupt("data for an unknown entry"))?;
                        let stmt: std::sync::Arc<str> =
                            entry.copy_stmt.trim_end().trim_end_matches(';').into();
                        let mut buf: Vec<u8> = Vec::with_capacity(COPY_PIECE + (1 << 20));
                        loop {
                            let len = dump_format::int(&mut reader, isz)
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

//! The fast restore path: schema and indexes through `pg_restore` from a TOC-only file,
//! table data streamed from the repository through several `COPY` connections at once.
//!
//! Owns splitting the dump's data blocks into pieces cut at row ends and feeding them to the
//! workers, one failed worker stopping the feed. Must not decide whether this path applies
//! beyond what the archive itself says (the caller falls back to `pg_restore`).

use super::super::dump_format;
use super::super::server::Conn;
use super::super::tools::Tool;
use super::catalog::{count_check, table_members};
use super::estimated;
use super::load::with_index_build_memory;
use crate::engine::checks::{CheckOutcome, compare_row_counts};
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
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Table data handed to the COPY connections in pieces of about this size, cut at row ends.
pub(super) const COPY_PIECE: usize = 4 << 20;

/// CPU seconds the calling thread has used (for the restore's time split).
fn thread_cpu() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given, which lives on our stack.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU seconds this process has used, all threads (the repository reader's among them).
fn process_cpu() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `thread_cpu`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Adds CPU seconds to a counter kept in microseconds.
fn add_cpu(counter: &AtomicU64, since: f64) {
    counter.fetch_add(((thread_cpu() - since) * 1e6) as u64, Ordering::Relaxed);
}

/// A piece of a table's data: the TOC entry's dump id, its `COPY` statement, the rows.
type Piece = (i64, std::sync::Arc<str>, Vec<u8>);

/// A parallel-restore worker: one connection, `COPY` of each piece it receives. Returns the
/// rows the server reported loading, per dump id.
fn load_pieces(
    db: &Conn,
    setup: &str,
    pieces: crossbeam_channel::Receiver<Piece>,
    spare: crossbeam_channel::Sender<Vec<u8>>,
    cpu: &AtomicU64,
) -> Result<HashMap<i64, u64>> {
    let start = thread_cpu();
    let loaded = load_pieces_on(db, setup, pieces, spare);
    add_cpu(cpu, start);
    loaded
}

fn load_pieces_on(
    db: &Conn,
    setup: &str,
    pieces: crossbeam_channel::Receiver<Piece>,
    spare: crossbeam_channel::Sender<Vec<u8>>,
) -> Result<HashMap<i64, u64>> {
    let mut c = db.connect()?;
    c.batch_execute(setup)
        .map_err(|e| Error::Target(db.explain(&e)))?;
    let mut rows = HashMap::new();
    for (id, stmt, piece) in pieces {
        let mut w = c
            .copy_in(&*stmt)
            .map_err(|e| Error::Target(db.explain(&e)))?;
        w.write_all(&piece)
            .map_err(|e| Error::Target(format!("loading table data into {}: {e}", db.dbname())))?;
        let n = w
            .finish()
            .map_err(|e| Error::Target(format!("loading table data: {}", db.explain(&e))))?;
        *rows.entry(id).or_insert(0) += n;
        let _ = spare.try_send(piece); // back to the feeder, or dropped when it has enough
    }
    Ok(rows)
}

/// The row-count check from the rows each `COPY` reported: what `count(*)` on every user
/// table of the restored database would say (a table counts its partitions and inheritance
/// children, as `count(*)` does), without scanning the tables again while their indexes are
/// built. `None` when the catalogs say `count(*)` would read more than the dump held (a
/// foreign table below a parent): then the tables are counted.
fn copied_counts(
    db: &Conn,
    snap: &Snapshot,
    toc: &dump_format::Toc,
    loaded: &HashMap<i64, u64>,
) -> Result<Option<CheckOutcome>> {
    if estimated(snap) {
        return count_check(db, snap).map(Some);
    }
    let mut by_table: HashMap<(&str, &str), u64> = HashMap::new();
    for e in toc.entries.iter().filter(|e| e.desc == "TABLE DATA") {
        let n = loaded.get(&e.dump_id).copied().unwrap_or(0);
        *by_table.entry((&e.namespace, &e.tag)).or_insert(0) += n;
    }
    let mut c = db.connect()?;
    let Some(members) = table_members(&mut c, db)? else {
        return Ok(None);
    };
    let found: BTreeMap<String, u64> = members
        .into_iter()
        .map(|(key, tables)| {
            let n = tables
                .iter()
                .map(|(ns, rel)| by_table.get(&(ns.as_str(), rel.as_str())).copied())
                .map(Option::unwrap_or_default)
                .sum();
            (key, n)
        })
        .collect();
    Ok(Some(compare_row_counts(&snap.metadata.row_counts, &found)))
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
    // Where the time goes (docs/ARCHITECTURE.md, "The restore safety sequence"): wall time of each
    // phase; CPU of parsing the archive into pieces and of the client side of COPY, and the
    // rest of this process's CPU up to the end of the data: reading the repository (fetch,
    // decrypt, decompress, on the reader's threads).
    let (parse_cpu, send_cpu) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = std::time::Instant::now();
    let cpu_at_start = process_cpu();
    let mut walls = [0f64; 3];
    let mut data_cpu = 0.0;
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
                if section == "post-data" {
                    with_index_build_memory(&mut cmd, db, jobs);
                }
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
            walls[0] = t.elapsed().as_secs_f64();
            tracing::info!(seconds = walls[0], "schema restored");

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
            let (ptx, prx) = crossbeam_channel::bounded::<Piece>(jobs * 2);
            // Piece buffers go back to the feeder once loaded: fresh multi-MiB buffers cost
            // page faults on every byte, CPU the COPY backends on the same cores then lack.
            let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<u8>>(jobs + 1);
            // One failed worker stops the feeding: the others need not load the rest first.
            let failed = std::sync::atomic::AtomicBool::new(false);
            let loaded = std::thread::scope(|s2| -> Result<HashMap<i64, u64>> {
                let workers: Vec<_> = (0..jobs)
                    .map(|_| {
                        let (prx, setup, failed) = (prx.clone(), setup.clone(), &failed);
                        let (spare, send_cpu) = (spare_tx.clone(), &send_cpu);
                        s2.spawn(move || -> Result<HashMap<i64, u64>> {
                            let r = load_pieces(db, &setup, prx, spare, send_cpu);
                            if r.is_err() {
                                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            r
                        })
                    })
                    .collect();
                drop((prx, spare_tx));
                let stop = || failed.load(std::sync::atomic::Ordering::SeqCst);
                let fresh = || match spare_rx.try_recv() {
                    Ok(mut v) => {
                        v.clear();
                        v
                    }
                    Err(_) => Vec::with_capacity(COPY_PIECE + (1 << 20)),
                };
                let cpu = thread_cpu();
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
                        let mut buf = fresh();
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
                                if let Some(cut) = memchr::memrchr(b'\n', &buf) {
                                    let mut rest = fresh();
                                    rest.extend_from_slice(&buf[cut + 1..]);
                                    buf.truncate(cut + 1);
                                    let piece = std::mem::replace(&mut buf, rest);
                                    if stop() || ptx.send((id, stmt.clone(), piece)).is_err() {
                                        return Ok(()); // a worker failed; its error wins
                                    }
                                }
                            }
                        }
                        if !buf.is_empty() && ptx.send((id, stmt, buf)).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(())
                })();
                add_cpu(&parse_cpu, cpu);
                drop(ptx);
                let mut first: Option<Error> = None;
                let mut rows: HashMap<i64, u64> = HashMap::new();
                for w in workers {
                    match w.join().expect("COPY worker") {
                        Ok(r) => r
                            .into_iter()
                            .for_each(|(id, n)| *rows.entry(id).or_default() += n),
                        Err(e) => {
                            first.get_or_insert(e);
                        }
                    }
                }
                fed?;
                first.map_or(Ok(rows), Err)
            });
            let loaded = loaded?;
            walls[1] = t.elapsed().as_secs_f64();
            data_cpu = process_cpu() - cpu_at_start;
            tracing::info!(seconds = walls[1], jobs, "table data loaded");
            let mut c = db.connect()?;
            for e in toc.entries.iter().filter(|e| e.desc == "SEQUENCE SET") {
                c.batch_execute(&e.defn).map_err(|err| {
                    Error::Target(format!("setting sequence {}: {}", e.tag, db.explain(&err)))
                })?;
            }
            // The rows each COPY reported are the check; only where the catalogs say
            // `count(*)` reads more than the dump held are the tables counted.
            let t = std::time::Instant::now();
            let copied = copied_counts(db, snap, &toc, &loaded)?;
            tracing::info!(
                seconds = t.elapsed().as_secs_f64(),
                from_copy = copied.is_some(),
                "row counts taken"
            );
            let t = std::time::Instant::now();
            let (post, counted) = match copied {
                Some(c) => (run("post-data", jobs), Ok(c)),
                // Rows are final once the data is in: count them while indexes are built
                // (CREATE INDEX's SHARE lock lets the count's ACCESS SHARE through). Primary
                // keys and constraints take stronger locks and queue behind the count.
                None => std::thread::scope(|s3| {
                    let counter = s3.spawn(|| count_check(db, snap));
                    (run("post-data", jobs), counter.join().expect("row counter"))
                }),
            };
            post?;
            let counted = counted?;
            walls[2] = t.elapsed().as_secs_f64();
            tracing::info!(seconds = walls[2], "indexes and constraints restored");
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
    if matches!(outcome, Ok(Some(_))) {
        let cpu = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1e6;
        tracing::info!(
            total_seconds = started.elapsed().as_secs_f64(),
            schema_seconds = walls[0],
            data_seconds = walls[1],
            post_data_seconds = walls[2],
            read_cpu_seconds = (data_cpu - cpu(&parse_cpu) - cpu(&send_cpu)).max(0.0),
            parse_cpu_seconds = cpu(&parse_cpu),
            copy_client_cpu_seconds = cpu(&send_cpu),
            "restore time split (data: COPY on the server; read: fetch, decrypt, decompress)"
        );
    }
    outcome
}

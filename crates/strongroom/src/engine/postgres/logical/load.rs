//! Loading a dump into an empty database: parallel `COPY` where it can, `pg_restore` where
//! it must.
//!
//! Owns choosing the path and running `pg_restore` (streamed on stdin with one job, from a
//! spooled file with several). Must not create, rename or drop databases.

use super::super::server::Conn;
use super::super::tools;
use super::copy::parallel_copy_restore;
use super::{DUMP_FILE, extra_str, file};
use crate::engine::checks::CheckOutcome;
use crate::error::{Error, Result};
use crate::interrupt;
use crate::process::{ChildGuard, collect_stderr, describe_exit, stderr_gist};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::Snapshot;
use crate::source::conninfo::conninfo_value;
use std::io::Write;
use std::process::{Command, Stdio};

/// What a restore lets its index builds and foreign-key checks use on the server, all its
/// jobs together (`maintenance_work_mem`, split among them), where the server's own setting
/// is lower: PostgreSQL's "Populating a Database" advice. Its default of 64 MB is less than
/// a B-tree build's sort of a 6-million-row table holds (about 48 bytes a row, 290 MB), so
/// the sort spills to disk; a foreign key's check runs with `work_mem` raised to this too.
const INDEX_BUILD_MEMORY: u64 = 1 << 30;

/// Sets `PGOPTIONS` for a `pg_restore` that builds indexes on `db` with `jobs` connections:
/// `maintenance_work_mem` of [`INDEX_BUILD_MEMORY`] split among them, unless the server's
/// own is higher or cannot be read (then nothing is set). The caller's own `PGOPTIONS` come
/// after, so a setting given there wins.
pub(super) fn with_index_build_memory(cmd: &mut Command, db: &Conn, jobs: usize) {
    let server_kb = db.connect().ok().and_then(|mut c| {
        c.query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem'",
            &[],
        )
        .ok()
        .map(|r| r.get::<_, i64>(0))
    });
    if let Some(opts) = index_build_options(server_kb, jobs, std::env::var_os("PGOPTIONS")) {
        cmd.env("PGOPTIONS", opts);
    }
}

/// The `PGOPTIONS` of [`with_index_build_memory`], from the server's `maintenance_work_mem`
/// in kB (`None`: unknown) and the caller's own `PGOPTIONS`; `None` leaves them as they are.
fn index_build_options(
    server_kb: Option<i64>,
    jobs: usize,
    theirs: Option<std::ffi::OsString>,
) -> Option<std::ffi::OsString> {
    let per_job_kb = INDEX_BUILD_MEMORY / 1024 / jobs.max(1) as u64;
    let server_kb = u64::try_from(server_kb?).ok()?;
    if server_kb >= per_job_kb {
        return None;
    }
    let mut opts = std::ffi::OsString::from(format!("-c maintenance_work_mem={per_job_kb}kB"));
    if let Some(theirs) = theirs {
        opts.push(" ");
        opts.push(theirs);
    }
    Some(opts)
}

/// Restores the dump into the existing, empty database `db` with `pg_restore`. Returns the
/// row-count check when it could run alongside the restore's last phase.
#[allow(clippy::too_many_arguments)]
pub(super) fn pg_restore_into(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    db: &Conn,
    superuser: bool,
    jobs: usize,
    spool_dir: &std::path::Path,
    progress: &dyn Progress,
) -> Result<Option<CheckOutcome>> {
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
    with_index_build_memory(&mut cmd, db, jobs);
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
        let (spool, _removed) =
            interrupt::temp_file(spool_dir, ".strongroom-restore-", ".dump", "spool file")?;
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
        let mut guard = ChildGuard::new(child);
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

#[cfg(test)]
mod tests {
    use super::index_build_options;
    use std::ffi::OsString;

    #[test]
    fn index_builds_get_more_memory_but_never_less_and_the_callers_options_win() {
        // PostgreSQL's default (64 MB), two jobs: 512 MiB each.
        assert_eq!(
            index_build_options(Some(65_536), 2, None),
            Some(OsString::from("-c maintenance_work_mem=524288kB"))
        );
        // The caller's own options come after, so theirs win where both set one.
        assert_eq!(
            index_build_options(Some(65_536), 1, Some("-c maintenance_work_mem=2GB".into())),
            Some(OsString::from(
                "-c maintenance_work_mem=1048576kB -c maintenance_work_mem=2GB"
            ))
        );
        // A server configured higher, or one that could not be asked, is left alone.
        assert_eq!(index_build_options(Some(4 << 20), 2, None), None);
        assert_eq!(index_build_options(None, 2, None), None);
    }
}

//! Running a server on a restored data directory: `restore --start`, and `verify`'s test
//! restore of a physical snapshot (a throwaway server recovers it to consistency, the row
//! counts and the source's checks run, everything is removed, also on Ctrl-C).
//!
//! Owns finding server binaries of the snapshot's major version, starting and watching a
//! recovering server (promotion is read from `pg_control`, whose state says "in production"
//! once recovery ended), and reading from its log where recovery stopped. Must not write
//! data directories (that is [`super::restore`]).

use super::{keys, major};
use crate::engine::checks::CheckOutcome;
use crate::engine::{RecoveryTarget, Scratch};
use crate::error::{Error, Result};
use crate::interrupt::{self, ScratchDir};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::Snapshot;
use crate::source::SqlCheck;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `DB_IN_PRODUCTION` in `pg_control`'s state field (offset 16, the same since 9.0).
const DB_IN_PRODUCTION: u32 = 6;

/// The directory of `pg_ctl` and `postgres` of major version `major`.
pub fn server_bindir(major: u32) -> Result<PathBuf> {
    let found = crate::engine::postgres::tools::all("pg_ctl");
    found
        .iter()
        .filter(|t| t.major == major)
        .filter_map(|t| t.path.parent().map(Path::to_path_buf))
        .find(|d| d.join("postgres").is_file())
        .ok_or_else(|| {
            Error::Source(format!(
                "no PostgreSQL {major} server binaries (pg_ctl, postgres) found; install them (Debian: apt install postgresql-{major}) or point STRONGROOM_PG_BINDIR at their directory"
            ))
        })
}

/// The name of the system user `uid`.
fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid returns static storage or null; read at once.
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside the static struct.
    let name = unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// A server started on a data directory by strongroom.
pub struct Server {
    bindir: PathBuf,
    dir: PathBuf,
    run_as: Option<String>,
    /// The port it listens on.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
    stop_on_drop: bool,
}

impl Server {
    fn command(&self, program: &str) -> Command {
        command(&self.bindir, program, self.run_as.as_deref())
    }

    /// Stops it (fast shutdown: sessions end, a checkpoint is written).
    pub fn stop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.stop_on_drop = false;
    }

    /// The shell command that stops it as an operator would type it: the same `pg_ctl`, as
    /// the same user (`runuser -u postgres -- …/pg_ctl -D DIR -m fast stop` when strongroom
    /// runs as root), so a server `restore --start` leaves running can be stopped without
    /// guessing which binaries and user it runs with (Debian keeps `pg_ctl` off the PATH).
    pub fn stop_command(&self) -> String {
        let q = |p: &Path| shell_quote(&p.display().to_string());
        let pg_ctl = format!(
            "{} -D {} -m fast stop",
            q(&self.bindir.join("pg_ctl")),
            q(&self.dir)
        );
        match &self.run_as {
            Some(u) => format!("runuser -u {} -- {pg_ctl}", shell_quote(u)),
            None => pg_ctl,
        }
    }

    /// Leaves it running after this value is dropped.
    pub fn detach(mut self) {
        self.stop_on_drop = false;
    }

    /// Waits until recovery ended and the server promoted; fails with the log's last lines
    /// when it stopped instead.
    pub fn wait_promoted(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut seen_running = false;
        loop {
            let running = super::restore::running_postmaster(&self.dir).is_some();
            seen_running |= running;
            if running && promoted(&self.dir) {
                // Segments fetched ahead that recovery did not need.
                let _ = std::fs::remove_dir_all(
                    self.dir.join(crate::engine::postgres::wal::PREFETCH_DIR),
                );
                return Ok(());
            }
            if !running && (seen_running || start.elapsed() > Duration::from_secs(30)) {
                // Its restore_command runs as the server's user, with this command's
                // environment: a password file only root can read fails there.
                let gist = log_gist(&self.log);
                let whose = self
                    .run_as
                    .as_deref()
                    .filter(|_| gist.starts_with("strongroom: "))
                    .map(|u| {
                        format!(
                            "; the server runs as {u} with this command's environment, so the repository and the password or key file (STRONGROOM_PASSWORD_FILE) must be readable by {u}"
                        )
                    })
                    .unwrap_or_default();
                return Err(Error::Failed(format!(
                    "the server on {} stopped during recovery: {gist}{whose}",
                    self.dir.display(),
                )));
            }
            if start.elapsed() > timeout {
                return Err(Error::Failed(format!(
                    "the server on {} did not finish recovery within {} s: {}",
                    self.dir.display(),
                    timeout.as_secs(),
                    log_gist(&self.log)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&self.dir)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `program` of the server's binaries, as `run_as`. The server keeps what its
/// `restore_command` (`strongroom wal fetch`) needs to open the repository, but not a client
/// password it has no use for.
fn command(bindir: &Path, program: &str, run_as: Option<&str>) -> Command {
    let exe = bindir.join(program);
    let mut c = match run_as {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    c.env_remove("PGPASSWORD");
    c
}

/// Whether `pg_control` says the cluster in `dir` is in production and recovery is over.
fn promoted(dir: &Path) -> bool {
    let Ok(bytes) = std::fs::read(dir.join(super::PG_CONTROL)) else {
        return false;
    };
    bytes.len() >= 20
        && u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) == DB_IN_PRODUCTION
        && !dir.join("recovery.signal").exists()
}

/// The last FATAL/PANIC lines of a server log, or its last line; preceded by the last
/// complaint of `strongroom wal fetch` itself (its stderr lands in the server's log), which
/// says why the archive could not be read: "cannot read password file …" names the cause
/// where PostgreSQL's own line only says that `restore_command` failed.
fn log_gist(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .collect();
    let pick = if bad.is_empty() {
        text.lines()
            .last()
            .unwrap_or("(the log is empty)")
            .to_string()
    } else {
        bad[bad.len().saturating_sub(2)..].join(" / ")
    };
    let fetch = text
        .lines()
        .rev()
        .find(|l| l.starts_with("strongroom: "))
        .map(|l| format!("{} / ", l.trim()))
        .unwrap_or_default();
    format!("{fetch}{} (log: {})", pick.trim(), log.display())
}

/// Starts PostgreSQL on `dir` (as the directory's owner when strongroom runs as root), on
/// `port`, with `settings` given on the command line (they win over the config files).
pub fn start(
    dir: &Path,
    major: u32,
    port: u16,
    log: &Path,
    settings: &[(&str, String)],
) -> Result<Server> {
    let bindir = server_bindir(major)?;
    let run_as = run_as(dir)?;
    let mut opts = format!("-p {port}");
    for (k, v) in settings {
        opts.push_str(&format!(" -c {k}={}", shell_quote(v)));
    }
    let server = Server {
        bindir,
        dir: dir.to_path_buf(),
        run_as,
        port,
        log: log.to_path_buf(),
        stop_on_drop: true,
    };
    let out = server
        .command("pg_ctl")
        .arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(log)
        .args(["-W", "-o", &opts, "start"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Source(format!("could not run pg_ctl: {e}")))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "pg_ctl could not start the server on {}: {} {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            log_gist(log)
        )));
    }
    Ok(server)
}

/// The user a server on `dir` runs as: the directory's owner when strongroom runs as root
/// (PostgreSQL refuses to run as root), else none (this process's own user).
fn run_as(dir: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let owner = std::fs::metadata(dir)
        .map_err(|e| Error::io("reading", dir, e))?
        .uid();
    if owner == 0 {
        return Err(Error::Target(format!(
            "{} belongs to root, and PostgreSQL refuses to run as root: give it to the database's system user (chown -R postgres: …)",
            dir.display()
        )));
    }
    user_name(owner).map(Some).ok_or_else(|| {
        Error::Target(format!(
            "the owner (uid {owner}) of {} has no name",
            dir.display()
        ))
    })
}

/// The shell command that starts a server on the restored `dir` as [`start`] would (the
/// same binaries, as the same user, on `port` when given), with `env` (names and values that
/// are no secret: the repository and the key file's path) in its environment for
/// `restore_command`, logging to `log`.
pub fn start_command(
    dir: &Path,
    major: u32,
    port: Option<u16>,
    env: &[(&str, String)],
    log: &Path,
) -> Result<String> {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let bindir = server_bindir(major)?;
    let env: String = env
        .iter()
        .map(|(k, v)| format!("{k}={} ", shell_quote(v)))
        .collect();
    let port = port.map(|p| format!(" -o '-p {p}'")).unwrap_or_default();
    let pg_ctl = format!(
        "{} -D {} -l {}{port} start",
        q(&bindir.join("pg_ctl")),
        q(dir),
        q(log)
    );
    Ok(match run_as(dir)? {
        Some(u) => format!("runuser -u {} -- env {env}{pg_ctl}", shell_quote(&u)),
        None if env.is_empty() => pg_ctl,
        None => format!("env {env}{pg_ctl}"),
    })
}

/// How Debian's tools start the cluster whose data directory is `dir`: `pg_ctlcluster 15
/// main start`, found from the `data_directory` of `/etc/postgresql/<major>/*/postgresql.conf`;
/// `None` when no cluster there names it. Such a cluster keeps its configuration (and the
/// environment its `restore_command` needs, in the `environment` file) outside `dir`, so
/// `pg_ctl -D dir` cannot start it.
pub fn debian_start_command(major: u32, dir: &Path) -> Option<String> {
    let wanted = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let clusters = std::fs::read_dir(format!("/etc/postgresql/{major}")).ok()?;
    for c in clusters.flatten() {
        let text = std::fs::read_to_string(c.path().join("postgresql.conf")).unwrap_or_default();
        let named = text.lines().find_map(|l| {
            let l = l.split('#').next()?.trim();
            let v = l.strip_prefix("data_directory")?.trim_start();
            let v = v.strip_prefix('=').unwrap_or(v).trim().trim_matches('\'');
            Some(PathBuf::from(v))
        });
        if named.is_some_and(|d| std::fs::canonicalize(&d).unwrap_or(d) == wanted) {
            let name = c.file_name().to_string_lossy().into_owned();
            return Some(format!("pg_ctlcluster {major} {name} start"));
        }
    }
    None
}

/// `pg_ctl -o` splits its options like a shell: quote values that need it.
fn shell_quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:,".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Internal(format!("no free TCP port: {e}")))
}

/// Where a recovery ended, as the server's log tells it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Reached {
    /// The WAL position replay ended at (`redo done at`).
    pub lsn: Option<String>,
    /// The commit time of the last transaction replayed.
    pub time: Option<String>,
    /// Why it stopped, in PostgreSQL's words (`recovery stopping before commit of …`).
    pub stopped: Option<String>,
    /// The new timeline after promotion.
    pub timeline: Option<u32>,
}

/// Reads where recovery ended from a server log.
pub fn reached(log: &Path) -> Reached {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut r = Reached::default();
    for line in text.lines() {
        let after = |key: &str| line.find(key).map(|i| line[i + key.len()..].trim());
        if let Some(rest) = after("redo done at ") {
            r.lsn = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = after("last completed transaction was at log time ") {
            r.time = Some(rest.to_string());
        }
        if let Some(i) = line.find("recovery stopping ") {
            r.stopped = Some(line[i..].trim().to_string());
        }
        if let Some(rest) = after("selected new timeline ID: ") {
            r.timeline = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|t| t.parse().ok());
        }
    }
    r
}

/// Test-restores a physical snapshot: a scratch data directory, a throwaway server that
/// recovers it on a private socket to consistency (or to `scratch.recovery`, a drill's
/// point after the snapshot), never archiving: a promoted copy forks a timeline that must
/// never reach the repository. Then exact row counts beside the snapshot's estimates and
/// the source's checks; the phases are marked in `scratch.phases`.
pub fn test_restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    scratch_place: &Scratch,
    checks: &[SqlCheck],
    progress: &dyn Progress,
) -> Result<Vec<CheckOutcome>> {
    let phases = &scratch_place.phases;
    let target = scratch_place
        .recovery
        .clone()
        .unwrap_or(RecoveryTarget::Immediate);
    let major = major(snap).ok_or_else(|| {
        Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its major version",
        )
    })?;
    // No binaries for this version: say so before restoring anything.
    server_bindir(major)?;
    phases.begin("restore");
    let scratch = ScratchDir::new(
        &scratch_place.dir,
        "strongroom-verify-pg-",
        "test-restored data directory",
    )?;
    use std::os::unix::fs::PermissionsExt;
    // The server's user must reach its directory inside.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("setting permissions of", scratch.path(), e))?;
    let data = scratch.path().join("data");
    super::restore::restore_into(repo, index, snap, &data, &target, progress)?;
    let sockets = scratch.path().join("socket");
    std::fs::create_dir(&sockets).map_err(|e| Error::io("creating", &sockets, e))?;
    let hba = scratch.path().join("hba.conf");
    std::fs::write(&hba, "local all all trust\n").map_err(|e| Error::io("writing", &hba, e))?;
    let log = scratch.path().join("server.log");
    std::fs::write(&log, "").map_err(|e| Error::io("writing", &log, e))?;
    if let Some(owner) = super::restore::owner_of(&data) {
        for p in [&sockets, &hba, &log] {
            std::os::unix::fs::chown(p, Some(owner.0), Some(owner.1))
                .map_err(|e| Error::io("changing the owner of", p, e))?;
        }
    }
    let port = free_port()?;
    phases.begin("recovery");
    let t = Instant::now();
    let server = start(
        &data,
        major,
        port,
        &log,
        &[
            ("listen_addresses", String::new()),
            ("unix_socket_directories", sockets.display().to_string()),
            ("archive_mode", "off".into()),
            ("hba_file", hba.display().to_string()),
            ("logging_collector", "off".into()),
        ],
    )?;
    let dir = data.clone();
    let (bindir, run_as) = (server.bindir.clone(), server.run_as.clone());
    // Interrupted: stop the server before its directory goes.
    let _stop = interrupt::guard(
        format!("throwaway server on {}", data.display()),
        move || {
            let _ = command(&bindir, "pg_ctl", run_as.as_deref())
                .arg("-D")
                .arg(&dir)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        },
    );
    let mut results = Vec::new();
    match server.wait_promoted(Duration::from_secs(3600)) {
        Ok(()) => results.push(CheckOutcome {
            name: "recovery".into(),
            ok: true,
            detail: recovered(major, &target, &reached(&log), t.elapsed()),
        }),
        Err(e) => {
            results.push(CheckOutcome {
                name: "recovery".into(),
                ok: false,
                detail: e.to_string(),
            });
            return Ok(results);
        }
    }
    phases.begin("checks");
    let user = snap
        .metadata
        .extra
        .get(keys::SUPERUSER)
        .and_then(|v| v.as_str())
        .unwrap_or("postgres");
    let db = snap
        .metadata
        .extra
        .get(keys::DATABASE)
        .and_then(|v| v.as_str())
        .unwrap_or("postgres");
    let client = postgres::Config::new()
        .host_path(&sockets)
        .port(port)
        .user(user)
        .dbname(db)
        .connect(postgres::NoTls);
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            results.push(CheckOutcome {
                name: "connect".into(),
                ok: false,
                detail: format!("connecting to the recovered server as {user} to {db}: {e}"),
            });
            return Ok(results);
        }
    };
    results.push(count_check(&mut client, snap));
    results.extend(crate::engine::postgres::logical::run_checks(
        &mut client,
        checks,
    ));
    drop(client);
    drop(server);
    drop(scratch);
    Ok(results)
}

/// What a successful recovery reached, for its check's detail.
fn recovered(major: u32, target: &RecoveryTarget, r: &Reached, took: Duration) -> String {
    let to = match target {
        RecoveryTarget::Immediate => "to consistency".to_string(),
        RecoveryTarget::Latest => "to the end of the archive".to_string(),
        RecoveryTarget::Time(t) => format!("to {t}"),
        RecoveryTarget::Lsn(l) => format!("to LSN {l}"),
        RecoveryTarget::Xid(x) => format!("to transaction {x}"),
        RecoveryTarget::Name(n) => format!("to restore point {n:?}"),
    };
    let mut out = format!(
        "PostgreSQL {major} replayed the snapshot's WAL {to} and promoted in {:.1} s",
        took.as_secs_f64()
    );
    if let Some(l) = &r.lsn {
        out.push_str(&format!("; redo ended at {l}"));
    }
    if let Some(t) = &r.time {
        out.push_str(&format!(", last transaction replayed committed at {t}"));
    }
    out
}

/// Exact counts of the recovered database beside the snapshot's estimates: every table the
/// snapshot recorded must exist; counts far from the estimates are reported, not failed
/// (planner estimates can lag by any amount).
fn count_check(client: &mut postgres::Client, snap: &Snapshot) -> CheckOutcome {
    let mut missing = Vec::new();
    let mut far = Vec::new();
    let mut rows = 0u64;
    let mut unknown = 0;
    for (table, estimate) in &snap.metadata.row_counts {
        let (ns, rel) = table.split_once('.').unwrap_or(("public", table));
        let sql = format!(
            "SELECT count(*)::int8 FROM {}.{}",
            crate::engine::postgres::server::ident(ns),
            crate::engine::postgres::server::ident(rel)
        );
        match client.query_one(&sql, &[]) {
            Ok(r) => {
                let n = r.get::<_, i64>(0) as u64;
                rows += n;
                unknown += usize::from(*estimate == 0);
                if *estimate > 0 && n.abs_diff(*estimate) > (*estimate / 5).max(100) {
                    far.push(format!("{table}: {n} (estimate {estimate})"));
                }
            }
            Err(e) => missing.push(format!("{table}: {e}")),
        }
    }
    CheckOutcome {
        name: "row counts".into(),
        ok: missing.is_empty(),
        detail: if !missing.is_empty() {
            format!(
                "tables the snapshot recorded cannot be read: {}",
                missing.join("; ")
            )
        } else if far.is_empty() {
            format!(
                "{} table(s), {rows} row(s); near the backup-time estimates where the planner had one ({unknown} table(s) never analyzed)",
                snap.metadata.row_counts.len()
            )
        } else {
            format!(
                "{} table(s), {rows} row(s); far from the backup-time estimates (which lag): {}",
                snap.metadata.row_counts.len(),
                far.join(", ")
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_where_recovery_stopped_from_the_log() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("l");
        std::fs::write(
            &log,
            "2026-12-01 17:10:00.1 UTC [5] LOG:  starting point-in-time recovery to 2026-12-01 17:09:00+00\n\
             2026-12-01 17:10:00.2 UTC [5] LOG:  recovery stopping before commit of transaction 745, time 2026-12-01 17:09:00.5+00\n\
             2026-12-01 17:10:00.2 UTC [5] LOG:  redo done at 0/3000148 system usage: CPU: user: 0.00 s\n\
             2026-12-01 17:10:00.2 UTC [5] LOG:  last completed transaction was at log time 2026-12-01 17:08:59.9+00\n\
             2026-12-01 17:10:00.3 UTC [5] LOG:  selected new timeline ID: 2\n",
        )
        .unwrap();
        let r = reached(&log);
        assert_eq!(r.lsn.as_deref(), Some("0/3000148"));
        assert_eq!(r.time.as_deref(), Some("2026-12-01 17:08:59.9+00"));
        assert_eq!(r.timeline, Some(2));
        assert!(r.stopped.unwrap().contains("transaction 745"));
    }

    #[test]
    fn option_values_are_quoted_for_pg_ctl() {
        assert_eq!(shell_quote("off"), "off");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}

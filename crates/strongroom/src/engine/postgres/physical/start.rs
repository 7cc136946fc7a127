//! Starting and watching a PostgreSQL server on a restored data directory: `restore
//! --start` (the cluster's own port when it is free, the server left running once promoted)
//! and the throwaway servers of test restores ([`super::verify`]).
//!
//! Owns finding the server binaries of the snapshot's major version, starting a server (as
//! the directory's owner when strongroom runs as root, never with the client's password in
//! its environment), watching it until recovery ended and it promoted (read from
//! `pg_control`, whose state says "in production" once recovery is over), stopping it, reading
//! from its log where recovery stopped, and choosing the port. Must not write the cluster's
//! files (that is [`super::restore`], [`super::tree`] and [`super::recovery`]; a start only
//! adds its log and removes the WAL segments fetched ahead that recovery did not need), and
//! must not check what the server holds (that is [`super::verify`]).

use super::PhysicalMetadata;
use crate::error::{Error, Result};
use crate::repository::snapshot::Snapshot;
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

/// The pid in `dir/postmaster.pid` when that process is alive.
pub fn running_postmaster(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
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

    /// A cleanup that stops it at once (immediate shutdown), for an interrupt guard: it
    /// holds no reference to this value.
    pub fn stopper(&self) -> impl FnOnce() + Send + 'static {
        let (bindir, dir, run_as) = (self.bindir.clone(), self.dir.clone(), self.run_as.clone());
        move || {
            let _ = command(&bindir, "pg_ctl", run_as.as_deref())
                .arg("-D")
                .arg(&dir)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
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
            let running = running_postmaster(&self.dir).is_some();
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

/// The port `restore --start` runs a restored cluster on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartPort {
    /// The port.
    pub port: u16,
    /// The cluster's own port, when it was taken and `port` is another (worth telling).
    pub instead_of: Option<u16>,
}

/// The port to start a restored cluster in `dir` on: `asked` when given; else the port its
/// config files set (PostgreSQL's 5432 when they set none) when it is free on 127.0.0.1,
/// else a free one.
pub fn port_for(dir: &Path, asked: Option<u16>) -> Result<StartPort> {
    if let Some(port) = asked {
        return Ok(StartPort {
            port,
            instead_of: None,
        });
    }
    let own = configured_port(dir).unwrap_or(5432);
    if std::net::TcpListener::bind(("127.0.0.1", own)).is_ok() {
        return Ok(StartPort {
            port: own,
            instead_of: None,
        });
    }
    Ok(StartPort {
        port: free_port()?,
        instead_of: Some(own),
    })
}

/// The `port` a data directory's config files set, if any (the last setting wins, as in
/// PostgreSQL: `postgresql.auto.conf` after `postgresql.conf`).
fn configured_port(dir: &Path) -> Option<u16> {
    let mut port = None;
    for f in ["postgresql.conf", "postgresql.auto.conf"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(v) = line.strip_prefix("port") {
                let v = v
                    .trim_start()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('\'');
                if let Ok(p) = v.parse() {
                    port = Some(p);
                }
            }
        }
    }
    port
}

/// How a started restored cluster recovered.
#[derive(Clone, Debug, PartialEq)]
pub struct Promoted {
    /// Where recovery ended, as the server's log tells it.
    pub reached: Reached,
    /// Seconds from the start until it promoted.
    pub seconds: f64,
    /// The shell line that stops it (it keeps running).
    pub stop_command: String,
}

/// Starts PostgreSQL on `dir`, where `snap` was restored, on `port` (logging to
/// `strongroom-start.log` inside it), waits until recovery ended and it promoted (a day at
/// most), and leaves it running. The server's `restore_command` (`strongroom wal fetch`)
/// finds the repository through this process's environment.
pub fn start_restored(dir: &Path, snap: &Snapshot, port: u16) -> Result<Promoted> {
    let major = PhysicalMetadata::of(snap).major_version.unwrap_or(0);
    let log = dir.join("strongroom-start.log");
    let t = Instant::now();
    let server = start(dir, major, port, &log, &[])?;
    server.wait_promoted(Duration::from_secs(24 * 3600))?;
    let reached = reached(&log);
    let stop_command = server.stop_command();
    server.detach();
    Ok(Promoted {
        reached,
        seconds: t.elapsed().as_secs_f64(),
        stop_command,
    })
}

/// How the service of a cluster that keeps its configuration elsewhere starts it: Debian's
/// `pg_ctlcluster` line when /etc/postgresql names `dir`, else the general form.
pub fn service_start(snap: &Snapshot, dir: &Path) -> String {
    let major = PhysicalMetadata::of(snap).major_version;
    major
        .and_then(|m| debian_start_command(m, dir))
        .unwrap_or_else(|| {
            let v = major.map_or_else(|| "<version>".to_string(), |m| m.to_string());
            format!(
                "pg_ctlcluster {v} <cluster> start, or systemctl start postgresql@{v}-<cluster>"
            )
        })
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
    fn the_port_is_the_last_one_the_config_files_set() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(configured_port(d.path()), None);
        std::fs::write(
            d.path().join("postgresql.conf"),
            "#port = 5432\nport = 5433  # the cluster's own\n",
        )
        .unwrap();
        assert_eq!(configured_port(d.path()), Some(5433));
        std::fs::write(d.path().join("postgresql.auto.conf"), "port = '5444'\n").unwrap();
        assert_eq!(configured_port(d.path()), Some(5444));
        let asked = port_for(d.path(), Some(6000)).unwrap();
        assert_eq!((asked.port, asked.instead_of), (6000, None));
    }

    #[test]
    fn option_values_are_quoted_for_pg_ctl() {
        assert_eq!(shell_quote("off"), "off");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}

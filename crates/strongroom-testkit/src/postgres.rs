//! Throwaway PostgreSQL clusters: `initdb` in a temporary directory, a free port, a private
//! socket directory, stopped and removed on drop (also when the test panics).
//!
//! Why not the machine's cluster: tests create and drop databases and roles, and must run on a
//! CI machine that has only the server binaries. Why `runuser`: `initdb` refuses to run as
//! root, and CI runs as root; the cluster then belongs to the `postgres` system user.
//!
//! Authentication is real: local socket connections are trusted (for the test's own setup),
//! TCP connections need a SCRAM password, so tests can prove what bad credentials do.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The bootstrap superuser's name.
pub const SUPERUSER: &str = "postgres";
/// The bootstrap superuser's password (TCP connections need it).
pub const PASSWORD: &str = "throwaway-superuser-secret";

/// A running throwaway cluster; stopped and deleted when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    run_as: Option<String>,
}

/// Where the PostgreSQL server binaries are: `STRONGROOM_TEST_PG_BINDIR`, the directory of
/// `initdb` on PATH when `pg_ctl` and `postgres` sit beside it, `pg_config --bindir`, then the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(d) = std::env::var_os("STRONGROOM_TEST_PG_BINDIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("initdb").is_file() && complete(&d) {
                return Some(d);
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && complete(&d) {
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
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port on 127.0.0.1")
}

fn chown_to(path: &Path, user: &str) {
    let name = std::ffi::CString::new(user).unwrap();
    // SAFETY: getpwnam returns a pointer into static storage or null; read immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "system user {user} does not exist");
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    let rc = unsafe { libc::chown(c.as_ptr(), uid, gid) };
    assert_eq!(rc, 0, "chown {} to {user} failed", path.display());
}

/// Runs the `openssl` command, panicking with its stderr when it fails.
fn openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is needed for TLS test clusters (apt install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a key and a certificate for `cn`, signed by the CA in `dir` (`root.crt`, `ca.key`).
fn sign(dir: &Path, cn: &str, ext: &Path, key: &Path, crt: &Path, csr: &Path) {
    let o = |s: &'static str| std::ffi::OsStr::new(s);
    let subj = format!("/CN={cn}");
    let (ca_crt, ca_key) = (dir.join("root.crt"), dir.join("ca.key"));
    openssl(&[
        o("req"),
        o("-newkey"),
        o("rsa:2048"),
        o("-nodes"),
        o("-subj"),
        subj.as_ref(),
        o("-keyout"),
        key.as_os_str(),
        o("-out"),
        csr.as_os_str(),
    ]);
    openssl(&[
        o("x509"),
        o("-req"),
        o("-in"),
        csr.as_os_str(),
        o("-CA"),
        ca_crt.as_os_str(),
        o("-CAkey"),
        ca_key.as_os_str(),
        o("-CAcreateserial"),
        o("-days"),
        o("2"),
        o("-extfile"),
        ext.as_os_str(),
        o("-out"),
        crt.as_os_str(),
    ]);
}

impl Cluster {
    /// Starts a new cluster; panics with a message saying what to install when the server
    /// binaries are missing.
    pub fn start() -> Cluster {
        Self::start_with(false)
    }

    /// Starts a cluster that accepts TCP sessions only over TLS (a self-signed certificate
    /// for `localhost`, made with the `openssl` command), like a managed service that forces
    /// encryption. The certificate is [`Cluster::certificate`].
    pub fn start_tls() -> Cluster {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Cluster {
        let bindir = find_bindir().expect(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install Debian's \
             postgresql package, or run ./scripts/test, which does",
        );
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then(|| SUPERUSER.to_string());
        let dir = tempfile::Builder::new()
            .prefix("strongroom-pg-")
            .tempdir()
            .expect("creating a temporary directory");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        if let Some(u) = &run_as {
            chown_to(dir.path(), u);
            chown_to(&pwfile, u);
        }
        let mut cluster = Cluster {
            dir,
            bindir,
            port: 0,
            run_as,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
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
        if tls {
            // A test CA signs the server's certificate: verify-full needs a real chain
            // (rustls, unlike libpq, refuses a self-signed CA certificate as the server's).
            let (crt, key) = (data.join("server.crt"), data.join("server.key"));
            let d = cluster.dir.path();
            let (ca_crt, ca_key, csr, ext) = (
                d.join("root.crt"),
                d.join("ca.key"),
                d.join("server.csr"),
                d.join("ext.cnf"),
            );
            std::fs::write(
                &ext,
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            let o = |s: &'static str| std::ffi::OsStr::new(s);
            openssl(&[
                o("req"),
                o("-x509"),
                o("-newkey"),
                o("rsa:2048"),
                o("-nodes"),
                o("-days"),
                o("2"),
                o("-subj"),
                o("/CN=strongroom test CA"),
                o("-keyout"),
                ca_key.as_os_str(),
                o("-out"),
                ca_crt.as_os_str(),
            ]);
            sign(d, "localhost", &ext, &key, &crt, &csr);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some(u) = &cluster.run_as {
                chown_to(&key, u);
                chown_to(&crt, u);
            }
            let hba = data.join("pg_hba.conf");
            let old = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(&hba, format!("hostnossl all all all reject\n{old}")).unwrap();
        }
        // A port can be taken between probing and binding: try a few.
        for attempt in 0..5 {
            cluster.port = free_port();
            let mut opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=40 -c shared_buffers=64MB",
                cluster.port,
                cluster.dir.path().display()
            );
            if tls {
                opts.push_str(&format!(
                    " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c ssl_ca_file={}",
                    cluster.certificate().display()
                ));
            }
            let log = cluster.dir.path().join("server.log");
            let ok = cluster
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return cluster;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if attempt == 4 || !text.contains("could not bind") {
                panic!("PostgreSQL did not start; its log:\n{text}");
            }
        }
        unreachable!()
    }

    /// The certificate of the CA that signed the server's (PEM), for clusters from
    /// [`Cluster::start_tls`]: what `sslrootcert` should name.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("root.crt")
    }

    /// For clusters from [`Cluster::start_tls`]: a client certificate and key (PEM) for
    /// `role`, signed by the cluster's CA, and `role` made to log in with it only
    /// (`hostssl … cert`), as services that hand out client certificates do.
    pub fn client_certificate(&self, role: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        let (crt, key, csr, ext) = (
            d.join(format!("{role}.crt")),
            d.join(format!("{role}.key")),
            d.join(format!("{role}.csr")),
            d.join("client-ext.cnf"),
        );
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        sign(d, role, &ext, &key, &crt, &csr);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let hba = self.data_dir().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("hostssl all {role} all cert\n{old}")).unwrap();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data_dir().as_os_str(),
                "reload".as_ref(),
            ],
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        (crt, key)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        match &self.run_as {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
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
            .host_path(self.dir.path())
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
            .unwrap_or_else(|e| panic!("SQL failed in {db}: {e}\n{sql}"));
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
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The TempDir removes the directory after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_serves_and_disappears() {
        let c = Cluster::start();
        let port = c.port();
        c.create_database("t", None);
        assert!(c.database_exists("t"));
        let n: i64 = c
            .connect("t")
            .query_one("SELECT (41 + 1)::int8", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 42);
        let bad = postgres::Client::connect(&c.url(SUPERUSER, Some("wrong"), "t"), postgres::NoTls);
        assert!(bad.is_err(), "TCP connections must need the password");
        let dir = c.dir.path().to_path_buf();
        drop(c);
        assert!(!dir.exists(), "cluster directory removed");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "server stopped"
        );
    }

    #[test]
    fn stops_when_a_test_panics() {
        let dir = std::sync::Mutex::new(None);
        let r = std::panic::catch_unwind(|| {
            let c = Cluster::start();
            *dir.lock().unwrap() = Some(c.dir.path().to_path_buf());
            panic!("test failure inside");
        });
        assert!(r.is_err());
        let dir = dir.into_inner().unwrap().unwrap();
        assert!(!dir.exists(), "cluster directory removed after a panic");
    }
}

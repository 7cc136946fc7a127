//! The test kit's own tests: clusters start, serve, restart, crash and disappear, on every
//! server version at hand.

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

fn show(c: &Cluster, name: &str) -> String {
    c.connect("postgres")
        .query_one(&format!("SHOW {name}"), &[])
        .unwrap()
        .get(0)
}

fn rows(c: &Cluster) -> i64 {
    c.connect("postgres")
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0)
}

/// A temporary directory the server user can enter (a new one is root's and 0700).
fn server_tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    give_to_server_user(d.path());
    d
}

/// A `cp -a` copy of the (stopped) cluster's data directory, at `to`.
fn copy_data(c: &Cluster, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(c.data_dir())
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a of the data directory failed");
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap();
}

/// A server with no listener on `port` refuses TCP connections.
fn refused(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// Builder settings reach the server, later ones win over earlier ones and over the
/// defaults, and live in postgresql.conf (so ALTER SYSTEM can still change them).
fn check_settings(bindir: &Path) {
    let c = Cluster::builder()
        .bindir(bindir.to_path_buf())
        .setting("work_mem", "5MB")
        .setting("work_mem", "7MB")
        .setting("full_page_writes", "on")
        .setting("cluster_name", r"it's a \ test")
        .start();
    assert_eq!(show(&c, "work_mem"), "7MB");
    assert_eq!(show(&c, "full_page_writes"), "on");
    assert_eq!(show(&c, "fsync"), "off", "defaults stay unless overridden");
    assert_eq!(show(&c, "cluster_name"), r"it's a \ test");
    // ALTER SYSTEM refuses to run inside a transaction block: a statement of its own.
    c.execute("postgres", "ALTER SYSTEM SET work_mem = '9MB'");
    c.execute("postgres", "SELECT pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(30);
    while show(&c, "work_mem") != "9MB" {
        assert!(
            Instant::now() < deadline,
            "ALTER SYSTEM did not take effect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restart keeps the port, the settings and the data; stop really stops.
fn check_restart(bindir: &Path) {
    let mut c = Cluster::builder()
        .bindir(bindir.to_path_buf())
        .setting("work_mem", "7MB")
        .start();
    c.execute(
        "postgres",
        "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2)",
    );
    let port = c.port();
    assert!(c.is_running());
    c.restart();
    assert_eq!(c.port(), port);
    assert!(c.is_running());
    assert_eq!(rows(&c), 2);
    assert_eq!(show(&c, "work_mem"), "7MB");
    c.stop();
    assert!(!c.is_running());
    assert!(refused(port), "stopped server still listens");
    c.stop(); // stopping a stopped server does nothing
    c.restart(); // and a stopped server restarts
    assert_eq!(rows(&c), 2);
}

/// kill crashes the server; a restart runs crash recovery and keeps committed rows.
fn check_kill(bindir: &Path) {
    let mut c = Cluster::builder().bindir(bindir.to_path_buf()).start();
    // synchronous_commit=on for this transaction: its WAL is written before COMMIT returns.
    c.execute(
        "postgres",
        "CREATE TABLE t (n int); SET synchronous_commit = on; INSERT INTO t VALUES (1)",
    );
    let port = c.port();
    c.kill();
    assert!(!c.is_running());
    assert!(refused(port), "killed server still listens");
    assert!(
        c.data_dir().join("postmaster.pid").exists(),
        "a crash leaves the pid file"
    );
    c.restart();
    assert!(c.is_running());
    assert_eq!(rows(&c), 1);
    assert!(
        c.log().contains("not properly shut down"),
        "no crash recovery in the log:\n{}",
        c.log()
    );
}

/// A server on a copy of a stopped cluster's data directory: the copy's own port and
/// socket settings lose to the command line, settings apply, the data is there, and the
/// directory stays after drop. Then recovery that fails, and recovery that promotes.
fn check_existing(bindir: &Path) {
    let mut c = Cluster::builder()
        .bindir(bindir.to_path_buf())
        .setting("full_page_writes", "on")
        .start();
    c.execute(
        "postgres",
        "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2), (3)",
    );
    c.stop();
    let parent = server_tempdir();

    let copy = parent.path().join("copy");
    copy_data(&c, &copy);
    append(
        &copy.join("postgresql.auto.conf"),
        "port = 1\nunix_socket_directories = '/nonexistent'\nlisten_addresses = '*'\n",
    );
    let e = Cluster::start_existing(&copy, bindir)
        .setting("work_mem", "3MB")
        .start();
    assert_eq!(show(&e, "port"), e.port().to_string());
    assert_eq!(show(&e, "listen_addresses"), "127.0.0.1");
    assert_eq!(show(&e, "work_mem"), "3MB");
    assert_eq!(
        show(&e, "full_page_writes"),
        "on",
        "the copy keeps its settings"
    );
    assert_eq!(rows(&e), 3);
    assert_eq!(e.data_dir(), copy);
    let socket_dir = e.socket_dir();
    drop(e);
    assert!(
        copy.join("PG_VERSION").is_file(),
        "the caller's data dir stays"
    );
    assert!(!socket_dir.exists(), "the socket directory goes");

    // Archive recovery towards a target the WAL never reaches: the server must stop.
    let failing = parent.path().join("failing");
    copy_data(&c, &failing);
    std::fs::write(failing.join("recovery.signal"), "").unwrap();
    let err = Cluster::start_existing(&failing, bindir)
        .setting("restore_command", "false")
        .setting("recovery_target_lsn", "7FFFFFFF/0")
        .try_start()
        .err()
        .expect("recovery to an unreachable target must fail");
    assert!(
        err.contains("recovery ended before configured recovery target was reached"),
        "{err}"
    );

    // Archive recovery to the end of the WAL, then promotion to a new timeline.
    let promoting = parent.path().join("promoting");
    copy_data(&c, &promoting);
    std::fs::write(promoting.join("recovery.signal"), "").unwrap();
    let p = Cluster::start_existing(&promoting, bindir)
        .setting("restore_command", "false")
        .start();
    p.wait_promoted(Duration::from_secs(120)).unwrap();
    assert_eq!(rows(&p), 3);
    p.execute("postgres", "INSERT INTO t VALUES (4)");
    assert!(!promoting.join("recovery.signal").exists());
}

#[test]
fn settings_reach_the_server() {
    check_settings(&find_bindir().expect("server binaries"));
}

#[test]
fn env_reaches_the_server_process() {
    let c = Cluster::builder()
        .env("STRONGROOM_TESTKIT_PROBE", "it's here")
        .start();
    let probe = c.socket_dir().join("probe");
    c.execute(
        "postgres",
        &format!(
            // The program reads what COPY sends before it exits: one that exits first
            // makes COPY fail with a broken pipe, whenever it wins that race.
            "COPY (SELECT 1) TO PROGRAM 'cat > /dev/null; printf %s \"$STRONGROOM_TESTKIT_PROBE\" > {}'",
            probe.display()
        )
        .replace("it's", "it''s"),
    );
    assert_eq!(std::fs::read_to_string(&probe).unwrap(), "it's here");
}

#[test]
fn tls_cluster_refuses_plain_tcp() {
    let mut c = Cluster::start_tls();
    assert_eq!(show(&c, "ssl"), "on");
    assert!(c.certificate().is_file());
    let plain = postgres::Client::connect(&c.super_url("postgres"), postgres::NoTls);
    assert!(plain.is_err(), "TCP without TLS must be refused");
    c.restart();
    assert_eq!(show(&c, "ssl"), "on", "TLS survives a restart");
}

#[test]
fn restart_keeps_port_and_data() {
    check_restart(&find_bindir().expect("server binaries"));
}

#[test]
fn kill_then_restart_recovers() {
    check_kill(&find_bindir().expect("server binaries"));
}

#[test]
fn starts_on_an_existing_data_directory() {
    check_existing(&find_bindir().expect("server binaries"));
}

#[test]
fn bindirs_lists_each_server_once() {
    let dirs = bindirs();
    assert_eq!(dirs.first(), find_bindir().as_ref());
    if let Some(pg18) = pg18_bindir() {
        assert!(dirs.iter().any(|d| d == &pg18) || find_bindir() == Some(pg18));
    }
    let mut real: Vec<PathBuf> = dirs.iter().map(|d| d.canonicalize().unwrap()).collect();
    real.sort();
    real.dedup();
    assert_eq!(real.len(), dirs.len());
}

#[test]
fn everything_on_postgresql_18() {
    let Some(bindir) = pg18_bindir() else {
        eprintln!(
            "skipped: no PostgreSQL 18 binaries (STRONGROOM_TEST_PG18_BINDIR or \
             {PG18_DEFAULT_BINDIR}); ./scripts/test installs them"
        );
        return;
    };
    let c = Cluster::builder().bindir(bindir.clone()).start();
    assert_eq!(c.major_version(), 18);
    drop(c);
    check_settings(&bindir);
    check_restart(&bindir);
    check_kill(&bindir);
    check_existing(&bindir);
}

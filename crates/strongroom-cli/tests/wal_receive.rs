//! `wal receive` end to end on real clusters (PostgreSQL 15 and 18): WAL streamed into the
//! repository as pieces, then whole segments beside `archive_command`; and the proof the
//! issue asks for. A writer commits numbered rows and records when each commit was
//! acknowledged; the primary and the receiver are SIGKILLed together at a random moment;
//! the base backup is restored with `--latest` (and with `--time` one second before the
//! kill), and acknowledged commits missing from the restore are counted: none with
//! `--synchronous` and `synchronous_standby_names = 'strongroom'`, and otherwise only
//! commits acknowledged in the last second before the kill (the writer's own timestamps;
//! nothing here times strongroom). `STRONGROOM_RECEIVE_TRIALS` (default 1) sets the trials
//! per version and mode; `bench/wal-receive-proof.sh` runs the 10.
//!
//! Random choices take `STRONGROOM_TEST_SEED` (printed) to replay a run.

mod common;

use common::pg::{Rig, exe, open_up, server_env};
use common::{Env, Store, envs_on, seed};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};
use strongroom::hotel::Rng;
use strongroom_testkit::postgres::{Cluster, bindirs, give_to_server_user};

/// The uid and gid of the server's system user when the tests run as root (the repository
/// belongs to it: `archive_command` writes there too).
fn server_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer into static storage or null.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no postgres user");
    // SAFETY: checked non-null above.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// A repository and a cluster (archive_command into the repository), with
/// `synchronous_commit = on` (the testkit turns it off) and, for `synchronous`,
/// `synchronous_standby_names = 'strongroom'`.
fn rig(env: Env, bindir: &Path, synchronous: bool) -> Rig {
    rig_with(env, bindir, synchronous, false, true)
}

/// [`rig`], the server speaking TLS when `tls` (its certificate from the testkit's CA), and
/// archiving with `archive_command` only when `archive`.
fn rig_with(env: Env, bindir: &Path, synchronous: bool, tls: bool, archive: bool) -> Rig {
    env.init();
    let key = env.path("wal.key");
    env.cmd()
        .args(["key", "add", "--new-key-file"])
        .arg(&key)
        .args(["--label", "archive_command"])
        .assert()
        .success();
    give_to_server_user(&key);
    open_up(&env);
    let mut b = Cluster::builder()
        .bindir(bindir.to_path_buf())
        .tls(tls)
        .setting("wal_level", "replica")
        .setting("track_commit_timestamp", "on")
        .setting("max_wal_senders", "4")
        .setting("synchronous_commit", "on");
    if archive {
        b = b.setting("archive_mode", "on").setting(
            "archive_command",
            &format!("{} wal push %p", exe().display()),
        );
    }
    if synchronous {
        b = b.setting("synchronous_standby_names", "strongroom");
    }
    for (k, v) in server_env(&env, &key) {
        b = b.env(k, v);
    }
    let pg = b.start();
    Rig {
        env,
        key,
        bindir: bindir.to_path_buf(),
        pg,
    }
}

/// `strongroom wal receive URL` in the background, as the server's user when root, its log
/// in `receive-N.log`.
fn receive(rig: &Rig, synchronous: bool, n: usize) -> Receiver {
    receive_from(rig, &rig.url(), synchronous, n)
}

/// [`receive`] from `url`.
fn receive_from(rig: &Rig, url: &str, synchronous: bool, n: usize) -> Receiver {
    let log = std::fs::File::create(rig.env.path(&format!("receive-{n}.log"))).unwrap();
    give_to_server_user(&rig.env.path(&format!("receive-{n}.log")));
    let mut c = std::process::Command::new(exe());
    c.args(["wal", "receive", url, "-vv"])
        .current_dir("/")
        .env_remove("STRONGROOM_PASSWORD")
        .env_remove("STRONGROOM_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log);
    if synchronous {
        c.arg("--synchronous");
    }
    for (k, v) in server_env(&rig.env, &rig.key) {
        c.env(k, v);
    }
    if let Some((uid, gid)) = server_user() {
        c.uid(uid).gid(gid);
    }
    Receiver(c.spawn().unwrap())
}

/// A running `wal receive`, killed when dropped: a test that fails midway leaves no
/// receiver behind retrying a server that is gone.
struct Receiver(Child);

impl std::ops::Deref for Receiver {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Receiver {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn receive_log(rig: &Rig, n: usize) -> String {
    std::fs::read_to_string(rig.env.path(&format!("receive-{n}.log"))).unwrap_or_default()
}

/// SIGTERM, then the exit status: 0 once it wrote what it received.
fn stop(child: &mut Child) -> std::process::ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

fn system_id(pg: &Cluster) -> String {
    pg.connect("postgres")
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .unwrap()
        .get(0)
}

/// The archive of `sysid` on timeline 1 as the store lists it: names relative to the
/// timeline folder.
fn timeline1(env: &Env, sysid: &str) -> BTreeSet<String> {
    let prefix = format!("wal/{sysid}/00000001/");
    env.storage()
        .list(&prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key.strip_prefix(&prefix).unwrap().to_string())
        .collect()
}

/// Waits (polling, up to two minutes) until `cond` holds of the listing; panics with it and
/// the receiver's log otherwise.
fn wait_for(
    rig: &Rig,
    child: &mut Child,
    sysid: &str,
    what: &str,
    cond: impl Fn(&BTreeSet<String>) -> bool,
) {
    for _ in 0..1200 {
        if cond(&timeline1(&rig.env, sysid)) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the receiver ended ({status}) before {what}:\n{}",
                receive_log(rig, 0)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not happen; archive: {:?}\nreceiver log:\n{}",
        timeline1(&rig.env, sysid),
        receive_log(rig, 0)
    );
}

#[test]
fn streams_pieces_then_whole_segments_beside_archive_command() {
    for bindir in bindirs() {
        let env = envs_on(&[Store::Local]).remove(0);
        let rig = rig(env, &bindir, false);
        let label = format!("PostgreSQL {}", rig.pg.major_version());
        let sysid = system_id(&rig.pg);
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "app",
            "CREATE TABLE t (id serial PRIMARY KEY, at timestamptz)",
        );
        let mut child = receive(&rig, false, 0);
        rig.pg.execute(
            "app",
            "INSERT INTO t (at) SELECT now() FROM generate_series(1, 100)",
        );
        // The segment being written arrives as pieces.
        wait_for(&rig, &mut child, &sysid, "a piece", |l| {
            l.iter().any(|n| n.contains(".pieces/"))
        });
        let current: String = rig
            .pg
            .connect("postgres")
            .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
            .unwrap()
            .get(0);
        // archive_command archives the segment too: whoever comes second finds the same
        // bytes there, and the receiver deletes its pieces.
        rig.archive_now();
        wait_for(
            &rig,
            &mut child,
            &sysid,
            "the segment whole, its pieces gone",
            |l| {
                l.contains(&current)
                    && !l
                        .iter()
                        .any(|n| n.starts_with(&format!("{current}.pieces")))
            },
        );
        let log = receive_log(&rig, 0);
        assert!(
            log.contains(&format!("archived {current} (received whole)"))
                || log.contains("was archived already")
                || !log.contains("conflict"),
            "{label}: {log}"
        );
        let status = stop(&mut child);
        assert!(
            status.success(),
            "{label}: {status:?}\n{}",
            receive_log(&rig, 0)
        );
        let log = receive_log(&rig, 0);
        assert!(
            log.contains("created physical replication slot strongroom"),
            "{label}: {log}"
        );
        assert!(!log.contains("ERROR"), "{label}: {log}");
        // The slot stays, holding WAL for the next run.
        let slots: i64 = rig
            .pg
            .connect("postgres")
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'strongroom'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(slots, 1, "{label}");
    }
}

/// Waits (polling, up to two minutes) until the receiver's durable position, as the server
/// hears it, reaches the server's current position.
fn caught_up(rig: &Rig, label: &str) {
    let mut c = rig.pg.connect("postgres");
    let target: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    for _ in 0..1200 {
        let done: bool = c
            .query_one(
                "SELECT COALESCE(bool_or(flush_lsn >= $1::text::pg_lsn), false) \
                 FROM pg_stat_replication WHERE application_name = 'strongroom'",
                &[&target],
            )
            .unwrap()
            .get(0);
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{label}: the receiver did not reach {target}:\n{}",
        receive_log(rig, 0)
    );
}

/// One trial's figures.
#[derive(Debug)]
struct Trial {
    acknowledged: usize,
    lost_latest: usize,
    lost_window_ms: u128,
    time_target_ok: bool,
}

fn ms_before(kill: SystemTime, t: SystemTime) -> u128 {
    kill.duration_since(t).map(|d| d.as_millis()).unwrap_or(0)
}

/// Starts a server on a restored directory without archiving (a fork must not archive into
/// the repository the next trials restore from) nor a synchronous standby to wait for.
fn start_restored(rig: &Rig, dir: &Path) -> Result<Cluster, String> {
    let mut b = Cluster::start_existing(dir, &rig.bindir)
        .setting("archive_mode", "off")
        .setting("synchronous_standby_names", "");
    for (k, v) in server_env(&rig.env, &rig.key) {
        b = b.env(k, v);
    }
    let pg = b
        .try_start()
        .map_err(|log| format!("the restored cluster did not start:\n{log}"))?;
    pg.wait_promoted(Duration::from_secs(180))?;
    Ok(pg)
}

fn restore(rig: &Rig, name: &str, target: &[&str]) -> Result<Cluster, String> {
    let dir = rig.env.path(name);
    let out = rig
        .env
        .cmd()
        .args(["restore", "latest", "--data-dir"])
        .arg(&dir)
        .args(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore {target:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start_restored(rig, &dir)
}

fn restored_rows(pg: &Cluster) -> Vec<(i64, String)> {
    pg.connect("app")
        .query(
            "SELECT id, to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM oracle ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).unwrap();
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn trial(rig: &mut Rig, synchronous: bool, n: usize, rng: &mut Rng, label: &str) -> Trial {
    let mut child = receive(rig, synchronous, n);
    // Numbered commits, each recorded with the moment it was acknowledged.
    let url = rig.url();
    let first: i64 = rig
        .pg
        .connect("app")
        .query_one("SELECT COALESCE(max(id), 0) + 1 FROM oracle", &[])
        .unwrap()
        .get(0);
    let writer = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut acked = Vec::new();
        for id in first.. {
            match c.execute("INSERT INTO oracle (id) VALUES ($1)", &[&id]) {
                Ok(_) => acked.push((id, SystemTime::now())),
                Err(_) => break,
            }
        }
        acked
    });
    // A random moment, 1.5 to 4 s into the writing.
    std::thread::sleep(Duration::from_millis(1500 + rng.below(2500)));
    let kill = SystemTime::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    rig.pg.kill();
    let _ = child.wait();
    let acked = writer.join().unwrap();
    assert!(!acked.is_empty(), "{label}: the writer committed nothing");

    let with_log = |e: String| -> Cluster {
        panic!(
            "{label}, trial {n}: {e}\nreceiver log:\n{}",
            receive_log(rig, n)
        )
    };
    let latest = restore(rig, &format!("latest-{n}"), &["--latest"]).unwrap_or_else(with_log);
    let rows = restored_rows(&latest);
    drop(latest);
    let present: BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
    // A prefix: no gap in what came back.
    if let (Some(lo), Some(hi)) = (present.first(), present.last()) {
        assert_eq!(
            present.len() as i64,
            hi - lo + 1,
            "{label}: the restore holds a gap"
        );
    }
    let lost: Vec<&(i64, SystemTime)> = acked
        .iter()
        .filter(|(id, _)| !present.contains(id))
        .collect();
    let window = lost
        .iter()
        .map(|(_, at)| ms_before(kill, *at))
        .max()
        .unwrap_or(0);

    // One second before the kill: every commit acknowledged by then is there, none made
    // after it.
    let target_at = kill - Duration::from_secs(1);
    let target = rfc3339(target_at);
    let at_time = restore(rig, &format!("time-{n}"), &["--time", &target]).unwrap_or_else(with_log);
    let rows = restored_rows(&at_time);
    drop(at_time);
    let present: BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
    let before: Vec<i64> = acked
        .iter()
        .filter(|(_, at)| *at <= target_at)
        .map(|(id, _)| *id)
        .collect();
    let time_target_ok = before.iter().all(|id| present.contains(id))
        && rows
            .iter()
            .all(|(_, committed)| committed.as_str() <= target.as_str());
    assert!(
        time_target_ok,
        "{label}: --time {target}: acknowledged by then {} (up to id {:?}), restored {} (up to {:?}), newest restored commit {:?}",
        before.len(),
        before.last(),
        present.len(),
        present.last(),
        rows.last()
    );
    // The next trial goes on from the crashed primary.
    rig.pg.restart();
    Trial {
        acknowledged: acked.len(),
        lost_latest: lost.len(),
        lost_window_ms: window,
        time_target_ok,
    }
}

fn trials() -> usize {
    std::env::var("STRONGROOM_RECEIVE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn proof(synchronous: bool) {
    let seed = seed();
    let mut rng = Rng::new(seed);
    for bindir in bindirs() {
        let env = envs_on(&[Store::Local]).remove(0);
        let mut rig = rig(env, &bindir, synchronous);
        let mode = if synchronous {
            "synchronous"
        } else {
            "batched"
        };
        let label = format!(
            "PostgreSQL {}, {mode} (seed {seed})",
            rig.pg.major_version()
        );
        // With synchronous_standby_names naming it, the receiver must run before anything
        // commits.
        let mut setup = receive(&rig, synchronous, 999);
        rig.pg.create_database("app", None);
        rig.pg
            .execute("app", "CREATE TABLE oracle (id bigint PRIMARY KEY)");
        // The backup asks the server whether strongroom streams: only once it does.
        let sysid = system_id(&rig.pg);
        wait_for(&rig, &mut setup, &sysid, "a first piece", |l| {
            l.iter().any(|n| n.contains(".pieces/"))
        });
        let snap = rig.backup();
        assert_eq!(snap["metadata"]["wal_included"], false, "{label}: {snap}");
        assert!(stop(&mut setup).success(), "{label}");
        for n in 0..trials() {
            let t = trial(&mut rig, synchronous, n, &mut rng, &label);
            eprintln!(
                "{label}, trial {n}: {} commits acknowledged, {} lost (the oldest lost acknowledged {} ms before the kill); --time 1 s before: ok",
                t.acknowledged, t.lost_latest, t.lost_window_ms
            );
            if synchronous {
                assert_eq!(t.lost_latest, 0, "{label}, trial {n}: {t:?}");
            } else {
                assert!(
                    t.lost_window_ms <= 1000,
                    "{label}, trial {n}: commits acknowledged more than a second before the kill were lost: {t:?}\nreceiver log:\n{}",
                    receive_log(&rig, n)
                );
            }
            assert!(t.time_target_ok);
        }
    }
}

#[test]
fn synchronous_receive_loses_no_acknowledged_commit_when_the_primary_dies() {
    proof(true);
}

#[test]
fn batched_receive_loses_at_most_a_second_of_commits_when_the_primary_dies() {
    proof(false);
}

/// `status --json` (the config in the repository's directory): the `wal.slot` check.
fn slot_check(env: &Env) -> serde_json::Value {
    named_check(env, "wal.slot")
}

/// `status --json` (the config in the repository's directory): the check `name` of the
/// first source.
fn named_check(env: &Env, name: &str) -> serde_json::Value {
    let out = env
        .cmd()
        .args(["status", "--json", "--no-alerts"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    doc["sources"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {doc:#}"))
        .clone()
}

#[test]
fn status_is_critical_without_the_slot_and_warns_when_it_holds_back_too_much() {
    let bindir = bindirs().remove(0);
    let env = envs_on(&[Store::Local]).remove(0);
    let rig = rig(env, &bindir, false);
    std::fs::write(
        rig.env.path("strongroom.toml"),
        format!(
            "[sources.db]\nurl = \"{}\"\ncontinuous = true\nslot_max_retained = \"4MiB\"\n",
            rig.url()
        ),
    )
    .unwrap();
    rig.pg.create_database("app", None);
    let c = slot_check(&rig.env);
    assert_eq!(c["level"], "critical", "no slot yet: {c}");
    assert!(
        c["detail"].as_str().unwrap().contains("does not exist"),
        "{c}"
    );

    let sysid = system_id(&rig.pg);
    let mut child = receive(&rig, false, 0);
    rig.pg.execute("app", "CREATE TABLE t AS SELECT 1 AS x");
    wait_for(&rig, &mut child, &sysid, "a piece", |l| {
        l.iter().any(|n| n.contains(".pieces/"))
    });
    caught_up(&rig, "status");
    let c = slot_check(&rig.env);
    assert_eq!(c["level"], "ok", "{c}");
    assert!(stop(&mut child).success());

    // With no receiver, the slot holds back what the server writes.
    rig.pg.execute(
        "app",
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g",
    );
    let c = slot_check(&rig.env);
    assert_eq!(c["level"], "warning", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("slot_max_retained"),
        "{c}"
    );

    rig.pg
        .execute("postgres", "SELECT pg_drop_replication_slot('strongroom')");
    let c = slot_check(&rig.env);
    assert_eq!(c["level"], "critical", "{c}");
}

#[test]
fn streams_over_tls_with_the_servers_certificate_checked() {
    let bindir = bindirs().remove(0);
    let env = envs_on(&[Store::Local]).remove(0);
    let rig = rig_with(env, &bindir, false, true, true);
    let sysid = system_id(&rig.pg);
    let url = format!(
        "{}?sslmode=verify-ca&sslrootcert={}",
        rig.url(),
        rig.pg.certificate().display()
    );
    let mut child = receive_from(&rig, &url, false, 0);
    rig.pg.create_database("app", None);
    wait_for(&rig, &mut child, &sysid, "a piece over TLS", |l| {
        l.iter().any(|n| n.contains(".pieces/"))
    });
    let ssl: bool = rig
        .pg
        .connect("postgres")
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) \
             WHERE r.application_name = 'strongroom'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl, "the replication connection is not encrypted");
    assert!(stop(&mut child).success(), "{}", receive_log(&rig, 0));
}

/// Without `archive_command`: a physical backup taken while `wal receive` streams relies on
/// the archive (it carries no WAL of its own), and a restore reaches every commit received.
#[test]
fn works_instead_of_archive_command() {
    for bindir in bindirs() {
        let env = envs_on(&[Store::Local]).remove(0);
        let rig = rig_with(env, &bindir, false, false, false);
        let label = format!("PostgreSQL {}", rig.pg.major_version());
        let sysid = system_id(&rig.pg);
        let mut child = receive(&rig, false, 0);
        rig.pg.create_database("app", None);
        rig.pg
            .execute("app", "CREATE TABLE oracle (id bigint PRIMARY KEY)");
        // The backup asks the server whether strongroom streams: only once it does.
        wait_for(&rig, &mut child, &sysid, "a first piece", |l| {
            l.iter().any(|n| n.contains(".pieces/"))
        });
        let snap = rig.backup();
        assert_eq!(snap["metadata"]["wal_included"], false, "{label}: {snap}");
        rig.pg.execute(
            "app",
            "INSERT INTO oracle SELECT g FROM generate_series(1, 500) g",
        );
        // Received up to the server's position (the slot's flush position), then stopped.
        caught_up(&rig, &label);
        // archive_mode = off is no alarm while the stream archives.
        std::fs::write(
            rig.env.path("strongroom.toml"),
            format!("[sources.db]\nurl = \"{}\"\n", rig.url()),
        )
        .unwrap();
        let archiver = named_check(&rig.env, "wal.archiver");
        assert_eq!(archiver["level"], "ok", "{label}: {archiver}");
        assert!(
            archiver["detail"].as_str().unwrap().contains("wal receive"),
            "{label}: {archiver}"
        );
        assert_eq!(named_check(&rig.env, "wal.slot")["level"], "ok", "{label}");
        assert!(stop(&mut child).success(), "{label}");
        let listed = timeline1(&rig.env, &sysid);
        assert!(
            listed.iter().any(|n| n.contains(".pieces/")),
            "{label}: the newest WAL is in pieces: {listed:?}"
        );
        let restored =
            restore(&rig, "latest", &["--latest"]).unwrap_or_else(|e| panic!("{label}: {e}"));
        let n: i64 = restored
            .connect("app")
            .query_one("SELECT count(*) FROM oracle", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 500, "{label}");
    }
}

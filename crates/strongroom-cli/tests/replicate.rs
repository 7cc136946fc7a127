//! `strongroom replicate`: continuous capture of a SQLite database written by a real
//! writer, killed at random moments, restored to its newest state and to a time.

mod common;

use common::{Env, Store, seed};
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A writer of numbered commits: row `id` n is the n-th commit; the time each commit
/// returned is kept in memory (what the application knows it committed).
struct Writer {
    committed: Arc<Mutex<Vec<SystemTime>>>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(db: &Path) -> Writer {
        let committed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (c, s, p, db) = (
            committed.clone(),
            stop.clone(),
            paused.clone(),
            db.to_path_buf(),
        );
        let thread = std::thread::spawn(move || {
            let conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            conn.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
            let mut n = c.lock().unwrap().len() as i64;
            while !s.load(Ordering::SeqCst) {
                if p.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                n += 1;
                conn.execute("INSERT INTO t(id, pad) VALUES (?1, randomblob(300))", [n])
                    .unwrap();
                c.lock().unwrap().push(SystemTime::now());
                // About 2,000 commits a second: busy, but leaves the machine to the rest.
                std::thread::sleep(Duration::from_micros(400));
            }
        });
        Writer {
            committed,
            stop,
            paused,
            thread: Some(thread),
        }
    }

    fn committed(&self) -> Vec<SystemTime> {
        self.committed.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<SystemTime> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.committed()
    }
}

fn wal_db(env: &Env) -> PathBuf {
    let db = env.path("hotel.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB);",
    )
    .unwrap();
    db
}

/// A config with one continuous source and small checkpoint thresholds, so that the
/// brake runs often under the writer.
fn config(env: &Env, db: &Path) -> PathBuf {
    let cfg = env.path("strongroom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sources.hotel]\nurl = \"sqlite:{}\"\ncontinuous = true\n\n[replicate]\ninterval = \"1s\"\ncheckpoint_frames = 200\nbrake_frames = 1500\n",
            db.display()
        ),
    )
    .unwrap();
    cfg
}

fn replicate(env: &Env, cfg: &Path) -> Running {
    Running(Some(
        env.std_cmd()
            .env("STRONGROOM_CONFIG", cfg)
            .args(["replicate", "hotel", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// A running `replicate` (or daemon), killed when dropped: a test that fails midway
/// leaves nothing behind.
struct Running(Option<Child>);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("running")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The pulse the replicator of `hotel` leaves in the state directory.
fn pulse(env: &Env) -> Option<Value> {
    let root = env.path("state").join("replica");
    for repo in std::fs::read_dir(root).ok()?.flatten() {
        if let Ok(b) = std::fs::read(repo.path().join("hotel.json")) {
            return serde_json::from_slice(&b).ok();
        }
    }
    None
}

fn caught_up(p: &Value) -> Option<SystemTime> {
    let t: jiff::Timestamp = p["caught_up_at"].as_str()?.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_micros(t.as_microsecond() as u64))
}

/// Waits until the replicator `pid` says it has stored everything committed before `after`.
fn wait_caught_up(env: &Env, child: &mut Child, after: SystemTime) -> SystemTime {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(p) = pulse(env) {
            if p["pid"].as_u64() == Some(child.id() as u64) {
                if let Some(c) = caught_up(&p).filter(|c| *c >= after) {
                    return c;
                }
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            let out = child.wait_with_output_ref();
            panic!("replicate exited ({st}): {out}");
        }
        assert!(Instant::now() < deadline, "replicate never caught up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

trait Output {
    fn wait_with_output_ref(&mut self) -> String;
}

impl Output for Child {
    fn wait_with_output_ref(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    }
}

/// Restores the newest state (or the state at `time`) into a fresh file; returns the ids
/// it holds, checked to be 1..=n without a gap.
fn restored_ids(env: &Env, cfg: &Path, name: &str, time: Option<&str>) -> (i64, Value) {
    let out = env.path(name);
    let mut args = vec![
        "restore".to_string(),
        "latest".into(),
        "--source".into(),
        "hotel".into(),
        "--to".into(),
        out.display().to_string(),
    ];
    if let Some(t) = time {
        args.push("--time".into());
        args.push(t.into());
    }
    let doc = common::json_of({
        let mut c = env.cmd();
        c.env("STRONGROOM_CONFIG", cfg).args(&args);
        c
    });
    let c = Connection::open(&out).unwrap();
    let (count, min, max): (i64, Option<i64>, Option<i64>) = c
        .query_row("SELECT count(*), min(id), max(id) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let max = max.unwrap_or(0);
    assert_eq!(
        count, max,
        "the restored ids have a gap: {count} rows up to {max}"
    );
    assert!(
        min.is_none_or(|m| m == 1),
        "the restored ids start at {min:?}"
    );
    drop(c);
    std::fs::remove_file(&out).unwrap();
    (max, doc)
}

#[test]
fn twenty_kills_each_leave_a_prefix_of_the_commits_without_a_gap() {
    let env = Store::Local.env().unwrap();
    env.init();
    let db = wal_db(&env);
    let cfg = config(&env, &db);
    let before_schema: Vec<String> = schema(&db);
    let writer = Writer::start(&db);
    let mut rng = seed();
    let mut lost_seconds = Vec::new();
    for trial in 0..20 {
        let mut child = replicate(&env, &cfg);
        let started = SystemTime::now();
        wait_caught_up(&env, &mut child, started);
        // A random moment to kill it: 0.2 to 2.5 s into its work.
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(200 + (rng >> 33) % 2300));
        let promised = pulse(&env).as_ref().and_then(caught_up).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let killed_at = SystemTime::now();
        let committed = writer.committed();
        let (max, _) = restored_ids(&env, &cfg, &format!("r{trial}.db"), None);
        // Everything committed before the recovery point the replicator last published
        // is in the restore.
        let owed = committed.iter().take_while(|t| **t < promised).count() as i64;
        assert!(
            max >= owed,
            "trial {trial}: restored up to {max}, but {owed} commits were before the published recovery point"
        );
        let lost = committed.get(max as usize).map_or(0.0, |t| {
            killed_at
                .duration_since(*t)
                .unwrap_or_default()
                .as_secs_f64()
        });
        eprintln!(
            "trial {trial}: {max} of {} commits restored, {lost:.2} s lost",
            committed.len()
        );
        lost_seconds.push(lost);
    }
    lost_seconds.sort_by(f64::total_cmp);
    eprintln!(
        "lost after a kill: median {:.2} s, worst {:.2} s",
        lost_seconds[lost_seconds.len() / 2],
        lost_seconds.last().unwrap()
    );
    // The writer pauses; a last run catches up and stops on SIGTERM: the restore is exact.
    writer.paused.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    let total = writer.committed().len() as i64;
    let mut child = replicate(&env, &cfg);
    wait_caught_up(&env, &mut child, SystemTime::now());
    let out = terminate(child);
    // Whether this run resumed depends on whether the writer's checkpoints restarted the
    // WAL while nothing captured it (then a new base is right, and is deduplicated against
    // the last); a_restart_resumes… covers resuming.
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("the last run: {summary}");
    let (max, doc) = restored_ids(&env, &cfg, "final.db", None);
    assert_eq!(max, total, "the last restore holds every commit");
    if !doc["reached"].is_null() {
        assert_eq!(
            doc["check"], "integrity_check",
            "a replay ends with the full check: {doc}"
        );
    }
    assert_eq!(
        schema(&db),
        before_schema,
        "nothing was written into the application's schema"
    );
    assert_eq!(writer.finish().len() as i64, total);
}

/// Stops a replicator with SIGTERM; it must exit 0. Returns what it printed.
fn terminate(mut running: Running) -> std::process::Output {
    let child = running.0.take().expect("running");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn schema(db: &Path) -> Vec<String> {
    let c = Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT type || ' ' || name FROM sqlite_master ORDER BY 1")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_restart_resumes_and_a_time_restores_what_was_captured_by_then() {
    for env in common::envs_on(&common::LOCAL_AND_S3) {
        env.init();
        let db = wal_db(&env);
        let cfg = config(&env, &db);
        // The application's connection, open throughout as a running application's is.
        let app = Connection::open(&db).unwrap();
        let write = |from: i64, to: i64| {
            for id in from..=to {
                app.execute("INSERT INTO t(id, pad) VALUES (?1, zeroblob(10))", [id])
                    .unwrap();
            }
        };
        write(1, 50);
        let mut child = replicate(&env, &cfg);
        wait_caught_up(&env, &mut child, SystemTime::now());
        write(51, 100);
        let t1_sys = SystemTime::now();
        wait_caught_up(&env, &mut child, t1_sys);
        let t1 = jiff::Timestamp::now();
        write(101, 150);
        wait_caught_up(&env, &mut child, SystemTime::now());
        let out = terminate(child);
        let first: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(first["bases"], 1, "{first}");
        let (max, doc) = restored_ids(&env, &cfg, "t1.db", Some(&t1.to_string()));
        assert_eq!(max, 100, "--time gives what was captured by then: {doc}");
        let (max, _) = restored_ids(&env, &cfg, "all.db", None);
        assert_eq!(max, 150);
        // A clean restart goes on without a new base.
        write(151, 160);
        let mut child = replicate(&env, &cfg);
        wait_caught_up(&env, &mut child, SystemTime::now());
        let out = terminate(child);
        let second: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(second["bases"], 0, "{second}");
        assert_eq!(second["resumed"], true, "{second}");
        let (max, _) = restored_ids(&env, &cfg, "resumed.db", None);
        assert_eq!(max, 160);
        // The application closes: as the last connection it checkpoints and removes the
        // WAL, so the next run cannot know what happened meanwhile and takes a new base.
        write(161, 170);
        drop(app);
        let mut child = replicate(&env, &cfg);
        wait_caught_up(&env, &mut child, SystemTime::now());
        let out = terminate(child);
        let third: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(third["bases"], 1, "{third}");
        let (max, _) = restored_ids(&env, &cfg, "rebased.db", None);
        assert_eq!(max, 170);
    }
}

#[test]
fn a_database_not_in_wal_mode_is_refused_before_the_job_starts() {
    let env = Store::Local.env().unwrap();
    env.init();
    let db = env.path("rollback.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    let url = format!("sqlite:{}", db.display());
    let out = env
        .cmd()
        .args(["replicate", &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "bad_input", "{doc}");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("not WAL") && msg.contains("journal_mode=WAL"),
        "{msg}"
    );
    let journal = env.json(&["journal"]);
    assert_eq!(
        journal.as_array().unwrap().len(),
        0,
        "not a job failure: {journal}"
    );
}

#[test]
fn the_daemon_keeps_a_capture_running_for_a_continuous_source_and_stops_it() {
    let env = Store::Local.env().unwrap();
    env.init();
    let db = wal_db(&env);
    let cfg = config(&env, &db);
    let app = Connection::open(&db).unwrap();
    for id in 1..=20 {
        app.execute("INSERT INTO t(id, pad) VALUES (?1, zeroblob(10))", [id])
            .unwrap();
    }
    let mut daemon = Running(Some(
        env.std_cmd()
            .env("STRONGROOM_CONFIG", &cfg)
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // The capture is the daemon's child: its pulse names a pid that is not the daemon's.
    let deadline = Instant::now() + Duration::from_secs(120);
    let child_pid = loop {
        if let Some(p) = pulse(&env).filter(|p| caught_up(p).is_some()) {
            break p["pid"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the daemon started no capture");
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(child_pid, daemon.id() as u64);
    for id in 21..=40 {
        app.execute("INSERT INTO t(id, pad) VALUES (?1, zeroblob(10))", [id])
            .unwrap();
    }
    let written = SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while pulse(&env)
        .as_ref()
        .and_then(caught_up)
        .is_none_or(|c| c < written)
    {
        assert!(Instant::now() < deadline, "the capture never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status}");
    // The capture stopped with it.
    assert_ne!(
        unsafe { libc::kill(child_pid as i32, 0) },
        0,
        "the capture outlived the daemon"
    );
    let (max, _) = restored_ids(&env, &cfg, "daemon.db", None);
    assert_eq!(max, 40);
}

#[test]
fn prune_deletes_the_segments_of_a_forgotten_base_and_check_reads_the_rest() {
    let env = Store::Local.env().unwrap();
    env.init();
    let db = wal_db(&env);
    let cfg = config(&env, &db);
    let app = Connection::open(&db).unwrap();
    let mut chains = Vec::new();
    for round in 0..2 {
        let mut child = replicate(&env, &cfg);
        wait_caught_up(&env, &mut child, SystemTime::now());
        for id in round * 10 + 1..=round * 10 + 10 {
            app.execute("INSERT INTO t(id, pad) VALUES (?1, zeroblob(10))", [id])
                .unwrap();
        }
        wait_caught_up(&env, &mut child, SystemTime::now());
        let out = terminate(child);
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        chains.push(summary["chain"].as_str().unwrap().to_string());
        // The next run starts a new chain: the application's last connection closed.
        if round == 0 {
            app.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
    }
    assert_ne!(chains[0], chains[1]);
    let frames = |chain: &str| {
        std::fs::read_dir(std::path::Path::new(&env.repo).join("frames").join(chain))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert!(
        frames(&chains[0]) > 0 && frames(&chains[1]) > 0,
        "{chains:?} {:?}",
        std::fs::read_dir(std::path::Path::new(&env.repo).join("frames"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let mut forget = env.cmd();
    forget
        .env("STRONGROOM_CONFIG", &cfg)
        .args(["forget", &chains[0][..12]]);
    forget.assert().success();
    let mut prune = env.cmd();
    prune.env("STRONGROOM_CONFIG", &cfg).arg("prune");
    prune.assert().success();
    assert_eq!(
        frames(&chains[0]),
        0,
        "the forgotten base's segments are gone"
    );
    assert!(frames(&chains[1]) > 0, "the kept base's are not");
    let mut check = env.cmd();
    check
        .env("STRONGROOM_CONFIG", &cfg)
        .args(["check", "--read-data"]);
    check.assert().success();
    let (max, _) = restored_ids(&env, &cfg, "kept.db", None);
    assert_eq!(max, 20);
}

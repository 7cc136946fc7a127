//! `strongroom daemon`, the real binary on a faked wall clock: Debian's libfaketime reads
//! the time from a file the test rewrites (`FAKETIME_TIMESTAMP_FILE`, not cached), so the
//! running daemon, and every job it starts, sees the clock jump forward and back while
//! the test waits only for what the daemon says it saw (`/healthz`'s `ticked_at`).
//!
//! Covered: a slot runs once, a jump back runs nothing twice, a jump forward of days runs
//! one missed run; the heartbeat is pinged only once every source meets its objectives;
//! SIGTERM lets a running backup finish, and past `stop_timeout` interrupts it cleanly.

mod common;

use common::{Env, Store};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A daemon running on a clock the test sets.
struct Running {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
    clock: PathBuf,
}

impl Running {
    /// Starts `strongroom --config CONFIG daemon --listen 127.0.0.1:0 -v` with the clock at
    /// `at` (`YYYY-MM-DD HH:MM:SS`, UTC).
    fn start(env: &Env, config: &Path, at: &str) -> Running {
        let clock = env.path("clock");
        std::fs::write(&clock, format!("@{at}\n")).unwrap();
        let mut cmd = env.std_cmd();
        cmd.args(["--config"])
            .arg(config)
            .args(["daemon", "--listen", "127.0.0.1:0", "-v"])
            .env("LD_PRELOAD", FAKETIME_LIB)
            .env("FAKETIME_TIMESTAMP_FILE", &clock)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("daemon: {line}");
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut r = Running {
            child,
            addr: String::new(),
            log,
            clock,
        };
        r.wait_log("dashboard on http://");
        let log = r.log.lock().unwrap().clone();
        let at = log.find("dashboard on http://").unwrap() + "dashboard on http://".len();
        r.addr = log[at..].split('/').next().unwrap().to_string();
        r
    }

    fn set_clock(&self, at: &str) {
        let tmp = self.clock.with_extension("new");
        std::fs::write(&tmp, format!("@{at}\n")).unwrap();
        std::fs::rename(&tmp, &self.clock).unwrap();
    }

    fn wait_log(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log.lock().unwrap().contains(text) {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("the daemon ended ({s}) before saying {text:?}");
            }
            assert!(Instant::now() < deadline, "the daemon never said {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> Value {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = &text[text.find("\r\n\r\n").expect("a response") + 4..];
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// Waits until the daemon has looked at its schedule at a time in `[from, from + 1 min)`.
    fn wait_tick(&self, from: &str) {
        let from: jiff::Timestamp = format!("{}Z", from.replace(' ', "T")).parse().unwrap();
        let until = from + jiff::SignedDuration::from_mins(1);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let h = self.get("/healthz");
            if let Some(t) = h["ticked_at"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                && t >= from
                && t < until
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never saw {from}: {h}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn terminate(&self) {
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn local() -> Env {
    Store::Local.env().unwrap()
}

/// Journal records of `job`, as `journal --json` lists them.
fn records(env: &Env, job: &str) -> Vec<Value> {
    let v = env.json(&["journal"]);
    v.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["job"] == job)
        .cloned()
        .collect()
}

fn wait_records(env: &Env, job: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = records(env, job);
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{n} {job} records never came: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A config for the hotel database with only its daily backup at 02:00, plus `extra`.
fn config(env: &Env, db: &Path, extra: &str) -> PathBuf {
    config_with(env, db, "off", extra)
}

/// [`config`] with retention and prune at `prune`.
fn config_with(env: &Env, db: &Path, prune: &str, extra: &str) -> PathBuf {
    let path = env.path("strongroom.toml");
    std::fs::write(
        &path,
        format!(
            "[sources.hotel]\nurl = \"sqlite:{}\"\n[sources.hotel.schedule]\nfull = \"0 2 * * *\"\nverify = \"off\"\ndrill = \"off\"\nprune = \"{prune}\"\ncheck = \"off\"\n{extra}",
            db.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_slot_runs_once_through_clock_jumps_back_and_forward() {
    let env = local();
    let (db, _) = env.hotel_source(200);
    let cfg = config(&env, &db, "");
    let mut d = Running::start(&env, &cfg, "2026-12-07 01:59:50");
    d.wait_tick("2026-12-07 01:59:50");
    assert!(records(&env, "backup").is_empty(), "nothing before 02:00");
    d.set_clock("2026-12-07 02:00:02");
    let first = wait_records(&env, "backup", 1);
    assert_eq!(first[0]["ok"], true, "{first:?}");
    // NTP sets the clock back half an hour, then it passes 02:00 again: no second run.
    d.set_clock("2026-12-07 01:30:00");
    d.wait_tick("2026-12-07 01:30:00");
    d.set_clock("2026-12-07 02:00:30");
    d.wait_tick("2026-12-07 02:00:30");
    d.wait_tick("2026-12-07 02:00:30");
    assert_eq!(records(&env, "backup").len(), 1, "02:00 ran twice");
    // The host sleeps three days: the three missed backups are one.
    d.set_clock("2026-12-10 09:00:00");
    let two = wait_records(&env, "backup", 2);
    assert!(
        two[1]["started_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-10"),
        "{two:?}"
    );
    d.set_clock("2026-12-10 09:05:00");
    d.wait_tick("2026-12-10 09:05:00");
    d.wait_tick("2026-12-10 09:05:00");
    assert_eq!(
        records(&env, "backup").len(),
        2,
        "a missed run ran more than once"
    );
    d.terminate();
    assert!(d.wait_exit(Duration::from_secs(30)).success());
}

/// A loopback receiver that counts the requests it answers.
fn receiver() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping", listener.local_addr().unwrap());
    let n = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&n);
    std::thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            count.fetch_add(1, Ordering::SeqCst);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (url, n)
}

#[test]
fn the_heartbeat_is_pinged_only_while_every_source_meets_its_objectives() {
    let env = local();
    let (db, _) = env.hotel_source(200);
    let (url, pings) = receiver();
    let cfg = config_with(
        &env,
        &db,
        "1 2 * * *",
        &format!(
            "[daemon]\nheartbeat_url = \"{url}\"\n[objectives.checklist]\nverify = \"off\"\ncheck = \"off\"\ndrill = \"off\"\n"
        ),
    );
    let mut d = Running::start(&env, &cfg, "2026-12-07 01:59:00");
    // Judged with no backup on record: critical, so no ping.
    let deadline = Instant::now() + Duration::from_secs(60);
    while d.get("/healthz")["judged_at"].is_null() {
        assert!(Instant::now() < deadline, "never judged");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = d.get("/api/status");
    assert_eq!(status["ok"], false, "{status}");
    assert_eq!(
        pings.load(Ordering::SeqCst),
        0,
        "pinged while a source had no backup"
    );
    // The 02:00 backup and the 02:01 retention make the source ok: the judgement after
    // them pings.
    d.set_clock("2026-12-07 02:00:01");
    wait_records(&env, "backup", 1);
    assert_eq!(
        pings.load(Ordering::SeqCst),
        0,
        "pinged before retention ever ran"
    );
    d.set_clock("2026-12-07 02:01:01");
    wait_records(&env, "forget", 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pings.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "never pinged: {}",
            d.get("/api/status")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = d.get("/api/status");
    assert_eq!(status["ok"], true, "{status}");
    d.terminate();
    assert!(d.wait_exit(Duration::from_secs(30)).success());
}

/// Holds an exclusive lock on the SQLite database at `db` (rollback journal) until the file
/// `release` appears; returns once the lock is held.
fn hold_lock(db: &Path, release: &Path) -> Child {
    let ready = release.with_extension("ready");
    let script = format!(
        "import sqlite3, os, time\nc = sqlite3.connect({db:?}, isolation_level=None)\nc.execute('PRAGMA journal_mode=DELETE')\nc.execute('BEGIN EXCLUSIVE')\nopen({ready:?}, 'w').close()\nwhile not os.path.exists({release:?}):\n    time.sleep(0.05)\nc.execute('COMMIT')\n",
        db = db.display().to_string(),
        ready = ready.display().to_string(),
        release = release.display().to_string(),
    );
    let child = std::process::Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the lock was never taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn sigterm_lets_a_running_backup_finish_and_past_the_timeout_interrupts_it() {
    for (stop_timeout, finishes) in [("5m", true), ("2s", false)] {
        let env = local();
        let (db, _) = env.hotel_source(200);
        let cfg = config(
            &env,
            &db,
            &format!("[daemon]\nstop_timeout = \"{stop_timeout}\"\n"),
        );
        let release = env.path("release");
        let mut locker = hold_lock(&db, &release);
        let mut d = Running::start(&env, &cfg, "2026-12-07 01:59:50");
        d.set_clock("2026-12-07 02:00:01");
        d.wait_log("starting full for hotel");
        d.terminate();
        d.wait_log("stopping; running jobs may finish");
        if finishes {
            // The backup waits for the lock; the daemon waits for the backup.
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                d.child.try_wait().unwrap().is_none(),
                "the daemon left its job"
            );
            std::fs::write(&release, "").unwrap();
            assert!(d.wait_exit(Duration::from_secs(60)).success());
            let r = records(&env, "backup");
            assert_eq!((r.len(), &r[0]["ok"]), (1, &Value::Bool(true)), "{r:?}");
        } else {
            d.wait_log("interrupting the jobs still running");
            assert!(d.wait_exit(Duration::from_secs(60)).success());
            std::fs::write(&release, "").unwrap();
            let snaps = env.json(&["list"]);
            assert_eq!(snaps.as_array().unwrap().len(), 0, "{snaps}");
        }
        locker.wait().unwrap();
    }
}

//! What every integration test shares: the repositories each scenario runs against (a local
//! directory and, under ./scripts/test, a fresh prefix on each object-store server: Garage
//! for S3, Azurite for Azure Blob, fake-gcs-server for GCS) and helpers
//! that drive the real binary (also under `faketime`). `pg`: PostgreSQL clusters archiving
//! into a repository, for the physical-backup suites.
#![allow(dead_code)]

pub mod hotel_pg;
pub mod pg;
pub mod pty;

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use strongroom::storage::Storage;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: TempDir,
    pub repo: String,
}

/// Runs `cmd` with `--json`, which must succeed; returns the document it printed.
pub fn json_of(mut cmd: Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{t:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A seed for a randomized test: `STRONGROOM_TEST_SEED` replays one, else the clock picks
/// it; printed either way, so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("STRONGROOM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (STRONGROOM_TEST_SEED replays it)");
    seed
}

/// Where an [`Env`]'s repository lives: a local directory, or one of the object-store
/// servers `./scripts/test` starts on loopback (Garage for S3, Azurite for Azure Blob,
/// fake-gcs-server for GCS), each named to the tests by a URL base in a variable of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Local,
    S3,
    Azure,
    Gcs,
}

impl Store {
    /// The object stores, in the order [`envs`] returns them.
    pub const REMOTE: [Store; 3] = [Store::S3, Store::Azure, Store::Gcs];

    /// The store a repository URL names.
    pub fn of(repo: &str) -> Store {
        match repo.split_once("://").map(|(scheme, _)| scheme) {
            Some("s3") => Store::S3,
            Some("azblob") => Store::Azure,
            Some("gs") => Store::Gcs,
            _ => Store::Local,
        }
    }

    /// Its name in labels and notes.
    pub fn name(self) -> &'static str {
        match self {
            Store::Local => "local",
            Store::S3 => "S3",
            Store::Azure => "Azure",
            Store::Gcs => "GCS",
        }
    }

    /// The variable holding the test server's URL base (`s3://bucket`, …), and the server.
    fn base_var(self) -> Option<(&'static str, &'static str)> {
        match self {
            Store::Local => None,
            Store::S3 => Some(("STRONGROOM_TEST_S3", "Garage")),
            Store::Azure => Some(("STRONGROOM_TEST_AZURE", "Azurite")),
            Store::Gcs => Some(("STRONGROOM_TEST_GCS", "fake-gcs-server")),
        }
    }

    /// The variable strongroom finds the store's endpoint in (a fault proxy puts its own
    /// address there), and the address the test server has in it.
    pub fn endpoint(self) -> Option<(&'static str, String)> {
        let var = match self {
            Store::Local => return None,
            Store::S3 => "AWS_ENDPOINT_URL",
            Store::Azure => "AZURE_STORAGE_ENDPOINT",
            Store::Gcs => "STORAGE_EMULATOR_HOST",
        };
        Some((var, std::env::var(var).ok()?))
    }

    /// A fresh repository on this store: a new directory, or a new prefix in the test
    /// server's bucket. `None` (with a note) when the server is not up, which under CI is
    /// a failure: there no scenario may be skipped silently.
    pub fn env(self) -> Option<Env> {
        let dir = tempfile::tempdir().unwrap();
        let Some((var, server)) = self.base_var() else {
            let repo = dir.path().join("repo").display().to_string();
            return Some(Env { dir, repo });
        };
        match std::env::var(var) {
            Ok(base) if !base.is_empty() => Some(Env {
                dir,
                repo: format!("{}/{}", base.trim_end_matches('/'), unique()),
            }),
            _ if std::env::var_os("CI").is_some() => {
                panic!("{var} is not set: run the suite through ./scripts/test")
            }
            _ => {
                eprintln!(
                    "note: {var} unset, {} scenarios skipped (./scripts/test starts {server})",
                    self.name()
                );
                None
            }
        }
    }
}

/// The repositories a scenario runs against: a local directory and a fresh prefix on each
/// object-store server that is up ([`Store::REMOTE`]).
pub fn envs() -> Vec<Env> {
    envs_on(&[Store::Local, Store::S3, Store::Azure, Store::Gcs])
}

/// The stores of the scenarios that run on S3 but not on Azure and GCS: each store costs as
/// much time as S3 does, and the suite must finish on a 2-core CI machine, so Azure and
/// GCS run a representative subset (backup, restore, damage, wal push and fetch, prune
/// with locks, kill-safety, the fault proxy), not every scenario. (Measured: every
/// scenario on all three stores added about as much again as local and S3 took.)
pub const LOCAL_AND_S3: [Store; 2] = [Store::Local, Store::S3];

/// Fresh repositories on `stores`, those whose server is up.
pub fn envs_on(stores: &[Store]) -> Vec<Env> {
    stores.iter().copied().filter_map(Store::env).collect()
}

impl Env {
    /// Where this repository lives.
    pub fn store(&self) -> Store {
        Store::of(&self.repo)
    }

    /// The binary with this environment's repository, password and state directory, as a
    /// plain process (for tests that signal it or read its output as it comes).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("strongroom"));
        c.current_dir(self.dir.path())
            .env("STRONGROOM_REPO", &self.repo)
            .env("STRONGROOM_PASSWORD", PASSWORD)
            .env_remove("STRONGROOM_CONFIG")
            .env("STRONGROOM_STATE_DIR", self.dir.path().join("state"))
            .env("STRONGROOM_CACHE_DIR", self.dir.path().join("cache"))
            .env("NO_COLOR", "1");
        c
    }

    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// `strongroom` run under Debian's `faketime` from `at` on (`YYYY-MM-DD HH:MM:SS`, UTC;
    /// the faked clock runs on from there).
    pub fn at(&self, at: &str) -> Command {
        let real = self.std_cmd();
        let mut c = std::process::Command::new("faketime");
        c.arg("-f")
            .arg(format!("@{at}"))
            .arg(real.get_program())
            .current_dir(self.dir.path())
            .env("TZ", "UTC");
        for (k, v) in real.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        Command::from_std(c)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn init(&self) {
        self.cmd().arg("init").assert().success();
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut cmd = self.cmd();
        cmd.args(args);
        json_of(cmd)
    }

    /// Runs a command that must fail with exit 1; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.fails_with(args, &[])
    }

    /// Like [`Env::fails`], with extra environment variables.
    pub fn fails_with(&self, args: &[&str], vars: &[(&str, &str)]) -> String {
        let out = self
            .cmd()
            .args(args)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} should fail with 1; stderr: {err}"
        );
        assert!(
            err.trim_end().lines().count() >= 1 && err.contains("strongroom: "),
            "{err}"
        );
        err
    }

    /// A new append-only key file `LABEL.key` for this repository, made with the full key
    /// (`key add --append-only`): what a database host holds.
    pub fn append_only_key(&self, label: &str) -> PathBuf {
        let key = self.path(&format!("{label}.key"));
        self.cmd()
            .args([
                "key",
                "add",
                "--append-only",
                "--label",
                label,
                "--new-key-file",
            ])
            .arg(&key)
            .assert()
            .success();
        key
    }

    pub fn storage(&self) -> Storage {
        Storage::from_url(&self.repo).unwrap()
    }
}

/// Hotel databases for the SQLite suites.
impl Env {
    /// A hotel database `hotel.db` with `bookings` bookings, an initialised repository, and
    /// the database's source URL.
    pub fn hotel_source(&self, bookings: u64) -> (PathBuf, String) {
        let made = self.hotel_db(bookings);
        self.init();
        made
    }

    /// A hotel database of `bookings` bookings at `hotel.db` in this environment's
    /// directory, and its source URL (the repository is left as it is).
    pub fn hotel_db(&self, bookings: u64) -> (PathBuf, String) {
        let db = self.path("hotel.db");
        make_db(&db, bookings);
        let src = format!("sqlite:{}", db.display());
        (db, src)
    }
}

pub fn make_db(path: &std::path::Path, bookings: u64) {
    strongroom::hotel::create(path, strongroom::hotel::Scale::bookings(bookings), 42).unwrap();
}

/// Changes `fraction` of the bookings of the hotel database at `db`, chosen by `seed`.
pub fn update_bookings(db: &std::path::Path, fraction: f64, seed: u64) {
    let mut c = rusqlite::Connection::open(db).unwrap();
    strongroom::hotel::update_random_bookings(&mut c, fraction, seed).unwrap();
}

pub fn invariant_holds(path: &std::path::Path) -> bool {
    let c = rusqlite::Connection::open(path).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{}", path.display());
    c.query_row(strongroom::hotel::INVARIANT_SQL, [], |r| r.get(0))
        .unwrap()
}

/// Bookings in a hotel database.
pub fn bookings_in(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM bookings", [], |r| r.get(0))
        .unwrap()
}

/// Starts `cmd` paused at the fault point `point` (see `strongroom::fault`; `dir` is where the
/// pause and its release are signalled) and returns once it is there. The caller sets up
/// the command's output.
pub fn paused_at(
    mut cmd: std::process::Command,
    point: &str,
    dir: &std::path::Path,
) -> std::process::Child {
    std::fs::create_dir_all(dir).unwrap();
    let _ = std::fs::remove_file(dir.join("go"));
    let _ = std::fs::remove_file(dir.join("paused"));
    let child = cmd
        .env("STRONGROOM_FAULT", format!("pause-{point}"))
        .env("STRONGROOM_FAULT_DIR", dir)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !dir.join("paused").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{cmd:?} never reached {point}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

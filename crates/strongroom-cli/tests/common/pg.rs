//! PostgreSQL clusters archiving into strongroom, for the physical-backup suites: a
//! repository with a key file the server's `archive_command` can read, a cluster whose
//! `archive_command` is `strongroom wal push %p`, and the oracle workload whose commit times,
//! transaction ids and WAL positions point-in-time recovery is checked against.

use super::Env;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strongroom_testkit::postgres::{Cluster, give_to_server_user};

/// A repository the server's `archive_command` can write (a key file, owned by the server's
/// user), and a cluster archiving into it.
pub struct Rig {
    pub env: Env,
    pub key: PathBuf,
    pub bindir: PathBuf,
    pub pg: Cluster,
}

pub fn exe() -> PathBuf {
    assert_cmd::cargo::cargo_bin("strongroom")
}

/// Environment the servers need to reach the repository (their archive_command and
/// restore_command read it).
pub fn server_env(env: &Env, key: &Path) -> Vec<(String, String)> {
    let mut v = vec![
        ("STRONGROOM_REPO".to_string(), env.repo.clone()),
        (
            "STRONGROOM_PASSWORD_FILE".to_string(),
            key.display().to_string(),
        ),
        (
            "STRONGROOM_STATE_DIR".to_string(),
            env.path("server-state").display().to_string(),
        ),
        ("STRONGROOM_FETCH_RETRIES".to_string(), "2".to_string()),
    ];
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_ENDPOINT",
        "STORAGE_EMULATOR_HOST",
    ] {
        if let Ok(val) = std::env::var(k) {
            v.push((k.to_string(), val));
        }
    }
    v
}

/// What root's own commands that start a server (`restore --start`) pass on to it: the
/// server's environment but the state directory, which stays root's. One the server's user
/// owns is refused (that user could plant notes root acts on); root's, which the server's
/// user cannot enter, is simply not used by the server.
pub fn restore_env(env: &Env, key: &Path) -> Vec<(String, String)> {
    server_env(env, key)
        .into_iter()
        .filter(|(k, _)| k != "STRONGROOM_STATE_DIR")
        .collect()
}

pub fn open_up(env: &Env) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(env.path("server-state")).unwrap();
    give_to_server_user(&env.path("server-state"));
    if !env.repo.contains("://") {
        give_to_server_user(Path::new(&env.repo));
    }
}

impl Rig {
    /// A repository with a key file, and a cluster on `bindir` archiving into it (or not).
    pub fn new(env: Env, bindir: &Path, archive: bool) -> Rig {
        let command = format!("{} wal push %p", exe().display());
        Rig::with_archive_command(env, bindir, archive.then_some(command.as_str()))
    }

    /// A repository with a key file, and a cluster on `bindir` whose `archive_command` is
    /// `command` (archiving off when `None`).
    pub fn with_archive_command(env: Env, bindir: &Path, command: Option<&str>) -> Rig {
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
            .setting("full_page_writes", "on")
            .setting("wal_level", "replica")
            .setting("track_commit_timestamp", "on")
            .setting("max_wal_senders", "4");
        if let Some(command) = command {
            b = b
                .setting("archive_mode", "on")
                .setting("archive_command", command);
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

    pub fn url(&self) -> String {
        self.pg.url(
            "postgres",
            Some(strongroom_testkit::postgres::PASSWORD),
            "app",
        )
    }

    pub fn backup(&self) -> Value {
        self.env
            .json(&["backup", &self.url(), "--kind", "physical"])
    }

    /// Switches to a new WAL segment and waits until the old one is archived.
    pub fn archive_now(&self) {
        archive_now(&self.pg);
    }

    /// Starts a server on a restored directory, with the repository in its environment.
    pub fn start_restored(&self, dir: &Path) -> Result<Cluster, String> {
        let mut b = Cluster::start_existing(dir, &self.bindir);
        for (k, v) in server_env(&self.env, &self.key) {
            b = b.env(k, v);
        }
        b.try_start()
    }
}

/// Switches `pg` to a new WAL segment and waits until the old one is archived.
pub fn archive_now(pg: &Cluster) {
    let mut c = pg.connect("postgres");
    // A real write first: a switch with no WAL since the last one does nothing.
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS strongroom_tick (at timestamptz); \
         INSERT INTO strongroom_tick VALUES (clock_timestamp())",
    )
    .unwrap();
    let file: String = c
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .unwrap()
        .get(0);
    for _ in 0..300 {
        let done: Option<String> = c
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .unwrap()
            .get(0);
        if done.as_deref().is_some_and(|d| d >= file.as_str()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats: String = c
        .query_one(
            "SELECT format('archived %s (last %s), failed %s (last %s), now at %s', archived_count, last_archived_wal, failed_count, last_failed_wal, pg_current_wal_lsn()) FROM pg_stat_archiver",
            &[],
        )
        .unwrap()
        .get(0);
    panic!(
        "{file} was not archived ({stats}); server log:\n{}",
        pg.log()
    );
}

/// One committed transaction of the workload: its id, commit time and the WAL position
/// right after its commit.
#[derive(Clone, Debug)]
pub struct Committed {
    pub id: i32,
    pub xid: i64,
    pub commit: String,
    pub lsn_after: String,
}

pub fn ids(pg: &Cluster) -> BTreeSet<i32> {
    pg.connect("app")
        .query("SELECT id FROM oracle", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Commits `n` transactions of one row each, recording what the oracle needs.
pub fn workload(
    pg: &Cluster,
    first: i32,
    n: i32,
    restore_point_after: Option<(i32, &str)>,
) -> Vec<Committed> {
    let mut c = pg.connect("app");
    let mut out = Vec::new();
    for id in first..first + n {
        let mut tx = c.transaction().unwrap();
        let xid: i64 = tx
            .query_one(
                "INSERT INTO oracle (id, at, xid) VALUES ($1, clock_timestamp(), txid_current()) RETURNING xid",
                &[&id],
            )
            .unwrap()
            .get(0);
        tx.commit().unwrap();
        let row = c
            .query_one(
                "SELECT pg_xact_commit_timestamp(xmin)::text, pg_current_wal_insert_lsn()::text FROM oracle WHERE id = $1",
                &[&id],
            )
            .unwrap();
        out.push(Committed {
            id,
            xid,
            commit: row.get(0),
            lsn_after: row.get(1),
        });
        if restore_point_after.is_some_and(|(after, _)| after == id) {
            c.execute(
                "SELECT pg_create_restore_point($1)",
                &[&restore_point_after.unwrap().1],
            )
            .unwrap();
        }
        // Commit times a few milliseconds apart, so a target between two is unambiguous.
        std::thread::sleep(Duration::from_millis(15));
    }
    out
}

/// A time strictly between two commit timestamps (PostgreSQL's `timestamptz` text).
pub fn between(a: &str, b: &str) -> String {
    let parse = |s: &str| -> jiff::Timestamp {
        let s = if s.ends_with("+00") {
            format!("{s}:00")
        } else {
            s.to_string()
        };
        jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S%.f%:z", &s)
            .unwrap()
            .to_timestamp()
            .unwrap()
    };
    let (ta, tb) = (parse(a), parse(b));
    assert!(ta < tb, "{a} < {b}");
    let half = (tb.as_microsecond() - ta.as_microsecond()) / 2;
    let mid = jiff::Timestamp::from_microsecond(ta.as_microsecond() + half).unwrap();
    mid.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Restores `snap` into a new directory with `target` flags and returns the server recovered
/// from it (promoted).
pub fn restore_and_recover(rig: &Rig, name: &str, target: &[&str]) -> (PathBuf, Cluster) {
    let dir = rig.env.path(name);
    let mut cmd = rig.env.cmd();
    cmd.args(["restore", "latest", "--data-dir"])
        .arg(&dir)
        .args(target);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "restore {target:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg = rig
        .start_restored(&dir)
        .unwrap_or_else(|log| panic!("restored cluster did not start ({target:?}):\n{log}"));
    pg.wait_promoted(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{target:?}: {e}"));
    (dir, pg)
}

pub fn expect(all: &[Committed], pre: &BTreeSet<i32>, upto: usize) -> BTreeSet<i32> {
    let mut s = pre.clone();
    s.extend(all[..upto].iter().map(|c| c.id));
    s
}

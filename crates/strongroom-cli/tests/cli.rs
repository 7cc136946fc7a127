//! End-to-end tests: the real `strongroom` binary against real SQLite files with concurrent
//! writers, on a local repository and on a real S3 server (Garage, started by scripts/test,
//! which exports STRONGROOM_TEST_S3 and the AWS_* variables). Each scenario runs on both.

use assert_cmd::Command;
use rusqlite::Connection;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use strongroom::hotel::{self, Rng};

mod common;
use common::{
    Env, LOCAL_AND_S3, PASSWORD, Store, envs, envs_on, invariant_holds, json_of, make_db,
};

fn row_counts(path: &Path) -> Value {
    let c = Connection::open(path).unwrap();
    serde_json::to_value(strongroom::engine::sqlite::row_counts(&c, path).unwrap()).unwrap()
}

/// Writers that book rooms (two tables per transaction) until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

fn start_writers(db: &Path, n: usize) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles = (0..n)
        .map(|i| {
            let (stop, done, db) = (stop.clone(), done.clone(), db.to_path_buf());
            std::thread::spawn(move || {
                let mut c = Connection::open(&db).unwrap();
                // A writer waits as long as it takes: on a loaded machine a backup's read and
                // the other writer can hold it up for a while, and that must not fail the test.
                c.busy_timeout(std::time::Duration::from_secs(600)).unwrap();
                let mut rng = Rng::new(100 + i as u64);
                while !stop.load(Ordering::Relaxed) {
                    hotel::book_room(&mut c, &mut rng).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    Writers {
        stop,
        done,
        handles,
    }
}

impl Writers {
    /// Returns once the writers have counted `n` bookings in all.
    fn wait_for(&self, n: u64) {
        while self.done.load(Ordering::Relaxed) < n {
            assert!(
                self.handles.iter().all(|h| !h.is_finished()),
                "a writer stopped"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.join().unwrap();
        }
        self.done.load(Ordering::Relaxed)
    }
}

fn consistent_under_writers(journal_mode: &str) {
    for env in envs_on(&LOCAL_AND_S3) {
        let db = env.path("hotel.db");
        make_db(&db, 20_000);
        Connection::open(&db)
            .unwrap()
            .pragma_update(None, "journal_mode", journal_mode)
            .unwrap();
        env.init();
        let writers = start_writers(&db, 2);
        writers.wait_for(20);
        let src = format!("sqlite:{}", db.display());
        let mut snaps = Vec::new();
        for _ in 0..4 {
            snaps.push(env.json(&["backup", &src, "--tag", "test"]));
            // Each writer may have committed one booking it has not counted yet, so three
            // more counted bookings include one committed after this backup's read: the next
            // backup sees another moment, however the machine schedules the writers.
            writers.wait_for(writers.done.load(Ordering::Relaxed) + 3);
        }
        let booked = writers.finish();
        assert!(booked > 20, "the writers made progress");
        let mut seen = std::collections::HashSet::new();
        for (i, s) in snaps.iter().enumerate() {
            let id = s["id"].as_str().unwrap();
            assert_eq!(id.len(), 64);
            assert_eq!(s["short_id"].as_str().unwrap(), &id[..8]);
            assert_eq!(s["engine"], "sqlite");
            assert_eq!(s["kind"], "full");
            assert_eq!(s["source"], src.as_str());
            assert_eq!(s["tags"], serde_json::json!(["test"]));
            assert_eq!(s["metadata"]["schema_version"], "20240101000000_init");
            assert!(
                s["metadata"]["server_version"]
                    .as_str()
                    .unwrap()
                    .starts_with("3.")
            );
            let out = env.path(&format!("restored-{i}.db"));
            env.cmd()
                .args(["restore", id, "--to", out.to_str().unwrap()])
                .assert()
                .success();
            assert!(
                invariant_holds(&out),
                "snapshot {i} is not a consistent state"
            );
            assert_eq!(
                row_counts(&out),
                s["metadata"]["row_counts"],
                "row counts of snapshot {i}"
            );
            seen.insert(s["metadata"]["row_counts"]["bookings"].as_u64().unwrap());
        }
        assert_eq!(
            seen.len(),
            4,
            "each backup sees a later moment while writers run"
        );
        let v = env.json(&["verify", "--all"]);
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["snapshots"].as_array().unwrap().len(), 4);
        for s in v["snapshots"].as_array().unwrap() {
            assert!(s["restore_seconds"].as_f64().is_some());
            assert!(
                s["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["ok"] == true)
            );
        }
        env.cmd().args(["check", "--read-data"]).assert().success();
        let list = env.json(&["list"]);
        assert_eq!(list.as_array().unwrap().len(), 4);
    }
}

#[test]
fn wal_mode_backups_are_consistent_under_concurrent_writers() {
    consistent_under_writers("wal");
}

#[test]
fn rollback_journal_backups_are_consistent_under_concurrent_writers() {
    consistent_under_writers("delete");
}

#[test]
fn unchanged_and_slightly_changed_databases_add_little() {
    for env in envs() {
        let (db, src) = env.hotel_source(30_000);
        let first = env.json(&["backup", &src]);
        let again = env.json(&["backup", &src]);
        let mut c = Connection::open(&db).unwrap();
        hotel::update_random_bookings(&mut c, 0.01, 9).unwrap();
        drop(c);
        let changed = env.json(&["backup", &src]);
        let (f, a, ch) = (
            first["added"].as_u64().unwrap(),
            again["added"].as_u64().unwrap(),
            changed["added"].as_u64().unwrap(),
        );
        assert!(a * 50 < f, "unchanged re-backup added {a} of {f}");
        assert!(ch * 2 < f, "1% change added {ch} of {f}");
        assert!(f > 0 && first["size"].as_u64().unwrap() >= f);
        // show and latest resolve to the newest, prefixes work
        let id = changed["id"].as_str().unwrap();
        assert_eq!(env.json(&["show", "latest"])["id"], id);
        assert_eq!(env.json(&["show", &id[..6]])["id"], id);
        let err = env.fails(&["show", "abc"]);
        assert!(err.contains("at least 6"), "{err}");
    }
}

#[test]
fn bad_input_gets_one_sentence_and_loses_nothing() {
    for env in envs_on(&LOCAL_AND_S3) {
        let err = env.fails(&["list"]);
        assert!(err.contains("no strongroom repository"), "{err}");
        let out = env
            .cmd()
            .args(["show", "latest", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "not_found", "{doc}");
        env.init();
        let err = env.fails(&["init"]);
        assert!(err.contains("already exists"), "{err}");
        let out = env
            .cmd()
            .arg("list")
            .env("STRONGROOM_PASSWORD", "wrong")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
        // --json failures: one document on stdout with a stable kind and retry advice.
        let out = env
            .cmd()
            .args(["list", "--json"])
            .env("STRONGROOM_PASSWORD", "wrong")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "wrong_password", "{doc}");
        assert_eq!(doc["error"]["retryable"], false, "{doc}");
        assert!(
            doc["error"]["message"]
                .as_str()
                .unwrap()
                .contains("wrong password"),
            "{doc}"
        );
        let out = env
            .cmd()
            .arg("list")
            .env_remove("STRONGROOM_PASSWORD")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no password"));
        // usage errors exit 2
        assert_eq!(
            env.cmd()
                .args(["backup", "--bogus"])
                .output()
                .unwrap()
                .status
                .code(),
            Some(2)
        );
        assert_eq!(
            env.cmd().arg("frobnicate").output().unwrap().status.code(),
            Some(2)
        );

        let err = env.fails(&["backup", "sqlite:missing.db"]);
        assert!(
            err.contains("missing.db") && err.contains("does not exist"),
            "{err}"
        );
        std::fs::write(
            env.path("notes.txt"),
            "this is not a database, just some text that is long enough ".repeat(100),
        )
        .unwrap();
        let err = env.fails(&["backup", "sqlite:notes.txt"]);
        assert!(err.contains("not a SQLite database"), "{err}");
        let err = env.fails(&["backup", "mysql://x"]);
        assert!(err.contains("unknown source"), "{err}");
        // failed jobs are journaled
        let repo =
            strongroom::repository::Repository::open(env.storage(), Some(PASSWORD.as_bytes()))
                .unwrap();
        let recs = repo.journal_records().unwrap();
        assert!(
            recs.iter()
                .any(|r| !r.ok && r.error.as_deref().unwrap_or("").contains("does not exist"))
        );

        let db = env.path("hotel.db");
        make_db(&db, 2_000);
        let snap = env.json(&["backup", "sqlite:hotel.db"]);
        let id = snap["id"].as_str().unwrap();
        assert!(
            repo.journal_records()
                .unwrap()
                .iter()
                .any(|r| r.ok && r.snapshot.as_deref() == Some(id))
        );

        // restore onto an existing file: refused without --force, untouched
        let target = env.path("target.db");
        std::fs::write(&target, b"precious").unwrap();
        let err = env.fails(&["restore", id, "--to", "target.db"]);
        assert!(err.contains("--force"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        // with --force --keep-old: replaced, old kept aside
        env.cmd()
            .args(["restore", id, "--to", "target.db", "--force", "--keep-old"])
            .assert()
            .success();
        assert!(invariant_holds(&target));
        let kept: Vec<_> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("strongroom-old"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(std::fs::read(kept[0].path()).unwrap(), b"precious");

        // a live target (open by the application in WAL mode) is refused and untouched
        let live = Connection::open(&db).unwrap();
        let _: i64 = live
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        let before = std::fs::read(&db).unwrap();
        let err = env.fails(&["restore", id, "--to", "hotel.db", "--force"]);
        assert!(err.contains("in use"), "{err}");
        assert_eq!(std::fs::read(&db).unwrap(), before);
        drop(live);
        env.cmd()
            .args(["restore", id, "--to", "hotel.db", "--force"])
            .assert()
            .success();
        assert!(invariant_holds(&db));

        // a stale -wal beside a deleted database is moved aside, never replayed
        let gone = env.path("gone.db");
        env.cmd()
            .args(["restore", id, "--to", "gone.db"])
            .assert()
            .success();
        let mut wal = gone.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::remove_file(&gone).unwrap();
        std::fs::write(&wal, vec![0x37u8; 5000]).unwrap();
        env.cmd()
            .args(["restore", id, "--to", "gone.db"])
            .assert()
            .success();
        assert!(!Path::new(&wal).exists());
        assert!(invariant_holds(&gone));
    }
}

/// A mistyped repository is named as given and called a possible typo, never offered as a
/// new one: for `wal push`, "create one" would start a production archive in an empty
/// repository (issue 17, item 3).
#[test]
fn a_mistyped_repository_is_named_never_offered_as_new() {
    for env in envs() {
        env.init();
        let typo = format!("{}-typo", env.repo);
        std::fs::write(env.path("000000010000000000000001"), vec![0u8; 16 * 1024]).unwrap();
        let jobs: [&[&str]; 4] = [
            &["wal", "push", "000000010000000000000001"],
            &["backup", "sqlite:hotel.db"],
            &["list"],
            &["restore", "latest", "--to", "out.db"],
        ];
        for args in jobs {
            let err = env.fails_with(args, &[("STRONGROOM_REPO", &typo)]);
            assert!(
                err.contains(&format!("no strongroom repository at {typo}:")),
                "{args:?}: {err}"
            );
            assert!(
                err.contains("STRONGROOM_REPO") && err.contains("typo"),
                "{err}"
            );
            assert!(!err.contains("create one"), "{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
        }
        // Nothing was made at the mistyped location.
        if !typo.contains("://") {
            assert!(!Path::new(&typo).exists());
        }
    }
}

#[test]
fn full_disk_during_restore_leaves_nothing() {
    let env = envs().remove(0);
    make_db(&env.path("hotel.db"), 20_000);
    env.init();
    let id = env.json(&["backup", "sqlite:hotel.db"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A file-size limit makes writes fail with EFBIG exactly as a full disk fails with ENOSPC.
    let bin = assert_cmd::cargo::cargo_bin("strongroom");
    let out = std::process::Command::new("sh")
        .current_dir(env.dir.path())
        .env("STRONGROOM_REPO", &env.repo)
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 512; exec {} restore {id} --to out.db",
            bin.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("out.db") || err.contains("restored database"),
        "{err}"
    );
    let names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(!names.iter().any(|n| n.contains("out.db")), "{names:?}");
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Mounted(std::path::PathBuf);

impl Mounted {
    /// A tmpfs of `size` at `dir`, or `None` (with a note) where mounting is not allowed.
    fn tmpfs(dir: &Path, size: &str) -> Option<Mounted> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mounted(dir.to_path_buf())),
            other => {
                eprintln!("note: cannot mount a tmpfs ({other:?}); full-disk test skipped");
                None
            }
        }
    }

    fn free(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A full repository device during a backup: one sentence naming the device, saying the
/// partial file was removed and that `prune` reclaims what the backup stored; the earlier
/// snapshot stays whole, no temporary file is left, and prune does reclaim (issue 17,
/// item 6).
#[test]
fn full_disk_during_backup_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let Some(mounted) = Mounted::tmpfs(&small, "40m") else {
        return;
    };
    let env = Env {
        repo: small.join("repo").display().to_string(),
        dir,
    };
    make_db(&env.path("hotel.db"), 500);
    env.init();
    let good = env.json(&["backup", "sqlite:hotel.db"]);
    // 64 MB that does not compress, against 40 MB: packs are stored, then the device fills.
    let big = Connection::open(env.path("big.db")).unwrap();
    big.execute_batch(
        "CREATE TABLE t(x BLOB); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 \
         FROM c WHERE n < 4000) INSERT INTO t SELECT randomblob(16000) FROM c;",
    )
    .unwrap();
    drop(big);
    let err = env.fails(&["backup", "sqlite:big.db"]);
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
    let mount = format!("no space left on {} (tmpfs, ", small.display());
    assert!(err.contains(&mount), "names the device: {err}");
    assert!(err.contains("partial file was removed"), "{err}");
    assert!(err.contains("`strongroom prune`"), "{err}");
    assert!(!err.contains(".tmp-"), "{err}");
    let leftovers: Vec<String> = walk(&small)
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The earlier snapshot is whole, and nothing else became one.
    let list = env.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], good["id"]);
    env.cmd().args(["check", "--read-data"]).assert().success();
    // And prune reclaims what the failed backup stored.
    let before = mounted.free();
    env.cmd().arg("prune").assert().success();
    assert!(
        mounted.free() > before + 16 * 1024 * 1024,
        "prune freed {} bytes",
        mounted.free().saturating_sub(before)
    );
    env.cmd()
        .args(["restore", "latest", "--to", "back.db"])
        .assert()
        .success();
    assert!(invariant_holds(&env.path("back.db")));
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[test]
fn config_sources_checks_and_errors() {
    for env in envs_on(&LOCAL_AND_S3) {
        make_db(&env.path("hotel.db"), 3_000);
        std::fs::write(
            env.path("strongroom.toml"),
            format!(
                "repository = {:?}\n[sources.hotel]\nurl = \"sqlite:hotel.db\"\n\
                 [[sources.hotel.checks]]\nname = \"bookings balance\"\nsql = {:?}\n\
                 [[sources.hotel.checks]]\nname = \"has suites\"\nsql = \"SELECT count(*) > 0 FROM room_inventory WHERE room_type = 'suite'\"\n",
                env.repo,
                hotel::INVARIANT_SQL
            ),
        )
        .unwrap();
        let mut init = env.cmd();
        init.env_remove("STRONGROOM_REPO")
            .arg("init")
            .assert()
            .success();
        let snap = env.json(&["backup", "--tag", "pre-migration"]);
        assert_eq!(snap["source"], "hotel");
        let v = env.json(&["verify", "latest", "--tag", "pre-migration"]);
        let names: Vec<&str> = v["snapshots"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "integrity_check",
                "row counts",
                "bookings balance",
                "has suites"
            ]
        );
        assert_eq!(v["ok"], true);
        // a failing configured check fails verify
        let cfg = std::fs::read_to_string(env.path("strongroom.toml")).unwrap();
        std::fs::write(
            env.path("strongroom.toml"),
            cfg.replace("room_type = 'suite'", "room_type = 'penthouse'"),
        )
        .unwrap();
        let out = env.cmd().args(["verify", "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["ok"], false);
        // a malformed config is named with its line
        std::fs::write(
            env.path("bad.toml"),
            "[sources.hotel]\nurl = \"sqlite:hotel.db\"\nchecks = 7\n",
        )
        .unwrap();
        let err = env.fails(&["--config", "bad.toml", "list"]);
        assert!(err.contains("bad.toml:3"), "{err}");
    }
}

#[test]
fn every_config_mistake_is_named_in_one_run() {
    let env = &envs()[0];
    // Three independent mistakes in three tables: the operator fixes them all at once.
    std::fs::write(
        env.path("strongroom.toml"),
        "[sources.prod]\nurl = \"postgres://app@db/hotel\"\nlock_timout = \"5m\"\n\
         [retention]\nkeep_daily = 7\npitr_window = \"a week\"\n\
         [[alerts]]\nwebhook = \"http://127.0.0.1:9/hook\"\nmin_level = \"urgent\"\n",
    )
    .unwrap();
    let err = env.fails(&["list"]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0], "strongroom: ./strongroom.toml has 3 problems:",
        "{err}"
    );
    assert!(
        lines[1].contains("strongroom.toml:3:1: sources.prod.lock_timout: unknown field"),
        "{err}"
    );
    assert!(
        lines[2].contains("strongroom.toml:6:1: retention.pitr_window: \"a week\""),
        "{err}"
    );
    assert!(
        lines[3].contains("strongroom.toml:9:1: alerts[0].min_level: \"urgent\""),
        "{err}"
    );
    // The kind stays the same: a bad_input, which the JSON error document says.
    let out = env.cmd().args(["list", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "bad_input");
    assert_eq!(v["error"]["message"].as_str().unwrap().lines().count(), 4);
}

#[test]
fn journal_and_list_columns_line_up_with_long_sources() {
    let env = &envs()[0];
    env.init();
    let deep = "var/lib/applications/hotel-bookings-production/databases";
    std::fs::create_dir_all(env.path(deep)).unwrap();
    let long = env.path(&format!("{deep}/hotel_bookings_production.sqlite3"));
    make_db(&long, 300);
    make_db(&env.path("hotel.db"), 300);
    std::fs::write(
        env.path("strongroom.toml"),
        "[sources.hotel]\nurl = \"sqlite:hotel.db\"\n",
    )
    .unwrap();
    let a = env.json(&["backup", "hotel"]);
    let b = env.json(&["backup", &format!("sqlite:{}", long.display())]);
    let c = env.json(&["backup", "hotel"]);
    let ids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|s| s["id"].as_str().unwrap()[..8].to_string())
        .collect();
    let column = |line: &str, what: &str| line[..line.find(what).unwrap()].chars().count();
    let out = env.cmd().arg("journal").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let rows: Vec<&str> = lines[1..]
        .iter()
        .copied()
        .filter(|l| ids.iter().any(|id| l.contains(id.as_str())))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[1].contains("hotel_bookings_production.sqlite3"),
        "{text}"
    );
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(column(row, id), column(lines[0], "snapshot"), "{text}");
        assert_eq!(
            column(row, "  ok") + 2,
            column(lines[0], "result"),
            "{text}"
        );
    }
    // `list` lays its columns out the same way.
    let out = env.cmd().arg("list").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (row, id) in lines[1..4].iter().zip(&ids) {
        assert!(row.starts_with(id.as_str()), "{text}");
        assert_eq!(column(row, "full"), column(lines[0], "kind"), "{text}");
    }
}

#[test]
fn second_password_and_unencrypted_repositories() {
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        std::fs::write(env.path("pw2"), "another password\n").unwrap();
        env.cmd()
            .args(["key", "add", "--new-password-file", "pw2"])
            .assert()
            .success();
        env.cmd()
            .args(["list", "--password-file", "pw2"])
            .env_remove("STRONGROOM_PASSWORD")
            .assert()
            .success();
        // --password-file wins over STRONGROOM_PASSWORD
        env.cmd()
            .args(["list", "--password-file", "pw2"])
            .env("STRONGROOM_PASSWORD", "wrong")
            .assert()
            .success();
    }
    let env = envs().remove(0);
    env.cmd()
        .args(["init", "--encryption", "none"])
        .env_remove("STRONGROOM_PASSWORD")
        .assert()
        .success();
    make_db(&env.path("h.db"), 1_000);
    let s = env.json(&["backup", "sqlite:h.db"]);
    env.cmd()
        .args(["restore", s["id"].as_str().unwrap(), "--to", "r.db"])
        .env_remove("STRONGROOM_PASSWORD")
        .assert()
        .success();
    assert!(invariant_holds(&env.path("r.db")));
}

#[test]
fn demo_tells_the_whole_story() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("strongroom")
        .unwrap()
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .args(["--bookings", "20000", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let json_start = text.find("\n{").unwrap();
    let v: Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(v["counts_match"], true);
    assert_eq!(v["backups"].as_array().unwrap().len(), 3);
    assert!(
        v["backups"][1]["added"].as_u64().unwrap() < v["backups"][0]["added"].as_u64().unwrap()
    );
    // The story ends with everything in order: the retention step status asks for is run
    // (older backups of the day give way to the newest), so status is ok.
    assert!(text.contains("forget --prune"), "{text}");
    assert!(v["forgotten"].as_u64().unwrap() >= 1, "{text}");
    assert_eq!(v["status"], "ok", "{text}");
    // Continuous capture: every booking made while it ran is in the newest restore.
    let (made, held) = (&v["captured"][0], &v["captured"][1]);
    assert!(made.as_u64().unwrap() > 0 && made == held, "{text}");
    assert!(text.contains("a loss now would cost"), "{text}");
}

#[test]
fn unreachable_or_missing_object_store_is_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9; each store's error names the variable that points there.
    for (repo, var, endpoint) in [
        (
            "s3://nowhere/prefix",
            "AWS_ENDPOINT_URL",
            "http://127.0.0.1:9",
        ),
        (
            "azblob://nowhere/prefix",
            "AZURE_STORAGE_ENDPOINT",
            "http://127.0.0.1:9/devstoreaccount1",
        ),
        (
            "gs://nowhere/prefix",
            "STORAGE_EMULATOR_HOST",
            "127.0.0.1:9",
        ),
    ] {
        let run = |json: bool| {
            let mut c = Command::cargo_bin("strongroom").unwrap();
            c.current_dir(dir.path())
                .args(["--repo", repo, "list"])
                .env("STRONGROOM_PASSWORD", PASSWORD)
                .env(var, endpoint)
                .env("AWS_ACCESS_KEY_ID", "x")
                .env("AWS_SECRET_ACCESS_KEY", "y")
                .env("AZURE_STORAGE_ACCOUNT", "devstoreaccount1")
                .env("AZURE_STORAGE_KEY", "eA==");
            if json {
                c.arg("--json");
            }
            c.output().unwrap()
        };
        let out = run(false);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{repo}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{repo}: one sentence, no retry noise: {err}"
        );
        assert!(err.contains("unreachable") && err.contains(var), "{err}");
        // With --json the failure is also a document a scheduler can act on: worth a retry.
        let doc: Value = serde_json::from_slice(&run(true).stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "storage_unreachable", "{doc}");
        assert_eq!(doc["error"]["retryable"], true, "{doc}");
    }
    if let Ok(base) = std::env::var("STRONGROOM_TEST_S3") {
        let env = Env {
            dir,
            repo: base.replace("s3://", "s3://no-such-bucket-").to_string(),
        };
        let err = env.fails(&["init"]);
        assert!(
            err.contains("NoSuchBucket") && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
}

/// A repository URL naming a container (Azure) or bucket (GCS) that does not exist: those
/// stores answer a plain "not found" where S3 says `NoSuchBucket`, which must not pass for
/// a missing object (damage) nor let `init` go on: one sentence saying what is missing.
#[test]
fn a_missing_container_or_bucket_is_named_never_taken_for_damage() {
    for store in [Store::Azure, Store::Gcs] {
        let Some(env) = store.env() else { continue };
        let (scheme, rest) = env.repo.split_once("://").unwrap();
        let env = Env {
            repo: format!("{scheme}://no-such-{rest}"),
            ..env
        };
        let place = if store == Store::Azure {
            "container"
        } else {
            "bucket"
        };
        let err = env.fails(&["init"]);
        assert!(
            err.contains(&format!("the {place} does not exist"))
                && err.trim_end().lines().count() == 1,
            "{err}"
        );
        let out = env.cmd().args(["init", "--json"]).output().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "storage_unreachable", "{doc}");
        assert_eq!(doc["error"]["retryable"], false, "{doc}");
        // Reading is no damage either. (fake-gcs-server answers every "not found" alike, so
        // there the missing config reads as no repository; real GCS names the bucket.)
        let out = env.cmd().args(["list", "--json"]).output().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_ne!(doc["error"]["kind"], "damaged_data", "{doc}");
        if store == Store::Azure {
            assert!(
                doc["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("the container does not exist"),
                "{doc}"
            );
        }
    }
}

/// A tiny SQLite database with one table holding one row, backed up; returns its snapshot id.
fn one_row_snapshot(env: &Env) -> String {
    let c = Connection::open(env.path("one.db")).unwrap();
    c.execute_batch("CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('hello');")
        .unwrap();
    drop(c);
    env.json(&["backup", "sqlite:one.db"])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn secrets_and_inputs_are_safe_by_default() {
    for env in envs_on(&LOCAL_AND_S3) {
        // An empty password is refused at init, and no repository is made.
        let err = env.fails_with(&["init"], &[("STRONGROOM_PASSWORD", "")]);
        assert!(err.contains("empty"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!env.storage().exists("config").unwrap());
        env.init();

        // A password in a source URL on the command line: a warning that names the safer
        // ways and never the password (the backup itself fails: nothing listens there).
        for url in [
            "postgres://app:s3cr3t-pw@127.0.0.1:9/hotel",
            "postgresql://app@127.0.0.1:9/hotel?sslmode=disable&password=s3cr3t-pw",
        ] {
            let out = env.cmd().args(["backup", url]).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains("visible to every user")
                    && err.contains("`ps`")
                    && err.contains("PGPASSWORD")
                    && err.contains("~/.pgpass")
                    && err.contains("[sources.NAME]"),
                "{err}"
            );
            assert!(!err.contains("s3cr3t"), "the password leaked: {err}");
        }
        let out = env
            .cmd()
            .args(["backup", "postgres://app@127.0.0.1:9/hotel"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stderr).contains("visible to every user"));

        // key list shows labels and creation times.
        std::fs::write(env.path("pw2"), "another password\n").unwrap();
        env.cmd()
            .args(["key", "add", "--new-password-file", "pw2", "--label", "ops"])
            .assert()
            .success();
        let slots = env.json(&["key", "list"]);
        let slots = slots.as_array().unwrap();
        assert_eq!(slots.len(), 2, "{slots:?}");
        let mut labels: Vec<&str> = slots.iter().map(|s| s["label"].as_str().unwrap()).collect();
        labels.sort();
        assert_eq!(labels, ["initial", "ops"]);
        assert!(slots.iter().all(|s| s["id"].as_str().unwrap().len() == 32
            && s["created"].as_str().unwrap().starts_with("20")
            && s.get("damaged").is_none()));
        let id_of = |label: &str| {
            slots.iter().find(|s| s["label"] == label).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (initial, ops) = (id_of("initial"), id_of("ops"));

        // A damaged slot is listed as damaged; it neither fails the listing nor locks out the
        // holder of the other password.
        env.storage()
            .put(&format!("keys/{initial}"), b"not a key slot")
            .unwrap();
        let with_pw2 = |args: &[&str]| {
            let mut c = env.cmd();
            c.args(args)
                .args(["--password-file", "pw2"])
                .env_remove("STRONGROOM_PASSWORD");
            c
        };
        let listed = json_of(with_pw2(&["key", "list"]));
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        let bad = listed.iter().find(|s| s["id"] == initial.as_str()).unwrap();
        assert!(bad["damaged"].is_string(), "{bad}");
        let out = with_pw2(&["key", "list"]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("damaged") && text.contains("ops"), "{text}");

        // key remove: never the last readable slot; a 6-character prefix names a slot.
        let out = with_pw2(&["key", "remove", &ops]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        // one sentence (a warning about the damaged slot may come before it)
        assert_eq!(err.matches("strongroom: ").count(), 1, "{err}");
        assert!(err.contains("last"), "{err}");
        with_pw2(&["key", "remove", &initial[..6]])
            .assert()
            .success();
        let left = json_of(with_pw2(&["key", "list"]));
        assert_eq!(left.as_array().unwrap().len(), 1);
        assert_eq!(left[0]["id"], ops.as_str());
        let out = with_pw2(&["key", "remove", &ops]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn closed_stdout_ends_quietly() {
    let env = envs().remove(0);
    env.init();
    one_row_snapshot(&env);
    for args in [
        &["list", "--json"][..],
        &["list"],
        &["show", "latest"],
        &["key", "list"],
    ] {
        let mut child = env
            .std_cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes anything (it first derives the key).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {err}");
    }
}

#[test]
fn quiet_jobs_print_nothing_on_success_and_still_say_why_they_failed() {
    // Cron mails whatever a job prints: `--quiet` on a job leaves stdout empty when it
    // succeeds, while a read still prints what was asked and a failure still says why.
    let env = envs().remove(0);
    let (_db, src) = env.hotel_source(50);
    for args in [
        &["backup", src.as_str(), "--quiet"][..],
        &["-q", "verify", "latest"],
        &["check", "--quiet"],
        &["forget", "--keep-last", "5", "--prune", "--quiet"],
    ] {
        let out = env.cmd().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{args:?}");
    }
    let listed = env.cmd().args(["list", "--quiet"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("1 snapshot"));
    let json = env
        .cmd()
        .args(["backup", &src, "--quiet", "--json"])
        .output()
        .unwrap();
    assert!(json.status.success());
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(doc["id"].is_string(), "{doc}");
    let failed = env
        .cmd()
        .args(["verify", "nosuchid", "--quiet"])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(!String::from_utf8_lossy(&failed.stderr).trim().is_empty());
}

#[test]
fn messages_do_not_contradict_themselves() {
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        let id = one_row_snapshot(&env);
        // LATEST, in any case, means latest.
        for word in ["LATEST", "Latest"] {
            assert_eq!(env.json(&["show", word])["id"], id.as_str());
        }
        // Both targets: asked to give only one, not to give --to.
        let err = env.fails(&[
            "restore",
            "latest",
            "--to",
            "x.db",
            "--target-db",
            "postgres://app@127.0.0.1:9/x",
        ]);
        assert!(err.contains("only one"), "{err}");
        assert!(!err.contains("give the file to write"), "{err}");
        // One table with one row is said so.
        let v = env.json(&["verify", "latest"]);
        let counts = v["snapshots"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "row counts")
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(counts.starts_with("1 table, 1 row,"), "{counts}");
        // A damaged object is named once per line of `check`.
        let man = format!("snapshots/{id}");
        let storage = env.storage();
        let mut m = storage.get(&man).unwrap();
        m[10] ^= 0x80;
        storage.put(&man, &m).unwrap();
        let err = env.fails(&["check"]);
        for line in err.lines().filter(|l| l.contains(&man)) {
            assert_eq!(line.matches(&man).count(), 1, "{err}");
        }
        assert!(err.lines().any(|l| l.starts_with("damaged: ")), "{err}");
    }

    // A repository path that is a plain file: one plain sentence.
    let env = envs().remove(0);
    std::fs::write(env.path("plain"), "not a repository").unwrap();
    for args in [&["list"][..], &["init"]] {
        let out = env
            .cmd()
            .args(args)
            .env("STRONGROOM_REPO", env.path("plain"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("is a file, not a repository directory")
                && !err.contains("os error")
                && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
    // An unencrypted repository is called that.
    let out = env
        .cmd()
        .args(["init", "--encryption", "none"])
        .env_remove("STRONGROOM_PASSWORD")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("unencrypted") && !err.contains("none repository"),
        "{err}"
    );
}

#[test]
fn help_completions_and_man_page() {
    let run = |args: &[&str]| {
        let out = Command::cargo_bin("strongroom")
            .unwrap()
            .args(args)
            .env_remove("STRONGROOM_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for cmd in [
        &["init"][..],
        &["backup"],
        &["list"],
        &["show"],
        &["restore"],
        &["export"],
        &["verify"],
        &["check"],
        &["key"],
        &["key", "add"],
        &["key", "list"],
        &["key", "remove"],
        &["demo"],
        &["completions"],
        &["man"],
    ] {
        let help = run(&[cmd, &["--help"]].concat());
        assert!(help.contains("Example"), "{cmd:?} has no examples:\n{help}");
        // The command's own options come first, the global ones under their own heading.
        let global = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("{cmd:?}:\n{help}"));
        assert!(help[global..].contains("--repo <URL>"), "{cmd:?}:\n{help}");
        assert!(!help[..global].contains("--repo <URL>"), "{cmd:?}:\n{help}");
    }
    let list = run(&["list", "--help"]);
    assert!(list.find("--source").unwrap() < list.find("Global options:").unwrap());

    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("strongroom") && bash.contains("restore"),
        "{bash}"
    );
    for shell in ["zsh", "fish"] {
        assert!(run(&["completions", shell]).contains("strongroom"));
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH") && man.contains("backup"), "{man}");
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", dir.path().to_str().unwrap()]);
    for page in [
        "strongroom.1",
        "strongroom-backup.1",
        "strongroom-key-remove.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

/// The example lines of every man page, by the command they belong to (`["key", "add"]`):
/// the lines of the no-fill blocks of its "EXAMPLES AND NOTES" section, unescaped. Also
/// checks that no example sits outside such a block, where roff would fill it into prose.
fn man_page_examples(dir: &Path) -> Vec<(Vec<String>, Vec<String>)> {
    let unescape = |l: &str| {
        l.replace("\\*(Aq", "'")
            .replace("\\-", "-")
            .replace("\\&", "")
            .replace("\\\\", "\\")
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(at) = text.find(".SH \"EXAMPLES AND NOTES\"") else {
            continue;
        };
        let mut examples = Vec::new();
        let mut no_fill = false;
        for line in text[at..].lines().skip(1) {
            match line {
                l if l.starts_with(".SH") => break,
                ".nf" => no_fill = true,
                ".fi" => no_fill = false,
                l if no_fill => examples.push(unescape(l)),
                l => assert!(
                    !unescape(l).trim_start().starts_with("strongroom "),
                    "{name}: an example outside a no-fill block: {l}"
                ),
            }
        }
        let command: Vec<String> = name.split('-').skip(1).map(str::to_string).collect();
        out.push((command, examples));
    }
    out
}

#[test]
fn examples_keep_their_lines_in_help_and_man_page() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("strongroom")
        .unwrap()
        .args(["man", "--dir", dir.path().to_str().unwrap()])
        .assert()
        .success();
    let pages = man_page_examples(dir.path());
    let long = "strongroom restore latest --source prod --data-dir /srv/pg/restored --time '2026-12-01 22:59:00' --start";
    assert!(
        pages.iter().any(|(_, ex)| ex.iter().any(|l| l == long)),
        "{pages:?}"
    );
    let with_examples = pages.iter().filter(|(_, ex)| !ex.is_empty()).count();
    assert!(with_examples >= 25, "{pages:?}");

    let help = |command: &[String], columns: &str| {
        let out = Command::cargo_bin("strongroom")
            .unwrap()
            .args(command)
            .arg("--help")
            .env("COLUMNS", columns)
            .env_remove("STRONGROOM_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for (command, examples) in &pages {
        for columns in ["60", "200"] {
            let text = help(command, columns);
            for example in examples {
                assert!(
                    text.lines().any(|l| l.trim() == example.trim()),
                    "{command:?} at {columns} columns breaks {example:?}:\n{text}"
                );
            }
            // Prose still fills the width: only indented lines (examples, options) and
            // the usage line (clap's) may be longer.
            for line in text
                .lines()
                .filter(|l| !l.starts_with(' ') && !l.starts_with("Usage:"))
            {
                assert!(
                    line.chars().count() <= 100.min(columns.parse().unwrap()),
                    "{command:?} at {columns} columns: {line:?}"
                );
            }
        }
    }

    // On a terminal, its width counts (not COLUMNS), with the same result.
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("strongroom"));
    cmd.args(["restore", "--help"])
        .env("COLUMNS", "200")
        .env("NO_COLOR", "1");
    let mut pty = common::pty::Pty::spawn(cmd, 60);
    assert!(pty.finish().success(), "{}", pty.output);
    assert!(
        pty.output.lines().any(|l| l.trim() == long),
        "{}",
        pty.output
    );
    assert!(
        pty.output
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with("Usage:"))
            .all(|l| l.chars().count() <= 60),
        "{}",
        pty.output
    );
}

#[test]
fn completion_offers_configured_source_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("strongroom.toml"),
        "[sources.prod]\nurl = \"sqlite:prod.db\"\n[sources.staging]\nurl = \"sqlite:staging.db\"\n",
    )
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("strongroom");
    let script = |shell: &str| {
        let out = Command::cargo_bin("strongroom")
            .unwrap()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    std::fs::write(dir.path().join("strongroom.bash"), script("bash")).unwrap();
    // What bash does on <TAB>: the registered function, called with the words so far.
    let driver = r#"
        source ./strongroom.bash
        f=$(complete -p strongroom | sed -E 's/.*-F ([^ ]+).*/\1/')
        tab() {
            COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
            "$f" strongroom "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            echo "${COMPREPLY[*]}"
        }
        tab strongroom list --source ''
        tab strongroom backup ''
        tab strongroom restore latest --source st
        tab strongroom list --source = ''
        tab strongroom backup --tag daily --kind full p
        (cd / && tab strongroom --config "$CONFIG" status --source '')
        (cd / && tab strongroom status --source '')
    "#;
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", driver])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("CONFIG", dir.path().join("strongroom.toml"))
        .env_remove("STRONGROOM_CONFIG")
        .output()
        .unwrap();
    let answers = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        answers.lines().collect::<Vec<_>>(),
        [
            "prod staging",
            "prod staging",
            "staging",
            "prod staging",
            "prod",
            "prod staging",
            // No config where it runs, none given: nothing to offer, and no error shown.
            "",
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // zsh and fish (not installed here): every place a source goes asks for the names.
    let zsh = script("zsh");
    let specs: Vec<&str> = zsh
        .lines()
        .filter(|l| l.starts_with("'--source=") || l.starts_with("'::source -- "))
        .collect();
    assert!(specs.len() >= 10, "{zsh}");
    for spec in specs {
        assert!(spec.ends_with(":_strongroom_source_names' \\"), "{spec}");
    }
    assert!(zsh.contains("_strongroom_source_names() {"));
    let fish = script("fish");
    assert!(
        fish.contains("__fish_strongroom_using_subcommand list show restore")
            && fish.contains("-l source -x -a \"(__fish_strongroom_source_names)\"")
            && fish.contains(
                "__fish_strongroom_using_subcommand backup\" -f -a \"(__fish_strongroom_source_names)\""
            ),
        "{fish}"
    );
}

#[test]
fn a_locked_database_is_waited_for_then_refused_by_name_after_lock_timeout() {
    // Waiting for the lock happens before anything is stored: one store shows it.
    let env = envs().into_iter().next().unwrap();
    let db = env.path("hotel.db");
    make_db(&db, 2_000);
    let holder = Connection::open(&db).unwrap();
    holder
        .pragma_update(None, "journal_mode", "delete")
        .unwrap();
    env.init();
    let config = |timeout: &str| {
        std::fs::write(
            env.path("strongroom.toml"),
            format!(
                "[sources.hotel]\nurl = \"sqlite:{}\"\nlock_timeout = \"{timeout}\"\n",
                db.display()
            ),
        )
        .unwrap()
    };
    // In rollback-journal mode an exclusive transaction keeps every reader out.
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    config("1s");
    let err = env.fails(&["backup", "hotel"]);
    let last = err.trim_end().lines().last().unwrap();
    assert!(
        last.contains(&db.display().to_string())
            && last.contains("lock_timeout in [sources.hotel]")
            && last.contains("1s"),
        "{err}"
    );

    // Released while the backup waits: the backup goes on and succeeds.
    config("5m");
    let mut child = env
        .std_cmd()
        .args(["backup", "hotel", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let mut released = false;
    for line in std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap())) {
        let line = line.unwrap();
        if !released && line.contains("waiting up to 5m") {
            holder.execute_batch("COMMIT").unwrap();
            released = true;
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    assert!(released, "the backup never said it was waiting: {stderr}");
    assert!(out.status.success(), "{stderr}");
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["metadata"]["row_counts"], row_counts(&db));
}

/// The environment variables the program's own code reads: every name in a read of the
/// environment in `crates/strongroom/src` and `crates/strongroom-cli/src`, test modules
/// left out. A read is `var("N")`, `var_os("N")`, a one-argument helper `env("N")`,
/// `try_from_env("N")`, clap's `env = "N"`, or one of those given a `const X: &str = "N"`.
/// Passing a variable on to a child (`.env("N", v)`) or listing it for hooks is no read.
fn environment_read_by_the_code() -> std::collections::BTreeSet<String> {
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths = Vec::new();
    for dir in ["crates/strongroom/src", "crates/strongroom-cli/src"] {
        files(&root.join(dir), &mut paths);
    }
    let sources: Vec<String> = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            // A file's unit tests sit at its end.
            match text.find("#[cfg(test)]\nmod ") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        })
        .collect();
    let is_name = |s: &str| {
        s.len() > 2
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let reads = |before: &str, after: &str| {
        let before = before.trim_end();
        ((before.ends_with("var(") || before.ends_with("var_os(") || before.ends_with("env("))
            && after.trim_start().starts_with(')'))
            || before.ends_with("env =")
    };
    let mut found = std::collections::BTreeSet::new();
    let mut consts = Vec::new();
    for text in &sources {
        let mut rest = text.as_str();
        let mut offset = 0;
        while let Some(open) = rest.find('"') {
            let Some(len) = rest[open + 1..].find('"') else {
                break;
            };
            let literal = &rest[open + 1..open + 1 + len];
            let at = offset + open;
            let before = &text[..at];
            let after = &text[at + len + 2..];
            if is_name(literal) {
                if reads(before, after) {
                    found.insert(literal.to_string());
                } else if let Some(decl) = before.trim_end().strip_suffix(": &str =") {
                    let ident: String = decl
                        .chars()
                        .rev()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect();
                    if decl[..decl.len() - ident.len()]
                        .trim_end()
                        .ends_with("const")
                    {
                        consts.push((ident, literal.to_string()));
                    }
                }
            }
            offset = at + len + 2;
            rest = &text[offset..];
        }
    }
    for (ident, name) in consts {
        let used = sources.iter().any(|t| {
            ["var(", "var_os(", "env("]
                .iter()
                .any(|f| t.contains(&format!("{f}{ident})")))
        });
        if used {
            found.insert(name);
        }
    }
    found.retain(|n| !n.starts_with("STRONGROOM_TEST_"));
    found
}

#[test]
fn every_environment_variable_read_is_in_the_help() {
    let found = environment_read_by_the_code();
    // The scan itself works: it finds reads of each sort (a direct `var`, a helper `env`,
    // clap's `env =`, a named constant).
    for known in [
        "STRONGROOM_FETCH_RETRIES",
        "PGSSLMODE",
        "STRONGROOM_REPO",
        "STRONGROOM_PASSWORD",
        "STRONGROOM_DRILL_SEED",
    ] {
        assert!(
            found.contains(known),
            "{known} not found by the scan: {found:?}"
        );
    }
    let out = Command::cargo_bin("strongroom")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let listed = &help[help.find("Environment").expect("an environment list")..];
    let words: std::collections::BTreeSet<&str> = listed
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let missing: Vec<&String> = found
        .iter()
        .filter(|n| !words.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code but not in --help's environment list: {missing:?}\n{listed}"
    );
}

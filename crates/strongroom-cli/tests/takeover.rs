//! The attack append-only keys exist for, end to end, run as it would happen: a PostgreSQL
//! host archives WAL and takes its physical backups with an append-only key, through store
//! credentials a bucket policy limits to writes (the S3 fault proxy's
//! `Plan::append_only_bucket_policy`, in front of Garage). The host is taken over: the
//! attacker destroys the data, then tries to read, delete, overwrite and forget the backups
//! with everything the host holds, and writes junk. An operator with a full key, talking to
//! the store directly, then restores the last good snapshot and the WAL up to a moment just
//! before the takeover.

use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;
use strongroom::repository::layout::ObjectKind;
use strongroom::storage::Storage;
use strongroom_testkit::postgres::{Cluster, PASSWORD, bindirs, give_to_server_user};
use strongroom_testkit::s3proxy::{Fault, FaultProxy, Plan};

mod common;
use common::pg::{archive_now, between, exe, ids, open_up, server_env, workload};

/// The process environment's store endpoint is switched to build a Storage that talks
/// through the proxy; one test at a time.
static ENV: Mutex<()> = Mutex::new(());

/// A Storage on `repo` reached at `endpoint` (the proxy, or Garage itself).
fn storage_at(repo: &str, endpoint: &str) -> Storage {
    let _held = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let saved = std::env::var("AWS_ENDPOINT_URL").ok();
    // SAFETY: under ENV, and this file's one test reads it only under it.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL", endpoint) };
    let s = Storage::from_url(repo);
    match saved {
        // SAFETY: as above.
        Some(v) => unsafe { std::env::set_var("AWS_ENDPOINT_URL", v) },
        None => unsafe { std::env::remove_var("AWS_ENDPOINT_URL") },
    }
    s.unwrap()
}

#[test]
fn a_taken_over_host_cannot_destroy_its_backups_and_the_operator_recovers_to_just_before() {
    let Some(env) = common::Store::S3.env() else {
        return;
    };
    let garage = std::env::var("AWS_ENDPOINT_URL").expect("garage-up exports it");
    let proxy = FaultProxy::start(&garage);
    proxy.set_plan(Plan::append_only_bucket_policy());

    // The operator makes the repository and the host's key (full key, direct to the store).
    env.init();
    let key = env.append_only_key("db1");
    give_to_server_user(&key);
    open_up(&env);
    // What the host holds: its key file, and store credentials that go through the policy.
    let server_vars: Vec<(String, String)> = server_env(&env, &key)
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_ENDPOINT_URL" => (k, proxy.url()),
            _ => (k, v),
        })
        .collect();
    let bindir = bindirs().remove(0);
    let mut b = Cluster::builder()
        .bindir(bindir.clone())
        .setting("wal_level", "replica")
        .setting("track_commit_timestamp", "on")
        .setting("max_wal_senders", "4")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            &format!("{} wal push %p", exe().display()),
        );
    for (k, v) in &server_vars {
        b = b.env(k, v);
    }
    let pg = b.start();
    pg.create_database("app", None);
    pg.execute(
        "app",
        "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);",
    );
    let url = pg.url("postgres", Some(PASSWORD), "app");
    // The host's cron, as root: the same key and credentials, root's own state directory.
    let host = || {
        let mut c = env.cmd();
        c.env_remove("STRONGROOM_PASSWORD")
            .envs(
                server_vars
                    .iter()
                    .filter(|(k, _)| k != "STRONGROOM_STATE_DIR")
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("STRONGROOM_CACHE_DIR", env.path("host-cache"));
        c
    };
    let host_json = |args: &[&str]| {
        let mut c = host();
        c.args(args);
        common::json_of(c)
    };

    // Normal life: a base backup, transactions, WAL archived through the policy.
    let base = host_json(&["backup", &url, "--kind", "physical"]);
    let base_id = base["id"].as_str().unwrap().to_string();
    let committed = workload(&pg, 1, 11, None);
    archive_now(&pg);
    // The takeover happens after transaction 11: recover to between 10 and 11.
    let before = between(&committed[9].commit, &committed[10].commit);

    // The attacker destroys the data (and what it did is archived: WAL is WAL).
    pg.execute("app", "DROP TABLE oracle;");
    archive_now(&pg);

    // With the host's key: every read, delete and forget is refused.
    let data_dir = env.path("stolen");
    let dd = data_dir.display().to_string();
    for args in [
        vec!["restore", base_id.as_str(), "--data-dir", &dd],
        vec!["verify", "latest"],
        vec!["export", "latest", "--to", &dd],
        vec!["forget", "--keep-last", "1"],
        vec!["forget", base_id.as_str()],
        vec!["prune"],
        vec!["check", "--read-data"],
    ] {
        let out = host().args(&args).arg("--json").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "append_only", "{args:?}: {doc}");
    }
    // restore_command's side: refused, with the code that stops a recovery.
    let out = host()
        .args([
            "wal",
            "fetch",
            "000000010000000000000001",
            "pg_wal/RECOVERYXLOG",
        ])
        .current_dir(pg.data_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(254));
    assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    // With the host's store credentials, past strongroom: the store refuses.
    let admin = storage_at(&env.repo, &garage);
    let through = storage_at(&env.repo, &proxy.url());
    let pack = admin.list(ObjectKind::Pack.folder()).unwrap().remove(0).key;
    let manifest = ObjectKind::Snapshot.key(&base_id);
    let sealed = admin.get(&manifest).unwrap();
    assert!(through.get(&pack).is_err(), "a pack was read");
    assert!(through.delete(&pack).is_err(), "a pack was deleted");
    assert!(
        through.put(&manifest, b"junk").is_err(),
        "a manifest was overwritten"
    );
    assert!(through.delete(&manifest).is_err(), "a manifest was deleted");
    assert!(admin.get(&pack).is_ok());
    assert_eq!(admin.get(&manifest).unwrap(), sealed);
    // It writes junk: backups of the wrecked cluster, and a forged manifest.
    for _ in 0..3 {
        host_json(&["backup", &url, "--kind", "physical"]);
    }
    // The host can still say what it did (through the policy: its catalog, not the
    // manifests it may not read).
    let listed = host_json(&["list"]);
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
    assert_eq!(listed[0]["id"], base_id.as_str());
    let forged = ObjectKind::Snapshot.key(&"ab".repeat(32));
    through.put(&forged, b"not a manifest").unwrap();
    let refused = proxy.stats().count(Fault::Forbidden);
    assert!(refused >= 6, "the policy refused {refused} requests");
    drop(pg);

    // The operator, with a full key, straight to the store. The host's locks, which the
    // store would not let it delete, are stale (their processes are gone): unlock clears
    // them, heartbeats and all.
    let locks_left = admin.list(ObjectKind::Lock.folder()).unwrap();
    assert!(
        !locks_left.is_empty(),
        "the policy let the host delete its locks"
    );
    let unlocked = env.json(&["unlock"]);
    assert!(
        !unlocked["removed"].as_array().unwrap().is_empty(),
        "{unlocked}"
    );
    assert!(admin.list(ObjectKind::Lock.folder()).unwrap().is_empty());
    let listed = env.cmd().args(["list", "--json"]).output().unwrap();
    assert_eq!(
        listed.status.code(),
        Some(1),
        "the forged manifest is named"
    );
    let snaps: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 4, "{snaps}");
    // A full key file for the recovering server's restore_command (the host's cannot fetch).
    let recovery_key = env.path("recovery.key");
    env.cmd()
        .args(["key", "add", "--label", "recovery", "--new-key-file"])
        .arg(&recovery_key)
        .assert()
        .success();
    give_to_server_user(&recovery_key);
    let restored = env.path("restored");
    let out = env
        .cmd()
        .args(["restore", &base_id, "--data-dir"])
        .arg(&restored)
        .args(["--time", &before])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut b = Cluster::start_existing(&restored, &bindir);
    for (k, v) in server_env(&env, &recovery_key) {
        b = b.env(k, v);
    }
    let back = b
        .try_start()
        .unwrap_or_else(|log| panic!("the restored cluster did not start:\n{log}"));
    back.wait_promoted(Duration::from_secs(120)).unwrap();
    assert_eq!(ids(&back), (1..=10).collect());
}

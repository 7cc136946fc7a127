//! Append-only keys (`key add --append-only`) end to end: what a database host holding one
//! can do (back up, deduplicate against its own backups, list them), what it cannot (read
//! anything back, delete, forget, prune, add keys: each refused with kind `append_only`),
//! and that what it writes cannot push a snapshot a full key vouched for out of retention.
//! The store refusing the host everything but writes (a bucket policy) is tested through
//! the S3 fault proxy, and the whole attack with PostgreSQL in `tests/takeover.rs`.

use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;
use common::{Env, LOCAL_AND_S3, envs_on, update_bookings};

/// The binary as the host runs it: the append-only key file, no full password, a cache of
/// its own.
fn host(env: &Env, key: &Path) -> assert_cmd::Command {
    let mut c = env.cmd();
    c.env_remove("STRONGROOM_PASSWORD")
        .env("STRONGROOM_PASSWORD_FILE", key)
        .env("STRONGROOM_CACHE_DIR", env.path("host-cache"));
    c
}

fn host_json(env: &Env, key: &Path, args: &[&str]) -> Value {
    let mut c = host(env, key);
    c.args(args);
    common::json_of(c)
}

/// Runs `args` as the host, which must be refused with exit 1 and kind `append_only` in one
/// sentence; returns the message.
fn refused(env: &Env, key: &Path, args: &[&str]) -> String {
    let out = host(env, key).args(args).arg("--json").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON error ({e}): {err}"));
    assert_eq!(doc["error"]["kind"], "append_only", "{args:?}: {doc}");
    let msg = doc["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("append-only"), "{args:?}: {msg}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    msg
}

#[test]
fn a_host_key_backs_up_and_lists_but_reads_deletes_and_forgets_nothing() {
    for env in envs_on(&LOCAL_AND_S3) {
        eprintln!("== {}", env.store().name());
        let (db, src) = env.hotel_source(2_000);
        let key = env.append_only_key("db1");
        let keys = env.json(&["key", "list"]);
        let kinds: Vec<bool> = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["append_only"].as_bool().unwrap())
            .collect();
        assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{keys}");

        let first = host_json(&env, &key, &["backup", &src]);
        let id = first["id"].as_str().unwrap().to_string();
        update_bookings(&db, 0.01, 7);
        let second = host_json(&env, &key, &["backup", &src]);
        // The host lists what it did: ids, sources, times.
        let listed = host_json(&env, &key, &["list"]);
        let ids: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [id.as_str(), second["id"].as_str().unwrap()]);
        assert_eq!(listed[0]["source"], src.as_str());

        // Everything that reads contents, deletes or manages keys is refused by kind.
        let restore_to = env.path("restored.db");
        let to = restore_to.display().to_string();
        for args in [
            vec!["restore", id.as_str(), "--to", &to],
            vec!["verify", id.as_str()],
            vec!["check"],
            vec!["forget", "--keep-last", "1"],
            vec!["forget", id.as_str()],
            vec!["prune"],
            vec!["export", id.as_str(), "--to", &to],
            vec!["journal"],
            vec!["status"],
            vec!["unlock"],
            vec!["key", "remove", &id[..8]],
        ] {
            refused(&env, &key, &args);
        }
        let new_key = env.path("another.key");
        let nk = new_key.display().to_string();
        refused(&env, &key, &["key", "add", "--new-key-file", &nk]);
        assert!(!new_key.exists(), "a refused key add leaves no key file");
        assert!(!restore_to.exists());

        // The full key reads what the host wrote.
        env.cmd()
            .args(["restore", &id, "--to", &to])
            .assert()
            .success();
        assert!(common::invariant_holds(&restore_to));
        let all = env.json(&["list"]);
        assert_eq!(all.as_array().unwrap().len(), 2);
        // status, with the full key, says the host's backups were taken with an
        // append-only key, and how the repository is protected.
        let out = env.cmd().args(["status", "--json"]).output().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["protection"][0]["append_only_keys"], 1, "{doc}");
        assert_eq!(doc["protection"][0]["full_keys"], 1, "{doc}");
        assert_eq!(doc["protection"][0]["encryption"], "xchacha20poly1305");
        let check = doc["sources"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "protection")
            .unwrap_or_else(|| panic!("{doc}"))
            .clone();
        assert_eq!(check["level"], "ok", "{check}");
        let detail = check["detail"].as_str().unwrap();
        assert!(
            detail.contains("taken with an append-only key")
                && detail.contains("1 full key and 1 append-only key"),
            "{detail}"
        );
        // The runbook says which key restores.
        let runbook = env.cmd().arg("runbook").output().unwrap();
        let page = String::from_utf8_lossy(&runbook.stdout);
        assert!(
            page.contains("which key restores: a full key")
                && page.contains("the database host's key is append-only"),
            "{page}"
        );
        // Refusals are an operator's mistake, not job failures: nothing journaled failed.
        let failed = env.json(&["journal", "--failed"]);
        assert_eq!(failed.as_array().unwrap().len(), 0, "{failed}");
    }
}

#[test]
fn a_host_deduplicates_against_its_own_backups_even_after_losing_its_cache() {
    // The same database and the same 1% change backed up by a full key into one repository
    // and by an append-only key into another: the host's second backup adds only the pages
    // that changed, also when its local state is gone (rebuilt from its catalog). A full key
    // adds less: it stores changed pages as deltas against the parent's, which a host cannot
    // read (docs/ARCHITECTURE.md, "Page deltas"); a host stores them whole.
    let env = envs_on(&[common::Store::Local]).remove(0);
    let full_repo = env.path("full-repo").display().to_string();
    let host_db = env.path("host.db");
    let full_db = env.path("full.db");
    common::make_db(&host_db, 20_000);
    std::fs::copy(&host_db, &full_db).unwrap();
    env.init();
    let key = env.append_only_key("db1");
    env.cmd()
        .env("STRONGROOM_REPO", &full_repo)
        .arg("init")
        .assert()
        .success();
    let full = |args: &[&str]| {
        let mut c = env.cmd();
        c.env("STRONGROOM_REPO", &full_repo).args(args);
        common::json_of(c)
    };
    let host_src = format!("sqlite:{}", host_db.display());
    let full_src = format!("sqlite:{}", full_db.display());
    let first = host_json(&env, &key, &["backup", &host_src])["added"]
        .as_u64()
        .unwrap();
    full(&["backup", &full_src]);
    update_bookings(&host_db, 0.01, 11);
    update_bookings(&full_db, 0.01, 11);
    let full_added = full(&["backup", &full_src])["added"].as_u64().unwrap();
    let host_added = host_json(&env, &key, &["backup", &host_src])["added"]
        .as_u64()
        .unwrap();
    eprintln!(
        "second backup added: host {host_added} B, full key {full_added} B (first {first} B)"
    );
    assert!(
        host_added * 3 < first && full_added <= host_added,
        "host {host_added} vs full {full_added}, first {first}"
    );
    // Local state lost: rebuilt from the host's catalog.
    std::fs::remove_dir_all(env.path("host-cache")).unwrap();
    update_bookings(&host_db, 0.01, 12);
    update_bookings(&full_db, 0.01, 12);
    let full_added = full(&["backup", &full_src])["added"].as_u64().unwrap();
    let host_added = host_json(&env, &key, &["backup", &host_src])["added"]
        .as_u64()
        .unwrap();
    eprintln!("after losing the cache: host {host_added} B, full key {full_added} B");
    assert!(
        host_added * 3 < first && full_added <= host_added,
        "host {host_added} vs full {full_added}, first {first}"
    );
    // A full key's backup does not build on the host's chunks (it could not tell junk under
    // a chunk's id from the page), and reads them fine.
    let full_here = env.json(&["backup", &host_src]);
    assert!(
        full_here["added"].as_u64().unwrap() > host_added,
        "{full_here}"
    );
}

#[test]
fn junk_from_a_host_never_pushes_a_vouched_snapshot_out() {
    let env = envs_on(&[common::Store::Local]).remove(0);
    let (db, src) = env.hotel_source(1_000);
    let key = env.append_only_key("db1");
    // Two good backups, each checked by a full key: verify vouches for them.
    let mut good = Vec::new();
    for seed in [1, 2] {
        update_bookings(&db, 0.05, seed);
        let id = host_json(&env, &key, &["backup", &src])["id"]
            .as_str()
            .unwrap()
            .to_string();
        let verified = env.json(&["verify", &id]);
        assert_eq!(verified["ok"], true, "{verified}");
        good.push(id);
    }
    let good_bookings = common::bookings_in(&db);
    // The host is taken over: 100 junk snapshots of the same source in a row.
    std::fs::remove_file(&db).unwrap();
    let junk = rusqlite::Connection::open(&db).unwrap();
    junk.execute_batch("CREATE TABLE junk (x); INSERT INTO junk VALUES (1);")
        .unwrap();
    drop(junk);
    for _ in 0..100 {
        host(&env, &key)
            .args(["backup", &src, "-q"])
            .assert()
            .success();
    }
    // keep-last 2 over everything would keep two junk snapshots and, by the safety rule,
    // the newest verified one only: the first good one would go.
    let forgot = env.json(&["forget", "--keep-last", "2"]);
    let kept: Vec<&str> = forgot["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    for g in &good {
        assert!(kept.contains(&g.as_str()), "{g} forgotten: {forgot}");
    }
    assert_eq!(
        kept.len(),
        4,
        "the 2 vouched ones and the 2 newest: {forgot}"
    );
    let restored = env.path("back.db");
    env.cmd()
        .args(["restore", &good[1], "--to"])
        .arg(&restored)
        .assert()
        .success();
    assert_eq!(common::bookings_in(&restored), good_bookings);
}

/// Every pack file of a local repository.
fn pack_files(repo: &str) -> std::collections::BTreeSet<PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    for fan in std::fs::read_dir(Path::new(repo).join("data")).unwrap() {
        for p in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            out.insert(p.unwrap().path());
        }
    }
    out
}

#[test]
fn a_chunk_that_fails_is_read_from_another_place_the_index_lists() {
    // A full key's backup does not build on what a host stored, so the same pages end up in
    // two places: the host's packs and the full key's. With every pack of the full key's
    // damaged, its snapshot still restores, from the host's copies (the reader turns to
    // the other places a chunk is listed: what also keeps junk a stolen host listed under
    // a chunk's id from costing a restore).
    let env = envs_on(&[common::Store::Local]).remove(0);
    let (db, src) = env.hotel_source(3_000);
    let key = env.append_only_key("db1");
    host_json(&env, &key, &["backup", &src]);
    let before = pack_files(&env.repo);
    let full = env.json(&["backup", &src]);
    let mine: Vec<PathBuf> = pack_files(&env.repo).difference(&before).cloned().collect();
    assert!(!mine.is_empty(), "the full key stored the pages again");
    for p in &mine {
        let mut bytes = std::fs::read(p).unwrap();
        let mid = bytes.len() / 3;
        bytes[mid] ^= 0x55;
        // Replaced, not written in place: the repository's files are read-only.
        std::fs::remove_file(p).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let back = env.path("back.db");
    let out = env
        .cmd()
        .args(["restore", full["id"].as_str().unwrap(), "--to"])
        .arg(&back)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("instead"), "{err}");
    assert_eq!(
        common::bookings_in(&back),
        common::bookings_in(&db),
        "{err}"
    );
}

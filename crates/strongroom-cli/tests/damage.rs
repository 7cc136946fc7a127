//! Damaged and missing data end to end: flipped bytes are named and refused, backups never
//! build on missing or damaged packs, a truncated pack found by `check` is stored again, and
//! `check` accounts for data no snapshot needs, a pack cut short is named by `restore`; on a
//! local repository and on every object store (Garage, Azurite, fake-gcs-server).

use rusqlite::Connection;
use serde_json::Value;
use std::path::Path;

mod common;
use common::{bookings_in, envs};

#[test]
fn flipped_bytes_are_named_and_restores_refuse() {
    for env in envs() {
        let (_, src) = env.hotel_source(5_000);
        let snap = env.json(&["backup", &src]);
        let id = snap["id"].as_str().unwrap().to_string();
        let storage = env.storage();
        let pack = storage.list("data/").unwrap().remove(0).key;
        let mut bytes = storage.get(&pack).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x01;
        storage.put(&pack, &bytes).unwrap();

        let err = env.fails(&["verify", &id]);
        assert!(err.contains(&id[..8]), "{err}");
        let v = env.cmd().args(["verify", &id, "--json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(v["ok"], false);
        let detail = v["snapshots"][0]["checks"][0]["detail"].as_str().unwrap();
        assert!(
            detail.contains(&pack) && detail.contains(&id[..8]),
            "{detail}"
        );

        assert!(
            !storage.list("damage/").unwrap().is_empty(),
            "a verify that meets damage records it: the next backup stores those chunks again"
        );
        let err = env.fails(&["check", "--read-data"]);
        assert!(err.contains(&pack) && err.contains(&id[..8]), "{err}");
        let out = env.path("out.db");
        let err = env.fails(&["restore", &id, "--to", out.to_str().unwrap()]);
        assert!(err.contains(&pack), "{err}");
        assert!(!out.exists(), "a failed restore must leave no file");
        let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("strongroom-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A damaged manifest and index are named too.
        let man = format!("snapshots/{id}");
        let mut m = storage.get(&man).unwrap();
        m[10] ^= 0x80;
        storage.put(&man, &m).unwrap();
        let err = env.fails(&["check"]);
        assert!(err.contains(&man), "{err}");
        let err = env.fails(&["show", &id]);
        assert!(err.contains(&man), "{err}");
        // one damaged manifest does not hide or block the others (a database sharing no page
        // with the damaged pack: dedup would rightly reuse its chunks otherwise)
        let c = Connection::open(env.path("other.db")).unwrap();
        c.execute_batch("CREATE TABLE notes(body BLOB); INSERT INTO notes VALUES (randomblob(3000)), (randomblob(3000));").unwrap();
        drop(c);
        let other = env.json(&["backup", "sqlite:other.db"]);
        let out = env.cmd().args(["list", "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert!(String::from_utf8_lossy(&out.stderr).contains(&man));
        env.cmd()
            .args(["restore", "latest", "--to", "other-restored.db"])
            .assert()
            .success();
        assert_eq!(env.json(&["show", "latest"])["id"], other["id"]);
        // verify --all still verifies the others, and reports the damaged one by its id.
        let out = env
            .cmd()
            .args(["verify", "--all", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["ok"], false, "{v}");
        let entries = v["snapshots"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{v}");
        assert_eq!(
            (&entries[0]["id"], &entries[0]["ok"]),
            (&other["id"], &Value::Bool(true))
        );
        assert_eq!(
            (entries[1]["id"].as_str(), &entries[1]["ok"]),
            (Some(id.as_str()), &Value::Bool(false))
        );
        let check = &entries[1]["checks"][0];
        assert_eq!(check["name"], "manifest", "{v}");
        assert!(check["detail"].as_str().unwrap().contains(&man), "{v}");
        let idx = storage.list("index/").unwrap().remove(0).key;
        let mut b = storage.get(&idx).unwrap();
        b[20] ^= 0x04;
        storage.put(&idx, &b).unwrap();
        let err = env.fails(&["check"]);
        assert!(err.contains(&idx), "{err}");
    }
}

#[test]
fn a_truncated_pack_found_by_check_is_stored_again() {
    for env in envs() {
        let (db, src) = env.hotel_source(2_000);
        env.json(&["backup", &src]);
        let storage = env.storage();
        // Every pack is one this snapshot needs.
        let victim = storage.list("data/").unwrap().remove(0).key;
        let bytes = storage.get(&victim).unwrap();
        storage.put(&victim, &bytes[..bytes.len() / 2]).unwrap();
        let err = env.fails(&["check"]);
        assert!(err.contains("truncated") && err.contains(&victim), "{err}");
        let again = env.json(&["backup", &src]);
        assert!(again["added"].as_u64().unwrap() > 0, "{again}");
        env.cmd()
            .args(["restore", again["id"].as_str().unwrap(), "--to", "after.db"])
            .assert()
            .success();
        assert_eq!(bookings_in(&env.path("after.db")), bookings_in(&db));
    }
}

/// A pack cut short under the index's feet: `restore` says so and names it, as damage no
/// retry can mend, on every store alike. (Object stores answer a range read past an
/// object's end with a short body or "invalid range", which alone looks like a failing
/// network.)
#[test]
fn a_truncated_pack_makes_restore_name_the_damage() {
    for env in envs() {
        let (_, src) = env.hotel_source(2_000);
        env.json(&["backup", &src]);
        let storage = env.storage();
        let victim = storage.list("data/").unwrap().remove(0).key;
        let bytes = storage.get(&victim).unwrap();
        storage.put(&victim, &bytes[..bytes.len() / 2]).unwrap();
        let out = env
            .cmd()
            .args(["restore", "latest", "--to", "after.db", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", env.repo);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "damaged_data", "{}: {doc}", env.repo);
        assert_eq!(doc["error"]["retryable"], false, "{}: {doc}", env.repo);
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&victim) && message.contains("shorter"),
            "{}: {doc}",
            env.repo
        );
        assert!(!env.path("after.db").exists(), "{}", env.repo);
    }
}

#[test]
fn backups_never_build_on_missing_or_damaged_data() {
    for env in envs() {
        let (db, src) = env.hotel_source(2_000);
        let storage = env.storage();
        env.json(&["backup", &src]);
        let packs = storage.list("data/").unwrap();
        assert!(!packs.is_empty());

        // A lost pack: the next backup must store its chunks again, not reuse them.
        storage.delete(&packs[0].key).unwrap();
        let err = env.fails(&["check"]);
        assert!(err.contains(&packs[0].key), "{err}");
        let second = env.json(&["backup", &src]);
        assert!(
            second["added"].as_u64().unwrap() > 0,
            "a backup re-stores what the index can no longer vouch for: {second}"
        );
        let id = second["id"].as_str().unwrap();
        env.cmd()
            .args(["restore", id, "--to", "after-loss.db"])
            .assert()
            .success();
        assert_eq!(bookings_in(&env.path("after-loss.db")), bookings_in(&db));
        env.cmd().args(["verify", id]).assert().success();

        // A damaged pack found by check: the same.
        let packs = storage.list("data/").unwrap();
        let victim = &packs[packs.len() - 1].key;
        let mut bytes = storage.get(victim).unwrap();
        bytes[100] ^= 0x01;
        storage.put(victim, &bytes).unwrap();
        let err = env.fails(&["check", "--read-data"]);
        assert!(err.contains(victim), "{err}");
        assert!(
            !storage.list("damage/").unwrap().is_empty(),
            "check records damage"
        );
        let third = env.json(&["backup", &src]);
        let id = third["id"].as_str().unwrap();
        env.cmd()
            .args(["restore", id, "--to", "after-damage.db"])
            .assert()
            .success();
        assert_eq!(bookings_in(&env.path("after-damage.db")), bookings_in(&db));

        // A damaged index object costs only what it alone lists: list, show, backup and a
        // restore of the newest snapshot still work.
        let idx = storage.list("index/").unwrap().remove(0).key;
        let mut b = storage.get(&idx).unwrap();
        b[20] ^= 0x04;
        storage.put(&idx, &b).unwrap();
        env.json(&["list"]);
        let fourth = env.json(&["backup", &src]);
        env.cmd()
            .args([
                "restore",
                fourth["id"].as_str().unwrap(),
                "--to",
                "after-index.db",
            ])
            .assert()
            .success();
        assert_eq!(bookings_in(&env.path("after-index.db")), bookings_in(&db));
        let err = env.fails(&["check"]);
        assert!(err.contains(&idx), "{err}");
    }
}

#[test]
fn check_accounts_for_data_no_snapshot_needs() {
    let env = envs().into_iter().next().unwrap();
    let (_, src) = env.hotel_source(500);
    env.json(&["backup", &src]);
    // What a killed backup leaves: a pack no index names, and a temporary object.
    let storage = env.storage();
    let pack = storage.list("data/").unwrap().remove(0);
    let bytes = storage.get(&pack.key).unwrap();
    let orphan = format!("data/ee/{}", "ee".repeat(32));
    storage.put(&orphan, &bytes).unwrap();
    std::fs::write(
        Path::new(&env.repo).join("data").join(".tmp-interrupted"),
        b"half",
    )
    .unwrap();
    let report = env.json(&["check"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["unreferenced"]["packs"], 1, "{report}");
    assert_eq!(report["unreferenced"]["pack_bytes"], bytes.len() as u64);
    assert_eq!(report["unreferenced"]["temporary_objects"], 1, "{report}");
    let out = env.cmd().arg("check").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("unreferenced"));
}

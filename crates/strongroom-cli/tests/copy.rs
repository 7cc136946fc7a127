//! `strongroom copy` and `init --copy-of`, end to end: the real binary copying from a local
//! repository into a local one and (under ./scripts/test) into Garage S3. A copy restores
//! every snapshot alone, a second run moves only what is new (measured in bytes), a SIGKILL
//! at any moment leaves it consistent and the next run moves nothing twice, a damaged source
//! pack is named and never copied, a repository that is not a copy is refused, and a
//! physical snapshot with its WAL recovers to a point in time from the copy with the
//! primary gone. `status` judges each `[[copies]]` repository's lag against the RPO (time
//! moved by `faketime`), alerts when a copy falls behind, `metrics` exports the lag, and a
//! copy that cannot be read is critical in one sentence.

mod common;

use common::pg::{Rig, archive_now, between, expect, ids, server_env, workload};
use common::{Env, PASSWORD, Store, envs};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;
use strongroom::hotel::Rng;
use strongroom_testkit::postgres::{Cluster, bindirs, give_to_server_user};

/// The copy's own password: a copy shares its source's keys, not its passwords.
const COPY_PASSWORD: &str = "another horse, another battery";

/// A local primary repository for a copy into `dest`.
fn primary() -> Env {
    envs().remove(0)
}

/// The binary on the copy: its URL and its own password.
fn on_copy(dest: &Env) -> assert_cmd::Command {
    let mut c = dest.cmd();
    c.env("STRONGROOM_PASSWORD", COPY_PASSWORD);
    c
}

/// `init --copy-of` the primary at `dest`.
fn init_copy(primary: &Env, dest: &Env) {
    on_copy(dest)
        .env("STRONGROOM_FROM_PASSWORD", PASSWORD)
        .args(["init", "--copy-of", &primary.repo])
        .assert()
        .success();
}

/// The primary's `copy --to dest` (with `extra`), as a plain process.
fn copy_cmd(primary: &Env, dest: &Env, extra: &[&str]) -> std::process::Command {
    let mut c = primary.std_cmd();
    c.env("STRONGROOM_TO_PASSWORD", COPY_PASSWORD)
        .args(["copy", "--to", &dest.repo])
        .args(extra);
    c
}

/// A successful `copy --json` into `dest`: its one entry.
fn copied(primary: &Env, dest: &Env, extra: &[&str]) -> Value {
    let doc = common::json_of(assert_cmd::Command::from_std(copy_cmd(
        primary, dest, extra,
    )));
    assert_eq!(doc["copies"].as_array().unwrap().len(), 1, "{doc}");
    doc["copies"][0].clone()
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn copy_ids(dest: &Env) -> Vec<String> {
    let mut c = on_copy(dest);
    c.arg("list");
    ids_of(&common::json_of(c))
}

/// Restores `id` from the copy and returns the file's bytes.
fn restored_from_copy(dest: &Env, id: &str) -> Vec<u8> {
    let to = dest.path(&format!("restored-{}.db", &id[..12]));
    let _ = std::fs::remove_file(&to);
    on_copy(dest)
        .args(["restore", id, "--to"])
        .arg(&to)
        .assert()
        .success();
    let bytes = std::fs::read(&to).unwrap();
    std::fs::remove_file(&to).unwrap();
    bytes
}

fn check_copy(dest: &Env) -> Value {
    let mut c = on_copy(dest);
    c.args(["check", "--read-data"]);
    common::json_of(c)
}

fn listed(dest: &Env, folder: &str) -> HashSet<String> {
    dest.storage()
        .list(folder)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn a_copy_restores_alone_and_a_second_run_moves_only_what_is_new() {
    for dest in envs() {
        let primary = primary();
        primary.init();
        let (db, src) = primary.hotel_db(100_000);
        let mut states: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let first = primary.json(&["backup", &src]);
        states.insert(
            first["id"].as_str().unwrap().into(),
            std::fs::read(&db).unwrap(),
        );
        common::update_bookings(&db, 0.05, 1);
        let second = primary.json(&["backup", &src, "--tag", "pre-migration"]);
        states.insert(
            second["id"].as_str().unwrap().into(),
            std::fs::read(&db).unwrap(),
        );

        init_copy(&primary, &dest);
        let info = {
            let mut c = on_copy(&dest);
            c.args(["check"]);
            common::json_of(c)
        };
        assert_eq!(info["snapshots"], 0, "a new copy is empty: {info}");
        let entry = copied(&primary, &dest, &[]);
        assert_eq!(entry["repository"], dest.repo.as_str());
        assert_eq!(entry["snapshots_copied"], 2, "{entry}");
        assert_eq!(entry["snapshots_present"], 0, "{entry}");
        assert_eq!(entry["wal_files_copied"], 0, "{entry}");
        assert!(n(&entry["bytes_written"]) > 0 && n(&entry["bytes_read"]) > 0);

        // The copy opens with its own password, not the primary's, and restores alone.
        let out = dest.cmd().arg("list").output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "the primary's password opens no copy"
        );
        let check = check_copy(&dest);
        assert_eq!(check["ok"], true, "{check:#}");
        let mut in_copy = copy_ids(&dest);
        in_copy.sort();
        assert_eq!(in_copy, states.keys().cloned().collect::<Vec<_>>());
        for (id, state) in &states {
            assert!(
                restored_from_copy(&dest, id) == *state,
                "{id} restores from the copy"
            );
        }

        // A 1% change: the copy reads and writes about what the backup added.
        common::update_bookings(&db, 0.01, 2);
        let third = primary.json(&["backup", &src]);
        let added = n(&third["added"]);
        states.insert(
            third["id"].as_str().unwrap().into(),
            std::fs::read(&db).unwrap(),
        );
        let entry = copied(&primary, &dest, &[]);
        eprintln!(
            "{}: backup added {added}, copy read {} and wrote {}",
            dest.repo, entry["bytes_read"], entry["bytes_written"]
        );
        assert_eq!(
            (
                n(&entry["snapshots_copied"]),
                n(&entry["snapshots_present"])
            ),
            (1, 2),
            "{entry}"
        );
        let most = added as f64 * 1.1;
        assert!(
            n(&entry["bytes_read"]) as f64 <= most,
            "read {} for {added} added",
            entry["bytes_read"]
        );
        assert!(
            n(&entry["bytes_written"]) as f64 <= most,
            "wrote {} for {added} added",
            entry["bytes_written"]
        );
        let id = third["id"].as_str().unwrap();
        assert!(restored_from_copy(&dest, id) == states[id]);

        // Nothing new: nothing moves.
        let entry = copied(&primary, &dest, &[]);
        assert_eq!(entry["snapshots_copied"], 0, "{entry}");
        assert_eq!(entry["snapshots_present"], 3, "{entry}");
        assert_eq!(
            (n(&entry["bytes_read"]), n(&entry["bytes_written"])),
            (0, 0)
        );

        // The journal of the primary has the copy, with its figures.
        let journal = primary.json(&["journal", "--job", "copy"]);
        let records = journal.as_array().unwrap();
        assert_eq!(records.len(), 3, "{journal}");
        assert_eq!(records[1]["copy"]["snapshots_copied"], 1, "{journal}");
        assert_eq!(records[1]["copy"]["repository"], dest.repo.as_str());
    }
}

#[test]
fn configured_copies_are_copied_without_to_and_keep_their_own_retention() {
    let primary = primary();
    primary.init();
    let (db, src) = primary.hotel_db(5_000);
    for i in 0..3 {
        common::update_bookings(&db, 0.1, i);
        primary.json(&["backup", &src]);
    }
    let targets: Vec<Env> = vec![envs().remove(0), envs().remove(0)];
    for t in &targets {
        init_copy(&primary, t);
    }
    let password = primary.path("copy-password");
    std::fs::write(&password, format!("{COPY_PASSWORD}\n")).unwrap();
    let config = primary.path("strongroom.toml");
    std::fs::write(
        &config,
        format!(
            "[retention]\nkeep_last = 3\n\n[[copies]]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n[copies.retention]\nkeep_last = 1\n\n[[copies]]\nrepository = \"{}\"\npassword_command = \"echo '{COPY_PASSWORD}'\"\n",
            targets[0].repo,
            password.display(),
            targets[1].repo
        ),
    )
    .unwrap();
    let with_config = |env: &Env| {
        let mut c = env.cmd();
        c.env("STRONGROOM_CONFIG", &config);
        c
    };
    let mut c = with_config(&primary);
    c.arg("copy");
    let doc = common::json_of(c);
    let copies = doc["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{doc}");
    for (entry, t) in copies.iter().zip(&targets) {
        assert_eq!(entry["repository"], t.repo.as_str());
        assert_eq!(entry["snapshots_copied"], 3, "{doc}");
    }
    // `--repo` naming a copy opens it with its [[copies]] password and forgets by its own
    // retention; the primary keeps by [retention].
    let forget = |env: &Env, repo: &str| {
        let mut c = with_config(env);
        c.env_remove("STRONGROOM_PASSWORD")
            .args(["--repo", repo, "forget", "--dry-run"]);
        common::json_of(c)
    };
    let on_first = forget(&targets[0], &targets[0].repo);
    assert_eq!(
        on_first["remove"].as_array().unwrap().len(),
        2,
        "{on_first}"
    );
    let on_second = forget(&targets[1], &targets[1].repo);
    assert_eq!(
        on_second["remove"].as_array().unwrap().len(),
        0,
        "{on_second}"
    );
    let mut c = with_config(&primary);
    c.args(["forget", "--dry-run"]);
    assert_eq!(common::json_of(c)["remove"].as_array().unwrap().len(), 0);
    // Forgotten for real in the first copy, they are not copied back: that copy keeps what
    // its own retention keeps.
    let mut c = with_config(&targets[0]);
    c.env_remove("STRONGROOM_PASSWORD")
        .args(["--repo", &targets[0].repo, "forget", "--prune"]);
    common::json_of(c);
    common::update_bookings(&db, 0.1, 9);
    primary.json(&["backup", &src]);
    let mut c = with_config(&primary);
    c.arg("copy");
    let doc = common::json_of(c);
    let first = &doc["copies"][0];
    assert_eq!(first["snapshots_copied"], 1, "only the new one: {doc}");
    assert_eq!(first["snapshots_forgotten_there"], 2, "{doc}");
    assert_eq!(doc["copies"][1]["snapshots_copied"], 1, "{doc}");
    assert_eq!(doc["copies"][1]["snapshots_present"], 3, "{doc}");
    let check = check_copy(&targets[0]);
    assert_eq!(check["ok"], true, "{check:#}");
    assert_eq!(copy_ids(&targets[0]).len(), 2);
}

/// Starts `args` paused at `point` (see `strongroom::fault`); returns once it is there.
fn paused(mut cmd: std::process::Command, point: &str, dir: &Path) -> Child {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    common::paused_at(cmd, point, dir)
}

/// SIGKILLs a copy just before its index objects and just before its manifest, then at
/// random moments: after every kill the copy checks clean, every snapshot it lists restores
/// byte-identical, and the run that finishes the job writes no pack, WAL file or manifest
/// that was there already.
#[test]
fn a_killed_copy_to_a_directory_leaves_it_consistent_and_nothing_is_moved_twice() {
    killed_copies(Store::Local, 5);
}

#[test]
fn a_killed_copy_to_s3_leaves_it_consistent_and_nothing_is_moved_twice() {
    killed_copies(Store::S3, 5);
}

// Azure and GCS: the two kills at fixed points and fewer at random, as the SQLite kill test
// does there, so the suite fits CI (each store costs what S3 does).
#[test]
fn a_killed_copy_to_azure_leaves_it_consistent_and_nothing_is_moved_twice() {
    killed_copies(Store::Azure, 2);
}

#[test]
fn a_killed_copy_to_gcs_leaves_it_consistent_and_nothing_is_moved_twice() {
    killed_copies(Store::Gcs, 2);
}

/// A copy into `store` killed at its two pause points and at `random_kills` random moments:
/// after each kill the copy checks clean and restores byte-identical, and the next run
/// writes only what was missing.
fn killed_copies(store: Store, random_kills: usize) {
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    if let Some(dest) = store.env() {
        let remote = dest.repo.contains("://");
        let primary = primary();
        primary.init();
        let (db, src) = primary.hotel_db(40_000);
        let mut states: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let backup = |round: u64, states: &mut BTreeMap<String, Vec<u8>>| {
            common::update_bookings(&db, 0.2, round);
            let s = primary.json(&["backup", &src]);
            states.insert(
                s["id"].as_str().unwrap().into(),
                std::fs::read(&db).unwrap(),
            );
        };
        backup(0, &mut states);
        init_copy(&primary, &dest);
        let faults = primary.path("faults");

        // Killed with its packs written and no index object naming them.
        let mut child = paused(copy_cmd(&primary, &dest, &[]), "copy-before-index", &faults);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(copy_ids(&dest).is_empty(), "no manifest before its data");
        let packs = listed(&dest, "data/");
        assert!(!packs.is_empty());
        let check = check_copy(&dest);
        assert_eq!(check["ok"], true, "{check:#}");
        let entry = copied(&primary, &dest, &[]);
        assert_eq!(entry["packs_copied"], 0, "nothing copied twice: {entry}");
        assert_eq!(n(&entry["packs_indexed"]), packs.len() as u64, "{entry}");
        assert_eq!(entry["snapshots_copied"], 1, "{entry}");

        // Killed with everything written but the manifest.
        backup(1, &mut states);
        let mut child = paused(
            copy_cmd(&primary, &dest, &[]),
            "copy-before-commit",
            &faults,
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(copy_ids(&dest).len(), 1);
        let check = check_copy(&dest);
        assert_eq!(check["ok"], true, "{check:#}");
        let before = listed(&dest, "data/");
        let entry = copied(&primary, &dest, &[]);
        assert_eq!(entry["packs_copied"], 0, "{entry}");
        assert_eq!(entry["packs_indexed"], 0, "they were indexed: {entry}");
        assert_eq!(entry["snapshots_copied"], 1, "{entry}");
        assert_eq!(listed(&dest, "data/"), before);

        // At random moments.
        let span = if remote { 2500 } else { 1200 };
        let mut kills = 0;
        let mut round = 1;
        let mut verified: HashSet<String> = copy_ids(&dest).into_iter().collect();
        while kills < random_kills {
            round += 1;
            assert!(round < 60, "too few kills landed");
            backup(round, &mut states);
            let mut child = copy_cmd(&primary, &dest, &[])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(span)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
            let check = check_copy(&dest);
            assert_eq!(check["ok"], true, "round {round}, seed {seed}: {check:#}");
            // Each snapshot in the copy restores byte-identical, checked once: its objects
            // are never written again, and check --read-data covers them after that.
            for id in copy_ids(&dest) {
                if verified.insert(id.clone()) {
                    assert!(
                        restored_from_copy(&dest, &id) == states[&id],
                        "round {round}: {id} restores byte-identical (seed {seed})"
                    );
                }
            }
            let (packs, snaps) = (listed(&dest, "data/"), listed(&dest, "snapshots/"));
            let entry = copied(&primary, &dest, &[]);
            let (packs_after, snaps_after) = (listed(&dest, "data/"), listed(&dest, "snapshots/"));
            assert_eq!(
                n(&entry["packs_copied"]) as usize,
                packs_after.len() - packs.len(),
                "round {round}: only packs the copy lacked were written (seed {seed}): {entry}"
            );
            assert_eq!(
                n(&entry["snapshots_copied"]) as usize,
                snaps_after.len() - snaps.len(),
                "round {round} (seed {seed}): {entry}"
            );
            assert_eq!(snaps_after.len(), states.len());
        }
        eprintln!("{}: {kills} kills in {round} rounds", dest.repo);
    }
}

#[test]
fn a_damaged_source_pack_is_named_with_its_snapshot_and_never_copied() {
    for dest in envs() {
        let primary = primary();
        primary.init();
        let (db, src) = primary.hotel_db(5_000);
        let good = primary.json(&["backup", &src]);
        let before = listed(&primary, "data/");
        common::update_bookings(&db, 0.3, 1);
        let hit = primary.json(&["backup", &src]);
        let hit_id = hit["id"].as_str().unwrap();
        let pack = listed(&primary, "data/")
            .into_iter()
            .find(|k| !before.contains(k))
            .expect("the second backup added a pack");
        let path = Path::new(&primary.repo).join(&pack);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();

        init_copy(&primary, &dest);
        let out = copy_cmd(&primary, &dest, &["--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&pack) && err.contains(&hit_id[..8]),
            "names the pack and the snapshot: {err}"
        );
        let last = err.trim_end().lines().last().unwrap();
        assert!(last.starts_with("strongroom: "), "{err}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let entry = &doc["copies"][0];
        assert_eq!(entry["snapshots_copied"], 1, "{doc}");
        let failures = entry["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 1, "{doc}");
        assert_eq!(failures[0]["object"], pack.as_str());
        assert_eq!(failures[0]["kind"], "damaged_data");
        assert_eq!(failures[0]["snapshots"][0], hit_id);
        assert!(!dest.storage().exists(&pack).unwrap(), "never written");
        assert_eq!(
            copy_ids(&dest),
            vec![good["id"].as_str().unwrap().to_string()]
        );
        let check = check_copy(&dest);
        assert_eq!(check["ok"], true, "{check:#}");
        // The failure is journaled in the primary, as damage.
        let journal = primary.json(&["journal", "--job", "copy", "--failed"]);
        assert_eq!(journal[0]["error_kind"], "damaged_data", "{journal}");
    }
}

#[test]
fn a_destination_that_is_not_a_copy_is_refused_in_one_sentence() {
    let primary = primary();
    primary.init();
    let (_db, src) = primary.hotel_db(2_000);
    primary.json(&["backup", &src]);
    for dest in envs() {
        // A repository of its own: plain init, its own keys.
        on_copy(&dest).arg("init").assert().success();
        let out = copy_cmd(&primary, &dest, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
        assert!(
            err.contains("is not a copy of") && err.contains("init --copy-of"),
            "{err}"
        );
        assert!(listed(&dest, "data/").is_empty() && listed(&dest, "snapshots/").is_empty());
        let out = copy_cmd(&primary, &dest, &["--json"]).output().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["copies"][0]["error"]["kind"], "bad_input", "{doc}");
        // An operator's mistake: not journaled as a failed job.
        let journal = primary.json(&["journal", "--job", "copy"]);
        assert_eq!(journal.as_array().unwrap().len(), 0, "{journal}");
    }
    // No password for the destination, and no destination at all: one sentence each.
    let dest = envs().remove(0);
    init_copy(&primary, &dest);
    let out = primary
        .cmd()
        .args(["copy", "--to", &dest.repo])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("STRONGROOM_TO_PASSWORD"), "{err}");
    let err = primary.fails(&["copy"]);
    assert!(err.contains("--to") && err.contains("[[copies]]"), "{err}");
    // A mistyped destination or source: the flag that fixes it, not --repo.
    let nowhere = primary.path("nowhere").display().to_string();
    let err = primary.fails_with(
        &["copy", "--to", &nowhere],
        &[("STRONGROOM_TO_PASSWORD", COPY_PASSWORD)],
    );
    assert!(
        err.contains("check --to") && err.contains("init --copy-of"),
        "{err}"
    );
    let err = dest.fails_with(
        &["init", "--copy-of", &nowhere],
        &[("STRONGROOM_FROM_PASSWORD", PASSWORD)],
    );
    assert!(err.contains("check --copy-of"), "{err}");
    // And a copy of a repository needs its password.
    let other = envs().remove(0);
    let out = other
        .cmd()
        .args(["init", "--copy-of", &primary.repo])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("STRONGROOM_FROM_PASSWORD"), "{err}");
    assert!(!Path::new(&other.repo).join("config").exists());
}

/// The acceptance test of a second copy: a physical snapshot and its WAL copied to Garage,
/// the primary removed (its repository and its server), then a point-in-time restore from
/// the copy alone keeps exactly the transactions committed before the target; `verify`,
/// `drill` and `wal fetch` work from the copy too.
#[test]
fn physical_snapshot_and_wal_copied_to_garage_recover_to_a_time_with_the_primary_gone() {
    let Some(dest) = envs().into_iter().find(|e| e.repo.contains("://")) else {
        return;
    };
    let bindir = bindirs().remove(0);
    let rig = Rig::new(primary(), &bindir, true);
    rig.pg.create_database("app", None);
    rig.pg.execute(
        "app",
        "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);
         INSERT INTO oracle SELECT g, clock_timestamp(), txid_current() FROM generate_series(-99, 0) g;",
    );
    let snap = rig.backup();
    let pre: std::collections::BTreeSet<i32> = (-99..=0).collect();
    let committed = workload(&rig.pg, 1, 30, None);
    archive_now(&rig.pg);

    init_copy(&rig.env, &dest);
    let key = dest.path("copy.key");
    on_copy(&dest)
        .args(["key", "add", "--new-key-file"])
        .arg(&key)
        .args(["--label", "restore_command"])
        .assert()
        .success();
    give_to_server_user(&key);
    common::pg::open_up(&dest);
    let entry = copied(&rig.env, &dest, &[]);
    assert_eq!(entry["snapshots_copied"], 1, "{entry}");
    let archived = listed(&rig.env, "wal/").len() as u64;
    assert_eq!(n(&entry["wal_files_copied"]), archived, "{entry}");

    // The primary is gone: its server stopped, its repository deleted.
    let Rig { env, pg, .. } = rig;
    drop(pg);
    std::fs::remove_dir_all(&env.repo).unwrap();

    let t = 1 + (common::seed() as usize % (committed.len() - 2));
    let time = between(&committed[t - 1].commit, &committed[t].commit);
    let dir = dest.path("recovered");
    // The restore and the server's restore_command both read the copy alone.
    let copy_env: Vec<(String, String)> = server_env(&dest, &key)
        .into_iter()
        .filter(|(k, _)| k != "STRONGROOM_STATE_DIR")
        .collect();
    let out = dest
        .cmd()
        .env_remove("STRONGROOM_PASSWORD")
        .envs(copy_env)
        .args(["restore", "latest", "--data-dir"])
        .arg(&dir)
        .args(["--time", &time, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore from the copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["snapshot"], snap["id"], "{doc}");
    let mut b = Cluster::start_existing(&dir, &bindir);
    for (k, v) in server_env(&dest, &key) {
        b = b.env(k, v);
    }
    let recovered = b
        .try_start()
        .unwrap_or_else(|log| panic!("the recovered cluster did not start:\n{log}"));
    recovered
        .wait_promoted(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ids(&recovered),
        expect(&committed, &pre, t),
        "exactly the transactions committed before {time}"
    );
    drop(recovered);

    // verify: a test restore on a throwaway server, from the copy.
    let scratch = dest.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut c = on_copy(&dest);
    c.args(["verify", "latest"])
        .env("TMPDIR", &scratch)
        .env("STRONGROOM_PG_BINDIR", &bindir);
    let verified = common::json_of(c);
    assert_eq!(verified["ok"], true, "{verified}");
    // drill: a timed recovery to a random point after the snapshot, from the copy.
    let mut c = on_copy(&dest);
    c.args(["drill", "--snapshot", "latest"])
        .env("TMPDIR", &scratch)
        .env("STRONGROOM_PG_BINDIR", &bindir);
    let drilled = common::json_of(c);
    assert_eq!(drilled["ok"], true, "{drilled}");
    assert_eq!(drilled["snapshot"], snap["id"], "{drilled}");
    // wal fetch, as restore_command runs it in a data directory of the cluster, serves a
    // segment from the copy.
    let first = dest
        .storage()
        .list("wal/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .find(|k| k.rsplit('/').next().is_some_and(|n| n.len() == 24))
        .unwrap();
    let name = first.rsplit('/').next().unwrap().to_string();
    on_copy(&dest)
        .current_dir(&dir)
        .args(["wal", "fetch", &name, "strongroom-fetched"])
        .env("STRONGROOM_FETCH_AHEAD", "0")
        .assert()
        .success();
    let fetched = dir.join("strongroom-fetched");
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), 16 << 20);
    std::fs::remove_file(fetched).unwrap();
}

/// `args` at faked time `at` (`YYYY-MM-DD HH:MM:SS`), which must succeed.
fn run_at(env: &Env, at: &str, args: &[&str]) -> String {
    let out = env.at(at).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} at {at}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `status --json` at faked time `at`: its exit code and document.
fn status_at(env: &Env, at: &str) -> (i32, Value) {
    let out = env.at(at).args(["status", "--json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), doc)
}

/// The check `name` of the one source in a status document.
fn check_named<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["sources"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc:#}"))
}

fn detail(c: &Value) -> &str {
    c["detail"].as_str().unwrap()
}

/// A local primary with a hotel database configured as `hotel` (drills off), `extra`
/// config appended; the config lies in the primary's directory, where commands run.
fn monitored(extra: &str) -> (Env, PathBuf) {
    let primary = primary();
    primary.init();
    let (db, src) = primary.hotel_db(2_000);
    std::fs::write(
        primary.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"{src}\"\n[objectives.checklist]\ndrill = \"off\"\n{extra}"
        ),
    )
    .unwrap();
    (primary, db)
}

#[test]
fn status_judges_a_copy_by_its_lag_against_the_rpo_and_alerts_when_it_falls_behind() {
    let hook = strongroom_testkit::webhook::Receiver::start();
    // Local repositories: S3 servers refuse requests signed at a faked time.
    let dest = envs().remove(0);
    let password = dest.path("offsite-password");
    std::fs::write(&password, format!("{COPY_PASSWORD}\n")).unwrap();
    let (primary, db) = monitored(&format!(
        "[[alerts]]\nwebhook = \"{}\"\n[[copies]]\nname = \"offsite\"\nrepository = \"{}\"\npassword_file = \"{}\"\n",
        hook.url(),
        dest.repo,
        password.display()
    ));
    init_copy(&primary, &dest);
    let alerts = || -> Vec<Value> {
        hook.requests()
            .iter()
            .map(|r| serde_json::from_str(&r.body_text()).unwrap())
            .collect()
    };
    let first = run_at(&primary, "2026-11-10 10:00:00", &["backup", "--json"]);
    let first: Value = serde_json::from_str(&first).unwrap();
    let first = first["short_id"].as_str().unwrap().to_string();
    run_at(&primary, "2026-11-10 10:01:00", &["copy"]);
    run_at(&primary, "2026-11-10 10:05:00", &["verify", "latest"]);
    run_at(&primary, "2026-11-10 10:10:00", &["check"]);
    run_at(&primary, "2026-11-10 10:15:00", &["forget"]);
    // In step: ok, saying what it holds.
    let (code, doc) = status_at(&primary, "2026-11-10 10:30:00");
    assert_eq!(code, 0, "{doc:#}");
    let c = check_named(&doc, "copy.offsite");
    assert_eq!(c["level"], "ok", "{c}");
    assert!(
        detail(c).starts_with(&format!(
            "copy offsite ({}): newest snapshot {first}, the primary's too; no lag",
            dest.repo
        )),
        "{c}"
    );
    assert!(alerts().is_empty(), "{:#?}", alerts());

    // A backup the copy does not have: within the RPO (15 min) it is only said.
    common::update_bookings(&db, 0.05, 1);
    let second = run_at(&primary, "2026-11-10 11:00:00", &["backup", "--json"]);
    let second: Value = serde_json::from_str(&second).unwrap();
    let second = second["short_id"].as_str().unwrap().to_string();
    let (code, doc) = status_at(&primary, "2026-11-10 11:10:30");
    assert_eq!(code, 0, "{doc:#}");
    let c = check_named(&doc, "copy.offsite");
    assert_eq!(c["level"], "ok", "{c}");
    assert!(
        detail(c).contains(&format!(
            "newest snapshot {first} against the primary's {second}, 1 missing; 10m behind the primary, within the RPO of 15m"
        )),
        "{c}"
    );
    // Past the RPO: a warning, exit 1, and the state change is alerted, naming the check.
    let (code, doc) = status_at(&primary, "2026-11-10 11:20:30");
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["sources"][0]["level"], "warning", "{doc:#}");
    let c = check_named(&doc, "copy.offsite");
    assert_eq!(c["level"], "warning", "{c}");
    assert!(
        detail(c).contains("20m behind the primary, over the RPO of 15m"),
        "{c}"
    );
    let sent = alerts();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["event"], "state_changed");
    assert_eq!(sent[0]["level"], "warning");
    assert!(
        sent[0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "copy.offsite"),
        "{:#}",
        sent[0]
    );
    let metrics = run_at(&primary, "2026-11-10 11:20:30", &["metrics"]);
    // The faked clock runs on from each start: the lag is 20.5 minutes, give or take the
    // seconds the commands took.
    assert!((lag_in(&metrics) - 1230.0).abs() < 20.0, "{metrics}");
    for want in [
        "strongroom_copy_snapshots_missing{source=\"hotel\",copy=\"offsite\"} 1\n",
        "strongroom_copy_readable{copy=\"offsite\"} 1\n",
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }
    promtool_accepts(&metrics);

    // A day on (the backup itself not yet late): the RPO plus the daily interval is past,
    // copies have stopped: critical, alerted again.
    let (code, doc) = status_at(&primary, "2026-11-11 11:20:30");
    assert_eq!(code, 1);
    assert_eq!(check_named(&doc, "backup.full")["level"], "ok", "{doc:#}");
    let c = check_named(&doc, "copy.offsite");
    assert_eq!(c["level"], "critical", "{c}");
    assert!(
        detail(c).contains(
            "24h 20m behind the primary, over the RPO of 15m plus the full interval of 24h: copies have stopped"
        ),
        "{c}"
    );
    let sent = alerts();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(
        (&sent[1]["level"], &sent[1]["previous_level"]),
        (&Value::from("critical"), &Value::from("warning"))
    );
    let metrics = run_at(&primary, "2026-11-11 11:20:30", &["metrics"]);
    assert!((lag_in(&metrics) - 87_630.0).abs() < 20.0, "{metrics}");

    // `copy` brings it level: ok again, and the recovery is announced.
    run_at(&primary, "2026-11-11 11:25:00", &["copy"]);
    let (code, doc) = status_at(&primary, "2026-11-11 11:30:00");
    assert_eq!(code, 0, "{doc:#}");
    let c = check_named(&doc, "copy.offsite");
    assert!(
        detail(c).contains(&format!(
            "newest snapshot {second}, the primary's too; no lag"
        )),
        "{c}"
    );
    let sent = alerts();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert_eq!(sent[2]["event"], "recovered");
    // The human report names it too.
    let text = run_at(&primary, "2026-11-11 11:31:00", &["status", "--no-alerts"]);
    assert!(text.contains("copy.offsite"), "{text}");
}

/// The value of `strongroom_copy_lag_seconds` for hotel in offsite.
fn lag_in(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("strongroom_copy_lag_seconds{source=\"hotel\",copy=\"offsite\"} ")
        })
        .unwrap_or_else(|| panic!("no lag in\n{metrics}"))
        .parse()
        .unwrap()
}

/// `promtool check metrics` accepts `text` (when promtool is installed; under CI it must be).
fn promtool_accepts(text: &str) {
    if !Path::new("/usr/bin/promtool").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool missing: ./scripts/test installs Debian's prometheus package"
        );
        return;
    }
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_copy_that_cannot_be_read_is_critical_in_one_sentence() {
    let dest = envs().remove(0);
    let wrong = dest.path("wrong-password");
    std::fs::write(&wrong, "not the copy's password\n").unwrap();
    let nowhere = dest.path("nowhere");
    let (primary, _) = monitored(&format!(
        "[[copies]]\nname = \"usb\"\nrepository = \"{}\"\npassword_file = \"{}\"\n[[copies]]\nrepository = \"{}\"\npassword_file = \"{}\"\n",
        nowhere.display(),
        wrong.display(),
        dest.repo,
        wrong.display()
    ));
    init_copy(&primary, &dest);
    primary.cmd().arg("backup").assert().success();
    let out = primary.cmd().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["sources"][0]["level"], "critical", "{doc:#}");
    // The primary's own checks are still judged.
    assert_eq!(check_named(&doc, "backup.full")["level"], "ok", "{doc:#}");
    let usb = check_named(&doc, "copy.usb");
    assert_eq!(usb["level"], "critical");
    assert_eq!(
        detail(usb),
        format!(
            "copy usb ({}) cannot be read: no strongroom repository at {}; check its [[copies]] entry (repository, password_file or password_command) and that its store is reachable, then run `strongroom copy`",
            nowhere.display(),
            nowhere.display()
        )
    );
    // Unnamed, a copy is called by its repository.
    let other = check_named(&doc, &format!("copy.{}", dest.repo));
    assert_eq!(other["level"], "critical");
    assert!(
        detail(other).starts_with(&format!(
            "copy {} cannot be read: wrong password",
            dest.repo
        )),
        "{other}"
    );
    let metrics = {
        let out = primary.cmd().arg("metrics").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        metrics.contains("strongroom_copy_readable{copy=\"usb\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("strongroom_copy_lag_seconds"),
        "{metrics}"
    );
}

/// The real time `secs` from now, as `YYYY-MM-DD HH:MM:SS` for faketime: WAL objects carry
/// the store's (real) times, so the faked clock starts from the real one.
fn now_plus(secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[test]
fn status_judges_a_copys_wal_past_its_newest_segment_against_the_rpo() {
    let bindir = bindirs().remove(0);
    // Local: S3 servers refuse requests signed at a faked time.
    let rig = Rig::new(primary(), &bindir, true);
    let dest = envs().remove(0);
    let password = dest.path("offsite-password");
    std::fs::write(&password, format!("{COPY_PASSWORD}\n")).unwrap();
    rig.pg.create_database("app", None);
    std::fs::write(
        rig.env.path("strongroom.toml"),
        format!(
            "[sources.pg]\nurl = \"{}\"\n[[copies]]\nname = \"offsite\"\nrepository = \"{}\"\npassword_file = \"{}\"\n",
            rig.url(),
            dest.repo,
            password.display()
        ),
    )
    .unwrap();
    let snap = rig.backup();
    assert_eq!(snap["source"], "pg");
    rig.archive_now();
    init_copy(&rig.env, &dest);
    rig.env.cmd().arg("copy").assert().success();
    let (_, doc) = status_at(&rig.env, &now_plus(0));
    let c = check_named(&doc, "copy.offsite");
    assert_eq!(c["level"], "ok", "{c}");
    assert!(
        detail(c).contains(&format!(
            "newest snapshot {}, the primary's too, WAL to ",
            snap["short_id"].as_str().unwrap()
        )) && detail(c).contains(", the primary's too; no lag"),
        "{c}"
    );
    // WAL archived since the copy: the copy lacks it from the moment it was stored.
    rig.archive_now();
    let (_, doc) = status_at(&rig.env, &now_plus(20 * 60));
    let c = check_named(&doc, "copy.offsite");
    eprintln!("{}", detail(c));
    assert_eq!(c["level"], "warning", "{c}");
    assert!(
        detail(c).contains("the primary's too, WAL to ")
            && detail(c).contains("segment behind)")
            && detail(c).contains("m behind the primary, over the RPO of 15m"),
        "{c}"
    );
    // Past the RPO plus the physical interval (6 h): critical.
    let (_, doc) = status_at(&rig.env, &now_plus(7 * 3600));
    let c = check_named(&doc, "copy.offsite");
    assert_eq!(c["level"], "critical", "{c}");
    assert!(
        detail(c).contains("over the RPO of 15m plus the physical interval of 6h"),
        "{c}"
    );
    // Copied: level again.
    rig.env.cmd().arg("copy").assert().success();
    let (_, doc) = status_at(&rig.env, &now_plus(0));
    let c = check_named(&doc, "copy.offsite");
    assert_eq!(c["level"], "ok", "{c}");
    assert!(detail(c).ends_with("; no lag"), "{c}");
}

//! Retention, prune, locks and index repair, end to end: the real binary on real SQLite
//! files, on a local repository and on Garage S3. Time-dependent policy runs the binary
//! under Debian's `faketime`, never by waiting.

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;
use strongroom::hotel::{self, Rng, Scale};

mod common;
use common::{Env, LOCAL_AND_S3, Store, envs, envs_on};

impl Env {
    fn backup_id(&self, src: &str) -> String {
        self.backup_json(src, &[])["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn backup_json(&self, src: &str, extra: &[&str]) -> Value {
        let mut args = vec!["backup", src];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    fn ids(&self) -> Vec<String> {
        self.json(&["list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Restores `id` and returns the file's bytes.
    fn restored(&self, id: &str) -> Vec<u8> {
        let to = self.path(&format!("restored-{}.db", &id[..12]));
        let _ = std::fs::remove_file(&to);
        self.cmd()
            .args(["restore", id, "--to"])
            .arg(&to)
            .assert()
            .success();
        let bytes = std::fs::read(&to).unwrap();
        std::fs::remove_file(&to).unwrap();
        bytes
    }

    fn check_read_data(&self) -> Value {
        self.json(&["check", "--read-data"])
    }
}

fn reasons(doc: &Value, id: &str) -> Vec<String> {
    doc["keep"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .map(|k| {
            k["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn removed(doc: &Value) -> HashSet<String> {
    doc["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn repo_bytes(env: &Env) -> u64 {
    env.storage().list("").unwrap().iter().map(|o| o.size).sum()
}

#[test]
fn forget_applies_the_policy_per_source_and_says_why() {
    let env = envs().remove(0);
    env.init();
    let (db, src) = env.hotel_db(500);
    // Twelve daily snapshots at 02:00, two on the last day, and one tagged pre-migration.
    let mut daily = Vec::new();
    for day in 1..=12 {
        let out = env
            .at(&format!("2026-11-{day:02} 02:00:00"))
            .args(["backup", &src, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        daily.push(s["id"].as_str().unwrap().to_string());
        common::update_bookings(&db, 0.05, day);
    }
    let out = env
        .at("2026-11-12 14:00:00")
        .args(["backup", &src, "--tag", "pre-migration", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let tagged: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tagged = tagged["id"].as_str().unwrap().to_string();
    // Another source is its own group.
    let other_db = env.path("other.db");
    hotel::create(&other_db, Scale::bookings(200), 7).unwrap();
    let other_src = format!("sqlite:{}", other_db.display());
    let other = env.backup_json(&other_src, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Verify an old snapshot: the newest verified one is kept by any policy.
    env.cmd().args(["verify", &daily[2]]).assert().success();

    let doc = env.json(&["forget", "--keep-daily", "3", "--dry-run"]);
    assert_eq!(doc["dry_run"], true);
    // Days 10, 11 and 12 (the 14:00 snapshot is the newest of day 12).
    assert_eq!(
        reasons(&doc, &tagged),
        ["daily", "tag-within:pre-migration", "newest"],
        "the newest of the last day, a pre-migration snapshot (kept 90 days by default), and the newest of its source"
    );
    assert_eq!(reasons(&doc, &daily[11]), Vec::<String>::new());
    assert_eq!(reasons(&doc, &daily[10]), ["daily"]);
    assert_eq!(reasons(&doc, &daily[9]), ["daily"]);
    assert_eq!(reasons(&doc, &daily[2]), ["newest-verified"]);
    assert_eq!(reasons(&doc, &other), ["daily", "newest"]);
    let gone = removed(&doc);
    assert_eq!(gone.len(), 9, "{doc:#}");
    assert!(gone.contains(&daily[11]) && gone.contains(&daily[0]));
    assert_eq!(env.ids().len(), 14, "a dry run removes nothing");

    // The config's policy (the strategy's) keeps all of these; the tag rule explains itself.
    std::fs::write(
        env.path("strongroom.toml"),
        "[retention]\nkeep_daily = 2\n[retention.tag_within]\npre-migration = \"90d\"\n",
    )
    .unwrap();
    let doc = env.json(&["forget", "--dry-run", "--source", &src]);
    assert!(reasons(&doc, &tagged).contains(&"tag-within:pre-migration".to_string()));
    assert!(
        doc["keep"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["source"] != other_src.as_str()),
        "--source narrows: {doc:#}"
    );

    // For real, by flags; then the listing says the same.
    let doc = env.json(&["forget", "--keep-daily", "3"]);
    let left: HashSet<String> = env.ids().into_iter().collect();
    for id in removed(&doc) {
        assert!(!left.contains(&id));
    }
    assert_eq!(left.len(), 5);
    // Backups stop for two months: keep-daily counts days that have a snapshot, so
    // nothing ages out.
    let out = env
        .at("2027-01-31 00:00:00")
        .args(["forget", "--keep-daily", "3", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(removed(&doc).is_empty(), "{doc:#}");
    // A snapshot can be forgotten by id; its data stays until prune.
    env.json(&["forget", &daily[2][..10]]);
    assert_eq!(env.ids().len(), 4);
    let err = env.fails(&["forget", &daily[2][..10]]);
    assert!(err.contains("no snapshot"), "{err}");
}

#[test]
fn prune_frees_space_and_every_kept_snapshot_restores_byte_identical() {
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        let (db, src) = env.hotel_db(3000);
        let mut copies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for i in 0..5 {
            let id = env.backup_json(&src, &[])["id"]
                .as_str()
                .unwrap()
                .to_string();
            copies.insert(id, std::fs::read(&db).unwrap());
            common::update_bookings(&db, 0.3, i);
        }
        let before = repo_bytes(&env);
        let dry = env.json(&["forget", "--keep-last", "2", "--prune", "--dry-run"]);
        assert!(dry["prune"]["freed"].as_i64().unwrap() > 0, "{dry:#}");
        assert_eq!(env.ids().len(), 5);
        let doc = env.json(&[
            "forget",
            "--keep-last",
            "2",
            "--prune",
            "--repack-below",
            "0.9",
        ]);
        let p = &doc["prune"];
        assert!(p["packs_deleted"].as_u64().unwrap() > 0, "{doc:#}");
        assert!(p["pending"].is_null(), "{doc:#}");
        let after = repo_bytes(&env);
        assert!(after < before, "{after} < {before}");
        let check = env.check_read_data();
        assert_eq!(check["ok"], true, "{check:#}");
        assert_eq!(check["unreferenced"]["packs"], 0, "{check:#}");
        assert_eq!(check["pending_deletions"], 0);
        for id in env.ids() {
            assert!(
                env.restored(&id) == copies[&id],
                "snapshot {id} restores byte-identical"
            );
        }
        // Nothing left to do: a second prune deletes nothing.
        let again = env.json(&["prune"]);
        assert_eq!(again["packs_deleted"], 0, "{again:#}");
        assert_eq!(again["bytes_deleted"], 0, "{again:#}");
        // And the next backup still deduplicates against what is left.
        let s = env.backup_json(&src, &[]);
        assert!(s["added"].as_u64().unwrap() < 100_000, "{s:#}");
    }
}

#[test]
fn page_deltas_outlive_the_snapshot_that_holds_their_bases() {
    // A 1% update stores changed pages as deltas against the first snapshot's pages; once
    // that snapshot is forgotten and pruned, the pages it held are still what the deltas
    // are rebuilt from (docs/ARCHITECTURE.md, "Page deltas").
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        let (db, src) = env.hotel_db(100_000);
        env.backup_json(&src, &[]);
        // Stored whole, changed pages take about 40% of their size (zstd); as deltas, a
        // small part of that (measured: about a tenth).
        let update = |seed| {
            let before = std::fs::read(&db).unwrap();
            common::update_bookings(&db, 0.01, seed);
            changed_pages(&before, &std::fs::read(&db).unwrap())
        };
        let changed = update(5);
        let second = env.backup_json(&src, &[]);
        let added = second["added"].as_u64().unwrap();
        assert!(
            added * 5 < changed * 4096,
            "a 1% update changed {changed} pages and added {added} B"
        );
        let want = std::fs::read(&db).unwrap();
        let doc = env.json(&[
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--repack-below",
            "0.9",
        ]);
        assert_eq!(removed(&doc).len(), 1, "{doc:#}");
        let check = env.check_read_data();
        assert_eq!(check["ok"], true, "{check:#}");
        assert_eq!(check["unreferenced"]["packs"], 0, "{check:#}");
        let id = second["id"].as_str().unwrap();
        assert!(
            env.restored(id) == want,
            "the delta snapshot restores byte-identical"
        );
        // The next backup builds on the deltas' records: only the new change is added.
        let changed = update(6);
        let third = env.backup_json(&src, &[])["added"].as_u64().unwrap();
        assert!(
            third * 5 < changed * 4096,
            "the next 1% update changed {changed} pages and added {third} B"
        );
        let id = env.ids().pop().unwrap();
        assert!(env.restored(&id) == std::fs::read(&db).unwrap());
    }
}

/// How many 4 KiB pages differ between two versions of a database file.
fn changed_pages(a: &[u8], b: &[u8]) -> u64 {
    let same = a
        .chunks(4096)
        .zip(b.chunks(4096))
        .filter(|(x, y)| x == y)
        .count();
    (b.len().div_ceil(4096) - same) as u64
}

/// A prune whose repack budget (`--max-repack`) covers only part of what is worth
/// repacking leaves a complete repository and says what it left; the next prune continues
/// where it stopped, and the one after finds nothing to do.
#[test]
fn a_budgeted_repack_leaves_the_repository_complete_and_the_next_prune_continues() {
    for env in envs_on(&[Store::Local]) {
        let (db, src) = env.hotel_source(3000);
        let mut copies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for i in 0..6 {
            copies.insert(env.backup_id(&src), std::fs::read(&db).unwrap());
            common::update_bookings(&db, 0.02, 10 + i);
        }
        let keep = ["--keep-last", "1", "--repack-below", "0.9"];
        let dry = env.json(&[&["forget", "--prune", "--dry-run"], &keep[..]].concat());
        let all = dry["prune"]["bytes_read"].as_u64().unwrap();
        let candidates = dry["prune"]["packs_repacked"].as_u64().unwrap();
        assert!(candidates >= 2, "{dry:#}");
        let half = (all / 2).to_string();
        let first = env.json(&[&["forget", "--prune", "--max-repack", &half], &keep[..]].concat());
        let p = &first["prune"];
        let repacked = p["packs_repacked"].as_u64().unwrap();
        assert!(repacked >= 1 && repacked < candidates, "{first:#}");
        assert!(p["bytes_read"].as_u64().unwrap() <= all / 2, "{first:#}");
        assert!(p["unused_bytes_kept"].as_u64().unwrap() > 0, "{first:#}");
        assert!(p["pending"].is_null(), "{first:#}");
        let complete = |env: &Env| {
            let check = env.check_read_data();
            assert_eq!(check["ok"], true, "{check:#}");
            assert_eq!(check["unreferenced"]["packs"], 0, "{check:#}");
            for id in env.ids() {
                assert!(env.restored(&id) == copies[&id], "{id} restores");
            }
        };
        complete(&env);
        // The next prune repacks what the first left, within no budget but its own.
        let second = env.json(&["prune", "--repack-below", "0.9"]);
        assert_eq!(
            second["packs_repacked"].as_u64().unwrap(),
            candidates - repacked,
            "{second:#}"
        );
        complete(&env);
        let third = env.json(&["prune", "--repack-below", "0.9"]);
        assert_eq!(third["packs_deleted"], 0, "{third:#}");
        assert_eq!(third["bytes_read"], 0, "{third:#}");
    }
}

/// Starts `args` paused at `point` (see `strongroom::fault`); returns once it is there.
fn paused(env: &Env, args: &[&str], point: &str, dir: &Path) -> Child {
    let mut cmd = env.std_cmd();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    common::paused_at(cmd, point, dir)
}

#[test]
fn a_backup_running_during_prune_loses_nothing() {
    for env in envs() {
        env.init();
        let (db, src) = env.hotel_db(2000);
        let first = env.backup_id(&src);
        let content = std::fs::read(&db).unwrap();
        // A second backup of the same data loads the index (every chunk is there), then
        // stops before writing its manifest.
        let pause = env.path("pause");
        let backup = paused(&env, &["backup", &src, "--json"], "before-commit", &pause);
        // Meanwhile the first snapshot is forgotten and pruned: its packs are garbage as far
        // as any listed snapshot is concerned. The prune marks them, but the backup's lock
        // is older than the mark, so nothing is deleted yet.
        env.json(&["forget", &first]);
        let p = env.json(&["prune", "--max-wait", "0s"]);
        assert!(p["pending"].as_str().unwrap().contains("backup"), "{p:#}");
        assert_eq!(p["bytes_deleted"], 0, "{p:#}");
        // A check meanwhile is clean (marked packs are still there).
        assert_eq!(env.check_read_data()["ok"], true);
        // The backup commits a snapshot that references the marked packs' chunks.
        std::fs::write(pause.join("go"), "").unwrap();
        let out = backup.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let second: Value = serde_json::from_slice(&out.stdout).unwrap();
        let second = second["id"].as_str().unwrap().to_string();
        assert_eq!(
            second.len(),
            64,
            "the backup added nothing new: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // The next prune finishes the deletion, and spares what the new snapshot uses.
        let p = env.json(&["prune"]);
        assert!(p["pending"].is_null(), "{p:#}");
        assert!(p["spared"].as_u64().unwrap() > 0, "{p:#}");
        let check = env.check_read_data();
        assert_eq!(check["ok"], true, "{check:#}");
        assert_eq!(check["pending_deletions"], 0);
        assert!(env.restored(&second) == content);
        // A prune waits for a backup that began before its mark, and the backup never waits.
        common::update_bookings(&db, 0.5, 1);
        env.backup_json(&src, &[]);
        env.json(&["forget", &second]);
        common::update_bookings(&db, 0.5, 2);
        let backup = paused(&env, &["backup", &src, "--json"], "before-commit", &pause);
        let prune = paused(
            &env,
            &["prune", "--json"],
            "before-sweep",
            &env.path("pause2"),
        );
        std::fs::write(pause.join("go"), "").unwrap();
        assert!(backup.wait_with_output().unwrap().status.success());
        std::fs::write(env.path("pause2").join("go"), "").unwrap();
        let out = prune.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(env.check_read_data()["ok"], true);
    }
}

#[test]
fn a_killed_prune_is_finished_by_the_next_and_stale_locks_are_named() {
    for env in envs() {
        env.init();
        let (db, src) = env.hotel_db(2000);
        let mut copies = BTreeMap::new();
        for i in 0..3 {
            let id = env.backup_json(&src, &[])["id"]
                .as_str()
                .unwrap()
                .to_string();
            copies.insert(id, std::fs::read(&db).unwrap());
            common::update_bookings(&db, 0.5, i);
        }
        env.json(&["forget", "--keep-last", "1"]);
        // Killed with its mark written and nothing deleted.
        let pause = env.path("pause");
        let mut prune = paused(&env, &["prune"], "before-sweep", &pause);
        prune.kill().unwrap();
        prune.wait().unwrap();
        let check = env.check_read_data();
        assert_eq!(check["ok"], true, "{check:#}");
        assert_eq!(check["pending_deletions"], 1);
        let stale: Vec<&Value> = check["locks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["stale"].is_string())
            .collect();
        assert_eq!(stale.len(), 1, "the killed prune's lock: {check:#}");
        // A killed backup leaves packs no index names, and a stale lock.
        common::update_bookings(&db, 0.5, 9);
        let mut backup = paused(&env, &["backup", &src], "before-commit", &pause);
        backup.kill().unwrap();
        backup.wait().unwrap();
        let u = env.json(&["unlock"]);
        assert_eq!(u["removed"].as_array().unwrap().len(), 2, "{u:#}");
        assert!(
            u["removed"][0]["why"].as_str().unwrap().contains("is gone"),
            "{u:#}"
        );
        // The next prune finishes the first one's deletion, then reclaims the rest.
        let p = env.json(&["prune"]);
        assert!(p["pending"].is_null(), "{p:#}");
        assert!(p["packs_deleted"].as_u64().unwrap() > 0, "{p:#}");
        let check = env.check_read_data();
        assert_eq!(check["ok"], true, "{check:#}");
        assert_eq!(check["pending_deletions"], 0);
        assert_eq!(check["unreferenced"]["packs"], 0, "{check:#}");
        for id in env.ids() {
            assert!(env.restored(&id) == copies[&id]);
        }
    }
}

#[test]
fn repair_index_rebuilds_it_from_the_packs() {
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        let (db, src) = env.hotel_db(2000);
        let first = env.backup_id(&src);
        let content = std::fs::read(&db).unwrap();
        let storage = env.storage();
        for o in storage.list("index/").unwrap() {
            storage.delete(&o.key).unwrap();
        }
        let err = env.fails(&["prune"]);
        assert!(err.contains("repair index"), "{err}");
        let r = env.json(&["repair", "index"]);
        assert!(r["chunks"].as_u64().unwrap() > 0, "{r:#}");
        assert_eq!(env.check_read_data()["ok"], true);
        assert!(env.restored(&first) == content);
        // A pack lost: after the repair the index no longer names it, so the next backup
        // stores its chunks again and that snapshot restores.
        let pack = storage.list("data/").unwrap().remove(0);
        storage.delete(&pack.key).unwrap();
        env.cmd().args(["check"]).assert().code(1);
        env.json(&["repair", "index"]);
        let second = env.backup_id(&src);
        assert!(env.restored(&second) == content);
    }
}

/// SIGKILLs `backup` and `forget --prune` at random moments; after every kill the
/// repository checks clean, every listed snapshot restores byte-identical to the database
/// it was taken from, and the same job then runs to the end.
#[test]
fn kills_at_random_moments_never_lose_a_listed_snapshot() {
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    for env in envs() {
        let remote = env.store() != Store::Local;
        // Azure and GCS take fewer kills (the suite's time; see common::LOCAL_AND_S3).
        let wanted = if LOCAL_AND_S3.contains(&env.store()) {
            25
        } else {
            10
        };
        env.init();
        let (db, src) = env.hotel_db(4000);
        let mut copies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut kills = 0;
        let mut round = 0u64;
        while kills < wanted {
            round += 1;
            assert!(round < 200, "too few kills landed");
            common::update_bookings(&db, 0.2, round);
            let state = std::fs::read(&db).unwrap();
            let prune = rng.below(2) == 0 && copies.len() > 2;
            let args: Vec<&str> = if prune {
                vec![
                    "forget",
                    "--keep-last",
                    "2",
                    "--prune",
                    "--repack-below",
                    "0.8",
                ]
            } else {
                vec!["backup", &src]
            };
            let before: HashSet<String> = env.ids().into_iter().collect();
            let mut child = env
                .std_cmd()
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let span = if remote { 700 } else { 300 };
            std::thread::sleep(Duration::from_millis(rng.below(span)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
            let check = env.check_read_data();
            assert_eq!(
                check["ok"], true,
                "round {round} ({args:?}), seed {seed}: {check:#}"
            );
            let now: Vec<String> = env.ids();
            for id in &now {
                if !before.contains(id) {
                    copies.insert(id.clone(), state.clone());
                }
                assert!(
                    env.restored(id) == copies[id],
                    "round {round}: snapshot {id} restores byte-identical (seed {seed})"
                );
            }
            // The job runs to the end after the kill.
            env.cmd().args(&args).arg("--json").assert().success();
            for id in env.ids() {
                copies.entry(id).or_insert_with(|| state.clone());
            }
        }
        let check = env.check_read_data();
        assert_eq!(check["ok"], true, "{check:#}");
        eprintln!("{}: {kills} kills in {round} rounds", env.repo);
    }
}

/// Runs a command that must succeed; returns its stdout.
fn said(env: &Env, args: &[&str]) -> String {
    let out = env.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_and_prune_say_zero_and_one_in_words() {
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        // Nothing yet: said so, with no "0 pack(s)".
        assert_eq!(
            said(&env, &["check"]),
            "an empty repository: no snapshots, packs or chunks yet\nno problems found\n"
        );
        assert_eq!(
            said(&env, &["prune"]),
            "nothing to remove: the repository holds no packs\n"
        );
        assert_eq!(
            said(&env, &["forget", "--prune"]),
            "no snapshot matches: nothing to forget\nnothing to remove: the repository holds no packs\n"
        );
        assert_eq!(
            said(&env, &["unlock"]),
            "no lock removed; no lock is held\n"
        );

        // One snapshot in one pack: singular, and nothing to remove said in words.
        let (_, src) = env.hotel_db(200);
        let id = env.backup_id(&src);
        let text = said(&env, &["check", "--read-data"]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("1 snapshot, 1 pack, "), "{text}");
        assert!(lines[0].contains(" chunks; ") && lines[0].ends_with(" read and authenticated"));
        assert_eq!(lines[1..], ["no problems found"], "{text}");
        let text = said(&env, &["forget", "--prune"]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(&format!("keep  {}  ", &id[..8])),
            "{text}"
        );
        assert_eq!(
            lines[1], "1 snapshot kept; nothing to remove: the policy keeps every one",
            "{text}"
        );
        assert!(
            lines[2].starts_with("1 pack (")
                && lines[2].ends_with(") held the data of 1 kept snapshot"),
            "{text}"
        );
        assert_eq!(
            lines[3..],
            ["nothing to remove: every pack holds data a kept snapshot needs"],
            "{text}"
        );
        // Forgetting it frees its one pack.
        let text = said(&env, &["forget", &id, "--prune", "--dry-run"]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "would remove 1 snapshot", "{text}");
        assert!(lines[2].ends_with(", and no snapshot kept"), "{text}");
        assert!(
            lines[3].starts_with("would delete: 1 pack no kept snapshot needs; "),
            "{text}"
        );
        assert!(lines[4].starts_with("would free: "), "{text}");
        let text = said(&env, &["forget", &id, "--prune"]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "removed 1 snapshot", "{text}");
        assert!(
            lines[3].starts_with("deleted: 1 pack no kept snapshot needs; "),
            "{text}"
        );
        assert!(!text.contains("(s)"), "{text}");
        // One problem is "a problem", and the snapshot it breaks is "snapshot", singular.
        let id = env.backup_id(&src);
        let man = format!("snapshots/{id}");
        let storage = env.storage();
        let mut m = storage.get(&man).unwrap();
        m[10] ^= 0x80;
        storage.put(&man, &m).unwrap();
        let err = env.fails(&["check"]);
        assert!(
            err.contains("strongroom: the repository has a problem: "),
            "{err}"
        );
        assert!(!err.contains("(s)"), "{err}");
    }
}

/// Flags that do not go together, or a flag value that cannot be read, are usage errors:
/// exit 2 with kind `usage`, one sentence, nothing forgotten, nothing journaled.
#[test]
fn bad_flag_combinations_are_usage_errors() {
    let env = envs().into_iter().next().unwrap();
    env.init();
    let (_, src) = env.hotel_db(50);
    let id = env.backup_id(&src);
    for args in [
        vec!["forget", &id[..8], "--keep-last", "1"],
        vec!["forget", "--keep-within", "a while"],
        vec!["prune", "--repack-below", "1.5"],
        vec!["prune", "--max-wait", "soon"],
    ] {
        let mut full = vec!["--json"];
        full.extend(&args);
        let out = env.cmd().args(&full).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "usage", "{args:?}: {doc}");
    }
    assert_eq!(env.ids(), [id], "nothing forgotten");
    let failed = env.json(&["journal", "--failed"]);
    assert_eq!(failed.as_array().unwrap().len(), 0, "{failed}");
}

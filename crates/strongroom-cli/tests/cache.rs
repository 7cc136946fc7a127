//! The local index cache against other local users (issue 24 item 4): a cache directory
//! someone else controls is not used, a shared one keeps its mode, and a cache forged by
//! whoever could write it never makes a backup skip chunks the repository lacks.

mod common;

use common::*;
use rusqlite::Connection;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use strongroom::hotel;
use strongroom::repository::table::{Record, Run, RunWriter};
use strongroom_testkit::attacker::Attacker;

/// A fresh directory of ours with mode 1777, like `/tmp` (not the real one).
fn sticky_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// The repository's id: the one directory a backup made in `cache`.
fn repo_id(cache: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names.remove(0)
}

fn backup_with_cache(env: &Env, src: &str, cache: &Path) -> std::process::Output {
    let out = env
        .cmd()
        .args(["backup", src, "--json"])
        .env("STRONGROOM_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_cache_root_another_user_made_first_is_not_used() {
    let Some(attacker) = Attacker::find() else {
        return;
    };
    let env = envs().remove(0);
    let (_, src) = env.hotel_source(500);
    env.json(&["backup", &src]);
    let id = repo_id(&env.path("cache"));
    // Root's file the attacker wants written: a link to it where the cache keeps its pack
    // table, and one where it keeps its lock.
    let victim = env.path("victim");
    std::fs::write(&victim, b"root's file").unwrap();
    let shared = sticky_dir();
    let root = shared.path().join("cache");
    let index = root.join(&id).join("index-v1");
    attacker.sh(&format!(
        "mkdir -m 777 {root} && mkdir -p -m 777 {index} && ln -s {victim} {index}/packs && ln -s {victim} {index}/lock",
        root = root.display(),
        index = index.display(),
        victim = victim.display(),
    ));
    let out = backup_with_cache(&env, &src, &root);
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's file");
    // Nothing of ours was made in their directory, and its mode is theirs to keep.
    let meta = std::fs::metadata(&root).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (attacker.uid, 0o777));
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            assert_eq!(
                m.uid(),
                attacker.uid,
                "{} is not theirs",
                e.path().display()
            );
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("belongs to uid {}", attacker.uid))
            && err.contains(&root.display().to_string())
            && err.contains("set STRONGROOM_CACHE_DIR to a directory you own"),
        "{err}"
    );
}

#[test]
fn a_cache_root_in_a_shared_sticky_directory_keeps_its_mode() {
    let Some(attacker) = Attacker::find() else {
        return;
    };
    let env = envs().remove(0);
    let (_, src) = env.hotel_source(500);
    let shared = sticky_dir();
    let out = backup_with_cache(&env, &src, shared.path());
    let mode = std::fs::metadata(shared.path()).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    // Everyone else can still use it.
    attacker.sh(&format!("touch {}/theirs", shared.path().display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by other users") && err.contains("STRONGROOM_CACHE_DIR"),
        "{err}"
    );
}

/// Every record of every run file in a cache's table directory.
fn records_of(dir: &Path) -> Vec<Record<20>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("run-") && !name.ends_with(".tmp") {
            out.extend(
                Run::<20>::open(&p)
                    .unwrap()
                    .iter()
                    .unwrap()
                    .map(Result::unwrap),
            );
        }
    }
    out
}

/// The records of the cache in `dir` (`<cache>/<repository id>/index-v1`) with their pack
/// numbers resolved through its pack table: (chunk id, pack id, the rest of the value with
/// its append-only flag), sorted, each once; without the records of slots a prune marked
/// dropped (all zeros), which every reader skips.
fn cache_contents(dir: &Path) -> Vec<([u8; 32], [u8; 32], [u8; 17])> {
    let packs = std::fs::read(dir.join("packs")).unwrap();
    let mut out: Vec<_> = records_of(dir)
        .into_iter()
        .map(|(k, v)| {
            let number = u32::from_le_bytes(v[..4].try_into().unwrap());
            let n = (number & !(1 << 31)) as usize;
            let pack: [u8; 32] = packs[n * 32..n * 32 + 32].try_into().unwrap();
            let mut rest = [0u8; 17];
            rest[..16].copy_from_slice(&v[4..]);
            rest[16] = (number >> 31) as u8;
            (k, pack, rest)
        })
        .filter(|(_, pack, _)| *pack != [0u8; 32])
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Slots of the cache's pack table a prune marked dropped.
fn dropped_slots(dir: &Path) -> usize {
    let packs = std::fs::read(dir.join("packs")).unwrap();
    packs.chunks_exact(32).filter(|p| *p == [0u8; 32]).count()
}

/// A prune brings the local cache in step itself: the next job has nothing to rebuild,
/// and the cache holds exactly what one built from the repository holds, both when the
/// prune only marks the slots of the few packs it deleted and when it rewrites the runs.
#[test]
fn the_cache_a_prune_updates_equals_a_rebuilt_one() {
    let env = envs().remove(0);
    let (db, src) = env.hotel_source(2_000);
    for i in 0..8 {
        env.json(&["backup", &src]);
        update_bookings(&db, 0.3, i);
    }
    let cache = env.path("cache");
    let id = repo_id(&cache);
    let dir = cache.join(&id).join("index-v1");
    // The first prune forgets one snapshot of eight: few packs go, their slots are marked.
    // The second forgets most of the rest and repacks: the runs are rewritten.
    let prunes: [&[&str]; 2] = [
        &[
            "forget",
            "--keep-last",
            "7",
            "--prune",
            "--repack-below",
            "0.9",
        ],
        &[
            "forget",
            "--keep-last",
            "2",
            "--prune",
            "--repack-below",
            "0.9",
        ],
    ];
    for (round, args) in prunes.iter().enumerate() {
        let doc = env.json(args);
        let p = &doc["prune"];
        assert!(p["packs_deleted"].as_u64().unwrap() > 0, "{doc:#}");
        assert!(p["index_superseded"].as_u64().unwrap() > 0, "{doc:#}");
        assert!(p["pending"].is_null(), "{doc:#}");
        if round == 0 {
            assert!(
                dropped_slots(&dir) > 0,
                "the first prune marks slots: {doc:#}"
            );
        } else {
            assert!(p["packs_repacked"].as_u64().unwrap() > 0, "{doc:#}");
            assert_eq!(dropped_slots(&dir), 0, "the second prune rewrites the runs");
        }
        let updated = cache_contents(&dir);
        assert!(!updated.is_empty());
        // The next job loads the index without rebuilding the cache, and finds it as it was.
        let out = env
            .cmd()
            .args(["-v", "prune", "--dry-run"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("rebuilding"), "{err}");
        assert_eq!(cache_contents(&dir), updated);
        // A cache built from nothing holds the same records.
        let fresh = env.path(&format!("fresh-cache-{round}"));
        env.cmd()
            .args(["prune", "--dry-run"])
            .env("STRONGROOM_CACHE_DIR", &fresh)
            .assert()
            .success();
        assert_eq!(cache_contents(&fresh.join(&id).join("index-v1")), updated);
        // Backups still deduplicate against it, and everything reads back.
        let s = env.json(&["backup", &src]);
        assert!(s["added"].as_u64().unwrap() < 100_000, "{s:#}");
        let check = env.json(&["check", "--read-data"]);
        assert_eq!(check["ok"], true, "{check:#}");
        let chunks: std::collections::HashSet<[u8; 32]> = cache_contents(&dir)
            .into_iter()
            .map(|(c, _, _)| c)
            .collect();
        assert_eq!(
            check["chunks"].as_u64().unwrap() as usize,
            chunks.len(),
            "check counts the chunks readers see, not the records of dropped packs: {check:#}"
        );
    }
}

/// Replaces the largest run of the cache in `dir` by a valid run of the same length in
/// which `claimed` chunk ids point at the location of a chunk the repository does hold:
/// what someone who can write the cache, but has not the repository's key, can do.
fn forge(dir: &Path, claimed: &[[u8; 32]]) -> usize {
    let (path, run) = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("run-") && !n.ends_with(".tmp")
        })
        .map(|p| {
            let run = Run::<20>::open(&p).unwrap();
            (p, run)
        })
        .max_by_key(|(_, r)| r.len())
        .expect("a run to forge");
    let real: Vec<Record<20>> = run.iter().unwrap().map(Result::unwrap).collect();
    let n = real.len();
    let somewhere = real[0].1;
    let mut forged: Vec<Record<20>> = claimed.iter().take(n).map(|k| (*k, somewhere)).collect();
    let claimed_n = forged.len();
    forged.extend(real.into_iter().take(n - claimed_n));
    forged.sort_unstable();
    forged.dedup();
    assert_eq!(forged.len(), n);
    let tmp = dir.join("forged");
    let mut w = RunWriter::<20>::create(&tmp, 128).unwrap();
    for (k, v) in &forged {
        w.push(k, v).unwrap();
    }
    drop(w.finish().unwrap());
    std::fs::rename(&tmp, &path).unwrap();
    claimed_n
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn forged_cache_scenario(encrypted: bool) {
    let env = envs().remove(0);
    let db = env.path("hotel.db");
    make_db(&db, 2_000);
    if encrypted {
        env.init();
    } else {
        env.cmd()
            .args(["init", "--encryption", "none"])
            .env_remove("STRONGROOM_PASSWORD")
            .assert()
            .success();
    }
    let src = format!("sqlite:{}", db.display());
    let cache = env.path("cache");
    // Twice: the second backup's index load brings the first's index objects into the cache.
    env.json(&["backup", &src]);
    env.json(&["backup", &src]);
    let id = repo_id(&cache);
    let index: PathBuf = cache.join(&id).join("index-v1");
    let known: std::collections::HashSet<[u8; 32]> =
        records_of(&index).into_iter().map(|(k, _)| k).collect();
    assert!(!known.is_empty(), "the cache holds the first backup");

    // The database changes.
    let mut c = Connection::open(&db).unwrap();
    hotel::update_random_bookings(&mut c, 0.2, 7).unwrap();
    let mut rng = hotel::Rng::new(11);
    for _ in 0..200 {
        hotel::book_room(&mut c, &mut rng).unwrap();
    }
    drop(c);
    let bookings = bookings_in(&db);

    // The forger learns the new pages' chunk ids: here from a copy of the repository (same
    // keys) that backs the changed database up; in life, say, from an older copy of the
    // cache after a prune deleted those chunks.
    let twin = env.path("twin");
    copy_dir(Path::new(&env.repo), &twin);
    let twin_cache = env.path("twin-cache");
    for _ in 0..2 {
        let out = env
            .cmd()
            .args(["backup", &src, "--json"])
            .env("STRONGROOM_REPO", &twin)
            .env("STRONGROOM_CACHE_DIR", &twin_cache)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let new: Vec<[u8; 32]> = records_of(&twin_cache.join(&id).join("index-v1"))
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !known.contains(k))
        .collect();
    assert!(!new.is_empty(), "the change made new chunks");

    // The cache now claims the repository holds them.
    let claimed = forge(&index, &new);
    assert!(claimed > 0);

    // The next backup of the changed database must store them all the same.
    let backed = backup_with_cache(&env, &src, &cache);
    let snap: serde_json::Value = serde_json::from_slice(&backed.stdout).unwrap();
    let snap_id = snap["id"].as_str().unwrap();

    // Restored on a fresh cache, it is whole.
    let fresh = env.path("fresh-cache");
    let restored = env.path("restored.db");
    let out = env
        .cmd()
        .args(["restore", snap_id, "--to", restored.to_str().unwrap()])
        .env("STRONGROOM_CACHE_DIR", &fresh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the snapshot after a forged cache does not restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(invariant_holds(&restored));
    assert_eq!(bookings_in(&restored), bookings);
    env.cmd()
        .args(["check", "--read-data"])
        .env("STRONGROOM_CACHE_DIR", &fresh)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&backed.stderr);
    assert!(err.contains("cannot be trusted"), "{err}");
}

#[test]
fn a_forged_cache_cannot_make_a_backup_skip_chunks_the_repository_lacks() {
    forged_cache_scenario(true);
}

#[test]
fn a_forged_cache_of_an_unencrypted_repository_is_refused_too() {
    forged_cache_scenario(false);
}

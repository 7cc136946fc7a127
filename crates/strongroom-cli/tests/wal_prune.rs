//! The WAL archive over a repository's life, end to end on real clusters: `prune` expiring
//! exactly the WAL no kept physical snapshot needs (point-in-time recovery from the oldest
//! kept one still works), `wal push` SIGKILLed at random moments leaving no object a
//! recovery could trip on, and retention keeping every physical snapshot the PITR window
//! needs, with the binary run under Debian's `faketime`.
//!
//! Runtime on a loaded 2-core machine is dominated by cluster start-up, base backups and
//! recoveries; nothing here asserts on time. Random choices take `STRONGROOM_TEST_SEED`
//! (printed on every run) to replay a run.

mod common;

use common::pg::{
    Committed, Rig, archive_now, between, ids, restore_and_recover, restore_env, server_env,
    workload,
};
use common::{Env, LOCAL_AND_S3, Store, envs, seed};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use strongroom::hotel::Rng;
use strongroom_testkit::postgres::{Cluster, bindirs, give_to_server_user};

/// The segment size of every test cluster (initdb's default).
const SEGMENT_SIZE: u64 = 16 << 20;

/// The segment number `lsn` (`X/Y`) lies in.
fn segment_of(lsn: &str) -> u64 {
    let (hi, lo) = lsn.split_once('/').expect("an LSN is X/Y");
    let hi = u64::from_str_radix(hi, 16).unwrap();
    let lo = u64::from_str_radix(lo, 16).unwrap();
    ((hi << 32) | lo) / SEGMENT_SIZE
}

/// The segment number a WAL file name carries (segments, `.partial` and `.backup` files);
/// `None` for timeline history files and timelines' origin records (never expired).
fn number(name: &str) -> Option<u64> {
    if name.ends_with(".history") || name == "strongroom.origin" {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).unwrap();
    let seg = u64::from_str_radix(&name[16..24], 16).unwrap();
    Some(log * (0x1_0000_0000 / SEGMENT_SIZE) + seg)
}

/// Segment `n` as the last sixteen hex digits of its file name (any timeline).
fn spelled(n: u64) -> String {
    let per_log = 0x1_0000_0000 / SEGMENT_SIZE;
    format!("{:08X}{:08X}", n / per_log, n % per_log)
}

/// The file name of an archive entry `<timeline>/<name>`.
fn name_of(entry: &str) -> &str {
    entry.rsplit('/').next().unwrap()
}

/// Every file archived for cluster `sysid`, as `<timeline>/<name>`, straight from the store.
fn archived(env: &Env, sysid: &str) -> BTreeSet<String> {
    let prefix = format!("wal/{sysid}/");
    env.storage()
        .list(&prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key.strip_prefix(&prefix).unwrap().to_string())
        .collect()
}

/// A physical snapshot's id, cluster and start segment, from `backup --json`.
struct Base {
    id: String,
    sysid: String,
    start: u64,
}

impl Base {
    fn of(snap: &Value) -> Base {
        assert_eq!(snap["kind"], "physical", "{snap}");
        assert_eq!(snap["metadata"]["wal_included"], false, "archiving: {snap}");
        assert_eq!(
            snap["metadata"]["wal_segment_size"].as_u64(),
            Some(SEGMENT_SIZE),
            "{snap}"
        );
        Base {
            id: snap["id"].as_str().unwrap().to_string(),
            sysid: snap["metadata"]["system_identifier"]
                .as_str()
                .unwrap()
                .to_string(),
            start: segment_of(snap["wal"]["start_lsn"].as_str().unwrap()),
        }
    }
}

/// Asserts that a prune took exactly the archived files numbered below segment `cut` from
/// `before` (every timeline; timeline history files never) and that `report` counts them;
/// returns how many went.
fn assert_expired_below(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    cut: u64,
    report: &Value,
    label: &str,
) -> usize {
    let old = |e: &String| number(name_of(e)).is_some_and(|n| n < cut);
    let cut_name = spelled(cut);
    let mut gone = 0;
    for e in before {
        if old(e) {
            assert!(
                !after.contains(e),
                "{label}: {e} lies below segment …{cut_name}, which no kept snapshot needs, and was kept"
            );
            gone += 1;
        } else {
            assert!(
                after.contains(e),
                "{label}: {e} (segment …{cut_name} or later, or a history file) was deleted; report {report:#}"
            );
        }
    }
    assert!(
        !after.iter().any(old),
        "{label}: WAL below …{cut_name} appeared: {after:?}"
    );
    assert_eq!(
        report["wal_deleted"].as_u64(),
        Some(gone as u64),
        "{label}: {report:#}"
    );
    assert_eq!(report["pending"], Value::Null, "{label}: {report:#}");
    assert_eq!(
        report["wal_bytes"].as_u64().unwrap() > 0,
        gone > 0,
        "{label}: {report:#}"
    );
    gone
}

fn place(env: &Env) -> &'static str {
    env.store().name()
}

/// Stops the server `restore --start` left running on `dir`, as an operator would.
fn pg_ctl_stop(bindir: &Path, dir: &Path) {
    let pg_ctl = bindir.join("pg_ctl");
    let mut stop = if unsafe { libc::geteuid() } == 0 {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        c
    } else {
        std::process::Command::new(&pg_ctl)
    };
    let status = stop
        .arg("-D")
        .arg(dir)
        .args(["-m", "fast", "-w", "-t", "600", "stop"])
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl stop on {}", dir.display());
}

/// `restore latest --data-dir DIR TARGET --start --json` as an operator runs it (the
/// repository and key in the environment the server inherits); the server it leaves running
/// is stopped at once and started again under the testkit, which stops it when dropped.
fn restore_started(rig: &Rig, name: &str, target: &[&str]) -> (Value, Cluster) {
    let dir = rig.env.path(name);
    let out = rig
        .env
        .cmd()
        .args(["restore", "latest", "--data-dir"])
        .arg(&dir)
        .args(target)
        .args(["--start", "--json"])
        .envs(restore_env(&rig.env, &rig.key))
        .env_remove("STRONGROOM_PASSWORD")
        .env("STRONGROOM_PG_BINDIR", &rig.bindir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore {target:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    pg_ctl_stop(&rig.bindir, &dir);
    assert_eq!(doc["started"], true, "{doc}");
    let pg = rig
        .start_restored(&dir)
        .unwrap_or_else(|log| panic!("the restored cluster did not start again:\n{log}"));
    (doc, pg)
}

/// Base A, writes, a fork of A onto timeline 2 (its history file and segments archived
/// into the same repository), base B, writes. With both kept, prune may take only WAL from
/// before A; with A forgotten, exactly every file numbered below B's start segment, on
/// both timelines, and never a history file; then the archive is continuous, the
/// repository checks clean, and a point-in-time recovery from B holds exactly the rows
/// committed before its target.
#[test]
fn prune_expires_exactly_the_wal_below_the_oldest_kept_physical_snapshot_local() {
    let seed = seed();
    for bindir in bindirs() {
        expiry(envs().remove(0), &bindir, seed);
    }
}

/// As above, on the S3 test server (a test of its own, so it runs beside the others: it
/// spends most of its time waiting for the store).
#[test]
fn prune_expires_exactly_the_wal_below_the_oldest_kept_physical_snapshot_s3() {
    expiry_on(Store::S3);
}

/// As above, on Azure Blob (Azurite).
#[test]
fn prune_expires_exactly_the_wal_below_the_oldest_kept_physical_snapshot_azure() {
    expiry_on(Store::Azure);
}

/// As above, on GCS (fake-gcs-server).
#[test]
fn prune_expires_exactly_the_wal_below_the_oldest_kept_physical_snapshot_gcs() {
    expiry_on(Store::Gcs);
}

/// The expiry test on `store`: on every PostgreSQL for S3, on the first for Azure and GCS
/// (the PostgreSQL versions are S3's matrix; see common::LOCAL_AND_S3).
fn expiry_on(store: Store) {
    let seed = seed();
    let mut bindirs = bindirs();
    if !LOCAL_AND_S3.contains(&store) {
        bindirs.truncate(1);
    }
    for bindir in bindirs {
        let Some(env) = store.env() else { return };
        expiry(env, &bindir, seed);
    }
}

fn expiry(env: Env, bindir: &Path, seed: u64) {
    let began = Instant::now();
    let mut rng = Rng::new(seed);
    let place = place(&env);
    let rig = Rig::new(env, bindir, true);
    let label = format!(
        "PostgreSQL {}, {place} (seed {seed})",
        rig.pg.major_version()
    );
    rig.pg.create_database("app", None);
    rig.pg.execute(
        "app",
        "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);
         INSERT INTO oracle SELECT g, clock_timestamp(), txid_current() FROM generate_series(-9, 0) g;",
    );
    rig.archive_now();
    let a = Base::of(&rig.backup());
    let early: Vec<Committed> = workload(&rig.pg, 1, 5, None);
    for _ in 0..3 {
        rig.archive_now();
    }
    // Timeline 2 forks at A's end: its history file must survive every prune, its
    // segments (all below B's start) go with the rest once A is forgotten.
    {
        let (_dir, mut fork) = restore_and_recover(&rig, "fork", &["--immediate", "--archive"]);
        fork.execute("app", "INSERT INTO oracle VALUES (1000, now(), 0)");
        archive_now(&fork);
        fork.stop();
    }
    let b = Base::of(&rig.backup());
    assert_eq!(a.sysid, b.sysid);
    assert!(b.start > a.start, "{label}");
    let mut late = workload(&rig.pg, 6, 10, None);
    rig.archive_now();
    late.extend(workload(&rig.pg, 16, 10, None));
    rig.archive_now();
    let sysid = &a.sysid;

    // Both kept: nothing from A's start segment on goes.
    let before = archived(&rig.env, sysid);
    assert!(
        before.contains("00000002/00000002.history"),
        "{label}: the fork archived its history file: {before:?}"
    );
    assert!(
        before.iter().any(|e| e.ends_with(".backup")),
        "{label}: {before:?}"
    );
    let report = rig.env.json(&["prune"]);
    let after = archived(&rig.env, sysid);
    assert_expired_below(&before, &after, a.start, &report, &label);

    // A forgotten: everything below B's start goes, on both timelines.
    rig.env.json(&["forget", &a.id]);
    let before = archived(&rig.env, sysid);
    let report = rig.env.json(&["prune"]);
    let after = archived(&rig.env, sysid);
    let gone = assert_expired_below(&before, &after, b.start, &report, &label);
    assert!(gone > 0, "{label}: {report:#}");
    assert!(
        before.iter().any(|e| e.starts_with("00000002/")
            && number(name_of(e)).is_some_and(|n| n < b.start)
            && !after.contains(e)),
        "{label}: timeline 2's old segments went too: {before:?} → {after:?}"
    );
    assert!(
        after.contains("00000002/00000002.history"),
        "{label}: history files are never expired: {after:?}"
    );
    let verify = rig.env.json(&["wal", "verify"]);
    assert_eq!(verify["ok"], true, "{label}: {verify:#}");
    let check = rig.env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{label}: {check:#}");

    // Point-in-time recovery from B, the oldest base left, to a time after it.
    let k = 1 + rng.below(late.len() as u64 - 2) as usize;
    let time = between(&late[k - 1].commit, &late[k].commit);
    let (doc, pg) = restore_started(&rig, "pitr", &["--time", &time]);
    assert_eq!(doc["snapshot"].as_str(), Some(b.id.as_str()), "{doc}");
    let mut want: BTreeSet<i32> = (-9..=0).collect();
    want.extend(early.iter().chain(&late[..k]).map(|c| c.id));
    assert_eq!(ids(&pg), want, "{label}: recovered to {time}");
    drop(pg);
    eprintln!(
        "{label}: {gone} archived files expired; took {:.0?}",
        began.elapsed()
    );
}

/// `wal push` as `archive_command` runs it (from the data directory, as the server's user,
/// with the key file), on real segments PostgreSQL handed over, SIGKILLed after a random
/// delay: under its final name an object is whole or absent, the repository checks clean
/// with every archived object read, and the push run again succeeds with the archived copy
/// equal to the file.
#[test]
fn wal_push_killed_at_random_moments_leaves_whole_objects_or_none() {
    let seed = seed();
    let bindir = bindirs().remove(0);
    for (n, env) in envs().into_iter().enumerate() {
        let began = Instant::now();
        let mut rng = Rng::new(seed.wrapping_add(n as u64));
        let place = place(&env);
        let label = format!("{place} (seed {seed})");
        let remote = env.store() != Store::Local;
        let repo = env.repo.clone();
        // PostgreSQL hands each finished segment to `cp`, into a folder kept for the test.
        let held = env.path("held");
        std::fs::create_dir(&held).unwrap();
        give_to_server_user(&held);
        let command = format!("cp %p {}/%f", held.display());
        let rig = Rig::with_archive_command(env, &bindir, Some(&command));
        rig.pg.create_database("app", None);
        rig.pg
            .execute("app", "CREATE TABLE filler (id int, pad text)");
        for _ in 0..3 {
            rig.pg.execute(
                "app",
                "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 120000) g",
            );
            archive_now(&rig.pg);
        }
        let mut names: Vec<String> = std::fs::read_dir(&held)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 24)
            .collect();
        names.sort();
        assert!(names.len() >= 4, "{label}: {names:?}");
        let sysid: String = rig
            .pg
            .connect("postgres")
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .unwrap()
            .get(0);
        let data = rig.pg.data_dir();
        let owner = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&data).unwrap();
            (m.uid(), m.gid())
        };
        // The command as PostgreSQL runs it: in the data directory, as its owner, with the
        // server's environment.
        let as_server = |args: &[&str]| {
            use std::os::unix::process::CommandExt;
            let mut c = rig.env.std_cmd();
            c.current_dir(&data)
                .args(args)
                .env_remove("STRONGROOM_PASSWORD")
                .envs(server_env(&rig.env, &rig.key))
                .env("STRONGROOM_FETCH_AHEAD", "0")
                .env("STRONGROOM_CACHE_DIR", rig.env.path("server-state/cache"))
                .uid(owner.0)
                .gid(owner.1);
            c
        };
        let push = |name: &str| {
            let mut c = as_server(&["wal", "push"]);
            c.arg(held.join(name));
            c
        };
        let storage = rig.env.storage();
        let key = |name: &str| format!("wal/{sysid}/00000001/{name}");
        // The archived copy of `name` fetched back equals the file PostgreSQL handed over.
        let fetched = rig.env.path("fetched");
        std::fs::create_dir(&fetched).unwrap();
        give_to_server_user(&fetched);
        let fetched_equal = |name: &str, why: &str| {
            let dest = fetched.join(name);
            let _ = std::fs::remove_file(&dest);
            let out = as_server(&["wal", "fetch", name])
                .arg(&dest)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{label}: {why}: fetching {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                std::fs::read(&dest).unwrap() == std::fs::read(held.join(name)).unwrap(),
                "{label}: {why}: the archived {name} differs from the file"
            );
        };

        // How long a whole push of a new segment takes here, so the delays cover it.
        let mut took = Vec::new();
        for name in names.iter().take(3) {
            let t = Instant::now();
            let out = push(name).output().unwrap();
            took.push(t.elapsed());
            assert!(
                out.status.success(),
                "{label}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            fetched_equal(name, "calibration");
            storage.delete(&key(name)).unwrap();
        }
        took.sort();
        let whole = took[1].max(Duration::from_millis(10));
        // Where a local push writes its temporary file (killed writes leave them there).
        let folder = (!remote).then(|| Path::new(&repo).join(format!("wal/{sysid}/00000001")));
        let temporary_files = |folder: &Path| -> BTreeSet<String> {
            std::fs::read_dir(folder)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(".tmp-"))
                        .collect()
                })
                .unwrap_or_default()
        };

        // Three ways to pick the moment: anywhere in a push; near its end, where the store
        // is written (the rest is opening the repository, hashing, compressing and sealing);
        // and, locally, once its temporary file has appeared.
        let mut kills = [0u32; 3];
        let mut rounds = 0;
        while kills.iter().sum::<u32>() < 12 || (folder.is_some() && kills[2] < 3) {
            rounds += 1;
            assert!(
                rounds <= 400,
                "{label}: too few kills landed while the push ran in {rounds} rounds: {kills:?} (anywhere, late, while writing; a whole push takes {whole:?})"
            );
            let name = &names[rng.below(names.len() as u64) as usize];
            // Mostly a segment not archived yet (the push writes); else one archived already
            // (the push compares).
            let fresh = rng.below(3) != 0;
            if fresh {
                storage.delete(&key(name)).unwrap();
            }
            let how = match rng.below(3) {
                2 if fresh && folder.is_some() => 2,
                0 => 0,
                _ => 1,
            };
            let delay = match how {
                0 => Duration::from_micros(rng.below(whole.as_micros() as u64 * 6 / 5)),
                1 => whole.mul_f64(0.7 + rng.below(600) as f64 / 1000.0),
                _ => Duration::from_micros(rng.below(1000)),
            };
            let left = folder.as_deref().map(temporary_files).unwrap_or_default();
            let mut child = push(name)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            if how == 2 {
                // Until this push's temporary file appears (or it ends).
                let folder = folder.as_deref().unwrap();
                let deadline = Instant::now() + Duration::from_secs(300);
                while temporary_files(folder).is_subset(&left)
                    && child.try_wait().unwrap().is_none()
                {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("{label}: a push of {name} ran for five minutes");
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            std::thread::sleep(delay);
            let _ = child.kill();
            let status = child.wait().unwrap();
            if status.signal() != Some(libc::SIGKILL) {
                assert!(status.success(), "{label}: {name} push failed: {status:?}");
                fetched_equal(name, "a push that finished");
                continue;
            }
            kills[how] += 1;
            let why = format!(
                "round {rounds}, {} killed {delay:?} {}",
                if fresh {
                    "a push that writes"
                } else {
                    "a push that compares"
                },
                [
                    "after it began",
                    "after it began (late)",
                    "after its temporary file appeared"
                ][how]
            );
            // Under its final name the object is whole or absent.
            if storage.exists(&key(name)).unwrap() {
                fetched_equal(name, &format!("{why}, before pushing again"));
            }
            let check = rig.env.json(&["check", "--read-data"]);
            assert_eq!(check["ok"], true, "{label}: {why}: {check:#}");
            let out = push(name).output().unwrap();
            assert!(
                out.status.success(),
                "{label}: {why}: pushing {name} again: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            fetched_equal(name, &why);
        }

        // Every object is whole, whatever the kills left; prune keeps all of a cluster's WAL
        // while no snapshot relies on it, and removes the temporary files of killed writes.
        let listed = archived(&rig.env, &sysid);
        // The timeline's origin record is no WAL file (`wal fetch` refuses its name);
        // `check --read-data` below reads it whole.
        for e in listed.iter().filter(|e| name_of(e) != "strongroom.origin") {
            fetched_equal(name_of(e), "at the end");
        }
        let temporary = storage.list_temporary().unwrap().len();
        let report = rig.env.json(&["prune"]);
        assert_eq!(report["wal_deleted"], 0, "{label}: {report:#}");
        assert_eq!(archived(&rig.env, &sysid), listed, "{label}");
        assert!(storage.list_temporary().unwrap().is_empty(), "{label}");
        let check = rig.env.json(&["check", "--read-data"]);
        assert_eq!(check["ok"], true, "{label}: {check:#}");
        eprintln!(
            "{label}: kills landed in {rounds} rounds: {} anywhere, {} late, {} while writing (a whole push takes {whole:?}); {temporary} temporary files left behind; took {:.0?}",
            kills[0],
            kills[1],
            kills[2],
            began.elapsed()
        );
    }
}

/// Parses an RFC 3339 time from a snapshot summary.
fn time_of(s: &Value, field: &str) -> jiff::Timestamp {
    s[field].as_str().unwrap().parse().unwrap()
}

/// `faketime`'s spelling of a time (whole seconds, UTC).
fn faked(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Physical snapshots taken on five faked days (the binary under `faketime`, the server on
/// the real clock), then `forget --keep-last 1` at several faked nows: the newest physical
/// snapshot finished at or before now - 7 days (the default pitr_window) and every later one
/// are kept with reason "pitr"; then the real forget and a prune keep the WAL they need.
///
/// Local repository only: an S3 request signed at a faked time is refused as skewed.
#[test]
fn retention_keeps_the_physical_snapshots_the_pitr_window_needs() {
    let began = Instant::now();
    let env = envs().remove(0);
    let bindir = bindirs().remove(0);
    let rig = Rig::new(env, &bindir, true);
    rig.pg.create_database("app", None);
    rig.pg.execute("app", "CREATE TABLE t (id int)");
    let days = [1, 3, 5, 8, 10];
    let mut snaps: Vec<Value> = Vec::new();
    for day in days {
        rig.pg
            .execute("app", "INSERT INTO t SELECT generate_series(1, 1000)");
        rig.archive_now();
        let out = rig
            .env
            .at(&format!("2026-11-{day:02} 02:00:00"))
            .args(["backup", &rig.url(), "--kind", "physical", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "a physical backup under faketime: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let started = time_of(&s, "started_at");
        let finished = time_of(&s, "finished_at");
        assert!(
            s["started_at"]
                .as_str()
                .unwrap()
                .starts_with(&format!("2026-11-{day:02}T02:0")),
            "the manifest has the faked times: {s}"
        );
        assert!(started <= finished, "{s}");
        Base::of(&s);
        snaps.push(s);
    }
    let id = |i: usize| snaps[i]["id"].as_str().unwrap().to_string();
    let week = jiff::SignedDuration::from_hours(7 * 24);
    let fin5 = time_of(&snaps[2], "finished_at");
    // Summaries give times to the second, cut down: one second on, the day-5 base is old
    // enough, however little.
    let edge = fin5
        .checked_add(week)
        .unwrap()
        .checked_add(jiff::SignedDuration::from_secs(1))
        .unwrap();
    // A minute short of that: not old enough, however slowly the process starts.
    let short = edge
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .unwrap();
    // (faked now, indexes kept for the window, in days' order)
    let cases: [(String, &[usize]); 5] = [
        ("2026-11-12 12:00:00".into(), &[2, 3, 4]),
        (faked(edge), &[2, 3, 4]),
        (faked(short), &[1, 2, 3, 4]),
        ("2026-11-30 00:00:00".into(), &[4]),
        // No base old enough yet: every one is kept.
        ("2026-11-06 00:00:00".into(), &[0, 1, 2, 3, 4]),
    ];
    for (now, pitr) in &cases {
        let out = rig
            .env
            .at(now)
            .args(["forget", "--keep-last", "1", "--dry-run", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        for (i, day) in days.iter().enumerate() {
            let reasons: Option<Vec<&str>> = doc["keep"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["id"] == id(i).as_str())
                .map(|k| {
                    k["reasons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap())
                        .collect()
                });
            let removed = doc["remove"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == id(i).as_str());
            let want: Option<Vec<&str>> = match (i == 4, pitr.contains(&i)) {
                (true, _) => Some(vec!["last", "newest", "pitr"]),
                (false, true) => Some(vec!["pitr"]),
                (false, false) => None,
            };
            assert_eq!(
                reasons, want,
                "now {now}: day {day} (finished {}): {doc:#}",
                snaps[i]["finished_at"]
            );
            assert_eq!(removed, want.is_none(), "now {now}: day {day}: {doc:#}");
        }
    }
    assert_eq!(rig.env.json(&["list"]).as_array().unwrap().len(), 5);

    // For real at the first now: days 1 and 3 go, and prune keeps the WAL from day 5 on.
    let out = rig
        .env
        .at("2026-11-12 12:00:00")
        .args(["forget", "--keep-last", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let removed: BTreeSet<&str> = doc["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(removed, BTreeSet::from([id(0).as_str(), id(1).as_str()]));
    let base = Base::of(&snaps[2]);
    let before = archived(&rig.env, &base.sysid);
    let report = rig.env.json(&["prune"]);
    let after = archived(&rig.env, &base.sysid);
    let gone = assert_expired_below(&before, &after, base.start, &report, "retention");
    assert!(gone > 0, "{report:#}");
    assert_eq!(rig.env.json(&["wal", "verify"])["ok"], true);
    eprintln!("retention: took {:.0?}", began.elapsed());
}

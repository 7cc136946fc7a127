//! PostgreSQL physical snapshots, WAL archiving and point-in-time recovery, end to end: real
//! clusters of every server version at hand (Debian's and PostgreSQL 18 from npm) archiving
//! through `strongroom wal push`, restores recovering through `strongroom wal fetch`, and an
//! oracle that knows exactly which transactions each recovery target must keep.

mod common;

use common::pg::{
    Rig, archive_now, between, expect, ids, restore_and_recover, restore_env, workload,
};
use common::{PASSWORD, envs};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strongroom_testkit::postgres::{Cluster, bindirs, give_to_server_user};

#[test]
fn point_in_time_recovery_keeps_exactly_the_transactions_up_to_each_target() {
    for bindir in bindirs() {
        let env = envs().remove(0);
        let rig = Rig::new(env, &bindir, true);
        eprintln!(
            "PostgreSQL {} from {}",
            rig.pg.major_version(),
            bindir.display()
        );
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "app",
            "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);
             INSERT INTO oracle SELECT g, clock_timestamp(), txid_current() FROM generate_series(-99, 0) g;",
        );
        let snap = rig.backup();
        assert_eq!(snap["kind"], "physical");
        let wal = &snap["wal"];
        assert!(wal["timeline"].as_u64() == Some(1), "{snap}");
        assert!(wal["start_lsn"].as_str().unwrap().contains('/'));
        assert_eq!(
            snap["metadata"]["wal_included"], false,
            "archiving goes here"
        );
        let pre: BTreeSet<i32> = (-99..=0).collect();
        let committed = workload(&rig.pg, 1, 30, Some((20, "after_twenty")));
        rig.archive_now();

        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as usize;
        eprintln!("seed {seed}");
        let pick = |k: usize| 1 + (seed / (k + 1)) % (committed.len() - 2);
        let (t1, l1, x1) = (pick(1), pick(2), pick(3));
        let time = between(&committed[t1 - 1].commit, &committed[t1].commit);
        let xid = committed[x1 - 1].xid.to_string();
        let lsn = committed[l1 - 1].lsn_after.clone();
        let cases: Vec<(&str, Vec<&str>, BTreeSet<i32>)> = vec![
            ("time", vec!["--time", &time], expect(&committed, &pre, t1)),
            ("xid", vec!["--xid", &xid], expect(&committed, &pre, x1)),
            ("lsn", vec!["--lsn", &lsn], expect(&committed, &pre, l1)),
            (
                "name",
                vec!["--name", "after_twenty"],
                expect(&committed, &pre, 20),
            ),
            ("immediate", vec!["--immediate"], pre.clone()),
            ("latest", vec![], expect(&committed, &pre, committed.len())),
        ];
        for (what, flags, want) in cases {
            let (_dir, pg) = restore_and_recover(&rig, &format!("r-{what}"), &flags);
            let got = ids(&pg);
            assert_eq!(
                got.len(),
                want.len(),
                "{what} {flags:?}: {} rows, expected {} (seed {seed})",
                got.len(),
                want.len()
            );
            assert_eq!(got, want, "{what} {flags:?} (seed {seed})");
        }

        // The restored cluster archives its new timeline into the same repository, and a
        // second point-in-time restore follows it.
        let (_d, restored) = restore_and_recover(&rig, "r-tli", &["--xid", &xid, "--archive"]);
        let mut c = restored.connect("app");
        c.execute("INSERT INTO oracle VALUES (1000, now(), 0)", &[])
            .unwrap();
        let file: String = c
            .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
            .unwrap()
            .get(0);
        assert!(!file.starts_with("00000001"), "a new timeline: {file}");
        archive_now(&restored);
        drop(c);
        drop(restored);
        let (_d2, again) =
            restore_and_recover(&rig, "r-tli2", &["--latest", "--timeline", "latest"]);
        let got = ids(&again);
        assert!(got.contains(&1000), "the new timeline's row is recovered");
        assert_eq!(got.len(), expect(&committed, &pre, x1).len() + 1);

        let verify = rig.env.json(&["wal", "verify"]);
        assert_eq!(verify["ok"], true, "{verify}");
        let timelines = verify["clusters"][0]["timelines"].as_array().unwrap();
        assert!(timelines.len() >= 2, "{verify}");
    }
}

#[test]
fn start_recovers_promotes_and_reports_where_it_stopped() {
    let bindir = bindirs().remove(0);
    for env in envs() {
        let store = env.store().name();
        let rig = Rig::new(env, &bindir, true);
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "app",
            "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);",
        );
        rig.backup();
        let committed = workload(&rig.pg, 1, 5, None);
        rig.archive_now();
        let dir = rig.env.path("started");
        let xid = committed[2].xid.to_string();
        let out = rig
            .env
            .cmd()
            .args(["restore", "latest", "--data-dir"])
            .arg(&dir)
            .args(["--xid", &xid, "--start", "--json"])
            .envs(restore_env(&rig.env, &rig.key))
            .env_remove("STRONGROOM_PASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{store}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["started"], true);
        assert!(
            doc["reached"]["lsn"].as_str().unwrap().contains('/'),
            "{doc}"
        );
        assert_eq!(doc["reached"]["timeline"], 2, "{doc}");
        assert!(
            doc["reached"]["stopped"]
                .as_str()
                .unwrap()
                .contains(&format!("transaction {xid}")),
            "{doc}"
        );
        // The server it left running answers on the port it reported; the restore printed
        // the line that stops it (the right pg_ctl, as the right user): run it as printed,
        // then look at what it recovered.
        let port = doc["port"].as_u64().unwrap();
        assert!(port > 0);
        let stop = doc["stop_command"]
            .as_str()
            .unwrap_or_else(|| panic!("{doc}"));
        assert!(stop.contains(" -D ") && stop.ends_with(" stop"), "{stop}");
        let out = std::process::Command::new("sh")
            .args(["-c", stop])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{stop}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !dir.join("postmaster.pid").exists(),
            "{stop} left it running"
        );
        let pg = rig.start_restored(&dir).unwrap();
        let got = ids(&pg);
        assert_eq!(got, committed[..3].iter().map(|c| c.id).collect());
        drop(pg);
        // Without --start, the restore prints the line that starts the copy (the snapshot's
        // pg_ctl, as the directory's owner, a free port, the repository and key file in its
        // environment): run as printed, the copy recovers to the same point.
        let dir2 = rig.env.path("printed");
        let out = rig
            .env
            .cmd()
            .args(["restore", "latest", "--data-dir"])
            .arg(&dir2)
            .args(["--xid", &xid])
            .envs(restore_env(&rig.env, &rig.key))
            .env_remove("STRONGROOM_PASSWORD")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let start = text
            .lines()
            .find_map(|l| l.strip_prefix("start it with: "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(start.contains("STRONGROOM_PASSWORD_FILE="), "{start}");
        let out = std::process::Command::new("sh")
            .args(["-c", start])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{start}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // pg_ctl waited until the copy accepted connections: it reached consistency through
        // `strongroom wal fetch` with that environment. It promotes at the target by itself;
        // then it holds exactly the transactions up to it. (Stopping it mid-promotion would
        // leave a crash recovery to replay what pg_wal holds: wait for it instead.)
        let port = start
            .split("-p ")
            .nth(1)
            .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port in {start}"));
        let mut client = postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .password(strongroom_testkit::postgres::PASSWORD)
            .dbname("app")
            .connect(postgres::NoTls)
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .unwrap()
            .get::<_, bool>(0)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the copy never promoted"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let got: BTreeSet<i32> = client
            .query("SELECT id FROM oracle", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, committed[..3].iter().map(|c| c.id).collect());
        drop(client);
        let pgctl = rig.bindir.join("pg_ctl");
        let mut stop = if unsafe { libc::geteuid() } == 0 {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pgctl);
            c
        } else {
            std::process::Command::new(&pgctl)
        };
        assert!(
            stop.arg("-D")
                .arg(&dir2)
                .args(["-m", "fast", "-w", "stop"])
                .status()
                .unwrap()
                .success()
        );
        // As root, the server runs as postgres: a key file only root can read fails its
        // restore_command, and the failure says so (not only "exit code 254").
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::fs::PermissionsExt;
            let private = rig.env.path("root-only");
            std::fs::create_dir(&private).unwrap();
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
            let key = private.join("wal.key");
            std::fs::copy(&rig.key, &key).unwrap();
            let out = rig
                .env
                .cmd()
                .args(["restore", "latest", "--data-dir"])
                .arg(rig.env.path("unreadable"))
                .args(["--xid", &xid, "--start"])
                .envs(restore_env(&rig.env, &rig.key))
                .env("STRONGROOM_PASSWORD_FILE", &key)
                .env_remove("STRONGROOM_PASSWORD")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains("cannot read password file"), "{err}");
            assert!(err.contains("must be readable by postgres"), "{err}");
        }
        // Its config holds no secret and recovery.signal is gone after promotion.
        let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
        assert!(auto.contains("restore_command"), "{auto}");
        assert!(
            !auto.contains(PASSWORD) && !auto.contains("strongroom-key-v1"),
            "{auto}"
        );
        assert!(!dir.join("recovery.conf").exists());
        assert!(!dir.join("recovery.signal").exists());
    }
}

#[test]
fn verify_recovers_a_physical_snapshot_on_a_throwaway_server_and_removes_it() {
    for bindir in bindirs() {
        let rig = Rig::new(envs().remove(0), &bindir, true);
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "app",
            "CREATE TABLE rooms (id int PRIMARY KEY); INSERT INTO rooms SELECT generate_series(1, 500); ANALYZE rooms;",
        );
        let snap = rig.backup();
        assert_eq!(snap["metadata"]["row_counts"]["rooms"], 500);
        assert_eq!(snap["metadata"]["row_counts_estimated"], true);
        let tmp = rig.env.path("scratch");
        std::fs::create_dir(&tmp).unwrap();
        let out = rig
            .env
            .cmd()
            .args(["verify", "latest", "--json"])
            .env("TMPDIR", &tmp)
            // Where this version's server binaries are, as an operator would say.
            .env("STRONGROOM_PG_BINDIR", &rig.bindir)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["ok"], true, "{doc}");
        let checks = doc["snapshots"][0]["checks"].as_array().unwrap();
        assert!(
            checks
                .iter()
                .any(|c| c["name"] == "recovery" && c["ok"] == true),
            "{doc}"
        );
        assert!(
            checks
                .iter()
                .any(|c| c["name"] == "row counts" && c["ok"] == true),
            "{doc}"
        );
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "the scratch cluster is removed: {left:?}");
    }
}

#[test]
fn a_cluster_configured_outside_its_data_directory_restores_into_copies_that_start() {
    // Debian keeps postgresql.conf and pg_hba.conf in /etc/postgresql/<version>/<cluster>:
    // the data directory, and so the snapshot, holds neither. The running server read them
    // at its start; moved out now, the backup sees a directory like Debian's.
    let bindir = bindirs().remove(0);
    let rig = Rig::new(envs().remove(0), &bindir, true);
    rig.pg.create_database("app", None);
    rig.pg.execute(
        "app",
        "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);
         INSERT INTO oracle SELECT g, now(), 0 FROM generate_series(1, 50) g; ANALYZE oracle;",
    );
    let data = rig.pg.data_dir();
    let etc = rig.env.path("etc");
    std::fs::create_dir(&etc).unwrap();
    for f in ["postgresql.conf", "pg_hba.conf"] {
        std::fs::rename(data.join(f), etc.join(f)).unwrap();
    }
    rig.backup();
    rig.archive_now();
    // verify's throwaway server starts on it (it failed: "could not access the server
    // configuration file").
    let out = rig
        .env
        .cmd()
        .args(["verify", "latest", "--json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true, "{doc}");
    // A side copy started by restore --start: it gets a minimal postgresql.conf and a
    // pg_hba.conf for this host only, starts, promotes, and holds the data.
    let dir = rig.env.path("copy");
    let out = rig
        .env
        .cmd()
        .args(["restore", "latest", "--data-dir"])
        .arg(&dir)
        .args(["--latest", "--start", "--json"])
        .envs(restore_env(&rig.env, &rig.key))
        .env_remove("STRONGROOM_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("holds no postgresql.conf")),
        "{doc}"
    );
    let conf = std::fs::read_to_string(dir.join("postgresql.conf")).unwrap();
    assert!(!conf.contains("data_directory ="), "{conf}");
    let hba = std::fs::read_to_string(dir.join("pg_hba.conf")).unwrap();
    assert!(hba.contains("127.0.0.1/32"), "{hba}");
    let mut client = postgres::Config::new()
        .host("127.0.0.1")
        .port(doc["port"].as_u64().unwrap() as u16)
        .user("postgres")
        .password(strongroom_testkit::postgres::PASSWORD)
        .dbname("app")
        .connect(postgres::NoTls)
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM oracle", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 50);
    drop(client);
    let stop = doc["stop_command"].as_str().unwrap();
    assert!(
        std::process::Command::new("sh")
            .args(["-c", stop])
            .status()
            .unwrap()
            .success()
    );
    // The source's own data directory gets nothing of the kind: its service starts it with
    // its own configuration, which pg_ctl -D cannot, so --start there is refused up front.
    let out = rig
        .env
        .cmd()
        .args([
            "restore",
            "latest",
            "--force",
            "--latest",
            "--start",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("keeps its configuration elsewhere") && err.contains("nothing was restored"),
        "{err}"
    );
    for f in ["postgresql.conf", "pg_hba.conf"] {
        std::fs::rename(etc.join(f), data.join(f)).unwrap();
    }
}

#[test]
fn without_archiving_a_snapshot_carries_its_wal_and_restores_to_its_end() {
    for bindir in bindirs() {
        let rig = Rig::new(envs().remove(0), &bindir, false);
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "app",
            "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);
             INSERT INTO oracle SELECT g, now(), 0 FROM generate_series(1, 50) g;",
        );
        let out = rig
            .env
            .cmd()
            .args(["backup", &rig.url(), "--kind", "physical", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot give point-in-time recovery"), "{err}");
        let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(snap["metadata"]["wal_included"], true);
        let (_dir, pg) = restore_and_recover(&rig, "r", &["--immediate"]);
        assert_eq!(ids(&pg).len(), 50);
    }
}

#[test]
fn wal_fetch_and_push_follow_postgresql_rules() {
    let bindir = bindirs().remove(0);
    let rig = Rig::new(envs().remove(0), &bindir, true);
    rig.archive_now();
    let data = rig.pg.data_dir();
    let in_data = |args: &[&str]| {
        let mut c = rig.env.std_cmd();
        c.current_dir(&data)
            .args(args)
            .env_remove("STRONGROOM_PASSWORD");
        c.env("STRONGROOM_PASSWORD_FILE", &rig.key)
            .env("STRONGROOM_FETCH_RETRIES", "1");
        c
    };
    let listed = rig.env.json(&["wal", "verify"]);
    let first = listed["clusters"][0]["timelines"][0]["first"]
        .as_str()
        .unwrap()
        .to_string();
    let dest = rig.env.path("fetched");
    // Present: exit 0, the bytes written.
    let out = in_data(&["wal", "fetch", &first])
        .arg(&dest)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 16 << 20);
    // Not archived: exit 1, quietly (PostgreSQL probes this way).
    let out = in_data(&["wal", "fetch", "0000000500000000000000AA"])
        .arg(rig.env.path("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!rig.env.path("x").exists());
    // A store that does not answer: retried (a warning per attempt), then above 125,
    // nothing written.
    let out = in_data(&["wal", "fetch", &first])
        .arg(rig.env.path("y"))
        .env("STRONGROOM_REPO", "s3://no-bucket/repo")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("STRONGROOM_FETCH_RETRIES", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().unwrap() > 125, "{:?}: {err}", out.status);
    assert!(err.contains("(attempt 1/2)"), "{err}");
    assert!(!rig.env.path("y").exists());
    // What no retry can change fails at once (no attempt warning), above 125: a repository
    // that is not there, a wrong key, no password at all.
    let wrong = rig.env.path("wrong.key");
    std::fs::write(
        &wrong,
        format!("{}\n", "strongroom-key-v1:".to_string() + &"0".repeat(64)),
    )
    .unwrap();
    let cases: [(&str, &str, Option<&Path>); 3] = [
        ("no repository", "no strongroom repository", None),
        ("wrong key", "wrong password", Some(&wrong)),
        ("no password", "no password was given", None),
    ];
    for (case, says, key) in cases {
        let mut c = in_data(&["wal", "fetch", &first]);
        c.arg(rig.env.path("y"))
            .env("STRONGROOM_FETCH_RETRIES", "3");
        match (case, key) {
            ("no repository", _) => {
                c.env("STRONGROOM_REPO", rig.env.path("no-such-repo"));
            }
            (_, Some(k)) => {
                c.env("STRONGROOM_PASSWORD_FILE", k);
            }
            _ => {
                c.env_remove("STRONGROOM_PASSWORD_FILE");
            }
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code().unwrap() > 125, "{case}: {:?}", out.status);
        assert!(err.contains(says), "{case}: {err}");
        assert!(!err.contains("attempt"), "{case} was retried: {err}");
        assert!(!rig.env.path("y").exists());
    }
    // Pushing the same file again succeeds; other content under the name fails, keeping
    // the archived copy.
    let seg = rig.env.path(&first);
    std::fs::copy(&dest, &seg).unwrap();
    let out = in_data(&["wal", "push"]).arg(&seg).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let out = in_data(&["wal", "push"]).arg(&seg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("archived already with different content"),
        "{err}"
    );
    let again = rig.env.path("again");
    let out = in_data(&["wal", "fetch", &first])
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&dest).unwrap()
    );
    // Outside a data directory there is no cluster to act for.
    let out = rig
        .env
        .std_cmd()
        .args(["wal", "push"])
        .arg(&seg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a PostgreSQL data directory"));
    // A damaged archived object: fetch stops recovery (above 125) and names it.
    let obj = rig
        .env
        .storage()
        .list("wal/")
        .unwrap()
        .into_iter()
        .find(|o| o.key.ends_with(&first))
        .unwrap();
    let mut sealed = rig.env.storage().get(&obj.key).unwrap();
    let n = sealed.len() / 2;
    sealed[n] ^= 1;
    rig.env.storage().put(&obj.key, &sealed).unwrap();
    let out = in_data(&["wal", "fetch", &first])
        .arg(rig.env.path("z"))
        .output()
        .unwrap();
    assert!(out.status.code().unwrap() > 125);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&first));
    assert!(!rig.env.path("z").exists());
    let out = rig
        .env
        .cmd()
        .args(["check", "--read-data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&obj.key));
}

#[test]
fn failures_are_clean_and_record_no_snapshot() {
    let bindir = bindirs().remove(0);
    let rig = Rig::new(envs().remove(0), &bindir, true);
    rig.pg.create_database("app", None);
    // A role without REPLICATION may not run pg_backup_start.
    rig.pg.execute(
        "postgres",
        "CREATE ROLE plain LOGIN PASSWORD 'pw'; GRANT pg_read_all_settings, pg_monitor TO plain;",
    );
    let url = rig.pg.url("plain", None, "app");
    let err = rig.env.fails_with(
        &["backup", &url, "--kind", "physical"],
        &[("PGPASSWORD", "pw")],
    );
    assert!(err.contains("pg_backup_start"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(rig.env.json(&["list"]).as_array().unwrap().is_empty());

    // A snapshot whose WAL the archive lacks is refused before anything is written,
    // naming the first missing segment.
    let snap = rig.backup();
    let start = snap["wal"]["start_lsn"].as_str().unwrap().to_string();
    let storage = rig.env.storage();
    let segment = storage
        .list("wal/")
        .unwrap()
        .into_iter()
        .rfind(|o| o.key.len() > 24 && !o.key.contains('.'))
        .unwrap();
    storage.delete(&segment.key).unwrap();
    let name = segment.key.rsplit('/').next().unwrap().to_string();
    let dir = rig.env.path("gap");
    let err = rig
        .env
        .fails(&["restore", "latest", "--data-dir", dir.to_str().unwrap()]);
    assert!(err.contains(&name), "names {name} ({start}): {err}");
    assert!(!dir.exists(), "nothing written");
    let out = rig.env.cmd().args(["wal", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    let out = rig.env.cmd().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&name) && err.contains(&snap["id"].as_str().unwrap()[..8]),
        "{err}"
    );

    // A non-empty directory is refused; a live one even with --force.
    let busy = rig.pg.data_dir();
    let err = rig
        .env
        .fails(&["restore", "latest", "--data-dir", busy.to_str().unwrap()]);
    assert!(err.contains("running"), "{err}");
    let full = rig.env.path("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("precious"), "x").unwrap();
    let err = rig
        .env
        .fails(&["restore", "latest", "--data-dir", full.to_str().unwrap()]);
    assert!(err.contains("--force"), "{err}");
    assert!(full.join("precious").exists());
}

#[test]
fn a_server_killed_mid_backup_records_no_snapshot_and_the_next_backup_works() {
    for bindir in bindirs() {
        let mut rig = Rig::new(envs().remove(0), &bindir, true);
        rig.pg.create_database("app", None);
        let faults = rig.env.path("faults");
        std::fs::create_dir(&faults).unwrap();
        let child = rig
            .env
            .std_cmd()
            .args(["backup", &rig.url(), "--kind", "physical"])
            .env("STRONGROOM_FAULT", "pause-after-backup-start")
            .env("STRONGROOM_FAULT_DIR", &faults)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..600 {
            if faults.join("paused").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            faults.join("paused").exists(),
            "the backup reached its pause point"
        );
        rig.pg.kill();
        std::fs::write(faults.join("go"), "").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("strongroom: "), "{err}");
        assert!(
            rig.env.json(&["list"]).as_array().unwrap().is_empty(),
            "no snapshot"
        );
        // The server comes back (crash recovery), and the next backup works.
        rig.pg.restart();
        let snap = rig.backup();
        assert_eq!(snap["kind"], "physical");
    }
}

#[test]
fn force_replaces_a_data_directory_keeping_the_old_one_until_the_new_is_complete() {
    for bindir in bindirs() {
        let rig = Rig::new(envs().remove(0), &bindir, true);
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "app",
            "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);",
        );
        rig.backup();
        rig.archive_now();
        let dir = rig.env.path("replace");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("old-file"), "old").unwrap();
        let out = rig
            .env
            .cmd()
            .args(["restore", "latest", "--data-dir"])
            .arg(&dir)
            .args(["--force", "--keep-old", "--immediate", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let old = PathBuf::from(doc["old_kept_at"].as_str().unwrap());
        assert!(
            old.join("old-file").exists(),
            "the old directory is kept aside: {doc}"
        );
        assert!(!dir.join("old-file").exists());
        assert!(dir.join("global/pg_control").exists());
        assert!(dir.join("recovery.signal").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let pg = rig.start_restored(&dir).unwrap();
        pg.wait_promoted(Duration::from_secs(60)).unwrap();
        let n: i64 = pg
            .connect("app")
            .query_one("SELECT count(*) FROM t", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
    }
}

#[test]
fn an_unreachable_repository_fails_push_with_one_sentence() {
    let bindir = bindirs().remove(0);
    let rig = Rig::new(envs().remove(0), &bindir, true);
    let seg = rig.env.path("000000010000000000000042");
    std::fs::write(&seg, vec![7u8; 1 << 20]).unwrap();
    let out = rig
        .env
        .std_cmd()
        .current_dir(rig.pg.data_dir())
        .args(["wal", "push"])
        .arg(&seg)
        .env("STRONGROOM_REPO", "s3://nowhere/repo")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "garage")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
}

#[test]
fn tablespaces_come_back_inside_the_restored_directory_linked_from_pg_tblspc() {
    for bindir in bindirs() {
        let rig = Rig::new(envs().remove(0), &bindir, true);
        let ts = rig.env.path("tablespace");
        std::fs::create_dir(&ts).unwrap();
        give_to_server_user(&ts);
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "postgres",
            &format!("CREATE TABLESPACE elsewhere LOCATION '{}'", ts.display()),
        );
        rig.pg.execute(
            "app",
            "CREATE TABLE far (id int) TABLESPACE elsewhere; INSERT INTO far SELECT generate_series(1, 1000);",
        );
        let snap = rig.backup();
        let spaces = &snap["metadata"]["tablespaces"];
        assert_eq!(
            spaces.as_object().unwrap().values().next().unwrap(),
            &Value::String(ts.display().to_string()),
            "{snap}"
        );
        rig.archive_now();
        let (dir, pg) = restore_and_recover(&rig, "r", &["--immediate"]);
        let n: i64 = pg
            .connect("app")
            .query_one("SELECT count(*) FROM far", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 1000);
        // Inside the restored data directory, not at the original location.
        let entry = std::fs::read_dir(dir.join("pg_tblspc"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let target = std::fs::read_link(entry.path()).unwrap();
        assert!(target.starts_with(&dir), "{target:?}");
        assert!(!dir.join("tablespace_map").exists());
        drop(pg);
    }
}

#[test]
fn ctrl_c_during_a_physical_verify_stops_the_throwaway_server_and_removes_it() {
    let bindir = bindirs().remove(0);
    let rig = Rig::new(envs().remove(0), &bindir, true);
    rig.pg.create_database("app", None);
    rig.backup();
    let scratch = rig.env.path("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let mut child = rig
        .env
        .std_cmd()
        .args(["verify", "latest"])
        .env("TMPDIR", &scratch)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the throwaway server runs on the restored copy.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let pid = loop {
        let found = std::fs::read_dir(&scratch)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("data/postmaster.pid"))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = found {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no server started");
        assert!(child.try_wait().unwrap().is_none(), "verify ended first");
        std::thread::sleep(Duration::from_millis(10));
    };
    // SIGINT to strongroom alone: its own cleanup must stop the server.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "scratch removed: {left:?}");
    // Gone, or a zombie waiting for init to reap it (the server itself has exited).
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    };
    for _ in 0..400 {
        if gone() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the throwaway server (pid {pid}) still runs");
}

/// Sets the modification time of every file below `dir` an hour back, as if the cluster had
/// been running for a while (a fresh cluster's files were all written in the last second).
fn age_files(dir: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            age_files(&e.path());
        } else if t.is_file() {
            if let Ok(f) = std::fs::File::options().write(true).open(e.path()) {
                let _ = f.set_modified(old);
            }
        }
    }
}

#[test]
fn unchanged_files_are_taken_over_unless_their_chunks_are_gone() {
    for bindir in bindirs() {
        let rig = Rig::new(envs().remove(0), &bindir, true);
        rig.pg.create_database("app", None);
        rig.pg.execute(
            "app",
            "CREATE TABLE hot (id int); INSERT INTO hot SELECT generate_series(1, 1000);
             CREATE TABLE cold (id int); INSERT INTO cold SELECT generate_series(1, 5000);
             CHECKPOINT;",
        );
        age_files(&rig.pg.data_dir());
        let first = rig.backup();
        assert!(
            first["metadata"].get("files_reused").is_none(),
            "no parent: {first}"
        );
        rig.pg.execute(
            "app",
            "INSERT INTO hot SELECT generate_series(1001, 1500); CHECKPOINT;",
        );
        let second = rig.backup();
        let reused = second["metadata"]["files_reused"].as_u64().unwrap();
        assert!(
            reused > 100,
            "most files are unchanged: {}",
            second["metadata"]
        );
        rig.archive_now();
        let (_d, pg) = restore_and_recover(&rig, "r2", &["--latest"]);
        let count = |pg: &Cluster, t: &str| -> i64 {
            pg.connect("app")
                .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .unwrap()
                .get(0)
        };
        assert_eq!((count(&pg, "hot"), count(&pg, "cold")), (1500, 5000));
        drop(pg);

        // A pack of the first snapshot disappears: files whose chunks were there are read
        // again, and the next snapshot restores whole.
        let storage = rig.env.storage();
        let packs = storage.list("data/").unwrap();
        storage.delete(&packs[0].key).unwrap();
        rig.pg
            .execute("app", "INSERT INTO hot VALUES (0); CHECKPOINT;");
        let third = rig.backup();
        let reused_now = third["metadata"]["files_reused"].as_u64().unwrap();
        assert!(reused_now < reused, "{reused_now} < {reused}");
        rig.archive_now();
        let dir = rig.env.path("r3");
        rig.env
            .cmd()
            .args(["restore", third["id"].as_str().unwrap(), "--data-dir"])
            .arg(&dir)
            .arg("--immediate")
            .assert()
            .success();
        let pg = rig.start_restored(&dir).unwrap();
        pg.wait_promoted(Duration::from_secs(60)).unwrap();
        assert_eq!((count(&pg, "hot"), count(&pg, "cold")), (1501, 5000));
    }
}

/// A table of several chunk lists (streamed in order, past the page cache) changed in place
/// after the first backup: the second stores page deltas, and its restore, written from
/// bases patched in place, holds exactly the rows the source held.
#[test]
fn a_large_table_changed_in_place_restores_from_page_deltas() {
    for bindir in bindirs() {
        let rig = Rig::new(envs().remove(0), &bindir, true);
        rig.pg.create_database("app", None);
        // About 40 MB: more than two chunk lists (16 MiB each) and a partial last one.
        rig.pg.execute(
            "app",
            "CREATE TABLE big (id int PRIMARY KEY, pad text);
             INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 130000) g;
             CHECKPOINT;",
        );
        age_files(&rig.pg.data_dir());
        let first = rig.backup();
        rig.pg.execute(
            "app",
            "UPDATE big SET pad = upper(pad) WHERE id % 97 = 0; CHECKPOINT;",
        );
        let second = rig.backup();
        let added = |v: &Value| v["added"].as_u64().unwrap();
        assert!(
            added(&second) * 4 < added(&first),
            "changed pages are stored as deltas: the second backup added {} bytes, the first {}",
            added(&second),
            added(&first)
        );
        let oracle =
            "SELECT count(*)::text || ' ' || md5(string_agg(pad, ',' ORDER BY id)) FROM big";
        let want: String = rig.pg.connect("app").query_one(oracle, &[]).unwrap().get(0);
        rig.archive_now();
        let (_d, pg) = restore_and_recover(&rig, "r", &["--latest"]);
        let got: String = pg.connect("app").query_one(oracle, &[]).unwrap().get(0);
        assert_eq!(got, want);
    }
}

/// Runs `restore latest --data-dir DIR` with `flags` and `--json`; the document, or the
/// error on stderr.
fn restore_json(rig: &Rig, dir: &Path, flags: &[&str]) -> Result<Value, String> {
    let out = rig
        .env
        .cmd()
        .args(["restore", "latest", "--json", "--data-dir"])
        .arg(dir)
        .args(flags)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Issue 17's reproduction: production archives on timeline 1; a side copy restored and
/// promoted must not archive its timeline into production's repository (unless asked); a
/// copy that did (`--archive`) forks timeline 2 there; production goes on committing; a
/// later restore follows production's timeline 1 to its end, a target past the fork is
/// reached on it, `--timeline` picks the fork, and a target no timeline reaches is refused
/// before anything is written.
#[test]
fn a_restore_follows_the_source_timeline_never_a_side_copy_fork() {
    let bindir = bindirs().remove(0);
    let env = envs().remove(0);
    let mut rig = Rig::new(env, &bindir, true);
    rig.pg.create_database("app", None);
    rig.pg.execute(
        "app",
        "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);",
    );
    rig.backup();
    let before = workload(&rig.pg, 1, 10, None);
    rig.archive_now();

    // A side copy, as the README's PITR does it: promoted, and not archiving.
    let side = rig.env.path("side");
    let doc = restore_json(&rig, &side, &["--immediate"]).unwrap();
    let notes = doc["notes"].to_string();
    assert!(notes.contains("archive_mode = off"), "{doc}");
    let copy = rig.start_restored(&side).unwrap();
    copy.wait_promoted(Duration::from_secs(120)).unwrap();
    let mut c = copy.connect("app");
    let mode: String = c.query_one("SHOW archive_mode", &[]).unwrap().get(0);
    assert_eq!(
        mode, "off",
        "a side copy must not archive into the source's repository"
    );
    c.batch_execute("INSERT INTO oracle VALUES (2000, now(), 0); SELECT pg_switch_wal();")
        .unwrap();
    drop(c);
    drop(copy);

    // A copy that does archive (--archive) forks timeline 2 in the repository.
    let fork_at = between(&before[4].commit, &before[5].commit);
    let forked = rig.env.path("forked");
    restore_json(&rig, &forked, &["--time", &fork_at, "--archive"]).unwrap();
    let fork = rig.start_restored(&forked).unwrap();
    fork.wait_promoted(Duration::from_secs(120)).unwrap();
    let mode: String = fork
        .connect("app")
        .query_one("SHOW archive_mode", &[])
        .unwrap()
        .get(0);
    assert_eq!(mode, "on", "--archive keeps archiving");
    fork.execute("app", "INSERT INTO oracle VALUES (1000, now(), 0)");
    archive_now(&fork);
    drop(fork);
    let verify = rig.env.json(&["wal", "verify"]);
    let tls: Vec<u64> = verify["clusters"][0]["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_u64().unwrap())
        .collect();
    assert_eq!(
        tls,
        vec![1, 2],
        "only the --archive copy forked into the archive: {verify}"
    );

    // Production goes on: a table created after the fork, more commits.
    rig.pg.execute("app", "CREATE TABLE after_fork (x int)");
    let after = workload(&rig.pg, 11, 10, None);
    rig.archive_now();
    let all: BTreeSet<i32> = (1..=20).collect();

    // The default follows production's timeline 1 to its end.
    let (_d, pg) = restore_and_recover(&rig, "r-latest", &["--latest"]);
    assert_eq!(
        ids(&pg),
        all,
        "production's WAL after the fork is recovered"
    );
    let n: i64 = pg
        .connect("app")
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'after_fork'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the table created after the fork is there");
    drop(pg);

    // A time past the fork is reached on timeline 1.
    let past = between(&after[4].commit, &after[5].commit);
    let (_d, pg) = restore_and_recover(&rig, "r-past", &["--time", &past]);
    assert_eq!(ids(&pg), (1..=15).collect());
    drop(pg);

    // --timeline picks the fork.
    let (_d, pg) = restore_and_recover(&rig, "r-fork", &["--timeline", "2"]);
    let want: BTreeSet<i32> = (1..=5).chain([1000]).collect();
    assert_eq!(ids(&pg), want);
    drop(pg);
    let doc = restore_json(&rig, &rig.env.path("r-current"), &["--timeline", "current"]).unwrap();
    assert_eq!(doc["timeline"], 1, "{doc}");

    // A target no timeline reaches: refused before anything is written.
    let nowhere = rig.env.path("r-nowhere");
    let err = restore_json(&rig, &nowhere, &["--lsn", "FF/0"]).unwrap_err();
    assert!(err.contains("no timeline reaches LSN FF/0"), "{err}");
    assert!(
        err.contains("timeline 1 (pushed from") && err.contains("timeline 2 (pushed from"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    let err = restore_json(&rig, &nowhere, &["--timeline", "3"]).unwrap_err();
    assert!(
        err.contains("timeline 3 does not pass through snapshot"),
        "{err}"
    );
    assert!(!nowhere.exists());
    let strays: Vec<_> = std::fs::read_dir(rig.env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("r-nowhere"))
        .collect();
    assert!(strays.is_empty(), "nothing written: {strays:?}");

    // Production down: its own data directory's records still say timeline 1.
    rig.pg.stop();
    let doc = restore_json(&rig, &rig.env.path("r-down"), &["--latest"]).unwrap();
    assert_eq!(doc["timeline"], 1, "{doc}");
    assert!(
        doc["notes"].to_string().contains("the source's own"),
        "{doc}"
    );

    // Into production's own data directory: the real recovery keeps archiving, and says so.
    let own = rig.pg.data_dir();
    let doc = restore_json(&rig, &own, &["--latest", "--force"]).unwrap();
    assert!(doc["notes"].to_string().contains("real recovery"), "{doc}");
    let auto = std::fs::read_to_string(own.join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("archive_mode = 'off'"), "{auto}");
}

/// Every WAL file archived under `repo` (a local repository): (timeline folder, path), origin
/// records included.
fn archived_files(repo: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Some(parent) = p.parent().and_then(|d| d.file_name()) {
                out.push((parent.to_string_lossy().into_owned(), p));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.join("wal"), &mut out);
    out
}

/// Sets the modification time (what the local store dates an object by) of `path`.
fn date(path: &Path, at: jiff::Timestamp) {
    let ok = std::process::Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{}", at.as_second()))
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {}", path.display());
}

/// Issue 17, "timelines judged correctly everywhere": a copy restored with `--archive` forks
/// timeline 2 into production's archive and keeps archiving there after production's
/// archive stopped. `wal verify` marks timeline 1 as the source's and 2 as a fork (where it
/// branched, who pushed it); the runbook's window is timeline 1's reach and names the fork;
/// `status` judges WAL age on timeline 1, so the fork's fresh archiving does not hide a
/// stopped production archive; origin records are not counted as WAL files.
#[test]
fn status_runbook_and_wal_verify_judge_the_source_timeline_not_a_fork() {
    let bindir = bindirs().remove(0);
    let env = envs().remove(0);
    let mut rig = Rig::new(env, &bindir, true);
    rig.pg.create_database("app", None);
    rig.pg.execute(
        "app",
        "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);",
    );
    std::fs::write(
        rig.env.path("strongroom.toml"),
        format!("[sources.prod]\nurl = {:?}\n", rig.url()),
    )
    .unwrap();
    rig.env.json(&["backup", "prod", "--kind", "physical"]);
    let before = workload(&rig.pg, 1, 10, None);
    rig.archive_now();
    let fork_at = between(&before[4].commit, &before[5].commit);
    let forked = rig.env.path("forked");
    restore_json(&rig, &forked, &["--time", &fork_at, "--archive"]).unwrap();
    let fork = rig.start_restored(&forked).unwrap();
    fork.wait_promoted(Duration::from_secs(120)).unwrap();
    fork.execute("app", "INSERT INTO oracle VALUES (1000, now(), 0)");
    archive_now(&fork);
    drop(fork);

    // wal verify: timeline 1 is the source's (its server says so), 2 a fork of it.
    let verify = rig.env.json(&["wal", "verify"]);
    let cluster = &verify["clusters"][0];
    assert_eq!(cluster["source_timeline"], 1, "{verify:#}");
    assert_eq!(cluster["source_timeline_found"], "server", "{verify:#}");
    let tl = |id: u64| {
        cluster["timelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["timeline"] == id)
            .unwrap_or_else(|| panic!("timeline {id}: {verify:#}"))
            .clone()
    };
    assert_eq!(tl(1)["role"], "source", "{verify:#}");
    let two = tl(2);
    assert_eq!(two["role"], "fork", "{two}");
    assert_eq!(two["branched_from"], 1, "{two}");
    assert!(two["branched_at"].as_str().unwrap().contains('/'), "{two}");
    let copy_dir = std::fs::canonicalize(&forked).unwrap();
    assert_eq!(
        two["origin"]["data_directory"],
        copy_dir.display().to_string(),
        "{two}"
    );
    assert!(
        two["segments"].as_u64().unwrap() > 0,
        "the old fields stay: {two}"
    );
    assert_eq!(verify["ok"], true, "{verify:#}");

    // The fork keeps archiving (dated half an hour on); production's archive stopped.
    let files = archived_files(Path::new(&rig.env.repo));
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(30);
    let mut tl1_newest = None;
    for (folder, path) in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        if folder == "00000002" {
            date(path, later);
        } else if folder == "00000001" && name.len() == 24 {
            let m = std::fs::metadata(path).unwrap().modified().unwrap();
            let m = jiff::Timestamp::try_from(m).unwrap();
            tl1_newest = tl1_newest.max(Some(m));
        }
    }
    let tl1_newest = tl1_newest.expect("timeline 1 has segments");

    // The runbook's window ends where timeline 1 ends, and names the fork.
    let out = rig
        .env
        .cmd()
        .args(["runbook", "--source", "prod"])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = |t: jiff::Timestamp| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    assert!(
        md.contains(&format!(
            "to about {} along timeline 1**",
            shown(tl1_newest)
        )),
        "{md}"
    );
    assert!(
        !md.contains(&shown(later)),
        "the fork's reach is not the window: {md}"
    );
    assert!(
        md.contains("timeline 2 (pushed from") && md.contains("branched from timeline 1 at"),
        "{md}"
    );

    // status half an hour on: timeline 1 is over the RPO, whatever the fork archived.
    let at = later.strftime("%Y-%m-%d %H:%M:%S").to_string();
    let out = rig
        .env
        .at(&at)
        .args(["status", "--json", "--no-alerts"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let wal = doc["sources"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "wal.archive")
        .unwrap_or_else(|| panic!("{doc:#}"))
        .clone();
    assert_eq!(wal["level"], "critical", "{wal}");
    let detail = wal["detail"].as_str().unwrap();
    assert!(
        detail.contains("over the RPO") && detail.contains("newest archived WAL 00000001"),
        "{detail}"
    );
    assert!(detail.contains("forks not judged: timeline 2"), "{detail}");

    // Origin records are not WAL files.
    let wal_files = files
        .iter()
        .filter(|(_, p)| !p.ends_with("strongroom.origin"))
        .count();
    assert!(wal_files < files.len(), "origin records were written");
    let out = rig.env.cmd().arg("metrics").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("strongroom_wal_archived_files{")
                && l.ends_with(&format!(" {wal_files}"))),
        "{wal_files} WAL files: {text}"
    );

    // Production down: its data directory's origin records still say timeline 1.
    rig.pg.stop();
    let verify = rig.env.json(&["wal", "verify"]);
    assert_eq!(verify["clusters"][0]["source_timeline"], 1, "{verify:#}");
    assert_eq!(
        verify["clusters"][0]["source_timeline_found"], "pushed",
        "{verify:#}"
    );
}

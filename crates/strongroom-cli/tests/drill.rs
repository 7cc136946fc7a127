//! Recovery drills end to end: the real binary rehearsing recoveries of SQLite files and of
//! real PostgreSQL clusters (logical and physical with WAL archiving) into scratch places,
//! measuring RTO and RPO (also under a faked clock), and keeping every report, passed or
//! failed, in the repository and the journal. No timing is asserted beyond the clock faked.

mod common;

use common::pg::{Rig, workload};
use common::{Env, LOCAL_AND_S3, PASSWORD, envs, envs_on, json_of};
use serde_json::Value;
use strongroom::hotel::{self, Scale};
use strongroom_testkit::postgres::{self as pgkit, Cluster, bindirs};

/// Journal records of `env`'s repository.
fn journal(env: &Env) -> Vec<strongroom::repository::journal::JournalRecord> {
    strongroom::repository::Repository::open(env.storage(), Some(PASSWORD.as_bytes()))
        .unwrap()
        .journal_records()
        .unwrap()
}

/// A hotel database of `bookings` at `name` in `env`'s directory, as a `sqlite:` source.
fn hotel_db(env: &Env, name: &str, bookings: u64) -> String {
    let path = env.path(name);
    env.cmd()
        .args(["hotel", "generate"])
        .arg(&path)
        .args(["--bookings", &bookings.to_string()])
        .assert()
        .success();
    format!("sqlite:{}", path.display())
}

/// `drill --json` with extra arguments and environment: the exit code and the document.
fn drill(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, Value) {
    let out = env
        .cmd()
        .arg("drill")
        .args(args)
        .arg("--json")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drill {args:?} printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

/// The names of a drill document's phases.
fn phase_names(doc: &Value) -> Vec<String> {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["seconds"].as_f64().unwrap() >= 0.0, "{p}");
            p["name"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The contract's fields, with sound values, on a drill that passed.
fn assert_passed(doc: &Value, snapshot: &str) {
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["snapshot"], snapshot, "{doc}");
    let rto = doc["rto_seconds"].as_f64().unwrap();
    let sum: f64 = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seconds"].as_f64().unwrap())
        .sum();
    assert!(
        (rto - sum).abs() < 0.01,
        "RTO is the sum of the phases: {doc}"
    );
    assert!(doc["rto_objective_seconds"].as_f64().unwrap() > 0.0);
    assert!(doc["rpo_seconds"].as_f64().unwrap() >= 0.0, "{doc}");
    assert!(doc["rpo_objective_seconds"].as_f64().unwrap() > 0.0);
    let names = phase_names(doc);
    for p in ["fetch", "restore", "checks"] {
        assert!(names.iter().any(|n| n == p), "phase {p}: {doc}");
    }
    let checks = doc["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "{doc}");
    for c in checks {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["name"].is_string() && c["detail"].is_string(), "{c}");
    }
}

#[test]
fn a_sqlite_drill_is_timed_checked_kept_and_journaled() {
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        let src = hotel_db(&env, "hotel.db", 2_000);
        let first = env.json(&["backup", &src]);
        let first_id = first["id"].as_str().unwrap().to_string();
        let second = env.json(&["backup", &src]);
        let second_id = second["id"].as_str().unwrap().to_string();

        // A random recent one; the seed replays the choice.
        let (code, doc) = drill(&env, &[], &[("STRONGROOM_DRILL_SEED", "7")]);
        assert_eq!(code, Some(0), "{doc}");
        let chosen = doc["snapshot"].as_str().unwrap().to_string();
        assert!(chosen == first_id || chosen == second_id, "{doc}");
        assert_passed(&doc, &chosen);
        assert_eq!(doc["seed"], 7);
        assert!(doc["choice"].as_str().unwrap().contains("last 7 days"));
        let (_, again) = drill(&env, &[], &[("STRONGROOM_DRILL_SEED", "7")]);
        assert_eq!(
            again["snapshot"], chosen,
            "the same seed, the same snapshot"
        );
        let report = doc["report"].as_str().unwrap();
        assert!(report.starts_with("drills/"), "{doc}");
        assert!(env.storage().exists(report).unwrap(), "the report is kept");

        // --snapshot REF (a prefix), and the Markdown report.
        let md = env.path("drill.md");
        let (code, doc) = drill(
            &env,
            &[
                "--snapshot",
                &first_id[..8],
                "--report",
                md.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, Some(0), "{doc}");
        assert_passed(&doc, &first_id);
        let text = std::fs::read_to_string(&md).unwrap();
        assert!(text.starts_with("# Recovery drill"), "{text}");
        for want in ["PASSED", "RTO", "RPO", &first_id[..8], "| restore |"] {
            assert!(text.contains(want), "{want} in {text}");
        }
        // Human output is the same Markdown, on stdout.
        let out = env
            .cmd()
            .args(["drill", "--snapshot", "latest"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(&second_id[..8]));

        // Several sources: --source narrows, and none given is refused.
        let other = hotel_db(&env, "other.db", 100);
        env.json(&["backup", &other]);
        let err = env.fails(&["drill"]);
        assert!(err.contains("ambiguous"), "{err}");
        let (code, doc) = drill(&env, &["--source", &other], &[]);
        assert_eq!(code, Some(0), "{doc}");
        assert!(
            doc["source"].as_str().unwrap().ends_with("other.db"),
            "{doc}"
        );

        // History: every drill, oldest first, with its figures; one journal record each.
        let history = env.json(&["drill", "--history"]);
        let entries = history.as_array().unwrap();
        assert_eq!(entries.len(), 5, "{history}");
        assert_eq!(entries[0]["snapshot"], chosen);
        assert_eq!(entries[2]["snapshot"], first_id);
        assert!(entries.iter().all(|e| e["ok"] == true
            && e["rto_seconds"].is_number()
            && e["rpo_objective_seconds"].is_number()));
        assert_eq!(entries[0]["report"], report);
        let narrowed = env.json(&["drill", "--history", "--source", &other]);
        assert_eq!(narrowed.as_array().unwrap().len(), 1, "{narrowed}");
        let records: Vec<_> = journal(&env)
            .into_iter()
            .filter(|r| r.job == "drill")
            .collect();
        assert_eq!(records.len(), 5);
        let figures = records[0].drill.as_ref().expect("drill figures");
        assert_eq!(figures.report.as_deref(), Some(report));
        assert_eq!(records[0].snapshot.as_deref(), Some(chosen.as_str()));
        assert!(records[0].source.as_deref().unwrap().ends_with("hotel.db"));
        // Every kept report reads back and authenticates.
        env.cmd().args(["check", "--read-data"]).assert().success();
        let table = env.cmd().args(["drill", "--history"]).output().unwrap();
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(
            table.contains(&first_id[..8]) && table.contains("| ok |"),
            "{table}"
        );
    }
}

#[test]
fn a_drill_of_a_damaged_snapshot_fails_and_is_still_kept() {
    let env = envs().remove(0);
    env.init();
    let src = hotel_db(&env, "hotel.db", 2_000);
    let id = env.json(&["backup", &src])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let storage = env.storage();
    for pack in storage.list("data/").unwrap() {
        let mut bytes = storage.get(&pack.key).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x01;
        storage.put(&pack.key, &bytes).unwrap();
    }
    // A failed drill alerts like any failed job.
    std::fs::write(
        env.path("strongroom.toml"),
        "[[alerts]]\ncommand = \"cat > alert.json\"\n",
    )
    .unwrap();
    let (code, doc) = drill(&env, &[], &[]);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(doc["snapshot"], id);
    let alert: Value =
        serde_json::from_slice(&std::fs::read(env.path("alert.json")).unwrap()).unwrap();
    assert_eq!(alert["event"], "job_failed", "{alert}");
    assert_eq!(alert["job"], "drill", "{alert}");
    assert_eq!(alert["error_kind"], "damaged_data", "{alert}");
    assert!(doc["error"].as_str().unwrap().contains("damaged"), "{doc}");
    let checks = doc["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["ok"] == false), "{doc}");
    assert!(!phase_names(&doc).is_empty(), "{doc}");
    assert!(doc["rto_seconds"].is_number() && doc["rpo_seconds"].is_number());
    let report = doc["report"].as_str().unwrap();
    assert!(
        storage.exists(report).unwrap(),
        "a failed drill's report is kept"
    );

    let err = env.fails(&["drill"]);
    assert!(err.contains(&id[..8]) && err.contains("failed"), "{err}");
    let history = env.json(&["drill", "--history"]);
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{history}");
    assert!(
        entries
            .iter()
            .all(|e| e["ok"] == false && e["snapshot"] == id.as_str())
    );
    let rec = journal(&env)
        .into_iter()
        .find(|r| r.job == "drill")
        .unwrap();
    assert!(!rec.ok);
    assert_eq!(rec.error_kind.as_deref(), Some("damaged_data"));
}

#[test]
fn rpo_is_measured_against_the_clock_and_a_missed_objective_is_said() {
    // faketime and a local repository (Garage refuses requests signed in the future).
    let env = envs().remove(0);
    env.init();
    let src = hotel_db(&env, "hotel.db", 500);
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[objectives]\nrpo = \"15m\"\nrto = \"1h\"\n[sources.hotel]\nurl = \"{src}\"\n\
             [[sources.hotel.checks]]\nname = \"bookings exist\"\nsql = \"SELECT count(*) > 0 FROM bookings\"\n"
        ),
    )
    .unwrap();
    let id = env.json(&["backup", "hotel"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, now) = drill(&env, &[], &[]);
    assert_eq!(code, Some(0), "{now}");
    assert_eq!(now["rpo_met"], true, "{now}");
    assert_eq!(now["rpo_objective_seconds"], 900.0);
    assert!(
        now["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "bookings exist" && c["ok"] == true),
        "the source's configured checks run: {now}"
    );

    let later = |args: &[&str]| {
        let real = env.std_cmd();
        let mut c = std::process::Command::new("faketime");
        c.args(["-f", "+2h"])
            .arg(real.get_program())
            .current_dir(env.dir.path())
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        for (k, v) in real.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(args);
        assert_cmd::Command::from_std(c)
    };
    let md = env.path("late.md");
    let doc = json_of({
        let mut c = later(&["drill", "--report", md.to_str().unwrap()]);
        c.env("STRONGROOM_DRILL_SEED", "1");
        c
    });
    assert_eq!(doc["snapshot"], id);
    assert_eq!(doc["ok"], true, "the recovery itself works: {doc}");
    assert!(doc["rpo_seconds"].as_f64().unwrap() >= 7200.0, "{doc}");
    assert_eq!(doc["rpo_met"], false, "{doc}");
    assert_eq!(doc["rto_met"], true, "{doc}");
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("MISSED") && text.contains("RPO objective is missed"),
        "{text}"
    );
    let history = json_of(later(&["drill", "--history"]));
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert!(last["rpo_seconds"].as_f64().unwrap() >= 7200.0, "{history}");
    let table = later(&["drill", "--history"]).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("MISSED"));
}

#[test]
fn a_postgres_logical_drill_restores_into_a_scratch_database_and_drops_it() {
    let pg = Cluster::start();
    pg.create_database("hotel", None);
    pg.execute("hotel", &hotel::postgres_sql(Scale::bookings(2_000)));
    let env = envs().remove(0);
    env.init();
    let id = env.json(&["backup", &pg.super_url("hotel")])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = pg.databases();
    let (code, doc) = drill(&env, &[], &[("PGPASSWORD", pgkit::PASSWORD)]);
    assert_eq!(code, Some(0), "{doc}");
    assert_passed(&doc, &id);
    assert_eq!(doc["kind"], "logical");
    let checks = doc["checks"].as_array().unwrap();
    for name in ["pg_restore", "row counts"] {
        assert!(checks.iter().any(|c| c["name"] == name), "{name}: {doc}");
    }
    assert!(!doc.to_string().contains(pgkit::PASSWORD), "{doc}");
    assert_eq!(pg.databases(), before, "the scratch database is dropped");
}

#[test]
fn a_physical_drill_recovers_to_a_random_point_on_a_server_that_archives_nothing() {
    let bindir = bindirs().remove(0);
    let rig = Rig::new(envs().remove(0), &bindir, true);
    rig.pg.create_database("app", None);
    rig.pg.execute(
        "app",
        "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);
         INSERT INTO oracle SELECT g, clock_timestamp(), txid_current() FROM generate_series(-99, 0) g;
         ANALYZE oracle;",
    );
    let snap = rig.backup();
    let id = snap["id"].as_str().unwrap().to_string();
    // Rounds of commits after the snapshot, each archived in its own segment: the span to
    // recover into (the newest segment is left out of it: what follows it is not archived).
    let mut committed = Vec::new();
    for round in 0..3 {
        committed.extend(workload(&rig.pg, 1 + round * 10, 10, None));
        rig.archive_now();
    }
    let storage = rig.env.storage();
    let wal_before: Vec<String> = storage
        .list("wal/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let scratch = rig.env.path("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let seed = common::seed().to_string();
    let out = rig
        .env
        .cmd()
        .args(["drill", "--json"])
        .env("TMPDIR", &scratch)
        .env("STRONGROOM_PG_BINDIR", &rig.bindir)
        .env("STRONGROOM_DRILL_SEED", &seed)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{doc} (seed {seed})");
    assert_passed(&doc, &id);
    assert_eq!(doc["kind"], "physical");
    assert!(phase_names(&doc).iter().any(|n| n == "recovery"), "{doc}");
    let target = doc["recovery_target"].as_str().unwrap();
    assert!(
        target.contains("WAL position"),
        "a point after the snapshot: {doc}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recovery target") && stderr.contains(&seed),
        "{stderr}"
    );
    let recovery = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "recovery")
        .unwrap()
        .clone();
    assert!(
        recovery["detail"].as_str().unwrap().contains("to LSN"),
        "{recovery}"
    );
    // The oracle: every transaction whose commit ended at or before the target is there,
    // and at most the one whose commit record is the first at or after it besides.
    let lsn = |s: &str| strongroom::engine::postgres::cluster::Lsn::parse(s).unwrap();
    let at = lsn(target
        .strip_prefix("WAL position ")
        .and_then(|t| t.split(',').next())
        .unwrap());
    let before = committed.iter().filter(|c| lsn(&c.lsn_after) <= at).count() as u64;
    let counted = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "row counts")
        .and_then(|c| c["detail"].as_str())
        // "1 table(s), 112 row(s); …"
        .and_then(|d| d.split(", ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("row counts in {doc}"));
    eprintln!("recovered {counted} rows to {at}");
    assert!(
        (100 + before..=100 + before + 1).contains(&counted),
        "{counted} rows recovered to {at}, {before} transactions committed before it (seed {seed})"
    );

    // The scratch data directory and its server are gone.
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the scratch cluster is removed: {left:?}");
    // The promoted copy forked timeline 2, and none of it reached the repository.
    let wal_after: Vec<String> = storage
        .list("wal/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        wal_after.iter().all(|k| !k.contains("/00000002")),
        "no timeline 2 in the archive: {wal_after:?}"
    );
    assert!(
        wal_after.iter().all(|k| wal_before.contains(k)),
        "nothing new archived by the drill: {wal_after:?} vs {wal_before:?}"
    );
    let verify = rig.env.json(&["wal", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    // The source cluster still archives into the repository as before.
    rig.archive_now();
    let history = rig.env.json(&["drill", "--history"]);
    assert_eq!(history[0]["snapshot"], id, "{history}");
}

//! Storage faults: every job, through a proxy in front of Garage that answers 503s, drops
//! connections before and during answers, stalls and truncates bodies, either completes or
//! fails cleanly (one sentence, exit 1); and afterwards, with the store healthy again, every
//! listed snapshot restores byte-identical and `check --read-data` passes.
//!
//! S3 only: these need the Garage server `./scripts/test` starts.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strongroom::hotel::{self, Rng, Scale};
use strongroom_testkit::s3proxy::{Fault, FaultProxy, Plan, Rule};

mod common;
use common::{Env, envs};

/// The S3 environment of the test run, or `None` (with a note) when there is none.
fn s3_env() -> Option<Env> {
    let env = envs().into_iter().find(|e| e.repo.starts_with("s3://"));
    if env.is_none() {
        eprintln!("note: no S3 server: fault scenarios skipped (./scripts/test runs them)");
    }
    env
}

struct Faulty<'a> {
    env: &'a Env,
    proxy: FaultProxy,
}

impl Faulty<'_> {
    /// Runs strongroom through the proxy; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .env
            .std_cmd()
            .args(args)
            .env("AWS_ENDPOINT_URL", self.proxy.url())
            .env("STRONGROOM_IO_TIMEOUT", "3")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn clean_failure(args: &[&str], code: i32, stderr: &str, plan_seed: u64) {
    assert_eq!(
        code, 1,
        "{args:?} exits 1 or 0 (seed {plan_seed}); stderr: {stderr}"
    );
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("strongroom: "),
        "{args:?} ends with one sentence (seed {plan_seed}): {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A random plan of every fault kind on a share of requests.
fn random_plan(rng: &mut Rng) -> Plan {
    let seed = rng.next_u64();
    let p = |x: u64| x as f64 / 100.0;
    Plan::seeded(seed)
        .rule(Rule::new(Fault::Status503).probability(p(rng.below(25))))
        .rule(Rule::new(Fault::DropBeforeResponse).probability(p(rng.below(8))))
        .rule(Rule::new(Fault::DropMidResponse).probability(p(rng.below(8))))
        .rule(Rule::new(Fault::DropMidRequest).probability(p(rng.below(8))))
        .rule(
            Rule::new(Fault::TruncateBody)
                .method("GET")
                .probability(p(rng.below(10))),
        )
        .rule(Rule::new(Fault::Stall(Duration::from_millis(4500))).probability(p(rng.below(3))))
}

fn verify_all(env: &Env, copies: &BTreeMap<String, Vec<u8>>, state_of_new: &[u8]) -> Vec<String> {
    let list: Value = env.json(&["list"]);
    let mut ids = Vec::new();
    for s in list.as_array().unwrap() {
        let id = s["id"].as_str().unwrap().to_string();
        let want = copies.get(&id).map(Vec::as_slice).unwrap_or(state_of_new);
        let to = env.path("check.db");
        let _ = std::fs::remove_file(&to);
        env.cmd()
            .args(["restore", &id, "--to"])
            .arg(&to)
            .assert()
            .success();
        assert!(
            std::fs::read(&to).unwrap() == want,
            "snapshot {id} restores byte-identical"
        );
        ids.push(id);
    }
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check:#}");
    ids
}

fn hotel_db(env: &Env) -> (PathBuf, String) {
    let db = env.path("hotel.db");
    hotel::create(&db, Scale::bookings(3000), 42).unwrap();
    let src = format!("sqlite:{}", db.display());
    (db, src)
}

fn update(db: &Path, seed: u64) {
    let mut c = rusqlite::Connection::open(db).unwrap();
    hotel::update_random_bookings(&mut c, 0.3, seed).unwrap();
}

#[test]
fn jobs_through_a_faulty_store_complete_or_fail_cleanly() {
    let Some(env) = s3_env() else { return };
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let faulty = Faulty {
        env: &env,
        proxy: FaultProxy::start(&upstream),
    };
    env.init();
    let (db, src) = hotel_db(&env);
    let mut copies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (mut ok, mut failed) = (0, 0);
    for round in 0..16u64 {
        update(&db, round);
        let state = std::fs::read(&db).unwrap();
        let plan = random_plan(&mut rng);
        let plan_seed = plan.seed();
        faulty.proxy.set_plan(plan);
        let restore_to = env.path("target.db");
        std::fs::write(&restore_to, b"the old data").unwrap();
        let job: Vec<&str> = match round % 4 {
            0 | 1 => vec!["backup", &src],
            2 => vec![
                "forget",
                "--keep-last",
                "3",
                "--prune",
                "--repack-below",
                "0.8",
            ],
            _ => vec!["restore", "latest", "--force", "--to", "target.db"],
        };
        let (code, _, stderr) = faulty.run(&job);
        if code == 0 {
            ok += 1;
            if job[0] == "restore" {
                let latest: Value = env.json(&["show", "latest"]);
                let id = latest["id"].as_str().unwrap();
                assert!(
                    std::fs::read(&restore_to).unwrap() == copies[id],
                    "round {round}: the restored file is whole (seed {plan_seed})"
                );
            }
        } else {
            failed += 1;
            clean_failure(&job, code, &stderr, plan_seed);
            if job[0] == "restore" {
                assert_eq!(
                    std::fs::read(&restore_to).unwrap(),
                    b"the old data",
                    "round {round}: a failed restore leaves the target as it was (seed {plan_seed})"
                );
            }
        }
        // The store healthy again: everything listed restores, the repository checks
        // clean, and snapshots a failed backup committed anyway (its answer lost) are whole.
        let ids = verify_all(&env, &copies, &state);
        for id in ids {
            copies.entry(id).or_insert_with(|| state.clone());
        }
        // The job runs to the end once the store behaves.
        if job[0] != "restore" {
            env.cmd().args(&job).arg("--json").assert().success();
            for id in verify_all(&env, &copies, &state) {
                copies.entry(id).or_insert_with(|| state.clone());
            }
        }
    }
    let stats = faulty.proxy.stats();
    eprintln!(
        "{ok} jobs completed, {failed} failed cleanly; {} requests, {} faults injected",
        stats.requests,
        stats.injected().count()
    );
    assert!(stats.injected().count() > 10, "faults were injected");
}

#[test]
fn a_check_through_a_failing_store_reports_no_damage() {
    let Some(env) = s3_env() else { return };
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let faulty = Faulty {
        env: &env,
        proxy: FaultProxy::start(&upstream),
    };
    env.init();
    let (_db, src) = hotel_db(&env);
    env.json(&["backup", &src]);
    // Every pack download is cut short: the store is failing, the data is not damaged.
    faulty.proxy.set_plan(
        Plan::seeded(1).rule(Rule::new(Fault::TruncateBody).method("GET").path("/data/")),
    );
    let (code, _, stderr) = faulty.run(&["check", "--read-data"]);
    clean_failure(&["check"], code, &stderr, 1);
    assert!(
        !stderr.contains("damaged") && !stderr.contains("another copy"),
        "a failing store is not damage: {stderr}"
    );
    assert!(
        env.storage().list("damage/").unwrap().is_empty(),
        "no damage recorded"
    );
    // A stalled answer is abandoned and retried, not the end of the job.
    faulty.proxy.set_plan(
        Plan::seeded(2).rule(
            Rule::new(Fault::StallForever)
                .method("GET")
                .path("/config")
                .nth(1),
        ),
    );
    let (code, _, stderr) = faulty.run(&["list"]);
    assert_eq!(code, 0, "{stderr}");
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check:#}");
}

//! Storage faults: every job, through a proxy in front of the object store that answers
//! 503s, drops connections before and during answers, stalls and truncates bodies, either
//! completes or fails cleanly (one sentence, exit 1); and afterwards, with the store healthy
//! again, every listed snapshot restores byte-identical and `check --read-data` passes.
//!
//! On every object store `./scripts/test` starts (Garage, Azurite, fake-gcs-server), one test
//! per store so they run side by side: the proxy relays bytes untouched, which all three
//! allow (S3's SigV4 signs the `Host` the proxy passes on as the client sent it, Azure's
//! Shared Key signs no host, and the GCS emulator takes unsigned requests).

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use strongroom::hotel::Rng;
use strongroom_testkit::s3proxy::{Fault, FaultProxy, Plan, Rule};

mod common;
use common::{Env, Store};

/// A repository on a store and a fault proxy in front of its server.
struct Faulty {
    env: Env,
    proxy: FaultProxy,
    /// The variable strongroom reads the endpoint from, and the endpoint through the proxy.
    endpoint: (&'static str, String),
}

impl Faulty {
    /// A fresh repository on `store` behind a new proxy, or `None` (with a note) when that
    /// store's server is not up.
    fn on(store: Store) -> Option<Faulty> {
        let env = store.env()?;
        let (var, upstream) = store
            .endpoint()
            .unwrap_or_else(|| panic!("{} has no endpoint variable set", store.name()));
        let proxy = FaultProxy::start(&upstream);
        // The proxy's address in place of the server's; a path (Azurite's account) stays.
        let rest = upstream.trim_start_matches("http://");
        let path = rest.find('/').map_or("", |i| &rest[i..]);
        let through = format!("{}{path}", proxy.url());
        Some(Faulty {
            env,
            proxy,
            endpoint: (var, through),
        })
    }

    /// The part of a request's path that names objects under `key` (`data/`, `config`):
    /// GCS's JSON API sends an object's name as one path segment, its slashes escaped.
    fn objects(&self, key: &str) -> String {
        let part = format!("/{key}");
        match self.env.store() {
            Store::Gcs => part.replace('/', "%2F"),
            _ => part,
        }
    }

    /// Runs strongroom through the proxy; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .env
            .std_cmd()
            .args(args)
            .env(self.endpoint.0, &self.endpoint.1)
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

#[test]
fn jobs_through_a_faulty_store_complete_or_fail_cleanly_s3() {
    jobs_through_a_faulty_store(Store::S3);
}

#[test]
fn jobs_through_a_faulty_store_complete_or_fail_cleanly_azure() {
    jobs_through_a_faulty_store(Store::Azure);
}

#[test]
fn jobs_through_a_faulty_store_complete_or_fail_cleanly_gcs() {
    jobs_through_a_faulty_store(Store::Gcs);
}

fn jobs_through_a_faulty_store(store: Store) {
    let Some(faulty) = Faulty::on(store) else {
        return;
    };
    let env = &faulty.env;
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    env.init();
    let (db, src) = env.hotel_db(3000);
    let mut copies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (mut ok, mut failed) = (0, 0);
    for round in 0..16u64 {
        common::update_bookings(&db, 0.3, round);
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
        let ids = verify_all(env, &copies, &state);
        for id in ids {
            copies.entry(id).or_insert_with(|| state.clone());
        }
        // The job runs to the end once the store behaves.
        if job[0] != "restore" {
            env.cmd().args(&job).arg("--json").assert().success();
            for id in verify_all(env, &copies, &state) {
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
fn a_check_through_a_failing_store_reports_no_damage_s3() {
    a_check_through_a_failing_store(Store::S3);
}

#[test]
fn a_check_through_a_failing_store_reports_no_damage_azure() {
    a_check_through_a_failing_store(Store::Azure);
}

#[test]
fn a_check_through_a_failing_store_reports_no_damage_gcs() {
    a_check_through_a_failing_store(Store::Gcs);
}

fn a_check_through_a_failing_store(store: Store) {
    let Some(faulty) = Faulty::on(store) else {
        return;
    };
    let env = &faulty.env;
    env.init();
    let (_db, src) = env.hotel_db(3000);
    env.json(&["backup", &src]);
    // Every pack download is cut short: the store is failing, the data is not damaged.
    faulty.proxy.set_plan(
        Plan::seeded(1).rule(
            Rule::new(Fault::TruncateBody)
                .method("GET")
                .path(&faulty.objects("data/")),
        ),
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
                .path(&faulty.objects("config"))
                .nth(1),
        ),
    );
    let (code, _, stderr) = faulty.run(&["list"]);
    assert_eq!(code, 0, "{stderr}");
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check:#}");
}

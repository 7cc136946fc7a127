//! Job-failure alerts through the real binary: a failed job reaches the `[[alerts]]` targets
//! (a real HTTP receiver, a shell command) with its kind and a hint, a dead target never
//! changes the job's exit code, and `wal push` failing again and again alerts once per
//! window; `status` hands its state changes to the same delivery. Alerts are about the job,
//! not the store, so one local repository suffices.
//! No assertion depends on how long anything took.

mod common;

use common::Env;
use serde_json::Value;
use std::time::Duration;
use strongroom_testkit::webhook::{Answer, Receiver, unreachable_url};

const LONG: Duration = Duration::from_secs(120);

/// A local repository, initialized, with `config` as ./strongroom.toml (the commands run
/// there). Retries pause 10 ms, not 1 s.
fn env_with(config: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let env = Env { dir, repo };
    env.init();
    std::fs::write(env.path("strongroom.toml"), config).unwrap();
    env
}

fn cmd(env: &Env) -> assert_cmd::Command {
    let mut c = env.cmd();
    c.env("STRONGROOM_ALERT_BACKOFF_MS", "10")
        .env_remove("STRONGROOM_ALERT_REPEAT");
    c
}

fn webhook(url: &str) -> String {
    // A generous timeout: a slow answer on a loaded machine must not become a second request.
    format!("[[alerts]]\nwebhook = \"{url}\"\ntimeout = \"60s\"\n")
}

/// Runs `args` with `--json`; it must exit 1. Returns the error document and stderr.
fn fails(c: &mut assert_cmd::Command, args: &[&str]) -> (Value, String) {
    let out = c.args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn body(r: &strongroom_testkit::webhook::Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn a_failed_backup_alerts_the_webhook_with_its_kind_and_a_hint() {
    let rx = Receiver::start();
    let env = env_with(&webhook(&rx.url()));
    let (doc, _) = fails(&mut cmd(&env), &["backup", "sqlite:missing.db"]);
    let kind = doc["error"]["kind"].as_str().unwrap();
    assert_eq!(kind, "source_failed");
    // Delivery ends before the process does: what arrived is all there is.
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let a = body(&got[0]);
    assert_eq!(a["event"], "job_failed");
    assert_eq!(a["level"], "critical");
    assert_eq!(a["job"], "backup");
    assert_eq!(a["error_kind"], kind);
    assert_eq!(a["error"], doc["error"]["message"]);
    assert!(a["source"].as_str().unwrap().contains("missing.db"), "{a}");
    assert!(a["hint"].as_str().unwrap().contains("database"), "{a}");
    assert_eq!(a["repository"], env.repo.as_str());
    assert!(!a["hostname"].as_str().unwrap().is_empty());

    // A job that succeeds alerts no one.
    let db = env.path("hotel.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    cmd(&env)
        .args(["backup", &format!("sqlite:{}", db.display())])
        .assert()
        .success();
    assert_eq!(rx.requests().len(), 1);
}

#[test]
fn a_webhook_answering_500_is_retried_and_the_exit_code_stays_the_jobs() {
    let rx = Receiver::answering(&[Answer::Status(500)], Answer::Status(200));
    let env = env_with(&webhook(&rx.url()));
    fails(&mut cmd(&env), &["restore", "latest", "--to", "out.db"]);
    let got = rx.requests();
    assert_eq!(got.len(), 2, "one 500, then delivered: {got:?}");
    assert_eq!(got[0].body, got[1].body);
    let a = body(&got[1]);
    assert_eq!(a["job"], "restore");
    assert!(!a["error_kind"].as_str().unwrap().is_empty());
}

#[test]
fn an_unreachable_webhook_is_a_warning_and_the_other_target_still_hears() {
    let dead = unreachable_url().replace("/hook", "/services/T0/B0/SECRETPATH");
    let config = format!(
        "{}[[alerts]]\ncommand = \"cat > alert.json\"\n",
        webhook(&dead)
    );
    let env = env_with(&config);
    let (doc, stderr) = fails(&mut cmd(&env), &["backup", "sqlite:missing.db"]);
    assert_eq!(doc["error"]["kind"], "source_failed");
    assert!(
        stderr.contains("strongroom: source database") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARN") && stderr.contains("alert 1: webhook http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not delivered after 3 attempts"),
        "{stderr}"
    );
    assert!(!stderr.contains("SECRETPATH"), "{stderr}");
    let a: Value = serde_json::from_slice(&std::fs::read(env.path("alert.json")).unwrap()).unwrap();
    assert_eq!(a["job"], "backup");
    assert_eq!(a["error_kind"], "source_failed");

    // Without --json the exit code is 1 too, and nothing else changes.
    let out = cmd(&env)
        .args(["check", "--repo", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn wal_push_failing_again_and_again_alerts_once_per_window() {
    let rx = Receiver::start();
    let env = env_with(&webhook(&rx.url()));
    let push = |at: &str| {
        let out = env
            .at(at)
            .env("STRONGROOM_ALERT_BACKOFF_MS", "10")
            .env_remove("STRONGROOM_ALERT_REPEAT")
            .args(["wal", "push", "pg_wal/000000010000000000000001"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Not a data directory: the push fails the same way each time.
    push("2026-12-01 10:00:00");
    assert_eq!(rx.requests().len(), 1);
    push("2026-12-01 10:00:05");
    push("2026-12-01 10:30:00");
    assert_eq!(
        rx.requests().len(),
        1,
        "repeats within the hour are held back"
    );
    push("2026-12-01 11:00:01");
    let got = rx.wait_for(2, LONG);
    assert_eq!(got.len(), 2);
    let (first, second) = (body(&got[0]), body(&got[1]));
    assert_eq!(first["job"], "wal push");
    assert_eq!(first["error_kind"], second["error_kind"]);
    let summary = second["summary"].as_str().unwrap();
    assert!(
        summary.contains("(2 more failures like it since the last alert were not sent)"),
        "{summary}"
    );

    // STRONGROOM_ALERT_REPEAT=0s alerts every failure.
    for _ in 0..2 {
        cmd(&env)
            .env("STRONGROOM_ALERT_REPEAT", "0s")
            .args(["wal", "push", "pg_wal/000000010000000000000001"])
            .assert()
            .code(1);
    }
    assert_eq!(rx.requests().len(), 4);
}

#[test]
fn wal_push_without_a_config_file_has_no_one_to_tell() {
    let env = env_with("");
    std::fs::remove_file(env.path("strongroom.toml")).unwrap();
    let out = cmd(&env)
        .args(["wal", "push", "pg_wal/000000010000000000000001"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("alert"), "{stderr}");
}

#[test]
fn a_command_target_reads_the_alert_on_stdin() {
    let env = env_with(
        "[[alerts]]\ncommand = \"cat > alert.json; echo $STRONGROOM_ALERT_EVENT > event.txt\"\n",
    );
    let (doc, _) = fails(&mut cmd(&env), &["verify", "latest"]);
    let a: Value = serde_json::from_slice(&std::fs::read(env.path("alert.json")).unwrap()).unwrap();
    assert_eq!(a["event"], "job_failed");
    assert_eq!(a["job"], "verify");
    assert_eq!(a["error_kind"], doc["error"]["kind"]);
    assert!(!a["hint"].as_str().unwrap().is_empty());
    assert_eq!(
        std::fs::read_to_string(env.path("event.txt"))
            .unwrap()
            .trim(),
        "job_failed"
    );
}

/// A repository with one backed-up SQLite source `hotel` and `alerts` as the config's
/// `[[alerts]]`: `status` then finds it at warning (no verify, check or drill yet).
fn hotel_with(alerts: &str) -> Env {
    let env = env_with("");
    let db = env.path("hotel.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE bookings(id); INSERT INTO bookings VALUES (1);")
        .unwrap();
    let config = format!(
        "[sources.hotel]\nurl = \"sqlite:{}\"\n{alerts}",
        db.display()
    );
    std::fs::write(env.path("strongroom.toml"), config).unwrap();
    cmd(&env).args(["backup", "hotel"]).assert().success();
    env
}

#[test]
fn status_alerts_a_state_change_once_through_the_configured_targets() {
    let rx = Receiver::start();
    let critical_only = Receiver::start();
    let env = hotel_with(&format!(
        "{}{}min_level = \"critical\"\n",
        webhook(&rx.url()),
        webhook(&critical_only.url())
    ));
    let out = cmd(&env).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("alert sent: hotel is warning (first alert about it)"),
        "{stdout}"
    );
    cmd(&env).arg("status").assert().code(1);
    let got = rx.requests();
    assert_eq!(got.len(), 1, "a change is alerted once: {got:?}");
    let a = body(&got[0]);
    assert_eq!(a["event"], "state_changed");
    assert_eq!(a["source"], "hotel");
    assert_eq!(a["level"], "warning");
    // There was no earlier alert, so no earlier level is claimed.
    assert!(a["previous_level"].is_null(), "{a}");
    assert!(!a["checks"].as_array().unwrap().is_empty(), "{a}");
    assert!(critical_only.requests().is_empty(), "below its min_level");
}

#[test]
fn status_tries_again_when_no_target_took_the_alert() {
    let env = hotel_with(&webhook(&unreachable_url()));
    let out = cmd(&env).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not delivered after 3 attempts"),
        "{stderr}"
    );
    // The target is back: the change not yet told is told now.
    let rx = Receiver::start();
    let config = std::fs::read_to_string(env.path("strongroom.toml")).unwrap();
    let live = config.replace(
        &config[config.find("[[alerts]]").unwrap()..],
        &webhook(&rx.url()),
    );
    std::fs::write(env.path("strongroom.toml"), live).unwrap();
    cmd(&env).arg("status").assert().code(1);
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(body(&got[0])["event"], "state_changed");
}

#[test]
fn status_without_alert_targets_claims_no_alert() {
    let env = hotel_with("");
    let out = cmd(&env).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("alert"), "nobody was told: {stdout}");
    let out = cmd(&env).args(["status", "--json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["alerts"], serde_json::json!([]), "{doc:#}");
}

/// `wal push` of a segment that is not there, under `faketime` from `at`; it must exit 1.
fn push_at(env: &Env, at: &str, extra: &[&str]) -> String {
    let out = env
        .at(at)
        .env("STRONGROOM_ALERT_BACKOFF_MS", "10")
        .env_remove("STRONGROOM_ALERT_REPEAT")
        .args(["wal", "push", "pg_wal/000000010000000000000001"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn an_alert_not_delivered_is_not_counted_as_sent() {
    // The command cannot run ("Permission denied"): every attempt fails.
    let env = env_with("[[alerts]]\ncommand = \"./notify\"\n");
    std::fs::write(env.path("notify"), "#!/bin/sh\ncat > alert.json\n").unwrap();
    let stderr = push_at(&env, "2026-12-01 10:00:00", &[]);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!env.path("alert.json").exists());
    // The target works again: the next failure is told, with the one that went untold.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.path("notify"), std::fs::Permissions::from_mode(0o755)).unwrap();
    push_at(&env, "2026-12-01 10:00:05", &[]);
    let a: Value = serde_json::from_slice(&std::fs::read(env.path("alert.json")).unwrap()).unwrap();
    assert_eq!(a["job"], "wal push");
    let summary = a["summary"].as_str().unwrap();
    assert!(
        summary.contains("(1 more failure like it since the last alert was not sent)"),
        "{summary}"
    );
    // Delivered now: repeats within the window are held back.
    std::fs::remove_file(env.path("alert.json")).unwrap();
    push_at(&env, "2026-12-01 10:00:10", &[]);
    assert!(!env.path("alert.json").exists());
}

#[test]
fn repeats_are_held_back_per_repository_and_a_clock_gone_back_holds_nothing() {
    let rx = Receiver::start();
    let env = env_with(&webhook(&rx.url()));
    let other = env.path("other-repo").display().to_string();
    cmd(&env)
        .args(["init", "--repo", &other])
        .assert()
        .success();
    push_at(&env, "2026-12-01 10:00:00", &[]);
    assert_eq!(rx.requests().len(), 1);
    // The same failure in another repository is another failure.
    push_at(&env, "2026-12-01 10:00:05", &["--repo", &other]);
    assert_eq!(rx.requests().len(), 2, "another repository alerts");
    push_at(&env, "2026-12-01 10:00:10", &[]);
    assert_eq!(rx.requests().len(), 2, "the same one is held back");
    // The clock goes back an hour: the last alert lies "in the future" and holds nothing.
    push_at(&env, "2026-12-01 09:00:00", &[]);
    assert_eq!(
        rx.requests().len(),
        3,
        "a clock gone back holds nothing back"
    );
}

/// Runs `args` with `--json`; it must exit 1. Returns the error kind.
fn kind_of(env: &Env, args: &[&str]) -> String {
    let (doc, _) = fails(&mut cmd(env), args);
    doc["error"]["kind"].as_str().unwrap().to_string()
}

#[test]
fn operator_mistakes_are_not_job_failures() {
    let rx = Receiver::start();
    let env = hotel_with(&webhook(&rx.url()));
    let config = std::fs::read_to_string(env.path("strongroom.toml")).unwrap();
    // A restore over the source's own database without --force.
    assert_eq!(
        kind_of(&env, &["restore", "latest", "--to", "hotel.db"]),
        "target_refused"
    );
    // A backup without a source when several are configured.
    let two = config.replace(
        "[[alerts]]",
        "[sources.other]\nurl = \"sqlite:other.db\"\n[[alerts]]",
    );
    std::fs::write(env.path("strongroom.toml"), &two).unwrap();
    assert_eq!(kind_of(&env, &["backup"]), "bad_input");
    std::fs::write(env.path("strongroom.toml"), &config).unwrap();
    assert_eq!(rx.requests().len(), 0, "operator mistakes alert no one");
    let failed = env.json(&["journal", "--failed"]);
    assert_eq!(failed, serde_json::json!([]), "{failed:#}");
    // A side restore that fails (its directory is a file) is journaled, alerted, and says
    // nothing of the source's health.
    std::fs::write(env.path("not-a-dir"), "").unwrap();
    let kind = kind_of(&env, &["restore", "latest", "--to", "not-a-dir/copy.db"]);
    assert!(
        !["bad_input", "target_refused"].contains(&kind.as_str()),
        "{kind}"
    );
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(
        env.json(&["journal", "--failed"]).as_array().unwrap().len(),
        1
    );
    let out = cmd(&env)
        .args(["status", "--json", "--no-alerts"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = doc["sources"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "jobs")
        .unwrap()
        .clone();
    assert_eq!(jobs["level"], "ok", "{jobs}");
}

#[test]
fn a_failing_wal_push_alert_names_the_source_and_the_segment() {
    let rx = Receiver::start();
    let env = env_with(&format!(
        "[sources.prod]\nurl = \"postgres://app@127.0.0.1:1/hotel\"\n{}",
        webhook(&rx.url())
    ));
    // Not run in the data directory: archive_command is wrong, and PostgreSQL is the only
    // one to see the sentence.
    push_at(&env, "2026-12-01 10:00:00", &[]);
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let a = body(&got[0]);
    assert_eq!(a["source"], "prod", "{a}");
    assert_eq!(a["segment"], "000000010000000000000001", "{a}");
    let summary = a["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("wal push of prod (segment 000000010000000000000001) failed"),
        "{summary}"
    );
    assert!(
        a["hint"].as_str().unwrap().contains("archive_command"),
        "{a}"
    );
    // The command status suggests finds it, with or without the source.
    let all = env.json(&["journal", "--job", "wal push", "--failed"]);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all:#}");
    assert_eq!(all[0]["source"], "prod");
    let of_prod = env.json(&[
        "journal", "--source", "prod", "--job", "wal push", "--failed",
    ]);
    assert_eq!(of_prod, all);
}

//! The `[[alerts]]` formats beyond the JSON document, through the real binary: Healthchecks
//! pings around real jobs, an ntfy topic and an e-mail command hearing real failures and
//! state changes. Receivers are the testkit's loopback HTTP server and a shell command; the
//! e-mail is read back by Python's `email` package. No assertion depends on how long
//! anything took.

mod common;

use common::Env;
use serde_json::Value;
use std::time::Duration;
use strongroom_testkit::webhook::{Received, Receiver};

const LONG: Duration = Duration::from_secs(120);

/// A local repository, initialized, with a SQLite source `hotel` (one table, one row) and
/// `alerts` after it in ./strongroom.toml.
fn hotel_with(alerts: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    let env = Env { dir, repo };
    env.init();
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
    env
}

fn cmd(env: &Env) -> assert_cmd::Command {
    let mut c = env.cmd();
    c.env("STRONGROOM_ALERT_BACKOFF_MS", "10")
        .env_remove("STRONGROOM_ALERT_REPEAT");
    c
}

/// A target of `format` at `url`, with a generous timeout (a slow answer on a loaded machine
/// must not become a second request), and `more` keys.
fn target(url: &str, format: &str, more: &str) -> String {
    format!("[[alerts]]\nwebhook = \"{url}\"\nformat = \"{format}\"\ntimeout = \"60s\"\n{more}")
}

/// Runs `args` with `--json`; it must exit 1. Returns the error document.
fn fails(env: &Env, args: &[&str]) -> Value {
    let out = cmd(env).args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The path and the `rid` of a ping's request target.
fn path_and_rid(r: &Received) -> (String, String) {
    let (path, query) = r.target.split_once('?').expect("a query");
    let rid = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("rid="))
        .expect("a rid");
    (path.to_string(), rid.to_string())
}

/// The `key: value` line of a ping body.
fn field(body: &str, key: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(str::to_string)
}

#[test]
fn a_backup_pings_start_then_success_and_a_failed_one_start_then_fail() {
    let hc = Receiver::start();
    let hook = Receiver::start();
    let env = hotel_with(&format!(
        "{}{}",
        target(&hc.url_with("/ping/0b6b9e1a"), "healthchecks", ""),
        target(&hook.url(), "json", "")
    ));
    cmd(&env).args(["backup", "hotel"]).assert().success();
    let got = hc.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    let (start, rid) = path_and_rid(&got[0]);
    let (end, end_rid) = path_and_rid(&got[1]);
    assert_eq!(
        (start.as_str(), end.as_str()),
        ("/ping/0b6b9e1a/start", "/ping/0b6b9e1a")
    );
    assert_eq!(rid, end_rid, "one run, one id");
    let body = got[1].body_text();
    assert_eq!(field(&body, "job").as_deref(), Some("backup"), "{body}");
    assert_eq!(field(&body, "source").as_deref(), Some("hotel"), "{body}");
    assert_eq!(field(&body, "run_id"), Some(rid.clone()), "{body}");
    let secs: f64 = field(&body, "duration_seconds").unwrap().parse().unwrap();
    assert!(secs >= 0.0, "{body}");
    assert!(body.lines().next().unwrap().contains("succeeded"), "{body}");
    assert!(hook.requests().is_empty(), "a success alerts no one");

    // A failed backup: start, then fail with the sentence the user saw; the JSON target
    // hears the failure as an alert, and the healthchecks target hears no alert.
    let doc = fails(&env, &["backup", "sqlite:missing.db"]);
    let got = hc.requests();
    assert_eq!(got.len(), 4, "{got:?}");
    let (start, rid2) = path_and_rid(&got[2]);
    let (end, end_rid) = path_and_rid(&got[3]);
    assert_eq!(
        (start.as_str(), end.as_str()),
        ("/ping/0b6b9e1a/start", "/ping/0b6b9e1a/fail")
    );
    assert_eq!(rid2, end_rid);
    assert_ne!(rid2, rid, "each run its own id");
    let body = got[3].body_text();
    assert_eq!(field(&body, "error_kind").as_deref(), Some("source_failed"));
    assert_eq!(
        field(&body, "error"),
        doc["error"]["message"].as_str().map(str::to_string)
    );
    assert!(field(&body, "hint").unwrap().contains("database"), "{body}");
    assert!(field(&body, "duration_seconds").is_some(), "{body}");
    let alerts = hook.requests();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a: Value = serde_json::from_slice(&alerts[0].body).unwrap();
    assert_eq!(a["event"], "job_failed");

    // `wal push` does not ping by default (it runs once per segment); it still alerts.
    fails(&env, &["wal", "push", "pg_wal/000000010000000000000001"]);
    assert_eq!(hc.requests().len(), 4);
    assert_eq!(hook.wait_for(2, LONG).len(), 2);
}

#[test]
fn a_healthchecks_target_hears_only_the_jobs_it_lists_and_status_by_its_exit_code() {
    let hc = Receiver::start();
    let env = hotel_with(&target(
        &hc.url_with("/ping/key/hotel-status?create=1"),
        "healthchecks",
        "jobs = [\"status\"]\n",
    ));
    cmd(&env).args(["backup", "hotel"]).assert().success();
    assert!(hc.requests().is_empty(), "backup is not listed");
    // No verify, check or drill yet: status needs attention and exits 1; the run fails.
    let out = cmd(&env).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("alert"),
        "no target hears alerts: {stdout}"
    );
    let got = hc.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0]
            .target
            .starts_with("/ping/key/hotel-status/start?create=1&rid="),
        "{}",
        got[0].target
    );
    assert!(
        got[1]
            .target
            .starts_with("/ping/key/hotel-status/fail?create=1&rid="),
        "{}",
        got[1].target
    );
    let body = got[1].body_text();
    assert!(
        field(&body, "error").unwrap().contains("needs attention"),
        "{body}"
    );
}

#[test]
fn an_ntfy_topic_hears_a_failed_job_and_a_state_change() {
    let rx = Receiver::start();
    let env = hotel_with(&target(&rx.url_with("/hotel-backups"), "ntfy", ""));
    let doc = fails(&env, &["backup", "sqlite:missing.db"]);
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(r.target, "/hotel-backups");
    assert_eq!(
        r.header("title"),
        Some("strongroom: backup of sqlite:missing.db failed")
    );
    assert_eq!(r.header("priority"), Some("urgent"));
    assert_eq!(r.header("tags"), Some("rotating_light"));
    let text = r.body_text();
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(text.lines().next().unwrap().ends_with(message), "{text}");
    assert!(text.contains("What to do: "), "{text}");

    cmd(&env).args(["backup", "hotel"]).assert().success();
    cmd(&env).arg("status").assert().code(1);
    let got = rx.wait_for(2, LONG);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].header("title"), Some("strongroom: hotel warning"));
    assert_eq!(got[1].header("priority"), Some("high"));
    assert_eq!(got[1].header("tags"), Some("warning"));
    assert!(
        got[1].body_text().starts_with("hotel is warning"),
        "{}",
        got[1].body_text()
    );
}

/// Python's reading of the message at `path`: decoded headers and the body.
fn parse_mail(path: &std::path::Path) -> Value {
    let script = r#"
import email, email.policy, email.utils, json, sys
m = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)
print(json.dumps({
    'from': str(m['from']), 'to': str(m['to']), 'subject': str(m['subject']),
    'date': email.utils.parsedate_to_datetime(m['date']).isoformat(),
    'content_type': m.get_content_type(), 'charset': m.get_content_charset(), 'defects': [str(d) for d in m.defects],
    'body': m.get_content(),
}))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 (with its standard `email` package) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_email_command_gets_a_message_about_a_failed_job() {
    let env = hotel_with(
        "[[alerts]]\ncommand = \"cat > mail.txt\"\nformat = \"email\"\nemail_to = \"ops@hotel.example\"\nemail_from = \"backups@hotel.example\"\n",
    );
    let doc = fails(&env, &["verify", "latest", "--source", "hotel"]);
    let m = parse_mail(&env.path("mail.txt"));
    assert_eq!(m["defects"], serde_json::json!([]), "{m:#}");
    assert_eq!(m["from"], "backups@hotel.example");
    assert_eq!(m["to"], "ops@hotel.example");
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[strongroom] CRITICAL hotel: verify failed on "),
        "{subject}"
    );
    assert_eq!(
        (&m["content_type"], &m["charset"]),
        (&"text/plain".into(), &"utf-8".into())
    );
    assert!(!m["date"].as_str().unwrap().is_empty());
    let body = m["body"].as_str().unwrap();
    let kind = doc["error"]["kind"].as_str().unwrap();
    assert!(body.contains(&format!("\nError kind: {kind}\n")), "{body}");
    assert!(body.contains("\nWhat to do: "), "{body}");
    assert!(body.contains("\nJob: verify\n"), "{body}");
}

#[test]
fn a_format_on_the_wrong_kind_of_target_is_refused_naming_the_key() {
    let env = hotel_with("[[alerts]]\nwebhook = \"http://127.0.0.1:9/x\"\nformat = \"email\"\n");
    let out = cmd(&env).args(["backup", "hotel"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alerts[0].format: \"email\" is for a command target"),
        "{stderr}"
    );
}

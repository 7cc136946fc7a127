//! Monitoring end to end: `status`, `journal` and `metrics` of the real binary after real
//! jobs, time moved by Debian's `faketime` (never by sleeping): backups that stop turn a
//! source critical within one interval; anomalies in a source's own history; WAL archiving
//! judged from the archive and from PostgreSQL's own archiver; thousands of journal records
//! read fast and exactly; metrics parsed by Prometheus's own tools.

mod common;

use common::{Env, Store, envs};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// A local environment (faketime-signed requests are refused by S3 servers) with a hotel
/// database configured as source `hotel`.
fn hotel_env(extra_config: &str) -> Env {
    let env = envs().remove(0);
    env.init();
    env.cmd()
        .args(["hotel", "generate", "--bookings", "3000"])
        .arg(env.path("hotel.db"))
        .assert()
        .success();
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"sqlite:{}\"\n{extra_config}",
            env.path("hotel.db").display()
        ),
    )
    .unwrap();
    env
}

/// Runs `args` at faked time `at` (`YYYY-MM-DD HH:MM:SS`); must succeed.
fn run_at(env: &Env, at: &str, args: &[&str]) {
    let out = env.at(at).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} at {at}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `status --json` at faked time `at`: its exit code and document.
fn status_at(env: &Env, at: &str, args: &[&str]) -> (i32, Value) {
    let out: Output = env
        .at(at)
        .args(["status", "--json"])
        .args(args)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), doc)
}

fn check<'a>(doc: &'a Value, source: &str, name: &str) -> &'a Value {
    doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == source)
        .unwrap_or_else(|| panic!("no source {source}: {doc:#}"))["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc:#}"))
}

#[test]
fn backups_that_stop_turn_status_critical_and_alert_within_one_interval_and_a_backup_clears_it() {
    let hook = strongroom_testkit::webhook::Receiver::start();
    let env = hotel_env(&format!(
        "[objectives.checklist]\ndrill = \"off\"\n[[alerts]]\nwebhook = \"{}\"\n",
        hook.url()
    ));
    let alerts = || -> Vec<Value> {
        hook.requests()
            .iter()
            .map(|r| serde_json::from_str(&r.body_text()).unwrap())
            .collect()
    };
    run_at(&env, "2026-11-10 10:00:00", &["backup"]);
    run_at(&env, "2026-11-10 10:05:00", &["verify", "latest"]);
    run_at(&env, "2026-11-10 10:10:00", &["check"]);
    run_at(&env, "2026-11-10 10:15:00", &["forget"]);
    let (code, doc) = status_at(&env, "2026-11-10 11:00:00", &[]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["sources"][0]["level"], "ok");
    for c in doc["sources"][0]["checks"].as_array().unwrap() {
        assert_eq!(c["level"], "ok", "{c}");
    }
    let items = doc["sources"][0]["checklist"].as_array().unwrap();
    assert!(items.iter().all(|i| i["done"] == true), "{items:#?}");
    assert!(
        !items.iter().any(|i| i["period"] == "quarterly"),
        "drill is off"
    );
    assert!(alerts().is_empty(), "all is well: nothing to say");
    // A day later the backup is due, not yet late (the grace is a twelfth of the interval).
    let (code, _) = status_at(&env, "2026-11-11 11:30:00", &[]);
    assert_eq!(code, 0);
    assert!(alerts().is_empty());
    // Backups stopped: 26 hours and a half after the last one (within one interval of the
    // missed backup, due at 10:00) status is critical, exits 1, and the alert goes out.
    let (code, doc) = status_at(&env, "2026-11-11 12:30:00", &[]);
    assert_eq!(code, 1);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["sources"][0]["level"], "critical");
    let c = check(&doc, "hotel", "backup.full");
    assert_eq!(c["level"], "critical");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("backups have stopped"),
        "{c}"
    );
    let sent = alerts();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["event"], "state_changed");
    assert_eq!(sent[0]["source"], "hotel");
    assert_eq!(sent[0]["level"], "critical");
    assert_eq!(sent[0]["previous_level"], "ok");
    assert!(
        sent[0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "backup.full"),
        "{:#}",
        sent[0]
    );
    assert_eq!(doc["alerts"][0]["delivered"], true);
    // Still critical an hour later: no second alert.
    let out = env
        .at("2026-11-11 13:30:00")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hotel  CRITICAL"), "{text}");
    assert!(
        text.contains("[ ] daily: Verify automated backup completed"),
        "{text}"
    );
    assert_eq!(alerts().len(), 1, "a state change alerts once");
    // The next backup clears it, and the recovery is announced.
    run_at(&env, "2026-11-11 13:40:00", &["backup"]);
    let (code, doc) = status_at(&env, "2026-11-11 13:45:00", &[]);
    assert_eq!(code, 0, "{doc:#}");
    let sent = alerts();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[1]["event"], "recovered");
    assert_eq!(sent[1]["level"], "ok");
    assert_eq!(sent[1]["previous_level"], "critical");
}

#[test]
fn failed_verify_check_and_backup_jobs_show_in_status() {
    let env = hotel_env("[objectives.checklist]\ndrill = \"off\"\n");
    run_at(&env, "2026-11-10 10:00:00", &["backup"]);
    run_at(&env, "2026-11-10 10:05:00", &["verify", "latest"]);
    run_at(&env, "2026-11-10 10:10:00", &["check", "--read-data"]);
    run_at(&env, "2026-11-10 10:15:00", &["forget"]);
    let (code, _) = status_at(&env, "2026-11-10 10:20:00", &["--no-alerts"]);
    assert_eq!(code, 0);
    // A damaged pack: verify and check fail, and say so in status as critical.
    let storage = env.storage();
    let pack = storage.list("data/").unwrap().remove(0).key;
    let mut bytes = storage.get(&pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    storage.put(&pack, &bytes).unwrap();
    let out = env
        .at("2026-11-10 11:00:00")
        .args(["verify", "latest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = env
        .at("2026-11-10 11:05:00")
        .args(["check", "--read-data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A backup whose source went away.
    std::fs::rename(env.path("hotel.db"), env.path("moved.db")).unwrap();
    let out = env
        .at("2026-11-10 11:10:00")
        .arg("backup")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (code, doc) = status_at(&env, "2026-11-10 11:15:00", &["--no-alerts"]);
    assert_eq!(code, 1);
    assert_eq!(doc["sources"][0]["level"], "critical");
    let verify = check(&doc, "hotel", "verify");
    assert_eq!(verify["level"], "critical", "{verify}");
    assert!(
        verify["detail"].as_str().unwrap().contains("failed"),
        "{verify}"
    );
    assert_eq!(check(&doc, "hotel", "check")["level"], "critical");
    let jobs = check(&doc, "hotel", "jobs");
    assert_eq!(jobs["level"], "warning", "{jobs}");
    assert!(
        jobs["detail"].as_str().unwrap().contains("backup"),
        "{jobs}"
    );
    let failed = env.json(&["journal", "--failed"]);
    let jobs: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["verify", "check", "backup"]);
    assert_eq!(failed[2]["error_kind"], "source_failed");
    assert_eq!(failed[0]["error_kind"], "damaged_data");
}

#[test]
fn anomalies_in_the_source_history_are_warnings() {
    let env = hotel_env("[objectives.checklist]\ndrill = \"off\"\n");
    // Rollback-journal mode, so a writer's lock makes a backup wait (the slow job below).
    let db = env.path("hotel.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "journal_mode", "DELETE")
        .unwrap();
    for day in 1..=4 {
        env.cmd()
            .args(["hotel", "update", "--fraction", "0.01"])
            .arg(&db)
            .assert()
            .success();
        run_at(&env, &format!("2026-11-0{day} 02:00:00"), &["backup"]);
    }
    run_at(&env, "2026-11-04 03:00:00", &["verify", "latest"]);
    run_at(&env, "2026-11-04 03:00:00", &["check"]);
    run_at(&env, "2026-11-04 03:00:00", &["forget"]);
    let (code, doc) = status_at(&env, "2026-11-04 04:00:00", &["--no-alerts"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(check(&doc, "hotel", "anomaly.size.full")["level"], "ok");
    // Three quarters of the bookings deleted, the file shrunk; the backup waits 7 s for a
    // writer holding the database.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("DELETE FROM bookings WHERE id % 4 != 0; VACUUM;")
            .unwrap();
    }
    let holder = {
        let db = db.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch("BEGIN EXCLUSIVE; UPDATE users SET id = id WHERE id = 1;")
                .unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_secs(7));
            c.execute_batch("COMMIT").unwrap();
        });
        rx.recv().unwrap();
        h
    };
    run_at(&env, "2026-11-05 02:00:00", &["backup"]);
    holder.join().unwrap();
    let (code, doc) = status_at(&env, "2026-11-05 03:00:00", &["--no-alerts"]);
    assert_eq!(code, 1, "{doc:#}");
    // Three quarters of a table gone is data loss: critical.
    assert_eq!(doc["sources"][0]["level"], "critical");
    let rows = check(&doc, "hotel", "anomaly.rows.full");
    assert_eq!(rows["level"], "critical", "{rows}");
    assert!(
        rows["detail"].as_str().unwrap().contains("bookings"),
        "{rows}"
    );
    assert_eq!(
        check(&doc, "hotel", "anomaly.size.full")["level"],
        "warning"
    );
    assert_eq!(
        check(&doc, "hotel", "anomaly.duration.full")["level"],
        "warning"
    );
    let item = doc["sources"][0]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item"] == "Check backup file size is reasonable")
        .unwrap()
        .clone();
    assert_eq!(item["done"], false);
}

#[test]
fn the_journal_reads_thousands_of_records_exactly_and_prune_folds_them() {
    let env = hotel_env("");
    let repo =
        strongroom::repository::Repository::open(env.storage(), Some(common::PASSWORD.as_bytes()))
            .unwrap();
    let base = jiff::Timestamp::from_second(1_790_000_000).unwrap();
    for i in 0..3000i64 {
        let at = base + jiff::SignedDuration::from_secs(i * 60);
        let job = ["backup", "verify", "wal push"][i as usize % 3];
        let mut r = strongroom::repository::journal::JournalRecord::new(job, at);
        r.finished_at = at;
        r.source = Some("hotel".into());
        if i % 7 == 0 {
            r.ok = false;
            r.error = Some(format!("failure {i}"));
            r.error_kind = Some("storage_unreachable".into());
        }
        repo.journal(&r).unwrap();
    }
    let all = env.json(&["journal"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3000);
    let times: Vec<&str> = all
        .iter()
        .map(|r| r["finished_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    for field in [
        "job",
        "source",
        "snapshot",
        "started_at",
        "finished_at",
        "seconds",
        "ok",
        "error",
        "error_kind",
    ] {
        assert!(all[0].get(field).is_some(), "{field} in {}", all[0]);
    }
    // The second read fetches nothing: the local cache has every record.
    let out = env
        .cmd()
        .args(["-vv", "journal", "--json"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("read 0 of 3000 journal objects"), "{log}");
    // Filters.
    let since = (base + jiff::SignedDuration::from_secs(1500 * 60)).to_string();
    let failed = env.json(&["journal", "--job", "verify", "--failed", "--since", &since]);
    let want = (1500..3000).filter(|i| i % 3 == 1 && i % 7 == 0).count();
    assert_eq!(failed.as_array().unwrap().len(), want);
    // Prune folds the records into a segment; the journal reads the same afterwards, from a
    // cold cache too.
    env.cmd().arg("prune").assert().success();
    let objects = env.storage().list("journal/").unwrap();
    assert!(objects.len() <= 3, "{} journal objects", objects.len());
    // With the cache that still names the 3,000 singles (rewritten, since most of it is
    // stale now), then from no cache at all: the same records.
    let warm = env.json(&["journal"]);
    let warm: Vec<&Value> = warm
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["job"] != "prune")
        .collect();
    assert_eq!(warm.len(), 3000);
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let after = env.json(&["journal", "--since", "2026-01-01 00:00:00"]);
    let after: Vec<&Value> = after
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["job"] != "prune")
        .collect();
    assert_eq!(after.len(), 3000);
    assert_eq!(after[1234], &all[1234]);
}

/// Parses Prometheus text with the Python client's parser; returns (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, Value, f64)> {
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (Debian: python3-prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused the metrics");
    let v: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    v
}

fn have(tool: &str) -> bool {
    Path::new(tool).exists()
}

#[test]
fn metrics_pass_promtool_and_say_what_the_repository_holds() {
    if !have("/usr/bin/promtool") {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool missing: ./scripts/test installs Debian's prometheus package"
        );
        eprintln!("note: promtool missing, metrics test skipped (./scripts/test installs it)");
        return;
    }
    let env = hotel_env("");
    let snap = env.json(&["backup"]);
    env.cmd().args(["verify", "latest"]).assert().success();
    env.cmd().arg("check").assert().success();
    let out = env.cmd().arg("metrics").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Prometheus's own linter and parser.
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(&text);
    assert!(lint.status.success(), "promtool: {}", lint.stderr_text());
    let samples = parse_prometheus(&text);
    let value = |name: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && (l["source"] == "hotel" || l.get("source").is_none()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .2
    };
    let finished: jiff::Timestamp = snap["finished_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (value("strongroom_last_success_timestamp_seconds") - finished.as_second() as f64).abs()
            < 1.0
    );
    assert_eq!(value("strongroom_snapshots"), 1.0);
    assert_eq!(
        value("strongroom_last_snapshot_size_bytes"),
        snap["size"].as_f64().unwrap()
    );
    assert_eq!(value("strongroom_verify_last_ok"), 1.0);
    assert_eq!(value("strongroom_check_last_ok"), 1.0);
    assert_eq!(value("strongroom_objective_rpo_seconds"), 900.0);
    assert!(value("strongroom_repository_size_bytes") > 0.0);
    lint.stdout.clear();
}

/// `output()` with a string on stdin.
trait WithStdin {
    fn output_with_stdin(&mut self, input: &str) -> Output;
}

impl WithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

trait StderrText {
    fn stderr_text(&self) -> String;
}

impl StderrText for Output {
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[test]
fn wal_archiving_is_judged_by_the_archive_and_by_postgresqls_own_archiver() {
    use common::pg::Rig;
    let Some(bindir) = strongroom_testkit::postgres::bindirs().into_iter().next() else {
        panic!("no PostgreSQL server binaries: ./scripts/test installs them");
    };
    // On every object store too: the archive's times come from the store's listing there.
    for env in envs() {
        let remote = env.store() != Store::Local;
        let rig = Rig::new(env, &bindir, true);
        rig.pg.create_database("app", None);
        std::fs::write(
            rig.env.path("strongroom.toml"),
            format!("[sources.pg]\nurl = \"{}\"\n", rig.url()),
        )
        .unwrap();
        let snap = rig.backup();
        assert_eq!(snap["source"], "pg");
        rig.archive_now();
        let (_, doc) = status_at(&rig.env, &now_plus(0), &["--no-alerts"]);
        assert_eq!(
            check(&doc, "pg", "backup.physical")["level"],
            "ok",
            "{doc:#}"
        );
        assert_eq!(check(&doc, "pg", "wal.archive")["level"], "ok", "{doc:#}");
        let archiver = check(&doc, "pg", "wal.archiver");
        assert_eq!(archiver["level"], "ok", "{archiver}");
        // An hour on with nothing archived, the server not idle-safe (archive_timeout is off):
        // the RPO of 15 minutes is broken. (Local only: real object stores refuse requests
        // signed an hour ahead.)
        if !remote {
            let (code, doc) = status_at(&rig.env, &now_plus(3600), &["--no-alerts"]);
            assert_eq!(code, 1);
            let wal = check(&doc, "pg", "wal.archive");
            assert_eq!(wal["level"], "critical", "{wal}");
            assert!(
                wal["detail"].as_str().unwrap().contains("over the RPO"),
                "{wal}"
            );
        }
        // archive_command starts failing: PostgreSQL's archiver says so, and status with it.
        let mut c = rig.pg.connect("postgres");
        c.batch_execute("ALTER SYSTEM SET archive_command = 'false'")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
        c.batch_execute(
        "CREATE TABLE tick (at timestamptz); INSERT INTO tick VALUES (now()); SELECT pg_switch_wal();",
    )
    .unwrap();
        let mut failing = false;
        for _ in 0..600 {
            let n: i64 = c
                .query_one("SELECT failed_count FROM pg_stat_archiver", &[])
                .unwrap()
                .get(0);
            if n > 0 {
                failing = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(failing, "the archiver never failed");
        let (code, doc) = status_at(&rig.env, &now_plus(0), &["--no-alerts"]);
        assert_eq!(code, 1);
        let archiver = check(&doc, "pg", "wal.archiver");
        assert_eq!(archiver["level"], "critical", "{archiver}");
        assert!(
            archiver["detail"].as_str().unwrap().contains("failing"),
            "{archiver}"
        );
        let out = rig.env.cmd().arg("metrics").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("strongroom_pg_archiver_failing{source=\"pg\"} 1\n"),
            "{text}"
        );
        c.batch_execute("ALTER SYSTEM RESET archive_command")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
}

/// The real time `secs` from now, as `YYYY-MM-DD HH:MM:SS` for faketime.
fn now_plus(secs: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[test]
fn a_real_drill_ticks_the_quarterly_checklist_and_is_held_to_the_rto() {
    let env = hotel_env("");
    run_at(&env, "2026-11-10 10:00:00", &["backup"]);
    run_at(&env, "2026-11-10 10:05:00", &["verify", "latest"]);
    run_at(&env, "2026-11-10 10:10:00", &["check"]);
    run_at(&env, "2026-11-10 10:15:00", &["forget"]);
    let (code, doc) = status_at(&env, "2026-11-10 10:20:00", &["--no-alerts"]);
    assert_eq!(code, 1, "no drill yet: {doc:#}");
    assert_eq!(check(&doc, "hotel", "drill")["level"], "warning");
    run_at(&env, "2026-11-10 10:30:00", &["drill"]);
    let (code, doc) = status_at(&env, "2026-11-10 10:40:00", &["--no-alerts"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(check(&doc, "hotel", "drill.rto")["level"], "ok");
    let quarterly: Vec<&Value> = doc["sources"][0]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["period"] == "quarterly")
        .collect();
    assert_eq!(quarterly.len(), 2);
    assert!(
        quarterly.iter().all(|i| i["done"] == true),
        "{quarterly:#?}"
    );
    // Metrics carry the drill's figures.
    let out = env
        .at("2026-11-10 10:41:00")
        .arg("metrics")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("strongroom_drill_last_ok{source=\"hotel\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("strongroom_drill_rto_seconds{source=\"hotel\"}"),
        "{text}"
    );
    // An RTO no recovery can meet: the same drill is now a warning, and says why.
    let config = std::fs::read_to_string(env.path("strongroom.toml")).unwrap();
    std::fs::write(
        env.path("strongroom.toml"),
        format!("{config}[sources.hotel.objectives]\nrto = \"0s\"\n"),
    )
    .unwrap();
    let (code, doc) = status_at(&env, "2026-11-10 10:45:00", &["--no-alerts"]);
    assert_eq!(code, 1);
    let rto = check(&doc, "hotel", "drill.rto");
    assert_eq!(rto["level"], "warning", "{rto}");
    assert!(
        rto["detail"].as_str().unwrap().contains("over the RTO"),
        "{rto}"
    );
    // A quarter and its grace (a twelfth, as for backups) later, the drill is due again;
    // within the grace it is not.
    let (_, doc) = status_at(&env, "2027-02-15 10:00:00", &["--no-alerts"]);
    assert_eq!(check(&doc, "hotel", "drill")["level"], "ok");
    let (_, doc) = status_at(&env, "2027-02-20 10:00:00", &["--no-alerts"]);
    assert_eq!(check(&doc, "hotel", "drill")["level"], "warning");
    // The runbook shows the last drill's figures.
    let out = env
        .at("2026-11-10 10:50:00")
        .arg("runbook")
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.to_lowercase().contains("last drill"), "{page}");
    assert!(!page.contains("no drill on record"), "{page}");
}

#[test]
fn a_status_that_cannot_read_the_repository_alerts_but_one_that_finds_warnings_does_not() {
    let env = hotel_env("");
    let alerts = env.path("alerts.jsonl");
    let config = std::fs::read_to_string(env.path("strongroom.toml")).unwrap();
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "{config}[[alerts]]\ncommand = \"cat >> '{}'; echo >> '{}'\"\n",
            alerts.display(),
            alerts.display()
        ),
    )
    .unwrap();
    let sent = || -> Vec<Value> {
        std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    env.cmd().arg("backup").assert().success();
    // Warnings (no verify, check, drill or retention yet): exit 1, one state change alert,
    // and no job-failure alert for status itself.
    let out = env.cmd().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let got = sent();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["event"], "state_changed");
    // The repository gone: status fails, and that failure is the alert.
    let out = env
        .cmd()
        .arg("status")
        .env("STRONGROOM_REPO", env.path("nowhere"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let got = sent();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[1]["event"], "job_failed");
    assert_eq!(got[1]["job"], "status");
    assert!(got[1]["hint"].as_str().is_some_and(|h| !h.is_empty()));
}

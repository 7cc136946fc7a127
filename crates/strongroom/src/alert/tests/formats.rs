//! The formats beyond the JSON document, each against a real receiver: ntfy's publish
//! request and Healthchecks pings on the testkit's loopback HTTP server, and an e-mail
//! message read by a real command and parsed by Python's `email` package (an independent
//! reader of RFC 5322 and 2047).

use super::super::email::subject as email_subject;
use super::super::healthchecks::{body, ping_url, ping_with};
use super::*;
use base64::Engine;
use strongroom_testkit::webhook::Received;

fn ntfy(url: &str) -> AlertConfig {
    AlertConfig {
        format: Some("ntfy".into()),
        ..hook(url)
    }
}

fn healthchecks(url: &str, jobs: Option<&[&str]>) -> AlertConfig {
    AlertConfig {
        format: Some("healthchecks".into()),
        jobs: jobs.map(|j| j.iter().map(|s| s.to_string()).collect()),
        ..hook(url)
    }
}

fn one(rx: &Receiver) -> Received {
    let got = rx.wait_for(1, LONG);
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].clone()
}

#[test]
fn ntfy_gets_the_sentence_with_title_priority_and_tags() {
    let rx = Receiver::start();
    // A token as the password of no user: a Bearer token, never in the URL sent or the log.
    let url = rx
        .url_with("/hotel-alerts")
        .replace("http://", "http://:tk_SECRET@");
    let alert = state_alert("critical", Some("warning"));
    let d = send_with(&[ntfy(&url)], &alert, PAUSE);
    assert_eq!(d.targets[0].outcome, Outcome::Sent { attempts: 1 });
    assert!(!format!("{d:?}").contains("SECRET"), "{d:?}");
    let r = one(&rx);
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/hotel-alerts")
    );
    assert_eq!(r.header("authorization"), Some("Bearer tk_SECRET"));
    assert_eq!(r.header("title"), Some("strongroom: hotel critical"));
    assert_eq!(r.header("priority"), Some("urgent"));
    assert_eq!(r.header("tags"), Some("rotating_light"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let text = r.body_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], alert.summary);
    assert_eq!(
        lines[1],
        "• backup.full (critical): newest full snapshot is 27h old (rpo 24h)"
    );
    assert!(
        !text.contains("secret"),
        "no repository credentials: {text}"
    );

    // Warning, recovery and a failed job; a user and password (escaped) are Basic auth.
    let rx = Receiver::start();
    let url = rx.url_with("/t").replace("http://", "http://ops:p%40ss@");
    let recovered = Alert {
        event: AlertEvent::Recovered,
        ..state_alert("ok", Some("critical"))
    };
    for alert in [state_alert("warning", Some("ok")), recovered, job_alert()] {
        assert_eq!(send_with(&[ntfy(&url)], &alert, PAUSE).sent(), 1);
    }
    let got = rx.wait_for(3, LONG);
    let basic = base64::engine::general_purpose::STANDARD.encode("ops:p@ss");
    for r in &got {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Basic {basic}").as_str())
        );
    }
    let heads: Vec<_> = got
        .iter()
        .map(|r| (r.header("title"), r.header("priority"), r.header("tags")))
        .collect();
    assert_eq!(
        heads,
        [
            (
                Some("strongroom: hotel warning"),
                Some("high"),
                Some("warning")
            ),
            (
                Some("strongroom: hotel recovered"),
                Some("default"),
                Some("white_check_mark")
            ),
            (
                Some("strongroom: backup of hotel failed"),
                Some("urgent"),
                Some("rotating_light")
            ),
        ]
    );
    let job = got[2].body_text();
    assert!(
        job.contains("What to do: check that the database exists"),
        "{job}"
    );
    assert!(job.contains("Error kind: source_failed"), "{job}");
}

#[test]
fn an_ntfy_title_that_is_not_ascii_is_an_encoded_word() {
    let rx = Receiver::start();
    let alert = Alert {
        source: Some("hôtel".into()),
        ..state_alert("warning", None)
    };
    send_with(&[ntfy(&rx.url())], &alert, PAUSE);
    let r = one(&rx);
    let title = r.header("title").unwrap();
    let b64 = title
        .strip_prefix("=?UTF-8?B?")
        .and_then(|t| t.strip_suffix("?="))
        .unwrap_or_else(|| panic!("{title}"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "strongroom: hôtel warning"
    );
}

fn run_ping(kind: PingKind, duration: Option<Duration>) -> Ping {
    Ping {
        kind,
        job: "backup".into(),
        source: Some("postgres://app:hunter2@db/hotel".into()),
        run_id: run_id(),
        duration,
        error_kind: None,
        error: None,
        hint: None,
    }
}

#[test]
fn healthchecks_hears_start_then_success_or_fail_paired_by_run_id() {
    let rx = Receiver::start();
    let targets = [healthchecks(&rx.url_with("/ping/0b6b9e1a"), None)];
    let start = run_ping(PingKind::Start, None);
    let rid = start.run_id.clone();
    assert_eq!(ping_with(&targets, &start, PAUSE).sent(), 1);
    let ok = Ping {
        kind: PingKind::Success,
        duration: Some(Duration::from_millis(1500)),
        ..start.clone()
    };
    assert_eq!(ping_with(&targets, &ok, PAUSE).sent(), 1);
    let failed = Ping {
        kind: PingKind::Fail,
        run_id: run_id(),
        duration: Some(Duration::from_millis(250)),
        error_kind: Some("source_failed".into()),
        error: Some("cannot open the database".into()),
        hint: Some("check that the database exists".into()),
        ..start.clone()
    };
    assert_eq!(ping_with(&targets, &failed, PAUSE).sent(), 1);
    let got = rx.wait_for(3, LONG);
    let targets: Vec<&str> = got.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            format!("/ping/0b6b9e1a/start?rid={rid}"),
            format!("/ping/0b6b9e1a?rid={rid}"),
            format!("/ping/0b6b9e1a/fail?rid={}", failed.run_id),
        ]
    );
    assert_ne!(failed.run_id, rid, "each run its own id");
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(!r.body_text().contains("hunter2"), "{}", r.body_text());
    }
    let host = crate::hostname();
    assert_eq!(
        got[0].body_text(),
        format!(
            "backup of postgres://db/hotel started on {host}\njob: backup\nsource: postgres://db/hotel\nhost: {host}\nrun_id: {rid}\n"
        )
    );
    let ok = got[1].body_text();
    assert!(
        ok.starts_with(&format!(
            "backup of postgres://db/hotel succeeded on {host} in 1.500 s\n"
        )),
        "{ok}"
    );
    assert!(ok.contains("\nduration_seconds: 1.500\n"), "{ok}");
    let fail = got[2].body_text();
    for line in [
        "duration_seconds: 0.250",
        "error_kind: source_failed",
        "error: cannot open the database",
        "hint: check that the database exists",
    ] {
        assert!(fail.lines().any(|l| l == line), "{line} in\n{fail}");
    }
    assert!(
        fail.starts_with(&format!(
            "backup of postgres://db/hotel failed on {host} after 0.250 s: cannot open the database\n"
        )),
        "{fail}"
    );
}

#[test]
fn pings_go_only_to_healthchecks_targets_listing_the_job_and_alerts_never_do() {
    let rx = Receiver::start();
    let other = Receiver::start();
    let targets = [
        healthchecks(&rx.url(), None),
        healthchecks(&rx.url(), Some(&["verify"])),
        hook(&other.url()),
    ];
    let d = ping_with(&targets, &run_ping(PingKind::Start, None), PAUSE);
    let outcomes: Vec<_> = d.targets.iter().map(|t| t.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Sent { attempts: 1 },
            Outcome::Skipped,
            Outcome::Skipped
        ]
    );
    // Not by default: wal push (every segment), restore and status; listed, they ping.
    for job in ["wal push", "restore", "status"] {
        assert!(!targets[0].pings_job(job), "{job}");
        assert!(
            healthchecks(&rx.url(), Some(&[job])).pings_job(job),
            "{job}"
        );
    }
    for job in DEFAULT_JOBS {
        assert!(targets[0].pings_job(job) && JOBS.contains(&job), "{job}");
    }
    // Alerts skip healthchecks targets: a state change is no run of a job.
    for alert in [job_alert(), state_alert("critical", Some("ok"))] {
        let d = send_with(&targets, &alert, PAUSE);
        assert_eq!(d.targets[0].outcome, Outcome::Skipped);
        assert_eq!(d.targets[2].outcome, Outcome::Sent { attempts: 1 });
    }
    assert!(!targets[0].hears_alerts() && targets[2].hears_alerts());
    assert_eq!(rx.wait_for(1, LONG).len(), 1);
    assert_eq!(other.wait_for(2, LONG).len(), 2);
    // A healthchecks URL is recognised without `format`.
    let auto = AlertConfig {
        jobs: Some(vec!["backup".into()]),
        ..hook("https://hc-ping.com/0b6b9e1a")
    };
    assert!(auto.pings_job("backup") && !auto.hears_alerts());
}

#[test]
fn a_failing_ping_is_retried_and_reported_like_an_alert() {
    let rx = Receiver::answering(&[Answer::Status(503)], Answer::Status(200));
    let d = ping_with(
        &[healthchecks(&rx.url(), None)],
        &run_ping(PingKind::Start, None),
        PAUSE,
    );
    assert_eq!(d.targets[0].outcome, Outcome::Sent { attempts: 2 });
    let got = rx.wait_for(2, LONG);
    assert_eq!(got[0].target, got[1].target);
    let d = ping_with(
        &[healthchecks(&unreachable_url(), None)],
        &run_ping(PingKind::Fail, Some(Duration::ZERO)),
        PAUSE,
    );
    let Outcome::Failed { attempts: 3, error } = &d.targets[0].outcome else {
        panic!("{d:?}");
    };
    assert!(error.starts_with("could not connect"), "{error}");
}

#[test]
fn ping_urls_keep_their_query_and_take_the_run_id() {
    let rid = run_id();
    assert_eq!(rid.len(), 36);
    assert_eq!(rid.as_bytes()[14], b'4', "version 4: {rid}");
    assert!(b"89ab".contains(&rid.as_bytes()[19]), "variant: {rid}");
    assert_eq!(
        ping_url(
            "https://hc-ping.com/key/db-backup?create=1",
            PingKind::Fail,
            "r"
        )
        .unwrap(),
        "https://hc-ping.com/key/db-backup/fail?create=1&rid=r"
    );
    assert_eq!(
        ping_url("https://hc.example/ping/uuid/", PingKind::Start, "r").unwrap(),
        "https://hc.example/ping/uuid/start?rid=r"
    );
    assert_eq!(
        ping_url("https://hc.example/ping/uuid", PingKind::Success, "r").unwrap(),
        "https://hc.example/ping/uuid?rid=r"
    );
    assert!(ping_url("nope", PingKind::Start, "r").is_err());
    let b = body(&run_ping(PingKind::Start, None));
    assert!(!b.contains("duration_seconds"), "{b}");
}

/// What Python's `email` package reads in the message at `path`: headers (decoded),
/// the Date as seconds since the epoch, the charset and the body.
fn parse_mail(path: &std::path::Path) -> serde_json::Value {
    let script = r#"
import email, email.policy, email.utils, json, sys
raw = open(sys.argv[1], 'rb').read()
m = email.message_from_bytes(raw, policy=email.policy.default)
print(json.dumps({
    'from': str(m['from']), 'to': str(m['to']), 'subject': str(m['subject']),
    'date': email.utils.parsedate_to_datetime(m['date']).timestamp(),
    'message_id': str(m['message-id']),
    'content_type': m.get_content_type(), 'charset': m.get_content_charset(),
    'defects': [str(d) for d in m.defects],
    'body': m.get_content(),
    'longest': max(len(l) for l in raw.split(b'\n')),
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
fn an_email_command_reads_a_message_python_parses() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail.txt");
    let t = AlertConfig {
        format: Some("email".into()),
        email_to: Some("ops@hotel.example, Ana <ana@hotel.example>".into()),
        ..command(&format!("cat > '{}'", mail.display()))
    };
    let mut alert = state_alert("critical", Some("warning"));
    alert.checks.push(AlertCheck {
        name: "wal.archive".into(),
        level: "warning".into(),
        detail: format!("newest segment is 2h old; {}", "a long detail ".repeat(12)),
    });
    let d = send_with(std::slice::from_ref(&t), &alert, PAUSE);
    assert_eq!(d.targets[0].outcome, Outcome::Sent { attempts: 1 });
    let m = parse_mail(&mail);
    assert_eq!(m["defects"], serde_json::json!([]), "{m:#}");
    let host = crate::hostname();
    assert_eq!(m["from"], format!("strongroom@{host}"));
    assert_eq!(m["to"], "ops@hotel.example, Ana <ana@hotel.example>");
    assert_eq!(
        m["subject"],
        "[strongroom] CRITICAL hotel: newest full snapshot is 27h old (rpo 24h) (and 1 more)"
    );
    assert_eq!(m["date"].as_f64().unwrap() as i64, alert.at.as_second());
    assert!(
        m["message_id"]
            .as_str()
            .unwrap()
            .ends_with(&format!("@{host}>"))
    );
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(m["charset"], "utf-8");
    assert!(m["longest"].as_u64().unwrap() <= 78, "{m:#}");
    let body = m["body"].as_str().unwrap();
    assert!(body.starts_with(&format!("{}\n", alert.summary)), "{body}");
    for want in [
        "Failing checks:\n- backup.full (critical): newest full snapshot is 27h old (rpo 24h)\n",
        "- wal.archive (warning): newest segment is 2h old;",
        "What to do: run `strongroom status` on",
        "Source: hotel\n",
        "Repository: s3://backups/hotel\n",
    ] {
        assert!(body.contains(want), "{want:?} in\n{body}");
    }

    // A failed job: its hint, a sender of our choosing, a subject that is not ASCII.
    let t = AlertConfig {
        email_from: Some("Backups <backup@db1.hotel.example>".into()),
        ..t
    };
    let mut job = job_alert();
    job.source = Some("hôtel-ünïcode".into());
    job.job = Some("sauvegarde de la base de données principale de l'hôtel".into());
    send_with(&[t], &job, PAUSE);
    let m = parse_mail(&mail);
    assert_eq!(m["defects"], serde_json::json!([]), "{m:#}");
    assert_eq!(m["from"], "Backups <backup@db1.hotel.example>");
    assert_eq!(m["subject"], email_subject(&job));
    assert!(
        m["subject"]
            .as_str()
            .unwrap()
            .starts_with("[strongroom] CRITICAL hôtel-ünïcode: sauvegarde de la base"),
        "{m:#}"
    );
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("Error kind: source_failed\n"), "{body}");
    assert!(
        body.contains("What to do: check that the database exists\n"),
        "{body}"
    );
    assert!(!body.contains("secret"), "{body}");
}

#[test]
fn an_email_command_still_gets_the_alert_variables() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env.txt");
    let t = AlertConfig {
        format: Some("email".into()),
        email_to: Some("ops@hotel.example".into()),
        ..command(&format!(
            "cat > /dev/null; echo \"$STRONGROOM_ALERT_EVENT $STRONGROOM_ALERT_LEVEL\" > '{}'",
            env.display()
        ))
    };
    assert_eq!(send_with(&[t], &job_alert(), PAUSE).sent(), 1);
    assert_eq!(
        std::fs::read_to_string(&env).unwrap().trim(),
        "job_failed critical"
    );
}

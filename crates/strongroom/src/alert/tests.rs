//! Delivery against real receivers: the testkit's loopback HTTP server and shell commands.
//! No assertion depends on how long anything took.

use super::deliver::send_with;
use super::*;
use crate::config::AlertConfig;
use std::time::Duration;
use strongroom_testkit::webhook::{Answer, Receiver, unreachable_url};

const PAUSE: Duration = Duration::from_millis(10);
const LONG: Duration = Duration::from_secs(60);

fn job_alert() -> Alert {
    Alert::job_failed(
        JobFailure {
            job: "backup".into(),
            source: Some("hotel".into()),
            error_kind: "source_failed".into(),
            error: "cannot open sqlite:/srv/hotel.db: no such file".into(),
            segment: None,
            hint: Some("check that the database exists".into()),
        },
        "s3://user:secret@backups/hotel?sig=abc",
    )
}

fn state_alert(level: &str, previous: Option<&str>) -> Alert {
    Alert {
        event: AlertEvent::StateChanged,
        level: level.into(),
        previous_level: previous.map(str::to_string),
        summary: format!("hotel is {level}"),
        checks: vec![AlertCheck {
            name: "backup.full".into(),
            level: level.into(),
            detail: "newest full snapshot is 27h old (rpo 24h)".into(),
        }],
        job: None,
        error_kind: None,
        error: None,
        hint: None,
        ..job_alert()
    }
}

/// Generous timeouts, so a loaded machine never turns a slow answer into a retry and an
/// extra request; the tests that are about timeouts set their own.
fn hook(url: &str) -> AlertConfig {
    AlertConfig {
        webhook: Some(url.into()),
        timeout: Some("60s".into()),
        ..Default::default()
    }
}

fn command(cmd: &str) -> AlertConfig {
    AlertConfig {
        command: Some(cmd.into()),
        timeout: Some("60s".into()),
        ..Default::default()
    }
}

mod formats;

#[test]
fn a_job_failure_alert_carries_the_failure_and_no_credentials() {
    let a = job_alert();
    assert_eq!(a.event, AlertEvent::JobFailed);
    assert_eq!(a.level, "critical");
    assert_eq!(a.job.as_deref(), Some("backup"));
    assert_eq!(a.repository, "s3://backups/hotel");
    assert!(
        a.summary.starts_with("backup of hotel failed on "),
        "{}",
        a.summary
    );
    assert!(a.summary.contains("no such file"), "{}", a.summary);
    assert_eq!(without_credentials("/srv/backups"), "/srv/backups");
    // A source given as a URL on the command line keeps its password to itself.
    let a = Alert::job_failed(
        JobFailure {
            source: Some("postgres://app:hunter2@db/hotel".into()),
            ..JobFailure::default()
        },
        "/srv/backups",
    );
    assert_eq!(a.source.as_deref(), Some("postgres://db/hotel"));
    assert!(!a.summary.contains("hunter2"), "{}", a.summary);
    assert_eq!(
        without_credentials("https://u:p@host:8443/a/b?x=1#f"),
        "https://host:8443/a/b"
    );
}

#[test]
fn urls_are_shown_without_their_secret_path() {
    assert_eq!(
        redact_url("https://hooks.slack.com/services/T0/B0/XXXX"),
        "https://hooks.slack.com/…"
    );
    assert_eq!(
        redact_url("http://user:pw@127.0.0.1:8080/hook?token=1"),
        "http://127.0.0.1:8080/…"
    );
    assert_eq!(redact_url("http://example.org/"), "http://example.org");
    assert_eq!(redact_url("not a url"), "(invalid URL)");
    for (url, format) in [
        ("https://hooks.slack.com/services/x", Format::Slack),
        ("https://ntfy.sh/hotel-alerts", Format::Ntfy),
        ("https://:tk_secret@NTFY.SH/hotel-alerts", Format::Ntfy),
        ("https://hc-ping.com/0b6b9e1a", Format::Healthchecks),
        ("https://example.org/services/x", Format::Json),
        ("https://ntfy.example/hotel", Format::Json),
        ("not a url", Format::Json),
    ] {
        assert_eq!(webhook::format_for_host(url), format, "{url}");
    }
    assert!(webhook::is_loopback("http://127.0.0.1:9/x"));
    assert!(webhook::is_loopback("http://[::1]:9/x"));
    assert!(webhook::is_loopback("http://LOCALHOST/x"));
    assert!(!webhook::is_loopback("https://hooks.slack.com/x"));
}

#[test]
fn a_webhook_is_retried_after_500s_and_gets_the_document() {
    let rx = Receiver::answering(
        &[Answer::Status(500), Answer::Status(502)],
        Answer::Status(200),
    );
    let alert = job_alert();
    let d = send_with(&[hook(&rx.url())], &alert, PAUSE);
    assert_eq!(d.targets[0].outcome, Outcome::Sent { attempts: 3 });
    assert_eq!((d.sent(), d.failed()), (1, 0));
    let got = rx.wait_for(3, LONG);
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let doc: Alert = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(doc, alert);
    }
    let v: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(v["event"], "job_failed");
    assert_eq!(v["error_kind"], "source_failed");
}

#[test]
fn a_target_that_always_fails_is_given_up_and_the_others_still_get_it() {
    let bad = Receiver::answering(&[], Answer::Status(500));
    let good = Receiver::start();
    let secret = "/services/T000/B000/SECRETSECRET";
    let d = send_with(
        &[
            hook(&bad.url_with(secret)),
            hook(&good.url()),
            hook(&unreachable_url()),
        ],
        &job_alert(),
        PAUSE,
    );
    let Outcome::Failed { attempts, error } = &d.targets[0].outcome else {
        panic!("{d:?}");
    };
    assert_eq!(*attempts, 3);
    assert!(error.contains("500"), "{error}");
    assert!(!format!("{d:?}").contains("SECRET"), "{d:?}");
    assert!(
        d.targets[0]
            .target
            .starts_with("alert 1: webhook http://127.0.0.1:")
    );
    assert!(
        d.targets[0].target.ends_with("/…"),
        "{}",
        d.targets[0].target
    );
    assert_eq!(bad.wait_for(3, LONG).len(), 3);
    assert_eq!(d.targets[1].outcome, Outcome::Sent { attempts: 1 });
    assert_eq!(good.wait_for(1, LONG).len(), 1);
    let Outcome::Failed { attempts: 3, error } = &d.targets[2].outcome else {
        panic!("{d:?}");
    };
    assert!(
        !error.contains("http://"),
        "the URL stays out of the sentence: {error}"
    );
    assert_eq!((d.sent(), d.failed()), (1, 2));
}

#[test]
fn a_stalling_receiver_is_abandoned_after_the_timeout() {
    let rx = Receiver::answering(&[], Answer::Stall);
    let t = AlertConfig {
        timeout: Some("2s".into()),
        ..hook(&rx.url())
    };
    let d = send_with(&[t], &job_alert(), PAUSE);
    assert_eq!(
        d.targets[0].outcome,
        Outcome::Failed {
            attempts: 3,
            error: "no answer within 2s".into()
        }
    );
    assert!(!rx.wait_for(1, LONG).is_empty());
}

#[test]
fn https_goes_through_rustls() {
    // A server that answers a TLS hello with plain HTTP: rustls (set up with its crypto
    // provider and the platform's verifier) reads it and reports it, as a sentence.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/hook", l.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut c, _) = l.accept().unwrap();
            let _ = std::io::Write::write_all(&mut c, b"HTTP/1.1 200 OK\r\n\r\n");
        }
    });
    let d = send_with(&[hook(&url)], &job_alert(), PAUSE);
    server.join().unwrap();
    let Outcome::Failed { attempts: 3, error } = &d.targets[0].outcome else {
        panic!("{d:?}");
    };
    eprintln!("https to a plain server: {error}");
    assert!(!error.contains("within"), "{error}");
    assert!(!error.contains("/hook"), "{error}");
}

#[test]
fn the_slack_format_sends_a_text_message() {
    let rx = Receiver::start();
    let t = AlertConfig {
        format: Some("slack".into()),
        ..hook(&rx.url())
    };
    let d = send_with(&[t], &state_alert("critical", Some("warning")), PAUSE);
    assert_eq!(d.sent(), 1, "{d:?}");
    let got = rx.wait_for(1, LONG);
    let v: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    assert!(text.starts_with("*[CRITICAL]* hotel is critical"), "{text}");
    assert!(
        text.contains("• backup.full (critical): newest full snapshot is 27h old"),
        "{text}"
    );

    let job = slack_text(&job_alert());
    assert!(job.contains("Error kind: source_failed"), "{job}");
    assert!(
        job.contains("What to do: check that the database exists"),
        "{job}"
    );
    assert!(!job.contains("secret"), "{job}");
    let mut recovered = state_alert("ok", Some("critical"));
    recovered.event = AlertEvent::Recovered;
    recovered.summary = "a <b> & c".into(); // names no source: it leads
    let text = slack_text(&recovered);
    assert!(
        text.starts_with("*[RECOVERED]* hotel: a &lt;b&gt; &amp; c"),
        "{text}"
    );
}

#[test]
fn min_level_holds_back_only_state_changes_below_it() {
    let rx = Receiver::start();
    let critical_only = AlertConfig {
        min_level: Some("critical".into()),
        ..hook(&rx.url())
    };
    let targets = [critical_only];
    let d = send_with(&targets, &state_alert("warning", Some("ok")), PAUSE);
    assert_eq!(d.targets[0].outcome, Outcome::Skipped);
    for alert in [
        state_alert("critical", Some("warning")),
        // Eased from critical: the team that heard "critical" hears it eased.
        state_alert("warning", Some("critical")),
        Alert {
            event: AlertEvent::Recovered,
            ..state_alert("ok", Some("warning"))
        },
        job_alert(),
    ] {
        let d = send_with(&targets, &alert, PAUSE);
        assert_eq!(
            d.targets[0].outcome,
            Outcome::Sent { attempts: 1 },
            "{alert:?}"
        );
    }
    // The default (warning) takes warnings.
    let d = send_with(
        &[hook(&rx.url())],
        &state_alert("warning", Some("ok")),
        PAUSE,
    );
    assert_eq!(d.sent(), 1);
    assert_eq!(rx.wait_for(5, LONG).len(), 5);
}

#[test]
fn a_command_gets_the_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alert.json");
    let env = dir.path().join("env.txt");
    let cmd = format!(
        "cat > '{}'; echo \"$STRONGROOM_ALERT_EVENT $STRONGROOM_ALERT_LEVEL $STRONGROOM_ALERT_SOURCE\" > '{}'",
        out.display(),
        env.display()
    );
    let alert = job_alert();
    let d = send_with(&[command(&cmd)], &alert, PAUSE);
    assert_eq!(d.targets[0].outcome, Outcome::Sent { attempts: 1 });
    assert_eq!(d.targets[0].target, "alert 1: command cat");
    let doc: Alert = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc, alert);
    assert_eq!(
        std::fs::read_to_string(&env).unwrap().trim(),
        "job_failed critical hotel"
    );
}

#[test]
fn a_failing_command_is_retried_and_reported_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    // Fails twice, then works: the third attempt delivers.
    let flaky = format!(
        "echo x >> '{0}'; test $(wc -l < '{0}') -ge 3 || {{ echo 'not yet' >&2; exit 3; }}",
        count.display()
    );
    let d = send_with(&[command(&flaky)], &job_alert(), PAUSE);
    assert_eq!(d.targets[0].outcome, Outcome::Sent { attempts: 3 });

    let d = send_with(
        &[command(
            "cat > /dev/null; echo 'boom: no route' >&2; exit 3",
        )],
        &job_alert(),
        PAUSE,
    );
    assert_eq!(
        d.targets[0].outcome,
        Outcome::Failed {
            attempts: 3,
            error: "exited with status 3: boom: no route".into()
        }
    );
}

#[test]
fn a_command_that_does_not_finish_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // A background child that would outlive a killed shell if only the shell were killed.
    let cmd = format!("sleep 300 & echo $! >> '{}'; wait", pids.display());
    let t = AlertConfig {
        timeout: Some("1s".into()),
        ..command(&cmd)
    };
    let d = send_with(&[t], &job_alert(), PAUSE);
    assert_eq!(
        d.targets[0].outcome,
        Outcome::Failed {
            attempts: 3,
            error: "did not finish within 1s and was killed".into()
        }
    );
    // (On a very slow machine the shell may not have got that far: nothing to check then.)
    for pid in std::fs::read_to_string(&pids).unwrap_or_default().lines() {
        let pid: i32 = pid.trim().parse().unwrap();
        // Killed, then reaped by whoever adopted it, or at worst a zombie: not running. A
        // SIGKILL lands when the process is next scheduled, so wait (generously) for it.
        let running = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                .is_some_and(|s| s != "Z" && s != "X")
        };
        let deadline = std::time::Instant::now() + LONG;
        while running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(), "sleep {pid} still runs");
    }
}

//! The scheduler on a faked clock: missed runs, clock jumps, lanes, retries, copies.

use super::launch::{Launch, Outcome, Why};
use super::scheduler::Scheduler;
use super::slots::Slots;
use crate::config::Config;
use crate::schedule::{Job, Plan};
use jiff::{SignedDuration, Timestamp};
use std::path::Path;
use std::time::Duration;

fn t(s: &str) -> Timestamp {
    s.parse().expect("an RFC 3339 time")
}

const TWO: &str = r#"
[sources.hotel]
url = "sqlite:/srv/hotel.db"
[sources.hotel.schedule]
full = "0 * * * *"
verify = "30 * * * *"
copy = "off"
drill = "off"
prune = "off"
check = "off"
[sources.db]
url = "postgres://app@db/hotel"
[sources.db.schedule]
physical = "off"
logical = "0 2 * * *"
verify = "off"
drill = "off"
prune = "off"
check = "off"
[[copies]]
repository = "/mnt/copy"
"#;

fn scheduler(now: Timestamp) -> Scheduler {
    let c = Config::parse(TWO, Path::new("d.toml")).unwrap();
    Scheduler::new(
        Plan::of(&c).unwrap(),
        Slots::in_memory(),
        now,
        2,
        Duration::from_secs(60),
    )
}

fn keys(l: &[Launch]) -> Vec<String> {
    l.iter().map(|l| l.key.clone()).collect()
}

fn ok() -> Outcome {
    Outcome {
        ok: true,
        ..Outcome::default()
    }
}

fn failed(retryable: bool) -> Outcome {
    Outcome {
        ok: false,
        retryable,
        kind: Some("store_unreachable".into()),
        ..Outcome::default()
    }
}

#[test]
fn the_first_start_waits_for_the_next_slot() {
    let now = t("2026-12-07T10:10:00Z");
    let mut s = scheduler(now);
    assert!(s.tick(now).is_empty());
    assert_eq!(s.next_start(), Some(t("2026-12-07T10:30:00Z")));
    assert_eq!(keys(&s.tick(t("2026-12-07T10:30:00Z"))), ["hotel/verify"]);
}

#[test]
fn sources_run_side_by_side_and_a_source_one_job_at_a_time() {
    let mut s = scheduler(t("2026-12-07T01:50:00Z"));
    // 02:00: hotel's hourly backup and db's daily logical start together.
    let two = s.tick(t("2026-12-07T02:00:00Z"));
    assert_eq!(keys(&two), ["db/logical", "hotel/full"]);
    // hotel's backup runs long: its 02:30 verify waits for it, db is not held up.
    assert!(s.tick(t("2026-12-07T02:30:00Z")).is_empty());
    let backup = two.iter().find(|l| l.key == "hotel/full").unwrap();
    assert!(s.busy("hotel"));
    s.finished(backup, &Outcome::default(), t("2026-12-07T02:40:00Z"));
    // The verify then runs once, for its 02:30 slot.
    let l = s.tick(t("2026-12-07T02:40:00Z"));
    assert_eq!(keys(&l), ["hotel/verify"]);
    assert_eq!(l[0].slot, Some(t("2026-12-07T02:30:00Z")));
}

#[test]
fn a_host_that_slept_runs_each_missed_job_once() {
    let mut s = scheduler(t("2026-12-07T01:50:00Z"));
    // Asleep from 01:50 to 09:15: seven hourly backups, seven verifies and one daily
    // logical were missed.
    let woke = t("2026-12-07T09:15:00Z");
    let l = s.tick(woke);
    assert_eq!(keys(&l), ["db/logical", "hotel/full"]);
    let full = l.iter().find(|l| l.key == "hotel/full").unwrap();
    assert_eq!(full.slot, Some(t("2026-12-07T09:00:00Z")));
    for x in &l {
        s.finished(x, &Outcome::default(), woke);
    }
    // The verify's turn (its lane was busy), then nothing more until the next slots.
    assert_eq!(keys(&s.tick(woke)), ["hotel/verify"]);
    assert!(s.tick(woke + SignedDuration::from_secs(60)).is_empty());
    assert_eq!(s.last("db/logical"), Some(t("2026-12-07T02:00:00Z")));
}

#[test]
fn a_clock_jump_forward_runs_once_and_a_jump_back_runs_nothing_twice() {
    let mut s = scheduler(t("2026-12-07T02:55:00Z"));
    let l = s.tick(t("2026-12-07T03:00:00Z"));
    assert_eq!(keys(&l), ["hotel/full"]);
    s.finished(&l[0], &ok(), t("2026-12-07T03:01:00Z"));
    // NTP sets the clock back 20 minutes: 03:00 is not run again.
    for now in [
        "2026-12-07T02:41:00Z",
        "2026-12-07T02:59:59Z",
        "2026-12-07T03:00:00Z",
    ] {
        let l = s.tick(t(now));
        assert!(
            !keys(&l).contains(&"hotel/full".to_string()),
            "{now}: {l:?}"
        );
        for x in &l {
            s.finished(x, &ok(), t(now));
        }
    }
    // Forward three days: one run.
    let l = s.tick(t("2026-12-10T03:20:00Z"));
    assert!(keys(&l).contains(&"hotel/full".to_string()), "{l:?}");
    assert_eq!(
        l.iter().find(|x| x.key == "hotel/full").unwrap().slot,
        Some(t("2026-12-10T03:00:00Z"))
    );
    for x in &l {
        s.finished(x, &ok(), t("2026-12-10T03:21:00Z"));
    }
    // Then set back three days for good (a wrong clock corrected): the schedule is not
    // stuck until the clock reaches 10 December again.
    let back = t("2026-12-07T03:30:00Z");
    for x in s.tick(back) {
        assert_ne!(x.key, "hotel/full");
        s.finished(&x, &ok(), back);
    }
    assert_eq!(s.last("hotel/full"), Some(back));
    let l = s.tick(t("2026-12-07T04:00:00Z"));
    assert!(keys(&l).contains(&"hotel/full".to_string()), "{l:?}");
}

#[test]
fn retryable_failures_are_retried_with_doubling_delays_then_given_up() {
    let mut s = scheduler(t("2026-12-07T01:59:00Z"));
    let l = s.tick(t("2026-12-07T02:00:00Z"));
    let db = l.iter().find(|x| x.key == "db/logical").unwrap().clone();
    let at = s.finished(&db, &failed(true), t("2026-12-07T02:01:00Z"));
    assert_eq!(at, Some(t("2026-12-07T02:02:00Z")));
    assert!(
        s.tick(t("2026-12-07T02:01:59Z"))
            .iter()
            .all(|x| x.source != "db")
    );
    let retry = s.tick(t("2026-12-07T02:02:00Z"));
    let r1 = retry.iter().find(|x| x.source == "db").unwrap().clone();
    assert_eq!((r1.attempt, &r1.why), (1, &Why::Retry));
    // The second retry waits twice as long, and there is no third (retries = 2).
    let at = s.finished(&r1, &failed(true), t("2026-12-07T02:03:00Z"));
    assert_eq!(at, Some(t("2026-12-07T02:05:00Z")));
    let r2 = s.tick(t("2026-12-07T02:05:00Z"));
    let r2 = r2.iter().find(|x| x.source == "db").unwrap().clone();
    assert_eq!(r2.attempt, 2);
    assert_eq!(
        s.finished(&r2, &failed(true), t("2026-12-07T02:06:00Z")),
        None
    );
    // A failure the job did not call retryable (a wrong password) is not retried.
    let mut s = scheduler(t("2026-12-07T01:59:00Z"));
    let l = s.tick(t("2026-12-07T02:00:00Z"));
    assert_eq!(
        s.finished(&l[0], &failed(false), t("2026-12-07T02:01:00Z")),
        None
    );
}

#[test]
fn a_successful_backup_is_followed_by_its_copy() {
    let mut s = scheduler(t("2026-12-07T01:59:00Z"));
    let l = s.tick(t("2026-12-07T02:00:00Z"));
    let db = l.iter().find(|x| x.key == "db/logical").unwrap().clone();
    s.finished(&db, &ok(), t("2026-12-07T02:03:00Z"));
    let next = s.tick(t("2026-12-07T02:03:00Z"));
    let copy = next.iter().find(|x| x.source == "db").unwrap();
    assert_eq!((copy.job, &copy.why), (Job::Copy, &Why::AfterBackup));
    // A failed backup is not copied.
    let mut s = scheduler(t("2026-12-07T01:59:00Z"));
    let l = s.tick(t("2026-12-07T02:00:00Z"));
    let db = l.iter().find(|x| x.key == "db/logical").unwrap().clone();
    s.finished(&db, &failed(false), t("2026-12-07T02:04:00Z"));
    assert!(s.tick(t("2026-12-07T02:04:00Z")).is_empty());
}

#[test]
fn a_request_runs_now_unless_the_source_is_busy() {
    let mut s = scheduler(t("2026-12-07T01:59:00Z"));
    let r = s.request("hotel", Job::Full, "ada").expect("free lane");
    assert_eq!(r.why, Why::Requested { by: "ada".into() });
    assert!(s.request("hotel", Job::Drill, "ada").is_none());
    assert!(s.request("nowhere", Job::Full, "ada").is_none());
    s.finished(&r, &ok(), t("2026-12-07T02:00:00Z"));
    assert!(s.request("hotel", Job::Drill, "ada").is_some());
}

#[test]
fn slots_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r1.json");
    let c = Config::parse(TWO, Path::new("d.toml")).unwrap();
    let start = t("2026-12-07T01:59:00Z");
    let mut s = Scheduler::new(
        Plan::of(&c).unwrap(),
        Slots::at(file.clone()),
        start,
        2,
        Duration::from_secs(60),
    );
    let l = s.tick(t("2026-12-07T02:00:00Z"));
    assert!(!l.is_empty());
    // The daemon is killed mid-backup and started again: 02:00 does not run twice.
    let mut again = Scheduler::new(
        Plan::of(&c).unwrap(),
        Slots::at(file.clone()),
        t("2026-12-07T02:10:00Z"),
        2,
        Duration::from_secs(60),
    );
    assert!(again.tick(t("2026-12-07T02:10:00Z")).is_empty());
    assert_eq!(again.last("db/logical"), Some(t("2026-12-07T02:00:00Z")));
}

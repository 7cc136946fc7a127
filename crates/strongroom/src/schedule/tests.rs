//! The plan and the due rule, on a faked clock: every time here is given, none is read.

use super::*;
use std::path::Path;

fn t(s: &str) -> Timestamp {
    s.parse().expect("an RFC 3339 time")
}

fn plan(toml: &str) -> Plan {
    Plan::of(&Config::parse(toml, Path::new("s.toml")).expect("parses")).expect("a plan")
}

fn entry<'a>(p: &'a Plan, key: &str) -> &'a Entry {
    p.entries
        .iter()
        .find(|e| e.key() == key)
        .unwrap_or_else(|| panic!("no entry {key} in {:?}", keys(p)))
}

fn keys(p: &Plan) -> Vec<String> {
    p.entries.iter().map(Entry::key).collect()
}

const HOTEL: &str = "[sources.hotel]\nurl = \"sqlite:/srv/hotel.db\"\n";

#[test]
fn the_strategy_is_the_default_plan() {
    let p = plan(HOTEL);
    assert_eq!(
        keys(&p),
        [
            "hotel/full",
            "hotel/verify",
            "hotel/drill",
            "hotel/prune",
            "*/check"
        ]
    );
    let full = entry(&p, "hotel/full");
    assert_eq!(full.tz_name, "UTC");
    assert_eq!(
        full.next_slot(t("2026-12-07T01:00:00Z")),
        Some(t("2026-12-07T02:00:00Z"))
    );
    // A drill every quarter, on the first day.
    assert_eq!(
        entry(&p, "hotel/drill").next_slot(t("2026-12-07T00:00:00Z")),
        Some(t("2027-01-01T05:00:00Z"))
    );
    // PostgreSQL: logical daily, physical every six hours; copies only with [[copies]].
    let pg = plan(
        "[sources.db]\nurl = \"postgres://app@db/hotel\"\n[[copies]]\nrepository = \"/mnt/copy\"\n",
    );
    assert!(keys(&pg).starts_with(&["db/logical".into(), "db/physical".into()]));
    assert!(matches!(entry(&pg, "db/copy").timing, Timing::AfterBackup));
    assert_eq!(
        entry(&pg, "db/physical").next_slot(t("2026-12-07T06:00:00Z")),
        Some(t("2026-12-07T12:00:00Z"))
    );
}

#[test]
fn lines_turn_off_and_move() {
    let p = plan(&format!(
        "{HOTEL}[sources.hotel.schedule]\ntimezone = \"Europe/Paris\"\nfull = \"*/15 * * * *\"\ndrill = \"off\"\nverify = \"0 4 * * 1-5\"\n"
    ));
    assert!(!keys(&p).contains(&"hotel/drill".to_string()));
    let verify = entry(&p, "hotel/verify");
    // 04:00 in Paris is 03:00 UTC in winter; Saturday 12 December is skipped.
    assert_eq!(
        verify.next_slot(t("2026-12-11T03:00:00Z")),
        Some(t("2026-12-14T03:00:00Z"))
    );
    assert_eq!(
        entry(&p, "hotel/full").next_slot(t("2026-12-07T10:07:00Z")),
        Some(t("2026-12-07T10:15:00Z"))
    );
}

#[test]
fn bad_lines_are_named_with_their_key() {
    for (line, says) in [
        ("full = \"0 2 * *\"", "has 4 fields"),
        ("full = \"0 25 * * *\"", "not a cron pattern"),
        ("full = \"0 0 2 * * *\"", "has 6 fields"),
        ("timezone = \"Mars/Olympus\"", "not a time zone"),
        ("jitter = \"soon\"", "not a duration"),
        ("hourly = \"0 * * * *\"", "hourly"),
    ] {
        let text = format!("{HOTEL}[sources.hotel.schedule]\n{line}\n");
        let e = Config::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{line}: {e}");
        if !line.starts_with("hourly") {
            let key = line.split(' ').next().unwrap();
            assert!(e.contains(&format!("sources.hotel.schedule.{key}")), "{e}");
        }
    }
}

#[test]
fn a_missed_run_runs_once_after_sleep_or_downtime() {
    let p = plan(HOTEL);
    let full = entry(&p, "hotel/full");
    let last = t("2026-12-01T02:00:00Z");
    // Not yet.
    assert_eq!(full.due(last, t("2026-12-02T01:59:59Z")), None);
    // On time.
    assert_eq!(
        full.due(last, t("2026-12-02T02:00:00Z")),
        Some(t("2026-12-02T02:00:00Z"))
    );
    // The host slept (or was down, or its clock leapt forward) for five days: the five
    // missed slots are one run, of the latest of them.
    let woke = t("2026-12-06T09:30:00Z");
    let slot = full.due(last, woke).expect("a missed run is due");
    assert_eq!(slot, t("2026-12-06T02:00:00Z"));
    // Once run, nothing more is due until the next slot.
    assert_eq!(full.due(slot, woke), None);
    assert_eq!(full.due(slot, t("2026-12-07T01:59:00Z")), None);
    assert!(full.due(slot, t("2026-12-07T02:00:00Z")).is_some());
}

#[test]
fn a_clock_set_back_does_not_run_a_slot_again() {
    let p = plan(HOTEL);
    let full = entry(&p, "hotel/full");
    // 02:00 ran; then the clock went back an hour.
    let ran = t("2026-12-07T02:00:00Z");
    for now in [
        "2026-12-07T01:00:00Z",
        "2026-12-07T02:00:00Z",
        "2026-12-07T02:30:00Z",
    ] {
        assert_eq!(full.due(ran, t(now)), None, "{now}");
    }
    assert!(full.due(ran, t("2026-12-08T02:00:00Z")).is_some());
}

#[test]
fn jitter_is_fixed_per_slot_and_below_its_bound() {
    let p = plan(&format!(
        "{HOTEL}[sources.hotel.schedule]\njitter = \"10m\"\n"
    ));
    let full = entry(&p, "hotel/full");
    let slot = t("2026-12-07T02:00:00Z");
    let j = full.jitter_of(slot);
    assert!(j < Duration::from_secs(600));
    assert_eq!(j, full.jitter_of(slot), "the same after a restart");
    let distinct: std::collections::BTreeSet<Duration> = (0..20)
        .map(|d| full.jitter_of(slot + jiff::SignedDuration::from_hours(24 * d)))
        .collect();
    assert!(distinct.len() > 10, "{distinct:?}");
    // The run waits for its jitter, then is due.
    let last = t("2026-12-06T02:00:00Z");
    let start = full.start_of(slot);
    if j > Duration::ZERO {
        assert_eq!(
            full.due(last, start - jiff::SignedDuration::from_secs(1)),
            None
        );
    }
    assert_eq!(full.due(last, start), Some(slot));
}

#[test]
fn daylight_saving_neither_skips_nor_doubles_a_daily_run() {
    // Paris leaves summer time on 25 October 2026: 02:30 happens twice.
    let p = plan(&format!(
        "{HOTEL}[sources.hotel.schedule]\ntimezone = \"Europe/Paris\"\nfull = \"30 2 * * *\"\n"
    ));
    let full = entry(&p, "hotel/full");
    let mut slots = Vec::new();
    let mut cursor = t("2026-10-23T12:00:00Z");
    while let Some(s) = full.next_slot(cursor) {
        if s > t("2026-10-27T12:00:00Z") {
            break;
        }
        slots.push(s);
        cursor = s;
    }
    assert_eq!(slots.len(), 4, "{slots:?}");
    // And on 29 March 2026 02:30 does not exist: the run still happens that day.
    let mut cursor = t("2026-03-28T12:00:00Z");
    let s = full.next_slot(cursor).unwrap();
    assert!(s < t("2026-03-29T12:00:00Z"), "{s}");
    cursor = s;
    assert!(full.next_slot(cursor).unwrap() > t("2026-03-30T00:00:00Z"));
}

#[test]
fn each_job_is_the_command_a_person_would_type() {
    assert_eq!(
        Job::Physical.args("db"),
        ["backup", "db", "--kind", "physical"]
    );
    assert_eq!(
        Job::Verify.args("db"),
        ["verify", "latest", "--source", "db"]
    );
    assert_eq!(
        Job::Prune.args("db"),
        ["forget", "--source", "db", "--prune"]
    );
    assert_eq!(Job::Check.args("db"), ["check"]);
}

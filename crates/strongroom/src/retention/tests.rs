//! Tests of the parent module.
use super::*;
use jiff::SignedDuration;
use proptest::prelude::*;

const DAY: u64 = 24 * 60 * 60;

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

/// "2024-05-14T18:00" as UTC; a string with its own offset or `Z` is taken as is.
fn at(s: &str) -> Timestamp {
    let offset = s.ends_with('Z') || s.len() > 16 && s[16..].contains(['+', '-']);
    let full = if offset {
        s.to_string()
    } else {
        format!("{s}Z")
    };
    full.parse().unwrap()
}

fn minute_id(t: Timestamp) -> String {
    TimeZone::UTC
        .to_datetime(t)
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

/// A logical snapshot of source `db` started (and finished) at `time`.
fn snap(id: &str, time: &str) -> Candidate {
    Candidate {
        id: id.into(),
        source: "db".into(),
        kind: "logical".into(),
        started_at: at(time),
        finished_at: at(time),
        tags: Vec::new(),
        verified: false,
        physical: false,
    }
}

/// A snapshot whose id is its start time.
fn timed(time: &str) -> Candidate {
    snap(time, time)
}

fn reasons(d: &Decision) -> String {
    let r: Vec<String> = d.reasons.iter().map(Reason::to_string).collect();
    r.join(",")
}

/// The kept snapshots as "id reason,reason", in input order.
fn kept(policy: &Policy, snaps: &[Candidate], now: Timestamp) -> Vec<String> {
    apply(policy, snaps, now)
        .iter()
        .filter(|d| d.keep)
        .map(|d| format!("{} {}", d.id, reasons(d)))
        .collect()
}

/// The newest start time in `snaps`, as a `now` that changes nothing.
fn newest(snaps: &[Candidate]) -> Timestamp {
    snaps.iter().map(|s| s.started_at).max().unwrap()
}

/// Every 6 h from 2023-01-01 to 2024-05-14T18:00 (500 days), none from 2024-04-28 to
/// 2024-05-05 (ISO 2024-W18 is empty), three extra on 2024-05-10; newest first.
fn long_history() -> Vec<Candidate> {
    let start = at("2023-01-01T00:00");
    let (gap_start, gap_end) = (at("2024-04-28T00:00"), at("2024-05-05T18:00"));
    let mut h: Vec<Candidate> = (0..2000)
        .map(|i| start + SignedDuration::from_hours(6 * i))
        .filter(|t| !(gap_start <= *t && *t <= gap_end))
        .map(|t| timed(&minute_id(t)))
        .collect();
    for extra in ["2024-05-10T07:15", "2024-05-10T07:45", "2024-05-10T13:05"] {
        h.push(timed(extra));
    }
    h.sort_by_key(|s| std::cmp::Reverse(s.started_at));
    assert_eq!(h.len(), 2000 - 32 + 3);
    assert_eq!(h[0].id, "2024-05-14T18:00");
    h
}

fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    p
}

fn check_table(history: &[Candidate], cases: &[(&str, Policy, &[&str])]) {
    let now = newest(history);
    for (name, policy, expected) in cases {
        assert_eq!(kept(policy, history, now), *expected, "case {name}");
    }
}

#[test]
fn bucket_rules_on_a_long_history() {
    let cases: &[(&str, Policy, &[&str])] = &[
        (
            "keep_last 3",
            policy(|p| p.keep_last = Some(3)),
            &[
                "2024-05-14T18:00 last,newest",
                "2024-05-14T12:00 last",
                "2024-05-14T06:00 last",
            ],
        ),
        (
            // Several snapshots in one hour: the newest of the hour (07:45) is the pick.
            "keep_hourly 30",
            policy(|p| p.keep_hourly = Some(30)),
            &[
                "2024-05-14T18:00 hourly,newest",
                "2024-05-14T12:00 hourly",
                "2024-05-14T06:00 hourly",
                "2024-05-14T00:00 hourly",
                "2024-05-13T18:00 hourly",
                "2024-05-13T12:00 hourly",
                "2024-05-13T06:00 hourly",
                "2024-05-13T00:00 hourly",
                "2024-05-12T18:00 hourly",
                "2024-05-12T12:00 hourly",
                "2024-05-12T06:00 hourly",
                "2024-05-12T00:00 hourly",
                "2024-05-11T18:00 hourly",
                "2024-05-11T12:00 hourly",
                "2024-05-11T06:00 hourly",
                "2024-05-11T00:00 hourly",
                "2024-05-10T18:00 hourly",
                "2024-05-10T13:05 hourly",
                "2024-05-10T12:00 hourly",
                "2024-05-10T07:45 hourly",
                "2024-05-10T06:00 hourly",
                "2024-05-10T00:00 hourly",
                "2024-05-09T18:00 hourly",
                "2024-05-09T12:00 hourly",
                "2024-05-09T06:00 hourly",
                "2024-05-09T00:00 hourly",
                "2024-05-08T18:00 hourly",
                "2024-05-08T12:00 hourly",
                "2024-05-08T06:00 hourly",
                "2024-05-08T00:00 hourly",
            ],
        ),
        (
            "keep_daily 7",
            policy(|p| p.keep_daily = Some(7)),
            &[
                "2024-05-14T18:00 daily,newest",
                "2024-05-13T18:00 daily",
                "2024-05-12T18:00 daily",
                "2024-05-11T18:00 daily",
                "2024-05-10T18:00 daily",
                "2024-05-09T18:00 daily",
                "2024-05-08T18:00 daily",
            ],
        ),
        (
            // W20, W19, (W18 is empty: not counted), W17 ends with the gap on Sunday 28th, W16.
            "keep_weekly 4",
            policy(|p| p.keep_weekly = Some(4)),
            &[
                "2024-05-14T18:00 weekly,newest",
                "2024-05-12T18:00 weekly",
                "2024-04-27T18:00 weekly",
                "2024-04-21T18:00 weekly",
            ],
        ),
        (
            "keep_monthly 3",
            policy(|p| p.keep_monthly = Some(3)),
            &[
                "2024-05-14T18:00 monthly,newest",
                "2024-04-27T18:00 monthly",
                "2024-03-31T18:00 monthly",
            ],
        ),
        (
            // Only 17 months hold a snapshot: 17 are kept, and not the oldest snapshot too.
            "keep_monthly 20",
            policy(|p| p.keep_monthly = Some(20)),
            &[
                "2024-05-14T18:00 monthly,newest",
                "2024-04-27T18:00 monthly",
                "2024-03-31T18:00 monthly",
                "2024-02-29T18:00 monthly",
                "2024-01-31T18:00 monthly",
                "2023-12-31T18:00 monthly",
                "2023-11-30T18:00 monthly",
                "2023-10-31T18:00 monthly",
                "2023-09-30T18:00 monthly",
                "2023-08-31T18:00 monthly",
                "2023-07-31T18:00 monthly",
                "2023-06-30T18:00 monthly",
                "2023-05-31T18:00 monthly",
                "2023-04-30T18:00 monthly",
                "2023-03-31T18:00 monthly",
                "2023-02-28T18:00 monthly",
                "2023-01-31T18:00 monthly",
            ],
        ),
        (
            "keep_yearly 2",
            policy(|p| p.keep_yearly = Some(2)),
            &["2024-05-14T18:00 yearly,newest", "2023-12-31T18:00 yearly"],
        ),
        (
            "keep_yearly 5",
            policy(|p| p.keep_yearly = Some(5)),
            &["2024-05-14T18:00 yearly,newest", "2023-12-31T18:00 yearly"],
        ),
        (
            "keep_within 2 days (inclusive)",
            policy(|p| p.keep_within = Some(days(2))),
            &[
                "2024-05-14T18:00 within,newest",
                "2024-05-14T12:00 within",
                "2024-05-14T06:00 within",
                "2024-05-14T00:00 within",
                "2024-05-13T18:00 within",
                "2024-05-13T12:00 within",
                "2024-05-13T06:00 within",
                "2024-05-13T00:00 within",
                "2024-05-12T18:00 within",
            ],
        ),
        (
            "last 2, daily 3, weekly 2, monthly 2",
            policy(|p| {
                p.keep_last = Some(2);
                p.keep_daily = Some(3);
                p.keep_weekly = Some(2);
                p.keep_monthly = Some(2);
            }),
            &[
                "2024-05-14T18:00 last,daily,weekly,monthly,newest",
                "2024-05-14T12:00 last",
                "2024-05-13T18:00 daily",
                "2024-05-12T18:00 daily,weekly",
                "2024-04-27T18:00 monthly",
            ],
        ),
        (
            "daily 7, weekly 4, monthly 3, yearly 2",
            policy(|p| {
                p.keep_daily = Some(7);
                p.keep_weekly = Some(4);
                p.keep_monthly = Some(3);
                p.keep_yearly = Some(2);
            }),
            &[
                "2024-05-14T18:00 daily,weekly,monthly,yearly,newest",
                "2024-05-13T18:00 daily",
                "2024-05-12T18:00 daily,weekly",
                "2024-05-11T18:00 daily",
                "2024-05-10T18:00 daily",
                "2024-05-09T18:00 daily",
                "2024-05-08T18:00 daily",
                "2024-04-27T18:00 weekly,monthly",
                "2024-04-21T18:00 weekly",
                "2024-03-31T18:00 monthly",
                "2023-12-31T18:00 yearly",
            ],
        ),
    ];
    check_table(&long_history(), cases);
}

#[test]
fn iso_weeks_and_calendar_years_at_the_turn_of_2020() {
    // 2020-12-27 is 2020-W52; 2020-12-28 to 2021-01-03 is 2020-W53; 2021-01-04 is 2021-W01.
    let turn_2020: Vec<Candidate> = [
        "2021-01-11T09:00",
        "2021-01-10T09:00",
        "2021-01-04T09:00",
        "2021-01-03T09:00",
        "2021-01-01T09:00",
        "2020-12-31T09:00",
        "2020-12-28T09:00",
        "2020-12-27T09:00",
    ]
    .map(timed)
    .to_vec();
    check_table(
        &turn_2020,
        &[
            (
                "weekly",
                policy(|p| p.keep_weekly = Some(10)),
                &[
                    "2021-01-11T09:00 weekly,newest",
                    "2021-01-10T09:00 weekly",
                    "2021-01-03T09:00 weekly",
                    "2020-12-27T09:00 weekly",
                ],
            ),
            (
                "monthly",
                policy(|p| p.keep_monthly = Some(10)),
                &[
                    "2021-01-11T09:00 monthly,newest",
                    "2020-12-31T09:00 monthly",
                ],
            ),
            (
                // Calendar years, not ISO years: 2021-01-03 belongs to 2021 here.
                "yearly",
                policy(|p| p.keep_yearly = Some(10)),
                &["2021-01-11T09:00 yearly,newest", "2020-12-31T09:00 yearly"],
            ),
        ],
    );

    // 2019-12-30 is already 2020-W01.
    let turn_2019: Vec<Candidate> = [
        "2020-01-06T09:00",
        "2020-01-05T09:00",
        "2019-12-30T09:00",
        "2019-12-29T09:00",
    ]
    .map(timed)
    .to_vec();
    check_table(
        &turn_2019,
        &[
            (
                "weekly",
                policy(|p| p.keep_weekly = Some(10)),
                &[
                    "2020-01-06T09:00 weekly,newest",
                    "2020-01-05T09:00 weekly",
                    "2019-12-29T09:00 weekly",
                ],
            ),
            (
                "yearly",
                policy(|p| p.keep_yearly = Some(10)),
                &["2020-01-06T09:00 yearly,newest", "2019-12-30T09:00 yearly"],
            ),
        ],
    );
}

#[test]
fn buckets_are_utc_and_boundaries_are_exact() {
    let history = vec![
        snap("mar-1", "2024-03-01T00:10:00Z"),
        // 00:30 in +02:00 is still 29 February in UTC.
        snap("feb-29-late", "2024-03-01T00:30:00+02:00"),
        snap("feb-29", "2024-02-29T21:00:00Z"),
        snap("feb-1", "2024-02-01T00:00:00Z"),
        snap("jan-31", "2024-01-31T23:59:59Z"),
        snap("jan-1", "2024-01-01T00:00:00Z"),
        snap("dec-31", "2023-12-31T23:59:59Z"),
    ];
    check_table(
        &history,
        &[
            (
                "daily",
                policy(|p| p.keep_daily = Some(10)),
                &[
                    "mar-1 daily,newest",
                    "feb-29-late daily",
                    "feb-1 daily",
                    "jan-31 daily",
                    "jan-1 daily",
                    "dec-31 daily",
                ],
            ),
            (
                "monthly",
                policy(|p| p.keep_monthly = Some(10)),
                &[
                    "mar-1 monthly,newest",
                    "feb-29-late monthly",
                    "jan-31 monthly",
                    "dec-31 monthly",
                ],
            ),
            (
                "yearly",
                policy(|p| p.keep_yearly = Some(10)),
                &["mar-1 yearly,newest", "dec-31 yearly"],
            ),
        ],
    );
}

#[test]
fn equal_start_times_rank_by_id_whatever_the_input_order() {
    let mut history = vec![snap("a", "2024-01-01T10:00"), snap("b", "2024-01-01T10:00")];
    let p = policy(|p| p.keep_last = Some(1));
    let now = newest(&history);
    assert_eq!(kept(&p, &history, now), ["b last,newest"]);
    history.reverse();
    assert_eq!(kept(&p, &history, now), ["b last,newest"]);
}

#[test]
fn output_follows_input_order() {
    let mut history = long_history();
    history.swap(0, 700);
    history[3..900].reverse();
    let p = Policy::strategy();
    let decisions = apply(&p, &history, at("2024-05-14T18:00"));
    let ids: Vec<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
    let expected: Vec<&str> = history.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, expected);
    let mut sorted = history.clone();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.started_at));
    let by_id = |ds: Vec<Decision>| -> BTreeMap<String, Decision> {
        ds.into_iter().map(|d| (d.id.clone(), d)).collect()
    };
    assert_eq!(
        by_id(decisions),
        by_id(apply(&p, &sorted, at("2024-05-14T18:00")))
    );
}

/// Daily backups at 02:00 from 2023-01-01 to 2024-03-01, newest first.
fn stopped_history() -> Vec<Candidate> {
    let start = at("2023-01-01T02:00");
    let mut h: Vec<Candidate> = (0..=425)
        .map(|i| timed(&minute_id(start + SignedDuration::from_hours(24 * i))))
        .collect();
    h.reverse();
    assert_eq!(h[0].id, "2024-03-01T02:00");
    h
}

#[test]
fn stopped_backups_delete_nothing_more() {
    let history = stopped_history();
    let last_backup = at("2024-03-01T02:00");
    let sixty_days_later = at("2024-04-30T02:00");
    let strategy = Policy::strategy();
    let decisions = apply(&strategy, &history, sixty_days_later);
    assert_eq!(decisions, apply(&strategy, &history, last_backup));

    // 30 dailies although the newest is 60 days old: 1 March and all of February.
    let dailies: Vec<&str> = decisions
        .iter()
        .filter(|d| d.reasons.contains(&Reason::Daily))
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(dailies.len(), 30);
    assert_eq!(dailies.first(), Some(&"2024-03-01T02:00"));
    assert_eq!(dailies.last(), Some(&"2024-02-01T02:00"));
    let count = |r: Reason| decisions.iter().filter(|d| d.reasons.contains(&r)).count();
    assert_eq!(count(Reason::Weekly), 13);
    assert_eq!(count(Reason::Monthly), 12);

    // A second run over what is kept deletes nothing.
    let kept_snaps: Vec<Candidate> = history
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| d.keep)
        .map(|(s, _)| s.clone())
        .collect();
    assert!(
        apply(&strategy, &kept_snaps, sixty_days_later)
            .iter()
            .all(|d| d.keep)
    );

    // keep_within is measured from the newest snapshot, not from `now`.
    let within = policy(|p| p.keep_within = Some(days(7)));
    let kept_within = kept(&within, &history, sixty_days_later);
    assert_eq!(kept_within.len(), 8, "{kept_within:?}");
    assert_eq!(kept_within[0], "2024-03-01T02:00 within,newest");
    assert_eq!(kept_within[7], "2024-02-23T02:00 within");
}

#[test]
fn groups_do_not_influence_each_other() {
    let mut history = Vec::new();
    for (source, kind, first_day, last_day) in [
        ("a", "logical", 1, 20),
        ("a", "physical", 1, 5),
        ("b", "logical", 1, 3),
        ("b", "physical", 10, 12),
    ] {
        for day in (first_day..=last_day).rev() {
            let mut s = snap(
                &format!("{source}-{kind}-{day:02}"),
                &format!("2024-06-{day:02}T03:00"),
            );
            s.source = source.into();
            s.kind = kind.into();
            history.push(s);
        }
    }
    let p = policy(|p| p.keep_daily = Some(2));
    assert_eq!(
        kept(&p, &history, at("2024-07-01T00:00")),
        [
            "a-logical-20 daily,newest",
            "a-logical-19 daily",
            "a-physical-05 daily,newest",
            "a-physical-04 daily",
            "b-logical-03 daily,newest",
            "b-logical-02 daily",
            "b-physical-12 daily,newest",
            "b-physical-11 daily",
        ]
    );
}

#[test]
fn safety_rules_survive_any_policy() {
    let mut history: Vec<Candidate> = (1..=5)
        .rev()
        .map(|d| snap(&format!("d{d}"), &format!("2024-06-0{d}T03:00")))
        .collect();
    history[2].verified = true; // d3
    history[3].verified = true; // d2
    let now = at("2024-07-01T00:00");
    let last_1 = policy(|p| p.keep_last = Some(1));
    assert_eq!(
        kept(&last_1, &history, now),
        ["d5 last,newest", "d3 newest-verified"]
    );

    // A policy that keeps nothing by itself still keeps the newest and newest verified.
    let nothing = policy(|p| {
        p.keep_last = Some(0);
        p.keep_tags = vec!["absent".into()];
    });
    assert_eq!(
        kept(&nothing, &history, now),
        ["d5 newest", "d3 newest-verified"]
    );

    // The newest verified is older on the same day: keep_daily 1 keeps the newest only.
    let mut same_day = vec![
        snap("14h", "2024-06-01T14:00"),
        snap("12h", "2024-06-01T12:00"),
        snap("10h", "2024-06-01T10:00"),
        snap("yesterday", "2024-05-31T10:00"),
    ];
    same_day[2].verified = true;
    same_day[3].verified = true;
    let daily_1 = policy(|p| p.keep_daily = Some(1));
    assert_eq!(
        kept(&daily_1, &same_day, now),
        ["14h daily,newest", "10h newest-verified"]
    );

    // The newest may also be the newest verified.
    same_day[0].verified = true;
    assert_eq!(
        kept(&daily_1, &same_day, now),
        ["14h daily,newest,newest-verified"]
    );
}

/// Daily backups at 23:00 for 200 days from 2024-01-01 (newest 2024-07-18), plus the given
/// extra snapshots `(id, age before the newest, tags)`; newest first.
fn tagged_history(extra: &[(&str, SignedDuration, &[&str])]) -> Vec<Candidate> {
    let start = at("2024-01-01T23:00");
    let mut h: Vec<Candidate> = (0..200)
        .map(|i| timed(&minute_id(start + SignedDuration::from_hours(24 * i))))
        .collect();
    let newest = h.last().unwrap().started_at;
    assert_eq!(h.last().unwrap().id, "2024-07-18T23:00");
    for (id, age, tags) in extra {
        let mut s = timed("2024-01-01T00:00");
        s.id = (*id).into();
        s.started_at = newest - *age;
        s.finished_at = s.started_at;
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        h.push(s);
    }
    h.sort_by_key(|s| std::cmp::Reverse(s.started_at));
    h
}

#[test]
fn tag_within_is_measured_from_the_newest_snapshot() {
    let d = |n: i64| SignedDuration::from_hours(24 * n);
    let pre = &["pre-migration"][..];
    let history = tagged_history(&[
        ("pre-80", d(80), pre),
        ("pre-90", d(90), pre),
        ("pre-90-and-1s", d(90) + SignedDuration::from_secs(1), pre),
        ("pre-100", d(100), pre),
        ("untagged-80", d(80) + SignedDuration::from_secs(1), &[]),
    ]);
    let far_future = at("2030-01-01T00:00");
    let rule = policy(|p| p.tag_within = vec![("pre-migration".into(), days(90))]);
    assert_eq!(
        kept(&rule, &history, far_future),
        [
            "2024-07-18T23:00 newest",
            "pre-80 tag-within:pre-migration",
            "pre-90 tag-within:pre-migration",
        ]
    );

    // With the strategy, midday pre-migration snapshots are no bucket's newest.
    let midday = SignedDuration::from_hours(11);
    let history = tagged_history(&[
        ("pre-80", d(80) + midday, pre),
        ("pre-100", d(100) + midday, pre),
    ]);
    let decisions = apply(&Policy::strategy(), &history, far_future);
    let of = |id: &str| decisions.iter().find(|d| d.id == id).unwrap();
    assert_eq!(reasons(of("pre-80")), "tag-within:pre-migration");
    assert!(!of("pre-100").keep);
}

#[test]
fn keep_tags_keep_regardless_of_age() {
    let history = tagged_history(&[
        ("old-kept", SignedDuration::from_hours(24 * 400), &["keep"]),
        (
            "two-tags",
            SignedDuration::from_hours(24 * 300),
            &["zeta", "other", "alpha"],
        ),
        ("both-rules", SignedDuration::from_hours(24 * 10), &["keep"]),
    ]);
    let p = policy(|p| {
        p.keep_last = Some(1);
        p.keep_tags = vec!["zeta".into(), "keep".into(), "alpha".into()];
        p.tag_within = vec![("keep".into(), days(30))];
    });
    assert_eq!(
        kept(&p, &history, newest(&history)),
        [
            "2024-07-18T23:00 last,newest",
            "both-rules tag:keep,tag-within:keep",
            "two-tags tag:alpha,tag:zeta",
            "old-kept tag:keep",
        ]
    );
}

/// Physical bases started 01:00 and finished 01:30 every day of 2024-06-01..=20, and logical
/// dumps at 04:00 on the same days; newest first.
fn pitr_history() -> Vec<Candidate> {
    let mut h = Vec::new();
    for day in (1..=20).rev() {
        let mut base = snap(
            &format!("phys-{day:02}"),
            &format!("2024-06-{day:02}T01:00"),
        );
        base.kind = "physical".into();
        base.physical = true;
        base.finished_at = at(&format!("2024-06-{day:02}T01:30"));
        h.push(base);
        h.push(snap(
            &format!("dump-{day:02}"),
            &format!("2024-06-{day:02}T04:00"),
        ));
    }
    h
}

fn pitr_kept(window: u64, now: &str) -> Vec<String> {
    let p = policy(|p| p.pitr_window = Some(days(window)));
    kept(&p, &pitr_history(), at(now))
}

#[test]
fn pitr_keeps_the_base_at_the_window_start_and_all_later() {
    // The cut is 2024-06-14T12:00: phys-14 finished before it and is the base.
    let mut expected = vec!["phys-20 newest,pitr".to_string(), "dump-20 newest".into()];
    expected.extend((14..=19).rev().map(|d| format!("phys-{d} pitr")));
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(pitr_kept(7, "2024-06-21T12:00")),
        sorted(expected.clone())
    );
    // Finished exactly at the cut is old enough.
    assert_eq!(
        sorted(pitr_kept(7, "2024-06-21T01:30")),
        sorted(expected.clone())
    );
    // One second earlier, phys-14 no longer covers the window start: phys-13 does.
    expected.push("phys-13 pitr".into());
    assert_eq!(
        sorted(pitr_kept(7, "2024-06-21T01:29:59Z")),
        sorted(expected)
    );
}

#[test]
fn pitr_keeps_every_base_when_none_is_old_enough() {
    let kept = pitr_kept(30, "2024-06-21T12:00");
    let physical: Vec<&String> = kept.iter().filter(|k| k.starts_with("phys")).collect();
    assert_eq!(physical.len(), 20);
    assert!(physical.iter().all(|k| k.ends_with("pitr")));
    // Logical dumps are not PITR bases: only their newest is kept.
    let logical: Vec<&String> = kept.iter().filter(|k| k.starts_with("dump")).collect();
    assert_eq!(logical, ["dump-20 newest"]);
}

#[test]
fn an_empty_policy_keeps_everything() {
    assert!(Policy::default().is_empty());
    assert!(policy(|p| p.keep_daily = Some(0)).is_empty());
    assert!(!policy(|p| p.keep_daily = Some(1)).is_empty());
    assert!(!policy(|p| p.keep_within = Some(Duration::ZERO)).is_empty());
    assert!(!policy(|p| p.keep_tags = vec!["x".into()]).is_empty());
    assert!(!Policy::strategy().is_empty());
    let mut history = vec![
        timed("2024-06-03T00:00"),
        timed("2024-06-02T00:00"),
        timed("2024-06-01T00:00"),
    ];
    history[1].verified = true;
    assert_eq!(
        kept(
            &policy(|p| p.keep_last = Some(0)),
            &history,
            newest(&history)
        ),
        [
            "2024-06-03T00:00 newest,no-policy",
            "2024-06-02T00:00 newest-verified,no-policy",
            "2024-06-01T00:00 no-policy",
        ]
    );
}

#[test]
fn strategy_is_the_documented_one() {
    let s = Policy::strategy();
    assert_eq!(
        (s.keep_last, s.keep_hourly, s.keep_daily, s.keep_weekly),
        (None, None, Some(30), Some(13))
    );
    assert_eq!((s.keep_monthly, s.keep_yearly), (Some(12), None));
    assert_eq!(s.keep_within, None);
    assert!(s.keep_tags.is_empty());
    assert_eq!(s.tag_within, [("pre-migration".to_string(), days(90))]);
    assert_eq!(s.pitr_window, Some(days(7)));
}

#[test]
fn reasons_are_written_as_strings() {
    let all = [
        (Reason::Last, "last"),
        (Reason::Hourly, "hourly"),
        (Reason::Daily, "daily"),
        (Reason::Weekly, "weekly"),
        (Reason::Monthly, "monthly"),
        (Reason::Yearly, "yearly"),
        (Reason::Within, "within"),
        (Reason::Tag("pre-migration".into()), "tag:pre-migration"),
        (Reason::TagWithin("a:b".into()), "tag-within:a:b"),
        (Reason::Newest, "newest"),
        (Reason::NewestVerified, "newest-verified"),
        (Reason::Pitr, "pitr"),
        (Reason::NoPolicy, "no-policy"),
    ];
    for (reason, text) in &all {
        assert_eq!(reason.as_str(), *text);
        assert_eq!(reason.to_string(), *text);
        assert_eq!(text.parse::<Reason>().as_ref(), Ok(reason));
        let json = serde_json::to_string(reason).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(&serde_json::from_str::<Reason>(&json).unwrap(), reason);
    }
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "listing order");
    assert_eq!(
        "weekly-ish".parse::<Reason>(),
        Err(ParseReasonError("weekly-ish".into()))
    );
    assert!(serde_json::from_str::<Reason>("\"nope\"").is_err());

    let decision = Decision {
        id: "s1".into(),
        source: "db".into(),
        kind: "logical".into(),
        keep: true,
        reasons: vec![Reason::Daily, Reason::TagWithin("pre-migration".into())],
    };
    assert_eq!(
        serde_json::to_string(&decision).unwrap(),
        r#"{"id":"s1","source":"db","kind":"logical","keep":true,"reasons":["daily","tag-within:pre-migration"]}"#
    );
}

mod properties;

#[test]
fn earliest_release_is_the_latest_lower_bound_of_the_reasons() {
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let policy = Policy {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(2),
        keep_within: Some(Duration::from_secs(3 * 86_400)),
        pitr_window: Some(Duration::from_secs(86_400)),
        tag_within: vec![("pre-migration".into(), Duration::from_secs(90 * 86_400))],
        ..Policy::default()
    };
    // Wednesday 2026-12-02 13:30.
    let started = t("2026-12-02T13:30:00Z");
    let finished = t("2026-12-02T13:40:00Z");
    let now = t("2026-12-06T00:00:00Z");
    let at = |reasons: &[Reason]| earliest_release(&policy, reasons, started, finished, now);
    assert_eq!(at(&[Reason::Daily]), Some(t("2026-12-09T00:00:00Z")));
    // ISO week from Monday 2026-11-30, four weeks on.
    assert_eq!(at(&[Reason::Weekly]), Some(t("2026-12-28T00:00:00Z")));
    assert_eq!(at(&[Reason::Monthly]), Some(t("2027-02-01T00:00:00Z")));
    assert_eq!(
        at(&[Reason::Within]),
        Some(t("2026-12-06T00:00:00Z")).max(Some(now))
    );
    assert_eq!(
        at(&[Reason::TagWithin("pre-migration".into())]),
        Some(t("2027-03-02T13:30:00Z"))
    );
    // The PITR window counts from the end; `newest` may lapse now.
    assert_eq!(at(&[Reason::Pitr]), Some(now));
    assert_eq!(at(&[Reason::Newest]), Some(now));
    // Every reason must lapse: the latest wins; a kept tag never lapses.
    assert_eq!(
        at(&[Reason::Daily, Reason::Monthly, Reason::Newest]),
        Some(t("2027-02-01T00:00:00Z"))
    );
    assert_eq!(at(&[Reason::Daily, Reason::Tag("keep".into())]), None);
    assert_eq!(at(&[Reason::NoPolicy]), None);
    let recent = earliest_release(
        &policy,
        &[Reason::Pitr],
        t("2026-12-05T20:00:00Z"),
        t("2026-12-05T20:10:00Z"),
        now,
    );
    assert_eq!(recent, Some(t("2026-12-06T20:10:00Z")));
}

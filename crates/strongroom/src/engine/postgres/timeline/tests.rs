//! The choice of timeline, on archives described by hand: which timelines pass through a
//! snapshot, how far each reaches, and which one a recovery follows.

use super::*;

/// The segment size of the archives described here (also `judge`'s tests).
pub(super) const SEG: u64 = 16 << 20;

fn at(s: &str) -> Lsn {
    Lsn::parse(s).unwrap()
}

/// Second `secs` of the tests' clock.
pub(super) fn time(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// Timeline `id` with segments `segs` (archived at second n of the test's clock), the given
/// history, pushed from `dir` when given.
fn tl(
    view: &mut ArchiveView,
    id: u32,
    segs: std::ops::RangeInclusive<u64>,
    history: &str,
    dir: Option<&str>,
) {
    tl_at(view, id, segs, |n| n as i64 * 10 + id as i64, history, dir);
}

/// Timeline `id` with segments `segs` archived at second `at(n)`, the given history, pushed
/// from `dir` on db1 when given (also `judge`'s tests).
pub(super) fn tl_at(
    view: &mut ArchiveView,
    id: u32,
    segs: std::ops::RangeInclusive<u64>,
    at: impl Fn(u64) -> i64,
    history: &str,
    dir: Option<&str>,
) {
    let t = view.timelines.entry(id).or_default();
    t.history = parse_history(history);
    for n in segs {
        t.segments.insert(n, Some(time(at(n))));
    }
    t.origin = dir.map(|d| Origin {
        timeline: id,
        data_directory: d.into(),
        hostname: "db1".into(),
        first: String::new(),
        pushed_at: time(0),
    });
}

/// The reproduction: production on timeline 1 archives segments 1 to 20; a side copy
/// restored from a snapshot at 0/2000028 promoted at 0/5800000 (segment 5) onto timeline 2
/// and archived segments 5 to 8 there.
fn forked() -> ArchiveView {
    let mut v = ArchiveView {
        segment_size: SEG,
        ..Default::default()
    };
    tl(&mut v, 1, 1..=20, "", Some("/srv/pg/main"));
    tl(
        &mut v,
        2,
        5..=8,
        "1\t0/5800000\tbefore 2026-12-01 10:56:42+00\n",
        Some("/srv/pg/copy"),
    );
    v
}

const SNAP: (u32, &str) = (1, "0/2000028");

fn snap() -> (u32, Lsn) {
    (SNAP.0, at(SNAP.1))
}

fn source(id: u32, how: Found) -> SourceTimeline {
    SourceTimeline { id, how }
}

#[test]
fn history_files_parse_to_parent_and_switch_point() {
    let h = parse_history(
        "1\t0/6000000\tno recovery target specified\n\n2\t0/9000000\tafter transaction 750\ngarbage\n",
    );
    assert_eq!(h, vec![(1, at("0/6000000")), (2, at("0/9000000"))]);
}

#[test]
fn each_timeline_through_the_snapshot_reaches_the_end_of_its_unbroken_segments() {
    let v = forked();
    let c = v.candidates(1, at("0/2000028"));
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(
        c[0].reach.lsn,
        Lsn(21 * SEG),
        "timeline 1 through segment 20"
    );
    assert_eq!(c[1].reach.lsn, Lsn(9 * SEG), "timeline 2 through segment 8");
    assert_eq!(c[1].reach.archived, Some(time(82)));
    // A snapshot taken after the fork: timeline 2 does not pass through it.
    let later = v.candidates(1, at("0/7000028"));
    assert_eq!(later.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1]);
    // A gap on the parent before the switch point stops the child there.
    let mut gap = forked();
    gap.timelines.get_mut(&1).unwrap().segments.remove(&3);
    let c = gap.candidates(1, at("0/2000028"));
    assert_eq!(
        (c[0].reach.lsn, c[1].reach.lsn),
        (Lsn(3 * SEG), Lsn(3 * SEG))
    );
    // Timeline 3 descends through 2: its path runs 1 → 2 → 3.
    let mut three = forked();
    tl(
        &mut three,
        3,
        7..=9,
        "1\t0/5800000\tx\n2\t0/7100000\ty\n",
        None,
    );
    let hops = three.hops(1, at("0/2000028"), 3).unwrap();
    assert_eq!(hops.len(), 3);
    assert_eq!(three.reach(&hops).lsn, Lsn(10 * SEG));
    assert!(
        three.hops(2, at("0/7200000"), 3).is_none(),
        "forked before that start"
    );
}

#[test]
fn the_source_timeline_is_followed_and_the_forks_named() {
    let v = forked();
    for target in [
        RecoveryTarget::Latest,
        RecoveryTarget::Lsn("0/C000000".into()),
        RecoveryTarget::Time(time(150)),
    ] {
        let c = choose(
            &v,
            "4f21c26c",
            snap(),
            &target,
            TimelineRequest::Source,
            &source(1, Found::Pushed),
        )
        .unwrap();
        assert_eq!(c.timeline, 1, "{target:?}");
        let note = c.note.unwrap();
        assert!(
            note.contains("the source's own") && note.contains("pushed from /srv/pg/copy"),
            "{note}"
        );
    }
    // Without forks there is nothing to say.
    let mut alone = forked();
    alone.timelines.remove(&2);
    let c = choose(
        &alone,
        "4f21c26c",
        snap(),
        &RecoveryTarget::Latest,
        TimelineRequest::Source,
        &source(1, Found::Server),
    )
    .unwrap();
    assert_eq!(
        c,
        Chosen {
            timeline: 1,
            note: None
        }
    );
}

#[test]
fn a_target_the_source_timeline_misses_goes_to_the_one_that_holds_it_and_says_why() {
    let mut v = forked();
    // Timeline 2 keeps going far past timeline 1's end.
    tl(&mut v, 2, 5..=30, "1\t0/5800000\tx\n", Some("/srv/pg/copy"));
    let c = choose(
        &v,
        "4f21c26c",
        snap(),
        &RecoveryTarget::Lsn("0/1A000000".into()),
        TimelineRequest::Source,
        &source(1, Found::Server),
    )
    .unwrap();
    assert_eq!(c.timeline, 2);
    let note = c.note.unwrap();
    assert!(note.contains("does not reach LSN 0/1A000000"), "{note}");
}

#[test]
fn a_target_no_timeline_reaches_is_refused_naming_how_far_each_goes() {
    let v = forked();
    for target in [
        RecoveryTarget::Lsn("1/0".into()),
        RecoveryTarget::Time(time(10_000)),
    ] {
        let e = choose(
            &v,
            "4f21c26c",
            snap(),
            &target,
            TimelineRequest::Source,
            &source(1, Found::Pushed),
        )
        .unwrap_err();
        let said = e.to_string();
        assert!(matches!(e, Error::Timeline(_)));
        assert!(said.starts_with("no timeline reaches"), "{said}");
        assert!(
            said.contains("4f21c26c")
                && said.contains("timeline 1 (pushed from /srv/pg/main on db1) reaches 0/15000000"),
            "{said}"
        );
        assert!(
            said.contains("timeline 2 (pushed from /srv/pg/copy on db1) reaches 0/9000000"),
            "{said}"
        );
        assert_eq!(said.matches(". ").count(), 0, "one sentence: {said}");
    }
}

#[test]
fn explicit_choices_are_checked_against_the_snapshot_and_the_target() {
    let v = forked();
    let pick = |r, target: RecoveryTarget| {
        choose(
            &v,
            "4f21c26c",
            snap(),
            &target,
            r,
            &source(1, Found::Pushed),
        )
    };
    assert_eq!(
        pick(TimelineRequest::Latest, RecoveryTarget::Latest)
            .unwrap()
            .timeline,
        2
    );
    assert_eq!(
        pick(TimelineRequest::Current, RecoveryTarget::Latest)
            .unwrap()
            .timeline,
        1
    );
    assert_eq!(
        pick(
            TimelineRequest::Number(2),
            RecoveryTarget::Lsn("0/8000000".into())
        )
        .unwrap()
        .timeline,
        2
    );
    let e = pick(
        TimelineRequest::Number(2),
        RecoveryTarget::Lsn("0/C000000".into()),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("timeline 2 (pushed from /srv/pg/copy on db1) does not reach LSN 0/C000000"),
        "{e}"
    );
    let e = pick(TimelineRequest::Number(3), RecoveryTarget::Latest).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("timeline 3 does not pass through snapshot 4f21c26c"),
        "{e}"
    );
    assert_eq!("latest".parse(), Ok(TimelineRequest::Latest));
    assert_eq!("7".parse(), Ok(TimelineRequest::Number(7)));
    assert!("0".parse::<TimelineRequest>().is_err());
}

#[test]
fn the_timeline_a_data_directory_pushed_to_last_is_found_by_its_records() {
    let mut v = forked();
    assert_eq!(v.pushed_by("/srv/pg/main", "db1"), Some(1));
    assert_eq!(v.pushed_by("/srv/pg/main/", "db1"), Some(1));
    assert_eq!(v.pushed_by("/srv/pg/copy", "db1"), Some(2));
    assert_eq!(v.pushed_by("/srv/pg/main", "db2"), None);
    // Production recovered in place later and went on as timeline 3.
    tl(&mut v, 3, 9..=9, "1\t0/8800000\tx\n", Some("/srv/pg/main"));
    assert_eq!(v.pushed_by("/srv/pg/main", "db1"), Some(3));
}

/// Azure dates objects to the whole second: timeline 1's newest segment, listed as
/// archived at second 201, may have been archived at any instant of it, so a target
/// 0.4 s into that second is within reach; a second later it is not.
#[test]
fn a_whole_second_archive_date_reaches_a_target_within_its_second() {
    let mut alone = forked();
    alone.timelines.remove(&2);
    let within = time(201) + jiff::SignedDuration::from_millis(400);
    let c = choose(
        &alone,
        "4f21c26c",
        snap(),
        &RecoveryTarget::Time(within),
        TimelineRequest::Source,
        &source(1, Found::Server),
    )
    .unwrap();
    assert_eq!(c.timeline, 1);
    let e = choose(
        &alone,
        "4f21c26c",
        snap(),
        &RecoveryTarget::Time(time(202)),
        TimelineRequest::Source,
        &source(1, Found::Server),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("no timeline reaches"), "{e}");
}

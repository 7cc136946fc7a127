//! Judging a whole cluster's archive on archives described by hand: which timeline is the
//! source's, what the others are to it, and the newest archive time on its line.

use super::*;

use crate::engine::postgres::timeline::tests::{SEG, time, tl_at as tl};

/// Production (/srv/pg/main) archived segments 1 to 20 on timeline 1, the last an hour ago
/// (second 0 is now - 3600); a side copy (/srv/pg/copy) forked timeline 2 at segment 5 and
/// has archived until now.
fn forked() -> ArchiveView {
    let mut v = ArchiveView {
        segment_size: SEG,
        ..Default::default()
    };
    tl(
        &mut v,
        1,
        1..=20,
        |n| n as i64 * 100,
        "",
        Some("/srv/pg/main"),
    );
    tl(
        &mut v,
        2,
        5..=30,
        |n| 3000 + n as i64 * 20,
        "1\t0/5800000\tbefore 2026-12-01 10:56:42+00\n",
        Some("/srv/pg/copy"),
    );
    v
}

/// A physical snapshot of cluster 42 taken from `dir` on db1, on timeline 1 at 0/2000028.
fn snapshot(dir: &str) -> Snapshot {
    let v = serde_json::json!({
        "source": "prod", "engine": "postgres", "kind": "physical", "tags": [],
        "started_at": time(0).to_string(), "finished_at": time(10).to_string(),
        "size": 1, "added": 1,
        "metadata": {"row_counts": {}, "schema_version": null, "server_version": "17",
                     "system_identifier": "42", "wal_segment_size": SEG,
                     "data_directory": dir},
        "wal": {"timeline": 1, "start_lsn": "0/2000028", "stop_lsn": "0/2000100"},
        "hostname": "db1", "program_version": "0", "files": []
    });
    serde_json::from_value(v).unwrap()
}

#[test]
fn the_source_is_the_timeline_its_own_data_directory_pushed_to_and_the_rest_are_forks() {
    let snap = snapshot("/srv/pg/main");
    let j = judge(forked(), None, Some(&snap));
    assert_eq!(
        j.source,
        SourceTimeline {
            id: 1,
            how: Found::Pushed
        }
    );
    assert_eq!((j.role(1), j.role(2)), (Role::Source, Role::Fork));
    assert_eq!(j.forks(), vec![2]);
    assert_eq!(j.branched(2), Some((1, Lsn::parse("0/5800000").unwrap())));
    assert_eq!(
        j.describe_fork(2),
        "timeline 2 (pushed from /srv/pg/copy on db1), branched from timeline 1 at 0/5800000"
    );
    // The fork archiving until now does not make the source's line look fresh.
    let (name, at) = j.newest().unwrap();
    assert_eq!(
        (name.as_str(), at),
        ("000000010000000000000014", time(2000))
    );
    assert_eq!(j.reach_from(&snap).unwrap().archived, Some(time(2000)));
    assert_eq!(j.reach_from(&snap).unwrap().lsn, Lsn(21 * SEG));
}

#[test]
fn the_server_wins_and_nothing_known_means_the_newest() {
    let snap = snapshot("/srv/pg/main");
    let j = judge(forked(), Some(2), Some(&snap));
    assert_eq!(
        j.source,
        SourceTimeline {
            id: 2,
            how: Found::Server
        }
    );
    assert_eq!((j.role(1), j.role(2)), (Role::Ancestor, Role::Source));
    assert!(j.forks().is_empty());
    // On timeline 2, timeline 1 counts only up to the segment holding the switch.
    let mut two = forked();
    two.timelines.get_mut(&2).unwrap().segments.clear();
    let j = judge(two, Some(2), Some(&snap));
    assert_eq!(j.newest().unwrap().0, "000000010000000000000005");
    // Records of another data directory say nothing about this one.
    let j = judge(forked(), None, Some(&snapshot("/srv/pg/other")));
    assert_eq!(
        j.source,
        SourceTimeline {
            id: 2,
            how: Found::Newest
        }
    );
    let j = judge(forked(), None, None);
    assert_eq!(j.source.id, 2);
    let j = judge(ArchiveView::default(), None, None);
    assert_eq!((j.source.id, j.newest()), (1, None));
}

#[test]
fn production_recovered_in_place_is_on_its_new_timeline() {
    let mut v = forked();
    // The real recovery of /srv/pg/main promoted to timeline 3, branching off timeline 1.
    tl(
        &mut v,
        3,
        9..=9,
        |_| 5000,
        "1\t0/8800000\tx\n",
        Some("/srv/pg/main"),
    );
    let j = judge(v, None, Some(&snapshot("/srv/pg/main")));
    assert_eq!(j.source.id, 3);
    assert_eq!((j.role(1), j.role(2)), (Role::Ancestor, Role::Fork));
    assert_eq!(j.newest().unwrap().0, "000000030000000000000009");
}

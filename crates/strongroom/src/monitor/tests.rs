//! Tests of the monitoring rules on constructed evidence with a faked clock: every rule, the
//! checklist, alert state changes and the metrics text.

use super::evaluate::evaluate;
use super::evidence::{Archiver, Evidence, SourceEvidence, WalNewest};
use super::*;
use crate::config::Config;
use crate::repository::journal::{DrillFigures, JournalRecord};
use crate::repository::snapshot::Snapshot;

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn hours(h: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(h)
}

fn snap(n: usize, kind: &str, finished: jiff::Timestamp, size: u64) -> Snapshot {
    let v = serde_json::json!({
        "source": "hotel", "engine": if kind == "full" { "sqlite" } else { "postgres" },
        "kind": kind, "tags": [],
        "started_at": (finished - jiff::SignedDuration::from_secs(10)).to_string(),
        "finished_at": finished.to_string(),
        "size": size, "added": size / 10,
        "metadata": {"row_counts": {"bookings": 1000, "users": 200}, "schema_version": null,
                     "server_version": "3", "system_identifier": "7300000000000000001"},
        "hostname": "h", "program_version": "0", "files": []
    });
    let mut s: Snapshot = serde_json::from_value(v).unwrap();
    s.id = format!("{n:08x}{}", "0".repeat(56));
    s
}

fn rec(job: &str, finished: jiff::Timestamp, ok: bool) -> JournalRecord {
    let mut r = JournalRecord::new(job, finished - jiff::SignedDuration::from_secs(10));
    r.finished_at = finished;
    r.seconds = 10.0;
    r.source = Some("hotel".into());
    r.ok = ok;
    if !ok {
        r.error = Some("it broke".into());
        r.error_kind = Some("source_failed".into());
    }
    r
}

/// A healthy history: 14 daily full backups up to `now - 1h`, verify, drill, check and forget
/// recently.
fn healthy(now: jiff::Timestamp) -> Evidence {
    let mut s = SourceEvidence {
        name: "hotel".into(),
        snapshots: Vec::new(),
        records: Vec::new(),
        archiver: None,
        copies: Vec::new(),
        slot: None,
        capture: None,
        continuous_sqlite: false,
    };
    for d in (0..14).rev() {
        let at = now - hours(1 + 24 * d);
        s.snapshots.push(snap(d as usize, "full", at, 50_000_000));
        let mut r = rec("backup", at, true);
        r.kind = Some("full".into());
        s.records.push(r);
    }
    s.records.push(rec("verify", now - hours(2), true));
    let mut drill = rec("drill", now - hours(30 * 24), true);
    drill.drill = Some(DrillFigures {
        rto_seconds: 42.0,
        rto_objective_seconds: 3600.0,
        rpo_seconds: Some(60.0),
        rpo_objective_seconds: 900.0,
        report: None,
    });
    s.records.push(drill);
    s.records.sort_by_key(|r| r.finished_at);
    let mut check = rec("check", now - hours(48), true);
    check.source = None;
    let mut forget = rec("forget", now - hours(20), true);
    forget.source = None;
    Evidence {
        sources: vec![s],
        repository_jobs: vec![check, forget],
        ..Evidence::default()
    }
}

fn level_of(h: &Health, name: &str) -> Level {
    h.sources[0]
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {:#?}", h.sources[0].checks))
        .level
}

#[test]
fn a_healthy_history_is_ok_and_ticks_the_whole_checklist() {
    let now = t("2026-12-01T12:00:00Z");
    let h = evaluate(&Config::default(), &healthy(now), now);
    assert!(h.ok, "{:#?}", h.sources[0].checks);
    assert!(h.sources[0].checklist.iter().all(|i| i.done));
    assert_eq!(h.sources[0].checklist.len(), 9);
}

#[test]
fn backups_that_stop_turn_critical_within_one_interval() {
    let start = t("2026-12-01T12:00:00Z");
    let ev = healthy(start);
    // The newest backup finished at start - 1h. Daily interval, grace 2h: late after 26h.
    for (after, want) in [(hours(24), Level::Ok), (hours(25), Level::Ok)] {
        let h = evaluate(&Config::default(), &ev, start + after);
        assert_eq!(level_of(&h, "backup.full"), want, "{after:?}");
    }
    let h = evaluate(&Config::default(), &ev, start + hours(26));
    assert_eq!(level_of(&h, "backup.full"), Level::Critical);
    assert_eq!(h.sources[0].level, Level::Critical);
    assert!(!h.ok);
    let daily = &h.sources[0].checklist[0];
    assert!(!daily.done && daily.period == "daily");
    let detail = &h.sources[0].checks[0].detail;
    assert!(detail.contains("backups have stopped"), "{detail}");
}

#[test]
fn per_source_intervals_and_objectives_apply() {
    let cfg = Config::parse(
        "[sources.hotel]\nurl = \"sqlite:/x.db\"\n[sources.hotel.objectives]\nrto = \"30s\"\ninterval = { full = \"1h\" }\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let now = t("2026-12-01T12:00:00Z");
    let h = evaluate(&cfg, &healthy(now), now + hours(1));
    assert_eq!(level_of(&h, "backup.full"), Level::Critical);
    // The last drill took 42 s against an RTO of 30 s.
    assert_eq!(level_of(&h, "drill.rto"), Level::Warning);
    let small = Config::parse(
        "[objectives]\nmin_size = \"100MB\"\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let h = evaluate(&small, &healthy(now), now);
    assert_eq!(level_of(&h, "size.full"), Level::Warning);
    assert_eq!(level_of(&h, "backup.full"), Level::Ok);
    let daily = &h.sources[0].checklist;
    assert!(daily[0].done, "the backup completed");
    assert!(!daily[1].done, "its size is not reasonable");
    assert!(
        Config::parse(
            "[objectives]\nmin_size = \"lots\"\n",
            std::path::Path::new("t.toml")
        )
        .is_err()
    );
    let e = cfg.objectives_of("hotel");
    let off = Config::parse(
        "[objectives.checklist]\ndrill = \"off\"\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let h = evaluate(&off, &healthy(now), now + hours(24 * 200));
    assert!(!h.sources[0].checks.iter().any(|c| c.name == "drill"));
    assert_eq!(e.rpo.as_secs(), 900);
    assert_eq!(e.interval["physical"].as_secs(), 6 * 3600);
}

#[test]
fn verify_drill_and_check_stale_missing_or_failed() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = healthy(now);
    // Stale: the drill is 30 days old; a quarter later it is stale.
    let h = evaluate(&Config::default(), &ev, now + hours(24 * 70));
    assert_eq!(level_of(&h, "drill"), Level::Warning);
    // A verify that failed after the last success is critical.
    ev.sources[0]
        .records
        .push(rec("verify", now - hours(1), false));
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "verify"), Level::Critical);
    // No check on record: a warning saying what to run.
    ev.repository_jobs.retain(|r| r.job != "check");
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "check"), Level::Warning);
    let c = h.sources[0]
        .checks
        .iter()
        .find(|c| c.name == "check")
        .unwrap();
    assert!(
        c.detail.contains("strongroom check --read-data"),
        "{}",
        c.detail
    );
    // A damaged manifest: critical for every source.
    ev.damaged_manifests.push("ab".repeat(32));
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "snapshots.damaged"), Level::Critical);
    ev.damaged_manifests.clear();
    // Retention never applied.
    ev.repository_jobs.clear();
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "retention"), Level::Warning);
}

#[test]
fn a_failed_job_warns_until_the_same_job_succeeds() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = healthy(now);
    ev.sources[0]
        .records
        .push(rec("backup", now - hours(1), false));
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "jobs"), Level::Warning);
    let mut ok = rec("backup", now - hours(0), true);
    ok.kind = Some("full".into());
    ev.sources[0].records.push(ok);
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "jobs"), Level::Ok);
}

#[test]
fn operator_mistakes_and_side_restores_are_not_the_sources_failures() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = healthy(now);
    let mut refused = rec("restore", now - hours(1), false);
    refused.error_kind = Some("target_refused".into());
    let mut usage = rec("backup", now - hours(1), false);
    usage.error_kind = Some("bad_input".into());
    let mut side = rec("restore", now - hours(1), false);
    side.error_kind = Some("local_io".into());
    side.side = true;
    ev.sources[0].records.extend([refused, usage, side]);
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(
        level_of(&h, "jobs"),
        Level::Ok,
        "{:#?}",
        h.sources[0].checks
    );
    // A restore onto the source's own database that failed is its failure.
    ev.sources[0]
        .records
        .push(rec("restore", now - hours(1), false));
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "jobs"), Level::Warning);
}

#[test]
fn nothing_to_judge_is_not_ok() {
    let h = evaluate(
        &Config::default(),
        &Evidence::default(),
        t("2026-12-01T12:00:00Z"),
    );
    assert!(!h.ok);
    assert_eq!(h.level(), Level::Warning);
}

#[test]
fn no_snapshot_at_all_is_critical() {
    let now = t("2026-12-01T12:00:00Z");
    let ev = Evidence {
        sources: vec![SourceEvidence {
            name: "hotel".into(),
            snapshots: vec![],
            records: vec![],
            archiver: None,
            copies: Vec::new(),
            slot: None,
            capture: None,
            continuous_sqlite: false,
        }],
        ..Evidence::default()
    };
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "backup"), Level::Critical);
}

fn physical(now: jiff::Timestamp, wal_age_minutes: i64) -> Evidence {
    let mut ev = healthy(now);
    let s = &mut ev.sources[0];
    s.snapshots = vec![snap(1, "physical", now - hours(2), 80_000_000)];
    ev.wal.insert(
        "7300000000000000001".into(),
        WalNewest {
            name: "000000010000000000000042".into(),
            modified: Some(now - jiff::SignedDuration::from_mins(wal_age_minutes)),
            files: 66,
            bytes: 1 << 20,
            ..WalNewest::default()
        },
    );
    ev
}

#[test]
fn wal_age_names_the_judged_timeline_and_the_forks_not_judged() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = physical(now, 20);
    let w = ev.wal.get_mut("7300000000000000001").unwrap();
    w.timeline = "timeline 1 (pushed from /srv/pg on db1), the source's".into();
    w.forks = vec![
        "timeline 2 (pushed from /srv/copy on db1), branched from timeline 1 at 0/5800000".into(),
    ];
    let h = evaluate(&Config::default(), &ev, now);
    let c = h.sources[0]
        .checks
        .iter()
        .find(|c| c.name == "wal.archive")
        .unwrap();
    assert_eq!(c.level, Level::Critical);
    assert!(
        c.detail.contains("(on timeline 1 (pushed from /srv/pg on db1), the source's; forks not judged: timeline 2"),
        "{}",
        c.detail
    );
    // Only forks archived: nothing on the source's timeline is nothing.
    let w = ev.wal.get_mut("7300000000000000001").unwrap();
    (w.name, w.modified) = (String::new(), None);
    let h = evaluate(&Config::default(), &ev, now);
    let c = h.sources[0]
        .checks
        .iter()
        .find(|c| c.name == "wal.archive")
        .unwrap();
    assert_eq!(c.level, Level::Critical);
    assert!(
        c.detail.starts_with("no WAL on timeline 1") && c.detail.contains("only forks: timeline 2"),
        "{}",
        c.detail
    );
}

#[test]
fn wal_archive_age_against_the_rpo() {
    let now = t("2026-12-01T12:00:00Z");
    let h = evaluate(&Config::default(), &physical(now, 10), now);
    assert_eq!(level_of(&h, "wal.archive"), Level::Ok);
    let h = evaluate(&Config::default(), &physical(now, 20), now);
    assert_eq!(level_of(&h, "wal.archive"), Level::Critical);
    // An idle server with archive_timeout within the RPO: nothing waits to be archived.
    let mut ev = physical(now, 20);
    ev.sources[0].archiver = Some(Ok(Archiver {
        archive_mode: "on".into(),
        archive_timeout: 300,
        archived_count: 66,
        last_archived_time: Some(now - jiff::SignedDuration::from_mins(20)),
        ..Archiver::default()
    }));
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "wal.archive"), Level::Ok);
    assert_eq!(level_of(&h, "wal.archiver"), Level::Ok);
    // The same server whose archiver fails since the last success: critical.
    if let Some(Ok(a)) = &mut ev.sources[0].archiver {
        a.failed_count = 3;
        a.last_failed_wal = Some("000000010000000000000043".into());
        a.last_failed_time = Some(now - jiff::SignedDuration::from_mins(1));
    }
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "wal.archiver"), Level::Critical);
    assert_eq!(level_of(&h, "wal.archive"), Level::Critical);
    // No archive at all for the cluster.
    let mut ev = physical(now, 1);
    ev.wal.clear();
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "wal.archive"), Level::Critical);
}

#[test]
fn anomalies_size_rows_and_duration() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = healthy(now);
    let h = evaluate(&Config::default(), &ev, now);
    for name in [
        "anomaly.size.full",
        "anomaly.rows.full",
        "anomaly.duration.full",
    ] {
        assert_eq!(level_of(&h, name), Level::Ok, "{name}");
    }
    let s = &mut ev.sources[0];
    let newest = s.snapshots.last_mut().unwrap();
    newest.size = 20_000_000;
    newest.metadata.row_counts.insert("bookings".into(), 300);
    newest.metadata.row_counts.remove("users");
    let last_backup = s
        .records
        .iter_mut()
        .rev()
        .find(|r| r.job == "backup")
        .unwrap();
    last_backup.seconds = 40.0;
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "anomaly.size.full"), Level::Warning);
    let rows = h.sources[0]
        .checks
        .iter()
        .find(|c| c.name == "anomaly.rows.full")
        .unwrap();
    // Data loss until someone says it was meant: critical, not a warning.
    assert_eq!(rows.level, Level::Critical);
    assert_eq!(h.sources[0].level, Level::Critical);
    assert!(
        rows.detail.contains("bookings 1000 → 300"),
        "{}",
        rows.detail
    );
    assert!(rows.detail.contains("users is gone"), "{}", rows.detail);
    assert_eq!(level_of(&h, "anomaly.duration.full"), Level::Warning);
    let item = h.sources[0]
        .checklist
        .iter()
        .find(|i| i.item == "Check backup file size is reasonable")
        .unwrap();
    assert!(!item.done);
}

#[test]
fn a_vanished_table_alone_is_critical_whatever_its_size() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = healthy(now);
    let s = &mut ev.sources[0];
    s.snapshots[12]
        .metadata
        .row_counts
        .insert("rooms".into(), 12);
    s.snapshots
        .last_mut()
        .unwrap()
        .metadata
        .row_counts
        .remove("bookings");
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "anomaly.rows.full"), Level::Critical);
    assert_eq!(h.sources[0].level, Level::Critical);
    // A table that had rows and vanished is judged however small it was.
    let s = &mut ev.sources[0];
    s.snapshots
        .last_mut()
        .unwrap()
        .metadata
        .row_counts
        .insert("bookings".into(), 1000);
    let h = evaluate(&Config::default(), &ev, now);
    let rows = h.sources[0]
        .checks
        .iter()
        .find(|c| c.name == "anomaly.rows.full")
        .unwrap();
    assert_eq!(rows.level, Level::Critical);
    assert!(
        rows.detail.contains("rooms is gone (had 12 rows)"),
        "{}",
        rows.detail
    );
}

#[test]
fn a_short_history_raises_no_anomaly() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = healthy(now);
    ev.sources[0].snapshots.drain(..11);
    ev.sources[0].snapshots.last_mut().unwrap().size = 1;
    let h = evaluate(&Config::default(), &ev, now);
    assert!(
        !h.sources[0]
            .checks
            .iter()
            .any(|c| c.name == "anomaly.size.full"),
        "two earlier snapshots are no history"
    );
}

fn memory_repo() -> crate::repository::Repository {
    let storage = crate::storage::Storage::from_url("memory://").unwrap();
    let kdf = crate::crypto::KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };
    crate::repository::Repository::init(storage, Some(b"pw"), kdf).unwrap()
}

#[test]
fn alerts_fire_on_changes_only_and_wait_for_delivery() {
    use notify::Told;
    let repo = memory_repo();
    let now = t("2026-12-01T12:00:00Z");
    let ev = healthy(now);
    let sent = std::cell::RefCell::new(Vec::new());
    let deliver = |a: &crate::alert::Alert| {
        sent.borrow_mut().push(a.clone());
        Told::Sent
    };
    // Ok at first: nothing to say.
    let h = evaluate(&Config::default(), &ev, now);
    assert!(notify::notify(&repo, &h, now, &deliver).unwrap().is_empty());
    // Backups stop: one alert, then silence while nothing changes.
    let later = now + hours(27);
    let h = evaluate(&Config::default(), &ev, later);
    let n = notify::notify(&repo, &h, later, &deliver).unwrap();
    assert_eq!((n.len(), n[0].to), (1, Level::Critical));
    assert!(
        notify::notify(&repo, &h, later + hours(1), &deliver)
            .unwrap()
            .is_empty()
    );
    let a = sent.borrow()[0].clone();
    assert_eq!(a.event, crate::alert::AlertEvent::StateChanged);
    assert_eq!(a.level, "critical");
    // It was seen ok first: the alert says so.
    assert_eq!(a.previous_level.as_deref(), Some("ok"));
    // A source first seen not ok claims no earlier level.
    let fresh = memory_repo();
    let n = notify::notify(&fresh, &h, later, &deliver).unwrap();
    assert_eq!(n[0].from, None);
    assert_eq!(sent.borrow().last().unwrap().previous_level, None);
    assert!(a.checks.iter().any(|c| c.name == "backup.full"));
    // A target that takes nothing: the change is not remembered, so it is tried again.
    let h_ok = evaluate(&Config::default(), &ev, now);
    let n = notify::notify(&repo, &h_ok, now, &|_| Told::Failed).unwrap();
    assert!(!n[0].delivered);
    let n = notify::notify(&repo, &h_ok, now, &deliver).unwrap();
    assert_eq!((n.len(), n[0].to, n[0].delivered), (1, Level::Ok, true));
    assert_eq!(n[0].from, Some(Level::Critical));
    assert_eq!(
        sent.borrow().last().unwrap().event,
        crate::alert::AlertEvent::Recovered
    );
    assert_eq!(
        notify::read_state(&repo).unwrap().sources["hotel"].level,
        Level::Ok
    );
}

#[test]
fn a_new_problem_alerts_even_when_the_level_stays() {
    use notify::Told;
    let repo = memory_repo();
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = healthy(now);
    // Critical already: backups stopped.
    let later = now + hours(27);
    let sent = std::cell::RefCell::new(Vec::new());
    let deliver = |a: &crate::alert::Alert| {
        sent.borrow_mut().push(a.clone());
        Told::Sent
    };
    let h = evaluate(&Config::default(), &ev, later);
    assert_eq!(notify::notify(&repo, &h, later, &deliver).unwrap().len(), 1);
    // bookings vanishes from the newest snapshot: critical still, but a new problem.
    let newest = ev.sources[0].snapshots.last_mut().unwrap();
    newest.metadata.row_counts.remove("bookings");
    let h = evaluate(&Config::default(), &ev, later);
    assert_eq!(h.sources[0].level, Level::Critical);
    let n = notify::notify(&repo, &h, later, &deliver).unwrap();
    assert_eq!(n.len(), 1, "a new failing check is alerted");
    assert_eq!(n[0].new_checks, ["anomaly.rows.full"]);
    assert_eq!(
        (n[0].from, n[0].to),
        (Some(Level::Critical), Level::Critical)
    );
    let a = sent.borrow().last().unwrap().clone();
    assert_eq!(a.new_checks, ["anomaly.rows.full"]);
    assert!(a.summary.contains("new problem"), "{}", a.summary);
    assert!(a.summary.contains("bookings is gone"), "{}", a.summary);
    // Told once.
    assert!(
        notify::notify(&repo, &h, later, &deliver)
            .unwrap()
            .is_empty()
    );
    // It goes away (quietly remembered), then comes back: new again.
    ev.sources[0]
        .snapshots
        .last_mut()
        .unwrap()
        .metadata
        .row_counts
        .insert("bookings".into(), 1000);
    let h_gone = evaluate(&Config::default(), &ev, later);
    assert!(
        notify::notify(&repo, &h_gone, later, &deliver)
            .unwrap()
            .is_empty()
    );
    assert_eq!(notify::notify(&repo, &h, later, &deliver).unwrap().len(), 1);
    assert_eq!(sent.borrow().len(), 3);
}

#[test]
fn metrics_text_is_well_formed() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = physical(now, 3);
    ev.sources[0].name = "ho\"tel".into();
    ev.repository_bytes = Some(1234);
    let h = evaluate(&Config::default(), &ev, now);
    let text = metrics::render(&Config::default(), &ev, &h, now);
    assert!(
        text.contains("strongroom_repository_size_bytes 1234\n"),
        "{text}"
    );
    assert!(
        text.contains("strongroom_drill_rto_seconds{source=\"ho\\\"tel\"} 42\n"),
        "{text}"
    );
    assert!(text.contains("strongroom_wal_archive_age_seconds{source=\"ho\\\"tel\",cluster=\"7300000000000000001\"} 180\n"), "{text}");
    let mut families = 0;
    for line in text.lines() {
        if line.starts_with("# TYPE ") {
            families += 1;
        } else if !line.starts_with("# HELP ") {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    assert!(families >= 15, "{text}");
}

/// `healthy(now)` with one copy, `offsite`, that lacks the newest snapshot (finished an
/// hour before `now`) since `behind_minutes` ago, or holds everything (`None`).
fn with_copy(now: jiff::Timestamp, behind_minutes: Option<i64>) -> Evidence {
    use crate::copies::{SnapshotMark, SourceStanding};
    let mut ev = healthy(now);
    let s = &mut ev.sources[0];
    let mark = |x: &Snapshot| SnapshotMark {
        id: x.id.clone(),
        source: x.source.clone(),
        source_location: None,
        kind: x.kind.to_string(),
        finished_at: x.finished_at,
    };
    let newest = mark(s.snapshots.last().unwrap());
    let before = mark(&s.snapshots[s.snapshots.len() - 2]);
    let standing = match behind_minutes {
        None => SourceStanding {
            primary_newest: Some(newest.clone()),
            copy_newest: Some(newest),
            snapshots_missing: 0,
            behind: Default::default(),
            wal: None,
        },
        Some(m) => SourceStanding {
            primary_newest: Some(newest),
            copy_newest: Some(before),
            snapshots_missing: 1,
            behind: [("full".to_string(), now - jiff::SignedDuration::from_mins(m))].into(),
            wal: None,
        },
    };
    s.copies = vec![super::evidence::SourceCopy {
        name: "offsite".into(),
        repository: "s3://offsite/hotel".into(),
        standing: Ok(standing),
    }];
    ev
}

#[test]
fn a_copy_that_trails_past_the_rpo_warns_and_past_an_interval_more_is_critical() {
    let now = t("2026-12-01T12:00:00Z");
    let detail = |h: &Health| {
        h.sources[0]
            .checks
            .iter()
            .find(|c| c.name == "copy.offsite")
            .unwrap()
            .detail
            .clone()
    };
    let h = evaluate(&Config::default(), &with_copy(now, None), now);
    assert!(h.ok, "{:#?}", h.sources[0].checks);
    assert_eq!(level_of(&h, "copy.offsite"), Level::Ok);
    assert!(
        detail(&h).starts_with(
            "copy offsite (s3://offsite/hotel): newest snapshot 00000000, the primary's too; no lag"
        ),
        "{}",
        detail(&h)
    );
    // Within the RPO (15 min): ok, with the lag said.
    let h = evaluate(&Config::default(), &with_copy(now, Some(14)), now);
    assert_eq!(level_of(&h, "copy.offsite"), Level::Ok);
    assert!(
        detail(&h).contains("14m behind the primary, within the RPO of 15m"),
        "{}",
        detail(&h)
    );
    // Past it: a warning, and the source with it.
    let h = evaluate(&Config::default(), &with_copy(now, Some(16)), now);
    assert_eq!(level_of(&h, "copy.offsite"), Level::Warning);
    assert_eq!(h.sources[0].level, Level::Warning);
    let d = detail(&h);
    assert!(
        d.contains("newest snapshot 00000001 against the primary's 00000000, 1 missing")
            && d.contains("16m behind the primary, over the RPO of 15m")
            && d.contains("strongroom copy"),
        "{d}"
    );
    // Past the RPO plus the full interval (a day): critical, copies have stopped.
    let h = evaluate(&Config::default(), &with_copy(now, Some(24 * 60 + 14)), now);
    assert_eq!(level_of(&h, "copy.offsite"), Level::Warning);
    let h = evaluate(&Config::default(), &with_copy(now, Some(24 * 60 + 16)), now);
    assert_eq!(level_of(&h, "copy.offsite"), Level::Critical);
    assert!(
        detail(&h)
            .contains("over the RPO of 15m plus the full interval of 24h: copies have stopped"),
        "{}",
        detail(&h)
    );
    // WAL past the copy's newest segment is judged with the physical interval (6 h).
    let mut ev = with_copy(now, None);
    if let Ok(st) = &mut ev.sources[0].copies[0].standing {
        st.wal = Some(crate::copies::WalStanding {
            cluster: "73".into(),
            primary_newest: Some("000000010000000000000009".into()),
            copy_newest: Some("000000010000000000000007".into()),
            files_missing: 2,
            segments_behind: 2,
            behind_since: Some(now - hours(7)),
        });
    }
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "copy.offsite"), Level::Critical);
    assert!(
        detail(&h).contains("WAL to 000000010000000000000007 against the primary's 000000010000000000000009 (2 segments behind)"),
        "{}",
        detail(&h)
    );
    // A copy that cannot be read: critical, its sentence as it was gathered.
    let mut ev = with_copy(now, None);
    ev.sources[0].copies[0].standing = Err("copy offsite cannot be read: wrong password".into());
    let h = evaluate(&Config::default(), &ev, now);
    assert_eq!(level_of(&h, "copy.offsite"), Level::Critical);
    assert_eq!(detail(&h), "copy offsite cannot be read: wrong password");
}

#[test]
fn metrics_carry_each_copys_lag_and_whether_it_could_be_read() {
    let now = t("2026-12-01T12:00:00Z");
    let mut ev = with_copy(now, Some(20));
    ev.copies = vec![
        super::evidence::CopyEvidence {
            name: "offsite".into(),
            repository: "s3://offsite/hotel".into(),
            standing: Err("unused".into()),
        },
        super::evidence::CopyEvidence {
            name: "usb".into(),
            repository: "/mnt/usb".into(),
            standing: Err("cannot be read".into()),
        },
    ];
    let h = evaluate(&Config::default(), &ev, now);
    let text = metrics::render(&Config::default(), &ev, &h, now);
    for want in [
        "strongroom_copy_lag_seconds{source=\"hotel\",copy=\"offsite\"} 1200\n",
        "strongroom_copy_snapshots_missing{source=\"hotel\",copy=\"offsite\"} 1\n",
        "strongroom_copy_readable{copy=\"usb\"} 0\n",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
}

#[test]
fn durations_read_well() {
    let d = std::time::Duration::from_secs;
    assert_eq!(human_duration(d(40)), "40s");
    assert_eq!(human_duration(d(900)), "15m");
    assert_eq!(human_duration(d(26 * 3600 + 300)), "26h 5m");
    assert_eq!(human_duration(d(3 * 86_400 + 4 * 3600)), "3d 4h");
}

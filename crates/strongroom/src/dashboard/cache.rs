//! The dashboard's lists, read in the background: snapshots, the journal, WAL archiving
//! and the last drill's report, so that no request reads the store.
//!
//! Owns one refresh thread that reads the repository at start, after each job (the daemon's
//! `on_job_end`), after each action taken from the page, and every `status_interval`; and
//! what it makes of what it read: per source, a timeline of events, the series the page
//! plots and the last drill's report (serialized once per refresh), and the whole journal
//! in the order the page lists it (failures first, newest first). Requests take the latest
//! [`Data`] and page through it. Must not judge health (the daemon's [`crate::daemon::watch`]
//! does) nor write anything.
//!
//! Snapshots come from [`Repository::snapshots`] for now; a local manifest-summary cache
//! in the library will make the first read fast on large repositories.

use crate::config::Config;
use crate::engine::postgres::physical::PhysicalMetadata;
use crate::engine::postgres::timeline::judge;
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{BackupKind, Snapshot};
use crossbeam_channel::{Receiver, Sender};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The most timeline events kept per source (newest first).
pub const MAX_EVENTS: usize = 500;
/// The most points kept per plotted series (newest).
pub const MAX_POINTS: usize = 1000;
/// Hours of WAL archiving plotted.
const WAL_HOURS: i64 = 7 * 24;

/// One journal line as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The configured source the record belongs to (its config name), when it has one.
    pub source_name: Option<String>,
    /// The record.
    #[serde(flatten)]
    pub record: JournalRecord,
}

/// One event of a source's timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// When it ended.
    pub at: Timestamp,
    /// `backup`, `verify`, `drill`, `copy`, `wal push`, `dashboard`, …
    pub job: String,
    /// Whether it went well.
    pub ok: bool,
    /// What happened, in a sentence.
    pub text: String,
}

/// One backup, for the plots.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// When it finished.
    pub at: Timestamp,
    /// `full`, `logical` or `physical`.
    pub kind: String,
    /// Logical bytes.
    pub size: u64,
    /// Bytes it added to the repository.
    pub added: u64,
    /// How long it took.
    pub seconds: f64,
}

/// How long after its backup a copy landed.
#[derive(Clone, Debug, Serialize)]
pub struct Lag {
    /// When the copy finished.
    pub at: Timestamp,
    /// The destination.
    pub repository: String,
    /// Seconds from the newest backup before the copy started to the copy's end.
    pub seconds: f64,
}

/// What the page shows of one source beyond its status checks.
#[derive(Clone, Debug, Serialize)]
pub struct SourceData {
    /// The source's name.
    pub source: String,
    /// Snapshots held.
    pub snapshots: usize,
    /// Journal records of it.
    pub records: usize,
    /// Newest first, at most [`MAX_EVENTS`].
    pub events: Vec<Event>,
    /// Oldest first, at most [`MAX_POINTS`].
    pub backups: Vec<Point>,
    /// WAL files archived per hour over the last week (hour start, files), PostgreSQL only.
    pub wal_per_hour: Vec<(Timestamp, u32)>,
    /// Copy lags, oldest first.
    pub copy_lag: Vec<Lag>,
    /// The last drill's report, when one was kept and could be read.
    pub drill: Option<crate::jobs::drill::DrillReport>,
    /// The same as Markdown, for reading.
    pub drill_markdown: Option<String>,
}

/// One refresh's result.
pub struct Data {
    /// When it was read.
    pub at: Timestamp,
    /// Every journal record, failures first, then newest first.
    pub journal: Vec<Row>,
    /// Per source, its [`SourceData`] as JSON.
    pub sources: BTreeMap<String, Arc<String>>,
    /// Snapshots in the repository.
    pub snapshots: usize,
}

/// The latest [`Data`], refreshed in the background.
pub struct Cache {
    latest: RwLock<Option<Arc<Data>>>,
    error: RwLock<Option<String>>,
    wake: Sender<()>,
}

impl Cache {
    /// The latest data, once the first refresh is done.
    pub fn latest(&self) -> Option<Arc<Data>> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the last refresh failed, when it did.
    pub fn error(&self) -> Option<String> {
        self.error.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks for a refresh now (after an action taken from the page).
    pub fn refresh_soon(&self) {
        let _ = self.wake.send(());
    }
}

/// Starts refreshing: at once, then whenever `job_ended` or [`Cache::refresh_soon`] says so,
/// and at least every `interval`.
pub fn spawn(
    repo: Arc<Repository>,
    config: Arc<Config>,
    interval: Duration,
    job_ended: Receiver<()>,
) -> Arc<Cache> {
    let (wake, woken) = crossbeam_channel::unbounded();
    let cache = Arc::new(Cache {
        latest: RwLock::new(None),
        error: RwLock::new(None),
        wake,
    });
    let c = Arc::clone(&cache);
    std::thread::Builder::new()
        .name("dashboard-cache".into())
        .spawn(move || {
            let mut drills = DrillReports::default();
            loop {
                match read(&repo, &config, &mut drills) {
                    Ok(d) => {
                        *c.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(d));
                        *c.error.write().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    Err(e) => {
                        tracing::warn!("the dashboard could not read the repository: {e}");
                        *c.error.write().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                }
                crossbeam_channel::select! {
                    recv(job_ended) -> _ => {},
                    recv(woken) -> _ => {},
                    default(interval) => {},
                }
                // Several wakes together are one refresh.
                while job_ended.try_recv().is_ok() || woken.try_recv().is_ok() {}
            }
        })
        .expect("a thread starts");
    cache
}

/// Drill reports already read, by object key: a report never changes.
#[derive(Default)]
struct DrillReports(BTreeMap<String, crate::jobs::drill::DrillReport>);

impl DrillReports {
    fn get(&mut self, repo: &Repository, key: &str) -> Option<crate::jobs::drill::DrillReport> {
        if !self.0.contains_key(key) {
            match crate::jobs::drill::read_report(repo, key) {
                Ok(r) => {
                    self.0.insert(key.to_string(), r);
                }
                Err(e) => {
                    tracing::warn!("the dashboard cannot read the drill report {key}: {e}");
                    return None;
                }
            }
        }
        self.0.get(key).cloned()
    }
}

fn read(repo: &Repository, config: &Config, drills: &mut DrillReports) -> crate::Result<Data> {
    // Headers from the local cache (one listing, new manifests only); a damaged manifest is
    // `check`'s and `status`'s to report, the page shows the rest.
    let snapshots = repo.snapshot_headers()?.0;
    let records = repo.journal_records()?;
    let now = Timestamp::now();
    let mut names: Vec<String> = config.sources.keys().cloned().collect();
    // Sources backed up without a config entry are shown under what they recorded.
    for s in &snapshots {
        if !names
            .iter()
            .any(|n| config.source_match(n).matches(&s.source))
        {
            names.push(s.source.clone());
        }
    }
    let matchers: Vec<(String, crate::source::SourceMatch)> = names
        .iter()
        .map(|n| (n.clone(), config.source_match(n)))
        .collect();
    let name_of = |recorded: &str| {
        matchers
            .iter()
            .find(|(_, m)| m.matches(recorded))
            .map(|(n, _)| n.clone())
    };
    let rows: Vec<Row> = records
        .iter()
        .map(|r| Row {
            source_name: r.source.as_deref().and_then(name_of),
            record: r.clone(),
        })
        .collect();
    // Each snapshot and record is matched once, however many sources there are.
    let mut snaps_of: HashMap<String, Vec<&Snapshot>> = HashMap::new();
    for s in &snapshots {
        if let Some(n) = name_of(&s.source) {
            snaps_of.entry(n).or_default().push(s);
        }
    }
    let mut recs_of: HashMap<&str, Vec<&JournalRecord>> = HashMap::new();
    for r in &rows {
        if let Some(n) = r.source_name.as_deref() {
            recs_of.entry(n).or_default().push(&r.record);
        }
    }
    let mut sources = BTreeMap::new();
    for name in &names {
        let snaps = snaps_of.remove(name).unwrap_or_default();
        let recs = recs_of.remove(name.as_str()).unwrap_or_default();
        let data = source_data(repo, name, &snaps, &recs, now, drills);
        let json = serde_json::to_string(&data).expect("serializes");
        sources.insert(name.clone(), Arc::new(json));
    }
    let mut journal = rows;
    journal.sort_by(|a, b| {
        a.record
            .ok
            .cmp(&b.record.ok)
            .then(b.record.finished_at.cmp(&a.record.finished_at))
    });
    Ok(Data {
        at: now,
        journal,
        sources,
        snapshots: snapshots.len(),
    })
}

/// What one record says, in a sentence.
pub fn describe(r: &JournalRecord) -> String {
    let what = match (r.job.as_str(), r.kind.as_deref()) {
        ("backup", Some(k)) => format!("{k} backup"),
        ("dashboard", Some(action)) => format!("dashboard: {action}"),
        (job, _) => job.to_string(),
    };
    let by =
        r.by.as_deref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default();
    if !r.ok {
        return format!(
            "{what}{by} failed: {}",
            r.error.as_deref().unwrap_or("no reason recorded")
        );
    }
    let took = crate::jobs::drill::report::duration(r.seconds.max(0.0));
    match (r.job.as_str(), &r.drill, &r.copy) {
        ("drill", Some(d), _) => format!(
            "drill recovered in {} (objective {}), data-loss window {}",
            crate::jobs::drill::report::duration(d.rto_seconds),
            crate::jobs::drill::report::duration(d.rto_objective_seconds),
            d.rpo_seconds
                .map(crate::jobs::drill::report::duration)
                .unwrap_or_else(|| "unknown".into())
        ),
        ("copy", _, Some(c)) => format!(
            "copy to {}: {} snapshots and {} WAL files copied in {took}",
            c.repository, c.snapshots_copied, c.wal_files_copied
        ),
        ("backup", _, _) => format!(
            "{what} of {} ({} added) in {took}",
            crate::human_bytes(r.size),
            crate::human_bytes(r.added)
        ),
        ("dashboard", _, _) => format!("{what}{by}"),
        _ => format!("{what} succeeded in {took}"),
    }
}

fn source_data(
    repo: &Repository,
    name: &str,
    snaps: &[&Snapshot],
    recs: &[&JournalRecord],
    now: Timestamp,
    drills: &mut DrillReports,
) -> SourceData {
    let recorded: HashSet<&str> = recs
        .iter()
        .filter(|r| r.job == "backup")
        .filter_map(|r| r.snapshot.as_deref())
        .collect();
    let mut events: Vec<Event> = recs
        .iter()
        .map(|r| Event {
            at: r.finished_at,
            job: r.job.clone(),
            ok: r.ok,
            text: describe(r),
        })
        .collect();
    // A snapshot without its backup's record (written by an older version, or its record
    // waits locally) is still a backup on the timeline.
    events.extend(
        snaps
            .iter()
            .filter(|s| !recorded.contains(s.id.as_str()))
            .map(|s| Event {
                at: s.finished_at,
                job: "backup".into(),
                ok: true,
                text: format!(
                    "{} backup of {} ({} added), snapshot {}",
                    s.kind,
                    crate::human_bytes(s.size),
                    crate::human_bytes(s.added),
                    &s.id[..s.id.len().min(8)]
                ),
            }),
    );
    let wal_per_hour = wal_per_hour(repo, snaps, now);
    events.extend(
        wal_per_hour
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(hour, n)| Event {
                at: *hour,
                job: "wal archive".into(),
                ok: true,
                text: format!(
                    "{n} WAL file{} archived in the hour from {}",
                    if *n == 1 { "" } else { "s" },
                    hour.strftime("%Y-%m-%d %H:00 UTC")
                ),
            }),
    );
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    events.truncate(MAX_EVENTS);
    let mut backups: Vec<Point> = snaps
        .iter()
        .map(|s| Point {
            at: s.finished_at,
            kind: s.kind.to_string(),
            size: s.size,
            added: s.added,
            seconds: (s.finished_at - s.started_at)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0),
        })
        .collect();
    backups.sort_by_key(|p| p.at);
    let drop = backups.len().saturating_sub(MAX_POINTS);
    backups.drain(..drop);
    let copy_lag = copy_lags(snaps, recs);
    let drill = recs
        .iter()
        .rev()
        .find(|r| r.job == "drill")
        .and_then(|r| r.drill.as_ref())
        .and_then(|d| d.report.as_deref())
        .and_then(|key| drills.get(repo, key));
    SourceData {
        source: name.to_string(),
        snapshots: snaps.len(),
        records: recs.len(),
        events,
        backups,
        wal_per_hour,
        copy_lag,
        drill_markdown: drill.as_ref().map(crate::jobs::drill::report::markdown),
        drill,
    }
}

/// For each successful copy, how long after the newest backup before it the copy landed.
fn copy_lags(snaps: &[&Snapshot], recs: &[&JournalRecord]) -> Vec<Lag> {
    let mut finished: Vec<Timestamp> = snaps.iter().map(|s| s.finished_at).collect();
    finished.sort();
    let mut out: Vec<Lag> = recs
        .iter()
        .filter(|r| r.job == "copy" && r.ok)
        .filter_map(|r| {
            let c = r.copy.as_ref()?;
            let i = finished.partition_point(|t| *t <= r.started_at);
            let newest = finished.get(i.checked_sub(1)?)?;
            Some(Lag {
                at: r.finished_at,
                repository: c.repository.clone(),
                seconds: (r.finished_at - *newest)
                    .total(jiff::Unit::Second)
                    .unwrap_or(0.0),
            })
        })
        .collect();
    let drop = out.len().saturating_sub(MAX_POINTS);
    out.drain(..drop);
    out
}

/// WAL files archived per hour over the last week, for the clusters of the source's
/// physical snapshots (none for other sources).
fn wal_per_hour(repo: &Repository, snaps: &[&Snapshot], now: Timestamp) -> Vec<(Timestamp, u32)> {
    let mut clusters: Vec<String> = Vec::new();
    for s in snaps.iter().filter(|s| s.kind == BackupKind::Physical) {
        if let Some(id) = PhysicalMetadata::of(s).system_identifier
            && !clusters.contains(&id)
        {
            clusters.push(id);
        }
    }
    if clusters.is_empty() {
        return Vec::new();
    }
    let owned: Vec<Snapshot> = snaps.iter().map(|s| (*s).clone()).collect();
    let mut written: Vec<Timestamp> = Vec::new();
    for cluster in clusters {
        match judge::read(repo, &cluster, &owned, None) {
            Ok(j) => written.extend(
                j.view
                    .timelines
                    .values()
                    .flat_map(|tl| tl.segments.values().flatten().copied()),
            ),
            Err(e) => {
                tracing::warn!("the dashboard cannot read the WAL archive of {cluster}: {e}")
            }
        }
    }
    hourly(&written, now)
}

/// How many of `times` fall in each of the [`WAL_HOURS`] hours up to `now`'s (hour start,
/// count), oldest first.
fn hourly(times: &[Timestamp], now: Timestamp) -> Vec<(Timestamp, u32)> {
    let start = now.as_second() - now.as_second().rem_euclid(3600) - (WAL_HOURS - 1) * 3600;
    let mut hours = vec![0u32; WAL_HOURS as usize];
    for t in times {
        let i = (t.as_second() - start).div_euclid(3600);
        if (0..WAL_HOURS).contains(&i) {
            hours[i as usize] += 1;
        }
    }
    hours
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            (
                Timestamp::from_second(start + i as i64 * 3600).unwrap_or(now),
                n,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(job: &str, at: i64, ok: bool) -> JournalRecord {
        let t = Timestamp::from_second(1_790_000_000 + at).unwrap();
        let mut r = JournalRecord::new(job, t);
        r.finished_at = t;
        r.seconds = 2.0;
        r.ok = ok;
        if !ok {
            r.error = Some("the store did not answer".into());
        }
        r
    }

    #[test]
    fn records_read_as_sentences() {
        let mut b = rec("backup", 0, true);
        b.kind = Some("full".into());
        b.size = 2_000_000;
        b.added = 1000;
        assert_eq!(
            describe(&b),
            "full backup of 1.9 MiB (1000 B added) in 2.00 s"
        );
        let mut f = rec("verify", 0, false);
        f.error = Some("check \"bookings exist\" failed".into());
        assert_eq!(
            describe(&f),
            "verify failed: check \"bookings exist\" failed"
        );
        let mut d = rec("dashboard", 0, true);
        d.kind = Some("full backup asked for".into());
        d.by = Some("ann".into());
        assert_eq!(describe(&d), "dashboard: full backup asked for by ann");
    }

    #[test]
    fn wal_files_are_counted_in_the_hour_they_were_written_over_the_last_week() {
        let now = Timestamp::from_second(1_789_999_200 + 1800).unwrap(); // half past an hour
        let hour = now.as_second() - 1800;
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        let times = [
            at(hour),                  // this hour
            at(hour + 1799),           // this hour
            at(hour - 1),              // the hour before
            at(hour - 167 * 3600),     // the first hour shown
            at(hour - 167 * 3600 - 1), // too old
            at(hour + 3600),           // after now's hour
        ];
        let h = hourly(&times, now);
        assert_eq!(h.len(), 168);
        assert_eq!(h[167], (at(hour), 2));
        assert_eq!(h[166].1, 1);
        assert_eq!(h[0], (at(hour - 167 * 3600), 1));
        assert_eq!(h.iter().map(|(_, n)| n).sum::<u32>(), 4);
    }
}

//! Recovery drills: a timed rehearsal of a real recovery into a scratch place.
//!
//! Owns the drill as a job: which snapshot (random among the source's recent ones, or the
//! one asked for; [`pick`]), where a physical snapshot's recovery stops (a random WAL
//! position after it), timing each phase of the test restore (fetch, restore, recovery,
//! checks), the measured RTO and the RPO the repository gives now, both against the
//! source's objectives, and keeping the report: a sealed object under `drills/` and a
//! journal record with the figures. Reading earlier drills back ([`history`]) is here too;
//! Markdown is [`report`]'s.
//!
//! Must not touch the source's database, must not run restore hooks, and must not let a
//! restored copy reach the repository (the engines' test restores guarantee it: scratch
//! places, throwaway servers with archiving off, everything removed). Reads no clock deep
//! inside: the caller passes `now`.

pub mod pick;
pub mod report;

use crate::config::Config;
use crate::engine::postgres::cluster::Lsn;
use crate::engine::postgres::physical::span;
use crate::engine::{CheckOutcome, Phases, RecoveryTarget, Scratch};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::journal::{DrillFigures, JournalQuery, JournalRecord};
use crate::repository::layout::ObjectKind;
use crate::repository::snapshot::{BackupKind, Filter, Snapshot};
use crate::source::SourceMatch;
use pick::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Associated data sealed with every drill report: a report cannot pass for another object.
const DRILL_AAD: &[u8] = b"strongroom drill report";

/// The environment variable that fixes a drill's random choices (the CLI reads it).
pub const SEED_VAR: &str = "STRONGROOM_DRILL_SEED";

/// One timed phase.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    /// `fetch`, `restore`, `recovery` or `checks`.
    pub name: String,
    /// Seconds it took.
    pub seconds: f64,
}

/// What a drill did and measured (contract: `drill --json`); also the kept report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DrillReport {
    /// Whether the recovery worked and every check passed (objectives are reported apart).
    pub ok: bool,
    /// The snapshot drilled (full id).
    pub snapshot: String,
    /// Its source, as recorded.
    pub source: String,
    /// Its engine (`sqlite`, `postgres`).
    pub engine: String,
    /// Its kind (`full`, `logical`, `physical`).
    pub kind: String,
    /// When the snapshot was finished.
    pub snapshot_finished_at: jiff::Timestamp,
    /// When the drill started.
    pub started_at: jiff::Timestamp,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
    /// The seed of the random choices (`STRONGROOM_DRILL_SEED` replays them).
    pub seed: u64,
    /// How the snapshot was chosen, in words.
    pub choice: String,
    /// Where a physical snapshot's recovery was sent, in words; `None` for other kinds.
    pub recovery_target: Option<String>,
    /// Measured time to recover: the sum of the phases.
    pub rto_seconds: f64,
    /// The recovery time objective.
    pub rto_objective_seconds: f64,
    /// Whether the measured RTO is within its objective.
    pub rto_met: bool,
    /// The data-loss window the repository gives now (see `rpo_basis`).
    pub rpo_seconds: f64,
    /// The recovery point objective.
    pub rpo_objective_seconds: f64,
    /// Whether the RPO is within its objective.
    pub rpo_met: bool,
    /// What the RPO was measured from, in words.
    pub rpo_basis: String,
    /// Each phase with its time, in order.
    pub phases: Vec<Phase>,
    /// Each check, as verify reports them.
    pub checks: Vec<CheckOutcome>,
    /// Why the drill failed, when it did.
    pub error: Option<String>,
    /// The failure's stable kind.
    pub error_kind: Option<String>,
    /// The kept report's object key (`drills/…`); `None` when it could not be written.
    pub report: Option<String>,
    /// The host that ran it.
    pub hostname: String,
}

/// What to drill and with what.
pub struct Plan<'a> {
    /// Which snapshots may be drilled (`--source`, `--tag`).
    pub filter: Filter,
    /// A snapshot reference (`--snapshot`); `None` picks at random among recent ones.
    pub reference: Option<String>,
    /// Seed of the random choices.
    pub seed: u64,
    /// The time the drill starts (RPO is measured at it).
    pub now: jiff::Timestamp,
    /// The configuration: objectives, sources and their checks.
    pub config: &'a Config,
    /// Where test restores happen.
    pub scratch: Scratch,
}

/// Runs a drill: picks a snapshot, test-restores it into a scratch place timing each phase,
/// measures RTO and RPO against the objectives, keeps the report and journals it. A drill
/// that fails (damage, a failed check) still returns its report, with `ok` false; an error
/// means no snapshot could be chosen or the repository could not be read at all.
pub fn run(repo: &Repository, plan: &Plan<'_>, progress: &dyn Progress) -> Result<DrillReport> {
    repo.require_full("run a recovery drill")?;
    let _lock = repo.read_lock("drill");
    let all = repo.snapshots_lenient()?.0;
    let mut rng = Rng::new(plan.seed);
    let (snap, choice) = match &plan.reference {
        Some(r) => (
            repo.resolve_one_source(r, &plan.filter)?,
            format!("asked for as {r:?}"),
        ),
        None => pick::choose(&all, &plan.filter, plan.now, &mut rng)?,
    };
    tracing::info!(snapshot = snap.short_id(), seed = plan.seed, "{choice}");
    let _running = repo.job_started("drill", Some(&snap.source), Some(&snap.id), plan.now);
    let t = Instant::now();
    let phases = Phases::default();
    phases.begin("fetch");
    // What a recovery reads before the first byte of data: the manifest (authenticated
    // again) and the index.
    let fetched = repo.read_snapshot(&snap.id).and_then(|_| repo.load_index());
    let (recovery, recovery_words) = recovery_point(repo, &snap, &mut rng);
    let scratch = Scratch {
        recovery,
        phases: phases.clone(),
        ..plan.scratch.clone()
    };
    let (checks, kind) = match &fetched {
        Ok(index) => crate::jobs::verify::test_restore(
            repo,
            index,
            &snap,
            &|s| plan.config.source_for(s),
            &scratch,
            progress,
        ),
        Err(e) => (
            vec![CheckOutcome {
                name: "fetch".into(),
                ok: false,
                detail: format!("the snapshot or the repository index cannot be read: {e}"),
            }],
            e.kind(),
        ),
    };
    let phases: Vec<Phase> = phases
        .durations()
        .into_iter()
        .map(|(name, d)| Phase {
            name,
            seconds: round3(d.as_secs_f64()),
        })
        .collect();
    let rto = round3(phases.iter().map(|p| p.seconds).sum());
    let objectives = plan.config.objectives_of(&snap.source);
    let rpo = measure_rpo(repo, &all, &snap, plan.now);
    let ok = checks.iter().all(|c| c.ok);
    let finished_at = plan.now
        + jiff::SignedDuration::try_from(t.elapsed()).unwrap_or(jiff::SignedDuration::ZERO);
    let mut report = DrillReport {
        ok,
        snapshot: snap.id.clone(),
        source: snap.source.clone(),
        engine: snap.engine.to_string(),
        kind: snap.kind.to_string(),
        snapshot_finished_at: snap.finished_at,
        started_at: plan.now,
        finished_at,
        seed: plan.seed,
        choice,
        recovery_target: recovery_words,
        rto_seconds: rto,
        rto_objective_seconds: objectives.rto.as_secs_f64(),
        rto_met: rto <= objectives.rto.as_secs_f64(),
        rpo_seconds: round3(rpo.0),
        rpo_objective_seconds: objectives.rpo.as_secs_f64(),
        rpo_met: rpo.0 <= objectives.rpo.as_secs_f64(),
        rpo_basis: rpo.1,
        phases,
        checks,
        error: None,
        error_kind: None,
        report: None,
        hostname: crate::hostname(),
    };
    if !ok {
        report.error = Some(
            report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; "),
        );
        report.error_kind = Some(kind.name().into());
    }
    match keep(repo, &mut report) {
        Ok(key) => report.report = Some(key),
        Err(e) => tracing::warn!("could not keep the drill report in the repository: {e}"),
    }
    journal(repo, &report, snap.size);
    Ok(report)
}

/// Rounds to milliseconds.
fn round3(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// Where a physical snapshot's recovery goes: a random WAL position between its end and
/// the newest unbroken archived segment, or its own end when nothing later is archived.
fn recovery_point(
    repo: &Repository,
    snap: &Snapshot,
    rng: &mut Rng,
) -> (Option<RecoveryTarget>, Option<String>) {
    if snap.kind != BackupKind::Physical {
        return (None, None);
    }
    match span::recovery_span(repo, snap) {
        Ok(Some(s)) => {
            let at = Lsn(s.after.0 + 1 + rng.below(s.upto.0 - s.after.0));
            (
                Some(RecoveryTarget::Lsn(at.to_string())),
                Some(format!(
                    "WAL position {at}, random between the snapshot's end {} and {}, the start of the newest archived segment",
                    s.after, s.upto
                )),
            )
        }
        Ok(None) => (
            Some(RecoveryTarget::Immediate),
            Some("the snapshot's own end: the archive holds no WAL after it".into()),
        ),
        Err(e) => (
            Some(RecoveryTarget::Immediate),
            Some(format!(
                "the snapshot's own end: the WAL archive could not be listed ({e})"
            )),
        ),
    }
}

/// The data-loss window the repository gives now for `snap`'s source, in seconds, and
/// what it was measured from: now minus the newest archived WAL segment's time when the
/// source has physical snapshots archiving here, the newest captured SQLite transaction's
/// (continuous capture), or the newest snapshot's end, whichever is latest.
fn measure_rpo(
    repo: &Repository,
    all: &[Snapshot],
    snap: &Snapshot,
    now: jiff::Timestamp,
) -> (f64, String) {
    let mut m = SourceMatch::new(&snap.source);
    if let Some(l) = &snap.source_location {
        m.add(l);
    }
    let same = Filter {
        source: Some(m),
        tags: Vec::new(),
    };
    let mine: Vec<&Snapshot> = all.iter().filter(|s| same.matches(s)).collect();
    let newest = mine
        .iter()
        .max_by_key(|s| s.finished_at)
        .copied()
        .unwrap_or(snap);
    let mut from = newest.finished_at;
    let mut basis = format!(
        "the newest snapshot of {} ({}, finished {})",
        snap.source,
        newest.short_id(),
        newest.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let owned: Vec<Snapshot> = mine.iter().map(|s| (*s).clone()).collect();
    let clusters: std::collections::BTreeSet<String> =
        crate::engine::postgres::wal::needs_of(&owned)
            .into_iter()
            .map(|n| n.cluster)
            .collect();
    for c in clusters {
        match span::newest_archived(repo, &c, &owned) {
            Ok(Some(t)) if t > from => {
                from = t;
                basis = format!(
                    "the newest archived WAL segment of cluster {c} (archived {})",
                    t.strftime("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not list the WAL archive of cluster {c}: {e}"),
        }
    }
    let names: Vec<&str> = std::iter::once(snap.source.as_str())
        .chain(snap.source_location.as_deref())
        .collect();
    for name in names {
        match crate::jobs::replicate::standing_of(repo, &owned, name, now) {
            Ok(Some(c)) if c.point() > from => {
                from = c.point();
                basis = c.basis();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not list the captured frames of {name}: {e}"),
        }
    }
    let secs = (now - from).total(jiff::Unit::Second).unwrap_or(0.0);
    (secs.max(0.0), basis)
}

/// Seals the report under `drills/<time>-<rand>`; returns its key.
fn keep(repo: &Repository, report: &mut DrillReport) -> Result<String> {
    let key = ObjectKind::Drill.key(&format!(
        "{}-{}",
        report.finished_at.strftime("%Y%m%dT%H%M%S%.6fZ"),
        hex::encode(crate::crypto::random_bytes::<4>())
    ));
    report.report = Some(key.clone());
    let body = serde_json::to_vec(report).expect("a drill report serializes");
    report.report = None;
    repo.storage()
        .put(&key, &repo.key().seal(DRILL_AAD, &body))?;
    Ok(key)
}

/// Journals the drill (`job = "drill"`) with its figures.
fn journal(repo: &Repository, report: &DrillReport, size: u64) {
    let mut rec = JournalRecord::new("drill", report.started_at);
    rec.finished_at = report.finished_at;
    rec.seconds = (report.finished_at - report.started_at)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0);
    rec.source = Some(report.source.clone());
    rec.snapshot = Some(report.snapshot.clone());
    rec.ok = report.ok;
    rec.size = size;
    rec.kind = Some(report.kind.clone());
    rec.error = report.error.clone();
    rec.error_kind = report.error_kind.clone();
    rec.drill = Some(DrillFigures {
        rto_seconds: report.rto_seconds,
        rto_objective_seconds: report.rto_objective_seconds,
        rpo_seconds: Some(report.rpo_seconds),
        rpo_objective_seconds: report.rpo_objective_seconds,
        report: report.report.clone(),
    });
    repo.record(&rec);
}

/// Reads a kept drill report.
pub fn read_report(repo: &Repository, key: &str) -> Result<DrillReport> {
    let sealed = repo.storage().get(key)?;
    let body = repo.key().open(key, DRILL_AAD, &sealed)?;
    let mut r: DrillReport = serde_json::from_slice(&body)
        .map_err(|e| Error::corrupt(key, format!("not a drill report: {e}")))?;
    r.report = Some(key.to_string());
    Ok(r)
}

/// One earlier drill, for the trend (`drill --history`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HistoryEntry {
    /// When it finished.
    pub finished_at: jiff::Timestamp,
    /// The source drilled.
    pub source: Option<String>,
    /// The snapshot drilled.
    pub snapshot: Option<String>,
    /// Whether it passed.
    pub ok: bool,
    /// Measured RTO (`None` for a drill that was interrupted before measuring).
    pub rto_seconds: Option<f64>,
    /// The RTO objective then.
    pub rto_objective_seconds: Option<f64>,
    /// The RPO then.
    pub rpo_seconds: Option<f64>,
    /// The RPO objective then.
    pub rpo_objective_seconds: Option<f64>,
    /// The kept report's key.
    pub report: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Earlier drills, oldest first, from the journal's drill records (of `source`'s only,
/// when given).
pub fn history(repo: &Repository, source: Option<SourceMatch>) -> Result<Vec<HistoryEntry>> {
    repo.require_full("read drill reports")?;
    let query = JournalQuery {
        source,
        job: Some("drill".into()),
        ..JournalQuery::default()
    };
    Ok(repo
        .query_journal(&query)?
        .into_iter()
        .map(|r| {
            let f = r.drill.as_ref();
            HistoryEntry {
                finished_at: r.finished_at,
                source: r.source.clone(),
                snapshot: r.snapshot.clone(),
                ok: r.ok,
                rto_seconds: f.map(|f| f.rto_seconds),
                rto_objective_seconds: f.map(|f| f.rto_objective_seconds),
                rpo_seconds: f.and_then(|f| f.rpo_seconds),
                rpo_objective_seconds: f.map(|f| f.rpo_objective_seconds),
                report: f.and_then(|f| f.report.clone()),
                error: r.error.clone(),
            }
        })
        .collect())
}

/// The kind of failure a failed drill ends the command with.
pub fn failure_kind(report: &DrillReport) -> ErrorKind {
    match report.error_kind.as_deref() {
        Some("damaged_data") => ErrorKind::DamagedData,
        Some("source_failed") => ErrorKind::SourceFailed,
        Some("storage_unreachable") => ErrorKind::StorageUnreachable,
        _ => ErrorKind::CheckFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::repository::snapshot::tests::sample;
    use crate::storage::Storage;

    fn repo() -> Repository {
        let kdf = KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
        };
        Repository::init(Storage::from_url("memory://").unwrap(), Some(b"pw"), kdf).unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    fn snap(id: char, source: &str, ago_secs: i64) -> Snapshot {
        let mut s = sample(&id.to_string().repeat(64), source, &[]);
        s.finished_at = now() - jiff::SignedDuration::from_secs(ago_secs);
        s.started_at = s.finished_at;
        s
    }

    fn report(source: &str, ok: bool) -> DrillReport {
        DrillReport {
            ok,
            snapshot: "a".repeat(64),
            source: source.into(),
            engine: "sqlite".into(),
            kind: "full".into(),
            snapshot_finished_at: now(),
            started_at: now(),
            finished_at: now() + jiff::SignedDuration::from_secs(3),
            seed: 7,
            choice: "asked for".into(),
            recovery_target: None,
            rto_seconds: 2.5,
            rto_objective_seconds: 3600.0,
            rto_met: true,
            rpo_seconds: 7200.0,
            rpo_objective_seconds: 900.0,
            rpo_met: false,
            rpo_basis: "the newest snapshot".into(),
            phases: vec![Phase {
                name: "restore".into(),
                seconds: 2.5,
            }],
            checks: Vec::new(),
            error: None,
            error_kind: None,
            report: None,
            hostname: "h".into(),
        }
    }

    #[test]
    fn rpo_is_now_minus_the_newest_snapshot_of_the_drilled_source() {
        let r = repo();
        let all = [
            snap('a', "hotel", 3 * 3600),
            snap('b', "hotel", 2 * 3600),
            snap('c', "other", 60),
        ];
        let (secs, basis) = measure_rpo(&r, &all, &all[0], now());
        assert_eq!(secs, 7200.0);
        assert!(basis.contains("bbbbbbbb"), "{basis}");
        let later = now() + jiff::SignedDuration::from_secs(600);
        assert_eq!(measure_rpo(&r, &all, &all[0], later).0, 7800.0);
        assert_eq!(measure_rpo(&r, &all, &all[2], now()).0, 60.0);
    }

    #[test]
    fn a_kept_report_reads_back_and_its_journal_record_makes_the_history() {
        let r = repo();
        let mut rep = report("hotel", false);
        let key = keep(&r, &mut rep).unwrap();
        assert!(key.starts_with("drills/20261201T120003"), "{key}");
        rep.report = Some(key.clone());
        assert_eq!(read_report(&r, &key).unwrap(), rep);
        // Sealed with its own associated data: not readable as another object.
        let sealed = r.storage().get(&key).unwrap();
        assert!(r.key().open(&key, b"strongroom journal", &sealed).is_err());

        journal(&r, &rep, 10);
        journal(&r, &report("other", true), 10);
        let all = history(&r, None).unwrap();
        assert_eq!(all.len(), 2);
        let mine = history(&r, Some(SourceMatch::new("hotel"))).unwrap();
        assert_eq!(mine.len(), 1);
        let e = &mine[0];
        assert!(!e.ok);
        assert_eq!(e.report.as_deref(), Some(key.as_str()));
        assert_eq!(e.rpo_seconds, Some(7200.0));
        assert_eq!(e.rto_objective_seconds, Some(3600.0));
        assert_eq!(e.finished_at, rep.finished_at);
    }
}

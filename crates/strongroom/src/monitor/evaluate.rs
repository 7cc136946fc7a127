//! The rules of `status`: each source's evidence against its objectives, at a given time.
//!
//! Owns what counts as ok, warning and critical. Pure: evidence and `now` in, checks out, so
//! every rule is tested with a faked clock. Must not read anything.
//!
//! The rules, and why:
//! - A kind's newest snapshot is **critical** once it is older than its interval plus a grace
//!   of a twelfth of it (a daily backup is late at 26 hours, the strategy's threshold): by
//!   then a scheduled backup was missed, and "backups that silently stopped" is the disaster
//!   this exists to catch.
//! - WAL: the newest archived file older than the RPO is **critical**, unless the server
//!   says it is idle (its archiver is not failing and `archive_timeout` is within the RPO, so
//!   anything written would have been archived by now).
//! - A failing archiver, a last verify or drill that failed, and a last `check` that failed
//!   are **critical**: each says a recovery may not work. So is a table that vanished or
//!   lost most of its rows since the previous snapshot (data loss until someone says so).
//! - A `[[copies]]` repository that has lacked a recovery point the primary has (a
//!   snapshot newer than its newest of that kind, WAL past its newest segment) for longer
//!   than the RPO is a **warning**: losing the primary now would lose more than the RPO.
//!   Past the RPO plus the kind's interval (physical's for WAL) it is **critical**: a whole
//!   backup interval went by without a copy, so copies have stopped. A copy that cannot be
//!   opened or read is **critical**: there is no second copy to count on.
//! - Verify, drill and check are stale past their checklist period plus the same grace, so
//!   a weekly verify that runs longer this week than last does not warn for a few minutes.
//! - Stale or missing verify, drill or check, a drill slower than the RTO, other anomalies, failed
//!   jobs not yet followed by a success, and retention that has not run are **warnings**.
//! - `protection` says which kind of key took the source's backups and what guards the
//!   repository; it is ok (a fact to know, not a fault) except when kept snapshots are no
//!   longer under the repository's object lock: a **warning**, renewal has fallen behind.

use super::evidence::{Evidence, SourceEvidence};
use super::{Check, Health, Level, SourceHealth, human_duration, since};
use crate::config::{Config, Effective};
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::short_id as short;
use std::time::Duration;

/// Judges all sources.
pub fn evaluate(config: &Config, ev: &Evidence, now: jiff::Timestamp) -> Health {
    let sources: Vec<SourceHealth> = ev
        .sources
        .iter()
        .map(|s| {
            let objectives = config.objectives_of(&s.name);
            let mut checks = source_checks(&objectives, s, ev, now);
            checks.extend(super::anomaly::anomalies(s));
            let checklist = super::checklist::items(&checks);
            SourceHealth {
                source: s.name.clone(),
                level: checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok),
                checks,
                checklist,
                rpo_seconds: recovery_point(s, ev)
                    .map(|t| (now - t).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0)),
            }
        })
        .collect();
    Health {
        // Nothing to judge (no source configured, no snapshot taken) is not "all is well".
        ok: !sources.is_empty() && sources.iter().all(|s| s.level == Level::Ok),
        at: now,
        sources,
    }
}

/// The newest state a restore of `s` reaches: its captured commits, archived WAL or
/// newest snapshot, whichever is latest.
pub fn recovery_point(s: &SourceEvidence, ev: &Evidence) -> Option<jiff::Timestamp> {
    let snapshot = s.snapshots.iter().map(|x| x.finished_at).max();
    let wal = s
        .clusters()
        .iter()
        .filter_map(|c| ev.wal.get(c)?.modified)
        .max();
    let captured = s
        .capture
        .as_ref()
        .and_then(|c| c.as_ref().ok())
        .map(|c| c.point());
    [snapshot, wal, captured].into_iter().flatten().max()
}

/// Continuous capture of a SQLite source: how many seconds of commits a loss would cost
/// now, the WAL's size and the requests the capture makes.
fn capture(obj: &Effective, s: &SourceEvidence, now: jiff::Timestamp, out: &mut Vec<Check>) {
    let Some(c) = &s.capture else {
        if s.continuous_sqlite {
            out.push(check(
                "capture",
                Level::Warning,
                format!(
                    "continuous = true, but nothing was captured yet: start `strongroom replicate {}` (or `strongroom daemon`)",
                    s.name
                ),
            ));
        }
        return;
    };
    let c = match c {
        Ok(c) => c,
        Err(e) => {
            out.push(check(
                "capture",
                Level::Warning,
                format!("the captured frames could not be listed: {e}"),
            ));
            return;
        }
    };
    let age = since(c.point(), now);
    let lag = if age < Duration::from_secs(60) {
        format!("{:.1} s", age.as_secs_f64())
    } else {
        human_duration(age)
    };
    let mut detail = format!(
        "a loss now would cost {lag} of commits (measured from {})",
        c.basis()
    );
    match &c.pulse {
        Some(p) => {
            let per_day = (86_400.0 / p.interval_seconds.max(0.001)).round();
            detail.push_str(&format!(
                "; WAL {} ({} frames); {} requests since it started, at most {per_day:.0} a day at its {}s interval while the database is written, none while idle",
                crate::human_bytes(p.wal_bytes),
                p.wal_frames,
                p.requests,
                p.interval_seconds
            ));
        }
        None => detail.push_str(&format!(
            "; {} segments stored in the last 24 hours ({} requests)",
            c.segments_last_day, c.segments_last_day
        )),
    }
    let level = if age <= obj.rpo {
        Level::Ok
    } else if c.pulse.is_some() {
        detail.push_str(&format!(
            "; over the RPO of {}: the capture is falling behind or failing to store (see its log)",
            human_duration(obj.rpo)
        ));
        Level::Critical
    } else {
        detail.push_str(&format!(
            "; over the RPO of {}: unless the database was idle that long, start `strongroom replicate {}` (or `continuous = true` under the daemon)",
            human_duration(obj.rpo),
            s.name
        ));
        Level::Warning
    };
    out.push(check("capture", level, detail));
}

fn check(name: impl Into<String>, level: Level, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        level,
        detail: detail.into(),
    }
}

/// The grace a kind's interval gets before its newest snapshot counts as late.
pub fn grace(interval: Duration) -> Duration {
    (interval / 12).max(Duration::from_secs(60))
}

fn ago(t: jiff::Timestamp, now: jiff::Timestamp) -> String {
    format!("{} ago", human_duration(since(t, now)))
}

/// The `protection` check, when the evidence holds what protects the repository: which
/// kind of key took the source's newest snapshot (a full key on a database host can read
/// and delete every backup), what guards the repository, and the source's kept snapshots
/// whose object lock has ended (a warning: `forget --prune` renews locks).
fn protection(s: &SourceEvidence, ev: &Evidence, out: &mut Vec<Check>) {
    let Some(repo) = ev.protection.first() else {
        return;
    };
    let taken = match s.snapshots.last() {
        Some(n) if n.append_only => format!(
            "backups taken with an append-only key (newest {} on {}): that host can neither read nor delete them",
            short(&n.id),
            n.hostname
        ),
        Some(n) if repo.encryption != "none" => format!(
            "backups taken with a full key (newest {} on {}): whoever takes that host over can read and delete them; give it an append-only key (`strongroom key add --append-only`)",
            short(&n.id),
            n.hostname
        ),
        Some(n) => format!(
            "backups taken on {} (newest {}) into an unencrypted repository: whoever can read the store reads them",
            n.hostname,
            short(&n.id)
        ),
        None => "no backup yet".to_string(),
    };
    let unlocked: Vec<&str> = s
        .snapshots
        .iter()
        .filter(|x| repo.unlocked_snapshots.contains(&x.id))
        .map(|x| short(&x.id))
        .collect();
    let (level, lock) = match unlocked.first() {
        Some(oldest) => (
            Level::Warning,
            format!(
                "; {} no longer under object lock (oldest {oldest}): run `strongroom forget --prune`, which renews locks",
                crate::counted(unlocked.len(), "kept snapshot")
            ),
        ),
        None => (Level::Ok, String::new()),
    };
    out.push(check(
        "protection",
        level,
        format!("{taken}; repository {}{lock}", repo.describe()),
    ));
}

/// The newest record of `job` that succeeded, and the newest one at all.
fn newest<'a>(
    records: &'a [JournalRecord],
    job: &str,
) -> (Option<&'a JournalRecord>, Option<&'a JournalRecord>) {
    let of_job = || records.iter().rev().filter(move |r| r.job == job);
    (of_job().find(|r| r.ok), of_job().next())
}

fn source_checks(
    obj: &Effective,
    s: &SourceEvidence,
    ev: &Evidence,
    now: jiff::Timestamp,
) -> Vec<Check> {
    let mut out = Vec::new();
    backups(obj, s, now, &mut out);
    wal(obj, s, ev, now, &mut out);
    capture(obj, s, now, &mut out);
    copies(obj, s, now, &mut out);
    slot(s, &mut out);
    protection(s, ev, &mut out);
    let name = &s.name;
    periodic(
        "verify",
        &s.records,
        obj.checklist.get("verify"),
        &format!("strongroom verify latest --source {name}"),
        now,
        &mut out,
    );
    periodic(
        "drill",
        &s.records,
        obj.checklist.get("drill"),
        &format!("strongroom drill --source {name}"),
        now,
        &mut out,
    );
    if let Some(f) = s.last_drill() {
        let rto = Duration::from_secs_f64(f.rto_seconds.max(0.0));
        let took = if f.rto_seconds < 60.0 {
            format!("{:.1}s", f.rto_seconds)
        } else {
            human_duration(rto)
        };
        out.push(if rto > obj.rto {
            check(
                "drill.rto",
                Level::Warning,
                format!(
                    "the last drill recovered in {took}, over the RTO of {}: make restores faster (a nearer snapshot, more frequent physical backups) or revise the objective",
                    human_duration(obj.rto)
                ),
            )
        } else {
            check(
                "drill.rto",
                Level::Ok,
                format!(
                    "the last drill recovered in {took}, within the RTO of {}",
                    human_duration(obj.rto)
                ),
            )
        });
    }
    periodic(
        "check",
        &ev.repository_jobs,
        obj.checklist.get("check"),
        "strongroom check --read-data",
        now,
        &mut out,
    );
    failed_jobs(s, now, &mut out);
    retention(ev, now, &mut out);
    if !ev.damaged_manifests.is_empty() {
        // Whose they were cannot be read: every source is told.
        out.push(check(
            "snapshots.damaged",
            Level::Critical,
            format!(
                "{} snapshot manifest(s) cannot be read ({}): run `strongroom check --read-data`, then `strongroom forget ID` for what cannot be repaired",
                ev.damaged_manifests.len(),
                ev.damaged_manifests
                    .iter()
                    .map(|id| short(id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    out
}

/// Newest snapshot of every kind the source is backed up with, against its interval.
fn backups(obj: &Effective, s: &SourceEvidence, now: jiff::Timestamp, out: &mut Vec<Check>) {
    let mut kinds: Vec<String> = s.snapshots.iter().map(|x| x.kind.to_string()).collect();
    kinds.extend(
        s.records
            .iter()
            .filter(|r| r.job == "backup")
            .filter_map(|r| r.kind.clone()),
    );
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        out.push(check(
            "backup",
            Level::Critical,
            format!(
                "no snapshot of {} yet: run `strongroom backup {}`",
                s.name, s.name
            ),
        ));
        return;
    }
    for kind in kinds {
        let interval = obj
            .interval
            .get(&kind)
            .copied()
            .unwrap_or(Duration::from_secs(86_400));
        let newest = s
            .snapshots
            .iter()
            .rev()
            .find(|x| x.kind.to_string() == kind);
        let name = format!("backup.{kind}");
        let Some(snap) = newest else {
            out.push(check(
                name,
                Level::Critical,
                format!(
                    "no {kind} snapshot of {} in the repository, though {kind} backups were attempted: see `strongroom journal --source {} --failed`",
                    s.name, s.name
                ),
            ));
            continue;
        };
        if let Some(min) = obj.min_size.filter(|m| snap.size < *m) {
            out.push(check(
                format!("size.{kind}"),
                Level::Warning,
                format!(
                    "the newest {kind} snapshot ({}) holds {}, under the {} a backup of this source should hold: was data lost, or the wrong database backed up?",
                    short(&snap.id),
                    crate::human_bytes(snap.size),
                    crate::human_bytes(min)
                ),
            ));
        }
        let age = since(snap.finished_at, now);
        let late = interval + grace(interval);
        out.push(if age > late {
            check(
                name,
                Level::Critical,
                format!(
                    "the newest {kind} snapshot ({}) is {} old; one is expected every {}: backups have stopped, see `strongroom journal --source {} --job backup`",
                    short(&snap.id),
                    human_duration(age),
                    human_duration(interval),
                    s.name
                ),
            )
        } else {
            check(
                name,
                Level::Ok,
                format!(
                    "newest {kind} snapshot {} finished {}, {} (one expected every {})",
                    short(&snap.id),
                    ago(snap.finished_at, now),
                    crate::human_bytes(snap.size),
                    human_duration(interval)
                ),
            )
        });
    }
}

/// Each `[[copies]]` repository for this source: what it holds against the primary, and
/// how long it has trailed it against the RPO and the RPO plus an interval.
fn copies(obj: &Effective, s: &SourceEvidence, now: jiff::Timestamp, out: &mut Vec<Check>) {
    let interval_of = |kind: &str| {
        obj.interval
            .get(kind)
            .copied()
            .unwrap_or(Duration::from_secs(86_400))
    };
    for c in &s.copies {
        let name = format!("copy.{}", c.name);
        let st = match &c.standing {
            Ok(st) => st,
            Err(sentence) => {
                out.push(check(name, Level::Critical, sentence.clone()));
                continue;
            }
        };
        // What it lags by, per kind of recovery point, and where that turns critical.
        let mut parts: Vec<(Duration, Duration, String)> = st
            .behind
            .iter()
            .map(|(kind, t)| {
                let interval = interval_of(kind);
                (
                    since(*t, now),
                    obj.rpo + interval,
                    format!("the {kind} interval of {}", human_duration(interval)),
                )
            })
            .collect();
        if let Some(t) = st.wal.as_ref().and_then(|w| w.behind_since) {
            let interval = interval_of("physical");
            parts.push((
                since(t, now),
                obj.rpo + interval,
                format!("the physical interval of {}", human_duration(interval)),
            ));
        }
        let lag = st.lag(now);
        let rpo = human_duration(obj.rpo);
        let held = copy_holds(st, &s.name);
        let label = crate::copies::label(&c.name, &c.repository);
        let stopped = parts.iter().find(|(l, limit, _)| l > limit);
        out.push(if let Some((_, _, interval)) = stopped {
            check(
                name,
                Level::Critical,
                format!(
                    "copy {label}: {held}; {} behind the primary, over the RPO of {rpo} plus {interval}: copies have stopped; run `strongroom copy` and see `strongroom journal --job copy --failed`",
                    human_duration(lag)
                ),
            )
        } else if lag > obj.rpo {
            check(
                name,
                Level::Warning,
                format!(
                    "copy {label}: {held}; {} behind the primary, over the RPO of {rpo}: losing the primary now would lose more than the RPO; run `strongroom copy` (more often)",
                    human_duration(lag)
                ),
            )
        } else if lag.is_zero() {
            check(name, Level::Ok, format!("copy {label}: {held}; no lag"))
        } else {
            check(
                name,
                Level::Ok,
                format!(
                    "copy {label}: {held}; {} behind the primary, within the RPO of {rpo}",
                    human_duration(lag)
                ),
            )
        });
    }
}

/// What a copy holds of `source` against the primary: its newest snapshot and WAL segment.
fn copy_holds(st: &crate::copies::SourceStanding, source: &str) -> String {
    let missing = if st.snapshots_missing == 0 {
        String::new()
    } else {
        format!(", {} missing", st.snapshots_missing)
    };
    let snapshots = match (&st.copy_newest, &st.primary_newest) {
        (_, None) => format!("no snapshot of {source} to copy yet"),
        (Some(c), Some(p)) if c.id == p.id => {
            format!(
                "newest snapshot {}, the primary's too{missing}",
                short(&c.id)
            )
        }
        (Some(c), Some(p)) => format!(
            "newest snapshot {} against the primary's {}{missing}",
            short(&c.id),
            short(&p.id)
        ),
        (None, Some(p)) => format!(
            "no snapshot of {source}, against the primary's {}{missing}",
            short(&p.id)
        ),
    };
    let wal = st.wal.as_ref().map(|w| {
        let copy = w.copy_newest.as_deref().unwrap_or("none");
        match w.primary_newest.as_deref() {
            Some(p) if p == copy => format!(", WAL to {p}, the primary's too"),
            Some(p) => format!(
                ", WAL to {copy} against the primary's {p} ({} behind)",
                crate::counted(w.segments_behind, "segment")
            ),
            None => String::new(),
        }
    });
    format!("{snapshots}{}", wal.unwrap_or_default())
}

/// The `replication slot` check: critical when the slot `wal receive` streams through is
/// missing (where the config expects it) or the server invalidated it, a warning when it
/// holds back more WAL than `slot_max_retained` or the server could not be asked.
fn slot(s: &SourceEvidence, out: &mut Vec<Check>) {
    let Some(slot) = &s.slot else { return };
    let name = &slot.name;
    let (level, detail) = match &slot.state {
        Err(e) if slot.expected => (
            Level::Warning,
            format!(
                "could not ask the server of {} about replication slot {name}: {e}",
                s.name
            ),
        ),
        Err(_) => return,
        Ok(None) if slot.expected => (
            Level::Critical,
            format!(
                "replication slot {name} does not exist on the server of {}: WAL is not kept for `strongroom wal receive`, and what it has not received is lost once the server recycles it; start `strongroom wal receive {}` (it creates the slot)",
                s.name, s.name
            ),
        ),
        Ok(None) => return,
        Ok(Some(st)) if st.wal_status.as_deref() == Some("lost") => (
            Level::Critical,
            format!(
                "replication slot {name} on the server of {} is lost (the server removed WAL it had not received, max_slot_wal_keep_size): the archive has a gap; drop the slot (`SELECT pg_drop_replication_slot('{name}')`), restart `strongroom wal receive` and take a physical backup",
                s.name
            ),
        ),
        Ok(Some(st)) if st.retained.is_some_and(|r| r > slot.max_retained) => (
            Level::Warning,
            format!(
                "replication slot {name} holds back {} of WAL on the server of {} (over {}, slot_max_retained){}: is `strongroom wal receive` running and keeping up? The server's disk fills while it does",
                crate::human_bytes(st.retained.unwrap_or(0)),
                s.name,
                crate::human_bytes(slot.max_retained),
                if st.active {
                    ""
                } else {
                    ", and no receiver is connected"
                }
            ),
        ),
        Ok(Some(st)) => (
            Level::Ok,
            format!(
                "replication slot {name} holds back {} of WAL{}",
                crate::human_bytes(st.retained.unwrap_or(0)),
                if st.active {
                    ", a receiver is streaming"
                } else {
                    ", no receiver connected"
                }
            ),
        ),
    };
    out.push(check("wal.slot", level, detail));
}

/// PostgreSQL's archiver, when the server answered: failing, off, or working.
fn archiver_check(s: &SourceEvidence, now: jiff::Timestamp, out: &mut Vec<Check>) {
    let archiver = s.archiver.as_ref().and_then(|a| a.as_ref().ok());
    let failing = archiver.filter(|a| a.failing());
    if let Some(a) = failing {
        out.push(check(
            "wal.archiver",
            Level::Critical,
            format!(
                "PostgreSQL's archiver is failing: {} could not be archived ({}, {} failures); see the server's log and `strongroom journal --job 'wal push' --failed`",
                a.last_failed_wal.as_deref().unwrap_or("a WAL file"),
                a.last_failed_time.map(|t| ago(t, now)).unwrap_or_default(),
                a.failed_count
            ),
        ));
    } else if let Some(a) = archiver {
        // `wal receive` streaming through its slot archives instead of archive_command.
        let streamed = s.slot.as_ref().and_then(|sl| match &sl.state {
            Ok(Some(st)) if st.active && st.wal_status.as_deref() != Some("lost") => Some(&sl.name),
            _ => None,
        });
        let level = if a.archive_mode == "off" && streamed.is_none() {
            Level::Critical
        } else {
            Level::Ok
        };
        out.push(check(
            "wal.archiver",
            level,
            if let (true, Some(slot)) = (a.archive_mode == "off", streamed) {
                format!("archive_mode is off on the server; `strongroom wal receive` streams its WAL through slot {slot}")
            } else if level == Level::Critical {
                "archive_mode is off on the server: no WAL reaches the repository; set archive_mode = on and archive_command = 'strongroom wal push %p'".to_string()
            } else {
                format!(
                    "PostgreSQL's archiver works: {} files archived, the last {}",
                    a.archived_count,
                    a.last_archived_time.map(|t| ago(t, now)).unwrap_or_else(|| "never".into())
                )
            },
        ));
    }
}

/// The newest WAL archived on the source's timeline against the RPO, and the server's
/// archiver ([`archiver_check`]).
fn wal(
    obj: &Effective,
    s: &SourceEvidence,
    ev: &Evidence,
    now: jiff::Timestamp,
    out: &mut Vec<Check>,
) {
    let Some(cluster) = s.clusters().into_iter().next() else {
        return;
    };
    archiver_check(s, now, out);
    let archiver = s.archiver.as_ref().and_then(|a| a.as_ref().ok());
    let failing = archiver.filter(|a| a.failing());
    let idle = archiver.is_some_and(|a| {
        failing.is_none()
            && a.archive_mode != "off"
            && a.archive_timeout > 0
            && Duration::from_secs(a.archive_timeout) <= obj.rpo
    });
    let unreachable = match &s.archiver {
        Some(Err(e)) => format!(" (the server could not be asked: {e})"),
        _ => String::new(),
    };
    let newest = ev.wal.get(&cluster);
    let Some((w, t)) = newest.and_then(|w| Some((w, w.modified?))) else {
        let which = match newest {
            Some(w) => format!("on {} (only forks: {})", w.timeline, w.forks.join("; ")),
            None => format!("of cluster {cluster}"),
        };
        out.push(check(
            "wal.archive",
            Level::Critical,
            format!(
                "no WAL {which} is archived: point-in-time recovery is impossible; set archive_command = 'strongroom wal push %p'"
            ),
        ));
        return;
    };
    let age = since(t, now);
    // Which timeline was judged, and the forks that were not, when there are any.
    let on = if w.forks.is_empty() {
        String::new()
    } else {
        format!(
            " (on {}; forks not judged: {})",
            w.timeline,
            w.forks.join("; ")
        )
    };
    out.push(if age <= obj.rpo {
        check(
            "wal.archive",
            Level::Ok,
            format!(
                "newest archived WAL {}{on} is {} old, within the RPO of {}",
                w.name,
                human_duration(age),
                human_duration(obj.rpo)
            ),
        )
    } else if idle {
        check(
            "wal.archive",
            Level::Ok,
            format!(
                "newest archived WAL {}{on} is {} old, but the server is idle: its archiver is not failing and archive_timeout ({}s) is within the RPO of {}",
                w.name,
                human_duration(age),
                archiver.map_or(0, |a| a.archive_timeout),
                human_duration(obj.rpo)
            ),
        )
    } else {
        check(
            "wal.archive",
            Level::Critical,
            format!(
                "newest archived WAL {}{on} is {} old, over the RPO of {}: a failure now would lose that much{unreachable}; check archive_command and set archive_timeout within the RPO",
                w.name,
                human_duration(age),
                human_duration(obj.rpo)
            ),
        )
    });
}

/// A job that should succeed every `period`: verify, drill, check.
fn periodic(
    job: &str,
    records: &[JournalRecord],
    period: Option<&Duration>,
    command: &str,
    now: jiff::Timestamp,
    out: &mut Vec<Check>,
) {
    // Turned off for this source (`[objectives.checklist] drill = "off"`).
    let Some(&period) = period else {
        return;
    };
    let (good, last) = newest(records, job);
    let c = match (good, last) {
        (_, Some(l)) if !l.ok => check(
            job,
            Level::Critical,
            format!(
                "the last {job}{} failed {}: {}; run `{command}` again once it is fixed",
                l.snapshot
                    .as_deref()
                    .map(|s| format!(" (of {})", short(s)))
                    .unwrap_or_default(),
                ago(l.finished_at, now),
                l.error.as_deref().unwrap_or("no reason recorded")
            ),
        ),
        (None, _) => check(
            job,
            Level::Warning,
            format!(
                "no successful {job} on record; one is expected every {}: run `{command}`",
                human_duration(period)
            ),
        ),
        (Some(g), _) if since(g.finished_at, now) > period + grace(period) => check(
            job,
            Level::Warning,
            format!(
                "the last successful {job} was {}; one is expected every {}: run `{command}`",
                ago(g.finished_at, now),
                human_duration(period)
            ),
        ),
        (Some(g), _) => check(
            job,
            Level::Ok,
            format!(
                "last successful {job} {}{}",
                ago(g.finished_at, now),
                g.drill
                    .as_ref()
                    .map(|d| format!(", recovered in {:.1}s", d.rto_seconds))
                    .unwrap_or_default()
            ),
        ),
    };
    out.push(c);
}

/// Jobs of the source that failed in the last week and were not followed by a success of
/// the same job: the strategy's weekly "review backup logs for errors", done by evidence.
/// A restore into a side copy and an operator's refused request are not the source's jobs.
fn failed_jobs(s: &SourceEvidence, now: jiff::Timestamp, out: &mut Vec<Check>) {
    let week = jiff::SignedDuration::from_hours(24 * 7);
    let mut open: Vec<&JournalRecord> = Vec::new();
    // Side restores and operator mistakes say nothing of the source (records of the
    // latter were journaled before they were left out).
    let judged = s
        .records
        .iter()
        .filter(|r| r.finished_at >= now - week && !r.side && (r.ok || r.counts_as_failure()));
    for r in judged {
        open.retain(|o| o.job != r.job);
        if !r.ok {
            open.push(r);
        }
    }
    // verify and drill failures have checks of their own.
    open.retain(|r| !matches!(r.job.as_str(), "verify" | "drill"));
    out.push(match open.as_slice() {
        [] => check(
            "jobs",
            Level::Ok,
            "no job of this source failed without a later success in the last 7 days",
        ),
        failed => check(
            "jobs",
            Level::Warning,
            format!(
                "{} failed and has not succeeded since: {}: {}",
                failed
                    .iter()
                    .map(|r| r.job.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                ago(failed[failed.len() - 1].finished_at, now),
                failed[failed.len() - 1]
                    .error
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ),
    });
}

/// Retention must run: without it the repository grows until the disk is full.
fn retention(ev: &Evidence, now: jiff::Timestamp, out: &mut Vec<Check>) {
    let period = Duration::from_secs(8 * 86_400);
    let last = ev
        .repository_jobs
        .iter()
        .rev()
        .find(|r| r.ok && matches!(r.job.as_str(), "forget" | "prune"));
    out.push(match last {
        Some(r) if since(r.finished_at, now) <= period => check(
            "retention",
            Level::Ok,
            format!("retention last applied {} ({})", ago(r.finished_at, now), r.job),
        ),
        Some(r) => check(
            "retention",
            Level::Warning,
            format!(
                "retention last applied {}: run `strongroom forget --prune` (weekly or more often)",
                ago(r.finished_at, now)
            ),
        ),
        None => check(
            "retention",
            Level::Warning,
            "retention has never been applied: run `strongroom forget --prune` (weekly or more often)",
        ),
    });
}

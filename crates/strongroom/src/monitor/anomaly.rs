//! Anomalies: a source's newest backup against its own recent history.
//!
//! Owns three rules: a snapshot much smaller than the median of its recent ones (a warning:
//! the strategy's "backup under 1 MB is suspect", made relative so it fits every database:
//! a truncated table or an emptied database shows up whatever its usual size), a table that
//! vanished or lost most of its rows since the previous snapshot (critical: that is data
//! loss until someone says it was meant), and a backup job far slower than usual (a
//! warning). Pure; must not read anything.
//!
//! History: up to [`HISTORY`] earlier snapshots (or jobs) of the same kind, and at least
//! [`MIN_HISTORY`] of them, so a new source raises nothing until it has a history.

use super::evidence::SourceEvidence;
use super::{Check, Level};
use crate::repository::snapshot::Snapshot;

/// Earlier snapshots or jobs a newest one is compared with.
pub const HISTORY: usize = 10;
/// Fewer earlier ones than this and nothing is judged.
pub const MIN_HISTORY: usize = 3;
/// A snapshot below this share of the median size is an anomaly.
pub const SIZE_SHARE: f64 = 0.5;
/// A table that lost more than this share of its rows since the previous snapshot is a
/// critical anomaly, when it had at least [`ROWS_MIN`] rows.
pub const ROWS_DROP: f64 = 0.5;
/// Tables smaller than this are not judged by how many rows they lost (small tables vary);
/// any table that had rows and vanished is.
pub const ROWS_MIN: u64 = 100;
/// A job taking more than this many times the median duration is an anomaly…
pub const SLOW_FACTOR: f64 = 3.0;
/// …when it is also this many seconds slower than the median (short jobs vary a lot).
pub const SLOW_SLACK_SECONDS: f64 = 5.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Every anomaly of the source's newest snapshots and jobs.
pub fn anomalies(s: &SourceEvidence) -> Vec<Check> {
    let mut out = Vec::new();
    let mut kinds: Vec<String> = s.snapshots.iter().map(|x| x.kind.to_string()).collect();
    kinds.dedup();
    kinds.sort();
    kinds.dedup();
    for kind in &kinds {
        let of_kind: Vec<&Snapshot> = s
            .snapshots
            .iter()
            .filter(|x| &x.kind.to_string() == kind)
            .collect();
        if let Some(c) = size(kind, &of_kind) {
            out.push(c);
        }
        if let Some(c) = rows(kind, &of_kind) {
            out.push(c);
        }
        if let Some(c) = duration(kind, s) {
            out.push(c);
        }
    }
    out
}

fn size(kind: &str, snaps: &[&Snapshot]) -> Option<Check> {
    let (newest, earlier) = snaps.split_last()?;
    let earlier = &earlier[earlier.len().saturating_sub(HISTORY)..];
    if earlier.len() < MIN_HISTORY {
        return None;
    }
    let med = median(earlier.iter().map(|x| x.size as f64).collect());
    let name = format!("anomaly.size.{kind}");
    Some(if (newest.size as f64) < med * SIZE_SHARE {
        Check {
            name,
            level: Level::Warning,
            detail: format!(
                "the newest {kind} snapshot ({}) holds {}, under half the median of the {} before it ({}): was data deleted? compare with `strongroom show {}`",
                newest.short_id(),
                crate::human_bytes(newest.size),
                earlier.len(),
                crate::human_bytes(med as u64),
                newest.short_id(),
            ),
        }
    } else {
        Check {
            name,
            level: Level::Ok,
            detail: format!(
                "the newest {kind} snapshot holds {} (median of the {} before it: {})",
                crate::human_bytes(newest.size),
                earlier.len(),
                crate::human_bytes(med as u64)
            ),
        }
    })
}

fn rows(kind: &str, snaps: &[&Snapshot]) -> Option<Check> {
    let (newest, earlier) = snaps.split_last()?;
    let previous = earlier.last()?;
    let old = &previous.metadata.row_counts;
    if old.is_empty() || newest.metadata.row_counts.is_empty() {
        return None;
    }
    let mut dropped = Vec::new();
    for (table, &before) in old.iter().filter(|(_, n)| **n > 0) {
        let now = newest.metadata.row_counts.get(table).copied();
        match now {
            None => dropped.push(format!("{table} is gone (had {before} rows)")),
            Some(n) if before >= ROWS_MIN && (n as f64) < before as f64 * (1.0 - ROWS_DROP) => {
                dropped.push(format!("{table} {before} → {n} rows"))
            }
            _ => {}
        }
    }
    let name = format!("anomaly.rows.{kind}");
    Some(if dropped.is_empty() {
        Check {
            name,
            level: Level::Ok,
            detail: format!(
                "no table lost more than half its rows since the previous {kind} snapshot"
            ),
        }
    } else {
        Check {
            name,
            level: Level::Critical,
            detail: format!(
                "since the previous {kind} snapshot ({}): {}; if that was not intended, restore the previous snapshot elsewhere and compare",
                previous.short_id(),
                dropped.join(", ")
            ),
        }
    })
}

fn duration(kind: &str, s: &SourceEvidence) -> Option<Check> {
    let jobs: Vec<f64> = s
        .records
        .iter()
        .filter(|r| r.job == "backup" && r.ok && r.kind.as_deref() == Some(kind))
        .map(|r| r.seconds)
        .collect();
    let (&newest, earlier) = jobs.split_last()?;
    let earlier = &earlier[earlier.len().saturating_sub(HISTORY)..];
    if earlier.len() < MIN_HISTORY {
        return None;
    }
    let med = median(earlier.to_vec());
    let name = format!("anomaly.duration.{kind}");
    Some(
        if newest > med * SLOW_FACTOR && newest > med + SLOW_SLACK_SECONDS {
            Check {
                name,
                level: Level::Warning,
                detail: format!(
                    "the last {kind} backup took {newest:.1}s, over {SLOW_FACTOR}x the median of the {} before it ({med:.1}s): look for lock waits, a slow store or a grown database (`strongroom journal --job backup`)",
                    earlier.len()
                ),
            }
        } else {
            Check {
                name,
                level: Level::Ok,
                detail: format!(
                    "the last {kind} backup took {newest:.1}s (median of the {} before it: {med:.1}s)",
                    earlier.len()
                ),
            }
        },
    )
}

//! Monitoring: can we recover, and how much would we lose — per source, from evidence.
//!
//! Owns `status` (health per source against `[objectives]`), the strategy's checklist ticked
//! from the journal, anomalies against a source's own history, noticing state changes for
//! alerts, and the Prometheus metrics. Everything is judged from what the repository holds
//! (snapshots, journal records, the WAL archive) and, for PostgreSQL, what the server says
//! when it is reachable; nothing is ticked by hand.
//!
//! The split: [`evidence`] gathers (reads the repository and servers), [`evaluate`],
//! [`anomaly`] and [`checklist`] judge (pure functions of evidence and `now`, so every rule
//! is tested with a faked clock), [`notify`] remembers what was last sent and sends state
//! changes, [`metrics`] renders, [`protection`] reads what guards the repository against
//! a stolen host, [`report`] makes the status document once for `status` and the daemon.
//! Must not send alerts itself except through
//! [`crate::alert::send`], and must not write anything but `state/alerts`.

pub mod anomaly;
pub mod checklist;
pub mod evaluate;
pub mod evidence;
pub mod metrics;
pub mod notify;
pub mod protection;
pub mod report;

#[cfg(test)]
mod tests;

use serde::Serialize;

/// How a check, a source or the whole deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Needs attention soon.
    Warning,
    /// Recovery is at risk now.
    Critical,
}

impl Level {
    /// `ok`, `warning` or `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// Parses a name that [`Level::name`] gives.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "ok" => Some(Level::Ok),
            "warning" => Some(Level::Warning),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }
}

/// One finding.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Check {
    /// Stable name: `backup.full`, `wal.archive`, `verify`, `anomaly.size.full`, …
    pub name: String,
    /// How it stands.
    pub level: Level,
    /// What was found, in a sentence, with what to do when it is not ok.
    pub detail: String,
}

/// One item of the strategy's checklist, ticked from evidence.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChecklistItem {
    /// `daily`, `weekly`, `monthly` or `quarterly`.
    pub period: &'static str,
    /// The strategy's words for it.
    pub item: &'static str,
    /// Whether the evidence shows it done.
    pub done: bool,
    /// The checks it rests on.
    pub evidence: Vec<String>,
}

/// The health of one source.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SourceHealth {
    /// The source's name (or URL identity).
    pub source: String,
    /// The worst level of its checks.
    pub level: Level,
    /// Its checks.
    pub checks: Vec<Check>,
    /// The strategy's checklist for it.
    pub checklist: Vec<ChecklistItem>,
    /// The recovery point it really has: seconds since the newest state a restore reaches
    /// (captured commit, archived WAL or snapshot); `None` with nothing stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<f64>,
}

/// What `status` reports.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Health {
    /// Whether every source is ok.
    pub ok: bool,
    /// When it was judged.
    pub at: jiff::Timestamp,
    /// Per source.
    pub sources: Vec<SourceHealth>,
}

impl Health {
    /// The worst level of any source; a warning when there is no source to judge.
    pub fn level(&self) -> Level {
        self.sources
            .iter()
            .map(|s| s.level)
            .max()
            .unwrap_or(Level::Warning)
    }
}

/// Formats a duration for people: `3d 4h`, `26h 5m`, `14m`, `40s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..172_800 => {
            let m = (s % 3600) / 60;
            if m == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h {m}m", s / 3600)
            }
        }
        _ => {
            let h = (s % 86_400) / 3600;
            if h == 0 {
                format!("{}d", s / 86_400)
            } else {
                format!("{}d {h}h", s / 86_400)
            }
        }
    }
}

/// `later - earlier` as a duration (zero when `later` is earlier).
pub fn since(earlier: jiff::Timestamp, later: jiff::Timestamp) -> std::time::Duration {
    std::time::Duration::from_secs_f64(
        (later - earlier)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0)
            .max(0.0),
    )
}

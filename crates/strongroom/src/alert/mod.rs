//! Alerts: what is sent to the `[[alerts]]` targets, and sending it.
//!
//! Owns the alert document (the JSON a webhook receives and a command reads on stdin) and
//! its delivery. Must not decide *when* to alert: `monitor` notices state changes, and the
//! command line reports failed jobs; here is only what an alert says and how it reaches
//! people. A failing target is retried and logged, never turned into the job's failure.

use serde::{Deserialize, Serialize};

/// Why an alert was sent.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A source's health got worse (ok → warning or critical, warning → critical) or
    /// better without being ok yet (critical → warning).
    StateChanged,
    /// A source is back to ok.
    Recovered,
    /// A job (backup, verify, wal push, prune, drill, …) failed.
    JobFailed,
}

/// One check behind a state change, as `status` reported it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlertCheck {
    /// The check's name (`backup.full`, `wal.archive`, …).
    pub name: String,
    /// `ok`, `warning` or `critical`.
    pub level: String,
    /// What it found.
    pub detail: String,
}

/// The alert document.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    /// Why it was sent.
    pub event: AlertEvent,
    /// The source it is about, when there is one.
    pub source: Option<String>,
    /// The level now: `ok`, `warning` or `critical` (a failed job is `critical`).
    pub level: String,
    /// The level the last alert about this source reported, for state changes.
    pub previous_level: Option<String>,
    /// One sentence saying what happened.
    pub summary: String,
    /// The checks that are not ok (all of them for a recovery notice: empty).
    pub checks: Vec<AlertCheck>,
    /// The job that failed.
    pub job: Option<String>,
    /// The failed job's error kind (`storage_unreachable`, …).
    pub error_kind: Option<String>,
    /// The failed job's error sentence.
    pub error: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// When this was noticed.
    pub at: jiff::Timestamp,
    /// The host that noticed it.
    pub hostname: String,
    /// The repository, as its URL (never with credentials).
    pub repository: String,
}

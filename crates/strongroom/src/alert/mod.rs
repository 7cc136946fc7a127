//! Alerts: what is sent to the `[[alerts]]` targets, and sending it.
//!
//! Owns the alert document (the JSON a webhook receives and a command reads on stdin) and
//! its delivery. Must not decide *when* to alert: `monitor` notices state changes, and the
//! command line reports failed jobs; here is only what an alert says and how it reaches
//! people. A failing target is retried and logged, never turned into the job's failure.
//!
//! Submodules: `deliver` (one attempt loop per target, [`send`]), `webhook` (HTTP POST and
//! the Slack body), `ntfy` (ntfy's publish request), `healthchecks` (job pings, [`send_ping`]),
//! `command` (a shell command with the alert on its stdin), `email` (the message an
//! `email` command reads), `repeat` (remembering which job failures were alerted, to hold
//! back repeats).

mod command;
mod deliver;
mod email;
mod healthchecks;
mod ntfy;
pub mod repeat;
mod webhook;

pub use deliver::{Delivery, Outcome, TargetReport, send};
pub use healthchecks::{DEFAULT_JOBS, JOBS, Ping, PingKind, run_id, send_ping};
pub use webhook::{redact_url, slack_text};

use serde::{Deserialize, Serialize};

/// What an `[[alerts]]` target is sent (its `format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The alert document as JSON (webhooks and commands).
    Json,
    /// A Slack-compatible `{"text": …}` message (webhooks).
    Slack,
    /// ntfy's publish request: the sentence as the body, title, priority and tags as
    /// headers (webhooks).
    Ntfy,
    /// Healthchecks.io-style pings when jobs start and end; no alerts (webhooks).
    Healthchecks,
    /// An e-mail message, for a command such as `sendmail -t` (commands).
    Email,
}

impl Format {
    /// Every format, as the config names them.
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Slack,
        Format::Ntfy,
        Format::Healthchecks,
        Format::Email,
    ];

    /// The name the config uses (`json`, `slack`, …).
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
            Format::Ntfy => "ntfy",
            Format::Healthchecks => "healthchecks",
            Format::Email => "email",
        }
    }

    /// The format the config calls `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Why an alert was sent.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A source's health got worse (ok → warning or critical, warning → critical, or a
    /// new check failing at the same level: see `new_checks`) or better without being ok
    /// yet (critical → warning).
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
    /// The level the last alert about this source reported, for state changes; `None`
    /// when this is the first alert about it (and for failed jobs).
    pub previous_level: Option<String>,
    /// For state changes: the checks failing now that were not (or less badly) when the
    /// last alert was sent. A new problem alerts even when the level stays the same.
    #[serde(default)]
    pub new_checks: Vec<String>,
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
    /// The WAL segment a failed `wal push` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// When this was noticed.
    pub at: jiff::Timestamp,
    /// The host that noticed it.
    pub hostname: String,
    /// The repository, as its URL (never with credentials).
    pub repository: String,
}

impl Alert {
    /// A failed job's alert (level `critical`), stamped now on this host. `repository` is
    /// stripped of credentials here, whoever calls.
    pub fn job_failed(failure: JobFailure, repository: &str) -> Alert {
        let host = crate::hostname();
        // A source given as a URL on the command line may carry a password.
        let failure = JobFailure {
            source: failure.source.as_deref().map(without_credentials),
            ..failure
        };
        let mut what = match &failure.source {
            Some(s) => format!("{} of {s}", failure.job),
            None => failure.job.clone(),
        };
        if let Some(seg) = &failure.segment {
            what.push_str(&format!(" (segment {seg})"));
        }
        Alert {
            event: AlertEvent::JobFailed,
            source: failure.source,
            level: "critical".into(),
            previous_level: None,
            new_checks: Vec::new(),
            summary: format!("{what} failed on {host}: {}", failure.error),
            checks: Vec::new(),
            job: Some(failure.job),
            error_kind: Some(failure.error_kind),
            error: Some(failure.error),
            segment: failure.segment,
            hint: failure.hint,
            at: jiff::Timestamp::now(),
            hostname: host,
            repository: without_credentials(repository),
        }
    }

    /// How a level ranks: `ok` 0, `warning` 1, `critical` (or anything unknown) 2.
    pub fn rank(level: &str) -> u8 {
        match level {
            "ok" => 0,
            "warning" => 1,
            _ => 2,
        }
    }
}

/// What [`Alert::job_failed`] needs to know of a failed job.
#[derive(Clone, Debug, Default)]
pub struct JobFailure {
    /// The job (`backup`, `wal push`, …).
    pub job: String,
    /// The source it worked on, when there is one.
    pub source: Option<String>,
    /// The error's stable kind name (`ErrorKind::name`).
    pub error_kind: String,
    /// The error sentence.
    pub error: String,
    /// The WAL segment a failed `wal push` was given.
    pub segment: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

/// A repository URL as an alert may show it: without `user:password@` and without a query
/// string (which may carry a SAS token). Plain paths come back unchanged.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests;

/// A duration as people write it in the config: `10s`, `1500ms`.
pub(crate) fn span(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Pings `url` with a GET (a dead-man's switch, such as the daemon's `heartbeat_url`):
/// within `timeout`, a 2xx answer is success; anything else is a sentence without the URL's
/// secrets.
pub fn ping(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let client = webhook::client(url, timeout)?;
    match client.get(url).send() {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "{} answered {}",
            without_credentials(url),
            r.status()
        )),
        Err(e) => Err(format!(
            "cannot reach {}: {}",
            without_credentials(url),
            webhook::describe(e)
        )),
    }
}

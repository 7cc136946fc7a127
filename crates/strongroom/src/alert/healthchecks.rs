//! Healthchecks targets: a ping when a job starts and one when it ends, Healthchecks.io's way.
//!
//! Owns the ping URLs (`URL/start`; `URL` on success; `URL/fail`; each with `?rid=` the run's
//! id, so concurrent runs pair up and Healthchecks measures each run's duration), the
//! plain-text body Healthchecks keeps as the ping's log (a sentence, then `key: value`
//! lines: job, source, host, run id, `duration_seconds`, and on failure the error), which
//! jobs ping a target (`jobs`, default [`DEFAULT_JOBS`]) and the run id itself. Delivery is
//! `deliver`'s (parallel targets, 3 attempts, the target's timeout). Must not decide when
//! a job starts or ends (the command line does), and is never sent alerts: state changes
//! and job-failure alerts skip these targets (`deliver::wants`).

use super::deliver::{Plan, backoff, fan_out};
use super::webhook::{self, Post};
use super::{Delivery, Format, without_credentials};
use crate::config::AlertConfig;
use std::time::Duration;

/// Every job the command line runs and names, as `jobs` spells them.
pub const JOBS: [&str; 11] = [
    "backup", "verify", "restore", "export", "check", "forget", "prune", "copy", "drill", "status",
    "wal push",
];

/// The jobs that ping a `healthchecks` target without `jobs`: the ones run on a schedule.
/// Not `wal push` (once per WAL segment, every few seconds on a busy server), `restore` (an
/// operator's act, not a schedule), nor `status` (monitoring, which alerts through state
/// changes; listed in `jobs`, each run pings: success when every source is ok).
pub const DEFAULT_JOBS: [&str; 8] = [
    "backup", "verify", "check", "forget", "prune", "copy", "drill", "export",
];

/// Which ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingKind {
    /// The job starts (`URL/start`).
    Start,
    /// The job succeeded (`URL`).
    Success,
    /// The job failed (`URL/fail`).
    Fail,
}

/// One ping about one run of a job.
#[derive(Clone, Debug)]
pub struct Ping {
    /// Start, success or failure.
    pub kind: PingKind,
    /// The job, as [`JOBS`] names it.
    pub job: String,
    /// The source it worked on, when there is one (shown without credentials).
    pub source: Option<String>,
    /// The run's id ([`run_id`]), the same in its start and end pings.
    pub run_id: String,
    /// How long the job took (end pings).
    pub duration: Option<Duration>,
    /// The error's stable kind name (failures).
    pub error_kind: Option<String>,
    /// The error sentence (failures).
    pub error: Option<String>,
    /// What to do about it (failures).
    pub hint: Option<String>,
}

impl AlertConfig {
    /// Whether a run of `job` pings this target: a `healthchecks` target whose `jobs` (else
    /// [`DEFAULT_JOBS`]) lists it.
    pub fn pings_job(&self, job: &str) -> bool {
        self.format_or_default() == Format::Healthchecks
            && match &self.jobs {
                Some(jobs) => jobs.iter().any(|j| j == job),
                None => DEFAULT_JOBS.contains(&job),
            }
    }

    /// Whether this target is sent alerts (state changes, recoveries, failed jobs): every
    /// target but a `healthchecks` one.
    pub fn hears_alerts(&self) -> bool {
        self.format_or_default() != Format::Healthchecks
    }
}

/// Sends `ping` to every `healthchecks` target that wants its job, as [`super::send`] sends
/// alerts: in parallel, up to 3 attempts each, never failing (what happened is in the
/// [`Delivery`]; other targets are `Skipped`).
pub fn send_ping(targets: &[AlertConfig], ping: &Ping) -> Delivery {
    ping_with(targets, ping, backoff())
}

/// [`send_ping`] with `pause` before the second attempt (doubled before the third).
pub(super) fn ping_with(targets: &[AlertConfig], ping: &Ping, pause: Duration) -> Delivery {
    let body = body(ping);
    fan_out(targets, pause, "ping", |t| {
        let Some(base) = t.webhook.as_deref().filter(|_| t.pings_job(&ping.job)) else {
            return Plan::Skip;
        };
        let url = match ping_url(base, ping.kind, &ping.run_id) {
            Ok(u) => u,
            Err(e) => return Plan::Broken(e),
        };
        let timeout = t.timeout_or_default();
        let post = Post {
            url,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            auth: None,
            body: body.clone().into_bytes(),
        };
        match webhook::client(base, timeout) {
            Ok(client) => Plan::Go(Box::new(move || webhook::post(&client, &post, timeout))),
            Err(e) => Plan::Broken(e),
        }
    })
}

/// The URL a ping goes to: `base` with `/start` or `/fail` added to its path (nothing for
/// success) and `rid=RUN_ID` to its query (which may hold `create=1` already).
pub(super) fn ping_url(base: &str, kind: PingKind, run_id: &str) -> Result<String, String> {
    let mut u = reqwest::Url::parse(base).map_err(|_| "the webhook is not a URL".to_string())?;
    let suffix = match kind {
        PingKind::Start => Some("start"),
        PingKind::Fail => Some("fail"),
        PingKind::Success => None,
    };
    if let Some(suffix) = suffix {
        u.path_segments_mut()
            .map_err(|_| "the webhook URL cannot take a path".to_string())?
            .pop_if_empty()
            .push(suffix);
    }
    u.query_pairs_mut().append_pair("rid", run_id);
    Ok(u.to_string())
}

/// What Healthchecks keeps as the ping's log: a sentence, then `key: value` lines.
pub(super) fn body(ping: &Ping) -> String {
    let host = crate::hostname();
    let source = ping.source.as_deref().map(without_credentials);
    let what = match &source {
        Some(s) => format!("{} of {s}", ping.job),
        None => ping.job.clone(),
    };
    let secs = ping.duration.map(|d| format!("{:.3}", d.as_secs_f64()));
    let took = secs.as_deref().unwrap_or("?");
    let sentence = match ping.kind {
        PingKind::Start => format!("{what} started on {host}"),
        PingKind::Success => format!("{what} succeeded on {host} in {took} s"),
        PingKind::Fail => format!(
            "{what} failed on {host} after {took} s: {}",
            ping.error.as_deref().unwrap_or("see the job's output")
        ),
    };
    let mut lines = vec![sentence, format!("job: {}", ping.job)];
    if let Some(s) = &source {
        lines.push(format!("source: {s}"));
    }
    lines.push(format!("host: {host}"));
    lines.push(format!("run_id: {}", ping.run_id));
    if let Some(s) = &secs {
        lines.push(format!("duration_seconds: {s}"));
    }
    for (key, v) in [
        ("error_kind", &ping.error_kind),
        ("error", &ping.error),
        ("hint", &ping.hint),
    ] {
        if let Some(v) = v {
            lines.push(format!("{key}: {v}"));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A fresh run id: a random (version 4) UUID, as Healthchecks' `rid` takes.
pub fn run_id() -> String {
    let mut b = [0u8; 16];
    // Never a panic in an alerting path: without randomness, a fixed id still pairs pings.
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

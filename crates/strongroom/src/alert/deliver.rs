//! Delivery: every `[[alerts]]` target that wants an alert gets it, each on its own.
//!
//! Owns which targets want an alert (`min_level`), the attempts (3, with 1 s and 2 s
//! between them; `STRONGROOM_ALERT_BACKOFF_MS` sets the first pause, for tests), the
//! per-attempt timeout, the body each target's format calls for, and the report of what
//! happened. Targets are served in parallel, so one slow target delays no other; job pings
//! ([`super::send_ping`]) go through the same fan-out. Must not fail or panic: whatever goes
//! wrong is a warning in the log and a line in [`Delivery`].

use super::{Alert, AlertEvent, Format, command, email, ntfy, webhook};
use crate::config::AlertConfig;
use std::time::Duration;

/// Attempts per target.
const ATTEMPTS: u32 = 3;
/// Per-attempt timeout when the target sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What an `[[alerts]]` table's optional keys come to (their defaults live here, with the
/// delivery that uses them; docs/CONFIG.md states them and its test checks them).
impl AlertConfig {
    /// The lowest level of a state change this target is sent: `min_level`, else `warning`.
    pub fn min_level_or_default(&self) -> &str {
        self.min_level.as_deref().unwrap_or("warning")
    }

    /// How long one delivery attempt may take: `timeout`, else (or when zero) 10 s.
    pub fn timeout_or_default(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|s| crate::parse_duration(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// What this target is sent: `format`, else the format its URL's host calls for
    /// (`hooks.slack.com`: `slack`, `ntfy.sh`: `ntfy`, `hc-ping.com`: `healthchecks`), else
    /// `json`. A name the config refuses reads as `json` here.
    pub fn format_or_default(&self) -> Format {
        match self.format.as_deref().and_then(Format::from_name) {
            Some(f) => f,
            None => self
                .webhook
                .as_deref()
                .map_or(Format::Json, webhook::format_for_host),
        }
    }
}

/// What happened to one alert at every target.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivery {
    /// One report per configured target, in config order.
    pub targets: Vec<TargetReport>,
}

impl Delivery {
    /// How many targets got the alert.
    pub fn sent(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Sent { .. }))
    }

    /// How many targets wanted it and did not get it.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.targets.iter().filter(|t| f(&t.outcome)).count()
    }
}

/// What happened at one target.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetReport {
    /// The target as logs may show it: `alert 2: webhook https://hooks.slack.com/…` or
    /// `alert 1: command notify` (a command's first word only: the rest may hold a token).
    pub target: String,
    /// Sent, failed or not wanted.
    pub outcome: Outcome,
}

/// How one target's delivery ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Delivered, after this many attempts.
    Sent {
        /// Attempts made (1 when the first one worked).
        attempts: u32,
    },
    /// Given up after this many attempts; `error` says what the last one met.
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure, as a sentence.
        error: String,
    },
    /// Not for this target: a state change below its `min_level`, an alert to a
    /// `healthchecks` target, a ping to any other target or about a job it does not list.
    Skipped,
}

/// Sends `alert` to every target in `targets` that wants it, each independently and in
/// parallel, with up to 3 attempts each. Never fails: failures are logged (`warn`) and
/// reported in the returned [`Delivery`]. Takes at most about 3 × the largest `timeout`
/// plus the pauses between attempts (3 s).
pub fn send(targets: &[AlertConfig], alert: &Alert) -> Delivery {
    send_with(targets, alert, backoff())
}

/// [`send`] with `pause` before the second attempt (doubled before the third).
pub(super) fn send_with(targets: &[AlertConfig], alert: &Alert, pause: Duration) -> Delivery {
    let json = match serde_json::to_vec(alert) {
        Ok(j) => j,
        Err(e) => {
            // Cannot happen for this document; still no panic in an alerting path.
            tracing::warn!("cannot write the alert as JSON: {e}");
            return Delivery::default();
        }
    };
    fan_out(targets, pause, "alert", |t| {
        if !wants(t, alert) {
            return Plan::Skip;
        }
        match attempt(t, alert, &json) {
            Ok(a) => Plan::Go(a),
            Err(e) => Plan::Broken(e),
        }
    })
}

/// One try at delivering to a target; `Err` is the sentence saying why it failed.
pub(super) type Attempt<'a> = Box<dyn Fn() -> Result<(), String> + 'a>;

/// What a target does with one alert or ping.
pub(super) enum Plan<'a> {
    /// Not for this target.
    Skip,
    /// Try this, up to [`ATTEMPTS`] times.
    Go(Attempt<'a>),
    /// Cannot even be tried; the sentence says why.
    Broken(String),
}

/// Serves every target on its own thread: `plan` (called on that thread) says what to do,
/// and each attempt is retried with `pause` (doubled) between. `what` names it in the log
/// (`alert`, `ping`).
pub(super) fn fan_out<'a, P>(
    targets: &'a [AlertConfig],
    pause: Duration,
    what: &'static str,
    plan: P,
) -> Delivery
where
    P: Fn(&'a AlertConfig) -> Plan<'a> + Sync,
{
    let plan = &plan;
    let reports = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (i, s.spawn(move || deliver(i, t, what, plan(t), pause))))
            .collect();
        handles
            .into_iter()
            .map(|(i, h)| {
                h.join().unwrap_or_else(|_| TargetReport {
                    target: name(i, &targets[i]),
                    outcome: Outcome::Failed {
                        attempts: 0,
                        error: "delivery panicked".into(),
                    },
                })
            })
            .collect()
    });
    Delivery { targets: reports }
}

/// Whether target `t` wants `alert`: not a `healthchecks` target (it hears job runs, see
/// [`super::send_ping`]); otherwise recoveries and job failures always; a state change when its
/// level, or the level it came from (so a team told "critical" hears it eased), is at least
/// the target's `min_level`.
pub(super) fn wants(t: &AlertConfig, alert: &Alert) -> bool {
    if t.format_or_default() == Format::Healthchecks {
        return false;
    }
    if alert.event != AlertEvent::StateChanged {
        return true;
    }
    let min = Alert::rank(t.min_level_or_default());
    let was = alert.previous_level.as_deref().map_or(0, Alert::rank);
    Alert::rank(&alert.level).max(was) >= min
}

/// The target as logs show it (see [`TargetReport::target`]).
fn name(i: usize, t: &AlertConfig) -> String {
    match (&t.webhook, &t.command) {
        (Some(url), _) => format!("alert {}: webhook {}", i + 1, webhook::redact_url(url)),
        (None, Some(cmd)) => format!(
            "alert {}: command {}",
            i + 1,
            cmd.split_whitespace().next().unwrap_or("(empty)")
        ),
        (None, None) => format!("alert {}: no target", i + 1),
    }
}

fn deliver(
    i: usize,
    t: &AlertConfig,
    what: &'static str,
    plan: Plan<'_>,
    pause: Duration,
) -> TargetReport {
    let target = name(i, t);
    let result = match plan {
        Plan::Skip => {
            tracing::debug!(target = %target, "{what} not for this target; not sent");
            return TargetReport {
                target,
                outcome: Outcome::Skipped,
            };
        }
        Plan::Broken(e) => Err((0, e)),
        Plan::Go(once) => retry(&once, pause),
    };
    let outcome = match result {
        Ok(attempts) => {
            tracing::info!(target = %target, attempts, "{what} delivered");
            Outcome::Sent { attempts }
        }
        Err((attempts, error)) => {
            tracing::warn!("{target}: {what} not delivered after {attempts} attempts: {error}");
            Outcome::Failed { attempts, error }
        }
    };
    TargetReport { target, outcome }
}

/// What one attempt at delivering `alert` to `t` does: the body its format calls for, by
/// POST or on a command's stdin.
fn attempt<'a>(t: &'a AlertConfig, alert: &Alert, json: &[u8]) -> Result<Attempt<'a>, String> {
    let timeout = t.timeout_or_default();
    let format = t.format_or_default();
    match (&t.webhook, &t.command) {
        (Some(url), _) => {
            let post = match format {
                Format::Slack => webhook::Post::json(url, webhook::slack_body(alert)),
                Format::Ntfy => ntfy::post(url, alert),
                // `healthchecks` targets are not sent alerts; `email` is refused on webhooks.
                _ => webhook::Post::json(url, json.to_vec()),
            };
            let client = webhook::client(url, timeout)?;
            Ok(Box::new(move || webhook::post(&client, &post, timeout)))
        }
        (None, Some(cmd)) => {
            let input = if format == Format::Email {
                email::message(
                    alert,
                    t.email_to.as_deref().unwrap_or_default(),
                    t.email_from.as_deref(),
                )
                .into_bytes()
            } else {
                json.to_vec()
            };
            let env = vec![
                (
                    "STRONGROOM_ALERT_EVENT",
                    event_name(alert.event).to_string(),
                ),
                ("STRONGROOM_ALERT_LEVEL", alert.level.clone()),
                (
                    "STRONGROOM_ALERT_SOURCE",
                    alert.source.clone().unwrap_or_default(),
                ),
            ];
            Ok(Box::new(move || command::run(cmd, &input, &env, timeout)))
        }
        (None, None) => Err("has neither webhook nor command".into()),
    }
}

/// Tries `once` up to [`ATTEMPTS`] times; the number of attempts made, or that and the last
/// error.
fn retry(once: &Attempt<'_>, mut pause: Duration) -> Result<u32, (u32, String)> {
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match once() {
            Ok(()) => return Ok(attempt),
            Err(e) => {
                tracing::debug!("attempt {attempt} of {ATTEMPTS} failed: {e}");
                last = e;
            }
        }
        if attempt < ATTEMPTS {
            std::thread::sleep(pause);
            pause *= 2;
        }
    }
    Err((ATTEMPTS, last))
}

/// The pause before the second attempt (doubled before the third): 1 s, or
/// `STRONGROOM_ALERT_BACKOFF_MS`.
pub(super) fn backoff() -> Duration {
    std::env::var("STRONGROOM_ALERT_BACKOFF_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis)
}

fn event_name(e: AlertEvent) -> &'static str {
    match e {
        AlertEvent::StateChanged => "state_changed",
        AlertEvent::Recovered => "recovered",
        AlertEvent::JobFailed => "job_failed",
    }
}

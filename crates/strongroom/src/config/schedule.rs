//! `[sources.NAME.schedule]` and `[daemon]`: when the daemon runs each job, and how it runs.
//!
//! Owns the schedule and daemon keys, their defaults (the strategy's) and their validation.
//! Must not compute times or run anything: [`crate::schedule`] turns these into a plan, and
//! [`crate::daemon`] runs it.

use super::Config;
use super::problems::{KeyPath, Problems};
use serde::Deserialize;
use std::time::Duration;

/// The strategy's schedules, job by job: a logical or full backup daily at 02:00 UTC, a
/// physical one every 6 hours, a test restore weekly, a drill on the first day of each
/// quarter, retention and prune daily, a repository check weekly. Copies follow each backup
/// (`after-backup`).
pub const DEFAULT_SCHEDULES: [(&str, &str); 8] = [
    ("full", "0 2 * * *"),
    ("logical", "0 2 * * *"),
    ("physical", "0 */6 * * *"),
    ("verify", "0 4 * * 0"),
    ("drill", "0 5 1 1,4,7,10 *"),
    ("prune", "30 3 * * *"),
    ("copy", AFTER_BACKUP),
    ("check", "0 5 * * 0"),
];

/// The schedule value that runs a job after each successful backup of the source (copies).
pub const AFTER_BACKUP: &str = "after-backup";

/// The schedule value that turns a job off.
pub const OFF: &str = "off";

/// `[sources.NAME.schedule]`: one line per job, each a five-field cron pattern (minute,
/// hour, day of month, month, day of week; `L`, `W` and `#` as croner reads them), `off`, or
/// for `copy` also `after-backup`. A key left out takes the strategy's schedule
/// ([`DEFAULT_SCHEDULES`]); a backup kind the source's engine does not have is never run.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The time zone the patterns are read in, an IANA name (default `UTC`, the strategy's).
    pub timezone: Option<String>,
    /// Each run starts up to this much later than its pattern says (e.g. `10m`), by an
    /// amount fixed per source, job and run, so that many hosts do not start at once
    /// (default none).
    pub jitter: Option<String>,
    /// SQLite backups.
    pub full: Option<String>,
    /// PostgreSQL logical backups (pg_dump).
    pub logical: Option<String>,
    /// PostgreSQL physical backups (base backups; need a replication-capable role).
    pub physical: Option<String>,
    /// Test restores of the newest snapshot (`strongroom verify`).
    pub verify: Option<String>,
    /// Recovery drills (`strongroom drill`).
    pub drill: Option<String>,
    /// Retention and prune (`strongroom forget --prune`) of this source's snapshots.
    pub prune: Option<String>,
    /// Copies to every `[[copies]]` repository (`strongroom copy`); `after-backup` (the
    /// default) copies after each successful backup.
    pub copy: Option<String>,
    /// The repository's integrity (`strongroom check`).
    pub check: Option<String>,
}

impl ScheduleConfig {
    /// The line of `job` as written, or the strategy's when the key is absent.
    pub fn line(&self, job: &str) -> &str {
        let written = match job {
            "full" => &self.full,
            "logical" => &self.logical,
            "physical" => &self.physical,
            "verify" => &self.verify,
            "drill" => &self.drill,
            "prune" => &self.prune,
            "copy" => &self.copy,
            "check" => &self.check,
            _ => &None,
        };
        match written {
            Some(w) => w.trim(),
            None => DEFAULT_SCHEDULES
                .iter()
                .find(|(j, _)| *j == job)
                .map(|(_, d)| *d)
                .unwrap_or(OFF),
        }
    }

    /// The time zone's name (`UTC` when unset).
    pub fn timezone_name(&self) -> &str {
        self.timezone.as_deref().map(str::trim).unwrap_or("UTC")
    }
}

/// One `[[daemon.users]]` table: who may act from the dashboard.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DashboardUser {
    /// The login name.
    pub name: String,
    /// An Argon2id hash of the password in PHC form (`$argon2id$v=19$…`), as
    /// `strongroom daemon --hash-password` prints it; never the repository password.
    pub password_hash: String,
    /// `operator` (may start a backup or a drill from the page) or `viewer` (may not).
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "operator".into()
}

/// `[daemon]`: how `strongroom daemon` runs jobs and serves its dashboard.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Pinged (HTTP GET) after each evaluation in which every source meets its objectives,
    /// and never otherwise: a dead-man's switch (Healthchecks, Cronitor, …) pages when the
    /// pings stop.
    pub heartbeat_url: Option<String>,
    /// How long SIGTERM waits for running jobs to finish before it interrupts them (they
    /// then stop cleanly, as on Ctrl-C); default `5m`.
    pub stop_timeout: Option<String>,
    /// How many times a job that failed for a reason worth retrying (an unreachable store
    /// or server) is tried again, with doubling delays; default 3.
    pub retries: Option<u32>,
    /// The delay before the first retry, doubled for each next one; default `1m`.
    pub retry_delay: Option<String>,
    /// How often the daemon judges every source (as `status` does, alerts included);
    /// default `1m`.
    pub status_interval: Option<String>,
    /// How long a dashboard login lasts without use; default `15m`.
    pub session_timeout: Option<String>,
    /// Who may log in to the dashboard (`[[daemon.users]]`); without any, the page is
    /// read-only for everyone.
    #[serde(default)]
    pub users: Vec<DashboardUser>,
}

/// A validated duration setting, or `default` seconds when it is unset.
fn duration(v: &Option<String>, default: u64) -> Duration {
    v.as_deref()
        .and_then(|v| crate::parse_duration(v).ok())
        .unwrap_or(Duration::from_secs(default))
}

impl DaemonSettings {
    /// How long SIGTERM waits for running jobs (default 5 minutes).
    pub fn stop_timeout(&self) -> Duration {
        duration(&self.stop_timeout, 300)
    }

    /// How many retries a retryable failure gets (default 3).
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(3)
    }

    /// The delay before the first retry (default 1 minute).
    pub fn retry_delay(&self) -> Duration {
        duration(&self.retry_delay, 60)
    }

    /// How often every source is judged (default 1 minute).
    pub fn status_interval(&self) -> Duration {
        duration(&self.status_interval, 60)
    }

    /// How long a dashboard login lasts unused (default 15 minutes).
    pub fn session_timeout(&self) -> Duration {
        duration(&self.session_timeout, 900)
    }
}

impl ScheduleConfig {
    /// The most a run starts after its slot (none by default).
    pub fn jitter(&self) -> Duration {
        duration(&self.jitter, 0)
    }
}

/// Checks every schedule and the `[daemon]` table.
pub(super) fn validate(cfg: &Config, problems: &mut Problems<'_>) {
    for (name, s) in &cfg.sources {
        let Some(sched) = &s.schedule else { continue };
        let at = KeyPath::of(&["sources", name, "schedule"]);
        if let Err(e) = crate::schedule::time_zone(sched.timezone_name()) {
            problems.at(at.clone().key("timezone"), e);
        }
        if let Some(j) = &sched.jitter
            && let Err(e) = crate::parse_duration(j)
        {
            problems.at(at.clone().key("jitter"), e);
        }
        for (job, _) in DEFAULT_SCHEDULES {
            let line = sched.line(job);
            if line == OFF || (job == "copy" && line == AFTER_BACKUP) {
                continue;
            }
            if let Err(e) = crate::schedule::pattern(line) {
                problems.at(at.clone().key(job), e);
            }
        }
    }
    let at = KeyPath::of(&["daemon"]);
    let d = &cfg.daemon;
    for (key, v) in [
        ("stop_timeout", &d.stop_timeout),
        ("retry_delay", &d.retry_delay),
        ("status_interval", &d.status_interval),
        ("session_timeout", &d.session_timeout),
    ] {
        if let Some(v) = v
            && let Err(e) = crate::parse_duration(v)
        {
            problems.at(at.clone().key(key), e);
        }
    }
    if let Some(u) = &d.heartbeat_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        problems.at(
            at.clone().key("heartbeat_url"),
            format!(
                "{:?} is not an http:// or https:// URL",
                crate::alert::without_credentials(u)
            ),
        );
    }
    for (i, u) in d.users.iter().enumerate() {
        let at = at.clone().key("users").index(i);
        if u.name.trim().is_empty() {
            problems.at(at.clone().key("name"), "is empty: give the user a name");
        }
        if !u.password_hash.starts_with("$argon2id$") {
            problems.at(
                at.clone().key("password_hash"),
                "is not an Argon2id hash ($argon2id$…): make one with `strongroom daemon --hash-password`",
            );
        }
        if !["operator", "viewer"].contains(&u.role.as_str()) {
            problems.at(
                at.clone().key("role"),
                format!("{:?} is neither \"operator\" nor \"viewer\"", u.role),
            );
        }
    }
}

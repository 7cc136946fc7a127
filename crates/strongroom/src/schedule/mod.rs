//! The plan: which job runs for which source when, read from `[sources.NAME.schedule]`.
//!
//! Owns turning the config's schedule lines into [`Entry`]s (cron pattern, time zone,
//! jitter), the command line each job is (the same for the daemon and for an external
//! scheduler), and the rule for when a run is due ([`Entry::due`]): the latest
//! slot after the last one run whose time has come, so a run missed while the host slept,
//! was down or had its clock moved forward runs once and never twice. Pure: times in, times
//! out, so every rule is tested with a faked clock. Must not run jobs or keep state: that
//! is [`crate::daemon`]'s.

pub mod export;
#[cfg(test)]
mod tests;

use crate::config::{AFTER_BACKUP, Config, DEFAULT_SCHEDULES, OFF, ScheduleConfig};
use crate::repository::snapshot::BackupKind;
use crate::source::{Location, parse_location};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::time::Duration;

/// A job the daemon runs for a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    /// `strongroom backup SOURCE --kind full`: SQLite.
    Full,
    /// `strongroom backup SOURCE --kind logical`: PostgreSQL's pg_dump.
    Logical,
    /// `strongroom backup SOURCE --kind physical`: a PostgreSQL base backup.
    Physical,
    /// `strongroom verify latest --source SOURCE`: a test restore.
    Verify,
    /// `strongroom drill --source SOURCE`: a timed recovery rehearsal.
    Drill,
    /// `strongroom forget --source SOURCE --prune`: retention, then prune.
    Prune,
    /// `strongroom copy --source SOURCE`: into every `[[copies]]` repository.
    Copy,
    /// `strongroom check`: the repository's integrity.
    Check,
}

impl Job {
    /// The job's name as the schedule spells it (`full`, `logical`, `physical`, `verify`,
    /// `drill`, `prune`, `copy`, `check`).
    pub fn name(self) -> &'static str {
        match self {
            Job::Full => "full",
            Job::Logical => "logical",
            Job::Physical => "physical",
            Job::Verify => "verify",
            Job::Drill => "drill",
            Job::Prune => "prune",
            Job::Copy => "copy",
            Job::Check => "check",
        }
    }

    /// The strongroom arguments that run the job for `source` (after the global options).
    pub fn args(self, source: &str) -> Vec<String> {
        let s = source.to_string();
        let v: Vec<&str> = match self {
            Job::Full | Job::Logical | Job::Physical => {
                return vec!["backup".into(), s, "--kind".into(), self.name().into()];
            }
            Job::Verify => vec!["verify", "latest", "--source"],
            Job::Drill => vec!["drill", "--source"],
            Job::Prune => return vec!["forget".into(), "--source".into(), s, "--prune".into()],
            Job::Copy => vec!["copy", "--source"],
            Job::Check => return vec!["check".into()],
        };
        v.into_iter().map(String::from).chain([s]).collect()
    }

    /// The kind of snapshot a backup job takes; `None` for other jobs.
    pub fn backup_kind(self) -> Option<BackupKind> {
        match self {
            Job::Full => Some(BackupKind::Full),
            Job::Logical => Some(BackupKind::Logical),
            Job::Physical => Some(BackupKind::Physical),
            _ => None,
        }
    }

    /// Whether the job acts on the whole repository rather than one source (it then runs
    /// once per slot however many sources schedule it).
    pub fn repository_wide(self) -> bool {
        matches!(self, Job::Check)
    }
}

/// When an entry runs.
#[derive(Clone, Debug)]
pub enum Timing {
    /// At the times a five-field cron pattern names, in the entry's time zone.
    Cron(Box<Pattern>),
    /// After each successful backup of the source.
    AfterBackup,
}

/// A parsed five-field cron pattern, with the text it was read from.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The pattern as written.
    pub text: String,
    cron: croner::Cron,
}

/// One line of a source's schedule.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The configured source's name.
    pub source: String,
    /// What runs.
    pub job: Job,
    /// When.
    pub timing: Timing,
    /// The time zone the pattern is read in.
    pub tz: TimeZone,
    /// The time zone's IANA name, as configured.
    pub tz_name: String,
    /// The most a run starts after its slot.
    pub jitter: Duration,
}

/// Every entry of every configured source.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Sorted by source, then job.
    pub entries: Vec<Entry>,
}

/// Reads an IANA time zone name (`UTC`, `Europe/Paris`).
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        format!("{name:?} is not a time zone this host knows: give an IANA name such as \"UTC\" or \"Europe/Paris\"")
    })
}

/// Parses a five-field cron pattern (minute, hour, day of month, month, day of week).
pub fn pattern(text: &str) -> Result<Pattern, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 && !text.trim_start().starts_with('@') {
        return Err(format!(
            "{text:?} has {fields} fields; a schedule is five (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\"), or \"off\""
        ));
    }
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| {
            format!("{text:?} is not a cron pattern ({e}); e.g. \"0 2 * * *\" is daily at 02:00")
        })?;
    Ok(Pattern {
        text: text.trim().to_string(),
        cron,
    })
}

impl Pattern {
    /// The first time strictly after `t` the pattern names, in `tz`.
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let z = t.to_zoned(tz.clone());
        self.cron
            .find_next_occurrence(&z, false)
            .ok()
            .map(|n| n.timestamp())
    }

    /// The pattern in words ("At 02:00").
    pub fn describe(&self) -> String {
        self.cron.describe().trim_end_matches('.').to_string()
    }
}

/// How many slots [`Entry::due`] walks at most: a minutely schedule over a year.
const MAX_WALK: usize = 600_000;

impl Entry {
    /// The key the daemon keeps this entry's state under: `SOURCE/JOB`, or `*/check` for
    /// a repository-wide job.
    pub fn key(&self) -> String {
        if self.job.repository_wide() {
            format!("*/{}", self.job.name())
        } else {
            format!("{}/{}", self.source, self.job.name())
        }
    }

    /// The delay of the run of `slot`: fixed per source, job and slot (the same after a
    /// restart), below [`Entry::jitter`].
    pub fn jitter_of(&self, slot: Timestamp) -> Duration {
        let ms = self.jitter.as_millis() as u64;
        if ms == 0 {
            return Duration::ZERO;
        }
        let h = blake3::hash(format!("{}\0{}", self.key(), slot.as_second()).as_bytes());
        let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        Duration::from_millis(n % ms)
    }

    /// The next slot strictly after `t` (`None` for `after-backup` entries and patterns
    /// that never match again).
    pub fn next_slot(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.timing {
            Timing::Cron(p) => p.next_after(t, &self.tz),
            Timing::AfterBackup => None,
        }
    }

    /// When the run of `slot` starts: the slot plus its jitter.
    pub fn start_of(&self, slot: Timestamp) -> Timestamp {
        slot + self.jitter_of(slot)
    }

    /// The slot to run now, if any: the latest slot after `last` (the slot last run) whose
    /// start has come by `now`. Slots missed in between are not run apart: one run stands
    /// for all of them.
    pub fn due(&self, last: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut found = None;
        let mut cursor = last;
        for _ in 0..MAX_WALK {
            let Some(s) = self.next_slot(cursor) else {
                break;
            };
            if s > now {
                break;
            }
            if self.start_of(s) <= now {
                found = Some(s);
            }
            cursor = s;
        }
        found
    }

    /// When this entry next starts a run, counting from `last` (the slot last run).
    pub fn next_start(&self, last: Timestamp) -> Option<Timestamp> {
        self.next_slot(last).map(|s| self.start_of(s))
    }

    /// The entry's line as a person reads it: "daily backup (full) at 02:00 UTC".
    pub fn describe(&self) -> String {
        match &self.timing {
            Timing::Cron(p) => format!("{} ({}, {})", p.text, p.describe(), self.tz_name),
            Timing::AfterBackup => AFTER_BACKUP.to_string(),
        }
    }
}

impl Plan {
    /// The plan of every configured source: its schedule lines, the strategy's where a
    /// line is absent, without the lines that are `off` and without backup kinds its engine
    /// has not. `copy` is planned only when `[[copies]]` names a repository. The config was
    /// validated when loaded; a line that fails here anyway is an [`crate::Error::Config`].
    pub fn of(config: &Config) -> crate::Result<Plan> {
        let mut entries = Vec::new();
        let default = ScheduleConfig::default();
        for (name, s) in &config.sources {
            let sched = s.schedule.as_ref().unwrap_or(&default);
            let at = |key: &str, e: String| {
                crate::Error::Config(format!("sources.{name}.schedule.{key}: {e}"))
            };
            let tz_name = sched.timezone_name().to_string();
            let tz = time_zone(&tz_name).map_err(|e| at("timezone", e))?;
            if let Some(j) = &sched.jitter {
                crate::parse_duration(j).map_err(|e| at("jitter", e))?;
            }
            let jitter = sched.jitter();
            let kinds: &[Job] = match parse_location(&s.url) {
                Some(Location::Sqlite(_)) => &[Job::Full],
                Some(Location::Postgres(_)) => &[Job::Logical, Job::Physical],
                None => &[],
            };
            let jobs = kinds.iter().copied().chain([
                Job::Verify,
                Job::Drill,
                Job::Prune,
                Job::Copy,
                Job::Check,
            ]);
            for job in jobs {
                let line = sched.line(job.name());
                if line == OFF || (job == Job::Copy && config.copies.is_empty()) {
                    continue;
                }
                let timing = if job == Job::Copy && line == AFTER_BACKUP {
                    Timing::AfterBackup
                } else {
                    Timing::Cron(Box::new(pattern(line).map_err(|e| at(job.name(), e))?))
                };
                entries.push(Entry {
                    source: name.clone(),
                    job,
                    timing,
                    tz: tz.clone(),
                    tz_name: tz_name.clone(),
                    jitter,
                });
            }
        }
        Ok(Plan { entries })
    }

    /// The `after-backup` entry of `source`'s copies, if it has one.
    pub fn after_backup(&self, source: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.source == source && matches!(e.timing, Timing::AfterBackup))
    }
}

/// The jobs a schedule may name, in the order the plan lists them.
pub fn job_names() -> impl Iterator<Item = &'static str> {
    DEFAULT_SCHEDULES.iter().map(|(j, _)| *j)
}

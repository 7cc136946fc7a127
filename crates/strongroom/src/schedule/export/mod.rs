//! `strongroom schedule export`: the daemon's plan as files an external scheduler runs
//! (a user crontab, systemd units, a GitHub Actions workflow, Kubernetes CronJobs), so the
//! daemon stays optional.
//!
//! Owns turning a [`Plan`] into [`Run`]s (each cron entry once, the repository check once
//! however many sources schedule it, a backup followed by its `after-backup` copy, and
//! `status` for the alerts the daemon would send), one pure function per format, and
//! writing the files without ever leaving half of one ([`write_files`]). The commands in
//! the files find the config by the path given here and the password the way every
//! strongroom command does (`crate::access`): no secret is ever written. A pattern a format
//! cannot express is refused with one sentence naming the source, job and format, never
//! dropped. Must not run jobs or read the clock: the caller passes `now`.

mod calendar;
#[cfg(test)]
mod tests;
mod units;
mod yaml;

pub use calendar::{Fields, Refusal};
pub use units::{concatenated, crontab, systemd};
pub use yaml::{github_actions, kubernetes};

use super::{Job, Pattern, Plan, Timing, pattern};
use crate::config::Config;
use crate::error::{Error, Result};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schedulers an export is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// A user crontab (`crontab FILE`).
    Crontab,
    /// A `.service` and a `.timer` per run, for /etc/systemd/system.
    Systemd,
    /// A workflow for .github/workflows.
    GithubActions,
    /// One CronJob per run, in one multi-document YAML file.
    Kubernetes,
}

impl Format {
    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Crontab => "crontab",
            Format::Systemd => "systemd",
            Format::GithubActions => "github-actions",
            Format::Kubernetes => "kubernetes",
        }
    }

    /// The scheduler in words, for "which NAME cannot express".
    fn called(self) -> &'static str {
        match self {
            Format::Crontab => "a crontab",
            Format::Systemd => "a systemd timer",
            Format::GithubActions => "GitHub Actions",
            Format::Kubernetes => "a Kubernetes CronJob",
        }
    }

    /// The least time between two `status` runs: GitHub bills every run, so hourly
    /// there; five minutes elsewhere.
    pub fn status_floor(self) -> Duration {
        match self {
            Format::GithubActions => Duration::from_secs(3600),
            _ => Duration::from_secs(300),
        }
    }

    /// The file `--output` writes for the formats that are one file (systemd writes one
    /// per unit).
    pub fn file_name(self) -> Option<&'static str> {
        match self {
            Format::Crontab => Some("strongroom.crontab"),
            Format::Systemd => None,
            Format::GithubActions => Some("strongroom-schedule.yml"),
            Format::Kubernetes => Some("strongroom-cronjobs.yaml"),
        }
    }
}

/// What the generated files need beyond the plan: how their commands are spelled.
#[derive(Clone, Debug)]
pub struct Options {
    /// The strongroom program the crontab and the systemd units run: an absolute path.
    pub program: String,
    /// Global options before each job's arguments in the crontab and the units:
    /// `--config FILE`, and `--repo`/`--password-file` when given (paths absolute).
    pub global: Vec<String>,
    /// The config file as the GitHub Actions workflow names it, relative to the
    /// repository's root.
    pub workflow_config: String,
    /// The config file as the files' first line names it.
    pub config_shown: String,
    /// Kubernetes: the container image, with strongroom in its PATH.
    pub image: String,
    /// GitHub Actions turns a time zone into UTC only when its offset no longer changes
    /// after this.
    pub now: Timestamp,
}

/// One file of an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFile {
    /// Its name (no directory).
    pub name: String,
    /// Its contents.
    pub text: String,
}

/// One strongroom command of a run.
#[derive(Clone, Debug)]
pub struct Step {
    /// What it is (`full`, `copy`, `status`, …): a Kubernetes container's name.
    pub name: &'static str,
    /// Its strongroom arguments, after the global options.
    pub args: Vec<String>,
}

/// One scheduled run: what starts at one pattern's times.
#[derive(Clone, Debug)]
pub struct Run {
    /// `hotel-full`, `check`, `status`: the unit's, CronJob's or workflow job's name.
    pub name: String,
    /// Runs of one lane never overlap where the scheduler can say so: the source, or
    /// `repository` for the check, `status` for status.
    pub lane: String,
    /// The source whose schedule it comes from (empty for status).
    pub source: String,
    /// The run in words: "full backup of hotel".
    pub what: String,
    /// The config key its pattern comes from, for refusals (`sources.hotel.schedule.full`).
    pub origin: String,
    /// When.
    pub pattern: Pattern,
    /// The time zone's IANA name.
    pub tz_name: String,
    /// The time zone.
    pub tz: TimeZone,
    /// The most a start is delayed (systemd's `RandomizedDelaySec=`).
    pub jitter: Duration,
    /// A delay below `jitter`, fixed per source and job: what a crontab and a CronJob
    /// sleep first.
    pub delay: Duration,
    /// The commands, in order; each runs only when the one before succeeded.
    pub steps: Vec<Step>,
}

/// The first line of every file an export writes; [`write_files`] replaces only files
/// that start with it.
pub const MARKER: &str = "# Generated by `strongroom schedule export";

fn header(format: Format, opts: &Options) -> String {
    format!(
        "{MARKER} --format {}` from {}: regenerate it rather than edit it.\n",
        format.name(),
        opts.config_shown
    )
}

fn job_words(job: Job) -> &'static str {
    match job {
        Job::Full => "full backup",
        Job::Logical => "logical backup",
        Job::Physical => "physical backup",
        Job::Verify => "test restore",
        Job::Drill => "recovery drill",
        Job::Prune => "retention and prune",
        Job::Copy => "copy",
        Job::Check => "repository check",
    }
}

fn step(job: Job, source: &str) -> Step {
    let mut args = job.args(source);
    args.push("--quiet".into());
    Step {
        name: job.name(),
        args,
    }
}

/// The runs of `plan` (only `source`'s when given), plus `status` every `status_every`
/// (rounded up to what cron can say).
pub fn runs(plan: &Plan, source: Option<&str>, status_every: Duration) -> Result<Vec<Run>> {
    let mut out: Vec<Run> = Vec::new();
    for e in &plan.entries {
        if source.is_some_and(|s| s != e.source) {
            continue;
        }
        let Timing::Cron(p) = &e.timing else { continue };
        let origin = format!("sources.{}.schedule.{}", e.source, e.job.name());
        if e.job.repository_wide() {
            // One check per distinct schedule, however many sources name it.
            if out.iter().any(|r| {
                r.lane == "repository"
                    && r.pattern.text == p.text
                    && r.tz_name == e.tz_name
                    && r.jitter == e.jitter
            }) {
                continue;
            }
            let first = !out.iter().any(|r| r.lane == "repository");
            out.push(Run {
                name: if first {
                    "check".into()
                } else {
                    format!("check-{}", e.source)
                },
                lane: "repository".into(),
                source: e.source.clone(),
                what: "repository check".into(),
                origin,
                pattern: (**p).clone(),
                tz_name: e.tz_name.clone(),
                tz: e.tz.clone(),
                jitter: e.jitter,
                delay: e.jitter_of(Timestamp::UNIX_EPOCH),
                steps: vec![step(e.job, &e.source)],
            });
            continue;
        }
        let mut steps = vec![step(e.job, &e.source)];
        let mut what = format!("{} of {}", job_words(e.job), e.source);
        if e.job.backup_kind().is_some() && plan.after_backup(&e.source).is_some() {
            steps.push(step(Job::Copy, &e.source));
            what.push_str(", then its copy");
        }
        out.push(Run {
            name: format!("{}-{}", e.source, e.job.name()),
            lane: e.source.clone(),
            source: e.source.clone(),
            what,
            origin,
            pattern: (**p).clone(),
            tz_name: e.tz_name.clone(),
            tz: e.tz.clone(),
            jitter: e.jitter,
            delay: e.jitter_of(Timestamp::UNIX_EPOCH),
            steps,
        });
    }
    let mut args = vec!["status".to_string()];
    if let Some(s) = source {
        args.extend(["--source".to_string(), s.to_string()]);
    }
    args.push("--quiet".into());
    let text = status_pattern(status_every);
    out.push(Run {
        name: "status".into(),
        lane: "status".into(),
        source: String::new(),
        what: "status and alerts".into(),
        origin: "daemon.status_interval".into(),
        pattern: pattern(&text).map_err(Error::Internal)?,
        tz_name: "UTC".into(),
        tz: TimeZone::UTC,
        jitter: Duration::ZERO,
        delay: Duration::ZERO,
        steps: vec![Step {
            name: "status",
            args,
        }],
    });
    Ok(out)
}

/// A cron pattern running at most every `every`: every N minutes (N dividing an hour) or
/// every N hours (N dividing a day), the smallest such N that is not shorter.
pub fn status_pattern(every: Duration) -> String {
    let minutes = every.as_secs().div_ceil(60).max(1);
    if minutes < 60 {
        let n = (minutes..=60).find(|n| 60 % n == 0).unwrap_or(60);
        return match n {
            1 => "* * * * *".into(),
            60 => "0 * * * *".into(),
            n => format!("*/{n} * * * *"),
        };
    }
    let hours = minutes.div_ceil(60);
    match (hours..=24).find(|n| 24 % n == 0).unwrap_or(24) {
        1 => "0 * * * *".into(),
        24 => "0 0 * * *".into(),
        n => format!("0 */{n} * * *"),
    }
}

/// The export of `plan` (only `source`'s runs when given) for `format`: one file, or two
/// per run for systemd. A config with nothing scheduled, or a pattern the format cannot
/// express, is refused.
pub fn export(
    format: Format,
    plan: &Plan,
    config: &Config,
    source: Option<&str>,
    opts: &Options,
) -> Result<Vec<ExportFile>> {
    if config.sources.is_empty() {
        return Err(Error::Config(
            "the config names no sources, so nothing is scheduled: add a [sources.NAME] table (see docs/CONFIG.md), or give the config with --config".into(),
        ));
    }
    if let Some(s) = source
        && !config.sources.contains_key(s)
    {
        let names: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        return Err(Error::Config(format!(
            "{s:?} is not a configured source: give one of {}",
            names.join(", ")
        )));
    }
    let every = config.daemon.status_interval().max(format.status_floor());
    let runs = runs(plan, source, every)?;
    let text = match format {
        Format::Systemd => return systemd(&runs, opts, config.daemon.stop_timeout()),
        Format::Crontab => crontab(&runs, opts)?,
        Format::GithubActions => github_actions(&runs, opts, config)?,
        Format::Kubernetes => kubernetes(&runs, opts, config)?,
    };
    Ok(vec![ExportFile {
        name: format.file_name().unwrap_or("strongroom").into(),
        text,
    }])
}

/// The sentence refusing `run` for `format`.
fn refused(run: &Run, format: Format, r: Refusal) -> Error {
    let fix = match (r, format) {
        (Refusal::NotMovable, _) => format!(
            "write that schedule in UTC (timezone = \"UTC\" in [sources.{}.schedule]), or export another format",
            run.source
        ),
        (_, Format::Systemd) => "change the pattern, or let `strongroom daemon` run it".into(),
        _ => "export --format systemd (which can say L and #), change the pattern, or let `strongroom daemon` run it".into(),
    };
    Error::Config(format!(
        "{} = {:?} uses {}, which {} cannot express: {fix}",
        run.origin,
        run.pattern.text,
        r.what(),
        format.called()
    ))
}

/// `name` with every character outside `keep` (and ASCII letters and digits) made `-`.
fn sanitized(name: &str, keep: &[char]) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || keep.contains(&c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `names` as given, or a refusal naming the two runs that share one.
fn distinct(runs: &[Run], names: Vec<String>, format: Format) -> Result<Vec<String>> {
    for (i, a) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|b| b == a) {
            return Err(Error::Config(format!(
                "{} and {} both become {a:?} in {}: rename one of the sources",
                runs[j].origin,
                runs[i].origin,
                format.called()
            )));
        }
    }
    Ok(names)
}

/// A word as POSIX sh reads it: bare when safe, else in single quotes.
pub fn sh_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@,+-".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `dir/name` for each file, written whole: each as a temporary file beside it, synced,
/// then renamed into place, so a file there is always complete. A file there that an
/// export did not write (its first line is not [`MARKER`]) is refused before anything is
/// written, unless `force`. Returns the files of ours in `dir` that this export did not
/// write (runs no longer scheduled), for the caller to name.
pub fn write_files(dir: &Path, files: &[ExportFile], force: bool) -> Result<Vec<PathBuf>> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    for f in files {
        let path = dir.join(&f.name);
        match std::fs::read_to_string(&path) {
            Ok(old) if old.starts_with(MARKER) || force => {}
            Ok(_) => {
                return Err(Error::Target(format!(
                    "{} exists and was not written by `strongroom schedule export`: move it away, or give --force to replace it",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) if force => {}
            Err(e) => return Err(Error::io("read", &path, e)),
        }
    }
    for f in files {
        let path = dir.join(&f.name);
        let tmp = dir.join(format!(".{}.tmp-{}", f.name, std::process::id()));
        let written = (|| {
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(f.text.as_bytes())?;
            out.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("write", &path, e));
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let mut stale = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("strongroom") || files.iter().any(|f| f.name == name) {
                continue;
            }
            let ours = std::fs::read_to_string(entry.path())
                .map(|t| t.starts_with(MARKER))
                .unwrap_or(false);
            if ours {
                stale.push(entry.path());
            }
        }
    }
    stale.sort();
    Ok(stale)
}

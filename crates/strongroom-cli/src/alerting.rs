//! Sending alerts about job failures from the command line: when a job command fails, the
//! configured `[[alerts]]` hear of it (state changes are the library's:
//! `strongroom::monitor::report::judge`).
//!
//! Owns which commands are jobs worth an alert (backup, verify, restore, check, forget,
//! prune, copy, wal push, drill; never for an operator's mistake: `journal::is_job_failure`),
//! what the alert says (the error's kind and sentence as the user
//! saw them, and a hint derived from the kind), and holding back repeats of the same
//! failure in the same repository once an alert about it was delivered
//! (`STRONGROOM_ALERT_REPEAT`, default `1h`; `wal push` fails every few seconds while the
//! repository is down). Must not change the command's outcome: it runs after the
//! failure was reported, its own trouble is a warning, and the exit code stays the job's.
//! Delivery itself is the library's (`strongroom::alert::send`). Targets of format
//! `healthchecks` are not alerted: they hear every job's start and end from `pings`.

use crate::args::{Command, Global, WalAction};
use crate::context::Ctx;
use crate::failure;
use std::time::Duration;
use strongroom::ErrorKind;
use strongroom::alert::{self, Alert, JobFailure, repeat};
use strongroom::repository::journal;

/// How long the same failure (repository, job, source, error kind) is not alerted again
/// after an alert about it was delivered.
const REPEAT_DEFAULT: Duration = Duration::from_secs(3600);

/// A job command being run, to be alerted about if it fails.
pub struct Watched {
    job: &'static str,
    source: Option<String>,
    /// The WAL segment `wal push` was given.
    segment: Option<String>,
    global: Global,
}

impl Watched {
    /// The job's name (`backup`, `wal push`, …), as `[[alerts]] jobs` spells it.
    pub fn job(&self) -> &'static str {
        self.job
    }

    /// The global options the command was run with.
    pub fn global(&self) -> &Global {
        &self.global
    }

    /// The source the job works on: the one given, else the one `backup` and `wal push`
    /// take when `config` names only one.
    pub fn source(&self, config: &strongroom::config::Config) -> Option<String> {
        // `backup` with no SOURCE backs up the only configured source, and `wal push`
        // archives for the only PostgreSQL one: name it.
        self.source.clone().or_else(|| match self.job {
            "backup" if config.sources.len() == 1 => config.sources.keys().next().cloned(),
            "wal push" => config.wal_source(),
            _ => None,
        })
    }
}

/// The job `command` runs, when its failure is alerted; `None` for commands that are not
/// jobs (list, show, init, key, …).
pub fn watch(global: &Global, command: &Command) -> Option<Watched> {
    let mut segment = None;
    let (job, source) = match command {
        Command::Backup(a) => ("backup", a.source.clone()),
        Command::Replicate(a) => ("replicate", a.source.clone()),
        Command::Verify(a) => ("verify", a.filter.source.clone()),
        Command::Restore(a) => ("restore", a.filter.source.clone()),
        // Often run from cron, to hand a copy to the keepers of a GPG key.
        Command::Export(a) => ("export", a.filter.source.clone()),
        Command::Check { .. } => ("check", None),
        // With --prune or without: the retention run is the job.
        Command::Forget(a) => ("forget", a.filter.source.clone()),
        Command::Prune(_) => ("prune", None),
        Command::Copy(a) => ("copy", a.filter.source.clone()),
        Command::Wal {
            action: WalAction::Push { path },
        } => {
            segment = path.file_name().map(|n| n.to_string_lossy().into_owned());
            ("wal push", None)
        }
        // Monitoring that cannot read the repository is itself the alarm (a status that
        // finds something to attend to alerts through its state changes instead).
        Command::Status(a) => ("status", a.source.clone()),
        // A drill is a job too (its listing is not).
        Command::Drill(a) if !a.history => ("drill", a.filter.source.clone()),
        _ => return None,
    };
    Some(Watched {
        job,
        source,
        segment,
        global: global.clone(),
    })
}

/// Alerts the configured targets that the watched job failed with `e`, unless an alert
/// about the same failure was delivered within the repeat window. Never fails; takes at most the slowest
/// target's attempts (about 3 × its timeout, plus 3 s).
pub fn failed(watched: Option<Watched>, e: &anyhow::Error) {
    let Some(w) = watched else { return };
    // The config was read once already; a config that did not load has no targets to use
    // (its error is what the command reported).
    let ctx = match Ctx::new(w.global.clone()) {
        Ok(ctx) => ctx,
        Err(err) => {
            tracing::debug!("no job-failure alert: the config did not load: {err:#}");
            return;
        }
    };
    let targets = &ctx.config.alerts;
    // Healthchecks targets hear the job's end from `pings`, not as an alert.
    if !targets.iter().any(|t| t.hears_alerts()) {
        return;
    }
    let (message, kind, _, _) = failure::describe(e);
    // The person who made the mistake reads the sentence; nobody else needs to hear it.
    if !journal::is_job_failure(w.job, Some(kind.name())) {
        tracing::debug!("no alert: {} was refused as given ({})", w.job, kind.name());
        return;
    }
    let source = w.source(&ctx.config);
    let url = ctx.access().url().unwrap_or_default();
    // Per repository: a source of the same name in another one is another source.
    let repository =
        crate::context::opened_repository().unwrap_or_else(|| alert::without_credentials(&url));
    let key = repeat::Failure {
        repository: &repository,
        job: w.job,
        source: source.as_deref(),
        error_kind: kind.name(),
    };
    let suppressed = match repeat::check(&key, window(), jiff::Timestamp::now()) {
        repeat::Verdict::Suppress => {
            tracing::info!(
                "{} failed again ({}); alerted within the repeat window, so not again",
                w.job,
                kind.name()
            );
            return;
        }
        repeat::Verdict::Send { suppressed } => suppressed,
    };
    let mut alert = Alert::job_failed(
        JobFailure {
            job: w.job.to_string(),
            source: source.clone(),
            error_kind: kind.name().to_string(),
            error: message,
            segment: w.segment,
            hint: Some(hint(w.job, kind).to_string()),
        },
        &url,
    );
    if suppressed > 0 {
        alert.summary.push_str(&if suppressed == 1 {
            " (1 more failure like it since the last alert was not sent)".to_string()
        } else {
            format!(" ({suppressed} more failures like it since the last alert were not sent)")
        });
    }
    let delivery = alert::send(targets, &alert);
    // Only an alert a target took counts as sent: otherwise the next failure tries again.
    repeat::sent(&key, delivery.sent() > 0, jiff::Timestamp::now());
    tracing::debug!(
        sent = delivery.sent(),
        failed = delivery.failed(),
        "job-failure alert"
    );
}

/// `STRONGROOM_ALERT_REPEAT` (a duration; `0s` alerts every failure), else one hour.
fn window() -> Duration {
    match std::env::var("STRONGROOM_ALERT_REPEAT") {
        Ok(v) if !v.trim().is_empty() => strongroom::parse_duration(&v).unwrap_or_else(|e| {
            tracing::warn!("STRONGROOM_ALERT_REPEAT: {e}; using 1h");
            REPEAT_DEFAULT
        }),
        _ => REPEAT_DEFAULT,
    }
}

/// What to do about a failure of `kind`, in a sentence.
pub fn hint(job: &str, kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::StorageUnreachable if job == "wal push" => {
            "the repository cannot be reached: PostgreSQL keeps the segment in pg_wal and retries archive_command; check the network and credentials of the repository before pg_wal fills the disk"
        }
        ErrorKind::BadInput if job == "wal push" => {
            "check archive_command and the server's environment: it must run `strongroom wal push %p` in the data directory, with the repository and password strongroom.toml or STRONGROOM_* name"
        }
        ErrorKind::NotFound if job == "wal push" => {
            "check the repository the server's environment names (STRONGROOM_REPO or strongroom.toml): archive_command must archive into the existing repository"
        }
        ErrorKind::LocalIo if job == "wal push" => {
            "check that the postgres user can read pg_wal and write strongroom's state and cache directories, and that they have free space"
        }
        ErrorKind::StorageUnreachable => {
            "check the network and credentials of the repository, then run the job again"
        }
        ErrorKind::WrongPassword => {
            "check STRONGROOM_PASSWORD, the password file or password_command: none of them opens a key slot of this repository"
        }
        ErrorKind::DamagedData => {
            "run `strongroom check --read-data` to find every damaged object and the snapshots it affects, then take a new backup"
        }
        ErrorKind::Locked => {
            "another strongroom job holds the repository; if none is running, `strongroom unlock` removes stale locks"
        }
        ErrorKind::SourceFailed if job == "wal push" => {
            "check that the WAL file exists and that archive_command runs in the cluster's data directory"
        }
        ErrorKind::SourceFailed => {
            "check that the database exists and is readable by this user (path and permissions, or the server, role and pg_dump), then run the job again"
        }
        ErrorKind::AlreadyExists if job == "wal push" => {
            "a different file of that name is archived already: check that no other cluster archives into this repository under the same system identifier"
        }
        ErrorKind::AlreadyExists => "something of that name exists already; see the error",
        ErrorKind::NotFound => {
            "check the snapshot reference, source name or path the job was given, and that the repository is the right one"
        }
        ErrorKind::BadInput => "fix the job's arguments or strongroom.toml as the error says",
        ErrorKind::Usage => "fix the job's flags as the error says (`--help` shows them)",
        ErrorKind::AppendOnly => {
            "this host holds an append-only key: run the job where a full key is (an operator's machine), or give this job a full key"
        }
        ErrorKind::Unsupported => {
            "this build of strongroom cannot do that; see the error, or upgrade strongroom"
        }
        ErrorKind::TargetRefused => {
            "the restore target was refused and left as it was; see the error for what it needs"
        }
        ErrorKind::LocalIo => {
            "check free space and permissions on this host (spool, cache and state directories), then run the job again"
        }
        ErrorKind::HookFailed => {
            "check the hook command in strongroom.toml and the application it stops or starts"
        }
        ErrorKind::CheckFailed => {
            "a check failed: the snapshot or repository may not restore; run `strongroom verify` and `strongroom check` and take a new backup"
        }
        ErrorKind::Interrupted => "the job ended before it finished; run it again",
        ErrorKind::Internal => "run the job again with -vv and report the error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_hint() {
        use ErrorKind::*;
        for kind in [
            StorageUnreachable,
            WrongPassword,
            DamagedData,
            NotFound,
            AlreadyExists,
            BadInput,
            Unsupported,
            SourceFailed,
            TargetRefused,
            LocalIo,
            HookFailed,
            CheckFailed,
            Internal,
            Interrupted,
            Locked,
        ] {
            assert!(!hint("backup", kind).is_empty());
        }
        assert!(hint("backup", DamagedData).contains("strongroom check --read-data"));
        for kind in [
            SourceFailed,
            StorageUnreachable,
            BadInput,
            NotFound,
            LocalIo,
        ] {
            assert_ne!(hint("wal push", kind), hint("backup", kind), "{kind:?}");
        }
    }
}

//! Job pings from the command line: Healthchecks-style `start`, then `success` or `fail`,
//! to the `[[alerts]]` targets of format `healthchecks` whose `jobs` list the job.
//!
//! Owns when they go and what they say of the run: the start ping before the command's
//! work begins, sent before anything else runs (so no other thread of ours reads the
//! environment a job may set later), and the end ping after the job's report and its
//! failure alert; the run's id (the same in both, so concurrent runs pair up); how long the
//! job took (the monotonic clock, from after the start ping to the end); the error's
//! sentence, kind and hint on failure, as the user saw them. Every ended job pings, an
//! operator's mistake too (a scheduled run that did nothing is a failed run), and `status`
//! (when listed) fails when a source needs attention, as its exit code says. A job ended
//! by a signal sends no end ping: the process exits at once, and Healthchecks sees a run
//! that started and never finished. Must not change the command's outcome: a target that
//! cannot be reached is a warning. Delivery is the library's (`strongroom::alert::send_ping`).

use crate::alerting::{self, Watched};
use crate::failure;
use std::time::Instant;
use strongroom::alert::{self, Ping, PingKind};
use strongroom::config::{AlertConfig, Config};

/// A job run that pinged its start.
pub struct Run {
    targets: Vec<AlertConfig>,
    job: &'static str,
    source: Option<String>,
    run_id: String,
    started: Instant,
}

/// Pings the start of the watched job to the targets that want it; `None` when none does
/// (or the command is no job, or the config does not load: the command reports that).
/// Takes at most the slowest target's attempts (about 3 × its timeout, plus 3 s).
pub fn start(watched: Option<&Watched>) -> Option<Run> {
    let w = watched?;
    let path = crate::context::config_path(w.global())?;
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("no job pings: the config did not load: {e}");
            return None;
        }
    };
    let source = w.source(&config);
    let targets: Vec<AlertConfig> = config
        .alerts
        .into_iter()
        .filter(|t| t.pings_job(w.job()))
        .collect();
    if targets.is_empty() {
        return None;
    }
    let run_id = alert::run_id();
    let ping = Ping {
        kind: PingKind::Start,
        job: w.job().to_string(),
        source: source.clone(),
        run_id: run_id.clone(),
        duration: None,
        error_kind: None,
        error: None,
        hint: None,
    };
    alert::send_ping(&targets, &ping);
    Some(Run {
        targets,
        job: w.job(),
        source,
        run_id,
        started: Instant::now(),
    })
}

/// How a job command ended.
pub enum Ended<'a> {
    /// It did its work.
    Succeeded,
    /// It failed with this error.
    Failed(&'a anyhow::Error),
    /// It answered that something needs attention (`status` exiting 1 quietly).
    NeedsAttention,
}

/// Pings the end of `run`: success, or a failure with its sentence, kind and hint.
pub fn finish(run: Option<Run>, ended: Ended<'_>) {
    let Some(run) = run else { return };
    let (kind, error_kind, error, hint) = match ended {
        Ended::Succeeded => (PingKind::Success, None, None, None),
        Ended::Failed(e) => {
            let (message, kind, _, _) = failure::describe(e);
            (
                PingKind::Fail,
                Some(kind.name().to_string()),
                Some(message),
                Some(alerting::hint(run.job, kind).to_string()),
            )
        }
        Ended::NeedsAttention => (
            PingKind::Fail,
            None,
            Some("a source needs attention; `strongroom status` says which and why".into()),
            None,
        ),
    };
    let ping = Ping {
        kind,
        job: run.job.to_string(),
        source: run.source,
        run_id: run.run_id,
        duration: Some(run.started.elapsed()),
        error_kind,
        error,
        hint,
    };
    alert::send_ping(&run.targets, &ping);
}

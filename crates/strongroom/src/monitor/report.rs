//! The status document, and judging every source once: what `status` prints and what the
//! daemon serves at `/api/status`.
//!
//! Owns the document's shape (the contract's `ok`, `level`, `at`, `sources`, with the
//! alerts sent and what protects each repository beside them) and the one sequence that
//! makes it: gather, evaluate, alert on changes. One home, so the command and the daemon
//! cannot drift. Must not print or serve: the callers do.

use super::evidence::{self, Evidence, Scope};
use super::notify::{self, Notice, Told};
use super::protection::Protection;
use super::{Health, Level, SourceHealth, evaluate};
use crate::config::Config;
use crate::error::Result;
use crate::repository::Repository;
use serde::Serialize;

/// `status --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Whether every source is ok.
    pub ok: bool,
    /// The worst level.
    pub level: Level,
    /// When it was judged (RFC 3339, UTC).
    pub at: String,
    /// Per source.
    pub sources: Vec<SourceHealth>,
    /// The alerts this judgement handed to `[[alerts]]`.
    pub alerts: Vec<Notice>,
    /// What protects the repository and each copy from a stolen host.
    pub protection: Vec<Protection>,
}

/// One judgement: the health, its document, and the evidence it rests on.
pub struct Judgement {
    /// The health of every source.
    pub health: Health,
    /// The document.
    pub report: Report,
    /// What was read.
    pub evidence: Evidence,
}

/// Gathers the evidence `scope` names, judges it at `now`, and (with `alerts`, when
/// `[[alerts]]` has a target) sends the state changes; a failure to remember what was
/// sent is a warning.
pub fn judge(
    repo: &Repository,
    config: &Config,
    scope: &Scope,
    now: jiff::Timestamp,
    alerts: bool,
) -> Result<Judgement> {
    let ev = evidence::gather(repo, config, scope)?;
    let health = evaluate::evaluate(config, &ev, now);
    // No target for alerts (none, or only Healthchecks pings): nobody is told, so nothing
    // is sent or remembered as said.
    let notices = if !alerts || !config.alerts.iter().any(|t| t.hears_alerts()) {
        Vec::new()
    } else {
        let deliver = |a: &crate::alert::Alert| {
            let d = crate::alert::send(&config.alerts, a);
            if d.sent() > 0 {
                Told::Sent
            } else if d.failed() == 0 {
                Told::NotWanted
            } else {
                Told::Failed
            }
        };
        notify::notify(repo, &health, now, &deliver).unwrap_or_else(|e| {
            tracing::warn!("could not read or remember the alert state: {e}");
            Vec::new()
        })
    };
    let report = Report {
        ok: health.ok,
        level: health.level(),
        at: health.at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        sources: health.sources.clone(),
        alerts: notices,
        protection: ev.protection.clone(),
    };
    Ok(Judgement {
        health,
        report,
        evidence: ev,
    })
}

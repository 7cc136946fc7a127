//! The daemon's eye on every source: the status judgement, kept fresh, and the heartbeat.
//!
//! Owns judging every source every `[daemon] status_interval` and after each job ends, with
//! the same call `status` makes ([`crate::monitor::report::judge`]: alerts on state changes
//! included), keeping the latest document for the dashboard and `/api/status` (and in the
//! state directory, `daemon/<repository id>.status.json`, so a daemon that starts serves the
//! last one at once, its `at` saying how old it is, while it judges anew), and pinging
//! `heartbeat_url` after a judgement in which every source meets its objectives, and never
//! otherwise (Litestream's rule: the silence pages someone). Must not run jobs, and must
//! not stop: a judgement that fails is logged and tried again at the next interval.

use super::clock::Clock;
use crate::config::Config;
use crate::monitor::evidence::Scope;
use crate::monitor::report::{Report, judge};
use crate::repository::Repository;
use crossbeam_channel::Receiver;
use jiff::Timestamp;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long the heartbeat ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest judgement.
#[derive(Clone, Debug)]
pub struct Latest {
    /// The status document.
    pub report: Arc<Report>,
    /// When it was made.
    pub at: Timestamp,
    /// When the heartbeat was last pinged successfully.
    pub heartbeat: Option<Timestamp>,
}

/// Judges in the background; readers take the latest.
pub struct Watch {
    latest: RwLock<Option<Latest>>,
    last_error: RwLock<Option<String>>,
    /// The document the previous daemon run judged last, served until this run's first
    /// judgement is done (its `at` says how old it is).
    previous: Option<serde_json::Value>,
}

impl Watch {
    /// The latest judgement, once there is one.
    pub fn latest(&self) -> Option<Latest> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last document a previous run of the daemon kept, if any.
    pub fn previous(&self) -> Option<&serde_json::Value> {
        self.previous.as_ref()
    }

    /// Why the last judgement failed, when it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Starts judging: at once, then every `interval` and whenever `wake` says a job ended.
pub fn spawn(
    repo: Arc<Repository>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    wake: Receiver<()>,
) -> Arc<Watch> {
    let kept =
        crate::state::dir(&["daemon"]).map(|d| d.join(format!("{}.status.json", repo.config().id)));
    let previous = kept
        .as_ref()
        .and_then(|f| crate::private_dir::read(f).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let watch = Arc::new(Watch {
        latest: RwLock::new(None),
        last_error: RwLock::new(None),
        previous,
    });
    let w = Arc::clone(&watch);
    std::thread::spawn(move || {
        let scope = Scope {
            source: None,
            ask_servers: true,
            repository_size: false,
            copies: true,
            protection: true,
        };
        let heartbeat = config.daemon.heartbeat_url.clone();
        loop {
            let now = clock.now();
            match judge(&repo, &config, &scope, now, true) {
                Ok(j) => {
                    let mut pinged = w.latest().and_then(|l| l.heartbeat);
                    if let Some(url) = heartbeat.as_deref().filter(|_| j.health.ok) {
                        match crate::alert::ping(url, PING_TIMEOUT) {
                            Ok(()) => pinged = Some(now),
                            Err(e) => tracing::warn!("heartbeat not delivered: {e}"),
                        }
                    }
                    if let Some(f) = &kept {
                        keep(f, &j.report);
                    }
                    *w.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Latest {
                        report: Arc::new(j.report),
                        at: now,
                        heartbeat: pinged,
                    });
                    *w.last_error.write().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(e) => {
                    tracing::warn!("could not judge the sources: {e}");
                    *w.last_error.write().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                }
            }
            // Several jobs that ended together are one judgement.
            if wake.recv_timeout(interval).is_ok() {
                while wake.try_recv().is_ok() {}
            }
        }
    });
    watch
}

/// Keeps `report` for the next start of the daemon (written whole, then renamed); a failure
/// only costs the next start its instant first answer.
fn keep(file: &std::path::Path, report: &Report) {
    let body = serde_json::to_vec(report).expect("serializes");
    if let Err(e) = crate::private_dir::replace(file, &[&body]) {
        tracing::debug!("cannot keep the judgement in {}: {e}", file.display());
    }
}

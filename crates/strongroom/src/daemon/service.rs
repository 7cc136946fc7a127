//! Putting the daemon together: plan, memory, launcher, watch, dashboard, signals.
//!
//! Owns the order things start in and what is said when they do (the plan with each
//! entry's next run, the dashboard's address). Must not hold rules of its own: each part
//! is its module's.

use super::clock::{Clock, SystemClock};
use super::launch::ChildLauncher;
use super::scheduler::Scheduler;
use super::slots::Slots;
use super::{Daemon, watch};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::schedule::Plan;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

/// How the daemon runs its jobs and where it listens.
pub struct Options {
    /// The strongroom binary each job runs.
    pub exe: PathBuf,
    /// Global options every job gets before its own (`--config`, `--repo`, …).
    pub global: Vec<OsString>,
    /// Serve the dashboard here (`--listen`).
    pub listen: Option<String>,
    /// Told the dashboard's address once it listens.
    pub on_listen: Box<dyn FnOnce(std::net::SocketAddr) + Send>,
}

/// Runs the schedules of `config` against `repo` until a stop.
pub fn run(repo: Repository, config: Config, opts: Options) -> Result<()> {
    let plan = Plan::of(&config)?;
    if plan.entries.is_empty() {
        return Err(Error::Config(if config.sources.is_empty() {
            "nothing to schedule: the config has no [sources.NAME]; add one (see docs/CONFIG.md)"
                .into()
        } else {
            "nothing to schedule: every job of every source is \"off\"".into()
        }));
    }
    let listen = opts
        .listen
        .as_deref()
        .map(crate::dashboard::listen_address)
        .transpose()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let scheduler = Scheduler::new(
        plan,
        Slots::load(&repo.config().id),
        now,
        config.daemon.retries(),
        config.daemon.retry_delay(),
    );
    for (key, line, next) in scheduler.plan().entries.iter().map(|e| {
        (
            e.key(),
            e.describe(),
            scheduler.last(&e.key()).and_then(|l| e.next_start(l)),
        )
    }) {
        match next {
            Some(n) => tracing::info!("{key}: {line}; next at {n}"),
            None => tracing::info!("{key}: {line}"),
        }
    }
    let captures = super::capture::Captures::start(&config, opts.exe.clone(), opts.global.clone());
    let launcher = Arc::new(ChildLauncher::new(opts.exe, opts.global));
    let daemon = Daemon::new(
        scheduler,
        launcher,
        Arc::clone(&clock),
        config.daemon.stop_timeout(),
    );
    daemon.stop_on_signals()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    daemon.on_job_end(tx);
    let repo = Arc::new(repo);
    let config = Arc::new(config);
    let watch = watch::spawn(
        Arc::clone(&repo),
        Arc::clone(&config),
        clock,
        config.daemon.status_interval(),
        rx,
    );
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && config.daemon.users.is_empty() {
            tracing::warn!(
                "the dashboard on {addr} shows every source's state to anyone who can reach it; it is read-only, since [[daemon.users]] names nobody"
            );
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        daemon.on_job_end(tx);
        let page = crate::dashboard::Page::new(
            Arc::clone(&daemon),
            watch,
            Arc::clone(&repo),
            Arc::clone(&config),
            rx,
        );
        let bound = crate::dashboard::serve(addr, page)?;
        (opts.on_listen)(bound);
    }
    daemon.run();
    captures.stop();
    Ok(())
}

//! `strongroom daemon`: the schedules of the config, run until SIGTERM.
//!
//! Owns the loop that starts what [`scheduler`] says is due, each job on a thread of its own
//! through a [`launch::Launcher`] (in production the strongroom binary as a child: see
//! [`launch`] for why), hears when jobs end, and stops gracefully: on SIGTERM or Ctrl-C it
//! starts nothing new, lets running jobs finish for `[daemon] stop_timeout`, then
//! interrupts them (they stop cleanly, as on Ctrl-C), and kills what is left after
//! [`KILL_AFTER`]; a second signal interrupts at once. Beside the loop, [`watch`] judges
//! every source every `status_interval` and after each job, as `status` does (alerts
//! included), pings the heartbeat only while all is well, and keeps the latest judgement
//! for the dashboard; [`capture`] keeps a continuous capture running for each source with
//! `continuous = true`. Must not decide what is due (that is [`scheduler`]'s), nor keep
//! job history: every job journals itself, as when run by hand.

pub mod capture;
pub mod clock;
pub mod launch;
pub mod scheduler;
pub mod service;
pub mod slots;
#[cfg(test)]
mod tests;
pub mod watch;

use crate::schedule::Job;
use clock::Clock;
use crossbeam_channel::{Receiver, Sender};
use jiff::Timestamp;
use launch::{Launch, Launcher, Outcome, Why};
use scheduler::Scheduler;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest the loop waits without looking at the clock: a host that was suspended, or a
/// clock that jumped, is noticed within this.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// After interrupting running jobs at a stop, how long they get to clean up before they
/// are killed.
pub const KILL_AFTER: Duration = Duration::from_secs(30);

/// What wakes the loop.
enum Event {
    /// A job ended.
    Finished(Launch, Outcome),
    /// Something changed (a stop, a request): look again now.
    Wake,
}

/// A job running now, for the dashboard.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Running {
    /// The entry's key (`hotel/full`).
    pub key: String,
    /// The source.
    pub source: String,
    /// The job's name.
    pub job: &'static str,
    /// When it started.
    pub started_at: Timestamp,
    /// Retry number (0 for a first attempt).
    pub attempt: u32,
    /// Who asked, when someone did from the dashboard.
    pub requested_by: Option<String>,
}

/// The running daemon, shared with the dashboard.
pub struct Daemon {
    scheduler: Mutex<Scheduler>,
    launcher: Arc<dyn Launcher>,
    clock: Arc<dyn Clock>,
    events: (Sender<Event>, Receiver<Event>),
    running: Mutex<Vec<Running>>,
    stopping: AtomicBool,
    hurry: AtomicBool,
    stop_timeout: Duration,
    /// Told after each job, so the judgement and the dashboard's lists follow what just
    /// happened.
    job_ended: Mutex<Vec<Sender<()>>>,
    /// The clock's reading when the loop last looked at the schedule.
    ticked: Mutex<Option<Timestamp>>,
}

impl Daemon {
    /// A daemon over `scheduler`, running jobs through `launcher`.
    pub fn new(
        scheduler: Scheduler,
        launcher: Arc<dyn Launcher>,
        clock: Arc<dyn Clock>,
        stop_timeout: Duration,
    ) -> Arc<Daemon> {
        Arc::new(Daemon {
            scheduler: Mutex::new(scheduler),
            launcher,
            clock,
            events: crossbeam_channel::unbounded(),
            running: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            hurry: AtomicBool::new(false),
            stop_timeout,
            job_ended: Mutex::new(Vec::new()),
            ticked: Mutex::new(None),
        })
    }

    /// Stops gracefully (see the module's header); a second call interrupts running jobs
    /// at once.
    pub fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            self.hurry.store(true, Ordering::SeqCst);
        }
        let _ = self.events.0.send(Event::Wake);
    }

    /// Stops on SIGTERM, SIGINT or SIGHUP (twice: at once).
    pub fn stop_on_signals(self: &Arc<Self>) -> crate::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map_err(|e| crate::Error::Internal(format!("cannot watch for signals: {e}")))?;
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for sig in signals.forever() {
                tracing::warn!(
                    "signal {sig}: {}",
                    if me.stopping.load(Ordering::SeqCst) {
                        "interrupting the running jobs now"
                    } else {
                        "stopping; running jobs may finish"
                    }
                );
                me.stop();
            }
        });
        Ok(())
    }

    /// Tells `tx` each time a job ends (besides every earlier subscriber).
    pub fn on_job_end(&self, tx: Sender<()>) {
        self.job_ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
    }

    /// When the loop last looked at the schedule (by the daemon's clock): a loop that is
    /// alive looks at least every [`MAX_WAIT`].
    pub fn ticked_at(&self) -> Option<Timestamp> {
        *self.ticked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The jobs running now.
    pub fn running(&self) -> Vec<Running> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Each schedule entry with its line and next start, for the dashboard.
    pub fn upcoming(&self) -> Vec<(String, String, Option<Timestamp>)> {
        let s = self.scheduler.lock().unwrap_or_else(|p| p.into_inner());
        let lines = s.plan().entries.iter().map(|e| e.describe());
        s.upcoming()
            .into_iter()
            .zip(lines)
            .map(|((k, t), l)| (k, l, t))
            .collect()
    }

    /// Starts `job` for `source` now, as `by` asked (from the dashboard). Refused, with a
    /// sentence, while the daemon stops or the source has a job running.
    pub fn request(self: &Arc<Self>, source: &str, job: Job, by: &str) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("the daemon is stopping; nothing new starts".into());
        }
        let launch = self
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .request(source, job, by)
            .ok_or_else(|| {
                format!(
                    "{source} has a job running now, or is not configured; try again when it ends"
                )
            })?;
        self.start(launch);
        Ok(())
    }

    fn start(self: &Arc<Self>, launch: Launch) {
        let why = match &launch.why {
            Why::Scheduled => "scheduled".to_string(),
            Why::Retry => format!("retry {}", launch.attempt),
            Why::AfterBackup => "after a backup".to_string(),
            Why::Requested { by } => format!("asked by {by}"),
        };
        tracing::info!(
            "starting {} for {} ({why})",
            launch.job.name(),
            launch.source
        );
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Running {
                key: launch.key.clone(),
                source: launch.source.clone(),
                job: launch.job.name(),
                started_at: self.clock.now(),
                attempt: launch.attempt,
                requested_by: match &launch.why {
                    Why::Requested { by } => Some(by.clone()),
                    _ => None,
                },
            });
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            let outcome = me.launcher.run(&launch);
            let _ = me.events.0.send(Event::Finished(launch, outcome));
        });
    }

    fn ended(&self, launch: &Launch, outcome: &Outcome) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| !(r.key == launch.key && r.attempt == launch.attempt));
        let now = self.clock.now();
        let retry = self
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished(launch, outcome, now);
        let what = format!("{} of {}", launch.job.name(), launch.source);
        match (outcome.ok, retry) {
            (true, _) => tracing::info!("{what} succeeded in {:.1} s", outcome.seconds),
            (false, Some(at)) => tracing::warn!(
                "{what} failed ({}); trying again at {at}",
                outcome.message.as_deref().unwrap_or("no reason given")
            ),
            (false, None) => tracing::warn!(
                "{what} failed: {}",
                outcome.message.as_deref().unwrap_or("no reason given")
            ),
        }
        for tx in &*self.job_ended.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send(());
        }
    }

    /// Runs the schedules until a stop (see the module's header); returns once every job
    /// has ended.
    pub fn run(self: &Arc<Self>) {
        let mut stop_began: Option<Instant> = None;
        let mut interrupted: Option<Instant> = None;
        let mut killed = false;
        loop {
            let stopping = self.stopping.load(Ordering::SeqCst);
            let running = !self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            let wait = if stopping {
                if !running {
                    tracing::info!("stopped");
                    return;
                }
                let began = *stop_began.get_or_insert_with(Instant::now);
                let hurry = self.hurry.load(Ordering::SeqCst);
                if interrupted.is_none() && (hurry || began.elapsed() >= self.stop_timeout) {
                    tracing::warn!("interrupting the jobs still running");
                    self.launcher.interrupt_all();
                    interrupted = Some(Instant::now());
                }
                if let Some(at) = interrupted
                    && !killed
                    && at.elapsed() >= KILL_AFTER
                {
                    tracing::warn!("killing the jobs that did not stop");
                    self.launcher.kill_all();
                    killed = true;
                }
                Duration::from_millis(200)
            } else {
                let now = self.clock.now();
                *self.ticked.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                let launches = self
                    .scheduler
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .tick(now);
                for l in launches {
                    self.start(l);
                }
                let next = self
                    .scheduler
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next_start();
                next.map(|n| {
                    Duration::try_from(n.duration_since(self.clock.now())).unwrap_or(Duration::ZERO)
                })
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_millis(50), MAX_WAIT)
            };
            match self.events.1.recv_timeout(wait) {
                Ok(Event::Finished(l, o)) => self.ended(&l, &o),
                Ok(Event::Wake) | Err(_) => {}
            }
        }
    }
}

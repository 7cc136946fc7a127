//! The daemon's continuous captures: one long-running child per source with
//! `continuous = true` (`strongroom replicate NAME` for SQLite, `strongroom wal receive
//! NAME` for PostgreSQL), started with the daemon, started again when it ends, and stopped
//! with it.
//!
//! Owns keeping them alive: a child that exits is restarted after `[daemon] retry_delay`,
//! doubling up to [`MAX_DELAY`] while it keeps failing, and at once again after it ran for
//! a while; at a stop each gets SIGTERM (it stores what was committed, then exits) and is
//! killed after [`super::KILL_AFTER`]. Must not capture anything itself: the child is the
//! same command an operator runs by hand, journaled and alerted the same way.

use crate::config::Config;
use crate::source::Location;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest wait before starting a failing capture again.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// A capture that ran this long is healthy: its next failure waits the first delay again.
const HEALTHY: Duration = Duration::from_secs(60);

/// The command line of `source`'s capture, by its engine.
pub fn command_of(name: &str, url: &str) -> Option<Vec<String>> {
    match crate::source::parse_location(url)? {
        Location::Sqlite(_) => Some(vec!["replicate".into(), name.into()]),
        Location::Postgres(_) => Some(vec!["wal".into(), "receive".into(), name.into()]),
    }
}

/// The captures running under the daemon.
pub struct Captures {
    stop: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<(String, Child)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Captures {
    /// Starts one keeper thread per continuous source of `config`.
    pub fn start(config: &Config, exe: PathBuf, global: Vec<OsString>) -> Captures {
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let first_delay = config.daemon.retry_delay();
        for (name, s) in config.sources.iter().filter(|(_, s)| s.continuous) {
            let Some(args) = command_of(name, &s.url) else {
                continue;
            };
            tracing::info!(
                "{name}: continuous capture (`strongroom {}`)",
                args.join(" ")
            );
            let (stop, children, exe, global, name) = (
                Arc::clone(&stop),
                Arc::clone(&children),
                exe.clone(),
                global.clone(),
                name.clone(),
            );
            threads.push(std::thread::spawn(move || {
                keep(&name, &exe, &global, &args, first_delay, &stop, &children)
            }));
        }
        Captures {
            stop,
            children,
            threads,
        }
    }

    /// Stops every capture: SIGTERM, then SIGKILL after [`super::KILL_AFTER`].
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        signal(&self.children, rustix::process::Signal::TERM);
        let deadline = Instant::now() + super::KILL_AFTER;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(&self.children, rustix::process::Signal::KILL);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn signal(children: &Mutex<Vec<(String, Child)>>, sig: rustix::process::Signal) {
    let children = children.lock().unwrap_or_else(|p| p.into_inner());
    for (_, c) in children.iter() {
        if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

/// Runs `args` again each time it ends, until `stop`.
fn keep(
    name: &str,
    exe: &PathBuf,
    global: &[OsString],
    args: &[String],
    first_delay: Duration,
    stop: &AtomicBool,
    children: &Mutex<Vec<(String, Child)>>,
) {
    use std::os::unix::process::CommandExt;
    let mut delay = first_delay;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let spawned = Command::new(exe)
            .args(global)
            .args(args)
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group: a Ctrl-C at the daemon's terminal is the daemon's to
            // pass on, in order.
            .process_group(0)
            .spawn();
        let pid = match spawned {
            Ok(child) => {
                let pid = child.id();
                children
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((name.to_string(), child));
                pid
            }
            Err(e) => {
                tracing::error!("{name}: cannot start the capture: {e}");
                0
            }
        };
        // Wait for it without holding the list (the stop signals through it).
        let status = loop {
            let mut list = children.lock().unwrap_or_else(|p| p.into_inner());
            let Some(i) = list.iter().position(|(_, c)| c.id() == pid) else {
                break None;
            };
            match list[i].1.try_wait() {
                Ok(Some(st)) => {
                    list.remove(i);
                    break Some(st);
                }
                Ok(None) => {}
                Err(_) => {
                    list.remove(i);
                    break None;
                }
            }
            drop(list);
            std::thread::sleep(Duration::from_millis(100));
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if started.elapsed() >= HEALTHY {
            delay = first_delay;
        }
        tracing::warn!(
            "{name}: the capture ended ({}); starting it again in {}s",
            status.map_or("could not be started".into(), crate::process::describe_exit),
            delay.as_secs()
        );
        let until = Instant::now() + delay;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

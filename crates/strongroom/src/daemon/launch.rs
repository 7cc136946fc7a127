//! Running one job: the daemon's own binary as a child, exactly as cron would run it.
//!
//! Owns how a job is started, watched and stopped. Each job is `strongroom <global options>
//! <the job's arguments> --json --quiet` ([`crate::schedule::Job::args`]) in a process group
//! of its own, so it journals, alerts, locks and cleans up exactly as a job run by hand or by
//! cron, a crash or a leak in one job cannot take the daemon down, and Ctrl-C on the
//! daemon's terminal does not reach it (the daemon decides when jobs stop). Its error
//! document (`--json`) says the error's kind and whether a retry can help. Must not decide
//! when jobs run or whether to retry: that is [`super::scheduler`]'s.

use crate::schedule::Job;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Why a job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its schedule's slot came (or was missed and is made up once).
    Scheduled,
    /// An earlier attempt failed for a reason worth retrying.
    Retry,
    /// A backup of its source succeeded (`copy = "after-backup"`).
    AfterBackup,
    /// Someone asked from the dashboard.
    Requested {
        /// The user who asked.
        by: String,
    },
}

/// One job to run.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The schedule entry's key (`hotel/full`).
    pub key: String,
    /// Jobs of one lane run one at a time: the source's name, or `*` for repository-wide
    /// jobs.
    pub lane: String,
    /// The configured source.
    pub source: String,
    /// What runs.
    pub job: Job,
    /// The slot it stands for, when scheduled.
    pub slot: Option<Timestamp>,
    /// 0 for the first attempt, then 1, 2, … for retries.
    pub attempt: u32,
    /// Why it runs.
    pub why: Why,
}

/// How a job ended.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// It succeeded.
    pub ok: bool,
    /// The error's kind (`store_unreachable`, …) when the job said.
    pub kind: Option<String>,
    /// Whether trying again can help, as the job said.
    pub retryable: bool,
    /// The job's error sentence, or how it ended when it said nothing.
    pub message: Option<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs jobs.
pub trait Launcher: Send + Sync {
    /// Runs `launch` to its end; called on a thread of its own.
    fn run(&self, launch: &Launch) -> Outcome;
    /// Asks every running job to stop cleanly (as on Ctrl-C).
    fn interrupt_all(&self);
    /// Ends every running job at once.
    fn kill_all(&self);
}

/// Runs each job as a child process of the strongroom binary.
pub struct ChildLauncher {
    exe: PathBuf,
    global: Vec<OsString>,
    running: Mutex<BTreeMap<u32, String>>,
}

impl ChildLauncher {
    /// Jobs run `exe` with `global` (the daemon's own `--config`, `--repo`,
    /// `--password-file`, `-v`) before each job's arguments.
    pub fn new(exe: PathBuf, global: Vec<OsString>) -> ChildLauncher {
        ChildLauncher {
            exe,
            global,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    fn signal_all(&self, sig: rustix::process::Signal) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for pid in running.keys() {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    }
}

/// The most of a job's standard output kept (its JSON document).
const STDOUT_LIMIT: u64 = 4 << 20;

impl Launcher for ChildLauncher {
    fn run(&self, launch: &Launch) -> Outcome {
        use std::os::unix::process::CommandExt;
        let started = std::time::Instant::now();
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.global)
            .args(launch.job.args(&launch.source))
            .args(["--json", "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Outcome {
                    message: Some(format!("cannot start {}: {e}", self.exe.display())),
                    ..Outcome::default()
                };
            }
        };
        let pid = child.id();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, launch.key.clone());
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = stdout.take(STDOUT_LIMIT).read_to_end(&mut out);
        }
        let status = child.wait();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
        let seconds = started.elapsed().as_secs_f64();
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                return Outcome {
                    message: Some(format!("lost the job's process: {e}")),
                    seconds,
                    ..Outcome::default()
                };
            }
        };
        if status.success() {
            return Outcome {
                ok: true,
                seconds,
                ..Outcome::default()
            };
        }
        let doc: Option<serde_json::Value> = serde_json::from_slice(&out).ok();
        let err = doc.as_ref().and_then(|d| d.get("error"));
        let text = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        Outcome {
            ok: false,
            kind: text("kind"),
            retryable: err
                .and_then(|e| e.get("retryable"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            message: text("message")
                .or_else(|| Some(format!("it {}", crate::process::describe_exit(status)))),
            seconds,
        }
    }

    fn interrupt_all(&self) {
        self.signal_all(rustix::process::Signal::TERM);
    }

    fn kill_all(&self) {
        self.signal_all(rustix::process::Signal::KILL);
    }
}

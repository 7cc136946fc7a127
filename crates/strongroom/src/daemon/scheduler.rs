//! The daemon's decisions: what to start now, and what follows a job's end.
//!
//! Owns lanes (one job at a time per source, and one for repository-wide jobs, so a backup
//! of one source never waits for another source's verify), missed runs (one run for any
//! number of missed slots: [`crate::schedule::Entry::due`]), clock jumps, retries with
//! doubling delays for failures the job called retryable, and copies after backups. Pure:
//! it is given `now` and told when jobs end, so every rule is tested on a faked clock. Must
//! not run, wait for or time anything itself.

use super::launch::{Launch, Outcome, Why};
use super::slots::Slots;
use crate::schedule::{Entry, Job, Plan, Timing};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use std::time::Duration;

/// How far ahead of the clock a remembered slot may be before the clock is believed to have
/// been set back for good (then the schedule restarts from now instead of waiting for the
/// clock to catch up with a time it may not reach for days). A smaller step back (an NTP
/// correction) runs nothing twice.
pub const CLOCK_BACK_LIMIT: SignedDuration = SignedDuration::from_hours(1);

/// A run waiting for its time: a retry, or a copy after a backup.
#[derive(Clone, Debug)]
struct Waiting {
    launch: Launch,
    not_before: Timestamp,
}

/// The daemon's plan and what it remembers.
pub struct Scheduler {
    plan: Plan,
    slots: Slots,
    busy: BTreeSet<String>,
    waiting: Vec<Waiting>,
    retries: u32,
    retry_delay: Duration,
}

impl Scheduler {
    /// A scheduler for `plan`, starting from the slots remembered. An entry never run
    /// starts from `now`: its first run is its next slot.
    pub fn new(
        plan: Plan,
        mut slots: Slots,
        now: Timestamp,
        retries: u32,
        retry_delay: Duration,
    ) -> Scheduler {
        for e in &plan.entries {
            if matches!(e.timing, Timing::Cron(_)) {
                slots.last.entry(e.key()).or_insert(now);
            }
        }
        slots.save();
        Scheduler {
            plan,
            slots,
            busy: BTreeSet::new(),
            waiting: Vec::new(),
            retries,
            retry_delay,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The slot `key` last ran.
    pub fn last(&self, key: &str) -> Option<Timestamp> {
        self.slots.last.get(key).copied()
    }

    /// Whether a job of `lane` is running.
    pub fn busy(&self, lane: &str) -> bool {
        self.busy.contains(lane)
    }

    /// The jobs to start now, each marked running in its lane.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Launch> {
        self.believe_clock(now);
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.waiting.len() {
            let w = &self.waiting[i];
            if w.not_before <= now && !self.busy.contains(&w.launch.lane) {
                let w = self.waiting.remove(i);
                self.busy.insert(w.launch.lane.clone());
                out.push(w.launch);
            } else {
                i += 1;
            }
        }
        let mut changed = false;
        for e in &self.plan.entries {
            let lane = lane_of(e);
            if self.busy.contains(&lane) {
                continue;
            }
            let key = e.key();
            let Some(&last) = self.slots.last.get(&key) else {
                continue;
            };
            let Some(slot) = e.due(last, now) else {
                continue;
            };
            self.slots.last.insert(key.clone(), slot);
            changed = true;
            // A retry still waiting stands for an older slot: this run replaces it.
            self.waiting.retain(|w| w.launch.key != key);
            self.busy.insert(lane.clone());
            out.push(Launch {
                key,
                lane,
                source: e.source.clone(),
                job: e.job,
                slot: Some(slot),
                attempt: 0,
                why: Why::Scheduled,
            });
        }
        if changed {
            self.slots.save();
        }
        out
    }

    /// A job someone asked for: started now unless its lane is busy (then `None`, and the
    /// caller says so).
    pub fn request(&mut self, source: &str, job: Job, by: &str) -> Option<Launch> {
        self.plan.entries.iter().find(|e| e.source == source)?;
        let lane = lane(source, job);
        if !self.busy.insert(lane.clone()) {
            return None;
        }
        Some(Launch {
            key: format!("{source}/{}", job.name()),
            lane,
            source: source.to_string(),
            job,
            slot: None,
            attempt: 0,
            why: Why::Requested { by: by.to_string() },
        })
    }

    /// A job ended: frees its lane, and plans a retry (a retryable failure with tries
    /// left, after `retry_delay` doubled per earlier retry) or the copy that follows a
    /// successful backup. Returns the retry's time when one was planned.
    pub fn finished(
        &mut self,
        launch: &Launch,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Option<Timestamp> {
        self.busy.remove(&launch.lane);
        if outcome.ok {
            if launch.job.backup_kind().is_some()
                && let Some(copy) = self.plan.after_backup(&launch.source)
                && !self.waiting.iter().any(|w| w.launch.key == copy.key())
            {
                self.waiting.push(Waiting {
                    launch: Launch {
                        key: copy.key(),
                        lane: lane_of(copy),
                        source: copy.source.clone(),
                        job: copy.job,
                        slot: None,
                        attempt: 0,
                        why: Why::AfterBackup,
                    },
                    not_before: now,
                });
            }
            return None;
        }
        if !outcome.retryable || launch.attempt >= self.retries {
            return None;
        }
        let delay = self.retry_delay * 2u32.saturating_pow(launch.attempt);
        let at = now + delay;
        self.waiting.push(Waiting {
            launch: Launch {
                attempt: launch.attempt + 1,
                why: Why::Retry,
                ..launch.clone()
            },
            not_before: at,
        });
        Some(at)
    }

    /// When something is next due to start (a slot, a retry, a copy) in a lane that is
    /// free; `None` when nothing is. A lane's end is an event of its own, so a busy lane's
    /// due work is not counted (the caller would wake for nothing).
    pub fn next_start(&self) -> Option<Timestamp> {
        let scheduled = self
            .plan
            .entries
            .iter()
            .filter(|e| !self.busy.contains(&lane_of(e)))
            .filter_map(|e| e.next_start(*self.slots.last.get(&e.key())?));
        let waiting = self
            .waiting
            .iter()
            .filter(|w| !self.busy.contains(&w.launch.lane))
            .map(|w| w.not_before);
        scheduled.chain(waiting).min()
    }

    /// Each entry's next start, for the dashboard and `status`: `(key, when)`.
    pub fn upcoming(&self) -> Vec<(String, Option<Timestamp>)> {
        self.plan
            .entries
            .iter()
            .map(|e| {
                let next = self.slots.last.get(&e.key()).and_then(|l| e.next_start(*l));
                (e.key(), next)
            })
            .collect()
    }

    /// A remembered slot far ahead of the clock means the clock was set back for good:
    /// that entry starts again from now (see [`CLOCK_BACK_LIMIT`]).
    fn believe_clock(&mut self, now: Timestamp) {
        let mut changed = false;
        for (key, last) in self.slots.last.iter_mut() {
            if *last > now + CLOCK_BACK_LIMIT {
                tracing::warn!(
                    "the clock went back: {key} last ran at {last}, now is {now}; its schedule starts again from now"
                );
                *last = now;
                changed = true;
            }
        }
        if changed {
            self.slots.save();
        }
    }
}

/// The lane `job` of `source` runs in: the source's own, or `*` for repository-wide jobs.
fn lane(source: &str, job: Job) -> String {
    if job.repository_wide() {
        "*".into()
    } else {
        source.to_string()
    }
}

/// The lane an entry's jobs run in.
fn lane_of(e: &Entry) -> String {
    lane(&e.source, e.job)
}

//! Timing a test restore's phases (fetch, restore, recovery, checks), for drills.
//!
//! Owns a shared stopwatch that engines mark as they pass from one phase to the next; a
//! drill reads the durations, verify ignores them. Must not decide what a phase means to
//! people (that is the drill's report) and must never fail a restore.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stopwatch shared by a drill and the engine doing its test restore: each phase runs
/// from its [`Phases::begin`] to the next one (or [`Phases::end`]). Clones share the log.
#[derive(Clone, Debug, Default)]
pub struct Phases(Arc<Mutex<Log>>);

#[derive(Debug, Default)]
struct Log {
    done: Vec<(String, Duration)>,
    open: Option<(String, Instant)>,
}

impl Log {
    fn close(&mut self) {
        if let Some((name, since)) = self.open.take() {
            let took = since.elapsed();
            match self.done.iter_mut().find(|(n, _)| *n == name) {
                Some((_, d)) => *d += took,
                None => self.done.push((name, took)),
            }
        }
    }
}

impl Phases {
    /// Ends the phase running now, if any, and starts `name` (time spent twice in one phase
    /// adds up).
    pub fn begin(&self, name: &str) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if log.open.as_ref().is_some_and(|(n, _)| n == name) {
            return;
        }
        log.close();
        log.open = Some((name.to_string(), Instant::now()));
    }

    /// Ends the phase running now.
    pub fn end(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).close();
    }

    /// Every phase so far, in the order first begun, with its time; ends the running one.
    pub fn durations(&self) -> Vec<(String, Duration)> {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        log.close();
        log.done.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_kept_in_order_and_repeated_ones_add_up() {
        let p = Phases::default();
        p.begin("fetch");
        p.begin("restore");
        p.begin("restore");
        p.begin("checks");
        p.begin("restore");
        p.end();
        let names: Vec<String> = p.durations().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["fetch", "restore", "checks"]);
        assert!(Phases::default().durations().is_empty());
    }
}

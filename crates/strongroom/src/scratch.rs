//! Temporary things that must disappear: test-restore databases, half-restored databases,
//! spool files. Each is registered with a cleanup that runs when its guard drops (success,
//! error, panic) *and* when the process is interrupted (SIGINT, SIGTERM, SIGHUP).
//!
//! Why a registry: a signal ends the process without unwinding, so a guard's `Drop` alone
//! would leave a temporary database behind after Ctrl-C. [`install_interrupt_cleanup`]
//! starts a thread that, on a signal, runs every registered cleanup and exits with the
//! conventional status (130 for SIGINT). Must not know what it cleans up.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type Cleanup = Box<dyn FnOnce() + Send>;

static REGISTRY: Mutex<BTreeMap<u64, (String, Cleanup)>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Runs its cleanup once: on drop, or on an interrupt, whichever comes first.
#[must_use = "the cleanup runs when this guard drops"]
pub struct Guard {
    id: u64,
}

/// Registers `cleanup`, described by `what` in logs.
pub fn guard(what: impl Into<String>, cleanup: impl FnOnce() + Send + 'static) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (what.into(), Box::new(cleanup)));
    Guard { id }
}

impl Guard {
    /// Forgets the cleanup: the thing became permanent (e.g. renamed into place).
    pub fn disarm(self) {
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let entry = REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        if let Some((what, f)) = entry {
            tracing::debug!(what, "cleaning up");
            f();
        }
    }
}

/// Runs every registered cleanup now (newest first).
pub fn run_all() {
    let entries: Vec<(String, Cleanup)> = {
        let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *g).into_values().rev().collect()
    };
    for (what, f) in entries {
        eprintln!("strongroom: interrupted; removing {what}");
        f();
    }
}

/// Installs the signal handler thread (once per process; later calls do nothing).
pub fn install_interrupt_cleanup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                run_all();
                std::process::exit(128 + sig);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn guards_run_once_unless_disarmed() {
        let n = Arc::new(AtomicUsize::new(0));
        let g = {
            let n = n.clone();
            guard("a", move || {
                n.fetch_add(1, Ordering::SeqCst);
            })
        };
        drop(g);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let g = {
            let n = n.clone();
            guard("b", move || {
                n.fetch_add(10, Ordering::SeqCst);
            })
        };
        g.disarm();
        run_all();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}

//! Temporary things that must disappear: test-restore databases, half-restored databases,
//! spool files. Each is registered with a cleanup that runs when its guard drops (success,
//! error, panic) *and* when the process is interrupted (SIGINT, SIGTERM, SIGHUP).
//!
//! Why a registry: a signal ends the process without unwinding, so a guard's `Drop` alone
//! would leave a temporary database behind after Ctrl-C. [`install`]
//! starts a thread that, on a signal, runs every registered cleanup and exits with the
//! conventional status (130 for SIGINT). Must not know what it cleans up (beyond the
//! temporary files it creates itself through [`temp_file`]).
//!
//! Two races matter. A Ctrl-C reaches child processes too, so the main thread may fail and
//! head for `exit` while the signal thread is still dropping a database: [`settle`] makes
//! every exit path wait for cleanups in progress, and runs them itself when a signal was
//! seen but its thread has not started yet. And some steps must not be cut in half (the
//! rename pair of a restore's swap): [`critical`] holds signals off until they are done.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

type Cleanup = Box<dyn FnOnce() + Send>;

static REGISTRY: Mutex<BTreeMap<u64, (String, Cleanup)>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
/// Held while any cleanup runs, so an exit can wait for it.
static CLEANING: Mutex<()> = Mutex::new(());
/// Held by [`critical`] sections; the signal thread takes it before cleaning up.
static CRITICAL: Mutex<()> = Mutex::new(());
/// The signal received, set inside the signal handler itself (0: none).
static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs its cleanup once: on drop, or on an interrupt, whichever comes first.
#[must_use = "the cleanup runs when this guard drops"]
pub struct Guard {
    id: u64,
}

/// Registers `cleanup`, described by `what` in logs.
pub fn guard(what: impl Into<String>, cleanup: impl FnOnce() + Send + 'static) -> Guard {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock(&REGISTRY).insert(id, (what.into(), Box::new(cleanup)));
    Guard { id }
}

impl Guard {
    /// Forgets the cleanup: the thing became permanent (e.g. renamed into place).
    pub fn disarm(self) {
        lock(&REGISTRY).remove(&self.id);
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _cleaning = lock(&CLEANING);
        let entry = lock(&REGISTRY).remove(&self.id);
        if let Some((what, f)) = entry {
            tracing::debug!(what, "cleaning up");
            f();
        }
    }
}

/// Runs every registered cleanup now (newest first).
pub fn run_all() {
    let _cleaning = lock(&CLEANING);
    run_registered();
}

fn run_registered() {
    let entries: Vec<(String, Cleanup)> = std::mem::take(&mut *lock(&REGISTRY))
        .into_values()
        .rev()
        .collect();
    for (what, f) in entries {
        eprintln!("strongroom: interrupted; removing {what}");
        f();
    }
}

/// Runs `f` with interrupts held off: a signal arriving meanwhile is acted on after it. A
/// signal that arrived *before* never lets `f` start: the handler thread is about to run
/// the cleanups and exit, so this waits for it. (Without this, a SIGTERM during the
/// `before_restore` hook could still let the restore swap, when the main thread reached
/// the swap before the handler thread took the lock: seen once on a loaded machine.)
pub fn critical<T>(f: impl FnOnce() -> T) -> T {
    let c = lock(&CRITICAL);
    let signalled = SIGNAL.get().is_some_and(|s| s.load(Ordering::SeqCst) != 0);
    if signalled && HANDLER.load(Ordering::SeqCst) {
        drop(c);
        loop {
            std::thread::park();
        }
    }
    f()
}

/// The name of the signal that interrupted this process (`SIGINT (Ctrl-C)`, `SIGTERM`,
/// `SIGHUP`), once one arrived while the handler was installed; for cleanups that say why
/// they ran.
pub fn signal_received() -> Option<&'static str> {
    match SIGNAL.get().map(|s| s.load(Ordering::SeqCst))? {
        0 => None,
        2 => Some("SIGINT (Ctrl-C)"),
        15 => Some("SIGTERM"),
        1 => Some("SIGHUP"),
        _ => Some("a signal"),
    }
}

/// Whether the signal handler thread runs (it then owns exiting after a signal).
static HANDLER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Call before the process exits on any path: waits for cleanups in progress and, when a
/// signal arrived, runs what is left and returns the exit status it calls for (128 + n).
pub fn settle() -> Option<i32> {
    let _critical = lock(&CRITICAL);
    let _cleaning = lock(&CLEANING);
    let sig = SIGNAL.get().map(|s| s.load(Ordering::SeqCst)).unwrap_or(0);
    if sig == 0 {
        return None;
    }
    run_registered();
    Some(128 + sig as i32)
}

/// Installs the signal handler thread (once per process; later calls do nothing).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let flag = SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)));
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let _ = signal_hook::flag::register_usize(sig, flag.clone(), sig as usize);
        }
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        HANDLER.store(true, Ordering::SeqCst);
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let _critical = lock(&CRITICAL);
                let _cleaning = lock(&CLEANING);
                run_registered();
                std::process::exit(128 + sig);
            }
        });
    });
}

/// A temporary file in `dir` named `prefix…suffix`, removed when both returned values drop,
/// and on interrupts (which skip destructors). `what` names it in the interrupt message.
pub fn temp_file(
    dir: &Path,
    prefix: &str,
    suffix: &str,
    what: &str,
) -> Result<(tempfile::NamedTempFile, Guard)> {
    let f = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    let path = f.path().to_path_buf();
    let guard = guard(format!("{what} {}", path.display()), move || {
        let _ = std::fs::remove_file(&path);
    });
    Ok((f, guard))
}

/// A scratch directory that is removed on drop and on interrupts, and that a later run can
/// tell from a live one: it holds a `.lock` file `flock`ed for as long as it is in use.
pub struct ScratchDir {
    dir: Option<tempfile::TempDir>,
    _lock: std::fs::File,
    guard: Option<Guard>,
}

impl ScratchDir {
    /// Makes `parent/PREFIX…`, first removing the ones of earlier runs that nobody holds
    /// (a SIGKILL leaves them: no cleanup runs then).
    pub fn new(parent: &Path, prefix: &str, what: &str) -> Result<ScratchDir> {
        remove_stale_dirs(parent, prefix);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| Error::io("creating a scratch directory in", parent, e))?;
        let lock_path = dir.path().join(".lock");
        let lock =
            std::fs::File::create(&lock_path).map_err(|e| Error::io("creating", &lock_path, e))?;
        lock_exclusive(&lock);
        let path = dir.path().to_path_buf();
        let guard = guard(format!("{what} {}", path.display()), move || {
            let _ = std::fs::remove_dir_all(&path);
        });
        Ok(ScratchDir {
            dir: Some(dir),
            _lock: lock,
            guard: Some(guard),
        })
    }

    /// Gives the directory up: it was moved into place, so nothing may remove it any more.
    pub fn keep(mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

/// Takes an exclusive `flock` without waiting; whether it was taken.
fn lock_exclusive(f: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes `parent/PREFIX…` directories whose `.lock` nobody holds.
fn remove_stale_dirs(parent: &Path, prefix: &str) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let Ok(lock) = std::fs::File::open(e.path().join(".lock")) else {
            continue; // not one of ours, or still being made
        };
        // A directory just made may not hold its lock yet: leave the young ones alone.
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < std::time::Duration::from_secs(60));
        if !young && lock_exclusive(&lock) {
            tracing::warn!(dir = %e.path().display(), "removing what an interrupted run left");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// For long-running loops that stop by themselves (`replicate`, `wal receive`): a flag the
/// first SIGTERM, SIGINT or SIGHUP sets; a second one ends the process at once (status
/// 130). Used instead of [`install`], whose handler exits on the first signal.
pub fn stop_on_signals() -> Result<Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT, SIGHUP] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| Error::Internal(format!("cannot watch for signals: {e}")))?;
    }
    Ok(stop)
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

    #[test]
    fn scratch_dirs_nobody_holds_are_removed_by_the_next_run() {
        let parent = tempfile::tempdir().unwrap();
        let live = ScratchDir::new(parent.path(), "sr-test-", "scratch").unwrap();
        // What a SIGKILL leaves: the directory with its lock file, nobody holding it (and
        // older than a minute: a young one may be another run's, not yet locked).
        let dead = parent.path().join("sr-test-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(".lock"), "").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&dead)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let other = ScratchDir::new(parent.path(), "sr-test-", "scratch").unwrap();
        assert!(!dead.exists(), "the stale one is gone");
        assert!(live.path().exists(), "a live one stays");
        let p = other.path().to_path_buf();
        drop(other);
        assert!(!p.exists());
    }
}

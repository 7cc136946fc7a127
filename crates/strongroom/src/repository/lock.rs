//! Locks: who is using the repository right now, on stores without conditional writes.
//!
//! Owns `locks/<id>` objects: their content, the heartbeat that keeps one fresh, when one is
//! stale, and mutual exclusion between prunes. Must not decide what a lock protects: the
//! prune's two-phase deletion (`repository::deletion`) is what makes a held lock matter.
//!
//! Why this shape. Garage, the S3 server the tests run against, ignores `If-None-Match`, so
//! "create the lock only if absent" cannot be asked of the store. Two facts are enough
//! instead:
//! - **Readers and writers never wait.** Backups, restores, verifies and checks take a
//!   *shared* lock: one PUT under a random name, refreshed by a heartbeat thread, deleted
//!   when the job ends. Nothing refuses them. `wal push` takes none at all: archiving must
//!   never stall behind maintenance.
//! - **Prune deletes in two phases.** It first writes a deletion mark naming what it will
//!   delete, then deletes only once every lock that existed when the mark was written is
//!   gone. A job whose lock appeared later listed the marks after the mark was written
//!   (its lock is written before it reads anything), so it already treats the marked packs
//!   as gone. This needs only read-after-write consistency of PUT and LIST (S3 since 2020,
//!   Garage's quorum reads, a local directory), no clocks and no conditional writes.
//! - **Prunes exclude each other** by write, then list: a prune that sees any other live
//!   prune lock after writing its own withdraws. Of two racing prunes the later lister
//!   always sees the earlier writer, so at most one goes on (both may withdraw: safe).
//!
//! Release. A lock is deleted when its guard drops and, because a signal ends the process
//! without unwinding, also when the job is interrupted (SIGINT, SIGTERM, SIGHUP: the
//! guard registers its deletion with [`crate::interrupt`]). Only a process that could run
//! nothing (SIGKILL, power loss) leaves its lock behind, and that one is stale.
//!
//! Append-only keys. A database host's store may refuse it deletes and overwrites (a bucket
//! policy). Its lock is then written once and each heartbeat is a new object beside it,
//! `locks/<name>.<n>`; whoever lists the locks reads them as one lock whose heartbeat is
//! the newest (`FoundLock::parts`). The host cannot delete them: they go stale and
//! `strongroom unlock`, with a full key, removes every part.
//!
//! Staleness. A lock is stale when its process is gone (same host: the pid's start time in
//! `/proc` no longer matches) or when its heartbeat is older than [`STALE_AFTER`] by the
//! reader's clock (another host; clocks only matter to this one judgment, with a margin of
//! many heartbeats). Stale locks are ignored by prune and removed by `strongroom unlock`.

use super::Repository;
use super::layout::ObjectKind;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::storage::Storage;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const LOCK_AAD: &[u8] = b"strongroom lock";

/// How often a held lock's heartbeat is refreshed (`STRONGROOM_LOCK_HEARTBEAT` in seconds
/// overrides it, for tests).
pub const HEARTBEAT: Duration = Duration::from_secs(60);

/// A lock whose heartbeat is older than this is stale (30 heartbeats).
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// What a lock allows its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// Reading or adding (backup, restore, verify, check): never refused, but a prune waits
    /// for it before deleting.
    Shared,
    /// Pruning: one at a time.
    Prune,
}

/// The content of a lock object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LockRecord {
    /// Shared or prune.
    pub kind: LockKind,
    /// The job holding it (`backup`, `prune`, …).
    pub job: String,
    /// Host of the holder.
    pub hostname: String,
    /// Process id of the holder.
    pub pid: u32,
    /// The holder's start time in clock ticks since boot (same-host staleness).
    pub start_ticks: Option<u64>,
    /// When it was taken.
    pub created: jiff::Timestamp,
    /// When it was last refreshed.
    pub heartbeat: jiff::Timestamp,
}

/// A lock as found in the repository.
#[derive(Debug)]
pub struct FoundLock {
    /// Its name (the part after `locks/`).
    pub name: String,
    /// Its content, or why it could not be read. With heartbeats written as objects of
    /// their own, the newest one's heartbeat.
    pub record: std::result::Result<LockRecord, String>,
    /// The heartbeat objects an append-only key wrote beside it (`<name>.<n>`).
    pub parts: Vec<String>,
}

impl FoundLock {
    /// Why this lock is stale at `now`, or `None` when its holder may still be running.
    /// An unreadable lock is nobody's: stale.
    pub fn stale(&self, now: jiff::Timestamp) -> Option<String> {
        let r = match &self.record {
            Ok(r) => r,
            Err(why) => return Some(format!("unreadable ({why})")),
        };
        if r.hostname == crate::hostname() {
            let now_ticks = super::journal::start_ticks(r.pid);
            if now_ticks.is_none() || now_ticks != r.start_ticks {
                return Some(format!("process {} on {} is gone", r.pid, r.hostname));
            }
            return None;
        }
        let age = now.duration_since(r.heartbeat);
        (age.as_secs() > STALE_AFTER.as_secs() as i64).then(|| {
            format!(
                "no heartbeat from {} (pid {}) since {} ({} min)",
                r.hostname,
                r.pid,
                r.heartbeat.strftime("%Y-%m-%d %H:%M:%SZ"),
                age.as_secs() / 60
            )
        })
    }

    /// One line naming the holder: "backup on db1 (pid 123) since 2026-12-01 10:00:00Z".
    pub fn describe(&self) -> String {
        match &self.record {
            Ok(r) => format!(
                "{} on {} (pid {}) since {}",
                r.job,
                r.hostname,
                r.pid,
                r.created.strftime("%Y-%m-%d %H:%M:%SZ")
            ),
            Err(_) => format!("unreadable lock {}", self.name),
        }
    }
}

/// A lock this process holds: refreshed by a heartbeat thread, removed on drop and when
/// the process is interrupted.
#[must_use = "the lock is released when this drops"]
pub struct LockGuard {
    name: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    beat: Option<std::thread::JoinHandle<()>>,
    /// Deletes the lock object: on drop, or from the signal handler on an interrupt.
    release: Option<crate::interrupt::Guard>,
}

/// Set once the lock object is deleted; the heartbeat writes it only while this is unset,
/// holding the mutex, so a release from the signal handler is never undone by a refresh.
type Released = std::sync::Arc<std::sync::Mutex<bool>>;

fn released(r: &Released) -> std::sync::MutexGuard<'_, bool> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers the deletion of lock `name` of `job`, run once: on drop or on an interrupt.
fn release_on_exit(
    storage: Storage,
    name: &str,
    job: &str,
    gone: Released,
    append_only: bool,
) -> crate::interrupt::Guard {
    let key = ObjectKind::Lock.key(name);
    crate::interrupt::guard(format!("the {job}'s lock {key}"), move || {
        *released(&gone) = true;
        match storage.delete(&key) {
            Ok(()) => {}
            // Expected where the store refuses a host deletes (see the module docs).
            Err(e) if append_only => tracing::info!(
                "this append-only key could not remove its lock {key} ({e}); it goes stale, and `strongroom unlock` with a full key removes it"
            ),
            Err(e) => tracing::warn!(
                "could not remove lock {key}: {e}; `strongroom unlock` removes it once it is stale"
            ),
        }
    })
}

impl LockGuard {
    /// The lock's name (the part after `locks/`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        // Runs the deletion, unless an interrupt ran it already.
        drop(self.release.take());
    }
}

fn heartbeat_interval() -> Duration {
    std::env::var("STRONGROOM_LOCK_HEARTBEAT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(HEARTBEAT)
}

fn seal(key: &MasterKey, record: &LockRecord) -> Vec<u8> {
    key.seal(
        LOCK_AAD,
        &serde_json::to_vec(record).expect("lock serializes"),
    )
}

impl Repository {
    /// Takes a lock of `kind` for `job`. A prune lock fails with [`Error::Locked`] when
    /// another live prune holds one.
    pub fn lock(&self, kind: LockKind, job: &str) -> Result<LockGuard> {
        self.lock_refreshed(kind, job, heartbeat_interval())
    }

    /// [`Repository::lock`] with a heartbeat every `every`.
    fn lock_refreshed(&self, kind: LockKind, job: &str, every: Duration) -> Result<LockGuard> {
        let now = jiff::Timestamp::now();
        let pid = std::process::id();
        let mut record = LockRecord {
            kind,
            job: job.to_string(),
            hostname: crate::hostname(),
            pid,
            start_ticks: super::journal::start_ticks(pid),
            created: now,
            heartbeat: now,
        };
        let name = hex::encode(crate::crypto::random_bytes::<16>());
        let key = ObjectKind::Lock.key(&name);
        let gone = Released::default();
        // Written and registered for release as one step: an interrupt between the two
        // would leave the lock behind.
        let append_only = self.key.role() == crate::crypto::KeyRole::AppendOnly;
        let release = crate::interrupt::critical(|| {
            self.storage.put(&key, &seal(&self.key, &record))?;
            Ok::<_, Error>(release_on_exit(
                self.storage.clone(),
                &name,
                job,
                gone.clone(),
                append_only,
            ))
        })?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (storage, master) = (self.storage.clone(), self.key.clone());
        let append_only = self.key.role() == crate::crypto::KeyRole::AppendOnly;
        let beat = std::thread::spawn(move || {
            let mut beats = 0u64;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                let gone = released(&gone);
                if *gone {
                    return;
                }
                record.heartbeat = jiff::Timestamp::now();
                beats += 1;
                // An append-only key may not overwrite: each heartbeat is an object of its own.
                let at = if append_only {
                    format!("{key}.{beats}")
                } else {
                    key.clone()
                };
                if let Err(e) = storage.put(&at, &seal(&master, &record)) {
                    tracing::warn!("could not refresh lock {key}: {e}");
                }
            }
        });
        let guard = LockGuard {
            name,
            stop: Some(stop),
            beat: Some(beat),
            release: Some(release),
        };
        if kind == LockKind::Prune {
            let now = jiff::Timestamp::now();
            let other = self.locks()?.into_iter().find(|l| {
                l.name != guard.name
                    && matches!(&l.record, Ok(r) if r.kind == LockKind::Prune)
                    && l.stale(now).is_none()
            });
            if let Some(other) = other {
                return Err(Error::Locked(format!(
                    "another prune is running: {}; wait for it to finish (or, if it is dead, run `strongroom unlock`)",
                    other.describe()
                )));
            }
        }
        Ok(guard)
    }

    /// A shared lock for a job that only reads (restore, verify, check): when the store
    /// will not take it (read-only credentials during a disaster, say), the job goes on
    /// without one, with a warning.
    pub fn read_lock(&self, job: &str) -> Option<LockGuard> {
        match self.lock(LockKind::Shared, job) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(
                    "could not take a lock ({e}); the {job} goes on without one (a prune deleting at this moment could remove data it reads)"
                );
                None
            }
        }
    }

    /// Every lock in the repository.
    pub fn locks(&self) -> Result<Vec<FoundLock>> {
        let mut out = Vec::new();
        for info in self.storage.list(ObjectKind::Lock.folder())? {
            let Some(name) = ObjectKind::Lock.name_of(&info.key) else {
                continue;
            };
            let record = match self.storage.get(&info.key) {
                Ok(sealed) => self
                    .key
                    .open(&info.key, LOCK_AAD, &sealed)
                    .and_then(|b| {
                        serde_json::from_slice(&b).map_err(|e| {
                            Error::corrupt(info.key.clone(), format!("malformed lock: {e}"))
                        })
                    })
                    .map_err(|e| e.to_string()),
                // Released between the listing and the read.
                Err(Error::Missing { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.push(FoundLock {
                name: name.to_string(),
                record,
                parts: Vec::new(),
            });
        }
        // Heartbeats written as objects of their own fold into their lock.
        let (parts, mut locks): (Vec<FoundLock>, Vec<FoundLock>) =
            out.into_iter().partition(|l| l.name.contains('.'));
        for part in parts {
            let base = part.name.split('.').next().unwrap_or_default().to_string();
            match locks.iter_mut().find(|l| l.name == base) {
                Some(lock) => {
                    if let (Ok(r), Ok(p)) = (&mut lock.record, &part.record) {
                        r.heartbeat = r.heartbeat.max(p.heartbeat);
                    }
                    lock.parts.push(part.name);
                }
                // Its lock was removed: the heartbeat stands for it.
                None => locks.push(part),
            }
        }
        Ok(locks)
    }

    /// Removes every stale lock (all locks but this process's own with `all`); returns what
    /// was removed, with why.
    pub fn unlock(&self, all: bool, now: jiff::Timestamp) -> Result<Vec<(FoundLock, String)>> {
        self.require_full("remove locks")?;
        let mut removed = Vec::new();
        for lock in self.locks()? {
            let why = match lock.stale(now) {
                Some(why) => why,
                None if all => "removed on request (--all)".to_string(),
                None => continue,
            };
            for part in &lock.parts {
                self.storage.delete(&ObjectKind::Lock.key(part))?;
            }
            self.storage.delete(&ObjectKind::Lock.key(&lock.name))?;
            removed.push((lock, why));
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;

    fn repo() -> Repository {
        let storage = Storage::from_url("memory://").unwrap();
        Repository::init(
            storage,
            Some(b"pw"),
            KdfParams {
                m_kib: 8,
                t: 1,
                p: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn shared_locks_never_refuse_and_are_released_on_drop() {
        let repo = repo();
        let a = repo.lock(LockKind::Shared, "backup").unwrap();
        let b = repo.lock(LockKind::Shared, "backup").unwrap();
        let p = repo.lock(LockKind::Prune, "prune").unwrap();
        assert_eq!(repo.locks().unwrap().len(), 3);
        let err = repo.lock(LockKind::Prune, "prune").err().unwrap();
        assert!(matches!(err, Error::Locked(_)), "{err}");
        assert!(
            err.to_string().contains("another prune is running"),
            "{err}"
        );
        assert_eq!(repo.locks().unwrap().len(), 3, "the refused lock is gone");
        drop((a, b, p));
        assert!(repo.locks().unwrap().is_empty());
    }

    #[test]
    fn staleness_by_process_and_by_heartbeat_age() {
        let repo = repo();
        let now = jiff::Timestamp::now();
        let mine = repo.lock(LockKind::Shared, "backup").unwrap();
        let found = repo.locks().unwrap();
        assert!(found[0].stale(now).is_none(), "this process is alive");
        // A lock of a dead process on this host.
        let dead = LockRecord {
            kind: LockKind::Shared,
            job: "backup".into(),
            hostname: crate::hostname(),
            pid: u32::MAX - 7,
            start_ticks: Some(1),
            created: now,
            heartbeat: now,
        };
        repo.storage
            .put(&ObjectKind::Lock.key("dead"), &seal(&repo.key, &dead))
            .unwrap();
        // A lock of another host, fresh and old.
        let other = LockRecord {
            hostname: "elsewhere".into(),
            ..dead.clone()
        };
        repo.storage
            .put(&ObjectKind::Lock.key("remote"), &seal(&repo.key, &other))
            .unwrap();
        repo.storage
            .put(&ObjectKind::Lock.key("garbled"), b"\x01nonsense")
            .unwrap();
        let find = |name: &str| {
            repo.locks()
                .unwrap()
                .into_iter()
                .find(|l| l.name == name)
                .unwrap()
        };
        assert!(find("dead").stale(now).unwrap().contains("is gone"));
        assert!(find("remote").stale(now).is_none());
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(31 * 60))
            .unwrap();
        assert!(
            find("remote")
                .stale(later)
                .unwrap()
                .contains("no heartbeat")
        );
        assert!(find("garbled").stale(now).unwrap().contains("unreadable"));

        let removed = repo.unlock(false, now).unwrap();
        let names: Vec<&str> = removed.iter().map(|(l, _)| l.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"dead") && names.contains(&"garbled"));
        assert_eq!(repo.locks().unwrap().len(), 2, "live ones stay");
        let removed = repo.unlock(true, now).unwrap();
        assert_eq!(removed.len(), 2);
        drop(mine); // deleting an already removed lock is fine
    }

    #[test]
    fn heartbeat_refreshes_the_lock() {
        let repo = repo();
        let g = repo
            .lock_refreshed(LockKind::Shared, "verify", Duration::from_millis(50))
            .unwrap();
        let first = repo.locks().unwrap()[0].record.clone().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = repo.locks().unwrap()[0].record.clone().unwrap();
            if now.heartbeat > first.heartbeat {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no heartbeat");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(g);
    }
}

//! Holding back repeats: the same job failure alerted at most once per window.
//!
//! `wal push` runs every few seconds while it keeps failing; one alert an hour says it as
//! well as a thousand. Owns the memory of what was last alerted: one small JSON file per
//! (repository id, job, source, error kind) under `alerts/repeats/` in the local state
//! directory (`$STRONGROOM_STATE_DIR`, see [`crate::state`], which makes it private and
//! refuses one another user controls: a planted file could hold alerts back), read and
//! written under an exclusive `flock`, so two processes failing at once count correctly
//! (both alert when the second fails before the first one's alert was delivered).
//!
//! Two steps, so only a delivered alert counts as sent: [`check`] decides (and counts a
//! repeat it holds back), [`sent`] records what became of an alert that went out. An alert
//! no target took leaves the window open: the next failure tries again, and says how many
//! went untold. A `last_sent` later than `now` (the clock went back) holds nothing back.
//! Must not send anything, and must never stop an alert because of its own trouble:
//! without a state directory, or when the file cannot be used, the alert goes out.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether to send a job failure alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it; `suppressed` failures like it went untold since the last one delivered.
    Send {
        /// Failures like it not told since the last alert delivered for it.
        suppressed: u64,
    },
    /// Hold it back: the same failure was alerted less than a window ago.
    Suppress,
}

/// Which failure: the same one in another repository (a source of the same name
/// elsewhere) is another failure.
#[derive(Clone, Copy, Debug)]
pub struct Failure<'a> {
    /// The repository's id (or, when it could not be read, its URL without credentials).
    pub repository: &'a str,
    /// The job (`wal push`, `backup`, …).
    pub job: &'a str,
    /// The source, when the job had one.
    pub source: Option<&'a str>,
    /// The error's stable kind name.
    pub error_kind: &'a str,
}

/// What is remembered of one failure.
#[derive(Serialize, Deserialize)]
struct Memory {
    repository: String,
    job: String,
    source: Option<String>,
    error_kind: String,
    /// When an alert for it was last delivered.
    last_sent: Option<jiff::Timestamp>,
    /// Failures like it not told since.
    suppressed: u64,
}

impl Memory {
    fn new(f: &Failure) -> Memory {
        Memory {
            repository: f.repository.to_string(),
            job: f.job.to_string(),
            source: f.source.map(str::to_string),
            error_kind: f.error_kind.to_string(),
            last_sent: None,
            suppressed: 0,
        }
    }
}

/// Decides for `failure` at `now` in the local state directory, counting a repeat it holds
/// back. A zero `window` sends everything. Call [`sent`] once the alert went out.
pub fn check(failure: &Failure, window: Duration, now: jiff::Timestamp) -> Verdict {
    match crate::state::location() {
        Some(dir) => check_in(&dir, failure, window, now),
        None => Verdict::Send { suppressed: 0 },
    }
}

/// Records that the alert for `failure` was `delivered` (a target took it) or not, at
/// `now`. Only a delivered alert opens a window that holds repeats back.
pub fn sent(failure: &Failure, delivered: bool, now: jiff::Timestamp) {
    if let Some(dir) = crate::state::location() {
        sent_in(&dir, failure, delivered, now);
    }
}

/// [`check`] with the state directory given.
pub fn check_in(
    state_dir: &Path,
    failure: &Failure,
    window: Duration,
    now: jiff::Timestamp,
) -> Verdict {
    if window.is_zero() {
        return Verdict::Send { suppressed: 0 };
    }
    let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
    let decided = update(state_dir, failure, |m| match m.last_sent {
        // In the future: the clock went back, and holds nothing back.
        Some(at) if at <= now && now.duration_since(at) < window => {
            m.suppressed += 1;
            Verdict::Suppress
        }
        _ => Verdict::Send {
            suppressed: m.suppressed,
        },
    });
    decided.unwrap_or(Verdict::Send { suppressed: 0 })
}

/// [`sent`] with the state directory given.
pub fn sent_in(state_dir: &Path, failure: &Failure, delivered: bool, now: jiff::Timestamp) {
    let _ = update(state_dir, failure, |m| {
        if delivered {
            m.last_sent = Some(now);
            m.suppressed = 0;
        } else {
            // Untold, like a repeat held back: the next alert that goes out says so.
            m.suppressed += 1;
        }
    });
}

/// Runs `f` on the failure's memory under the file's lock and writes it back; `None` (after
/// a warning) when the file cannot be used.
fn update<T>(state_dir: &Path, failure: &Failure, f: impl FnOnce(&mut Memory) -> T) -> Option<T> {
    let path = file_for(state_dir, failure);
    let done = crate::state::make_dir(state_dir, &["alerts", "repeats"])
        .map_err(std::io::Error::other)
        // Under the state directory as resolved once, not through a link again.
        .and_then(|dir| locked(&dir.join(name_for(failure))))
        .and_then(|mut file| {
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            // A damaged or foreign file is forgotten, not trusted.
            let mut memory = serde_json::from_str::<Memory>(&text)
                .ok()
                .filter(|m| m.repository == failure.repository)
                .unwrap_or_else(|| Memory::new(failure));
            let out = f(&mut memory);
            let body = serde_json::to_vec_pretty(&memory).map_err(std::io::Error::other)?;
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(&body)?;
            Ok(out)
        });
    match done {
        Ok(out) => Some(out),
        Err(e) => {
            tracing::warn!(
                "cannot use {} to hold back repeated alerts ({e}); sending this one",
                path.display()
            );
            None
        }
    }
}

/// The file opened for reading and writing, under an exclusive `flock` (released when it
/// closes).
fn locked(path: &Path) -> std::io::Result<File> {
    let file = crate::private_dir::open_rw(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

fn file_for(state_dir: &Path, f: &Failure) -> PathBuf {
    state_dir.join("alerts").join("repeats").join(name_for(f))
}

/// The file's name in `alerts/repeats/`: a hash of the repository, job, source and kind.
fn name_for(f: &Failure) -> String {
    let key = format!(
        "{}\0{}\0{}\0{}",
        f.repository,
        f.job,
        f.source.unwrap_or(""),
        f.error_kind
    );
    let hash = blake3::hash(key.as_bytes()).to_hex();
    format!("{}.json", &hash[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn failure<'a>(repository: &'a str, source: Option<&'a str>, kind: &'a str) -> Failure<'a> {
        Failure {
            repository,
            job: "wal push",
            source,
            error_kind: kind,
        }
    }

    /// Checks, and when told to send, records it as delivered.
    fn alert(dir: &Path, f: &Failure, t: &str) -> Verdict {
        let v = check_in(dir, f, HOUR, at(t));
        if v != Verdict::Suppress {
            sent_in(dir, f, true, at(t));
        }
        v
    }

    #[test]
    fn one_alert_per_window_then_the_count_of_those_held_back() {
        let dir = tempfile::tempdir().unwrap();
        let check = |t: &str, kind: &str| alert(dir.path(), &failure("r1", None, kind), t);
        assert_eq!(
            check("2026-12-01T10:00:00Z", "storage_unreachable"),
            Verdict::Send { suppressed: 0 }
        );
        assert_eq!(
            check("2026-12-01T10:00:05Z", "storage_unreachable"),
            Verdict::Suppress
        );
        assert_eq!(
            check("2026-12-01T10:59:59Z", "storage_unreachable"),
            Verdict::Suppress
        );
        // Another kind is another failure.
        assert_eq!(
            check("2026-12-01T10:30:00Z", "wrong_password"),
            Verdict::Send { suppressed: 0 }
        );
        assert_eq!(
            check("2026-12-01T11:00:00Z", "storage_unreachable"),
            Verdict::Send { suppressed: 2 }
        );
        assert_eq!(
            check("2026-12-01T11:00:01Z", "storage_unreachable"),
            Verdict::Suppress
        );
    }

    #[test]
    fn an_alert_not_delivered_holds_nothing_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = failure("r1", Some("prod"), "storage_unreachable");
        for (i, t) in ["10:00:00", "10:00:05", "10:01:00"].iter().enumerate() {
            let now = at(&format!("2026-12-01T{t}Z"));
            let v = check_in(dir.path(), &f, HOUR, now);
            assert_eq!(
                v,
                Verdict::Send {
                    suppressed: i as u64
                },
                "attempt {i}"
            );
            sent_in(dir.path(), &f, false, now);
        }
        // Delivered at last: it says how many went untold, and then the window holds.
        assert_eq!(
            alert(dir.path(), &f, "2026-12-01T10:02:00Z"),
            Verdict::Send { suppressed: 3 }
        );
        assert_eq!(
            alert(dir.path(), &f, "2026-12-01T10:03:00Z"),
            Verdict::Suppress
        );
    }

    #[test]
    fn repeats_are_held_back_per_repository_and_a_clock_gone_back_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let hotel = |repo| failure(repo, Some("hotel"), "source_failed");
        assert_eq!(
            alert(dir.path(), &hotel("r1"), "2026-12-01T10:00:00Z"),
            Verdict::Send { suppressed: 0 }
        );
        // The same source name in another repository is another failure.
        assert_eq!(
            alert(dir.path(), &hotel("r2"), "2026-12-01T10:10:00Z"),
            Verdict::Send { suppressed: 0 }
        );
        assert_eq!(
            alert(dir.path(), &hotel("r1"), "2026-12-01T10:20:00Z"),
            Verdict::Suppress
        );
        // The clock goes back two hours: the last alert is "in the future", and holds
        // nothing back.
        assert_eq!(
            alert(dir.path(), &hotel("r1"), "2026-12-01T08:20:00Z"),
            Verdict::Send { suppressed: 1 }
        );
        assert_eq!(
            alert(dir.path(), &hotel("r1"), "2026-12-01T08:21:00Z"),
            Verdict::Suppress
        );
    }

    #[test]
    fn a_zero_window_or_a_damaged_file_sends() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-12-01T10:00:00Z");
        let f = Failure {
            repository: "r1",
            job: "backup",
            source: Some("hotel"),
            error_kind: "local_io",
        };
        for _ in 0..2 {
            assert_eq!(
                check_in(dir.path(), &f, Duration::ZERO, now),
                Verdict::Send { suppressed: 0 }
            );
            sent_in(dir.path(), &f, true, now);
        }
        let path = file_for(dir.path(), &f);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(
            alert(dir.path(), &f, "2026-12-01T10:00:00Z"),
            Verdict::Send { suppressed: 0 }
        );
        assert_eq!(
            alert(dir.path(), &f, "2026-12-01T10:00:00Z"),
            Verdict::Suppress
        );
        // A state directory that cannot be written does not stop the alert.
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            check_in(&file, &f, HOUR, now),
            Verdict::Send { suppressed: 0 }
        );
    }
}

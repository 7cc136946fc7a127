//! Holding back repeats: the same job failure alerted at most once per window.
//!
//! `wal push` runs every few seconds while it keeps failing; one alert an hour says it as
//! well as a thousand. Owns the memory of what was last alerted: one small JSON file per
//! (job, source, error kind) under `alerts/repeats/` in the local state directory
//! (`$STRONGROOM_STATE_DIR`, see [`crate::state`], which makes it private and refuses one
//! another user controls: a planted file could hold alerts back), read and written under
//! an exclusive `flock`, so two processes failing at once count correctly. Must not send
//! anything, and must never stop an alert because of its own trouble: without a state
//! directory, or when the file cannot be used, the alert goes out.

use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether to send a job failure alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it; `suppressed` repeats were held back since the last one sent.
    Send {
        /// Repeats held back since the last alert for the same failure.
        suppressed: u64,
    },
    /// Hold it back: the same failure was alerted less than a window ago.
    Suppress,
}

/// What is remembered of one failure.
#[derive(Serialize, Deserialize)]
struct Memory {
    job: String,
    source: Option<String>,
    error_kind: String,
    last_sent: jiff::Timestamp,
    suppressed: u64,
}

/// Decides for a failure of `job` on `source` with `error_kind` at `now`, and remembers the
/// decision in the local state directory. A zero `window` sends everything.
pub fn check(
    job: &str,
    source: Option<&str>,
    error_kind: &str,
    window: Duration,
    now: jiff::Timestamp,
) -> Verdict {
    let Some(dir) = crate::state::location() else {
        return Verdict::Send { suppressed: 0 };
    };
    check_in(&dir, job, source, error_kind, window, now)
}

/// [`check`] with the state directory given.
pub fn check_in(
    state_dir: &Path,
    job: &str,
    source: Option<&str>,
    error_kind: &str,
    window: Duration,
    now: jiff::Timestamp,
) -> Verdict {
    if window.is_zero() {
        return Verdict::Send { suppressed: 0 };
    }
    let path = file_for(state_dir, job, source, error_kind);
    let decided = crate::state::make_dir(state_dir, &["alerts", "repeats"])
        .map_err(std::io::Error::other)
        .and_then(|dir| {
            // Under the state directory as resolved once, not through a link again.
            let path = dir.join(name_for(job, source, error_kind));
            decide(&path, job, source, error_kind, window, now)
        });
    match decided {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                "cannot use {} to hold back repeated alerts ({e}); sending this one",
                path.display()
            );
            Verdict::Send { suppressed: 0 }
        }
    }
}

fn file_for(state_dir: &Path, job: &str, source: Option<&str>, error_kind: &str) -> PathBuf {
    state_dir
        .join("alerts")
        .join("repeats")
        .join(name_for(job, source, error_kind))
}

/// The file's name in `alerts/repeats/`.
fn name_for(job: &str, source: Option<&str>, error_kind: &str) -> String {
    let key = format!("{job}\0{}\0{error_kind}", source.unwrap_or(""));
    let hash = blake3::hash(key.as_bytes()).to_hex();
    format!("{}.json", &hash[..32])
}

fn decide(
    path: &Path,
    job: &str,
    source: Option<&str>,
    error_kind: &str,
    window: Duration,
    now: jiff::Timestamp,
) -> std::io::Result<Verdict> {
    let mut file = crate::private_dir::open_rw(path)?;
    // SAFETY: flock on a descriptor we own; released when `file` closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    // A damaged or foreign file is forgotten, not trusted.
    let before: Option<Memory> = serde_json::from_str(&text).ok();
    let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
    let (verdict, memory) = match before {
        Some(mut m) if now.duration_since(m.last_sent) < window && m.last_sent <= now => {
            m.suppressed += 1;
            (Verdict::Suppress, m)
        }
        before => (
            Verdict::Send {
                suppressed: before.map_or(0, |m| m.suppressed),
            },
            Memory {
                job: job.to_string(),
                source: source.map(str::to_string),
                error_kind: error_kind.to_string(),
                last_sent: now,
                suppressed: 0,
            },
        ),
    };
    let body = serde_json::to_vec_pretty(&memory).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&body)?;
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn one_alert_per_window_then_the_count_of_those_held_back() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let check = |t: &str, kind: &str| check_in(dir.path(), "wal push", None, kind, hour, at(t));
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
    fn a_zero_window_or_a_damaged_file_sends() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-12-01T10:00:00Z");
        for _ in 0..2 {
            let v = check_in(
                dir.path(),
                "backup",
                Some("hotel"),
                "local_io",
                Duration::ZERO,
                now,
            );
            assert_eq!(v, Verdict::Send { suppressed: 0 });
        }
        let hour = Duration::from_secs(3600);
        let path = file_for(dir.path(), "backup", Some("hotel"), "local_io");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "not json").unwrap();
        let v = check_in(dir.path(), "backup", Some("hotel"), "local_io", hour, now);
        assert_eq!(v, Verdict::Send { suppressed: 0 });
        let v = check_in(dir.path(), "backup", Some("hotel"), "local_io", hour, now);
        assert_eq!(v, Verdict::Suppress);
        // A state directory that cannot be written does not stop the alert.
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "").unwrap();
        let v = check_in(&file, "backup", None, "local_io", hour, now);
        assert_eq!(v, Verdict::Send { suppressed: 0 });
    }
}

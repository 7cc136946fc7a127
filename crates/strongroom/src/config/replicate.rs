//! `[replicate]`: how continuous capture of SQLite sources runs (`strongroom replicate`, and
//! the daemon for sources with `continuous = true`).
//!
//! Owns the keys, their defaults and validation, and turning them into the job's options
//! ([`ReplicateSettings::options`]). Must not capture anything.

use super::Config;
use super::problems::{KeyPath, Problems};
use crate::engine::sqlite::replica::CaptureOptions;
use crate::jobs::replicate::ReplicateOptions;
use serde::Deserialize;

/// `[replicate]`: the capture round, base snapshots and our checkpoints.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicateSettings {
    /// How often committed frames are read and stored while the database is written
    /// (default `1s`; nothing is stored while it is idle).
    pub interval: String,
    /// How often a new base snapshot starts a new chain, so a restore replays at most this
    /// much (default `1h`).
    pub base_interval: String,
    /// A restart point of ours (PASSIVE checkpoints, the last one under the write lock for
    /// a moment, so the WAL starts over) once the WAL holds this many frames (default 1000,
    /// as SQLite's own autocheckpoint).
    pub checkpoint_frames: u32,
    /// The brake: a TRUNCATE once the `-wal` file is larger than this many frames (default
    /// 10000, 40 MB of 4 KiB pages).
    pub brake_frames: u32,
}

impl Default for ReplicateSettings {
    fn default() -> Self {
        ReplicateSettings {
            interval: "1s".into(),
            base_interval: "1h".into(),
            checkpoint_frames: 1000,
            brake_frames: 10_000,
        }
    }
}

impl ReplicateSettings {
    /// The job's options (the values were validated when the config was read).
    pub fn options(&self) -> ReplicateOptions {
        let d = |v: &str, default: u64| {
            crate::parse_duration(v).unwrap_or(std::time::Duration::from_secs(default))
        };
        ReplicateOptions {
            interval: d(&self.interval, 1),
            base_interval: d(&self.base_interval, 3600),
            capture: CaptureOptions {
                checkpoint_frames: self.checkpoint_frames,
                brake_frames: self.brake_frames,
                ..CaptureOptions::default()
            },
            ..ReplicateOptions::default()
        }
    }
}

pub(super) fn validate(c: &Config, problems: &mut Problems<'_>) {
    let at = KeyPath::of(&["replicate"]);
    for (key, v) in [
        ("interval", &c.replicate.interval),
        ("base_interval", &c.replicate.base_interval),
    ] {
        match crate::parse_duration(v) {
            Err(e) => problems.at(at.clone().key(key), e),
            Ok(d) if d.is_zero() => problems.at(at.clone().key(key), "must be more than 0"),
            Ok(_) => {}
        }
    }
    if c.replicate.brake_frames <= c.replicate.checkpoint_frames {
        problems.at(
            at.clone().key("brake_frames"),
            format!(
                "{} must be above checkpoint_frames ({})",
                c.replicate.brake_frames, c.replicate.checkpoint_frames
            ),
        );
    }
}

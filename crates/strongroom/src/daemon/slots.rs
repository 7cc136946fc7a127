//! What the daemon remembers across restarts: the slot each schedule entry last ran.
//!
//! Owns the file `daemon/<repository id>.json` in the state directory ([`crate::state`]),
//! written whole to a new file and renamed over the old one, so a crash leaves the old
//! record or the new, never half of one. A slot is recorded when its run *starts*: a
//! daemon killed during a backup does not run that slot again when it comes back (the
//! journal records the interruption, and `status` judges freshness). Must not decide what
//! runs: it only remembers.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The last slot run, per entry key (`hotel/full`, `*/check`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Slots {
    /// Entry key to the slot last run (or skipped).
    pub last: BTreeMap<String, Timestamp>,
    #[serde(skip)]
    file: Option<PathBuf>,
}

impl Slots {
    /// The slots remembered for repository `repo_id`; empty when there is no state
    /// directory or no file yet, and (with a warning) when the file cannot be read.
    pub fn load(repo_id: &str) -> Slots {
        let Some(dir) = crate::state::dir(&["daemon"]) else {
            return Slots::default();
        };
        Slots::at(dir.join(format!("{repo_id}.json")))
    }

    /// The slots remembered in `file` (see [`Slots::load`]).
    pub fn at(file: PathBuf) -> Slots {
        let mut slots = match crate::private_dir::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is not a schedule record ({e}); starting afresh",
                    file.display()
                );
                Slots::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Slots::default(),
            Err(e) => {
                tracing::warn!("cannot read {} ({e}); starting afresh", file.display());
                Slots::default()
            }
        };
        slots.file = Some(file);
        slots
    }

    /// Slots kept in memory only (tests, and hosts without a state directory).
    pub fn in_memory() -> Slots {
        Slots::default()
    }

    /// Writes the record; a failure is a warning (the daemon goes on, and may then run a
    /// slot again after a restart).
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        let body = serde_json::to_vec_pretty(self).expect("serializes");
        if let Err(e) = crate::private_dir::replace(file, &[&body]) {
            tracing::warn!("cannot record the schedule in {}: {e}", file.display());
        }
    }
}

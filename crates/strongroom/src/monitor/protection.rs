//! What protects a repository from whoever takes over a database host: whether it is
//! encrypted, which kinds of key open it, which kind of key took each source's backups, its
//! object lock, and the kept snapshots whose lock has already ended.
//!
//! Owns gathering those facts for the repository and each copy ([`of`]). Must not judge
//! them (`evaluate` turns them into each source's `protection` check) and must not change
//! anything: a lock is read with one HEAD per manifest, only on a repository that has one.
//!
//! Why the kind of key shows per source: a host that holds a full key can read every
//! snapshot and delete them all, which is what ransomware does first; one holding an
//! append-only key can do neither (docs/ARCHITECTURE.md, "Append-only keys"). The manifest
//! records which kind of key took it (`Snapshot::append_only`), so this is read from the
//! backups themselves, not from what anyone says the host holds.

use crate::error::Result;
use crate::object_lock::LockPolicy;
use crate::repository::Repository;
use crate::repository::snapshot::Snapshot;
use serde::Serialize;

/// The protection of one repository (the one `status` opened, or a copy).
#[derive(Clone, Debug, Serialize)]
pub struct Protection {
    /// `repository` for the one opened, else the copy's name.
    pub name: String,
    /// Its URL, without credentials.
    pub repository: String,
    /// `xchacha20poly1305` or `none`.
    pub encryption: String,
    /// Key slots holding a full key.
    pub full_keys: usize,
    /// Key slots holding an append-only key.
    pub append_only_keys: usize,
    /// Key slots that could not be read.
    pub damaged_keys: usize,
    /// The object lock every object is written under, if any.
    pub object_lock: Option<LockPolicy>,
    /// With an object lock: the kept snapshots whose manifest is no longer locked (its lock
    /// ended, or it has none), oldest first. Empty without a lock.
    pub unlocked_snapshots: Vec<String>,
}

impl Protection {
    /// One line for people: "encrypted, 2 full keys and 1 append-only key, object lock
    /// governance 30 days".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        parts.push(if self.encryption == "none" {
            "not encrypted".to_string()
        } else {
            "encrypted".to_string()
        });
        if self.encryption != "none" {
            parts.push(format!(
                "{} and {}",
                crate::counted(self.full_keys, "full key"),
                crate::counted(self.append_only_keys, "append-only key")
            ));
        }
        parts.push(match &self.object_lock {
            Some(l) => format!("object lock {} {} days", l.mode.name(), l.days),
            None => "no object lock".to_string(),
        });
        parts.join(", ")
    }
}

/// The protection of `repo`, called `name` and shown as `shown`; `snapshots` are its kept
/// snapshots (their manifests' locks are read when it has an object lock).
pub fn of(
    repo: &Repository,
    name: &str,
    shown: &str,
    snapshots: &[Snapshot],
    now: jiff::Timestamp,
) -> Result<Protection> {
    let mut full_keys = 0;
    let mut append_only_keys = 0;
    let mut damaged_keys = 0;
    for (_, slot) in repo.key_slots()? {
        match slot {
            Ok(s) if s.append_only => append_only_keys += 1,
            Ok(_) => full_keys += 1,
            Err(_) => damaged_keys += 1,
        }
    }
    let object_lock = repo.config().object_lock;
    let mut unlocked_snapshots = Vec::new();
    if object_lock.is_some() {
        let keys: Vec<String> = snapshots
            .iter()
            .map(|s| Snapshot::object_key(&s.id))
            .collect();
        let states = crate::storage::read_each(&keys, |k| repo.storage().lock_of(k, None));
        for (s, state) in snapshots.iter().zip(states) {
            let locked = matches!(state?, Some(st) if st.until.is_some_and(|u| u > now));
            if !locked {
                unlocked_snapshots.push(s.id.clone());
            }
        }
    }
    Ok(Protection {
        name: name.to_string(),
        repository: shown.to_string(),
        encryption: repo.config().encryption.clone(),
        full_keys,
        append_only_keys,
        damaged_keys,
        object_lock,
        unlocked_snapshots,
    })
}

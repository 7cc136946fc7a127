//! Versions waiting for their object lock to end: what a prune hid on a repository with
//! object lock and deletes for good once it may.
//!
//! Owns `expiring/<time>-<rand>` objects (sealed JSON lists of object versions: key, version
//! id, size, lock date) and [`Repository::delete_objects`], the one way jobs delete data
//! objects in bulk: on a repository with object lock it records the current version of each
//! object before hiding it. Must not decide what to delete (prune does) nor when a version
//! may go (prune's `release` step compares the dates with its clock).
//!
//! Why: on a bucket with Object Lock (always versioned), a DELETE without a version id
//! deletes nothing: S3 hides the object behind a delete marker, whatever its lock, and the
//! locked version stays stored. That is what a prune needs at its sweep (the pack, index
//! object or WAL file must vanish from listings at once, as on any store, or an index load
//! would still see superseded entries), and it never asks S3 to delete a locked version. The
//! version itself can only be deleted once its lock has ended: this list remembers which
//! versions strongroom hid, so a later prune deletes exactly those, and never a version an
//! intruder's delete marker hid (that one stays for the operator to bring back).

use super::Repository;
use super::layout::ObjectKind;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

const EXPIRING_AAD: &[u8] = b"strongroom expiring versions";

/// One hidden object version waiting for its lock to end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringVersion {
    /// The object's key.
    pub key: String,
    /// The version hidden.
    pub version: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its lock's date when last read; `None` when it had none.
    pub until: Option<jiff::Timestamp>,
}

impl ExpiringVersion {
    /// Whether its lock has ended at `now` (so S3 lets it be deleted).
    pub fn due(&self, now: jiff::Timestamp) -> bool {
        self.until.is_none_or(|u| u <= now)
    }
}

impl Repository {
    /// Every expiring list, oldest first: their names, and the versions they hold. A list
    /// that cannot be read is left where it is with a warning (it only schedules deletes).
    pub fn expiring(&self) -> Result<(Vec<String>, Vec<ExpiringVersion>)> {
        let mut names = Vec::new();
        let mut all = Vec::new();
        let mut listed = self.storage.list(ObjectKind::Expiring.folder())?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        for o in listed {
            let read = self.storage.get(&o.key).and_then(|sealed| {
                let body = self.key.open(&o.key, EXPIRING_AAD, &sealed)?;
                serde_json::from_slice::<Vec<ExpiringVersion>>(&body)
                    .map_err(|e| Error::corrupt(o.key.clone(), format!("malformed list: {e}")))
            });
            match read {
                Ok(v) => {
                    names.push(o.key);
                    all.extend(v);
                }
                Err(Error::Missing { .. }) => {}
                Err(e) => tracing::warn!("{e}; the versions it lists wait for a later prune"),
            }
        }
        Ok((names, all))
    }

    /// Writes `versions` as a new expiring list (nothing when empty); returns its key.
    pub fn write_expiring(&self, versions: &[ExpiringVersion]) -> Result<Option<String>> {
        if versions.is_empty() {
            return Ok(None);
        }
        let key = ObjectKind::Expiring.key(&Repository::new_mark_name(jiff::Timestamp::now()));
        let body = serde_json::to_vec(versions).expect("list serializes");
        self.storage
            .put(&key, &self.key.seal(EXPIRING_AAD, &body))?;
        Ok(Some(key))
    }

    /// Replaces the lists `old` with one holding `remaining`: the new one is written
    /// before the old ones are deleted, so a kill between leaves duplicates (harmless: a
    /// version deleted twice is deleted once), never a version forgotten.
    pub fn replace_expiring(&self, old: &[String], remaining: &[ExpiringVersion]) -> Result<()> {
        self.write_expiring(remaining)?;
        for key in old {
            self.storage.delete(key)?;
        }
        Ok(())
    }

    /// Deletes the objects `keys`. On a repository with object lock, each object's current
    /// version (size and lock) is first recorded in a new expiring list, then the object
    /// is hidden by a plain DELETE (see the module header); objects already gone are
    /// skipped. Elsewhere each is simply deleted.
    pub fn delete_objects(&self, keys: &[String]) -> Result<()> {
        if self.storage.object_lock().is_some() {
            let states = crate::storage::read_each(keys, |k| self.storage.lock_of(k, None));
            let mut versions = Vec::new();
            for (key, state) in keys.iter().zip(states) {
                if let Some(s) = state? {
                    match s.version {
                        Some(version) => versions.push(ExpiringVersion {
                            key: key.clone(),
                            version,
                            size: s.size,
                            until: s.until,
                        }),
                        None => tracing::warn!(
                            "{key} has no version id: the bucket is not versioned, so its delete is final"
                        ),
                    }
                }
            }
            self.write_expiring(&versions)?;
        }
        for key in keys {
            self.storage.delete(key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_the_lock_has_ended() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let v = ExpiringVersion {
            key: "data/ab/ab".into(),
            version: "v".into(),
            size: 1,
            until: Some(t("2026-12-08T00:00:00Z")),
        };
        assert!(!v.due(t("2026-12-07T23:59:59Z")));
        assert!(v.due(t("2026-12-08T00:00:00Z")));
        let unlocked = ExpiringVersion { until: None, ..v };
        assert!(unlocked.due(t("2000-01-01T00:00:00Z")));
    }
}

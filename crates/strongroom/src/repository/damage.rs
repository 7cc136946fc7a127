//! The repository's record of packs found damaged or missing.
//!
//! Owns `damage/<pack id>` objects: `check` (and a `verify` that meets damage) writes one for
//! every pack it finds missing or failing authentication, and removes it when a later full
//! read finds the pack sound. The index reads them so that a backup never deduplicates
//! against a chunk whose only copy is known bad: it stores the chunk again, and reads then
//! prefer the new copy (docs/ARCHITECTURE.md, "Invariants": the manifest is the commit
//! point; a snapshot must never build on data the repository cannot give back). Must not
//! decide what is damaged: callers report what they found.

use super::Repository;
use super::layout::ObjectKind;
use crate::error::{Error, Result};
use crate::id::PackId;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

const DAMAGE_AAD: &[u8] = b"strongroom damage record";

/// What was found wrong with a pack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DamageRecord {
    /// What failed ("missing", "segment at byte 1234 fails authentication", …).
    pub detail: String,
    /// When it was found.
    pub found_at: jiff::Timestamp,
}

impl Repository {
    /// Records that `pack` is damaged or missing (replacing an earlier record).
    pub fn record_damage(&self, pack: &PackId, detail: &str) -> Result<()> {
        let rec = DamageRecord {
            detail: detail.to_string(),
            found_at: jiff::Timestamp::now(),
        };
        let body = serde_json::to_vec(&rec).expect("damage record serializes");
        self.storage.put(
            &ObjectKind::Damage.key(&pack.to_hex()),
            &self.key.seal(DAMAGE_AAD, &body),
        )
    }

    /// Removes the record of `pack` (a full read found it sound).
    pub fn clear_damage(&self, pack: &PackId) -> Result<()> {
        self.storage.delete(&ObjectKind::Damage.key(&pack.to_hex()))
    }

    /// The packs recorded damaged or missing (listed, not read: one LIST).
    pub fn damaged_packs(&self) -> Result<HashSet<PackId>> {
        Ok(self
            .storage
            .list(ObjectKind::Damage.folder())?
            .iter()
            .filter_map(|o| {
                ObjectKind::Damage
                    .name_of(&o.key)
                    .and_then(PackId::from_hex)
            })
            .collect())
    }

    /// Reads one damage record.
    pub fn read_damage(&self, pack: &PackId) -> Result<DamageRecord> {
        let object = ObjectKind::Damage.key(&pack.to_hex());
        let body = self
            .key
            .open(&object, DAMAGE_AAD, &self.storage.get(&object)?)?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::corrupt(&object, format!("malformed damage record: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use crate::id::PackId;
    use crate::repository::writer::tests::memory_repo;

    #[test]
    fn damage_is_recorded_listed_and_cleared() {
        let repo = memory_repo();
        let p = PackId([3; 32]);
        assert!(repo.damaged_packs().unwrap().is_empty());
        repo.record_damage(&p, "missing").unwrap();
        assert_eq!(repo.damaged_packs().unwrap(), [p].into());
        assert_eq!(repo.read_damage(&p).unwrap().detail, "missing");
        repo.clear_damage(&p).unwrap();
        assert!(repo.damaged_packs().unwrap().is_empty());
    }
}

//! Deletion marks: the first phase of prune's two-phase delete.
//!
//! Owns `deletions/<time>-<rand>` objects: what a prune has decided to delete (packs, index
//! objects it superseded, packs no index names, WAL no kept snapshot needs), which locks
//! must be gone before it may, and how far the deleting got. Must not decide what is
//! garbage (the `prune` job does) nor delete anything itself.
//!
//! Why marks. Prune never deletes what it has just decided is garbage: a backup that loaded
//! the index a moment earlier may be about to reference a chunk in one of those packs. So
//! it writes a mark first. Every job that reads the index lists the marks and treats marked
//! packs as gone (`Repository::load_index`): a backup stores such chunks again, a restore
//! reads the copies prune made. Only when every lock that existed when the mark was written
//! is gone (`waiting_for`) may the marked objects be deleted, after snapshots that appeared
//! meanwhile were checked for references into them (`spared`). A mark that cannot be read
//! deletes nothing. A prune killed at any point leaves a mark the next prune finishes.
//!
//! Marks are sealed under the shared key (`crypto::MasterKey::seal_shared`): append-only
//! hosts read them too, so their backups never build on a pack about to go.

use super::Repository;
use super::layout::ObjectKind;
use crate::error::{Error, Result};
use crate::id::PackId;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

const DELETION_AAD: &[u8] = b"strongroom deletion mark";

/// What a prune will delete, and how far it got.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeletionMark {
    /// When the mark was written (the prune's clock; informative only).
    pub created: jiff::Timestamp,
    /// Host and process of the prune that wrote it.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// The snapshots the plan was made from: any other snapshot found at delete time is
    /// checked for references into the marked packs.
    pub considered: Vec<String>,
    /// Packs to delete: none of their chunks is needed, or the needed ones were copied.
    pub packs: Vec<String>,
    /// Packs no index object named when the plan was made (left by a killed backup):
    /// deleted unless an index object names them by then.
    pub orphans: Vec<String>,
    /// Index objects superseded by the ones the prune wrote.
    pub index: Vec<String>,
    /// Archived WAL files (object keys) older than any kept snapshot needs.
    pub wal: Vec<String>,
    /// Damage records of packs deleted (their damage no longer matters).
    pub damage: Vec<String>,
    /// Temporary objects interrupted writes left (local repositories).
    #[serde(default)]
    pub temporary: Vec<String>,
    /// Locks present when the mark was written; `None` until listed (then every lock
    /// present at deletion time counts, which is only more careful).
    pub waiting_for: Option<Vec<String>>,
    /// Packs kept after all: a snapshot newer than the plan references them.
    pub spared: Vec<String>,
    /// Whether newer snapshots were checked and spared packs indexed again.
    pub checked: bool,
}

impl DeletionMark {
    /// Packs this mark will delete (spared ones excluded).
    pub fn doomed_packs(&self) -> impl Iterator<Item = PackId> + '_ {
        self.packs
            .iter()
            .chain(&self.orphans)
            .filter(|p| !self.spared.contains(p))
            .filter_map(|p| PackId::from_hex(p))
    }
}

impl Repository {
    /// Writes (or rewrites) the mark called `name`.
    pub fn write_mark(&self, name: &str, mark: &DeletionMark) -> Result<()> {
        let body = serde_json::to_vec(mark).expect("mark serializes");
        self.storage.put(
            &ObjectKind::Deletion.key(name),
            &self.key.seal_shared(DELETION_AAD, &body),
        )
    }

    /// A new mark's name: its time, so names sort by age, and a random part.
    pub fn new_mark_name(now: jiff::Timestamp) -> String {
        format!(
            "{}-{}",
            now.strftime("%Y%m%dT%H%M%S%.6fZ"),
            hex::encode(crate::crypto::random_bytes::<4>())
        )
    }

    /// Every mark, oldest first, each read or with why it could not be.
    pub fn marks(&self) -> Result<Vec<(String, Result<DeletionMark>)>> {
        let mut names: Vec<String> = self
            .storage
            .list(ObjectKind::Deletion.folder())?
            .into_iter()
            .filter_map(|o| ObjectKind::Deletion.name_of(&o.key).map(str::to_string))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let key = ObjectKind::Deletion.key(&name);
            let mark = match self.storage.get(&key) {
                Ok(sealed) => self
                    .key
                    .open_shared(&key, DELETION_AAD, &sealed)
                    .and_then(|b| {
                        serde_json::from_slice(&b).map_err(|e| {
                            Error::corrupt(key.clone(), format!("malformed mark: {e}"))
                        })
                    }),
                // Finished by another prune between the listing and the read.
                Err(Error::Missing { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.push((name, mark));
        }
        Ok(out)
    }

    /// Packs some readable mark will delete: no job may build on them.
    pub fn doomed_packs(&self) -> Result<HashSet<PackId>> {
        Ok(self.doomed_packs_and_unreadable()?.0)
    }

    /// [`Repository::doomed_packs`], and whether some mark could not be read.
    pub(crate) fn doomed_packs_and_unreadable(&self) -> Result<(HashSet<PackId>, bool)> {
        let mut out = HashSet::new();
        let mut unreadable = false;
        for (name, mark) in self.marks()? {
            match mark {
                Ok(m) => out.extend(m.doomed_packs()),
                Err(e) => {
                    unreadable = true;
                    tracing::warn!(
                        "deletion mark {name} cannot be read ({e}); it deletes nothing (`strongroom check` reports it)"
                    )
                }
            }
        }
        Ok((out, unreadable))
    }

    /// Removes a finished mark.
    pub fn delete_mark(&self, name: &str) -> Result<()> {
        self.storage.delete(&ObjectKind::Deletion.key(name))
    }
}

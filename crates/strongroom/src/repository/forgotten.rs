//! What `forget` removed from a copy, so `copy` does not bring it back (`state/forgotten`).
//!
//! Owns the `state/forgotten` object of a repository made by `init --copy-of`: the ids of
//! the snapshots its own `forget` removed. A copy keeps its own retention
//! (`[copies.retention]`), and `copy` brings over every snapshot the copy lacks; without this
//! record, each copy run would bring back what the copy's retention had just removed. A
//! snapshot named to `copy` explicitly is copied whatever this says. Must not decide what is
//! forgotten (the `forget` job does) and must not delete anything.
//!
//! Sealed JSON (`{"ids": [...]}`, AAD `strongroom forgotten`), 65 bytes per snapshot: a
//! daily snapshot forgotten for ten years is 240 KB. Written before the manifests are
//! deleted, so a kill in between leaves a record of a snapshot that is still there (which
//! changes nothing: `copy` skips only what the copy lacks).

use super::Repository;
use super::layout::ObjectKind;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

const AAD: &[u8] = b"strongroom forgotten";

#[derive(Default, Serialize, Deserialize)]
struct Forgotten {
    ids: BTreeSet<String>,
}

/// The object that holds the record (`state/forgotten`).
pub fn key() -> String {
    ObjectKind::State.key("forgotten")
}

impl Repository {
    /// The ids of the snapshots `forget` removed from this copy (none when it never did).
    pub fn forgotten(&self) -> Result<BTreeSet<String>> {
        let key = key();
        let raw = match self.storage().get(&key) {
            Ok(r) => r,
            Err(Error::Missing { .. }) => return Ok(BTreeSet::new()),
            Err(e) => return Err(e),
        };
        let body = self.key().open(&key, AAD, &raw)?;
        let f: Forgotten = serde_json::from_slice(&body).map_err(|e| {
            Error::corrupt(
                &key,
                format!("malformed record of forgotten snapshots: {e}"),
            )
        })?;
        Ok(f.ids)
    }

    /// Adds `ids` to the record of forgotten snapshots.
    pub fn note_forgotten(&self, ids: impl IntoIterator<Item = String>) -> Result<()> {
        let mut f = Forgotten {
            ids: self.forgotten()?,
        };
        let before = f.ids.len();
        f.ids.extend(ids);
        if f.ids.len() == before {
            return Ok(());
        }
        let body = serde_json::to_vec(&f).expect("the record serializes");
        self.storage().put(&key(), &self.key().seal(AAD, &body))
    }
}

#[cfg(test)]
mod tests {
    use crate::repository::writer::tests::memory_repo;

    #[test]
    fn forgotten_ids_accumulate_and_a_damaged_record_says_so() {
        let repo = memory_repo();
        assert!(repo.forgotten().unwrap().is_empty());
        repo.note_forgotten(["a".to_string(), "b".to_string()])
            .unwrap();
        repo.note_forgotten(["b".to_string(), "c".to_string()])
            .unwrap();
        let got: Vec<String> = repo.forgotten().unwrap().into_iter().collect();
        assert_eq!(got, ["a", "b", "c"]);
        repo.storage().put(&super::key(), b"\x01garbage").unwrap();
        assert!(repo.forgotten().unwrap_err().is_damage());
    }
}

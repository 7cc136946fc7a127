//! Catalogs: what an append-only key stored, kept where that key can read it again.
//!
//! Owns `catalogs/<catalog id>/` objects, sealed under the key's own catalog key
//! (`crypto::MasterKey::seal_catalog`): `i-<hash>` mirrors each index object the key wrote
//! (the chunks it stored and where), `s-<snapshot id>` the manifest of a snapshot it
//! committed. Must not be what full keys rely on: they read `index/` and `snapshots/`,
//! which the key writes as well, sealed to the recipient only they can open. A catalog is
//! the host's own view, for two things:
//! - **Deduplication against its own earlier backups.** A host cannot open `index/`, so its
//!   index (`Repository::load_index`) is built from its `i-` objects instead, in a local
//!   cache of its own (`catalog-<id>-v1/`), rebuilt from the catalog when lost. Packs no longer
//!   listed, damaged or about to be deleted (marks are readable with the shared key) are
//!   not built on, as for a full key.
//! - **`list`**, so the host can say what it did: its `s-` objects whose manifest is still
//!   listed; and the parent a physical backup takes unchanged files over from.
//!
//! A manifest names files and the ids of the chunks that list their chunks: no database
//! content. The content stays where only full keys read it.
//!
//! Why per key, with a key of its own. One host's catalog is not another's to read or to
//! write into: a stolen host could otherwise make another host's backups build on chunks it
//! forged. A full key derives every catalog key (`prune` could read them; today nothing
//! needs to), the host holds only its own.

use super::Repository;
use super::index::{self, Entry};
use super::layout::ObjectKind;
use super::snapshot::Snapshot;
use crate::error::{Error, Result};

const CATALOG_AAD: &[u8] = b"strongroom catalog";

/// The prefix of entry objects in a catalog folder.
const ENTRIES: &str = "i-";
/// The prefix of snapshot objects in a catalog folder.
const SNAPSHOT: &str = "s-";

impl Repository {
    /// The folder of this append-only key's catalog; `None` for a full key.
    pub fn catalog_folder(&self) -> Option<String> {
        self.key()
            .catalog_id()
            .map(|id| ObjectKind::Catalog.key(&format!("{id}/")))
    }

    /// Records index entries in this append-only key's catalog (nothing for a full key).
    pub(crate) fn catalog_entries(&self, entries: &[Entry]) -> Result<()> {
        let Some(folder) = self.catalog_folder() else {
            return Ok(());
        };
        let body = index::encode_compressed(entries);
        let sealed = self
            .key()
            .seal_catalog(CATALOG_AAD, &body)
            .expect("an append-only key has a catalog key");
        let name = format!(
            "{folder}{ENTRIES}{}",
            blake3::hash(&sealed).to_hex().as_str()
        );
        self.storage().put(&name, &sealed)
    }

    /// Records a committed snapshot's manifest in this append-only key's catalog (nothing
    /// for a full key).
    pub(crate) fn catalog_snapshot(&self, snap: &Snapshot) -> Result<()> {
        let Some(folder) = self.catalog_folder() else {
            return Ok(());
        };
        let sealed = self
            .key()
            .seal_catalog(CATALOG_AAD, &snap.encode())
            .expect("an append-only key has a catalog key");
        self.storage()
            .put(&format!("{folder}{SNAPSHOT}{}", snap.id), &sealed)
    }

    /// The objects this key's index is made of: `index/` for a full key, its catalog's
    /// entry objects for an append-only key (read with [`Repository::read_index_source`]).
    pub(crate) fn index_sources(&self) -> Result<Vec<String>> {
        let Some(folder) = self.catalog_folder() else {
            return Ok(self
                .storage()
                .list(ObjectKind::Index.folder())?
                .into_iter()
                .map(|o| o.key)
                .collect());
        };
        let prefix = format!("{folder}{ENTRIES}");
        Ok(self
            .storage()
            .list(&folder)?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| k.starts_with(&prefix))
            .collect())
    }

    /// Reads one of the objects [`Repository::index_sources`] lists.
    pub(crate) fn read_index_source(&self, object: &str) -> Result<Vec<Entry>> {
        if self.catalog_folder().is_none() {
            return self.read_index(object);
        }
        index::decode_compressed(object, &self.open_catalog_object(object)?)
    }

    /// The snapshots this append-only key committed whose manifest is still in the
    /// repository, oldest first, [`Snapshot::unvouched`]; damaged catalog objects are
    /// returned apart, with why.
    pub fn catalog_snapshots(&self) -> Result<(Vec<Snapshot>, Vec<super::Damaged>)> {
        let Some(folder) = self.catalog_folder() else {
            return Err(Error::Internal(
                "a full key has no catalog: list its snapshots from the manifests".into(),
            ));
        };
        let present: std::collections::HashSet<String> = self
            .storage()
            .list(ObjectKind::Snapshot.folder())?
            .iter()
            .filter_map(|o| ObjectKind::Snapshot.name_of(&o.key).map(str::to_string))
            .collect();
        let prefix = format!("{folder}{SNAPSHOT}");
        let ids: Vec<String> = self
            .storage()
            .list(&folder)?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&prefix).map(str::to_string))
            .filter(|id| present.contains(id))
            .collect();
        super::read_manifests(&ids, |id| {
            let object = format!("{prefix}{id}");
            let body = self.open_catalog_object(&object)?;
            let mut snap = Snapshot::decode(id, &body)
                .map_err(|_| Error::corrupt(&object, "malformed catalog record"))?;
            snap.unvouched = true;
            Ok(snap)
        })
    }

    fn open_catalog_object(&self, object: &str) -> Result<Vec<u8>> {
        let id = ObjectKind::Catalog
            .name_of(object)
            .and_then(|rest| rest.split_once('/'))
            .map(|(id, _)| id)
            .ok_or_else(|| Error::corrupt(object, "not a catalog object"))?;
        let sealed = self.storage().get(object)?;
        self.key().open_catalog(id, object, CATALOG_AAD, &sealed)
    }
}

//! Snapshot headers: every manifest without its file list, from a local cache.
//!
//! Owns `<cache root>/<repository id>/headers-v1`, the manifests `status`, `metrics` and the
//! daemon have read before, without their file lists, so judging a source costs one
//! listing of `snapshots/` and the reading of new manifests only, not every manifest each
//! time (10,000 manifests were 10,000 requests a minute for the daemon). Why it is safe: a
//! manifest is named by the keyed hash of its content, so a cached header stays true for
//! as long as its id is listed; a manifest an append-only key wrote and no full key has
//! vouched for yet is never cached (its vouch changes how it counts); the file carries a
//! keyed hash under the repository's id key, so a damaged or foreign file is rebuilt,
//! never believed; and it sits in the repository's private cache directory
//! ([`super::cache`]'s rule). Must not be the only copy of anything, and must not hold file
//! lists: whoever needs files (restore, verify, prune) reads the manifest itself.

use super::snapshot::Snapshot;
use super::{Damaged, Repository, read_manifests};
use crate::error::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// The cache file's name.
const FILE: &str = "headers-v1";

impl Repository {
    /// Every readable snapshot without its file list (`files` is empty), oldest first, and
    /// the damaged manifests with why: [`Repository::snapshots_lenient`] for readers of
    /// headers only, served from the local cache where it can be.
    pub fn snapshot_headers(&self) -> Result<(Vec<Snapshot>, Vec<Damaged>)> {
        self.require_full("read snapshots (an append-only key lists its own with `list`)")?;
        let ids = self.snapshot_ids()?;
        let file = super::cache::private_repo_dir(self).map(|d| d.join(FILE));
        let mut cached = file
            .as_ref()
            .map(|f| self.read_headers(f))
            .unwrap_or_default();
        let listed: std::collections::BTreeSet<&String> = ids.iter().collect();
        let before = cached.len();
        cached.retain(|id, _| listed.contains(id));
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !cached.contains_key(*id))
            .cloned()
            .collect();
        let (fresh, damaged) = read_manifests(&missing, |id| self.read_snapshot(id))?;
        let mut out: Vec<Snapshot> = cached.values().cloned().collect();
        let mut changed = cached.len() != before;
        for mut s in fresh {
            s.files = Vec::new();
            if !s.unvouched {
                cached.insert(s.id.clone(), s.clone());
                changed = true;
            }
            out.push(s);
        }
        if changed && let Some(f) = &file {
            self.write_headers(f, &cached);
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok((out, damaged))
    }

    /// The cached headers, when the file is there, whole and ours; else none (rebuilt).
    fn read_headers(&self, file: &Path) -> BTreeMap<String, Snapshot> {
        let Ok(bytes) = crate::private_dir::read(file) else {
            return BTreeMap::new();
        };
        let Some((mac, body)) = bytes.split_first_chunk::<32>() else {
            return BTreeMap::new();
        };
        if blake3::keyed_hash(&self.key.id_key(), body) != blake3::Hash::from_bytes(*mac) {
            tracing::debug!("{} does not verify; reading every manifest", file.display());
            return BTreeMap::new();
        }
        let Ok(map) = serde_json::from_slice::<BTreeMap<String, Snapshot>>(body) else {
            return BTreeMap::new();
        };
        map.into_iter()
            .map(|(id, mut s)| {
                s.id = id.clone();
                (id, s)
            })
            .collect()
    }

    /// Writes the cache whole under a new name, then renames it over the old; a failure is
    /// only a slower next read.
    fn write_headers(&self, file: &Path, map: &BTreeMap<String, Snapshot>) {
        let body = serde_json::to_vec(map).expect("headers serialize");
        let mac = blake3::keyed_hash(&self.key.id_key(), &body);
        if let Err(e) = crate::private_dir::replace(file, &[mac.as_bytes(), &body]) {
            tracing::debug!("cannot keep snapshot headers in {}: {e}", file.display());
        }
    }
}

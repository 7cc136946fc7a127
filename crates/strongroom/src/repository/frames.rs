//! Captured SQLite WAL frames: `frames/<chain>/<seq>`, one object per capture round.
//!
//! A *chain* is a base snapshot (its id names the chain) and the segments captured after
//! it, numbered 1, 2, … with no gap (level 0, `frames/<chain>/<seq>`), and compacted
//! segments that stand for a run of them (level 1, `frames/<chain>/c-<first>-<last>`), so
//! a restore reads a few dozen objects where it would read thousands. Owns the objects'
//! keys, their sealing and listing.
//! Must not know what a segment holds (`engine::sqlite::replica::segment` does).
//!
//! Why not the WAL archive (`repository::archive`): that one compares a name archived
//! twice, which costs a HEAD request per write; a segment's number is new by construction
//! (the replicator continues after the last one it listed when it started), so the hot
//! path is one PUT per round and no LIST, the cost Litestream's users paid for (its #234).
//!
//! Object format, sealed as a whole with the object's key as associated data (a segment
//! copied to another number or chain fails to open):
//! ```text
//! "SRFRM1" ‖ plaintext length (u64 LE) ‖ zstd frame
//! ```

use super::Repository;
use super::layout::ObjectKind;
use super::snapshot::Snapshot;
use crate::error::{Error, Result};
use std::collections::HashSet;

const MAGIC: &[u8; 6] = b"SRFRM1";

/// One stored segment as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its number in the chain.
    pub seq: u64,
    /// Stored (sealed, compressed) size.
    pub stored: u64,
    /// When it was written, as the store reports it.
    pub modified: Option<jiff::Timestamp>,
}

/// The segments of one chain.
pub struct Chain<'r> {
    repo: &'r Repository,
    chain: String,
}

impl<'r> Chain<'r> {
    /// The chain whose base snapshot is `base` (a snapshot id).
    pub fn new(repo: &'r Repository, base: &str) -> Self {
        Chain {
            repo,
            chain: base.to_string(),
        }
    }

    /// The chains that have segments in `repo`.
    pub fn all(repo: &Repository) -> Result<Vec<String>> {
        let mut out: Vec<String> = repo
            .storage()
            .list(ObjectKind::Frames.folder())?
            .iter()
            .filter_map(|o| {
                let rest = ObjectKind::Frames.name_of(&o.key)?;
                Some(rest.split('/').next()?.to_string())
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The object key of segment `seq`.
    pub fn object_key(&self, seq: u64) -> String {
        ObjectKind::Frames.key(&format!("{}/{seq:016x}", self.chain))
    }

    /// The object key of the compacted segment standing for segments `first..=last`.
    pub fn compacted_key(&self, first: u64, last: u64) -> String {
        ObjectKind::Frames.key(&format!("{}/c-{first:016x}-{last:016x}", self.chain))
    }

    /// Stores segment `seq`'s plaintext, durably; returns the bytes written.
    pub fn put(&self, seq: u64, plaintext: &[u8], level: i32) -> Result<u64> {
        self.put_at(&self.object_key(seq), plaintext, level)
    }

    /// Stores the compacted segment for `first..=last`, durably.
    pub fn put_compacted(
        &self,
        first: u64,
        last: u64,
        plaintext: &[u8],
        level: i32,
    ) -> Result<u64> {
        self.put_at(&self.compacted_key(first, last), plaintext, level)
    }

    /// Reads the compacted segment for `first..=last` back, authenticated.
    pub fn get_compacted(&self, first: u64, last: u64) -> Result<Vec<u8>> {
        let key = self.compacted_key(first, last);
        let sealed = self.repo.storage().get(&key)?;
        open(self.repo, &key, &sealed)
    }

    /// The compacted segments of the chain, as (first, last) segment numbers, by first.
    pub fn list_compacted(&self) -> Result<Vec<(u64, u64)>> {
        let prefix = ObjectKind::Frames.key(&format!("{}/c-", self.chain));
        let mut out: Vec<(u64, u64)> = self
            .repo
            .storage()
            .list(&prefix)?
            .into_iter()
            .filter_map(|o| {
                let (a, b) = o.key.strip_prefix(&prefix)?.split_once('-')?;
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                ))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn put_at(&self, key: &str, plaintext: &[u8], level: i32) -> Result<u64> {
        let key = key.to_string();
        let compressed = zstd::bulk::compress(plaintext, level)
            .map_err(|e| Error::Internal(format!("zstd compression failed: {e}")))?;
        let mut body = Vec::with_capacity(14 + compressed.len());
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&(plaintext.len() as u64).to_le_bytes());
        body.extend_from_slice(&compressed);
        let sealed = self.repo.key().seal(key.as_bytes(), &body);
        self.repo.storage().put(&key, &sealed)?;
        Ok(sealed.len() as u64)
    }

    /// Reads segment `seq` back, authenticated.
    pub fn get(&self, seq: u64) -> Result<Vec<u8>> {
        let key = self.object_key(seq);
        let sealed = self.repo.storage().get(&key)?;
        open(self.repo, &key, &sealed)
    }

    /// Every segment of the chain, by number.
    pub fn list(&self) -> Result<Vec<Listed>> {
        let prefix = ObjectKind::Frames.key(&format!("{}/", self.chain));
        let mut out: Vec<Listed> = self
            .repo
            .storage()
            .list(&prefix)?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.strip_prefix(&prefix)?;
                Some(Listed {
                    seq: u64::from_str_radix(name, 16).ok()?,
                    stored: o.size,
                    modified: o.modified,
                })
            })
            .collect();
        out.sort_by_key(|l| l.seq);
        Ok(out)
    }

    /// The segments of every chain whose base snapshot is not among `kept`: what a prune
    /// deletes once the base is forgotten, as (object key, stored bytes).
    pub fn orphaned(repo: &Repository, kept: &[Snapshot]) -> Result<Vec<(String, u64)>> {
        let kept: HashSet<&str> = kept.iter().map(|s| s.id.as_str()).collect();
        Ok(repo
            .storage()
            .list(ObjectKind::Frames.folder())?
            .into_iter()
            .filter(|o| Chain::of_key(&o.key).is_some_and(|chain| !kept.contains(chain)))
            .map(|o| (o.key, o.size))
            .collect())
    }

    /// The chain (base snapshot id) a segment's object key belongs to.
    pub fn of_key(key: &str) -> Option<&str> {
        ObjectKind::Frames
            .name_of(key)?
            .split_once('/')
            .map(|(c, _)| c)
    }

    /// Deletes every segment of the chain, compacted ones too (prune, once its base
    /// snapshot is forgotten).
    pub fn delete_all(&self) -> Result<usize> {
        let prefix = ObjectKind::Frames.key(&format!("{}/", self.chain));
        let listed = self.repo.storage().list(&prefix)?;
        for o in &listed {
            self.repo.storage().delete(&o.key)?;
        }
        Ok(listed.len())
    }
}

/// Keeps out of `keys` (objects a prune planned to delete) the segments of chains whose
/// base snapshot is among `snaps` now: one taken during the prune.
pub fn spare_based(keys: &mut Vec<String>, snaps: &[Snapshot]) {
    let ids: HashSet<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
    keys.retain(|k| Chain::of_key(k).is_none_or(|chain| !ids.contains(chain)));
}

/// Opens a segment as stored under `key` (the whole key): authenticated (the key is its
/// associated data) and decompressed. `copy` calls it before writing a segment elsewhere.
pub fn open(repo: &Repository, key: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let body = repo.key().open(key, key.as_bytes(), sealed)?;
    if body.len() < 14 || &body[..6] != MAGIC {
        return Err(Error::corrupt(key, "not a frame segment"));
    }
    let len = u64::from_le_bytes(body[6..14].try_into().expect("8 bytes"));
    let mut out = Vec::with_capacity(len.min(1 << 30) as usize);
    zstd::stream::copy_decode(&body[14..], &mut out)
        .map_err(|e| Error::corrupt(key, format!("decompression failed: {e}")))?;
    if out.len() as u64 != len {
        return Err(Error::corrupt(key, "length does not match its header"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::writer::tests::memory_repo;

    #[test]
    fn segments_read_back_list_in_order_and_refuse_being_moved() {
        let repo = memory_repo();
        let c = Chain::new(&repo, "abc");
        c.put(2, b"two", 1).unwrap();
        c.put(1, b"one", 1).unwrap();
        c.put_compacted(1, 2, b"both", 1).unwrap();
        assert_eq!(c.list_compacted().unwrap(), vec![(1, 2)]);
        assert_eq!(c.get_compacted(1, 2).unwrap(), b"both");
        assert_eq!(c.get(1).unwrap(), b"one");
        let seqs: Vec<u64> = c.list().unwrap().iter().map(|l| l.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(Chain::all(&repo).unwrap(), vec!["abc"]);
        let sealed = repo.storage().get(&c.object_key(1)).unwrap();
        repo.storage().put(&c.object_key(3), &sealed).unwrap();
        assert!(c.get(3).unwrap_err().is_damage());
        assert_eq!(c.delete_all().unwrap(), 4);
        assert!(c.list().unwrap().is_empty());
    }
}

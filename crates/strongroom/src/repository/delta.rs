//! Page deltas: a changed page stored against the page at the same position of the parent
//! snapshot's file (docs/ARCHITECTURE.md, "Page deltas").
//!
//! Owns the positional view of a parent file ([`Parent`]: what was stored at each position,
//! and which positions were deltas of what) and reading bases in the pipeline's workers
//! ([`Bases`]); the blob format is `patch`'s. Must not write anything: the backup pipeline (`writer`) stores what this
//! module chose, the reader (`reader::fetch`) rebuilds pages from deltas.
//!
//! Why: after updating 1% of a hotel's bookings at random, about 80% of a PostgreSQL
//! cluster's 8 KiB pages (30% of a SQLite database's 4 KiB pages) differ from the parent
//! snapshot's, each by a few dozen bytes (a tuple header, the page LSN, an index entry).
//! Storing each whole cost 194 MB for a 1.1 GB cluster; as the runs of bytes that differ
//! from the predecessor (`patch`), a changed page is a few dozen bytes.
//!
//! Depth 1: a delta's base is always a whole page. A page changed again is stored against
//! the same base (the parent's record names it); once it differs from its base in more than
//! a quarter of its bytes it is stored whole and becomes the base of later deltas. So a
//! restore never follows a chain: one base per delta, fetched in the same pass (two rounds).

use super::Repository;
use super::index::{Index, Location};
use super::pack::{self, BlobKind};
use super::patch;
use super::reader;
use super::snapshot::{DeltaRecord, FileEntry, IDS_PER_LIST};
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// List blobs of the parent kept decoded at once: a batch spans at most two, and two workers
/// work on neighbouring batches.
const WINDOWS_KEPT: usize = 6;

/// What the parent stored at one position.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    /// The stored blob's id (a whole chunk, or a delta when `record` is set).
    pub stored: ChunkId,
    /// Set when the stored blob is a delta: the content it stands for and its base.
    pub record: Option<DeltaRecord>,
}

impl Before {
    /// Whether the page, whose content id is `content`, is what the parent stored here.
    pub fn is_unchanged(&self, content: &ChunkId) -> bool {
        match &self.record {
            Some(r) => r.content == *content,
            None => self.stored == *content,
        }
    }

    /// The whole page a changed page here is stored against: the parent's base, or the
    /// parent's page itself when it was stored whole.
    pub fn base(&self) -> ChunkId {
        self.record.map_or(self.stored, |r| r.base)
    }
}

/// One list blob of the parent, decoded.
struct Window {
    ids: Vec<ChunkId>,
    records: Vec<DeltaRecord>,
}

/// The positional view of the file an earlier snapshot stored under the same name: loaded a
/// list blob at a time, as the pipeline reaches its positions.
pub struct Parent {
    entry: FileEntry,
    kept: Mutex<VecDeque<(usize, Arc<Window>)>>,
}

impl Parent {
    /// The view of `entry`, the parent snapshot's file. Chunk sizes must match: the caller
    /// passes only a file cut the same way.
    pub fn new(entry: FileEntry) -> Self {
        Parent {
            entry,
            kept: Mutex::default(),
        }
    }

    /// What the parent stored at `position`, or `None` past its end.
    pub fn at(&self, repo: &Repository, index: &Index, position: u64) -> Result<Option<Before>> {
        if position >= self.entry.chunks {
            return Ok(None);
        }
        let k = (position / IDS_PER_LIST as u64) as usize;
        let w = match self.window(repo, index, k) {
            Ok(w) => w,
            // The parent's list cannot be read: these pages are stored whole, as without a
            // parent; the backup itself must not fail for an earlier snapshot's damage.
            Err(e) => {
                tracing::warn!(
                    "{e}; storing the pages of {} at {position} whole instead of as deltas",
                    self.entry.name
                );
                return Ok(None);
            }
        };
        let i = (position % IDS_PER_LIST as u64) as usize;
        let Some(stored) = w.ids.get(i).copied() else {
            return Ok(None);
        };
        let record = w
            .records
            .binary_search_by_key(&position, |r| r.position)
            .ok()
            .map(|j| w.records[j]);
        Ok(Some(Before { stored, record }))
    }

    fn window(&self, repo: &Repository, index: &Index, k: usize) -> Result<Arc<Window>> {
        if let Some((_, w)) = self
            .kept
            .lock()
            .expect("lock")
            .iter()
            .find(|(j, _)| *j == k)
        {
            return Ok(w.clone());
        }
        let bad = |what: &str| Error::Internal(format!("{what} of {}", self.entry.name));
        let list = self
            .entry
            .lists
            .get(k)
            .and_then(|h| ChunkId::from_hex(h))
            .ok_or_else(|| bad("a bad list id in the parent snapshot's entry"))?;
        let records = match self.entry.deltas.get(k) {
            Some(Some(h)) => {
                Some(ChunkId::from_hex(h).ok_or_else(|| bad("a bad delta record id"))?)
            }
            _ => None,
        };
        let wanted: Vec<ChunkId> = std::iter::once(list).chain(records).collect();
        let bodies: Mutex<HashMap<ChunkId, Vec<u8>>> = Mutex::default();
        reader::fetch(repo, index, &wanted, |chunks| {
            let mut b = bodies.lock().expect("lock");
            for (id, data) in chunks {
                b.insert(*id, data.to_vec());
            }
            Ok(())
        })?;
        let bodies = bodies.into_inner().expect("lock");
        let ids = bodies
            .get(&list)
            .filter(|b| b.len() % 32 == 0)
            .ok_or_else(|| bad("a chunk list of odd length"))?
            .chunks_exact(32)
            .map(|c| ChunkId(c.try_into().expect("32 bytes")))
            .collect();
        let records = match records {
            Some(r) => bodies
                .get(&r)
                .and_then(|b| DeltaRecord::parse(b))
                .ok_or_else(|| bad("a damaged delta record blob"))?,
            None => Vec::new(),
        };
        let w = Arc::new(Window { ids, records });
        let mut kept = self.kept.lock().expect("lock");
        if kept.len() >= WINDOWS_KEPT {
            kept.pop_front();
        }
        kept.push_back((k, w.clone()));
        Ok(w)
    }
}

/// A changed page that may be stored as a delta: where it is in its batch, the id of its
/// content, and the whole page it would be stored against.
pub struct Changed {
    /// Index of the chunk in its batch.
    pub at: usize,
    /// Keyed id of the page's content.
    pub content: ChunkId,
    /// The base: the parent's whole page at this position, or the parent's own base.
    pub base: ChunkId,
}

/// What one pipeline worker keeps to read bases: the buffer of its ranged reads and the
/// segment it opened last (a batch's bases sit in one or two segments of the parent's
/// backup, and the next batch's usually start in the same one). Read in the worker itself,
/// without threads or fresh buffers per batch.
#[derive(Default)]
pub struct Bases {
    read: Vec<u8>,
    open: Option<((PackId, u32), Vec<u8>)>,
}

impl Bases {
    /// Stores the `changed` pages of a batch (`data`, cut at `ends`; its first chunk at
    /// position `first` of the file) whose bases they differ little from as deltas: sets
    /// each one's stored id in `ids`, adds its record, and returns the delta blobs to store
    /// (`claim` says whether this session stores a blob first). A page whose base cannot be
    /// read, or differs too much, keeps its content id in `ids` and is stored whole.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_batch(
        &mut self,
        repo: &Repository,
        index: &Index,
        (data, ends, first): (&[u8], &[usize], u64),
        changed: &[Changed],
        ids: &mut [ChunkId],
        records: &mut Vec<DeltaRecord>,
        claim: impl Fn(&ChunkId) -> bool,
    ) -> Vec<(ChunkId, Vec<u8>)> {
        // One sorted batch of lookups: ascending ids share the index cache's blocks.
        let mut order: Vec<usize> = (0..changed.len()).collect();
        order.sort_unstable_by_key(|&i| changed[i].base);
        let bases: Vec<ChunkId> = order.iter().map(|&i| changed[i].base).collect();
        let mut located: Vec<(usize, Location)> = order
            .into_iter()
            .zip(index.healthy_many(&bases))
            .filter_map(|(i, l)| l.map(|l| (i, l)))
            .collect();
        located.sort_unstable_by_key(|(_, l)| (l.pack, l.offset, l.inner_offset));
        let key = repo.key();
        let mut out = Vec::new();
        for (i, loc) in located {
            let c = &changed[i];
            let base = match self.base(repo, c.base, &loc) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("{e}; storing a changed page whole instead of as a delta");
                    continue;
                }
            };
            let start = if c.at == 0 { 0 } else { ends[c.at - 1] };
            let Some(blob) = patch::encode(&c.base, base, &data[start..ends[c.at]]) else {
                continue;
            };
            let id = key.delta_id(&blob);
            if claim(&id) {
                out.push((id, blob));
            }
            ids[c.at] = id;
            records.push(DeltaRecord {
                position: first + c.at as u64,
                content: c.content,
                base: c.base,
            });
        }
        out
    }

    /// The whole page `id` at `loc`, from the open segment or after opening its own.
    fn base(&mut self, repo: &Repository, id: ChunkId, loc: &Location) -> Result<&[u8]> {
        let here = (loc.pack, loc.offset);
        if self.open.as_ref().is_none_or(|(at, _)| *at != here) {
            self.open = None;
            repo.storage().get_range_into(
                &loc.pack.object_key(),
                loc.offset as u64,
                loc.len as u64,
                &mut self.read,
            )?;
            let plain = pack::decode_segment(repo.key(), loc.pack, loc.offset, &self.read)?;
            self.open = Some((here, plain));
        }
        let plain = &self.open.as_ref().expect("opened above").1;
        match pack::blob_from_segment(repo.key(), plain, id, loc)? {
            (page, BlobKind::Whole) => Ok(page),
            (_, BlobKind::Delta) => Err(Error::Internal(format!(
                "chunk {} is a page delta, not a whole page to store against",
                &id.to_hex()[..16]
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::repository::snapshot::Snapshot;
    use crate::repository::writer::tests::{memory_repo, pages, snapshot_of, store_pages_on};

    fn restored(repo: &Repository, snap: &Snapshot) -> Vec<u8> {
        let index = repo.load_index().unwrap();
        let mut out = Vec::new();
        reader::stream_file(repo, &index, snap, &snap.files[0], &mut out, &Silent).unwrap();
        out
    }

    /// Changes a few bytes of every third page (a row's header, the page LSN), `salt` apart.
    fn touched(data: &[u8], salt: u8) -> Vec<u8> {
        let mut v = data.to_vec();
        for (i, page) in v.chunks_mut(4096).enumerate() {
            if i % 3 == 0 {
                page[16..24].fill(salt);
                page[2000 + i % 50..2030 + i % 50].fill(salt.wrapping_add(1));
            }
        }
        v
    }

    #[test]
    fn changed_pages_are_stored_as_deltas_and_restore_exactly() {
        let repo = memory_repo();
        // 3000 pages: two list blobs, a short last page.
        let mut v1 = pages(3000, 1);
        v1.truncate(v1.len() - 1000);
        let (f1, full) = store_pages_on(&repo, &v1, None);
        let s1 = snapshot_of(&repo, vec![f1.clone()]);
        assert!(f1.deltas.is_empty());

        let mut v2 = touched(&v1, 7);
        // One page rewritten whole: stored whole, not as a delta.
        v2[5 * 4096..6 * 4096].copy_from_slice(&pages(1, 99));
        let (f2, stats) = store_pages_on(&repo, &v2, Some(&f1));
        assert!(
            stats.added * 10 < full.added,
            "a delta backup added {} bytes where the full one added {}",
            stats.added,
            full.added
        );
        assert_eq!(f2.deltas.len(), f2.lists.len());
        let s2 = snapshot_of(&repo, vec![f2.clone()]);
        assert_eq!(restored(&repo, &s2), v2);
        assert_eq!(restored(&repo, &s1), v1);

        // The records: every touched page (every third) is a delta of the parent's page;
        // the rewritten page 5 and the untouched ones are whole.
        let index = repo.load_index().unwrap();
        let parent = Parent::new(f2.clone());
        let first = Parent::new(f1.clone());
        let mut deltas = 0;
        for p in 0..f2.chunks {
            let b = parent.at(&repo, &index, p).unwrap().unwrap();
            let was = first.at(&repo, &index, p).unwrap().unwrap();
            match b.record {
                Some(r) => {
                    deltas += 1;
                    assert_eq!(p % 3, 0, "only touched pages are deltas");
                    assert_eq!(r.base, was.stored, "against the parent's page");
                    assert_eq!(
                        r.content,
                        repo.key().chunk_id(&v2[p as usize * 4096..][..4096])
                    );
                }
                None => assert!(p % 3 != 0 || p == 5 || b.stored == was.stored),
            }
        }
        assert_eq!(deltas, f2.chunks.div_ceil(3));

        // Every chunk the snapshot needs is indexed: lists, deltas, records and bases.
        let mut needed = std::collections::HashSet::new();
        crate::repository::usage::for_each_chunk(&repo, &index, &s2, |c| {
            needed.insert(c);
            Ok(())
        })
        .unwrap();
        assert!(needed.iter().all(|c| index.vouches_for(c)));
        for id in f1.delta_ids().unwrap() {
            assert!(!needed.contains(&id));
        }

        // Unchanged since: nothing new, the same entry.
        let (f3, stats) = store_pages_on(&repo, &v2, Some(&f2));
        assert_eq!((stats.new_chunks, f3.clone()), (0, f2.clone()));

        // Changed again: still against the first snapshot's pages (depth 1).
        let v4 = touched(&v2, 42);
        let (f4, _) = store_pages_on(&repo, &v4, Some(&f3));
        let s4 = snapshot_of(&repo, vec![f4.clone()]);
        assert_eq!(restored(&repo, &s4), v4);
        let index = repo.load_index().unwrap();
        let fourth = Parent::new(f4);
        for p in (0..f1.chunks).step_by(3) {
            let r = fourth
                .at(&repo, &index, p)
                .unwrap()
                .unwrap()
                .record
                .unwrap();
            assert_eq!(r.base, first.at(&repo, &index, p).unwrap().unwrap().stored);
        }
    }

    #[test]
    fn a_position_is_unchanged_only_when_its_content_is_what_the_parent_stored() {
        let whole = Before {
            stored: ChunkId([1; 32]),
            record: None,
        };
        assert!(whole.is_unchanged(&ChunkId([1; 32])));
        assert!(!whole.is_unchanged(&ChunkId([2; 32])));
        assert_eq!(whole.base(), ChunkId([1; 32]));
        let delta = Before {
            stored: ChunkId([5; 32]),
            record: Some(DeltaRecord {
                position: 0,
                content: ChunkId([2; 32]),
                base: ChunkId([1; 32]),
            }),
        };
        assert!(delta.is_unchanged(&ChunkId([2; 32])));
        assert!(!delta.is_unchanged(&ChunkId([5; 32])));
        assert_eq!(delta.base(), ChunkId([1; 32]));
    }
}

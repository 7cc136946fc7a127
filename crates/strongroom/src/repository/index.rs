//! The chunk index: which pack holds a chunk, and where in it.
//!
//! Owns the in-memory lookup table and the binary encoding of `index/` objects. Each backup
//! writes one index object for the packs it added, after the packs are durable and before its
//! manifest (docs/ARCHITECTURE.md, "Invariants": the manifest is the commit point). Must not read or write storage itself.
//!
//! Encoding (inside the envelope): `SRIX` magic, version byte, pack count (u32 LE), the pack
//! ids (32 bytes each), entry count (u32 LE), then per entry: chunk id (32), pack number (u32),
//! segment offset and sealed length, offset and length inside the segment (u32 each): 52 bytes
//! per chunk. Kept in memory as one hash map; the
//! sharded on-disk index is room kept (docs/ARCHITECTURE.md, "Room kept") for repositories of many terabytes.

use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use std::collections::{HashMap, HashSet};

/// Where a chunk lives: its segment in a pack, and its place inside the opened segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The pack holding it.
    pub pack: PackId,
    /// Byte offset of the sealed segment in the pack.
    pub offset: u32,
    /// Length of the sealed segment.
    pub len: u32,
    /// Offset of the chunk in the segment's plaintext.
    pub inner_offset: u32,
    /// Length of the chunk.
    pub inner_len: u32,
}

/// One index entry as written by a backup.
pub type Entry = (ChunkId, Location);

/// Every chunk the repository knows, loaded from all `index/` objects.
///
/// A chunk may be listed more than once (stored again after its first pack was lost): the
/// index keeps one location, preferring a pack in good health, so reads go to the copy that
/// exists. Pack health is what the repository knows when the index is loaded: the packs
/// present, and those recorded damaged.
#[derive(Default)]
pub struct Index {
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    chunks: HashMap<ChunkId, (u32, [u32; 4])>,
    /// The packs that exist, when known; a pack not among them is missing.
    present: Option<HashSet<PackId>>,
    /// Packs recorded damaged.
    damaged: HashSet<PackId>,
    /// Packs a prune's deletion mark will delete (`repository::deletion`).
    doomed: HashSet<PackId>,
    /// Index objects that could not be read, with why.
    unreadable: Vec<(String, String)>,
}

impl Index {
    /// Whether a chunk is stored.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    /// Where a chunk is stored.
    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        self.chunks.get(id).map(|&(p, n)| self.location(p, n))
    }

    fn location(&self, p: u32, [offset, len, inner_offset, inner_len]: [u32; 4]) -> Location {
        Location {
            pack: self.packs[p as usize],
            offset,
            len,
            inner_offset,
            inner_len,
        }
    }

    /// Sets what is known of pack health (call before adding entries): the packs present,
    /// and the packs recorded damaged.
    pub fn set_pack_health(&mut self, present: HashSet<PackId>, damaged: HashSet<PackId>) {
        self.present = Some(present);
        self.damaged = damaged;
    }

    /// Sets the packs a prune is about to delete: like damaged ones, nothing may build on
    /// them, and reads prefer any other copy.
    pub fn set_doomed(&mut self, doomed: HashSet<PackId>) {
        self.doomed = doomed;
    }

    /// Whether a pack is known missing or damaged, or about to be deleted.
    pub fn is_bad(&self, pack: &PackId) -> bool {
        self.damaged.contains(pack)
            || self.doomed.contains(pack)
            || self.present.as_ref().is_some_and(|p| !p.contains(pack))
    }

    /// Whether a prune's mark will delete this pack.
    pub fn is_doomed(&self, pack: &PackId) -> bool {
        self.doomed.contains(pack)
    }

    /// The packs the loaded index objects name, each once.
    pub fn packs(&self) -> &[PackId] {
        &self.packs
    }

    /// Whether the index can vouch for a chunk: it is listed in a pack in good health. A
    /// backup stores again every chunk the index cannot vouch for.
    pub fn vouches_for(&self, id: &ChunkId) -> bool {
        self.chunks
            .get(id)
            .is_some_and(|(p, _)| !self.is_bad(&self.packs[*p as usize]))
    }

    /// Notes an index object that could not be read.
    pub fn add_unreadable(&mut self, object: String, why: String) {
        self.unreadable.push((object, why));
    }

    /// Index objects that could not be read, with why: chunks only they listed are unknown.
    pub fn unreadable(&self) -> &[(String, String)] {
        &self.unreadable
    }

    /// Number of chunks known.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether no chunk is known.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.chunks
            .iter()
            .map(|(id, &(p, n))| (*id, self.location(p, n)))
    }

    /// Adds one entry. A later duplicate of a chunk keeps the first location, unless that
    /// one is in a missing or damaged pack and the new one is not.
    pub fn insert(&mut self, id: ChunkId, loc: Location) {
        let next = self.packs.len() as u32;
        let p = *self.pack_numbers.entry(loc.pack).or_insert_with(|| {
            self.packs.push(loc.pack);
            next
        });
        let value = (p, [loc.offset, loc.len, loc.inner_offset, loc.inner_len]);
        match self.chunks.get(&id) {
            None => {
                self.chunks.insert(id, value);
            }
            Some(&(old, _)) => {
                let old_bad = self.is_bad(&self.packs[old as usize]);
                if old_bad && !self.is_bad(&loc.pack) {
                    self.chunks.insert(id, value);
                }
            }
        }
    }

    /// Adds every entry of a decoded index object.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for (id, loc) in entries {
            self.insert(id, loc);
        }
    }
}

const MAGIC: &[u8; 4] = b"SRIX";

/// Encodes entries as an index object body.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut packs: Vec<PackId> = entries.iter().map(|(_, l)| l.pack).collect();
    packs.sort();
    packs.dedup();
    let numbers: HashMap<PackId, u32> = packs
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i as u32))
        .collect();
    let mut out = Vec::with_capacity(13 + packs.len() * 32 + entries.len() * 52);
    out.extend_from_slice(MAGIC);
    out.push(1);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in &packs {
        out.extend_from_slice(&p.0);
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (id, loc) in entries {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&numbers[&loc.pack].to_le_bytes());
        for n in [loc.offset, loc.len, loc.inner_offset, loc.inner_len] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out
}

/// Decodes an index object body; `object` names it in errors.
pub fn decode(object: &str, body: &[u8]) -> Result<Vec<Entry>> {
    let bad = |what: &str| Error::corrupt(object, format!("malformed index: {what}"));
    let mut r = Reader { buf: body, pos: 0 };
    if r.take(4).ok_or_else(|| bad("too short"))? != MAGIC {
        return Err(bad("bad magic"));
    }
    let version = r.take(1).ok_or_else(|| bad("too short"))?[0];
    if version != 1 {
        return Err(bad(&format!("unknown index version {version}")));
    }
    let n_packs = r.u32().ok_or_else(|| bad("too short"))? as usize;
    let mut packs = Vec::with_capacity(n_packs.min(1 << 20));
    for _ in 0..n_packs {
        packs.push(PackId(r.id().ok_or_else(|| bad("truncated pack table"))?));
    }
    let n = r.u32().ok_or_else(|| bad("too short"))? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let id = ChunkId(r.id().ok_or_else(|| bad("truncated entry"))?);
        let p = r.u32().ok_or_else(|| bad("truncated entry"))? as usize;
        let mut n = [0u32; 4];
        for v in n.iter_mut() {
            *v = r.u32().ok_or_else(|| bad("truncated entry"))?;
        }
        let [offset, len, inner_offset, inner_len] = n;
        let pack = *packs
            .get(p)
            .ok_or_else(|| bad("pack number out of range"))?;
        out.push((
            id,
            Location {
                pack,
                offset,
                len,
                inner_offset,
                inner_len,
            },
        ));
    }
    if r.pos != body.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// A tiny cursor over a byte slice.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn id(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_round_trip(raw in proptest::collection::vec((any::<[u8; 32]>(), 0u8..4, any::<u32>(), any::<u32>()), 0..200)) {
            let entries: Vec<Entry> = raw.iter().map(|(id, p, o, l)| (ChunkId(*id), Location { pack: PackId([*p; 32]), offset: *o, len: *l, inner_offset: *l / 3, inner_len: *o / 5 })).collect();
            let body = encode(&entries);
            prop_assert_eq!(decode("index/x", &body).unwrap(), entries);
            if !body.is_empty() {
                prop_assert!(decode("index/x", &body[..body.len() - 1]).is_err());
            }
        }
    }

    #[test]
    fn index_keeps_first_location() {
        let mut ix = Index::default();
        let a = Location {
            pack: PackId([1; 32]),
            offset: 0,
            len: 10,
            inner_offset: 0,
            inner_len: 4096,
        };
        let b = Location {
            pack: PackId([2; 32]),
            offset: 5,
            len: 10,
            inner_offset: 4096,
            inner_len: 4096,
        };
        ix.insert(ChunkId([9; 32]), a);
        ix.insert(ChunkId([9; 32]), b);
        assert_eq!(ix.get(&ChunkId([9; 32])), Some(a));
        assert_eq!(ix.len(), 1);
        assert_eq!(PackId::from_object_key(&a.pack.object_key()), Some(a.pack));
        assert!(ix.vouches_for(&ChunkId([9; 32])), "health unknown: trusted");

        // Pack 1 is missing: its chunks are not vouched for, and a copy elsewhere wins.
        let mut ix = Index::default();
        ix.set_pack_health([b.pack].into(), HashSet::new());
        ix.insert(ChunkId([9; 32]), a);
        assert!(!ix.vouches_for(&ChunkId([9; 32])));
        ix.insert(ChunkId([9; 32]), b);
        assert_eq!(ix.get(&ChunkId([9; 32])), Some(b));
        assert!(ix.vouches_for(&ChunkId([9; 32])));
        // A pack recorded damaged is not vouched for either, though present.
        let mut ix = Index::default();
        ix.set_pack_health([a.pack, b.pack].into(), [b.pack].into());
        ix.insert(ChunkId([7; 32]), b);
        assert!(!ix.vouches_for(&ChunkId([7; 32])));
        assert!(!ix.vouches_for(&ChunkId([8; 32])), "unknown chunk");
    }
}

//! The chunk index: which pack holds a chunk, and where in it.
//!
//! Owns the lookup ([`Index`], over the local cache of `repository::cache`) and the binary
//! encoding of `index/` objects. Each backup writes index objects for the packs it added,
//! after the packs are durable and before its manifest (docs/ARCHITECTURE.md, "Invariants":
//! the manifest is the commit point). Must not read or write storage itself.
//!
//! Encoding (inside the envelope): `SRIX` magic, version byte, pack count (u32 LE), the pack
//! ids (32 bytes each), entry count (u32 LE), then per entry: chunk id (32), pack number (u32),
//! segment offset and sealed length, offset and length inside the segment (u32 each): 52 bytes
//! per chunk. The same 52 bytes (pack numbered in the cache's own pack table) are a record of
//! the local cache, which keeps memory independent of the repository's size.

use super::table::Table;
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

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
    /// Whether an append-only key recorded this location (its index object is sealed to the
    /// recipient, `0x02`). A full key's backup never builds on such a location alone: a
    /// stolen host could have written junk under a chunk's id, which reads would catch (a
    /// chunk is checked against its keyed id) but too late for the snapshot that relied on
    /// it. Not part of the entry's encoding: the envelope says it, and
    /// [`Repository::write_index`](super::Repository::write_index) seals by it.
    pub from_host: bool,
}

/// One index entry as written by a backup.
pub type Entry = (ChunkId, Location);

/// A location as stored in the local table: pack number (its top bit set when the location
/// is [`Location::from_host`]), then the four numbers.
pub(crate) type Value = [u8; 20];

/// The pack-table slot of a pack a prune deleted while its records stayed in the cache's
/// runs (`Repository::cache_after_prune` drops them at the next rewrite): every reader here
/// skips them. No pack is named by a BLAKE3 hash of all zeros.
pub(crate) const DROPPED_PACK: PackId = PackId([0; 32]);

/// The top bit of a table record's pack number: the location is [`Location::from_host`].
const FROM_HOST: u32 = 1 << 31;

pub(crate) fn value_of(pack: u32, loc: &Location) -> Value {
    let mut v = [0u8; 20];
    let pack = if loc.from_host {
        pack | FROM_HOST
    } else {
        pack
    };
    for (i, n) in [pack, loc.offset, loc.len, loc.inner_offset, loc.inner_len]
        .into_iter()
        .enumerate()
    {
        v[i * 4..i * 4 + 4].copy_from_slice(&n.to_le_bytes());
    }
    v
}

/// The pack number of a table record, without its flag.
pub(crate) fn pack_number(v: &Value) -> u32 {
    u32::from_le_bytes(v[..4].try_into().expect("4 bytes")) & !FROM_HOST
}

/// A table record with its pack number replaced by `pack` (its flag kept).
pub(crate) fn renumbered(v: &Value, pack: u32) -> Value {
    let flag = u32::from_le_bytes(v[..4].try_into().expect("4 bytes")) & FROM_HOST;
    let mut out = *v;
    out[..4].copy_from_slice(&(pack | flag).to_le_bytes());
    out
}

/// A table record's numbers (pack number without its flag) and its [`Location::from_host`].
fn numbers_of(v: &Value) -> ([u32; 5], bool) {
    let mut n = [0u32; 5];
    for (i, x) in n.iter_mut().enumerate() {
        *x = u32::from_le_bytes(v[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    }
    let from_host = n[0] & FROM_HOST != 0;
    n[0] &= !FROM_HOST;
    (n, from_host)
}

/// Every chunk the repository knows: a lookup over the local index cache
/// (`repository::cache`: sorted runs on disk, see `repository::table`) plus the chunks this
/// session stored, with what is known of pack health.
///
/// A chunk may be listed more than once (stored again after its first pack was lost, or
/// copied by a repack): lookups prefer a pack in good health, so reads go to the copy that
/// exists and backups never build on one that is gone. Memory: the pack table (32 bytes and
/// a health flag per pack) and the table's fences (8 bytes per 128 chunks); the chunks
/// themselves stay on disk.
pub struct Index {
    /// The synced cache (read-only here).
    shared: Option<Table<20>>,
    /// Pack numbers to ids and health; numbers past the cache's are this session's.
    inner: RwLock<Inner>,
    /// Index objects that could not be read, with why.
    unreadable: Vec<(String, String)>,
    /// Number of chunk records in the cache (duplicates counted).
    records: u64,
    /// Where this session's own entries go (created on first use).
    scratch: Option<std::path::PathBuf>,
    /// A temporary cache directory this index lives in, removed with it.
    temporary: Option<tempfile::TempDir>,
}

struct Inner {
    packs: Vec<PackId>,
    bad: Vec<bool>,
    doomed: HashSet<PackId>,
    numbers: HashMap<PackId, u32>,
    session: Option<Table<20>>,
    session_dir: Option<tempfile::TempDir>,
    /// A fixed-size Bloom filter of the session's chunks: most lookups during a backup are
    /// of new chunks, and without it each would read a block of every session run.
    session_bloom: Vec<u64>,
}

/// Bits of the session's Bloom filter: 64 Mi bits (8 MB), 4 probes: about 1% false
/// positives up to 13 M chunks (50 GB of new 4 KiB pages); beyond that it lets more lookups
/// through to the disk, never fewer.
const BLOOM_BITS: u64 = 64 << 20;

fn bloom_probes(id: &ChunkId) -> [u64; 4] {
    // Chunk ids are keyed hashes: their own bytes are independent hash values.
    std::array::from_fn(|i| {
        u64::from_le_bytes(id.0[i * 8..i * 8 + 8].try_into().expect("8 bytes")) % BLOOM_BITS
    })
}

impl Default for Index {
    fn default() -> Self {
        Index::new(None, Vec::new(), 0, Vec::new(), None)
    }
}

impl Index {
    /// An index over a synced cache table whose pack numbers name `packs`.
    pub(crate) fn new(
        shared: Option<Table<20>>,
        packs: Vec<PackId>,
        records: u64,
        unreadable: Vec<(String, String)>,
        scratch: Option<std::path::PathBuf>,
    ) -> Self {
        let numbers = packs
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
            .collect();
        let bad = vec![false; packs.len()];
        Index {
            shared,
            inner: RwLock::new(Inner {
                packs,
                bad,
                doomed: HashSet::new(),
                numbers,
                session: None,
                session_dir: None,
                session_bloom: Vec::new(),
            }),
            unreadable,
            records,
            scratch,
            temporary: None,
        }
    }

    /// Keeps a temporary cache directory until this index is dropped.
    pub(crate) fn keep_alive(&mut self, dir: Option<tempfile::TempDir>) {
        self.temporary = dir;
    }

    /// Sets what is known of pack health: the packs present (every other pack is missing),
    /// the packs recorded damaged, and the packs a prune's deletion mark will delete (like
    /// damaged ones, nothing may build on them, and reads prefer any other copy).
    pub fn set_pack_health(
        &mut self,
        present: &HashSet<PackId>,
        damaged: &HashSet<PackId>,
        doomed: HashSet<PackId>,
    ) {
        let inner = self.inner.get_mut().expect("index lock");
        inner.bad = inner
            .packs
            .iter()
            .map(|p| !present.contains(p) || damaged.contains(p) || doomed.contains(p))
            .collect();
        inner.doomed = doomed;
    }

    /// Whether a pack is known missing or damaged, or about to be deleted.
    pub fn is_bad(&self, pack: &PackId) -> bool {
        let inner = self.inner.read().expect("index lock");
        inner
            .numbers
            .get(pack)
            .is_some_and(|&n| inner.bad[n as usize])
            || inner.doomed.contains(pack)
    }

    /// Whether a prune's mark will delete this pack.
    pub fn is_doomed(&self, pack: &PackId) -> bool {
        self.inner.read().expect("index lock").doomed.contains(pack)
    }

    /// The packs the index names, each once.
    pub fn packs(&self) -> Vec<PackId> {
        let inner = self.inner.read().expect("index lock");
        let mut packs = inner.packs.clone();
        packs.retain(|p| *p != DROPPED_PACK);
        packs
    }

    /// Every stored location of a chunk with whether its pack is bad: healthy ones first,
    /// and among those a full key's before an append-only key's.
    fn locations(&self, id: &ChunkId) -> Vec<(Location, bool)> {
        self.locations_many(std::slice::from_ref(id))
            .pop()
            .unwrap_or_default()
    }

    /// [`Index::locations`] of many chunks at once. Ids in ascending order share the reads of
    /// the cache's blocks (`Table::get_many`): a restore's step of thousands of pages costs
    /// a read per block it touches, not one per page and run.
    fn locations_many(&self, ids: &[ChunkId]) -> Vec<Vec<(Location, bool)>> {
        let inner = self.inner.read().expect("index lock");
        let keys: Vec<[u8; 32]> = ids.iter().map(|id| id.0).collect();
        let mut values: Vec<Vec<Value>> = vec![Vec::new(); ids.len()];
        let unreadable = |table: &Table<20>, e: std::io::Error| {
            tracing::error!(
                "the local index cache at {} cannot be read ({e}); remove that directory and run again",
                table.dir().display()
            )
        };
        if let Some(table) = &self.shared {
            match table.get_many(&keys) {
                Ok(found) => {
                    for (v, f) in values.iter_mut().zip(found) {
                        v.extend(f);
                    }
                }
                Err(e) => unreadable(table, e),
            }
        }
        if let Some(session) = &inner.session {
            // Only the ids the session's Bloom filter may hold are looked up there.
            let maybe: Vec<usize> = (0..ids.len())
                .filter(|&i| {
                    !inner.session_bloom.is_empty()
                        && bloom_probes(&ids[i])
                            .iter()
                            .all(|b| inner.session_bloom[(b / 64) as usize] & (1 << (b % 64)) != 0)
                })
                .collect();
            if !maybe.is_empty() {
                let ks: Vec<[u8; 32]> = maybe.iter().map(|&i| keys[i]).collect();
                match session.get_many(&ks) {
                    Ok(found) => {
                        for (&i, f) in maybe.iter().zip(found) {
                            values[i].extend(f);
                        }
                    }
                    Err(e) => unreadable(session, e),
                }
            }
        }
        values
            .iter()
            .map(|vals| {
                let mut out: Vec<(Location, bool)> = vals
                    .iter()
                    .filter_map(|v| {
                        let ([p, offset, len, inner_offset, inner_len], from_host) = numbers_of(v);
                        let pack = *inner.packs.get(p as usize)?;
                        if pack == DROPPED_PACK {
                            return None;
                        }
                        Some((
                            Location {
                                pack,
                                offset,
                                len,
                                inner_offset,
                                inner_len,
                                from_host,
                            },
                            inner.bad[p as usize],
                        ))
                    })
                    .collect();
                out.sort_by_key(|(l, bad)| (*bad, l.from_host));
                out
            })
            .collect()
    }

    /// [`Index::get`] of many chunks, in the order given; ids in ascending order are looked
    /// up fastest (see [`Index::locations_many`]).
    pub fn get_many(&self, ids: &[ChunkId]) -> Vec<Option<Location>> {
        self.locations_many(ids)
            .into_iter()
            .map(|l| l.first().map(|(l, _)| *l))
            .collect()
    }

    /// Every location of a chunk in a pack in good health but `except`: where a read turns
    /// when the chunk at `except` does not match its id.
    pub fn alternatives(&self, id: &ChunkId, except: &Location) -> Vec<Location> {
        self.locations(id)
            .into_iter()
            .filter(|(l, bad)| !bad && l != except)
            .map(|(l, _)| l)
            .collect()
    }

    /// Whether a chunk is stored.
    pub fn contains(&self, id: &ChunkId) -> bool {
        !self.locations(id).is_empty()
    }

    /// Where a chunk is stored, in a pack in good health when there is one.
    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        self.locations(id).first().map(|(l, _)| *l)
    }

    /// Where a chunk is stored when the index vouches for it ([`Index::vouches_for`]): one
    /// lookup for both.
    pub fn healthy(&self, id: &ChunkId) -> Option<Location> {
        vouched(&self.locations(id))
    }

    /// [`Index::healthy`] of many chunks, in the order given; ids in ascending order are
    /// looked up fastest (see [`Index::locations_many`]).
    pub fn healthy_many(&self, ids: &[ChunkId]) -> Vec<Option<Location>> {
        self.locations_many(ids)
            .iter()
            .map(|l| vouched(l))
            .collect()
    }

    /// Whether the index can vouch for a chunk: it is listed in a pack in good health, by
    /// a full key (an append-only key's index is its own catalog, whose locations are its
    /// own). A backup stores again every chunk the index cannot vouch for.
    pub fn vouches_for(&self, id: &ChunkId) -> bool {
        self.healthy(id).is_some()
    }

    /// Index objects that could not be read, with why: chunks only they listed are unknown.
    pub fn unreadable(&self) -> &[(String, String)] {
        &self.unreadable
    }

    /// Number of chunk records known (a chunk stored twice counts twice; after a prune,
    /// until the cache is next rewritten, also those of the packs it deleted).
    pub fn len(&self) -> usize {
        self.records as usize
    }

    /// Whether no chunk is known.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Calls `each` with every chunk and its location (a healthy one when there is one, a
    /// full key's before an append-only key's), in chunk-id order, streaming from disk.
    pub fn for_each(&self, mut each: impl FnMut(ChunkId, Location)) -> Result<()> {
        self.for_each_group(|id, group| each(id, group[0].0))
    }

    /// Like [`Index::for_each`], and also every other healthy location of a chunk when its
    /// first is an append-only key's: what a prune must keep. A stolen host can list junk
    /// under a chunk's id beside the honest copy; which is which shows only when read (reads
    /// turn to the other, `reader`), so neither may go.
    pub fn for_each_guarded(&self, mut each: impl FnMut(ChunkId, Location)) -> Result<()> {
        self.for_each_group(|id, group| {
            each(id, group[0].0);
            if group[0].0.from_host {
                for (l, bad) in &group[1..] {
                    if !bad && l.pack != group[0].0.pack {
                        each(id, *l);
                    }
                }
            }
        })
    }

    /// Calls `each` with every chunk and all its locations with whether their pack is bad,
    /// the preferred first (healthy before bad, a full key's before a host's).
    fn for_each_group(&self, mut each: impl FnMut(ChunkId, &[(Location, bool)])) -> Result<()> {
        let Some(table) = &self.shared else {
            return Ok(());
        };
        let inner = self.inner.read().expect("index lock");
        let cache_err =
            |e: std::io::Error| Error::io("reading the local index cache", table.dir(), e);
        let mut current: Option<ChunkId> = None;
        let mut group: Vec<(Location, bool)> = Vec::new();
        let mut flush = |id: ChunkId, group: &mut Vec<(Location, bool)>| {
            group.sort_by_key(|(l, bad)| (*bad, l.from_host));
            each(id, group);
            group.clear();
        };
        for r in table.iter_merged().map_err(cache_err)? {
            let (key, v) = r.map_err(cache_err)?;
            let ([p, offset, len, inner_offset, inner_len], from_host) = numbers_of(&v);
            let Some(&pack) = inner.packs.get(p as usize).filter(|p| **p != DROPPED_PACK) else {
                continue;
            };
            let bad = inner.bad[p as usize];
            let loc = Location {
                pack,
                offset,
                len,
                inner_offset,
                inner_len,
                from_host,
            };
            let id = ChunkId(key);
            if current != Some(id) {
                if let Some(c) = current.take() {
                    flush(c, &mut group);
                }
                current = Some(id);
            }
            group.push((loc, bad));
        }
        if let Some(c) = current {
            flush(c, &mut group);
        }
        Ok(())
    }

    /// Every entry (one per chunk, as [`Index::for_each`] gives them), gathered in memory:
    /// for tests and small repositories.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        self.for_each(|c, l| out.push((c, l)))
            .expect("the local index cache reads");
        out
    }

    /// Adds entries this session stored (their packs are durable and an index object names
    /// them), so lookups find them without keeping them in memory.
    pub fn remember(&self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner.write().expect("index lock");
        let mut records = Vec::with_capacity(entries.len());
        if inner.session_bloom.is_empty() {
            inner.session_bloom = vec![0u64; (BLOOM_BITS / 64) as usize];
        }
        for (id, _) in entries {
            for b in bloom_probes(id) {
                inner.session_bloom[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        for (id, loc) in entries {
            let next = inner.packs.len() as u32;
            let n = match inner.numbers.get(&loc.pack) {
                Some(&n) => n,
                None => {
                    inner.numbers.insert(loc.pack, next);
                    inner.packs.push(loc.pack);
                    inner.bad.push(false);
                    next
                }
            };
            records.push((id.0, value_of(n, loc)));
        }
        if inner.session.is_none() {
            let dir = match &self.scratch {
                Some(d) => tempfile::Builder::new().prefix("session-").tempdir_in(d),
                None => tempfile::tempdir(),
            }
            .map_err(|e| Error::io("creating the session index", std::env::temp_dir(), e))?;
            let table = Table::open(dir.path())
                .map_err(|e| Error::io("creating the session index", dir.path(), e))?;
            inner.session = Some(table);
            inner.session_dir = Some(dir);
        }
        let table = inner.session.as_mut().expect("created above");
        table
            .add_run(records)
            .map_err(|e| Error::io("writing the session index", table.dir(), e))
    }
}

const MAGIC: &[u8; 4] = b"SRIX";

/// The rule of [`Index::vouches_for`] over a chunk's locations (best first): the first one,
/// when it is in a pack in good health and was not listed by an append-only key.
fn vouched(locations: &[(Location, bool)]) -> Option<Location> {
    locations
        .first()
        .filter(|(l, bad)| !bad && !l.from_host)
        .map(|(l, _)| *l)
}

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

/// An index object's body as stored inside its envelope: the encoding, zstd-compressed
/// (the same for `index/` objects and an append-only key's catalog entries).
pub fn encode_compressed(entries: &[Entry]) -> Vec<u8> {
    zstd::bulk::compress(&encode(entries), 3).expect("in-memory compression cannot fail")
}

/// Reads a body [`encode_compressed`] made; `object` names it in errors.
pub fn decode_compressed(object: &str, body: &[u8]) -> Result<Vec<Entry>> {
    let body = zstd::decode_all(body)
        .map_err(|e| Error::corrupt(object, format!("decompression failed: {e}")))?;
    decode(object, &body)
}

/// Decodes an index object body; `object` names it in errors. Every location comes back
/// [`Location::from_host`] `false`: the caller knows the envelope.
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
                from_host: false,
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
            let entries: Vec<Entry> = raw.iter().map(|(id, p, o, l)| (ChunkId(*id), Location { pack: PackId([*p; 32]), offset: *o, len: *l, inner_offset: *l / 3, inner_len: *o / 5, from_host: false })).collect();
            let body = encode(&entries);
            prop_assert_eq!(decode("index/x", &body).unwrap(), entries);
            if !body.is_empty() {
                prop_assert!(decode("index/x", &body[..body.len() - 1]).is_err());
            }
        }
    }
}

//! Prune's repack: which partly needed packs are worth copying out of, and the copy.
//!
//! Owns choosing the packs to repack and copying their needed chunks into new packs. Must
//! not delete anything (the two-phase delete in `jobs::prune` does) nor decide what is
//! needed (the plan does, from the snapshots).
//!
//! Why a budget, and in this order. Chunks are single pages, so a pack a backup wrote on a
//! forgotten day usually still holds a few pages no later day changed: after forgetting 158
//! of 200 daily snapshots (`bench/prune.sh`) no pack was wholly unused, and 1.4 GB of packs
//! held less than 5% needed data each. Copying one page out costs opening its segment
//! (~200 KB sealed, ~1 MiB of pages), so what a repack costs is the segments that hold a
//! needed chunk, not the bytes copied. Packs are taken in the order of bytes freed per byte
//! of segment read (in effect, mostly unused first), while what they read stays within the
//! prune's budget (`[prune] max_repack`); the rest are left for the next prune, which sees
//! them again, with whatever more has become unused by then. Only the segments holding a
//! needed chunk are read (neighbours closer than [`MAX_GAP`] in one ranged read), each
//! authenticated whole but decompressed only as far as its last needed chunk.
//!
//! Memory: the needed chunks of the packs considered, at most [`REPACK_MAX_CHUNKS`] (~90
//! bytes each, twice: the locations read and the entries written), one pack being built
//! (16 MiB), and per reader one ranged read and the segments it opens.

use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::{Entry, Index, Location};
use crate::repository::pack::{self, PACK_TARGET, PackBuilder};
use crate::repository::usage::{SortedIds, walk_index};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// How much of the old packs' segments one prune's repack may read (`[prune] max_repack`,
/// `--max-repack`): a size, or a share of the repository's pack bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RepackBudget {
    /// At most this many bytes (`"0"` never repacks).
    Bytes(u64),
    /// At most this share (0 to 1) of the bytes of the repository's packs, and never less
    /// than [`MIN_SHARE_BUDGET`].
    Share(f64),
}

/// The least a share budget reads: what frees most per byte read is worth reading in a
/// small repository too (64 MiB is about 0.3 s of CPU on these machines).
pub const MIN_SHARE_BUDGET: u64 = 64 << 20;

impl Default for RepackBudget {
    /// 5% of the repository a prune, as restic tolerates 5% unused (`--max-unused`): a
    /// prune stays a small fraction of a backup's work whatever the repository's size, and
    /// the packs that free most per byte read go first, so a daily prune keeps ahead of
    /// what a day leaves unused; a backlog (the first prune of a long history) goes over
    /// several prunes.
    fn default() -> Self {
        RepackBudget::Share(0.05)
    }
}

impl RepackBudget {
    /// Parses `"5%"` (a share of the repository) or a size (`"1GiB"`, `"0"`).
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        match t.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(RepackBudget::Share(p / 100.0)),
                _ => Err(format!(
                    "{s:?} is not a share of the repository: give a percentage from 0% to 100% (e.g. \"5%\") or a size (e.g. \"1GiB\")"
                )),
            },
            None => crate::parse_size(t).map(RepackBudget::Bytes),
        }
    }

    /// The bytes it allows in a repository whose packs hold `pack_bytes`.
    pub fn bytes(self, pack_bytes: u64) -> u64 {
        match self {
            RepackBudget::Bytes(b) => b,
            RepackBudget::Share(share) => {
                ((pack_bytes as f64 * share) as u64).max(MIN_SHARE_BUDGET)
            }
        }
    }
}

/// At most this many needed chunks are considered for one prune's repack (their locations
/// are held in memory, ~23 MB); packs beyond it wait for the next prune.
pub(super) const REPACK_MAX_CHUNKS: u64 = 256 * 1024;

/// Segments of one pack closer than this are read with one ranged read.
const MAX_GAP: u64 = 256 * 1024;

/// Hashes a pack or chunk id by its first eight bytes: ids are hashes already, so SipHash
/// over all 32 bytes (the default) only costs time, and plan walks every index record.
#[derive(Default)]
pub(super) struct FirstBytes(u64);

impl Hasher for FirstBytes {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }
    fn write_usize(&mut self, _: usize) {
        // The length prefix of the id's bytes: the same for every id.
    }
}

/// A map keyed by pack id, hashed by [`FirstBytes`].
pub(super) type PackMap<V> = HashMap<PackId, V, BuildHasherDefault<FirstBytes>>;

/// A pack that may be repacked.
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    /// The pack.
    pub pack: PackId,
    /// Its size in the repository.
    pub size: u64,
    /// Bytes of all its chunks, and of the needed ones (as stored, before compression).
    pub total: u64,
    /// Bytes of its needed chunks.
    pub live: u64,
    /// How many needed chunks it holds.
    pub live_chunks: u64,
    /// Bytes a repack reads of it: the sealed segments that hold a needed chunk.
    pub read: u64,
}

impl Candidate {
    /// Bytes of the pack no snapshot needs (its size in proportion to unneeded chunk bytes).
    pub fn unused(&self) -> u64 {
        self.size - (self.size as u128 * self.live as u128 / self.total.max(1) as u128) as u64
    }
}

/// What [`choose`] decided.
pub(super) struct Chosen {
    /// Packs to repack, in pack id order.
    pub packs: Vec<PackId>,
    /// Their needed chunks and where they are.
    pub live_in: PackMap<Vec<(ChunkId, Location)>>,
    /// Bytes the repack reads.
    pub read: u64,
    /// Unused bytes left in candidates not chosen.
    pub unused_left: u64,
}

/// Chooses, among `candidates`, the packs one prune repacks: the mostly unused first up to
/// [`REPACK_MAX_CHUNKS`] needed chunks, whose locations are then gathered (one more walk of
/// the index beside `needed`); of those, the most bytes freed per byte read first, within
/// `budget` bytes read (see [`pick`]).
pub(super) fn choose(
    index: &Index,
    needed: &SortedIds,
    mut candidates: Vec<Candidate>,
    budget: u64,
) -> Result<Chosen> {
    candidates.sort_by(|a, b| {
        (a.live as u128 * b.total as u128)
            .cmp(&(b.live as u128 * a.total as u128))
            .then(a.pack.cmp(&b.pack))
    });
    let mut unused_left = 0;
    let mut chunks = 0u64;
    let mut considered = Vec::new();
    for c in candidates {
        if budget > 0 && chunks + c.live_chunks <= REPACK_MAX_CHUNKS {
            chunks += c.live_chunks;
            considered.push(c);
        } else {
            unused_left += c.unused();
        }
    }
    let mut live_in: PackMap<Vec<(ChunkId, Location)>> = PackMap::default();
    if considered.is_empty() {
        return Ok(Chosen {
            packs: Vec::new(),
            live_in,
            read: 0,
            unused_left,
        });
    }
    for c in &considered {
        live_in.insert(c.pack, Vec::new());
    }
    walk_index(index, needed, 0, |id, loc, is_needed| {
        if is_needed && let Some(v) = live_in.get_mut(&loc.pack) {
            v.push((id, loc));
        }
    })?;
    for c in &mut considered {
        let segments: HashSet<(u32, u32)> = live_in[&c.pack]
            .iter()
            .map(|(_, l)| (l.offset, l.len))
            .collect();
        c.read = segments.iter().map(|(_, len)| *len as u64).sum();
    }
    let (packs, left) = pick(considered, budget);
    let picked: HashSet<PackId> = packs.iter().copied().collect();
    live_in.retain(|p, _| picked.contains(p));
    let read = packs
        .iter()
        .map(|p| segment_bytes(&live_in[p]))
        .sum::<u64>();
    Ok(Chosen {
        packs,
        live_in,
        read,
        unused_left: unused_left + left,
    })
}

fn segment_bytes(live: &[(ChunkId, Location)]) -> u64 {
    let segments: HashSet<(u32, u32)> = live.iter().map(|(_, l)| (l.offset, l.len)).collect();
    segments.iter().map(|(_, len)| *len as u64).sum()
}

/// Takes candidates in the order of unused bytes freed per byte read (ties: the smaller
/// read, then pack id), each while the reads so far and its own stay within `budget`; a
/// candidate that does not fit is passed over for smaller ones after it. Returns the packs
/// taken, in pack id order, and the unused bytes left in the others. Pure: tested alone.
pub(super) fn pick(mut candidates: Vec<Candidate>, budget: u64) -> (Vec<PackId>, u64) {
    candidates.sort_by(|a, b| {
        (b.unused() as u128 * a.read.max(1) as u128)
            .cmp(&(a.unused() as u128 * b.read.max(1) as u128))
            .then(a.read.cmp(&b.read))
            .then(a.pack.cmp(&b.pack))
    });
    let mut read = 0u64;
    let mut taken = Vec::new();
    let mut left = 0u64;
    for c in candidates {
        if read.saturating_add(c.read) <= budget {
            read += c.read;
            taken.push(c.pack);
        } else {
            left += c.unused();
        }
    }
    taken.sort();
    (taken, left)
}

/// What [`repack`] did.
pub(super) struct Repacked {
    /// Packs whose needed chunks are all copied: to be deleted.
    pub emptied: Vec<PackId>,
    /// Bytes of new packs and index objects written.
    pub bytes: u64,
    /// The index objects written for the new packs, and their entries.
    pub index_objects: Vec<String>,
    /// The entries of the new packs.
    pub entries: Vec<Entry>,
}

/// Copies the needed chunks of `packs` into new packs (one segment per ~1 MiB of chunks,
/// compressed and sealed anew), then writes index objects for them. A pack that cannot be
/// read is recorded damaged and kept, not repacked. Two threads read and open the old
/// segments (decryption and decompression are most of the cost) while this one compresses,
/// seals and uploads the new ones.
pub(super) fn repack(
    repo: &Repository,
    packs: &[PackId],
    live_in: &PackMap<Vec<(ChunkId, Location)>>,
    read: u64,
    progress: &dyn Progress,
) -> Result<Repacked> {
    let key = repo.key();
    let mut z = zstd::bulk::Compressor::new(repo.config().compression_level)
        .map_err(|e| Error::Internal(format!("zstd initialisation failed: {e}")))?;
    // A dump's chunks keep the column layout where the format has it; pages are left as
    // they are by `columns` itself (they are not rows).
    let layout = repo.config().stream_layout();
    let mut builder = PackBuilder::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut batch: Vec<(ChunkId, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut emptied = Vec::new();
    let mut bytes = 0u64;
    progress.begin("repacking", Some(read));
    let mut flush_segment = |batch: &mut Vec<(ChunkId, Vec<u8>)>, builder: &mut PackBuilder| {
        if batch.is_empty() {
            return;
        }
        let refs: Vec<(ChunkId, &[u8])> = batch.iter().map(|(id, d)| (*id, d.as_slice())).collect();
        builder.add(&pack::encode_segment(key, &mut z, &refs, layout));
        batch.clear();
    };
    let put_pack = |builder: &mut PackBuilder, entries: &mut Vec<Entry>| -> Result<u64> {
        if builder.is_empty() {
            return Ok(0);
        }
        let p = builder.finish(key);
        repo.storage().put(&p.id.object_key(), &p.bytes)?;
        entries.extend(p.entries);
        Ok(p.bytes.len() as u64)
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Copied = (PackId, u64, Result<Vec<(ChunkId, Vec<u8>)>>);
    let (tx, rx) = crossbeam_channel::bounded::<Copied>(2);
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..2 {
            let (tx, next) = (tx.clone(), &next);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(p) = packs.get(i) else { break };
                    let live = &live_in[p];
                    let copied = (*p, segment_bytes(live), copy_out(repo, p, live));
                    if tx.send(copied).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (pack_id, read, copied) in rx {
            let chunks = match copied {
                Ok(c) => c,
                Err(e) if e.is_damage() => {
                    tracing::warn!(
                        "{e}; the pack is kept and recorded damaged instead of repacked"
                    );
                    let _ = repo.record_damage(&pack_id, &e.to_string());
                    continue;
                }
                // Dropping the receiver stops the readers.
                Err(e) => return Err(e),
            };
            for (id, data) in chunks {
                batch_bytes += data.len();
                batch.push((id, data));
                if batch_bytes >= 1 << 20 {
                    flush_segment(&mut batch, &mut builder);
                    batch_bytes = 0;
                    if builder.len() >= PACK_TARGET {
                        bytes += put_pack(&mut builder, &mut entries)?;
                    }
                }
            }
            emptied.push(pack_id);
            progress.advance(read);
        }
        Ok(())
    })?;
    flush_segment(&mut batch, &mut builder);
    bytes += put_pack(&mut builder, &mut entries)?;
    let mut index_objects = Vec::new();
    for part in entries.chunks(262_144) {
        let (written, names) = repo.write_index_named(part)?;
        bytes += written;
        index_objects.extend(names);
    }
    progress.end();
    emptied.sort();
    Ok(Repacked {
        emptied,
        bytes,
        index_objects,
        entries,
    })
}

/// The needed chunks of one pack, each opened and checked against its id. Only the
/// segments that hold one are read (neighbours closer than [`MAX_GAP`] together), each
/// authenticated whole and decompressed as far as its last needed chunk; the whole pack is
/// not hashed again.
fn copy_out(
    repo: &Repository,
    pack_id: &PackId,
    live: &[(ChunkId, Location)],
) -> Result<Vec<(ChunkId, Vec<u8>)>> {
    let key = repo.key();
    let object = pack_id.object_key();
    let mut by_segment: BTreeMap<(u32, u32), Vec<(ChunkId, Location)>> = BTreeMap::new();
    for (id, loc) in live {
        by_segment
            .entry((loc.offset, loc.len))
            .or_default()
            .push((*id, *loc));
    }
    // Ranged reads: (start, end) and the segments (offset, length) each covers.
    type Segments = Vec<(u32, u32)>;
    let mut reads: Vec<(u64, u64, Segments)> = Vec::new();
    for &(offset, len) in by_segment.keys() {
        let (start, end) = (offset as u64, offset as u64 + len as u64);
        match reads.last_mut() {
            Some((_, e, segs)) if start <= *e + MAX_GAP => {
                *e = (*e).max(end);
                segs.push((offset, len));
            }
            _ => reads.push((start, end, vec![(offset, len)])),
        }
    }
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for (start, end, segments) in reads {
        repo.storage()
            .get_range_into(&object, start, end - start, &mut buf)?;
        for (offset, len) in segments {
            let from = (offset as u64 - start) as usize;
            let sealed = buf
                .get(from..from + len as usize)
                .ok_or_else(|| Error::corrupt(&object, "segment out of range"))?;
            let members = &by_segment[&(offset, len)];
            let upto = members
                .iter()
                .map(|(_, l)| l.inner_offset as usize + l.inner_len as usize)
                .max()
                .unwrap_or(0);
            let plain = pack::decode_segment_prefix(key, *pack_id, offset, sealed, upto)?;
            for (id, loc) in members {
                out.push((
                    *id,
                    pack::chunk_from_segment(key, &plain, *id, loc)?.to_vec(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(n: u8, size: u64, live_share: f64, read: u64) -> Candidate {
        Candidate {
            pack: PackId([n; 32]),
            size,
            total: 1_000_000,
            live: (live_share * 1_000_000.0) as u64,
            live_chunks: 1,
            read,
        }
    }

    #[test]
    fn a_budget_is_a_size_or_a_share_of_the_repository() {
        assert_eq!(
            RepackBudget::parse("1GiB"),
            Ok(RepackBudget::Bytes(1 << 30))
        );
        assert_eq!(RepackBudget::parse("0"), Ok(RepackBudget::Bytes(0)));
        assert_eq!(RepackBudget::parse(" 5% "), Ok(RepackBudget::Share(0.05)));
        assert_eq!(RepackBudget::default(), RepackBudget::Share(0.05));
        for bad in ["150%", "-1%", "x%", "lots"] {
            assert!(RepackBudget::parse(bad).is_err(), "{bad}");
        }
        let tb = 1u64 << 40;
        assert_eq!(RepackBudget::Share(0.05).bytes(tb), tb / 20);
        // A small repository still reads the floor; a size is a size.
        assert_eq!(RepackBudget::Share(0.05).bytes(1 << 30), MIN_SHARE_BUDGET);
        assert_eq!(RepackBudget::Share(0.0).bytes(tb), MIN_SHARE_BUDGET);
        assert_eq!(RepackBudget::Bytes(7).bytes(tb), 7);
    }

    /// The budget takes the packs that free most per byte read first, passes over one
    /// that does not fit for smaller ones after it, and counts what it leaves.
    #[test]
    fn the_budget_goes_to_the_most_unused_bytes_per_byte_read() {
        let cands = vec![
            // frees 9.9 MB reading 1 MB
            cand(1, 10_000_000, 0.01, 1_000_000),
            // frees 5 MB reading 10 MB: the worst
            cand(2, 10_000_000, 0.5, 10_000_000),
            // frees 9 MB reading 3 MB
            cand(3, 10_000_000, 0.1, 3_000_000),
            // frees 9.5 MB reading 2 MB
            cand(4, 10_000_000, 0.05, 2_000_000),
        ];
        let unused = |n: usize| cands[n].unused();
        assert_eq!(unused(0), 9_900_000);
        let (all, left) = pick(cands.clone(), u64::MAX);
        assert_eq!(all.len(), 4);
        assert_eq!(left, 0);
        let (none, left) = pick(cands.clone(), 0);
        assert!(none.is_empty());
        assert_eq!(left, cands.iter().map(Candidate::unused).sum::<u64>());
        // 1 + 2 fit in 4 MB; the pack reading 3 MB does not, nor does the worst.
        let (some, left) = pick(cands.clone(), 4_000_000);
        assert_eq!(some, vec![PackId([1; 32]), PackId([4; 32])]);
        assert_eq!(left, unused(1) + unused(2));
        // With 6 MB, all three good ones; the worst never fits.
        let (some, _) = pick(cands.clone(), 6_000_000);
        assert_eq!(
            some,
            vec![PackId([1; 32]), PackId([3; 32]), PackId([4; 32])]
        );
    }
}

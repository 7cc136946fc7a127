//! The page delta format: a page written as the runs of bytes where it differs from its base.
//!
//! Owns encoding a page against its base ([`encode`]) and applying a stored delta to its base
//! ([`apply`]). Must not choose bases or read anything: `delta` does the first (for the backup
//! pipeline), `reader` the second.
//!
//! Blob: the base's id (32 bytes), then runs, each `offset (u16 LE) ‖ length (u16 LE) ‖ the
//! page's bytes there`. Equal words are skipped a machine word at a time, runs are exact to
//! the byte and merged across equal gaps of at most [`GAP`] bytes, so a page changed in a few places (a tuple header, the page LSN, a
//! slot) is a few dozen bytes, and a restore decompresses and copies only those: an XOR of the
//! whole page, tried first, compressed as well but made every restore decompress each
//! changed page twice (measured: the delta restore of a 1.1 GB cluster cost as much as
//! restoring the full one, and decompression was 37% of its CPU time).

use crate::id::ChunkId;

/// Bytes compared at once.
const WORD: usize = 8;
/// Equal stretches up to this long between two changes are kept inside one run: a run
/// costs 4 bytes of header.
const GAP: usize = 4;
/// Largest page a delta can describe (offsets and lengths are u16).
const MAX_PAGE: usize = 65_536;
/// A page is stored whole, not as a delta, once its runs take more than this share (1/N)
/// of it: the whole page then becomes the base of later deltas.
const DENSE_SHARE: usize = 4;

/// The delta blob of `page` against `base` (whose id is `base_id`), or `None` when a whole
/// page is the better thing to store: the lengths differ, the page is too large, or more
/// than a quarter of it changed.
pub fn encode(base_id: &ChunkId, base: &[u8], page: &[u8]) -> Option<Vec<u8>> {
    let n = page.len();
    if base.len() != n || n > MAX_PAGE {
        return None;
    }
    let mut blob = Vec::with_capacity(32 + 128);
    blob.extend_from_slice(&base_id.0);
    let word = |i: usize| i..(i + WORD).min(n);
    // The current run, byte-exact: [start, end).
    let mut run: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < n {
        let w = word(i);
        i = w.end;
        if page[w.clone()] == base[w.clone()] {
            continue;
        }
        // The first and last differing bytes of the word.
        let from = w.start + (0..w.len()).find(|&k| page[w.start + k] != base[w.start + k])?;
        let to = w.start + (0..w.len()).rfind(|&k| page[w.start + k] != base[w.start + k])? + 1;
        run = match run {
            Some((s, e)) if from - e <= GAP => Some((s, to)),
            Some((s, e)) => {
                push_run(&mut blob, page, s, e);
                Some((from, to))
            }
            None => Some((from, to)),
        };
        if (blob.len() - 32) * DENSE_SHARE > n {
            return None;
        }
    }
    if let Some((s, e)) = run {
        push_run(&mut blob, page, s, e);
    }
    ((blob.len() - 32) * DENSE_SHARE <= n).then_some(blob)
}

fn push_run(blob: &mut Vec<u8>, page: &[u8], start: usize, end: usize) {
    blob.extend_from_slice(&(start as u16).to_le_bytes());
    blob.extend_from_slice(&((end - start) as u16).to_le_bytes());
    blob.extend_from_slice(&page[start..end]);
}

/// The base id a delta blob names.
pub fn base_of(blob: &[u8]) -> Option<ChunkId> {
    blob.get(..32)
        .map(|b| ChunkId(b.try_into().expect("32 bytes")))
}

/// Writes into `out` the page `blob` (a delta) stands for, given its base; `None` when a
/// run falls outside the page or is cut short (a blob that is not a delta of this base).
pub fn apply(base: &[u8], blob: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.extend_from_slice(base);
    apply_in_place(out, blob)
}

/// Applies the runs of `blob` (a delta) to `page`, which holds its base; `None` when a run
/// falls outside it.
pub fn apply_in_place(page: &mut [u8], blob: &[u8]) -> Option<()> {
    let mut rest = blob.get(32..)?;
    while !rest.is_empty() {
        let header = rest.get(..4)?;
        let at = u16::from_le_bytes([header[0], header[1]]) as usize;
        let len = u16::from_le_bytes([header[2], header[3]]) as usize;
        let bytes = rest.get(4..4 + len)?;
        page.get_mut(at..at + len)?.copy_from_slice(bytes);
        rest = &rest[4 + len..];
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seed: u64, n: usize) -> Vec<u8> {
        let mut rng = crate::hotel::Rng::new(seed);
        (0..n.div_ceil(8))
            .flat_map(|_| rng.next_u64().to_le_bytes())
            .take(n)
            .collect()
    }

    #[test]
    fn a_page_changed_in_places_is_a_few_runs_and_applies_back() {
        let base = page(1, 8192);
        let mut p = base.clone();
        p[0..8].copy_from_slice(&[9; 8]); // the page LSN
        p[100] ^= 1;
        p[110] ^= 1; // within GAP of the previous change: one run
        p[5000..5040].fill(3);
        p[8191] ^= 0xff; // the last byte
        let blob = encode(&ChunkId([7; 32]), &base, &p).expect("a small change");
        assert_eq!(base_of(&blob), Some(ChunkId([7; 32])));
        assert!(
            blob.len() < 32 + 4 * 4 + 8 + 16 + 48 + 8,
            "{} bytes",
            blob.len()
        );
        let mut out = Vec::new();
        apply(&base, &blob, &mut out).unwrap();
        assert_eq!(out, p);
    }

    #[test]
    fn odd_sizes_identical_pages_and_dense_changes() {
        let base = page(2, 1000);
        let mut p = base.clone();
        p[997] ^= 1;
        let blob = encode(&ChunkId([1; 32]), &base, &p).unwrap();
        let mut out = Vec::new();
        apply(&base, &blob, &mut out).unwrap();
        assert_eq!(out, p);
        let same = encode(&ChunkId([1; 32]), &base, &base).unwrap();
        assert_eq!(same.len(), 32);
        apply(&base, &same, &mut out).unwrap();
        assert_eq!(out, base);
        assert!(encode(&ChunkId([1; 32]), &base, &page(3, 1000)).is_none());
        assert!(encode(&ChunkId([1; 32]), &base, &base[..500]).is_none());
    }

    #[test]
    fn a_run_outside_its_page_is_refused() {
        let base = page(4, 64);
        let mut blob = vec![0u8; 32];
        blob.extend_from_slice(&60u16.to_le_bytes());
        blob.extend_from_slice(&8u16.to_le_bytes());
        blob.extend_from_slice(&[1; 8]);
        assert!(apply(&base, &blob, &mut Vec::new()).is_none());
        blob.truncate(40);
        assert!(apply(&base, &blob, &mut Vec::new()).is_none());
    }
}

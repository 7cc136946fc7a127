//! Cutting database bytes into chunks, and chunks into pipeline batches.
//!
//! Owns the choice of chunk boundaries. Must not hash, compress or store.
//!
//! Why page-aligned fixed chunks for page-structured databases: SQLite (and PostgreSQL's heap
//! files) change fixed-size pages in place. Measured on a 711 MB hotel database, updating 1% of
//! bookings at random touched 16% of its pages, scattered evenly. With chunks of k pages a
//! chunk is re-stored when any of its pages changed, i.e. with probability 1 − 0.84^k: 16% for
//! k = 1, 29% for k = 2, 50% for k = 4, 94% for 16 pages (restic's ~1 MiB content-defined
//! chunks re-stored 93% of the file). Only one page per chunk keeps the bytes added within
//! 1.5× the changed pages, so a chunk is one page. Content-defined chunking buys nothing here:
//! pages never shift. Pages smaller than 4 KiB are grouped to 4 KiB so per-chunk overhead (40
//! bytes of nonce and tag, 44 bytes of index, 32 bytes of list) stays under 3%.

use crate::repository::writer::Batch;
use fastcdc::v2020::FastCDC;

/// Content-defined chunk sizes for streams (logical dumps): the smallest, average and largest
/// chunk. Dumps shift when rows are inserted or deleted, so boundaries must follow content.
/// 64 KiB on average keeps the index small (16 entries per MiB) while an appended or changed
/// run of rows re-stores about two chunks around it; segments compress the new chunks of a
/// batch together, so small chunks do not cost compression ratio.
pub const CDC_MIN: usize = 16 * 1024;
/// Average content-defined chunk.
pub const CDC_AVG: usize = 64 * 1024;
/// Largest content-defined chunk.
pub const CDC_MAX: usize = 256 * 1024;
/// Bytes per batch of content-defined chunks: larger than for pages, because a batch's new
/// chunks are compressed together and dumps compress better in bigger windows.
pub const CDC_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Smallest chunk cut from a page-structured file.
pub const MIN_PAGE_CHUNK: usize = 4096;
/// Bytes per batch handed to the pipeline: big enough to amortise channel hops, small enough
/// that queued batches cost little memory.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Chunk size for a file of `page_size`-byte pages: one page, or 4 KiB of small pages.
pub fn page_chunk_size(page_size: usize) -> usize {
    page_size.max(MIN_PAGE_CHUNK)
}

/// Accumulates a byte stream into batches of fixed-size chunks (the last may be short).
pub struct FixedBatcher {
    chunk: usize,
    buf: Vec<u8>,
}

impl FixedBatcher {
    /// A batcher cutting `chunk`-byte chunks.
    pub fn new(chunk: usize) -> Self {
        assert!(chunk > 0, "chunk size must be positive");
        FixedBatcher {
            chunk,
            buf: Vec::with_capacity(BATCH_BYTES.max(chunk)),
        }
    }

    /// Appends bytes; returns a full batch when one is ready.
    pub fn push(&mut self, bytes: &[u8]) -> Option<Batch> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= BATCH_BYTES.max(self.chunk) {
            let whole = self.buf.len() / self.chunk * self.chunk;
            let rest = self.buf.split_off(whole);
            let data = std::mem::replace(&mut self.buf, rest);
            self.buf.reserve(BATCH_BYTES.max(self.chunk));
            return Some(self.cut(data));
        }
        None
    }

    /// The remaining bytes as a last batch, if any.
    pub fn finish(self) -> Option<Batch> {
        if self.buf.is_empty() {
            return None;
        }
        let chunk = self.chunk;
        Some(
            FixedBatcher {
                chunk,
                buf: Vec::new(),
            }
            .cut(self.buf),
        )
    }

    fn cut(&self, data: Vec<u8>) -> Batch {
        let ends = (1..=data.len().div_ceil(self.chunk))
            .map(|i| (i * self.chunk).min(data.len()))
            .collect();
        Batch { data, ends }
    }
}

/// Accumulates a byte stream into batches of content-defined chunks (FastCDC 2020).
///
/// The cut points of a buffer are final except the last chunk's, which only ended because the
/// buffer did; that tail is carried into the next batch, so boundaries depend on content alone.
pub struct CdcBatcher {
    buf: Vec<u8>,
}

impl Default for CdcBatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl CdcBatcher {
    /// A batcher with the default sizes.
    pub fn new() -> Self {
        CdcBatcher {
            buf: Vec::with_capacity(CDC_BATCH_BYTES + CDC_MAX),
        }
    }

    /// Appends bytes; returns a batch when enough have gathered.
    pub fn push(&mut self, bytes: &[u8]) -> Option<Batch> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() < CDC_BATCH_BYTES + CDC_MAX {
            return None;
        }
        let ends = cut_points(&self.buf);
        // Keep the last chunk: its end is the buffer's, not the content's.
        let keep_from = ends[ends.len() - 2];
        let rest = self.buf[keep_from..].to_vec();
        let mut data = std::mem::replace(&mut self.buf, rest);
        self.buf.reserve(CDC_BATCH_BYTES + CDC_MAX);
        data.truncate(keep_from);
        Some(Batch {
            data,
            ends: ends[..ends.len() - 1].to_vec(),
        })
    }

    /// The remaining bytes as a last batch, if any.
    pub fn finish(self) -> Option<Batch> {
        if self.buf.is_empty() {
            return None;
        }
        let ends = cut_points(&self.buf);
        Some(Batch {
            data: self.buf,
            ends,
        })
    }
}

fn cut_points(data: &[u8]) -> Vec<usize> {
    FastCDC::new(data, CDC_MIN, CDC_AVG, CDC_MAX)
        .map(|c| c.offset + c.length)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(page_chunk_size(512), 4096);
        assert_eq!(page_chunk_size(4096), 4096);
        assert_eq!(page_chunk_size(65536), 65536);
    }

    fn stream(len: usize, seed: u64) -> Vec<u8> {
        let mut r = crate::hotel::Rng::new(seed);
        (0..len).map(|_| (r.next_u64() % 7) as u8 + b'a').collect()
    }

    fn chunks_of(data: &[u8], pieces: usize) -> Vec<Vec<u8>> {
        let mut b = CdcBatcher::new();
        let mut out = Vec::new();
        let step = data.len().div_ceil(pieces.max(1)).max(1);
        for p in data.chunks(step) {
            out.extend(b.push(p));
        }
        out.extend(b.finish());
        let mut chunks = Vec::new();
        for batch in out {
            let mut start = 0;
            for e in batch.ends {
                chunks.push(batch.data[start..e].to_vec());
                start = e;
            }
            assert_eq!(start, batch.data.len());
        }
        chunks
    }

    #[test]
    fn cdc_boundaries_follow_content_not_reads() {
        let data = stream(20 << 20, 9);
        let a = chunks_of(&data, 1);
        let b = chunks_of(&data, 977);
        assert_eq!(a, b, "how the stream was read must not move boundaries");
        assert_eq!(a.concat(), data);
        assert!(a.iter().all(|c| c.len() <= CDC_MAX));
        // An insertion near the start re-cuts only the chunks around it.
        let mut shifted = data.clone();
        shifted.splice(1000..1000, b"a new row\n".iter().copied());
        let c = chunks_of(&shifted, 3);
        let old: std::collections::HashSet<_> = a.iter().collect();
        let changed = c.iter().filter(|x| !old.contains(x)).count();
        assert!(changed <= 2, "{changed} chunks changed after one insertion");
    }

    proptest! {
        #[test]
        fn batches_reassemble_the_stream(pieces in proptest::collection::vec(1usize..300_000, 0..20), chunk in prop_oneof![Just(4096usize), Just(8192), 1usize..10_000]) {
            let mut b = FixedBatcher::new(chunk);
            let mut stream = Vec::new();
            let mut out = Vec::new();
            for (i, len) in pieces.iter().enumerate() {
                let piece: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8).collect();
                stream.extend_from_slice(&piece);
                out.extend(b.push(&piece));
            }
            out.extend(b.finish());
            let mut joined = Vec::new();
            let mut chunks = Vec::new();
            for batch in &out {
                prop_assert_eq!(*batch.ends.last().unwrap(), batch.data.len());
                let mut start = 0;
                for &e in &batch.ends {
                    chunks.push(e - start);
                    start = e;
                }
                joined.extend_from_slice(&batch.data);
            }
            prop_assert_eq!(&joined, &stream);
            // every chunk is full-size except possibly the very last
            if let Some((last, rest)) = chunks.split_last() {
                prop_assert!(rest.iter().all(|&c| c == chunk));
                prop_assert!(*last <= chunk && *last > 0);
            }
        }
    }
}

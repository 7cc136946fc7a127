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

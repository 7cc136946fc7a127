//! Packs: the data objects that hold many sealed chunk blobs.
//!
//! Owns the pack layout and the blob encoding (compress, then seal). Must not decide what goes
//! into which pack (the backup pipeline does) nor touch storage.
//!
//! A database of 100 GB has some 25 million 4 KiB pages; one object per chunk would be ruinous
//! on S3, so blobs are gathered into packs of [`PACK_TARGET`] bytes: a 100 GB database
//! (about 35 GB once compressed) becomes ~2,000 objects.
//!
//! Layout: `blob ‖ blob ‖ … ‖ sealed(trailer) ‖ trailer length (u32 LE)`. The trailer lists
//! `(chunk id, offset, length)` for each blob so a pack describes itself and an index can be
//! rebuilt from packs alone. A pack's name is the BLAKE3 hash of its bytes, so any flipped
//! byte, even in padding, is caught by `check --read-data`.
//!
//! Blob plaintext: one byte saying how the rest is stored (`0` raw, `1` zstd), then the bytes.
//! Each blob is sealed with its chunk id as associated data: a blob moved or swapped fails
//! authentication. After opening, the chunk's keyed hash is recomputed and compared.

use super::index::{Entry, Location, PackId, Reader};
use crate::crypto::{ChunkId, MasterKey};
use crate::error::{Error, Result};

/// Packs are closed once they reach this size.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;
const TRAILER_AAD: &[u8] = b"strongroom pack trailer";

/// A pack being filled.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<(ChunkId, u32, u32)>,
}

/// A finished pack ready to upload.
pub struct FinishedPack {
    /// Its id (content hash).
    pub id: PackId,
    /// The object bytes.
    pub bytes: Vec<u8>,
    /// Index entries for its blobs.
    pub entries: Vec<Entry>,
}

impl PackBuilder {
    /// Appends a sealed blob.
    pub fn add(&mut self, id: ChunkId, sealed: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(PACK_TARGET + PACK_TARGET / 8);
        }
        self.entries
            .push((id, self.buf.len() as u32, sealed.len() as u32));
        self.buf.extend_from_slice(sealed);
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the trailer and returns the pack, leaving the builder empty.
    pub fn finish(&mut self, key: &MasterKey) -> FinishedPack {
        let mut trailer = Vec::with_capacity(self.entries.len() * 40);
        for (id, off, len) in &self.entries {
            trailer.extend_from_slice(&id.0);
            trailer.extend_from_slice(&off.to_le_bytes());
            trailer.extend_from_slice(&len.to_le_bytes());
        }
        let sealed = key.seal(TRAILER_AAD, &trailer);
        let mut bytes = std::mem::take(&mut self.buf);
        bytes.extend_from_slice(&sealed);
        bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = PackId(*blake3::hash(&bytes).as_bytes());
        let entries = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(c, offset, len)| {
                (
                    c,
                    Location {
                        pack: id,
                        offset,
                        len,
                    },
                )
            })
            .collect();
        FinishedPack { id, bytes, entries }
    }
}

/// Checks a whole pack's name against its content and returns the entries of its trailer.
pub fn read_pack(key: &MasterKey, object: &str, id: PackId, bytes: &[u8]) -> Result<Vec<Entry>> {
    if *blake3::hash(bytes).as_bytes() != id.0 {
        return Err(Error::corrupt(
            object,
            "content does not match its name (hash mismatch)",
        ));
    }
    let n = bytes.len();
    if n < 4 {
        return Err(Error::corrupt(object, "too short to be a pack"));
    }
    let tlen = u32::from_le_bytes(bytes[n - 4..].try_into().expect("4 bytes")) as usize;
    if tlen + 4 > n {
        return Err(Error::corrupt(object, "trailer length out of range"));
    }
    let trailer = key.open(object, TRAILER_AAD, &bytes[n - 4 - tlen..n - 4])?;
    let mut r = Reader {
        buf: &trailer,
        pos: 0,
    };
    let mut out = Vec::with_capacity(trailer.len() / 40);
    while r.pos < trailer.len() {
        let bad = || Error::corrupt(object, "malformed trailer");
        let c = ChunkId(r.id().ok_or_else(bad)?);
        let offset = r.u32().ok_or_else(bad)?;
        let len = r.u32().ok_or_else(bad)?;
        if offset as usize + len as usize > n - 4 - tlen {
            return Err(bad());
        }
        out.push((
            c,
            Location {
                pack: id,
                offset,
                len,
            },
        ));
    }
    Ok(out)
}

/// Compresses (when it pays) and seals one chunk.
pub fn encode_blob(
    key: &MasterKey,
    zstd: &mut zstd::bulk::Compressor<'_>,
    id: ChunkId,
    data: &[u8],
) -> Vec<u8> {
    let mut plain = Vec::with_capacity(data.len() + 1);
    match zstd.compress(data) {
        Ok(c) if c.len() + 1 < data.len() => {
            plain.push(1);
            plain.extend_from_slice(&c);
        }
        _ => {
            plain.push(0);
            plain.extend_from_slice(data);
        }
    }
    key.seal(&id.0, &plain)
}

/// Largest chunk a blob may decompress to (a guard against damaged frame headers).
const MAX_CHUNK: u64 = 64 * 1024 * 1024;

/// Opens, decompresses and checks one blob against its id; `object` is the pack's path.
pub fn decode_blob(key: &MasterKey, object: &str, id: ChunkId, sealed: &[u8]) -> Result<Vec<u8>> {
    let what = || format!("{object} (chunk {})", &id.to_hex()[..16]);
    let plain = key.open(&what(), &id.0, sealed)?;
    let data = match plain.split_first() {
        Some((0, rest)) => rest.to_vec(),
        Some((1, rest)) => {
            let size = zstd::zstd_safe::get_frame_content_size(rest)
                .ok()
                .flatten()
                .filter(|&s| s <= MAX_CHUNK)
                .ok_or_else(|| Error::corrupt(what(), "bad compressed frame"))?;
            zstd::bulk::decompress(rest, size as usize)
                .map_err(|e| Error::corrupt(what(), format!("decompression failed: {e}")))?
        }
        _ => return Err(Error::corrupt(what(), "unknown blob encoding")),
    };
    if key.chunk_id(&data) != id {
        return Err(Error::corrupt(
            what(),
            "content does not match its chunk id",
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_damage() {
        let key = MasterKey::generate();
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let chunks: Vec<Vec<u8>> = vec![
            vec![0u8; 4096],
            b"hello world".to_vec(),
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ];
        let mut b = PackBuilder::default();
        for c in &chunks {
            let id = key.chunk_id(c);
            b.add(id, &encode_blob(&key, &mut z, id, c));
        }
        let p = b.finish(&key);
        assert!(b.is_empty());
        let entries = read_pack(&key, "p", p.id, &p.bytes).unwrap();
        assert_eq!(entries, p.entries);
        for ((id, loc), c) in entries.iter().zip(&chunks) {
            let blob = &p.bytes[loc.offset as usize..(loc.offset + loc.len) as usize];
            assert_eq!(&decode_blob(&key, "p", *id, blob).unwrap(), c);
        }
        // zero page compresses to a few bytes
        assert!(entries[0].1.len < 100);
        let mut bad = p.bytes.clone();
        bad[3] ^= 0x40;
        assert!(read_pack(&key, "p", p.id, &bad).is_err());
        let (id, loc) = entries[0];
        let blob = &bad[loc.offset as usize..(loc.offset + loc.len) as usize];
        let err = decode_blob(&key, "data/xx/p", id, blob)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data/xx/p"), "{err}");
    }
}

//! Packs: the data objects, made of sealed segments of chunks.
//!
//! Owns the pack layout and the segment encoding (concatenate, compress, seal). Must not decide
//! what goes into which pack (the backup pipeline does) nor touch storage.
//!
//! A database of 100 GB has some 25 million 4 KiB pages; one object per chunk would be ruinous
//! on S3, so chunks are gathered into packs of [`PACK_TARGET`] bytes: a 100 GB database
//! (about 40 GB once compressed) becomes ~2,500 objects.
//!
//! Why segments: chunks are single database pages (see `chunker`), and zstd on one 4 KiB page
//! at a time loses much of its context: measured on a 785 MB hotel database, per-page
//! compression stored 366 MB where whole-stream zstd -3 stored 315 MB, and per-page calls cost
//! time too. So the new chunks of one pipeline batch (up to 1 MiB) are compressed and sealed
//! together as one segment; the index locates a chunk by its segment and its place inside.
//! Deduplication stays per page; reading a page means opening its segment, and a restore
//! reads whole segments anyway.
//!
//! Layout: `segment ‖ segment ‖ … ‖ sealed(trailer) ‖ trailer length (u32 LE)`. The trailer
//! lists every chunk's `(id, segment offset, segment length, offset and length inside the
//! segment)` so a pack describes itself and an index can be rebuilt from packs alone. A pack's
//! name is the BLAKE3 hash of its bytes, so any flipped byte is caught by `check --read-data`.
//!
//! Segment plaintext: one byte saying how the rest is stored (`0` raw, `1` zstd, `2` zstd of
//! the chunks laid out column by column: `columns`), then the chunks' bytes back to back.
//! After opening, each chunk's keyed hash is recomputed and compared with its id, so a
//! chunk can never be returned under the wrong id. A blob is either a chunk's content or a
//! page delta (`patch`: base id, then where it differs); the two are hashed under different
//! keys, so the id says which ([`BlobKind`]).

use super::columns;
use super::index::{Entry, Location, Reader};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};

/// Packs are closed once they reach this size.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;
const TRAILER_AAD: &[u8] = b"strongroom pack trailer";
const SEGMENT_AAD: &[u8] = b"strongroom segment";
/// Largest segment plaintext accepted (a guard against damaged frame headers).
const MAX_SEGMENT: u64 = 256 * 1024 * 1024;

/// A sealed segment with the chunks inside it: `(id, offset, length)` in the plaintext.
pub struct Segment {
    /// The sealed bytes.
    pub sealed: Vec<u8>,
    /// Chunks in it.
    pub members: Vec<(ChunkId, u32, u32)>,
}

/// How a segment's chunks are laid out before they are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Back to back, as they are (database pages, page deltas).
    AsIs,
    /// Column by column where they are mostly rows of text (`columns`: logical dumps),
    /// else as they are.
    Columns,
}

/// How the segments of a session's chunks are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coding {
    /// The zstd level.
    pub level: i32,
    /// How chunks are laid out before compression.
    pub layout: Layout,
}

impl Coding {
    /// Pages at `level`, laid out as they are.
    pub fn pages(level: i32) -> Self {
        Coding {
            level,
            layout: Layout::AsIs,
        }
    }
}

/// Builds one segment from chunks (compresses when it pays, then seals).
pub fn encode_segment(
    key: &MasterKey,
    zstd: &mut zstd::bulk::Compressor<'_>,
    chunks: &[(ChunkId, &[u8])],
    layout: Layout,
) -> Segment {
    let total: usize = chunks.iter().map(|(_, d)| d.len()).sum();
    let mut raw = Vec::with_capacity(total);
    let mut members = Vec::with_capacity(chunks.len());
    for (id, data) in chunks {
        members.push((*id, raw.len() as u32, data.len() as u32));
        raw.extend_from_slice(data);
    }
    let mut plain = Vec::with_capacity(total / 2 + 16);
    let laid = match layout {
        Layout::Columns => columns::transpose(&raw),
        Layout::AsIs => None,
    };
    let (encoding, input) = match &laid {
        Some(l) => (2, l.as_slice()),
        None => (1, raw.as_slice()),
    };
    match zstd.compress(input) {
        Ok(c) if c.len() + 1 < raw.len() => {
            plain.push(encoding);
            plain.extend_from_slice(&c);
        }
        _ => {
            plain.push(0);
            plain.extend_from_slice(&raw);
        }
    }
    Segment {
        sealed: key.seal(SEGMENT_AAD, &plain),
        members,
    }
}

/// Opens and decompresses the segment at `offset` of `pack`.
pub fn decode_segment(
    key: &MasterKey,
    pack: PackId,
    offset: u32,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    decode_segment_prefix(key, pack, offset, sealed, usize::MAX)
}

thread_local! {
    /// One decompression context per thread, reused from segment to segment (a repack
    /// opens thousands).
    static DCTX: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
        std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
}

/// Opens the segment at `offset` of `pack` (authenticating all of it, as
/// [`decode_segment`]) but decompresses only its first `upto` bytes: a repack that needs one
/// page from a segment of 256 stops where that page ends (on average half way) instead of
/// expanding the whole segment. `upto` past the end yields the whole segment.
pub fn decode_segment_prefix(
    key: &MasterKey,
    pack: PackId,
    offset: u32,
    sealed: &[u8],
    upto: usize,
) -> Result<Vec<u8>> {
    let damaged = |detail: String| Error::DamagedData {
        pack,
        segment: Some(offset),
        detail,
    };
    let mut plain = key
        .open(&pack.object_key(), SEGMENT_AAD, sealed)
        .map_err(|e| match e {
            Error::Corrupt { detail, .. } => damaged(detail),
            other => other,
        })?;
    match plain.split_first() {
        Some((0, _)) => {
            plain.truncate(upto.saturating_add(1));
            plain.remove(0);
            Ok(plain)
        }
        Some((2, rest)) => {
            let laid = decompress(rest, usize::MAX).map_err(damaged)?;
            let mut raw = columns::restore(&laid)
                .ok_or_else(|| damaged("a column layout that does not parse".into()))?;
            raw.truncate(upto);
            Ok(raw)
        }
        Some((1, rest)) => decompress(rest, upto).map_err(damaged),
        _ => Err(damaged("unknown segment encoding".into())),
    }
}

/// The first `upto` bytes of a zstd frame (all of it when `upto` is past its end), bounded
/// by [`MAX_SEGMENT`]; a prefix stops decompressing where it ends.
fn decompress(frame: &[u8], upto: usize) -> std::result::Result<Vec<u8>, String> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .filter(|&s| s <= MAX_SEGMENT)
        .ok_or("bad compressed frame")?;
    let want = (size as usize).min(upto);
    let mut out: Vec<u8> = Vec::with_capacity(want);
    DCTX.with(|d| {
        use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective};
        let mut d = d.borrow_mut();
        if want == size as usize {
            return d.decompress(&mut out, frame).map(|_| ());
        }
        d.reset(ResetDirective::SessionOnly)?;
        let mut input = InBuffer::around(frame);
        let mut output = OutBuffer::around(&mut out);
        while output.pos() < want {
            let before = (input.pos(), output.pos());
            let left = d.decompress_stream(&mut output, &mut input)?;
            if left == 0 || (input.pos(), output.pos()) == before {
                break;
            }
        }
        Ok(())
    })
    .map_err(|code| {
        format!(
            "decompression failed: {}",
            zstd::zstd_safe::get_error_name(code)
        )
    })?;
    out.truncate(want);
    if out.len() < want {
        return Err("the compressed frame ends early".into());
    }
    Ok(out)
}

/// What a stored blob turned out to be once checked against its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    /// The chunk's content itself (`MasterKey::chunk_id`).
    Whole,
    /// A page delta (`MasterKey::delta_id`, in `patch`'s format): the base's id, then the
    /// bytes where the page differs from it.
    Delta,
}

/// Cuts one blob out of an opened segment and checks it against its id, as a chunk's content
/// or as a page delta: what must never happen is a blob returned
/// under the wrong id, and both ids are keyed.
pub fn blob_from_segment<'a>(
    key: &MasterKey,
    plain: &'a [u8],
    id: ChunkId,
    loc: &Location,
) -> Result<(&'a [u8], BlobKind)> {
    let damaged = |what: &str| Error::DamagedData {
        pack: loc.pack,
        segment: Some(loc.offset),
        detail: format!("chunk {} {what}", &id.to_hex()[..16]),
    };
    let (s, e) = (
        loc.inner_offset as usize,
        loc.inner_offset as usize + loc.inner_len as usize,
    );
    let data = plain
        .get(s..e)
        .ok_or_else(|| damaged("lies outside its segment"))?;
    if key.chunk_id(data) == id {
        return Ok((data, BlobKind::Whole));
    }
    if data.len() > 32 && key.delta_id(data) == id {
        return Ok((data, BlobKind::Delta));
    }
    Err(damaged("does not match its content"))
}

/// [`blob_from_segment`] for callers that move blobs as they are (check, repack): either
/// kind is a good blob.
pub fn chunk_from_segment<'a>(
    key: &MasterKey,
    plain: &'a [u8],
    id: ChunkId,
    loc: &Location,
) -> Result<&'a [u8]> {
    blob_from_segment(key, plain, id, loc).map(|(d, _)| d)
}

/// A pack being filled.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<(ChunkId, [u32; 4])>,
}

/// A finished pack ready to upload.
pub struct FinishedPack {
    /// Its id (content hash).
    pub id: PackId,
    /// The object bytes.
    pub bytes: Vec<u8>,
    /// Index entries for its chunks.
    pub entries: Vec<Entry>,
}

impl PackBuilder {
    /// Appends a sealed segment.
    pub fn add(&mut self, seg: &Segment) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(PACK_TARGET + PACK_TARGET / 8);
        }
        let off = u32::try_from(self.buf.len()).expect("packs are closed long before 4 GiB");
        let len = seg.sealed.len() as u32;
        for (id, io, il) in &seg.members {
            self.entries.push((*id, [off, len, *io, *il]));
        }
        self.buf.extend_from_slice(&seg.sealed);
    }

    /// Bytes of segments so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no segment was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the trailer and returns the pack, leaving the builder empty.
    pub fn finish(&mut self, key: &MasterKey) -> FinishedPack {
        let mut trailer = Vec::with_capacity(self.entries.len() * 48);
        for (id, nums) in &self.entries {
            trailer.extend_from_slice(&id.0);
            for n in nums {
                trailer.extend_from_slice(&n.to_le_bytes());
            }
        }
        let sealed = key.seal(TRAILER_AAD, &trailer);
        let mut bytes = std::mem::take(&mut self.buf);
        bytes.extend_from_slice(&sealed);
        bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = PackId(*blake3::hash(&bytes).as_bytes());
        let entries = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(c, [offset, len, inner_offset, inner_len])| {
                (
                    c,
                    Location {
                        pack: id,
                        offset,
                        len,
                        inner_offset,
                        inner_len,
                        from_host: false,
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
    let tlen = trailer_len(object, n as u64, &bytes[n.saturating_sub(4)..])? as usize;
    decode_trailer(
        key,
        object,
        id,
        &bytes[n - 4 - tlen..n - 4],
        (n - 4 - tlen) as u64,
    )
}

/// Checks a whole pack as `check --read-data` does, before it is trusted elsewhere
/// (`copy`): its name against its content, its trailer, and every segment the trailer
/// names opened (authenticated, decompressed) with every chunk in it hashed against its id.
/// Returns the trailer's entries; the first failure otherwise, naming the pack.
pub fn verify(key: &MasterKey, id: PackId, bytes: &[u8]) -> Result<Vec<Entry>> {
    let object = id.object_key();
    let entries = read_pack(key, &object, id, bytes).map_err(|e| match e {
        Error::Corrupt { detail, .. } => Error::DamagedData {
            pack: id,
            segment: None,
            detail,
        },
        other => other,
    })?;
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|(_, l)| (l.offset, l.inner_offset));
    for seg in sorted.chunk_by(|a, b| a.1.offset == b.1.offset) {
        let loc = seg[0].1;
        let (s, e) = (loc.offset as usize, loc.offset as usize + loc.len as usize);
        let sealed = bytes.get(s..e).ok_or_else(|| Error::DamagedData {
            pack: id,
            segment: Some(loc.offset),
            detail: "the segment lies outside the pack".into(),
        })?;
        let plain = decode_segment(key, id, loc.offset, sealed)?;
        for (chunk, l) in seg {
            chunk_from_segment(key, &plain, *chunk, l)?;
        }
    }
    Ok(entries)
}

/// The sealed trailer's length, from a pack's last four bytes; `size` is the pack's size.
pub fn trailer_len(object: &str, size: u64, last4: &[u8]) -> Result<u64> {
    let last4: [u8; 4] = last4
        .try_into()
        .map_err(|_| Error::corrupt(object, "too short to be a pack"))?;
    let tlen = u32::from_le_bytes(last4) as u64;
    if tlen + 4 > size {
        return Err(Error::corrupt(object, "trailer length out of range"));
    }
    Ok(tlen)
}

/// Opens a pack's sealed trailer and returns its entries; `segments_len` is where the
/// segments end (the trailer's offset), so no entry may point past it.
pub fn decode_trailer(
    key: &MasterKey,
    object: &str,
    id: PackId,
    sealed: &[u8],
    segments_len: u64,
) -> Result<Vec<Entry>> {
    let trailer = key.open(object, TRAILER_AAD, sealed)?;
    // A pack an append-only key wrote: its locations are the host's (index::Location).
    let from_host = MasterKey::sealed_by_append_only(sealed);
    let mut r = Reader {
        buf: &trailer,
        pos: 0,
    };
    let mut out = Vec::with_capacity(trailer.len() / 48);
    while r.pos < trailer.len() {
        let bad = || Error::corrupt(object, "malformed trailer");
        let c = ChunkId(r.id().ok_or_else(bad)?);
        let mut nums = [0u32; 4];
        for n in nums.iter_mut() {
            *n = r.u32().ok_or_else(bad)?;
        }
        let [offset, len, inner_offset, inner_len] = nums;
        if offset as u64 + len as u64 > segments_len {
            return Err(bad());
        }
        out.push((
            c,
            Location {
                pack: id,
                offset,
                len,
                inner_offset,
                inner_len,
                from_host,
            },
        ));
    }
    Ok(out)
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
        let with_ids: Vec<(ChunkId, &[u8])> = chunks
            .iter()
            .map(|c| (key.chunk_id(c), c.as_slice()))
            .collect();
        let mut b = PackBuilder::default();
        b.add(&encode_segment(&key, &mut z, &with_ids[..2], Layout::AsIs));
        b.add(&encode_segment(&key, &mut z, &with_ids[2..], Layout::AsIs));
        let p = b.finish(&key);
        assert!(b.is_empty());
        let entries = read_pack(&key, "p", p.id, &p.bytes).unwrap();
        assert_eq!(entries, p.entries);
        for ((id, loc), c) in entries.iter().zip(&chunks) {
            let sealed = &p.bytes[loc.offset as usize..(loc.offset + loc.len) as usize];
            let plain = decode_segment(&key, p.id, loc.offset, sealed).unwrap();
            assert_eq!(
                chunk_from_segment(&key, &plain, *id, loc).unwrap(),
                c.as_slice()
            );
        }
        // a zero page and a short string compress to a few bytes together
        assert!(entries[0].1.len < 120, "{}", entries[0].1.len);
        let mut bad = p.bytes.clone();
        bad[3] ^= 0x40;
        assert!(read_pack(&key, "p", p.id, &bad).is_err());
        let (id, loc) = entries[0];
        let sealed = &bad[loc.offset as usize..(loc.offset + loc.len) as usize];
        let err = decode_segment(&key, p.id, loc.offset, sealed)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&p.id.object_key()), "{err}");
        // a chunk asked for under the wrong id is refused
        let sealed = &p.bytes[loc.offset as usize..(loc.offset + loc.len) as usize];
        let plain = decode_segment(&key, p.id, loc.offset, sealed).unwrap();
        assert!(chunk_from_segment(&key, &plain, ChunkId([1; 32]), &loc).is_err());
        assert!(chunk_from_segment(&key, &plain, id, &loc).is_ok());
        // verify: the whole pack, or the first damage naming the pack
        assert_eq!(verify(&key, p.id, &p.bytes).unwrap(), p.entries);
        let e = verify(&key, p.id, &bad).unwrap_err();
        assert!(
            matches!(e, Error::DamagedData { pack, .. } if pack == p.id),
            "{e}"
        );
        assert!(verify(&MasterKey::generate(), p.id, &p.bytes).is_err());
    }

    /// A prefix opened up to a chunk's end holds that chunk exactly as the whole segment
    /// does, for compressed and raw segments; a changed byte fails it all the same.
    #[test]
    fn a_segment_prefix_holds_the_chunks_it_reaches() {
        let key = MasterKey::generate();
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let pages: Vec<Vec<u8>> = (0..40u32)
            .map(|p| {
                (0..4096u32)
                    .map(|i| ((i * 31 + p * 7) % 13) as u8)
                    .collect()
            })
            .collect();
        // Random bytes do not compress: that segment is stored raw.
        let noise: Vec<u8> = (0..8192u32)
            .map(|i| blake3::hash(&i.to_le_bytes()).as_bytes()[0])
            .collect();
        for chunks in [pages.clone(), vec![noise.clone(), noise[..100].to_vec()]] {
            let with_ids: Vec<(ChunkId, &[u8])> = chunks
                .iter()
                .map(|c| (key.chunk_id(c), c.as_slice()))
                .collect();
            let mut b = PackBuilder::default();
            b.add(&encode_segment(&key, &mut z, &with_ids, Layout::AsIs));
            let p = b.finish(&key);
            for (i, (id, loc)) in p.entries.iter().enumerate() {
                let sealed = &p.bytes[loc.offset as usize..(loc.offset + loc.len) as usize];
                let upto = (loc.inner_offset + loc.inner_len) as usize;
                let plain = decode_segment_prefix(&key, p.id, loc.offset, sealed, upto).unwrap();
                assert_eq!(plain.len(), upto);
                assert_eq!(
                    chunk_from_segment(&key, &plain, *id, loc).unwrap(),
                    chunks[i].as_slice()
                );
                let whole = decode_segment(&key, p.id, loc.offset, sealed).unwrap();
                assert_eq!(
                    decode_segment_prefix(&key, p.id, loc.offset, sealed, usize::MAX).unwrap(),
                    whole
                );
            }
            let (_, loc) = p.entries[0];
            let mut bad = p.bytes[loc.offset as usize..(loc.offset + loc.len) as usize].to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(matches!(
                decode_segment_prefix(&key, p.id, loc.offset, &bad, 10),
                Err(Error::DamagedData { .. })
            ));
        }
    }

    /// Rows of text laid out by columns: chunks cut anywhere (mid-row, mid-field) come back
    /// exactly, whole or as a prefix, from a segment smaller than the rows laid as they are;
    /// bytes that are not rows keep the plain encoding.
    #[test]
    fn rows_laid_out_by_columns_come_back_exactly_and_smaller() {
        let key = MasterKey::generate();
        let mut text = Vec::new();
        for i in 0..20_000u64 {
            let h = blake3::hash(&i.to_le_bytes());
            let b = h.as_bytes();
            text.extend_from_slice(
                format!(
                    "{i}\t{}\t{}\tconfirmed\t{}\t2026-0{}-1{} 1{}:0{}:{}.{}+00\n",
                    b[0] as u32 * 97,
                    b[1] as u32 * 13,
                    b[2] % 4 + 1,
                    b[3] % 9 + 1,
                    b[4] % 10,
                    b[5] % 10,
                    b[6] % 10,
                    b[7] % 60,
                    u32::from_le_bytes([b[8], b[9], b[10], 0]),
                )
                .as_bytes(),
            );
        }
        // Cut at arbitrary places, as content-defined chunks of a dump are.
        let cuts = [0, 1000, 1001, 54_321, 200_000, 600_007, text.len()];
        let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
        let with_ids: Vec<(ChunkId, &[u8])> =
            chunks.iter().map(|c| (key.chunk_id(c), *c)).collect();
        let seal = |layout| {
            let mut b = PackBuilder::default();
            let mut z = zstd::bulk::Compressor::new(1).unwrap();
            b.add(&encode_segment(&key, &mut z, &with_ids, layout));
            b.finish(&key)
        };
        let (plain_pack, laid_pack) = (seal(Layout::AsIs), seal(Layout::Columns));
        assert!(
            laid_pack.bytes.len() * 100 < plain_pack.bytes.len() * 95,
            "by columns {} bytes, as rows {}",
            laid_pack.bytes.len(),
            plain_pack.bytes.len()
        );
        let p = laid_pack;
        let (_, loc) = p.entries[0];
        let sealed = &p.bytes[loc.offset as usize..(loc.offset + loc.len) as usize];
        assert_eq!(
            key.open(&p.id.object_key(), SEGMENT_AAD, sealed).unwrap()[0],
            2
        );
        for ((id, loc), c) in p.entries.iter().zip(&chunks) {
            let whole = decode_segment(&key, p.id, loc.offset, sealed).unwrap();
            assert_eq!(chunk_from_segment(&key, &whole, *id, loc).unwrap(), *c);
            let upto = (loc.inner_offset + loc.inner_len) as usize;
            let prefix = decode_segment_prefix(&key, p.id, loc.offset, sealed, upto).unwrap();
            assert_eq!(chunk_from_segment(&key, &prefix, *id, loc).unwrap(), *c);
        }
        assert_eq!(verify(&key, p.id, &p.bytes).unwrap(), p.entries);
        // Pages are not rows: the same call stores them as before.
        let page = vec![7u8; 4096];
        let id = key.chunk_id(&page);
        let mut z = zstd::bulk::Compressor::new(1).unwrap();
        let s = encode_segment(&key, &mut z, &[(id, &page)], Layout::Columns);
        assert_eq!(key.open("x", SEGMENT_AAD, &s.sealed).unwrap()[0], 1);
    }
}

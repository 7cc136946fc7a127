//! Re-framing `pg_dump`'s uncompressed custom archive as it streams into the repository:
//! the table data travels in content-defined frames of a few KiB instead of one frame per row.
//!
//! Why: with `-Z0`, `pg_dump` writes every row it gets from `COPY` as its own length-prefixed
//! chunk (pg_backup_custom.c: one `WriteData` per row), so every ~100-byte row carries five
//! bytes of binary length. They cost 5% of the bytes and, worse, break zstd's matches between
//! rows: measured on a 464 MB dump of 4 M bookings, zstd level 1 in 4 MiB blocks stored
//! 152.1 MB with the prefixes and 142.4 MB without. Any framing is a valid archive
//! (`pg_restore` and `dump_format` read chunks of any length), so the stored file stays a
//! custom archive that `pg_restore` and `export` take as it is.
//!
//! Frames end after a row chosen by the row's own bytes (its first and last 16 bytes and its
//! length), with a probability proportional to the row's length (8 KiB of rows per frame on
//! average), so a changed or inserted row moves no frame boundary but its own: the
//! content-defined chunks downstream still deduplicate. A frame never exceeds 1 MiB (a longer
//! run is cut where it stands). The header and TOC, large objects and anything not understood
//! pass through byte for byte. Must not count rows or store anything.

use super::super::dump_format::{self, BLK_BLOBS, BLK_DATA};
use std::io::{Read, Write};

/// Average bytes of rows per frame.
const AVG_FRAME: u64 = 8 * 1024;
/// Largest frame.
const MAX_FRAME: usize = 1 << 20;

/// Copies the archive from `input` to `out`, re-framing table data. An archive this does not
/// recognise (another format, a compressed one, an unknown version) is copied unchanged; an
/// error is a read or write failure or a data section that does not parse.
pub(super) fn reframe(input: &mut impl Read, out: &mut impl Write) -> std::io::Result<()> {
    let mut rec = Recording {
        inner: input,
        seen: Vec::new(),
    };
    let toc = dump_format::read_toc(&mut rec);
    out.write_all(&rec.seen)?;
    let input = rec.inner;
    let toc = match toc {
        Ok(t) if !t.compressed => t,
        // Not ours to understand: stored as pg_dump wrote it.
        _ => {
            std::io::copy(input, out)?;
            return Ok(());
        }
    };
    let isz = toc.int_size;
    let mut frame = Framer::new(isz);
    loop {
        let mut kind = [0u8; 1];
        if input.read(&mut kind)? == 0 {
            return Ok(());
        }
        out.write_all(&kind)?;
        let _id = copy_int(input, out, isz)?;
        match kind[0] {
            BLK_DATA => loop {
                let len = dump_format::int(input, isz)?;
                if len == 0 {
                    frame.finish(out)?;
                    write_int(out, 0, isz)?;
                    break;
                }
                if !(0..=1 << 30).contains(&len) {
                    return Err(std::io::Error::other("chunk length out of range"));
                }
                frame.push(input, len as usize, out)?;
            },
            BLK_BLOBS => loop {
                if copy_int(input, out, isz)? == 0 {
                    break;
                }
                loop {
                    let len = copy_int(input, out, isz)?;
                    if len == 0 {
                        break;
                    }
                    if !(0..=1 << 30).contains(&len) {
                        return Err(std::io::Error::other("chunk length out of range"));
                    }
                    std::io::copy(&mut input.by_ref().take(len as u64), out)?;
                }
            },
            _ => {
                // A block type this does not know: the rest as it is.
                std::io::copy(input, out)?;
                return Ok(());
            }
        }
    }
}

/// Gathers a table's rows and writes them out in content-defined frames.
struct Framer {
    isz: usize,
    buf: Vec<u8>,
    /// Where the row being gathered starts in `buf`.
    line: usize,
    /// How far `buf` has been searched for row ends.
    scanned: usize,
}

impl Framer {
    fn new(isz: usize) -> Self {
        Framer {
            isz,
            buf: Vec::with_capacity(MAX_FRAME),
            line: 0,
            scanned: 0,
        }
    }

    /// Takes one chunk of `len` bytes from `input`; writes out the frames it completes.
    fn push(
        &mut self,
        input: &mut impl Read,
        len: usize,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let mut left = len;
        while left > 0 {
            let take = left.min(MAX_FRAME - self.buf.len());
            let start = self.buf.len();
            self.buf.resize(start + take, 0);
            input.read_exact(&mut self.buf[start..])?;
            left -= take;
            self.cut(out)?;
        }
        Ok(())
    }

    /// Writes out every frame that ends in `buf`, keeping the rest.
    fn cut(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let mut emitted = 0;
        while let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let end = self.scanned + i + 1;
            self.scanned = end;
            let row = &self.buf[self.line..end];
            self.line = end;
            if ends_frame(row) {
                self.emit(emitted, end, out)?;
                emitted = end;
            }
        }
        self.scanned = self.buf.len();
        while self.buf.len() - emitted >= MAX_FRAME {
            let end = emitted + MAX_FRAME;
            self.emit(emitted, end, out)?;
            emitted = end;
            self.line = self.line.max(end);
        }
        self.buf.drain(..emitted);
        self.line -= emitted;
        self.scanned -= emitted;
        Ok(())
    }

    fn emit(&self, from: usize, to: usize, out: &mut impl Write) -> std::io::Result<()> {
        if to > from {
            write_int(out, (to - from) as i64, self.isz)?;
            out.write_all(&self.buf[from..to])?;
        }
        Ok(())
    }

    /// The table's last frame.
    fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        self.emit(0, self.buf.len(), out)?;
        self.buf.clear();
        self.line = 0;
        self.scanned = 0;
        Ok(())
    }
}

/// Whether a frame ends after this row (newline included): a hash of its ends and length
/// decides, with a chance of `len / AVG_FRAME`.
fn ends_frame(row: &[u8]) -> bool {
    let len = row.len() as u64;
    if len >= AVG_FRAME {
        return true;
    }
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let mut h = len.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let head = &row[..row.len().min(16)];
    let tail = &row[row.len().saturating_sub(16)..];
    for part in [head, tail] {
        for c in part.chunks(8) {
            h = (h ^ word(c)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
            h ^= h >> 29;
        }
    }
    // Probability len / AVG_FRAME: compare the hash's top 32 bits with that fraction of 2^32.
    (h >> 32) < (len << 32) / AVG_FRAME
}

/// Copies one archive integer from `input` to `out` byte for byte; returns its value.
fn copy_int(input: &mut impl Read, out: &mut impl Write, isz: usize) -> std::io::Result<i64> {
    let mut raw = vec![0u8; 1 + isz];
    input.read_exact(&mut raw)?;
    out.write_all(&raw)?;
    dump_format::int(&mut &raw[..], isz)
}

/// Writes an archive integer: a sign byte, then `isz` little-endian bytes.
fn write_int(out: &mut impl Write, v: i64, isz: usize) -> std::io::Result<()> {
    let mut raw = Vec::with_capacity(1 + isz);
    raw.push(u8::from(v < 0));
    let abs = v.unsigned_abs();
    for i in 0..isz {
        raw.push(if i < 8 { (abs >> (8 * i)) as u8 } else { 0 });
    }
    out.write_all(&raw)
}

/// A reader that keeps what it read (the archive's header and TOC, passed on unchanged).
struct Recording<'a, R> {
    inner: &'a mut R,
    seen: Vec<u8>,
}

impl<R: Read> Read for Recording<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::dump_format::tests::{handmade, w_int};
    use super::*;

    /// An archive whose table (dump id 7) holds `rows`, one chunk per row as `pg_dump -Z0`
    /// writes them, then a large object.
    fn archive(rows: &[String]) -> Vec<u8> {
        let mut a = handmade();
        a.push(BLK_DATA);
        w_int(&mut a, 7);
        for r in rows {
            w_int(&mut a, r.len() as i64);
            a.extend_from_slice(r.as_bytes());
        }
        w_int(&mut a, 3);
        a.extend_from_slice(b"\\.\n");
        w_int(&mut a, 0);
        a.push(BLK_BLOBS);
        w_int(&mut a, 9);
        w_int(&mut a, 16384);
        w_int(&mut a, 3);
        a.extend_from_slice(b"x\ny");
        w_int(&mut a, 0);
        w_int(&mut a, 0);
        a
    }

    fn rows(n: usize, skip: Option<usize>) -> Vec<String> {
        (0..n)
            .filter(|&i| Some(i) != skip)
            .map(|i| format!("{i}\tguest{}\t{}\tnote {}\n", i * 7 % 1000, i % 4, i * 13))
            .collect()
    }

    fn reframed(a: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        reframe(&mut &a[..], &mut out).unwrap();
        out
    }

    /// The table's frames in a re-framed archive.
    fn frames(a: &[u8]) -> Vec<Vec<u8>> {
        let mut r = a;
        let toc = dump_format::read_toc(&mut r).unwrap();
        let mut kind = [0u8; 1];
        r.read_exact(&mut kind).unwrap();
        assert_eq!(kind[0], BLK_DATA);
        assert_eq!(dump_format::int(&mut r, toc.int_size).unwrap(), 7);
        let mut out = Vec::new();
        loop {
            let len = dump_format::int(&mut r, toc.int_size).unwrap();
            if len == 0 {
                return out;
            }
            let mut f = vec![0u8; len as usize];
            r.read_exact(&mut f).unwrap();
            out.push(f);
        }
    }

    #[test]
    fn keeps_the_rows_in_fewer_frames_and_the_archive_valid() {
        let rows = rows(5000, None);
        let a = archive(&rows);
        let out = reframed(&a);
        assert!(out.len() < a.len() - 4000 * 5, "most row prefixes are gone");
        let f = frames(&out);
        assert!(f.len() > 3 && f.len() < 200, "{} frames", f.len());
        let data: Vec<u8> = f.concat();
        let expected: Vec<u8> = rows
            .concat()
            .into_bytes()
            .into_iter()
            .chain(*b"\\.\n")
            .collect();
        assert_eq!(data, expected);
        // Still an archive the reader takes, with the same rows and the large object intact.
        let mut r = &out[..];
        let toc = dump_format::read_toc(&mut r).unwrap();
        let counts = dump_format::count_data(&mut r, &toc).unwrap();
        assert_eq!(counts[&("public".into(), "bookings".into())], 5000);
        assert!(
            out.ends_with(&a[a.len() - 30..]),
            "large object copied as it was"
        );
    }

    #[test]
    fn a_removed_row_moves_no_other_frame_boundary() {
        let before = frames(&reframed(&archive(&rows(5000, None))));
        let after = frames(&reframed(&archive(&rows(5000, Some(2500)))));
        let changed = after.iter().filter(|f| !before.contains(f)).count();
        assert_eq!(changed, 1, "only the frame that held the row changed");
        assert_eq!(before.len(), after.len());
    }

    #[test]
    fn what_it_does_not_know_passes_unchanged() {
        let not_an_archive = b"PGDMX and some bytes".to_vec();
        assert_eq!(reframed(&not_an_archive), not_an_archive);
        let mut odd = handmade();
        odd.push(4);
        w_int(&mut odd, 7);
        odd.extend_from_slice(b"whatever follows");
        assert_eq!(reframed(&odd), odd);
    }

    #[test]
    fn a_long_row_is_cut_at_the_largest_frame() {
        let long = format!("1\t{}\n", "x".repeat(3 * MAX_FRAME));
        let a = archive(std::slice::from_ref(&long));
        let f = frames(&reframed(&a));
        assert!(f.iter().all(|f| f.len() <= MAX_FRAME));
        assert_eq!(f.concat(), [long.as_bytes(), b"\\.\n"].concat());
    }

    #[test]
    fn a_cut_short_archive_is_an_error() {
        let a = archive(&rows(100, None));
        let mut out = Vec::new();
        let e = reframe(&mut &a[..a.len() - 200], &mut out).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}

//! Reading a live database's `-wal` and `-shm` files: the committed frames, checked.
//!
//! Owns the on-disk formats SQLite documents (<https://sqlite.org/fileformat2.html#walformat>)
//! and the one undocumented but stable header replication needs: the wal-index header at the
//! start of `-shm`, whose `mxFrame` says how many frames are committed. Must not take locks
//! or write anything: the capture (`super::capture`) holds the read transaction that keeps
//! these frames from being overwritten while they are read.
//!
//! Why both files: the WAL alone cannot tell a committed frame from one a writer is still
//! appending (or left behind when it crashed); `mxFrame` can, and SQLite's own readers trust
//! it. Every frame read is still checked as SQLite checks it on recovery: the salts of the
//! WAL header, and the cumulative checksum chained from the header through every frame.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of the WAL file header.
pub const HEADER: u64 = 32;
/// Bytes of a frame header.
pub const FRAME_HEADER: u64 = 24;

/// Where the WAL stands after some frame: the generation (salts) and the cumulative
/// checksum there, so that the next frame can be checked and a restart recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The WAL generation's salts (they change each time the WAL restarts).
    pub salt: [u32; 2],
    /// Frames of this generation consumed (0: just the header).
    pub frame: u32,
    /// The cumulative checksum after that frame (the header's checksum for frame 0).
    pub checksum: [u32; 2],
    /// Whether checksums are computed on big-endian words (the WAL magic says).
    pub big_endian: bool,
}

/// One frame: a page image, and for the last frame of a transaction the database's size
/// in pages after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The page number (1-based).
    pub page: u32,
    /// Non-zero on a commit frame: the database size in pages after the commit.
    pub commit: u32,
    /// The page image.
    pub data: Vec<u8>,
}

/// The wal-index header's facts replication needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexHeader {
    /// Committed frames in the WAL.
    pub max_frame: u32,
    /// The salts of the WAL generation the index describes.
    pub salt: [u32; 2],
    /// The page size.
    pub page_size: u32,
    /// Frames already copied into the database file (`nBackfill`, right after the header).
    pub backfilled: u32,
}

/// The `-wal` file of `db`.
pub fn wal_path(db: &Path) -> PathBuf {
    super::super::sidecar(db, "-wal")
}

/// The `-shm` file of `db`.
pub fn shm_path(db: &Path) -> PathBuf {
    super::super::sidecar(db, "-shm")
}

fn corrupt(path: &Path, what: String) -> Error {
    Error::Source(format!("{}: {what}", path.display()))
}

/// Reads the wal-index header from `-shm` as SQLite's readers do: both copies equal and
/// initialised, else tried again (a writer was updating it). `None` when there is no
/// usable index (no `-shm`, or never initialised).
pub fn read_index(shm: &File, path: &Path) -> Result<Option<IndexHeader>> {
    let mut buf = [0u8; 100];
    for _ in 0..100 {
        match shm.read_exact_at(&mut buf, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::io("reading", path, e)),
        }
        let (a, b) = buf[..96].split_at(48);
        if a != b {
            std::thread::yield_now();
            continue;
        }
        if a[12] == 0 {
            return Ok(None);
        }
        let ne = |i: usize| u32::from_ne_bytes(a[i..i + 4].try_into().expect("4 bytes"));
        let be = |i: usize| u32::from_be_bytes(a[i..i + 4].try_into().expect("4 bytes"));
        let sz = u16::from_ne_bytes([a[14], a[15]]) as u32;
        let page_size = (sz & 0xff00) | ((sz & 1) << 16);
        return Ok(Some(IndexHeader {
            max_frame: ne(16),
            // The salts are copied from the WAL header byte for byte (big-endian there).
            salt: [be(32), be(36)],
            page_size,
            backfilled: u32::from_ne_bytes(buf[96..100].try_into().expect("4 bytes")),
        }));
    }
    Err(corrupt(
        path,
        "the wal-index header kept changing while being read".into(),
    ))
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn checksum(big_endian: bool, data: &[u8], s: [u32; 2]) -> [u32; 2] {
    let (mut s1, mut s2) = (s[0], s[1]);
    for w in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().expect("4 bytes");
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        s1 = s1.wrapping_add(word(&w[..4])).wrapping_add(s2);
        s2 = s2.wrapping_add(word(&w[4..])).wrapping_add(s1);
    }
    [s1, s2]
}

/// Reads and checks the WAL header: the position before its first frame, and its page size.
/// `None` when the file is shorter than a header (a WAL not written since it was reset).
pub fn read_header(wal: &File, path: &Path) -> Result<Option<(Position, u32)>> {
    let mut h = [0u8; HEADER as usize];
    match wal.read_exact_at(&mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("reading", path, e)),
    }
    let be = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let big_endian = match be(0) {
        0x377f_0682 => false,
        0x377f_0683 => true,
        _ => return Ok(None),
    };
    let sum = checksum(big_endian, &h[..24], [0, 0]);
    if sum != [be(24), be(28)] {
        // A header being rewritten at this moment, or a WAL never completed: no frames.
        return Ok(None);
    }
    Ok(Some((
        Position {
            salt: [be(16), be(20)],
            frame: 0,
            checksum: sum,
            big_endian,
        },
        be(8),
    )))
}

/// The checksum recorded in frame `n`'s header (1-based), or `None` past the file's end.
pub fn frame_checksum(wal: &File, path: &Path, page_size: u32, n: u32) -> Result<Option<[u32; 2]>> {
    if n == 0 {
        return Ok(read_header(wal, path)?.map(|(p, _)| p.checksum));
    }
    let mut h = [0u8; FRAME_HEADER as usize];
    let at = frame_offset(page_size, n);
    match wal.read_exact_at(&mut h, at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("reading", path, e)),
    }
    let be = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    Ok(Some([be(16), be(20)]))
}

/// Where frame `n` (1-based) starts.
fn frame_offset(page_size: u32, n: u32) -> u64 {
    HEADER + (n as u64 - 1) * (FRAME_HEADER + page_size as u64)
}

/// Reads frames `from.frame + 1 ..= to`, each checked against the salts and the chained
/// checksum of `from`, handing each to `each`; returns the position after frame `to`.
/// Fails when a frame does not check (the caller then starts a new base).
pub fn read_frames(
    wal: &File,
    path: &Path,
    page_size: u32,
    from: Position,
    to: u32,
    mut each: impl FnMut(Frame) -> Result<()>,
) -> Result<Position> {
    let mut pos = from;
    let frame_len = (FRAME_HEADER + page_size as u64) as usize;
    let mut buf = vec![0u8; frame_len];
    while pos.frame < to {
        let n = pos.frame + 1;
        wal.read_exact_at(&mut buf, frame_offset(page_size, n))
            .map_err(|e| Error::io("reading", path, e))?;
        let be = |i: usize| u32::from_be_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
        if [be(8), be(12)] != pos.salt {
            return Err(corrupt(
                path,
                format!("frame {n} belongs to another WAL generation"),
            ));
        }
        let sum = checksum(pos.big_endian, &buf[..8], pos.checksum);
        let sum = checksum(pos.big_endian, &buf[FRAME_HEADER as usize..], sum);
        if sum != [be(16), be(20)] {
            return Err(corrupt(path, format!("frame {n} fails its checksum")));
        }
        each(Frame {
            page: be(0),
            commit: be(4),
            data: buf[FRAME_HEADER as usize..].to_vec(),
        })?;
        pos.frame = n;
        pos.checksum = sum;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// A database in WAL mode that never checkpoints on its own.
    fn wal_db(dir: &Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("w.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t(x BLOB);",
        )
        .unwrap();
        (path, c)
    }

    #[test]
    fn every_committed_frame_checks_and_the_index_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let (path, c) = wal_db(dir.path());
        for _ in 0..5 {
            c.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                .unwrap();
        }
        let shm = File::open(shm_path(&path)).unwrap();
        let idx = read_index(&shm, &path).unwrap().expect("an index");
        let wal = File::open(wal_path(&path)).unwrap();
        let (start, page_size) = read_header(&wal, &path).unwrap().expect("a header");
        assert_eq!(start.salt, idx.salt);
        assert_eq!(page_size, idx.page_size);
        let mut frames = Vec::new();
        let end = read_frames(&wal, &path, page_size, start, idx.max_frame, |f| {
            frames.push(f);
            Ok(())
        })
        .unwrap();
        assert_eq!(end.frame, idx.max_frame);
        assert!(frames.last().unwrap().commit > 0, "the last frame commits");
        assert_eq!(
            frame_checksum(&wal, &path, page_size, end.frame).unwrap(),
            Some(end.checksum)
        );
        // Reading on from the middle gives the same end.
        let mid = read_frames(&wal, &path, page_size, start, 3, |_| Ok(())).unwrap();
        let again = read_frames(&wal, &path, page_size, mid, idx.max_frame, |_| Ok(())).unwrap();
        assert_eq!(again, end);
    }

    #[test]
    fn a_flipped_byte_or_another_generation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, c) = wal_db(dir.path());
        c.execute("INSERT INTO t VALUES (randomblob(3000))", [])
            .unwrap();
        let wal_file = wal_path(&path);
        let wal = File::open(&wal_file).unwrap();
        let (start, page_size) = read_header(&wal, &path).unwrap().unwrap();
        let rw = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal_file)
            .unwrap();
        rw.write_all_at(&[0xAA], HEADER + FRAME_HEADER + 100)
            .unwrap();
        let e = read_frames(&wal, &path, page_size, start, 1, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("fails its checksum"), "{e}");
        let other = Position {
            salt: [start.salt[0] ^ 1, start.salt[1]],
            ..start
        };
        let e = read_frames(&wal, &path, page_size, other, 1, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("another WAL generation"), "{e}");
    }
}

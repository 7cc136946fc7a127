//! Pieces: the parts of a WAL segment that `wal receive` made durable before the segment
//! was complete, and how readers of the archive put them together.
//!
//! A piece is archived as `<segment>.pieces/<from>-<to>` in the segment's timeline folder
//! (`from` and `to` are byte offsets in the segment, eight hex digits each), sealed like
//! every archived file. A folder per segment lets a reader list one segment's pieces alone,
//! and the offsets in the name tell how far they reach without reading them. Once the
//! segment is complete it is archived under its own name, exactly as `archive_command`
//! would archive it, and its pieces are deleted (prune removes any left behind). Pieces
//! may overlap (a receiver that restarts takes the segment again from its start): the
//! bytes of one position are the same in every piece that holds it.
//!
//! Owns piece names and putting pieces together: contiguous from offset 0, then zeros to
//! the segment's size, which recovery reads as the end of WAL. Must not decide when pieces
//! are written (that is [`super::receive`]'s).

use super::wal::{WalKind, WalName};
use crate::error::{Error, Result};
use crate::repository::archive::Archive;

/// The folder a segment's pieces are in, inside its timeline folder.
pub fn folder(segment: &str) -> String {
    format!("{segment}.pieces")
}

/// The archive name (relative to the timeline folder) of the piece of `segment` holding
/// bytes `from..to`.
pub fn name(segment: &str, from: u64, to: u64) -> String {
    format!("{}/{from:08X}-{to:08X}", folder(segment))
}

/// A piece as its archive name describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The segment it is part of.
    pub segment: WalName,
    /// First byte offset held.
    pub from: u64,
    /// Offset just past the last byte held.
    pub to: u64,
}

impl Piece {
    /// Parses an archive name (`<segment>.pieces/<from>-<to>`); `None` for anything else.
    pub fn parse(name: &str) -> Option<Piece> {
        let (dir, range) = name.split_once('/')?;
        let segment = WalName::parse(dir.strip_suffix(".pieces")?)?;
        if segment.kind != WalKind::Segment {
            return None;
        }
        let (from, to) = range.split_once('-')?;
        let hex = |s: &str| {
            (s.len() == 8)
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
        };
        let (from, to) = (hex(from)?, hex(to)?);
        (from < to).then_some(Piece { segment, from, to })
    }
}

/// How far pieces holding `ranges` reach without a gap from offset 0.
pub fn contiguous(ranges: &[(u64, u64)]) -> u64 {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut end = 0;
    for (from, to) in sorted {
        if from > end {
            break;
        }
        end = end.max(to);
    }
    end
}

/// The segment size a segment's first bytes record (the long page header's
/// `xlp_seg_size`, at offset 32, the same in every version strongroom supports).
pub fn segment_size_of(first: &[u8]) -> Option<u64> {
    let size = u32::from_le_bytes(first.get(32..36)?.try_into().ok()?) as u64;
    (size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size)).then_some(size)
}

/// Segment `segment` (on its timeline) put together from its pieces: the bytes contiguous
/// from offset 0, then zeros to the segment's size; `None` when no piece starts at 0.
/// Also returns how many bytes the pieces held.
pub fn assemble(archive: &Archive, segment: &WalName) -> Result<Option<(Vec<u8>, u64)>> {
    let folder_name = folder(&segment.name);
    let tli = segment.timeline_folder();
    let mut pieces: Vec<(Piece, String)> = archive
        .list_folder(&tli, &folder_name)?
        .into_iter()
        .filter_map(|l| Some((Piece::parse(&l.name)?, l.name)))
        .collect();
    pieces.sort_by_key(|(p, _)| (p.from, std::cmp::Reverse(p.to)));
    let mut data: Vec<u8> = Vec::new();
    for (p, name) in &pieces {
        let end = data.len() as u64;
        if p.from > end {
            break;
        }
        if p.to <= end {
            continue;
        }
        let bytes = archive.get(&tli, name)?;
        if bytes.len() as u64 != p.to - p.from {
            return Err(Error::corrupt(
                archive.object_key(&tli, name),
                "a WAL piece whose length is not the one its name gives",
            ));
        }
        data.extend_from_slice(&bytes[(end - p.from) as usize..]);
    }
    if data.is_empty() {
        return Ok(None);
    }
    let held = data.len() as u64;
    let size = segment_size_of(&data).ok_or_else(|| {
        Error::corrupt(
            archive.object_key(&tli, &folder_name),
            "the first piece of a WAL segment does not start with a segment header",
        )
    })?;
    if held > size {
        return Err(Error::corrupt(
            archive.object_key(&tli, &folder_name),
            "WAL pieces reach past the end of their segment",
        ));
    }
    data.resize(size as usize, 0);
    Ok(Some((data, held)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_pieces_put_together() {
        let n = name("000000010000000000000003", 0, 0x2000);
        assert_eq!(n, "000000010000000000000003.pieces/00000000-00002000");
        let p = Piece::parse(&n).unwrap();
        assert_eq!((p.from, p.to, p.segment.timeline), (0, 0x2000, 1));
        for bad in [
            "000000010000000000000003",
            "000000010000000000000003.pieces/00000010-00000010",
            "000000010000000000000003.pieces/0-10",
            "00000002.history.pieces/00000000-00000010",
            "000000010000000000000003.partial/00000000-00000010",
        ] {
            assert!(Piece::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(contiguous(&[(0, 10), (10, 20), (30, 40)]), 20);
        assert_eq!(contiguous(&[(5, 10)]), 0);
        assert_eq!(contiguous(&[(0, 15), (10, 20), (0, 5)]), 20);

        let repo = crate::repository::writer::tests::memory_repo();
        let archive = Archive::new(&repo, "42");
        let seg = WalName::parse("000000010000000000000003").unwrap();
        assert!(assemble(&archive, &seg).unwrap().is_none());
        let mut wal = vec![7u8; 0x3000];
        wal[32..36].copy_from_slice(&(1u32 << 20).to_le_bytes());
        // Overlapping pieces, as a restarted receiver leaves them, and one past a gap.
        for (from, to) in [(0, 0x1000), (0, 0x2000), (0x1800, 0x2800), (0x2c00, 0x3000)] {
            archive
                .put_new(
                    "00000001",
                    &name(&seg.name, from, to),
                    &wal[from as usize..to as usize],
                    1,
                )
                .unwrap();
        }
        let (data, held) = assemble(&archive, &seg).unwrap().unwrap();
        assert_eq!(held, 0x2800);
        assert_eq!(data.len(), 1 << 20);
        assert_eq!(&data[..0x2800], &wal[..0x2800]);
        assert!(data[0x2800..].iter().all(|b| *b == 0));
    }
}

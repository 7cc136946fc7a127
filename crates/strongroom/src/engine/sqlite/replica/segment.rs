//! A segment: the transactions one capture round found, as they go into the repository.
//!
//! Owns the plaintext layout of a segment (the repository seals it whole, with its object
//! key as associated data: `repository::frames`), so page numbers, transaction ids, the
//! times and the WAL position are all authenticated, and a segment renamed or moved to
//! another chain does not open. Must not do I/O.
//!
//! ```text
//! "SRSQS1" ‖ page size u32 ‖ first txid u64 ‖ last txid u64 ‖ transactions u32 ‖ end position
//! (salts, frame, checksum, big-endian flag: 21 bytes)
//! per transaction: captured at (µs since the epoch, i64) ‖ database pages after it u32 ‖
//!   pages u32 ‖ pages × (page number u32 ‖ page image)
//! ```
//! Integers little-endian. Transaction ids count from 1 in each chain, one per commit, so a
//! gap between segments is seen on restore. A round's transactions are stored merged: one
//! transaction standing for all of `first..=last` (the last image of every page they
//! wrote, and the state after the last of them), since they were all captured at the same
//! moment; a *compacted* segment ([`Merger`]) merges many rounds the same way.

use super::wal_file::Position;
use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"SRSQS1";

/// One committed transaction: the pages it wrote (the last image of each, in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Its id in the chain (1, 2, …).
    pub txid: u64,
    /// When the capture saw it committed.
    pub captured_at: jiff::Timestamp,
    /// The database's size in pages after it.
    pub db_pages: u32,
    /// The pages it wrote: number and image.
    pub pages: Vec<(u32, Vec<u8>)>,
}

/// A segment: consecutive transactions, and where the WAL stood after the last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The database's page size.
    pub page_size: u32,
    /// The id of the first transaction it covers.
    pub first: u64,
    /// The transactions, ids consecutive (one, standing for `first_txid..=last_txid`, in a
    /// compacted segment).
    pub transactions: Vec<Transaction>,
    /// The WAL position after the last transaction (for resuming after a restart).
    pub end: Position,
}

impl Segment {
    /// The id of the first transaction it covers.
    pub fn first_txid(&self) -> u64 {
        self.first
    }

    /// The id of the last transaction it covers (0 when empty).
    pub fn last_txid(&self) -> u64 {
        self.transactions.last().map_or(0, |t| t.txid)
    }

    /// The plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .transactions
            .iter()
            .map(|t| 16 + t.pages.iter().map(|p| 4 + p.1.len()).sum::<usize>())
            .sum();
        let mut out = Vec::with_capacity(64 + size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.last_txid().to_le_bytes());
        out.extend_from_slice(&(self.transactions.len() as u32).to_le_bytes());
        for v in [
            self.end.salt[0],
            self.end.salt[1],
            self.end.frame,
            self.end.checksum[0],
            self.end.checksum[1],
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(self.end.big_endian as u8);
        for t in &self.transactions {
            out.extend_from_slice(&t.captured_at.as_microsecond().to_le_bytes());
            out.extend_from_slice(&t.db_pages.to_le_bytes());
            out.extend_from_slice(&(t.pages.len() as u32).to_le_bytes());
            for (n, data) in &t.pages {
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(data);
            }
        }
        out
    }

    /// Reads plaintext bytes back; `object` names the segment in errors.
    pub fn decode(object: &str, bytes: &[u8]) -> Result<Segment> {
        let bad = |what: &str| Error::corrupt(object, what);
        let mut r = Reader { bytes, at: 0 };
        if r.take(6).ok_or_else(|| bad("too short"))? != MAGIC {
            return Err(bad("not a SQLite frame segment"));
        }
        let short = || bad("truncated");
        let page_size = r.u32().ok_or_else(short)?;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(bad("impossible page size"));
        }
        let first = r.u64().ok_or_else(short)?;
        let last = r.u64().ok_or_else(short)?;
        let count = r.u32().ok_or_else(short)?;
        // Either one transaction each, or one standing for the whole range (compacted).
        let merged = count == 1 && last != first;
        if count > 0 && !merged && first.checked_add(count as u64 - 1) != Some(last) {
            return Err(bad("its transaction ids do not add up"));
        }
        let mut e = [0u32; 5];
        for v in &mut e {
            *v = r.u32().ok_or_else(short)?;
        }
        let big_endian = r.take(1).ok_or_else(short)?[0] != 0;
        let end = Position {
            salt: [e[0], e[1]],
            frame: e[2],
            checksum: [e[3], e[4]],
            big_endian,
        };
        let mut transactions = Vec::with_capacity(count.min(1 << 16) as usize);
        for i in 0..count as u64 {
            let at = r.i64().ok_or_else(short)?;
            let db_pages = r.u32().ok_or_else(short)?;
            let n = r.u32().ok_or_else(short)?;
            let mut pages = Vec::with_capacity(n.min(1 << 16) as usize);
            for _ in 0..n {
                let no = r.u32().ok_or_else(short)?;
                let data = r.take(page_size as usize).ok_or_else(short)?;
                pages.push((no, data.to_vec()));
            }
            transactions.push(Transaction {
                txid: if merged { last } else { first + i },
                captured_at: jiff::Timestamp::from_microsecond(at)
                    .map_err(|_| bad("impossible time"))?,
                db_pages,
                pages,
            });
        }
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(Segment {
            page_size,
            first,
            transactions,
            end,
        })
    }

    /// This segment and `later` (the transactions right after it) as one, merged.
    pub fn followed_by(&self, later: &Segment) -> Segment {
        let mut m = Merger::default();
        m.add(0, self);
        m.add(1, later);
        m.take().expect("two segments merged")
    }

    /// Whether this is a compacted segment (one transaction standing for several).
    pub fn is_merged(&self) -> bool {
        self.transactions.len() == 1 && self.last_txid() != self.first
    }
}

/// Rounds merged into one compacted segment as they are stored: the last image of each
/// page, and the state after the last transaction. Memory is bounded by the caller, which
/// flushes at a number of rounds or bytes.
#[derive(Debug, Default)]
pub struct Merger {
    /// The first round (segment number) merged.
    pub first_seq: u64,
    /// The last round merged.
    pub last_seq: u64,
    first: u64,
    pages: std::collections::BTreeMap<u32, Vec<u8>>,
    bytes: usize,
    last: Option<(u64, jiff::Timestamp, u32, Position, u32)>,
}

impl Merger {
    /// Adds round `seq` (the next after [`Merger::last_seq`], or the first).
    pub fn add(&mut self, seq: u64, s: &Segment) {
        if self.last.is_none() {
            self.first_seq = seq;
            self.first = s.first;
        }
        self.last_seq = seq;
        for t in &s.transactions {
            for (n, d) in &t.pages {
                if let Some(old) = self.pages.insert(*n, d.clone()) {
                    self.bytes -= old.len();
                }
                self.bytes += d.len();
            }
            self.last = Some((t.txid, t.captured_at, t.db_pages, s.end, s.page_size));
        }
    }

    /// Bytes of page images held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Rounds merged so far.
    pub fn rounds(&self) -> u64 {
        if self.last.is_none() {
            0
        } else {
            self.last_seq - self.first_seq + 1
        }
    }

    /// The compacted segment, and a fresh merger.
    pub fn take(&mut self) -> Option<Segment> {
        let (txid, at, db_pages, end, page_size) = self.last?;
        let pages = std::mem::take(&mut self.pages).into_iter().collect();
        let seg = Segment {
            page_size,
            first: self.first,
            transactions: vec![Transaction {
                txid,
                captured_at: at,
                db_pages,
                pages,
            }],
            end,
        };
        *self = Merger::default();
        Some(seg)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_reads_back_and_a_cut_one_does_not() {
        let seg = Segment {
            page_size: 512,
            first: 7,
            transactions: vec![
                Transaction {
                    txid: 7,
                    captured_at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
                    db_pages: 3,
                    pages: vec![(1, vec![1; 512]), (3, vec![3; 512])],
                },
                Transaction {
                    txid: 8,
                    captured_at: jiff::Timestamp::from_second(1_800_000_001).unwrap(),
                    db_pages: 2,
                    pages: vec![],
                },
            ],
            end: Position {
                salt: [1, 2],
                frame: 9,
                checksum: [3, 4],
                big_endian: false,
            },
        };
        let bytes = seg.encode();
        assert_eq!(Segment::decode("x", &bytes).unwrap(), seg);
        assert!(Segment::decode("x", &bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Segment::decode("x", &longer).is_err());
        // Merged: the last image of each page, the state after the last transaction.
        let mut m = Merger::default();
        m.add(3, &seg);
        let merged = m.take().unwrap();
        assert!(merged.is_merged());
        assert_eq!((merged.first_txid(), merged.last_txid()), (7, 8));
        assert_eq!(merged.transactions[0].db_pages, 2);
        assert_eq!(merged.transactions[0].pages.len(), 2);
        assert_eq!(Segment::decode("x", &merged.encode()).unwrap(), merged);
    }
}

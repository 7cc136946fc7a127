//! Applying a chain's captured transactions to a restored base snapshot.
//!
//! Owns the order and the stopping point of a replay: segments in number order, fetched a
//! few at a time in parallel, transactions applied whole (every page image, then the
//! database's size after it), stopping before the first transaction captured after the
//! recovery target's time. Must not choose the base snapshot (the engine's `latest_for`
//! does) nor check the result (the restore runs `integrity_check` after).
//!
//! A missing or damaged segment ends the replay at the last whole transaction before it:
//! every restore is a prefix of what was committed, never a state with a hole in it. The
//! restore says how far it got.

use super::segment::Segment;
use crate::engine::RecoveryTarget;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::frames::Chain;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Segments fetched at once.
const WINDOW: usize = 8;

/// One object a replay reads: a round's segment, or a compacted one standing for a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Round(u64),
    Compacted(u64, u64),
}

/// What to read, in order: compacted segments wherever one starts where the replay stands
/// and ends before the target (a round's store date is after its capture, so a run whose
/// last round was stored by the target time was captured by then), rounds elsewhere.
fn plan(
    rounds: &[crate::repository::frames::Listed],
    compacted: &[(u64, u64)],
    limit: Option<jiff::Timestamp>,
) -> Vec<Piece> {
    let stored: std::collections::HashMap<u64, Option<jiff::Timestamp>> =
        rounds.iter().map(|l| (l.seq, l.modified)).collect();
    let Some(end) = rounds.last().map(|l| l.seq) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = rounds[0].seq;
    while at <= end {
        let usable = compacted
            .iter()
            .filter(|(a, b)| *a == at && *b <= end)
            .filter(|(_, b)| match limit {
                None => true,
                Some(l) => stored.get(b).copied().flatten().is_some_and(|t| t <= l),
            })
            .max_by_key(|(_, b)| *b);
        match usable {
            Some(&(a, b)) => {
                out.push(Piece::Compacted(a, b));
                at = b + 1;
            }
            None => {
                out.push(Piece::Round(at));
                at += 1;
            }
        }
    }
    out
}

/// How far a replay got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Segments applied.
    pub segments: u64,
    /// Transactions applied.
    pub transactions: u64,
    /// When the last applied transaction was captured.
    pub reached: Option<jiff::Timestamp>,
    /// Why the replay stopped short of what the chain holds, when it did because of damage.
    pub cut_short: Option<String>,
}

/// Applies the chain of base snapshot `base` to `out` (the restored base pages, of
/// `page_size`), up to `until`: everything for [`RecoveryTarget::Latest`], transactions
/// captured at or before the time for [`RecoveryTarget::Time`], nothing for
/// [`RecoveryTarget::Immediate`].
pub fn apply(
    repo: &Repository,
    base: &str,
    page_size: u32,
    out: &File,
    shown: &Path,
    until: &RecoveryTarget,
) -> Result<Replayed> {
    let mut done = Replayed::default();
    let limit = match until {
        RecoveryTarget::Immediate => return Ok(done),
        RecoveryTarget::Time(t) => Some(*t),
        _ => None,
    };
    let chain = Chain::new(repo, base);
    let listed = chain.list()?;
    let plan = plan(&listed, &chain.list_compacted()?, limit);
    let mut expected_seq = 1u64;
    let mut expected_txid = 1u64;
    let mut db_pages: Option<u32> = None;
    let mut stop = false;
    'windows: for window in plan.chunks(WINDOW) {
        let fetched: Vec<(Piece, Result<Segment>)> = std::thread::scope(|s| {
            let handles: Vec<_> = window
                .iter()
                .map(|p| {
                    let chain = &chain;
                    s.spawn(move || {
                        let (key, body) = match *p {
                            Piece::Round(seq) => (chain.object_key(seq), chain.get(seq)),
                            Piece::Compacted(a, b) => {
                                (chain.compacted_key(a, b), chain.get_compacted(a, b))
                            }
                        };
                        (*p, body.and_then(|b| Segment::decode(&key, &b)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("segment fetch thread"))
                .collect()
        });
        for (piece, segment) in fetched {
            let (first, last, key) = match piece {
                Piece::Round(seq) => (seq, seq, chain.object_key(seq)),
                Piece::Compacted(a, b) => (a, b, chain.compacted_key(a, b)),
            };
            if first != expected_seq {
                done.cut_short = Some(format!("segment {expected_seq} of chain {base} is missing"));
                break 'windows;
            }
            let segment = match segment {
                Ok(s) => s,
                Err(e) => {
                    done.cut_short = Some(e.to_string());
                    break 'windows;
                }
            };
            if segment.page_size != page_size {
                return Err(Error::corrupt(
                    key,
                    "its page size differs from the base snapshot's",
                ));
            }
            if segment.first_txid() != expected_txid {
                done.cut_short = Some(format!(
                    "{key} starts at transaction {}, not {expected_txid}",
                    segment.first_txid()
                ));
                break 'windows;
            }
            for t in &segment.transactions {
                if limit.is_some_and(|l| t.captured_at > l) {
                    stop = true;
                    break;
                }
                for (no, data) in &t.pages {
                    if *no == 0 {
                        return Err(Error::corrupt(key, "page number 0"));
                    }
                    out.write_all_at(data, (*no as u64 - 1) * page_size as u64)
                        .map_err(|e| Error::io("writing the restored database", shown, e))?;
                }
                db_pages = Some(t.db_pages);
                done.reached = Some(t.captured_at);
                expected_txid = t.txid + 1;
            }
            if stop {
                break 'windows;
            }
            done.transactions = expected_txid - 1;
            done.segments += last - first + 1;
            expected_seq = last + 1;
        }
    }
    if stop {
        done.transactions = expected_txid - 1;
    }
    if let Some(n) = db_pages {
        out.set_len(n as u64 * page_size as u64)
            .map_err(|e| Error::io("writing the restored database", shown, e))?;
    }
    if let Some(why) = &done.cut_short {
        tracing::warn!("the replay stopped early: {why}");
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::frames::Listed;

    #[test]
    fn compacted_runs_are_read_only_where_they_end_by_the_target() {
        let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let rounds: Vec<Listed> = (1..=10)
            .map(|seq| Listed {
                seq,
                stored: 1,
                modified: Some(t0 + jiff::SignedDuration::from_secs(seq as i64)),
            })
            .collect();
        let compacted = [(1, 4), (5, 8), (9, 12)];
        use Piece::*;
        assert_eq!(
            plan(&rounds, &compacted, None),
            vec![Compacted(1, 4), Compacted(5, 8), Round(9), Round(10)],
            "a run past the last round is not used"
        );
        let by = t0 + jiff::SignedDuration::from_secs(6);
        assert_eq!(
            plan(&rounds, &compacted, Some(by)),
            vec![
                Compacted(1, 4),
                Round(5),
                Round(6),
                Round(7),
                Round(8),
                Round(9),
                Round(10)
            ]
        );
        assert!(plan(&[], &compacted, None).is_empty());
    }
}

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
    let mut expected_seq = 1u64;
    let mut expected_txid = 1u64;
    let mut db_pages: Option<u32> = None;
    let mut stop = false;
    'windows: for window in listed.chunks(WINDOW) {
        let fetched: Vec<(u64, Result<Segment>)> = std::thread::scope(|s| {
            let handles: Vec<_> = window
                .iter()
                .map(|l| {
                    let chain = &chain;
                    s.spawn(move || {
                        let key = chain.object_key(l.seq);
                        (
                            l.seq,
                            chain.get(l.seq).and_then(|b| Segment::decode(&key, &b)),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("segment fetch thread"))
                .collect()
        });
        for (seq, segment) in fetched {
            if seq != expected_seq {
                done.cut_short = Some(format!(
                    "segment {} of chain {base} is missing",
                    expected_seq
                ));
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
                    chain.object_key(seq),
                    "its page size differs from the base snapshot's",
                ));
            }
            if segment.first_txid() != expected_txid {
                done.cut_short = Some(format!(
                    "{} starts at transaction {}, not {expected_txid}",
                    chain.object_key(seq),
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
                        return Err(Error::corrupt(chain.object_key(seq), "page number 0"));
                    }
                    out.write_all_at(data, (*no as u64 - 1) * page_size as u64)
                        .map_err(|e| Error::io("writing the restored database", shown, e))?;
                }
                db_pages = Some(t.db_pages);
                done.transactions += 1;
                done.reached = Some(t.captured_at);
                expected_txid = t.txid + 1;
            }
            if stop {
                break 'windows;
            }
            done.segments += 1;
            expected_seq += 1;
        }
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

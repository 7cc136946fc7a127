//! Reading the journal fast, however many records it holds.
//!
//! Owns the two things that keep `journal`, `status` and `metrics` quick when the journal
//! holds thousands of records: a local cache of the records already read, and segments that
//! fold many one-record objects into one. Must not change what a record says: a segment
//! carries each record under the name of the object it replaced, so a reader that sees both
//! (between a segment's write and its singles' deletion) counts each record once.
//!
//! Why: one record is one object, written with one PUT and no coordination (a job never
//! waits on another to journal). Reading them back one GET each costs ~50 ms per record on
//! S3: 40 s for a month of hourly jobs. The cache (`<cache>/<repository id>/journal-v1`, one
//! JSON line per object read) makes every read after the first fetch only what is new, and
//! [`Repository::compact_journal`] (run by prune, under its lock) makes the first read of a
//! new host a handful of GETs too.

use super::{JOURNAL_AAD, JournalRecord};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::layout::ObjectKind;
use crate::source::SourceMatch;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

const SEGMENT_AAD: &[u8] = b"strongroom journal segment";
const SEGMENT_SUFFIX: &str = ".segment";

/// Single-record objects a compaction needs before it folds them into a segment.
pub const SEGMENT_MIN: usize = 64;

/// Which records a journal query wants.
#[derive(Clone, Debug, Default)]
pub struct JournalQuery {
    /// Records of this source (any spelling of it).
    pub source: Option<SourceMatch>,
    /// Records of this job (`backup`, `verify`, `wal push`, …).
    pub job: Option<String>,
    /// Failures only.
    pub failed: bool,
    /// Records of jobs that finished at or after this time.
    pub since: Option<jiff::Timestamp>,
}

impl JournalQuery {
    /// Whether `r` is one of the records wanted.
    pub fn matches(&self, r: &JournalRecord) -> bool {
        self.source
            .as_ref()
            .is_none_or(|m| r.source.as_deref().is_some_and(|s| m.matches(s)))
            && self.job.as_deref().is_none_or(|j| r.job == j)
            && (!self.failed || !r.ok)
            && self.since.is_none_or(|t| r.finished_at >= t)
    }
}

/// One record as stored in a segment: under the name of the object it came from.
#[derive(Clone, Serialize, Deserialize)]
struct Named {
    object: String,
    record: JournalRecord,
}

/// A cache line: the records one object holds.
#[derive(Serialize, Deserialize)]
struct CacheLine {
    object: String,
    records: Vec<Named>,
}

fn is_segment(key: &str) -> bool {
    key.ends_with(SEGMENT_SUFFIX)
}

impl Repository {
    /// Every journal record, oldest first (by when the job finished).
    pub fn journal_records(&self) -> Result<Vec<JournalRecord>> {
        self.query_journal(&JournalQuery::default())
    }

    /// The records `query` wants, oldest first.
    pub fn query_journal(&self, query: &JournalQuery) -> Result<Vec<JournalRecord>> {
        self.require_full("read the journal")?;
        let listed = self.journal_keys()?;
        let cache = self.journal_cache_path();
        let mut known = cache.as_deref().map(read_cache).unwrap_or_default();
        let missing: Vec<&String> = listed.iter().filter(|k| !known.contains_key(*k)).collect();
        tracing::debug!(
            "read {} of {} journal objects from the repository (the rest from the local cache)",
            missing.len(),
            listed.len()
        );
        let fetched = self.fetch_journal_objects(&missing)?;
        if let Some(path) = &cache {
            // A set, not the list: tens of thousands of records would make this quadratic.
            let listed_set: HashSet<&String> = listed.iter().collect();
            let stale = known.keys().filter(|k| !listed_set.contains(k)).count();
            if stale > 0 && stale * 2 > known.len() {
                known.retain(|k, _| listed_set.contains(k));
                known.extend(fetched.iter().map(|(k, v)| (k.clone(), v.clone())));
                rewrite_cache(path, &known);
            } else {
                append_cache(path, &fetched);
            }
        }
        known.extend(fetched);
        let mut seen = HashSet::new();
        let mut out: Vec<JournalRecord> = Vec::new();
        // Segments first, so a single that a segment already holds is skipped.
        let mut order: Vec<&String> = listed.iter().collect();
        order.sort_by_key(|k| !is_segment(k));
        for key in order {
            for n in known.get(key).into_iter().flatten() {
                if seen.insert(n.object.clone()) && query.matches(&n.record) {
                    out.push(n.record.clone());
                }
            }
        }
        out.sort_by_key(|a| a.finished_at);
        Ok(out)
    }

    fn journal_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .storage
            .list(ObjectKind::Journal.folder())?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    /// Reads and authenticates one journal object: a record, or a segment of them.
    pub fn read_journal_object(&self, object: &str) -> Result<Vec<JournalRecord>> {
        Ok(self
            .read_named(object)?
            .into_iter()
            .map(|n| n.record)
            .collect())
    }

    fn read_named(&self, object: &str) -> Result<Vec<Named>> {
        let raw = self.storage.get(object)?;
        if is_segment(object) {
            let body = self.key.open(object, SEGMENT_AAD, &raw)?;
            let json = zstd::stream::decode_all(&body[..])
                .map_err(|e| Error::corrupt(object, format!("journal segment: {e}")))?;
            serde_json::from_slice(&json)
                .map_err(|e| Error::corrupt(object, format!("malformed journal segment: {e}")))
        } else {
            let body = self.key.open(object, JOURNAL_AAD, &raw)?;
            let record = serde_json::from_slice(&body)
                .map_err(|e| Error::corrupt(object, format!("malformed journal record: {e}")))?;
            Ok(vec![Named {
                object: object.to_string(),
                record,
            }])
        }
    }

    fn fetch_journal_objects(&self, keys: &[&String]) -> Result<Vec<(String, Vec<Named>)>> {
        let results = crate::storage::read_each(keys, |key| {
            self.read_named(key).map(|n| (key.to_string(), n))
        });
        let mut out = Vec::with_capacity(keys.len());
        for r in results {
            match r {
                Ok(x) => out.push(x),
                // Compacted away between the listing and the read: its segment was listed
                // or is newer than this reading; either way nothing is lost.
                Err(Error::Missing { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn journal_cache_path(&self) -> Option<PathBuf> {
        // Only in a directory no other local user can write (see `repository::cache`), and
        // its file opened only as one of ours (`private_dir`).
        let dir = crate::repository::cache::private_repo_dir(self)?;
        Some(dir.join("journal-v1"))
    }

    /// Folds single-record journal objects older than `before` into one segment, when there
    /// are at least [`SEGMENT_MIN`] of them, and folds all segments into one when there are
    /// more than 16. Returns how many objects it replaced. The segment is written before any
    /// object it replaces is deleted, so a kill at any point loses nothing. Callers hold the
    /// prune lock: two compactions at once would only duplicate work, never lose records,
    /// but there is no reason to allow it.
    pub fn compact_journal(&self, before: jiff::Timestamp) -> Result<usize> {
        let listed = self.journal_keys()?;
        let segments: Vec<&String> = listed.iter().filter(|k| is_segment(k)).collect();
        let singles: Vec<&String> = listed
            .iter()
            .filter(|k| !is_segment(k))
            .filter(|k| {
                // Names start with the finishing time: `20261201T101500.123456Z-…`.
                ObjectKind::Journal
                    .name_of(k)
                    .and_then(|n| n.split('-').next())
                    .and_then(|t| jiff::fmt::strtime::parse("%Y%m%dT%H%M%S%.fZ", t).ok())
                    .and_then(|t| t.to_datetime().ok())
                    .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok())
                    .map(|z| z.timestamp())
                    .is_some_and(|t| t < before)
            })
            .collect();
        let mut inputs: Vec<&String> = Vec::new();
        if singles.len() >= SEGMENT_MIN {
            inputs.extend(&singles);
        }
        if segments.len() > 16 {
            inputs.extend(&segments);
        }
        if inputs.is_empty() {
            return Ok(0);
        }
        let mut seen = HashSet::new();
        let mut all: Vec<Named> = Vec::new();
        let mut folded: Vec<&String> = Vec::new();
        for key in inputs {
            match self.read_named(key) {
                Ok(named) => {
                    all.extend(named.into_iter().filter(|n| seen.insert(n.object.clone())));
                    folded.push(key);
                }
                Err(Error::Missing { .. }) => {}
                // A damaged object stays where it is, for `check` to name; the rest move.
                Err(e) if e.kind() == crate::ErrorKind::DamagedData => {
                    tracing::warn!("journal object {key} is damaged and stays as it is: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        if folded.is_empty() {
            return Ok(0);
        }
        all.sort_by_key(|a| a.record.finished_at);
        let newest = all.last().map(|n| n.record.finished_at).unwrap_or(before);
        let json = serde_json::to_vec(&all).expect("journal records serialize");
        let body = zstd::bulk::compress(&json, 9)
            .map_err(|e| Error::Internal(format!("compressing a journal segment: {e}")))?;
        let key = ObjectKind::Journal.key(&format!(
            "{}-{}{SEGMENT_SUFFIX}",
            newest.strftime("%Y%m%dT%H%M%S%.6fZ"),
            hex::encode(crate::crypto::random_bytes::<4>())
        ));
        self.storage.put(&key, &self.key.seal(SEGMENT_AAD, &body))?;
        // With object lock, their versions wait in the expiring list for prune.
        let folded: Vec<String> = folded.into_iter().cloned().collect();
        self.delete_objects(&folded)?;
        tracing::info!(
            "folded {} journal objects ({} records) into {key}",
            folded.len(),
            all.len()
        );
        Ok(folded.len())
    }
}

fn read_cache(path: &Path) -> HashMap<String, Vec<Named>> {
    let Some(text) = crate::private_dir::read(path)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<CacheLine>(l).ok())
        .map(|c| (c.object, c.records))
        .collect()
}

fn line_of(object: &str, records: &[Named]) -> Option<String> {
    #[derive(Serialize)]
    struct Line<'a> {
        object: &'a str,
        records: &'a [Named],
    }
    let mut s = serde_json::to_string(&Line { object, records }).ok()?;
    s.push('\n');
    Some(s)
}

fn append_cache(path: &Path, fetched: &[(String, Vec<Named>)]) {
    if fetched.is_empty() {
        return;
    }
    let text: String = fetched.iter().filter_map(|(k, v)| line_of(k, v)).collect();
    // One write of whole lines with O_APPEND: concurrent readers append without tearing
    // each other's lines on a local file system; a torn line would be skipped and re-read.
    let _ = crate::private_dir::append(path).and_then(|mut f| f.write_all(text.as_bytes()));
}

fn rewrite_cache(path: &PathBuf, known: &HashMap<String, Vec<Named>>) {
    let text: String = known.iter().filter_map(|(k, v)| line_of(k, v)).collect();
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written =
        crate::private_dir::create_new(&tmp).and_then(|mut f| f.write_all(text.as_bytes()));
    if written.is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Repository {
        let storage = crate::storage::Storage::from_url("memory://").unwrap();
        let kdf = crate::crypto::KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        Repository::init(storage, Some(b"pw"), kdf).unwrap()
    }

    fn record(i: i64) -> JournalRecord {
        let at = jiff::Timestamp::from_second(1_790_000_000 + i * 60).unwrap();
        let mut r = JournalRecord::new(if i % 2 == 0 { "backup" } else { "verify" }, at);
        r.finished_at = at;
        r.source = Some(format!("s{}", i % 3));
        r.ok = i % 5 != 0;
        r
    }

    #[test]
    fn compaction_folds_records_once_and_loses_none_if_interrupted() {
        let repo = repo();
        for i in 0..100 {
            repo.journal(&record(i)).unwrap();
        }
        let before = repo.journal_records().unwrap();
        assert_eq!(before.len(), 100);
        let singles = repo.storage().list("journal/").unwrap();
        // Records after the cut stay single.
        let cut = record(80).finished_at;
        assert_eq!(repo.compact_journal(cut).unwrap(), 80);
        let listed = repo.storage().list("journal/").unwrap();
        assert_eq!(listed.len(), 21, "one segment and 20 singles");
        assert_eq!(repo.journal_records().unwrap(), before);
        // A compaction killed between the segment's write and the singles' deletion leaves
        // both: each record still counts once.
        let first = &singles[0];
        let raw = {
            let r = record(0);
            let (_, sealed) = repo.seal_record(&r);
            sealed
        };
        repo.storage().put(&first.key, &raw).unwrap();
        assert_eq!(repo.journal_records().unwrap().len(), 100);
        // Too few singles: nothing to do.
        assert_eq!(repo.compact_journal(cut).unwrap(), 0);
        // Queries filter.
        let q = JournalQuery {
            job: Some("verify".into()),
            failed: true,
            ..JournalQuery::default()
        };
        let failed_verifies = repo.query_journal(&q).unwrap();
        assert_eq!(failed_verifies.len(), 10);
        assert!(failed_verifies.iter().all(|r| r.job == "verify" && !r.ok));
        // Every object, segment included, reads back through read_journal_object (check).
        let total: usize = repo
            .storage()
            .list("journal/")
            .unwrap()
            .iter()
            .map(|o| repo.read_journal_object(&o.key).unwrap().len())
            .sum();
        assert_eq!(total, 101);
    }
}

//! The job journal: one record per job run, success or failure (invariant 6).
//!
//! Owns the record type and its storage under `journal/`. Monitor, drill reports and metrics
//! will read these records and nothing else. Records are sealed like every other object.
//! Must not hold secrets: error texts come from [`crate::Error`], which never carries them.

use super::Repository;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

const JOURNAL_AAD: &[u8] = b"strongroom journal";

/// What one job did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JournalRecord {
    /// `backup`, `restore`, `verify`, `check`, …
    pub job: String,
    /// Source name or URL, when the job had one.
    pub source: Option<String>,
    /// Snapshot created or used.
    pub snapshot: Option<String>,
    /// When the job started.
    pub started_at: jiff::Timestamp,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// The error sentence when it failed.
    pub error: Option<String>,
    /// Logical bytes processed.
    pub size: u64,
    /// Bytes added to the repository.
    pub added: u64,
    /// Host that ran it.
    pub hostname: String,
}

impl JournalRecord {
    /// A record for a job that started at `started_at` and ends now.
    pub fn new(job: &str, started_at: jiff::Timestamp) -> Self {
        let finished_at = jiff::Timestamp::now();
        JournalRecord {
            job: job.into(),
            source: None,
            snapshot: None,
            started_at,
            finished_at,
            seconds: (finished_at - started_at)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0),
            ok: true,
            error: None,
            size: 0,
            added: 0,
            hostname: crate::hostname(),
        }
    }
}

impl Repository {
    /// Appends a record to the journal.
    pub fn journal(&self, record: &JournalRecord) -> Result<()> {
        let body = serde_json::to_vec(record).expect("journal record serializes");
        let name = format!(
            "journal/{}-{}",
            record.finished_at.strftime("%Y%m%dT%H%M%S%.6fZ"),
            hex::encode(crate::crypto::random_bytes::<4>())
        );
        self.storage.put(&name, &self.key.seal(JOURNAL_AAD, &body))
    }

    /// Appends a record; a failure to do so is logged, never allowed to turn a job's own
    /// outcome (a committed snapshot, a finished restore) into an error.
    pub fn record(&self, record: &JournalRecord) {
        if let Err(e) = self.journal(record) {
            tracing::warn!(
                "could not write the journal record for the {} job: {e}",
                record.job
            );
        }
    }

    /// Every journal record, oldest first.
    pub fn journal_records(&self) -> Result<Vec<JournalRecord>> {
        self.storage
            .list("journal/")?
            .iter()
            .map(|info| self.read_journal_record(&info.key))
            .collect()
    }

    /// Reads and authenticates one journal record.
    pub fn read_journal_record(&self, object: &str) -> Result<JournalRecord> {
        let body = self
            .key
            .open(object, JOURNAL_AAD, &self.storage.get(object)?)?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::corrupt(object, format!("malformed journal record: {e}")))
    }
}

//! The job journal: one record per job run, success or failure (docs/ARCHITECTURE.md, "Invariants": every job leaves a journal record).
//!
//! Owns the record type and its storage under `journal/`. Monitor, drill reports and metrics
//! will read these records and nothing else. Records are sealed like every other object.
//! Must not hold secrets: error texts come from [`crate::Error`], which never carries them.

use super::Repository;
use super::layout::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

mod read;
pub use read::{JournalQuery, SEGMENT_MIN};

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
    /// The error's stable kind (`storage_unreachable`, …, or `interrupted` for a job whose
    /// process ended before it could say).
    #[serde(default)]
    pub error_kind: Option<String>,
    /// Logical bytes processed.
    pub size: u64,
    /// Bytes added to the repository.
    pub added: u64,
    /// Host that ran it.
    pub hostname: String,
    /// The backup's kind (`full`, `logical`, `physical`), for backup records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The WAL a physical backup needs, or the segment a failed `wal push` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalRange>,
    /// A drill's measured figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillFigures>,
    /// A restore into a place other than the source's own database or data directory (a
    /// side copy): its outcome says nothing of the source's health.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub side: bool,
    /// A copy job's destination and what it moved there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyFigures>,
    /// Who acted, for the dashboard's audit records (job `dashboard`: a login, or a job
    /// asked for from the page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What one `copy` job moved into one destination: the contract's `--json` entry, kept in
/// its journal record too.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CopyFigures {
    /// The destination repository, as given.
    pub repository: String,
    /// Snapshots whose manifests this run wrote there.
    pub snapshots_copied: usize,
    /// Snapshots asked for that were there already.
    pub snapshots_present: usize,
    /// Archived WAL files (segments, history files, origin records) written there.
    pub wal_files_copied: usize,
    /// Bytes read from the source repository.
    pub bytes_read: u64,
    /// Bytes written to the destination repository.
    pub bytes_written: u64,
}

/// A range of WAL segments on one timeline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalRange {
    /// Timeline.
    pub timeline: u32,
    /// First segment (file name).
    pub first: String,
    /// Last segment (file name).
    pub last: String,
}

/// What a drill measured, kept in its journal record so `status`, `metrics` and the runbook
/// need not read the full report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DrillFigures {
    /// Measured time to recover: every phase from fetch to checks.
    pub rto_seconds: f64,
    /// The objective it was measured against.
    pub rto_objective_seconds: f64,
    /// The data-loss window the repository gave at the time of the drill.
    pub rpo_seconds: Option<f64>,
    /// The objective it was measured against.
    pub rpo_objective_seconds: f64,
    /// The report object (`drills/…`) with the phases and checks.
    pub report: Option<String>,
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
            error_kind: None,
            size: 0,
            added: 0,
            hostname: crate::hostname(),
            kind: None,
            wal: None,
            drill: None,
            side: false,
            copy: None,
            by: None,
        }
    }

    /// Whether this record is a failure that counts against its source: not an operator's
    /// mistake (records written before those were left out of the journal), nor a side
    /// restore.
    pub fn counts_as_failure(&self) -> bool {
        !self.ok && !self.side && is_job_failure(&self.job, self.error_kind.as_deref())
    }

    /// Marks the record as a failure with `e`'s sentence and kind.
    pub fn failed(&mut self, e: &Error) {
        self.ok = false;
        self.error = Some(e.to_string());
        self.error_kind = Some(e.kind().name().to_string());
    }
}

/// Whether a failure of `job` with error kind `kind` (its stable name) is the job's failure,
/// to journal, alert and count against its source, rather than an operator's mistake
/// ([`ErrorKind::is_operator_error`]) that the person who asked reads and nobody else
/// needs. `wal push` is the exception: PostgreSQL runs it, nobody reads its sentence, and
/// a misconfigured archive_command is a broken archive, so every failure of it counts.
pub fn is_job_failure(job: &str, kind: Option<&str>) -> bool {
    job == "wal push"
        || !kind
            .and_then(ErrorKind::parse)
            .is_some_and(ErrorKind::is_operator_error)
}

/// Where journal records of repository `id` wait while the repository is unreachable:
/// `pending-journal/<repository id>` in the state directory ([`crate::state`]), made when
/// missing.
pub fn pending_journal_dir(id: &str) -> Option<std::path::PathBuf> {
    crate::state::dir(&["pending-journal", id])
}

/// Where jobs in progress on repository `id` are noted: `running/<repository id>`.
fn running_dir(id: &str) -> Option<std::path::PathBuf> {
    crate::state::dir(&["running", id])
}

/// A job in progress, noted in the state directory until it ends.
///
/// Interrupted by a signal (SIGINT, SIGTERM, SIGHUP), the job is journaled as interrupted
/// there and then, by a cleanup registered with [`crate::interrupt`] (it runs after the
/// job's newer cleanups, its lock among them, so the record tells what was left). A job
/// killed before it could write its record (SIGKILL, power loss) leaves its note behind,
/// and the next command that opens the repository journals it as interrupted
/// (docs/ARCHITECTURE.md, "Invariants": every job leaves a journal record).
#[must_use = "the note is removed when this drops"]
pub struct RunningJob {
    path: Option<std::path::PathBuf>,
    on_signal: Option<crate::interrupt::Guard>,
}

impl RunningJob {
    /// Journals the job's own outcome. The interrupted record is given up first, with
    /// signals held off, so a job is journaled once: after a signal that came earlier,
    /// this never returns (the signal handler journals the job and exits).
    pub fn ended(mut self, repo: &Repository, record: &JournalRecord) {
        if let Some(g) = self.on_signal.take() {
            crate::interrupt::critical(|| g.disarm());
        }
        repo.record(record);
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if let Some(g) = self.on_signal.take() {
            g.disarm();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What a [`RunningJob`] note holds.
#[derive(Serialize, Deserialize)]
struct RunningNote {
    job: String,
    source: Option<String>,
    snapshot: Option<String>,
    started_at: jiff::Timestamp,
    pid: u32,
    /// The process's start time in clock ticks since boot, so a reused pid is not taken
    /// for the job's own process.
    start_ticks: Option<u64>,
    hostname: String,
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The record of a job that ended before it could write its own, saying `why`.
fn interrupted_record(note: &RunningNote, why: &str) -> JournalRecord {
    let mut rec = JournalRecord::new(&note.job, note.started_at);
    rec.source = note.source.clone();
    rec.snapshot = note.snapshot.clone();
    rec.ok = false;
    rec.error = Some(format!("interrupted: {why}"));
    rec.error_kind = Some(ErrorKind::Interrupted.name().into());
    rec
}

/// Registers journaling `note`'s job as interrupted, and removing its note at `path`, for
/// when a signal ends the process.
fn journal_on_signal(
    repo: &Repository,
    note: RunningNote,
    path: Option<std::path::PathBuf>,
) -> crate::interrupt::Guard {
    let repo = repo.clone();
    let what = format!(
        "the running {} job's note (journaling it as interrupted)",
        note.job
    );
    crate::interrupt::guard(what, move || {
        let signal = crate::interrupt::signal_received().unwrap_or("a signal");
        let rec = interrupted_record(
            &note,
            &format!(
                "{signal} stopped the {} job before it finished (its lock and temporary files were removed)",
                note.job
            ),
        );
        repo.record(&rec);
        if let Some(p) = path {
            let _ = std::fs::remove_file(p);
        }
    })
}

/// Whether the process a note names is still the one running.
fn still_running(note: &RunningNote) -> bool {
    note.hostname != crate::hostname()
        || (start_ticks(note.pid).is_some() && start_ticks(note.pid) == note.start_ticks)
}

impl Repository {
    /// Notes that `job` started (see [`RunningJob`]).
    pub fn job_started(
        &self,
        job: &str,
        source: Option<&str>,
        snapshot: Option<&str>,
        started_at: jiff::Timestamp,
    ) -> RunningJob {
        let note = RunningNote {
            job: job.into(),
            source: source.map(str::to_string),
            snapshot: snapshot.map(str::to_string),
            started_at,
            pid: std::process::id(),
            start_ticks: start_ticks(std::process::id()),
            hostname: crate::hostname(),
        };
        let path = running_dir(&self.config().id).and_then(|dir| {
            use std::io::Write;
            let file = dir.join(format!(
                "{}-{}.json",
                std::process::id(),
                hex::encode(crate::crypto::random_bytes::<4>())
            ));
            crate::private_dir::create_new(&file)
                .and_then(|mut f| f.write_all(&serde_json::to_vec(&note)?))
                .ok()?;
            Some(file)
        });
        let on_signal = journal_on_signal(self, note, path.clone());
        RunningJob {
            path,
            on_signal: Some(on_signal),
        }
    }

    /// Journals the jobs whose process ended without finishing and without a signal
    /// handler's chance to say so (SIGKILL, power loss: their notes remain).
    pub fn journal_interrupted_jobs(&self) {
        let Some(dir) = crate::state::existing(&["running", &self.config().id]) else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        for f in rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
        {
            let Some(note) = crate::private_dir::read(&f)
                .ok()
                .and_then(|b| serde_json::from_slice::<RunningNote>(&b).ok())
            else {
                continue;
            };
            if still_running(&note) {
                continue;
            }
            // Claimed by a rename, so two processes opening the repository at once journal
            // it once.
            let claimed = f.with_extension("claimed");
            if std::fs::rename(&f, &claimed).is_err() {
                continue;
            }
            let f = claimed;
            let rec = interrupted_record(
                &note,
                &format!(
                    "process {} on {} ended before the {} job finished (killed, or the machine stopped); it recorded nothing",
                    note.pid, note.hostname, note.job
                ),
            );
            self.record(&rec);
            let _ = std::fs::remove_file(&f);
            tracing::warn!("{}", rec.error.as_deref().unwrap_or_default());
        }
    }

    fn seal_record(&self, record: &JournalRecord) -> (String, Vec<u8>) {
        let body = serde_json::to_vec(record).expect("journal record serializes");
        let name = ObjectKind::Journal.key(&format!(
            "{}-{}",
            record.finished_at.strftime("%Y%m%dT%H%M%S%.6fZ"),
            hex::encode(crate::crypto::random_bytes::<4>())
        ));
        (name, self.key.seal(JOURNAL_AAD, &body))
    }

    /// Appends a record to the journal.
    pub fn journal(&self, record: &JournalRecord) -> Result<()> {
        let (name, sealed) = self.seal_record(record);
        self.storage.put(&name, &sealed)
    }

    /// Appends a record; a failure to do so never turns a job's own outcome into an error.
    /// A failure that is an operator's mistake ([`is_job_failure`]: a request refused as
    /// given) was no job run, and is not recorded.
    /// When the store cannot take it (the job failed *because* the store went away), the
    /// sealed record waits in a local directory ([`pending_journal_dir`]) and is written by
    /// the next command that opens the repository (docs/ARCHITECTURE.md, "Invariants": every job leaves a journal record).
    pub fn record(&self, record: &JournalRecord) {
        if !record.ok && !is_job_failure(&record.job, record.error_kind.as_deref()) {
            tracing::debug!(
                "the {} request was refused; not journaled as a job",
                record.job
            );
            return;
        }
        let (name, sealed) = self.seal_record(record);
        let Err(e) = self.storage.put(&name, &sealed) else {
            return;
        };
        let kept = pending_journal_dir(&self.config().id).and_then(|dir| {
            use std::io::Write;
            let file = dir.join(ObjectKind::Journal.name_of(&name).unwrap_or(&name));
            let tmp = file.with_extension("tmp");
            crate::private_dir::create(&tmp)
                .and_then(|mut f| f.write_all(&sealed))
                .ok()?;
            std::fs::rename(&tmp, &file).ok()?;
            Some(file)
        });
        match kept {
            Some(f) => tracing::warn!(
                "could not write the journal record for the {} job ({e}); kept it at {} until the repository is reachable",
                record.job,
                f.display()
            ),
            None => tracing::warn!(
                "could not write the journal record for the {} job: {e}",
                record.job
            ),
        }
    }

    /// Writes records that waited locally into the repository, oldest first; stops at the
    /// first failure (the rest keep waiting).
    pub fn flush_pending_journal(&self) {
        let Some(dir) = crate::state::existing(&["pending-journal", &self.config().id]) else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_none_or(|x| x != "tmp"))
            .collect();
        files.sort();
        for f in files {
            let (Some(name), Ok(bytes)) = (f.file_name(), crate::private_dir::read(&f)) else {
                continue;
            };
            let key = ObjectKind::Journal.key(&name.to_string_lossy());
            if self.storage.put(&key, &bytes).is_err() {
                return;
            }
            let _ = std::fs::remove_file(&f);
            tracing::info!(record = %key, "wrote a journal record that had waited locally");
        }
    }
}

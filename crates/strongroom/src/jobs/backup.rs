//! The backup job: source → engine → pipeline → manifest, with a journal record either way.
//!
//! Owns the order of a backup's commits (packs, then index, then manifest: docs/ARCHITECTURE.md, "Invariants") and
//! its journal record (docs/ARCHITECTURE.md, "Invariants": every job leaves a journal record). Must not know engine details.

use crate::engine;
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{BackupKind, Snapshot};
use crate::repository::writer::BackupWriter;
use crate::source::Source;

/// Options of one backup.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Tags to attach.
    pub tags: Vec<String>,
    /// Requested kind; `None` for the engine's default.
    pub kind: Option<BackupKind>,
}

/// Takes a snapshot of `source` and records the job in the journal.
pub fn run(
    repo: &Repository,
    source: &Source,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    run_capturing(repo, source, opts, progress, None)
}

/// How a caller that holds the source's state itself captures it (continuous capture's
/// base snapshot, read in the transaction it pinned) instead of the engine's own backup.
pub type Capturing<'a> = &'a dyn Fn(&BackupWriter<'_>) -> Result<engine::Captured>;

/// [`run`], with the capture done by `capture` when given: the same locks, commit order
/// and journal record.
pub fn run_capturing(
    repo: &Repository,
    source: &Source,
    opts: &BackupOptions,
    progress: &dyn Progress,
    capture: Option<Capturing<'_>>,
) -> Result<Snapshot> {
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("backup", Some(&source.name), None, started_at);
    let result = take(repo, source, opts, progress, started_at, capture).map_err(on_full_device);
    let mut rec = JournalRecord::new("backup", started_at);
    rec.source = Some(source.name.clone());
    match &result {
        Ok(s) => {
            rec.snapshot = Some(s.id.clone());
            rec.size = s.size;
            rec.added = s.added;
            rec.kind = Some(s.kind.to_string());
            rec.wal = crate::engine::postgres::wal::needs_of(std::slice::from_ref(s))
                .first()
                .map(|n| crate::repository::journal::WalRange {
                    timeline: n.timeline,
                    first: crate::engine::postgres::wal::segment_name(
                        n.timeline,
                        n.start.0 / n.segment_size,
                        n.segment_size,
                    ),
                    last: crate::engine::postgres::wal::segment_name(
                        n.timeline,
                        n.stop.0 / n.segment_size,
                        n.segment_size,
                    ),
                });
        }
        Err(e) => {
            rec.kind = opts.kind.as_ref().map(|k| k.to_string());
            rec.failed(e)
        }
    }
    running.ended(repo, &rec);
    result
}

/// A full device, phrased for a backup: what it left and that `prune` reclaims it. (The
/// partial file is removed by the write that failed: temporary files go on drop.)
fn on_full_device(e: crate::Error) -> crate::Error {
    match e {
        crate::Error::NoSpace {
            action,
            path,
            device,
        } => crate::Error::BackupNoSpace {
            action,
            path,
            device,
        },
        other => other,
    }
}

fn take(
    repo: &Repository,
    source: &Source,
    opts: &BackupOptions,
    progress: &dyn Progress,
    started_at: jiff::Timestamp,
    capture: Option<Capturing<'_>>,
) -> Result<Snapshot> {
    let engine = engine::for_source(source)?;
    let kinds = engine.backup_kinds();
    let kind = opts.kind.clone().unwrap_or_else(|| kinds[0].clone());
    if !kinds.contains(&kind) {
        return Err(crate::Error::KindMismatch {
            kind: kind.to_string(),
            engine: engine.kind().to_string(),
            source_name: source.name.clone(),
            kinds: kinds
                .iter()
                .map(BackupKind::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    // Held until the manifest is written: a prune deletes nothing this backup may build on
    // before the lock is gone (repository::lock, repository::deletion).
    let _lock = repo.lock(crate::repository::lock::LockKind::Shared, "backup")?;
    let writer = BackupWriter::new(repo)?;
    let captured = match capture {
        Some(capture) => capture(&writer)?,
        None => engine.backup(source, &kind, &writer, progress)?,
    };
    let stats = writer.finish()?;
    tracing::info!(
        new_chunks = stats.new_chunks,
        reused_chunks = stats.reused_chunks,
        added = stats.added,
        "data stored"
    );
    let mut snap = Snapshot {
        id: String::new(),
        source: source.name.clone(),
        source_location: {
            let identity = source.location.identity();
            (identity != source.name).then_some(identity)
        },
        engine: engine.kind(),
        kind: captured.kind,
        tags: opts.tags.clone(),
        started_at,
        finished_at: jiff::Timestamp::now(),
        size: stats.size,
        added: stats.added,
        metadata: captured.metadata,
        wal: captured.wal,
        hostname: crate::hostname(),
        program_version: env!("CARGO_PKG_VERSION").into(),
        files: captured.files,
        append_only: repo.role() == crate::crypto::KeyRole::AppendOnly,
        unvouched: false,
    };
    crate::fault::pause("before-commit");
    // Signals held off: an interrupt removes the lock, and a manifest written after that
    // could name packs a prune, no longer waiting for this backup, is deleting.
    crate::interrupt::critical(|| repo.write_snapshot(&mut snap))?;
    Ok(snap)
}

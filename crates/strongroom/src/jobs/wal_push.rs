//! The `wal push` job: PostgreSQL's `archive_command` for one WAL file, and its record.
//!
//! Owns what a push leaves behind besides the archived file: a failure is journaled (under
//! the source the config archives for, with the file's name), so `journal --job 'wal push'
//! --failed` and `status` find it; a success is not (the archive itself is its record, and a
//! record per segment would double the writes). Must not archive anything itself (that is
//! [`crate::engine::postgres::wal::push`]) and must not decide exit codes or alerts (the
//! command line's, which PostgreSQL's contract shapes).

use crate::engine::postgres::timeline;
use crate::engine::postgres::wal::{self, Pushed, WalName};
use crate::error::Result;
use crate::repository::Repository;
use crate::repository::archive::Archive;
use crate::repository::journal::{JournalRecord, WalRange};
use std::path::Path;

/// Records where the pushed file's timeline is pushed from, when it is not yet known; a
/// failure is a warning (the file itself is archived).
fn record_origin(repo: &Repository, pushed: &Pushed, data_dir: &Path) {
    let Some(name) = WalName::parse(&pushed.name) else {
        return;
    };
    let archive = Archive::new(repo, &pushed.cluster.system_id());
    if let Err(e) = timeline::record_origin(&archive, &name, data_dir) {
        tracing::warn!(
            "could not record where timeline {} is pushed from: {e}",
            name.timeline
        );
    }
}

/// Archives `path` (relative to the data directory `data_dir`, as PostgreSQL gives it) for
/// the cluster in `data_dir`, and journals a failure under `source` (the configured
/// PostgreSQL source, when there is exactly one).
pub fn run(
    repo: &Repository,
    data_dir: &Path,
    path: &Path,
    source: Option<String>,
) -> Result<Pushed> {
    let started = jiff::Timestamp::now();
    let level = repo.config().stream_compression_level;
    let result = wal::push(repo, data_dir, path, level);
    if let Ok(p) = &result {
        // The file is durable and acknowledged whatever happens here; a timeline left
        // without its origin record gets it at its next push.
        record_origin(repo, p, data_dir);
    }
    if let Err(e) = &result {
        let mut rec = JournalRecord::new("wal push", started);
        // So `journal --source S --job 'wal push'` finds it.
        rec.source = source;
        rec.wal = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .map(|name| WalRange {
                timeline: WalName::parse(&name).map_or(0, |w| w.timeline),
                first: name.clone(),
                last: name,
            });
        rec.failed(e);
        repo.record(&rec);
    }
    result
}

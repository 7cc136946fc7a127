//! Continuous capture of a SQLite database: committed WAL frames, a second after commit.
//!
//! Owns what is particular to SQLite in `strongroom replicate`: reading the WAL and its
//! index ([`wal_file`]), capturing every committed transaction without missing one and
//! keeping the WAL bounded ([`capture`]), the segment format ([`segment`]), replaying a
//! chain onto a restored base ([`replay`]), and how a base snapshot records where its
//! chain starts ([`base_position`]). Must not store or schedule anything (the replicate
//! job, `crate::jobs::replicate`, does).
//!
//! A *chain* is a base snapshot (a normal `full` snapshot, taken in the read transaction
//! the capture pinned, so its pages are exactly the state at a known WAL position) and
//! the segments captured after it. A restore is the base, then every transaction of its
//! chain up to the target. See docs/ARCHITECTURE.md, "Continuous capture".

pub mod capture;
pub mod replay;
pub mod segment;
pub mod wal_file;

pub use capture::{Capture, CaptureOptions, Round};
pub use segment::{Segment, Transaction};
pub use wal_file::Position;

use crate::engine::{Captured, RecoveryTarget};
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::frames::Chain;
use crate::repository::snapshot::Snapshot;
use crate::repository::snapshot::{EngineKind, Filter};
use crate::repository::writer::BackupWriter;
use crate::source::Source;

/// The key in a base snapshot's metadata (`extra`) that records its WAL position.
pub const BASE_KEY: &str = "replica_position";

/// The tag every base snapshot carries.
pub const BASE_TAG: &str = "continuous";

/// Captures a base snapshot through the capture's pinned read transaction, recording the
/// WAL position its chain continues from.
pub fn capture_base(
    capture: &Capture,
    source: &Source,
    writer: &BackupWriter<'_>,
    progress: &dyn Progress,
) -> Result<Captured> {
    let conn = capture.held_connection().ok_or_else(|| {
        crate::Error::Internal("a base snapshot without a pinned read transaction".into())
    })?;
    let path = super::source_path(source);
    let mut captured = super::backup::capture_in(conn, path, source, writer, progress)?;
    captured.metadata.extra.insert(
        BASE_KEY.into(),
        serde_json::to_value(capture.position()).expect("a position serializes"),
    );
    Ok(captured)
}

/// Where the chain of `snap` starts, when `snap` is a base snapshot.
pub fn base_position(snap: &Snapshot) -> Option<Position> {
    serde_json::from_value(snap.metadata.extra.get(BASE_KEY)?.clone()).ok()
}

/// The snapshot a SQLite restore of `latest` starts from when captured frames exist: of the
/// snapshots `filter` keeps that started by the target time (any, for the newest state),
/// the newest base snapshot when its chain reaches at least as far as the newest plain
/// one (a nightly backup taken while the capture runs is older than the capture's frames).
/// `None` (the restore's usual rule) when there is no base, or the filter spans sources.
pub fn latest_for(
    repo: &Repository,
    all: &[Snapshot],
    filter: &Filter,
    recovery: &RecoveryTarget,
) -> Option<Result<Snapshot>> {
    let by = match recovery {
        RecoveryTarget::Time(t) => Some(*t),
        RecoveryTarget::Latest | RecoveryTarget::Immediate => None,
        _ => return None,
    };
    let pool: Vec<&Snapshot> = all
        .iter()
        .filter(|s| s.engine == EngineKind::Sqlite && filter.matches(s))
        .filter(|s| by.is_none_or(|t| s.started_at <= t))
        .collect();
    let first = pool.first()?;
    if pool.iter().any(|s| s.source != first.source) {
        return None;
    }
    let base = pool
        .iter()
        .filter(|s| base_position(s).is_some())
        .max_by_key(|s| s.started_at)?;
    let plain = pool
        .iter()
        .filter(|s| base_position(s).is_none())
        .max_by_key(|s| s.started_at);
    let Some(plain) = plain.filter(|p| p.started_at > base.started_at) else {
        return Some(Ok((*base).clone()));
    };
    if matches!(recovery, RecoveryTarget::Immediate) {
        return Some(Ok((*plain).clone()));
    }
    // The chain's newest segment, as the store dates it.
    let reach = match Chain::new(repo, &base.id).list() {
        Ok(l) => l.last().and_then(|l| l.modified),
        Err(e) => return Some(Err(e)),
    };
    let reach = match (reach, by) {
        (Some(r), Some(t)) => Some(r.min(t)),
        (r, _) => r,
    };
    Some(Ok(if reach.is_some_and(|r| r >= plain.finished_at) {
        (*base).clone()
    } else {
        (*plain).clone()
    }))
}

//! The replicate job: a SQLite source captured continuously until told to stop.
//!
//! Owns the loop around `engine::sqlite::replica`: resuming the source's newest chain (or
//! taking a base snapshot through the backup job), a capture round every
//! [`ReplicateOptions::interval`] while the database is written and nothing while it is
//! idle, storing each round's segment before going on (a failed store is tried again with
//! the frames still protected by our read transaction), new bases every
//! [`ReplicateOptions::base_interval`] or when frames were lost, the job's journal record
//! when it stops, and the local [`Pulse`] file that `status` and `metrics` read on this
//! host (how current the capture is, the WAL's size, requests made). Must not parse WAL
//! (the engine does) nor decide retention.
//!
//! The hot path is one PUT per round with commits in it: no LIST, no HEAD, no write while
//! idle. Segment numbers continue from the chain's last one, listed once at start.

use crate::engine::sqlite::replica::segment::Merger;
use crate::engine::sqlite::replica::{self, Capture, CaptureOptions, Round, Segment};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::frames::Chain;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{BackupKind, EngineKind, Snapshot};
use crate::source::{Location, Source};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the job runs (`[replicate]` in the config: `config::ReplicateSettings::options`).
#[derive(Clone, Debug)]
pub struct ReplicateOptions {
    /// Time between capture rounds.
    pub interval: Duration,
    /// A new base snapshot after this long on one chain.
    pub base_interval: Duration,
    /// The capture's checkpoint and segment limits.
    pub capture: CaptureOptions,
    /// zstd level for segments.
    pub level: i32,
    /// Rounds merged into one compacted segment.
    pub compact_rounds: u64,
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        ReplicateOptions {
            interval: Duration::from_secs(1),
            base_interval: Duration::from_secs(3600),
            capture: CaptureOptions::default(),
            level: 3,
            compact_rounds: 64,
        }
    }
}

/// What a replicate run did, for its journal record and the person who stopped it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Base snapshots taken (0 when the run resumed a chain and never needed one).
    pub bases: u64,
    /// The chain (base snapshot id) the run ended on.
    pub chain: Option<String>,
    /// Segments stored.
    pub segments: u64,
    /// Transactions captured.
    pub transactions: u64,
    /// Bytes written to the store for segments.
    pub bytes: u64,
    /// Whether the run went on from a chain an earlier run left.
    pub resumed: bool,
}

/// What the capture of a source looks like from this host, kept in the state directory
/// (`replica/<repository id>/<source>.json`) after every round.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Pulse {
    /// The replicating process.
    pub pid: u32,
    /// The chain being extended.
    pub chain: String,
    /// When the capture last had everything committed stored (the recovery point).
    pub caught_up_at: Option<jiff::Timestamp>,
    /// When the newest stored transaction was captured.
    pub newest_commit_at: Option<jiff::Timestamp>,
    /// The `-wal` file's size.
    pub wal_bytes: u64,
    /// Frames in the WAL.
    pub wal_frames: u32,
    /// Requests made to the store since the run started (PUTs of segments, and bases).
    pub requests: u64,
    /// When the run started.
    pub started_at: Option<jiff::Timestamp>,
    /// The configured interval, seconds.
    pub interval_seconds: f64,
    /// Segments stored by this run.
    pub segments: u64,
}

impl Pulse {
    fn file(repo_id: &str, source: &str) -> Option<PathBuf> {
        let dir = crate::state::dir(&["replica", repo_id])?;
        Some(dir.join(format!("{}.json", file_safe(source))))
    }

    /// The pulse this host's replicator of `source` left, if any and if its process is
    /// still alive.
    pub fn read(repo_id: &str, source: &str) -> Option<Pulse> {
        let dir = crate::state::existing(&["replica", repo_id])?;
        let body =
            crate::private_dir::read(&dir.join(format!("{}.json", file_safe(source)))).ok()?;
        let p: Pulse = serde_json::from_slice(&body).ok()?;
        alive(p.pid).then_some(p)
    }

    fn save(&self, repo_id: &str, source: &str) {
        let Some(file) = Pulse::file(repo_id, source) else {
            return;
        };
        let body = serde_json::to_vec(self).expect("serializes");
        if let Err(e) = crate::private_dir::replace(&file, &[&body]) {
            tracing::debug!("cannot write {}: {e}", file.display());
        }
    }
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// The newest base snapshot of `source` (by start time), if any.
pub fn newest_base<'s>(snaps: &'s [Snapshot], source: &Source) -> Option<&'s Snapshot> {
    snaps
        .iter()
        .filter(|s| s.engine == EngineKind::Sqlite && source_matches(s, source))
        .filter(|s| replica::base_position(s).is_some())
        .max_by_key(|s| s.started_at)
}

fn source_matches(s: &Snapshot, source: &Source) -> bool {
    s.source == source.name
        || s.source_location.as_deref() == Some(source.location.identity().as_str())
}

/// How current the continuous capture of one source is, from the repository (its newest
/// chain's newest segment) and, when `replicate` runs on this host, its pulse.
#[derive(Clone, Debug)]
pub struct Standing {
    /// The newest chain (base snapshot id).
    pub chain: String,
    /// When its newest segment was stored (the store's date; the base's end without one).
    pub newest_stored: jiff::Timestamp,
    /// Segments of that chain stored in the 24 hours before `now`.
    pub segments_last_day: usize,
    /// This host's live replicator of the source, if any.
    pub pulse: Option<Pulse>,
}

impl Standing {
    /// The recovery point: everything committed before it is stored. A live replicator's
    /// last complete round, else the newest stored segment.
    pub fn point(&self) -> jiff::Timestamp {
        self.pulse
            .as_ref()
            .and_then(|p| p.caught_up_at)
            .map_or(self.newest_stored, |c| c.max(self.newest_stored))
    }

    /// What [`Standing::point`] was measured from, for people.
    pub fn basis(&self) -> String {
        match &self.pulse {
            Some(p) => format!(
                "`strongroom replicate` on this host (pid {}), which had stored every commit up to {}",
                p.pid,
                self.point().strftime("%Y-%m-%d %H:%M:%S%.1f UTC")
            ),
            None => format!(
                "the newest captured segment of chain {} (stored {})",
                crate::repository::snapshot::short_id(&self.chain),
                self.newest_stored.strftime("%Y-%m-%d %H:%M:%S UTC")
            ),
        }
    }
}

/// The capture of the source whose snapshots are `snaps` (named `source` in the config or
/// on its snapshots), when it has a base snapshot: one LIST of its newest chain.
pub fn standing_of(
    repo: &Repository,
    snaps: &[Snapshot],
    source: &str,
    now: jiff::Timestamp,
) -> Result<Option<Standing>> {
    let Some(base) = snaps
        .iter()
        .filter(|s| replica::base_position(s).is_some())
        .max_by_key(|s| s.started_at)
    else {
        return Ok(None);
    };
    let listed = Chain::new(repo, &base.id).list()?;
    let day_ago = now - jiff::SignedDuration::from_hours(24);
    let newest_stored = listed
        .iter()
        .filter_map(|l| l.modified)
        .max()
        .map_or(base.finished_at, |t| t.max(base.finished_at));
    Ok(Some(Standing {
        chain: base.id.clone(),
        newest_stored,
        segments_last_day: listed
            .iter()
            .filter(|l| l.modified.is_some_and(|m| m >= day_ago))
            .count(),
        pulse: Pulse::read(&repo.config().id, source).filter(|p| p.chain == base.id),
    }))
}

/// The chain being extended: its base, the next segment number, when it began, and the
/// rounds being merged into its next compacted segment.
struct Extending {
    chain: String,
    next_seq: u64,
    began: Instant,
    merger: Merger,
    /// The base snapshot's size.
    base_bytes: u64,
    /// Bytes of rounds stored on this chain.
    since_base: u64,
}

/// A chain is never rebased for its volume before it stored this much.
const MIN_REBASE_BYTES: u64 = 64 << 20;

/// The most page bytes a compacted segment gathers before it is stored early.
const COMPACT_BYTES: usize = 64 << 20;

/// Captures `source` until `stop` is set, then stores what is left and returns. Every run
/// leaves one journal record (job `replicate`); each base snapshot is a `backup` record.
pub fn run(
    repo: &Repository,
    source: &Source,
    opts: &ReplicateOptions,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Summary> {
    // Mistakes in what was asked are refused before the job starts: not a job failure.
    repo.require_full("replicate (it reads back where its chain ended)")?;
    let Location::Sqlite(path) = &source.location else {
        return Err(Error::Continuous(format!(
            "{} is a PostgreSQL source; stream its WAL with `strongroom wal receive {}`",
            source.name, source.name
        )));
    };
    let capture_opts = CaptureOptions {
        lock_timeout: source.lock_timeout,
        ..opts.capture.clone()
    };
    let capture = Capture::open(path, capture_opts)?;
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("replicate", Some(&source.name), None, started_at);
    let mut summary = Summary::default();
    let result = replicate(
        repo,
        source,
        capture,
        opts,
        stop,
        progress,
        &mut summary,
        started_at,
    );
    let mut rec = JournalRecord::new("replicate", started_at);
    rec.source = Some(source.name.clone());
    rec.snapshot = summary.chain.clone();
    rec.added = summary.bytes;
    if let Err(e) = &result {
        rec.failed(e);
    }
    running.ended(repo, &rec);
    result.map(|()| summary)
}

#[allow(clippy::too_many_arguments)]
fn replicate(
    repo: &Repository,
    source: &Source,
    mut capture: Capture,
    opts: &ReplicateOptions,
    stop: &AtomicBool,
    progress: &dyn Progress,
    summary: &mut Summary,
    started_at: jiff::Timestamp,
) -> Result<()> {
    let repo_id = repo.config().id.clone();
    let mut pulse = Pulse {
        pid: std::process::id(),
        started_at: Some(started_at),
        interval_seconds: opts.interval.as_secs_f64(),
        ..Pulse::default()
    };
    let mut chain = match resume(repo, source, &mut capture)? {
        Some(c) => {
            summary.resumed = true;
            tracing::info!(chain = %c.chain, next = c.next_seq, "resuming the chain");
            c
        }
        None => new_base(repo, source, &mut capture, progress, summary, &mut pulse)?,
    };
    summary.chain = Some(chain.chain.clone());
    pulse.chain = chain.chain.clone();
    let mut pending: Option<Segment> = None;
    let mut last_try = Instant::now() - opts.interval;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        // A segment the store refused is tried again before anything new is read: our
        // read transaction still protects its frames and everything after them.
        if let Some(seg) = pending.take() {
            if let Err(e) = store(
                repo,
                &mut chain,
                &seg,
                (opts.level, opts.compact_rounds),
                summary,
                &mut pulse,
            ) {
                if stopping {
                    return Err(e);
                }
                tracing::warn!(
                    "storing segment {} failed ({e}); trying again",
                    chain.next_seq
                );
                pending = Some(seg);
                pause(stop, opts.interval.max(Duration::from_secs(1)));
                continue;
            }
        }
        // Everything committed before this moment is stored once the rounds below are:
        // the recovery point this run can promise.
        let round_began = jiff::Timestamp::now();
        loop {
            let mut round = match capture.round() {
                Ok(r) => r,
                Err(e) => Round::Lost(e.to_string()),
            };
            // Caught up: our checkpoint, whose last frames join this round's segment, so a
            // round stays one object.
            if matches!(round, Round::Idle | Round::Captured { more: false, .. }) {
                round = match (round, capture.checkpoint()) {
                    (r, Ok(Round::Idle)) => r,
                    (Round::Captured { segment, .. }, Ok(Round::Captured { segment: s2, .. })) => {
                        Round::Captured {
                            segment: segment.followed_by(&s2),
                            more: false,
                        }
                    }
                    (_, Ok(r @ Round::Captured { .. })) => r,
                    (_, Ok(Round::Lost(why))) => Round::Lost(why),
                    (_, Err(e)) => Round::Lost(format!("our checkpoint failed ({e})")),
                };
            }
            let more = match round {
                Round::Idle => false,
                Round::Captured { segment, more } => {
                    if let Err(e) = store(
                        repo,
                        &mut chain,
                        &segment,
                        (opts.level, opts.compact_rounds),
                        summary,
                        &mut pulse,
                    ) {
                        tracing::warn!(
                            "storing segment {} failed ({e}); trying again",
                            chain.next_seq
                        );
                        pending = Some(segment);
                        break;
                    }
                    more
                }
                Round::Lost(why) => {
                    tracing::warn!("{why}; taking a new base snapshot of {}", source.name);
                    chain = new_base(repo, source, &mut capture, progress, summary, &mut pulse)?;
                    false
                }
            };
            if !more {
                break;
            }
        }
        if pending.is_none() {
            pulse.caught_up_at = Some(round_began);
        }
        pulse.wal_bytes = capture.wal_bytes();
        pulse.wal_frames = capture.wal_frames();
        pulse.chain = chain.chain.clone();
        summary.chain = Some(chain.chain.clone());
        pulse.save(&repo_id, &source.name);
        if stopping {
            return Ok(());
        }
        // A new base after base_interval, or once the chain has stored as much as the
        // database holds: a restore then never replays more than about its size.
        let due = chain.began.elapsed() >= opts.base_interval
            || chain.since_base >= chain.base_bytes.max(MIN_REBASE_BYTES);
        if pending.is_none() && due && chain.next_seq > 1 {
            chain = new_base(repo, source, &mut capture, progress, summary, &mut pulse)?;
            continue;
        }
        let next = last_try + opts.interval;
        last_try = Instant::now().max(next);
        pause(stop, next.saturating_duration_since(Instant::now()));
    }
}

/// Sleeps up to `d`, waking early when `stop` is set.
fn pause(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn store(
    repo: &Repository,
    chain: &mut Extending,
    segment: &Segment,
    (level, compact_rounds): (i32, u64),
    summary: &mut Summary,
    pulse: &mut Pulse,
) -> Result<()> {
    let bytes = segment.encode();
    // Signals held off: a segment is either stored whole or not at all.
    let written = crate::interrupt::critical(|| {
        Chain::new(repo, &chain.chain).put(chain.next_seq, &bytes, level)
    })?;
    pulse.requests += 1;
    pulse.segments += 1;
    pulse.newest_commit_at = segment.transactions.last().map(|t| t.captured_at);
    tracing::debug!(
        seq = chain.next_seq,
        transactions = segment.transactions.len(),
        bytes = written,
        "segment stored"
    );
    chain.merger.add(chain.next_seq, segment);
    chain.since_base += written;
    chain.next_seq += 1;
    summary.segments += 1;
    summary.transactions += segment.last_txid() + 1 - segment.first_txid();
    summary.bytes += written;
    if chain.merger.rounds() >= compact_rounds || chain.merger.bytes() >= COMPACT_BYTES {
        compact(repo, chain, level, summary, pulse);
    }
    Ok(())
}

/// Stores the rounds merged so far as one compacted segment. A failure costs only speed:
/// the rounds themselves are stored, and a restore reads them instead.
fn compact(
    repo: &Repository,
    chain: &mut Extending,
    level: i32,
    summary: &mut Summary,
    pulse: &mut Pulse,
) {
    let (first, last) = (chain.merger.first_seq, chain.merger.last_seq);
    let Some(seg) = chain.merger.take() else {
        return;
    };
    let bytes = seg.encode();
    match crate::interrupt::critical(|| {
        Chain::new(repo, &chain.chain).put_compacted(first, last, &bytes, level)
    }) {
        Ok(written) => {
            pulse.requests += 1;
            summary.bytes += written;
            tracing::debug!(first, last, bytes = written, "compacted segment stored");
        }
        Err(e) => tracing::warn!("storing the compacted segment {first}-{last} failed: {e}"),
    }
}

/// Goes on from the source's newest chain when the WAL still holds where it ended.
fn resume(repo: &Repository, source: &Source, capture: &mut Capture) -> Result<Option<Extending>> {
    let snaps = repo.snapshots()?;
    let Some(base) = newest_base(&snaps, source) else {
        return Ok(None);
    };
    let Some(start) = replica::base_position(base) else {
        return Ok(None);
    };
    let chain = Chain::new(repo, &base.id);
    let listed = chain.list()?;
    let (at, next_txid) = match listed.last() {
        None => (start, 1),
        Some(last) => {
            let key = chain.object_key(last.seq);
            match chain.get(last.seq).and_then(|b| Segment::decode(&key, &b)) {
                Ok(seg) => (seg.end, seg.last_txid() + 1),
                Err(e) => {
                    tracing::warn!(
                        "cannot read the chain's last segment ({e}); starting a new chain"
                    );
                    return Ok(None);
                }
            }
        }
    };
    if !capture.resume(at, next_txid)? {
        tracing::info!(
            "the WAL of {} no longer holds where chain {} ended; starting a new chain",
            source.name,
            base.id
        );
        return Ok(None);
    }
    Ok(Some(Extending {
        chain: base.id.clone(),
        next_seq: listed.last().map_or(1, |l| l.seq + 1),
        began: Instant::now(),
        merger: Merger::default(),
        base_bytes: base.size,
        since_base: listed.iter().map(|l| l.stored).sum(),
    }))
}

/// Takes a base snapshot in a freshly pinned read transaction; a new chain starts there.
fn new_base(
    repo: &Repository,
    source: &Source,
    capture: &mut Capture,
    progress: &dyn Progress,
    summary: &mut Summary,
    pulse: &mut Pulse,
) -> Result<Extending> {
    capture.pin_base()?;
    let opts = crate::jobs::backup::BackupOptions {
        tags: vec![replica::BASE_TAG.into()],
        kind: Some(BackupKind::Full),
    };
    let cap = &*capture;
    let snap = crate::jobs::backup::run_capturing(
        repo,
        source,
        &opts,
        progress,
        Some(&|w| replica::capture_base(cap, source, w, progress)),
    )?;
    tracing::info!(snapshot = %snap.id, "base snapshot taken; a new chain starts");
    summary.bases += 1;
    pulse.requests += 3;
    Ok(Extending {
        base_bytes: snap.size,
        chain: snap.id,
        next_seq: 1,
        began: Instant::now(),
        merger: Merger::default(),
        since_base: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RecoveryTarget;
    use crate::progress::Silent;
    use crate::repository::writer::tests::memory_repo;
    use rusqlite::Connection;

    /// Many short rounds, merged four at a time: a restore reads the compacted segments
    /// and holds exactly what was committed.
    #[test]
    fn compacted_segments_restore_the_same_state_as_the_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let app = Connection::open(&db).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB);",
        )
        .unwrap();
        let repo = memory_repo();
        let source = Source::new("c", Location::Sqlite(db.clone()));
        let opts = ReplicateOptions {
            interval: Duration::from_millis(10),
            compact_rounds: 4,
            ..ReplicateOptions::default()
        };
        let stop = AtomicBool::new(false);
        let summary = std::thread::scope(|s| {
            let job = s.spawn(|| run(&repo, &source, &opts, &stop, &Silent));
            for id in 1..=300 {
                app.execute("INSERT INTO t VALUES (?1, randomblob(500))", [id])
                    .unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            // A stop runs a last round: everything committed is stored.
            stop.store(true, Ordering::SeqCst);
            job.join().unwrap().unwrap()
        });
        assert!(summary.segments > 8, "{summary:?}");
        let snaps = repo.snapshots().unwrap();
        let base = newest_base(&snaps, &source).unwrap();
        let chain = Chain::new(&repo, &base.id);
        assert!(
            !chain.list_compacted().unwrap().is_empty(),
            "rounds were compacted"
        );
        // The base's pages, then the chain.
        let out = dir.path().join("r.db");
        let mut f = std::fs::File::create(&out).unwrap();
        let index = repo.load_index().unwrap();
        crate::repository::reader::stream_file(
            &repo,
            &index,
            base,
            &base.files[0],
            &mut f,
            &Silent,
        )
        .unwrap();
        let done = replica::replay::apply(&repo, &base.id, 4096, &f, &out, &RecoveryTarget::Latest)
            .unwrap();
        assert_eq!(done.cut_short, None);
        assert_eq!(done.transactions, summary.transactions);
        drop(f);
        let r = Connection::open(&out).unwrap();
        let (n, max): (i64, i64) = r
            .query_row("SELECT count(*), max(id) FROM t", [], |x| {
                Ok((x.get(0)?, x.get(1)?))
            })
            .unwrap();
        assert_eq!((n, max), (300, 300));
        let ok: String = r
            .query_row("PRAGMA integrity_check", [], |x| x.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
}

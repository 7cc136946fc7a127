//! Capturing committed WAL frames from a live database without ever missing one.
//!
//! Owns the two connections the capture reads through, the read transactions they hold,
//! and our checkpoints. Must not store anything (the replicate job puts the segments this
//! hands out) and must not write to the database: no table of ours, no row, no schema
//! change (Litestream writes two tables into the application's database; we hold locks).
//!
//! **Why nothing is missed.** A frame disappears from the WAL only when a checkpoint has
//! copied it into the database file *and* a writer has then restarted the WAL over it.
//! SQLite allows neither past a reader: a checkpoint copies no frame beyond the snapshot
//! of the oldest read transaction (and none at all while a reader holds read lock 0), and
//! the WAL restarts only when every frame is copied and no reader holds a read mark above
//! 0. So the capture always holds a read transaction, and moves it forward by beginning
//! the next one (on the other connection) *before* ending the old, copying everything up
//! to the index's `mxFrame` in between. Whenever the WAL restarts, the old generation ended
//! exactly where the capture had read to, so the new one continues from our state.
//!
//! **Bounded read marks and WAL.** Each transaction lives one round (about a second).
//! Holding one continuously would still keep a busy WAL from ever restarting (Litestream's
//! #1536): the WAL restarts only once every frame is in the database file and no reader
//! holds a mark above 0. So our checkpoints make *restart points* ([`Capture::checkpoint`]):
//! a PASSIVE checkpoint (bounded by our read mark: it copies only captured frames), then
//! for a moment the write lock, the last frames read, our transaction moved to the end and
//! a second PASSIVE, after which our transaction sits on read lock 0 and the next writer
//! starts the WAL over. Our read transactions are never all released, so no frame we have
//! not read can be copied and overwritten in between. A TRUNCATE gives the file's space
//! back when it grew past the brake; it can truncate only a WAL whose frames are all
//! copied, which our read lock 0 guarantees were captured.
//!
//! **Closing does not checkpoint.** Our connections set `SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`:
//! when the capture is the last connection to close, the WAL stays as it was, so a
//! restarted capture finds its position (same salts, same checksum at its frame) and goes
//! on without a new base. Litestream re-sent the whole database after 4 of 5 clean
//! restarts.

use super::segment::{Segment, Transaction};
use super::wal_file::{self, Frame, Position};
use crate::error::{Error, Result};
use rusqlite::Connection;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the capture keeps the WAL in bounds.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Make a restart point ([`Capture::checkpoint`]) after a round once the WAL holds this
    /// many frames.
    pub checkpoint_frames: u32,
    /// The brake: a TRUNCATE once the `-wal` file is larger than this many frames.
    pub brake_frames: u32,
    /// At most this many bytes of page images in one segment (a round after a long pause
    /// is cut into several).
    pub max_segment_bytes: usize,
    /// How long to wait for a database locked by others before giving up.
    pub lock_timeout: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            checkpoint_frames: 1000,
            brake_frames: 10_000,
            max_segment_bytes: 32 << 20,
            lock_timeout: crate::source::DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// What one round found.
#[derive(Debug)]
pub enum Round {
    /// Nothing committed since the last round.
    Idle,
    /// These transactions, the WAL position after them in [`Segment::end`]. `more` when
    /// the round stopped at [`CaptureOptions::max_segment_bytes`] with frames left.
    Captured {
        /// The transactions.
        segment: Segment,
        /// Whether frames are left for another round at once.
        more: bool,
    },
    /// Frames we had not read are gone, or the WAL is not what our position says: a new
    /// base is needed.
    Lost(String),
}

/// A capture in progress on one database.
pub struct Capture {
    path: PathBuf,
    conns: [Connection; 2],
    /// The connection holding our read transaction.
    held: Option<usize>,
    wal: File,
    shm: File,
    pos: Position,
    page_size: u32,
    next_txid: u64,
    opts: CaptureOptions,
}

fn sqlite_err(path: &Path, e: rusqlite::Error) -> Error {
    super::super::source_err(path, e)
}

impl Capture {
    /// Opens `path` for capture: it must be in WAL mode.
    pub fn open(path: &Path, opts: CaptureOptions) -> Result<Capture> {
        let open = || -> Result<Connection> {
            let c = super::super::open_existing(path)?;
            c.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(|e| sqlite_err(path, e))?;
            // Our own writes never happen; our checkpoints are explicit.
            c.execute_batch("PRAGMA wal_autocheckpoint = 0")
                .map_err(|e| sqlite_err(path, e))?;
            Ok(c)
        };
        let a = open()?;
        let mode: String = a
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| sqlite_err(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Continuous(format!(
                "{} is in journal mode {mode}, not WAL; continuous capture reads the WAL: \
                 switch it once with sqlite3 {} 'PRAGMA journal_mode=WAL' (or back it up on a schedule instead)",
                path.display(),
                path.display()
            )));
        }
        let b = open()?;
        let open_file = |p: PathBuf| -> Result<File> {
            // Read-only, never through a link: these are SQLite's files beside the database.
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&p)
                .map_err(|e| Error::io("opening", &p, e))
        };
        // Reading once makes SQLite create the -wal and -shm files.
        a.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| sqlite_err(path, e))?;
        let page_size: i64 = a
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| sqlite_err(path, e))?;
        Ok(Capture {
            wal: open_file(wal_file::wal_path(path))?,
            shm: open_file(wal_file::shm_path(path))?,
            path: path.to_path_buf(),
            conns: [a, b],
            held: None,
            pos: Position {
                salt: [0, 0],
                frame: 0,
                checksum: [0, 0],
                big_endian: false,
            },
            page_size: page_size as u32,
            next_txid: 1,
            opts,
        })
    }

    /// Where the capture stands: the WAL position after the last transaction handed out.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// The id the next captured transaction gets.
    pub fn next_txid(&self) -> u64 {
        self.next_txid
    }

    /// The database's page size.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The connection holding our read transaction: a base snapshot reads its pages
    /// through it, so they are exactly the state at [`Capture::position`].
    pub fn held_connection(&self) -> Option<&Connection> {
        self.held.map(|i| &self.conns[i])
    }

    /// Bytes of the `-wal` file now (a metric: it must stay bounded).
    pub fn wal_bytes(&self) -> u64 {
        self.wal.metadata().map(|m| m.len()).unwrap_or(0)
    }

    /// Frames in the WAL now (committed, current generation).
    pub fn wal_frames(&self) -> u32 {
        self.index().ok().flatten().map_or(0, |i| i.max_frame)
    }

    fn index(&self) -> Result<Option<wal_file::IndexHeader>> {
        wal_file::read_index(&self.shm, &wal_file::shm_path(&self.path))
    }

    fn begin(&self, i: usize) -> Result<()> {
        let c = &self.conns[i];
        c.busy_timeout(self.opts.lock_timeout)
            .map_err(|e| sqlite_err(&self.path, e))?;
        c.execute_batch("BEGIN")
            .and_then(|()| c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
            .map_err(|e| {
                let _ = c.execute_batch("ROLLBACK");
                sqlite_err(&self.path, e)
            })
    }

    fn end(&self, i: usize) {
        let _ = self.conns[i].execute_batch("ROLLBACK");
    }

    /// Goes on from `at` (where the chain's last segment or its base left the WAL), when
    /// the WAL still holds that position: same generation, at least that many frames, and
    /// the same checksum at that frame. Holds a read transaction either way; `false` means
    /// a new base is needed.
    pub fn resume(&mut self, at: Position, next_txid: u64) -> Result<bool> {
        self.release();
        self.begin(0)?;
        self.held = Some(0);
        let Some(idx) = self.index()? else {
            return Ok(false);
        };
        if idx.salt != at.salt || idx.max_frame < at.frame || idx.page_size != self.page_size {
            return Ok(false);
        }
        let wal = wal_file::wal_path(&self.path);
        if wal_file::frame_checksum(&self.wal, &wal, self.page_size, at.frame)? != Some(at.checksum)
        {
            return Ok(false);
        }
        self.pos = at;
        self.next_txid = next_txid;
        Ok(true)
    }

    /// Pins the state a new base starts from: with the write lock taken for a moment (no
    /// commit can happen), reads where the WAL ends and begins the read transaction the
    /// base reads its pages in, which therefore sees exactly that position. Transaction ids
    /// start again at 1.
    pub fn pin_base(&mut self) -> Result<()> {
        self.release();
        let w = &self.conns[0];
        w.busy_timeout(self.opts.lock_timeout)
            .map_err(|e| sqlite_err(&self.path, e))?;
        w.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| sqlite_err(&self.path, e))?;
        let pinned = self.read_end().and_then(|pos| {
            self.begin(1)?;
            Ok(pos)
        });
        self.end(0);
        let pos = pinned?;
        self.held = Some(1);
        self.pos = pos;
        self.next_txid = 1;
        Ok(())
    }

    /// The position at the end of the committed WAL, every frame checked on the way.
    fn read_end(&self) -> Result<Position> {
        let wal = wal_file::wal_path(&self.path);
        let header = wal_file::read_header(&self.wal, &wal)?;
        let idx = self.index()?;
        match (header, idx) {
            (Some((start, _)), Some(idx)) if idx.salt == start.salt => wal_file::read_frames(
                &self.wal,
                &wal,
                self.page_size,
                start,
                idx.max_frame,
                |_| Ok(()),
            ),
            (header, idx) => {
                // An empty or reset WAL: nothing beyond the database file. The position is
                // the index's generation at frame 0 (its checksum is the header's, if any).
                let salt = idx.map(|i| i.salt).unwrap_or_default();
                let (checksum, big_endian) = match header {
                    Some((h, _)) if h.salt == salt => (h.checksum, h.big_endian),
                    _ => ([0, 0], false),
                };
                if idx.is_some_and(|i| i.max_frame > 0) {
                    return Err(Error::Source(format!(
                        "{}: the WAL header does not match its index; try again in a moment",
                        self.path.display()
                    )));
                }
                Ok(Position {
                    salt,
                    frame: 0,
                    checksum,
                    big_endian,
                })
            }
        }
    }

    /// Ends our read transactions.
    pub fn release(&mut self) {
        for i in 0..2 {
            self.end(i);
        }
        self.held = None;
    }

    /// One round: begins the next read transaction, reads every committed frame after our
    /// position (up to [`CaptureOptions::max_segment_bytes`]), then ends the previous one.
    pub fn round(&mut self) -> Result<Round> {
        let Some(old) = self.held else {
            return Err(Error::Internal(
                "a capture round without a read transaction".into(),
            ));
        };
        let Some(idx) = self.index()? else {
            return Ok(Round::Idle);
        };
        if idx.salt == self.pos.salt && idx.max_frame == self.pos.frame {
            return Ok(Round::Idle);
        }
        let new = 1 - old;
        self.begin(new)?;
        let result = self.read_round();
        match &result {
            Ok(Round::Captured { more: true, .. }) | Err(_) | Ok(Round::Lost(_)) => {
                // Keep the older (stricter) transaction: frames are left to read.
                self.end(new);
            }
            _ => {
                self.end(old);
                self.held = Some(new);
            }
        }
        result
    }

    fn read_round(&mut self) -> Result<Round> {
        let wal = wal_file::wal_path(&self.path);
        let Some(idx) = self.index()? else {
            return Ok(Round::Idle);
        };
        let from = if idx.salt == self.pos.salt && self.pos.frame > 0 {
            if idx.max_frame < self.pos.frame {
                return Ok(Round::Lost(format!(
                    "the WAL holds {} frames, fewer than the {} already captured",
                    idx.max_frame, self.pos.frame
                )));
            }
            self.pos
        } else {
            // The WAL restarted (or we stand at a generation's start, whose header may not
            // have been written yet when we took our position: after a TRUNCATE the file
            // is empty until the next commit). While we held a read transaction, it could
            // only restart after every frame up to our position was copied and none was
            // added, so the new generation starts from exactly our state.
            match wal_file::read_header(&self.wal, &wal)? {
                Some((start, _)) if start.salt == idx.salt => start,
                _ => return Ok(Round::Idle),
            }
        };
        let mut segment = Segment {
            page_size: self.page_size,
            first: self.next_txid,
            transactions: Vec::new(),
            end: from,
        };
        let now = jiff::Timestamp::now();
        // The round's transactions become one: the last image of each page they wrote, and
        // the database's size after the last. They were all seen at the same moment, so a
        // restore to a time takes all of them or none: nothing finer is lost, and a busy
        // second that rewrote one page 3,000 times stores it once.
        let mut pages: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut bytes = 0usize;
        let mut txid = self.next_txid;
        let mut last_commit: Option<(u64, u32)> = None;
        let mut stopped_early = false;
        let mut cursor = from;
        let limit = self.opts.max_segment_bytes;
        // Frame by frame, so a long round can stop at a commit once it is large enough.
        while cursor.frame < idx.max_frame {
            let mut commit: Option<u32> = None;
            cursor = wal_file::read_frames(
                &self.wal,
                &wal,
                self.page_size,
                cursor,
                cursor.frame + 1,
                |Frame {
                     page,
                     commit: c,
                     data,
                 }| {
                    let len = data.len();
                    if pages.insert(page, data).is_none() {
                        bytes += len;
                    }
                    if c != 0 {
                        commit = Some(c);
                    }
                    Ok(())
                },
            )?;
            if let Some(db_pages) = commit {
                last_commit = Some((txid, db_pages));
                txid += 1;
                segment.end = cursor;
                if bytes >= limit && cursor.frame < idx.max_frame {
                    stopped_early = true;
                    break;
                }
            }
        }
        if cursor != segment.end {
            // mxFrame always ends on a commit frame; anything else is not a WAL we know.
            return Err(Error::Source(format!(
                "{}: the WAL's last committed frame {} is not a commit frame",
                wal.display(),
                idx.max_frame
            )));
        }
        let Some((last, db_pages)) = last_commit else {
            // A restart with no frames yet: take the new generation's start as ours.
            self.pos = segment.end;
            return Ok(Round::Idle);
        };
        let mut pages: Vec<(u32, Vec<u8>)> = pages.into_iter().collect();
        pages.sort_unstable_by_key(|(n, _)| *n);
        segment.transactions.push(Transaction {
            txid: last,
            captured_at: now,
            db_pages,
            pages,
        });
        self.pos = segment.end;
        self.next_txid = txid;
        Ok(Round::Captured {
            segment,
            more: stopped_early,
        })
    }

    /// Our checkpoints, after a round, once the WAL holds
    /// [`CaptureOptions::checkpoint_frames`] frames: a *restart point*. A PASSIVE
    /// checkpoint first copies what we captured (our read mark bounds it; writers go on);
    /// then, with the write lock taken for a moment (`BEGIN IMMEDIATE`, at most 50 ms of
    /// waiting, else next round), the last frames are read, our read transaction moves to
    /// the end, and a second PASSIVE copies the rest: every frame is then in the database
    /// file, our new read transaction sits on read lock 0, and the next writer starts the
    /// WAL over. Writers wait only for that second, small checkpoint. Past
    /// [`CaptureOptions::brake_frames`] frames' worth of file, a TRUNCATE (never waiting)
    /// gives the space back: it can only truncate a WAL whose every frame is copied, and
    /// our read lock 0 keeps any frame we have not captured from being copied. Returns the
    /// frames read under the write lock.
    pub fn checkpoint(&mut self) -> Result<Round> {
        let Some(held) = self.held else {
            return Ok(Round::Idle);
        };
        let idle = 1 - held;
        let idx = self.index()?;
        let copied_all = idx.is_none_or(|i| i.backfilled >= i.max_frame);
        if self.wal_frames() < self.opts.checkpoint_frames || copied_all {
            self.brake(idle);
            return Ok(Round::Idle);
        }
        let passive = |c: &Connection| {
            let _: rusqlite::Result<(i64, i64, i64)> =
                c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                });
        };
        passive(&self.conns[idle]);
        let w = &self.conns[idle];
        w.busy_timeout(Duration::from_millis(50))
            .map_err(|e| sqlite_err(&self.path, e))?;
        if let Err(e) = w.execute_batch("BEGIN IMMEDIATE") {
            // Writers are busy: the next round tries again.
            tracing::debug!("restart point skipped: {e}");
            return Ok(Round::Idle);
        }
        // No commit can happen now: read up to the end, then let the checkpoint copy it.
        let read = self.read_round();
        let round = match read {
            Ok(r @ (Round::Idle | Round::Captured { more: false, .. })) => r,
            other => {
                self.end(idle);
                return other;
            }
        };
        self.end(held);
        passive(&self.conns[held]);
        let begun = self.begin(held);
        self.end(idle);
        if let Err(e) = begun {
            // Nothing of ours holds the WAL now: the caller starts a new base.
            self.held = None;
            return Err(e);
        }
        tracing::debug!(
            frames = self.wal_frames(),
            bytes = self.wal_bytes(),
            "restart point made"
        );
        self.brake(idle);
        Ok(round)
    }

    /// The brake: TRUNCATE when the `-wal` file holds more than
    /// [`CaptureOptions::brake_frames`] frames' worth, without waiting for anyone.
    fn brake(&self, idle: usize) {
        let frame = wal_file::FRAME_HEADER + self.page_size as u64;
        if self.wal_bytes() <= self.opts.brake_frames as u64 * frame {
            return;
        }
        let c = &self.conns[idle];
        let _ = c.busy_timeout(Duration::ZERO);
        let ran: rusqlite::Result<(i64, i64, i64)> =
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        tracing::debug!(?ran, bytes = self.wal_bytes(), "brake: TRUNCATE checkpoint");
    }
}

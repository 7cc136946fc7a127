//! `wal receive`: PostgreSQL WAL streamed over the replication protocol into the archive,
//! as it is written, durable in the repository within a second (or before each
//! acknowledgement, synchronously).
//!
//! Owns the receive loop: the replication slot (created when missing, so the server keeps
//! what was not received), where streaming starts (the segment after the newest one the
//! repository holds on the server's timeline, or the slot's restart point), batching
//! received bytes into pieces ([`super::pieces`]) so that each is durable within
//! [`DURABLE_WITHIN`] of arriving (a piece is started early by as long as the last write
//! took), or after every
//! burst with `synchronous`, archiving each completed segment whole under its own name (so
//! `archive_command` and `wal receive` archive the same object), and the standby status
//! updates, whose write, flush and apply positions are the end of what is durable in the
//! repository, never more: with `synchronous_standby_names = 'strongroom'` a commit returns
//! only once its WAL is there. Follows timeline switches, archiving each history file.
//! Reconnects after a lost connection until told to stop. Must not know how objects are
//! sealed or stored (the archive's) nor speak the wire protocol itself ([`protocol`]).

pub mod protocol;
pub mod slot;

use super::cluster::Lsn;
use super::pieces;
use super::server::Conn;
use super::wal::{WalKind, WalName, segment_name, timeline_folder};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::archive::{Archive, Put};
use protocol::{Connection, Failure, Message};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The replication slot's name unless the config names another (`sources.NAME.slot`).
pub const DEFAULT_SLOT: &str = "strongroom";

/// How soon received WAL is durable, without `synchronous`: a piece is written when its
/// oldest byte is this old less the time the last write took (so under 1.5 pieces a second
/// while WAL arrives, none while the server is idle). Below a second by a margin: WAL also
/// spends time on its way from the server, and a busy receiver reads it late. A store
/// slower than this gets one write after another.
pub const DURABLE_WITHIN: Duration = Duration::from_millis(700);

/// The most a piece holds: a backlog (or a very busy server) is written in parts, so the
/// durable position moves on while the rest is read.
const MAX_PIECE: usize = 4 << 20;

/// How often the server hears where the repository is, at least.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// How long a read waits before the loop looks at its clocks and the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// How `wal receive` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The physical replication slot.
    pub slot: String,
    /// Write and acknowledge after every burst of WAL, not about every second
    /// ([`DURABLE_WITHIN`]).
    pub synchronous: bool,
    /// zstd level of what is archived.
    pub level: i32,
    /// The source's name, for messages.
    pub source: String,
}

/// What a run received.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Bytes of WAL received.
    pub bytes: u64,
    /// Pieces written.
    pub pieces: u64,
    /// Segments archived whole (or found archived already).
    pub segments: u64,
    /// The end of what is durable, as `(timeline, LSN)`.
    pub durable: Option<(u32, String)>,
}

/// Checks a slot name as PostgreSQL would: lower-case letters, digits and underscores.
pub fn check_slot_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "replication slot name {name:?} is not usable: PostgreSQL allows lower-case \
             letters, digits and underscores (at most 63)"
        )))
    }
}

/// Why a session ended.
enum End {
    /// Asked to stop.
    Stopped,
    /// Connect again (the connection was lost, the server restarts…).
    Retry(String),
}

/// Streams WAL from the server `conn` names into `repo` until `stop` is set; reconnects
/// (1 s, 2 s, … 30 s apart) after the connection is lost. Fails at once on what a retry
/// cannot change: authentication, privileges, settings, a repository that refuses writes.
pub fn run(repo: &Repository, conn: &Conn, opts: &Options, stop: &AtomicBool) -> Result<Summary> {
    check_slot_name(&opts.slot)?;
    let mut summary = Summary::default();
    let mut wait = Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        match session(repo, conn, opts, stop, &mut summary) {
            Ok(End::Stopped) => break,
            Ok(End::Retry(why)) => {
                tracing::warn!(
                    "receiving WAL from source {}: {why}; connecting again in {} s",
                    opts.source,
                    wait.as_secs()
                );
                let until = Instant::now() + wait;
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(TICK);
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
        if summary.bytes > 0 {
            wait = wait.min(Duration::from_secs(2));
        }
    }
    Ok(summary)
}

/// A failure of the wire: retried when it is the network's or a server going away, else
/// one sentence naming the source.
fn judge(failure: Failure, conn: &Conn, opts: &Options) -> Result<End> {
    match failure {
        Failure::Io(e) => Ok(End::Retry(format!("{} ({})", e, conn.server()))),
        Failure::Server { code, message } => {
            let class = &code[..code.len().min(2)];
            match (class, code.as_str()) {
                ("28", _) => Err(Error::Source(format!(
                    "PostgreSQL at {} refused replication for role {:?} of source {}: {message}; \
                     allow it in pg_hba.conf (`host replication {} <address> scram-sha-256`) \
                     and check the password",
                    conn.server(),
                    conn.user(),
                    opts.source,
                    conn.user()
                ))),
                ("42", _) | (_, "55000") => Err(Error::Source(format!(
                    "PostgreSQL at {} (source {}) refused to stream WAL: {message}; the role \
                     needs the REPLICATION attribute, and the server wal_level replica and \
                     max_wal_senders above 0",
                    conn.server(),
                    opts.source
                ))),
                (_, "58P01") => Err(Error::Source(format!(
                    "PostgreSQL at {} (source {}) no longer has the WAL streaming must start \
                     from: {message}; take a new physical backup (the replication slot {} now \
                     keeps WAL from here on)",
                    conn.server(),
                    opts.source,
                    opts.slot
                ))),
                _ => Ok(End::Retry(format!("{message} (SQLSTATE {code})"))),
            }
        }
        Failure::Protocol(m) => Err(Error::Source(format!(
            "streaming WAL from source {} at {}: {m}",
            opts.source,
            conn.server()
        ))),
    }
}

fn first_cell(rows: &[Vec<Option<String>>], col: usize) -> Option<String> {
    rows.first()?.get(col)?.clone()
}

/// Parses `SHOW wal_segment_size` (`16MB`, `1GB`).
fn parse_size(text: &str) -> Option<u64> {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = match text[digits.len()..].trim() {
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "" | "B" => 1,
        _ => return None,
    };
    Some(n * unit)
}

/// One connection's worth of streaming.
fn session(
    repo: &Repository,
    conn: &Conn,
    opts: &Options,
    stop: &AtomicBool,
    summary: &mut Summary,
) -> Result<End> {
    let mut c = match Connection::open(conn) {
        Ok(c) => c,
        Err(f) => return judge(f, conn, opts),
    };
    match stream(&mut c, repo, conn, opts, stop, summary) {
        Ok(end) => {
            c.close();
            Ok(end)
        }
        Err(Stop::Wire(f)) => judge(f, conn, opts),
        Err(Stop::Repo(e)) => Err(e),
    }
}

enum Stop {
    Wire(Failure),
    Repo(Error),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Wire(f)
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Repo(e)
    }
}

/// Where streaming starts on the server's timeline `tli`: the segment after the newest one
/// archived whole there, unless the slot's restart point is later (the server no longer
/// has what lies before it); the slot's restart point (and its timeline) when nothing is
/// archived there; the server's position when neither is known.
fn start_point(
    listed: &[crate::repository::archive::Listed],
    tli: u32,
    seg: u64,
    restart: Option<(Lsn, u32)>,
    server: Lsn,
) -> (Lsn, u32) {
    let folder = timeline_folder(tli);
    let held = listed
        .iter()
        .filter(|l| l.timeline == folder)
        .filter_map(|l| WalName::parse(&l.name))
        .filter(|n| n.kind == WalKind::Segment)
        .filter_map(|n| n.segment_number(seg))
        .max()
        .map(|n| Lsn((n + 1) * seg));
    let floor = |l: Lsn| Lsn(l.0 - l.0 % seg);
    match (held, restart) {
        (Some(h), Some((r, _))) if h >= floor(r) => (h, tli),
        (_, Some((r, rt))) => (floor(r), rt),
        (Some(h), None) => (h, tli),
        (None, None) => (floor(server), tli),
    }
}

/// Archives the history file of timeline `tli` when it is not archived yet.
fn archive_history(
    c: &mut Connection,
    archive: &Archive,
    tli: u32,
    level: i32,
) -> Result<(), Stop> {
    let name = format!("{tli:08X}.history");
    let folder = timeline_folder(tli);
    if tli <= 1 || archive.has(&folder, &name)? {
        return Ok(());
    }
    let rows = c.query(&format!("TIMELINE_HISTORY {tli}"))?;
    let content = first_cell(&rows, 1).unwrap_or_default();
    match archive.put(&folder, &name, content.as_bytes(), level)? {
        Put::Stored { .. } => tracing::info!("archived {name}"),
        Put::AlreadyArchived => {}
    }
    Ok(())
}

fn stream(
    c: &mut Connection,
    repo: &Repository,
    conn: &Conn,
    opts: &Options,
    stop: &AtomicBool,
    summary: &mut Summary,
) -> Result<End, Stop> {
    let ident = c.query("IDENTIFY_SYSTEM")?;
    let (Some(system_id), Some(tli), Some(pos)) = (
        first_cell(&ident, 0),
        first_cell(&ident, 1).and_then(|t| t.parse::<u32>().ok()),
        first_cell(&ident, 2).and_then(|p| Lsn::parse(&p)),
    ) else {
        return Err(Failure::Protocol("IDENTIFY_SYSTEM answered without its fields".into()).into());
    };
    let seg = first_cell(&c.query("SHOW wal_segment_size")?, 0)
        .and_then(|s| parse_size(&s))
        .filter(|s| s.is_power_of_two())
        .ok_or_else(|| Failure::Protocol("SHOW wal_segment_size answered nonsense".into()))?;
    let slot = &opts.slot;
    // The slot: read it (PostgreSQL 15+), create it when missing.
    let read_slot = |c: &mut Connection| -> Result<Option<Option<(Lsn, u32)>>, Stop> {
        if c.server_major < 15 {
            return Ok(None);
        }
        let rows = c.query(&format!("READ_REPLICATION_SLOT {slot}"))?;
        let Some(row) = rows
            .first()
            .filter(|r| r.first().is_some_and(|t| t.is_some()))
        else {
            return Ok(None);
        };
        let lsn = row
            .get(1)
            .cloned()
            .flatten()
            .and_then(|l| Lsn::parse(&l))
            .filter(|l| l.0 > 0);
        let rt = row.get(2).cloned().flatten().and_then(|t| t.parse().ok());
        Ok(Some(lsn.map(|l| (l, rt.unwrap_or(tli)))))
    };
    let mut restart = None;
    let mut exists = false;
    if let Some(r) = read_slot(c)? {
        exists = true;
        restart = r;
    }
    if !exists {
        match c.query(&format!(
            "CREATE_REPLICATION_SLOT {slot} PHYSICAL RESERVE_WAL"
        )) {
            Ok(_) => {
                // A physical slot's answer carries no position: read where it reserves from.
                restart = read_slot(c)?.flatten();
                tracing::info!(
                    "created physical replication slot {slot} on {} (source {}): the server now keeps WAL until strongroom received it",
                    conn.server(),
                    opts.source
                );
            }
            Err(Failure::Server { code, .. }) if code == "42710" => {}
            Err(f) => return Err(f.into()),
        }
    }
    let archive = Archive::new(repo, &system_id);
    let listed = archive.list()?;
    let (at, on) = start_point(&listed, tli, seg, restart, pos);
    tracing::info!(
        "streaming WAL of cluster {system_id} from {at} on timeline {on} (server at {pos} on timeline {tli}) through slot {slot}{}",
        if opts.synchronous {
            ", synchronously"
        } else {
            ""
        }
    );
    // Segments complete are archived whole on a thread of their own, so pieces go on being
    // written meanwhile (a 16 MiB write to an object store takes a while); the hand-over
    // waits while the previous one is still being written, so at most two segments are in
    // memory.
    let failed: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Whole>(0);
        let (archive, failed) = (&archive, &failed);
        scope.spawn(move || {
            for w in rx {
                if let Err(e) = w.archive(archive, opts.level) {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        });
        follow(
            c,
            archive,
            opts,
            stop,
            summary,
            &listed,
            (at, on, seg),
            slot,
            tx,
            failed,
        )
    })
}

/// A segment received whole, to archive under its own name, then its pieces to delete.
struct Whole {
    folder: String,
    name: String,
    data: Vec<u8>,
    pieces: Vec<String>,
}

impl Whole {
    fn archive(self, archive: &Archive, level: i32) -> Result<()> {
        match archive.put(&self.folder, &self.name, &self.data, level)? {
            Put::Stored { .. } => tracing::info!("archived {} (received whole)", self.name),
            Put::AlreadyArchived => tracing::debug!("{} was archived already", self.name),
        }
        for p in self.pieces {
            if let Err(e) = archive.delete(&self.folder, &p) {
                tracing::warn!(
                    "could not delete piece {p} of {} (prune removes it): {e}",
                    self.name
                );
            }
        }
        Ok(())
    }
}

/// Streams timeline after timeline from `(at, on)`.
#[allow(clippy::too_many_arguments)]
fn follow(
    c: &mut Connection,
    archive: &Archive,
    opts: &Options,
    stop: &AtomicBool,
    summary: &mut Summary,
    listed: &[crate::repository::archive::Listed],
    (mut at, mut on, seg): (Lsn, u32, u64),
    slot: &str,
    whole: std::sync::mpsc::SyncSender<Whole>,
    failed: &std::sync::Mutex<Option<Error>>,
) -> Result<End, Stop> {
    loop {
        archive_history(c, archive, on, opts.level)?;
        c.start_copy(&format!(
            "START_REPLICATION SLOT {slot} PHYSICAL {at} TIMELINE {on}"
        ))?;
        let mut r = Receiver {
            archive,
            whole: whole.clone(),
            failed,
            folder: timeline_folder(on),
            tli: on,
            seg,
            opts,
            number: at.0 / seg,
            data: Vec::with_capacity(seg.min(16 << 20) as usize),
            durable: 0,
            pending_since: None,
            last_write: Duration::ZERO,
            flush_began: Instant::now(),
            flush_ended: Instant::now(),
            written: Vec::new(),
            last_status: Instant::now(),
            acked: None,
        };
        r.leftovers(listed);
        match r.run(c, stop, summary)? {
            Next::Stopped => return Ok(End::Stopped),
            Next::Timeline(next, start) => {
                tracing::info!(
                    "timeline {on} ended on the server; following timeline {next} from {start}"
                );
                on = next;
                at = Lsn(start.0 - start.0 % seg);
            }
            Next::Ended => return Ok(End::Retry("the server ended streaming".into())),
        }
    }
}

enum Next {
    Stopped,
    Timeline(u32, Lsn),
    Ended,
}

/// Streaming on one timeline: the segment being received and what of it is durable.
struct Receiver<'a, 'r> {
    archive: &'a Archive<'r>,
    /// Where complete segments go to be archived whole.
    whole: std::sync::mpsc::SyncSender<Whole>,
    /// The first failure of archiving a segment whole.
    failed: &'a std::sync::Mutex<Option<Error>>,
    folder: String,
    tli: u32,
    seg: u64,
    opts: &'a Options,
    /// The segment being received.
    number: u64,
    /// Its bytes from offset 0 (at most one segment).
    data: Vec<u8>,
    /// How much of `data` is durable.
    durable: usize,
    /// When the oldest byte not yet durable arrived.
    pending_since: Option<Instant>,
    /// How long the last piece took to write.
    last_write: Duration,
    /// When the last piece's write began and ended: bytes read just after it may have
    /// arrived while it was written, and count from its start.
    flush_began: Instant,
    flush_ended: Instant,
    /// The pieces of this segment in the archive (deleted once it is archived whole).
    written: Vec<String>,
    last_status: Instant,
    acked: Option<u64>,
}

/// Microseconds since 2000-01-01, PostgreSQL's clock.
fn pg_now() -> i64 {
    jiff::Timestamp::now().as_microsecond() - 946_684_800_000_000
}

impl Receiver<'_, '_> {
    fn start(&self) -> u64 {
        self.number * self.seg
    }

    fn name(&self) -> String {
        segment_name(self.tli, self.number, self.seg)
    }

    /// Pieces of the current segment an earlier run left (from the listing at start).
    fn leftovers(&mut self, listed: &[crate::repository::archive::Listed]) {
        let folder = pieces::folder(&self.name());
        self.written = listed
            .iter()
            .filter(|l| l.timeline == self.folder && l.name.starts_with(&folder))
            .map(|l| l.name.clone())
            .collect();
    }

    fn run(
        &mut self,
        c: &mut Connection,
        stop: &AtomicBool,
        summary: &mut Summary,
    ) -> Result<Next, Stop> {
        c.set_wait(TICK)?;
        loop {
            if stop.load(Ordering::SeqCst) {
                self.flush(summary)?;
                self.status(c, summary)?;
                return Ok(Next::Stopped);
            }
            let got = match c.read() {
                Ok(m) => m,
                Err(f) => {
                    // What arrived is WAL the server wrote: keep it before reconnecting.
                    self.flush(summary)?;
                    return Err(f.into());
                }
            };
            if let Some(m) = got {
                if let Some(next) = self.handle(c, m, summary)? {
                    return Ok(next);
                }
            }
            self.check_whole()?;
            let burst_over = !c.has_buffered();
            let due = self.pending_since.is_some_and(|t| {
                t.elapsed() + self.last_write >= DURABLE_WITHIN
                    || (self.opts.synchronous && burst_over)
            }) || self.data.len() - self.durable >= MAX_PIECE;
            if due {
                self.flush(summary)?;
                self.status(c, summary)?;
            } else if self.last_status.elapsed() >= STATUS_EVERY {
                self.status(c, summary)?;
            }
        }
    }

    fn handle(
        &mut self,
        c: &mut Connection,
        m: Message,
        summary: &mut Summary,
    ) -> Result<Option<Next>, Stop> {
        match m.tag {
            b'd' => match m.body.first() {
                Some(b'w') if m.body.len() >= 25 => {
                    let start = u64::from_be_bytes(m.body[1..9].try_into().expect("8"));
                    self.take(start, &m.body[25..], c, summary)?;
                }
                Some(b'k') if m.body.len() >= 18 => {
                    if m.body[17] == 1 {
                        self.status(c, summary)?;
                    }
                }
                _ => {
                    return Err(
                        Failure::Protocol("an unknown message in the WAL stream".into()).into(),
                    );
                }
            },
            b'c' => {
                // The server ended this timeline (or is shutting down).
                self.flush(summary)?;
                c.copy_done()?;
                let rows = c.rows_after_copy()?;
                let next = first_cell(&rows, 0).and_then(|t| t.parse::<u32>().ok());
                let start = first_cell(&rows, 1).and_then(|l| Lsn::parse(&l));
                return Ok(Some(match (next, start) {
                    (Some(t), Some(l)) => Next::Timeline(t, l),
                    _ => Next::Ended,
                }));
            }
            b'E' => return Err(protocol::server_error(&m.body).into()),
            b'N' => {}
            t => {
                return Err(Failure::Protocol(format!(
                    "unexpected message {:?} while streaming",
                    t as char
                ))
                .into());
            }
        }
        Ok(None)
    }

    /// Takes WAL bytes starting at `start`.
    fn take(
        &mut self,
        start: u64,
        mut bytes: &[u8],
        c: &mut Connection,
        summary: &mut Summary,
    ) -> Result<(), Stop> {
        let expected = self.start() + self.data.len() as u64;
        if start > expected {
            return Err(Failure::Protocol(format!(
                "the server sent WAL from {} while {} was expected",
                Lsn(start),
                Lsn(expected)
            ))
            .into());
        }
        let skip = (expected - start) as usize;
        if skip >= bytes.len() {
            return Ok(());
        }
        bytes = &bytes[skip..];
        summary.bytes += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = self.seg as usize - self.data.len();
            let n = room.min(bytes.len());
            self.data.extend_from_slice(&bytes[..n]);
            if self.pending_since.is_none() {
                let now = Instant::now();
                self.pending_since = Some(if now.duration_since(self.flush_ended) < TICK {
                    self.flush_began
                } else {
                    now
                });
            }
            bytes = &bytes[n..];
            if self.data.len() as u64 == self.seg {
                self.complete(c, summary)?;
            }
        }
        Ok(())
    }

    /// Writes what is not durable yet as a piece.
    fn flush(&mut self, summary: &mut Summary) -> Result<(), Stop> {
        if self.data.len() > self.durable {
            let name = pieces::name(&self.name(), self.durable as u64, self.data.len() as u64);
            let began = Instant::now();
            self.flush_began = began;
            self.archive.put_new(
                &self.folder,
                &name,
                &self.data[self.durable..],
                self.opts.level,
            )?;
            tracing::debug!(
                "wrote piece {name} ({} bytes, waited {} ms, written in {} ms)",
                self.data.len() - self.durable,
                self.pending_since.map_or(0, |t| t.elapsed().as_millis()),
                began.elapsed().as_millis()
            );
            self.flush_ended = Instant::now();
            self.last_write = self.flush_ended - began;
            self.written.push(name);
            self.durable = self.data.len();
            summary.pieces += 1;
        }
        self.pending_since = None;
        Ok(())
    }

    /// The segment is complete: its last bytes become durable as a piece first (so the
    /// acknowledgement does not wait for the whole segment), then it goes to be archived
    /// whole, its pieces deleted after.
    fn complete(&mut self, c: &mut Connection, summary: &mut Summary) -> Result<(), Stop> {
        self.flush(summary)?;
        self.status(c, summary)?;
        let data = std::mem::replace(&mut self.data, Vec::with_capacity(self.seg as usize));
        let w = Whole {
            folder: self.folder.clone(),
            name: self.name(),
            data,
            pieces: std::mem::take(&mut self.written),
        };
        if self.whole.send(w).is_err() {
            return Err(Error::Internal("the segment archiver stopped".into()).into());
        }
        summary.segments += 1;
        self.number += 1;
        self.durable = 0;
        self.pending_since = None;
        Ok(())
    }

    /// The first failure of archiving a segment whole, if any.
    fn check_whole(&self) -> Result<(), Stop> {
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Tells the server where the repository is: write, flush and apply all the end of
    /// what is durable.
    fn status(&mut self, c: &mut Connection, summary: &mut Summary) -> Result<(), Stop> {
        let end = self.start() + self.durable as u64;
        let mut m = Vec::with_capacity(34);
        m.push(b'r');
        for _ in 0..3 {
            m.extend_from_slice(&end.to_be_bytes());
        }
        m.extend_from_slice(&pg_now().to_be_bytes());
        m.push(0);
        c.copy_data(&m)?;
        self.last_status = Instant::now();
        if self.acked != Some(end) {
            self.acked = Some(end);
            summary.durable = Some((self.tli, Lsn(end).to_string()));
        }
        Ok(())
    }
}

/// The newest WAL a cluster's archive holds, received or archived: its timeline, the
/// position just past it, and when it was written (as the store dates it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Newest {
    /// The timeline.
    pub timeline: u32,
    /// The end of the newest WAL held (a segment's end, or a piece's).
    pub lsn: String,
    /// When that object was written.
    pub at: Option<jiff::Timestamp>,
}

/// The newest WAL archived for `cluster` (segments archived whole and received pieces
/// alike; `segment_size` is the cluster's): on the highest timeline, the furthest end. One
/// listing. `None` when nothing is archived.
pub fn newest(repo: &Repository, cluster: &str, segment_size: u64) -> Result<Option<Newest>> {
    let mut best: Option<(u32, u64, Option<jiff::Timestamp>)> = None;
    for l in Archive::new(repo, cluster).list()? {
        let (tli, end) = if let Some(n) = WalName::parse(&l.name) {
            match (n.kind, n.segment_number(segment_size)) {
                (WalKind::Segment, Some(s)) => (n.timeline, (s + 1) * segment_size),
                _ => continue,
            }
        } else if let Some(p) = pieces::Piece::parse(&l.name) {
            let Some(s) = p.segment.segment_number(segment_size) else {
                continue;
            };
            (p.segment.timeline, s * segment_size + p.to)
        } else {
            continue;
        };
        let better = match best {
            None => true,
            Some((t, e, _)) => (tli, end) > (t, e),
        };
        if better {
            best = Some((tli, end, l.modified));
        } else if let Some(b) = best.as_mut()
            && (b.0, b.1) == (tli, end)
        {
            b.2 = b.2.max(l.modified);
        }
    }
    Ok(best.map(|(timeline, end, at)| Newest {
        timeline,
        lsn: Lsn(end).to_string(),
        at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::archive::Listed;

    fn listed(tli: &str, name: &str) -> Listed {
        Listed {
            timeline: tli.into(),
            name: name.into(),
            stored: 1,
            modified: None,
        }
    }

    #[test]
    fn the_newest_wal_held_counts_pieces() {
        let repo = crate::repository::writer::tests::memory_repo();
        let archive = Archive::new(&repo, "42");
        let seg = 1u64 << 20;
        assert_eq!(newest(&repo, "42", seg).unwrap(), None);
        archive
            .put("00000001", &segment_name(1, 3, seg), b"whole", 1)
            .unwrap();
        assert_eq!(
            newest(&repo, "42", seg).unwrap().unwrap().lsn,
            Lsn(4 * seg).to_string()
        );
        let piece = pieces::name(&segment_name(1, 4, seg), 0, 0x2000);
        archive
            .put_new("00000001", &piece, &[1; 0x2000], 1)
            .unwrap();
        let n = newest(&repo, "42", seg).unwrap().unwrap();
        assert_eq!((n.timeline, n.lsn), (1, Lsn(4 * seg + 0x2000).to_string()));
        archive
            .put("00000002", &segment_name(2, 2, seg), b"fork", 1)
            .unwrap();
        assert_eq!(newest(&repo, "42", seg).unwrap().unwrap().timeline, 2);
    }

    #[test]
    fn starts_after_what_is_archived_unless_the_slot_is_past_it() {
        let seg = 16 << 20;
        let l = vec![
            listed("00000001", "000000010000000000000003"),
            listed("00000001", "000000010000000000000004"),
            listed("00000001", &pieces::name("000000010000000000000005", 0, 10)),
        ];
        let server = Lsn(9 * seg + 100);
        assert_eq!(start_point(&l, 1, seg, None, server), (Lsn(5 * seg), 1));
        assert_eq!(
            start_point(&l, 1, seg, Some((Lsn(5 * seg + 7), 1)), server),
            (Lsn(5 * seg), 1)
        );
        assert_eq!(
            start_point(&l, 1, seg, Some((Lsn(7 * seg + 7), 1)), server),
            (Lsn(7 * seg), 1)
        );
        assert_eq!(
            start_point(&[], 2, seg, Some((Lsn(7 * seg + 7), 1)), server),
            (Lsn(7 * seg), 1)
        );
        assert_eq!(start_point(&[], 2, seg, None, server), (Lsn(9 * seg), 2));
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert!(check_slot_name("strongroom").is_ok());
        assert!(check_slot_name("Bad-Name").is_err());
    }
}

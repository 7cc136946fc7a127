//! Restoring a SQLite snapshot beside its target file, and the file swap.
//!
//! Owns what is particular to SQLite files in the restore safety sequence (`crate::jobs::restore`):
//! a temporary file in the target's directory, written at page offsets, synced while
//! `quick_check` (or `integrity_check`) reads it; a target in use by another process is
//! refused; the swap moves the old file and its `-wal`, `-journal` and `-shm` aside together
//! (SQLite would replay a stale `-wal` into the restored pages) and renames the new file into
//! place. Must not run hooks or decide on `force`: the sequence does.

use super::target::{self, TargetLock};
use super::{MAIN_FILE, Thoroughness, integrity_problems, open_existing, replica, sidecar};
use crate::beneath::Beneath;
use crate::engine::{RecoveryTarget, RestoreOptions, Staged, Swapped, Target, TargetState};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{Chunking, FileEntry, Snapshot};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes the pages of `file` into `out` at their offsets.
pub(super) fn write_pages(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    file: &FileEntry,
    out: &File,
    out_path: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let chunk = match file.chunking {
        Chunking::Fixed { size } => size as u64,
        Chunking::ContentDefined => {
            return Err(Error::corrupt(
                Snapshot::object_key(&snap.id),
                "a SQLite file must use fixed chunks",
            ));
        }
    };
    out.set_len(file.size)
        .map_err(|e| Error::io("writing the restored database to", out_path, e))?;
    progress.begin("restore", Some(file.size));
    let res = reader::for_each_window(repo, index, snap, file, |first, ids, records| {
        // A window without page deltas is fetched whole: four reads in flight from its
        // first page to its last. One with deltas goes a step at a time, as the bases of a
        // step's deltas are fetched with it and held, with the rebuilt pages, until the step
        // is written.
        let pages = if records.is_empty() {
            ids.len().max(1)
        } else {
            (STEP_BYTES / chunk).max(1) as usize
        };
        for (s, step) in ids.chunks(pages).enumerate() {
            let from = first + (s * pages) as u64;
            write_step(
                out,
                out_path,
                chunk,
                progress,
                from,
                step,
                records,
                (repo, index),
            )?;
        }
        Ok(())
    });
    progress.end();
    res?;
    Ok(())
}

/// Bytes of pages fetched and written at once where a window holds page deltas: fewer
/// steps keep the reads busy (each step waits for its slowest read), larger ones hold more
/// bases and rebuilt pages in memory.
const STEP_BYTES: u64 = 32 * 1024 * 1024;

/// Fetches the pages `ids` (from position `first`; `records` the window's delta records) and
/// writes them at their places, runs of consecutive pages as one write.
#[allow(clippy::too_many_arguments)]
fn write_step(
    out: &File,
    out_path: &Path,
    chunk: u64,
    progress: &dyn Progress,
    first: u64,
    ids: &[crate::id::ChunkId],
    records: &[crate::repository::snapshot::DeltaRecord],
    (repo, index): (&Repository, &Index),
) -> Result<()> {
    let mut at: HashMap<_, Vec<u64>> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        at.entry(*id).or_default().push(first + i as u64);
    }
    let bases = reader::bases_between(records, first, first + ids.len() as u64);
    reader::fetch_with_bases(repo, index, ids, &bases, |chunks| {
        // Runs of consecutive pages become one write (a fresh full backup's segment is
        // 256 consecutive pages).
        let mut placed: Vec<(u64, &[u8])> = chunks
            .iter()
            .flat_map(|(id, data)| at[id].iter().map(move |&pos| (pos, *data)))
            .collect();
        placed.sort_unstable_by_key(|(pos, _)| *pos);
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        let flush = |run: &mut Vec<u8>, start: u64| -> Result<()> {
            if !run.is_empty() {
                out.write_all_at(run, start * chunk)
                    .map_err(|e| Error::io("writing the restored database to", out_path, e))?;
                progress.advance(run.len() as u64);
                run.clear();
            }
            Ok(())
        };
        for (pos, data) in placed {
            let full = data.len() as u64 == chunk;
            if run.is_empty()
                || pos != run_start + run.len() as u64 / chunk
                || run.len() as u64 % chunk != 0
            {
                flush(&mut run, run_start)?;
                run_start = pos;
            }
            run.extend_from_slice(data);
            if !full {
                flush(&mut run, run_start)?;
            }
        }
        flush(&mut run, run_start)
    })
}

/// A restored, checked copy: its path, the guard that removes it, the problems the check
/// found, and the open file.
pub(super) type Checked = (
    PathBuf,
    interrupt::Guard,
    Vec<String>,
    File,
    Option<replica::replay::Replayed>,
);

/// What a replay reached, for the person restoring.
fn replayed_note(r: replica::replay::Replayed) -> String {
    let mut note = match r.reached {
        Some(at) => format!(
            "applied {} captured transactions ({} segments); the database is as captured at {}",
            r.transactions,
            r.segments,
            at.strftime("%Y-%m-%d %H:%M:%S%.3f UTC")
        ),
        None => {
            "no captured transactions applied: the database is as the base snapshot holds it".into()
        }
    };
    if let Some(why) = r.cut_short {
        note.push_str(&format!("; stopped early: {why}"));
    }
    note
}

/// Restores the snapshot into a new temporary file in `dir`, synced, and checks it; returns
/// the file and the problems the check found (the caller decides what they mean). `dir` may
/// be a [`target::Beneath::via`] path; `shown_dir` is the directory named in messages.
#[allow(clippy::too_many_arguments)]
pub(super) fn restore_checked(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    dir: &Path,
    shown_dir: &Path,
    stem: &str,
    how: Thoroughness,
    replay_to: Option<&RecoveryTarget>,
    progress: &dyn Progress,
) -> Result<Checked> {
    let file = snap
        .files
        .iter()
        .find(|f| f.name == MAIN_FILE)
        .ok_or_else(|| {
            Error::corrupt(
                Snapshot::object_key(&snap.id),
                "no database file in the snapshot",
            )
        })?;
    // Removed on drop and on interrupts; a SIGKILL's leftover is removed by the next restore.
    let (tmp, guard) = interrupt::temp_file(
        dir,
        &format!(".{stem}.strongroom-"),
        ".tmp",
        "the partly restored database",
    )?;
    let shown = shown_dir.join(tmp.path().file_name().unwrap_or_default());
    let t = std::time::Instant::now();
    write_pages(repo, index, snap, file, tmp.as_file(), &shown, progress)?;
    tracing::info!(
        seconds = t.elapsed().as_secs_f64(),
        bytes = file.size,
        "pages written"
    );
    // A base snapshot: its captured transactions on top, up to the recovery target; then
    // the full integrity_check, since pages now come from more than one snapshot.
    let mut replayed = None;
    let mut how = how;
    if let (Some(until), Some(_)) = (replay_to, replica::base_position(snap)) {
        let page_size = snap
            .metadata
            .extra
            .get("page_size")
            .and_then(|v| v.as_u64())
            .unwrap_or(4096) as u32;
        let t = std::time::Instant::now();
        progress.begin("replay", None);
        let r = replica::replay::apply(repo, &snap.id, page_size, tmp.as_file(), &shown, until);
        progress.end();
        let r = r?;
        tracing::info!(
            seconds = t.elapsed().as_secs_f64(),
            segments = r.segments,
            transactions = r.transactions,
            "captured transactions applied"
        );
        if r.transactions > 0 {
            how = Thoroughness::Full;
        }
        replayed = Some(r);
    }
    // The check reads through the page cache, so it need not wait for the data to reach the
    // disk: fsync in parallel, and move into place only when both are done.
    let t = std::time::Instant::now();
    let (synced, problems) = std::thread::scope(|s| {
        let sync = s.spawn(|| tmp.as_file().sync_all());
        let problems =
            open_existing(tmp.path()).and_then(|c| integrity_problems(&c, tmp.path(), how));
        (sync.join().expect("fsync thread"), problems)
    });
    synced.map_err(|e| Error::io("syncing the restored database", &shown, e))?;
    let problems = problems?;
    tracing::info!(
        seconds = t.elapsed().as_secs_f64(),
        check = how.pragma(),
        "synced and integrity checked"
    );
    remove_sidecars(tmp.path());
    // From here the guard alone removes it (on drop, and on interrupts).
    let (file, path) = tmp.into_parts();
    let path = path
        .keep()
        .map_err(|e| Error::io("keeping the restored database", shown_dir, e.error))?;
    Ok((path, guard, problems, file, replayed))
}

pub(super) fn remove_sidecars(path: &Path) {
    for s in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sidecar(path, s));
    }
}

/// Whether another process holds a POSIX lock anywhere on `name` (`F_GETLK` asks the kernel
/// without taking one). SQLite locks through exactly these locks. A link there is not
/// followed.
fn locked_elsewhere(dir: &Beneath, name: &str) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = dir.open_name(name, rustix::fs::OFlags::RDWR, 0) else {
        return false;
    };
    // SAFETY: `flock` is plain data; F_GETLK only writes into the struct we pass.
    unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 0;
        libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) == 0
            && fl.l_type != libc::F_UNLCK as libc::c_short
    }
}

/// Refuses a target another process has open. WAL-mode connections keep a lock on the
/// `-shm` file for as long as they are open; rollback-mode ones lock the database file only
/// during a transaction, so an idle one cannot be seen (nothing can see it).
fn ensure_not_in_use(dir: &Beneath, name: &str) -> Result<()> {
    if locked_elsewhere(dir, name) || locked_elsewhere(dir, &format!("{name}-shm")) {
        return Err(Error::Target(format!(
            "{} is in use by another process; stop the application before restoring over it",
            dir.shown(name).display()
        )));
    }
    Ok(())
}

fn now_tag() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The target file path of a restore, refused when it is not one.
fn target_path<'t>(snap: &Snapshot, target: &'t Target) -> Result<&'t Path> {
    let Target::File(path) = target else {
        return Err(crate::engine::misfit(snap, Some(target)));
    };
    if path.file_name().is_none() {
        return Err(Error::Target(format!(
            "{} is not a file path",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Target(format!(
            "{} is a directory; give the path of the database file",
            path.display()
        )));
    }
    Ok(path)
}

/// Whether a file is at the target path.
pub(super) fn inspect(snap: &Snapshot, target: &Target) -> Result<TargetState> {
    let path = target_path(snap, target)?;
    Ok(if path.exists() {
        TargetState::Occupied {
            what: format!("{} already exists", path.display()),
            old: "file",
        }
    } else {
        TargetState::Absent
    })
}

/// Restores the snapshot into a checked temporary file beside the target.
pub(super) fn stage(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    target: &Target,
    state: &TargetState,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Box<dyn Staged>> {
    let target = target_path(snap, target)?.to_path_buf();
    let name = target
        .file_name()
        .expect("checked by target_path")
        .to_string_lossy()
        .to_string();
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating directory", &dir, e))?;
    // Absolute, so the swap marker names the same files whatever directory the next run
    // starts in; opened once, so nothing below resolves the path again.
    let dir = std::path::absolute(&dir).map_err(|e| Error::io("resolving", &dir, e))?;
    let tdir = Arc::new(Beneath::open_named(&dir)?);
    let target = dir.join(&name);
    let lock = TargetLock::acquire(&tdir, &name)?;
    if let Some(what) = target::recover(&tdir, &name)? {
        tracing::warn!("{what}");
    }
    target::remove_stale_temporaries(&tdir, &name);
    let old = tdir.stat_name(&name)?;
    if let Some(st) = &old {
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind != rustix::fs::FileType::RegularFile {
            return Err(Error::Target(format!(
                "{} is {}, not a database file; a restore replaces a file and never writes through a link: restore to the file itself, or remove what is there",
                target.display(),
                if kind == rustix::fs::FileType::Symlink {
                    "a symbolic link"
                } else {
                    "not a regular file"
                }
            )));
        }
    }
    if !state.exists() && old.is_some() && !opts.force {
        // Recovering an interrupted swap put a database back where none was seen.
        return Err(Error::TargetNotEmpty {
            target: format!("{} already exists", target.display()),
            old: "file",
        });
    }
    let exists = old.is_some();
    if exists {
        ensure_not_in_use(&tdir, &name)?;
    }
    let how = if opts.full_check {
        Thoroughness::Full
    } else {
        Thoroughness::Quick
    };
    let (tmp, guard, problems, file, replayed) = restore_checked(
        repo,
        index,
        snap,
        &tdir.via(""),
        &dir,
        &name,
        how,
        Some(&opts.recovery),
        progress,
    )?;
    let reached = replayed.as_ref().and_then(|r| r.reached);
    // A replay of captured transactions always ends with the full check.
    let how = match &replayed {
        Some(r) if r.transactions > 0 => Thoroughness::Full,
        _ => how,
    };
    let notes = replayed.map(replayed_note).into_iter().collect();
    let tmp = tmp
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !problems.is_empty() {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!(
                "the restored database fails PRAGMA {}: {}; the target was not touched",
                how.pragma(),
                problems.join("; ")
            ),
        ));
    }
    target::match_owner_and_mode(&file, &tdir.shown(&tmp), old.as_ref())?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Box::new(StagedFile {
        tmp,
        guard: Some(guard),
        target,
        name,
        exists,
        bytes,
        aside: Vec::new(),
        notes,
        checked: how.pragma(),
        reached,
        _lock: lock,
        dir: tdir,
    }))
}

/// A restored, checked database file beside its target.
struct StagedFile {
    /// The restored file's name until it is in place.
    tmp: String,
    /// Removes `tmp` unless the swap disarmed it.
    guard: Option<interrupt::Guard>,
    /// The target, for messages.
    target: PathBuf,
    /// The target's name in `dir`.
    name: String,
    /// Whether a database was at the target when the restore began.
    exists: bool,
    bytes: u64,
    /// What the swap moved aside (names), first the old database (when there was one).
    aside: Vec<String>,
    /// What the restore says about the replay of captured transactions.
    notes: Vec<String>,
    /// The check the copy passed.
    checked: &'static str,
    /// When the last replayed transaction was captured.
    reached: Option<jiff::Timestamp>,
    /// Held until the restore is over: one restore per target.
    _lock: TargetLock,
    /// The target's directory, held open (declared last: the guards above resolve through
    /// it when they drop).
    dir: Arc<Beneath>,
}

impl Staged for StagedFile {
    fn target(&self) -> String {
        self.target.display().to_string()
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn checked(&self) -> Option<&'static str> {
        Some(self.checked)
    }

    fn reached(&self) -> Option<jiff::Timestamp> {
        self.reached
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn ready(&mut self) -> Result<()> {
        Ok(())
    }

    fn swap(&mut self) -> Result<Swapped> {
        // The application may have opened the database while we restored: look again, then
        // make the old database self-contained so its sidecars can move apart from it.
        let exists = self.exists && self.dir.stat_name(&self.name)?.is_some();
        if exists {
            ensure_not_in_use(&self.dir, &self.name)?;
            target::settle(&self.dir, &self.name)?;
        }
        let tag = format!(
            "{}-{}",
            now_tag(),
            hex::encode(crate::crypto::random_bytes::<3>())
        );
        let aside = format!("{}old-{tag}", target::temp_prefix(&self.name));
        // Past this point the copy is no longer ours to remove: it is (or is about to be)
        // the target, and after the exchange its name holds the old database.
        let guard = self.guard.take().expect("swapped once");
        let placed = match target::swap_in(&self.dir, &self.tmp, &self.name, &aside, exists) {
            Ok(p) => {
                guard.disarm();
                p
            }
            Err(e) => {
                drop(guard);
                return Err(e);
            }
        };
        self.aside = placed.old.iter().chain(&placed.sidecars).cloned().collect();
        let shown = |n: &String| self.dir.shown(n).display().to_string();
        Ok(Swapped {
            old: placed.old.as_ref().map(shown),
            moved_aside: placed.sidecars.iter().map(shown).collect(),
            incomplete: placed.incomplete,
        })
    }

    fn discard_old(&mut self) -> Result<()> {
        // The old database first: while it stays, so do its sidecars, and it is reported
        // as kept. Sidecars of a removed database are only clutter.
        let mut aside = self.aside.drain(..);
        if let Some(db) = aside.next() {
            self.dir
                .unlink_name(&db, false)
                .map_err(|e| Error::io("removing the old database", self.dir.shown(&db), e))?;
        }
        for side in aside {
            let _ = self.dir.unlink_name(&side, false);
        }
        Ok(())
    }
}

//! The file a SQLite restore replaces: its lock, its place in the system, and a swap that a
//! kill at any moment cannot leave half done.
//!
//! Owns what happens at the target path itself:
//! - one restore at a time per target (a lock file beside it, `flock`ed);
//! - the restored file takes the old one's owner, group and mode (a new one follows the
//!   umask), so the application can still open it, and SQLite gives its `-wal` and `-shm`
//!   the same;
//! - before the swap the old database is *settled*: its WAL checkpointed into the file, a
//!   hot rollback journal rolled back, so its sidecars hold nothing it needs;
//! - the swap itself is one `renameat2(RENAME_EXCHANGE)`: the target is always a complete
//!   database, old or new. A marker written before it names both files by inode, so the next
//!   restore onto the same target finishes (old file aside) or undoes (new copy removed) a
//!   swap a SIGKILL interrupted, and says which;
//! - leftovers of interrupted restores (`.NAME.strongroom-*.tmp`) are removed by the next
//!   one, under the lock.
//!
//! Must not read snapshots or run hooks.

use crate::error::{Error, Result};
use crate::interrupt;
use crate::storage::sync_dir;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Names of strongroom's own files beside a target `NAME`: `.NAME.strongroom-<what>`.
fn beside(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.strongroom-{what}"))
}

/// The prefix of a restore's temporary files for `target`.
pub(super) fn temp_prefix(target: &Path) -> String {
    beside(target, "")
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// An exclusive lock on restoring into one target; released (and its file removed) on drop
/// and on interrupts.
pub(super) struct TargetLock {
    /// Removes the lock file (declared first: it runs while the lock is still held).
    _removed: interrupt::Guard,
    _file: File,
}

impl TargetLock {
    /// Takes the lock, or says another restore holds it.
    pub(super) fn acquire(target: &Path) -> Result<TargetLock> {
        use std::os::fd::AsRawFd;
        let path = beside(target, "lock");
        loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("creating the restore lock", &path, e))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(Error::Target(format!(
                    "another strongroom restore into {} is running; wait for it to finish",
                    target.display()
                )));
            }
            // The holder before us may have removed the file after we opened it: the lock
            // counts only on the file that is at the path.
            let ours = file.metadata().map(|m| m.ino()).ok();
            let there = std::fs::metadata(&path).map(|m| m.ino()).ok();
            if ours.is_some() && ours == there {
                let p = path.clone();
                let removed =
                    interrupt::guard(format!("the restore lock {}", path.display()), move || {
                        let _ = std::fs::remove_file(&p);
                    });
                return Ok(TargetLock {
                    _removed: removed,
                    _file: file,
                });
            }
        }
    }
}

/// What a swap is about to do, written before it and removed after.
#[derive(Debug, Serialize, Deserialize)]
struct SwapMarker {
    /// Inode of the database at the target before the swap.
    old_ino: u64,
    /// Inode of the restored copy.
    new_ino: u64,
    /// Where the restored copy was (and the old database is, once exchanged).
    tmp: PathBuf,
    /// Where the old database goes.
    aside: PathBuf,
}

/// Whether the kernel and file system can exchange two names atomically.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Test hook: `STRONGROOM_FAULT=<point>` aborts the process at that point of a swap, as a
/// SIGKILL would, so tests prove the next run recovers. Points: `before-exchange`,
/// `after-exchange`.
fn fault(point: &str) {
    if std::env::var("STRONGROOM_FAULT").is_ok_and(|v| v == point) {
        std::process::abort();
    }
}

/// Finishes or undoes a swap an earlier, killed restore left half done; says what it did.
pub(super) fn recover(target: &Path) -> Result<Option<String>> {
    let marker_path = beside(target, "swap");
    let text = match std::fs::read(&marker_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", &marker_path, e)),
    };
    let Ok(m) = serde_json::from_slice::<SwapMarker>(&text) else {
        // Cut short while being written: the swap had not begun.
        let _ = std::fs::remove_file(&marker_path);
        return Ok(None);
    };
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    let done = if ino(&m.tmp) == Some(m.old_ino) {
        // Exchanged, but the old database did not reach its place aside: it goes there now,
        // whatever the target holds (it is never removed).
        std::fs::rename(&m.tmp, &m.aside)
            .map_err(|e| Error::io("moving the old database aside", &m.tmp, e))?;
        format!(
            "an interrupted restore had already put its copy in place at {}; the database it replaced is kept at {}",
            target.display(),
            m.aside.display()
        )
    } else if ino(&m.aside) == Some(m.old_ino) && ino(target) == Some(m.new_ino) {
        // Swapped completely; only the marker was left.
        format!(
            "an interrupted restore had put its copy in place at {}; the database it replaced is kept at {}",
            target.display(),
            m.aside.display()
        )
    } else if ino(target).is_none() && ino(&m.aside) == Some(m.old_ino) {
        // Killed between the two renames of a file system without exchange: put it back.
        std::fs::rename(&m.aside, target)
            .map_err(|e| Error::io("putting the old database back at", target, e))?;
        if ino(&m.tmp) == Some(m.new_ino) {
            let _ = std::fs::remove_file(&m.tmp);
        }
        format!(
            "an interrupted restore had moved {} aside; it is back in place",
            target.display()
        )
    } else {
        // Not exchanged: the target is the old database, untouched; drop the copy.
        if ino(&m.tmp) == Some(m.new_ino) {
            let _ = std::fs::remove_file(&m.tmp);
        }
        format!(
            "an interrupted restore into {} had not replaced it; its copy was removed",
            target.display()
        )
    };
    std::fs::remove_file(&marker_path).map_err(|e| Error::io("removing", &marker_path, e))?;
    if let Some(dir) = target.parent() {
        let _ = sync_dir(dir);
    }
    Ok(Some(done))
}

/// Removes temporary files interrupted restores into `target` left (call under the lock).
pub(super) fn remove_stale_temporaries(target: &Path) {
    let Some(dir) = target.parent() else { return };
    let prefix = temp_prefix(target);
    let Ok(rd) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(rest) = name.strip_prefix(&prefix) {
            let tmp = rest.ends_with(".tmp")
                || [".tmp-wal", ".tmp-shm", ".tmp-journal"]
                    .iter()
                    .any(|s| rest.ends_with(s));
            if tmp && !rest.starts_with("old-") {
                tracing::warn!(file = %e.path().display(), "removing what an interrupted restore left");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The process's umask, read without changing it (`umask(2)` would, for every thread).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Gives the restored file at `tmp` the owner, group and mode of the database it replaces,
/// or, for a new one, the mode a new file gets (0666 less the umask).
pub(super) fn match_owner_and_mode(tmp: &Path, target: &Path, exists: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if exists {
        let m = std::fs::metadata(target).map_err(|e| Error::io("reading", target, e))?;
        let mine = std::fs::metadata(tmp).map_err(|e| Error::io("reading", tmp, e))?;
        if (m.uid(), m.gid()) != (mine.uid(), mine.gid()) {
            if let Err(e) = std::os::unix::fs::chown(tmp, Some(m.uid()), Some(m.gid())) {
                // Only root may give a file away; say so rather than fail the restore.
                tracing::warn!(
                    "the restored database keeps owner {}:{} instead of {}:{} ({e}); run the restore as root or as the owner",
                    mine.uid(),
                    mine.gid(),
                    m.uid(),
                    m.gid()
                );
            }
        }
        m.mode() & 0o7777
    } else {
        0o666 & !umask()
    };
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting the mode of", tmp, e))
}

/// Makes the old database self-contained before it moves: WAL content checkpointed into the
/// file (and the WAL truncated), a hot rollback journal rolled back. Its `-wal`, `-shm` and
/// `-journal` then hold nothing it needs, whatever happens to them.
pub(super) fn settle(target: &Path) -> Result<()> {
    let not_a_db = |e: &rusqlite::Error| super::is_not_a_db(e);
    let c = match rusqlite::Connection::open_with_flags(
        target,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        // Not a database (a file replaced by force): it has no journal to settle.
        Err(e) if not_a_db(&e) => return Ok(()),
        Err(e) => return Err(Error::sqlite(target, e)),
    };
    let _ = c.busy_timeout(std::time::Duration::from_secs(30));
    let settled = c
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .and_then(|_| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
        });
    match settled {
        Ok(0) => Ok(()),
        Err(e) if not_a_db(&e) => Ok(()),
        Ok(_) => Err(Error::Target(format!(
            "{} could not be checkpointed (another process holds it); stop the application before restoring over it; nothing was changed",
            target.display()
        ))),
        Err(e) => Err(Error::Target(format!(
            "{} could not be settled before it is replaced ({e}); nothing was changed",
            target.display()
        ))),
    }
}

/// What [`swap_in`] did.
pub(super) struct Placed {
    /// Where the old database is, when there was one.
    pub old: Option<PathBuf>,
    /// Sidecars moved aside with it.
    pub sidecars: Vec<PathBuf>,
    /// A failure after the new copy was in place.
    pub incomplete: Option<String>,
}

/// Puts `tmp` in place at `target`, the old database (when `exists`) and its sidecars moving
/// to `aside`. On an error nothing has changed; once the copy is in place, later failures
/// come back in [`Placed::incomplete`].
pub(super) fn swap_in(tmp: &Path, target: &Path, aside: &Path, exists: bool) -> Result<Placed> {
    let ino = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.ino())
            .map_err(|e| Error::io("reading", p, e))
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let marker_path = beside(target, "swap");
    if exists {
        let marker = SwapMarker {
            old_ino: ino(target)?,
            new_ino: ino(tmp)?,
            tmp: tmp.to_path_buf(),
            aside: aside.to_path_buf(),
        };
        crate::storage::put_local(
            &marker_path,
            &serde_json::to_vec(&marker).expect("marker serializes"),
        )?;
    }
    // The settled old database's sidecars go aside first: SQLite would replay a stale WAL
    // or journal into the restored pages. Each move is undone if anything fails before the
    // exchange.
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let undo = |moved: &mut Vec<(PathBuf, PathBuf)>| {
        while let Some((from, to)) = moved.pop() {
            let _ = std::fs::rename(&to, &from);
        }
        let _ = std::fs::remove_file(&marker_path);
    };
    for s in ["-wal", "-journal", "-shm"] {
        let side = super::sidecar(target, s);
        if side.exists() {
            let to = super::sidecar(aside, s);
            if let Err(e) = std::fs::rename(&side, &to) {
                undo(&mut moved);
                return Err(Error::io("moving aside (nothing was changed)", side, e));
            }
            moved.push((side, to));
        }
    }
    fault("before-exchange");
    let mut placed = Placed {
        old: None,
        sidecars: moved.iter().map(|(_, to)| to.clone()).collect(),
        incomplete: None,
    };
    if exists {
        match exchange(tmp, target) {
            Ok(()) => {
                fault("after-exchange");
                // The target is the new database; the old one is at `tmp`'s name.
                match std::fs::rename(tmp, aside) {
                    Ok(()) => placed.old = Some(aside.to_path_buf()),
                    Err(e) => {
                        placed.old = Some(tmp.to_path_buf());
                        placed.incomplete =
                            Some(format!("moving the old database aside failed ({e})"));
                    }
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                // A file system without exchange: two renames, undone on failure. A kill
                // between them leaves the target missing, with the marker naming both.
                std::fs::rename(target, aside).map_err(|e| {
                    undo(&mut moved);
                    Error::io("moving aside (nothing was changed)", target, e)
                })?;
                if let Err(e) = std::fs::rename(tmp, target) {
                    let _ = std::fs::rename(aside, target);
                    undo(&mut moved);
                    return Err(Error::io(
                        "moving the restored database into place (the old files were put back) at",
                        target,
                        e,
                    ));
                }
                placed.old = Some(aside.to_path_buf());
            }
            Err(e) => {
                undo(&mut moved);
                return Err(Error::io(
                    "moving the restored database into place (the old files were put back) at",
                    target,
                    e,
                ));
            }
        }
    } else {
        // Nothing to replace: a new name, refused if something appeared there meanwhile.
        std::fs::hard_link(tmp, target)
            .and_then(|()| std::fs::remove_file(tmp))
            .map_err(|e| {
                undo(&mut moved);
                Error::io("moving the restored database into place at", target, e)
            })?;
    }
    if placed.incomplete.is_none() {
        let _ = std::fs::remove_file(&marker_path);
    }
    if let Err(e) = sync_dir(&dir) {
        placed
            .incomplete
            .get_or_insert(format!("syncing its directory failed ({e})"));
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_swaps_two_names_at_once() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "A").unwrap();
        std::fs::write(&b, "B").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "B");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "A");
    }

    #[test]
    fn one_restore_per_target() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("hotel.db");
        let lock = TargetLock::acquire(&t).unwrap();
        let e = TargetLock::acquire(&t).err().unwrap();
        assert!(e.to_string().contains("another strongroom restore"), "{e}");
        drop(lock);
        assert!(
            !beside(&t, "lock").exists(),
            "the lock file goes with the lock"
        );
        TargetLock::acquire(&t).unwrap();
    }

    #[test]
    fn a_new_file_follows_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("t");
        std::fs::write(&tmp, "x").unwrap();
        match_owner_and_mode(&tmp, &d.path().join("new.db"), false).unwrap();
        let mode = std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());
    }
}

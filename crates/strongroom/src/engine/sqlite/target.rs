//! The file a SQLite restore replaces: its lock, its place in the system, and a swap that a
//! kill at any moment cannot leave half done.
//!
//! Owns what happens at the target path itself:
//! - the target's directory is opened once ([`crate::beneath::Beneath`], the one home of
//!   "a directory held open", shared with the physical restore) and every name beside the
//!   target is resolved against that descriptor (`openat`, `renameat2`, `unlinkat`, with
//!   `O_NOFOLLOW`), never by path again. strongroom restores as root into directories the
//!   application's user owns; that user can plant links, or swap the directory itself for a
//!   link, between two of our steps, and a path looked up twice would follow them. SQLite,
//!   which takes only paths, opens `/proc/self/fd/N/NAME`: its unix VFS resolves that link
//!   to the held directory's current path and opens the file itself with `O_NOFOLLOW`
//!   (`SQLITE_OPEN_NOFOLLOW` would refuse the `/proc` link itself);
//! - one restore at a time per target (a lock file beside it, `flock`ed);
//! - a target that is a symbolic link is refused: a restore replaces a file, never what a
//!   link points at;
//! - the restored file takes the old one's owner, group and mode (a new one follows the
//!   umask), set on its descriptor (`fchown`, `fchmod`), so the application can still open
//!   it, and SQLite gives its `-wal` and `-shm` the same;
//! - before the swap the old database is *settled*: its WAL checkpointed into the file, a
//!   hot rollback journal rolled back, so its sidecars hold nothing it needs;
//! - the swap itself is one `renameat2(RENAME_EXCHANGE)`: the target is always a complete
//!   database, old or new. A marker written before it names both files by inode, so the next
//!   restore onto the same target finishes (old file aside) or undoes (new copy removed) a
//!   swap a SIGKILL interrupted, and says which. A marker is obeyed only when this user
//!   wrote it (owned by the running user, writable by nobody else, not a link) and it names
//!   only strongroom's own files in the target's directory; anything else is refused,
//!   because whoever can write the directory could otherwise make a root restore move any
//!   file anywhere;
//! - leftovers of interrupted restores (`.NAME.strongroom-*.tmp`) are removed by the next
//!   one, under the lock.
//!
//! Must not read snapshots or run hooks.

use crate::beneath::Beneath;
use crate::error::{Error, Result};
use crate::interrupt;
use rustix::fs::{FileType, Mode, OFlags, Stat};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name of strongroom's own file beside a target `NAME`: `.NAME.strongroom-<what>`.
fn beside(name: &str, what: &str) -> String {
    format!(".{name}.strongroom-{what}")
}

/// The prefix of a restore's temporary files for the target `NAME`.
pub(super) fn temp_prefix(name: &str) -> String {
    beside(name, "")
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
    pub(super) fn acquire(dir: &Arc<Beneath>, target: &str) -> Result<TargetLock> {
        use std::os::fd::AsRawFd;
        let name = beside(target, "lock");
        loop {
            let file = dir
                .open_name(&name, OFlags::CREATE | OFlags::WRONLY, 0o600)
                .map_err(|e| refuse_link(dir, &name, "the restore lock", e))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(Error::Target(format!(
                    "another strongroom restore into {} is running; wait for it to finish",
                    dir.shown(target).display()
                )));
            }
            // The holder before us may have removed the file after we opened it: the lock
            // counts only on the file that is at the name.
            let ours = rustix::fs::fstat(&file).map(|st| st.st_ino).ok();
            if ours.is_some() && ours == dir.ino_name(&name) {
                let (d, n) = (Arc::clone(dir), name.clone());
                let removed = interrupt::guard(
                    format!("the restore lock {}", dir.shown(&name).display()),
                    move || {
                        let _ = d.unlink_name(&n, false);
                    },
                );
                return Ok(TargetLock {
                    _removed: removed,
                    _file: file,
                });
            }
        }
    }
}

/// The error for a file of ours that could not be opened: a link planted at its name is
/// named as such (`O_NOFOLLOW` fails with `ELOOP`).
fn refuse_link(dir: &Beneath, name: &str, what: &str, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        Error::Target(format!(
            "{} is a symbolic link where strongroom keeps {what}; someone else put it there: remove it after checking who did, then restore again",
            dir.shown(name).display()
        ))
    } else {
        Error::io("opening", dir.shown(name), e)
    }
}

/// What a swap is about to do, written before it and removed after.
#[derive(Debug, Serialize, Deserialize)]
struct SwapMarker {
    /// Inode of the database at the target before the swap.
    old_ino: u64,
    /// Inode of the restored copy.
    new_ino: u64,
    /// Where the restored copy was (and the old database is, once exchanged): a file of
    /// ours in the target's directory.
    tmp: PathBuf,
    /// Where the old database goes: a file of ours in the target's directory.
    aside: PathBuf,
}

/// Test hook: `STRONGROOM_FAULT=<point>` aborts the process at that point of a swap, as a
/// SIGKILL would, so tests prove the next run recovers. Points: `before-exchange`,
/// `after-exchange`.
fn fault(point: &str) {
    if std::env::var("STRONGROOM_FAULT").is_ok_and(|v| v == point) {
        std::process::abort();
    }
}

/// Reads the swap marker beside `target`, refusing one this user did not write.
fn read_marker(dir: &Beneath, target: &str) -> Result<Option<(String, Vec<u8>)>> {
    let name = beside(target, "swap");
    let shown = dir.shown(&name);
    let mut file = match dir.open_name(&name, OFlags::RDONLY, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(refuse_link(
                dir,
                &name,
                "an interrupted restore's swap marker",
                e,
            ));
        }
    };
    let st = rustix::fs::fstat(&file).map_err(|e| Error::io("reading", &shown, e.into()))?;
    let me = rustix::process::geteuid().as_raw();
    let foreign = if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        Some("is not a regular file".to_string())
    } else if st.st_uid != me {
        Some(format!(
            "belongs to uid {}, not to this user (uid {me})",
            st.st_uid
        ))
    } else if st.st_mode & 0o022 != 0 {
        Some(format!(
            "is writable by others (mode {:o})",
            st.st_mode & 0o777
        ))
    } else {
        None
    };
    if let Some(why) = foreign {
        return Err(Error::Target(format!(
            "the swap marker {} {why}, so strongroom did not write it and will not act on it; remove it after checking who wrote it, then restore again",
            shown.display()
        )));
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| Error::io("reading", &shown, e))?;
    Ok(Some((name, text)))
}

/// The name, in the target's directory, of a file a marker names: only strongroom's own
/// files beside `target` qualify.
fn marked_name(dir: &Beneath, target: &str, marker: &str, p: &Path) -> Result<String> {
    let name = p.file_name().map(|n| n.to_string_lossy().to_string());
    match name {
        Some(n)
            if p.parent() == Some(dir.path())
                && n.starts_with(&temp_prefix(target))
                && n.len() > temp_prefix(target).len() =>
        {
            Ok(n)
        }
        _ => Err(Error::Target(format!(
            "the swap marker {} names {}, which is not strongroom's own file beside {}; it was not written by strongroom: remove it after checking who wrote it, then restore again",
            dir.shown(marker).display(),
            p.display(),
            dir.shown(target).display()
        ))),
    }
}

/// Finishes or undoes a swap an earlier, killed restore left half done; says what it did.
pub(super) fn recover(dir: &Beneath, target: &str) -> Result<Option<String>> {
    let Some((marker, text)) = read_marker(dir, target)? else {
        return Ok(None);
    };
    let Ok(m) = serde_json::from_slice::<SwapMarker>(&text) else {
        // Cut short while being written: the swap had not begun.
        let _ = dir.unlink_name(&marker, false);
        return Ok(None);
    };
    let tmp = marked_name(dir, target, &marker, &m.tmp)?;
    let aside = marked_name(dir, target, &marker, &m.aside)?;
    let shown = dir.shown(target);
    let done = if dir.ino_name(&tmp) == Some(m.old_ino) {
        // Exchanged, but the old database did not reach its place aside: it goes there now,
        // whatever the target holds (it is never removed).
        dir.rename_name(&tmp, &aside)
            .map_err(|e| Error::io("moving the old database aside", dir.shown(&tmp), e))?;
        format!(
            "an interrupted restore had already put its copy in place at {}; the database it replaced is kept at {}",
            shown.display(),
            dir.shown(&aside).display()
        )
    } else if dir.ino_name(&aside) == Some(m.old_ino) && dir.ino_name(target) == Some(m.new_ino) {
        // Swapped completely; only the marker was left.
        format!(
            "an interrupted restore had put its copy in place at {}; the database it replaced is kept at {}",
            shown.display(),
            dir.shown(&aside).display()
        )
    } else if dir.ino_name(target).is_none() && dir.ino_name(&aside) == Some(m.old_ino) {
        // Killed between the two renames of a file system without exchange: put it back.
        dir.rename_name(&aside, target)
            .map_err(|e| Error::io("putting the old database back at", &shown, e))?;
        if dir.ino_name(&tmp) == Some(m.new_ino) {
            let _ = dir.unlink_name(&tmp, false);
        }
        format!(
            "an interrupted restore had moved {} aside; it is back in place",
            shown.display()
        )
    } else {
        // Not exchanged: the target is the old database, untouched; drop the copy.
        if dir.ino_name(&tmp) == Some(m.new_ino) {
            let _ = dir.unlink_name(&tmp, false);
        }
        format!(
            "an interrupted restore into {} had not replaced it; its copy was removed",
            shown.display()
        )
    };
    dir.unlink_name(&marker, false)
        .map_err(|e| Error::io("removing", dir.shown(&marker), e))?;
    let _ = dir.sync();
    Ok(Some(done))
}

/// Removes temporary files interrupted restores into `target` left (call under the lock).
pub(super) fn remove_stale_temporaries(dir: &Beneath, target: &str) {
    let prefix = temp_prefix(target);
    for name in dir.names() {
        if let Some(rest) = name.strip_prefix(&prefix) {
            let tmp = rest.ends_with(".tmp")
                || [".tmp-wal", ".tmp-shm", ".tmp-journal"]
                    .iter()
                    .any(|s| rest.ends_with(s));
            if tmp && !rest.starts_with("old-") {
                tracing::warn!(file = %dir.shown(&name).display(), "removing what an interrupted restore left");
                let _ = dir.unlink_name(&name, false);
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

/// Gives the restored file `tmp` (its descriptor: a name can be swapped for a link, a
/// descriptor cannot) the owner, group and mode of the database it replaces (`old`), or, for
/// a new one, the mode a new file gets (0666 less the umask). Permission bits only.
pub(super) fn match_owner_and_mode(tmp: &File, shown: &Path, old: Option<&Stat>) -> Result<()> {
    let mode = match old {
        Some(m) => {
            let mine = rustix::fs::fstat(tmp).map_err(|e| Error::io("reading", shown, e.into()))?;
            if (m.st_uid, m.st_gid) != (mine.st_uid, mine.st_gid) {
                let owner = rustix::fs::fchown(
                    tmp,
                    Some(rustix::fs::Uid::from_raw(m.st_uid)),
                    Some(rustix::fs::Gid::from_raw(m.st_gid)),
                );
                if let Err(e) = owner {
                    // Only root may give a file away; say so rather than fail the restore.
                    tracing::warn!(
                        "the restored database keeps owner {}:{} instead of {}:{} ({e}); run the restore as root or as the owner",
                        mine.st_uid,
                        mine.st_gid,
                        m.st_uid,
                        m.st_gid
                    );
                }
            }
            // No set-id or sticky bits: a database needs none, and a file root restores
            // must not become a way to gain them.
            m.st_mode & 0o777
        }
        None => 0o666 & !umask(),
    };
    rustix::fs::fchmod(tmp, Mode::from_raw_mode(mode))
        .map_err(|e| Error::io("setting the mode of", shown, e.into()))
}

/// Makes the old database self-contained before it moves: WAL content checkpointed into the
/// file (and the WAL truncated), a hot rollback journal rolled back. Its `-wal`, `-shm` and
/// `-journal` then hold nothing it needs, whatever happens to them.
pub(super) fn settle(dir: &Beneath, target: &str) -> Result<()> {
    let not_a_db = |e: &rusqlite::Error| super::is_not_a_db(e);
    let shown = dir.shown(target);
    let c = match rusqlite::Connection::open_with_flags(
        dir.via(target),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        // Not a database (a file replaced by force): it has no journal to settle.
        Err(e) if not_a_db(&e) => return Ok(()),
        Err(e) => return Err(Error::sqlite(&shown, e)),
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
            shown.display()
        ))),
        Err(e) => Err(Error::Target(format!(
            "{} could not be settled before it is replaced ({e}); nothing was changed",
            shown.display()
        ))),
    }
}

/// What [`swap_in`] did.
pub(super) struct Placed {
    /// The name of the old database, when there was one.
    pub old: Option<String>,
    /// Sidecars moved aside with it (names).
    pub sidecars: Vec<String>,
    /// A failure after the new copy was in place.
    pub incomplete: Option<String>,
}

/// Puts `tmp` in place at `target` (names in `dir`), the old database (when `exists`) and
/// its sidecars moving to `aside`. On an error nothing has changed; once the copy is in
/// place, later failures come back in [`Placed::incomplete`].
pub(super) fn swap_in(
    dir: &Beneath,
    tmp: &str,
    target: &str,
    aside: &str,
    exists: bool,
) -> Result<Placed> {
    let ino = |n: &str| {
        dir.ino_name(n).ok_or_else(|| {
            Error::io(
                "reading",
                dir.shown(n),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    };
    let marker = beside(target, "swap");
    if exists {
        let m = SwapMarker {
            old_ino: ino(target)?,
            new_ino: ino(tmp)?,
            tmp: dir.shown(tmp),
            aside: dir.shown(aside),
        };
        write_marker(
            dir,
            &marker,
            &serde_json::to_vec(&m).expect("marker serializes"),
        )?;
    }
    // The settled old database's sidecars go aside first: SQLite would replay a stale WAL
    // or journal into the restored pages. Each move is undone if anything fails before the
    // exchange.
    let mut moved: Vec<(String, String)> = Vec::new();
    let undo = |moved: &mut Vec<(String, String)>| {
        while let Some((from, to)) = moved.pop() {
            let _ = dir.rename_name(&to, &from);
        }
        let _ = dir.unlink_name(&marker, false);
    };
    for s in ["-wal", "-journal", "-shm"] {
        let side = format!("{target}{s}");
        if dir.ino_name(&side).is_some() {
            let to = format!("{aside}{s}");
            if let Err(e) = dir.rename_name(&side, &to) {
                undo(&mut moved);
                return Err(Error::io(
                    "moving aside (nothing was changed)",
                    dir.shown(&side),
                    e,
                ));
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
    let shown = dir.shown(target);
    if exists {
        match dir.exchange_names(tmp, target) {
            Ok(()) => {
                fault("after-exchange");
                // The target is the new database; the old one is at `tmp`'s name.
                match dir.rename_name(tmp, aside) {
                    Ok(()) => placed.old = Some(aside.to_string()),
                    Err(e) => {
                        placed.old = Some(tmp.to_string());
                        placed.incomplete =
                            Some(format!("moving the old database aside failed ({e})"));
                    }
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                // A file system without exchange: two renames, undone on failure. A kill
                // between them leaves the target missing, with the marker naming both.
                dir.rename_name(target, aside).map_err(|e| {
                    undo(&mut moved);
                    Error::io("moving aside (nothing was changed)", &shown, e)
                })?;
                if let Err(e) = dir.rename_name(tmp, target) {
                    let _ = dir.rename_name(aside, target);
                    undo(&mut moved);
                    return Err(Error::io(
                        "moving the restored database into place (the old files were put back) at",
                        &shown,
                        e,
                    ));
                }
                placed.old = Some(aside.to_string());
            }
            Err(e) => {
                undo(&mut moved);
                return Err(Error::io(
                    "moving the restored database into place (the old files were put back) at",
                    &shown,
                    e,
                ));
            }
        }
    } else {
        // Nothing to replace: a new name, refused if something appeared there meanwhile.
        dir.link_name(tmp, target)
            .and_then(|()| dir.unlink_name(tmp, false))
            .map_err(|e| {
                undo(&mut moved);
                Error::io("moving the restored database into place at", &shown, e)
            })?;
    }
    if placed.incomplete.is_none() {
        let _ = dir.unlink_name(&marker, false);
    }
    if let Err(e) = dir.sync() {
        placed
            .incomplete
            .get_or_insert(format!("syncing its directory failed ({e})"));
    }
    Ok(placed)
}

/// Writes the swap marker durably: a new file of ours (never through a link), synced, then
/// named, so a kill leaves either no marker or a whole one.
fn write_marker(dir: &Beneath, marker: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = format!("{marker}.tmp");
    let _ = dir.unlink_name(&tmp, false);
    let mut f = dir
        .open_name(&tmp, OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY, 0o600)
        .map_err(|e| refuse_link(dir, &tmp, "the swap marker", e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| dir.rename_name(&tmp, marker))
        .map_err(|e| Error::io("writing the swap marker", dir.shown(marker), e))
        .and_then(|()| dir.sync())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_of(d: &tempfile::TempDir) -> Arc<Beneath> {
        Arc::new(Beneath::open_named(d.path()).unwrap())
    }

    #[test]
    fn the_exchange_swaps_two_names_at_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "A").unwrap();
        std::fs::write(d.path().join("b"), "B").unwrap();
        dir_of(&d).exchange_names("a", "b").unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "B");
        assert_eq!(std::fs::read_to_string(d.path().join("b")).unwrap(), "A");
    }

    #[test]
    fn one_restore_per_target() {
        let d = tempfile::tempdir().unwrap();
        let dir = dir_of(&d);
        let lock = TargetLock::acquire(&dir, "hotel.db").unwrap();
        let e = TargetLock::acquire(&dir, "hotel.db").err().unwrap();
        assert!(e.to_string().contains("another strongroom restore"), "{e}");
        drop(lock);
        assert!(
            !d.path().join(beside("hotel.db", "lock")).exists(),
            "the lock file goes with the lock"
        );
        TargetLock::acquire(&dir, "hotel.db").unwrap();
    }

    #[test]
    fn a_link_at_the_locks_name_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, d.path().join(beside("hotel.db", "lock"))).unwrap();
        let e = TargetLock::acquire(&dir_of(&d), "hotel.db").err().unwrap();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert!(!elsewhere.exists(), "nothing was created through the link");
    }

    #[test]
    fn a_marker_may_name_only_our_own_files_beside_the_target() {
        let d = tempfile::tempdir().unwrap();
        let dir = dir_of(&d);
        let ours = d.path().join(".hotel.db.strongroom-x.tmp");
        assert!(marked_name(&dir, "hotel.db", "m", &ours).is_ok());
        for bad in [
            d.path().join("script.sh"),
            d.path().join(".hotel.db.strongroom-"),
            PathBuf::from("/etc/.hotel.db.strongroom-x.tmp"),
            d.path().join("sub/.hotel.db.strongroom-x.tmp"),
            d.path().join("../.hotel.db.strongroom-x.tmp"),
            PathBuf::from(".hotel.db.strongroom-x.tmp"),
        ] {
            let e = marked_name(&dir, "hotel.db", "m", &bad).err();
            assert!(
                e.is_some_and(|e| e.to_string().contains("not strongroom's own file")),
                "{}",
                bad.display()
            );
        }
    }

    #[test]
    fn a_marker_another_user_could_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join(beside("hotel.db", "swap"));
        std::fs::write(&marker, "{}").unwrap();
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = recover(&dir_of(&d), "hotel.db").err().unwrap();
        assert!(e.to_string().contains("writable by others"), "{e}");
        assert!(marker.exists(), "a refused marker is left for the operator");
    }

    #[test]
    fn a_new_file_follows_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("t");
        std::fs::write(&tmp, "x").unwrap();
        let f = File::open(&tmp).unwrap();
        match_owner_and_mode(&f, &tmp, None).unwrap();
        let mode = std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());
    }
}

//! A directory held open, and everything below it reached through its descriptor, never
//! through a link.
//!
//! Owns the one way strongroom changes a directory another user may control: restores run
//! as root into directories the application's user (or `postgres`) owns, and whoever owns
//! them can plant links, or swap a directory for a link, between two of our steps. So a
//! directory is opened once ([`Beneath::open`] refuses a link there; [`Beneath::open_named`]
//! resolves the one the operator named, once) and every later step is relative to that
//! descriptor:
//! - path-walking operations (`mkdir`, `create_file`, `replace_file`, `rename`, `chown_all`,
//!   …) go one component at a time, each opened with `O_NOFOLLOW`, and refuse names that
//!   would leave the directory (no `..`, no absolute paths, no empty components); a link met
//!   on the way fails the operation instead of being followed. A physical restore writes a
//!   whole data directory this way;
//! - name-level operations (`*_name`, [`Beneath::exchange_names`], [`Beneath::names`])
//!   act on one entry of the directory itself and return the operating system's error
//!   untouched, so their callers (the SQLite target's swap) phrase it;
//! - [`Beneath::via`] gives code that takes only paths (SQLite, temporary files) a path
//!   through the held descriptor (`/proc/self/fd/N/NAME`).
//!
//! Must not decide what is written or why (the engines do).

use crate::error::{Error, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A directory held open; every path given to it is relative to it.
pub struct Beneath {
    fd: OwnedFd,
    path: PathBuf,
}

/// Opening a directory on the way: never a link, always a directory.
const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The directory a name lies in: the held one, or one opened below it.
enum Parent<'a> {
    Top(BorrowedFd<'a>),
    Below(OwnedFd),
}

impl AsFd for Parent<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Parent::Top(fd) => *fd,
            Parent::Below(fd) => fd.as_fd(),
        }
    }
}

/// The operating system's error, said plainly when a link was in the way.
fn os(e: Errno) -> std::io::Error {
    if e == Errno::LOOP {
        std::io::Error::other("a link is in the way, and a restore never follows links")
    } else {
        std::io::Error::from(e)
    }
}

/// The operating system's error on opening a directory, said plainly when something else
/// (a link, a file) is where the directory belongs.
fn os_dir(e: Errno) -> std::io::Error {
    if e == Errno::LOOP || e == Errno::NOTDIR {
        std::io::Error::other(
            "a link or a file is where a directory belongs, and a restore never follows links",
        )
    } else {
        std::io::Error::from(e)
    }
}

/// A name's components, refusing any that would leave the directory or be ambiguous.
fn components(rel: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = rel.split('/').collect();
    let plain = |c: &&str| !c.is_empty() && *c != "." && *c != ".." && !c.contains('\0');
    parts.iter().all(plain).then_some(parts)
}

impl Beneath {
    /// Opens the directory at `path` (refusing a link there).
    pub fn open(path: &Path) -> Result<Beneath> {
        let fd = rustix::fs::open(path, DIR, Mode::empty())
            .map_err(|e| Error::io("opening", path, os_dir(e)))?;
        Ok(Beneath {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens the directory the operator named at `path` (absolute), following a link there
    /// this once: the operator chose it. Nothing below it is looked up by path again.
    pub fn open_named(path: &Path) -> Result<Beneath> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("opening", path, e.into()))?;
        Ok(Beneath {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in the directory, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A path to `name` that resolves through the held descriptor, for code that takes only
    /// paths: a directory swapped for a link is not followed.
    pub fn via(&self, name: &str) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).join(name)
    }

    /// What is at `name` in the directory itself, not following a link; `None` when nothing
    /// is.
    pub fn stat_name(&self, name: &str) -> Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("reading", self.shown(name), e.into())),
        }
    }

    /// The inode at `name` (not following a link), when something is there.
    pub fn ino_name(&self, name: &str) -> Option<u64> {
        self.stat_name(name).ok().flatten().map(|st| st.st_ino)
    }

    /// Opens `name` with `flags`, never following a link and never blocking on a FIFO.
    pub fn open_name(&self, name: &str, flags: OFlags, mode: u32) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to`, both names in the directory.
    pub fn rename_name(&self, from: &str, to: &str) -> std::io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Exchanges two names in the directory atomically, where the kernel and file system
    /// can (`EINVAL`/`ENOSYS` where they cannot).
    pub fn exchange_names(&self, a: &str, b: &str) -> std::io::Result<()> {
        Ok(rustix::fs::renameat_with(
            &self.fd,
            a,
            &self.fd,
            b,
            rustix::fs::RenameFlags::EXCHANGE,
        )?)
    }

    /// Gives the file at `from` the new name `to`, failing if anything is there (a link at
    /// `from` is linked, not followed).
    pub fn link_name(&self, from: &str, to: &str) -> std::io::Result<()> {
        Ok(rustix::fs::linkat(
            &self.fd,
            from,
            &self.fd,
            to,
            AtFlags::empty(),
        )?)
    }

    /// Removes the entry `name` (a link is removed, never followed; a directory with
    /// `dir`).
    pub fn unlink_name(&self, name: &str, dir: bool) -> std::io::Result<()> {
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        Ok(rustix::fs::unlinkat(&self.fd, name, flags)?)
    }

    /// The names in the directory (none when it cannot be listed).
    pub fn names(&self) -> Vec<String> {
        entries(self.fd.as_fd(), &self.path)
            .map(|v| {
                v.into_iter()
                    .map(|(n, _)| String::from_utf8_lossy(n.to_bytes()).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The directory holding `rel` and the last component of `rel`; directories missing on
    /// the way are made (mode 0700) when `create`.
    fn parent<'n>(&self, rel: &'n str, create: bool) -> Result<(Parent<'_>, &'n str)> {
        let parts = components(rel).ok_or_else(|| {
            Error::io(
                "refusing",
                self.path.join(rel),
                std::io::Error::other("the name would leave the directory"),
            )
        })?;
        let (leaf, dirs) = parts.split_last().expect("split gives one part at least");
        let mut at = Parent::Top(self.fd.as_fd());
        let mut walked = self.path.clone();
        for d in dirs {
            walked.push(d);
            let mut opened = rustix::fs::openat(&at, *d, DIR, Mode::empty());
            if create && matches!(opened, Err(Errno::NOENT)) {
                match rustix::fs::mkdirat(&at, *d, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Error::io("creating", &walked, os(e))),
                }
                opened = rustix::fs::openat(&at, *d, DIR, Mode::empty());
            }
            at = Parent::Below(opened.map_err(|e| Error::io("opening", &walked, os_dir(e)))?);
        }
        Ok((at, leaf))
    }

    /// Makes directory `rel` (or takes the one there, when it is a directory and not a
    /// link) and gives it `mode`.
    pub fn mkdir(&self, rel: &str, mode: u32) -> Result<()> {
        let path = self.path.join(rel);
        let (at, leaf) = self.parent(rel, true)?;
        match rustix::fs::mkdirat(&at, leaf, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::io("creating", &path, os(e))),
        }
        let fd = rustix::fs::openat(&at, leaf, DIR, Mode::empty())
            .map_err(|e| Error::io("opening", &path, os_dir(e)))?;
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777))
            .map_err(|e| Error::io("setting permissions of", &path, os(e)))
    }

    /// Makes the link `rel` pointing at `target` (which is stored, never followed here).
    pub fn symlink(&self, target: &str, rel: &str) -> Result<()> {
        let (at, leaf) = self.parent(rel, true)?;
        rustix::fs::symlinkat(target, &at, leaf)
            .map_err(|e| Error::io("creating link", self.path.join(rel), os(e)))
    }

    /// Creates the new file `rel` (failing if anything is there already) with `mode`.
    pub fn create_file(&self, rel: &str, mode: u32) -> Result<std::fs::File> {
        let path = self.path.join(rel);
        let (at, leaf) = self.parent(rel, true)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&at, leaf, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io("creating", &path, os(e)))?;
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777))
            .map_err(|e| Error::io("setting permissions of", &path, os(e)))?;
        Ok(fd.into())
    }

    /// Opens file `rel` for reading; `None` when nothing is there.
    pub fn open_file(&self, rel: &str) -> Result<Option<std::fs::File>> {
        let path = self.path.join(rel);
        let (at, leaf) = self.parent(rel, false)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&at, leaf, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(fd.into())),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("opening", &path, os(e))),
        }
    }

    /// What sort of entry `rel` is (a link is a link, not what it points at); `None` when
    /// nothing is there.
    pub fn kind(&self, rel: &str) -> Result<Option<FileType>> {
        let (at, leaf) = match self.parent(rel, false) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        match rustix::fs::statat(&at, leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("reading", self.path.join(rel), os(e))),
        }
    }

    /// Replaces `rel` with a new file holding `data` with `mode`: written beside it, synced
    /// and renamed over it, so a link there is replaced, not followed.
    pub fn replace_file(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        let path = self.path.join(rel);
        let (at, leaf) = self.parent(rel, true)?;
        let temp = format!(".{leaf}.strongroom-tmp");
        match rustix::fs::unlinkat(&at, temp.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Error::io("removing", self.path.join(&temp), os(e))),
        }
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&at, temp.as_str(), flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io("writing", &path, os(e)))?;
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777))
            .map_err(|e| Error::io("setting permissions of", &path, os(e)))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("writing", &path, e))?;
        rustix::fs::renameat(&at, temp.as_str(), &at, leaf)
            .map_err(|e| Error::io("writing", &path, os(e)))
    }

    /// Removes the file (or link) `rel` when it is there.
    pub fn remove_file(&self, rel: &str) -> Result<()> {
        let (at, leaf) = self.parent(rel, false)?;
        match rustix::fs::unlinkat(&at, leaf, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io("removing", self.path.join(rel), os(e))),
        }
    }

    /// Moves `from` to `to` (both below this directory; `to`'s directories are made).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (old, old_leaf) = self.parent(from, false)?;
        let (new, new_leaf) = self.parent(to, true)?;
        rustix::fs::renameat(&old, old_leaf, &new, new_leaf)
            .map_err(|e| Error::io("moving", self.path.join(from), os(e)))
    }

    /// Gives the directory itself `mode`.
    pub fn chmod(&self, mode: u32) -> Result<()> {
        rustix::fs::fchmod(&self.fd, Mode::from_bits_truncate(mode & 0o777))
            .map_err(|e| Error::io("setting permissions of", &self.path, os(e)))
    }

    /// Gives everything below the directory, and then the directory itself, to `uid:gid`:
    /// links themselves (never what they point at), each directory's entries before the
    /// directory, so none is handed over while the restore still works inside it.
    pub fn chown_all(&self, uid: u32, gid: u32) -> Result<()> {
        let owner = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        chown_below(self.fd.as_fd(), &self.path, owner)?;
        rustix::fs::fchown(&self.fd, Some(owner.0), Some(owner.1))
            .map_err(|e| Error::io("changing the owner of", &self.path, os(e)))
    }

    /// Fsyncs every directory below this one and then this one (not following links), so
    /// the entries of the files written survive a crash.
    pub fn sync_dirs(&self) -> Result<()> {
        sync_below(self.fd.as_fd(), &self.path)
    }

    /// Fsyncs the directory itself (its entries).
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| Error::io("syncing", &self.path, os(e)))
    }

    /// Fsyncs directory `rel`.
    pub fn sync_dir(&self, rel: &str) -> Result<()> {
        let path = self.path.join(rel);
        let (at, leaf) = self.parent(rel, false)?;
        let fd = rustix::fs::openat(&at, leaf, DIR, Mode::empty())
            .map_err(|e| Error::io("opening", &path, os_dir(e)))?;
        rustix::fs::fsync(&fd).map_err(|e| Error::io("syncing", &path, os(e)))
    }
}

/// The entries of the directory open as `fd`, with their types (links as links).
fn entries(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<(std::ffi::CString, FileType)>> {
    let dir = rustix::fs::Dir::read_from(fd).map_err(|e| Error::io("listing", path, os(e)))?;
    let mut out = Vec::new();
    for e in dir {
        let e = e.map_err(|e| Error::io("listing", path, os(e)))?;
        let name = e.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let mut kind = e.file_type();
        if kind == FileType::Unknown {
            let st = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::io("reading", path, os(e)))?;
            kind = FileType::from_raw_mode(st.st_mode);
        }
        out.push((name.to_owned(), kind));
    }
    Ok(out)
}

fn chown_below(
    fd: BorrowedFd<'_>,
    path: &Path,
    owner: (rustix::fs::Uid, rustix::fs::Gid),
) -> Result<()> {
    for (name, kind) in entries(fd, path)? {
        let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        if kind == FileType::Directory {
            let sub = rustix::fs::openat(fd, name.as_c_str(), DIR, Mode::empty())
                .map_err(|e| Error::io("opening", &child, os_dir(e)))?;
            chown_below(sub.as_fd(), &child, owner)?;
        }
        rustix::fs::chownat(
            fd,
            name.as_c_str(),
            Some(owner.0),
            Some(owner.1),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io("changing the owner of", &child, os(e)))?;
    }
    Ok(())
}

fn sync_below(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    for (name, kind) in entries(fd, path)? {
        if kind == FileType::Directory {
            let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            let sub = rustix::fs::openat(fd, name.as_c_str(), DIR, Mode::empty())
                .map_err(|e| Error::io("opening", &child, os_dir(e)))?;
            sync_below(sub.as_fd(), &child)?;
        }
    }
    rustix::fs::fsync(fd).map_err(|e| Error::io("syncing", path, os(e)))
}

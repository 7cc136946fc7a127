//! strongroom's local state directory: where it is, and making and entering it safely.
//!
//! The state directory is `$STRONGROOM_STATE_DIR`, else `$XDG_STATE_HOME/strongroom`, else
//! `~/.local/state/strongroom`. It holds what must outlive one run on this host:
//! `running/<repository id>/` (notes of jobs in progress, journaled as interrupted once their
//! process is gone), `pending-journal/<repository id>/` (sealed journal records waiting for
//! the store) and `alerts/repeats/` (when each failure was last alerted). strongroom acts on
//! what it finds there, so this module owns: creating the directories strongroom makes with
//! mode 0700; refusing ([`Error::Untrusted`]) a state directory, a directory in it, or the
//! directory holding it, that another user than the running one and root owns or that its
//! group or others can write ([`crate::trust`]'s rule; the holding directory may be sticky,
//! like /tmp); and opening files there without following links. A directory
//! the running user cannot enter (root's, seen by `postgres`) is simply not used, as when
//! there is none.
//!
//! Must not change the owner or mode of a directory it did not create, and must never stop a
//! job: its users carry on without state when [`dir`] or [`existing`] has none to give.

use crate::error::{Error, Obeyed, Result};
use crate::trust::{check_directory_of, check_owner_and_mode, trusted_owner};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the state directory is: `$STRONGROOM_STATE_DIR`, else `$XDG_STATE_HOME/strongroom`,
/// else `~/.local/state/strongroom`; `None` when none of these is set.
pub fn location() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    var("STRONGROOM_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_STATE_HOME").map(|x| Path::new(&x).join("strongroom")))
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".local/state/strongroom")))
}

/// Refuses an existing state directory that another user controls, before a command starts
/// work. A missing one (made when first needed) or one the running user cannot look at
/// (then unused) passes.
pub fn check() -> Result<()> {
    let Some(root) = location() else {
        return Ok(());
    };
    match inspect_root(&root) {
        Err(e @ Error::Untrusted { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// The directory `parts` under the state directory, made (mode 0700) where missing; `None`
/// (with a warning when another user controls it) when there is no state directory or it
/// cannot be used.
pub fn dir(parts: &[&str]) -> Option<PathBuf> {
    usable(make_dir(&location()?, parts))
}

/// The directory `parts` under the state directory when it exists and only the running user
/// or root controls it (with a warning when another user does); `None` otherwise.
pub fn existing(parts: &[&str]) -> Option<PathBuf> {
    let root = location()?;
    let found = (|| {
        if inspect_root(&root)?.is_none() {
            return Ok(None);
        }
        let mut path = root.clone();
        for part in parts {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) => check_subdirectory(&path, &meta)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("looking at", &path, e)),
            }
        }
        Ok(Some(path))
    })();
    usable(found.transpose()?)
}

/// The directory `parts` under `root`, made where missing: `root` and every directory made
/// on the way with mode 0700; existing ones checked, never changed.
pub fn make_dir(root: &Path, parts: &[&str]) -> Result<PathBuf> {
    if inspect_root(root)?.is_none() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("creating", root, e))?;
        // Made now, by this process, but look again: whoever could plant it meanwhile is
        // refused here.
        inspect_root(root)?;
    }
    let mut path = root.to_path_buf();
    for part in parts {
        path.push(part);
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| Error::io("looking at", &path, e))?;
                check_subdirectory(&path, &meta)?;
            }
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
    }
    Ok(path)
}

/// A new file in a state directory, mode 0600; fails if the name exists (a link included).
pub fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// A file in a state directory to write, made (mode 0600) or emptied; never through a link.
pub fn create(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A file in a state directory to read and update in place, made (mode 0600) when missing;
/// never through a link, and only a regular file of the running user or root.
pub fn open_rw(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    ours(file)
}

/// The contents of a file in a state directory: never through a link, and only of a regular
/// file of the running user or root.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = ours(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?,
    )?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn ours(file: File) -> std::io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() || !trusted_owner(meta.uid()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a regular file of this user or root",
        ));
    }
    Ok(file)
}

/// The state directory itself (a link to it is followed: the operator chose the path), when
/// it exists; refused when another user controls it, or the directory holding it (who could
/// put another in its place).
fn inspect_root(root: &Path) -> Result<Option<std::fs::Metadata>> {
    match check_directory_of(root, Obeyed::StateDirectory) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        other => {
            other?;
        }
    }
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {
            check_owner_and_mode(root, &meta, Obeyed::StateDirectory)?;
            Ok(Some(meta))
        }
        Ok(_) => Err(Error::Config(format!(
            "the state directory {} is not a directory",
            root.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("looking at", root, e)),
    }
}

/// A directory inside the state directory: a real directory (not a link), controlled by the
/// running user or root only.
fn check_subdirectory(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if !meta.is_dir() {
        return Err(Error::Untrusted {
            what: Obeyed::StateDirectory,
            path: path.to_path_buf(),
            problem: "it is not a directory (a link is not followed there)".into(),
            fix: "remove it, and look at who made it".into(),
        });
    }
    check_owner_and_mode(path, meta, Obeyed::StateDirectory)
}

/// The directory, or `None` with a warning when another user controls it (a debug note for
/// other trouble: the state directory is an aid, never a reason to stop).
fn usable(found: Result<PathBuf>) -> Option<PathBuf> {
    match found {
        Ok(p) => Some(p),
        Err(e @ Error::Untrusted { .. }) => {
            tracing::warn!("{e}; going on without it");
            None
        }
        Err(e) => {
            tracing::debug!("state directory not used: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn made_private_and_refused_when_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/state");
        let dir = make_dir(&root, &["running", "repo-id"]).unwrap();
        assert_eq!(dir, root.join("running/repo-id"));
        for p in [
            tmp.path().join("a"),
            root.clone(),
            root.join("running"),
            dir,
        ] {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        }
        // An existing directory is checked, not changed.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_dir(&root, &["alerts"]).unwrap();
        assert_eq!(mode(&root), 0o755);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = make_dir(&root, &["alerts"]).unwrap_err().to_string();
        assert!(e.starts_with("refusing the state directory"), "{e}");
        assert_eq!(mode(&root), 0o777);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let running = root.join("running");
        std::fs::set_permissions(&running, std::fs::Permissions::from_mode(0o733)).unwrap();
        assert!(matches!(
            make_dir(&root, &["running", "repo-id"]),
            Err(Error::Untrusted { .. })
        ));
        // A link inside is not followed.
        std::os::unix::fs::symlink(tmp.path(), root.join("pending-journal")).unwrap();
        assert!(matches!(
            make_dir(&root, &["pending-journal"]),
            Err(Error::Untrusted { .. })
        ));
        // Files are not opened through links.
        let target = tmp.path().join("target");
        std::fs::write(&target, "x").unwrap();
        let link = root.join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create(&link).is_err() && open_rw(&link).is_err() && read(&link).is_err());
        assert!(create_new(&link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
    }
}

//! Private local directories: directories on this host that no other local user controls,
//! and the files strongroom keeps in them (the state directory, the local caches).
//!
//! Owns making and entering them, by [`crate::trust`]'s rule. A root (the path the operator
//! chose) is resolved once, a link to it followed, and the resolved path is used from then
//! on; it is used only when it is a directory owned by the running user or root that neither
//! group nor others can write, the directory holding the name as given and every directory
//! above the resolved one are owned by the running user or root and not writable by others
//! unless sticky (like `/tmp`), so nobody else can put another in its place. Below the root,
//! every directory is checked the same way and never reached through a link. Directories
//! made here are mode 0700 from their creation. Files are opened `O_NOFOLLOW`, made 0600,
//! and used only when they are a regular file of the running user or root with one link.
//!
//! Must not change the owner or mode of a directory it did not create, nor say what a
//! refused directory is for: callers name it ([`Obeyed`]), and decide whether a refusal stops
//! them (the state directory and the caches go on without).

use crate::error::{Error, Obeyed, Result};
use crate::trust::{check_ancestor, check_directory, check_owner_and_mode};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The directory `parts` under `root`, made where missing: `root` (and its missing parents)
/// and every directory made on the way with mode 0700; existing ones checked, never
/// changed. Returns it under the resolved root. Each part must be one plain name.
pub fn make(root: &Path, parts: &[&str], what: Obeyed) -> Result<PathBuf> {
    check_parts(parts, what)?;
    let real = match enter_root(root, what)? {
        Some(real) => real,
        None => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|e| Error::io("creating", root, e))?;
            // Made now, by this process, but look again: whoever could plant it meanwhile
            // is refused here.
            enter_root(root, what)?
                .ok_or_else(|| Error::io("looking at", root, std::io::ErrorKind::NotFound.into()))?
        }
    };
    let mut path = real;
    for part in parts {
        path.push(part);
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| Error::io("looking at", &path, e))?;
                check_directory(&path, &meta, what)?;
            }
            Err(e) => return Err(Error::io("creating", &path, e)),
        }
    }
    Ok(path)
}

/// The directory `parts` under `root` (under the resolved root) when it exists and passes
/// the checks; `None` when it or the root is missing.
pub fn existing(root: &Path, parts: &[&str], what: Obeyed) -> Result<Option<PathBuf>> {
    check_parts(parts, what)?;
    let Some(mut path) = enter_root(root, what)? else {
        return Ok(None);
    };
    for part in parts {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => check_directory(&path, &meta, what)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("looking at", &path, e)),
        }
    }
    Ok(Some(path))
}

/// A new file in a private directory to write (and read), mode 0600; fails if the name
/// exists (a link included).
pub fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// A file in a private directory to write, made (mode 0600) or emptied; never through a
/// link.
pub fn create(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Replaces the file at `path` in a private directory with `parts`, written whole to
/// `path` + `.new` (through [`create`]), synced, then renamed over it: a crash leaves the
/// old file or the new one, never half of one.
pub fn replace(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = create(&tmp)?;
    for p in parts {
        f.write_all(p)?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A file in a private directory to append to, made (mode 0600) when missing; never through
/// a link, and only a regular file of the running user or root with one link.
pub fn append(path: &Path) -> std::io::Result<File> {
    ours(
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?,
    )
}

/// A file in a private directory to read and update in place, made (mode 0600) when
/// missing; never through a link, and only a regular file of the running user or root with
/// one link.
pub fn open_rw(path: &Path) -> std::io::Result<File> {
    ours(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?,
    )
}

/// [`open_rw`] for a file whose contents can be rebuilt (the index cache's lock and pack
/// table): what stands there and is not a regular file of ours with one link (planted, or a
/// hard link to someone's file) is replaced by a new empty file, with a warning.
pub fn open_rw_or_replace(path: &Path) -> std::io::Result<File> {
    match open_rw(path) {
        Ok(f) => return Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) || is_not_ours(&e) => {}
        Err(e) => return Err(e),
    }
    tracing::warn!(
        "{} was not a plain file of this user's; replacing it",
        path.display()
    );
    std::fs::remove_file(path)?;
    create_new(path)
}

/// The contents of a file in a private directory: never through a link, and only of a
/// regular file of the running user or root with one link.
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

/// Why [`ours`] refused a file: the error's payload, so that a refusal is told from the
/// system's own "permission denied".
#[derive(Debug)]
struct NotOurs;

impl std::fmt::Display for NotOurs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file of this user or root with one link")
    }
}

impl std::error::Error for NotOurs {}

fn is_not_ours(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotOurs>())
}

/// The file, when it is a regular file of the running user or root with no other hard link
/// (another name for it could be someone else's way in or out).
fn ours(file: File) -> std::io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() || !crate::trust::trusted_owner(meta.uid()) || meta.nlink() != 1 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            NotOurs,
        ));
    }
    Ok(file)
}

/// Refuses a part that is not one plain name: it would lead out of the directory, or
/// nowhere.
fn check_parts(parts: &[&str], what: Obeyed) -> Result<()> {
    for part in parts {
        let mut c = Path::new(part).components();
        if !matches!((c.next(), c.next()), (Some(Component::Normal(_)), None)) || part.contains('/')
        {
            return Err(Error::Config(format!(
                "{part:?} cannot name a directory in {what}"
            )));
        }
    }
    Ok(())
}

/// The root, resolved once, when it exists and passes the checks (see the module docs);
/// `None` when it is missing. The directory holding the name as given is checked first
/// (whoever can change it could point the name elsewhere), then the directory the name
/// resolves to, then every directory above that.
fn enter_root(root: &Path, what: Obeyed) -> Result<Option<PathBuf>> {
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(parent) {
            Ok(meta) => check_ancestor(root, parent, &meta, what)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("looking at", parent, e)),
        }
    }
    let real = match std::fs::canonicalize(root) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("looking at", root, e)),
    };
    let meta = std::fs::symlink_metadata(&real).map_err(|e| Error::io("looking at", &real, e))?;
    if !meta.is_dir() {
        return Err(Error::Config(format!(
            "{what} {} is not a directory",
            root.display()
        )));
    }
    check_owner_and_mode(root, &meta, what)?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| Error::io("looking at", dir, e))?;
        check_ancestor(root, dir, &meta, what)?;
    }
    Ok(Some(real))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn directories_made_here_are_private_from_the_start_and_others_are_not_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/root");
        let dir = make(&root, &["x", "y"], Obeyed::Cache).unwrap();
        assert_eq!(dir, root.join("x/y"));
        for p in [tmp.path().join("a"), tmp.path().join("a/b"), root.clone()] {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        }
        chmod(&root, 0o755);
        make(&root, &["z"], Obeyed::Cache).unwrap();
        assert_eq!(mode(&root), 0o755);
        assert!(
            existing(&root, &["x", "y"], Obeyed::Cache)
                .unwrap()
                .is_some()
        );
        assert!(existing(&root, &["w"], Obeyed::Cache).unwrap().is_none());
        for part in ["", ".", "..", "../x", "a/b", "/etc"] {
            assert!(
                matches!(make(&root, &[part], Obeyed::Cache), Err(Error::Config(_))),
                "{part:?}"
            );
        }
    }

    #[test]
    fn above_the_root_only_sticky_directories_may_be_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o1777);
        make(&shared.join("mine"), &[], Obeyed::StateDirectory).unwrap();
        chmod(&shared, 0o777);
        let e = make(&shared.join("other"), &[], Obeyed::StateDirectory)
            .unwrap_err()
            .to_string();
        assert!(e.contains("can be changed by other users"), "{e}");
        assert!(!shared.join("other").exists(), "made before it was refused");
        // Found through a link, a root is resolved once and then used resolved; the
        // directory holding the link counts too.
        let held = tmp.path().join("held");
        std::fs::create_dir(&held).unwrap();
        std::os::unix::fs::symlink(shared.join("mine"), held.join("link")).unwrap();
        chmod(&shared, 0o1777);
        let dir = make(&held.join("link"), &["p"], Obeyed::Cache).unwrap();
        assert_eq!(dir, shared.join("mine/p").canonicalize().unwrap());
        chmod(&held, 0o777);
        assert!(matches!(
            existing(&held.join("link"), &[], Obeyed::Cache),
            Err(Error::Untrusted { .. })
        ));
    }

    #[test]
    fn files_are_ours_or_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = make(&tmp.path().join("root"), &[], Obeyed::StateDirectory).unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, "x").unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create(&link).is_err() && open_rw(&link).is_err() && read(&link).is_err());
        assert!(create_new(&link).is_err() && append(&link).is_err());
        let hard = dir.join("hard.json");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(open_rw(&hard).is_err() && read(&hard).is_err() && append(&hard).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
        // Rebuildable files are replaced instead, never written through.
        for name in [&link, &hard] {
            let mut f = open_rw_or_replace(name).unwrap();
            std::io::Write::write_all(&mut f, b"new").unwrap();
            assert!(!std::fs::symlink_metadata(name).unwrap().is_symlink());
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
        let made = dir.join("made");
        std::io::Write::write_all(&mut create(&made).unwrap(), b"y").unwrap();
        assert_eq!(mode(&made), 0o600);
        assert_eq!(read(&made).unwrap(), b"y");
    }
}

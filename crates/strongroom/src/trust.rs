//! What strongroom obeys must be in the hands of the user it runs as, or of root.
//!
//! strongroom runs as root or `postgres` on hosts with other local users, and some files
//! decide what it does: the config names commands it runs (hooks, `[[alerts]] command`,
//! `password_command`), a new password file becomes a key to the repository, the state
//! directory holds notes it acts on, and the cache directory says what a backup believes the
//! repository holds. Owns the one rule for them, after git's `safe.directory`, as checks of
//! metadata and the one-sentence refusal ([`Error::Untrusted`]) for each kind of
//! [`Obeyed`] thing: such a file or directory is used only when the running user or root
//! owns it and neither its group nor others can write it; a file also only when the
//! directory it sits in passes the same test, or is sticky (see [`read_file`]); a directory
//! also only when every directory above it does, or is sticky ([`check_ancestor`]). Root's
//! files are trusted by everyone: root could change the running user's files anyway.
//! Making and entering private directories, and the files in them, is
//! [`crate::private_dir`]'s, with these checks.
//!
//! Must not change any owner or mode, and must not open a file it checked a second time by
//! path: the checks are of the open descriptor, and the text is read from it.

use crate::error::{Error, Obeyed, Result};
use std::ffi::CStr;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Reads a file whose text strongroom will obey, refusing it ([`Error::Untrusted`]) when
/// another user controls it.
///
/// The file is opened without following a symbolic link, and its owner and mode are those of
/// the open descriptor, so what is checked is what is read. It must be a regular file owned
/// by the running user or root, not writable by its group or others, in a directory owned
/// by the running user or root and not writable by group or others. A directory that others
/// can write is accepted only when it is sticky (like `/tmp`), and then only for a file with
/// no other hard link: there, nobody but the file's owner (checked) or the directory's
/// owner (checked) can rename or remove it, so it cannot be swapped, and a new name others
/// plant is theirs (refused) or a hard link (refused). A symbolic link is followed only when
/// the directory holding it passes the directory test (so nobody else can swap the link);
/// the file it leads to must then pass every test itself.
pub fn read_file(path: &Path, what: Obeyed) -> Result<String> {
    let action = match what {
        Obeyed::ConfigFile => "reading config",
        Obeyed::NewPasswordFile => "reading password file",
        Obeyed::StateDirectory | Obeyed::Cache => "reading",
    };
    let io = |p: &Path, e| Error::io(action, p, e);
    let found = std::fs::symlink_metadata(path).map_err(|e| io(path, e))?;
    let target;
    let path = if found.file_type().is_symlink() {
        check_directory_of(path, what)?;
        target = std::fs::canonicalize(path).map_err(|e| io(path, e))?;
        target.as_path()
    } else {
        path
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        // Not a link (a link swapped in after the look above is refused), and no wait on a
        // FIFO planted under the name.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                untrusted(
                    what,
                    path,
                    "it was replaced by a symbolic link while it was being opened".into(),
                    "look at who can write the directory it sits in".into(),
                )
            } else {
                io(path, e)
            }
        })?;
    let meta = file.metadata().map_err(|e| io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Config(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    check_owner_and_mode(path, &meta, what)?;
    let sticky_shared = check_directory_of(path, what)?;
    if sticky_shared && meta.nlink() > 1 {
        return Err(untrusted(
            what,
            path,
            format!(
                "it has {} hard links and sits in {}, which others can write",
                meta.nlink(),
                directory_of(path).display()
            ),
            "keep it in a directory only you or root can write".into(),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| io(path, e))?;
    Ok(text)
}

/// Refuses a file or directory (by its metadata) that a user other than the running one and
/// root owns, or that its group or others can write.
pub fn check_owner_and_mode(path: &Path, meta: &Metadata, what: Obeyed) -> Result<()> {
    let me = running_user();
    if !trusted_owner(meta.uid()) {
        let problem = match what {
            // The cache's refusal has always named the uids, and its tests look for them.
            Obeyed::Cache => format!(
                "it belongs to uid {}, not to this user (uid {}), and whoever owns it {}",
                meta.uid(),
                euid(),
                consequence(what, &me)
            ),
            _ => format!(
                "it is owned by {}, who {}",
                describe_user(meta.uid()),
                consequence(what, &me)
            ),
        };
        let fix = match what {
            Obeyed::Cache => CACHE_ELSEWHERE.into(),
            _ => format!("chown {} and chmod go-w it", name_or_root(&me)),
        };
        return Err(untrusted(what, path, problem, fix));
    }
    if meta.mode() & 0o022 != 0 {
        let fix = match what {
            Obeyed::Cache => {
                "set STRONGROOM_CACHE_DIR to a directory only you can write, or remove their access (chmod go-w)"
            }
            _ => "chmod go-w it",
        };
        return Err(untrusted(
            what,
            path,
            format!(
                "its mode {:04o} makes it writable by other users ({}), and whoever writes it {}",
                meta.mode() & 0o7777,
                writers(meta.mode()),
                consequence(what, &me)
            ),
            fix.into(),
        ));
    }
    Ok(())
}

/// Refuses what stands at `path` (by its metadata, a link not followed) where a directory of
/// strongroom's should be, unless it is a directory that passes [`check_owner_and_mode`].
pub fn check_directory(path: &Path, meta: &Metadata, what: Obeyed) -> Result<()> {
    if !meta.is_dir() {
        let fix = match what {
            Obeyed::Cache => format!("remove it, or {CACHE_ELSEWHERE}"),
            _ => "remove it, and look at who made it".into(),
        };
        return Err(untrusted(
            what,
            path,
            "it is not a directory (a link is not followed there)".into(),
            fix,
        ));
    }
    check_owner_and_mode(path, meta, what)
}

/// Refuses the directory `path` when `ancestor`, a directory above it (by its metadata),
/// lets another user put something else in its place: owned by another user than the
/// running one and root, or writable by group or others and not sticky (in a sticky
/// directory, like `/tmp`, others cannot rename what is not theirs).
pub fn check_ancestor(path: &Path, ancestor: &Path, meta: &Metadata, what: Obeyed) -> Result<()> {
    let how = if !trusted_owner(meta.uid()) {
        format!("it is owned by {}", describe_user(meta.uid()))
    } else if meta.mode() & 0o022 != 0 && meta.mode() & libc::S_ISVTX == 0 {
        format!(
            "its mode {:04o} lets {} rename what is in it",
            meta.mode() & 0o7777,
            writers(meta.mode())
        )
    } else {
        return Ok(());
    };
    let me = running_user();
    let fix = match what {
        Obeyed::Cache => {
            format!("{CACHE_ELSEWHERE}, under directories only you or root can change")
        }
        _ => format!(
            "keep it under directories only {} can change",
            writers_ok(&me)
        ),
    };
    Err(untrusted(
        what,
        path,
        format!(
            "{} above it can be changed by other users ({how}), and whoever changes it {}",
            ancestor.display(),
            consequence(what, &me)
        ),
        fix,
    ))
}

/// The cache's way out of every refusal: it can live anywhere.
const CACHE_ELSEWHERE: &str = "set STRONGROOM_CACHE_DIR to a directory you own";

/// Whether files of `uid` may decide what this process does: its own, and root's.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

/// Checks the directory holding `path` (which could replace `path` with anything): owned by
/// the running user or root, and not writable by group or others unless sticky; true in
/// that sticky case.
pub fn check_directory_of(path: &Path, what: Obeyed) -> Result<bool> {
    let dir = directory_of(path);
    let meta = std::fs::metadata(&dir).map_err(|e| Error::io("looking at", &dir, e))?;
    // Named in full: "it sits in ." would not say which directory.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let me = running_user();
    let writers_ok = writers_ok(&me);
    if !trusted_owner(meta.uid()) {
        return Err(untrusted(
            what,
            path,
            format!(
                "it sits in {}, which is owned by {}, who could replace it and so {}",
                dir.display(),
                describe_user(meta.uid()),
                consequence(what, &me)
            ),
            format!("move it to a directory that only {writers_ok} can write"),
        ));
    }
    let shared = meta.mode() & 0o022 != 0;
    let sticky = meta.mode() & libc::S_ISVTX != 0;
    if shared && !sticky {
        return Err(untrusted(
            what,
            path,
            format!(
                "it sits in {}, whose mode {:04o} lets {} replace it, and whoever replaces it {}",
                dir.display(),
                meta.mode() & 0o7777,
                writers(meta.mode()),
                consequence(what, &me)
            ),
            format!(
                "chmod go-w {} or move the file to a directory that only {writers_ok} can write",
                dir.display()
            ),
        ));
    }
    Ok(shared)
}

/// The directory a path names its file in (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Who may write where strongroom keeps what it obeys, in words: `root`, or `postgres or root`.
fn writers_ok(me: &str) -> String {
    if me == "root" {
        "root".to_string()
    } else {
        format!("{me} or root")
    }
}

fn untrusted(what: Obeyed, path: &Path, problem: String, fix: String) -> Error {
    Error::Untrusted {
        what,
        path: path.to_path_buf(),
        problem,
        fix,
    }
}

/// What whoever controls the file could do, finishing "who …".
fn consequence(what: Obeyed, me: &str) -> String {
    match what {
        Obeyed::ConfigFile => format!("could choose the commands strongroom runs as {me}"),
        Obeyed::NewPasswordFile => "would know a password that opens the repository".into(),
        Obeyed::StateDirectory => format!("could plant notes strongroom acts on as {me}"),
        Obeyed::Cache => "could choose what a backup believes is stored".into(),
    }
}

/// "its group", "others" or "its group and others", from a mode with a write bit for them.
fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The running user as people name it: `root`, `postgres`, or `uid N`.
fn running_user() -> String {
    let uid = euid();
    user_name(uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// The user to hand a file to: the running user's name, or root when it has none.
fn name_or_root(me: &str) -> &str {
    if me.starts_with("uid ") { "root" } else { me }
}

/// Another user as people name them: `postgres (uid 108)`, or `uid 108`.
fn describe_user(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r fills it with pointers
    // into `buf`, which outlives their use below.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points at a NUL-terminated string inside `buf`.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn own_files_in_own_directories_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("strongroom.toml");
        std::fs::write(&f, "repository = \"/srv\"\n").unwrap();
        chmod(&f, 0o644);
        assert_eq!(
            read_file(&f, Obeyed::ConfigFile).unwrap(),
            "repository = \"/srv\"\n"
        );
        // A link in a trusted directory to a trusted file is followed.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(read_file(&link, Obeyed::ConfigFile).is_ok());
    }

    #[test]
    fn files_and_directories_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("strongroom.toml");
        std::fs::write(&f, "").unwrap();
        for mode in [0o666, 0o620, 0o602] {
            chmod(&f, mode);
            let e = read_file(&f, Obeyed::ConfigFile).unwrap_err();
            assert!(matches!(e, Error::Untrusted { .. }), "{e}");
            let text = e.to_string();
            assert!(
                text.starts_with("refusing the config file ") && text.contains("chmod go-w"),
                "{text}"
            );
        }
        chmod(&f, 0o600);
        chmod(dir.path(), 0o777);
        let e = read_file(&f, Obeyed::ConfigFile).unwrap_err().to_string();
        assert!(
            e.contains("whose mode 0777 lets its group and others"),
            "{e}"
        );
        // Sticky, like /tmp: the file's own owner and mode decide.
        chmod(dir.path(), 0o1777);
        assert!(read_file(&f, Obeyed::ConfigFile).is_ok());
        // …but not a hard link there, which another user could have planted.
        std::fs::hard_link(&f, dir.path().join("other")).unwrap();
        let e = read_file(&f, Obeyed::ConfigFile).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        // A link in a directory others can write is not followed, whatever it leads to.
        let safe = tempfile::tempdir().unwrap();
        let target = safe.path().join("c.toml");
        std::fs::write(&target, "").unwrap();
        let open = tempfile::tempdir().unwrap();
        chmod(open.path(), 0o777);
        let link = open.path().join("strongroom.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read_file(&link, Obeyed::ConfigFile),
            Err(Error::Untrusted { .. })
        ));
        // A FIFO is not read (and not waited on).
        let fifo = safe.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_file(&fifo, Obeyed::ConfigFile)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}

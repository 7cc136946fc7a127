//! strongroom's local state directory: where it is, and that it is a private directory.
//!
//! The state directory is `$STRONGROOM_STATE_DIR`, else `$XDG_STATE_HOME/strongroom`, else
//! `~/.local/state/strongroom`. It holds what must outlive one run on this host:
//! `running/<repository id>/` (notes of jobs in progress, journaled as interrupted once their
//! process is gone), `pending-journal/<repository id>/` (sealed journal records waiting for
//! the store), `alerts/repeats/` (when each failure was last alerted) and `daemon/<repository
//! id>.json` (the slot each schedule entry last ran, [`crate::daemon::slots`]). strongroom acts on
//! what it finds there, so it is a [`crate::private_dir`] of kind
//! [`Obeyed::StateDirectory`]: directories made 0700, refused ([`Error::Untrusted`]) when
//! another user than the running one and root controls it, a directory in it, or one above
//! it, and its files (opened with [`crate::private_dir`]'s functions) 0600 and never
//! reached through a link. This module owns where it is and what a refusal does: before a
//! command, it stops the command ([`check`]); during a job, the job goes on without state,
//! with a warning. A directory the running user cannot enter (root's, seen by `postgres`) is
//! simply not used, as when there is none.
//!
//! Must not change the owner or mode of a directory it did not create, and must never stop a
//! job: its users carry on without state when [`dir`] or [`existing`] has none to give.

use crate::error::{Error, Obeyed, Result};
use crate::private_dir;
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
    match private_dir::existing(&root, &[], Obeyed::StateDirectory) {
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
    let found = private_dir::existing(&location()?, parts, Obeyed::StateDirectory);
    usable(found.transpose()?)
}

/// The directory `parts` under the state directory `root`, made where missing: `root` and
/// every directory made on the way with mode 0700; existing ones checked, never changed
/// ([`private_dir::make`]).
pub fn make_dir(root: &Path, parts: &[&str]) -> Result<PathBuf> {
    private_dir::make(root, parts, Obeyed::StateDirectory)
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
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
    }
}

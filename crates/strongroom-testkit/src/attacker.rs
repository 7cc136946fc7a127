//! Another local user, for tests that play an attacker against a root strongroom.
//!
//! Owns finding an unprivileged account to act as (`postgres`, else `nobody`), running
//! commands as it, and handing it files and directories. strongroom runs as root among other
//! users; the tests that prove another user cannot steer it need a real second uid, because
//! every check they exercise is about owners and modes. Must not be used when the tests do
//! not run as root: [`Attacker::find`] then says so and returns `None`, and the caller skips
//! with a message (CI runs as root, so there the tests always run).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

/// An unprivileged local account the tests act as.
#[derive(Debug, Clone)]
pub struct Attacker {
    /// Its login name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

impl Attacker {
    /// The account to act as, when the tests run as root and one exists; otherwise prints why
    /// the calling test is skipped and returns `None`.
    pub fn find() -> Option<Attacker> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: playing another local user needs the tests to run as root");
            return None;
        }
        for name in ["postgres", "nobody"] {
            let c = CString::new(name).expect("no NUL");
            // SAFETY: getpwnam returns a pointer into static storage or NULL; read at once.
            let pw = unsafe { libc::getpwnam(c.as_ptr()) };
            if !pw.is_null() {
                // SAFETY: non-null result of getpwnam.
                let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
                return Some(Attacker {
                    name: name.to_string(),
                    uid,
                    gid,
                });
            }
        }
        eprintln!("skipped: no unprivileged account (postgres or nobody) to act as");
        None
    }

    /// A command that runs as this user (its uid and gid; std drops root's supplementary
    /// groups when it changes the uid).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.uid(self.uid).gid(self.gid);
        c
    }

    /// Runs `script` with `sh -c` as this user and returns what it printed; panics when it
    /// fails, with its stderr.
    pub fn sh(&self, script: &str) -> Output {
        let out = self
            .command("sh")
            .arg("-c")
            .arg(script)
            .current_dir("/")
            .output()
            .expect("running sh as the attacker");
        assert!(
            out.status.success(),
            "as {}: {script}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Makes `path` (not following a link) this user's.
    pub fn take(&self, path: &Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

//! Child programs: running them, reaping them, and saying in one clause how they ended.
//!
//! Owns what every child process strongroom starts needs, whatever the engine: a guard that
//! kills a child nobody waited for, bounded capture of its standard error, a one-clause gist
//! of that output, the description of an exit status, and shell commands from the config
//! (restore hooks, `password_command`). Must not know what the programs are for: the engines
//! decide which program to run and what its failure means.
//!
//! Why one place: a child that outlives an error path keeps a database lock (`pg_dump`) or a
//! file open; every engine must reap the same way. And what a child may see of our
//! environment is decided here once (Architecture, invariant "Secrets never appear"):
//! - hooks and alert commands ([`config_command`]) get a short list of harmless variables
//!   ([`PASSED_TO_HOOKS`]) and what strongroom tells them (`STRONGROOM_SNAPSHOT`, …), nothing
//!   else: no repository password, no object-store credentials, no `PGPASSWORD`. They are
//!   shell commands from a config file, often written to call other tools, and whatever they
//!   start inherits what they got;
//! - PostgreSQL's client tools keep the environment libpq reads but lose the repository's
//!   and the stores' secrets ([`withhold_store_secrets`]);
//! - `password_command` keeps the environment (it may need a vault's token) but not the
//!   repository passwords (`STRONGROOM_PASSWORD`, and the copy's `STRONGROOM_FROM_PASSWORD`
//!   and `STRONGROOM_TO_PASSWORD`).
//! - `gpg`, which encrypts an export (`crate::recipient`), keeps the environment GnuPG reads
//!   (`GNUPGHOME`, the agent's) but loses the repository's and the stores' secrets and
//!   `PGPASSWORD`.
//!
//! The command line of a hook is never logged or put in an error: config commands carry
//! tokens (`curl -u …`) as often as not.

use crate::error::{Error, Result};
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};

/// The environment variable that carries the repository password; no child inherits it.
pub const PASSWORD_ENV: &str = "STRONGROOM_PASSWORD";

/// The password of the repository `init --copy-of` makes a copy of; no child inherits it.
pub const FROM_PASSWORD_ENV: &str = "STRONGROOM_FROM_PASSWORD";

/// The password of the repository `copy --to` copies into; no child inherits it.
pub const TO_PASSWORD_ENV: &str = "STRONGROOM_TO_PASSWORD";

/// Every variable that carries a repository password.
pub const PASSWORD_ENVS: [&str; 3] = [PASSWORD_ENV, FROM_PASSWORD_ENV, TO_PASSWORD_ENV];

/// Kills a child process when dropped unless it was waited for.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        ChildGuard(Some(child))
    }

    /// Waits for the child; the guard then has nothing left to kill.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let mut c = self.0.take().expect("child waited once");
        c.wait()
    }

    /// Kills the child now (it is still reaped on drop or [`ChildGuard::wait`]).
    pub fn kill(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Bytes of a child's standard error kept by [`collect_stderr`]: its last 64 KiB.
const STDERR_KEPT: usize = 65536;

/// Reads a child's standard error in the background, keeping the last 64 KiB.
pub fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<Vec<u8>> {
    let mut err = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > STDERR_KEPT {
                kept.drain(..kept.len() - STDERR_KEPT);
            }
        }
        kept
    })
}

/// The lines of a child's standard error that say what went wrong, as one clause.
pub fn stderr_gist(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // Prefer the first line that says "error"; else the first that is not a hint.
    let line = lines
        .iter()
        .find(|l| l.contains("error:") || l.contains("FATAL") || l.contains("ERROR"))
        .or_else(|| lines.iter().find(|l| !l.contains("hint:")))
        .or(lines.last())
        .copied()
        .unwrap_or("no message");
    let mut out = line.to_string();
    if out.len() > 400 {
        out.truncate(400);
        out.push('…');
    }
    out
}

/// Describes how a child program ended, for messages.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended abnormally".into(),
    }
}

/// Variables that hold the secrets strongroom itself uses: the repository's password and the
/// object stores' credentials. Only a child that opens the repository (a PostgreSQL server
/// whose `restore_command` is `strongroom wal fetch`) keeps them.
pub const STORE_SECRETS: &[&str] = &[
    PASSWORD_ENV,
    FROM_PASSWORD_ENV,
    TO_PASSWORD_ENV,
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// The variables of ours a hook or an alert command sees (besides `LC_*` and what strongroom
/// sets for it): where programs are, who and where it is, the locale, and libpq's settings
/// that are not secrets (`PGPASSFILE` names a file; `PGPASSWORD` is not passed).
pub const PASSED_TO_HOOKS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "NO_COLOR",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSFILE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGCONNECT_TIMEOUT",
];

/// Removes the repository's and the stores' secrets from what `cmd` inherits.
pub fn withhold_store_secrets(cmd: &mut Command) -> &mut Command {
    for k in STORE_SECRETS {
        cmd.env_remove(k);
    }
    cmd
}

/// A shell command from the configuration that acts for the operator (a hook, an alert
/// command): `sh -c` with only [`PASSED_TO_HOOKS`] (and `LC_*`) of our environment, plus
/// `env`.
pub fn config_command(command: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).env_clear().stdin(Stdio::null());
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if PASSED_TO_HOOKS.contains(&name.as_ref()) || name.starts_with("LC_") {
            cmd.env(&k, v);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

/// A shell command from the configuration that must see our environment
/// (`password_command`), run through `sh -c` without the repository password.
fn shell(command: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null());
    for k in PASSWORD_ENVS {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs a hook (`before_restore`, `after_restore`, …) through `sh -c`, its output on our
/// standard error (standard output is for `--json`). `hook` names it in errors.
pub fn run_hook(hook: &str, command: &str, env: &[(&str, String)]) -> Result<()> {
    use std::os::fd::AsFd;
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    // The hook's name only: its command line may carry a token.
    tracing::info!(hook, "running hook");
    let status = config_command(command, env)
        .stdout(stdout)
        .status()
        .map_err(|e| Error::Hook {
            hook: hook.to_string(),
            detail: format!("could not start: {e}"),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Hook {
            hook: hook.to_string(),
            detail: describe_exit(status),
        })
    }
}

/// Runs a command whose first line of standard output is wanted (`password_command`); its
/// standard error goes to ours. `what` names the setting in errors.
pub fn first_line_of(what: &str, command: &str) -> Result<String> {
    let out = shell(command)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Config(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "{what} failed ({}); check the command in the config",
            out.status
        )));
    }
    Ok(first_line(&String::from_utf8_lossy(&out.stdout)))
}

/// The first line of `text`, without its line ending.
pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gist_prefers_the_error_line() {
        let e =
            b"pg_dump: warning: something\npg_dump: error: query failed: boom\npg_dump: detail\n";
        assert_eq!(stderr_gist(e), "pg_dump: error: query failed: boom");
        assert_eq!(stderr_gist(b"\n\n"), "no message");
    }

    #[test]
    fn hooks_report_their_exit_and_never_see_the_password() {
        for pw in PASSWORD_ENVS {
            let removed = shell("true")
                .get_envs()
                .any(|(k, v)| k == pw && v.is_none());
            assert!(
                removed,
                "{pw} must be taken out of password_command's environment"
            );
        }
        // A hook starts from an empty environment: only what is passed on is set.
        let hook = config_command("true", &[("STRONGROOM_SNAPSHOT", "abc".into())]);
        assert!(hook.get_envs().all(|(k, _)| {
            let k = k.to_string_lossy();
            PASSED_TO_HOOKS.contains(&k.as_ref())
                || k.starts_with("LC_")
                || k == "STRONGROOM_SNAPSHOT"
        }));
        // The command line (it may carry a token) is not in the error.
        let e = run_hook("before_restore", "exit 4", &[]).unwrap_err();
        assert_eq!(e.to_string(), "before_restore hook exited with status 4");
        let with_env = run_hook("after_restore", "test \"$X\" = y", &[("X", "y".into())]);
        assert!(with_env.is_ok(), "{with_env:?}");
        assert_eq!(
            first_line_of("password_command", "printf 'pw\\nrest'").unwrap(),
            "pw"
        );
        assert!(first_line_of("password_command", "exit 3").is_err());
    }
}

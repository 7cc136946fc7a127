//! How a failure reaches the user: one sentence on stderr, naming the flag that fixes it,
//! and with `--json` the error document on stdout.
//!
//! Owns turning library errors into the command line's words (the library speaks of what is
//! wrong; here the flag that fixes it is added) and the contract's `{"error": {"kind",
//! "message", "retryable"}}`. Errors the command line finds itself carry their kind in a
//! [`Failure`].

use std::io::{IsTerminal, Write};
use strongroom::error::{Obeyed, TargetSort};
use strongroom::{Error, ErrorKind};

/// A failure found by the command line itself, with its kind.
#[derive(Debug)]
pub struct Failure {
    /// What sort of failure.
    pub kind: ErrorKind,
    /// The sentence.
    pub message: String,
    /// Whether the JSON document on stdout already reports it (verify, check).
    pub reported: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A failure that ends the command with its own exit code (PostgreSQL's rules for
/// `restore_command`); `quiet` ones print nothing (an expected answer, not an error).
#[derive(Debug)]
pub struct ExitWith {
    /// The exit code.
    pub code: i32,
    /// Whether to say nothing on stderr.
    pub quiet: bool,
    /// The failure.
    pub inner: anyhow::Error,
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl std::error::Error for ExitWith {}

/// A failure of `kind` saying `message`.
pub fn fail(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        kind,
        message: message.into(),
        reported: false,
    })
}

/// A usage error: flags the command cannot take together, or a flag's value it cannot read
/// (kind `usage`, exit 2, as clap's own usage errors). An operator's mistake, not a failed
/// job.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    fail(ErrorKind::Usage, message)
}

/// The exit code a failure ends the command with: 2 for a usage error, else 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<Failure>() {
        Some(f) if f.kind == ErrorKind::Usage => 2,
        _ => 1,
    }
}

/// A failure already reported in the JSON document printed on stdout.
pub fn reported(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        kind,
        message: message.into(),
        reported: true,
    })
}

/// A library error in the command line's words: what the library says, plus the flag or
/// variable that fixes it.
pub fn with_flags(e: &Error) -> String {
    match e {
        // Never "create one": for `wal push` with a mistyped path that advice starts
        // archiving into an empty repository (issue 17, item 3).
        Error::NoRepository(_) => format!(
            "{e}: check STRONGROOM_REPO / --repo / `repository` in the config (a typo?); `strongroom init` makes a new one only if you mean to start one"
        ),
        Error::RepositoryIsFile(_) => format!("{e}; check --repo / STRONGROOM_REPO"),
        Error::NoRepositoryGiven => format!(
            "{e}: pass --repo URL, set STRONGROOM_REPO, or set `repository` in strongroom.toml"
        ),
        Error::PasswordMissing => {
            format!(
                "{e}: set STRONGROOM_PASSWORD, --password-file or password_command, or run it on a terminal to type it"
            )
        }
        Error::NoPasswordFor { variable, .. } => {
            let flag = if *variable == strongroom::process::FROM_PASSWORD_ENV {
                "--from-password-file"
            } else {
                "--to-password-file"
            };
            format!(
                "{e}: set {variable}, pass {flag}, or give its [[copies]] entry a password_file or password_command"
            )
        }
        Error::NotACopy { source_url, .. } => format!(
            "{e}; make a copy with `strongroom --repo NEW-URL init --copy-of {source_url}` and copy into it"
        ),
        Error::TargetNotEmpty { target, old } => format!(
            "{target}; pass --force to replace it (the old {old} is kept aside until the restore has succeeded)"
        ),
        Error::ExportExists(path) => format!(
            "{} already exists; pass --force to replace it (it stays as it is until the new export is complete)",
            path.display()
        ),
        Error::TargetMismatch {
            snapshot,
            engine,
            kind,
            given,
            needs,
        } => {
            let flag = target_flag(*needs);
            match given {
                Some(TargetSort::DataDirectory) => format!(
                    "snapshot {snapshot} is a {engine} {kind} snapshot, not a physical one: restore it with {flag}"
                ),
                _ => {
                    let (is, give) = match needs {
                        TargetSort::File => ("SQLite", "the file to write"),
                        TargetSort::Database => ("logical PostgreSQL", "the database"),
                        TargetSort::DataDirectory => {
                            ("physical PostgreSQL", "the data directory to write")
                        }
                    };
                    format!("snapshot {snapshot} is a {is} snapshot: give {give} with {flag}")
                }
            }
        }
        Error::KindMismatch {
            kind,
            engine,
            source_name,
            kinds,
        } => format!(
            "--kind {kind} does not apply to {engine} source {source_name} (kinds: {kinds})"
        ),
        Error::AmbiguousLatest { .. } => format!("{e}; name one with --source"),
        Error::NoMatchingSnapshot => "no snapshot matches the given --source/--tag".into(),
        Error::DemoDirTaken(dir) => format!(
            "{} exists and was not made by the demo; choose another --dir",
            dir.display()
        ),
        Error::Untrusted {
            what: Obeyed::ConfigFile,
            ..
        } => format!("{e}, or pass --config with a file you own"),
        Error::Untrusted {
            what: Obeyed::StateDirectory,
            ..
        } => format!("{e}, or set STRONGROOM_STATE_DIR to a directory you own"),
        other => other.to_string(),
    }
}

/// The flag that gives a restore target of `sort`.
fn target_flag(sort: TargetSort) -> &'static str {
    match sort {
        TargetSort::File => "--to PATH",
        TargetSort::Database => "--target-db postgres://…",
        TargetSort::DataDirectory => "--data-dir DIR",
    }
}

/// The sentence, kind and retry advice of any error a command returned.
pub fn describe(e: &anyhow::Error) -> (String, ErrorKind, bool, bool) {
    if let Some(f) = e.downcast_ref::<Failure>() {
        return (f.message.clone(), f.kind, false, f.reported);
    }
    if let Some(err) = e.downcast_ref::<Error>() {
        return (with_flags(err), err.kind(), err.is_retryable(), false);
    }
    let message = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    // A library error under added context keeps its kind.
    let kind = e
        .chain()
        .find_map(|c| c.downcast_ref::<Error>())
        .map(|err| err.kind())
        .unwrap_or(ErrorKind::Internal);
    (message, kind, false, false)
}

/// Prints a failure: the sentence on stderr (red on a terminal unless `NO_COLOR`), and with
/// `json` the error document on stdout unless the command's own document reported it.
pub fn report(e: &anyhow::Error, json: bool) {
    let (message, kind, retryable, already) = describe(e);
    if json && !already {
        let doc = serde_json::json!({"error": {
            "kind": kind.name(), "message": message, "retryable": retryable,
        }});
        // A closed stdout must not turn a failure into a panic; stderr still says it.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&doc).expect("json serializes")
        );
    }
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if !no_color && std::io::stderr().is_terminal() {
        eprintln!("\x1b[31mstrongroom:\x1b[0m {message}");
    } else {
        eprintln!("strongroom: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(engine: &str, kind: &str, given: Option<TargetSort>, needs: TargetSort) -> String {
        with_flags(&Error::TargetMismatch {
            snapshot: "3fa4c1d2".into(),
            engine: engine.into(),
            kind: kind.into(),
            given,
            needs,
        })
    }

    /// The library's one refusal in the words the two restore paths always printed: with
    /// `--data-dir`, "not a physical one"; otherwise what to give and with which flag.
    #[test]
    fn a_target_of_the_wrong_sort_names_the_flag_that_fixes_it() {
        use TargetSort::*;
        assert_eq!(
            mismatch("sqlite", "full", None, File),
            "snapshot 3fa4c1d2 is a SQLite snapshot: give the file to write with --to PATH"
        );
        assert_eq!(
            mismatch("postgres", "physical", Some(File), DataDirectory),
            "snapshot 3fa4c1d2 is a physical PostgreSQL snapshot: give the data directory to write with --data-dir DIR"
        );
        assert_eq!(
            mismatch("postgres", "logical", Some(File), Database),
            "snapshot 3fa4c1d2 is a logical PostgreSQL snapshot: give the database with --target-db postgres://…"
        );
        assert_eq!(
            mismatch("postgres", "logical", Some(DataDirectory), Database),
            "snapshot 3fa4c1d2 is a postgres logical snapshot, not a physical one: restore it with --target-db postgres://…"
        );
        assert_eq!(
            mismatch("sqlite", "full", Some(DataDirectory), File),
            "snapshot 3fa4c1d2 is a sqlite full snapshot, not a physical one: restore it with --to PATH"
        );
    }
}

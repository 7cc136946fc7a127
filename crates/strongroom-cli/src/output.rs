//! Shared output formatting: JSON documents on stdout and times as people read them.
//!
//! Owns the look of what more than one command prints, and what happens when stdout closes
//! early (`strongroom list | head -1`): the write fails with [`StdoutClosed`] instead of a
//! panic, and `main` exits quietly. Must not decide what to print.

use anyhow::Result;
use std::io::Write;

/// Stdout was closed by its reader before everything was written: not a failure to report.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// The error a failed write to stdout becomes: [`StdoutClosed`] for a closed pipe.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("writing to stdout")
    }
}

/// Like `println!`, but returns the write's outcome (see [`stdout_error`]) for `?` instead
/// of panicking when stdout is gone.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err($crate::output::stdout_error)
    }};
}
pub(crate) use outln;

/// Prints one JSON document on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn fmt_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// The first 8 characters of an id.
pub fn short(id: &str) -> &str {
    strongroom::repository::snapshot::short_id(id)
}

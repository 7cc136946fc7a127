//! Shared output formatting: JSON documents on stdout and times as people read them.
//!
//! Owns the look of what more than one command prints. Must not decide what to print.

use anyhow::Result;

/// Prints one JSON document on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn fmt_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// The first 8 characters of an id.
pub fn short(id: &str) -> &str {
    &id[..8.min(id.len())]
}

//! Shared output formatting: JSON documents on stdout, tables and times as people read them.
//!
//! Owns the look of what more than one command prints (one [`Table`] for every column
//! layout, so columns line up whatever the values' lengths), and what happens when stdout closes
//! early (`strongroom list | head -1`): the write fails with [`StdoutClosed`] instead of a
//! panic, and `main` exits quietly; and `--quiet` on a command cron runs, which leaves stdout
//! empty on success ([`silence`]). Must not decide what to print.

use anyhow::Result;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static SILENT: AtomicBool = AtomicBool::new(false);

/// From now on [`outln!`] writes nothing: `--quiet` on a command that changes something
/// (backup, copy, forget, …), so cron mails nothing when all went well. Errors and warnings
/// go to stderr and still show; `--json` documents still print (they were asked for).
pub fn silence() {
    SILENT.store(true, Ordering::Relaxed);
}

/// Whether [`silence`] was called.
pub fn silenced() -> bool {
    SILENT.load(Ordering::Relaxed)
}

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
/// of panicking when stdout is gone, and writes nothing once [`silence`]d.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if $crate::output::silenced() {
            Ok(())
        } else {
            writeln!(std::io::stdout(), $($arg)*).map_err($crate::output::stdout_error)
        }
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

/// How a column's cells sit in its width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Align {
    /// Text: against the left edge.
    Left,
    /// Numbers: against the right edge.
    Right,
}

/// Rows for people: every column as wide as its widest cell (in terminal cells, so long
/// URLs and paths keep the columns after them in line), two spaces apart; the last column
/// is not padded. Values are never cut: the same text is what `--source` and `--json` take.
pub struct Table {
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first line is a header naming the columns.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        let mut t = Table::headless(&columns.iter().map(|(_, a)| *a).collect::<Vec<_>>());
        t.row(columns.iter().map(|(name, _)| *name));
        t
    }

    /// A table without a header line.
    pub fn headless(align: &[Align]) -> Self {
        Table {
            align: align.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row, one cell per column.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table's lines.
    pub fn lines(&self) -> Vec<String> {
        use unicode_width::UnicodeWidthStr;
        let mut widths = vec![0; self.align.len()];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.width());
            }
        }
        let last = self.align.len().saturating_sub(1);
        self.rows
            .iter()
            .map(|row| {
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        line.push_str("  ");
                    }
                    let pad = " ".repeat(widths.get(i).copied().unwrap_or(0) - cell.width());
                    match self.align.get(i) {
                        Some(Align::Right) => {
                            line.push_str(&pad);
                            line.push_str(cell);
                        }
                        _ if i >= last => line.push_str(cell),
                        _ => {
                            line.push_str(cell);
                            line.push_str(&pad);
                        }
                    }
                }
                // An empty last cell leaves no padding behind.
                line.truncate(line.trim_end().len());
                line
            })
            .collect()
    }

    /// Prints the table on stdout.
    pub fn print(&self) -> Result<()> {
        for line in self.lines() {
            outln!("{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_lengths() {
        let mut t = Table::new(&[
            ("source", Align::Left),
            ("seconds", Align::Right),
            ("result", Align::Left),
        ]);
        t.row([
            "postgres://app@db.example.internal:5432/hotel_bookings_production",
            "1.5",
            "ok",
        ]);
        t.row(["prod", "12.0", "FAILED"]);
        t.row(["sqlite:/srv/hôtel.db", "0.1", "ok"]);
        let lines = t.lines();
        let at = |l: &str, what: &str| l[..l.find(what).unwrap()].chars().count();
        let col = at(&lines[0], "result");
        assert_eq!(at(&lines[1], " ok") + 1, col, "{lines:#?}");
        assert_eq!(at(&lines[2], "FAILED"), col, "{lines:#?}");
        assert_eq!(at(&lines[3], " ok") + 1, col, "{lines:#?}");
        assert!(lines[2].contains("prod  ") && lines[2].contains(" 12.0  FAILED"));
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }
}

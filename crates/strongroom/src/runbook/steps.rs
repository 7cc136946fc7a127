//! Pieces every engine's restore section uses: which snapshot a command names, the hooks
//! note, and the commands that check a restored copy.
//!
//! Owns only these shared pieces, so `sections` (SQLite and the page's order) and
//! `postgres` use them without depending on each other. Must not read anything.

use super::{Entry, redact_command, sh_quote};
use crate::repository::snapshot::BackupKind;
use std::fmt::Write;

/// What `latest` named when the page was written: " (snapshot 3fa4c1d2 when this was
/// written)", or nothing when there is no snapshot of `kind`. Commands say `latest` (or a
/// time), never an id: an id printed on paper goes stale with the next backup, and a
/// restore of it would silently bring back old data.
pub(super) fn latest_when_written(e: &Entry, kind: &BackupKind) -> String {
    e.newest(kind)
        .map(|s| format!(" (snapshot {} when this was written)", s.short_id()))
        .unwrap_or_default()
}

/// What the in-place restore does with the source's hooks.
pub(super) fn hooks_note(md: &mut String, e: &Entry) {
    let Some(c) = e.config else { return };
    match (&c.before_restore, &c.after_restore) {
        (None, None) => line!(
            md,
            "No before_restore/after_restore hooks are configured: stop and start the \
             application yourself around the in-place restore."
        ),
        (b, a) => {
            line!(
                md,
                "The in-place restore runs this source's hooks itself (the side copy runs none):"
            );
            line!(md);
            if let Some(b) = b.as_deref().map(redact_command) {
                line!(
                    md,
                    "- before_restore `{b}`: after the copy is checked, before the swap"
                );
            }
            if let Some(a) = a.as_deref().map(redact_command) {
                line!(
                    md,
                    "- after_restore `{a}`: after the swap, also when it failed"
                );
            }
        }
    }
    line!(md);
}

/// Row-count commands for the largest tables of the newest snapshot of `kind`, and the
/// source's configured checks, each line built by `cmd` from SQL.
pub(super) fn row_count_commands(
    md: &mut String,
    e: &Entry,
    kind: &BackupKind,
    cmd: impl Fn(&str) -> String,
) {
    if let Some(s) = e.newest(kind) {
        let mut counts: Vec<(&String, &u64)> = s.metadata.row_counts.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (table, n) in counts.into_iter().take(3) {
            let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
            let expect = if kind == &BackupKind::Physical {
                // Planner statistics at the snapshot; a later recovery point differs.
                format!(
                    "snapshot {} estimated {n} (planner statistics)",
                    s.short_id()
                )
            } else {
                format!("expect {n} (snapshot {})", s.short_id())
            };
            line!(md, "{}   # {expect}", cmd(&sql));
        }
    }
    if let Some(c) = e.config {
        for check in &c.checks {
            line!(md, "{}   # {}: expect 1", cmd(&check.sql), check.name);
        }
    }
    let name = sh_quote(&e.name);
    line!(
        md,
        "strongroom show latest --source {name}   # every table's row count and the schema version"
    );
}

fn quote_ident(t: &str) -> String {
    if t.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        t.to_string()
    } else {
        format!("\"{}\"", t.replace('"', "\"\""))
    }
}

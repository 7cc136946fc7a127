//! Drill reports as people read them: Markdown for one drill (what the CLI prints and
//! `--report FILE` writes) and a table of earlier drills (`drill --history`).
//!
//! Owns the wording and layout only. Must not measure, decide or read anything: every
//! figure comes from a [`DrillReport`] or [`HistoryEntry`].

use super::{DrillReport, HistoryEntry};
use std::fmt::Write;

/// Seconds as people read a duration: `12.3 s`, `4 min 05 s`, `2 h 01 min`, `3 d 04 h`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 10.0 {
        return format!("{s:.2} s");
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s.round() as u64;
    match whole {
        0..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        3600..86_400 => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {:02} h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// `met` or `MISSED`.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// One escaped table cell (no pipes or line breaks).
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report of one drill, as Markdown.
pub fn markdown(r: &DrillReport) -> String {
    let mut o = String::new();
    let when = r.started_at.strftime("%Y-%m-%d %H:%M:%S UTC");
    let _ = writeln!(o, "# Recovery drill: {} ({when})\n", r.source);
    let _ = writeln!(
        o,
        "**Result: {}**{}\n",
        if r.ok { "PASSED" } else { "FAILED" },
        r.error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(
        o,
        "| Snapshot | `{}` ({} {}, finished {}) |",
        crate::repository::snapshot::short_id(&r.snapshot),
        r.engine,
        r.kind,
        r.snapshot_finished_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(o, "| Chosen | {} (seed {}) |", cell(&r.choice), r.seed);
    if let Some(t) = &r.recovery_target {
        let _ = writeln!(o, "| Recovery target | {} |", cell(t));
    }
    let _ = writeln!(o, "| Host | {} |", cell(&r.hostname));
    if let Some(k) = &r.report {
        let _ = writeln!(o, "| Kept as | `{k}` |");
    }
    let _ = writeln!(o, "\n## Objectives\n");
    let _ = writeln!(o, "| | Measured | Objective | |\n|---|---|---|---|");
    let _ = writeln!(
        o,
        "| RTO (time to recover) | {} | {} | {} |",
        duration(r.rto_seconds),
        duration(r.rto_objective_seconds),
        verdict(r.rto_met)
    );
    let _ = writeln!(
        o,
        "| RPO (data at risk now) | {} | {} | {} |",
        duration(r.rpo_seconds),
        duration(r.rpo_objective_seconds),
        verdict(r.rpo_met)
    );
    let _ = writeln!(o, "\nRPO measured from {}.", r.rpo_basis);
    if !r.rpo_met {
        let _ = writeln!(
            o,
            "\nThe RPO objective is missed: a failure now would lose {} of changes, more than the {} allowed. Check that backups (and WAL archiving) are running.",
            duration(r.rpo_seconds),
            duration(r.rpo_objective_seconds)
        );
    }
    if !r.rto_met {
        let _ = writeln!(
            o,
            "\nThe RTO objective is missed: this recovery took {}, more than the {} allowed.",
            duration(r.rto_seconds),
            duration(r.rto_objective_seconds)
        );
    }
    let _ = writeln!(o, "\n## Phases\n\n| Phase | Time |\n|---|---|");
    for p in &r.phases {
        let _ = writeln!(o, "| {} | {} |", p.name, duration(p.seconds));
    }
    let _ = writeln!(o, "| **total (RTO)** | **{}** |", duration(r.rto_seconds));
    let _ = writeln!(
        o,
        "\n## Checks\n\n| Check | Result | Detail |\n|---|---|---|"
    );
    for c in &r.checks {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            cell(&c.name),
            if c.ok { "ok" } else { "FAILED" },
            cell(&c.detail)
        );
    }
    o
}

/// Earlier drills as a table, oldest first.
pub fn history_table(entries: &[HistoryEntry]) -> String {
    let mut o = String::new();
    if entries.is_empty() {
        o.push_str("No drills yet: run `strongroom drill`.\n");
        return o;
    }
    let _ = writeln!(
        o,
        "| Date | Source | Snapshot | RTO / objective | RPO / objective | Result |\n|---|---|---|---|---|---|"
    );
    let pair = |v: Option<f64>, obj: Option<f64>| match (v, obj) {
        (Some(v), Some(obj)) => format!(
            "{} / {}{}",
            duration(v),
            duration(obj),
            if v > obj { " MISSED" } else { "" }
        ),
        _ => "-".into(),
    };
    for e in entries {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            e.finished_at.strftime("%Y-%m-%d %H:%M"),
            cell(e.source.as_deref().unwrap_or("-")),
            e.snapshot
                .as_deref()
                .map(crate::repository::snapshot::short_id)
                .unwrap_or("-"),
            pair(e.rto_seconds, e.rto_objective_seconds),
            pair(e.rpo_seconds, e.rpo_objective_seconds),
            if e.ok { "ok" } else { "FAILED" }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(7260.0), "2 h 01 min");
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 04 h");
        assert_eq!(duration(-1.0), "0.00 s");
        assert_eq!(duration(1.234), "1.23 s");
    }

    #[test]
    fn a_missed_objective_is_said_in_the_history() {
        let e = HistoryEntry {
            finished_at: "2026-12-01T10:00:00Z".parse().unwrap(),
            source: Some("hotel".into()),
            snapshot: Some("0123456789".into()),
            ok: true,
            rto_seconds: Some(3.0),
            rto_objective_seconds: Some(3600.0),
            rpo_seconds: Some(7300.0),
            rpo_objective_seconds: Some(900.0),
            report: None,
            error: None,
        };
        let t = history_table(&[e]);
        assert!(t.contains("| 2026-12-01 10:00 | hotel | 01234567 |"), "{t}");
        assert!(t.contains("2 h 01 min / 15 min 00 s MISSED"), "{t}");
        assert!(t.contains("3.00 s / 1 h 00 min |"), "{t}");
    }
}

//! What a test restore checks, and how its findings read.
//!
//! Owns the outcome of one check ([`CheckOutcome`], the `checks` of `verify --json`), the
//! comparison of row counts captured at backup time with those found after a restore, and
//! the rule every engine applies to the single value a configured SQL check returns.
//! Must not run queries: each engine runs its own and hands the values here.

use serde::Serialize;
use std::collections::BTreeMap;

/// One check's outcome, as `verify --json` prints it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct CheckOutcome {
    /// Check name.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// Compares captured row counts with counts found after a restore.
pub fn compare_row_counts(
    expected: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
) -> CheckOutcome {
    let mut diffs = Vec::new();
    for (t, n) in expected {
        match found.get(t) {
            Some(m) if m == n => {}
            Some(m) => diffs.push(format!("{t}: expected {n}, found {m}")),
            None => diffs.push(format!("{t}: table missing")),
        }
    }
    for t in found.keys().filter(|t| !expected.contains_key(*t)) {
        diffs.push(format!("{t}: unexpected table"));
    }
    let total: u64 = found.values().sum();
    CheckOutcome {
        name: "row counts".into(),
        ok: diffs.is_empty(),
        detail: if diffs.is_empty() {
            format!(
                "{} table{}, {total} row{}, all as captured",
                found.len(),
                if found.len() == 1 { "" } else { "s" },
                if total == 1 { "" } else { "s" }
            )
        } else {
            diffs.join("; ")
        },
    }
}

/// Whether the text of a check's single value counts as passing: anything but NULL, an
/// empty string, `0`, `f`, `false` or `no` (any case). Engines map their own value types
/// onto this text.
pub fn truthy_text(value: Option<&str>) -> bool {
    value.is_some_and(|t| {
        !matches!(
            t.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "f" | "false" | "no"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness() {
        for (v, want) in [
            (Some("1"), true),
            (Some("t"), true),
            (Some("0"), false),
            (Some(" FALSE "), false),
            (Some("no"), false),
            (Some(""), false),
            (None, false),
            (Some("0.5"), true),
        ] {
            assert_eq!(truthy_text(v), want, "{v:?}");
        }
    }

    #[test]
    fn row_count_differences_are_named() {
        let exp: BTreeMap<String, u64> = [("a".into(), 3), ("b".into(), 1)].into();
        let found: BTreeMap<String, u64> = [("a".into(), 2), ("c".into(), 0)].into();
        let r = compare_row_counts(&exp, &found);
        assert!(!r.ok);
        assert_eq!(
            r.detail,
            "a: expected 3, found 2; b: table missing; c: unexpected table"
        );
        assert!(compare_row_counts(&exp, &exp).ok);
    }

    #[test]
    fn row_count_summary_counts_in_words() {
        let one: BTreeMap<String, u64> = [("a".into(), 1)].into();
        assert_eq!(
            compare_row_counts(&one, &one).detail,
            "1 table, 1 row, all as captured"
        );
        assert_eq!(
            compare_row_counts(&BTreeMap::new(), &BTreeMap::new()).detail,
            "0 tables, 0 rows, all as captured"
        );
    }
}

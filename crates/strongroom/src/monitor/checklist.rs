//! The strategy's backup checklist (daily, weekly, monthly, quarterly), ticked from evidence.
//!
//! Owns which checks stand behind which item. An item is done when every check it rests on
//! is ok; no item can be ticked by hand. Items the strategy lists that no evidence can show
//! ("review and update the backup strategy", "audit security settings", "update DR
//! documentation") are left to people, and not listed. Must not judge anything itself.

use super::{Check, ChecklistItem, Level};

/// (period, the strategy's words, checks it rests on: exact names, or prefixes ending in `.`)
const ITEMS: &[(&str, &str, &[&str])] = &[
    (
        "daily",
        "Verify automated backup completed",
        &["backup.", "backup"],
    ),
    (
        "daily",
        "Check backup file size is reasonable",
        &["size.", "anomaly.size.", "anomaly.rows."],
    ),
    (
        "daily",
        "Confirm the backup reached the repository (and WAL archiving works)",
        &["wal.", "jobs"],
    ),
    ("weekly", "Test restore from latest backup", &["verify"]),
    (
        "weekly",
        "Review backup logs for errors",
        &["jobs", "anomaly.duration."],
    ),
    (
        "weekly",
        "Verify retention policy is working",
        &["retention"],
    ),
    ("monthly", "Repository integrity check", &["check"]),
    ("quarterly", "Disaster recovery drill", &["drill"]),
    (
        "quarterly",
        "Review and test recovery time objectives",
        &["drill.rto", "drill"],
    ),
];

fn rests_on(pattern: &str, check: &str) -> bool {
    if pattern.ends_with('.') {
        check.starts_with(pattern)
    } else {
        check == pattern
    }
}

/// The checklist for one source's checks. An item with no check to rest on (a drill turned
/// off for a development database) does not apply, and is left out.
pub fn items(checks: &[Check]) -> Vec<ChecklistItem> {
    ITEMS
        .iter()
        .filter_map(|(period, item, patterns)| {
            let evidence: Vec<&Check> = checks
                .iter()
                .filter(|c| patterns.iter().any(|p| rests_on(p, &c.name)))
                .collect();
            (!evidence.is_empty()).then(|| ChecklistItem {
                period,
                item,
                done: evidence.iter().all(|c| c.level == Level::Ok),
                evidence: evidence.iter().map(|c| c.name.clone()).collect(),
            })
        })
        .collect()
}

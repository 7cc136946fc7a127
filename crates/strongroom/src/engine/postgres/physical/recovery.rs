//! How a restored data directory recovers: `recovery.signal` (never `recovery.conf`, gone
//! since PostgreSQL 12) and the settings appended to `postgresql.auto.conf`:
//! `restore_command` naming strongroom by absolute path and holding no secret, the recovery
//! target with `recovery_target_action = 'promote'`, and the timeline to follow.
//!
//! Owns those settings and the choice of timeline. Must not write the cluster's files, and
//! writes its own two through [`super::beneath`]: a link the snapshot stores at either name
//! is replaced by a file, never read or written through (it could point at any file of the
//! host, and the restore runs as root).

use super::beneath::Beneath;
use super::{BACKUP_LABEL, wal_included};
use crate::engine::RecoveryTarget;
use crate::engine::postgres::cluster::Lsn;
use crate::engine::postgres::wal;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::snapshot::Snapshot;
use std::path::Path;

/// The recovery settings strongroom writes, one per line.
pub fn recovery_settings(
    recovery: &RecoveryTarget,
    program: &Path,
    timeline: Option<u32>,
) -> Vec<(String, String)> {
    let mut out = vec![(
        "restore_command".to_string(),
        format!("{} wal fetch %f %p", program.display()),
    )];
    let target = match recovery {
        RecoveryTarget::Latest => None,
        RecoveryTarget::Immediate => Some(("recovery_target", "immediate".to_string())),
        // PostgreSQL wants a numeric offset here: it refuses `Z` at start-up.
        RecoveryTarget::Time(t) => Some((
            "recovery_target_time",
            t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )),
        RecoveryTarget::Lsn(l) => Some(("recovery_target_lsn", l.clone())),
        RecoveryTarget::Xid(x) => Some(("recovery_target_xid", x.to_string())),
        RecoveryTarget::Name(n) => Some(("recovery_target_name", n.clone())),
    };
    if let Some((k, v)) = target {
        out.push((k.to_string(), v));
        out.push(("recovery_target_action".into(), "promote".into()));
    }
    out.push((
        "recovery_target_timeline".into(),
        timeline.map_or_else(|| "latest".to_string(), |t| t.to_string()),
    ));
    out
}

/// The timeline recovery follows: the newest archived timeline that descends from the
/// snapshot's position (its history names the snapshot's timeline with a switch point after
/// the snapshot's start), else the snapshot's own. PostgreSQL's `latest` would take the
/// newest timeline of all, and a restored copy that was promoted and archived into this
/// repository (a drill, say) forks a timeline the primary never took: recovery from a later
/// snapshot of the primary then stops with "requested timeline is not a child of this
/// server's history". `None` when the snapshot carries its own WAL (no archive to follow).
pub(super) fn timeline_for(repo: &Repository, snap: &Snapshot) -> Result<Option<u32>> {
    if wal_included(snap) {
        return Ok(None);
    }
    let needs = wal::needs_of(std::slice::from_ref(snap));
    let Some(need) = needs.first() else {
        return Ok(None);
    };
    let archive = crate::repository::archive::Archive::new(repo, &need.cluster);
    let mut best = need.timeline;
    for l in archive.list()? {
        let Some(name) = wal::WalName::parse(&l.name) else {
            continue;
        };
        if name.kind != wal::WalKind::History || name.timeline <= best {
            continue;
        }
        let text = archive.get(&l.timeline, &l.name)?;
        if descends(&String::from_utf8_lossy(&text), need.timeline, need.start) {
            best = name.timeline;
        }
    }
    Ok(Some(best))
}

/// Whether a timeline whose history file reads `history` passes through timeline `tli` at
/// `at`: the line for `tli` switches away after `at`.
fn descends(history: &str, tli: u32, at: Lsn) -> bool {
    history.lines().any(|line| {
        let mut f = line.split_whitespace();
        matches!(
            (f.next().and_then(|t| t.parse::<u32>().ok()), f.next().and_then(Lsn::parse)),
            (Some(t), Some(switch)) if t == tli && switch > at
        )
    })
}

/// Quotes a value for postgresql.conf.
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// Writes `recovery.signal` and the recovery settings into `postgresql.auto.conf`, replacing
/// any recovery settings the cluster had (a snapshot of a restored cluster carries its own).
/// Both are written as new files renamed into place below `root`.
pub(super) fn write_recovery(
    snap: &Snapshot,
    root: &Beneath,
    recovery: &RecoveryTarget,
    timeline: Option<u32>,
) -> Result<()> {
    let program = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find strongroom's own path: {e}")))?;
    let program = std::fs::canonicalize(&program).unwrap_or(program);
    const AUTO: &str = "postgresql.auto.conf";
    let old = match root.kind(AUTO)? {
        Some(rustix::fs::FileType::RegularFile) => {
            let mut text = String::new();
            if let Some(mut f) = root.open_file(AUTO)? {
                std::io::Read::read_to_string(&mut f, &mut text)
                    .map_err(|e| Error::io("reading", root.path().join(AUTO), e))?;
            }
            text
        }
        None => String::new(),
        Some(_) => {
            tracing::warn!(
                "snapshot {} stores {AUTO} as something other than a file; the restore replaces it with a file holding only the recovery settings",
                snap.short_id()
            );
            String::new()
        }
    };
    let mut text: String = old
        .lines()
        .filter(|l| {
            let key = l.trim_start().split(['=', ' ', '\t']).next().unwrap_or("");
            !(key == "restore_command" || key.starts_with("recovery_target"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!(
        "# Recovery settings written by strongroom, restoring snapshot {}\n",
        snap.short_id()
    ));
    for (k, v) in recovery_settings(recovery, &program, timeline) {
        text.push_str(&format!("{k} = {}\n", conf_quote(&v)));
    }
    root.replace_file(AUTO, text.as_bytes(), 0o600)?;
    root.replace_file("recovery.signal", b"", 0o600)?;
    if root.kind(BACKUP_LABEL)? != Some(rustix::fs::FileType::RegularFile) {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its backup_label",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_descends_from_a_position_only_when_it_forked_after_it() {
        // Timeline 3 forked from 2 at 0/9000000, which forked from 1 at 0/6000000.
        let history =
            "1\t0/6000000\tno recovery target specified\n\n2\t0/9000000\tafter transaction 750\n";
        let at = |s| Lsn::parse(s).unwrap();
        assert!(
            descends(history, 1, at("0/5000028")),
            "forked after the snapshot"
        );
        assert!(!descends(history, 1, at("0/7000028")), "forked before it");
        assert!(descends(history, 2, at("0/8000000")));
        assert!(!descends(history, 4, at("0/1000000")), "not in its history");
        assert!(!descends("garbage\n", 1, at("0/1")));
    }

    #[test]
    fn recovery_settings_name_the_target_promote_and_hold_no_secret() {
        let t: jiff::Timestamp = "2026-12-01T22:59:00.5Z".parse().unwrap();
        let s = recovery_settings(
            &RecoveryTarget::Time(t),
            Path::new("/usr/local/bin/strongroom"),
            Some(2),
        );
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("restore_command"),
            Some("/usr/local/bin/strongroom wal fetch %f %p")
        );
        assert_eq!(
            get("recovery_target_time"),
            Some("2026-12-01 22:59:00.500000+00"),
            "a numeric offset: PostgreSQL refuses Z"
        );
        assert_eq!(get("recovery_target_action"), Some("promote"));
        assert_eq!(get("recovery_target_timeline"), Some("2"));
        let latest = recovery_settings(&RecoveryTarget::Latest, Path::new("/x"), None);
        assert!(
            latest
                .iter()
                .all(|(k, _)| !k.starts_with("recovery_target_action"))
        );
        assert!(
            latest
                .iter()
                .any(|(k, v)| k == "recovery_target_timeline" && v == "latest")
        );
    }
}

//! How a restored data directory recovers: `recovery.signal` (never `recovery.conf`, gone
//! since PostgreSQL 12) and the settings appended to `postgresql.auto.conf`:
//! `restore_command` naming strongroom by absolute path and holding no secret, the recovery
//! target with `recovery_target_action = 'promote'`, and the timeline to follow.
//!
//! Owns those settings, what the source's timeline is taken to be for a restore (its server,
//! its origin records, the snapshot), whether the restored copy archives (only in the
//! source's own data directory, or when asked), and the minimal configuration a copy gets
//! when its cluster kept its own elsewhere (Debian's `/etc/postgresql`). The choice among timelines is
//! [`crate::engine::postgres::timeline`]'s. Must not write the cluster's files, and
//! writes its own two through [`crate::beneath`]: a link the snapshot stores at either name
//! is replaced by a file, never read or written through (it could point at any file of the
//! host, and the restore runs as root).

use super::{BACKUP_LABEL, PhysicalMetadata};
use crate::beneath::Beneath;
use crate::engine::RecoveryTarget;
use crate::engine::postgres::timeline::{
    self, ArchiveView, Chosen, Found, SourceTimeline, TimelineRequest,
};
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

/// The timeline recovery of `snap` follows to `recovery` ([`timeline::choose`]): the one
/// `request` names, else the one the source is on: its server's (asked at `source_url` when
/// given and reachable, and only when it is the snapshot's cluster), else the newest its
/// own data directory pushed to, else the snapshot's own. PostgreSQL's `latest` would take
/// the newest timeline of all, and a restored copy that was promoted and archived into this
/// repository forks a timeline the source never took. `None` when the snapshot carries its
/// own WAL (no archive to follow). Refuses, before anything is written, a target the chosen
/// timeline cannot reach.
pub(super) fn timeline_for(
    repo: &Repository,
    snap: &Snapshot,
    recovery: &RecoveryTarget,
    request: TimelineRequest,
    source_url: Option<&str>,
) -> Result<Option<Chosen>> {
    if PhysicalMetadata::of(snap).wal_included {
        return Ok(None);
    }
    let needs = wal::needs_of(std::slice::from_ref(snap));
    let Some(need) = needs.first() else {
        return Ok(None);
    };
    let view = ArchiveView::read(repo, &need.cluster, need.segment_size)?;
    let source = source_timeline(
        &view,
        snap,
        &need.cluster,
        need.timeline,
        request,
        source_url,
    );
    timeline::choose(
        &view,
        snap.short_id(),
        (need.timeline, need.start),
        recovery,
        request,
        &source,
    )
    .map(Some)
}

/// The timeline the source of `snap` is on (see [`timeline_for`]); the server is asked only
/// when the choice is the default one.
fn source_timeline(
    view: &ArchiveView,
    snap: &Snapshot,
    cluster: &str,
    own: u32,
    request: TimelineRequest,
    source_url: Option<&str>,
) -> SourceTimeline {
    let server = source_url
        .filter(|_| request == TimelineRequest::Source)
        .and_then(|u| timeline::server_timeline(u, cluster));
    let otherwise = SourceTimeline {
        id: own,
        how: Found::Snapshot,
    };
    timeline::source_timeline(view, server, Some(snap), otherwise)
}

/// Whether `target` is the source's own data directory, recorded at backup, on the host
/// that took the backup: a restore there is the real recovery and keeps archiving.
pub fn is_source_dir(snap: &Snapshot, target: &Path) -> bool {
    let recorded = PhysicalMetadata::of(snap).data_directory;
    recorded.is_some_and(|d| {
        snap.hostname == crate::hostname() && timeline::same_dir(&d, &target.to_string_lossy())
    })
}

/// Quotes a value for postgresql.conf.
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// Writes `recovery.signal` and the recovery settings into `postgresql.auto.conf`, replacing
/// any recovery settings the cluster had (a snapshot of a restored cluster carries its own),
/// and `archive_mode = 'off'` unless `archive`.
/// Both are written as new files renamed into place below `root`.
pub(super) fn write_recovery(
    snap: &Snapshot,
    root: &Beneath,
    recovery: &RecoveryTarget,
    timeline: Option<u32>,
    archive: bool,
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
    if !archive {
        text.push_str(
            "# Not the source's own data directory: this copy must never archive into the source's\n\
             # repository (its promotion forks a timeline there). `restore --archive` keeps archiving.\n\
             archive_mode = 'off'\n",
        );
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

/// The `postgresql.conf` a copy of a cluster that kept its configuration elsewhere gets
/// (restore and export).
pub(super) const MINIMAL_CONF: &[u8] =
    b"# Written by strongroom (restore or export): the cluster backed up kept its configuration
      # outside its data directory (Debian: /etc/postgresql/<version>/<cluster>/), and a copy must
      # not use that one (its data_directory is the source's). This copy runs with PostgreSQL's
      # defaults and postgresql.auto.conf; add settings here.
";

/// The `pg_hba.conf` such a copy gets when the snapshot holds none: this host only.
pub(super) const HOST_ONLY_HBA: &[u8] =
    b"# Written by strongroom (restore or export; the cluster backed up kept its pg_hba.conf
      # elsewhere): this host only, as Debian's defaults: the role's own system user over the
      # socket, a password over loopback.
      local   all   all                  peer
      host    all   all   127.0.0.1/32   scram-sha-256
      host    all   all   ::1/128        scram-sha-256
";

/// What a side copy of a cluster that kept its configuration elsewhere gets, so that it
/// starts with `pg_ctl -D` (as `restore --start`, `verify` and `drill` start it): a
/// `postgresql.conf` saying why it is nearly empty (PostgreSQL's defaults, the snapshot's
/// `postgresql.auto.conf` and the recovery settings apply), and a `pg_hba.conf` that lets in
/// only this host (Debian's default rules), when the snapshot holds neither. Never the
/// source's own configuration: Debian's names the production data directory
/// (`data_directory`), and a copy started with it would start on production's files. The
/// source's own data directory gets nothing: its service starts it with its configuration.
/// Returns the note the restore prints, when it wrote anything.
pub(super) fn write_missing_config(snap: &Snapshot, root: &Beneath) -> Result<Option<String>> {
    if !super::config_elsewhere(snap) || root.kind("postgresql.conf")?.is_some() {
        return Ok(None);
    }
    root.replace_file("postgresql.conf", MINIMAL_CONF, 0o600)?;
    if root.kind("pg_hba.conf")?.is_none() {
        root.replace_file("pg_hba.conf", HOST_ONLY_HBA, 0o600)?;
    }
    Ok(Some(format!(
        "snapshot {} holds no postgresql.conf (its cluster kept its configuration elsewhere, as Debian does in /etc/postgresql): the copy gets a minimal one and a pg_hba.conf for this host only, so it starts with PostgreSQL's defaults",
        snap.short_id()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

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

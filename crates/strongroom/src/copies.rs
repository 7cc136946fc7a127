//! Copies of a repository (`[[copies]]`, `strongroom copy`): how far one stands behind its
//! primary.
//!
//! Owns comparing a copy with its primary from what each holds: the newest snapshot of
//! each, the snapshots the copy lacks, and per cluster the newest archived WAL segment of
//! each and the archived files the copy lacks. `status` and the runbook read it to say how
//! far behind a copy is (its lag against the RPO). Must not change either repository
//! (`jobs::copy` moves objects) and must not judge: the thresholds are `monitor`'s.

use crate::engine::postgres::wal::{WalKind, WalName};
use crate::error::Result;
use crate::repository::Repository;
use crate::repository::layout::ObjectKind;
use crate::repository::snapshot::Snapshot;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// A snapshot as a standing names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotMark {
    /// Its id.
    pub id: String,
    /// When it finished.
    pub finished_at: jiff::Timestamp,
}

/// One cluster's archived WAL in the primary and the copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalStanding {
    /// The cluster's system identifier.
    pub cluster: String,
    /// The newest complete segment the primary holds (highest timeline, then position).
    pub primary_newest: Option<String>,
    /// The newest complete segment the copy holds.
    pub copy_newest: Option<String>,
    /// Archived files (segments, history files, …) of the primary the copy lacks.
    pub files_missing: usize,
}

/// How a copy stands against its primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// The primary's newest snapshot (by `finished_at`).
    pub primary_newest: Option<SnapshotMark>,
    /// The copy's newest snapshot.
    pub copy_newest: Option<SnapshotMark>,
    /// Snapshots of the primary the copy lacks and did not forget itself (its own retention
    /// removes what it does not keep: those are not behind, `repository::forgotten`).
    pub snapshots_missing: usize,
    /// Per cluster with archived WAL in either.
    pub wal: Vec<WalStanding>,
}

/// Compares `copy` with `primary`: one listing of each one's snapshots and WAL, and the
/// manifests of both (readable ones; a damaged manifest is `check`'s to name).
pub fn standing(primary: &Repository, copy: &Repository) -> Result<Standing> {
    let (primary_snaps, _) = primary.snapshots_lenient()?;
    let (copy_snaps, _) = copy.snapshots_lenient()?;
    let forgotten = copy.forgotten()?;
    let held: HashSet<&str> = copy_snaps
        .iter()
        .map(|s| s.id.as_str())
        .chain(forgotten.iter().map(String::as_str))
        .collect();
    let newest = |snaps: &[Snapshot]| {
        snaps
            .iter()
            .max_by_key(|s| s.finished_at)
            .map(|s| SnapshotMark {
                id: s.id.clone(),
                finished_at: s.finished_at,
            })
    };
    let primary_wal = wal_by_cluster(primary)?;
    let copy_wal = wal_by_cluster(copy)?;
    let clusters: std::collections::BTreeSet<&String> =
        primary_wal.keys().chain(copy_wal.keys()).collect();
    let empty = Vec::new();
    let wal = clusters
        .into_iter()
        .map(|c| {
            let p = primary_wal.get(c).unwrap_or(&empty);
            let k = copy_wal.get(c).unwrap_or(&empty);
            let in_copy: HashSet<&String> = k.iter().collect();
            WalStanding {
                cluster: c.clone(),
                primary_newest: newest_segment(p),
                copy_newest: newest_segment(k),
                files_missing: p.iter().filter(|f| !in_copy.contains(f)).count(),
            }
        })
        .collect();
    Ok(Standing {
        primary_newest: newest(&primary_snaps),
        copy_newest: newest(&copy_snaps),
        snapshots_missing: primary_snaps
            .iter()
            .filter(|s| !held.contains(s.id.as_str()))
            .count(),
        wal,
    })
}

/// Every archived file of `repo` by cluster, as `<timeline>/<name>`.
fn wal_by_cluster(repo: &Repository) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in repo.storage().list(ObjectKind::Wal.folder())? {
        let Some(rest) = ObjectKind::Wal.name_of(&o.key) else {
            continue;
        };
        if let Some((cluster, file)) = rest.split_once('/') {
            out.entry(cluster.to_string())
                .or_default()
                .push(file.to_string());
        }
    }
    Ok(out)
}

/// The newest complete segment among `<timeline>/<name>` files: highest timeline, then
/// position.
fn newest_segment(files: &[String]) -> Option<String> {
    files
        .iter()
        .filter_map(|f| WalName::parse(f.rsplit('/').next()?))
        .filter(|w| w.kind == WalKind::Segment)
        .max_by_key(|w| (w.timeline, w.position))
        .map(|w| w.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use crate::repository::archive::Archive;
    use crate::repository::writer::tests::{memory_repo, pages, snapshot_of, store_pages};
    use crate::storage::Storage;

    #[test]
    fn a_copy_stands_behind_by_what_it_lacks() {
        let primary = memory_repo();
        let copy = Repository::init_copy(
            Storage::from_url("memory://").unwrap(),
            Some(b"x"),
            KdfParams {
                m_kib: 1024,
                t: 1,
                p: 1,
            },
            &primary,
        )
        .unwrap();
        let empty = standing(&primary, &copy).unwrap();
        assert_eq!(empty.primary_newest, None);
        assert!(empty.wal.is_empty());

        let (f, _) = store_pages(&primary, &pages(10, 1));
        let s = snapshot_of(&primary, vec![f]);
        let a = Archive::new(&primary, "73");
        for n in ["000000010000000000000001", "000000010000000000000002"] {
            a.put("00000001", n, n.as_bytes(), 1).unwrap();
        }
        a.put("00000002", "00000002.history", b"1\t0/2000000\tno", 1)
            .unwrap();
        // The copy holds the first segment only.
        let key = a.object_key("00000001", "000000010000000000000001");
        copy.storage()
            .put(&key, &primary.storage().get(&key).unwrap())
            .unwrap();
        let st = standing(&primary, &copy).unwrap();
        assert_eq!(st.primary_newest.unwrap().id, s.id);
        assert_eq!(st.copy_newest, None);
        assert_eq!(st.snapshots_missing, 1);
        assert_eq!(
            st.wal,
            vec![WalStanding {
                cluster: "73".into(),
                primary_newest: Some("000000010000000000000002".into()),
                copy_newest: Some("000000010000000000000001".into()),
                files_missing: 2,
            }]
        );
    }
}

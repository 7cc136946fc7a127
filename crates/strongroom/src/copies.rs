//! Copies of a repository (`[[copies]]`, `strongroom copy`): how far one stands behind its
//! primary.
//!
//! Owns comparing a copy with its primary from what each holds: the newest snapshot of
//! each, the snapshots the copy lacks, and per cluster the newest archived WAL segment of
//! each and the archived files the copy lacks; per source, since when the copy lacks a
//! recovery point the primary has (its lag). `status`, `metrics` and the runbook read it.
//! The primary is read once ([`Primary`]) for any number of copies. Also whether a
//! repository may be a copy of another at all ([`check_family`]). Must not change either
//! repository (`jobs::copy` moves objects) and must not judge: the thresholds are
//! `monitor`'s.

use crate::engine::postgres::wal::{WalKind, WalName};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::layout::ObjectKind;
use crate::repository::snapshot::Snapshot;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// A snapshot as a standing names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotMark {
    /// Its id.
    pub id: String,
    /// Its source as recorded (a config name or a URL identity).
    pub source: String,
    /// The location recorded beside a config name, when there is one.
    pub source_location: Option<String>,
    /// Its kind (`full`, `logical`, `physical`).
    pub kind: String,
    /// When it finished.
    pub finished_at: jiff::Timestamp,
}

impl SnapshotMark {
    fn of(s: &Snapshot) -> Self {
        SnapshotMark {
            id: s.id.clone(),
            source: s.source.clone(),
            source_location: s.source_location.clone(),
            kind: s.kind.to_string(),
            finished_at: s.finished_at,
        }
    }
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
    /// Archived files (segments, history files, …) of the primary the copy lacks. Some may
    /// be older than the copy needs: its own prune removes WAL its own snapshots no longer
    /// need.
    pub files_missing: usize,
    /// Segments of the primary past the copy's newest (every segment, when the copy holds
    /// none of the cluster).
    pub segments_behind: usize,
    /// When the oldest of those was stored in the primary: since then the copy lacks WAL the
    /// primary has. `None` when it lacks none.
    pub behind_since: Option<jiff::Timestamp>,
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
    /// The copy's readable snapshots.
    #[serde(skip)]
    pub held: Vec<SnapshotMark>,
    /// The primary's snapshots the copy lacks and did not forget.
    #[serde(skip)]
    pub missing: Vec<SnapshotMark>,
    /// The primary's readable snapshots.
    #[serde(skip)]
    pub primary: Vec<SnapshotMark>,
}

/// How a copy stands for one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceStanding {
    /// The primary's newest snapshot of the source.
    pub primary_newest: Option<SnapshotMark>,
    /// The copy's newest snapshot of the source.
    pub copy_newest: Option<SnapshotMark>,
    /// Snapshots of the source the copy lacks (and did not forget).
    pub snapshots_missing: usize,
    /// Per kind the copy is behind on: when the oldest snapshot of that kind finished that
    /// is newer than the copy's newest of the kind (any, when it holds none). Since then the
    /// copy lacks a recovery point the primary has.
    pub behind: BTreeMap<String, jiff::Timestamp>,
    /// The WAL of the source's cluster, when it has one.
    pub wal: Option<WalStanding>,
}

impl SourceStanding {
    /// Since when the copy lacks something the primary has for this source: the earliest
    /// of [`SourceStanding::behind`] and the WAL's `behind_since`. `None` when it is level.
    pub fn behind_since(&self) -> Option<jiff::Timestamp> {
        self.behind
            .values()
            .copied()
            .chain(self.wal.as_ref().and_then(|w| w.behind_since))
            .min()
    }

    /// How long the copy has trailed the primary at `now`: zero when it holds the
    /// primary's newest snapshots and WAL.
    pub fn lag(&self, now: jiff::Timestamp) -> std::time::Duration {
        self.behind_since().map_or(std::time::Duration::ZERO, |t| {
            std::time::Duration::from_secs_f64(
                (now - t).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0),
            )
        })
    }
}

impl Standing {
    /// The standing of one source: its snapshots are those `belongs` says are its, its WAL
    /// that of `cluster` (the cluster its newest physical snapshot belongs to).
    pub fn of_source(
        &self,
        belongs: impl Fn(&SnapshotMark) -> bool,
        cluster: Option<&str>,
    ) -> SourceStanding {
        let held: Vec<&SnapshotMark> = self.held.iter().filter(|m| belongs(m)).collect();
        let missing: Vec<&SnapshotMark> = self.missing.iter().filter(|m| belongs(m)).collect();
        let newest_held = |kind: &str| {
            held.iter()
                .filter(|m| m.kind == kind)
                .map(|m| m.finished_at)
                .max()
        };
        let mut behind: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
        for m in &missing {
            if newest_held(&m.kind).is_some_and(|h| m.finished_at <= h) {
                continue;
            }
            let since = behind.entry(m.kind.clone()).or_insert(m.finished_at);
            *since = (*since).min(m.finished_at);
        }
        let newest = |marks: &[&SnapshotMark]| {
            marks
                .iter()
                .max_by_key(|m| m.finished_at)
                .map(|m| (*m).clone())
        };
        let primary: Vec<&SnapshotMark> = self.primary.iter().filter(|m| belongs(m)).collect();
        SourceStanding {
            primary_newest: newest(&primary),
            copy_newest: newest(&held),
            snapshots_missing: missing.len(),
            behind,
            wal: cluster.and_then(|c| self.wal.iter().find(|w| w.cluster == c).cloned()),
        }
    }
}

/// Whether `dest` may take `source`'s objects as they are: the same family (one was made
/// from the other with `init --copy-of`, or both from a third) and the same keys.
pub fn check_family(source: &Repository, dest: &Repository) -> Result<()> {
    if source.config().id == dest.config().id {
        return Err(Error::Config(format!(
            "{} and {} are the same repository: give another destination",
            source.storage().url(),
            dest.storage().url()
        )));
    }
    if source.config().family() != dest.config().family() || !source.key().same_as(dest.key()) {
        return Err(Error::NotACopy {
            destination: dest.storage().url().to_string(),
            source_url: source.storage().url().to_string(),
        });
    }
    Ok(())
}

/// A copy as sentences name it: `offsite (s3://bucket/copy)`, or the URL alone when the
/// copy is named by it.
pub fn label(name: &str, repository: &str) -> String {
    if name == repository {
        name.to_string()
    } else {
        format!("{name} ({repository})")
    }
}

/// One archived file: `<timeline>/<name>` and when the store says it was written.
#[derive(Clone, Debug)]
struct Archived {
    file: String,
    modified: Option<jiff::Timestamp>,
}

/// What the primary holds, read once to compare any number of copies with it.
#[derive(Clone, Debug)]
pub struct Primary {
    snapshots: Vec<SnapshotMark>,
    wal: BTreeMap<String, Vec<Archived>>,
}

impl Primary {
    /// Reads `repo`'s snapshots (readable manifests) and WAL listing.
    pub fn read(repo: &Repository) -> Result<Primary> {
        let (snapshots, _) = repo.snapshot_headers()?;
        Primary::with_snapshots(repo, &snapshots)
    }

    /// The primary `repo` with `snapshots` already read from it: lists only its WAL.
    pub fn with_snapshots(repo: &Repository, snapshots: &[Snapshot]) -> Result<Primary> {
        Ok(Primary {
            snapshots: snapshots.iter().map(SnapshotMark::of).collect(),
            wal: wal_by_cluster(repo)?,
        })
    }

    /// Compares `copy` with this primary: one listing of the copy's snapshots and WAL, and
    /// its manifests (readable ones; a damaged manifest is `check`'s to name).
    pub fn standing_of(&self, copy: &Repository) -> Result<Standing> {
        let (copy_snaps, _) = copy.snapshot_headers()?;
        let forgotten = copy.forgotten()?;
        let held: Vec<SnapshotMark> = copy_snaps.iter().map(SnapshotMark::of).collect();
        let there: HashSet<&str> = held
            .iter()
            .map(|s| s.id.as_str())
            .chain(forgotten.iter().map(String::as_str))
            .collect();
        let missing: Vec<SnapshotMark> = self
            .snapshots
            .iter()
            .filter(|s| !there.contains(s.id.as_str()))
            .cloned()
            .collect();
        let newest = |snaps: &[SnapshotMark]| snaps.iter().max_by_key(|s| s.finished_at).cloned();
        let copy_wal = wal_by_cluster(copy)?;
        let clusters: BTreeSet<&String> = self.wal.keys().chain(copy_wal.keys()).collect();
        let empty = Vec::new();
        let wal = clusters
            .into_iter()
            .map(|c| {
                let p = self.wal.get(c).unwrap_or(&empty);
                let k = copy_wal.get(c).unwrap_or(&empty);
                let in_copy: HashSet<&str> = k.iter().map(|a| a.file.as_str()).collect();
                let copy_newest = newest_segment(k);
                let past = |a: &&Archived| match (&copy_newest, segment(&a.file)) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(n), Some(w)) => (w.timeline, w.position) > (n.timeline, n.position),
                };
                let behind: Vec<&Archived> = p.iter().filter(past).collect();
                WalStanding {
                    cluster: c.clone(),
                    primary_newest: newest_segment(p).map(|w| w.name),
                    copy_newest: copy_newest.map(|w| w.name),
                    files_missing: p
                        .iter()
                        .filter(|a| !in_copy.contains(a.file.as_str()))
                        .count(),
                    segments_behind: behind.len(),
                    behind_since: behind.iter().filter_map(|a| a.modified).min(),
                }
            })
            .collect();
        Ok(Standing {
            primary_newest: newest(&self.snapshots),
            copy_newest: newest(&held),
            snapshots_missing: missing.len(),
            wal,
            held,
            missing,
            primary: self.snapshots.clone(),
        })
    }
}

/// Compares `copy` with `primary`: one listing of each one's snapshots and WAL, and the
/// manifests of both (readable ones; a damaged manifest is `check`'s to name).
pub fn standing(primary: &Repository, copy: &Repository) -> Result<Standing> {
    Primary::read(primary)?.standing_of(copy)
}

/// Every archived file of `repo` by cluster, as `<timeline>/<name>` with its store time.
fn wal_by_cluster(repo: &Repository) -> Result<BTreeMap<String, Vec<Archived>>> {
    let mut out: BTreeMap<String, Vec<Archived>> = BTreeMap::new();
    for o in repo.storage().list(ObjectKind::Wal.folder())? {
        let Some(rest) = ObjectKind::Wal.name_of(&o.key) else {
            continue;
        };
        if let Some((cluster, file)) = rest.split_once('/') {
            out.entry(cluster.to_string()).or_default().push(Archived {
                file: file.to_string(),
                modified: o.modified,
            });
        }
    }
    Ok(out)
}

/// The complete segment a `<timeline>/<name>` file is, if it is one.
fn segment(file: &str) -> Option<WalName> {
    WalName::parse(file.rsplit('/').next()?).filter(|w| w.kind == WalKind::Segment)
}

/// The newest complete segment among archived files: highest timeline, then position.
fn newest_segment(files: &[Archived]) -> Option<WalName> {
    files
        .iter()
        .filter_map(|a| segment(&a.file))
        .max_by_key(|w| (w.timeline, w.position))
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
            None,
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
        assert_eq!(st.primary_newest.as_ref().unwrap().id, s.id);
        assert_eq!(st.copy_newest, None);
        assert_eq!(st.snapshots_missing, 1);
        assert_eq!(st.wal.len(), 1);
        let w = &st.wal[0];
        assert_eq!(w.cluster, "73");
        assert_eq!(
            w.primary_newest.as_deref(),
            Some("000000010000000000000002")
        );
        assert_eq!(w.copy_newest.as_deref(), Some("000000010000000000000001"));
        assert_eq!((w.files_missing, w.segments_behind), (2, 1));
        // Per source: the one snapshot is missing, behind since it finished.
        let src = st.of_source(|m| m.source == s.source, Some("73"));
        assert_eq!(src.snapshots_missing, 1);
        assert_eq!(src.behind.get(&s.kind.to_string()), Some(&s.finished_at));
        assert_eq!(src.wal.as_ref().map(|w| w.segments_behind), Some(1));
    }

    fn mark(id: &str, source: &str, kind: &str, finished: &str) -> SnapshotMark {
        SnapshotMark {
            id: id.into(),
            source: source.into(),
            source_location: None,
            kind: kind.into(),
            finished_at: finished.parse().unwrap(),
        }
    }

    #[test]
    fn a_source_is_behind_since_the_oldest_snapshot_newer_than_the_copys_newest_of_its_kind() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let old_logical = mark("a", "pg", "logical", "2026-11-01T02:00:00Z");
        let physical = mark("b", "pg", "physical", "2026-11-01T06:00:00Z");
        let logical = mark("c", "pg", "logical", "2026-11-02T02:00:00Z");
        let newer_physical = mark("d", "pg", "physical", "2026-11-02T06:00:00Z");
        let early = mark("e", "pg", "physical", "2026-10-01T06:00:00Z");
        let other = mark("f", "hotel", "full", "2026-11-02T03:00:00Z");
        let wal = WalStanding {
            cluster: "73".into(),
            primary_newest: Some("000000010000000000000009".into()),
            copy_newest: Some("000000010000000000000007".into()),
            files_missing: 2,
            segments_behind: 2,
            behind_since: Some(t("2026-11-02T07:00:00Z")),
        };
        let st = Standing {
            primary_newest: Some(newer_physical.clone()),
            copy_newest: Some(physical.clone()),
            snapshots_missing: 4,
            wal: vec![wal.clone()],
            held: vec![old_logical.clone(), physical.clone()],
            // An old physical snapshot the copy never took is missing, not behind.
            missing: vec![
                early.clone(),
                logical.clone(),
                newer_physical.clone(),
                other.clone(),
            ],
            primary: vec![
                early,
                old_logical.clone(),
                physical.clone(),
                logical.clone(),
                newer_physical.clone(),
                other,
            ],
        };
        let pg = st.of_source(|m| m.source == "pg", Some("73"));
        assert_eq!(pg.primary_newest, Some(newer_physical.clone()));
        assert_eq!(pg.copy_newest, Some(physical));
        assert_eq!(pg.snapshots_missing, 3);
        assert_eq!(
            pg.behind,
            BTreeMap::from([
                ("logical".to_string(), logical.finished_at),
                ("physical".to_string(), newer_physical.finished_at),
            ])
        );
        assert_eq!(pg.wal, Some(wal));
        assert_eq!(pg.behind_since(), Some(logical.finished_at));
        let now = t("2026-11-02T03:00:00Z");
        assert_eq!(pg.lag(now), std::time::Duration::from_secs(3600));
        // A copy holding nothing of a source is behind since the source's first snapshot;
        // one holding everything is level.
        let hotel = st.of_source(|m| m.source == "hotel", None);
        assert_eq!(hotel.copy_newest, None);
        assert_eq!(hotel.lag(t("2026-11-02T03:10:00Z")).as_secs(), 600);
        let none = st.of_source(|m| m.source == "nothing", None);
        assert_eq!((none.behind_since(), &none.primary_newest), (None, &None));
        assert_eq!(none.lag(now), std::time::Duration::ZERO);
    }
}

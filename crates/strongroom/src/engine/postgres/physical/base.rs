//! Which base backup a point-in-time restore starts from, when it asks for `latest`.
//!
//! Owns the rule: the newest physical snapshot that ends before the recovery target (by its
//! stop time for a time, its stop LSN for an LSN; the newest for the other targets), never
//! crossing sources. The PostgreSQL engine answers [`crate::engine::Engine::latest_for`]
//! with it for a data directory. Must not read the repository (it is given the listing) and
//! must not resolve references other than `latest` (an id names one snapshot, whatever it
//! ends).

use super::PhysicalMetadata;
use crate::engine::RecoveryTarget;
use crate::engine::postgres::cluster::Lsn;
use crate::error::{Error, Result};
use crate::repository::snapshot::{BackupKind, Filter, Snapshot, resolve_one_source};

/// The snapshot `latest` means among `all` (oldest first) under `filter` for a recovery to
/// `recovery`; refuses when no physical snapshot ends before it, or none exists.
pub fn latest_base(
    all: &[Snapshot],
    filter: &Filter,
    recovery: &RecoveryTarget,
) -> Result<Snapshot> {
    let fits: Vec<Snapshot> = all
        .iter()
        .filter(|s| s.kind == BackupKind::Physical && ends_before(s, recovery))
        .cloned()
        .collect();
    if fits.is_empty()
        && all
            .iter()
            .any(|s| s.kind == BackupKind::Physical && filter.matches(s))
    {
        return Err(Error::NoSnapshot(
            "no physical snapshot ends before the recovery target; choose a later target or an older base backup by id".into(),
        ));
    }
    if fits.is_empty() {
        return Err(Error::NoSnapshot(
            "the repository has no physical snapshots; take one with `strongroom backup --kind physical`".into(),
        ));
    }
    resolve_one_source(&fits, "latest", filter).cloned()
}

/// Whether a recovery from `snap` can reach `recovery`: the snapshot ended at or before it
/// (a snapshot without a recorded stop time counts as ending when its backup finished).
fn ends_before(snap: &Snapshot, recovery: &RecoveryTarget) -> bool {
    match recovery {
        RecoveryTarget::Time(t) => {
            let stop = PhysicalMetadata::of(snap)
                .stop_time
                .unwrap_or(snap.finished_at);
            stop <= *t
        }
        RecoveryTarget::Lsn(l) => {
            let stop = snap.wal.as_ref().and_then(|w| Lsn::parse(&w.stop_lsn));
            matches!((stop, Lsn::parse(l)), (Some(a), Some(b)) if a <= b)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::snapshot::tests::sample;
    use crate::repository::snapshot::{EngineKind, WalRange};

    fn physical(id: &str, source: &str, stop_second: i64, stop_lsn: &str) -> Snapshot {
        let mut s = sample(id, source, &[]);
        s.engine = EngineKind::Postgres;
        s.kind = BackupKind::Physical;
        s.finished_at = jiff::Timestamp::from_second(stop_second + 5).unwrap();
        PhysicalMetadata {
            stop_time: Some(jiff::Timestamp::from_second(stop_second).unwrap()),
            ..PhysicalMetadata::default()
        }
        .write_into(&mut s.metadata.extra);
        s.wal = Some(WalRange {
            timeline: 1,
            start_lsn: "0/1000000".into(),
            stop_lsn: stop_lsn.into(),
        });
        s
    }

    #[test]
    fn latest_is_the_newest_base_that_ends_before_the_target() {
        let all = [
            physical("aaaaaa01", "prod", 100, "0/3000000"),
            physical("aaaaaa02", "prod", 200, "0/5000000"),
        ];
        let none = Filter::default();
        let at = |r: RecoveryTarget| latest_base(&all, &none, &r).map(|s| s.id);
        let time = |s: i64| RecoveryTarget::Time(jiff::Timestamp::from_second(s).unwrap());
        assert_eq!(at(time(150)).unwrap(), "aaaaaa01");
        assert_eq!(
            at(time(200)).unwrap(),
            "aaaaaa02",
            "ending at the target is before it"
        );
        assert_eq!(
            at(RecoveryTarget::Lsn("0/4000000".into())).unwrap(),
            "aaaaaa01"
        );
        assert_eq!(at(RecoveryTarget::Latest).unwrap(), "aaaaaa02");
        let too_early = at(time(50)).unwrap_err();
        assert!(too_early.to_string().contains("ends before"), "{too_early}");
        let no_physical = latest_base(&[], &none, &RecoveryTarget::Latest).unwrap_err();
        assert!(
            no_physical.to_string().contains("no physical snapshots"),
            "{no_physical}"
        );
    }
}

//! Object-lock upkeep: keeping what kept snapshots need locked ahead (`forget --prune`, and
//! later the daemon), and judging whether the locks last as long as the snapshots that need
//! them (`check`).
//!
//! Owns which objects count as needed by the kept snapshots and the PITR window, when a
//! lock is renewed and how far, and the coverage report. Must not choose which snapshots
//! to keep (`retention`, `forget`) nor delete anything; it only ever lengthens locks, which
//! is all S3 allows anyway.
//!
//! Renewal: every object a restore needs (the config, the key slots, the manifests, the
//! index objects, the packs and the archived WAL) that prune left is a superset of what the
//! kept snapshots and the PITR window need: prune deleted the rest. Each is read with a
//! HEAD; one whose lock ends before now plus the policy's days is extended to that plus a
//! margin (a tenth of the days, at least one day), so a daily run extends each object
//! about once per margin rather than every day. The journal, drill reports, the alert state
//! and damage records keep the lock they were written with: they are evidence, not what a
//! restore reads.

use crate::engine::postgres::wal;
use crate::error::{Error, Result};
use crate::id::PackId;
use crate::object_lock::LockPolicy;
use crate::repository::Repository;
use crate::repository::layout::{self, ObjectKind};
use crate::repository::snapshot::Snapshot;
use crate::repository::usage::for_each_chunk;
use crate::storage::read_each;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The kinds of objects a restore reads: their locks are kept ahead.
pub const NEEDED_KINDS: [ObjectKind; 7] = [
    ObjectKind::Config,
    ObjectKind::Key,
    ObjectKind::Snapshot,
    ObjectKind::Index,
    ObjectKind::Pack,
    ObjectKind::Wal,
    ObjectKind::Frames,
];

/// How much further than the policy's days a renewal sets a lock: a tenth of them, at
/// least a day.
pub fn margin(policy: &LockPolicy) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(24 * i64::from((policy.days / 10).max(1)))
}

/// Whether a lock ending at `until` (none: `None`) is renewed at `now`, and to when.
pub fn renewal(
    policy: &LockPolicy,
    until: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let wanted = now + policy.span();
    until
        .is_none_or(|u| u < wanted)
        .then(|| policy.until(now) + margin(policy))
}

/// What a renewal did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Renewal {
    /// Objects whose lock was read.
    pub objects: usize,
    /// Of those, locks extended.
    pub extended: usize,
    /// The date they were extended to.
    pub until: Option<jiff::Timestamp>,
    /// Every needed object is locked at least until then (`None` when there is none).
    pub locked_until_at_least: Option<jiff::Timestamp>,
}

/// The object-lock policy, or the error for a repository without one.
fn policy_of(repo: &Repository) -> Result<LockPolicy> {
    repo.storage()
        .object_lock()
        .ok_or_else(|| Error::NoObjectLock {
            url: repo.storage().url().to_string(),
            reason: "the repository was not made with `init --object-lock`".into(),
        })
}

/// Extends the locks of the objects a restore needs so each ends at least the policy's
/// days after `now` (see the module header), and journals the run (`lock-renewal`).
pub fn renew(repo: &Repository, now: jiff::Timestamp) -> Result<Renewal> {
    repo.require_full("renew object locks")?;
    let started_at = jiff::Timestamp::now();
    let result = extend_needed(repo, now);
    let mut rec = crate::repository::journal::JournalRecord::new("lock-renewal", started_at);
    if let Err(e) = &result {
        rec.failed(e);
    }
    repo.record(&rec);
    result
}

fn extend_needed(repo: &Repository, now: jiff::Timestamp) -> Result<Renewal> {
    let policy = policy_of(repo)?;
    let storage = repo.storage();
    let mut keys = Vec::new();
    for kind in NEEDED_KINDS {
        if kind == ObjectKind::Config {
            keys.push(layout::CONFIG.to_string());
            continue;
        }
        keys.extend(
            storage
                .list(kind.folder())?
                .into_iter()
                .filter(|o| ObjectKind::of_key(&o.key) == Some(kind))
                .map(|o| o.key),
        );
    }
    let mut out = Renewal {
        objects: keys.len(),
        ..Renewal::default()
    };
    // Per object: its lock's end after the run, and whether this run extended it.
    let results = read_each(&keys, |key| -> Result<Option<(jiff::Timestamp, bool)>> {
        // Gone meanwhile (a concurrent forget or prune): nothing to keep.
        let Some(state) = storage.lock_of(key, None)? else {
            return Ok(None);
        };
        match renewal(&policy, state.until, now) {
            Some(to) => {
                storage.extend_lock(key, None, to)?;
                Ok(Some((to, true)))
            }
            None => Ok(state.until.map(|u| (u, false))),
        }
    });
    for r in results {
        if let Some((until, extended)) = r? {
            out.extended += usize::from(extended);
            if extended {
                out.until = Some(until);
            }
            out.locked_until_at_least =
                Some(out.locked_until_at_least.map_or(until, |l| l.min(until)));
        }
    }
    Ok(out)
}

/// An object whose lock ends before a snapshot that needs it could be released.
#[derive(Clone, Debug, Serialize)]
pub struct LockGap {
    /// The object.
    pub object: String,
    /// When its lock ends (`None`: it has none).
    pub locked_until: Option<jiff::Timestamp>,
    /// The earliest the snapshots that need it could be released (`None`: never, by the
    /// policy alone).
    pub needed_until: Option<jiff::Timestamp>,
    /// Those snapshots (short ids).
    pub snapshots: Vec<String>,
}

/// How far the locks cover the kept snapshots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LockCoverage {
    /// The repository's lock: days.
    pub days: u32,
    /// Its mode.
    pub mode: String,
    /// Objects the kept snapshots need whose lock was read.
    pub objects: usize,
    /// Of those, objects with no lock or one already over: deletable now.
    pub unprotected: usize,
    /// Objects whose lock ends before the snapshots that need them could be released
    /// (the unprotected ones included); the first 100 are named in `gaps`.
    pub short: usize,
    /// The objects counted in `short`, at most 100, earliest lock end first.
    pub gaps: Vec<LockGap>,
    /// The earliest lock end among the objects the kept snapshots need.
    pub first_lock_end: Option<jiff::Timestamp>,
}

/// Per kept snapshot, the earliest moment `policy` could release it
/// (`retention::earliest_release` over the reasons a dry `forget` gives at `now`); a
/// snapshot the policy would remove now is releasable now.
pub fn release_dates(
    repo: &Repository,
    policy: &crate::retention::Policy,
    now: jiff::Timestamp,
) -> Result<HashMap<String, Option<jiff::Timestamp>>> {
    let report = crate::jobs::forget::run(
        repo,
        &crate::jobs::forget::ForgetOptions {
            policy: policy.clone(),
            filter: Default::default(),
            ids: Vec::new(),
            dry_run: true,
            now,
        },
    )?;
    let times: HashMap<String, (jiff::Timestamp, jiff::Timestamp)> = repo
        .snapshots()?
        .into_iter()
        .map(|s| (s.id.clone(), (s.started_at, s.finished_at)))
        .collect();
    let mut out = HashMap::new();
    for k in report.keep {
        let Some(&(started, finished)) = times.get(&k.id) else {
            continue;
        };
        let reasons: Vec<crate::retention::Reason> =
            k.reasons.iter().filter_map(|r| r.parse().ok()).collect();
        out.insert(
            k.id,
            crate::retention::earliest_release(policy, &reasons, started, finished, now),
        );
    }
    Ok(out)
}

/// At most this many gaps are named.
const MAX_GAPS: usize = 100;

/// Reads the lock of every object the kept snapshots need (the config, key slots, their
/// manifests, the packs holding their chunks and, for physical snapshots, the archived WAL
/// from their start to their stop) and reports those whose lock ends before the snapshots
/// that need them could be released: `releases` gives, per snapshot id, the earliest
/// moment its retention could let it go (`None`: never; a snapshot not named counts as
/// releasable now), as `retention::earliest_release` computes it.
pub fn coverage(
    repo: &Repository,
    releases: &HashMap<String, Option<jiff::Timestamp>>,
    now: jiff::Timestamp,
) -> Result<LockCoverage> {
    let policy = policy_of(repo)?;
    let storage = repo.storage();
    let snaps = repo.snapshots()?;
    let index = repo.load_index()?;
    // Object → the snapshots that need it.
    let mut needs: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let all: Vec<usize> = (0..snaps.len()).collect();
    needs.insert(layout::CONFIG.to_string(), all.clone());
    for o in storage.list(ObjectKind::Key.folder())? {
        needs.insert(o.key, all.clone());
    }
    for (i, s) in snaps.iter().enumerate() {
        needs
            .entry(Snapshot::object_key(&s.id))
            .or_default()
            .push(i);
        let mut packs: HashSet<PackId> = HashSet::new();
        for_each_chunk(repo, &index, s, |c| {
            if let Some(l) = index.get(&c) {
                packs.insert(l.pack);
            }
            Ok(())
        })?;
        for p in packs {
            needs.entry(p.object_key()).or_default().push(i);
        }
    }
    let wal_needs = wal::needs_of(&snaps);
    if !wal_needs.is_empty() {
        for o in storage.list(ObjectKind::Wal.folder())? {
            let Some(rest) = ObjectKind::Wal.name_of(&o.key) else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            if let (Some(cluster), Some(_), Some(name)) = (parts.next(), parts.next(), parts.next())
            {
                let ids: HashSet<String> = wal::dependents(&wal_needs, cluster, name)
                    .into_iter()
                    .collect();
                for (i, s) in snaps.iter().enumerate() {
                    if ids.contains(&s.id) {
                        needs.entry(o.key.clone()).or_default().push(i);
                    }
                }
            }
        }
    }
    let keys: Vec<String> = needs.keys().cloned().collect();
    let states = read_each(&keys, |k| storage.lock_of(k, None));
    let mut out = LockCoverage {
        days: policy.days,
        mode: policy.mode.name().to_string(),
        ..LockCoverage::default()
    };
    let mut gaps = Vec::new();
    for (key, state) in keys.iter().zip(states) {
        // Missing objects are `check`'s damage, not a lock's gap.
        let Some(state) = state? else { continue };
        out.objects += 1;
        let users = &needs[key];
        // Needed until the last of its snapshots could go; `None` once any never goes.
        let needed_until = users.iter().try_fold(now, |acc, &i| {
            releases
                .get(&snaps[i].id)
                .copied()
                .unwrap_or(Some(now))
                .map(|r| acc.max(r))
        });
        if let Some(u) = state.until {
            out.first_lock_end = Some(out.first_lock_end.map_or(u, |f| f.min(u)));
        }
        let over = state.until.is_none_or(|u| u <= now);
        if over {
            out.unprotected += 1;
        }
        let short =
            over || needed_until.is_none_or(|n| state.until.is_some_and(|u| u < n) && n > now);
        if short {
            out.short += 1;
            gaps.push(LockGap {
                object: key.clone(),
                locked_until: state.until,
                needed_until,
                snapshots: users
                    .iter()
                    .map(|&i| snaps[i].short_id().to_string())
                    .collect(),
            });
        }
    }
    gaps.sort_by_key(|g| g.locked_until);
    gaps.truncate(MAX_GAPS);
    out.gaps = gaps;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_lock::LockMode;

    #[test]
    fn renewal_keeps_the_days_ahead_with_a_margin() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let p = LockPolicy {
            days: 30,
            mode: LockMode::Governance,
        };
        let now = t("2026-12-06T00:00:00Z");
        // Written a day ago for 30 days: short of 30 days ahead, extended to 33.
        assert_eq!(
            renewal(&p, Some(t("2027-01-04T00:00:00Z")), now),
            Some(t("2027-01-08T00:00:00Z"))
        );
        // Renewed two days ago to 33 days: still 31 ahead, left.
        assert_eq!(renewal(&p, Some(t("2027-01-06T00:00:00Z")), now), None);
        // No lock at all (written before the policy, or by an older build): locked.
        assert_eq!(renewal(&p, None, now), Some(t("2027-01-08T00:00:00Z")));
        let short = LockPolicy {
            days: 3,
            mode: LockMode::Compliance,
        };
        assert_eq!(margin(&short), jiff::SignedDuration::from_hours(24));
    }
}

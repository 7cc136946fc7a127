//! Forget: remove the snapshots the retention policy does not keep.
//!
//! Owns the `forget` job: gathering what the policy needs to know about each snapshot (its
//! group, tags, whether a verify of it succeeded, from the journal), applying
//! `retention::apply` (to the snapshots a full key vouched for apart from the ones an
//! append-only key wrote and nobody checked yet: `vouched_apart`), and deleting the manifests of the snapshots it removes (in a copy,
//! after noting their ids in `state/forgotten`, `repository::forgotten`). Must not
//! decide what to keep (the pure `retention` module does) and must not delete data: the
//! chunks of forgotten snapshots stay until `prune` (docs/ARCHITECTURE.md, "Invariants":
//! prune never deletes what a retained snapshot needs).
//!
//! Deleting a manifest is safe at any moment: a restore or verify that already read it goes
//! on (its data is there until a prune, which waits for it), and a kill between deletions
//! leaves some snapshots forgotten and the rest as they were.

use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::layout::ObjectKind;
use crate::repository::snapshot::{BackupKind, Filter, Snapshot};
use crate::retention::{self, Candidate, Policy};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What `forget` is asked to do.
#[derive(Clone, Debug)]
pub struct ForgetOptions {
    /// The policy (flags, else the config's `[retention]`).
    pub policy: Policy,
    /// Only snapshots passing this filter are considered (the rest are neither kept nor
    /// removed).
    pub filter: Filter,
    /// Snapshot references to forget explicitly instead of applying the policy (damaged
    /// manifests included).
    pub ids: Vec<String>,
    /// Only say what would be removed.
    pub dry_run: bool,
    /// The time the policy's windows are measured from (the PITR window).
    pub now: jiff::Timestamp,
}

/// A snapshot kept, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Kept {
    /// Full id.
    pub id: String,
    /// First 8 characters.
    pub short_id: String,
    /// Source.
    pub source: String,
    /// Kind.
    pub kind: String,
    /// Start time (RFC 3339 UTC).
    pub started_at: String,
    /// The rules that keep it (`daily`, `newest`, `pitr`, `tag:pre-migration`, …).
    pub reasons: Vec<String>,
}

/// A snapshot removed.
#[derive(Clone, Debug, Serialize)]
pub struct Removed {
    /// Full id.
    pub id: String,
    /// First 8 characters.
    pub short_id: String,
    /// Source (empty for a damaged manifest).
    pub source: String,
    /// Kind (empty for a damaged manifest).
    pub kind: String,
    /// Start time (RFC 3339 UTC; empty for a damaged manifest).
    pub started_at: String,
}

/// What `forget` did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgetReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshots kept, with their reasons.
    pub keep: Vec<Kept>,
    /// Snapshots removed.
    pub remove: Vec<Removed>,
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn removed(s: &Snapshot) -> Removed {
    Removed {
        id: s.id.clone(),
        short_id: s.short_id().to_string(),
        source: s.source.clone(),
        kind: s.kind.to_string(),
        started_at: rfc3339(s.started_at),
    }
}

/// Applies the policy (or removes the snapshots named) and records the job.
pub fn run(repo: &Repository, opts: &ForgetOptions) -> Result<ForgetReport> {
    repo.require_full("forget snapshots")?;
    let started_at = jiff::Timestamp::now();
    let result = forget(repo, opts);
    if !opts.dry_run || result.is_err() {
        let mut rec = JournalRecord::new("forget", started_at);
        match &result {
            Ok(r) => rec.size = r.remove.len() as u64,
            Err(e) => rec.failed(e),
        }
        repo.record(&rec);
    }
    result
}

fn forget(repo: &Repository, opts: &ForgetOptions) -> Result<ForgetReport> {
    let mut report = ForgetReport {
        dry_run: opts.dry_run,
        ..ForgetReport::default()
    };
    if !opts.ids.is_empty() {
        report.remove = named(repo, &opts.ids)?;
    } else {
        let (all, damaged) = repo.snapshots_lenient()?;
        if !damaged.is_empty() {
            let (is, them) = match damaged.len() {
                1 => ("is", "it"),
                _ => ("are", "them"),
            };
            tracing::warn!(
                "{} {is} left alone; name {them} to forget {them} (`strongroom forget ID`)",
                crate::counted(damaged.len(), "damaged snapshot manifest"),
            );
        }
        let snaps: Vec<&Snapshot> = all.iter().filter(|s| opts.filter.matches(s)).collect();
        let verified = verified_snapshots(repo);
        let names = names_by_identity(&snaps);
        let candidates: Vec<Candidate> = snaps
            .iter()
            .map(|s| Candidate {
                id: s.id.clone(),
                // One database is one group, whatever it was called when each was taken.
                source: s.identity(),
                kind: s.kind.to_string(),
                started_at: s.started_at,
                finished_at: s.finished_at,
                tags: s.tags.clone(),
                verified: verified.contains(&s.id),
                // Point-in-time bases: physical snapshots (WAL) and SQLite base snapshots
                // (captured frames).
                physical: s.kind == BackupKind::Physical
                    || crate::engine::sqlite::replica::base_position(s).is_some(),
            })
            .collect();
        let decisions = vouched_apart(&opts.policy, &snaps, &candidates, opts.now);
        for (s, d) in snaps.iter().zip(decisions) {
            debug_assert_eq!(s.id, d.id);
            if d.keep {
                report.keep.push(Kept {
                    id: s.id.clone(),
                    short_id: s.short_id().to_string(),
                    source: names[&s.identity()].clone(),
                    kind: s.kind.to_string(),
                    started_at: rfc3339(s.started_at),
                    reasons: d.reasons.iter().map(|r| r.to_string()).collect(),
                });
            } else {
                report.remove.push(Removed {
                    source: names[&s.identity()].clone(),
                    ..removed(s)
                });
            }
        }
    }
    if !opts.dry_run {
        // A copy remembers what its own retention removed, so `copy` does not bring it
        // back; first, so a kill leaves no snapshot gone and unrecorded.
        if repo.config().copy_of.is_some() && !report.remove.is_empty() {
            repo.note_forgotten(report.remove.iter().map(|r| r.id.clone()))?;
        }
        // One call: with object lock, the manifests' versions are recorded for prune to
        // delete once their lock ends (`repository::expiring`).
        let keys: Vec<String> = report
            .remove
            .iter()
            .map(|r| ObjectKind::Snapshot.key(&r.id))
            .collect();
        repo.delete_objects(&keys)?;
        for r in &report.remove {
            tracing::info!(snapshot = %r.short_id, "forgotten");
        }
    }
    Ok(report)
}

/// The policy's decisions, with what append-only keys wrote unable to push out what a full
/// key vouched for: vouched snapshots are decided among themselves alone, so no number of
/// snapshots a stolen host writes (junk, or dated anyhow) changes which of them are kept.
/// Unvouched ones are decided among all, and age out like any other.
fn vouched_apart(
    policy: &Policy,
    snaps: &[&Snapshot],
    candidates: &[Candidate],
    now: jiff::Timestamp,
) -> Vec<retention::Decision> {
    let mut decisions = retention::apply(policy, candidates, now);
    if snaps.iter().all(|s| !s.unvouched) {
        return decisions;
    }
    let vouched: Vec<usize> = (0..snaps.len()).filter(|&i| !snaps[i].unvouched).collect();
    let among: Vec<Candidate> = vouched.iter().map(|&i| candidates[i].clone()).collect();
    for (i, d) in vouched
        .into_iter()
        .zip(retention::apply(policy, &among, now))
    {
        decisions[i] = d;
    }
    decisions
}

/// The name each database is reported under: the newest config name any of its snapshots
/// was recorded under (a URL is what older snapshots carry before a config named it), else
/// the newest recorded spelling.
fn names_by_identity(snaps: &[&Snapshot]) -> HashMap<String, String> {
    let mut names: HashMap<String, String> = HashMap::new();
    // Oldest first: a later snapshot's name wins, and a config name wins over a URL.
    for s in snaps {
        let named = crate::source::parse_location(&s.source).is_none();
        let entry = names
            .entry(s.identity())
            .or_insert_with(|| s.source.clone());
        if named || crate::source::parse_location(entry).is_some() {
            *entry = s.source.clone();
        }
    }
    names
}

/// The snapshots named by `refs` (full ids or unique prefixes of 6+ characters), damaged
/// manifests included: forgetting one is how a damaged manifest is cleared for prune.
fn named(repo: &Repository, refs: &[String]) -> Result<Vec<Removed>> {
    let ids: Vec<String> = repo
        .storage()
        .list(ObjectKind::Snapshot.folder())?
        .into_iter()
        .filter_map(|o| ObjectKind::Snapshot.name_of(&o.key).map(str::to_string))
        .collect();
    let mut out: Vec<Removed> = Vec::new();
    for r in refs {
        let wanted = r.to_ascii_lowercase();
        if wanted.len() < 6 {
            return Err(Error::BadReference(format!(
                "snapshot reference {r:?} is too short: give at least 6 characters of the id"
            )));
        }
        let matches: Vec<&String> = ids.iter().filter(|i| i.starts_with(&wanted)).collect();
        let id = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(Error::NoSnapshot(format!("no snapshot {r}"))),
            _ => {
                return Err(Error::BadReference(format!(
                    "snapshot reference {r:?} is ambiguous ({} snapshots start with it); give more characters",
                    matches.len()
                )));
            }
        };
        if out.iter().any(|o| o.id == id) {
            continue;
        }
        out.push(match repo.read_snapshot(&id) {
            Ok(s) => removed(&s),
            Err(_) => Removed {
                short_id: id[..8].to_string(),
                id,
                source: String::new(),
                kind: String::new(),
                started_at: String::new(),
            },
        });
    }
    Ok(out)
}

/// Ids of snapshots a verify succeeded on, from the journal (an unreadable journal means
/// none are known: the newest-verified rule then keeps nothing extra).
fn verified_snapshots(repo: &Repository) -> HashSet<String> {
    match repo.journal_records() {
        Ok(records) => records
            .into_iter()
            .filter(|r| r.job == "verify" && r.ok)
            .filter_map(|r| r.snapshot)
            .collect(),
        Err(e) => {
            tracing::warn!("the journal cannot be read ({e}); no snapshot counts as verified");
            HashSet::new()
        }
    }
}

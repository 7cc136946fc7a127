//! `strongroom forget`, `prune`, `unlock` and `repair index`: keeping the repository to
//! what it must hold.

use crate::args::{FilterArgs, PruneArgs, RepairAction};
use crate::context::Ctx;
use crate::output::{outln, print_json};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use strongroom::forget::{ForgetOptions, ForgetReport};
use strongroom::human_bytes;
use strongroom::prune::{PruneOptions, PruneReport};

/// The keep flags of `forget`, as typed.
pub struct KeepFlags {
    /// `--keep-last`.
    pub last: Option<u32>,
    /// `--keep-hourly`.
    pub hourly: Option<u32>,
    /// `--keep-daily`.
    pub daily: Option<u32>,
    /// `--keep-weekly`.
    pub weekly: Option<u32>,
    /// `--keep-monthly`.
    pub monthly: Option<u32>,
    /// `--keep-yearly`.
    pub yearly: Option<u32>,
    /// `--keep-within`.
    pub within: Option<String>,
    /// `--keep-tag`.
    pub tags: Vec<String>,
}

impl KeepFlags {
    fn any(&self) -> bool {
        self.last.is_some()
            || self.hourly.is_some()
            || self.daily.is_some()
            || self.weekly.is_some()
            || self.monthly.is_some()
            || self.yearly.is_some()
            || self.within.is_some()
            || !self.tags.is_empty()
    }
}

/// `forget`'s JSON document: the contract's `keep` and `remove`, plus the prune's report.
#[derive(Serialize)]
struct ForgetJson<'a> {
    #[serde(flatten)]
    forget: &'a ForgetReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<&'a PruneReport>,
}

fn prune_options(ctx: &Ctx, args: &PruneArgs, dry_run: bool) -> Result<PruneOptions> {
    let settings = &ctx.config.prune;
    let repack_below = args.repack_below.unwrap_or(settings.repack_below);
    if !(0.0..=1.0).contains(&repack_below) {
        bail!("--repack-below must be a fraction between 0 and 1 (e.g. 0.5)");
    }
    let wait = args.max_wait.as_deref().unwrap_or(&settings.max_wait);
    let max_wait = strongroom::parse_duration(wait)
        .map_err(|e| anyhow::anyhow!("--max-wait {wait:?}: {e}"))?;
    Ok(PruneOptions {
        repack_below,
        max_wait,
        dry_run,
        assume_forgotten: Default::default(),
    })
}

/// Applies the policy (or forgets the snapshots named), then prunes when asked.
pub fn run(
    ctx: &Ctx,
    snapshots: Vec<String>,
    keep: KeepFlags,
    filter: &FilterArgs,
    dry_run: bool,
    prune: bool,
    prune_args: &PruneArgs,
) -> Result<()> {
    if !snapshots.is_empty() && keep.any() {
        bail!("give snapshot ids or --keep-* rules, not both");
    }
    let mut policy = ctx.config.retention.policy();
    if keep.any() {
        let within = keep
            .within
            .as_deref()
            .map(strongroom::parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--keep-within: {e}"))?;
        policy.keep_last = keep.last;
        policy.keep_hourly = keep.hourly;
        policy.keep_daily = keep.daily;
        policy.keep_weekly = keep.weekly;
        policy.keep_monthly = keep.monthly;
        policy.keep_yearly = keep.yearly;
        policy.keep_within = within;
        policy.keep_tags = keep.tags;
    }
    let prune_opts = prune
        .then(|| prune_options(ctx, prune_args, dry_run))
        .transpose()?;
    let repo = ctx.open()?;
    let report = strongroom::forget::run(
        &repo,
        &ForgetOptions {
            policy,
            filter: filter.filter(&ctx.config),
            ids: snapshots,
            dry_run,
            now: jiff::Timestamp::now(),
        },
    )?;
    let pruned = match prune_opts {
        Some(mut o) => {
            o.assume_forgotten = report.remove.iter().map(|r| r.id.clone()).collect();
            Some(strongroom::prune::run(&repo, &o, &ctx.progress)?)
        }
        None => None,
    };
    if ctx.json() {
        return print_json(&ForgetJson {
            forget: &report,
            prune: pruned.as_ref(),
        });
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for k in &report.keep {
        outln!(
            "keep   {}  {}  {:<8} {}  ({})",
            k.short_id,
            k.started_at,
            k.kind,
            k.source,
            k.reasons.join(", ")
        )?;
    }
    for r in &report.remove {
        outln!(
            "remove {}  {}  {:<8} {}",
            r.short_id,
            r.started_at,
            r.kind,
            r.source
        )?;
    }
    outln!(
        "{} snapshot(s) kept, {} {verb}",
        report.keep.len(),
        report.remove.len()
    )?;
    if let Some(p) = &pruned {
        print_prune(p)?;
    }
    Ok(())
}

/// `strongroom prune`.
pub fn prune(ctx: &Ctx, dry_run: bool, args: &PruneArgs) -> Result<()> {
    let opts = prune_options(ctx, args, dry_run)?;
    let repo = ctx.open()?;
    let report = strongroom::prune::run(&repo, &opts, &ctx.progress)?;
    if ctx.json() {
        return print_json(&report);
    }
    print_prune(&report)
}

fn print_prune(p: &PruneReport) -> Result<()> {
    let would = if p.dry_run { "would be " } else { "" };
    outln!(
        "{} snapshot(s) keep {} pack(s), {}",
        p.snapshots,
        p.packs,
        human_bytes(p.pack_bytes)
    )?;
    outln!(
        "packs {would}deleted: {} ({} repacked first), {} left by interrupted backups; {} in all",
        p.packs_deleted,
        p.packs_repacked,
        p.orphan_packs,
        human_bytes(p.bytes_deleted)
    )?;
    if p.bytes_written > 0 {
        outln!("written by the repack: {}", human_bytes(p.bytes_written))?;
    }
    if p.wal_deleted > 0 {
        outln!(
            "archived WAL {would}deleted: {} file(s), {} (older than any kept physical snapshot needs)",
            p.wal_deleted,
            human_bytes(p.wal_bytes)
        )?;
    }
    if p.spared > 0 {
        outln!(
            "kept after all: {} pack(s) that a backup taken during the prune uses",
            p.spared
        )?;
    }
    if p.unused_bytes_kept > 0 {
        outln!(
            "left in place: about {} no snapshot needs, in packs not worth repacking (--repack-below)",
            human_bytes(p.unused_bytes_kept)
        )?;
    }
    outln!(
        "{}: {}",
        if p.dry_run { "would free" } else { "freed" },
        human_bytes(p.freed.max(0) as u64)
    )?;
    if let Some(why) = &p.pending {
        outln!("not finished: {why}")?;
    }
    Ok(())
}

/// `strongroom unlock`.
pub fn unlock(ctx: &Ctx, all: bool) -> Result<()> {
    #[derive(Serialize)]
    struct Removed {
        lock: String,
        holder: String,
        why: String,
    }
    let repo = ctx.open()?;
    let removed = repo
        .unlock(all, jiff::Timestamp::now())
        .context("removing locks")?;
    let out: Vec<Removed> = removed
        .iter()
        .map(|(l, why)| Removed {
            lock: l.name.clone(),
            holder: l.describe(),
            why: why.clone(),
        })
        .collect();
    let left = repo.locks()?.len();
    if ctx.json() {
        #[derive(Serialize)]
        struct Doc {
            removed: Vec<Removed>,
            remaining: usize,
        }
        return print_json(&Doc {
            removed: out,
            remaining: left,
        });
    }
    for r in &out {
        outln!("removed lock {}: {} ({})", r.lock, r.holder, r.why)?;
    }
    outln!(
        "{} lock(s) removed, {left} still held by running jobs",
        out.len()
    )?;
    Ok(())
}

/// `strongroom repair …`.
pub fn repair(ctx: &Ctx, action: RepairAction) -> Result<()> {
    match action {
        RepairAction::Index => {
            let repo = ctx.open()?;
            let r = strongroom::repair::index(&repo, &ctx.progress)?;
            if ctx.json() {
                return print_json(&r);
            }
            outln!(
                "index rebuilt from {} pack(s): {} chunk(s) in {} index object(s); {} old index object(s) removed",
                r.packs,
                r.chunks,
                r.index_written,
                r.index_removed
            )?;
            for u in &r.unreadable_packs {
                outln!("left out (recorded damaged): {u}")?;
            }
            Ok(())
        }
    }
}

//! `strongroom forget`, `prune`, `unlock` and `repair index`: keeping the repository to
//! what it must hold.

use crate::args::{FilterArgs, PruneArgs, RepairAction};
use crate::context::Ctx;
use crate::output::{Align, Table, outln, print_json};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use strongroom::forget::{ForgetOptions, ForgetReport};
use strongroom::prune::{PruneOptions, PruneReport};
use strongroom::{counted, human_bytes};

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
    let mut table = Table::headless(&[Align::Left; 6]);
    for k in &report.keep {
        table.row([
            "keep".to_string(),
            k.short_id.clone(),
            k.started_at.clone(),
            k.kind.clone(),
            k.source.clone(),
            format!("({})", k.reasons.join(", ")),
        ]);
    }
    for r in &report.remove {
        table.row([
            "remove".to_string(),
            r.short_id.clone(),
            r.started_at.clone(),
            r.kind.clone(),
            r.source.clone(),
            String::new(),
        ]);
    }
    table.print()?;
    outln!("{}", forget_summary(&report))?;
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

/// The last line of `forget`: what was kept and what went, counted.
fn forget_summary(r: &ForgetReport) -> String {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    match (r.keep.len(), r.remove.len()) {
        (0, 0) => "no snapshot matches: nothing to forget".into(),
        (kept, 0) => format!(
            "{} kept; nothing to remove: the policy keeps every one",
            counted(kept, "snapshot")
        ),
        (0, gone) => format!("{verb} {}", counted(gone, "snapshot")),
        (kept, gone) => format!(
            "{} kept, {verb} {}",
            counted(kept, "snapshot"),
            counted(gone, "snapshot")
        ),
    }
}

fn print_prune(p: &PruneReport) -> Result<()> {
    for line in prune_lines(p) {
        outln!("{line}")?;
    }
    Ok(())
}

/// What a prune did, as people read it: counts that are zero are left out or said in words.
fn prune_lines(p: &PruneReport) -> Vec<String> {
    let (would, delete) = if p.dry_run {
        ("would be ", "would delete")
    } else {
        ("", "deleted")
    };
    let mut out = Vec::new();
    // An unfinished earlier deletion stops the prune before it plans: nothing was counted.
    let planned = p.pending.is_none() || p.packs > 0 || p.snapshots > 0;
    if planned && p.packs > 0 {
        let held = match (p.dry_run, p.packs) {
            (false, _) => "held",
            (true, 1) => "holds",
            (true, _) => "hold",
        };
        let packs = format!(
            "{} ({})",
            counted(p.packs, "pack"),
            human_bytes(p.pack_bytes)
        );
        out.push(match p.snapshots {
            0 => format!("{packs}, and no snapshot kept"),
            n => format!("{packs} {held} the data of {}", counted(n, "kept snapshot")),
        });
    }
    let mut gone = Vec::new();
    if p.packs_deleted > 0 {
        let repacked = match p.packs_repacked {
            0 => String::new(),
            n if n == p.packs_deleted => {
                " (what they still held copied into new packs first)".to_string()
            }
            n => format!(" ({n} of them repacked first)"),
        };
        gone.push(format!(
            "{} no kept snapshot needs{repacked}",
            counted(p.packs_deleted, "pack")
        ));
    }
    if p.orphan_packs > 0 {
        gone.push(format!(
            "{} left by interrupted backups",
            counted(p.orphan_packs, "pack")
        ));
    }
    if !gone.is_empty() {
        out.push(format!(
            "{delete}: {}; {} in all",
            gone.join(", and "),
            human_bytes(p.bytes_deleted)
        ));
    }
    if p.bytes_written > 0 {
        out.push(format!(
            "written by the repack: {}",
            human_bytes(p.bytes_written)
        ));
    }
    if p.wal_deleted > 0 {
        out.push(format!(
            "archived WAL {would}deleted: {}, {} (older than any kept physical snapshot needs)",
            counted(p.wal_deleted, "file"),
            human_bytes(p.wal_bytes)
        ));
    }
    if p.spared > 0 {
        out.push(format!(
            "kept after all: {} that a backup taken during the prune uses",
            counted(p.spared, "pack")
        ));
    }
    if p.unused_bytes_kept > 0 {
        out.push(format!(
            "left in place: about {} no snapshot needs, in packs not worth repacking (--repack-below)",
            human_bytes(p.unused_bytes_kept)
        ));
    }
    if gone.is_empty() && p.wal_deleted == 0 {
        if planned {
            out.push(if p.packs == 0 {
                "nothing to remove: the repository holds no packs".to_string()
            } else {
                "nothing to remove: every pack holds data a kept snapshot needs".to_string()
            });
        }
    } else {
        out.push(format!(
            "{}: {}",
            if p.dry_run { "would free" } else { "freed" },
            human_bytes(p.freed.max(0) as u64)
        ));
    }
    if let Some(why) = &p.pending {
        out.push(format!("not finished: {why}"));
    }
    out
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
        "{}; {}",
        match out.len() {
            0 => "no lock removed".to_string(),
            n => format!("removed {}", counted(n, "lock")),
        },
        match left {
            0 => "no lock is held".to_string(),
            1 => "1 is still held by a running job".to_string(),
            n => format!("{n} are still held by running jobs"),
        }
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

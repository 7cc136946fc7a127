//! `strongroom forget`: applying the retention policy (or forgetting the snapshots named),
//! then `--prune` when asked.

use crate::args::ForgetArgs;
use crate::context::Ctx;
use crate::failure::usage;
use crate::output::{Align, Table, outln, print_json};
use anyhow::Result;
use serde::Serialize;
use strongroom::counted;
use strongroom::jobs::forget::{ForgetOptions, ForgetReport};
use strongroom::jobs::locking::Renewal;
use strongroom::jobs::prune::PruneReport;

/// `forget`'s JSON document: the contract's `keep` and `remove`, plus the prune's report.
#[derive(Serialize)]
struct ForgetJson<'a> {
    #[serde(flatten)]
    forget: &'a ForgetReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<&'a PruneReport>,
    /// With object lock, after the prune: the locks kept ahead.
    #[serde(skip_serializing_if = "Option::is_none")]
    object_lock: Option<&'a Renewal>,
}

/// Applies the policy (or forgets the snapshots named), then prunes when asked.
pub fn run(ctx: &Ctx, args: ForgetArgs) -> Result<()> {
    if !args.snapshots.is_empty() && args.keep.any_keep() {
        return Err(usage("give snapshot ids or --keep-* rules, not both"));
    }
    // A copy keeps what its own `[copies.retention]` says (the primary's rules otherwise).
    let url = ctx.access().url()?;
    let policy = args
        .keep
        .over(ctx.config.retention_for(&url))
        .policy()
        .map_err(|(key, e)| usage(format!("--{}: {e}", key.replace('_', "-"))))?;
    let prune_opts = args
        .prune
        .then(|| super::prune::options(ctx, &args.limits, args.dry_run))
        .transpose()?;
    let repo = ctx.open()?;
    let report = strongroom::jobs::forget::run(
        &repo,
        &ForgetOptions {
            policy,
            filter: args.filter.filter(&ctx.config),
            ids: args.snapshots,
            dry_run: args.dry_run,
            now: jiff::Timestamp::now(),
        },
    )?;
    let pruned = match prune_opts {
        Some(mut o) => {
            o.assume_forgotten = report.remove.iter().map(|r| r.id.clone()).collect();
            Some(strongroom::jobs::prune::run(&repo, &o, &ctx.progress)?)
        }
        None => None,
    };
    // The maintenance step of object lock: what the kept snapshots (and the PITR window)
    // still need, as prune left it, stays locked the policy's days ahead.
    let renewed = if pruned.is_some() && !args.dry_run && repo.storage().object_lock().is_some() {
        Some(strongroom::jobs::locking::renew(
            &repo,
            jiff::Timestamp::now(),
        )?)
    } else {
        None
    };
    if ctx.json() {
        return print_json(&ForgetJson {
            forget: &report,
            prune: pruned.as_ref(),
            object_lock: renewed.as_ref(),
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
        super::prune::print(p)?;
    }
    if let Some(r) = &renewed {
        let least = r
            .locked_until_at_least
            .map(|t| format!("; all locked until at least {}", crate::output::fmt_time(t)))
            .unwrap_or_default();
        outln!(
            "object lock: {} of {} a restore needs extended{least}",
            r.extended,
            counted(r.objects, "object")
        )?;
    }
    Ok(())
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

//! `strongroom prune`: deleting the data no snapshot needs, and saying what went in words.

use crate::args::{PruneArgs, PruneLimits};
use crate::context::Ctx;
use crate::failure::usage;
use crate::output::{outln, print_json};
use anyhow::Result;
use strongroom::jobs::prune::{PruneOptions, PruneReport, RepackBudget};
use strongroom::{counted, human_bytes};

/// Deletes what no snapshot needs (or, dry, says what it would).
pub fn run(ctx: &Ctx, args: PruneArgs) -> Result<()> {
    let opts = options(ctx, &args.limits, args.dry_run)?;
    let repo = ctx.open()?;
    let report = strongroom::jobs::prune::run(&repo, &opts, &ctx.progress)?;
    if ctx.json() {
        return print_json(&report);
    }
    print(&report)
}

/// The prune's options: the flags, else the config's `[prune]` (`forget --prune` too).
pub fn options(ctx: &Ctx, limits: &PruneLimits, dry_run: bool) -> Result<PruneOptions> {
    let settings = &ctx.config.prune;
    let repack_below = limits.repack_below.unwrap_or(settings.repack_below);
    if !(0.0..=1.0).contains(&repack_below) {
        return Err(usage(
            "--repack-below must be a fraction between 0 and 1 (e.g. 0.5)",
        ));
    }
    let size = limits.max_repack.as_deref().unwrap_or(&settings.max_repack);
    let max_repack = RepackBudget::parse(size).map_err(|e| usage(format!("--max-repack: {e}")))?;
    let wait = limits.max_wait.as_deref().unwrap_or(&settings.max_wait);
    let max_wait =
        strongroom::parse_duration(wait).map_err(|e| usage(format!("--max-wait {wait:?}: {e}")))?;
    Ok(PruneOptions {
        repack_below,
        max_repack,
        max_wait,
        dry_run,
        assume_forgotten: Default::default(),
    })
}

/// Prints what a prune did.
pub fn print(p: &PruneReport) -> Result<()> {
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
            "written by the repack: {} (read: {})",
            human_bytes(p.bytes_written),
            human_bytes(p.bytes_read)
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
            "left in place: about {} no snapshot needs, in packs not worth repacking (--repack-below) or beyond this prune's --max-repack",
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
    if p.versions_released > 0 {
        out.push(format!(
            "{delete} for good: {} hidden earlier whose object lock ended ({})",
            counted(p.versions_released, "object version"),
            human_bytes(p.bytes_released)
        ));
    }
    if p.versions_waiting_for_lock > 0 {
        let first = p
            .next_lock_end
            .map(|t| format!(", the first on {}", crate::output::fmt_time(t)))
            .unwrap_or_default();
        out.push(format!(
            "waiting for their object lock to end: {} ({}) no snapshot needs, still stored and billed{first}; a later prune deletes them",
            counted(p.versions_waiting_for_lock, "object version"),
            human_bytes(p.bytes_waiting_for_lock)
        ));
    }
    if let Some(why) = &p.pending {
        out.push(format!("not finished: {why}"));
    }
    out
}

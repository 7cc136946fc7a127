//! `strongroom check`: the repository's integrity.

use crate::context::Ctx;
use crate::failure::{reported, usage};
use crate::output::{fmt_time, outln, print_json, short};
use anyhow::Result;
use strongroom::jobs::integrity::CheckReport;
use strongroom::jobs::locking::LockCoverage;
use strongroom::{ErrorKind, counted, human_bytes};

/// Checks that everything a snapshot needs is present (and with `read_data`, intact).
pub fn run(ctx: &Ctx, read_data: bool) -> Result<()> {
    let repo = ctx.open()?;
    let mut report = strongroom::jobs::integrity::run(&repo, read_data, &ctx.progress)?;
    if repo.storage().object_lock().is_some() {
        // Whether the locks last as long as the snapshots that need them, by the retention
        // policy forget applies here.
        let url = ctx.access().url()?;
        let policy = ctx
            .config
            .retention_for(&url)
            .policy()
            .map_err(|(key, e)| usage(format!("[retention] {key}: {e}")))?;
        let now = jiff::Timestamp::now();
        // Damage the check found (an unreadable manifest or list) can stop the judgement
        // of the locks: the damage is the report, the locks a warning.
        match strongroom::jobs::locking::release_dates(&repo, &policy, now)
            .and_then(|releases| strongroom::jobs::locking::coverage(&repo, &releases, now))
        {
            Ok(c) => report.object_lock = Some(c),
            Err(e) => eprintln!("warning: the object locks could not be judged: {e}"),
        }
    }
    if ctx.json() {
        print_json(&report)?;
    } else {
        print_human(&report, read_data)?;
    }
    if let Some(found) = report.problems_found() {
        return Err(reported(
            ErrorKind::DamagedData,
            format!(
                "the repository has {found}; restore affected snapshots from another copy or take new backups"
            ),
        ));
    } else if !ctx.json() {
        outln!("no problems found")?;
    }
    Ok(())
}

/// How far the object locks cover the kept snapshots, in words.
fn print_locks(c: &LockCoverage) -> Result<()> {
    let first = c
        .first_lock_end
        .map(|t| format!(", the first lock ending {}", fmt_time(t)))
        .unwrap_or_default();
    outln!(
        "object lock: {} for {} days; {} the kept snapshots need{first}",
        c.mode,
        c.days,
        counted(c.objects, "object")
    )?;
    if c.unprotected > 0 {
        eprintln!(
            "warning: {} kept snapshots need {} no lock or one already over: anyone with the store's credentials can delete {}; `strongroom forget --prune` locks them again",
            counted(c.unprotected, "object"),
            if c.unprotected == 1 { "has" } else { "have" },
            if c.unprotected == 1 { "it" } else { "them" },
        );
    }
    if c.short > c.unprotected {
        eprintln!(
            "warning: {} lock ends before the snapshots that need {} could be released; `strongroom forget --prune` (daily) keeps extending them",
            counted(c.short - c.unprotected, "object"),
            if c.short - c.unprotected == 1 {
                "it"
            } else {
                "them"
            },
        );
    }
    for g in c.gaps.iter().take(5) {
        let until = g.locked_until.map_or("not locked".to_string(), |t| {
            format!("locked until {}", fmt_time(t))
        });
        let needed = g
            .needed_until
            .map_or("kept by the policy indefinitely".to_string(), |t| {
                format!("needed until at least {}", fmt_time(t))
            });
        eprintln!(
            "  {}: {until}, {needed} (snapshots {})",
            g.object,
            g.snapshots.join(", ")
        );
    }
    Ok(())
}

fn print_human(report: &CheckReport, read_data: bool) -> Result<()> {
    if report.snapshots == 0 && report.packs == 0 && report.chunks == 0 {
        outln!("an empty repository: no snapshots, packs or chunks yet")?;
    } else {
        outln!(
            "{}, {}, {}{}",
            counted(report.snapshots, "snapshot"),
            counted(report.packs, "pack"),
            counted(report.chunks, "chunk"),
            if read_data && report.packs > 0 {
                format!(
                    "; {} read and authenticated",
                    human_bytes(report.bytes_read)
                )
            } else {
                String::new()
            }
        )?;
    }
    for p in &report.problems {
        let affects = match p.snapshots.as_slice() {
            [] => String::new(),
            [one] => format!(" (affects snapshot {})", short(one)),
            many => format!(
                " (affects snapshots {})",
                many.iter().map(|s| short(s)).collect::<Vec<_>>().join(", ")
            ),
        };
        eprintln!("damaged: {}{affects}", p.describe());
    }
    let u = &report.unreferenced;
    if u.packs > 0 {
        outln!(
            "unreferenced: {} ({}) that no snapshot needs, left by interrupted or failed backups; {} unneeded in all; prune reclaims them",
            counted(u.packs, "pack"),
            human_bytes(u.pack_bytes),
            counted(u.chunks, "chunk")
        )?;
    } else if u.chunks > 0 {
        outln!(
            "unreferenced: {} no snapshot needs, in packs that hold needed ones too; prune repacks them when it is worth it",
            counted(u.chunks, "chunk")
        )?;
    }
    if u.temporary_objects > 0 {
        outln!(
            "unreferenced: {} ({}) left by interrupted writes",
            counted(u.temporary_objects, "temporary object"),
            human_bytes(u.temporary_bytes)
        )?;
    }
    if let Some(c) = &report.object_lock {
        print_locks(c)?;
    }
    Ok(())
}

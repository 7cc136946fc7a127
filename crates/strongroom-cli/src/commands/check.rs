//! `strongroom check`: the repository's integrity.

use crate::context::Ctx;
use crate::failure::reported;
use crate::output::{outln, print_json, short};
use anyhow::Result;
use strongroom::jobs::integrity::CheckReport;
use strongroom::{ErrorKind, counted, human_bytes};

/// Checks that everything a snapshot needs is present (and with `read_data`, intact).
pub fn run(ctx: &Ctx, read_data: bool) -> Result<()> {
    let repo = ctx.open()?;
    let report = strongroom::jobs::integrity::run(&repo, read_data, &ctx.progress)?;
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
    Ok(())
}

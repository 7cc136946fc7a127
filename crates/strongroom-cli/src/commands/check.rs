//! `strongroom check`: the repository's integrity.

use crate::context::Ctx;
use crate::failure::reported;
use crate::output::{outln, print_json, short};
use anyhow::Result;
use strongroom::{ErrorKind, human_bytes};

/// Checks that everything a snapshot needs is present (and with `read_data`, intact).
pub fn run(ctx: &Ctx, read_data: bool) -> Result<()> {
    let repo = ctx.open()?;
    let report = strongroom::integrity::run(&repo, read_data, &ctx.progress)?;
    if ctx.json() {
        print_json(&report)?;
    } else {
        outln!(
            "{} snapshot(s), {} pack(s), {} chunk(s){}",
            report.snapshots,
            report.packs,
            report.chunks,
            if read_data {
                format!(
                    ", {} read and authenticated",
                    human_bytes(report.bytes_read)
                )
            } else {
                String::new()
            }
        )?;
        for p in &report.problems {
            let affects = if p.snapshots.is_empty() {
                String::new()
            } else {
                format!(
                    " (affects snapshot(s) {})",
                    p.snapshots
                        .iter()
                        .map(|s| short(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            eprintln!("damaged: {}{affects}", p.describe());
        }
        let u = &report.unreferenced;
        if u.packs > 0 || u.chunks > 0 {
            outln!(
                "unreferenced: {} pack(s) holding {} that no snapshot needs, {} chunk(s) in all (interrupted or failed backups; prune reclaims them)",
                u.packs,
                human_bytes(u.pack_bytes),
                u.chunks
            )?;
        }
        if u.temporary_objects > 0 {
            outln!(
                "unreferenced: {} temporary object(s), {}, left by interrupted writes",
                u.temporary_objects,
                human_bytes(u.temporary_bytes)
            )?;
        }
    }
    if !report.ok {
        let p = &report.problems[0];
        return Err(reported(
            ErrorKind::DamagedData,
            format!(
                "the repository has {} problem(s), first: {}; restore affected snapshots from another copy or take new backups",
                report.problems.len(),
                p.describe()
            ),
        ));
    } else if !ctx.json() {
        outln!("no problems found")?;
    }
    Ok(())
}

//! `strongroom list`: snapshots, oldest first.

use crate::args::FilterArgs;
use crate::context::Ctx;
use crate::failure::reported;
use crate::output::{fmt_time, outln, print_json, short};
use anyhow::Result;
use strongroom::repository::snapshot::Snapshot;
use strongroom::{ErrorKind, human_bytes};

/// Lists the snapshots that match the filter; damaged manifests are named on stderr and
/// make the command fail after the intact ones were listed.
pub fn run(ctx: &Ctx, filter: &FilterArgs) -> Result<()> {
    let repo = ctx.open()?;
    let f = filter.filter(&ctx.config);
    let (all, damaged) = repo.snapshots_lenient()?;
    let snaps: Vec<Snapshot> = all
        .into_iter()
        .filter(|s| f.matches(s))
        .map(|mut s| {
            let name = ctx.source_name(&s.source);
            if name != s.source {
                s.source_location = Some(s.identity());
                s.source = name;
            }
            s
        })
        .collect();
    if ctx.json() {
        print_json(&snaps.iter().map(Snapshot::summary).collect::<Vec<_>>())?;
    } else if snaps.is_empty() {
        eprintln!("no snapshots");
    } else {
        let w = snaps
            .iter()
            .map(|s| s.source.len())
            .max()
            .unwrap_or(0)
            .max(6);
        outln!(
            "{:<8}  {:<19}  {:<w$}  {:<8}  {:>10}  {:>10}  tags",
            "id",
            "taken (UTC)",
            "source",
            "kind",
            "size",
            "added"
        )?;
        for s in &snaps {
            outln!(
                "{:<8}  {:<19}  {:<w$}  {:<8}  {:>10}  {:>10}  {}",
                s.short_id(),
                fmt_time(s.started_at),
                s.source,
                s.kind.as_str(),
                human_bytes(s.size),
                human_bytes(s.added),
                s.tags.join(",")
            )?;
        }
        outln!("{} snapshot(s)", snaps.len())?;
    }
    if let Some((id, e)) = damaged.first() {
        for (_, e) in &damaged {
            eprintln!("damaged: {e}");
        }
        // The list printed is the command's one JSON document; the damage is on stderr.
        return Err(reported(
            ErrorKind::DamagedData,
            format!(
                "{} snapshot manifest(s) could not be read, first {}: {e}; the snapshots listed are intact, run `strongroom check` for the full picture",
                damaged.len(),
                short(id)
            ),
        ));
    }
    Ok(())
}

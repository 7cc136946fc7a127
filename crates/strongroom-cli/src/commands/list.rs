//! `strongroom list`: snapshots, oldest first.

use crate::args::FilterArgs;
use crate::context::Ctx;
use crate::failure::reported;
use crate::output::{Align, Table, fmt_time, outln, print_json, short};
use anyhow::Result;
use strongroom::repository::snapshot::Snapshot;
use strongroom::{ErrorKind, human_bytes};

/// Lists the snapshots that match the filter; damaged manifests are named on stderr and
/// make the command fail after the intact ones were listed. With an append-only key, the
/// snapshots that key took (`Repository::catalog_snapshots`).
pub fn run(ctx: &Ctx, filter: &FilterArgs) -> Result<()> {
    let repo = ctx.open()?;
    let f = filter.filter(&ctx.config);
    // An append-only key lists what it wrote, from its catalog: it cannot open manifests.
    let (all, damaged) = match repo.role() {
        strongroom::crypto::KeyRole::Full => repo.snapshots_lenient()?,
        strongroom::crypto::KeyRole::AppendOnly => repo.catalog_snapshots()?,
    };
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
        let mut table = Table::new(&[
            ("id", Align::Left),
            ("taken (UTC)", Align::Left),
            ("source", Align::Left),
            ("kind", Align::Left),
            ("size", Align::Right),
            ("added", Align::Right),
            ("tags", Align::Left),
        ]);
        for s in &snaps {
            table.row([
                s.short_id().to_string(),
                fmt_time(s.started_at),
                s.source.clone(),
                s.kind.as_str().to_string(),
                human_bytes(s.size),
                human_bytes(s.added),
                s.tags.join(","),
            ]);
        }
        table.print()?;
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

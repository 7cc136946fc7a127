//! `strongroom show`: one snapshot.

use crate::args::ShowArgs;
use crate::context::Ctx;
use crate::output::{fmt_time, outln, print_json};
use anyhow::Result;
use strongroom::human_bytes;
use strongroom::repository::snapshot::Snapshot;

/// Shows the snapshot `args.reference` names.
pub fn run(ctx: &Ctx, args: ShowArgs) -> Result<()> {
    let repo = ctx.open()?;
    let s = repo.resolve(&args.reference, &args.filter.filter(&ctx.config))?;
    if ctx.json() {
        print_json(&s.summary())?;
    } else {
        print_snapshot(&s)?;
    }
    Ok(())
}

fn print_snapshot(s: &Snapshot) -> Result<()> {
    outln!("snapshot {}", s.id)?;
    outln!("  source      {} ({} {})", s.source, s.engine, s.kind)?;
    if !s.tags.is_empty() {
        outln!("  tags        {}", s.tags.join(", "))?;
    }
    let secs = (s.finished_at - s.started_at)
        .total(jiff::Unit::Second)
        .unwrap_or(0.0);
    outln!(
        "  taken       {} UTC ({secs:.1} s) on {}",
        fmt_time(s.started_at),
        s.hostname
    )?;
    outln!(
        "  size        {} ({} added to the repository)",
        human_bytes(s.size),
        human_bytes(s.added)
    )?;
    outln!("  version     {}", s.metadata.server_version)?;
    outln!(
        "  schema      {}",
        s.metadata.schema_version.as_deref().unwrap_or("-")
    )?;
    let width = s
        .metadata
        .extra
        .keys()
        .map(|k| k.len())
        .max()
        .unwrap_or(0)
        .max(11);
    for (k, v) in &s.metadata.extra {
        let shown = match v {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Number(n) if k.ends_with("_size") => {
                human_bytes(n.as_u64().unwrap_or(0))
            }
            other => other.to_string(),
        };
        outln!("  {k:<width$} {shown}")?;
    }
    outln!("  row counts")?;
    for (t, n) in &s.metadata.row_counts {
        outln!("    {t:<28} {n:>12}")?;
    }
    Ok(())
}

//! `strongroom drill`: a timed recovery rehearsal, and `--history`, the trend of earlier ones.

use crate::args::{DrillArgs, FilterArgs};
use crate::context::Ctx;
use crate::failure::{fail, reported};
use crate::output::{outln, print_json, short};
use anyhow::{Context, Result};
use strongroom::ErrorKind;
use strongroom::engine::Scratch;
use strongroom::jobs::drill::{self, Plan, SEED_VAR};

/// Runs a drill (or lists earlier ones with `args.history`).
pub fn run(ctx: &Ctx, args: DrillArgs) -> Result<()> {
    if args.history {
        return list(ctx, &args.filter);
    }
    // A physical snapshot is recovered by a server whose restore_command runs
    // `strongroom wal fetch`: it must find this repository.
    ctx.export_access_env();
    let seed = match std::env::var(SEED_VAR) {
        Ok(v) => v.trim().parse::<u64>().map_err(|_| {
            fail(
                ErrorKind::BadInput,
                format!("{SEED_VAR}={v:?} is not a number; give the seed a drill printed"),
            )
        })?,
        Err(_) => u64::from_le_bytes(strongroom::crypto::random_bytes::<8>()),
    };
    let repo = ctx.open()?;
    strongroom::interrupt::install();
    let plan = Plan {
        filter: args.filter.filter(&ctx.config),
        reference: args.snapshot,
        seed,
        now: jiff::Timestamp::now(),
        config: &ctx.config,
        scratch: Scratch::configured(&ctx.config.verify),
    };
    let report = drill::run(&repo, &plan, &ctx.progress)?;
    eprintln!(
        "drill: snapshot {} of {} ({}; {SEED_VAR}={} replays it){}",
        short(&report.snapshot),
        report.source,
        report.choice,
        report.seed,
        report
            .recovery_target
            .as_deref()
            .map(|t| format!("; recovery target: {t}"))
            .unwrap_or_default()
    );
    let markdown = drill::report::markdown(&report);
    if let Some(file) = &args.report {
        std::fs::write(file, &markdown)
            .with_context(|| format!("writing the drill report to {}", file.display()))?;
    }
    if ctx.json() {
        print_json(&report)?;
    } else {
        outln!("{markdown}")?;
    }
    if !report.ok {
        return Err(reported(
            drill::failure_kind(&report),
            format!(
                "the drill of snapshot {} failed ({}); the report is kept{}",
                short(&report.snapshot),
                report.error.as_deref().unwrap_or("a check failed"),
                report
                    .report
                    .as_deref()
                    .map(|k| format!(" as {k}"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// `drill --history`: earlier drills, oldest first.
fn list(ctx: &Ctx, filter: &FilterArgs) -> Result<()> {
    let repo = ctx.open()?;
    let source = filter.source.as_deref().map(|s| ctx.config.source_match(s));
    let mut entries = drill::history(&repo, source)?;
    for e in &mut entries {
        e.source = e.source.as_deref().map(|s| ctx.source_name(s));
    }
    if ctx.json() {
        print_json(&entries)
    } else {
        outln!("{}", drill::report::history_table(&entries))
    }
}

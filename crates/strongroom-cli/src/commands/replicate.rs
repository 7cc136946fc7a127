//! `strongroom replicate`: continuous capture of a SQLite source, in the foreground.
//!
//! Turns the source argument and `[replicate]` into one call of
//! [`strongroom::jobs::replicate::run`], which stops when a signal sets its flag (the first
//! SIGTERM, SIGINT or SIGHUP stores what was committed and exits 0; a second exits at
//! once), and prints what the run did.

use crate::args::ReplicateArgs;
use crate::context::Ctx;
use crate::exposed;
use crate::output::{outln, print_json};
use anyhow::Result;
use strongroom::human_bytes;

/// Captures `args.source` (the only configured one when `None`) until a signal.
pub fn run(ctx: &Ctx, args: ReplicateArgs) -> Result<()> {
    let source = args.source.as_deref();
    if let Some(arg) = source {
        exposed::warn_password_in_argv(arg, "the source URL");
    }
    let repo = ctx.open()?;
    let src = ctx.config.source(source)?;
    let stop = strongroom::interrupt::stop_on_signals()?;
    let opts = ctx.config.replicate.options();
    tracing::info!(
        "capturing {} every {:?} into the repository; SIGTERM or Ctrl-C stops",
        src.name,
        opts.interval
    );
    let summary = strongroom::jobs::replicate::run(&repo, &src, &opts, &stop, &ctx.progress)?;
    if ctx.json() {
        print_json(&summary)?;
    } else {
        outln!(
            "{}: {} transactions in {} segments ({}) on chain {}{}",
            src.name,
            summary.transactions,
            summary.segments,
            human_bytes(summary.bytes),
            summary
                .chain
                .as_deref()
                .map_or("-", |c| &c[..c.len().min(12)]),
            match summary.bases {
                0 => " (resumed)".to_string(),
                n => format!(", {n} base snapshot{}", if n == 1 { "" } else { "s" }),
            }
        )?;
    }
    Ok(())
}

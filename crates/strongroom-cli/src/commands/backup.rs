//! `strongroom backup`: take a snapshot of a source.

use crate::args::BackupArgs;
use crate::context::Ctx;
use crate::exposed;
use crate::output::{outln, print_json};
use anyhow::Result;
use strongroom::human_bytes;
use strongroom::jobs::backup::BackupOptions;
use strongroom::repository::snapshot::BackupKind;

/// Backs up `args.source` (the only configured one when `None`).
pub fn run(ctx: &Ctx, args: BackupArgs) -> Result<()> {
    let source = args.source.as_deref();
    if let Some(arg) = source {
        // A configured name is never a URL, so this only looks at URLs typed on the line.
        exposed::warn_password_in_argv(arg, "the source URL");
    }
    let repo = ctx.open()?;
    let src = ctx.config.source(source)?;
    let opts = BackupOptions {
        tags: args.tags,
        kind: args.kind.map(BackupKind::from),
    };
    // Ctrl-C must not leave a spool file (a copy of the database) behind.
    strongroom::interrupt::install();
    let snap = strongroom::jobs::backup::run(&repo, &src, &opts, &ctx.progress)?;
    if ctx.json() {
        print_json(&snap.summary())?;
    } else {
        let secs = (snap.finished_at - snap.started_at)
            .total(jiff::Unit::Second)
            .unwrap_or(0.0);
        outln!(
            "snapshot {} saved: {} of {}, {} added, {secs:.2} s",
            snap.short_id(),
            snap.source,
            human_bytes(snap.size),
            human_bytes(snap.added)
        )?;
    }
    Ok(())
}

//! `strongroom export`: a snapshot as the database's own artifact, for a way out without
//! strongroom.
//!
//! Turns the flags into one [`strongroom::jobs::export::ExportRequest`] (which snapshot, the
//! file, the recipient, `--force`) and prints what the library's export wrote. Must not
//! decide which files an export writes or how (the library's).

use crate::args::ExportArgs;
use crate::context::Ctx;
use crate::output::{Align, Table, fmt_time, outln, print_json};
use anyhow::Result;
use strongroom::human_bytes;
use strongroom::jobs::export::{ExportOutcome, ExportRequest};
use strongroom::recipient::Recipient;
use strongroom::repository::snapshot::BackupKind;

/// Exports the snapshot `args.reference` names to `args.to`.
pub fn run(ctx: &Ctx, args: ExportArgs) -> Result<()> {
    // Checked before the repository is opened: a bad key costs nothing.
    let recipient = match (&args.age_recipient, &args.gpg_recipient) {
        (Some(key), _) => Some(Recipient::age(key)?),
        (None, Some(id)) => Some(Recipient::gpg(id)?),
        (None, None) => None,
    };
    let repo = ctx.open()?;
    // Ctrl-C or SIGTERM removes the partly written files before exit.
    strongroom::interrupt::install();
    let t = std::time::Instant::now();
    let out = strongroom::jobs::export::run(
        &repo,
        ExportRequest {
            reference: args.reference,
            filter: args.filter.filter(&ctx.config),
            kind: args.kind.map(BackupKind::from),
            to: args.to,
            recipient,
            force: args.force,
        },
        &ctx.progress,
    )?;
    print(ctx, &out, t.elapsed().as_secs_f64())
}

fn print(ctx: &Ctx, out: &ExportOutcome, seconds: f64) -> Result<()> {
    let s = &out.snapshot;
    if ctx.json() {
        return print_json(&serde_json::json!({
            "snapshot": s.id, "short_id": s.short_id(), "source": s.source,
            "engine": s.engine.to_string(), "kind": s.kind.to_string(),
            "taken": s.started_at.to_string(),
            "files": out.files,
            "bytes": out.files.iter().map(|f| f.bytes).sum::<u64>(),
            "data_bytes": out.files.iter().map(|f| f.data_bytes).sum::<u64>(),
            "encrypted_to": out.recipient,
            "seconds": seconds,
        }));
    }
    outln!(
        "exported snapshot {} of {} ({} {}, taken {} UTC) in {seconds:.2} s",
        s.short_id(),
        s.source,
        s.engine,
        s.kind,
        fmt_time(s.started_at)
    )?;
    let mut table = Table::headless(&[Align::Left, Align::Right, Align::Left]);
    for f in &out.files {
        let what = if f.replaced {
            format!("{} (replaced the previous file)", f.what)
        } else {
            f.what.to_string()
        };
        table.row([f.path.display().to_string(), human_bytes(f.bytes), what]);
    }
    table.print()?;
    match &out.recipient {
        Some(r) => outln!("encrypted to {r}")?,
        None => outln!("not encrypted: the files hold the data in the clear (mode 0600)")?,
    }
    Ok(())
}

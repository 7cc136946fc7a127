//! `strongroom verify`: prove snapshots restore, by restoring them.

use crate::args::VerifyArgs;
use crate::context::Ctx;
use crate::failure::{fail, reported};
use crate::output::{outln, print_json, short};
use anyhow::Result;
use strongroom::ErrorKind;
use strongroom::engine::Scratch;
use strongroom::repository::snapshot::Snapshot;

/// Test-restores the snapshot `args.reference` names (default `latest`), or every one with
/// `args.all`.
pub fn run(ctx: &Ctx, args: VerifyArgs) -> Result<()> {
    // Physical snapshots are test-restored by a server whose restore_command runs
    // `strongroom wal fetch`: it must find this repository.
    ctx.export_access_env();
    let repo = ctx.open()?;
    let (snaps, damaged) = if args.all {
        let f = args.filter.filter(&ctx.config);
        // A damaged manifest is reported, not fatal: its source and tags are unknown, so it is
        // listed whatever the filter says.
        let (good, damaged) = repo.snapshots_lenient()?;
        let v: Vec<Snapshot> = good.into_iter().filter(|s| f.matches(s)).collect();
        if v.is_empty() && damaged.is_empty() {
            return Err(fail(ErrorKind::NotFound, "no snapshots to verify"));
        }
        (v, damaged)
    } else {
        let reference = args.reference.as_deref().unwrap_or("latest");
        let one = repo.resolve_one_source(reference, &args.filter.filter(&ctx.config))?;
        (vec![one], Vec::new())
    };
    let scratch = Scratch::configured(&ctx.config.verify);
    strongroom::interrupt::install();
    let report = strongroom::jobs::verify::run(
        &repo,
        &snaps,
        &damaged,
        &|src| ctx.config.source_for(src),
        &scratch,
        &ctx.progress,
    )?;
    if ctx.json() {
        print_json(&report)?;
    } else {
        for s in &report.snapshots {
            outln!(
                "snapshot {}: {} (test restore {:.2} s)",
                short(&s.id),
                if s.ok { "ok" } else { "FAILED" },
                s.restore_seconds
            )?;
            for c in &s.checks {
                outln!(
                    "  [{}] {}: {}",
                    if c.ok { "ok" } else { "FAIL" },
                    c.name,
                    c.detail
                )?;
            }
        }
    }
    if !report.ok {
        let bad: Vec<&str> = report
            .snapshots
            .iter()
            .filter(|s| !s.ok)
            .map(|s| short(&s.id))
            .collect();
        return Err(reported(
            ErrorKind::CheckFailed,
            format!(
                "verification failed for snapshot(s) {}; see the checks above",
                bad.join(", ")
            ),
        ));
    }
    Ok(())
}

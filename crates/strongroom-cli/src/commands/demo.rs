//! `strongroom demo`: the whole story on an embedded hotel database.

use crate::args::DemoArgs;
use crate::context::Ctx;
use crate::output::{outln, print_json};
use anyhow::Result;
use strongroom::human_bytes;

/// Runs the demo in `args.dir` and prints its summary.
pub fn run(ctx: &Ctx, args: DemoArgs) -> Result<()> {
    // The story goes on when stdout is gone; the summary's write then ends the command.
    let mut say = |line: &str| {
        let _ = outln!("{line}");
    };
    let s = strongroom::jobs::demo::run(&args.dir, args.bookings, &mut say, &ctx.progress)?;
    if ctx.json() {
        return print_json(&s);
    }
    outln!()?;
    outln!("Summary")?;
    outln!(
        "  {:<28} {:>10} {:>10} {:>8}",
        "backup",
        "size",
        "added",
        "seconds"
    )?;
    for b in &s.backups {
        outln!(
            "  {:<28} {:>10} {:>10} {:>8.2}",
            b.label,
            human_bytes(b.size),
            human_bytes(b.added),
            b.seconds
        )?;
    }
    let later: u64 = s.backups.iter().skip(1).map(|b| b.added).sum();
    let first = s.backups.first().map(|b| b.added).unwrap_or(1).max(1);
    outln!(
        "  later backups together added {} ({:.1}% of the first)",
        human_bytes(later),
        later as f64 * 100.0 / first as f64
    )?;
    outln!(
        "  repository on disk {}; verify {:.2} s; restore {:.2} s; counts match: {}",
        human_bytes(s.repository_bytes),
        s.verify_seconds,
        s.restore_seconds,
        s.counts_match
    )?;
    outln!(
        "  drill: recovered in {:.2} s (RTO objective 1 h); data-loss window {:.0} s (RPO objective 15 min); status {}",
        s.drill_rto_seconds,
        s.drill_rpo_seconds,
        s.status
    )?;
    outln!(
        "  retention: {} forgotten{}",
        strongroom::counted(s.forgotten, "older snapshot"),
        if s.freed > 0 {
            format!(", {} freed by prune", human_bytes(s.freed))
        } else {
            String::new()
        }
    )?;
    outln!(
        "  continuous capture: {} bookings made, {} in the newest restore",
        s.captured.0,
        s.captured.1
    )?;
    outln!(
        "  demo finished in {:.1} s; everything is in {}",
        s.total_seconds,
        s.dir.display()
    )?;
    Ok(())
}

//! `strongroom demo`: the whole story on an embedded hotel database.

use crate::context::Ctx;
use crate::output::print_json;
use anyhow::Result;
use std::path::Path;
use strongroom::human_bytes;

/// Runs the demo in `dir` and prints its summary.
pub fn run(ctx: &Ctx, dir: &Path, bookings: u64) -> Result<()> {
    let mut say = |line: &str| println!("{line}");
    let s = strongroom::demo::run(dir, bookings, &mut say, &ctx.progress)?;
    if ctx.json() {
        return print_json(&s);
    }
    println!();
    println!("Summary");
    println!(
        "  {:<28} {:>10} {:>10} {:>8}",
        "backup", "size", "added", "seconds"
    );
    for b in &s.backups {
        println!(
            "  {:<28} {:>10} {:>10} {:>8.2}",
            b.label,
            human_bytes(b.size),
            human_bytes(b.added),
            b.seconds
        );
    }
    let later: u64 = s.backups.iter().skip(1).map(|b| b.added).sum();
    let first = s.backups.first().map(|b| b.added).unwrap_or(1).max(1);
    println!(
        "  later backups together added {} ({:.1}% of the first)",
        human_bytes(later),
        later as f64 * 100.0 / first as f64
    );
    println!(
        "  repository on disk {}; verify {:.2} s; restore {:.2} s; counts match: {}",
        human_bytes(s.repository_bytes),
        s.verify_seconds,
        s.restore_seconds,
        s.counts_match
    );
    println!(
        "  demo finished in {:.1} s; everything is in {}",
        s.total_seconds,
        s.dir.display()
    );
    Ok(())
}

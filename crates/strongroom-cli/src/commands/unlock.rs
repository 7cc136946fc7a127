//! `strongroom unlock`: removing stale locks, saying whose they were.

use crate::context::Ctx;
use crate::output::{outln, print_json};
use anyhow::{Context, Result};
use serde::Serialize;
use strongroom::counted;

/// `strongroom unlock`.
pub fn run(ctx: &Ctx, all: bool) -> Result<()> {
    #[derive(Serialize)]
    struct Removed {
        lock: String,
        holder: String,
        why: String,
    }
    let repo = ctx.open()?;
    let removed = repo
        .unlock(all, jiff::Timestamp::now())
        .context("removing locks")?;
    let out: Vec<Removed> = removed
        .iter()
        .map(|(l, why)| Removed {
            lock: l.name.clone(),
            holder: l.describe(),
            why: why.clone(),
        })
        .collect();
    let left = repo.locks()?.len();
    if ctx.json() {
        #[derive(Serialize)]
        struct Doc {
            removed: Vec<Removed>,
            remaining: usize,
        }
        return print_json(&Doc {
            removed: out,
            remaining: left,
        });
    }
    for r in &out {
        outln!("removed lock {}: {} ({})", r.lock, r.holder, r.why)?;
    }
    outln!(
        "{}; {}",
        match out.len() {
            0 => "no lock removed".to_string(),
            n => format!("removed {}", counted(n, "lock")),
        },
        match left {
            0 => "no lock is held".to_string(),
            1 => "1 is still held by a running job".to_string(),
            n => format!("{n} are still held by running jobs"),
        }
    )?;
    Ok(())
}

//! `strongroom repair`: rebuilding what can be derived again (the index, from pack trailers).

use crate::args::RepairAction;
use crate::context::Ctx;
use crate::output::{outln, print_json};
use anyhow::Result;

/// `strongroom repair …`.
pub fn run(ctx: &Ctx, action: RepairAction) -> Result<()> {
    match action {
        RepairAction::Index => {
            let repo = ctx.open()?;
            let r = strongroom::jobs::repair::index(&repo, &ctx.progress)?;
            if ctx.json() {
                return print_json(&r);
            }
            outln!(
                "index rebuilt from {} pack(s): {} chunk(s) in {} index object(s); {} old index object(s) removed",
                r.packs,
                r.chunks,
                r.index_written,
                r.index_removed
            )?;
            for u in &r.unreadable_packs {
                outln!("left out (recorded damaged): {u}")?;
            }
            Ok(())
        }
    }
}

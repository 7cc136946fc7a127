//! `strongroom runbook`: this deployment's emergency procedure, as Markdown on stdout.
//!
//! Must not decide what the runbook says (`strongroom::runbook` does); here are only where
//! the repository and config are, the clock, and printing.

use crate::context::Ctx;
use crate::output::{outln, print_json};
use anyhow::Result;
use strongroom::runbook;

/// Writes the runbook for every source, or for `source` only.
pub fn run(ctx: &Ctx, source: Option<&str>) -> Result<()> {
    let repo = ctx.open()?;
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let url = ctx.access().url()?;
    // A relative repository path means nothing to whoever reads the page elsewhere.
    let url = if url.contains("://") {
        url
    } else {
        abs(std::path::Path::new(&url)).display().to_string()
    };
    let program = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "strongroom".into());
    let inputs = runbook::gather(
        &repo,
        runbook::Context {
            config: &ctx.config,
            config_path: ctx.config_path.as_deref().map(abs),
            repository: url,
            only_source: source.map(str::to_string),
            now: jiff::Timestamp::now(),
            program: format!("{program} {}", env!("CARGO_PKG_VERSION")),
        },
    )?;
    let md = runbook::render(&inputs)?;
    if ctx.json() {
        print_json(&serde_json::json!({ "markdown": md }))?;
    } else {
        outln!("{}", md.trim_end())?;
    }
    Ok(())
}

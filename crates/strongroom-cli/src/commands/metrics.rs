//! `strongroom metrics`: Prometheus text exposition format on stdout.

use crate::context::Ctx;
use anyhow::Result;
use std::io::Write;
use strongroom::monitor::{evaluate, evidence, metrics};

/// Prints the metrics of every source (or one).
pub fn run(ctx: &Ctx, source: Option<&str>) -> Result<()> {
    let repo = ctx.open()?;
    let now = jiff::Timestamp::now();
    let scope = evidence::Scope {
        source: source.map(str::to_string),
        ask_servers: true,
        repository_size: true,
        copies: true,
        protection: false,
    };
    let ev = evidence::gather(&repo, &ctx.config, &scope)?;
    let health = evaluate::evaluate(&ctx.config, &ev, now);
    let text = metrics::render(&ctx.config, &ev, &health, now);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(crate::output::stdout_error)
}

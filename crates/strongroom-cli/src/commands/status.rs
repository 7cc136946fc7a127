//! `strongroom status`: health per source, alerts on state changes and new problems (when
//! `[[alerts]]` has a target), what protects the repository and its copies, exit 1 when
//! anything needs attention.

use crate::args::StatusArgs;
use crate::context::Ctx;
use crate::failure::ExitWith;
use crate::output::{outln, print_json};
use anyhow::Result;
use std::io::IsTerminal;
use strongroom::monitor::notify::Told;
use strongroom::monitor::{Health, Level, evaluate, evidence, notify};

/// The contract's document, with the checklist and the alerts sent beside it.
#[derive(serde::Serialize)]
struct Report<'a> {
    ok: bool,
    level: Level,
    at: String,
    sources: &'a [strongroom::monitor::SourceHealth],
    alerts: &'a [notify::Notice],
    /// What protects the repository and each copy from a stolen host.
    protection: &'a [strongroom::monitor::protection::Protection],
}

fn paint(level: Level, text: &str) -> String {
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if !color {
        return text.to_string();
    }
    let code = match level {
        Level::Ok => "32",
        Level::Warning => "33",
        Level::Critical => "31;1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn marker(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok  ",
        Level::Warning => "WARN",
        Level::Critical => "CRIT",
    }
}

/// Judges every source (or one), sends alerts for changed levels, prints, and exits 1 when
/// anything is not ok.
pub fn run(ctx: &Ctx, args: StatusArgs) -> Result<()> {
    let repo = ctx.open()?;
    let now = jiff::Timestamp::now();
    let scope = evidence::Scope {
        source: args.source,
        ask_servers: true,
        repository_size: false,
        copies: true,
        protection: true,
    };
    let ev = evidence::gather(&repo, &ctx.config, &scope)?;
    let health = evaluate::evaluate(&ctx.config, &ev, now);
    // No target for alerts (none, or only Healthchecks pings): nobody is told, so nothing
    // is sent or remembered as said.
    let hears = ctx.config.alerts.iter().any(|t| t.hears_alerts());
    let notices = if args.no_alerts || !hears {
        Vec::new()
    } else {
        let deliver = |a: &strongroom::alert::Alert| crate::alerting::deliver(ctx, a);
        match notify::notify(&repo, &health, now, &deliver) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("could not read or remember the alert state: {e}");
                Vec::new()
            }
        }
    };
    if ctx.json() {
        print_json(&Report {
            ok: health.ok,
            level: health.level(),
            at: health.at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            sources: &health.sources,
            alerts: &notices,
            protection: &ev.protection,
        })?;
    } else {
        print_human(&health, &notices, &ev.protection)?;
    }
    if health.ok {
        Ok(())
    } else {
        Err(anyhow::Error::new(ExitWith {
            code: 1,
            quiet: true,
            inner: anyhow::anyhow!("attention needed"),
        }))
    }
}

fn print_human(
    health: &Health,
    notices: &[notify::Notice],
    protection: &[strongroom::monitor::protection::Protection],
) -> Result<()> {
    if health.sources.is_empty() {
        outln!(
            "nothing to judge: no source is configured and the repository has no snapshot; add [sources.NAME] to the config or take a backup"
        )?;
    }
    for s in &health.sources {
        outln!(
            "{}  {}",
            s.source,
            paint(s.level, &s.level.name().to_uppercase())
        )?;
        let w = s.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &s.checks {
            outln!(
                "  {}  {:<w$}  {}",
                paint(c.level, marker(c.level)),
                c.name,
                c.detail
            )?;
        }
        let mut line = String::from("  checklist:");
        for period in ["daily", "weekly", "monthly", "quarterly"] {
            let items: Vec<_> = s.checklist.iter().filter(|i| i.period == period).collect();
            if items.is_empty() {
                continue;
            }
            let done = items.iter().filter(|i| i.done).count();
            line.push_str(&format!(" {period} {done}/{}", items.len()));
        }
        outln!("{line}")?;
        for i in s.checklist.iter().filter(|i| !i.done) {
            outln!(
                "    [ ] {}: {} (see {})",
                i.period,
                i.item,
                i.evidence.join(", ")
            )?;
        }
    }
    if !protection.is_empty() {
        outln!("protection")?;
        for p in protection {
            outln!("  {} ({}): {}", p.name, p.repository, p.describe())?;
        }
    }
    for n in notices {
        outln!("{}", notice_line(n))?;
    }
    Ok(())
}

/// One alert `status` handed to the targets, in words: what became of it and what it said.
fn notice_line(n: &notify::Notice) -> String {
    let told = match n.told {
        Told::Sent => "alert sent",
        Told::NotWanted => "alert not wanted by any target (min_level)",
        Told::Failed => "alert NOT delivered (will retry next run)",
    };
    let what = match n.from {
        Some(from) if from == n.to => format!(
            "{} has a new problem (still {}): {}",
            n.source,
            n.to.name(),
            n.new_checks.join(", ")
        ),
        Some(from) => format!("{} {} → {}", n.source, from.name(), n.to.name()),
        None => format!("{} is {} (first alert about it)", n.source, n.to.name()),
    };
    format!("{told}: {what}")
}

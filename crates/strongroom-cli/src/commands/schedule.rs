//! `strongroom schedule export`: the daemon's schedules as a crontab, systemd units, a
//! GitHub Actions workflow or Kubernetes CronJobs, printed or written into a directory.
//!
//! Must not decide what the files say (`strongroom::schedule::export` does); here are only
//! how the generated commands are spelled on this host (this program's path, the config's
//! absolute path, the --repo and --password-file given), the clock, and printing.

use crate::args::{ScheduleAction, ScheduleExportArgs};
use crate::context::Ctx;
use crate::output::{outln, print_json};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use strongroom::schedule::Plan;
use strongroom::schedule::export::{self, Format, Options};

/// Runs a `schedule` action.
pub fn run(ctx: &Ctx, action: ScheduleAction) -> Result<()> {
    match action {
        ScheduleAction::Export(a) => export(ctx, a),
    }
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The config as the workflow names it: its path in the repository's checkout.
fn workflow_config(config: &Path) -> Result<String> {
    if config.is_relative() {
        let s = config.display().to_string();
        return Ok(s.strip_prefix("./").unwrap_or(&s).to_string());
    }
    let mut dir = config.parent();
    while let Some(d) = dir {
        if d.join(".git").exists() {
            let rel = config.strip_prefix(d).unwrap_or(config);
            return Ok(rel.display().to_string());
        }
        dir = d.parent();
    }
    bail!(
        "{} is not in a git checkout, and the workflow finds the config by its path in the repository: give --config relative to the repository's root",
        config.display()
    )
}

/// Whether `zone` reads times as this host's zone does (the same offset all year).
fn host_zone_is(zone: &jiff::tz::TimeZone) -> bool {
    let host = jiff::tz::TimeZone::system();
    let start = jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(56 * 365 * 24);
    (0..27).all(|i| {
        let t = start + jiff::SignedDuration::from_hours(i * 14 * 24);
        host.to_offset(t) == zone.to_offset(t)
    })
}

fn export(ctx: &Ctx, a: ScheduleExportArgs) -> Result<()> {
    let Some(config) = &ctx.config_path else {
        bail!(
            "no config file: give it with --config FILE (or STRONGROOM_CONFIG, or ./strongroom.toml); the schedules come from its [sources.NAME.schedule] tables"
        );
    };
    let mut global = vec!["--config".to_string(), abs(config).display().to_string()];
    if let Some(url) = &ctx.global.repo {
        let url = if url.contains("://") {
            url.clone()
        } else {
            abs(Path::new(url)).display().to_string()
        };
        global.extend(["--repo".into(), url]);
    }
    if let Some(f) = &ctx.global.password_file {
        global.extend(["--password-file".into(), abs(f).display().to_string()]);
    }
    let program = std::env::current_exe()
        .map(|p| abs(&p).display().to_string())
        .unwrap_or_else(|_| "strongroom".into());
    let opts = Options {
        program,
        global,
        workflow_config: match a.format {
            Format::GithubActions => workflow_config(config)?,
            _ => config.display().to_string(),
        },
        config_shown: abs(config).display().to_string(),
        image: a.image,
        now: jiff::Timestamp::now(),
    };
    let plan = Plan::of(&ctx.config)?;
    let files = export::export(a.format, &plan, &ctx.config, a.source.as_deref(), &opts)?;
    if a.format == Format::Crontab {
        let mut warned = Vec::new();
        for e in &plan.entries {
            if a.source.as_ref().is_none_or(|s| *s == e.source)
                && !warned.contains(&e.tz_name)
                && !host_zone_is(&e.tz)
            {
                eprintln!(
                    "warning: {}'s schedule is in {}, not this host's zone: cronie reads the crontab's CRON_TZ= line, Debian's and Ubuntu's cron do not (use --format systemd there)",
                    e.source, e.tz_name
                );
                warned.push(e.tz_name.clone());
            }
        }
    }
    let Some(dir) = &a.output else {
        if ctx.json() {
            let files: Vec<_> = files
                .iter()
                .map(|f| serde_json::json!({ "name": f.name, "text": f.text }))
                .collect();
            return print_json(&serde_json::json!({ "format": a.format.name(), "files": files }));
        }
        let text = match a.format {
            Format::Systemd => export::concatenated(&files),
            _ => files.iter().map(|f| f.text.as_str()).collect(),
        };
        outln!("{}", text.trim_end())?;
        return Ok(());
    };
    let stale = export::write_files(dir, &files, a.force)?;
    let written: Vec<PathBuf> = files.iter().map(|f| dir.join(&f.name)).collect();
    if ctx.json() {
        return print_json(&serde_json::json!({
            "format": a.format.name(),
            "written": written,
            "no_longer_scheduled": stale,
        }));
    }
    for p in &written {
        outln!("wrote {}", p.display())?;
    }
    for p in &stale {
        outln!(
            "no longer scheduled, left in place (remove it{}): {}",
            if a.format == Format::Systemd {
                " after disabling its timer"
            } else {
                ""
            },
            p.display()
        )?;
    }
    Ok(())
}

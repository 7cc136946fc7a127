//! `strongroom daemon`: the config's schedules until SIGTERM, and the dashboard with
//! `--listen`; `--hash-password` prints a hash for `[[daemon.users]]`.

use crate::args::DaemonArgs;
use crate::context::Ctx;
use crate::output::outln;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::io::IsTerminal;

/// Runs the daemon (or hashes a password).
pub fn run(ctx: &Ctx, args: DaemonArgs) -> Result<()> {
    if args.hash_password {
        let password = if std::io::stdin().is_terminal() {
            let mut t = crate::prompt::Terminal::open()
                .context("no terminal to ask for the password on; pipe it on standard input")?;
            t.ask_hidden("Dashboard password: ")?
        } else {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            strongroom::process::first_line(&line)
        };
        if password.is_empty() {
            return Err(crate::failure::usage(
                "the password is empty: type one, or pipe it on standard input",
            ));
        }
        outln!(
            "{}",
            strongroom::dashboard::login::hash_password(&password)?
        )?;
        return Ok(());
    }
    let repo = ctx.open()?;
    let exe =
        std::env::current_exe().context("cannot find the strongroom binary to run jobs with")?;
    let opts = strongroom::daemon::service::Options {
        exe,
        global: job_options(ctx),
        listen: args.listen,
        on_listen: Box::new(|addr| eprintln!("strongroom: dashboard on http://{addr}/")),
    };
    strongroom::daemon::service::run(repo, ctx.config.clone(), opts)?;
    Ok(())
}

/// The daemon's own global options, for each job it runs: the same config (absolute, so a
/// job does not depend on the working directory), repository and password file.
fn job_options(ctx: &Ctx) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::new();
    if let Some(p) = &ctx.config_path {
        v.push("--config".into());
        v.push(std::path::absolute(p).unwrap_or_else(|_| p.clone()).into());
    }
    if let Some(r) = &ctx.global.repo {
        v.push("--repo".into());
        v.push(r.into());
    }
    if let Some(p) = &ctx.global.password_file {
        v.push("--password-file".into());
        v.push(std::path::absolute(p).unwrap_or_else(|_| p.clone()).into());
    }
    for _ in 0..ctx.global.verbose {
        v.push("-v".into());
    }
    v
}

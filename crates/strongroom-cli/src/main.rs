//! `strongroom`: the command-line face of the strongroom library.
//!
//! Owns argument parsing ([`args`]), reading the config and opening the repository through
//! the library ([`context`]), one file per command ([`commands`]), output formatting (human
//! text or `--json` on stdout; logs, progress and errors on stderr) and exit codes: 0
//! success, 1 failure (one plain sentence on stderr first, and with `--json` an error
//! document on stdout), 2 usage error. Output cut short by its reader (`| head`) ends the
//! command quietly with 0. A failed job is also alerted ([`alerting`]), after its report, and a
//! job's start and end are pinged to Healthchecks targets ([`pings`]). Holds no domain logic: every operation is a call into the library.

mod alerting;
mod args;
mod commands;
mod context;
mod exposed;
mod failure;
mod help_layout;
mod output;
mod pings;
mod progress;
mod prompt;

use clap::{CommandFactory, FromArgMatches};
use std::io::IsTerminal;

fn init_logs(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // Other crates stay quiet unless asked: OpenDAL logs every retry with a backtrace.
    let default = match verbose {
        0 => "strongroom=warn,strongroom_cli=warn",
        1 => "strongroom=info,strongroom_cli=info",
        2 => "strongroom=debug,strongroom_cli=debug,opendal=info",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("STRONGROOM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!no_color && std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// The command line, parsed as `Cli::parse` would, with after-help text laid out by
/// [`help_layout`] (examples whole, prose filled).
fn parse() -> args::Cli {
    let mut matches = help_layout::apply(args::Cli::command()).get_matches();
    args::Cli::from_arg_matches_mut(&mut matches)
        .unwrap_or_else(|e| e.format(&mut args::Cli::command()).exit())
}

/// Fixes glibc's mmap threshold at 4 MiB, before any thread starts. The pipelines hand
/// buffers of several megabytes between threads (12 MB restore steps, 8 MB ranged reads,
/// 16 MiB packs); glibc's default threshold rises to the size of the first such block freed,
/// after which these come from per-thread arenas that keep freed memory, so the same export
/// peaked anywhere between 87 and 105 MB of RSS depending on thread timing. Above a fixed
/// threshold they are mapped and unmapped whole: memory follows what is live. (The reader
/// also reuses its buffers; this covers every other pipeline.)
fn steady_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first in main, before any other thread exists; it only tunes malloc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

fn main() {
    steady_allocator();
    let cli = parse();
    init_logs(cli.global.verbose);
    let json = cli.global.json;
    let watched = alerting::watch(&cli.global, &cli.command);
    // Before the work: a Healthchecks target hears the job start.
    let run = pings::start(watched.as_ref());
    let result = commands::run(cli.global, cli.command);
    // A signal may have cut the work short: its cleanups finish before any exit.
    if let Some(code) = strongroom::interrupt::settle() {
        std::process::exit(code);
    }
    if let Err(e) = result {
        if e.downcast_ref::<output::StdoutClosed>().is_some() {
            // The reader took what it wanted (`strongroom list | head -1`): the work is
            // done and there is no one to tell, so exit quietly, as a completed command.
            pings::finish(run, pings::Ended::Succeeded);
            return;
        }
        if let Some(x) = e.downcast_ref::<failure::ExitWith>() {
            // A quiet exit is an expected answer (status finding something to attend to),
            // not a failed job: no report, no alert, but a run that needs attention.
            if x.quiet {
                pings::finish(run, pings::Ended::NeedsAttention);
            } else {
                failure::report(&x.inner, json);
                alerting::failed(watched, &x.inner);
                pings::finish(run, pings::Ended::Failed(&x.inner));
            }
            exposed::print_held_warnings();
            std::process::exit(x.code);
        }
        failure::report(&e, json);
        // After the report, so the user reads the failure before alerts go out.
        alerting::failed(watched, &e);
        pings::finish(run, pings::Ended::Failed(&e));
        exposed::print_held_warnings();
        std::process::exit(failure::exit_code(&e));
    }
    pings::finish(run, pings::Ended::Succeeded);
    exposed::print_held_warnings();
}

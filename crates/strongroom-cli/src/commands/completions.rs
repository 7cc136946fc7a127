//! `strongroom completions SHELL`: a completion script, generated from the clap definitions
//! in `args`, so it always matches the commands and flags of this build.

use crate::args::Cli;
use crate::output::stdout_error;
use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;

/// Prints the completion script for `shell` on stdout.
pub fn run(shell: Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "strongroom", &mut script);
    std::io::stdout().write_all(&script).map_err(stdout_error)
}

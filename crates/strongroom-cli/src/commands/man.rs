//! `strongroom man`: manual pages in roff, generated from the clap definitions in `args`, so
//! they always say what `--help` says.
//!
//! Without `--dir`, the page for `strongroom` itself goes to stdout (`strongroom man | man
//! -l -`); with `--dir DIR`, one page per command is written there (`strongroom.1`,
//! `strongroom-backup.1`, `strongroom-key-add.1`, …), for packagers.

use crate::args::Cli;
use crate::output::stdout_error;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// Prints the main page, or writes every page into `dir`.
pub fn run(dir: Option<&Path>) -> Result<()> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("rendering the man page")?;
            std::io::stdout().write_all(&page).map_err(stdout_error)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            eprintln!("man pages written to {}", dir.display());
            Ok(())
        }
    }
}

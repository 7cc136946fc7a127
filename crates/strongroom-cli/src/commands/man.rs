//! `strongroom man`: manual pages in roff, generated from the clap definitions in `args`, so
//! they always say what `--help` says.
//!
//! Without `--dir`, the page for `strongroom` itself goes to stdout (`strongroom man | man
//! -l -`); with `--dir DIR`, one page per command is written there (`strongroom.1`,
//! `strongroom-backup.1`, `strongroom-key-add.1`, …), for packagers.
//!
//! clap_mangen renders everything but the text after the options: it would put each line
//! of that into a filled paragraph, so roff ran example commands together and broke them
//! anywhere. Here that text is read as `help_layout` reads it for `--help`, and written as
//! its own section: prose as filled paragraphs, examples and other verbatim lines inside
//! no-fill blocks (`.nf`/`.fi`), one command per line whatever the width.

use crate::args::Cli;
use crate::help_layout::{Block, blocks};
use crate::output::stdout_error;
use anyhow::{Context, Result};
use clap::CommandFactory;
use roff::{Roff, roman};
use std::io::Write;
use std::path::Path;

/// Prints the main page, or writes every page into `dir`.
pub fn run(dir: Option<&Path>) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    match dir {
        None => std::io::stdout()
            .write_all(page(&cmd)?.as_bytes())
            .map_err(stdout_error),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_pages(&cmd, dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            eprintln!("man pages written to {}", dir.display());
            Ok(())
        }
    }
}

/// Writes the page of `cmd` and of each visible subcommand, as clap_mangen names them.
fn write_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    std::fs::write(&path, page(cmd)?).with_context(|| format!("writing {}", path.display()))
}

/// The page of one (built) command.
fn page(cmd: &clap::Command) -> Result<String> {
    let after = cmd.get_after_help().map(|t| t.to_string());
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone().after_help(None::<&str>))
        .render(&mut out)
        .context("rendering the man page")?;
    let mut page = String::from_utf8(out).context("rendering the man page")?;
    if let Some(text) = after {
        let mut extra = Vec::new();
        section(&text).to_writer(&mut extra)?;
        let extra = String::from_utf8(extra).context("rendering the man page")?;
        // Where clap_mangen puts that text: before the version and authors.
        let at = page.find("\n.SH VERSION").map_or(page.len(), |i| i + 1);
        page.insert_str(at, &extra);
    }
    Ok(page)
}

/// The after-help text as a roff section.
fn section(text: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES AND NOTES"]);
    for placed in blocks(text) {
        match placed.block {
            Block::Prose(p) => {
                roff.control("PP", []).text([roman(p)]);
            }
            Block::Verbatim(lines) => {
                if placed.gap_before {
                    roff.control("PP", []);
                }
                let indent = lines
                    .iter()
                    .map(|l| l.len() - l.trim_start().len())
                    .min()
                    .unwrap_or(0);
                roff.control("RS", ["4"]).control("nf", []);
                for line in &lines {
                    roff.text([roman(&line[indent..])]);
                }
                roff.control("fi", []).control("RE", []);
            }
        }
    }
    roff
}

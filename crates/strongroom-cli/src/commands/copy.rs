//! `strongroom copy`: snapshots and the WAL archive into a second repository (`--to URL`,
//! or every `[[copies]]` entry of the config), one library call per destination.

use crate::args::CopyArgs;
use crate::context::Ctx;
use crate::failure::{fail, reported, with_flags};
use crate::output::{outln, print_json, short};
use anyhow::Result;
use serde::Serialize;
use strongroom::access::{Access, PasswordVariable};
use strongroom::jobs::copy::{CopyOptions, CopyReport};
use strongroom::repository::journal::CopyFigures;
use strongroom::{Error, ErrorKind, human_bytes};

/// One destination in the `--json` document: the contract's figures, what could not be
/// copied, and the error that stopped the job there.
#[derive(Serialize)]
struct Entry {
    #[serde(flatten)]
    report: CopyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

/// Copies into each destination; exit 0 only when everything asked for is durable in all.
pub fn run(ctx: &Ctx, args: CopyArgs) -> Result<()> {
    let destinations: Vec<Access> = match &args.to {
        Some(url) => vec![Access::other(
            url,
            args.to_password_file.clone(),
            PasswordVariable::To,
            &ctx.config,
        )],
        None if ctx.config.copies.is_empty() => {
            return Err(fail(
                ErrorKind::BadInput,
                "copy has no destination: pass --to URL, or add a [[copies]] entry (a repository made with `strongroom init --copy-of`) to the config",
            ));
        }
        None => ctx
            .config
            .copies
            .iter()
            .map(|c| Access::other(&c.repository, None, PasswordVariable::To, &ctx.config))
            .collect(),
    };
    let source = ctx.open()?;
    let options = CopyOptions {
        references: args.references,
        filter: args.filter.filter(&ctx.config),
    };
    let mut entries = Vec::new();
    let mut failures: Vec<(ErrorKind, String)> = Vec::new();
    for to in &destinations {
        let url = to.url()?;
        match strongroom::jobs::copy::run(&source, to, &options, &ctx.progress) {
            Ok(report) => {
                if !ctx.json() {
                    print_human(&report)?;
                }
                if let Some(sentence) = report.failures_found() {
                    let kind = report.failure_kind().unwrap_or(ErrorKind::DamagedData);
                    failures.push((kind, sentence));
                }
                entries.push(Entry {
                    report,
                    error: None,
                });
            }
            // One destination that cannot be copied into does not stop the others.
            Err(e) => {
                let sentence = match &e {
                    // The flag that fixes it is --to (or the config), not --repo.
                    Error::NoRepository(at) => format!(
                        "no strongroom repository at {at} to copy into: check --to or the [[copies]] entry (a typo?); `strongroom --repo {at} init --copy-of {}` makes a copy there",
                        source.storage().url()
                    ),
                    other => with_flags(other),
                };
                entries.push(Entry {
                    report: CopyReport {
                        figures: CopyFigures {
                            repository: url,
                            ..CopyFigures::default()
                        },
                        ..CopyReport::default()
                    },
                    error: Some(error_doc(&e, &sentence)),
                });
                failures.push((e.kind(), sentence));
            }
        }
    }
    if ctx.json() {
        print_json(&serde_json::json!({ "copies": entries }))?;
    }
    let mut failures = failures.into_iter();
    let Some((kind, first)) = failures.next() else {
        return Ok(());
    };
    // The first failure ends the command; any others are said before it.
    for (_, other) in failures {
        eprintln!("strongroom: {other}");
    }
    Err(if ctx.json() {
        reported(kind, first)
    } else {
        fail(kind, first)
    })
}

/// The contract's error document for one destination.
fn error_doc(e: &Error, sentence: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": e.kind().name(),
        "message": sentence,
        "retryable": e.is_retryable(),
    })
}

fn print_human(r: &CopyReport) -> Result<()> {
    let f = &r.figures;
    outln!(
        "{}: {} copied, {} there already, {} copied; {} read, {} written",
        f.repository,
        strongroom::counted(f.snapshots_copied, "snapshot"),
        f.snapshots_present,
        strongroom::counted(f.wal_files_copied, "WAL file"),
        human_bytes(f.bytes_read),
        human_bytes(f.bytes_written)
    )?;
    if r.packs_indexed > 0 {
        outln!(
            "  {} an interrupted copy had written were indexed, not copied again",
            strongroom::counted(r.packs_indexed, "pack")
        )?;
    }
    for failure in &r.failures {
        let kept = match failure.snapshots.as_slice() {
            [] => String::new(),
            [one] => format!(" (snapshot {} not copied)", short(one)),
            many => format!(
                " (snapshots {} not copied)",
                many.iter().map(|s| short(s)).collect::<Vec<_>>().join(", ")
            ),
        };
        eprintln!("not copied: {}{kept}", failure.describe());
    }
    Ok(())
}

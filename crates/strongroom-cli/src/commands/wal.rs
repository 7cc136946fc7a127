//! `strongroom wal`: PostgreSQL's archive_command and restore_command, and WAL continuity.
//!
//! The exit codes are PostgreSQL's contract, not ours alone: `fetch` exits 1 only for "not
//! in the archive", and above 125 for everything else, so a recovery stops rather than
//! promoting early at the wrong point.

use crate::args::WalAction;
use crate::context::Ctx;
use crate::failure::{ExitWith, reported};
use crate::output::{outln, print_json};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;
use strongroom::engine::postgres::timeline::judge::Role;
use strongroom::engine::postgres::{continuity, receive, timeline, wal};
use strongroom::{Error, ErrorKind, human_bytes};

/// The exit code that makes PostgreSQL stop recovery (anything above 125).
pub const FETCH_ABORT: i32 = 254;

/// Runs a `wal` subcommand; `ctx` is handed over unopened so that even a broken config
/// ends `fetch` with the code that stops recovery.
pub fn run(ctx: Result<Ctx>, action: WalAction) -> Result<()> {
    match action {
        WalAction::Push { path } => push(&ctx?, &path),
        WalAction::Fetch { name, dest } => fetch(ctx, &name, &dest),
        WalAction::Verify => verify(&ctx?),
        WalAction::Receive {
            source,
            synchronous,
        } => receive(&ctx?, source.as_deref(), synchronous),
    }
}

fn here() -> Result<std::path::PathBuf> {
    Ok(std::env::current_dir()?)
}

fn push(ctx: &Ctx, path: &Path) -> Result<()> {
    let repo = ctx.open_unattended()?;
    let p = strongroom::jobs::wal_push::run(&repo, &here()?, path, ctx.config.wal_source())?;
    tracing::info!(
        "archived {} of cluster {} ({} → {}{})",
        p.name,
        p.cluster.system_id(),
        human_bytes(p.bytes),
        human_bytes(p.stored),
        if p.already { ", archived already" } else { "" }
    );
    Ok(())
}

fn attempts() -> u32 {
    std::env::var("STRONGROOM_FETCH_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1)
}

/// Segments fetched ahead (`STRONGROOM_FETCH_AHEAD`, default 4; 0 turns prefetching off).
fn ahead() -> u32 {
    std::env::var("STRONGROOM_FETCH_AHEAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .min(32)
}

fn fetch(ctx: Result<Ctx>, name: &str, dest: &Path) -> Result<()> {
    let abort = |e: anyhow::Error| {
        anyhow::Error::new(ExitWith {
            code: FETCH_ABORT,
            quiet: false,
            inner: e,
        })
    };
    let ctx = ctx.map_err(abort)?;
    let dir = here().map_err(abort)?;
    let tries = attempts();
    let mut last = None;
    for attempt in 0..tries {
        if attempt > 0 {
            // 1 s, 2 s, 4 s…: long enough to ride out a restart of the store, short enough
            // that a recovery waiting on it is not stalled for minutes.
            std::thread::sleep(Duration::from_secs(1 << (attempt - 1).min(4)));
        }
        let result = ctx
            .access()
            .open()
            .and_then(|repo| wal::fetch(&repo, &dir, name, dest, ahead()));
        match result {
            Ok(bytes) => {
                tracing::info!("restored {name} ({})", human_bytes(bytes));
                return Ok(());
            }
            Err(e @ Error::NotArchived { .. }) => {
                return Err(anyhow::Error::new(ExitWith {
                    code: 1,
                    quiet: ctx.global.verbose == 0,
                    inner: e.into(),
                }));
            }
            // Retrying cannot change these: no password or a wrong one, a data directory
            // that is not the repository's cluster, a config or URL that is wrong, no
            // repository at the location, a repository this build cannot read, an
            // append-only key (restore_command needs a full one). Each retry would only
            // hold the recovery for seconds before the same sentence.
            Err(
                e @ (Error::WrongPassword { .. }
                | Error::AppendOnly(_)
                | Error::PasswordMissing
                | Error::WrongCluster(_)
                | Error::Config(_)
                | Error::BadUrl { .. }
                | Error::NoRepositoryGiven
                | Error::NoRepository(_)
                | Error::UnsupportedVersion { .. }),
            ) => {
                return Err(abort(e.into()));
            }
            Err(e) => {
                tracing::warn!(
                    "fetching {name} failed (attempt {}/{tries}): {e}",
                    attempt + 1
                );
                last = Some(e);
            }
        }
    }
    Err(abort(last.expect("at least one attempt").into()))
}

fn receive(ctx: &Ctx, source: Option<&str>, synchronous: bool) -> Result<()> {
    if let Some(arg) = source {
        crate::exposed::warn_password_in_argv(arg, "the source URL");
    }
    let src = ctx.config.source(source)?;
    let strongroom::source::Location::Postgres(url) = &src.location else {
        anyhow::bail!(
            "source {} is not a PostgreSQL database: `wal receive` streams PostgreSQL WAL",
            src.name
        );
    };
    let slot = src
        .config_name
        .as_ref()
        .and_then(|n| ctx.config.sources.get(n))
        .map_or(receive::DEFAULT_SLOT, |s| s.slot_name())
        .to_string();
    let conn = strongroom::engine::postgres::server::Conn::parse(url)?;
    let repo = ctx.open_unattended()?;
    let stop = strongroom::interrupt::stop_on_signals()?;
    let opts = receive::Options {
        slot,
        synchronous,
        level: repo.config().stream_compression_level,
        source: src.name.clone(),
    };
    let summary = receive::run(&repo, &conn, &opts, &stop)?;
    tracing::info!(
        "stopped: received {} ({} pieces, {} segments archived whole); durable up to {}",
        human_bytes(summary.bytes),
        summary.pieces,
        summary.segments,
        summary
            .durable
            .as_ref()
            .map_or("nothing yet".to_string(), |(t, l)| format!(
                "{l} on timeline {t}"
            ))
    );
    if ctx.json() {
        print_json(&summary)?;
    }
    Ok(())
}

fn verify(ctx: &Ctx) -> Result<()> {
    let repo = ctx.open()?;
    let snaps = repo.snapshots()?;
    let servers = timeline::judge::servers(&ctx.config, &snaps);
    let reports = continuity::verify(&repo, &snaps, &servers)?;
    let ok = reports.iter().all(|r| r.ok);
    if ctx.json() {
        print_json(&serde_json::json!({"ok": ok, "clusters": reports}))?;
    } else if reports.is_empty() {
        outln!("no WAL archived yet")?;
    } else {
        for r in &reports {
            outln!(
                "cluster {} ({} stored, {} segments); the source is on timeline {} ({})",
                r.system_identifier,
                human_bytes(r.stored),
                human_bytes(r.segment_size),
                r.source_timeline,
                r.source_timeline_found.clause()
            )?;
            for t in &r.timelines {
                outln!(
                    "  timeline {}{}: {} segment(s){}{}{}{}",
                    t.timeline,
                    role_text(t),
                    t.segments,
                    match (&t.first, &t.last) {
                        (Some(f), Some(l)) => format!(", {f} … {l}"),
                        _ => String::new(),
                    },
                    if t.partial > 0 {
                        format!(", {} partial", t.partial)
                    } else {
                        String::new()
                    },
                    if t.history { ", history archived" } else { "" },
                    t.received
                        .as_ref()
                        .map(|r| format!(", received up to {r} (wal receive)"))
                        .unwrap_or_default()
                )?;
                for g in &t.gaps {
                    let what = if g.needed {
                        "MISSING (a physical snapshot needs it)"
                    } else if t.role == Role::Fork {
                        "missing on a fork (recovery of the source does not follow it)"
                    } else {
                        "missing (before any physical snapshot needs WAL)"
                    };
                    if g.from == g.to {
                        outln!("    {what}: {}", g.from)?;
                    } else {
                        outln!("    {what}: {} … {}", g.from, g.to)?;
                    }
                }
            }
        }
    }
    if !ok {
        return Err(reported(
            ErrorKind::DamagedData,
            "the WAL archive has gaps that physical snapshots need to recover; the listing names them",
        ));
    }
    Ok(())
}

/// What a timeline is to the source, as `wal verify` lists it: ` (the source's)`,
/// ` (the source's past)`, ` (a fork from timeline 1 at 0/5800000, pushed from … on …)`.
fn role_text(t: &continuity::TimelineReport) -> String {
    let from = t
        .origin
        .as_ref()
        .map(|o| format!(", pushed from {} on {}", o.data_directory, o.hostname))
        .unwrap_or_default();
    match t.role {
        Role::Source => format!(" (the source's{from})"),
        Role::Ancestor => format!(" (the source's past{from})"),
        Role::Fork => match (t.branched_from, &t.branched_at) {
            (Some(p), Some(at)) => format!(" (a fork from timeline {p} at {at}{from})"),
            _ => format!(" (a fork{from})"),
        },
    }
}

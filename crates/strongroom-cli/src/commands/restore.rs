//! `strongroom restore`: a snapshot into a file, a database or a data directory.
//!
//! Turns the flags into one [`strongroom::jobs::restore::RestoreRequest`] (which snapshot, where to,
//! where recovery stops) and prints what the library's restore did; with `--start`, then
//! starts the restored cluster through the library and prints where it recovered to.
//! Must not decide which snapshot or which sort of target (the library's).

use crate::args::{RecoveryPointArgs, RestoreArgs};
use crate::context::Ctx;
use crate::exposed;
use crate::failure::fail;
use crate::output::{fmt_time, outln, print_json};
use anyhow::Result;
use std::path::Path;
use strongroom::engine::postgres::physical;
use strongroom::engine::{RecoveryTarget, Target};
use strongroom::jobs::restore::{RestoreOutcome, RestoreRequest};
use strongroom::repository::snapshot::EngineKind;
use strongroom::{ErrorKind, human_bytes};

impl RecoveryPointArgs {
    /// The recovery target these flags name (`--latest`, the default, when none is given).
    fn target(&self) -> Result<RecoveryTarget> {
        Ok(if let Some(t) = &self.time {
            RecoveryTarget::Time(parse_time(t)?)
        } else if let Some(l) = &self.lsn {
            if strongroom::engine::postgres::cluster::Lsn::parse(l).is_none() {
                return Err(fail(
                    ErrorKind::BadInput,
                    format!("--lsn {l:?} is not a WAL position like 0/3000148"),
                ));
            }
            RecoveryTarget::Lsn(l.to_ascii_uppercase())
        } else if let Some(x) = self.xid {
            RecoveryTarget::Xid(x)
        } else if let Some(n) = &self.name {
            RecoveryTarget::Name(n.clone())
        } else if self.immediate {
            RecoveryTarget::Immediate
        } else {
            RecoveryTarget::Latest
        })
    }
}

/// Parses a time as the contract spells it: RFC 3339, or `YYYY-MM-DD HH:MM:SS` as UTC.
fn parse_time(text: &str) -> Result<jiff::Timestamp> {
    strongroom::parse_time(text).map_err(|e| fail(ErrorKind::BadInput, format!("--time {e}")))
}

/// Restores the snapshot `args.reference` names into the target the flags give.
pub fn run(ctx: &Ctx, args: RestoreArgs) -> Result<()> {
    let targets = [
        args.to.is_some(),
        args.target_db.is_some(),
        args.data_dir.is_some(),
    ];
    if targets.iter().filter(|t| **t).count() > 1 {
        return Err(fail(
            ErrorKind::BadInput,
            "give only one target: --to PATH (SQLite), --target-db URL (PostgreSQL logical) or --data-dir DIR (PostgreSQL physical)",
        ));
    }
    let recovery = args.point.target()?;
    if let Some(url) = &args.target_db {
        exposed::warn_password_in_argv(url, "--target-db");
    }
    let target = match (args.to, args.target_db, args.data_dir) {
        (Some(path), _, _) => Some(Target::File(path)),
        (_, Some(url), _) => Some(Target::Database(url)),
        (_, _, Some(dir)) => Some(Target::DataDirectory(dir)),
        _ => None,
    };
    let data_dir = match &target {
        Some(Target::DataDirectory(dir)) => Some(dir.clone()),
        _ => None,
    };
    let repo = ctx.open()?;
    // Ctrl-C or SIGTERM removes the partly restored copy (file, database or directory)
    // before exit.
    strongroom::interrupt::install();
    let t = std::time::Instant::now();
    let out = strongroom::jobs::restore::run(
        &repo,
        &ctx.config,
        RestoreRequest {
            reference: args.reference,
            filter: args.filter.filter(&ctx.config),
            target,
            recovery: recovery.clone(),
            timeline: args.timeline.unwrap_or_default(),
            force: args.force,
            keep_old: args.keep_old,
            full_check: args.full_check,
            jobs: args.jobs,
            archive: args.archive,
            run_hooks: args.run_hooks,
            start: args.start,
        },
        &ctx.progress,
    )?;
    let seconds = t.elapsed().as_secs_f64();
    if let Some(why) = &out.hooks_skipped {
        eprintln!("note: {why} (--run-hooks runs them)");
    }
    match data_dir {
        Some(dir) => physical(ctx, &out, seconds, &recovery, &dir, args.start, args.port),
        None => restored(ctx, &out, seconds, args.full_check),
    }
}

/// Prints a restore into a file or a database.
fn restored(ctx: &Ctx, out: &RestoreOutcome, seconds: f64, full_check: bool) -> Result<()> {
    let s = &out.snapshot;
    if ctx.json() {
        print_json(
            &serde_json::json!({"snapshot": s.id, "source": s.source, "taken": s.started_at.to_string(),
            "target": out.target, "bytes": out.bytes,
            "seconds": seconds, "old_kept_at": out.old_kept_at, "moved_aside": out.moved_aside,
            "check": out.checked, "reached": out.reached.map(|t| t.to_string()), "notes": out.notes}),
        )?;
    } else {
        let checked = match (&s.engine, out.checked, full_check) {
            (EngineKind::Sqlite, Some(c), _) => format!("{c} ok"),
            (EngineKind::Sqlite, None, true) => "integrity_check ok".into(),
            (EngineKind::Sqlite, None, false) => "quick_check ok".into(),
            _ => "row counts match the snapshot".into(),
        };
        outln!(
            "restored snapshot {} of {} (taken {} UTC) to {} ({}, {checked}) in {:.2} s",
            s.short_id(),
            s.source,
            fmt_time(s.started_at),
            out.target,
            human_bytes(out.bytes),
            seconds
        )?;
        if let Some(old) = &out.old_kept_at {
            outln!("the previous database is kept at {old}")?;
        }
        for n in &out.notes {
            outln!("{n}")?;
        }
        for m in &out.moved_aside {
            eprintln!(
                "note: moved a stray file aside to {m} (SQLite would have replayed it into the restored database)"
            );
        }
    }
    Ok(())
}

/// Prints a restore into a data directory, ready to recover to `recovery`; with `start`,
/// first starts PostgreSQL on it and waits until it recovered and promoted.
fn physical(
    ctx: &Ctx,
    out: &RestoreOutcome,
    restored_secs: f64,
    recovery: &RecoveryTarget,
    dir: &Path,
    start: bool,
    port: Option<u16>,
) -> Result<()> {
    let s = &out.snapshot;
    let own = std::path::absolute(dir).is_ok_and(|d| physical::recovery::is_source_dir(s, &d));
    let by_service =
        (own && physical::config_elsewhere(s)).then(|| physical::start::service_start(s, dir));
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    let point = match recovery {
        RecoveryTarget::Latest => "the end of the WAL archive".to_string(),
        RecoveryTarget::Immediate => "the snapshot's own end (consistency)".to_string(),
        RecoveryTarget::Time(t) => format!("{t}"),
        RecoveryTarget::Lsn(l) => format!("LSN {l}"),
        RecoveryTarget::Xid(x) => format!("transaction {x}"),
        RecoveryTarget::Name(n) => format!("restore point {n:?}"),
    } + &out
        .timeline
        .map(|t| format!(" on timeline {t}"))
        .unwrap_or_default();
    let mut reached = None;
    let mut port_used = None;
    let mut stop_command = None;
    if start {
        // The server's restore_command (`strongroom wal fetch`) opens the repository as
        // this command did.
        ctx.export_access_env();
        let chosen = physical::start::port_for(dir, port)?;
        if let Some(own) = chosen.instead_of {
            eprintln!(
                "note: port {own} is taken; starting on port {} instead",
                chosen.port
            );
        }
        let promoted = physical::start::start_restored(dir, s, chosen.port)?;
        reached = Some((promoted.reached, promoted.seconds));
        port_used = Some(chosen.port);
        stop_command = Some(promoted.stop_command);
    }
    if ctx.json() {
        let (r, secs) = reached.clone().unzip();
        print_json(&serde_json::json!({
            "snapshot": s.id, "source": s.source, "taken": s.started_at.to_string(),
            "target": out.target, "bytes": out.bytes, "seconds": restored_secs,
            "recovery_target": point, "old_kept_at": out.old_kept_at,
            "timeline": out.timeline, "notes": out.notes,
            "started": start, "port": port_used,
            "reached": r, "recovery_seconds": secs, "stop_command": stop_command,
        }))?;
    } else {
        outln!(
            "restored physical snapshot {} of {} (taken {} UTC) to {} ({}) in {:.2} s; recovery target: {point}",
            s.short_id(),
            s.source,
            fmt_time(s.started_at),
            out.target,
            human_bytes(out.bytes),
            restored_secs
        )?;
        if let Some(old) = &out.old_kept_at {
            outln!("the previous data directory is kept at {old}")?;
        }
        match &reached {
            Some((r, secs)) => {
                outln!(
                    "PostgreSQL recovered and promoted in {secs:.1} s on port {}: reached LSN {}{}{}",
                    port_used.unwrap_or_default(),
                    r.lsn.as_deref().unwrap_or("?"),
                    r.time
                        .as_deref()
                        .map(|t| format!(", last transaction committed at {t}"))
                        .unwrap_or_default(),
                    r.timeline
                        .map(|t| format!(", now on timeline {t}"))
                        .unwrap_or_default()
                )?;
                if let Some(why) = &r.stopped {
                    outln!("  {why}")?;
                }
                if let Some(stop) = &stop_command {
                    outln!("it keeps running; stop it with: {stop}")?;
                }
            }
            None if by_service.is_some() => {
                outln!(
                    "start it as its service does: {}; its restore_command (`strongroom wal fetch`) reads the repository with that cluster's environment file, as archive_command does, and it recovers and promotes at the target",
                    by_service.as_deref().unwrap_or_default()
                )?;
            }
            None => {
                let line = start_line(
                    ctx,
                    s,
                    dir,
                    physical::start::port_for(dir, port).ok().map(|c| c.port),
                );
                outln!(
                    "start it with: {}",
                    line.unwrap_or_else(|| format!("pg_ctl -D {} start", out.target))
                )?;
                outln!(
                    "  its restore_command (`strongroom wal fetch`) reads the repository with the environment on that line, as archive_command does{}; it recovers and promotes at the target",
                    if ctx.global.password_file.is_none() {
                        ": add STRONGROOM_PASSWORD_FILE=<a key file the server's user can read> to it (a password is never printed)"
                    } else {
                        ""
                    }
                )?;
            }
        }
    }
    Ok(())
}

/// The exact line that starts a server on the restored `dir` (the snapshot's major version's
/// `pg_ctl`, as the directory's owner), with the repository, password file and config this
/// command used in its environment; `None` when the binaries are not here.
fn start_line(
    ctx: &Ctx,
    s: &strongroom::repository::snapshot::Snapshot,
    dir: &std::path::Path,
    port: Option<u16>,
) -> Option<String> {
    let major = physical::PhysicalMetadata::of(s).major_version?;
    let dir = std::path::absolute(dir).ok()?;
    let env: Vec<(&str, String)> = ctx
        .access_env()
        .into_iter()
        .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
        .collect();
    physical::start::start_command(&dir, major, port, &env, &dir.join("strongroom-start.log")).ok()
}

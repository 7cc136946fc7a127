//! `strongroom restore`: a snapshot into a file or a database.

use crate::args::FilterArgs;
use crate::context::Ctx;
use crate::exposed;
use crate::failure::fail;
use crate::output::{fmt_time, outln, print_json};
use anyhow::Result;
use std::path::PathBuf;
use strongroom::engine::{RestoreOptions, Target};
use strongroom::repository::snapshot::{BackupKind, EngineKind};
use strongroom::{ErrorKind, human_bytes};

/// The restore's own flags.
pub struct Flags {
    /// SQLite: the file to write.
    pub to: Option<PathBuf>,
    /// PostgreSQL logical: the database to restore into.
    pub target_db: Option<String>,
    /// Replace an existing target.
    pub force: bool,
    /// Keep the replaced data after success.
    pub keep_old: bool,
    /// SQLite's full integrity check instead of the quick one.
    pub full_check: bool,
    /// PostgreSQL: parallel jobs.
    pub jobs: Option<usize>,
    /// Run the source's hooks even when the target is not its own database.
    pub run_hooks: bool,
}

/// Restores the snapshot `reference` names into the target the flags give.
pub fn run(ctx: &Ctx, reference: &str, filter: &FilterArgs, flags: Flags) -> Result<()> {
    if flags.to.is_some() && flags.target_db.is_some() {
        return Err(fail(
            ErrorKind::BadInput,
            "give only one target: --to PATH for a SQLite snapshot or --target-db URL for a PostgreSQL one, not both",
        ));
    }
    if let Some(url) = &flags.target_db {
        exposed::warn_password_in_argv(url, "--target-db");
    }
    let repo = ctx.open()?;
    let given = match (&flags.to, &flags.target_db) {
        (Some(p), None) => Some(Target::File(p.clone())),
        (None, Some(url)) => Some(Target::Database(url.clone())),
        _ => None,
    };
    let s = strongroom::restore::snapshot_for(
        &repo,
        &ctx.config,
        reference,
        &filter.filter(&ctx.config),
        given.as_ref(),
    )?;
    let logical = s.kind == BackupKind::Logical;
    let target = match (&s.engine, flags.to, flags.target_db) {
        (EngineKind::Sqlite, Some(p), None) => Target::File(p),
        (EngineKind::Sqlite, _, _) => {
            return Err(fail(
                ErrorKind::BadInput,
                format!(
                    "snapshot {} is a SQLite snapshot: give the file to write with --to PATH",
                    s.short_id()
                ),
            ));
        }
        (EngineKind::Postgres, None, Some(url)) if logical => Target::Database(url),
        (EngineKind::Postgres, _, _) if logical => {
            return Err(fail(
                ErrorKind::BadInput,
                format!(
                    "snapshot {} is a logical PostgreSQL snapshot: give the database with --target-db postgres://…",
                    s.short_id()
                ),
            ));
        }
        (e, _, _) => {
            return Err(fail(
                ErrorKind::Unsupported,
                format!(
                    "restoring {e} {} snapshots is not available in this build",
                    s.kind
                ),
            ));
        }
    };
    let hooks = strongroom::restore::hooks_for(&ctx.config, &s, &target, flags.run_hooks);
    if let Some(src) = &hooks.skipped {
        eprintln!(
            "note: not running source {}'s before_restore/after_restore hooks: {} is not its own database (--run-hooks runs them)",
            src.name,
            target.identity()
        );
    }
    let source = hooks.from;
    // Ctrl-C or SIGTERM removes the partly restored copy (file or database) before exit.
    strongroom::interrupt::install();
    let t = std::time::Instant::now();
    let out = strongroom::restore::run(
        &repo,
        &s,
        &target,
        &RestoreOptions {
            force: flags.force,
            keep_old: flags.keep_old,
            full_check: flags.full_check,
            jobs: flags.jobs,
            before_restore: source.as_ref().and_then(|s| s.before_restore.clone()),
            after_restore: source.as_ref().and_then(|s| s.after_restore.clone()),
        },
        &ctx.progress,
    )?;
    if ctx.json() {
        print_json(
            &serde_json::json!({"snapshot": s.id, "source": s.source, "taken": s.started_at.to_string(),
            "target": out.target, "bytes": out.bytes,
            "seconds": t.elapsed().as_secs_f64(), "old_kept_at": out.old_kept_at, "moved_aside": out.moved_aside}),
        )?;
    } else {
        let checked = match (&s.engine, flags.full_check) {
            (EngineKind::Sqlite, true) => "integrity_check ok",
            (EngineKind::Sqlite, false) => "quick_check ok",
            _ => "row counts match the snapshot",
        };
        outln!(
            "restored snapshot {} of {} (taken {} UTC) to {} ({}, {checked}) in {:.2} s",
            s.short_id(),
            s.source,
            fmt_time(s.started_at),
            out.target,
            human_bytes(out.bytes),
            t.elapsed().as_secs_f64()
        )?;
        if let Some(old) = &out.old_kept_at {
            outln!("the previous database is kept at {old}")?;
        }
        for m in &out.moved_aside {
            eprintln!(
                "note: moved a stray file aside to {m} (SQLite would have replayed it into the restored database)"
            );
        }
    }
    Ok(())
}

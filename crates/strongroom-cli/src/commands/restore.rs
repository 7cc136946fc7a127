//! `strongroom restore`: a snapshot into a file or a database.

use crate::args::FilterArgs;
use crate::context::Ctx;
use crate::exposed;
use crate::failure::fail;
use crate::output::{fmt_time, outln, print_json};
use anyhow::Result;
use std::path::PathBuf;
use strongroom::engine::postgres::physical;
use strongroom::engine::postgres::timeline::TimelineRequest;
use strongroom::engine::{RecoveryTarget, RestoreOptions, Target};
use strongroom::repository::snapshot::{BackupKind, EngineKind};
use strongroom::{ErrorKind, human_bytes};

/// The restore's own flags.
pub struct Flags {
    /// SQLite: the file to write.
    pub to: Option<PathBuf>,
    /// PostgreSQL logical: the database to restore into.
    pub target_db: Option<String>,
    /// PostgreSQL physical: the data directory to write.
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL physical: where recovery stops.
    pub point: Point,
    /// PostgreSQL physical: the timeline to follow.
    pub timeline: TimelineRequest,
    /// PostgreSQL physical: keep archiving in a directory that is not the source's own.
    pub archive: bool,
    /// PostgreSQL physical: start the server and wait for promotion.
    pub start: bool,
    /// With `start`: the port.
    pub port: Option<u16>,
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

/// The recovery target flags (at most one is set; clap sees to that).
#[derive(Default)]
pub struct Point {
    /// `--time`.
    pub time: Option<String>,
    /// `--lsn`.
    pub lsn: Option<String>,
    /// `--xid`.
    pub xid: Option<u64>,
    /// `--name`.
    pub name: Option<String>,
    /// `--immediate`.
    pub immediate: bool,
}

impl Point {
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

/// Restores the snapshot `reference` names into the target the flags give.
pub fn run(ctx: &Ctx, reference: &str, filter: &FilterArgs, flags: Flags) -> Result<()> {
    let targets = [
        flags.to.is_some(),
        flags.target_db.is_some(),
        flags.data_dir.is_some(),
    ];
    if targets.iter().filter(|t| **t).count() > 1 {
        return Err(fail(
            ErrorKind::BadInput,
            "give only one target: --to PATH (SQLite), --target-db URL (PostgreSQL logical) or --data-dir DIR (PostgreSQL physical)",
        ));
    }
    if flags.data_dir.is_some() {
        return physical(ctx, reference, filter, flags);
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
        (EngineKind::Postgres, _, _) if s.kind == BackupKind::Physical => {
            return Err(fail(
                ErrorKind::BadInput,
                format!(
                    "snapshot {} is a physical PostgreSQL snapshot: give the data directory to write with --data-dir DIR",
                    s.short_id()
                ),
            ));
        }
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
            recovery: RecoveryTarget::Latest,
            ..RestoreOptions::default()
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

/// A physical snapshot into a data directory, ready to recover to the target point, and
/// with `--start` recovered and promoted.
fn physical(ctx: &Ctx, reference: &str, filter: &FilterArgs, flags: Flags) -> Result<()> {
    let dir = flags.data_dir.clone().expect("checked by the caller");
    let recovery = flags.point.target()?;
    let repo = ctx.open()?;
    let s = strongroom::restore::physical_snapshot_for(
        &repo,
        reference,
        &filter.filter(&ctx.config),
        &recovery,
    )?;
    if s.kind != BackupKind::Physical {
        let flag = match s.engine {
            EngineKind::Sqlite => "--to PATH",
            _ => "--target-db postgres://…",
        };
        return Err(fail(
            ErrorKind::BadInput,
            format!(
                "snapshot {} is a {} {} snapshot, not a physical one: restore it with {flag}",
                s.short_id(),
                s.engine,
                s.kind
            ),
        ));
    }
    // The real recovery of a cluster that keeps its configuration elsewhere (Debian) is
    // started by its service, with that configuration and environment: pg_ctl -D cannot.
    let own = std::path::absolute(&dir).is_ok_and(|d| physical::recovery::is_source_dir(&s, &d));
    let by_service = (own && physical::config_elsewhere(&s)).then(|| service_start(&s, &dir));
    if let (true, Some(how)) = (flags.start, &by_service) {
        return Err(fail(
            ErrorKind::BadInput,
            format!(
                "{} is the source's own data directory, and its cluster keeps its configuration elsewhere (Debian: /etc/postgresql): restore it without --start, then start it as its service does ({how}); nothing was restored",
                dir.display()
            ),
        ));
    }
    strongroom::interrupt::install();
    let t = std::time::Instant::now();
    let target = Target::DataDirectory(dir.clone());
    let out = strongroom::restore::run(
        &repo,
        &s,
        &target,
        &RestoreOptions {
            force: flags.force,
            keep_old: flags.keep_old,
            recovery: recovery.clone(),
            timeline: flags.timeline,
            archive: flags.archive,
            source_url: strongroom::restore::source_url(&ctx.config, &s),
            ..RestoreOptions::default()
        },
        &ctx.progress,
    )?;
    let restored_secs = t.elapsed().as_secs_f64();
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    let point = match &recovery {
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
    if flags.start {
        ctx.export_access_env();
        let major = physical::major(&s).unwrap_or(0);
        let port = choose_port(&dir, flags.port)?;
        let log = dir.join("strongroom-start.log");
        let t = std::time::Instant::now();
        let server = physical::verify::start(&dir, major, port, &log, &[])?;
        server.wait_promoted(std::time::Duration::from_secs(24 * 3600))?;
        let r = physical::verify::reached(&log);
        stop_command = Some(server.stop_command());
        server.detach();
        reached = Some((r, t.elapsed().as_secs_f64()));
        port_used = Some(port);
    }
    if ctx.json() {
        let (r, secs) = reached.clone().unzip();
        print_json(&serde_json::json!({
            "snapshot": s.id, "source": s.source, "taken": s.started_at.to_string(),
            "target": out.target, "bytes": out.bytes, "seconds": restored_secs,
            "recovery_target": point, "old_kept_at": out.old_kept_at,
            "timeline": out.timeline, "notes": out.notes,
            "started": flags.start, "port": port_used,
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
                let line = match flags.port {
                    Some(p) => start_line(ctx, &s, &dir, Some(p)),
                    None => start_line(ctx, &s, &dir, choose_port(&dir, None).ok()),
                };
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

/// How the service of a cluster that keeps its configuration elsewhere starts it: Debian's
/// `pg_ctlcluster` line when /etc/postgresql names `dir`, else the general form.
fn service_start(s: &strongroom::repository::snapshot::Snapshot, dir: &std::path::Path) -> String {
    let major = physical::major(s);
    major
        .and_then(|m| physical::verify::debian_start_command(m, dir))
        .unwrap_or_else(|| {
            let v = major.map_or_else(|| "<version>".to_string(), |m| m.to_string());
            format!(
                "pg_ctlcluster {v} <cluster> start, or systemctl start postgresql@{v}-<cluster>"
            )
        })
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
    let major = physical::major(s)?;
    let dir = std::path::absolute(dir).ok()?;
    let env: Vec<(&str, String)> = ctx
        .access_env()
        .into_iter()
        .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
        .collect();
    physical::verify::start_command(&dir, major, port, &env, &dir.join("strongroom-start.log")).ok()
}

/// The port a server on `dir` starts on: the one asked for, else the one its config files
/// set (5432 when none) while it is free, else a free one (and a note says so).
fn choose_port(dir: &std::path::Path, asked: Option<u16>) -> Result<u16> {
    if let Some(p) = asked {
        return Ok(p);
    }
    let own = physical_port(dir).unwrap_or(5432);
    if std::net::TcpListener::bind(("127.0.0.1", own)).is_ok() {
        return Ok(own);
    }
    let p = physical::verify::free_port()?;
    eprintln!("note: port {own} is taken; starting on port {p} instead");
    Ok(p)
}

/// The `port` a data directory's config files set, if any.
fn physical_port(dir: &std::path::Path) -> Option<u16> {
    let mut port = None;
    for f in ["postgresql.conf", "postgresql.auto.conf"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(v) = line.strip_prefix("port") {
                let v = v
                    .trim_start()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('\'');
                if let Ok(p) = v.parse() {
                    port = Some(p);
                }
            }
        }
    }
    port
}

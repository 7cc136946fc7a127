//! `verify`'s test restore of a physical snapshot: a throwaway server recovers it in a
//! scratch directory to consistency (or to a drill's point), the row counts and the source's
//! checks run against it, and everything is removed, also on Ctrl-C.
//!
//! Owns the scratch place around the server (its directory, private socket, `hba_file`,
//! log), the settings that keep the copy from archiving, and the checks of what it holds.
//! Must not write data directories itself (that is [`super::restore::restore_into`]) and
//! must not start or watch servers by its own means (that is [`super::start`]).

use super::PhysicalMetadata;
use super::start::{Reached, free_port, reached, server_bindir, start};
use crate::engine::checks::CheckOutcome;
use crate::engine::{RecoveryTarget, Scratch};
use crate::error::{Error, Result};
use crate::interrupt::{self, ScratchDir};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::Snapshot;
use crate::source::SqlCheck;
use std::time::{Duration, Instant};

/// Test-restores a physical snapshot: a scratch data directory, a throwaway server that
/// recovers it on a private socket to consistency (or to `scratch.recovery`, a drill's
/// point after the snapshot), never archiving: a promoted copy forks a timeline that must
/// never reach the repository. Then exact row counts beside the snapshot's estimates and
/// the source's checks; the phases are marked in `scratch.phases`.
pub fn test_restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    scratch_place: &Scratch,
    checks: &[SqlCheck],
    progress: &dyn Progress,
) -> Result<Vec<CheckOutcome>> {
    let phases = &scratch_place.phases;
    let target = scratch_place
        .recovery
        .clone()
        .unwrap_or(RecoveryTarget::Immediate);
    let facts = PhysicalMetadata::of(snap);
    let major = facts.major_version.ok_or_else(|| {
        Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its major version",
        )
    })?;
    // No binaries for this version: say so before restoring anything.
    server_bindir(major)?;
    phases.begin("restore");
    let scratch = ScratchDir::new(
        &scratch_place.dir,
        "strongroom-verify-pg-",
        "test-restored data directory",
    )?;
    use std::os::unix::fs::PermissionsExt;
    // The server's user must reach its directory inside.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("setting permissions of", scratch.path(), e))?;
    let data = scratch.path().join("data");
    super::restore::restore_into(repo, index, snap, &data, &target, progress)?;
    let sockets = scratch.path().join("socket");
    std::fs::create_dir(&sockets).map_err(|e| Error::io("creating", &sockets, e))?;
    let hba = scratch.path().join("hba.conf");
    std::fs::write(&hba, "local all all trust\n").map_err(|e| Error::io("writing", &hba, e))?;
    let log = scratch.path().join("server.log");
    std::fs::write(&log, "").map_err(|e| Error::io("writing", &log, e))?;
    if let Some(owner) = super::restore::owner_of(&data) {
        for p in [&sockets, &hba, &log] {
            std::os::unix::fs::chown(p, Some(owner.0), Some(owner.1))
                .map_err(|e| Error::io("changing the owner of", p, e))?;
        }
    }
    let port = free_port()?;
    phases.begin("recovery");
    let t = Instant::now();
    let server = start(
        &data,
        major,
        port,
        &log,
        &[
            ("listen_addresses", String::new()),
            ("unix_socket_directories", sockets.display().to_string()),
            ("archive_mode", "off".into()),
            ("hba_file", hba.display().to_string()),
            ("logging_collector", "off".into()),
        ],
    )?;
    // Interrupted: stop the server before its directory goes.
    let _stop = interrupt::guard(
        format!("throwaway server on {}", data.display()),
        server.stopper(),
    );
    let mut results = Vec::new();
    match server.wait_promoted(Duration::from_secs(3600)) {
        Ok(()) => results.push(CheckOutcome {
            name: "recovery".into(),
            ok: true,
            detail: recovered(major, &target, &reached(&log), t.elapsed()),
        }),
        Err(e) => {
            results.push(CheckOutcome {
                name: "recovery".into(),
                ok: false,
                detail: e.to_string(),
            });
            return Ok(results);
        }
    }
    phases.begin("checks");
    let user = facts.bootstrap_superuser.as_deref().unwrap_or("postgres");
    let db = facts.database.as_deref().unwrap_or("postgres");
    let client = postgres::Config::new()
        .host_path(&sockets)
        .port(port)
        .user(user)
        .dbname(db)
        .connect(postgres::NoTls);
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            results.push(CheckOutcome {
                name: "connect".into(),
                ok: false,
                detail: format!("connecting to the recovered server as {user} to {db}: {e}"),
            });
            return Ok(results);
        }
    };
    results.push(count_check(&mut client, snap));
    results.extend(crate::engine::postgres::logical::run_checks(
        &mut client,
        checks,
    ));
    drop(client);
    drop(server);
    drop(scratch);
    Ok(results)
}

/// What a successful recovery reached, for its check's detail.
fn recovered(major: u32, target: &RecoveryTarget, r: &Reached, took: Duration) -> String {
    let to = match target {
        RecoveryTarget::Immediate => "to consistency".to_string(),
        RecoveryTarget::Latest => "to the end of the archive".to_string(),
        RecoveryTarget::Time(t) => format!("to {t}"),
        RecoveryTarget::Lsn(l) => format!("to LSN {l}"),
        RecoveryTarget::Xid(x) => format!("to transaction {x}"),
        RecoveryTarget::Name(n) => format!("to restore point {n:?}"),
    };
    let mut out = format!(
        "PostgreSQL {major} replayed the snapshot's WAL {to} and promoted in {:.1} s",
        took.as_secs_f64()
    );
    if let Some(l) = &r.lsn {
        out.push_str(&format!("; redo ended at {l}"));
    }
    if let Some(t) = &r.time {
        out.push_str(&format!(", last transaction replayed committed at {t}"));
    }
    out
}

/// Exact counts of the recovered database beside the snapshot's estimates: every table the
/// snapshot recorded must exist; counts far from the estimates are reported, not failed
/// (planner estimates can lag by any amount).
fn count_check(client: &mut postgres::Client, snap: &Snapshot) -> CheckOutcome {
    let mut missing = Vec::new();
    let mut far = Vec::new();
    let mut rows = 0u64;
    let mut unknown = 0;
    for (table, estimate) in &snap.metadata.row_counts {
        let (ns, rel) = table.split_once('.').unwrap_or(("public", table));
        let sql = format!(
            "SELECT count(*)::int8 FROM {}.{}",
            crate::engine::postgres::server::ident(ns),
            crate::engine::postgres::server::ident(rel)
        );
        match client.query_one(&sql, &[]) {
            Ok(r) => {
                let n = r.get::<_, i64>(0) as u64;
                rows += n;
                unknown += usize::from(*estimate == 0);
                if *estimate > 0 && n.abs_diff(*estimate) > (*estimate / 5).max(100) {
                    far.push(format!("{table}: {n} (estimate {estimate})"));
                }
            }
            Err(e) => missing.push(format!("{table}: {e}")),
        }
    }
    CheckOutcome {
        name: "row counts".into(),
        ok: missing.is_empty(),
        detail: if !missing.is_empty() {
            format!(
                "tables the snapshot recorded cannot be read: {}",
                missing.join("; ")
            )
        } else if far.is_empty() {
            format!(
                "{} table(s), {rows} row(s); near the backup-time estimates where the planner had one ({unknown} table(s) never analyzed)",
                snap.metadata.row_counts.len()
            )
        } else {
            format!(
                "{} table(s), {rows} row(s); far from the backup-time estimates (which lag): {}",
                snap.metadata.row_counts.len(),
                far.join(", ")
            )
        },
    }
}

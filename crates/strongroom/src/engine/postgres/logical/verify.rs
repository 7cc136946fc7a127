//! Verifying a logical snapshot: restore it into a temporary database, check it, drop it.
//!
//! Owns the test restore's order (bare roles on a scratch server, the temporary database,
//! the load, row counts, configured checks) and its cleanup whatever happens, interrupts
//! included. Must not touch the source database.

use super::super::ScratchServer;
use super::admin::{admin_or_tried, create_scratch_db, drop_roles, restore_roles, side_name};
use super::catalog::count_check;
use super::load::pg_restore_into;
use super::{default_jobs, facts};
use crate::engine::Scratch;
use crate::engine::checks::{CheckOutcome, truthy_text};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::snapshot::Snapshot;
use crate::source::SqlCheck;

/// Runs configured checks in a database.
pub(in crate::engine::postgres) fn run_checks(
    client: &mut postgres::Client,
    checks: &[SqlCheck],
) -> Vec<CheckOutcome> {
    checks
        .iter()
        .map(|chk| {
            let r = client.query_opt(
                &format!(
                    "SELECT v::text FROM ({}) AS s(v) LIMIT 1",
                    chk.sql.trim_end_matches(';')
                ),
                &[],
            );
            let (ok, detail) = match r {
                Ok(Some(row)) => {
                    let v: Option<String> = row.get(0);
                    let ok = truthy_text(v.as_deref());
                    (
                        ok,
                        format!("returned {}", v.unwrap_or_else(|| "NULL".into())),
                    )
                }
                Ok(None) => (false, "returned no row".into()),
                Err(e) => (
                    false,
                    format!(
                        "failed: {}",
                        e.as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or_else(|| e.to_string())
                    ),
                ),
            };
            CheckOutcome {
                name: chk.name.clone(),
                ok,
                detail,
            }
        })
        .collect()
}

/// Restores a logical snapshot into a temporary database on `server`, checks it, and drops it
/// whatever happens. Failing to reach the server is a failed `connect` check saying which
/// settings were tried and where they came from.
pub fn test_restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    server: &ScratchServer,
    scratch_place: &Scratch,
    checks: &[SqlCheck],
    progress: &dyn Progress,
) -> Result<Vec<CheckOutcome>> {
    scratch_place.phases.begin("restore");
    let (admin_conn, mut client) = match admin_or_tried(&server.conn) {
        Ok(c) => c,
        Err((tried, e)) => {
            return Ok(vec![CheckOutcome {
                name: "connect".into(),
                ok: false,
                detail: format!(
                    "connecting to {tried} ({}; {}) failed: {e}",
                    server.from,
                    server.conn.password_from()
                ),
            }]);
        }
    };
    let server = &server.conn;
    let f = facts(&mut client, &admin_conn)?;
    if !f.superuser && !f.createdb {
        return Err(Error::Failed(format!(
            "role {:?} may not create databases on {}, which a test restore needs; grant it \
             CREATEDB or set [verify] scratch_postgres",
            server.user(),
            server.server()
        )));
    }
    let name = side_name("strongroom_verify", snap.short_id());
    let mut results = Vec::new();
    // A separate scratch server lacks the source's roles, which the dump's OWNER TO and
    // GRANTs name: they are created bare (no login, no password) and dropped afterwards,
    // after the database (guards drop in reverse order).
    let _roles = if f.superuser {
        // Held against signals: a role created but not yet registered would stay behind.
        let made = interrupt::critical(|| {
            let created = restore_roles(repo, index, snap, &mut client, &admin_conn, true)?;
            let a = admin_conn.clone();
            Ok::<_, Error>((!created.is_empty()).then(|| {
                interrupt::guard(
                    format!("roles {} on {}", created.join(", "), admin_conn.server()),
                    move || drop_roles(&a, &created),
                )
            }))
        });
        match made {
            Ok(g) => g,
            Err(e) if e.is_damage() => return Err(e),
            Err(e) => {
                results.push(CheckOutcome {
                    name: "roles".into(),
                    ok: false,
                    detail: e.to_string(),
                });
                return Ok(results);
            }
        }
    } else {
        None
    };
    let _guard = create_scratch_db(&mut client, &admin_conn, snap, &name)?;
    let db = server.with_dbname(&name);
    let restored = pg_restore_into(
        repo,
        index,
        snap,
        &db,
        f.superuser,
        default_jobs(),
        &scratch_place.dir,
        progress,
    );
    let precounted = match restored {
        Ok(c) => {
            results.push(CheckOutcome {
                name: "pg_restore".into(),
                ok: true,
                detail: format!(
                    "restored into temporary database {name} on {}",
                    server.server()
                ),
            });
            c
        }
        Err(e) if e.is_damage() => return Err(e),
        Err(e) => {
            results.push(CheckOutcome {
                name: "pg_restore".into(),
                ok: false,
                detail: e.to_string(),
            });
            return Ok(results);
        }
    };
    scratch_place.phases.begin("checks");
    results.push(match precounted {
        Some(c) => c,
        None => count_check(&db, snap)?,
    });
    let mut c = db.connect()?;
    results.extend(run_checks(&mut c, checks));
    Ok(results)
}

//! Administering databases on a server: where restores are created, renamed and dropped.
//!
//! Owns the maintenance connection, asking whether a database exists, is empty or has
//! sessions, creating one with the snapshot's encoding and locale, dropping temporary ones,
//! recreating missing roles from the snapshot's globals, and the rename pair of a swap.
//! Must not load data.

use super::super::server::{Conn, ident, literal};
use super::{GLOBALS_FILE, extra_str, file};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::Snapshot;

/// Connects to a maintenance database on the server of `target` (`postgres`, else
/// `template1`): where databases are created, renamed and dropped.
pub(super) fn admin(target: &Conn) -> Result<(Conn, postgres::Client)> {
    admin_or_tried(target).map_err(|(_, e)| e)
}

/// [`admin`], failing with the connection tried (as [`Conn::display`] shows it) beside its
/// error, for messages that say what was tried.
pub(super) fn admin_or_tried(
    target: &Conn,
) -> std::result::Result<(Conn, postgres::Client), (String, Error)> {
    let mut failed = None;
    // Never the target itself: a database cannot be renamed by a session connected to it.
    for db in ["postgres", "template1"]
        .into_iter()
        .filter(|d| *d != target.dbname())
    {
        let c = target.with_dbname(db);
        let e = match c.connect_raw() {
            Ok(Ok(client)) => return Ok((c, client)),
            Ok(Err(e)) => e,
            Err(e) => return Err((c.display(), e)),
        };
        // The first failure says what went wrong, unless it was only that database missing.
        let missing = e.as_db_error().is_some_and(|d| d.code().code() == "3D000");
        let e = Error::Source(c.explain(&e));
        match &failed {
            Some((_, _, false)) => {}
            _ => failed = Some((c, e, missing)),
        }
    }
    let (c, e, _) = failed.expect("tried at least one");
    Err((c.display(), e))
}

pub(super) fn database_exists(
    client: &mut postgres::Client,
    admin: &Conn,
    name: &str,
) -> Result<bool> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(|e| Error::Target(admin.explain(&e)))?
        .is_some())
}

/// Relations, functions, types, schemas and large objects of the user's: what makes a
/// database non-empty.
pub(super) fn user_objects(conn: &Conn) -> Result<i64> {
    let mut c = conn.connect()?;
    Ok(c.query_one(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)') \
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) \
              + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname !~ '^pg_(toast|temp)' AND t.typrelid = 0 AND t.typcategory <> 'A') \
              + (SELECT count(*) FROM pg_namespace n WHERE n.nspname NOT IN \
                 ('public', 'pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)') \
              + (SELECT count(*) FROM pg_largeobject_metadata)",
        &[],
    )
    .map_err(|e| Error::Target(conn.explain(&e)))?
    .get(0))
}

pub(super) fn sessions_on(
    client: &mut postgres::Client,
    admin: &Conn,
    name: &str,
) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT coalesce(nullif(application_name, ''), usename::text, 'a session') FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .map_err(|e| Error::Target(admin.explain(&e)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Drops a database, ending sessions on it first (temporary databases only).
pub(super) fn drop_database(admin: &Conn, name: &str) {
    let Ok(mut c) = admin.connect() else {
        eprintln!(
            "strongroom: could not connect to {} to drop temporary database {name}; drop it by hand",
            admin.server()
        );
        return;
    };
    let v: i32 = c
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map(|r| r.get(0))
        .unwrap_or(0);
    let sql = if v >= 130000 {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name))
    } else {
        let _ = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        );
        format!("DROP DATABASE IF EXISTS {}", ident(name))
    };
    if let Err(e) = c.batch_execute(&sql) {
        eprintln!(
            "strongroom: could not drop temporary database {name} on {}: {}; drop it by hand",
            admin.server(),
            admin.explain(&e)
        );
    }
}

/// Drops roles a test restore created.
pub(super) fn drop_roles(admin: &Conn, roles: &[String]) {
    let dropped = admin.connect().and_then(|mut c| {
        for r in roles {
            c.batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(r)))
                .map_err(|e| Error::Target(admin.explain(&e)))?;
        }
        Ok(())
    });
    if let Err(e) = dropped {
        eprintln!(
            "strongroom: could not drop the roles {} created for a test restore on {}: {e}; drop them by hand",
            roles.join(", "),
            admin.server()
        );
    }
}

/// A fresh database name beside `base`, within PostgreSQL's 63-byte limit.
pub(super) fn side_name(base: &str, tag: &str) -> String {
    let suffix = format!("_{tag}_{}", hex::encode(crate::crypto::random_bytes::<3>()));
    let mut b = base.to_string();
    while b.len() + suffix.len() > 63 {
        b.pop();
    }
    format!("{b}{suffix}")
}

/// Creates an empty database for a restore, with the source's encoding and locale when the
/// server has them; registers it for removal on failure or interrupt.
pub(super) fn create_scratch_db(
    client: &mut postgres::Client,
    admin: &Conn,
    snap: &Snapshot,
    name: &str,
) -> Result<interrupt::Guard> {
    // Held against signals: a CREATE cut short by exit would still complete on the server,
    // after the cleanup had found nothing to drop.
    interrupt::critical(|| create_db_now(client, admin, snap, name))
}

pub(super) fn create_db_now(
    client: &mut postgres::Client,
    admin: &Conn,
    snap: &Snapshot,
    name: &str,
) -> Result<interrupt::Guard> {
    let enc = extra_str(snap, "encoding").unwrap_or("UTF8");
    let mut sql = format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {}",
        ident(name),
        literal(enc)
    );
    let mut with_locale = match (extra_str(snap, "lc_collate"), extra_str(snap, "lc_ctype")) {
        (Some(c), Some(t)) => format!("{sql} LC_COLLATE {} LC_CTYPE {}", literal(c), literal(t)),
        _ => sql.clone(),
    };
    match (
        extra_str(snap, "locale_provider"),
        extra_str(snap, "provider_locale"),
    ) {
        (Some("icu"), Some(l)) => {
            with_locale.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", literal(l)))
        }
        (Some("builtin"), Some(l)) => with_locale.push_str(&format!(
            " LOCALE_PROVIDER builtin BUILTIN_LOCALE {}",
            literal(l)
        )),
        _ => {}
    }
    if let Err(e) = client.batch_execute(&with_locale) {
        let msg = admin.explain(&e);
        if with_locale == sql
            || !(msg.contains("locale") || msg.contains("collation") || msg.contains("encoding"))
        {
            return Err(Error::Target(format!(
                "could not create database {name}: {msg}"
            )));
        }
        tracing::warn!(%msg, "the source's locale is not available on the target; using the server default");
        sql.push(' ');
        client.batch_execute(sql.trim_end()).map_err(|e| {
            Error::Target(format!(
                "could not create database {name}: {}",
                admin.explain(&e)
            ))
        })?;
    }
    let (a, n) = (admin.clone(), name.to_string());
    Ok(interrupt::guard(
        format!("temporary database {name} on {}", admin.server()),
        move || drop_database(&a, &n),
    ))
}

/// Creates the roles of the snapshot's globals that the server lacks (superusers only).
/// `bare`: names only (no login, password or memberships), for a test restore's roles.
pub(super) fn restore_roles(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    client: &mut postgres::Client,
    admin: &Conn,
    bare: bool,
) -> Result<Vec<String>> {
    let Some(g) = file(snap, GLOBALS_FILE) else {
        return Ok(Vec::new());
    };
    let mut sql = Vec::new();
    reader::stream_file(repo, index, snap, g, &mut sql, &crate::progress::Silent)?;
    let created = create_missing_roles(client, admin, &String::from_utf8_lossy(&sql), bare)?;
    if !created.is_empty() {
        tracing::info!(roles = ?created, server = %admin.server(), "created roles from the snapshot's globals");
    }
    Ok(created)
}

/// The SQL identifier at the start of `s` (bare, or quoted with `""` for a quote) and what
/// follows it.
pub(super) fn leading_ident(s: &str) -> Option<(String, &str)> {
    let Some(q) = s.strip_prefix('"') else {
        let end = s.find([' ', ';', ',']).unwrap_or(s.len());
        return (end > 0).then(|| (s[..end].to_string(), &s[end..]));
    };
    let mut name = String::new();
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if chars.peek().map(|&(_, n)| n) != Some('"') {
                return Some((name, &q[i + 1..]));
            }
            chars.next();
        }
        name.push(c);
    }
    None
}

/// Creates the roles the snapshot's globals define and the server lacks (superusers only):
/// existing roles are never altered. Returns the roles created.
pub(super) fn create_missing_roles(
    client: &mut postgres::Client,
    admin: &Conn,
    globals: &str,
    bare: bool,
) -> Result<Vec<String>> {
    let existing: std::collections::HashSet<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .map_err(|e| Error::Target(admin.explain(&e)))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let role_of = |stmt: &str, prefix: &str| Some(leading_ident(stmt.strip_prefix(prefix)?)?.0);
    // `GRANT role TO member …`: the member, whose memberships the statement changes.
    let member_of = |stmt: &str| {
        let (_, rest) = leading_ident(stmt.strip_prefix("GRANT ")?)?;
        Some(leading_ident(rest.strip_prefix(" TO ")?)?.0)
    };
    let mut created = Vec::new();
    for line in globals.lines() {
        let stmt = line.trim();
        if let Some(r) = role_of(stmt, "CREATE ROLE ") {
            if !existing.contains(&r) {
                client.batch_execute(stmt).map_err(|e| {
                    Error::Target(format!("creating role {r}: {}", admin.explain(&e)))
                })?;
                created.push(r);
            }
        } else if bare {
            continue;
        } else if let Some(r) = role_of(stmt, "ALTER ROLE ") {
            if created.contains(&r) {
                client.batch_execute(stmt).map_err(|e| {
                    Error::Target(format!("configuring role {r}: {}", admin.explain(&e)))
                })?;
            }
        } else if member_of(stmt).is_some_and(|m| created.contains(&m)) {
            // Memberships of new roles only; a grantor that does not exist here is not fatal.
            if let Err(e) = client.batch_execute(stmt) {
                tracing::warn!(statement = stmt, error = %admin.explain(&e), "role membership not restored");
            }
        }
    }
    Ok(created)
}

/// Renames the old database aside (when there is one) and the restored one into place;
/// puts the old one back if the second rename fails. Returns the old database's new name.
/// `must_be_empty`: the target, when only an empty one may be replaced (no `--force`).
pub(super) fn swap(
    client: &mut postgres::Client,
    admin: &Conn,
    tmp: &str,
    name: &str,
    exists: bool,
    must_be_empty: Option<&Conn>,
) -> Result<Option<String>> {
    let busy = |client: &mut postgres::Client| -> Result<()> {
        // A backend outlives its client's disconnect by a moment (our own emptiness check
        // just closed one): look again for up to a second before calling the target busy.
        let mut looks = 0;
        let s = loop {
            let s = sessions_on(client, admin, name)?;
            if s.is_empty() {
                return Ok(());
            }
            looks += 1;
            if looks > 10 {
                break s;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        Err(Error::Target(format!(
            "database {name} on {} is in use by {} session(s) ({}); stop the application (a \
             before_restore hook can) and retry; the target was not touched",
            admin.server(),
            s.len(),
            s.join(", ")
        )))
    };
    let mut old = None;
    if exists {
        if let Some(target) = must_be_empty {
            let n = user_objects(target)?;
            if n > 0 {
                return Err(Error::TargetNotEmpty {
                    old: "database",
                    target: format!(
                        "database {name} on {} gained {n} objects during the restore, and the \
                         target was not touched",
                        admin.server()
                    ),
                });
            }
        }
        busy(client)?;
        let aside = side_name(name, "old");
        client
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(name),
                ident(&aside)
            ))
            .map_err(|e| {
                Error::Target(format!(
                    "could not move database {name} aside: {}; the target was not touched",
                    admin.explain(&e)
                ))
            })?;
        old = Some(aside);
    }
    if let Err(e) = client.batch_execute(&format!(
        "ALTER DATABASE {} RENAME TO {}",
        ident(tmp),
        ident(name)
    )) {
        let state = match &old {
            None => "nothing was replaced".to_string(),
            Some(a) => match client.batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(a),
                ident(name)
            )) {
                Ok(()) => "the old database was put back".to_string(),
                Err(back) => format!(
                    "putting the old database back failed too ({}); it is database {a}: rename \
                     it to {name} by hand",
                    admin.explain(&back)
                ),
            },
        };
        return Err(Error::Target(format!(
            "could not move the restored database into place as {name}: {}; {state}",
            admin.explain(&e)
        )));
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::leading_ident;

    #[test]
    fn identifiers_at_the_start_of_globals_statements() {
        assert_eq!(
            leading_ident("app TO reporting_app;"),
            Some(("app".into(), " TO reporting_app;"))
        );
        assert_eq!(
            leading_ident(r#""we ""quote"" it" TO x"#),
            Some((r#"we "quote" it"#.into(), " TO x"))
        );
        assert_eq!(leading_ident("owner;"), Some(("owner".into(), ";")));
        assert_eq!(leading_ident(r#""unterminated"#), None);
        assert_eq!(leading_ident(" TO"), None);
    }
}

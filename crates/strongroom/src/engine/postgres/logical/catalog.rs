//! What the catalogs say about a database: its user tables, their row counts, what a table's
//! `count(*)` covers, and the schema version.
//!
//! Owns the SQL that reads them, for the backup (counts in the dump's snapshot) and for
//! restores and verification (counts of the restored copy, compared with the snapshot's).
//! Must not change a database.

use super::super::server::{Conn, ident, literal};
use super::estimated;
use crate::engine::checks::{CheckOutcome, compare_row_counts};
use crate::error::{Error, Result};
use crate::repository::snapshot::Snapshot;
use crate::source::RowCounts;
use std::collections::BTreeMap;

/// Which relations are user tables: not in system schemas, not owned by an extension.
pub(super) const USER_TABLE: &str = "c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_(toast|temp)' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                     AND d.objid = c.oid AND d.deptype = 'e')";

/// A table's key in `row_counts`: `public` tables by bare name, others qualified.
pub(super) fn table_key(ns: &str, rel: &str) -> String {
    if ns == "public" {
        rel.to_string()
    } else {
        format!("{ns}.{rel}")
    }
}

/// User tables as (key in `row_counts`, qualified name, whose data the dump leaves out).
/// A hot standby cannot read unlogged tables, and `pg_dump` skips their data there.
pub(in crate::engine::postgres) fn user_tables(
    client: &mut postgres::Client,
    conn: &Conn,
) -> Result<Vec<(String, String, bool)>> {
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname, c.relname, c.relpersistence = 'u' AND pg_is_in_recovery() \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE {USER_TABLE} ORDER BY 1, 2"
            ),
            &[],
        )
        .map_err(|e| Error::Source(conn.explain(&e)))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (ns, rel): (String, String) = (r.get(0), r.get(1));
            (
                table_key(&ns, &rel),
                format!("{}.{}", ident(&ns), ident(&rel)),
                r.get(2),
            )
        })
        .collect())
}

/// A table as (schema, name).
pub(super) type Table = (String, String);

/// Every user table with the tables whose rows `count(*)` on it sees: itself and, through
/// partitioning or inheritance, its descendants (each once, also below a diamond). Catalog
/// reads only, so no table locks. `None` when a descendant is a foreign table: its rows are
/// not in the dump, yet `count(*)` on the parent reads them.
pub(super) fn table_members(
    client: &mut postgres::Client,
    conn: &Conn,
) -> Result<Option<BTreeMap<String, Vec<Table>>>> {
    let rows = client
        .query(
            &format!(
                "WITH RECURSIVE t(root, rel) AS ( \
                   SELECT c.oid, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                   WHERE {USER_TABLE} \
                   UNION SELECT t.root, i.inhrelid FROM t JOIN pg_inherits i ON i.inhparent = t.rel) \
                 SELECT rn.nspname, rc.relname, mn.nspname, mc.relname, mc.relkind = 'f' FROM t \
                 JOIN pg_class rc ON rc.oid = t.root JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
                 JOIN pg_class mc ON mc.oid = t.rel JOIN pg_namespace mn ON mn.oid = mc.relnamespace \
                 ORDER BY rn.nspname, rc.relname, t.root"
            ),
            &[],
        )
        .map_err(|e| Error::Source(conn.explain(&e)))?;
    if rows.iter().any(|r| r.get::<_, bool>(4)) {
        return Ok(None);
    }
    // Rows come grouped by root. Two tables with one key (`public."a.b"` and `a.b`): the
    // later one wins in the map, as in `row_counts`, which the restore's check uses.
    let mut groups: Vec<(Table, Vec<Table>)> = Vec::new();
    for r in &rows {
        let (root, member): (Table, Table) = ((r.get(0), r.get(1)), (r.get(2), r.get(3)));
        match groups.last_mut() {
            Some((g, members)) if *g == root => members.push(member),
            _ => groups.push((root, vec![member])),
        }
    }
    Ok(Some(
        groups
            .into_iter()
            .map(|((ns, rel), members)| (table_key(&ns, &rel), members))
            .collect(),
    ))
}

/// Row counts of every user table: exact, or the planner's estimates.
pub(in crate::engine::postgres) fn row_counts(
    client: &mut postgres::Client,
    conn: &Conn,
    how: RowCounts,
) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (key, qualified, skipped) in user_tables(client, conn)? {
        if skipped {
            out.insert(key, 0);
            continue;
        }
        let sql = match how {
            RowCounts::Exact => format!("SELECT count(*)::int8 FROM {qualified}"),
            RowCounts::Estimate => format!(
                "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = {}::regclass",
                literal(&qualified)
            ),
        };
        let n: i64 = client
            .query_one(&sql, &[])
            .map_err(|e| Error::Source(format!("counting rows of {key}: {}", conn.explain(&e))))?
            .get(0);
        out.insert(key, n as u64);
    }
    Ok(out)
}

/// The schema version per the contract: a configured query, else the newest migration in a
/// known migration table. Runs each probe in a savepoint so a failing one leaves the
/// transaction usable.
pub(in crate::engine::postgres) fn schema_version(
    client: &mut postgres::Client,
    conn: &Conn,
    query: Option<&str>,
) -> Result<Option<String>> {
    let first_text = |client: &mut postgres::Client,
                      q: &str|
     -> std::result::Result<Option<String>, postgres::Error> {
        // A savepoint, not `client.transaction()`: that would send BEGIN/COMMIT and end the
        // snapshot-exporting transaction under pg_dump's feet.
        client.batch_execute("SAVEPOINT strongroom_probe")?;
        let r = client.query_opt(&format!("SELECT v::text FROM ({q}) AS s(v) LIMIT 1"), &[]);
        match r {
            Ok(row) => {
                client.batch_execute("RELEASE SAVEPOINT strongroom_probe")?;
                Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
            }
            Err(e) => {
                client.batch_execute("ROLLBACK TO SAVEPOINT strongroom_probe")?;
                Err(e)
            }
        }
    };
    if let Some(q) = query {
        return first_text(client, q).map_err(|e| {
            Error::Config(format!(
                "schema_version_query failed on {}: {}",
                conn.display(),
                conn.explain(&e)
            ))
        });
    }
    for (table, q) in crate::engine::schema::MIGRATION_QUERIES {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .map_err(|e| Error::Source(conn.explain(&e)))?
            .get(0);
        if exists {
            if let Ok(Some(v)) = first_text(client, q) {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// Compares the restored database's row counts with the snapshot's.
pub(super) fn count_check(db: &Conn, snap: &Snapshot) -> Result<CheckOutcome> {
    if estimated(snap) {
        return Ok(CheckOutcome {
            name: "row counts".into(),
            ok: true,
            detail: "the snapshot holds estimates (row_counts = \"estimate\"); not compared".into(),
        });
    }
    let mut c = db.connect()?;
    let found = row_counts(&mut c, db, RowCounts::Exact)?;
    Ok(compare_row_counts(&snap.metadata.row_counts, &found))
}

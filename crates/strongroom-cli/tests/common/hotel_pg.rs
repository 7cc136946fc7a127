//! The hotel database on PostgreSQL, for the logical-backup suites: loading it, counting its
//! rows, reading a repository's journal, counting a message's sentences.

use super::{Env, PASSWORD};
use serde_json::Value;
use std::collections::BTreeMap;
use strongroom::hotel::{self, Scale};
use strongroom_testkit::postgres::Cluster;

/// Creates database `db` (owned by `owner`) on `pg` and fills it with the hotel schema,
/// connecting as `as_user` (`(name, password)`), or as the superuser.
pub fn load_hotel(
    pg: &Cluster,
    db: &str,
    owner: Option<&str>,
    login: Option<(&str, &str)>,
    bookings: u64,
) {
    pg.create_database(db, owner);
    let sql = hotel::postgres_sql(Scale::bookings(bookings));
    match login {
        Some((u, p)) => postgres::Client::connect(&pg.url(u, Some(p), db), postgres::NoTls)
            .unwrap()
            .batch_execute(&sql)
            .unwrap(),
        None => pg.execute(db, &sql),
    }
}

pub fn counts(pg: &Cluster, db: &str) -> BTreeMap<String, u64> {
    let mut c = pg.connect(db);
    let tables: Vec<String> = c
        .query(
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE relkind = 'r' AND nspname = 'public'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let n: i64 = c
                .query_one(&format!("SELECT count(*) FROM \"{t}\""), &[])
                .unwrap()
                .get(0);
            (t, n as u64)
        })
        .collect()
}

pub fn snapshot_counts(snap: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(snap["metadata"]["row_counts"].clone()).unwrap()
}

pub fn journal(env: &Env) -> Vec<strongroom::repository::journal::JournalRecord> {
    strongroom::repository::Repository::open(env.storage(), Some(PASSWORD.as_bytes()))
        .unwrap()
        .journal_records()
        .unwrap()
}

/// Lines on stderr that are not warnings about the command line itself.
pub fn sentences(err: &str) -> usize {
    err.trim_end()
        .lines()
        .filter(|l| !l.starts_with("strongroom: warning:"))
        .count()
}

/// The schema as pg_dump sees it, and a digest of every table's rows.
pub fn fingerprint(pg: &Cluster, db: &str) -> (String, BTreeMap<String, String>) {
    let pg_dump = strongroom::engine::postgres::tools::find("pg_dump", pg.major_version(), "test")
        .unwrap()
        .path;
    let out = std::process::Command::new(pg_dump)
        .args(["--schema-only", "--no-owner", "-d", &pg.super_url(db)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("--") && !l.contains("restrict") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let mut c = pg.connect(db);
    let tables: Vec<String> = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let digests = tables
        .into_iter()
        .map(|t| {
            let d: Option<String> = c
                .query_one(
                    &format!("SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} x"),
                    &[],
                )
                .unwrap()
                .get(0);
            (t, d.unwrap_or_default())
        })
        .collect();
    (schema, digests)
}

/// A cluster whose `hotel` database belongs to `app` (password `app-secret`), a role that
/// may create databases but is no superuser: a managed service's usual setup.
pub fn cluster_with_app_owned_hotel(bookings: u64) -> Cluster {
    let pg = Cluster::start();
    pg.execute(
        "postgres",
        "CREATE ROLE app LOGIN PASSWORD 'app-secret' CREATEDB NOSUPERUSER",
    );
    load_hotel(
        &pg,
        "hotel",
        Some("app"),
        Some(("app", "app-secret")),
        bookings,
    );
    pg
}

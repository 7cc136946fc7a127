//! End-to-end tests of PostgreSQL logical backups: the real `strongroom` binary against real,
//! throwaway PostgreSQL clusters (strongroom-testkit), on a local repository and on Garage S3.

mod common;

use common::envs;
use common::hotel_pg::{
    cluster_with_app_owned_hotel, counts, fingerprint, journal, load_hotel, sentences,
    snapshot_counts,
};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use strongroom::hotel;
use strongroom_testkit::postgres::{self as pgkit, Cluster};

fn invariant_holds(pg: &Cluster, db: &str) -> bool {
    pg.connect(db)
        .query_one(hotel::INVARIANT_SQL, &[])
        .unwrap()
        .get(0)
}

/// Sessions booking rooms on PostgreSQL until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

fn start_writers(pg: &Cluster, db: &str, n: usize) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles = (0..n)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            let mut c = pg.connect(db);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    c.batch_execute(hotel::POSTGRES_BOOK_ROOM).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    Writers {
        stop,
        done,
        handles,
    }
}

impl Writers {
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.join().unwrap();
        }
        self.done.load(Ordering::Relaxed)
    }
}

#[test]
fn logical_backup_restore_and_verify_under_concurrent_writers() {
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 30_000);
    for (i, env) in envs().into_iter().enumerate() {
        env.init();
        let writers = start_writers(&pg, "hotel", 2);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let snap = env.json(&["backup", &pg.super_url("hotel"), "--tag", "daily"]);
        let booked = writers.finish();
        assert!(booked > 0, "writers ran during the backup");
        assert!(
            !snap.to_string().contains(pgkit::PASSWORD),
            "no password in the snapshot: {snap}"
        );
        assert_eq!(snap["engine"], "postgres");
        assert_eq!(snap["kind"], "logical");
        let md = &snap["metadata"];
        assert_eq!(md["schema_version"], "20240101000000_init");
        assert!(
            md["server_version"]
                .as_str()
                .unwrap()
                .starts_with(&pg.major_version().to_string())
        );
        assert_eq!(md["globals"], "complete");
        assert!(md["database_size"].as_u64().unwrap() > 1_000_000);
        let expected = snapshot_counts(&snap);
        assert!(expected["bookings"] >= 30_000);
        assert_eq!(expected["users"], 3_750);
        let id = snap["id"].as_str().unwrap();

        // Restore into a new database: created, counts as captured, invariant holds.
        let copy = format!("copy{i}");
        let copy_url = pg.super_url(&copy);
        let out = env.json(&["restore", id, "--target-db", &copy_url]);
        assert!(!out.to_string().contains(pgkit::PASSWORD), "{out}");
        assert_eq!(counts(&pg, &copy), expected);
        assert!(invariant_holds(&pg, &copy), "restored state is consistent");

        // The other two restore paths give the same database: one job streams into
        // pg_restore's stdin; plain pg_restore -j from a spooled file (the fallback for
        // archives the parallel-COPY path does not handle).
        for (name, jobs, plain) in [("one", "1", false), ("plain", "2", true)] {
            let db = format!("{copy}_{name}");
            let mut cmd = env.cmd();
            if plain {
                cmd.env("STRONGROOM_PG_PLAIN_RESTORE", "1");
            }
            cmd.args([
                "restore",
                id,
                "--target-db",
                &pg.super_url(&db),
                "--jobs",
                jobs,
            ])
            .assert()
            .success();
            assert_eq!(counts(&pg, &db), expected, "{name}");
            pg.execute("postgres", &format!("DROP DATABASE \"{db}\""));
        }

        // A non-empty target is refused without --force, and untouched.
        pg.execute(&copy, "CREATE TABLE marker (x int)");
        let err = env.fails(&["restore", id, "--target-db", &copy_url]);
        assert!(
            err.contains("not empty") && err.contains("--force"),
            "{err}"
        );
        assert!(!err.contains(pgkit::PASSWORD), "{err}");
        assert!(counts(&pg, &copy).contains_key("marker"));

        // --force --keep-old: the old database is kept aside, the new one has no marker.
        let out = env.json(&[
            "restore",
            id,
            "--target-db",
            &copy_url,
            "--force",
            "--keep-old",
        ]);
        let old = out["old_kept_at"]
            .as_str()
            .unwrap()
            .trim_start_matches("database ")
            .to_string();
        assert!(counts(&pg, &old).contains_key("marker"));
        assert!(!counts(&pg, &copy).contains_key("marker"));
        // --force alone: the old one is dropped.
        let before = pg.databases();
        env.cmd()
            .args(["restore", id, "--target-db", &copy_url, "--force"])
            .assert()
            .success();
        assert_eq!(pg.databases(), before, "no database left behind");

        // Verify: a test restore on the source's server, dropped afterwards. The snapshot
        // records no password, so libpq's PGPASSWORD supplies it.
        let v = {
            let out = env
                .cmd()
                .env("PGPASSWORD", pgkit::PASSWORD)
                .args(["verify", id, "--json"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        };
        assert_eq!(v["ok"], true, "{v}");
        let checks = v["snapshots"][0]["checks"].as_array().unwrap();
        assert!(
            checks
                .iter()
                .any(|c| c["name"] == "row counts" && c["ok"] == true)
        );
        assert_eq!(
            pg.databases(),
            before,
            "verify dropped its temporary database"
        );

        let recs = journal(&env);
        for kind in ["backup", "restore", "verify"] {
            assert!(
                recs.iter().any(|r| r.ok && r.job == kind),
                "{kind} journaled"
            );
        }
        pg.execute("postgres", &format!("DROP DATABASE \"{copy}\""));
        pg.execute("postgres", &format!("DROP DATABASE \"{old}\""));
    }
}

#[test]
fn a_database_owner_without_superuser_backs_up_restores_and_verifies() {
    let pg = cluster_with_app_owned_hotel(5_000);
    let env = envs().into_iter().next().unwrap();
    env.init();
    let app_url = pg.url("app", Some("app-secret"), "hotel");
    let snap = env.json(&["backup", &app_url]);
    assert!(!snap.to_string().contains("app-secret"), "{snap}");
    assert_eq!(
        snap["source"],
        format!("postgres://app@127.0.0.1:{}/hotel", pg.port())
    );
    assert_eq!(snap["metadata"]["globals"], "without passwords");
    let expected = snapshot_counts(&snap);
    let id = snap["id"].as_str().unwrap();

    // Into a new database, then over the original itself, as the owner role.
    env.cmd()
        .args([
            "restore",
            id,
            "--target-db",
            &pg.url("app", Some("app-secret"), "hotel_copy"),
        ])
        .assert()
        .success();
    assert_eq!(counts(&pg, "hotel_copy"), expected);
    let owner: String = pg
        .connect("hotel_copy")
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'bookings'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, "app");
    env.cmd()
        .args(["restore", id, "--target-db", &app_url, "--force"])
        .assert()
        .success();
    assert_eq!(counts(&pg, "hotel"), expected);

    // Verify with the password from libpq's environment (the snapshot records none).
    let v = {
        let out = env
            .cmd()
            .env("PGPASSWORD", "app-secret")
            .args(["verify", id, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(v["ok"], true, "{v}");

    // A role that may not create databases gets a clear refusal before anything happens.
    pg.execute(
        "postgres",
        "CREATE ROLE reader LOGIN PASSWORD 'r' NOCREATEDB",
    );
    let err = env.fails(&[
        "restore",
        id,
        "--target-db",
        &pg.url("reader", Some("r"), "other"),
    ]);
    assert!(err.contains("CREATEDB"), "{err}");
}

#[test]
fn a_restore_onto_a_fresh_server_recreates_the_owning_roles() {
    let a = Cluster::start();
    a.execute("postgres", "CREATE ROLE app LOGIN PASSWORD 'app-secret'");
    load_hotel(&a, "hotel", Some("app"), Some(("app", "app-secret")), 2_000);
    // Database-level properties, which pg_dump leaves out without --create.
    a.execute(
        "postgres",
        "ALTER DATABASE hotel SET timezone = 'Asia/Tokyo';
         ALTER DATABASE hotel SET search_path = \"$user\", public, \"Odd, name\";
         ALTER ROLE app IN DATABASE hotel SET statement_timeout = '5s';
         REVOKE ALL ON DATABASE hotel FROM PUBLIC;
         GRANT CONNECT ON DATABASE hotel TO PUBLIC;
         GRANT TEMPORARY ON DATABASE hotel TO app WITH GRANT OPTION;
         COMMENT ON DATABASE hotel IS 'bookings, it''s';
         ALTER DATABASE hotel CONNECTION LIMIT 40",
    );
    let before = database_properties(&a, "hotel");
    let env = envs().into_iter().next().unwrap();
    env.init();
    let snap = env.json(&["backup", &a.super_url("hotel")]);
    let id = snap["id"].as_str().unwrap();
    drop(a);

    let b = Cluster::start();
    // The source server is gone; verify on a scratch server, which lacks the role "app"
    // that owns everything: it is created bare for the test restore and dropped after.
    let roles = |pg: &Cluster| -> Vec<String> {
        pg.connect("postgres")
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let (roles_before, dbs_before) = (roles(&b), b.databases());
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[verify]\nscratch_postgres = \"{}\"\n",
            b.super_url("postgres")
        ),
    )
    .unwrap();
    let report = env.json(&["verify", id]);
    assert_eq!(report["ok"], true, "{report}");
    std::fs::remove_file(env.path("strongroom.toml")).unwrap();
    assert_eq!(
        roles(&b),
        roles_before,
        "the role made for the test restore is gone"
    );
    assert_eq!(b.databases(), dbs_before);

    env.cmd()
        .args(["restore", id, "--target-db", &b.super_url("hotel")])
        .assert()
        .success();
    let mut c = b.connect("hotel");
    let owner: String = c
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'bookings'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        owner, "app",
        "the owning role came back from the snapshot's globals"
    );
    let db_owner: String = c
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'hotel'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(db_owner, "app");
    // Its password came along too (a superuser's dump includes it).
    let mut app =
        postgres::Client::connect(&b.url("app", Some("app-secret"), "hotel"), postgres::NoTls)
            .expect("app logs in with its old password");
    assert_eq!(database_properties(&b, "hotel"), before);
    let tz: String = app.query_one("SHOW timezone", &[]).unwrap().get(0);
    assert_eq!(
        tz, "Asia/Tokyo",
        "a new session sees the database's settings"
    );
}

/// Settings, per-role settings, privileges, comment and connection limit of a database.
fn database_properties(pg: &Cluster, db: &str) -> Vec<String> {
    let mut c = pg.connect("postgres");
    let mut out: Vec<String> = c
        .query(
            "SELECT COALESCE(pg_get_userbyid(s.setrole)::text, '') || ': ' || array_to_string(s.setconfig, ' | ') \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = $1 \
             UNION ALL SELECT 'acl ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END \
               || ' ' || a.privilege_type || ' ' || a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1 \
             UNION ALL SELECT 'comment ' || COALESCE(shobj_description(d.oid, 'pg_database'), '-') || ' limit ' || d.datconnlimit \
               FROM pg_database d WHERE d.datname = $1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.sort();
    assert!(out.len() >= 6, "{out:?}");
    out
}

#[test]
fn restore_hooks_run_around_the_swap_and_a_failing_hook_changes_nothing() {
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 2_000);
    let env = envs().into_iter().next().unwrap();
    env.init();
    let log = env.path("hooks.log");
    let config = env.path("strongroom.toml");
    let after_ok = format!("echo after >> {}", log.display());
    let write_config = |before: &str, after: &str| {
        std::fs::write(
            &config,
            format!(
                "[sources.prod]\nurl = \"{}\"\nbefore_restore = \"{before}\"\nafter_restore = \"{after}\"\n",
                pg.super_url("hotel"),
            ),
        )
        .unwrap();
    };
    write_config(
        &format!("echo before $STRONGROOM_TARGET >> {}", log.display()),
        &after_ok,
    );
    let snap = env.json(&["backup", "prod"]);
    assert_eq!(snap["source"], "prod");
    let id = snap["id"].as_str().unwrap().to_string();
    pg.create_database("live", None);
    pg.execute(
        "live",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (1)",
    );
    let live = pg.super_url("live");
    // "live" is not the source's own database: its hooks run only when asked to.
    env.cmd()
        .args(["restore", &id, "--target-db", &live, "--force"])
        .assert()
        .success();
    assert!(
        !log.exists(),
        "no hook around a restore into another database"
    );
    pg.execute(
        "live",
        "DROP TABLE IF EXISTS precious; CREATE TABLE precious (x int); INSERT INTO precious VALUES (1)",
    );
    env.cmd()
        .args([
            "restore",
            &id,
            "--target-db",
            &live,
            "--force",
            "--run-hooks",
        ])
        .assert()
        .success();
    let text = std::fs::read_to_string(&log).unwrap();
    let expect_before = format!("before postgres://postgres@127.0.0.1:{}/live", pg.port());
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [expect_before.as_str(), "after"]
    );

    // A failing before_restore: exit 1 naming the hook, the target untouched, nothing left.
    pg.execute("live", "CREATE TABLE precious (x int)");
    write_config("exit 3", &after_ok);
    let before = pg.databases();
    let err = env.fails(&[
        "restore",
        &id,
        "--target-db",
        &live,
        "--force",
        "--run-hooks",
    ]);
    assert!(
        err.contains("before_restore") && err.contains("status 3"),
        "{err}"
    );
    assert!(counts(&pg, "live").contains_key("precious"));
    assert_eq!(
        pg.databases(),
        before,
        "the half-restored database was dropped"
    );

    // A target with an open session is refused at the swap, untouched.
    write_config("true", &after_ok);
    let mut session = pg.connect("live");
    let err = env.fails(&[
        "restore",
        &id,
        "--target-db",
        &live,
        "--force",
        "--run-hooks",
    ]);
    assert!(err.contains("in use"), "{err}");
    session.batch_execute("SELECT 1").unwrap();
    assert_eq!(pg.databases(), before);
    drop(session);

    // A failing after_restore (a smoke test, say): the restore is in place, but the old
    // database is kept and named, even without --keep-old.
    write_config("true", "exit 4");
    let err = env.fails(&[
        "restore",
        &id,
        "--target-db",
        &live,
        "--force",
        "--run-hooks",
    ]);
    assert!(
        err.contains("after_restore") && err.contains("kept as"),
        "{err}"
    );
    let kept: Vec<String> = pg
        .databases()
        .into_iter()
        .filter(|d| d.starts_with("live_old_"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", pg.databases());
    assert!(err.contains(&kept[0]), "{err}");
    assert!(counts(&pg, &kept[0]).contains_key("precious"));
    assert_eq!(counts(&pg, "live"), snapshot_counts(&snap));
}

#[test]
fn a_server_that_forces_tls_is_backed_up_restored_and_verified_over_tls() {
    let pg = Cluster::start_tls();
    load_hotel(&pg, "hotel", None, None, 2_000);
    let env = envs().into_iter().next().unwrap();
    env.init();
    let err = env.fails(&[
        "backup",
        &format!("{}?sslmode=disable", pg.super_url("hotel")),
    ]);
    assert!(err.contains("no encryption"), "{err}");
    assert_eq!(sentences(&err), 1, "{err}");

    // libpq's default (prefer) and require encrypt without checking the certificate;
    // verify-full checks it against sslrootcert and the host name.
    env.json(&["backup", &pg.super_url("hotel")]);
    let full = format!(
        "postgres://{}:{}@localhost:{}/hotel?sslmode=verify-full&sslrootcert={}",
        pgkit::SUPERUSER,
        pgkit::PASSWORD,
        pg.port(),
        pg.certificate().display()
    );
    env.json(&["backup", &full]);
    // A CA that did not sign the server's certificate: refused, in one sentence.
    let other = pgkit::Cluster::start_tls();
    let err = env.fails(&[
        "backup",
        &full.replace(
            &pg.certificate().display().to_string(),
            &other.certificate().display().to_string(),
        ),
    ]);
    assert!(
        err.contains("not trusted") && err.contains("sslrootcert"),
        "{err}"
    );
    drop(other);
    let require = format!("{}?sslmode=require", pg.super_url("hotel"));
    let snap = env.json(&["backup", &require]);
    let id = snap["id"].as_str().unwrap();
    let target = format!("{}?sslmode=require", pg.super_url("copy"));
    env.cmd()
        .args(["restore", id, "--target-db", &target])
        .assert()
        .success();
    assert_eq!(counts(&pg, "copy"), snapshot_counts(&snap));
    let out = env
        .cmd()
        .env("PGPASSWORD", pgkit::PASSWORD)
        .args(["verify", id, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A role that logs in with a client certificate only, no password (Cloud SQL, self-run
    // servers): strongroom's own connection and pg_dump/pg_restore both present it.
    pg.execute("postgres", "CREATE ROLE certy LOGIN SUPERUSER");
    let (crt, key) = pg.client_certificate("certy");
    let by_cert = |db: &str, with_cert: bool| {
        let mut u = format!(
            "postgres://certy@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            pg.certificate().display()
        );
        if with_cert {
            u.push_str(&format!(
                "&sslcert={}&sslkey={}",
                crt.display(),
                key.display()
            ));
        }
        u
    };
    let err = env.fails(&["backup", &by_cert("hotel", false)]);
    assert!(err.contains("sslcert"), "{err}");
    assert_eq!(sentences(&err), 1, "{err}");
    let snap = env.json(&["backup", &by_cert("hotel", true)]);
    let id = snap["id"].as_str().unwrap();
    env.cmd()
        .args(["restore", id, "--target-db", &by_cert("certcopy", true)])
        .assert()
        .success();
    assert_eq!(counts(&pg, "certcopy"), snapshot_counts(&snap));
}

/// Objects of many kinds and awkward data: what a restore must reproduce exactly.
const RICH_SCHEMA: &str = r#"
CREATE SCHEMA billing;
CREATE TYPE billing.currency AS ENUM ('EUR', 'USD', 'CHF');
CREATE TABLE billing.invoices (
  id bigserial PRIMARY KEY, amount numeric(12,2) NOT NULL CHECK (amount >= 0),
  currency billing.currency NOT NULL, memo text, tags text[], meta jsonb, raw bytea,
  issued timestamptz NOT NULL DEFAULT now());
CREATE INDEX invoices_meta ON billing.invoices USING gin (meta);
INSERT INTO billing.invoices (amount, currency, memo, tags, meta, raw)
  SELECT i * 1.25, (ARRAY['EUR','USD','CHF']::billing.currency[])[1 + i % 3],
    CASE i % 5 WHEN 0 THEN E'tab\there\nnew line \\ backslash' WHEN 1 THEN 'ünïcödé ✓ 日本' WHEN 2 THEN NULL
         WHEN 3 THEN E'\\.' ELSE repeat('x', 3000) END,
    ARRAY['a', 'b,c', NULL], jsonb_build_object('n', i, 'q', 'quote"d'), decode(md5(i::text), 'hex')
  FROM generate_series(1, 20000) i;
CREATE TABLE events (id int, at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events SELECT i, date '2024-01-01' + (i % 700), 'e' || i FROM generate_series(1, 5000) i;
CREATE MATERIALIZED VIEW billing.totals AS SELECT currency, sum(amount) AS total FROM billing.invoices GROUP BY 1;
CREATE VIEW recent AS SELECT * FROM events WHERE at > date '2025-06-01';
CREATE FUNCTION billing.double(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT x * 2';
CREATE TABLE audit (id serial PRIMARY KEY, note text);
CREATE FUNCTION note_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN INSERT INTO audit (note) VALUES ('invoice ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER invoices_audit AFTER INSERT ON billing.invoices FOR EACH ROW EXECUTE FUNCTION note_invoice();
COMMENT ON TABLE billing.invoices IS 'every invoice, ever';
SELECT setval('billing.invoices_id_seq', 123456);
CREATE TABLE empty_table (x int);
CREATE TABLE r0 (id int);
CREATE TABLE ra () INHERITS (r0);
CREATE TABLE rb () INHERITS (r0);
CREATE TABLE rc () INHERITS (ra, rb);
INSERT INTO r0 VALUES (0); INSERT INTO rc VALUES (1), (2);
CREATE TABLE notes (id int, body text);
CREATE TABLE vip_notes (level int) INHERITS (notes);
INSERT INTO notes SELECT i, 'n' || i FROM generate_series(1, 300) i;
INSERT INTO vip_notes SELECT i, 'v' || i, i % 3 FROM generate_series(1, 40) i;
"#;

#[test]
fn restores_reproduce_schema_and_data_exactly_on_every_path() {
    let pg = Cluster::start();
    pg.create_database("rich", None);
    pg.execute("rich", RICH_SCHEMA);
    pg.create_database("rich_lo", None);
    pg.execute(
        "rich_lo",
        &format!("{RICH_SCHEMA}\nCREATE TABLE docs (id int, body oid); INSERT INTO docs VALUES (1, lo_from_bytea(0, 'a large object'::bytea));"),
    );
    // A LATIN1 database with non-ASCII names and data: its bytes must survive the restore.
    pg.execute(
        "postgres",
        "CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    pg.execute(
        "latin",
        "CREATE TABLE \"hôtel\" (id int PRIMARY KEY, nom text);
         INSERT INTO \"hôtel\" SELECT i, 'café crème naïve Ünïcödé ' || i FROM generate_series(1, 3000) i;",
    );
    // An ICU-collated database keeps its collation provider.
    pg.execute(
        "postgres",
        "CREATE DATABASE icu TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LOCALE 'C'",
    );
    pg.execute(
        "icu",
        "CREATE TABLE words (w text); INSERT INTO words VALUES ('Äpfel'), ('Zebra'), ('apfel');",
    );
    let env = envs().into_iter().next().unwrap();
    env.init();
    for src in ["rich", "rich_lo", "latin", "icu"] {
        let expected = fingerprint(&pg, src);
        let snap = env.json(&["backup", &pg.super_url(src)]);
        let id = snap["id"].as_str().unwrap();
        if src.starts_with("rich") {
            // Counted from the dump, as count(*) sees them: parents include their
            // partitions and inheritance children.
            let rc = snapshot_counts(&snap);
            let want = [
                ("billing.invoices", 20000),
                ("events", 5000),
                ("events_2024", 2662), // i % 700 within 2024 (366 days)
                ("notes", 340),
                ("r0", 3), // rc once, below the diamond
                ("ra", 2),
                ("vip_notes", 40),
                ("empty_table", 0),
                ("audit", 0),
            ];
            for (t, n) in want {
                assert_eq!(rc.get(t), Some(&n), "{t} in {rc:?}");
            }
        }
        for (name, jobs) in [("par", "2"), ("one", "1")] {
            let db = format!("{src}_{name}");
            let out = env
                .cmd()
                .args([
                    "restore",
                    id,
                    "--target-db",
                    &pg.super_url(&db),
                    "--jobs",
                    jobs,
                    "-v",
                ])
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{log}");
            if jobs == "2" {
                // Large objects, and data that is not UTF-8, send the restore down the
                // plain pg_restore path.
                assert_eq!(
                    log.contains("parallel COPY"),
                    src == "rich" || src == "icu",
                    "{log}"
                );
                // There the counts checked are the rows each COPY reported, summed over
                // partitions and inheritance children (a diamond's table once).
                assert_eq!(
                    log.contains("from_copy=true"),
                    src == "rich" || src == "icu",
                    "{log}"
                );
            }
            let got = fingerprint(&pg, &db);
            assert_eq!(got.0, expected.0, "schema of {db}");
            assert_eq!(got.1, expected.1, "data of {db}");
            if src == "icu" {
                let provider: String = pg
                    .connect("postgres")
                    .query_one(
                        "SELECT datlocprovider::text FROM pg_database WHERE datname = $1",
                        &[&db],
                    )
                    .unwrap()
                    .get(0);
                assert_eq!(provider, "i", "{db} keeps its ICU collation");
                let first: String = pg
                    .connect(&db)
                    .query_one("SELECT w FROM words ORDER BY w LIMIT 1", &[])
                    .unwrap()
                    .get(0);
                assert_eq!(first, "apfel", "ICU order, not byte order");
                continue;
            }
            if src == "latin" {
                let nom: String = pg
                    .connect(&db)
                    .query_one("SELECT nom FROM \"hôtel\" WHERE id = 7", &[])
                    .unwrap()
                    .get(0);
                assert_eq!(nom, "café crème naïve Ünïcödé 7");
                continue;
            }
            if src == "rich_lo" {
                let body: Vec<u8> = pg
                    .connect(&db)
                    .query_one("SELECT lo_get(body) FROM docs", &[])
                    .unwrap()
                    .get(0);
                assert_eq!(body, b"a large object");
            }
            let seq: i64 = pg
                .connect(&db)
                .query_one("SELECT last_value FROM billing.invoices_id_seq", &[])
                .unwrap()
                .get(0);
            assert_eq!(seq, 123456, "sequence position restored");
        }
    }
}

/// Bytes under `dir`, recursively (a local repository's size).
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// A database filled as an application fills it (the bench's varied shape: NULLs, short and
/// long notes, timestamps with microseconds) comes back exactly from its re-framed dump on
/// both restore paths, the parallel one checking the rows each COPY reported; and the
/// frames' boundaries follow the rows: after one early row moved (an update puts its new
/// version at the table's end), a second backup stores a small part of what the first did.
#[test]
fn a_varied_database_round_trips_through_its_reframed_dump_and_deduplicates() {
    let pg = Cluster::start();
    pg.create_database("varied", None);
    pg.execute(
        "varied",
        &hotel::postgres_sql_varied(hotel::Scale::bookings(40_000)),
    );
    assert!(invariant_holds(&pg, "varied"));
    let env = common::envs_on(&[common::Store::Local])
        .into_iter()
        .next()
        .unwrap();
    env.init();
    let expected = fingerprint(&pg, "varied");
    let snap = env.json(&["backup", &pg.super_url("varied")]);
    let id = snap["id"].as_str().unwrap();
    let first = dir_size(std::path::Path::new(&env.repo));
    for (name, jobs) in [("par", "2"), ("one", "1")] {
        let db = format!("varied_{name}");
        let out = env
            .cmd()
            .args([
                "restore",
                id,
                "--target-db",
                &pg.super_url(&db),
                "--jobs",
                jobs,
                "-v",
            ])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        if jobs == "2" {
            assert!(log.contains("from_copy=true"), "{log}");
            assert!(log.contains("restore time split"), "{log}");
        }
        assert_eq!(fingerprint(&pg, &db), expected, "{db}");
        assert_eq!(counts(&pg, &db), snapshot_counts(&snap), "{db}");
    }
    pg.execute(
        "varied",
        "UPDATE bookings SET notes = 'moved to the end' WHERE id = 100",
    );
    env.json(&["backup", &pg.super_url("varied")]);
    let added = dir_size(std::path::Path::new(&env.repo)) - first;
    assert!(
        added * 5 < first,
        "the second backup added {added} bytes after the first stored {first}"
    );
}

/// What PostgreSQL's client tools get from a backup and a restore: the database password
/// through their environment only (never their command line, which `ps` shows everyone),
/// and neither the repository's password nor the object store's keys. Wrappers in
/// `STRONGROOM_PG_BINDIR` record each tool's argv and environment, then run the real one.
#[test]
fn client_tools_see_no_secret_they_do_not_need() {
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 500);
    let env = envs().into_iter().next().unwrap();
    env.init();
    let wrappers = env.path("bin");
    let seen = env.path("seen");
    std::fs::create_dir(&wrappers).unwrap();
    for tool in ["pg_dump", "pg_dumpall", "pg_restore", "psql"] {
        let real = pg.bindir().join(tool);
        let real = if real.exists() {
            real
        } else {
            std::path::PathBuf::from("/usr/lib/postgresql/15/bin").join(tool)
        };
        let script = wrappers.join(tool);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n{{ echo \"ARGV {tool} $*\"; tr '\\0' '\\n' < /proc/$$/environ; }} >> '{}'\nexec '{}' \"$@\"\n",
                seen.display(),
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let url = |db: &str| pg.url(pgkit::SUPERUSER, None, db);
    let run = |args: &[&str]| {
        env.cmd()
            .args(args)
            .env("STRONGROOM_PG_BINDIR", &wrappers)
            .env("PGPASSWORD", pgkit::PASSWORD)
            .env("AWS_SECRET_ACCESS_KEY", "aws-secret-never-passed")
            .assert()
            .success();
    };
    run(&["backup", &url("hotel")]);
    run(&["restore", "latest", "--target-db", &url("copy")]);
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(seen.contains("ARGV pg_dump"), "{seen}");
    assert!(seen.contains("ARGV pg_restore"), "{seen}");
    for line in seen.lines() {
        if line.starts_with("ARGV") {
            assert!(
                !line.contains(pgkit::PASSWORD),
                "a password in argv: {line}"
            );
        }
    }
    assert!(!seen.contains("STRONGROOM_PASSWORD="), "{seen}");
    assert!(!seen.contains("aws-secret-never-passed"), "{seen}");
    assert!(seen.contains(&format!("PGPASSWORD={}", pgkit::PASSWORD)));
}

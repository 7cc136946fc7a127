//! End-to-end tests of PostgreSQL logical backups: the real `strongroom` binary against real,
//! throwaway PostgreSQL clusters (strongroom-testkit), on a local repository and on Garage S3.

mod common;

use common::{Env, PASSWORD, envs, json_of};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use strongroom::hotel::{self, Scale};
use strongroom_testkit::postgres::{self as pgkit, Cluster};

/// Creates database `db` (owned by `owner`) on `pg` and fills it with the hotel schema,
/// connecting as `as_user` (`(name, password)`), or as the superuser.
fn load_hotel(
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

fn counts(pg: &Cluster, db: &str) -> BTreeMap<String, u64> {
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

fn invariant_holds(pg: &Cluster, db: &str) -> bool {
    pg.connect(db)
        .query_one(hotel::INVARIANT_SQL, &[])
        .unwrap()
        .get(0)
}

fn snapshot_counts(snap: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(snap["metadata"]["row_counts"].clone()).unwrap()
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

fn journal(env: &Env) -> Vec<strongroom::repository::journal::JournalRecord> {
    strongroom::repository::Repository::open(env.storage(), Some(PASSWORD.as_bytes()))
        .unwrap()
        .journal_records()
        .unwrap()
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
fn failures_are_one_sentence_leave_no_snapshot_and_are_journaled() {
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 30_000);
    let env = envs().into_iter().next().unwrap();
    env.init();

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = env.fails(&[
        "backup",
        &format!("postgres://postgres@127.0.0.1:{closed}/hotel"),
    ]);
    assert!(
        err.contains("cannot connect") && err.contains(&closed.to_string()),
        "{err}"
    );

    let err = env.fails(&["backup", &pg.url("postgres", Some("wrong-pw"), "hotel")]);
    assert!(
        err.contains("rejected") && err.contains("password"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");
    assert_eq!(sentences(&err), 1, "one sentence: {err}");
    assert!(
        err.contains("visible to every user") && err.lines().last().unwrap().contains("warning"),
        "the warning about the password in argv comes after the error: {err}"
    );

    let err = env.fails(&["backup", &pg.super_url("nope")]);
    assert!(err.contains("\"nope\" does not exist"), "{err}");

    let bin = tempfile::tempdir().unwrap();
    let err = {
        let out = env
            .cmd()
            .env("STRONGROOM_PG_BINDIR", bin.path())
            .args(["backup", &pg.super_url("hotel")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(err.contains("no pg_dump found"), "{err}");

    let fake = |script: &str| {
        fake_pg_dump(bin.path(), script);
        let out = env
            .cmd()
            .env("STRONGROOM_PG_BINDIR", bin.path())
            .args(["backup", &pg.super_url("hotel")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = fake("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n");
    assert!(
        err.contains("9.6.24") && err.contains(&format!("pg_dump {} or newer", pg.major_version())),
        "{err}"
    );
    let real = strongroom::engine::postgres::tools::find("pg_dump", pg.major_version(), "test")
        .unwrap()
        .path;
    let err = fake(&format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {r} --version; fi\n{r} \"$@\" | head -c 200000\nkill -9 $$\n",
        r = real.display()
    ));
    assert!(err.contains("pg_dump was killed by signal 9"), "{err}");

    assert_eq!(sentences(&err), 1, "one sentence: {err}");
    assert_eq!(
        env.json(&["list"]),
        serde_json::json!([]),
        "no snapshot recorded"
    );
    let failed = journal(&env)
        .into_iter()
        .filter(|r| r.job == "backup" && !r.ok)
        .count();
    assert_eq!(failed, 6, "every failed backup left a journal record");
}

/// Writes `script` as an executable `pg_dump` in `dir` (for `STRONGROOM_PG_BINDIR`).
fn fake_pg_dump(dir: &std::path::Path, script: &str) {
    let p = dir.join("pg_dump");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another test thread may have forked while the file was open for writing; until
    // that child execs, running the script fails with ETXTBSY.
    for _ in 0..100 {
        match std::process::Command::new(&p).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => break,
        }
    }
}

#[test]
fn row_counts_describe_the_dump_even_when_a_truncate_races_it() {
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 20_000);
    pg.execute(
        "hotel",
        "CREATE TABLE ledger (id int, note text); \
         INSERT INTO ledger SELECT i, 'entry ' || i FROM generate_series(1, 1000) i;",
    );
    let env = envs().into_iter().next().unwrap();
    env.init();
    // pg_dump holds its locks once its first byte is out. Then a nightly job's TRUNCATE
    // queues behind them, and only then does strongroom see the dump begin. A count(*)
    // issued now would queue behind the TRUNCATE and, in the dump's snapshot, see the
    // emptied table (TRUNCATE is not MVCC-safe): 0 rows recorded for a dump holding 1000.
    let real = strongroom::engine::postgres::tools::find("pg_dump", pg.major_version(), "test")
        .unwrap()
        .path;
    let psql = real.with_file_name("psql");
    let bin = tempfile::tempdir().unwrap();
    let first = bin.path().join("first-byte");
    fake_pg_dump(
        bin.path(),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {r} --version; fi\n\
             {r} \"$@\" | {{ dd bs=1 count=1 of={f} 2>/dev/null; \
             {p} -q -c 'TRUNCATE ledger' >/dev/null & sleep 1; cat {f}; cat; wait; }}\n",
            r = real.display(),
            p = psql.display(),
            f = first.display()
        ),
    );
    let mut backup = env.cmd();
    backup
        .env("STRONGROOM_PG_BINDIR", bin.path())
        .args(["backup", &pg.super_url("hotel")]);
    let snap = json_of(backup);
    assert_eq!(counts(&pg, "hotel")["ledger"], 0, "the TRUNCATE ran");
    assert_eq!(
        snapshot_counts(&snap)["ledger"],
        1000,
        "what the dump holds"
    );
    env.cmd()
        .args([
            "restore",
            snap["id"].as_str().unwrap(),
            "--target-db",
            &pg.super_url("copy"),
        ])
        .assert()
        .success();
    let restored = counts(&pg, "copy");
    assert_eq!(restored["ledger"], 1000);
    assert_eq!(restored, snapshot_counts(&snap));
}

/// Runs strongroom with `args` in its own process group and, once a database whose name
/// starts with `marker` exists, sends SIGINT to the whole group, as Ctrl-C in a terminal
/// does (so `pg_restore` is interrupted too). Returns the exit code and stderr.
fn interrupt_when(
    env: &Env,
    pg: &Cluster,
    args: &[&str],
    marker: &str,
    table: Option<&str>,
) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("strongroom"))
        .current_dir(env.dir.path())
        .env("STRONGROOM_REPO", &env.repo)
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .env("PGPASSWORD", pgkit::PASSWORD)
        .args(args)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The database exists and, when asked, has `table` (its schema is in, data is loading).
    let ready = || {
        let Some(db) = pg.databases().into_iter().find(|d| d.starts_with(marker)) else {
            return false;
        };
        let Some(t) = table else { return true };
        postgres::Client::connect(
            &pg.url(pgkit::SUPERUSER, Some(pgkit::PASSWORD), &db),
            postgres::NoTls,
        )
        .and_then(|mut c| c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&t]))
        .is_ok_and(|r| r.get::<_, bool>(0))
    };
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{args:?} never created its database"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{args:?} ended before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: sending a signal to our own child's process group.
    unsafe { libc_kill(-(child.id() as i32), 2) };
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctrl_c_during_verify_or_restore_leaves_no_database_and_the_target_intact() {
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 60_000);
    let env = envs().into_iter().next().unwrap();
    env.init();
    let snap = env.json(&["backup", &pg.super_url("hotel")]);
    let id = snap["id"].as_str().unwrap();
    let before = pg.databases();
    let (code, err) = interrupt_when(&env, &pg, &["verify", id], "strongroom_verify", None);
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(pg.databases(), before, "the temporary database was dropped");

    // A restore over the live database, interrupted while it builds beside it.
    pg.execute("hotel", "DELETE FROM bookings WHERE id % 2 = 0");
    let live = counts(&pg, "hotel");
    let target = pg.super_url("hotel");
    for jobs in ["2", "1"] {
        let (code, err) = interrupt_when(
            &env,
            &pg,
            &[
                "restore",
                id,
                "--target-db",
                &target,
                "--force",
                "--jobs",
                jobs,
            ],
            "hotel_restoring_",
            Some("bookings"),
        );
        assert_eq!(code, Some(130), "{err}");
        assert_eq!(pg.databases(), before, "nothing left beside the target");
        assert_eq!(counts(&pg, "hotel"), live, "the target was not touched");
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A TCP proxy to the S3 server that cuts every connection, and refuses new ones, once more
/// than `limit` bytes went upstream: an object store that disappears mid-upload.
struct CuttingProxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

fn cutting_proxy(upstream: &str, limit: u64) -> CuttingProxy {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let upstream = upstream.to_string();
    let c = cut.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !c.load(Ordering::SeqCst) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            for (mut from, mut to, count) in [
                (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    true,
                ),
                (server, client, false),
            ] {
                let (c, sent) = (c.clone(), sent.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if count && sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit {
                            c.store(true, Ordering::SeqCst);
                        }
                        if c.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        }
        // Dropping the listener: new connections are refused from now on.
    });
    CuttingProxy { port, cut }
}

#[test]
fn s3_gone_mid_upload_fails_cleanly_without_a_snapshot() {
    let Ok(base) = std::env::var("STRONGROOM_TEST_S3") else {
        eprintln!("STRONGROOM_TEST_S3 unset: skipped (./scripts/test runs it)");
        return;
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 200_000);
    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        dir,
        repo: format!("{}/{}", base.trim_end_matches('/'), common::unique()),
    };
    env.init();
    let proxy = cutting_proxy(&upstream, 2 << 20);
    let out = env
        .cmd()
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .args(["backup", &pg.super_url("hotel")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(proxy.cut.load(Ordering::SeqCst), "the proxy cut the upload");
    let last = err
        .trim_end()
        .lines()
        .rfind(|l| !l.starts_with("strongroom: warning:"))
        .unwrap_or_default();
    assert!(
        last.starts_with("strongroom: ") && last.contains("storage"),
        "{err}"
    );
    assert!(!err.contains(pgkit::PASSWORD));
    // The failure record could not reach the store that vanished: it waits locally...
    let pending = env.dir.path().join("state/pending-journal");
    let waiting = std::fs::read_dir(&pending)
        .map(|d| {
            d.flatten()
                .flat_map(|r| std::fs::read_dir(r.path()).unwrap())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(
        waiting,
        1,
        "one journal record waits in {}",
        pending.display()
    );
    // ...and the next command that reaches the repository writes it. Seen through the real
    // endpoint: no snapshot, the failure journaled, and pg_dump not left running.
    assert_eq!(env.json(&["list"]), serde_json::json!([]));
    let recs = journal(&env);
    assert!(
        recs.iter().any(|r| r.job == "backup"
            && !r.ok
            && r.error.as_deref().unwrap_or("").contains("storage")),
        "{recs:?}"
    );
    let dumps: i64 = pg
        .connect("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'strongroom' OR application_name = 'pg_dump'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dumps, 0, "no dump session left behind");
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

/// The schema as pg_dump sees it, and a digest of every table's rows.
fn fingerprint(pg: &Cluster, db: &str) -> (String, BTreeMap<String, String>) {
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

/// Lines on stderr that are not warnings about the command line itself.
fn sentences(err: &str) -> usize {
    err.trim_end()
        .lines()
        .filter(|l| !l.starts_with("strongroom: warning:"))
        .count()
}

/// A SQLite database of random blobs in a table of its own: it shares no page with another.
fn blob_db(path: &std::path::Path, table: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE {table}(body BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
         INSERT INTO {table} SELECT randomblob(3000) FROM n;"
    ))
    .unwrap();
}

#[test]
fn verify_all_reports_every_snapshot_whatever_fails_with_each() {
    let pg = cluster_with_app_owned_hotel(2_000);
    let env = envs().into_iter().next().unwrap();
    env.init();
    for name in ["a", "b", "c"] {
        blob_db(&env.path(&format!("{name}.db")), &format!("t_{name}"));
    }
    let config = |prod_url: &str| {
        let mut text = format!("[sources.prod]\nurl = \"{prod_url}\"\n");
        for name in ["a", "b", "c"] {
            text += &format!(
                "[sources.{name}]\nurl = \"sqlite:{}\"\n",
                env.path(&format!("{name}.db")).display()
            );
        }
        std::fs::write(env.path("strongroom.toml"), text).unwrap();
    };
    // No password from anywhere but what each step gives.
    let cmd = || {
        let mut c = env.cmd();
        c.env_remove("PGPASSWORD")
            .env("PGPASSFILE", env.path("no-pgpass"));
        c
    };
    let plain_url = pg.url("app", None, "hotel");
    let secret_url = pg.url("app", Some("app-secret"), "hotel");
    config(&secret_url);
    // A URL that a configured source names is that source: recorded by its name.
    let prod = json_of({
        let mut c = cmd();
        c.env("PGPASSWORD", "app-secret")
            .args(["backup", &plain_url]);
        c
    });
    assert_eq!(prod["source"], "prod");
    let backup = |name: &str| {
        json_of({
            let mut c = cmd();
            c.args(["backup", name]);
            c
        })
    };
    let (b, c) = (backup("b"), backup("c"));
    let storage = env.storage();
    let packs = |s: &strongroom::storage::Storage| -> Vec<String> {
        s.list("data/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    let before = packs(&storage);
    let a = backup("a");
    // Damage a pack only snapshot a uses, and c's manifest.
    let pack = packs(&storage)
        .into_iter()
        .find(|p| !before.contains(p))
        .expect("a stored a pack of its own");
    let mut bytes = storage.get(&pack).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    storage.put(&pack, &bytes).unwrap();
    let id = |s: &Value| s["id"].as_str().unwrap().to_string();
    let (prod_id, a_id, b_id, c_id) = (id(&prod), id(&a), id(&b), id(&c));
    let manifest = format!("snapshots/{c_id}");
    let mut m = storage.get(&manifest).unwrap();
    m[10] ^= 0x80;
    storage.put(&manifest, &m).unwrap();

    let verify_all = |pgpassword: Option<&str>| -> (Value, String) {
        let mut c = cmd();
        if let Some(p) = pgpassword {
            c.env("PGPASSWORD", p);
        }
        let out = c.args(["verify", "--all", "--json"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        for secret in ["app-secret", "not-the-password"] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{stdout}{stderr}"
            );
        }
        (serde_json::from_str(&stdout).unwrap(), stderr)
    };
    let entry = |v: &Value, id: &str| -> Value {
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no entry for {id} in {v}"))
            .clone()
    };
    let failed_check = |e: &Value, name: &str| -> String {
        assert_eq!(e["ok"], false, "{e}");
        let c = e["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["ok"] == false)
            .unwrap_or_else(|| panic!("no failed check in {e}"));
        assert_eq!(c["name"], name, "{e}");
        c["detail"].as_str().unwrap().to_string()
    };
    let others_as_expected = |v: &Value| {
        assert_eq!(v["ok"], false);
        assert_eq!(v["snapshots"].as_array().unwrap().len(), 4, "{v}");
        assert_eq!(entry(v, &b_id)["ok"], true, "{v}");
        let read = failed_check(&entry(v, &a_id), "read");
        assert!(read.contains(&pack), "{read}");
        let man = failed_check(&entry(v, &c_id), "manifest");
        assert!(man.contains(&manifest), "{man}");
    };

    // Credentials as backup found them: the configured source with the URL recorded in the
    // snapshot holds the password.
    let (v, _) = verify_all(None);
    others_as_expected(&v);
    assert_eq!(entry(&v, &prod_id)["ok"], true, "{v}");

    // The server refuses the password: that snapshot fails, saying what was tried; the
    // others are verified all the same.
    config(&plain_url);
    let (v, stderr) = verify_all(Some("not-the-password"));
    others_as_expected(&v);
    let connect = failed_check(&entry(&v, &prod_id), "connect");
    let tried = format!(
        "connecting to postgres://app@127.0.0.1:{}/postgres (from source prod in the config; \
         password from PGPASSWORD) failed: ",
        pg.port()
    );
    assert!(
        connect.starts_with(&tried) && connect.contains("password authentication failed"),
        "{connect}"
    );
    for id in [&prod_id, &a_id, &c_id] {
        assert!(stderr.contains(&id[..8]), "{stderr}");
    }

    // Every snapshot has its journal record, saying what failed.
    let records = journal(&env);
    let last_verify = |id: &str| {
        records
            .iter()
            .rfind(|r| r.job == "verify" && r.snapshot.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no verify record for {id}"))
            .clone()
    };
    assert!(last_verify(&b_id).ok);
    for (id, what) in [
        (&prod_id, "connect: connecting to"),
        (&a_id, "read: "),
        (&c_id, "manifest: "),
    ] {
        let r = last_verify(id);
        assert!(!r.ok);
        let error = r.error.unwrap_or_default();
        assert!(error.starts_with(what), "{id}: {error}");
    }

    // No config at all: the URL recorded in the snapshot, and no password found.
    std::fs::remove_file(env.path("strongroom.toml")).unwrap();
    let out = cmd().args(["verify", &prod_id, "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let connect = failed_check(&entry(&v, &prod_id), "connect");
    assert!(
        connect.contains(&format!(
            "(the source URL recorded in snapshot {}; no password in the URL, PGPASSWORD or the \
             password file)",
            &prod_id[..8]
        )),
        "{connect}"
    );
}

/// A cluster whose `hotel` database belongs to `app` (password `app-secret`), a role that
/// may create databases but is no superuser: a managed service's usual setup.
fn cluster_with_app_owned_hotel(bookings: u64) -> Cluster {
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

/// SIGKILLs logical backups and `forget --prune` at random moments: after every kill the
/// repository checks clean, and every listed snapshot restores with its recorded row counts
/// and a schema-and-data fingerprint equal to the one taken when it was backed up.
#[test]
fn kills_at_random_moments_never_lose_a_listed_postgres_snapshot() {
    let seed = common::seed();
    let mut rng = hotel::Rng::new(seed);
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 20_000);
    let url = pg.super_url("hotel");
    for env in envs() {
        env.init();
        let mut fingerprints: BTreeMap<String, (String, BTreeMap<String, String>)> =
            BTreeMap::new();
        let (mut kills, mut round, mut restored) = (0, 0u64, 0u64);
        while kills < 10 {
            round += 1;
            assert!(round < 80, "too few kills landed (seed {seed})");
            pg.execute("hotel", &hotel::postgres_update_sql(0.05));
            let state = fingerprint(&pg, "hotel");
            let prune = rng.below(3) == 0 && fingerprints.len() > 2;
            let args: Vec<&str> = if prune {
                vec!["forget", "--keep-last", "2", "--prune"]
            } else {
                vec!["backup", &url]
            };
            let before: Vec<String> = fingerprints.keys().cloned().collect();
            let mut child = env
                .std_cmd()
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(rng.below(1200)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
            let check = env.json(&["check", "--read-data"]);
            assert_eq!(check["ok"], true, "round {round}, seed {seed}: {check:#}");
            let listed = env.json(&["list"]);
            for s in listed.as_array().unwrap() {
                let id = s["id"].as_str().unwrap().to_string();
                if !before.contains(&id) {
                    fingerprints
                        .entry(id.clone())
                        .or_insert_with(|| state.clone());
                }
                restored += 1;
                let target = format!("restored_{restored}");
                env.json(&["restore", &id, "--target-db", &pg.super_url(&target)]);
                assert_eq!(
                    counts(&pg, &target),
                    snapshot_counts(s),
                    "round {round}: snapshot {id} has its row counts (seed {seed})"
                );
                assert!(
                    fingerprint(&pg, &target) == fingerprints[&id],
                    "round {round}: snapshot {id} restores schema and data exactly (seed {seed})"
                );
                pg.execute("postgres", &format!("DROP DATABASE {target}"));
            }
            fingerprints.retain(|id, _| {
                listed
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["id"] == id.as_str())
            });
            // The job runs to the end after the kill.
            env.cmd().args(&args).arg("--json").assert().success();
            for s in env.json(&["list"]).as_array().unwrap() {
                let id = s["id"].as_str().unwrap().to_string();
                fingerprints.entry(id).or_insert_with(|| state.clone());
            }
        }
        eprintln!("{}: {kills} kills in {round} rounds", env.repo);
    }
}

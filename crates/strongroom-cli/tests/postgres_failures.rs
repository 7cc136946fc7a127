//! PostgreSQL logical backups when things go wrong, end to end: failures are one sentence,
//! leave no snapshot and are journaled; row counts describe the dump even when a TRUNCATE
//! races it; Ctrl-C during verify or restore leaves no database and the target intact; an
//! object store (S3, Azure, GCS) that goes away mid-upload fails the backup cleanly; `verify --all` reports every
//! snapshot whatever fails with each; SIGKILLs at random moments never lose a listed
//! snapshot. Real clusters, real binary.

mod common;

use common::hotel_pg::{
    cluster_with_app_owned_hotel, counts, fingerprint, journal, load_hotel, sentences,
    snapshot_counts,
};
use common::{Env, LOCAL_AND_S3, PASSWORD, Store, envs, envs_on, json_of};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use strongroom::hotel;
use strongroom_testkit::postgres::{self as pgkit, Cluster};

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
    // A dump cut short by something that still reports success is not a snapshot either.
    let err = fake(&format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {r} --version; fi\n{r} \"$@\" | head -c 200000\n",
        r = real.display()
    ));
    assert!(
        err.contains("archive ended early") && err.contains("no snapshot was recorded"),
        "{err}"
    );
    assert_eq!(sentences(&err), 1, "one sentence: {err}");

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
    assert_eq!(failed, 7, "every failed backup left a journal record");
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

/// A TCP proxy to an object store's server that cuts every connection, and refuses new ones,
/// once more than `limit` bytes went upstream: an object store that disappears mid-upload.
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
fn an_object_store_gone_mid_upload_fails_cleanly_without_a_snapshot() {
    let stores: Vec<Env> = Store::REMOTE.into_iter().filter_map(Store::env).collect();
    if stores.is_empty() {
        return;
    }
    let pg = Cluster::start();
    load_hotel(&pg, "hotel", None, None, 200_000);
    for env in stores {
        gone_mid_upload(&pg, env);
    }
}

/// A backup of `pg` into `env`'s store through a proxy that cuts every connection once
/// 2 MiB went upstream.
fn gone_mid_upload(pg: &Cluster, env: Env) {
    let store = env.store().name();
    let (var, endpoint) = env.store().endpoint().unwrap();
    // The proxy's address in place of the server's; a path (Azurite's account) stays.
    let rest = endpoint.trim_start_matches("http://");
    let (upstream, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    env.init();
    let proxy = cutting_proxy(upstream, 2 << 20);
    let out = env
        .cmd()
        .env(var, format!("http://127.0.0.1:{}{path}", proxy.port))
        .args(["backup", &pg.super_url("hotel")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{store}: {err}");
    assert!(
        proxy.cut.load(Ordering::SeqCst),
        "{store}: the proxy cut the upload"
    );
    let last = err
        .trim_end()
        .lines()
        .rfind(|l| !l.starts_with("strongroom: warning:"))
        .unwrap_or_default();
    assert!(
        last.starts_with("strongroom: ") && last.contains("storage"),
        "{store}: {err}"
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
        "{store}: one journal record waits in {}",
        pending.display()
    );
    // ...and the next command that reaches the repository writes it. Seen through the real
    // endpoint: no snapshot, the failure journaled, and pg_dump not left running.
    assert_eq!(env.json(&["list"]), serde_json::json!([]), "{store}");
    let recs = journal(&env);
    assert!(
        recs.iter().any(|r| r.job == "backup"
            && !r.ok
            && r.error.as_deref().unwrap_or("").contains("storage")),
        "{store}: {recs:?}"
    );
    let dumps: i64 = pg
        .connect("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'strongroom' OR application_name = 'pg_dump'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dumps, 0, "{store}: no dump session left behind");
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
    for env in envs_on(&LOCAL_AND_S3) {
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

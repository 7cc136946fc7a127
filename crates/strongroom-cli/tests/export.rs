//! `strongroom export`, end to end: every kind of snapshot written out and brought back with
//! the database's own tools alone (`sqlite3`; `psql` and `pg_restore` into a fresh cluster;
//! `tar` and `postgres` on the extracted directory), after `age -d` or `gpg -d` when the
//! export was encrypted; files that exist refused without `--force` and never half
//! replaced; and memory that does not grow with the database.

mod common;

use common::hotel_pg::{cluster_with_app_owned_hotel, counts, fingerprint, snapshot_counts};
use common::pg::{Rig, ids, workload};
use common::{Env, envs};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use strongroom_testkit::postgres::{Cluster, bindirs, give_to_server_user};

/// A throwaway age identity and a GnuPG home with one key (no passphrase), made by the
/// tools themselves.
struct Keys {
    age_identity: PathBuf,
    age_recipient: String,
    gnupg: PathBuf,
    gpg_id: String,
}

fn keys(dir: &Path) -> Keys {
    let age_identity = dir.join("age.key");
    run(Command::new("age-keygen").arg("-o").arg(&age_identity));
    let age_recipient =
        String::from_utf8(run(Command::new("age-keygen").arg("-y").arg(&age_identity)))
            .unwrap()
            .trim()
            .to_string();
    let gnupg = dir.join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let gpg_id = "Ops Team <ops@example.com>".to_string();
    run(Command::new("gpg")
        .env("GNUPGHOME", &gnupg)
        .args(["--batch", "--passphrase", "", "--quick-gen-key", &gpg_id])
        .args(["default", "default", "never"]));
    Keys {
        age_identity,
        age_recipient,
        gnupg,
        gpg_id: "ops@example.com".into(),
    }
}

/// Runs a native tool, which must succeed; returns its standard output.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Keys {
    /// `age -d` of `file` into `to`.
    fn age_decrypt(&self, file: &Path, to: &Path) {
        run(Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&self.age_identity)
            .arg("-o")
            .arg(to)
            .arg(file));
    }

    /// `gpg -d` of `file` into `to`.
    fn gpg_decrypt(&self, file: &Path, to: &Path) {
        run(Command::new("gpg")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--batch", "--quiet", "--output"])
            .arg(to)
            .arg("-d")
            .arg(file));
    }
}

/// `strongroom export` with `args`, which must succeed; returns its JSON report.
fn export(env: &Env, keys: &Keys, args: &[&str]) -> Value {
    let mut cmd = env.cmd();
    cmd.arg("export").args(args).env("GNUPGHOME", &keys.gnupg);
    common::json_of(cmd)
}

/// Files in `dir` whose name says they are an export's temporary files.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("strongroom-export"))
        .collect()
}

/// Row counts of every table of a SQLite file, read by the sqlite3 program.
fn sqlite3_counts(db: &Path) -> BTreeMap<String, u64> {
    let check = run(Command::new("sqlite3")
        .arg(db)
        .arg("PRAGMA integrity_check"));
    assert_eq!(
        String::from_utf8_lossy(&check).trim(),
        "ok",
        "{}",
        db.display()
    );
    let tables = run(Command::new("sqlite3")
        .arg(db)
        .arg("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"));
    String::from_utf8(tables)
        .unwrap()
        .lines()
        .map(|t| {
            let n = run(Command::new("sqlite3")
                .arg(db)
                .arg(format!("SELECT count(*) FROM \"{t}\"")));
            (
                t.to_string(),
                String::from_utf8(n).unwrap().trim().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_sqlite_export_is_the_database_file_in_the_clear_or_encrypted_to_age_or_gpg() {
    for env in envs() {
        let keys = keys(env.dir.path());
        let (_db, src) = env.hotel_source(3_000);
        let snap = env.json(&["backup", &src]);
        let want = snapshot_counts(&snap);
        let out = env.path("out");
        std::fs::create_dir(&out).unwrap();

        let plain = out.join("hotel.db");
        let doc = export(&env, &keys, &["latest", "--to", plain.to_str().unwrap()]);
        assert_eq!(doc["snapshot"], snap["id"], "{doc}");
        assert_eq!(doc["encrypted_to"], Value::Null);
        let file = &doc["files"][0];
        assert_eq!(file["path"], plain.to_str().unwrap());
        let size = std::fs::metadata(&plain).unwrap().len();
        assert_eq!(file["bytes"], size);
        assert_eq!(doc["bytes"], size);
        assert_eq!(sqlite3_counts(&plain), want);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&plain).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the data is for its owner only");

        // age: only ciphertext on disk; age -d gives back the same file.
        let sealed = out.join("hotel.db.age");
        let doc = export(
            &env,
            &keys,
            &[
                "latest",
                "--to",
                sealed.to_str().unwrap(),
                "--age-recipient",
                &keys.age_recipient,
            ],
        );
        assert_eq!(doc["encrypted_to"], format!("age {}", keys.age_recipient));
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(
            !bytes.windows(15).any(|w| w == b"SQLite format 3"),
            "no plaintext in the encrypted file"
        );
        let back = out.join("from-age.db");
        keys.age_decrypt(&sealed, &back);
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(&plain).unwrap()
        );
        assert_eq!(sqlite3_counts(&back), want);

        // gpg: the key of a GnuPG keyring, through gpg itself.
        let sealed = out.join("hotel.db.gpg");
        let doc = export(
            &env,
            &keys,
            &[
                "latest",
                "--to",
                sealed.to_str().unwrap(),
                "--gpg-recipient",
                &keys.gpg_id,
            ],
        );
        assert_eq!(doc["encrypted_to"], format!("gpg {}", keys.gpg_id));
        let back = out.join("from-gpg.db");
        keys.gpg_decrypt(&sealed, &back);
        assert_eq!(sqlite3_counts(&back), want);

        // A file that exists is refused, untouched, unless --force; a key gpg does not
        // have and a string that is no age key are refused before anything is written.
        let before = std::fs::read(&plain).unwrap();
        let err = env.fails(&["export", "latest", "--to", plain.to_str().unwrap()]);
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        for bad in [
            vec!["--gpg-recipient", "nobody@example.com"],
            vec!["--age-recipient", "age1notakey"],
        ] {
            let mut args = vec!["export", "latest", "--to", "new.db"];
            args.extend(bad);
            let err = env.fails_with(&args, &[("GNUPGHOME", keys.gnupg.to_str().unwrap())]);
            assert!(
                err.contains("nobody@example.com") || err.contains("age1notakey"),
                "{err}"
            );
            assert!(!env.path("new.db").exists());
        }
        env.cmd().args(["backup", &src]).assert().success();
        let doc = export(
            &env,
            &keys,
            &["latest", "--to", plain.to_str().unwrap(), "--force"],
        );
        assert_eq!(doc["files"][0]["replaced"], true);
        assert_ne!(doc["snapshot"], snap["id"]);
        assert_eq!(std::fs::read(&plain).unwrap().len(), before.len());
        assert_eq!(sqlite3_counts(&plain), want);
        assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    }
}

#[test]
fn an_export_that_fails_leaves_no_partial_file_and_the_old_one_in_place() {
    let env = envs().remove(0);
    let (_db, src) = env.hotel_source(20_000);
    env.json(&["backup", &src]);
    let old = env.path("old.db");
    std::fs::write(&old, b"the previous export").unwrap();
    let dir = env.dir.path();

    // gpg stops half way (a full disk under it): the export fails in gpg's words, and
    // nothing of it stays. This gpg takes the recipient, then gives up after 256 KiB.
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("gpg");
    std::fs::write(
        &fake,
        "#!/bin/sh\nn=$(head -c 262144 | wc -c)\n[ \"$n\" -lt 262144 ] && exit 0\n\
         echo 'gpg: error writing to [stdout]: No space left on device' >&2\nexit 2\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let args = [
        "export",
        "latest",
        "--to",
        old.to_str().unwrap(),
        "--force",
        "--gpg-recipient",
        "ops@example.com",
    ];
    let err = env.fails_with(&args, &[("PATH", &path)]);
    assert!(
        err.contains("No space left on device") && err.contains("gpg"),
        "{err}"
    );
    assert_eq!(std::fs::read(&old).unwrap(), b"the previous export");
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));

    // A repository missing a pack: the export stops with the damage named.
    let repo = Path::new(&env.repo);
    for pack in walk(&repo.join("data")) {
        std::fs::remove_file(&pack).unwrap();
    }
    let err = env.fails(&["export", "latest", "--to", old.to_str().unwrap(), "--force"]);
    assert!(err.contains("missing") || err.contains("damaged"), "{err}");
    assert_eq!(std::fs::read(&old).unwrap(), b"the previous export");
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
    // Both failures are journaled as side jobs: they say nothing of the source's health.
    let records = common::hotel_pg::journal(&env);
    let exports: Vec<_> = records.iter().filter(|r| r.job == "export").collect();
    assert_eq!(exports.len(), 2, "{records:?}");
    assert!(exports.iter().all(|r| !r.ok && r.side));
}

#[test]
fn an_interrupted_export_removes_its_file_and_a_killed_one_is_cleaned_up_next_time() {
    let env = envs().remove(0);
    let (_db, src) = env.hotel_source(2_000);
    env.json(&["backup", &src]);
    let to = env.path("hotel.db");
    std::fs::write(&to, b"the previous export").unwrap();
    let faults = env.path("faults");
    std::fs::create_dir(&faults).unwrap();
    // Every file complete in its temporary file, none renamed: a signal then.
    let paused = |signal: i32| -> std::process::ExitStatus {
        let _ = std::fs::remove_file(faults.join("paused"));
        let mut child = env
            .std_cmd()
            .args(["export", "latest", "--force", "--to"])
            .arg(&to)
            .env("STRONGROOM_FAULT", "pause-export-before-rename")
            .env("STRONGROOM_FAULT_DIR", &faults)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..1200 {
            if faults.join("paused").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(faults.join("paused").exists(), "the export never paused");
        assert_eq!(leftovers(env.dir.path()).len(), 1, "its temporary file");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().unwrap()
    };
    let status = paused(libc::SIGTERM);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert!(
        leftovers(env.dir.path()).is_empty(),
        "removed on the signal"
    );
    assert_eq!(std::fs::read(&to).unwrap(), b"the previous export");

    // SIGKILL leaves it (nothing can run): the next export to the same path removes it once
    // no export holds it and it is a minute old.
    let status = paused(libc::SIGKILL);
    assert_eq!(status.code(), None);
    let left = leftovers(env.dir.path());
    assert_eq!(left.len(), 1);
    assert_eq!(std::fs::read(&to).unwrap(), b"the previous export");
    run(Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(env.path(&left[0])));
    export(
        &env,
        &keys(env.dir.path()),
        &["latest", "--force", "--to", to.to_str().unwrap()],
    );
    assert!(
        leftovers(env.dir.path()).is_empty(),
        "{:?}",
        leftovers(env.dir.path())
    );
    assert_eq!(sqlite3_counts(&to)["bookings"], 2_000);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A PostgreSQL client program of at least `major`.
fn tool(name: &str, major: u32) -> PathBuf {
    strongroom::engine::postgres::tools::find(name, major, "the test")
        .unwrap()
        .path
}

#[test]
fn a_logical_export_is_a_pg_dump_archive_that_pg_restore_loads_into_a_fresh_cluster() {
    let pg = cluster_with_app_owned_hotel(5_000);
    pg.execute("hotel", "ALTER DATABASE hotel SET work_mem = '7MB'");
    let env = envs().remove(0);
    let keys = keys(env.dir.path());
    env.init();
    let snap = env.json(&["backup", &pg.super_url("hotel")]);
    assert_eq!(snap["kind"], "logical");
    let dump = env.path("hotel.dump");
    let doc = export(
        &env,
        &keys,
        &[
            "latest",
            "--to",
            dump.to_str().unwrap(),
            "--gpg-recipient",
            &keys.gpg_id,
        ],
    );
    let files: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let globals = env.path("hotel.dump.globals.sql");
    assert_eq!(files, [dump.to_str().unwrap(), globals.to_str().unwrap()]);
    // Encrypted, both of them: gpg -d, then the native tools alone.
    let plain_dump = env.path("plain.dump");
    let plain_globals = env.path("plain.globals.sql");
    keys.gpg_decrypt(&dump, &plain_dump);
    keys.gpg_decrypt(&globals, &plain_globals);
    assert!(std::fs::read(&plain_dump).unwrap().starts_with(b"PGDMP"));
    let major = pg.major_version();
    let listing = run(Command::new(tool("pg_restore", major))
        .arg("--list")
        .arg(&plain_dump));
    assert!(
        String::from_utf8_lossy(&listing).contains("TABLE DATA public bookings"),
        "{}",
        String::from_utf8_lossy(&listing)
    );

    let fresh = Cluster::start();
    // The roles first (app owns the database), then the database, then the archive, in
    // parallel (pg_restore -j reads forward for each table's data: pg_dump wrote to a pipe).
    run(Command::new(tool("psql", major))
        .args(["-X", "-q", "-d", &fresh.super_url("postgres"), "-f"])
        .arg(&plain_globals));
    run(Command::new(tool("pg_restore", major))
        .args(["--create", "-j", "2", "--exit-on-error", "-d"])
        .arg(fresh.super_url("postgres"))
        .arg(&plain_dump));
    assert_eq!(fingerprint(&fresh, "hotel"), fingerprint(&pg, "hotel"));
    assert_eq!(counts(&fresh, "hotel"), snapshot_counts(&snap));
    // The role came with its password, and --create brought the database's settings.
    let mut app = postgres::Client::connect(
        &fresh.url("app", Some("app-secret"), "hotel"),
        postgres::NoTls,
    )
    .unwrap();
    let owner: String = app
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'hotel'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, "app");
    let work_mem: String = app.query_one("SHOW work_mem", &[]).unwrap().get(0);
    assert_eq!(work_mem, "7MB");
}

/// Members of a tar file, in order (`tar -t`).
fn members(tar: &Path) -> Vec<String> {
    String::from_utf8(run(Command::new("tar").arg("-tf").arg(tar)))
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn a_physical_export_is_a_tar_postgres_starts_on_by_itself() {
    for (n, bindir) in bindirs().into_iter().enumerate() {
        // With archiving into the repository (WAL from the archive), and for the first
        // server version also without (the snapshot carries its WAL).
        for archive in [true, false].into_iter().take(if n == 0 { 2 } else { 1 }) {
            let rig = Rig::new(envs().remove(0), &bindir, archive);
            eprintln!("PostgreSQL {}, archiving {archive}", rig.pg.major_version());
            let keys = keys(rig.env.dir.path());
            let ts = rig.env.path("tablespace");
            std::fs::create_dir(&ts).unwrap();
            give_to_server_user(&ts);
            rig.pg.create_database("app", None);
            rig.pg.execute(
                "postgres",
                &format!("CREATE TABLESPACE elsewhere LOCATION '{}'", ts.display()),
            );
            rig.pg.execute(
                "app",
                "CREATE TABLE oracle (id int PRIMARY KEY, at timestamptz, xid bigint);
                 INSERT INTO oracle SELECT g, now(), 0 FROM generate_series(-99, 0) g;
                 CREATE TABLE far (id int) TABLESPACE elsewhere;
                 INSERT INTO far SELECT generate_series(1, 1000);",
            );
            let before = ids(&rig.pg);
            let snap = rig.backup();
            assert_eq!(snap["metadata"]["wal_included"], !archive, "{snap}");
            // Commits after the backup are not in it: the copy stops at the backup's end.
            workload(&rig.pg, 1, 5, None);
            if archive {
                rig.archive_now();
            }
            // A logical snapshot of the same source, newer: --kind picks the physical one
            // (pg_dump is at hand for the machine's own server version only).
            if n == 0 {
                let logical = rig.env.json(&["backup", &rig.url()]);
                assert_eq!(logical["kind"], "logical");
            }

            let tar = rig.env.path("pgdata.tar");
            let doc = export(
                &rig.env,
                &keys,
                &[
                    "latest",
                    "--kind",
                    "physical",
                    "--to",
                    tar.to_str().unwrap(),
                ],
            );
            assert_eq!(doc["kind"], "physical");
            assert_eq!(doc["snapshot"], snap["id"]);
            assert_eq!(
                doc["files"][0]["bytes"],
                std::fs::metadata(&tar).unwrap().len()
            );
            let list = members(&tar);
            assert_eq!(list.last().map(String::as_str), Some("global/pg_control"));
            assert!(list.iter().any(|m| m == "backup_label"), "{list:?}");
            assert!(!list.iter().any(|m| m == "tablespace_map"), "{list:?}");
            let wal: Vec<&String> = list
                .iter()
                .filter(|m| m.starts_with("pg_wal/0000") && m.len() == 31)
                .collect();
            assert!(!wal.is_empty(), "{list:?}");
            for w in &wal {
                let done = format!("pg_wal/archive_status/{}.done", &w[7..]);
                assert!(list.contains(&done), "{done} in {list:?}");
            }

            // The same tar, encrypted to age, decrypts to the same bytes.
            let sealed = rig.env.path("pgdata.tar.age");
            export(
                &rig.env,
                &keys,
                &[
                    snap["id"].as_str().unwrap(),
                    "--to",
                    sealed.to_str().unwrap(),
                    "--age-recipient",
                    &keys.age_recipient,
                ],
            );
            let back = rig.env.path("back.tar");
            keys.age_decrypt(&sealed, &back);
            assert!(std::fs::read(&back).unwrap() == std::fs::read(&tar).unwrap());

            // tar, then postgres, and nothing else: no strongroom in the server's
            // environment, no restore_command, no recovery.signal.
            let dir = rig.env.path("copy");
            std::fs::create_dir(&dir).unwrap();
            run(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&dir));
            assert!(!dir.join("recovery.signal").exists());
            let link = std::fs::read_link(
                dir.join("pg_tblspc")
                    .read_dir()
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path(),
            )
            .unwrap();
            assert!(link.is_relative(), "{link:?}");
            let copy = Cluster::start_existing(&dir, &bindir)
                .try_start()
                .unwrap_or_else(|log| panic!("the exported directory did not start:\n{log}"));
            assert_eq!(ids(&copy), before, "exactly what the backup held");
            let mut c = copy.connect("app");
            let far: i64 = c.query_one("SELECT count(*) FROM far", &[]).unwrap().get(0);
            assert_eq!(far, 1000);
            let recovering: bool = c
                .query_one("SELECT pg_is_in_recovery()", &[])
                .unwrap()
                .get(0);
            assert!(!recovering);
            let archive_mode: String = c.query_one("SHOW archive_mode", &[]).unwrap().get(0);
            assert_eq!(
                archive_mode, "off",
                "a copy never archives into the source's archive"
            );
            c.batch_execute("INSERT INTO far VALUES (1001)").unwrap();
            drop(c);
            drop(copy);
        }
    }
}

/// Runs `cmd`, which must succeed, and returns its peak resident memory in bytes
/// (`ru_maxrss`), measured by a small parent of its own (python3, as bench/measure.py does)
/// rather than by this process: Linux starts a child's `ru_maxrss` at the high-water mark
/// of the process that spawned it (the memory it had before its exec), so a child of this
/// test binary reports at least the most this binary ever held. The other tests in it read
/// whole tars and databases: every export measured 106 MB that way, `show` too.
fn peak_of(cmd: &Command, what: &str) -> u64 {
    const SPAWN: &str = "import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
p.returncode = os.waitstatus_to_exitcode(status)
print(p.returncode, usage.ru_maxrss)";
    let mut py = Command::new("python3");
    py.arg("-c")
        .arg(SPAWN)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        py.current_dir(dir);
    }
    let out = py.stdin(Stdio::null()).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let Some(("0", kib)) = said.trim().split_once(' ') else {
        panic!("{what} failed ({said}): {stderr}");
    };
    kib.parse::<u64>().unwrap() << 10
}

/// What a streamed export holds whatever the file's size (`repository::reader`'s memory
/// note): two 12 MiB steps, one 8 MiB ranged read per reader (4) and the segments being
/// opened (about 2 MiB per reader).
const PIPELINE: u64 = (2 * 12 + 4 * 8 + 4 * 2) << 20;
/// Room above [`PIPELINE`] for what the arithmetic leaves out: the allocator's slack on the
/// segments, the age writer's buffer (1 MiB), thread stacks, the index. Measured: 53 to 59 MB
/// above `show`'s 19 MB for the 184 MB export, against 64 + 16 allowed.
const SLACK: u64 = 16 << 20;

#[test]
fn memory_stays_flat_whatever_the_size_of_the_database() {
    // Two snapshots of one database of incompressible rows, 32 and 192 MB, each exported
    // encrypted to age (the reader's steps and the encryption's buffers both on the way).
    // A buffer holding the file, or any part of it, shows as a peak that grows with the
    // file: between the two exports the peak must grow by far less than the file did
    // (measured: 7 to 14 MB for 154 MiB, as the smaller export does not fill every
    // buffer). And the larger export's peak stays within the pipeline's arithmetic above
    // what the program takes to open the repository and read a snapshot (`show`). The
    // repository is opened with a key file: a password's Argon2id (64 MiB, before the
    // export starts) would hide the pipeline's own peak. Each peak is the command's own
    // (see `peak_of`). The 1 GB measurement is bench/export.sh's.
    let env = envs().remove(0);
    let keys = keys(env.dir.path());
    let db = env.path("big.db");
    let rows = |to: u32| {
        run(Command::new("sqlite3").arg(&db).arg(format!(
            "PRAGMA page_size = 65536; \
             CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, b BLOB); \
             WITH RECURSIVE n(i) AS (SELECT coalesce(max(id), 0) + 1 FROM blobs \
                 UNION ALL SELECT i + 1 FROM n WHERE i < {to}) \
             INSERT INTO blobs SELECT i, randomblob(1000000) FROM n;"
        )));
        let snap = env.json(&["backup", &format!("sqlite:{}", db.display())]);
        let id = snap["id"].as_str().unwrap().to_string();
        (id, std::fs::metadata(&db).unwrap().len())
    };
    env.init();
    let (small, small_size) = rows(32);
    let (big, size) = rows(192);
    assert!(small_size > 28 << 20 && size > 180 << 20);
    let key = env.path("export.key");
    env.cmd()
        .args(["key", "add", "--new-key-file"])
        .arg(&key)
        .assert()
        .success();
    let with_key = |args: &[&str]| {
        let mut cmd = env.std_cmd();
        cmd.env_remove("STRONGROOM_PASSWORD")
            .arg("--password-file")
            .arg(&key)
            .args(args);
        cmd
    };
    let export = |id: &str, to: &Path| {
        let mut cmd = with_key(&["export", id, "-q", "--age-recipient", &keys.age_recipient]);
        peak_of(cmd.arg("--to").arg(to), "export")
    };
    let baseline = peak_of(&with_key(&["show", &big]), "show");
    assert!(
        baseline < PIPELINE,
        "show measured {} MB: the peak measured is not the command's own",
        baseline >> 20
    );
    let peak_small = export(&small, &env.path("small.db.age"));
    let to = env.path("big.db.age");
    let peak = export(&big, &to);
    eprintln!(
        "peak RSS: show {} MB, export of {} MB {} MB, of {} MB {} MB",
        baseline >> 20,
        small_size >> 20,
        peak_small >> 20,
        size >> 20,
        peak >> 20
    );
    assert!(
        peak.saturating_sub(peak_small) < (size - small_size) / 2,
        "the peak RSS grew from {} to {} MB as the database grew from {} to {} MB: something holds the file",
        peak_small >> 20,
        peak >> 20,
        small_size >> 20,
        size >> 20
    );
    assert!(
        peak < baseline + PIPELINE + SLACK,
        "peak RSS {} MB for a {} MB database, {} MB above the program's own {} MB: more than the pipeline's {} MB (and {} MB of slack)",
        peak >> 20,
        size >> 20,
        peak.saturating_sub(baseline) >> 20,
        baseline >> 20,
        PIPELINE >> 20,
        SLACK >> 20
    );
    let back = env.path("back.db");
    keys.age_decrypt(&to, &back);
    assert_eq!(std::fs::metadata(&back).unwrap().len(), size);
}

//! Restores end to end: the restore safety sequence of the real binary against real SQLite
//! files (hooks around the swap, only the source's own hooks, `latest` never crossing
//! sources, interrupted restores finished or undone by the next command, owner, group and
//! mode kept), on a local repository and, where it matters, on Garage.

use rusqlite::Connection;
use std::path::Path;

mod common;
use common::{Env, PASSWORD, bookings_in, envs, invariant_holds, make_db};

#[test]
fn sqlite_restore_hooks_run_around_the_swap() {
    let env = envs().into_iter().next().unwrap();
    let (db, _) = env.hotel_source(500);
    let log = env.path("hooks.log");
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"sqlite:{}\"\nbefore_restore = \"echo before $STRONGROOM_TARGET >> {l}\"\nafter_restore = \"echo after >> {l}\"\n",
            db.display(),
            l = log.display()
        ),
    )
    .unwrap();
    let snap = env.json(&["backup", "hotel"]);
    let id = snap["id"].as_str().unwrap();
    env.cmd()
        .args(["restore", id, "--to", db.to_str().unwrap(), "--force"])
        .assert()
        .success();
    let text = std::fs::read_to_string(&log).unwrap();
    let before = format!("before {}", db.display());
    assert_eq!(text.lines().collect::<Vec<_>>(), [before.as_str(), "after"]);
    assert!(invariant_holds(&db));
    // A failing before_restore leaves the target as it was.
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"sqlite:{}\"\nbefore_restore = \"exit 4\"\n",
            db.display()
        ),
    )
    .unwrap();
    let old = std::fs::read(&db).unwrap();
    let err = env.fails(&["restore", id, "--to", db.to_str().unwrap(), "--force"]);
    assert!(
        err.contains("before_restore") && err.contains("status 4"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), old);
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".strongroom-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn latest_never_crosses_sources_on_a_restore() {
    for env in envs() {
        let (db, _) = env.hotel_source(300);
        // Relative spellings, from the environment's directory: recorded by identity.
        let hotel = env.json(&["backup", "sqlite:hotel.db"]);
        let want = format!("sqlite:{}", db.display());
        assert_eq!(
            hotel["source"],
            want.as_str(),
            "one identity: absolute path"
        );
        Connection::open(env.path("zero.db"))
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        env.json(&["backup", "sqlite:./zero.db"]);

        // A restore of `latest` elsewhere names the sources and changes nothing.
        let err = env.fails(&["restore", "latest", "--to", "elsewhere.db"]);
        assert!(
            err.contains("2 sources") && err.contains("zero.db") && err.contains("--source"),
            "{err}"
        );
        assert!(!env.path("elsewhere.db").exists());
        let err = env.fails(&["verify"]);
        assert!(err.contains("2 sources"), "{err}");

        // Onto a source's own database, `latest` is that source's: never the empty one.
        let before = bookings_in(&db);
        let out = env
            .cmd()
            .args(["restore", "latest", "--to", "hotel.db", "--force"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(bookings_in(&db), before);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&want) && said.contains("taken") && said.contains("UTC"),
            "the restore names the source and the snapshot's time: {said}"
        );

        // --source takes any spelling of the source.
        for spelling in ["sqlite:hotel.db", "sqlite:./x/../hotel.db", want.as_str()] {
            let listed = env.json(&["list", "--source", spelling]);
            assert_eq!(listed.as_array().unwrap().len(), 1, "{spelling}");
        }
        env.cmd()
            .args([
                "restore",
                "latest",
                "--source",
                "sqlite:hotel.db",
                "--to",
                "copy.db",
            ])
            .assert()
            .success();
        assert_eq!(bookings_in(&env.path("copy.db")), before);
        env.cmd()
            .args(["verify", "--source", "sqlite:./hotel.db"])
            .assert()
            .success();

        // A configured name matches snapshots recorded by URL, and the other way round.
        std::fs::write(
            env.path("strongroom.toml"),
            format!("[sources.hotel]\nurl = \"sqlite:{}\"\n", db.display()),
        )
        .unwrap();
        let listed = env.json(&["list", "--source", "hotel"]);
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let named = env.json(&["backup", "sqlite:hotel.db"]);
        assert_eq!(
            named["source"], "hotel",
            "a configured source's URL is that source"
        );
        let listed = env.json(&["list", "--source", "sqlite:hotel.db"]);
        assert_eq!(listed.as_array().unwrap().len(), 2);
    }
}

/// Snapshots and jobs recorded by URL before a config named the database, and by the
/// config's name afterwards, are one source: one retention group, one name in every listing.
#[test]
fn one_database_is_one_source_before_and_after_the_config_names_it() {
    let env = envs().into_iter().next().unwrap();
    let (db, url) = env.hotel_source(200);
    env.json(&["backup", &url]);
    env.cmd()
        .args(["drill", "--source", &url])
        .assert()
        .success();
    env.json(&["backup", "sqlite:hotel.db"]);
    std::fs::write(
        env.path("strongroom.toml"),
        format!("[sources.hotel]\nurl = \"sqlite:{}\"\n", db.display()),
    )
    .unwrap();
    let newest = env.json(&["backup", "hotel"]);
    assert_eq!(newest["source"], "hotel");

    let listed = env.json(&["list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hotel"; 3], "one name in the listing");
    let text = env.cmd().arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(!text.contains("sqlite:"), "{text}");

    let journal = env.json(&["journal", "--job", "backup"]);
    let sources: Vec<&str> = journal
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["hotel"; 3], "one name in the journal");
    let history = env.json(&["drill", "--history"]);
    assert_eq!(history[0]["source"], "hotel", "{history}");

    // The newest of the one group is kept; the two taken by URL go.
    let forgot = env.json(&["forget", "--keep-last", "1"]);
    let kept = forgot["keep"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{forgot}");
    assert_eq!(kept[0]["id"], newest["id"]);
    assert_eq!(kept[0]["source"], "hotel");
    assert_eq!(forgot["remove"].as_array().unwrap().len(), 2, "{forgot}");
    assert!(
        forgot["remove"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["source"] == "hotel")
    );
}

#[test]
fn hooks_run_only_around_the_sources_own_database() {
    let env = envs().into_iter().next().unwrap();
    let (db, _) = env.hotel_source(200);
    let log = env.path("hooks.log");
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"sqlite:{}\"\nbefore_restore = \"echo before >> {l}\"\nafter_restore = \"echo after >> {l}\"\n",
            db.display(),
            l = log.display()
        ),
    )
    .unwrap();
    env.json(&["backup", "hotel"]);
    let ran = || std::fs::read_to_string(&log).unwrap_or_default();

    // A drill into a side file must not stop production.
    let out = env
        .cmd()
        .args(["restore", "latest", "--source", "hotel", "--to", "drill.db"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(ran(), "", "no hook for a side copy");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--run-hooks"));

    // Asked for, they run.
    env.cmd()
        .args([
            "restore",
            "latest",
            "--source",
            "hotel",
            "--to",
            "drill2.db",
            "--run-hooks",
        ])
        .assert()
        .success();
    assert_eq!(ran(), "before\nafter\n");

    // Onto the source's own database (any spelling of its path), they run by themselves.
    std::fs::remove_file(&log).unwrap();
    env.cmd()
        .args(["restore", "latest", "--to", "./hotel.db", "--force"])
        .assert()
        .success();
    assert_eq!(ran(), "before\nafter\n");

    // Onto another configured source's database (staging refreshed from production): the
    // hooks of the database being replaced run, never production's.
    std::fs::remove_file(&log).unwrap();
    make_db(&env.path("staging.db"), 10);
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"sqlite:{}\"\nbefore_restore = \"echo before >> {l}\"\n\
             [sources.staging]\nurl = \"sqlite:{}\"\nbefore_restore = \"echo staging >> {l}\"\n",
            db.display(),
            env.path("staging.db").display(),
            l = log.display()
        ),
    )
    .unwrap();
    env.cmd()
        .args([
            "restore",
            "latest",
            "--source",
            "hotel",
            "--to",
            "staging.db",
            "--force",
        ])
        .assert()
        .success();
    assert_eq!(ran(), "staging\n");
}

/// The binary as a child process with the environment's settings, for signalling it.
fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    env.std_cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Files of strongroom's own beside the databases in the environment's directory.
fn ours(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".strongroom-"))
        .collect();
    v.sort();
    v
}

fn wait_for(path: &Path) {
    let t = std::time::Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed().as_secs() < 120,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn interrupted_restores_clean_up_finish_or_undo_next_time() {
    let env = envs().into_iter().next().unwrap();
    let (db, src) = env.hotel_source(3_000);
    env.json(&["backup", &src]);
    let before = bookings_in(&db);
    let (ready, go) = (env.path("ready"), env.path("go"));
    // A hook that holds the restore after staging, until the test says go.
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"{src}\"\nbefore_restore = \"touch {}; while [ ! -e {} ]; do sleep 0.05; done\"\n",
            ready.display(),
            go.display()
        ),
    )
    .unwrap();
    let restore = ["restore", "latest", "--to", "hotel.db", "--force"];
    let reset = || {
        let _ = std::fs::remove_file(&ready);
        let _ = std::fs::remove_file(&go);
    };

    // SIGTERM while the copy is staged: the copy and the lock go, the target is intact.
    let child = spawn(&env, &restore);
    wait_for(&ready);
    // Meanwhile a second restore onto the same target is refused.
    let err = env.fails(&restore);
    assert!(err.contains("another strongroom restore"), "{err}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ours(&env), Vec::<String>::new(), "nothing of ours is left");
    assert_eq!(bookings_in(&db), before);
    reset();

    // SIGKILL at the same point leaves the copy; the next restore removes it, and the next
    // command to open the repository journals the killed job as interrupted.
    let mut child = spawn(&env, &restore);
    wait_for(&ready);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ours(&env).iter().any(|n| n.ends_with(".tmp")),
        "{:?}",
        ours(&env)
    );
    std::fs::write(&go, "").unwrap();
    env.cmd().args(restore).assert().success();
    assert_eq!(ours(&env), Vec::<String>::new());
    let repo =
        strongroom::repository::Repository::open(env.storage(), Some(PASSWORD.as_bytes())).unwrap();
    let interrupted: Vec<_> = repo
        .journal_records()
        .unwrap()
        .into_iter()
        .filter(|r| r.error_kind.as_deref() == Some("interrupted"))
        .collect();
    // Both the SIGTERM'd and the SIGKILL'd restore: neither could write its own record.
    assert_eq!(interrupted.len(), 2, "{interrupted:?}");
    assert!(interrupted.iter().all(|r| r.job == "restore" && !r.ok));
    reset();
    std::fs::write(env.path("strongroom.toml"), "").unwrap();

    // A kill inside the swap itself, on either side of the exchange: the target is always
    // a whole database, and the next restore finishes or undoes the swap.
    for (point, kept) in [("before-exchange", false), ("after-exchange", true)] {
        let out = env
            .cmd()
            .args(restore)
            .env("STRONGROOM_FAULT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: the fault must stop it");
        assert!(
            invariant_holds(&db),
            "{point}: the target is a whole database"
        );
        assert_eq!(bookings_in(&db), before);
        // The next restore may start anywhere: the marker names absolute paths.
        let abs = db.display().to_string();
        let out = env
            .cmd()
            .current_dir("/")
            .args(["restore", "latest", "--to", &abs, "--force"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{point}: {err}");
        if kept {
            assert!(err.contains("kept at"), "{point}: {err}");
        } else {
            assert!(err.contains("had not replaced it"), "{point}: {err}");
        }
        let left = ours(&env);
        assert!(
            left.iter().all(|n| n.contains(".strongroom-old-")),
            "{point}: {left:?}"
        );
        assert_eq!(left.len(), usize::from(kept), "{point}: {left:?}");
        for n in left {
            std::fs::remove_file(env.path(&n)).unwrap();
        }
    }
}

#[test]
fn a_restored_file_keeps_its_owner_group_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = envs().into_iter().next().unwrap();
    let (db, src) = env.hotel_source(500);
    env.json(&["backup", &src]);
    // A new file follows the umask.
    let bin = assert_cmd::cargo::cargo_bin("strongroom");
    let out = std::process::Command::new("sh")
        .current_dir(env.dir.path())
        .env("STRONGROOM_REPO", &env.repo)
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .env("STRONGROOM_STATE_DIR", env.path("state"))
        .arg("-c")
        .arg(format!(
            "umask 027; exec {} restore latest --to new.db",
            bin.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(env.path("new.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);

    // Over an existing file: its owner, group and mode stay (as root: an app-owned file).
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o664)).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        std::os::unix::fs::chown(&db, Some(65534), Some(65534)).unwrap();
    }
    let want = std::fs::metadata(&db).unwrap();
    env.cmd()
        .args(["restore", "latest", "--to", "hotel.db", "--force"])
        .assert()
        .success();
    let got = std::fs::metadata(&db).unwrap();
    assert_eq!((got.uid(), got.gid()), (want.uid(), want.gid()));
    assert_eq!(got.permissions().mode() & 0o7777, 0o664);
    // The -wal SQLite creates when the application writes follows the database file.
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS app_note(x); INSERT INTO app_note VALUES (1);")
        .unwrap();
    let wal = std::fs::metadata(env.path("hotel.db-wal")).unwrap();
    assert_eq!((wal.uid(), wal.gid()), (want.uid(), want.gid()));
    drop(c);
}

/// A hotel database in `app/`, a directory the attacker (the application's user) owns, as
/// on a real host; `rootonly/`, a directory only root may enter. Returns (app, rootonly).
fn attacked_layout(
    env: &Env,
    attacker: &strongroom_testkit::attacker::Attacker,
) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    // The attacker must reach its own directory through ours.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let app = env.path("app");
    let rootonly = env.path("rootonly");
    std::fs::create_dir(&app).unwrap();
    std::fs::create_dir(&rootonly).unwrap();
    std::fs::set_permissions(&rootonly, std::fs::Permissions::from_mode(0o700)).unwrap();
    make_db(&app.join("hotel.db"), 300);
    attacker.take(&app);
    attacker.take(&app.join("hotel.db"));
    env.init();
    env.json(&[
        "backup",
        &format!("sqlite:{}", app.join("hotel.db").display()),
    ]);
    (app, rootonly)
}

/// Runs root's restore onto `app/hotel.db`; returns whether it succeeded and its stderr.
fn root_restores(env: &Env, app: &Path) -> (bool, String) {
    let out = env
        .cmd()
        .args(["restore", "latest", "--force", "--to"])
        .arg(app.join("hotel.db"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn a_swap_marker_another_user_planted_moves_nothing() {
    use std::os::unix::fs::MetadataExt;
    let Some(attacker) = strongroom_testkit::attacker::Attacker::find() else {
        return;
    };
    let env = envs().into_iter().next().unwrap();
    let (app, rootonly) = attacked_layout(&env, &attacker);
    let marker = app.join(".hotel.db.strongroom-swap");
    let plant = |old_ino: u64, tmp: &Path, aside: &Path| {
        let json = format!(
            r#"{{"old_ino":{old_ino},"new_ino":1,"tmp":"{}","aside":"{}"}}"#,
            tmp.display(),
            aside.display()
        );
        attacker.sh(&format!("printf '%s' '{json}' > '{}'", marker.display()));
    };

    // Into root's directory: the attacker's script, where root's shell would run it.
    let script = app.join("evil.sh");
    attacker.sh(&format!("echo 'id > /tmp/owned' > '{}'", script.display()));
    let ino = std::fs::metadata(&script).unwrap().ino();
    plant(ino, &script, &rootonly.join("profile.sh"));
    let (ok, err) = root_restores(&env, &app);
    assert!(!ok, "the restore must refuse the marker: {err}");
    assert!(err.contains("swap marker"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
    assert!(names_in(&rootonly).is_empty(), "{:?}", names_in(&rootonly));
    assert!(script.exists());
    assert!(invariant_holds(&app.join("hotel.db")));

    // Out of root's directory: a secret, into the attacker's hands.
    let secret = rootonly.join("secret");
    std::fs::write(&secret, "root's secret").unwrap();
    let ino = std::fs::metadata(&secret).unwrap().ino();
    plant(ino, &secret, &app.join("stolen"));
    let (ok, err) = root_restores(&env, &app);
    assert!(!ok, "{err}");
    assert!(secret.exists() && !app.join("stolen").exists());

    // Even naming only strongroom's own names, a marker root did not write is not obeyed.
    let ours = app.join(".hotel.db.strongroom-x.tmp");
    plant(1, &ours, &app.join(".hotel.db.strongroom-old-x"));
    let (ok, err) = root_restores(&env, &app);
    assert!(!ok, "{err}");
    assert!(err.contains("not to this user"), "{err}");

    // Removed, as the sentence says: the restore goes through.
    std::fs::remove_file(&marker).unwrap();
    let (ok, err) = root_restores(&env, &app);
    assert!(ok, "{err}");
    assert!(invariant_holds(&app.join("hotel.db")));
}

#[test]
fn links_another_user_planted_beside_a_target_are_never_followed() {
    use std::os::unix::fs::MetadataExt;
    let Some(attacker) = strongroom_testkit::attacker::Attacker::find() else {
        return;
    };
    let env = envs().into_iter().next().unwrap();
    let (app, rootonly) = attacked_layout(&env, &attacker);

    // The restore lock: a link would make root create a file where the link points.
    let lock = app.join(".hotel.db.strongroom-lock");
    let created = rootonly.join("created");
    attacker.sh(&format!(
        "ln -s '{}' '{}'",
        created.display(),
        lock.display()
    ));
    let (ok, err) = root_restores(&env, &app);
    assert!(!ok, "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!created.exists(), "root created a file through the link");
    std::fs::remove_file(&lock).unwrap();

    // The target itself swapped for a link to a root-only file: refused, and the file keeps
    // its content, owner and mode.
    let secret = rootonly.join("secret");
    std::fs::write(&secret, "root's secret").unwrap();
    let before = std::fs::metadata(&secret).unwrap();
    attacker.sh(&format!(
        "mv '{0}/hotel.db' '{0}/hotel.db.real' && ln -s '{1}' '{0}/hotel.db'",
        app.display(),
        secret.display()
    ));
    let (ok, err) = root_restores(&env, &app);
    assert!(!ok, "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    let after = std::fs::metadata(&secret).unwrap();
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root's secret");
    assert_eq!(
        (after.uid(), after.mode(), after.ino()),
        (before.uid(), before.mode(), before.ino())
    );
    assert!(
        std::fs::symlink_metadata(app.join("hotel.db"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A hook gets what it needs to stop or start the application, and no secret: not the
/// repository's password, not the stores' keys, not the database's password; and its
/// command line (which may hold a token) is not logged, even at `-vv`.
#[test]
fn hooks_get_only_what_they_need() {
    let env = envs().into_iter().next().unwrap();
    let (_db, src) = env.hotel_source(200);
    env.json(&["backup", &src]);
    let seen = env.path("hook-env");
    std::fs::write(
        env.path("strongroom.toml"),
        format!(
            "[sources.hotel]\nurl = \"{src}\"\nbefore_restore = \"env > {} # token-in-the-command\"\n",
            seen.display()
        ),
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["-vv", "restore", "latest", "--to", "hotel.db", "--force"])
        .env("PGPASSWORD", "pg-secret")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
        .env("SOME_APP_TOKEN", "app-token")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("token-in-the-command"), "{err}");
    let got = std::fs::read_to_string(&seen).unwrap();
    for secret in [common::PASSWORD, "pg-secret", "aws-secret", "app-token"] {
        assert!(!got.contains(secret), "{secret} reached the hook: {got}");
    }
    for wanted in [
        "STRONGROOM_SNAPSHOT=",
        "STRONGROOM_TARGET=",
        "PATH=",
        "LC_ALL=C",
    ] {
        assert!(got.contains(wanted), "{wanted} missing: {got}");
    }
}

/// Names of the locks in `env`'s repository, read from the store without opening the
/// repository (opening it journals what interrupted jobs left, which must not be needed).
fn lock_names(env: &Env) -> Vec<String> {
    env.storage()
        .list("locks/")
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect()
}

/// Notes of jobs in progress left in the state directory (what the next command would
/// journal as interrupted).
fn running_notes(env: &Env) -> Vec<String> {
    let Ok(ids) = std::fs::read_dir(env.path("state/running")) else {
        return Vec::new();
    };
    ids.flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Sends `sig` to a job paused where `paused` appears, and checks what it left: exit
/// 128 + sig, no lock, no note for the next command, and its interrupted record written
/// already, naming the signal.
fn interrupt(
    env: &Env,
    mut cmd: std::process::Command,
    (paused, go): (&Path, &Path),
    sig: i32,
    job: &str,
) {
    let _ = std::fs::remove_file(paused);
    let _ = std::fs::remove_file(go);
    // Into a file: a paused hook holds a pipe open after strongroom has exited.
    let log = env.path("interrupted.log");
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(paused);
    assert_eq!(lock_names(env).len(), 1, "the {job} holds its lock");
    unsafe { libc::kill(child.id() as i32, sig) };
    let status = child.wait().unwrap();
    std::fs::write(go, "").unwrap(); // lets a paused hook end
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(128 + sig), "{job}: {err}");
    assert_eq!(lock_names(env), Vec::<String>::new(), "{job}: {err}");
    assert_eq!(running_notes(env), Vec::<String>::new(), "{job}: {err}");
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    let repo =
        strongroom::repository::Repository::open(env.storage(), Some(PASSWORD.as_bytes())).unwrap();
    let recs = repo.journal_records().unwrap();
    let last = recs.last().expect("a journal record");
    assert_eq!(
        (last.job.as_str(), last.ok, last.error_kind.as_deref()),
        (job, false, Some("interrupted")),
        "{last:?}"
    );
    assert!(last.error.as_deref().unwrap().contains(name), "{last:?}");
}

/// Ctrl-C (SIGINT) or SIGTERM during a backup or a restore: the lock goes on the way out
/// and the journal says "interrupted" there and then, not at the next command (issue 17,
/// item 5). On a local repository and on Garage.
#[test]
fn interrupted_jobs_remove_their_lock_and_journal_it_at_once() {
    for env in envs() {
        let (db, src) = env.hotel_source(2_000);
        let faults = env.path("faults");
        std::fs::create_dir(&faults).unwrap();
        let (paused, go) = (faults.join("paused"), faults.join("go"));
        let points = (paused.as_path(), go.as_path());
        // A backup held with its data stored and its manifest not yet written.
        for sig in [libc::SIGINT, libc::SIGTERM] {
            let mut cmd = env.std_cmd();
            cmd.args(["backup", &src])
                .env("STRONGROOM_FAULT", "pause-before-commit")
                .env("STRONGROOM_FAULT_DIR", &faults);
            interrupt(&env, cmd, points, sig, "backup");
        }
        assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 0);
        // A restore in place held in its before_restore hook, after staging.
        env.json(&["backup", &src]);
        std::fs::write(
            env.path("strongroom.toml"),
            format!(
                "[sources.hotel]\nurl = \"{src}\"\nbefore_restore = \"touch {}; while [ ! -e {} ]; do sleep 0.05; done\"\n",
                paused.display(),
                go.display()
            ),
        )
        .unwrap();
        for sig in [libc::SIGINT, libc::SIGTERM] {
            let mut cmd = env.std_cmd();
            cmd.args(["restore", "latest", "--to", "hotel.db", "--force"]);
            interrupt(&env, cmd, points, sig, "restore");
        }
        assert!(invariant_holds(&db));
    }
}

/// The one refusal of a target of the wrong sort (the library decides, the command line
/// names the flag), in the words both restore paths always used, as `bad_input`; and a
/// point-in-time restore's `latest` without a physical snapshot says so.
#[test]
fn a_target_of_the_wrong_sort_is_refused_naming_the_flag_it_needs() {
    let env = envs().into_iter().next().unwrap();
    let (db, src) = env.hotel_source(20);
    let snap = env.json(&["backup", &src]);
    let id = snap["id"].as_str().unwrap();
    let short = &id[..8];
    let refusal = |args: &[&str]| {
        let err = env.fails(args);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("strongroom: "))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        let out = env.cmd().arg("--json").args(args).output().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            lines[0].trim_start_matches("strongroom: ").to_string(),
            doc["error"]["kind"].as_str().unwrap().to_string(),
        )
    };
    let sqlite =
        format!("snapshot {short} is a SQLite snapshot: give the file to write with --to PATH");
    assert_eq!(
        refusal(&["restore", "latest"]),
        (sqlite.clone(), "bad_input".into())
    );
    assert_eq!(
        refusal(&[
            "restore",
            "latest",
            "--target-db",
            "postgres://app@127.0.0.1:9/hotel"
        ]),
        (sqlite, "bad_input".into())
    );
    let dir = env.path("pgdata");
    let dir = dir.to_str().unwrap();
    assert_eq!(
        refusal(&["restore", id, "--data-dir", dir]),
        (
            format!(
                "snapshot {short} is a sqlite full snapshot, not a physical one: restore it with --to PATH"
            ),
            "bad_input".into()
        )
    );
    assert_eq!(
        refusal(&["restore", "latest", "--data-dir", dir]),
        (
            "the repository has no physical snapshots; take one with `strongroom backup --kind physical`".into(),
            "not_found".into()
        )
    );
    // Nothing was written anywhere, and the source is as it was.
    assert!(!Path::new(dir).exists());
    assert!(invariant_holds(&db));
    assert!(
        env.json(&["journal"])
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["job"] != "restore"),
        "a refusal is not a restore job"
    );
}

//! `strongroom runbook` against a real repository with a real SQLite source after real
//! backups: the page's environment lines and restore commands are run as printed, through
//! `sh`, and must restore the database; from each `[[copies]]` repository too, with the
//! primary gone.

use std::path::{Path, PathBuf};
use strongroom::hotel::{self, Scale};

mod common;
use common::pg::{Rig, restore_env};
use common::{Env, Store, envs};
use strongroom_testkit::postgres::bindirs;

/// `sh -c script` with the environment's repository and password, the config, and the
/// built binary first on PATH, as an operator's shell would have them.
fn sh(env: &Env, config: &Path, script: &str) -> std::process::Output {
    sh_with(env, config, script, &[])
}

/// [`sh`] with more environment: `(name, None)` removes a variable.
fn sh_with(
    env: &Env,
    config: &Path,
    script: &str,
    vars: &[(String, Option<String>)],
) -> std::process::Output {
    let real = env.std_cmd();
    let bin = Path::new(env!("CARGO_BIN_EXE_strongroom"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(script).current_dir(env.dir.path());
    for (k, v) in real.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    // The page exports these itself; the shell must not get them from elsewhere.
    c.env_remove("STRONGROOM_REPO")
        .env_remove("STRONGROOM_CONFIG")
        .env("PATH", path)
        .env("RUNBOOK_TEST_CONFIG", config);
    for (k, v) in vars {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().unwrap()
}

fn rows(path: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The fenced `sh` block that follows `heading` in `md`.
fn block_after<'a>(md: &'a str, heading: &str) -> &'a str {
    let at = md
        .find(heading)
        .unwrap_or_else(|| panic!("{heading:?} in\n{md}"));
    let rest = &md[at..];
    let start = rest.find("```sh\n").unwrap() + 6;
    let end = start + rest[start..].find("```").unwrap();
    &rest[start..end]
}

#[test]
fn the_printed_commands_restore_the_database() {
    for env in envs() {
        // A directory with a space: the printed commands must quote it.
        let dir = env.path("hotel data");
        std::fs::create_dir(&dir).unwrap();
        let db = dir.join("hotel.db");
        hotel::create(&db, Scale::bookings(2_000), 42).unwrap();
        let hooks = env.path("hooks.log");
        let config = env.path("strongroom.toml");
        std::fs::write(
            &config,
            format!(
                "password_command = \"echo runbook-secret-pw\"\n\
                 [sources.hotel]\nurl = {:?}\n\
                 before_restore = \"echo before >> '{}'\"\n\
                 after_restore = \"echo after >> '{}'\"\n\
                 [[sources.hotel.checks]]\nname = \"bookings balance\"\nsql = {:?}\n\
                 [[contacts]]\nrole = \"Database administrator\"\nname = \"Ada Lovelace\"\n\
                 phone = \"+44 20 7946 0000\"\nemail = \"ada@example.com\"\n",
                format!("sqlite:{}", db.display()),
                hooks.display(),
                hooks.display(),
                hotel::INVARIANT_SQL
            ),
        )
        .unwrap();
        let cmd = |args: &[&str]| {
            let mut c = env.cmd();
            c.env("STRONGROOM_CONFIG", &config).args(args);
            c
        };
        cmd(&["init"]).assert().success();
        cmd(&["backup", "hotel", "--tag", "daily"])
            .assert()
            .success();
        let before = rows(&db, "bookings");
        // A second, newer snapshot with more bookings: the page must name this one.
        {
            let mut c = rusqlite::Connection::open(&db).unwrap();
            let mut rng = hotel::Rng::new(7);
            for _ in 0..25 {
                hotel::book_room(&mut c, &mut rng).unwrap();
            }
        }
        let newest = cmd(&["backup", "hotel", "--json"]).output().unwrap();
        assert!(newest.status.success());
        let newest: serde_json::Value = serde_json::from_slice(&newest.stdout).unwrap();
        let short = newest["short_id"].as_str().unwrap().to_string();
        let expected = rows(&db, "bookings");
        assert!(expected > before);

        let out = cmd(&["runbook"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let md = String::from_utf8(out.stdout).unwrap();
        eprintln!("{md}");
        assert!(!md.contains("runbook-secret-pw"), "{md}");
        assert!(!md.contains(common::PASSWORD), "{md}");
        for want in [
            "# Emergency runbook: hotel",
            "## First 5 minutes",
            "## Restore `hotel` (SQLite)",
            "Last drill: no drill on record — run `strongroom drill`.",
            "| Database administrator | Ada Lovelace | +44 20 7946 0000 | ada@example.com |",
            "# password: password_command in the config",
            "# bookings balance: expect 1",
        ] {
            assert!(md.contains(want), "missing {want:?}");
        }
        assert!(
            md.contains(&format!("# expect {expected} (snapshot {short})")),
            "{md}"
        );
        // The store's credentials, as placeholders the operator fills in.
        let credentials = match env.store() {
            Store::Local => None,
            Store::S3 => Some("AWS_ACCESS_KEY_ID=…"),
            Store::Azure => Some("AZURE_STORAGE_KEY=…"),
            Store::Gcs => Some("GOOGLE_APPLICATION_CREDENTIALS=…"),
        };
        if let Some(credentials) = credentials {
            assert!(md.contains(credentials), "{md}");
        }

        // The environment block, without its placeholder lines, then each command as printed.
        let environment: String = block_after(&md, "## Environment")
            .lines()
            .filter(|l| !l.contains('…'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            environment.contains("export STRONGROOM_REPO="),
            "{environment}"
        );
        let restore = block_after(&md, "## Restore `hotel`");
        let lines: Vec<&str> = restore.lines().collect();
        assert_eq!(lines.len(), 2, "{restore}");
        let q = strongroom::runbook::sh_quote;
        let side = format!("{}.restored", db.display());
        // `latest`, never an id that the next backup makes stale; the id is only told.
        assert_eq!(
            lines[0],
            format!("strongroom restore latest --source hotel --to {}", q(&side))
        );
        assert_eq!(
            lines[1],
            format!(
                "strongroom restore latest --source hotel --to {} --force",
                q(&db.display().to_string())
            )
        );
        assert!(
            md.contains(&format!("(snapshot {short} when this was written)")),
            "{md}"
        );

        // Damage the live database; then follow the page.
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("DELETE FROM bookings", [])
            .unwrap();
        let run = |script: &str| {
            let out = sh(&env, &config, &format!("set -e\n{environment}{script}"));
            assert!(
                out.status.success(),
                "{script} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        run(lines[0]);
        assert_eq!(rows(Path::new(&side), "bookings"), expected);
        assert!(!hooks.exists(), "the side copy ran hooks");
        // The verify block runs as printed, against the side copy.
        let verify = block_after(&md, "Verify the side copy");
        let printed = run(verify);
        assert!(printed.contains(&format!("{expected}\n")), "{printed}");
        // In place, as printed: the hooks run around the swap.
        run(lines[1]);
        assert_eq!(rows(&db, "bookings"), expected);
        assert_eq!(std::fs::read_to_string(&hooks).unwrap(), "before\nafter\n");
        // The same command with its target swapped for another (existing) file.
        let elsewhere = env.path("elsewhere.db");
        std::fs::write(&elsewhere, b"old").unwrap();
        run(&lines[1].replace(
            &q(&db.display().to_string()),
            &q(&elsewhere.display().to_string()),
        ));
        assert_eq!(rows(&elsewhere, "bookings"), expected);

        // One source only; an unknown one is an error; --json wraps the page.
        let one = cmd(&["runbook", "--source", "hotel"]).output().unwrap();
        assert!(String::from_utf8_lossy(&one.stdout).contains("## Restore `hotel`"));
        let bad = cmd(&["runbook", "--source", "nope"]).output().unwrap();
        assert_eq!(bad.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("no source \"nope\""));
        let json = cmd(&["runbook", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert!(
            v["markdown"]
                .as_str()
                .unwrap()
                .starts_with("# Emergency runbook")
        );
    }
}

#[test]
fn a_physical_source_gets_its_pitr_window_and_a_working_restore_command() {
    let bindir = bindirs().remove(0);
    for env in envs() {
        let rig = Rig::new(env, &bindir, true);
        rig.pg.create_database("app", None);
        rig.pg
            .execute("app", "CREATE TABLE bookings (id int PRIMARY KEY); INSERT INTO bookings SELECT generate_series(1, 500);");
        // The configured URL carries the password: the page must not.
        let config = rig.env.path("strongroom.toml");
        std::fs::write(&config, format!("[sources.prod]\nurl = {:?}\n", rig.url())).unwrap();
        let cmd = |args: &[&str]| {
            let mut c = rig.env.cmd();
            c.env("STRONGROOM_CONFIG", &config).args(args);
            c
        };
        cmd(&["backup", "prod", "--kind", "physical"])
            .assert()
            .success();
        rig.pg.execute(
            "app",
            "INSERT INTO bookings SELECT generate_series(501, 600);",
        );
        rig.archive_now();
        let out = cmd(&["runbook", "--source", "prod"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let md = String::from_utf8(out.stdout).unwrap();
        eprintln!("{md}");
        assert!(!md.contains(strongroom_testkit::postgres::PASSWORD), "{md}");
        assert!(md.contains("## Restore `prod` (PostgreSQL)"), "{md}");
        assert!(
            md.contains("**The repository can recover any time from "),
            "{md}"
        );
        assert!(md.contains("export PGPASSWORD=…"), "{md}");
        assert!(md.contains("Last drill: no drill on record"), "{md}");

        // The printed "all archived WAL" restore, as printed, with the server's environment.
        let environment: String = block_after(&md, "## Environment")
            .lines()
            .filter(|l| !l.contains('…'))
            .map(|l| format!("{l}\n"))
            .collect();
        let block = block_after(&md, "Physical snapshots and point-in-time recovery");
        let latest = block
            .lines()
            .find(|l| l.contains("--latest --start"))
            .unwrap_or_else(|| panic!("{block}"));
        let mut vars: Vec<(String, Option<String>)> = restore_env(&rig.env, &rig.key)
            .into_iter()
            .filter(|(k, _)| k != "STRONGROOM_REPO")
            .map(|(k, v)| (k, Some(v)))
            .collect();
        vars.push(("STRONGROOM_PASSWORD".into(), None));
        let out = sh_with(
            &rig.env,
            &config,
            &format!("set -e\n{environment}{latest}"),
            &vars,
        );
        assert!(
            out.status.success(),
            "{latest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // It left a promoted server running on the copy, on the port it printed. The page's
        // verify lines run as printed (from root's shell too: they name the source's host
        // and role, the password from PGPASSWORD as the environment block says) and count
        // every booking.
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        let port = printed
            .split(" on port ")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .unwrap_or_else(|| panic!("no port in {printed}"))
            .to_string();
        let words: Vec<&str> = latest.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "--data-dir").unwrap();
        let dir = PathBuf::from(words[at + 1]);
        assert_eq!(
            dir,
            PathBuf::from(format!("{}.restored", rig.pg.data_dir().display()))
        );
        let verify = block_after(&md, "Verify (the started copy");
        let count = verify
            .lines()
            .find(|l| l.contains("SELECT count(*) FROM bookings"))
            .unwrap_or_else(|| panic!("{verify}"));
        assert!(
            count.starts_with("psql -h 127.0.0.1 -U postgres "),
            "{count}"
        );
        vars.push((
            "PGPASSWORD".into(),
            Some(strongroom_testkit::postgres::PASSWORD.into()),
        ));
        let out = sh_with(&rig.env, &config, &count.replace("PORT", &port), &vars);
        assert!(
            out.status.success(),
            "{count}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "600");
        // The line the restore printed stops it.
        let stop = printed
            .lines()
            .find_map(|l| l.strip_prefix("it keeps running; stop it with: "))
            .unwrap_or_else(|| panic!("no stop line in {printed}"));
        let out = sh_with(&rig.env, &config, stop, &[]);
        assert!(
            out.status.success(),
            "{stop}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !dir.join("postmaster.pid").exists(),
            "{stop} left it running"
        );
    }
}

#[test]
fn the_printed_copy_sections_restore_with_the_primary_gone() {
    const COPY_PASSWORD: &str = "another horse, another battery";
    // The copy on every store; the primary and a second copy local.
    for dest in envs() {
        let primary = envs().remove(0);
        let usb = envs().remove(0);
        let db = primary.path("hotel.db");
        hotel::create(&db, Scale::bookings(2_000), 42).unwrap();
        let password = primary.path("offsite-password");
        std::fs::write(&password, format!("{COPY_PASSWORD}\n")).unwrap();
        let config = primary.path("strongroom.toml");
        std::fs::write(
            &config,
            format!(
                "[sources.hotel]\nurl = {:?}\n\
                 [[copies]]\nname = \"offsite\"\nrepository = {:?}\npassword_file = {:?}\n\
                 [[copies]]\nrepository = {:?}\npassword_command = \"echo '{COPY_PASSWORD}'\"\n",
                format!("sqlite:{}", db.display()),
                dest.repo,
                password.display().to_string(),
                usb.repo
            ),
        )
        .unwrap();
        let cmd = |args: &[&str]| {
            let mut c = primary.cmd();
            c.env("STRONGROOM_CONFIG", &config).args(args);
            c
        };
        cmd(&["init"]).assert().success();
        cmd(&["backup", "hotel"]).assert().success();
        let expected = rows(&db, "bookings");
        for copy in [&dest, &usb] {
            cmd(&["--repo", &copy.repo, "init", "--copy-of", &primary.repo])
                .env("STRONGROOM_FROM_PASSWORD", common::PASSWORD)
                .env("STRONGROOM_PASSWORD", COPY_PASSWORD)
                .assert()
                .success();
        }
        cmd(&["copy"]).assert().success();
        let out = cmd(&["runbook"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let md = String::from_utf8(out.stdout).unwrap();
        eprintln!("{md}");
        assert!(!md.contains(COPY_PASSWORD), "{md}");
        assert!(md.contains("## Restore from a copy"), "{md}");
        assert!(
            md.contains(&format!("- Copies: `offsite` (`{}`), ", dest.repo)),
            "{md}"
        );

        // The primary is gone, and the database damaged.
        std::fs::remove_dir_all(primary.path("repo")).unwrap();
        std::fs::remove_dir_all(primary.path("cache")).ok();
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("DELETE FROM bookings", [])
            .unwrap();
        // The operator's shell as "Environment" sets it up (its check that the primary
        // opens cannot pass now), then each copy's block as printed.
        let environment: String = block_after(&md, "## Environment")
            .lines()
            .filter(|l| l.starts_with("export ") && !l.contains('…'))
            .map(|l| format!("{l}\n"))
            .collect();
        let side = PathBuf::from(format!("{}.restored", db.display()));
        for heading in [
            "### Copy `offsite`".to_string(),
            format!("### Copy `{}`", usb.repo),
        ] {
            let block: String = block_after(&md, &heading)
                .lines()
                .filter(|l| !l.contains('…'))
                .map(|l| format!("{l}\n"))
                .collect();
            assert!(
                block.contains("strongroom restore latest --source hotel --to "),
                "{block}"
            );
            let _ = std::fs::remove_file(&side);
            let out = sh(&primary, &config, &format!("set -e\n{environment}{block}"));
            assert!(
                out.status.success(),
                "{heading}: {block} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(rows(&side, "bookings"), expected, "{heading}");
        }
    }
}

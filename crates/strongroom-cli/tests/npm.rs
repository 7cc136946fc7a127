//! The `package.json` scripts of examples/node, run with npm against a real repository and a
//! real SQLite hotel database: what the README shows people is what works.
//!
//! Skipped (with a message) only when npm is not installed; ./scripts/test installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use strongroom::hotel::{self, Scale};

mod common;
use common::{Env, LOCAL_AND_S3, envs_on};

fn have_npm() -> bool {
    Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of examples/node with a hotel database at prisma/dev.db, as the example's
/// strongroom.toml and scripts/migrate.js expect.
fn project(env: &Env) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/node");
    let dir = env.path("hotel-booking");
    copy_dir(&example, &dir);
    std::fs::create_dir_all(dir.join("prisma")).unwrap();
    hotel::create(&dir.join("prisma/dev.db"), Scale::bookings(2_000), 42).unwrap();
    dir
}

/// `program args…` in `dir` with the environment's repository, password and state, and the
/// built `strongroom` first on PATH (as an installed one would be).
fn run_in(env: &Env, dir: &Path, program: &str, args: &[&str]) -> Output {
    run_with(env, dir, program, args, &[])
}

/// [`run_in`] with extra environment variables.
fn run_with(
    env: &Env,
    dir: &Path,
    program: &str,
    args: &[&str],
    vars: &[(&str, String)],
) -> Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_strongroom"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let real = env.std_cmd();
    let mut c = Command::new(program);
    c.args(args).current_dir(dir);
    for (k, v) in real.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("PATH", path)
        .env_remove("DATABASE_URL")
        // npm itself: no network, no writes to the user's ~/.npm.
        .env("npm_config_cache", env.path("npm-cache"))
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false")
        .envs(vars.iter().map(|(k, v)| (k, v)));
    let out = c.output().unwrap();
    eprintln!(
        "$ {program} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn npm(env: &Env, dir: &Path, script: &str) -> Output {
    run_in(env, dir, "npm", &["run", "--silent", script])
}

fn npm_ok(env: &Env, dir: &Path, script: &str) {
    let out = npm(env, dir, script);
    assert!(out.status.success(), "npm run {script}: {:?}", out.status);
}

fn strongroom_json(env: &Env, dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = run_in(env, dir, "strongroom", &args);
    assert!(out.status.success(), "strongroom {args:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn columns(db: &Path, table: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn package_json_scripts_back_up_verify_migrate_and_report() {
    if !have_npm() {
        eprintln!("SKIPPED: npm is not installed (./scripts/test installs it with apt-get)");
        return;
    }
    for env in envs_on(&LOCAL_AND_S3) {
        env.init();
        let dir = project(&env);
        let db = dir.join("prisma/dev.db");

        // backup:create takes a snapshot of the configured source, tagged daily.
        npm_ok(&env, &dir, "backup:create");
        let list = strongroom_json(&env, &dir, &["list"]);
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["source"], "hotel");
        assert_eq!(list[0]["tags"], serde_json::json!(["daily"]));

        // backup:verify test-restores it.
        npm_ok(&env, &dir, "backup:verify");

        // db:migrate: a pre-migration snapshot of the old schema, then the migration.
        assert!(!columns(&db, "users").contains(&"loyalty_points".to_string()));
        npm_ok(&env, &dir, "db:migrate");
        let pre = strongroom_json(&env, &dir, &["list", "--tag", "pre-migration"]);
        assert_eq!(pre.as_array().unwrap().len(), 1, "{pre}");
        assert_eq!(
            pre[0]["metadata"]["schema_version"], "20240101000000_init",
            "the pre-migration snapshot must hold the schema before the migration"
        );
        assert!(
            columns(&db, "users").contains(&"loyalty_points".to_string()),
            "the migration did not change the schema"
        );
        npm_ok(&env, &dir, "backup:create");
        let after = strongroom_json(&env, &dir, &["show", "latest", "--tag", "daily"]);
        assert_eq!(
            after["metadata"]["schema_version"],
            "20261201120000_add_loyalty_points"
        );
        // The pre-migration snapshot restores the old schema.
        let old = env.path("pre-migration.db");
        let id = pre[0]["id"].as_str().unwrap();
        let out = run_in(
            &env,
            &dir,
            "strongroom",
            &["restore", id, "--to", old.to_str().unwrap()],
        );
        assert!(out.status.success());
        assert!(!columns(&old, "users").contains(&"loyalty_points".to_string()));

        // No backup, no migration: with the repository unreachable, the next migration is
        // not applied.
        let next = dir.join("migrations/20261202090000_add_booking_source");
        std::fs::create_dir_all(&next).unwrap();
        std::fs::write(
            next.join("migration.sql"),
            "ALTER TABLE bookings ADD COLUMN source TEXT;\n",
        )
        .unwrap();
        let out = run_with(
            &env,
            &dir,
            "npm",
            &["run", "--silent", "db:migrate"],
            &[(
                "STRONGROOM_REPO",
                env.path("no-such-repository").display().to_string(),
            )],
        );
        assert!(!out.status.success(), "db:migrate ran without its backup");
        assert!(!columns(&db, "bookings").contains(&"source".to_string()));

        // backup:status exits as `strongroom status` does (0 all ok, 1 attention needed).
        // A new repository needs attention: never checked or drilled, retention never applied.
        let direct = run_in(&env, &dir, "strongroom", &["status"]).status.code();
        assert_eq!(direct, Some(1), "strongroom status");
        assert_eq!(npm(&env, &dir, "backup:status").status.code(), direct);
        // Once checked and pruned, with drills off for this development database, all is ok.
        let mut config = std::fs::read_to_string(dir.join("strongroom.toml")).unwrap();
        config.push_str("\n[objectives.checklist]\ndrill = \"off\"\n");
        std::fs::write(dir.join("strongroom.toml"), config).unwrap();
        for job in [&["check"][..], &["forget", "--prune"]] {
            assert!(
                run_in(&env, &dir, "strongroom", job).status.success(),
                "{job:?}"
            );
        }
        let direct = run_in(&env, &dir, "strongroom", &["status"]).status.code();
        assert_eq!(direct, Some(0), "strongroom status");
        assert_eq!(npm(&env, &dir, "backup:status").status.code(), direct);
    }
}

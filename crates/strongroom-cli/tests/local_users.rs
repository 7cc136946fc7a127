//! Other local users cannot steer a root strongroom (issue 24, items 2 and 4): a config file
//! or state directory another user owns or can write is refused with one sentence, before
//! any job starts (nothing journaled, no alert), wherever the config came from
//! (`./strongroom.toml`, `--config`, `STRONGROOM_CONFIG`); state directories strongroom makes
//! are private; a new password comes only from a file no other user controls. Every attack
//! is played by a real second account ([`strongroom_testkit::attacker::Attacker`]); without
//! root the tests say so and pass.

use assert_cmd::Command;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use strongroom_testkit::attacker::Attacker;
use tempfile::TempDir;

/// Root's side of a scene: a private directory holding the marker an alert command would
/// write, the state directory and a repository.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where the planted alert command writes the uid it ran as.
    fn marker(&self) -> PathBuf {
        self.path("alert-ran-as")
    }

    /// strongroom as root in `cwd`, with nothing from the test's environment steering it.
    fn strongroom(&self, cwd: &Path) -> Command {
        let mut c = Command::cargo_bin("strongroom").unwrap();
        c.current_dir(cwd)
            .env_remove("STRONGROOM_REPO")
            .env_remove("STRONGROOM_CONFIG")
            .env_remove("STRONGROOM_PASSWORD")
            .env_remove("STRONGROOM_PASSWORD_FILE")
            .env("STRONGROOM_STATE_DIR", self.path("state"))
            .env("STRONGROOM_CACHE_DIR", self.path("cache"))
            .env("STRONGROOM_ALERT_REPEAT", "0s")
            .env("NO_COLOR", "1");
        c
    }

    /// A config whose alert command records who ran it; `status` on its missing repository
    /// fails, which is alerted.
    fn alerting_config(&self) -> String {
        format!(
            "repository = \"{}\"\n[[alerts]]\ncommand = \"id -u > {}\"\n",
            self.path("no-repository").display(),
            self.marker().display()
        )
    }

    /// Asserts the alert command never ran.
    fn no_alert(&self) {
        assert!(
            !self.marker().exists(),
            "the planted alert command ran as uid {}",
            std::fs::read_to_string(self.marker()).unwrap_or_default()
        );
    }
}

/// A fresh directory everyone can write (sticky like /tmp, or not).
fn shared_dir(sticky: bool) -> TempDir {
    let d = tempfile::tempdir().unwrap();
    let mode = if sticky { 0o1777 } else { 0o777 };
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    d
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The attacker writes `text` to `path` (as themselves).
fn plant(attacker: &Attacker, path: &Path, text: &str) {
    let out = attacker
        .command("sh")
        .arg("-c")
        .arg("cat > \"$0\"")
        .arg(path)
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "as {}: writing {}",
        attacker.name,
        path.display()
    );
}

/// The command was refused: exit 1, one sentence on stderr naming `what` and `path`.
fn refused(out: &Output, what: &str, path: &Path) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one sentence: {stderr}");
    assert!(
        lines[0].starts_with(&format!("strongroom: refusing {what} ")),
        "{stderr}"
    );
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(lines[0].contains(&*name), "names the file: {stderr}");
    stderr
}

#[test]
fn a_strongroom_toml_another_user_left_in_a_shared_directory_is_refused() {
    let Some(attacker) = Attacker::find() else {
        return;
    };
    for sticky in [false, true] {
        let root = Root::new();
        let shared = shared_dir(sticky);
        let planted = shared.path().join("strongroom.toml");
        plant(&attacker, &planted, &root.alerting_config());
        let out = root
            .strongroom(shared.path())
            .arg("status")
            .output()
            .unwrap();
        let stderr = refused(&out, "the config file", &planted);
        assert!(
            stderr.contains(&format!("owned by {}", attacker.name)) && stderr.contains("--config"),
            "says whose it is and what to do: {stderr}"
        );
        root.no_alert();
        // With --json, the stable kind of a bad input.
        let out = root
            .strongroom(shared.path())
            .args(["status", "--json"])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["kind"], "bad_input");
        root.no_alert();
    }
}

#[test]
fn roots_own_config_in_a_directory_others_can_write_is_refused() {
    let Some(attacker) = Attacker::find() else {
        return;
    };
    // Not sticky: the attacker could swap the file for their own at any moment.
    let root = Root::new();
    let shared = shared_dir(false);
    let config = shared.path().join("strongroom.toml");
    std::fs::write(&config, root.alerting_config()).unwrap();
    chmod(&config, 0o644);
    let out = root
        .strongroom(shared.path())
        .arg("status")
        .output()
        .unwrap();
    let stderr = refused(&out, "the config file", &config);
    assert!(
        stderr.contains("lets its group and others replace it"),
        "{stderr}"
    );
    root.no_alert();
    // A directory the attacker owns: the same.
    let theirs = tempfile::tempdir().unwrap();
    attacker.take(theirs.path());
    chmod(theirs.path(), 0o755);
    let config = theirs.path().join("strongroom.toml");
    std::fs::write(&config, root.alerting_config()).unwrap();
    chmod(&config, 0o644);
    let out = root
        .strongroom(Path::new("/"))
        .arg("--config")
        .arg(&config)
        .arg("status")
        .output()
        .unwrap();
    let stderr = refused(&out, "the config file", &config);
    assert!(
        stderr.contains(&format!("owned by {}", attacker.name)),
        "{stderr}"
    );
    root.no_alert();
}

#[test]
fn a_config_given_by_flag_or_environment_that_another_user_controls_is_refused() {
    let Some(attacker) = Attacker::find() else {
        return;
    };
    let root = Root::new();
    // Root's directory, open to be walked through, as /etc is.
    chmod(root.dir.path(), 0o755);
    // A file the attacker owns, given with --config.
    let owned = root.path("theirs.toml");
    std::fs::write(&owned, "").unwrap();
    attacker.take(&owned);
    plant(&attacker, &owned, &root.alerting_config());
    let out = root
        .strongroom(Path::new("/"))
        .arg("--config")
        .arg(&owned)
        .arg("status")
        .output()
        .unwrap();
    refused(&out, "the config file", &owned);
    root.no_alert();
    // Root's file that others can write, given in STRONGROOM_CONFIG: the attacker writes it.
    for mode in [0o666, 0o664] {
        let writable = root.path("writable.toml");
        std::fs::write(&writable, "").unwrap();
        chmod(&writable, mode);
        if mode & 0o002 != 0 {
            plant(&attacker, &writable, &root.alerting_config());
        } else {
            std::fs::write(&writable, root.alerting_config()).unwrap();
        }
        let out = root
            .strongroom(Path::new("/"))
            .env("STRONGROOM_CONFIG", &writable)
            .arg("status")
            .output()
            .unwrap();
        let stderr = refused(&out, "the config file", &writable);
        assert!(stderr.contains(&format!("mode {mode:04o}")), "{stderr}");
        root.no_alert();
    }
}

#[test]
fn roots_own_config_in_roots_own_directory_is_obeyed() {
    if Attacker::find().is_none() {
        return;
    }
    let root = Root::new();
    let etc = root.path("etc");
    std::fs::create_dir(&etc).unwrap();
    chmod(&etc, 0o755);
    let config = etc.join("strongroom.toml");
    std::fs::write(&config, root.alerting_config()).unwrap();
    chmod(&config, 0o644);
    // The same config the attacks plant runs its alert when root wrote it: the refusals
    // above are the checks, not a broken config.
    let out = root.strongroom(&etc).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(root.marker()).unwrap().trim(), "0");
    std::fs::remove_file(root.marker()).unwrap();
    // Root's own file in a sticky shared directory (like /tmp) is root's: obeyed too.
    let tmp = shared_dir(true);
    let config = tmp.path().join("strongroom.toml");
    std::fs::write(&config, root.alerting_config()).unwrap();
    chmod(&config, 0o600);
    let out = root.strongroom(tmp.path()).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(root.marker()).unwrap().trim(), "0");
}

/// An unencrypted repository of root's, with one SQLite snapshot; returns its id.
fn repository(root: &Root) -> String {
    let repo = root.path("repo");
    let out = root
        .strongroom(root.dir.path())
        .arg("--repo")
        .arg(&repo)
        .args(["init", "--encryption", "none", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["id"].as_str().unwrap().to_string()
}

fn interrupted_records(root: &Root) -> usize {
    let out = root
        .strongroom(root.dir.path())
        .env("STRONGROOM_STATE_DIR", root.path("good-state"))
        .arg("--repo")
        .arg(root.path("repo"))
        .args(["journal", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["error_kind"] == "interrupted")
        .count()
}

#[test]
fn a_state_directory_another_user_controls_is_refused() {
    let Some(attacker) = Attacker::find() else {
        return;
    };
    let root = Root::new();
    let id = repository(&root);
    // The attacker's own state directory, with a note of a "job" that never ran: root
    // would journal it as an interrupted backup (a failed job in status and alerts).
    let shared = shared_dir(true);
    let state = shared.path().join("state");
    let note = format!(
        "{{\"job\":\"backup\",\"source\":\"planted\",\"snapshot\":null,\"started_at\":\"2026-01-01T00:00:00Z\",\"pid\":999999,\"start_ticks\":null,\"hostname\":\"{}\"}}",
        strongroom::hostname()
    );
    attacker.sh(&format!(
        "mkdir -p {s}/running/{id} && chmod 700 {s} && cat > {s}/running/{id}/1-planted.json <<'EOF'\n{note}\nEOF",
        s = state.display()
    ));
    let list = |state: &Path| {
        root.strongroom(root.dir.path())
            .env("STRONGROOM_STATE_DIR", state)
            .arg("--repo")
            .arg(root.path("repo"))
            .arg("list")
            .output()
            .unwrap()
    };
    let out = list(&state);
    let stderr = refused(&out, "the state directory", &state);
    assert!(
        stderr.contains(&format!("owned by {}", attacker.name))
            && stderr.contains("STRONGROOM_STATE_DIR"),
        "{stderr}"
    );
    assert_eq!(
        interrupted_records(&root),
        0,
        "the planted note was acted on"
    );
    // Root's own state directory that others can write: the attacker could plant the same.
    let open = root.path("open-state");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    chmod(root.dir.path(), 0o755);
    attacker.sh(&format!(
        "mkdir -p {s}/running/{id} && cat > {s}/running/{id}/1-planted.json <<'EOF'\n{note}\nEOF",
        s = open.display()
    ));
    let stderr = refused(&list(&open), "the state directory", &open);
    assert!(stderr.contains("mode 0777"), "{stderr}");
    assert_eq!(
        interrupted_records(&root),
        0,
        "the planted note was acted on"
    );
    // Left as it was: strongroom changes no mode it did not set.
    assert_eq!(std::fs::metadata(&open).unwrap().mode() & 0o7777, 0o777);
}

#[test]
fn a_new_state_directory_and_everything_in_it_is_private() {
    if Attacker::find().is_none() {
        return;
    }
    let root = Root::new();
    let id = repository(&root);
    let db = root.path("hotel.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE bookings(id); INSERT INTO bookings VALUES (1);")
        .unwrap();
    let config = root.path("strongroom.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerts]]\ncommand = \"cat > {}\"\n",
            root.path("alert.json").display()
        ),
    )
    .unwrap();
    let state = root.path("var/state");
    let run = |args: &[&str]| {
        root.strongroom(root.dir.path())
            .env("STRONGROOM_STATE_DIR", &state)
            .env("STRONGROOM_ALERT_REPEAT", "1h")
            .arg("--config")
            .arg(&config)
            .arg("--repo")
            .arg(root.path("repo"))
            .args(args)
            .output()
            .unwrap()
    };
    // A backup notes itself under running/; a failed one is remembered under alerts/repeats/.
    assert!(
        run(&["backup", &format!("sqlite:{}", db.display())])
            .status
            .success()
    );
    assert_eq!(run(&["backup", "sqlite:missing.db"]).status.code(), Some(1));
    assert!(root.path("alert.json").exists(), "the failure was alerted");
    let repeats = state.join("alerts/repeats");
    for dir in [
        root.path("var"),
        state.clone(),
        state.join("running"),
        state.join("running").join(&id),
        state.join("alerts"),
        repeats.clone(),
    ] {
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{} is {mode:04o}", dir.display());
    }
    for f in std::fs::read_dir(&repeats).unwrap() {
        let mode = f.unwrap().metadata().unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn a_new_password_from_a_file_another_user_controls_is_refused() {
    let Some(attacker) = Attacker::find() else {
        return;
    };
    let root = Root::new();
    chmod(root.dir.path(), 0o755);
    // The attacker chose this password, so they would hold a key to the repository.
    let theirs = root.path("new-password");
    std::fs::write(&theirs, "").unwrap();
    attacker.take(&theirs);
    plant(&attacker, &theirs, "chosen by the attacker\n");
    let repo = root.path("repo");
    let out = root
        .strongroom(root.dir.path())
        .arg("--repo")
        .arg(&repo)
        .arg("--password-file")
        .arg(&theirs)
        .arg("init")
        .output()
        .unwrap();
    refused(&out, "the new password file", &theirs);
    assert!(!repo.exists(), "no repository was made");
    // An encrypted repository of root's: the attacker's password does not become a slot.
    let out = root
        .strongroom(root.dir.path())
        .env("STRONGROOM_PASSWORD", "root's own")
        .arg("--repo")
        .arg(&repo)
        .arg("init")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = root
        .strongroom(root.dir.path())
        .env("STRONGROOM_PASSWORD", "root's own")
        .arg("--repo")
        .arg(&repo)
        .args(["key", "add", "--new-password-file"])
        .arg(&theirs)
        .output()
        .unwrap();
    refused(&out, "the new password file", &theirs);
    let out = root
        .strongroom(root.dir.path())
        .env_remove("STRONGROOM_PASSWORD")
        .arg("--repo")
        .arg(&repo)
        .arg("--password-file")
        .arg(&theirs)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

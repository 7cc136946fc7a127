//! The password prompt through a real terminal (a pseudo-terminal the test types into):
//! without a configured password, `init` warns that a lost password cannot be recovered,
//! asks twice and refuses a mismatch; other commands ask once; nothing typed is echoed; an
//! interrupted prompt gives the terminal its echo back; and without a terminal the usual
//! error stays. No assertion depends on how long anything took.

mod common;

use common::pty::Pty;
use common::{Env, PASSWORD, envs, make_db};

const TYPED: &str = "typed-at-the-terminal 7";

/// The binary in `env`, with no password configured anywhere.
fn without_password(env: &Env, args: &[&str]) -> std::process::Command {
    let mut cmd = env.std_cmd();
    cmd.args(args)
        .env_remove("STRONGROOM_PASSWORD")
        .env_remove("STRONGROOM_PASSWORD_FILE");
    cmd
}

#[test]
fn init_asks_twice_warns_and_the_password_opens_the_repository() {
    let env = &envs()[0];
    let mut pty = Pty::spawn(without_password(env, &["init"]), 80);
    let asked = pty.read_until(0, "New password for the repository at ");
    assert!(
        asked.contains("strongroom cannot recover it") && asked.contains("strongroom key add"),
        "{asked}"
    );
    pty.type_in(&format!("{TYPED}\n"));
    let at = pty.output.len();
    pty.read_until(at, "The same password again: ");
    pty.type_in(&format!("{TYPED}\n"));
    assert!(pty.finish().success(), "{}", pty.output);
    assert!(
        pty.output.contains("created encrypted repository"),
        "{}",
        pty.output
    );
    assert!(!pty.output.contains(TYPED), "echoed: {}", pty.output);

    // It opens with what was typed, and only with that.
    env.cmd()
        .env("STRONGROOM_PASSWORD", TYPED)
        .arg("list")
        .assert()
        .success();
    let err = env.fails(&["list"]);
    assert!(err.contains("wrong password"), "{err}");
}

#[test]
fn init_refuses_two_different_passwords_and_creates_nothing() {
    let env = &envs()[0];
    let mut pty = Pty::spawn(without_password(env, &["init"]), 80);
    pty.read_until(0, "New password for the repository at ");
    pty.type_in(&format!("{TYPED}\n"));
    let at = pty.output.len();
    pty.read_until(at, "The same password again: ");
    pty.type_in("something else\n");
    let status = pty.finish();
    assert_eq!(status.code(), Some(1), "{}", pty.output);
    assert!(
        pty.output
            .contains("the two passwords typed differ; nothing was created"),
        "{}",
        pty.output
    );
    assert!(
        !env.storage().exists("config").unwrap(),
        "a repository was made"
    );
    assert!(!pty.output.contains(TYPED) && !pty.output.contains("something else"));
}

#[test]
fn a_command_asks_once_and_never_echoes() {
    let env = &envs()[0];
    env.init();
    make_db(&env.path("hotel.db"), 200);
    for args in [&["backup", "sqlite:hotel.db"][..], &["list"]] {
        let mut pty = Pty::spawn(without_password(env, args), 80);
        pty.read_until(0, "Password for the repository at ");
        pty.type_in(&format!("{PASSWORD}\n"));
        assert!(pty.finish().success(), "{args:?}: {}", pty.output);
        assert_eq!(
            pty.output.matches("Password for").count(),
            1,
            "{}",
            pty.output
        );
        assert!(!pty.output.contains(PASSWORD), "echoed: {}", pty.output);
    }
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 1);
}

#[test]
fn an_interrupted_prompt_gives_the_terminal_its_echo_back() {
    let env = &envs()[0];
    env.init();
    let mut pty = Pty::spawn(without_password(env, &["list"]), 80);
    pty.read_until(0, "Password for the repository at ");
    pty.type_in("half a passw");
    pty.type_in("\x03"); // Ctrl-C
    let status = pty.finish();
    assert_eq!(status.code(), Some(130), "{}", pty.output);
    assert!(
        pty.local_modes() & libc::ECHO != 0,
        "echo left off: {}",
        pty.output
    );
}

#[test]
fn without_a_terminal_the_error_says_how_to_give_a_password() {
    let env = &envs()[0];
    env.init();
    // Not a terminal at all (stdin empty, no controlling terminal).
    let out = env
        .cmd()
        .env_remove("STRONGROOM_PASSWORD")
        .arg("list")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no password was given") && err.contains("set STRONGROOM_PASSWORD"),
        "{err}"
    );
    let err = {
        let out = env
            .cmd()
            .env_remove("STRONGROOM_PASSWORD")
            .arg("init")
            .env("STRONGROOM_REPO", env.path("second"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(err.contains("init needs a password"), "{err}");
    // A terminal, but stdin is not it (`… | strongroom list`): nothing is asked either.
    let mut cmd = without_password(env, &["list"]);
    cmd.env("NO_COLOR", "1");
    let mut pty = Pty::spawn_with(cmd, 80, false);
    assert_eq!(pty.finish().code(), Some(1), "{}", pty.output);
    assert!(!pty.output.contains("Password for"), "{}", pty.output);
    assert!(
        pty.output.contains("set STRONGROOM_PASSWORD"),
        "{}",
        pty.output
    );
}

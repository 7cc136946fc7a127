//! Command targets: `sh -c COMMAND` with the alert JSON on its standard input.
//!
//! Owns running one attempt: exit 0 is delivered, anything else (a failure, a start that
//! failed, no end within the timeout) a sentence. The command runs in its own process group,
//! so a timeout kills whatever it started too. Must not retry (`deliver` does), and must not
//! give the command the repository password.

use crate::process::{describe_exit, stderr_gist};
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs `command` once with `json` on its stdin; `env` adds variables (event, level, source).
pub(super) fn run(
    command: &str,
    json: &[u8],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<(), String> {
    // Standard error goes to a file, not a pipe: something the command left running in the
    // background would hold a pipe open and us with it.
    let mut said =
        tempfile::tempfile().map_err(|e| format!("no temporary file for stderr: {e}"))?;
    let err_out = said
        .try_clone()
        .map_err(|e| format!("no temporary file for stderr: {e}"))?;
    let mut child = crate::process::config_command(command, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(err_out)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start `sh -c`: {e}"))?;
    let group = child.id() as libc::pid_t;
    // Written from a thread that is never waited for: a command that never reads its stdin
    // must not hold us past the timeout, and one that exits without reading it is no failure
    // of ours (the write then ends with a broken pipe).
    let mut stdin = child.stdin.take().expect("stdin piped");
    let json = json.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&json);
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(group);
                let _ = child.wait();
                return Err(format!("could not wait for the command: {e}"));
            }
        }
    };
    let Some(status) = status else {
        // Not reaped yet, so the group id is still the child's: whatever the shell started
        // goes with it.
        kill_group(group);
        let _ = child.wait();
        return Err(format!(
            "did not finish within {} and was killed",
            super::span(timeout)
        ));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = Vec::new();
    let _ = said.rewind();
    let _ = said.take(65536).read_to_end(&mut text);
    if text.iter().all(u8::is_ascii_whitespace) {
        Err(describe_exit(status))
    } else {
        Err(format!("{}: {}", describe_exit(status), stderr_gist(&text)))
    }
}

fn kill_group(group: libc::pid_t) {
    // SAFETY: kill(2) with a negative pid signals the process group the child leads; the
    // group cannot have been reused while the child (its leader) is not yet reaped.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

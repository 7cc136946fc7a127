//! Asking the person at the terminal for the repository password, when nothing configured
//! gives one (`STRONGROOM_PASSWORD`, `--password-file` or `STRONGROOM_PASSWORD_FILE`, the
//! config's `password_file` or `password_command`).
//!
//! Only when someone is there: stdin is a terminal and `/dev/tty` opens (the process has a
//! controlling terminal). Under cron, systemd, a pipe or PostgreSQL's `archive_command`
//! nothing is asked, and the usual error says how to give a password.
//!
//! What is typed is never shown: echo is off on `/dev/tty` while the line is read (only the
//! Enter is echoed), and the terminal's settings are put back afterwards, also when Ctrl-C,
//! SIGTERM or SIGHUP ends the process at the prompt (through `strongroom::interrupt`), so an
//! interrupted prompt never leaves a terminal that hides what is typed next. The prompt and
//! the warnings go to the terminal itself, not stderr, as `ssh` and `sudo` do.
//!
//! A password typed here is then handled as one from `STRONGROOM_PASSWORD` is ([`remember`]):
//! the PostgreSQL servers a restore or drill starts run `strongroom wal fetch` with it, and
//! the library keeps it from hooks and other programs (`strongroom::process`).
//!
//! Must not decide what a password opens: the library opens the repository with it.

use anyhow::{Context, Result};
use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use strongroom::process::PASSWORD_ENV;

/// The terminal of the person running the command.
pub struct Terminal {
    tty: File,
}

/// What `init` says before the new password is typed.
const NO_RECOVERY: &str = "\
This password encrypts the repository. strongroom cannot recover it: if it is lost (and no
other key slot was added with `strongroom key add`), no backup in this repository can ever
be read again. Keep it where your other secrets are kept.
";

impl Terminal {
    /// The terminal, when a person is at one: stdin is a terminal and `/dev/tty` opens.
    pub fn open() -> Option<Terminal> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        Some(Terminal { tty })
    }

    /// Writes `text` to the terminal.
    fn say(&mut self, text: &str) -> Result<()> {
        self.tty
            .write_all(text.as_bytes())
            .and_then(|()| self.tty.flush())
            .context("writing to the terminal")
    }

    /// Shows `prompt` and reads one line with echo off; the line without its newline.
    pub fn ask_hidden(&mut self, prompt: &str) -> Result<String> {
        let saved = tcgetattr(&self.tty).context("reading the terminal's settings")?;
        let mut hidden = saved.clone();
        hidden.local_modes.remove(LocalModes::ECHO);
        hidden.local_modes.insert(LocalModes::ECHONL);
        // Put back on the way out, whichever way that is: the guard's drop, or a signal.
        strongroom::interrupt::install();
        let tty = self.tty.try_clone().context("opening the terminal")?;
        let restore = strongroom::interrupt::guard("the password prompt", move || {
            let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
        });
        // Flush: what was typed before the prompt (and shown) is not taken as the password.
        tcsetattr(&self.tty, OptionalActions::Flush, &hidden)
            .context("turning the terminal's echo off")?;
        self.say(prompt)?;
        let line = self.read_line();
        drop(restore);
        let line = line?;
        Ok(line.strip_suffix('\r').unwrap_or(&line).to_owned())
    }

    /// One line from the terminal (the terminal hands it over whole, at Enter).
    fn read_line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.tty.read(&mut byte) {
                Ok(0) if line.is_empty() => {
                    anyhow::bail!("no password was typed (the input ended)")
                }
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading the password from the terminal"),
            }
        }
        String::from_utf8(line).context("the password typed is not valid UTF-8")
    }

    /// The password of an existing repository at `url`.
    pub fn password(&mut self, url: &str) -> Result<String> {
        self.ask_hidden(&format!("Password for the repository at {url}: "))
    }

    /// The password of a new repository at `url`: the warning that nothing recovers it,
    /// then the password twice. `Ok(None)` when the two differ.
    pub fn new_password(&mut self, url: &str) -> Result<Option<String>> {
        self.say(NO_RECOVERY)?;
        let first = self.ask_hidden(&format!("New password for the repository at {url}: "))?;
        if first.is_empty() {
            return Ok(Some(first));
        }
        let second = self.ask_hidden("The same password again: ")?;
        Ok((first == second).then_some(first))
    }
}

/// Makes a typed password this process's `STRONGROOM_PASSWORD`, so everything after finds
/// it as if it had been set there (later opens; the servers a recovery starts).
pub fn remember(password: &str) {
    // SAFETY: called from the main thread before the command starts threads of its own;
    // the only other thread then is the signal handler's, which reads no environment.
    unsafe { std::env::set_var(PASSWORD_ENV, password) };
}

//! What every command starts from: the parsed global options, the config and the progress
//! reporter, and the way to open the repository they name.
//!
//! Owns finding the config file (`--config`, `STRONGROOM_CONFIG` or `./strongroom.toml`) and
//! handing the library its [`Access`]: which repository and which password. Reading the file
//! is the library's, which refuses one another user controls, wherever it came from
//! (`strongroom::trust`); so is refusing a state directory another user controls, checked
//! here before any work starts (`strongroom::state`). Finding the password and opening the
//! repository are the library's too (`strongroom::access`); asking for the password on a
//! terminal when none is configured is `prompt`'s.

use crate::args::Global;
use crate::progress::Bars;
use crate::prompt;
use anyhow::Result;
use std::path::PathBuf;
use strongroom::access::Access;
use strongroom::config::Config;
use strongroom::repository::Repository;

/// Shared state of one command run.
pub struct Ctx {
    /// Options that apply to every command.
    pub global: Global,
    /// The configuration (empty when there is no file).
    pub config: Config,
    /// Progress bars on a terminal, silence elsewhere.
    pub progress: Bars,
    /// The config file read, if any.
    pub config_path: Option<PathBuf>,
}

impl Ctx {
    /// Reads the config, checks the state directory and sets up progress reporting. A config
    /// file or state directory that another user controls is refused here, before any job
    /// starts: an operator's mistake, not a failed job (nothing is journaled or alerted).
    pub fn new(global: Global) -> Result<Self> {
        let config_path = config_path(&global);
        let config = match &config_path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        strongroom::state::check()?;
        Ok(Ctx {
            config_path,
            progress: Bars::new(!global.quiet),
            global,
            config,
        })
    }

    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.global.json
    }

    /// Where the repository is and where its password comes from.
    pub fn access(&self) -> Access {
        Access::new(
            self.global.repo.clone(),
            self.global.password_file.clone(),
            &self.config,
        )
    }

    /// Puts where the repository is and how to open it into this process's environment, for
    /// the servers it starts: their `restore_command` runs `strongroom wal fetch`, which
    /// finds the repository the same way (paths made absolute; a password given in the
    /// environment is there already).
    pub fn export_access_env(&self) {
        for (k, v) in self.access_env() {
            // SAFETY: called before any thread of ours reads the environment concurrently
            // (the command is single-threaded at this point; pipelines have finished).
            unsafe { std::env::set_var(k, v) };
        }
    }

    /// What [`Ctx::export_access_env`] puts into the environment: the repository, the
    /// password file and the config, as absolute paths, when this command was given them.
    /// None is a secret (a password itself is never among them).
    pub fn access_env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut vars: Vec<(&'static str, std::ffi::OsString)> = Vec::new();
        if let Ok(url) = self.access().url() {
            let url = if url.contains("://") {
                url
            } else {
                abs(std::path::Path::new(&url)).display().to_string()
            };
            vars.push(("STRONGROOM_REPO", url.into()));
        }
        if let Some(f) = &self.global.password_file {
            vars.push(("STRONGROOM_PASSWORD_FILE", abs(f).into()));
        }
        if let Some(c) = &self.config_path {
            vars.push(("STRONGROOM_CONFIG", abs(c).into()));
        }
        vars
    }

    /// The name a recorded source is shown under: its configured name when it was recorded
    /// by URL before the config named it (one database is one source in every listing),
    /// else as recorded.
    pub fn source_name(&self, recorded: &str) -> String {
        self.config
            .configured_name(recorded)
            .unwrap_or(recorded)
            .to_string()
    }

    /// Opens the repository (and remembers its id: see [`opened_repository`]). An encrypted
    /// one that nothing configured gives a password for asks for it on the terminal, when
    /// there is one ([`prompt`]); elsewhere that stays an error saying how to give one.
    pub fn open(&self) -> Result<Repository> {
        let access = self.access();
        let repo = match access.open() {
            Err(strongroom::Error::PasswordMissing) => {
                let Some(mut terminal) = prompt::Terminal::open() else {
                    return Err(strongroom::Error::PasswordMissing.into());
                };
                prompt::remember(&terminal.password(&access.url()?)?);
                access.open()?
            }
            opened => opened?,
        };
        let _ = OPENED.set(repo.config().id.clone());
        Ok(repo)
    }

    /// Opens the repository without ever asking for a password: for PostgreSQL's
    /// `archive_command`, which a prompt would stall.
    pub fn open_unattended(&self) -> Result<Repository> {
        let repo = self.access().open()?;
        let _ = OPENED.set(repo.config().id.clone());
        Ok(repo)
    }
}

/// The config file to read: `--config` (or `STRONGROOM_CONFIG`, which clap puts there),
/// else `./strongroom.toml` when present. That one is looked for (the contract names it),
/// and held to the same rule as a file given when read: whoever else could write it, or its
/// directory, is refused.
pub fn config_path(global: &Global) -> Option<PathBuf> {
    global.config.clone().or_else(|| {
        let p = PathBuf::from("./strongroom.toml");
        std::fs::symlink_metadata(&p).is_ok().then_some(p)
    })
}

/// The id of the repository this process opened first.
static OPENED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The id of the repository this process opened, if it got that far: a failure alert is
/// held back per repository, and reading the id again after a failure could wait on an
/// unreachable store.
pub fn opened_repository() -> Option<String> {
    OPENED.get().cloned()
}

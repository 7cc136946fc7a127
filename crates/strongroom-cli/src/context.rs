//! What every command starts from: the parsed global options, the config and the progress
//! reporter, and the way to open the repository they name.
//!
//! Owns reading the config file (`--config`, `STRONGROOM_CONFIG` or `./strongroom.toml`) and
//! handing the library its [`Access`]: which repository and which password. Finding the
//! password and opening the repository are the library's (`strongroom::access`).

use crate::args::Global;
use crate::progress::Bars;
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
}

impl Ctx {
    /// Reads the config and sets up progress reporting.
    pub fn new(global: Global) -> Result<Self> {
        let config_path = global.config.clone().or_else(|| {
            let p = PathBuf::from("strongroom.toml");
            p.exists().then_some(p)
        });
        let config = match &config_path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        Ok(Ctx {
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

    /// Opens the repository.
    pub fn open(&self) -> Result<Repository> {
        Ok(self.access().open()?)
    }
}

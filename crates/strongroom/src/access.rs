//! How a job finds its repository and the password that opens it.
//!
//! Owns the order in which the repository URL and the password are looked for, so that the
//! command line and a long-running process (the scheduler to come) open repositories the same
//! way: the URL given (flag or `STRONGROOM_REPO`), else `repository` in the config; the
//! password from a password file given, else `STRONGROOM_PASSWORD`, else the config's
//! `password_file`, else its `password_command`. A password that becomes a new key (a new
//! repository, a new key slot) is read only from a file no other user controls. Must not
//! parse arguments or print: the command-line crate says which flag supplies what.

use crate::config::Config;
use crate::error::{Error, Obeyed, Result};
use crate::process::{FROM_PASSWORD_ENV, PASSWORD_ENV, TO_PASSWORD_ENV, first_line, first_line_of};
use crate::repository::Repository;
use crate::storage::Storage;
use std::path::{Path, PathBuf};

/// Where the repository is and where its password comes from.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Repository URL given explicitly (a flag or `STRONGROOM_REPO`); wins over the config.
    pub url: Option<String>,
    /// Password file given explicitly; wins over the environment and the config.
    pub password_file: Option<PathBuf>,
    /// `repository` from the config.
    pub config_url: Option<String>,
    /// `password_file` from the config.
    pub config_password_file: Option<PathBuf>,
    /// `password_command` from the config.
    pub password_command: Option<String>,
    /// The variable that carries the password.
    pub password_env: PasswordVariable,
}

/// Which environment variable carries a repository's password: the repository's own, or
/// that of the other repository of a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PasswordVariable {
    /// `STRONGROOM_PASSWORD`: the repository a command works on.
    #[default]
    Repository,
    /// `STRONGROOM_FROM_PASSWORD`: the repository `init --copy-of` copies.
    From,
    /// `STRONGROOM_TO_PASSWORD`: the repository `copy` copies into.
    To,
}

impl PasswordVariable {
    /// The variable's name.
    pub fn name(self) -> &'static str {
        match self {
            PasswordVariable::Repository => PASSWORD_ENV,
            PasswordVariable::From => FROM_PASSWORD_ENV,
            PasswordVariable::To => TO_PASSWORD_ENV,
        }
    }

    /// The password it holds, if set.
    fn read(self) -> Option<String> {
        match self {
            PasswordVariable::Repository => std::env::var(PASSWORD_ENV).ok(),
            PasswordVariable::From => std::env::var(FROM_PASSWORD_ENV).ok(),
            PasswordVariable::To => std::env::var(TO_PASSWORD_ENV).ok(),
        }
    }
}

/// Reads the first line of a password file.
///
/// Whoever controls the file can choose the password read, but only one that already opens
/// the repository (else the job fails with a wrong password, and its alert says so), so a
/// file another user owns (the database's user's key file, read by root) is accepted here;
/// a password that becomes a new key is read with [`read_new_password_file`].
pub fn read_password_file(path: &Path) -> Result<String> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read password file {}: {e}", path.display())))?;
    Ok(first_line(&s))
}

/// Reads the first line of a file holding the password of a new key slot or repository,
/// refusing one another user controls ([`crate::trust::read_file`]): they would know a
/// password that opens the repository.
pub fn read_new_password_file(path: &Path) -> Result<String> {
    crate::trust::read_file(path, Obeyed::NewPasswordFile).map(|s| first_line(&s))
}

impl Access {
    /// Access as configured, with what was given explicitly taking precedence. A URL given
    /// that names a `[[copies]]` entry is opened with that copy's password setting instead
    /// of the primary's (`STRONGROOM_PASSWORD` and a password file given still win).
    pub fn new(url: Option<String>, password_file: Option<PathBuf>, config: &Config) -> Self {
        let copy = url.as_deref().and_then(|u| config.copy_at(u));
        let (config_password_file, password_command) = match copy {
            Some(c) => (c.password_file.clone(), c.password_command.clone()),
            None => (
                config.password_file.clone(),
                config.password_command.clone(),
            ),
        };
        Access {
            url,
            password_file,
            config_url: config.repository.clone(),
            config_password_file,
            password_command,
            password_env: PasswordVariable::Repository,
        }
    }

    /// Access to the other repository of a copy: at `url`, its password from
    /// `password_file` (a flag), else the variable `env`, else the `[[copies]]` entry at
    /// `url` (its `password_file`, else its `password_command`), else, when `url` is the
    /// configured repository, the config's own password settings.
    pub fn other(
        url: &str,
        password_file: Option<PathBuf>,
        env: PasswordVariable,
        config: &Config,
    ) -> Self {
        let primary = config
            .repository
            .as_deref()
            .is_some_and(|r| crate::config::same_repository(r, url));
        let (config_password_file, password_command) = match config.copy_at(url) {
            Some(c) => (c.password_file.clone(), c.password_command.clone()),
            None if primary => (
                config.password_file.clone(),
                config.password_command.clone(),
            ),
            None => (None, None),
        };
        Access {
            url: Some(url.to_string()),
            password_file,
            config_url: None,
            config_password_file,
            password_command,
            password_env: env,
        }
    }

    /// The repository URL, or [`Error::NoRepositoryGiven`].
    pub fn url(&self) -> Result<String> {
        self.url
            .clone()
            .or_else(|| self.config_url.clone())
            .ok_or(Error::NoRepositoryGiven)
    }

    /// The password, when any source has one (an unencrypted repository needs none).
    pub fn password(&self) -> Result<Option<String>> {
        self.password_read_by(read_password_file)
    }

    /// The password of a repository being created: as [`Access::password`], but a password
    /// file is read only when no other user controls it ([`read_new_password_file`]).
    pub fn new_password(&self) -> Result<Option<String>> {
        self.password_read_by(read_new_password_file)
    }

    fn password_read_by(&self, read: fn(&Path) -> Result<String>) -> Result<Option<String>> {
        if let Some(f) = &self.password_file {
            return read(f).map(Some);
        }
        if let Some(p) = self.password_env.read() {
            return Ok(Some(p));
        }
        if let Some(f) = &self.config_password_file {
            return read(f).map(Some);
        }
        if let Some(cmd) = &self.password_command {
            return first_line_of("password_command", cmd).map(Some);
        }
        Ok(None)
    }

    /// The store at the repository URL.
    pub fn storage(&self) -> Result<Storage> {
        Storage::from_url(&self.url()?)
    }

    /// Opens the repository, unlocking it with the password when it is encrypted.
    pub fn open(&self) -> Result<Repository> {
        let password = self.password()?;
        let storage = self.storage()?;
        match Repository::open(storage, password.as_deref().map(str::as_bytes)) {
            Err(Error::PasswordMissing) if self.password_env != PasswordVariable::Repository => {
                Err(Error::NoPasswordFor {
                    url: self.url()?,
                    variable: self.password_env.name(),
                })
            }
            opened => opened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_settings_win_over_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("given");
        std::fs::write(&given, "from-file\nignored").unwrap();
        let config = Config {
            repository: Some("/from/config".into()),
            password_command: Some("echo from-command".into()),
            ..Config::default()
        };
        let a = Access::new(None, Some(given), &config);
        assert_eq!(a.url().unwrap(), "/from/config");
        assert_eq!(a.password().unwrap().as_deref(), Some("from-file"));
        let b = Access::new(Some("/given".into()), None, &config);
        assert_eq!(b.url().unwrap(), "/given");
        if std::env::var_os(PASSWORD_ENV).is_none() {
            assert_eq!(b.password().unwrap().as_deref(), Some("from-command"));
        }
        let none = Access::new(None, None, &Config::default());
        assert!(matches!(none.url(), Err(Error::NoRepositoryGiven)));
        let missing = Access::new(None, Some(dir.path().join("nope")), &config);
        assert!(
            missing
                .password()
                .unwrap_err()
                .to_string()
                .contains("cannot read password file")
        );
    }
}

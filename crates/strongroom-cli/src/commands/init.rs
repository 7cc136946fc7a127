//! `strongroom init`: create a repository, with a password configured or typed (twice), or
//! a copy of another (`--copy-of`) sharing its keys under a password of its own.

use crate::args::InitArgs;
use crate::context::Ctx;
use crate::failure::{fail, usage};
use crate::output::print_json;
use crate::prompt::Terminal;
use anyhow::Result;
use strongroom::access::{Access, PasswordVariable};
use strongroom::crypto::KdfParams;
use strongroom::object_lock::{LockMode, LockPolicy};
use strongroom::repository::{Repository, layout};
use strongroom::storage::Storage;
use strongroom::{Error, ErrorKind};

/// A new password typed at the terminal, twice, after the warning that nothing recovers a
/// lost one. Nothing is asked when a repository is there already (init would refuse it).
fn typed_password(terminal: &mut Terminal, storage: &Storage) -> Result<String> {
    if storage.exists(layout::CONFIG)? {
        return Err(Error::RepositoryExists(storage.url().to_string()).into());
    }
    match terminal.new_password(storage.url())? {
        Some(pw) if pw.is_empty() => Err(fail(
            ErrorKind::BadInput,
            "the password typed is empty; nothing was created: run init again and type one",
        )),
        Some(pw) => Ok(pw),
        None => Err(fail(
            ErrorKind::BadInput,
            "the two passwords typed differ; nothing was created: run init again",
        )),
    }
}

/// Creates the repository, encrypted unless `--encryption none`, or a copy of another
/// (`--copy-of`); without a configured password, one typed at the terminal.
pub fn run(ctx: &Ctx, args: InitArgs) -> Result<()> {
    let access = ctx.access();
    let storage = access.storage()?;
    if args.object_lock.is_some() {
        // Before a password is asked for: a store that cannot lock is said at once.
        storage.probe_object_lock()?;
    }
    let source = match &args.copy_of {
        Some(url) => {
            if args.encryption == "none" {
                return Err(usage(
                    "--encryption does not go with --copy-of: a copy is encrypted exactly when the repository it copies is",
                ));
            }
            let opened = Access::other(
                url,
                args.from_password_file.clone(),
                PasswordVariable::From,
                &ctx.config,
            )
            .open();
            match opened {
                Err(strongroom::Error::NoRepository(at)) => {
                    return Err(fail(
                        ErrorKind::NotFound,
                        format!(
                            "no strongroom repository at {at} to make a copy of: check --copy-of (a typo?); nothing was created"
                        ),
                    ));
                }
                opened => Some(opened?),
            }
        }
        None => None,
    };
    let encrypted = match &source {
        Some(s) => s.key().is_encrypted(),
        None => args.encryption != "none",
    };
    let pw = if !encrypted {
        None
    } else if let Some(pw) = access.new_password()? {
        if pw.is_empty() {
            return Err(fail(
                ErrorKind::BadInput,
                "the password for the new repository is empty: set a non-empty STRONGROOM_PASSWORD, --password-file or password_command (or pass --encryption none)",
            ));
        }
        Some(pw)
    } else if let Some(mut terminal) = Terminal::open() {
        Some(typed_password(&mut terminal, &storage)?)
    } else {
        return Err(fail(
            ErrorKind::BadInput,
            "init needs a password for the new repository: set STRONGROOM_PASSWORD, --password-file or password_command, or run it on a terminal to type one (or pass --encryption none)",
        ));
    };
    let pw = pw.as_deref().map(str::as_bytes);
    let lock = args.object_lock.map(|days| LockPolicy {
        days,
        mode: args
            .lock_mode
            .as_deref()
            .and_then(LockMode::parse)
            .unwrap_or_default(),
    });
    let repo = match (&source, lock) {
        (Some(s), lock) => Repository::init_copy(storage, pw, KdfParams::default(), s, lock)?,
        (None, Some(lock)) => Repository::init_locked(storage, pw, KdfParams::default(), lock)?,
        (None, None) => Repository::init(storage, pw, KdfParams::default())?,
    };
    let copy_of = repo.config().copy_of.as_ref().map(|c| c.repository.clone());
    if ctx.json() {
        print_json(&serde_json::json!({
            "repository": repo.storage().url(),
            "id": repo.config().id,
            "encryption": repo.config().encryption,
            "copy_of": copy_of,
            "object_lock": repo.config().object_lock.map(|l| serde_json::json!({
                "days": l.days, "mode": l.mode.name(),
            })),
        }))?;
    } else {
        let sort = if repo.key().is_encrypted() {
            "encrypted"
        } else {
            "unencrypted"
        };
        match (&source, &copy_of) {
            (Some(s), Some(id)) => eprintln!(
                "created {sort} repository {} at {}, a copy of repository {id} at {}: `strongroom copy --to {}` fills it",
                repo.config().id,
                repo.storage().url(),
                s.storage().url(),
                repo.storage().url()
            ),
            _ => eprintln!(
                "created {sort} repository {} at {}",
                repo.config().id,
                repo.storage().url()
            ),
        }
        if let Some(l) = repo.config().object_lock {
            eprintln!(
                "every object is written under a {} object lock of {} days",
                l.mode.name(),
                l.days
            );
        }
    }
    Ok(())
}

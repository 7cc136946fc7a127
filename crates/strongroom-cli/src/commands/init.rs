//! `strongroom init`: create a repository, with a password configured or typed (twice).

use crate::context::Ctx;
use crate::failure::fail;
use crate::output::print_json;
use crate::prompt::Terminal;
use anyhow::Result;
use strongroom::crypto::KdfParams;
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

/// Creates the repository, encrypted unless `encryption` is `none`; without a configured
/// password, one typed at the terminal.
pub fn run(ctx: &Ctx, encryption: &str) -> Result<()> {
    let access = ctx.access();
    let storage = access.storage()?;
    let pw = if encryption == "none" {
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
    let repo = Repository::init(
        storage,
        pw.as_deref().map(str::as_bytes),
        KdfParams::default(),
    )?;
    if ctx.json() {
        print_json(
            &serde_json::json!({"repository": repo.storage().url(), "id": repo.config().id, "encryption": repo.config().encryption}),
        )?;
    } else {
        let sort = if repo.key().is_encrypted() {
            "encrypted"
        } else {
            "unencrypted"
        };
        eprintln!(
            "created {sort} repository {} at {}",
            repo.config().id,
            repo.storage().url()
        );
    }
    Ok(())
}

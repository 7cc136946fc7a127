//! `strongroom init`: create a repository.

use crate::context::Ctx;
use crate::failure::fail;
use crate::output::print_json;
use anyhow::Result;
use strongroom::ErrorKind;
use strongroom::crypto::KdfParams;
use strongroom::repository::Repository;

/// Creates the repository, encrypted unless `encryption` is `none`.
pub fn run(ctx: &Ctx, encryption: &str) -> Result<()> {
    let access = ctx.access();
    let storage = access.storage()?;
    let pw = if encryption == "none" {
        None
    } else {
        Some(access.new_password()?.ok_or_else(|| {
            fail(
                ErrorKind::BadInput,
                "init needs a password for the new repository: set STRONGROOM_PASSWORD, --password-file or password_command (or pass --encryption none)",
            )
        })?)
    };
    if pw.as_deref() == Some("") {
        return Err(fail(
            ErrorKind::BadInput,
            "the password for the new repository is empty: set a non-empty STRONGROOM_PASSWORD, --password-file or password_command (or pass --encryption none)",
        ));
    }
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

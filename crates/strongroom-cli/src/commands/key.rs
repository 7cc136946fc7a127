//! `strongroom key`: the passwords (key slots) that open the repository, full or append-only.

use crate::args::KeyAction;
use crate::context::Ctx;
use crate::failure::fail;
use crate::output::{outln, print_json};
use anyhow::Result;
use strongroom::ErrorKind;
use strongroom::access::read_new_password_file;
use strongroom::crypto::KdfParams;

/// Adds, lists or removes key slots.
pub fn run(ctx: &Ctx, action: KeyAction) -> Result<()> {
    let repo = ctx.open()?;
    match action {
        KeyAction::Add {
            new_key_file: Some(path),
            label,
            append_only,
            ..
        } => {
            // Refused before the file is made: an append-only key cannot add keys.
            repo.require_full("add a key")?;
            let secret = strongroom::crypto::new_key_file_secret();
            write_key_file(&path, &secret)?;
            match add(&repo, secret.as_bytes(), &label, append_only) {
                Ok(name) => eprintln!(
                    "added {} slot {name}, opened by the key file {}",
                    kind(append_only),
                    path.display()
                ),
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e.into());
                }
            }
        }
        KeyAction::Add {
            new_password_file,
            label,
            append_only,
            ..
        } => {
            let new_password_file = new_password_file.expect("clap requires one of the two");
            let pw = read_new_password_file(&new_password_file)?;
            if pw.is_empty() {
                return Err(fail(
                    ErrorKind::BadInput,
                    format!(
                        "the new password in {} is empty",
                        new_password_file.display()
                    ),
                ));
            }
            let name = add(&repo, pw.as_bytes(), &label, append_only)?;
            eprintln!("added {} slot {name}", kind(append_only));
        }
        KeyAction::List => {
            let slots = repo.key_slots()?;
            if ctx.json() {
                let doc: Vec<serde_json::Value> = slots
                    .iter()
                    .map(|(id, slot)| match slot {
                        Ok(s) => serde_json::json!({
                            "id": id, "label": s.label, "created": s.created,
                            "append_only": s.append_only,
                        }),
                        Err(e) => serde_json::json!({
                            "id": id, "label": null, "created": null, "append_only": null,
                            "damaged": damage(e),
                        }),
                    })
                    .collect();
                print_json(&doc)?;
            } else if slots.is_empty() {
                eprintln!("no key slots (the repository is not encrypted)");
            } else {
                outln!(
                    "{:<32}  {:<19}  {:<11}  label",
                    "id",
                    "created (UTC)",
                    "kind"
                )?;
                for (id, slot) in &slots {
                    match slot {
                        Ok(s) => outln!(
                            "{id:<32}  {:<19}  {:<11}  {}",
                            created(&s.created),
                            if s.append_only { "append-only" } else { "full" },
                            s.label
                        )?,
                        Err(e) => outln!(
                            "{id:<32}  {:<19}  {:<11}  (damaged: {})",
                            "-",
                            "-",
                            damage(e)
                        )?,
                    }
                }
            }
        }
        KeyAction::Remove { id } => {
            let name = repo.remove_key_slot(&id)?;
            if ctx.json() {
                print_json(&serde_json::json!({"removed": name}))?;
            } else {
                eprintln!("removed key slot {name}; its password no longer opens the repository");
            }
        }
    }
    Ok(())
}

/// Adds a slot for `secret`: a full key, or an append-only one.
fn add(
    repo: &strongroom::repository::Repository,
    secret: &[u8],
    label: &str,
    append_only: bool,
) -> strongroom::Result<String> {
    if append_only {
        repo.add_append_only(secret, KdfParams::default(), label)
    } else {
        repo.add_password(secret, KdfParams::default(), label)
    }
}

/// What a slot holds, as the messages say it.
fn kind(append_only: bool) -> &'static str {
    if append_only {
        "append-only key"
    } else {
        "key"
    }
}

/// Writes a new key file readable by its owner only; refuses to replace an existing file
/// (it may be the only copy of another key).
fn write_key_file(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
                "it already exists; choose another path (it may hold another key)".to_string()
            } else {
                e.to_string()
            };
            fail(
                ErrorKind::BadInput,
                format!("cannot create key file {}: {why}", path.display()),
            )
        })?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            fail(
                ErrorKind::LocalIo,
                format!("cannot write key file {}: {e}", path.display()),
            )
        })
}

/// A slot's creation time as people read it, or as stored when it does not parse.
fn created(stored: &str) -> String {
    stored
        .parse::<jiff::Timestamp>()
        .map(crate::output::fmt_time)
        .unwrap_or_else(|_| stored.to_string())
}

/// Why a slot cannot be read, without repeating its name (the listing shows it).
fn damage(e: &strongroom::Error) -> String {
    match e {
        strongroom::Error::Corrupt { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

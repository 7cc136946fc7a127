//! `strongroom key`: the passwords (key slots) that open the repository.

use crate::args::KeyAction;
use crate::context::Ctx;
use crate::failure::fail;
use crate::output::print_json;
use anyhow::Result;
use strongroom::ErrorKind;
use strongroom::access::read_password_file;
use strongroom::crypto::KdfParams;

/// Adds or lists key slots.
pub fn run(ctx: &Ctx, action: KeyAction) -> Result<()> {
    let repo = ctx.open()?;
    match action {
        KeyAction::Add {
            new_password_file,
            label,
        } => {
            let pw = read_password_file(&new_password_file)?;
            if pw.is_empty() {
                return Err(fail(
                    ErrorKind::BadInput,
                    format!(
                        "the new password in {} is empty",
                        new_password_file.display()
                    ),
                ));
            }
            let name = repo.add_password(pw.as_bytes(), KdfParams::default(), &label)?;
            eprintln!("added key slot {name}");
        }
        KeyAction::List => {
            let slots = repo.key_slot_names()?;
            if ctx.json() {
                print_json(&slots)?;
            } else {
                for name in slots {
                    println!("{name}");
                }
            }
        }
    }
    Ok(())
}

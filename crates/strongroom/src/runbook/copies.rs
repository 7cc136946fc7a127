//! The runbook's "Restore from a copy" section: each `[[copies]]` repository by name, how
//! to open it with the primary gone, and the side-copy restore commands pointed at it.
//!
//! Owns that section's wording. Must not read anything but its inputs (a copy is not opened:
//! the page must be written even when one is unreachable; `status` says how far each
//! trails), and must never write a secret: URLs lose their credentials, a password file is
//! named by its path, a `password_command` is not quoted.

use super::postgres::with_dbname;
use super::sections::{sqlite_path, store_credentials};
use super::{Entry, Inputs, sh_quote};
use crate::config::CopyConfig;
use crate::engine::postgres::physical::PhysicalMetadata;
use crate::repository::snapshot::BackupKind;
use crate::source::Location;
use crate::source::conninfo::redact_url;
use std::fmt::Write;

/// A copy's repository as the page prints it: without credentials, a relative local path
/// made absolute (it means nothing to whoever reads the page elsewhere).
fn repository_of(c: &CopyConfig) -> String {
    let url = c.repository_shown();
    if url.contains("://") {
        url
    } else {
        std::path::absolute(&url)
            .map(|p| p.display().to_string())
            .unwrap_or(url)
    }
}

/// Each copy's name and repository, for "Where the backups are".
pub(super) fn listed(inputs: &Inputs) -> Vec<String> {
    inputs
        .config
        .copies
        .iter()
        .map(|c| match (c.name(), repository_of(c)) {
            (name, url) if name == url => format!("`{url}`"),
            (name, url) => format!("`{name}` (`{url}`)"),
        })
        .collect()
}

pub(super) fn copies(md: &mut String, inputs: &Inputs, entries: &[Entry]) {
    let copies = &inputs.config.copies;
    if copies.is_empty() {
        return;
    }
    line!(md, "## Restore from a copy");
    line!(md);
    line!(
        md,
        "When the repository above is lost or unreachable, restore from a copy: `strongroom \
         copy` keeps each one in step with it (snapshots and the WAL archive) under its own \
         password, and a copy restores alone. How far each trails: `strongroom status` (check \
         `copy.NAME`). In the shell set up as in \"Environment\", point strongroom at the \
         copy, then restore into a side copy:"
    );
    line!(md);
    let physical = entries
        .iter()
        .any(|e| e.newest(&BackupKind::Physical).is_some());
    for c in copies {
        let url = repository_of(c);
        let name = c.name();
        line!(md, "### Copy `{name}`");
        line!(md);
        if name != url {
            line!(md, "Repository `{url}`.");
            line!(md);
        }
        line!(md, "```sh");
        line!(
            md,
            "export STRONGROOM_REPO={}   # the copy: every command below, and a recovering server's `wal fetch`, reads it",
            sh_quote(&url)
        );
        match (&c.password_file, &c.password_command) {
            (Some(f), _) => line!(
                md,
                "unset STRONGROOM_PASSWORD; export STRONGROOM_PASSWORD_FILE={}   # the copy's own password (the primary's does not open it)",
                sh_quote(&f.display().to_string())
            ),
            (None, Some(_)) => line!(
                md,
                "unset STRONGROOM_PASSWORD STRONGROOM_PASSWORD_FILE   # the copy's password_command in the config opens it (the primary's password does not)"
            ),
            (None, None) => line!(
                md,
                "unset STRONGROOM_PASSWORD; export STRONGROOM_PASSWORD_FILE=…   # a file holding the copy's own password (the primary's does not open it)"
            ),
        }
        store_credentials(md, &url);
        if physical {
            line!(
                md,
                "# physical restores with --start: the server reads the copy as the data directory's owner, so STRONGROOM_PASSWORD_FILE must be a key file of the copy that user can read (`strongroom key add --new-key-file` run against the copy)"
            );
        }
        line!(
            md,
            "strongroom list   # proves the copy opens: its snapshots, oldest first"
        );
        for e in entries {
            restore_commands(md, e);
        }
        line!(md, "```");
        line!(md);
    }
    line!(
        md,
        "`strongroom --repo URL …` names a copy for one command instead. Check the side copy \
         and switch in place as each source's section says, in this environment. To make a \
         copy the new primary, point the backups and `archive_command` at it, or make a fresh \
         primary with `strongroom init --copy-of` the copy and copy back."
    );
    line!(md);
}

/// The side-copy restore of each kind `e` has, as its own section writes it.
fn restore_commands(md: &mut String, e: &Entry) {
    let name = sh_quote(&e.name);
    match &e.location {
        Some(Location::Sqlite(_)) => line!(
            md,
            "strongroom restore latest --source {name} --to {}",
            sh_quote(&format!("{}.restored", sqlite_path(e)))
        ),
        Some(Location::Postgres(url)) => {
            if e.newest(&BackupKind::Logical).is_some() || e.snaps.is_empty() {
                line!(
                    md,
                    "strongroom restore latest --source {name} --target-db {}",
                    sh_quote(&with_dbname(&redact_url(url), "_restored"))
                );
            }
            if let Some(s) = e.newest(&BackupKind::Physical) {
                let dir = PhysicalMetadata::of(s)
                    .data_directory
                    .unwrap_or_else(|| "/var/lib/postgresql/data".to_string());
                line!(
                    md,
                    "strongroom restore latest --source {name} --data-dir {} --latest --start   # or --time 'YYYY-MM-DD HH:MM:SS' (UTC)",
                    sh_quote(&format!("{dir}.restored"))
                );
            }
        }
        None => {}
    }
}

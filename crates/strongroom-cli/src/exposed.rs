//! Warnings about secrets typed on the command line, where every user of the machine can read
//! them (`ps`, `/proc/PID/cmdline`).
//!
//! Owns noticing a password in a PostgreSQL URL given as an argument and saying which safer
//! ways exist. Must never print the password: what it shows is the library's redacted URL.

use strongroom::source::conninfo::{self, is_url, redact_url};

/// Whether `arg` is a PostgreSQL URL that carries a password (in its user part or as a
/// `password=` query parameter).
pub fn has_password(arg: &str) -> bool {
    is_url(arg) && conninfo::has_password(arg)
}

/// Warnings held until the command has ended, so that a failure's sentence stays the first
/// line on stderr (the contract's rule) and the warning still reaches the user.
static LATER: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Warns, after the command ends, when `arg`, given on the command line as `what`, holds a
/// password.
pub fn warn_password_in_argv(arg: &str, what: &str) {
    if has_password(arg) {
        LATER.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
            "strongroom: warning: the password in {what} ({}) is visible to every user of this machine in `ps`; give it through PGPASSWORD, ~/.pgpass or a [sources.NAME] in the config instead",
            redact_url(arg)
        ));
    }
}

/// Prints the warnings held until now.
pub fn print_held_warnings() {
    for w in LATER.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        eprintln!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_noticed() {
        assert!(has_password("postgres://app:secret@db/hotel"));
        assert!(has_password(
            "postgresql://db/hotel?user=app&password=secret"
        ));
        assert!(!has_password(
            "postgres://app@db:5432/hotel?sslmode=require"
        ));
        assert!(!has_password("postgres://app@db/hotel?"));
        assert!(!has_password("sqlite:hotel.db"));
        assert!(!has_password("hotel"));
    }
}

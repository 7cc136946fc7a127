//! Who may act from the dashboard: password hashes and their checking.
//!
//! Owns the Argon2id hashes of `[[daemon.users]]` (PHC strings, made by
//! `strongroom daemon --hash-password`) and checking a password against one in constant
//! time. Must not know about sessions or HTTP: the server keeps those.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The Argon2id hash of `password` in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$…`), with
/// a fresh salt and OWASP's recommended parameters.
pub fn hash_password(password: &str) -> crate::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| crate::Error::Internal(format!("no randomness for a salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| crate::Error::Internal(format!("cannot encode a salt: {e}")))?;
    let params = argon2::Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| crate::Error::Internal(format!("Argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    a.hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| crate::Error::Internal(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches `hash` (a PHC string; a hash that does not parse matches
/// nothing).
pub fn password_matches(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_password_and_no_other() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(password_matches("correct horse", &h));
        assert!(!password_matches("correct horse ", &h));
        assert!(!password_matches("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }
}

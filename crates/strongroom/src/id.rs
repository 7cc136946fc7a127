//! Identifiers of stored content: chunk ids and pack ids.
//!
//! Owns the two 32-byte names everything in a repository is addressed by, their hex forms and
//! nothing else. They sit below every other module (errors name them, the crypto module
//! computes chunk ids, the index maps one to the other), so this module imports nothing of
//! the crate. Where an id's object lives is [`crate::repository::layout`]'s business.

use std::fmt;

/// The content address of a chunk: a keyed BLAKE3 hash of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Lowercase hex form, as used in messages and object names.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 64-character hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ChunkId(out))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Content hash (unkeyed BLAKE3) of a pack object, which is also its name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PackId(pub [u8; 32]);

impl PackId {
    /// Lowercase hex form (the pack object's name).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 64-character hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        ChunkId::from_hex(s).map(|c| PackId(c.0))
    }
}

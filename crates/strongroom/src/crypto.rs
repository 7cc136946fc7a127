//! Keys, chunk ids and the authenticated envelope every stored object is wrapped in.
//!
//! Owns: the master key material, its wrapping into password-protected key slots (Argon2id +
//! XChaCha20-Poly1305), keyed chunk ids (BLAKE3 keyed mode, so ids reveal nothing about content
//! to someone without the key), keys derived for authenticating local files
//! ([`MasterKey::local_key`]) and the envelope format. Must not do I/O: callers hand bytes in
//! and get bytes out.
//!
//! The data key (encrypts) and the id key (names chunks) are separate on purpose: an
//! append-only key (`key add --append-only`, for a database host) holds the id key and a
//! public recipient, never the data key. It seals every object it writes to the recipient,
//! whose private half is derived from the data key, so only full keys read what a host
//! wrote, the host itself included. Its slot also carries the *shared key* (derived from the
//! data key; seals what both kinds of key must read: deletion marks) and its own *catalog
//! key* (derived from the data key and the slot's catalog id; seals the host's record of what
//! it stored, `repository::catalog`). docs/ARCHITECTURE.md, "Append-only keys", has the
//! threat model.
//!
//! Envelope formats, first byte tells which:
//! * `0x01` encrypted: `01 ‖ nonce(24) ‖ XChaCha20-Poly1305(ciphertext ‖ tag(16))`, under the
//!   data key (or the shared or a catalog key, by the caller's choice: [`MasterKey::seal_shared`]).
//! * `0x02` sealed to the recipient, by an append-only key: `02 ‖ ephemeral X25519 public
//!   key(32) ‖ nonce(24) ‖ XChaCha20-Poly1305(ciphertext ‖ tag(16))` under
//!   BLAKE3-derive-key(X25519(ephemeral, recipient) ‖ ephemeral public ‖ recipient). A fresh
//!   ephemeral key per envelope: a host keeps nothing that opens what it sealed.
//! * `0x00` plain (repositories made with `--encryption none`, and the config and key slot
//!   files that must be readable before any key is known): `00 ‖ bytes ‖ BLAKE3(aad ‖ bytes)`.
//!   That detects damage, not tampering.

use crate::error::{Error, Result};
use crate::id::ChunkId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;

const TAG_PLAIN: u8 = 0x00;
const TAG_XCHACHA: u8 = 0x01;
const TAG_SEALED_TO: u8 = 0x02;
const NONCE_LEN: usize = 24;
const HASH_LEN: usize = 32;

/// Fills a buffer with bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}

/// The repository's secret material, unwrapped from a key slot (or stored openly with
/// `--encryption none`, where only the id key exists and nothing is secret). A *full* key
/// holds the data key; an *append-only* key holds instead what a database host needs to
/// write ([`AppendOnly`]).
#[derive(Clone)]
pub struct MasterKey {
    /// Encrypts and authenticates objects; `None` for unencrypted repositories and for
    /// append-only keys.
    data: Option<[u8; 32]>,
    /// Keys the chunk-id hash.
    id: [u8; 32],
    /// What an append-only key holds in place of the data key.
    append_only: Option<AppendOnly>,
}

/// What an append-only key holds: enough to write objects only full keys can read, to read
/// deletion marks, and to read and write its own catalog.
#[derive(Clone)]
pub struct AppendOnly {
    /// The X25519 public key every object is sealed to.
    recipient: [u8; 32],
    /// The shared key ([`MasterKey::seal_shared`]).
    shared: [u8; 32],
    /// Names the slot's catalog folder (`catalogs/<id>/`).
    catalog_id: String,
    /// Seals the slot's catalog.
    catalog: [u8; 32],
}

/// What kind of key opened a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyRole {
    /// Reads and writes everything.
    Full,
    /// Writes backups and WAL, lists its own snapshots; reads no contents, deletes nothing.
    AppendOnly,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

/// Serialized form of the master key inside a key slot.
#[derive(Serialize, Deserialize)]
struct MasterKeyWire {
    repo_id: String,
    /// Empty in an append-only slot.
    data_key: String,
    id_key: String,
    config_hash: String,
    /// The append-only part (absent in a full slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    append_only: Option<AppendOnlyWire>,
}

#[derive(Serialize, Deserialize)]
struct AppendOnlyWire {
    recipient: String,
    shared_key: String,
    catalog_id: String,
    catalog_key: String,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl MasterKey {
    /// Fresh random keys for a new encrypted repository.
    pub fn generate() -> Self {
        MasterKey {
            data: Some(random_bytes()),
            id: random_bytes(),
            append_only: None,
        }
    }

    /// Keys for an unencrypted repository: only a chunk-id key, stored in the clear.
    pub fn unencrypted(id_key: [u8; 32]) -> Self {
        MasterKey {
            data: None,
            id: id_key,
            append_only: None,
        }
    }

    /// Whether objects are encrypted under this key.
    pub fn is_encrypted(&self) -> bool {
        self.data.is_some() || self.append_only.is_some()
    }

    /// Whether this is a full key or an append-only one.
    pub fn role(&self) -> KeyRole {
        if self.append_only.is_some() {
            KeyRole::AppendOnly
        } else {
            KeyRole::Full
        }
    }

    /// A new append-only key derived from this full key, with a catalog of its own; `None`
    /// for an unencrypted repository or an append-only key.
    pub fn derive_append_only(&self) -> Option<MasterKey> {
        let data = self.data.as_ref()?;
        let catalog_id = hex::encode(random_bytes::<16>());
        Some(MasterKey {
            data: None,
            id: self.id,
            append_only: Some(AppendOnly {
                recipient: x25519_dalek::PublicKey::from(&recipient_secret(data)).to_bytes(),
                shared: shared_key(data),
                catalog: catalog_key(data, &catalog_id),
                catalog_id,
            }),
        })
    }

    /// The shared key: the data key's derivation that append-only keys also hold.
    fn shared(&self) -> Option<[u8; 32]> {
        match (&self.data, &self.append_only) {
            (Some(data), _) => Some(shared_key(data)),
            (None, Some(a)) => Some(a.shared),
            (None, None) => None,
        }
    }

    /// Seals what full and append-only keys must both read (deletion marks); plain in an
    /// unencrypted repository.
    pub fn seal_shared(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        match self.shared() {
            Some(key) => seal_with(&key, aad, plaintext),
            None => seal_plain(aad, plaintext),
        }
    }

    /// Opens an envelope of [`MasterKey::seal_shared`]; a full key also opens one sealed
    /// under the data key (marks written before append-only keys existed).
    pub fn open_shared(&self, object: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        match (sealed.first(), self.shared()) {
            (Some(&TAG_XCHACHA), Some(key)) => match open_with(&key, aad, sealed) {
                Some(plain) => Ok(plain),
                None if self.data.is_some() => self.open(object, aad, sealed),
                None => Err(Error::corrupt(
                    object,
                    "authentication failed (the bytes were changed, or it was sealed for full keys only)",
                )),
            },
            _ => self.open(object, aad, sealed),
        }
    }

    /// The folder name of this append-only key's catalog.
    pub fn catalog_id(&self) -> Option<&str> {
        self.append_only.as_ref().map(|a| a.catalog_id.as_str())
    }

    /// Seals a catalog object of this append-only key; `None` for a full key.
    pub fn seal_catalog(&self, aad: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
        let a = self.append_only.as_ref()?;
        Some(seal_with(&a.catalog, aad, plaintext))
    }

    /// Opens a catalog object of the catalog `catalog_id`: an append-only key opens its
    /// own, a full key any.
    pub fn open_catalog(
        &self,
        catalog_id: &str,
        object: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        let key = match (&self.data, &self.append_only) {
            (Some(data), _) => catalog_key(data, catalog_id),
            (None, Some(a)) if a.catalog_id == catalog_id => a.catalog,
            _ => return Err(Error::AppendOnly("read another host's catalog".into())),
        };
        open_with(&key, aad, sealed)
            .ok_or_else(|| Error::corrupt(object, "authentication failed (the bytes were changed)"))
    }

    /// Whether `sealed` was written by an append-only key (a `0x02` envelope): a full key
    /// does not vouch for what it holds until it has checked it.
    pub fn sealed_by_append_only(sealed: &[u8]) -> bool {
        sealed.first() == Some(&TAG_SEALED_TO)
    }

    /// The chunk-id key (stored in the clear in unencrypted repositories).
    pub fn id_key(&self) -> [u8; 32] {
        self.id
    }

    /// Whether `other` is the same key material (data key and id key): what lets two
    /// repositories share packs, index entries, manifests and archived WAL byte for byte
    /// (`strongroom copy`). Compared in constant time.
    pub fn same_as(&self, other: &MasterKey) -> bool {
        // blake3::Hash compares in constant time.
        let ct_eq = |a: &[u8; 32], b: &[u8; 32]| blake3::Hash::from(*a) == blake3::Hash::from(*b);
        let data = match (&self.data, &other.data) {
            (Some(a), Some(b)) => ct_eq(a, b),
            (None, None) => self.append_only.is_none() && other.append_only.is_none(),
            _ => false,
        };
        data & ct_eq(&self.id, &other.id)
    }

    /// A key for authenticating local files (caches) against whoever can write them but
    /// does not hold this repository's secret: derived from the data key, or for an
    /// unencrypted repository from the id key, which its config stores in the clear (so
    /// there it holds against those who cannot read the repository). `context` names the
    /// use, so keys for different uses differ.
    pub fn local_key(&self, context: &str) -> [u8; 32] {
        let mut material = Vec::with_capacity(96);
        if let Some(data) = &self.data {
            material.extend_from_slice(data);
        }
        if let Some(a) = &self.append_only {
            material.extend_from_slice(&a.catalog);
        }
        material.extend_from_slice(&self.id);
        blake3::derive_key(context, &material)
    }

    /// The keyed content address of `data`.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.id, data).as_bytes())
    }

    /// The id of a stored page delta whose bytes are `blob` (`repository::patch`'s format;
    /// docs/ARCHITECTURE.md, "Page deltas"). Keyed apart from [`Self::chunk_id`]:
    /// no content can share an id with a delta, so an opened blob says by its id alone which
    /// of the two it is.
    pub fn delta_id(&self, blob: &[u8]) -> ChunkId {
        let key = blake3::derive_key("strongroom 2026-12 page delta id", &self.id);
        ChunkId(*blake3::keyed_hash(&key, blob).as_bytes())
    }

    /// Wraps `plaintext` in the envelope; `aad` binds it to its object type (an index cannot
    /// pass for a manifest), not to its name.
    /// An append-only key seals to the recipient (`0x02`), which only full keys open.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        match (&self.data, &self.append_only) {
            (Some(key), _) => seal_with(key, aad, plaintext),
            (None, Some(a)) => seal_to(&a.recipient, aad, plaintext),
            (None, None) => seal_plain(aad, plaintext),
        }
    }

    /// Seals as an append-only key of this repository would (`0x02`, to the recipient): a
    /// full key rewriting what a host wrote keeps it marked as the host's. Plain in an
    /// unencrypted repository.
    pub fn seal_as_host(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        match (&self.data, &self.append_only) {
            (Some(data), _) => seal_to(
                &x25519_dalek::PublicKey::from(&recipient_secret(data)).to_bytes(),
                aad,
                plaintext,
            ),
            (None, Some(a)) => seal_to(&a.recipient, aad, plaintext),
            (None, None) => seal_plain(aad, plaintext),
        }
    }

    /// Opens an envelope made by [`MasterKey::seal`]; `object` names it in errors. An
    /// append-only key opens nothing: [`Error::AppendOnly`].
    pub fn open(&self, object: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if self.append_only.is_some() {
            return Err(Error::AppendOnly(format!("read {object}")));
        }
        match sealed.first() {
            Some(&TAG_XCHACHA) => match &self.data {
                Some(key) => open_with(key, aad, sealed).ok_or_else(|| {
                    Error::corrupt(object, "authentication failed (the bytes were changed)")
                }),
                None => Err(Error::corrupt(
                    object,
                    "encrypted object in an unencrypted repository",
                )),
            },
            Some(&TAG_SEALED_TO) => match &self.data {
                Some(data) => {
                    open_sealed_to(&recipient_secret(data), aad, sealed).ok_or_else(|| {
                        Error::corrupt(object, "authentication failed (the bytes were changed)")
                    })
                }
                None => Err(Error::corrupt(
                    object,
                    "encrypted object in an unencrypted repository",
                )),
            },
            Some(&TAG_PLAIN) if self.data.is_none() => open_plain(object, aad, sealed),
            Some(&TAG_PLAIN) => Err(Error::corrupt(
                object,
                "unencrypted object in an encrypted repository",
            )),
            Some(other) => Err(Error::corrupt(
                object,
                format!("unknown envelope type {other:#04x}"),
            )),
            None => Err(Error::corrupt(object, "empty object")),
        }
    }

    fn to_wire(&self, repo_id: &str, config_hash: &str) -> Vec<u8> {
        let wire = MasterKeyWire {
            repo_id: repo_id.to_string(),
            data_key: self.data.map(hex::encode).unwrap_or_default(),
            id_key: hex::encode(self.id),
            config_hash: config_hash.to_string(),
            append_only: self.append_only.as_ref().map(|a| AppendOnlyWire {
                recipient: hex::encode(a.recipient),
                shared_key: hex::encode(a.shared),
                catalog_id: a.catalog_id.clone(),
                catalog_key: hex::encode(a.catalog),
            }),
        };
        serde_json::to_vec(&wire).expect("serializing a key cannot fail")
    }

    fn from_wire(wire: &MasterKeyWire) -> Option<MasterKey> {
        let id = hex32(&wire.id_key)?;
        match &wire.append_only {
            None => Some(MasterKey {
                data: Some(hex32(&wire.data_key)?),
                id,
                append_only: None,
            }),
            Some(a) => Some(MasterKey {
                data: None,
                id,
                append_only: Some(AppendOnly {
                    recipient: hex32(&a.recipient)?,
                    shared: hex32(&a.shared_key)?,
                    catalog_id: a.catalog_id.clone(),
                    catalog: hex32(&a.catalog_key)?,
                }),
            }),
        }
    }
}

/// The recipient's private half, derived from the data key: only full keys have it.
fn recipient_secret(data: &[u8; 32]) -> x25519_dalek::StaticSecret {
    x25519_dalek::StaticSecret::from(blake3::derive_key(
        "strongroom append-only recipient v1",
        data,
    ))
}

fn shared_key(data: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("strongroom shared key v1", data)
}

fn catalog_key(data: &[u8; 32], catalog_id: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("strongroom catalog key v1");
    h.update(data);
    h.update(catalog_id.as_bytes());
    *h.finalize().as_bytes()
}

fn envelope_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("strongroom envelope v2");
    h.update(shared);
    h.update(ephemeral);
    h.update(recipient);
    *h.finalize().as_bytes()
}

fn seal_to(recipient: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let ephemeral = x25519_dalek::StaticSecret::from(random_bytes::<32>());
    let public = x25519_dalek::PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(*recipient));
    let key = envelope_key(shared.as_bytes(), &public, recipient);
    let inner = seal_with(&key, aad, plaintext);
    let mut out = Vec::with_capacity(1 + 32 + inner.len() - 1);
    out.push(TAG_SEALED_TO);
    out.extend_from_slice(&public);
    out.extend_from_slice(&inner[1..]);
    out
}

fn open_sealed_to(
    secret: &x25519_dalek::StaticSecret,
    aad: &[u8],
    sealed: &[u8],
) -> Option<Vec<u8>> {
    if sealed.len() < 1 + 32 + NONCE_LEN + 16 {
        return None;
    }
    let public: [u8; 32] = sealed[1..33].try_into().ok()?;
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(public));
    if !shared.was_contributory() {
        return None;
    }
    let recipient = x25519_dalek::PublicKey::from(secret).to_bytes();
    let key = envelope_key(shared.as_bytes(), &public, &recipient);
    // The rest is a 0x01 envelope without its tag byte.
    let mut inner = Vec::with_capacity(sealed.len() - 32);
    inner.push(TAG_XCHACHA);
    inner.extend_from_slice(&sealed[33..]);
    open_with(&key, aad, &inner)
}

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(TAG_XCHACHA);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 1 + NONCE_LEN + 16 {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad,
            },
        )
        .ok()
}

/// Wraps bytes in the plain, checksummed envelope (no secret involved).
pub fn seal_plain(aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + plaintext.len() + HASH_LEN);
    out.push(TAG_PLAIN);
    out.extend_from_slice(plaintext);
    let mut h = blake3::Hasher::new();
    h.update(aad);
    h.update(plaintext);
    out.extend_from_slice(h.finalize().as_bytes());
    out
}

/// Opens a plain envelope, checking its checksum; `object` names it in errors.
pub fn open_plain(object: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < 1 + HASH_LEN || sealed[0] != TAG_PLAIN {
        return Err(Error::corrupt(
            object,
            "truncated or not a strongroom object",
        ));
    }
    let (body, sum) = sealed[1..].split_at(sealed.len() - 1 - HASH_LEN);
    let mut h = blake3::Hasher::new();
    h.update(aad);
    h.update(body);
    if h.finalize().as_bytes() != sum {
        return Err(Error::corrupt(
            object,
            "checksum mismatch (the bytes were changed)",
        ));
    }
    Ok(body.to_vec())
}

/// Argon2id cost parameters stored in each key slot.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter second here, OWASP's recommended floor is lower.
    fn default() -> Self {
        KdfParams {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// What a key file holds: this prefix, then 64 hex digits of random key material.
pub const KEY_FILE_PREFIX: &str = "strongroom-key-v1:";

/// The `kdf` of a slot unlocked by a key file.
const KDF_KEY_FILE: &str = "keyfile-blake3";

/// A new key-file secret: 256 random bits, spelled as a key file holds them.
pub fn new_key_file_secret() -> String {
    format!("{KEY_FILE_PREFIX}{}", hex::encode(random_bytes::<32>()))
}

/// Whether `password` is a key-file secret (and not a password a person chose).
pub fn is_key_file_secret(password: &[u8]) -> bool {
    password.starts_with(KEY_FILE_PREFIX.as_bytes())
        && password.len() == KEY_FILE_PREFIX.len() + 64
        && password[KEY_FILE_PREFIX.len()..]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

/// A password-protected copy of the master key (`keys/<id>` in the repository).
///
/// Two kinds: a slot opened by a password (`argon2id`: memory-hard stretching, because a
/// person's password can be guessed), and a slot opened by a key file (`keyfile-blake3`:
/// one BLAKE3 key derivation, because 256 random bits cannot be guessed and stretching them
/// buys nothing). Key files make opening cheap for jobs that run thousands of times a day
/// (`wal push` from `archive_command`): Argon2id alone would cap archiving near 10 segments a
/// second. The key file sits on the database host, readable by the database's system user
/// only, like the data it protects, and its slot is removed with `key remove` like any other.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeySlot {
    /// `argon2id` (a password) or `keyfile-blake3` (a key file).
    pub kdf: String,
    /// Cost parameters.
    pub params: KdfParams,
    /// Hex salt.
    pub salt: String,
    /// The master key sealed under the password-derived key (hex).
    pub wrapped: String,
    /// When the slot was made.
    pub created: String,
    /// Free-form label, e.g. the host or person it was made for.
    #[serde(default)]
    pub label: String,
    /// Whether the slot holds an append-only key (informative: what the slot opens is
    /// decided by what it wraps, which only its password reveals).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_only: bool,
}

fn derive(password: &[u8], salt: &[u8], params: KdfParams) -> Result<[u8; 32]> {
    let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| Error::Config(format!("invalid Argon2id parameters in key slot: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; 32];
    a.hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::Config(format!("key derivation failed: {e}")))?;
    Ok(out)
}

/// The key-encryption key of a slot: Argon2id for passwords, one BLAKE3 derivation for
/// key files. `None` when the secret is of the other kind than the slot (it cannot fit).
fn slot_key(kdf: &str, secret: &[u8], salt: &[u8], params: KdfParams) -> Result<Option<[u8; 32]>> {
    match kdf {
        KDF_KEY_FILE if is_key_file_secret(secret) => {
            let mut h = blake3::Hasher::new_derive_key("strongroom key file slot v1");
            h.update(salt);
            h.update(secret);
            Ok(Some(*h.finalize().as_bytes()))
        }
        KDF_KEY_FILE => Ok(None),
        // A key file never opens a password slot: trying would cost a second of Argon2id
        // per slot on every `wal push`.
        _ if is_key_file_secret(secret) => Ok(None),
        _ => derive(secret, salt, params).map(Some),
    }
}

impl KeySlot {
    /// Wraps `key` under `password`, remembering the repository id and config hash so a
    /// swapped or altered config is noticed when the slot is opened.
    pub fn create(
        password: &[u8],
        key: &MasterKey,
        repo_id: &str,
        config_hash: &str,
        params: KdfParams,
        label: &str,
    ) -> Result<Self> {
        let salt: [u8; 16] = random_bytes();
        let kdf = if is_key_file_secret(password) {
            KDF_KEY_FILE
        } else {
            "argon2id"
        };
        let kek = slot_key(kdf, password, &salt, params)?.expect("the secret fits its own kdf");
        let wrapped = seal_with(
            &kek,
            b"strongroom key slot",
            &key.to_wire(repo_id, config_hash),
        );
        Ok(KeySlot {
            kdf: kdf.into(),
            params,
            salt: hex::encode(salt),
            wrapped: hex::encode(wrapped),
            created: jiff::Timestamp::now().to_string(),
            label: label.to_string(),
            append_only: key.role() == KeyRole::AppendOnly,
        })
    }

    /// Unwraps the master key; `Ok(None)` when the password does not fit this slot.
    /// Returns the key with the repository id and config hash it was made for.
    pub fn open(
        &self,
        password: &[u8],
        object: &str,
    ) -> Result<Option<(MasterKey, String, String)>> {
        let salt = hex::decode(&self.salt).map_err(|_| Error::corrupt(object, "bad salt"))?;
        let wrapped =
            hex::decode(&self.wrapped).map_err(|_| Error::corrupt(object, "bad wrapped key"))?;
        let Some(kek) = slot_key(&self.kdf, password, &salt, self.params)? else {
            return Ok(None);
        };
        let Some(plain) = open_with(&kek, b"strongroom key slot", &wrapped) else {
            return Ok(None);
        };
        let wire: MasterKeyWire =
            serde_json::from_slice(&plain).map_err(|e| Error::corrupt(object, e.to_string()))?;
        let key = MasterKey::from_wire(&wire)
            .ok_or_else(|| Error::corrupt(object, "bad key material"))?;
        Ok(Some((key, wire.repo_id, wire.config_hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fast() -> KdfParams {
        KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        }
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), aad in proptest::collection::vec(any::<u8>(), 0..40)) {
            let k = MasterKey::generate();
            let sealed = k.seal(&aad, &data);
            prop_assert_eq!(k.open("x", &aad, &sealed).unwrap(), data.clone());
            let plain = MasterKey::unencrypted([7; 32]);
            let sealed = plain.seal(&aad, &data);
            prop_assert_eq!(plain.open("x", &aad, &sealed).unwrap(), data);
        }

        #[test]
        fn any_flipped_byte_is_detected(data in proptest::collection::vec(any::<u8>(), 1..2000), pos in any::<usize>(), bit in 0u8..8) {
            for k in [MasterKey::generate(), MasterKey::unencrypted([3; 32])] {
                let mut sealed = k.seal(b"aad", &data);
                let i = pos % sealed.len();
                sealed[i] ^= 1 << bit;
                prop_assert!(k.open("obj", b"aad", &sealed).is_err());
            }
        }
    }

    #[test]
    fn wrong_aad_or_key_fails() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"pack", b"hello");
        assert!(k.open("o", b"index", &sealed).is_err());
        assert!(MasterKey::generate().open("o", b"pack", &sealed).is_err());
        let err = k
            .open("data/ab/cd", b"index", &sealed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data/ab/cd"), "{err}");
    }

    #[test]
    fn append_only_keys_seal_what_only_full_keys_open() {
        let full = MasterKey::generate();
        let host = full.derive_append_only().unwrap();
        assert_eq!(host.role(), KeyRole::AppendOnly);
        assert!(host.is_encrypted());
        assert!(host.derive_append_only().is_none());
        assert!(
            MasterKey::unencrypted([1; 32])
                .derive_append_only()
                .is_none()
        );
        assert_eq!(host.chunk_id(b"page"), full.chunk_id(b"page"));
        let sealed = host.seal(b"pack", b"guest data");
        assert!(MasterKey::sealed_by_append_only(&sealed));
        assert!(!MasterKey::sealed_by_append_only(&full.seal(b"pack", b"x")));
        assert_eq!(full.open("o", b"pack", &sealed).unwrap(), b"guest data");
        // Two seals of the same bytes differ (a fresh ephemeral key each time).
        assert_ne!(sealed, host.seal(b"pack", b"guest data"));
        // The host opens nothing, not even what it sealed itself.
        let e = host.open("data/ab/cd", b"pack", &sealed).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::AppendOnly, "{e}");
        assert!(host.open("o", b"pack", &full.seal(b"pack", b"x")).is_err());
        // Wrong aad, another repository's full key, a flipped byte: refused.
        assert!(full.open("o", b"index", &sealed).is_err());
        assert!(MasterKey::generate().open("o", b"pack", &sealed).is_err());
        for i in [0, 1, 40, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 4;
            assert!(full.open("o", b"pack", &bad).is_err(), "byte {i}");
        }
        // The shared key: both read deletion marks; marks sealed before under the data key
        // still open with a full key.
        let mark = full.seal_shared(b"mark", b"doomed");
        assert_eq!(host.open_shared("m", b"mark", &mark).unwrap(), b"doomed");
        assert_eq!(full.open_shared("m", b"mark", &mark).unwrap(), b"doomed");
        let old = full.seal(b"mark", b"old");
        assert_eq!(full.open_shared("m", b"mark", &old).unwrap(), b"old");
        assert!(host.open_shared("m", b"mark", &old).is_err());
        // Catalogs: the host opens its own, a full key any, another host none of this one's.
        let id = host.catalog_id().unwrap().to_string();
        let cat = host.seal_catalog(b"cat", b"entries").unwrap();
        assert_eq!(
            host.open_catalog(&id, "c", b"cat", &cat).unwrap(),
            b"entries"
        );
        assert_eq!(
            full.open_catalog(&id, "c", b"cat", &cat).unwrap(),
            b"entries"
        );
        let other = full.derive_append_only().unwrap();
        assert!(other.open_catalog(&id, "c", b"cat", &cat).is_err());
        assert!(full.seal_catalog(b"cat", b"x").is_none());
        // Local keys differ between a host's key and the full key.
        assert_ne!(host.local_key("x"), full.local_key("x"));
    }

    #[test]
    fn append_only_slots_round_trip() {
        let full = MasterKey::generate();
        let host = full.derive_append_only().unwrap();
        let slot = KeySlot::create(b"host pw", &host, "r", "c", fast(), "db1").unwrap();
        assert!(slot.append_only);
        let (got, _, _) = slot.open(b"host pw", "keys/h").unwrap().unwrap();
        assert_eq!(got.role(), KeyRole::AppendOnly);
        assert_eq!(got.catalog_id(), host.catalog_id());
        let sealed = got.seal(b"a", b"b");
        assert_eq!(full.open("o", b"a", &sealed).unwrap(), b"b");
        let full_slot = KeySlot::create(b"pw", &full, "r", "c", fast(), "").unwrap();
        assert!(!full_slot.append_only);
        assert!(
            !serde_json::to_string(&full_slot)
                .unwrap()
                .contains("append_only")
        );
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_eq!(a.chunk_id(b"page"), a.chunk_id(b"page"));
        assert_ne!(a.chunk_id(b"page"), b.chunk_id(b"page"));
        assert_ne!(a.chunk_id(b"page").0, *blake3::hash(b"page").as_bytes());
    }

    #[test]
    fn local_keys_differ_by_repository_and_use() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_eq!(a.local_key("x"), a.local_key("x"));
        assert_ne!(a.local_key("x"), a.local_key("y"));
        assert_ne!(a.local_key("x"), b.local_key("x"));
        // An encrypted repository's local key depends on its secret data key, not only on
        // the id key (which an unencrypted repository stores in the clear).
        let plain = MasterKey::unencrypted(a.id_key());
        assert_ne!(a.local_key("x"), plain.local_key("x"));
    }

    #[test]
    fn key_slot_opens_only_with_its_password() {
        let k = MasterKey::generate();
        let slot = KeySlot::create(b"correct horse", &k, "repo1", "cfg", fast(), "").unwrap();
        let (got, repo, cfg) = slot.open(b"correct horse", "keys/a").unwrap().unwrap();
        assert_eq!((repo.as_str(), cfg.as_str()), ("repo1", "cfg"));
        assert_eq!(got.chunk_id(b"x"), k.chunk_id(b"x"));
        let sealed = k.seal(b"a", b"b");
        assert_eq!(got.open("o", b"a", &sealed).unwrap(), b"b");
        assert!(slot.open(b"wrong", "keys/a").unwrap().is_none());
    }

    #[test]
    fn key_file_slots_open_only_with_their_key_file_and_skip_argon2() {
        let k = MasterKey::generate();
        let secret = new_key_file_secret();
        assert!(is_key_file_secret(secret.as_bytes()));
        assert!(!is_key_file_secret(b"strongroom-key-v1:short"));
        assert!(!is_key_file_secret(b"correct horse"));
        // Parameters Argon2id refuses (zero passes): any attempt to run it would fail.
        let refused = KdfParams {
            m_kib: 1024,
            t: 0,
            p: 1,
        };
        assert!(derive(b"x", &[0; 16], refused).is_err());
        let slot = KeySlot::create(secret.as_bytes(), &k, "r", "c", refused, "wal").unwrap();
        assert_eq!(slot.kdf, "keyfile-blake3");
        let (got, _, _) = slot.open(secret.as_bytes(), "keys/b").unwrap().unwrap();
        assert_eq!(got.chunk_id(b"x"), k.chunk_id(b"x"));
        assert!(
            slot.open(new_key_file_secret().as_bytes(), "keys/b")
                .unwrap()
                .is_none()
        );
        assert!(slot.open(b"a password", "keys/b").unwrap().is_none());
        // A key file never fits a password slot (and is not stretched trying).
        let pw_slot = KeySlot::create(b"pw", &k, "r", "c", fast(), "").unwrap();
        assert!(pw_slot.open(secret.as_bytes(), "keys/c").unwrap().is_none());
    }
}

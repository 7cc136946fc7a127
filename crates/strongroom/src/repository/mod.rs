//! The repository: an encrypted, content-addressed store of snapshots on any object store.
//!
//! Owns the format version, creating a repository, opening it with a password, key slots,
//! and reading and writing the typed objects (index, snapshots, journal). Where each object
//! lives is [`layout`]'s; the chunk pipelines are [`writer`] and [`reader`]; which snapshots
//! use which chunks is [`usage`]; finding the repository and its password is [`access`].
//! Must not know about database engines.

pub mod archive;
pub mod cache;
pub mod catalog;
pub mod columns;
pub mod damage;
pub mod deletion;
pub mod delta;
pub mod expiring;
pub mod forgotten;
pub mod frames;
pub mod headers;
pub mod index;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod pack;
pub mod patch;
pub mod reader;
pub mod snapshot;
pub mod table;
pub mod usage;
pub mod writer;

use crate::crypto::{self, KdfParams, KeySlot, MasterKey};
use crate::error::{Error, Result};
use crate::storage::Storage;
use layout::ObjectKind;
use serde::{Deserialize, Serialize};
use snapshot::{Filter, Snapshot};

/// Newest repository format this build reads and the one it writes. `2`: stream segments may
/// be laid out by columns (segment encoding `2`, `columns`); a build that knows only `1`
/// refuses such a repository by name instead of reading those segments as damage. A
/// repository of version `1` is read and written as it was, without that layout.
pub const FORMAT_VERSION: u32 = 2;
const CONFIG_AAD: &[u8] = b"strongroom config";
const KEY_AAD: &[u8] = b"strongroom key file";
const INDEX_AAD: &[u8] = b"strongroom index";
const SNAPSHOT_AAD: &[u8] = b"strongroom snapshot";

/// A manifest that could not be read: its id and why.
pub type Damaged = (String, Error);

/// The first format whose stream segments may be laid out by columns.
const COLUMNS_SINCE: u32 = 2;

/// The repository's `config` object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Format version; a newer one than [`FORMAT_VERSION`] is refused.
    pub version: u32,
    /// Random repository id.
    pub id: String,
    /// When it was created.
    pub created: String,
    /// `xchacha20poly1305` or `none`.
    pub encryption: String,
    /// Chunk-id key, stored here only when `encryption` is `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_key: Option<String>,
    /// zstd level used for page chunks (SQLite, later PostgreSQL data files).
    pub compression_level: i32,
    /// zstd level used for content-defined chunks of streams (logical dumps). Level 1: on a
    /// 391 MB hotel dump it stored 90.5 MB in 3.0 s, against 94.0 MB in 3.4 s at level 3
    /// (zstd's fast levels use a larger window relative to their cost on text-like dumps).
    #[serde(default = "default_stream_level")]
    pub stream_compression_level: i32,
    /// Set in a repository made by `init --copy-of`: which repository it was made from and
    /// the family of repositories sharing its keys (see [`CopyOf`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<CopyOf>,
    /// Set by `init --object-lock DAYS`: every object (but locks, deletion marks and the
    /// expiring list) is written locked for that long, in that mode (S3 only). Older builds
    /// ignore it and would write without locks: open such a repository with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<crate::object_lock::LockPolicy>,
}

/// What a copy made with `init --copy-of` records of its origin. A copy shares the master
/// key (data key and id key) of the repository it was made from, under key slots of its
/// own: chunk ids, packs, index entries, manifests and archived WAL are the same bytes in
/// both, so `strongroom copy` moves objects as they are, without decrypting and
/// re-encrypting them. Older builds ignore the field and open a copy as any repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOf {
    /// The id of the repository the copy was made from.
    pub repository: String,
    /// The id of the first repository of the family (the one whose keys every copy, and
    /// copy of a copy, shares): two repositories of one family can take each other's
    /// objects.
    pub family: String,
}

impl RepoConfig {
    /// How a repository of this format lays out the segments of streams (logical dumps):
    /// by columns from format [`COLUMNS_SINCE`], as they are before.
    pub fn stream_layout(&self) -> pack::Layout {
        if self.version >= COLUMNS_SINCE {
            pack::Layout::Columns
        } else {
            pack::Layout::AsIs
        }
    }

    /// The family of repositories that share this one's keys: the id of the first one
    /// (this repository's own id unless it was made by `init --copy-of`).
    pub fn family(&self) -> &str {
        self.copy_of.as_ref().map_or(&self.id, |c| &c.family)
    }
}

fn default_stream_level() -> i32 {
    1
}

/// An open repository. A clone is another handle on the same store and key (the
/// cleanup that journals an interrupted job holds one).
#[derive(Clone)]
pub struct Repository {
    storage: Storage,
    config: RepoConfig,
    key: MasterKey,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.storage.url())
    }
}

fn read_config(storage: &Storage) -> Result<(RepoConfig, Vec<u8>)> {
    let sealed = match storage.get(layout::CONFIG) {
        Ok(b) => b,
        Err(Error::Missing { .. }) => return Err(Error::NoRepository(storage.url().to_string())),
        Err(e) => return Err(e),
    };
    let body = crypto::open_plain(layout::CONFIG, CONFIG_AAD, &sealed)?;
    // Read the version alone first, so a newer format is refused with the right message even
    // when the rest of its config would not parse.
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(&body)
        .map_err(|e| Error::corrupt(layout::CONFIG, format!("malformed config: {e}")))?;
    if v.version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: v.version,
            supported: FORMAT_VERSION,
        });
    }
    let config: RepoConfig = serde_json::from_slice(&body)
        .map_err(|e| Error::corrupt(layout::CONFIG, format!("malformed config: {e}")))?;
    Ok((config, sealed))
}

/// Reads and checks one key slot object (without opening it).
pub fn read_key_slot(storage: &Storage, object: &str) -> Result<KeySlot> {
    let body = crypto::open_plain(object, KEY_AAD, &storage.get(object)?)?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::corrupt(object, format!("malformed key slot: {e}")))
}

/// Reads the manifests `ids` names with `read`, in parallel: the readable ones oldest
/// first, the damaged ones apart with why; any other error ends it.
fn read_manifests(
    ids: &[String],
    read: impl Fn(&str) -> Result<Snapshot> + Sync,
) -> Result<(Vec<Snapshot>, Vec<Damaged>)> {
    let results = crate::storage::read_each(ids, |id| read(id));
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for (id, r) in ids.iter().zip(results) {
        match r {
            Ok(s) => out.push(s),
            Err(e @ Error::Corrupt { .. }) => damaged.push((id.clone(), e)),
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    Ok((out, damaged))
}

fn hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

impl Repository {
    /// Creates a repository; encrypted with `password` unless `password` is `None`.
    pub fn init(storage: Storage, password: Option<&[u8]>, kdf: KdfParams) -> Result<Self> {
        Self::fresh(storage, password, kdf, None)
    }

    /// A repository under a new master key (encrypted when `password` is given), its
    /// objects written under `lock` when one is given.
    fn fresh(
        storage: Storage,
        password: Option<&[u8]>,
        kdf: KdfParams,
        lock: Option<crate::object_lock::LockPolicy>,
    ) -> Result<Self> {
        let key = match password {
            Some(_) => MasterKey::generate(),
            None => MasterKey::unencrypted(crypto::random_bytes()),
        };
        Self::create(
            storage,
            password,
            kdf,
            key,
            None,
            (3, default_stream_level()),
            lock,
        )
    }

    /// Creates a repository whose every object is written under `lock` (`init
    /// --object-lock`). The store is probed first: a store without object lock (not S3, or
    /// a bucket without Object Lock enabled) is refused with [`Error::NoObjectLock`] before
    /// anything is written.
    pub fn init_locked(
        storage: Storage,
        password: Option<&[u8]>,
        kdf: KdfParams,
        lock: crate::object_lock::LockPolicy,
    ) -> Result<Self> {
        let storage = Self::locked_storage(storage, lock)?;
        Self::fresh(storage, password, kdf, Some(lock))
    }

    /// `storage`, made to write under `lock`, once the lock's days are in range, the store
    /// is probed for object lock and no repository is there yet.
    fn locked_storage(storage: Storage, lock: crate::object_lock::LockPolicy) -> Result<Storage> {
        if lock.days == 0 || lock.days > crate::object_lock::LockPolicy::MAX_DAYS {
            return Err(Error::Config(format!(
                "an object lock of {} days is out of range: give 1 to {} days",
                lock.days,
                crate::object_lock::LockPolicy::MAX_DAYS
            )));
        }
        storage.probe_object_lock()?;
        if storage.exists(layout::CONFIG)? {
            return Err(Error::RepositoryExists(storage.url().to_string()));
        }
        storage.with_object_lock(lock, &ObjectKind::unlocked_folders())
    }

    /// Creates a copy of `source` (`init --copy-of`): a repository of its own (its own id,
    /// key slots, journal and locks) that shares `source`'s master key and compression
    /// levels, so `strongroom copy` can move packs, manifests and WAL between them as they
    /// are. Its own `password` wraps the shared key; an unencrypted source makes an
    /// unencrypted copy, which takes no password.
    /// With `lock`, every object of the copy is written under it (`init --copy-of URL
    /// --object-lock DAYS`), as [`Repository::init_locked`] does: the copy a stolen primary
    /// cannot reach is also one its store's credentials cannot destroy.
    pub fn init_copy(
        storage: Storage,
        password: Option<&[u8]>,
        kdf: KdfParams,
        source: &Repository,
        lock: Option<crate::object_lock::LockPolicy>,
    ) -> Result<Self> {
        source.require_full("make a copy")?;
        match (source.key.is_encrypted(), password) {
            (true, None) => return Err(Error::PasswordMissing),
            (false, Some(_)) => {
                return Err(Error::Config(format!(
                    "the repository at {} is not encrypted, so its copy cannot be: make the copy without a password",
                    source.storage.url()
                )));
            }
            _ => {}
        }
        let copy_of = CopyOf {
            repository: source.config.id.clone(),
            family: source.config.family().to_string(),
        };
        let levels = (
            source.config.compression_level,
            source.config.stream_compression_level,
        );
        let storage = match lock {
            Some(lock) => Self::locked_storage(storage, lock)?,
            None => storage,
        };
        Self::create(
            storage,
            password,
            kdf,
            source.key.clone(),
            Some(copy_of),
            levels,
            lock,
        )
    }

    /// Writes a new repository's key slot, then its config (last: its presence is what
    /// makes a repository exist).
    fn create(
        storage: Storage,
        password: Option<&[u8]>,
        kdf: KdfParams,
        key: MasterKey,
        copy_of: Option<CopyOf>,
        (compression_level, stream_compression_level): (i32, i32),
        object_lock: Option<crate::object_lock::LockPolicy>,
    ) -> Result<Self> {
        if password.is_some_and(<[u8]>::is_empty) {
            return Err(Error::EmptyPassword);
        }
        if storage.exists(layout::CONFIG)? {
            return Err(Error::RepositoryExists(storage.url().to_string()));
        }
        let id = hex::encode(crypto::random_bytes::<16>());
        let config = RepoConfig {
            version: FORMAT_VERSION,
            id: id.clone(),
            created: jiff::Timestamp::now().to_string(),
            encryption: if key.is_encrypted() {
                "xchacha20poly1305"
            } else {
                "none"
            }
            .into(),
            id_key: (!key.is_encrypted()).then(|| hex::encode(key.id_key())),
            compression_level,
            stream_compression_level,
            copy_of,
            object_lock,
        };
        let body = serde_json::to_vec_pretty(&config).expect("config serializes");
        let sealed = crypto::seal_plain(CONFIG_AAD, &body);
        let repo = Repository {
            storage,
            config,
            key,
        };
        if let Some(pw) = password {
            repo.write_key_slot(&repo.key, pw, kdf, &hash_hex(&sealed), "initial")?;
        }
        // The config goes last: its presence is what makes a repository exist.
        repo.storage.put(layout::CONFIG, &sealed)?;
        Ok(repo)
    }

    /// Writes a slot wrapping `key` under `password`, bound to `config_hash`; returns its name.
    fn write_key_slot(
        &self,
        key: &MasterKey,
        password: &[u8],
        kdf: KdfParams,
        config_hash: &str,
        label: &str,
    ) -> Result<String> {
        let slot = KeySlot::create(password, key, &self.config.id, config_hash, kdf, label)?;
        let body = serde_json::to_vec_pretty(&slot).expect("key slot serializes");
        let name = hex::encode(crypto::random_bytes::<16>());
        self.storage.put(
            &ObjectKind::Key.key(&name),
            &crypto::seal_plain(KEY_AAD, &body),
        )?;
        Ok(name)
    }

    /// Opens an existing repository, unlocking it with `password` when it is encrypted.
    pub fn open(storage: Storage, password: Option<&[u8]>) -> Result<Self> {
        let (config, sealed) = read_config(&storage)?;
        // Every write from here on follows the repository's object lock.
        let storage = match config.object_lock {
            Some(lock) => storage.with_object_lock(lock, &ObjectKind::unlocked_folders())?,
            None => storage,
        };
        if config.encryption == "none" {
            let mut id = [0u8; 32];
            hex::decode_to_slice(config.id_key.as_deref().unwrap_or_default(), &mut id)
                .map_err(|_| Error::corrupt(layout::CONFIG, "bad id key"))?;
            return Ok(Repository {
                storage,
                config,
                key: MasterKey::unencrypted(id),
            }
            .settle_journal());
        }
        let password = password.ok_or(Error::PasswordMissing)?;
        let slots = storage.list(ObjectKind::Key.folder())?;
        if slots.is_empty() {
            return Err(Error::corrupt(
                ObjectKind::Key.folder(),
                "the repository has no key slots",
            ));
        }
        let config_hash = hash_hex(&sealed);
        let mut damaged = Vec::new();
        for info in &slots {
            let slot = match read_key_slot(&storage, &info.key) {
                Ok(slot) => slot,
                // A damaged slot must not lock out the holders of the other passwords.
                Err(e @ (Error::Corrupt { .. } | Error::Missing { .. })) => {
                    tracing::warn!("{e}; trying the other key slots");
                    damaged.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some((key, repo_id, hash)) = slot.open(password, &info.key)? {
                if repo_id != config.id || hash != config_hash {
                    return Err(Error::corrupt(
                        layout::CONFIG,
                        "it does not match the repository's keys (altered or swapped)",
                    ));
                }
                return Ok(Repository {
                    storage,
                    config,
                    key,
                }
                .settle_journal());
            }
        }
        if damaged.len() == slots.len() {
            return Err(damaged.remove(0));
        }
        Err(Error::WrongPassword { slots: slots.len() })
    }

    /// What every opening does before any job: records that waited locally are written,
    /// and jobs killed before they could write theirs are journaled.
    fn settle_journal(self) -> Self {
        self.flush_pending_journal();
        self.journal_interrupted_jobs();
        self
    }

    /// Adds a key slot so `password` also opens the repository; returns the slot name.
    pub fn add_password(&self, password: &[u8], kdf: KdfParams, label: &str) -> Result<String> {
        self.require_full("add a key")?;
        if !self.key.is_encrypted() {
            return Err(Error::Config(
                "the repository is not encrypted; it has no passwords".into(),
            ));
        }
        self.add_slot(&self.key, password, kdf, label)
    }

    /// Adds a slot wrapping `key` under `password`, bound to the config as it is stored.
    fn add_slot(
        &self,
        key: &MasterKey,
        password: &[u8],
        kdf: KdfParams,
        label: &str,
    ) -> Result<String> {
        if password.is_empty() {
            return Err(Error::EmptyPassword);
        }
        let (_, sealed) = read_config(&self.storage)?;
        self.write_key_slot(key, password, kdf, &hash_hex(&sealed), label)
    }

    /// Adds a key slot holding an append-only key (`key add --append-only`), for a host
    /// that may add backups and WAL but read and delete nothing; returns the slot name.
    /// The key gets a catalog of its own (`repository::catalog`).
    pub fn add_append_only(&self, password: &[u8], kdf: KdfParams, label: &str) -> Result<String> {
        self.require_full("add a key")?;
        let Some(key) = self.key.derive_append_only() else {
            return Err(Error::Config(
                "the repository is not encrypted: an append-only key needs an encrypted repository (a host with write access to an unencrypted one reads everything anyway)".into(),
            ));
        };
        self.add_slot(&key, password, kdf, label)
    }

    /// Refuses, with [`Error::AppendOnly`], when the repository was opened with an
    /// append-only key; `what` is a verb phrase ("restore a snapshot").
    pub fn require_full(&self, what: &str) -> Result<()> {
        match self.key.role() {
            crypto::KeyRole::Full => Ok(()),
            crypto::KeyRole::AppendOnly => Err(Error::AppendOnly(what.to_string())),
        }
    }

    /// Whether the repository was opened with a full or an append-only key.
    pub fn role(&self) -> crypto::KeyRole {
        self.key.role()
    }

    /// Every key slot by name, read but not opened; a slot that cannot be read comes with
    /// why instead, so one damaged slot never hides the others.
    pub fn key_slots(&self) -> Result<Vec<(String, Result<KeySlot>)>> {
        Ok(self
            .key_slot_names()?
            .into_iter()
            .map(|name| {
                let slot = read_key_slot(&self.storage, &ObjectKind::Key.key(&name));
                (name, slot)
            })
            .collect())
    }

    /// Removes the key slot `reference` names (its name or a unique prefix of at least 6
    /// characters); returns the slot's name. Refuses to remove the last slot that can be
    /// read, which would leave no password that opens the repository.
    pub fn remove_key_slot(&self, reference: &str) -> Result<String> {
        self.require_full("remove a key")?;
        if !self.key.is_encrypted() {
            return Err(Error::Config(
                "the repository is not encrypted; it has no passwords".into(),
            ));
        }
        let names = self.key_slot_names()?;
        let wanted = reference.to_ascii_lowercase();
        let name = match names.iter().find(|n| **n == wanted) {
            Some(exact) => exact.clone(),
            None if wanted.len() < 6 => {
                return Err(Error::BadReference(format!(
                    "key slot reference {reference:?} is too short: give the slot's id or at least its first 6 characters"
                )));
            }
            None => {
                let matching: Vec<&String> =
                    names.iter().filter(|n| n.starts_with(&wanted)).collect();
                match matching.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(Error::NoKeySlot(format!(
                            "no key slot {reference}; `strongroom key list` shows the ids"
                        )));
                    }
                    many => {
                        return Err(Error::BadReference(format!(
                            "key slot prefix {reference} is ambiguous ({} slots match); give more characters",
                            many.len()
                        )));
                    }
                }
            }
        };
        let others_readable = names
            .iter()
            .filter(|n| **n != name)
            .any(|n| read_key_slot(&self.storage, &ObjectKind::Key.key(n)).is_ok());
        if !others_readable {
            return Err(Error::LastKeySlot(name));
        }
        self.storage.delete(&ObjectKind::Key.key(&name))?;
        Ok(name)
    }

    /// The object store.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The repository config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The unlocked keys.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The names of the key slots (listed, not read: a damaged slot still shows).
    pub fn key_slot_names(&self) -> Result<Vec<String>> {
        Ok(self
            .storage
            .list(ObjectKind::Key.folder())?
            .iter()
            .filter_map(|info| ObjectKind::Key.name_of(&info.key).map(str::to_string))
            .collect())
    }

    /// Reads one index object; locations an append-only key recorded come back
    /// [`index::Location::from_host`].
    pub fn read_index(&self, object: &str) -> Result<Vec<index::Entry>> {
        self.require_full("read the index")?;
        let sealed = self.storage.get(object)?;
        let body = self.key.open(object, INDEX_AAD, &sealed)?;
        let mut entries = index::decode_compressed(object, &body)?;
        if MasterKey::sealed_by_append_only(&sealed) {
            for (_, loc) in &mut entries {
                loc.from_host = true;
            }
        }
        Ok(entries)
    }

    /// Writes index objects for `entries`; returns their size in bytes. Locations an
    /// append-only key recorded ([`index::Location::from_host`]) go into an object of their
    /// own, sealed to the recipient as that key would have (so a prune's or a copy's rewrite
    /// keeps them what they were). An append-only key also records its entries in its
    /// catalog (`repository::catalog`).
    pub fn write_index(&self, entries: &[index::Entry]) -> Result<u64> {
        self.write_index_named(entries).map(|(bytes, _)| bytes)
    }

    /// [`Repository::write_index`], also returning the names of the objects written (a
    /// prune tells the local cache which objects it wrote and what they hold).
    pub fn write_index_named(&self, entries: &[index::Entry]) -> Result<(u64, Vec<String>)> {
        let mut names = Vec::new();
        let (host, full): (Vec<index::Entry>, Vec<index::Entry>) = entries
            .iter()
            .copied()
            .partition(|(_, l)| l.from_host || self.key.role() == crypto::KeyRole::AppendOnly);
        let mut bytes = 0;
        for (part, as_host) in [(full, false), (host, true)] {
            if part.is_empty() {
                continue;
            }
            let body = index::encode_compressed(&part);
            let sealed = if as_host {
                self.key.seal_as_host(INDEX_AAD, &body)
            } else {
                self.key.seal(INDEX_AAD, &body)
            };
            let name = ObjectKind::Index.key(&hash_hex(&sealed));
            self.storage.put(&name, &sealed)?;
            bytes += sealed.len() as u64;
            names.push(name);
        }
        self.catalog_entries(entries)?;
        Ok((bytes, names))
    }

    /// The entries of a pack's trailer, read with two ranged reads (its last four bytes,
    /// then the sealed trailer) instead of the whole pack; `size` is the pack's listed size.
    pub fn pack_trailer(&self, id: crate::id::PackId, size: u64) -> Result<Vec<index::Entry>> {
        let object = id.object_key();
        let last4 = self
            .storage
            .get_range(&object, size.saturating_sub(4), 4.min(size))?;
        let tlen = pack::trailer_len(&object, size, &last4)?;
        let start = size - 4 - tlen;
        let sealed = self.storage.get_range(&object, start, tlen)?;
        pack::decode_trailer(&self.key, &object, id, &sealed, start)
    }

    /// Stores a manifest (the commit point) and sets its id; returns the bytes written.
    pub fn write_snapshot(&self, snap: &mut Snapshot) -> Result<u64> {
        let body = snap.encode();
        snap.id = blake3::keyed_hash(&self.key.id_key(), &body)
            .to_hex()
            .to_string();
        let sealed = self.key.seal(SNAPSHOT_AAD, &body);
        self.storage.put(&Snapshot::object_key(&snap.id), &sealed)?;
        // After the manifest: the catalog says what was committed, and `list` shows a
        // record only while its manifest is listed. The snapshot is committed whatever
        // happens to this record: failing here would report a stored backup as failed.
        if let Err(e) = self.catalog_snapshot(snap) {
            tracing::warn!(
                "snapshot {} is stored, but this host's `list` will not show it: {e}",
                snap.short_id()
            );
        }
        Ok(sealed.len() as u64)
    }

    /// Reads one manifest and checks that its content matches its name. A manifest an
    /// append-only key wrote comes back [`Snapshot::unvouched`] until [`Repository::vouch`].
    pub fn read_snapshot(&self, id: &str) -> Result<Snapshot> {
        let (sealed, body) = self.open_snapshot(id)?;
        let mut snap = Snapshot::decode(id, &body)?;
        snap.unvouched = MasterKey::sealed_by_append_only(&sealed);
        Ok(snap)
    }

    /// Vouches for a snapshot an append-only key wrote, once a full key has checked it
    /// (`verify`): its manifest is sealed again under the data key, the same content under
    /// the same id, so retention counts it from then on (`retention`: what an append-only
    /// host writes cannot push a vouched snapshot out). Returns whether it was unvouched.
    pub fn vouch(&self, id: &str) -> Result<bool> {
        self.require_full("vouch for a snapshot")?;
        let (sealed, body) = self.open_snapshot(id)?;
        if !MasterKey::sealed_by_append_only(&sealed) {
            return Ok(false);
        }
        let resealed = self.key.seal(SNAPSHOT_AAD, &body);
        self.storage.put(&Snapshot::object_key(id), &resealed)?;
        Ok(true)
    }

    /// One manifest as stored (sealed), once it opened and its content matched its name:
    /// what `copy` writes into a repository sharing this one's keys.
    pub fn sealed_snapshot(&self, id: &str) -> Result<Vec<u8>> {
        let (sealed, body) = self.open_snapshot(id)?;
        Snapshot::decode(id, &body)?;
        Ok(sealed)
    }

    /// Reads one manifest: its sealed bytes and its authenticated body, whose keyed hash
    /// is its name.
    fn open_snapshot(&self, id: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        self.require_full("read a snapshot")?;
        let object = Snapshot::object_key(id);
        let sealed = self.storage.get(&object)?;
        let body = self.key.open(&object, SNAPSHOT_AAD, &sealed)?;
        if blake3::keyed_hash(&self.key.id_key(), &body)
            .to_hex()
            .as_str()
            != id
        {
            return Err(Error::corrupt(object, "content does not match its id"));
        }
        Ok((sealed, body))
    }

    /// Every snapshot, oldest first; fails on the first damaged manifest.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let (good, mut damaged) = self.snapshots_lenient()?;
        match damaged.pop() {
            Some((_, e)) => Err(e),
            None => Ok(good),
        }
    }

    /// Every readable snapshot, oldest first, and the ids of damaged manifests with why:
    /// one damaged manifest must not stop anyone from listing or restoring the others.
    pub fn snapshots_lenient(&self) -> Result<(Vec<Snapshot>, Vec<Damaged>)> {
        // Before any request: a store that refuses the host its reads would answer first.
        self.require_full("read snapshots (an append-only key lists its own with `list`)")?;
        let ids = self.snapshot_ids()?;
        read_manifests(&ids, |id| self.read_snapshot(id))
    }

    /// The ids of every manifest in `snapshots/` (one listing).
    fn snapshot_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .storage
            .list(ObjectKind::Snapshot.folder())?
            .iter()
            .filter_map(|info| ObjectKind::Snapshot.name_of(&info.key).map(str::to_string))
            .collect())
    }

    /// Resolves a snapshot reference (`latest`, id, id prefix) under a filter. Damaged
    /// manifests are skipped, unless the reference names one: then its damage is the error.
    pub fn resolve(&self, reference: &str, filter: &Filter) -> Result<Snapshot> {
        self.resolve_with(reference, |all| {
            snapshot::resolve(all, reference, filter).cloned()
        })
    }

    /// Like [`Repository::resolve`], for a restore or verify: `latest` without a source is
    /// refused when several sources have snapshots ([`snapshot::resolve_one_source`]).
    pub fn resolve_one_source(&self, reference: &str, filter: &Filter) -> Result<Snapshot> {
        self.resolve_with(reference, |all| {
            snapshot::resolve_one_source(all, reference, filter).cloned()
        })
    }

    /// Resolves `reference` with `pick` over the readable snapshots, oldest first (one
    /// listing, each manifest read once); damaged manifests are skipped unless the
    /// reference names one.
    pub fn resolve_with(
        &self,
        reference: &str,
        pick: impl FnOnce(&[Snapshot]) -> Result<Snapshot>,
    ) -> Result<Snapshot> {
        let (all, damaged) = self.snapshots_lenient()?;
        let wanted = reference.to_ascii_lowercase();
        if !damaged.is_empty() && snapshot::is_latest(&wanted) {
            let ids: Vec<&str> = damaged
                .iter()
                .map(|(id, _)| snapshot::short_id(id))
                .collect();
            tracing::warn!(
                "{} damaged snapshot manifest(s) ({}) skipped: `latest` means the newest readable snapshot; run `strongroom check`",
                ids.len(),
                ids.join(", ")
            );
        }
        if let Some((_, e)) = damaged
            .into_iter()
            .find(|(id, _)| wanted.len() >= 6 && id.starts_with(&wanted))
        {
            return Err(e);
        }
        pick(&all)
    }
}

#[cfg(test)]
mod tests;

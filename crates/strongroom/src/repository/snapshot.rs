//! Snapshot manifests: what a backup captured and how to put it back together.
//!
//! Owns the manifest type, its JSON encoding, its content-derived id and the rules for
//! resolving a snapshot reference (`latest`, an id, or an id prefix). A manifest is written
//! last, after every object it names is durable: it is the commit point (docs/ARCHITECTURE.md, "Invariants": the manifest is the commit point).
//! Must not read or write storage.

use super::layout::ObjectKind;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::source::SourceMatch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Declares a name stored in manifests as a string: known values as variants, anything else
/// (written by a newer strongroom) kept as it was, so such a snapshot still lists and is
/// refused by name only where it would be restored.
macro_rules! stored_name {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A name this build does not know.
            Other(String),
        }

        impl $name {
            /// The name as stored and printed.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($text => $name::$variant,)+
                    _ => $name::Other(s),
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::from(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(k: $name) -> String {
                k.as_str().to_string()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_name! {
    /// The engine that took a snapshot.
    EngineKind {
        /// A SQLite database file.
        Sqlite => "sqlite",
        /// A PostgreSQL database or cluster.
        Postgres => "postgres",
    }
}

stored_name! {
    /// What sort of backup a snapshot is.
    BackupKind {
        /// A whole SQLite database, page by page.
        Full => "full",
        /// A PostgreSQL logical dump (`pg_dump`).
        Logical => "logical",
        /// A PostgreSQL physical base backup.
        Physical => "physical",
    }
}

/// Facts about the database captured at backup time, in the same transaction as the data.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    /// Exact row count of every user table.
    pub row_counts: BTreeMap<String, u64>,
    /// Newest applied migration, or `PRAGMA user_version`, or null.
    pub schema_version: Option<String>,
    /// SQLite or PostgreSQL version.
    pub server_version: String,
    /// Engine-specific facts (page size, page count, journal mode, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// WAL range of a physical snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalRange {
    /// Timeline id.
    pub timeline: u32,
    /// LSN where the backup started.
    pub start_lsn: String,
    /// LSN where the backup stopped.
    pub stop_lsn: String,
}

/// How a file's bytes were cut into chunks.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Chunking {
    /// Fixed-size chunks aligned to database pages; every chunk but the last has `size` bytes.
    Fixed {
        /// Chunk size in bytes.
        size: u32,
    },
    /// Content-defined chunks of varying size.
    ContentDefined,
}

/// One stored file (a database file, a dump stream, …).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Role or name of the file inside the snapshot, e.g. `main.db`.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// How it was chunked.
    pub chunking: Chunking,
    /// Ids of the list blobs that, concatenated, give the file's chunk ids in order
    /// (32 bytes each). Lists are stored as blobs so a manifest stays small for huge files.
    pub lists: Vec<String>,
    /// Page deltas (docs/ARCHITECTURE.md, "Page deltas"): one entry per list blob, the id of
    /// the blob of [`DeltaRecord`]s for the positions that list covers whose stored chunk is a
    /// delta, or `None` when it has none. Empty when the file has no deltas at all (and in
    /// manifests written before page deltas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Option<String>>,
    /// Details of a file that is one of many in a directory tree (physical backups).
    #[serde(default, skip_serializing_if = "Option::is_none", flatten)]
    pub tree: Option<TreeEntry>,
}

/// What a file in a stored directory tree needs besides its bytes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeEntry {
    /// Unix permission bits.
    pub mode: u32,
    /// For a symbolic link, where it points (then the entry has no bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// For a directory (no bytes): true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    /// BLAKE3 of the content, hex (files only): the restore checks what it wrote against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Modification time when it was read, nanoseconds since the epoch (files only): a later
    /// snapshot reuses this entry for a file with the same size and time that has not changed
    /// since before this snapshot began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
}

/// Chunk ids per list blob (64 KiB of ids): the writer fills list blobs to this, readers
/// size their windows by it.
pub const IDS_PER_LIST: usize = 2048;

/// One position of a file whose stored chunk is a page delta: which position, the id of the
/// page's content (what an unchanged page hashes to next time) and the id of the whole page
/// the delta is taken against (depth 1: a base is never a delta itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaRecord {
    /// Position of the chunk in the file (0-based).
    pub position: u64,
    /// Keyed id of the page's content.
    pub content: ChunkId,
    /// Id of the whole page the delta is taken against.
    pub base: ChunkId,
}

/// Bytes of one encoded [`DeltaRecord`]: position (u64 LE), content id, base id.
pub const DELTA_RECORD_BYTES: usize = 72;

impl DeltaRecord {
    /// Appends the record's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.content.0);
        out.extend_from_slice(&self.base.0);
    }

    /// Parses a blob of records; `None` when its length is not a whole number of records or
    /// its positions do not increase.
    pub fn parse(body: &[u8]) -> Option<Vec<DeltaRecord>> {
        if body.len() % DELTA_RECORD_BYTES != 0 {
            return None;
        }
        let mut out: Vec<DeltaRecord> = Vec::with_capacity(body.len() / DELTA_RECORD_BYTES);
        for r in body.chunks_exact(DELTA_RECORD_BYTES) {
            let rec = DeltaRecord {
                position: u64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
                content: ChunkId(r[8..40].try_into().expect("32 bytes")),
                base: ChunkId(r[40..72].try_into().expect("32 bytes")),
            };
            if out.last().is_some_and(|l| l.position >= rec.position) {
                return None;
            }
            out.push(rec);
        }
        Some(out)
    }
}

impl FileEntry {
    /// Ids of the delta record blobs of this file (see [`FileEntry::deltas`]).
    pub fn delta_ids(&self) -> Option<Vec<ChunkId>> {
        self.deltas
            .iter()
            .flatten()
            .map(|h| ChunkId::from_hex(h))
            .collect()
    }
}

/// The first 8 characters of a snapshot id (the contract's `short_id`), for ids held
/// without their snapshot (journal records, drill reports).
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// A snapshot manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Content-derived id (64 hex); not stored inside the manifest itself.
    #[serde(skip)]
    pub id: String,
    /// The source: its config name, or its URL's identity.
    pub source: String,
    /// The identity of the source's location (`sqlite:/abs/path`, `postgres://user@host:port/db`)
    /// when `source` is a config name: the database can still be found, and matched by URL,
    /// without the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_location: Option<String>,
    /// The engine that took it.
    pub engine: EngineKind,
    /// What sort of backup it is.
    pub kind: BackupKind,
    /// User tags.
    pub tags: Vec<String>,
    /// When the backup started.
    pub started_at: jiff::Timestamp,
    /// When the data was fully stored.
    pub finished_at: jiff::Timestamp,
    /// Bytes of backed-up data before dedup and compression.
    pub size: u64,
    /// Bytes this snapshot newly added to the repository.
    pub added: u64,
    /// Captured facts.
    pub metadata: Metadata,
    /// WAL range (physical snapshots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalRange>,
    /// Host that took the backup.
    pub hostname: String,
    /// strongroom version that wrote it.
    pub program_version: String,
    /// Stored files.
    pub files: Vec<FileEntry>,
    /// Taken with an append-only key, as the key that wrote it says (`status` shows which
    /// kind of key a source's host holds; a vouch reseals the manifest but keeps this).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_only: bool,
    /// Written by an append-only key and not yet checked by a full key
    /// ([`super::Repository::vouch`]): retention keeps it but does not count it. Not stored
    /// in the manifest: the envelope says it.
    #[serde(skip)]
    pub unvouched: bool,
}

/// The snapshot object of the command-line contract (what `--json` prints).
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotSummary<'a> {
    /// Full id.
    pub id: &'a str,
    /// First 8 characters of the id.
    pub short_id: &'a str,
    /// Source name or URL.
    pub source: &'a str,
    /// The source's location when `source` is a config name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_location: Option<&'a str>,
    /// Engine.
    pub engine: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Tags.
    pub tags: &'a [String],
    /// Start time (RFC 3339 UTC).
    pub started_at: String,
    /// End time (RFC 3339 UTC).
    pub finished_at: String,
    /// Logical size.
    pub size: u64,
    /// Newly stored bytes.
    pub added: u64,
    /// Captured facts.
    pub metadata: &'a Metadata,
    /// WAL range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal: Option<&'a WalRange>,
    /// Host.
    pub hostname: &'a str,
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Snapshot {
    /// Object path of a snapshot id.
    pub fn object_key(id: &str) -> String {
        ObjectKind::Snapshot.key(id)
    }

    /// The first 8 characters of the id.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// The one identity of the database this snapshot is of, however its source was named
    /// when it was taken: the recorded location (a config name keeps it beside), else the
    /// identity of a recorded URL (older builds recorded other spellings), else the recorded
    /// name. Snapshots taken by URL before a config existed and by the config's name
    /// afterwards have the same identity: one group for retention, one source for `latest`.
    pub fn identity(&self) -> String {
        self.source_location
            .clone()
            .or_else(|| crate::source::identity_of(&self.source))
            .unwrap_or_else(|| self.source.clone())
    }

    /// The contract's view of this snapshot.
    pub fn summary(&self) -> SnapshotSummary<'_> {
        SnapshotSummary {
            id: &self.id,
            short_id: self.short_id(),
            source: &self.source,
            source_location: self.source_location.as_deref(),
            engine: self.engine.as_str(),
            kind: self.kind.as_str(),
            tags: &self.tags,
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(self.finished_at),
            size: self.size,
            added: self.added,
            metadata: &self.metadata,
            wal: self.wal.as_ref(),
            hostname: &self.hostname,
        }
    }

    /// Serializes the manifest (the repository derives the id from these bytes).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// Decodes a manifest body read from `snapshots/<id>`.
    pub fn decode(id: &str, body: &[u8]) -> Result<Self> {
        let mut s: Snapshot = serde_json::from_slice(body).map_err(|e| {
            Error::corrupt(Self::object_key(id), format!("malformed manifest: {e}"))
        })?;
        s.id = id.to_string();
        Ok(s)
    }

    /// Ids of the list blobs of every file.
    pub fn list_ids(&self) -> Result<Vec<ChunkId>> {
        let mut out = Vec::new();
        for f in &self.files {
            for l in &f.lists {
                out.push(
                    ChunkId::from_hex(l)
                        .ok_or_else(|| Error::corrupt(Self::object_key(&self.id), "bad list id"))?,
                );
            }
        }
        Ok(out)
    }

    /// Ids of the delta record blobs of every file (`FileEntry::deltas`).
    pub fn delta_ids(&self) -> Result<Vec<ChunkId>> {
        let mut out = Vec::new();
        for f in &self.files {
            out.extend(f.delta_ids().ok_or_else(|| {
                Error::corrupt(Self::object_key(&self.id), "bad delta record id")
            })?);
        }
        Ok(out)
    }
}

/// Narrows which snapshots a reference may mean.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only snapshots of this source (any of its spellings).
    pub source: Option<SourceMatch>,
    /// Only snapshots carrying every one of these tags.
    pub tags: Vec<String>,
}

impl Filter {
    /// Whether a snapshot passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.source.as_ref().is_none_or(|m| {
            m.matches(&s.source) || s.source_location.as_deref().is_some_and(|l| m.matches(l))
        }) && self.tags.iter().all(|t| s.tags.contains(t))
    }
}

/// Whether a reference means the newest snapshot (`latest`, in any case).
pub fn is_latest(reference: &str) -> bool {
    reference.eq_ignore_ascii_case("latest")
}

/// Picks one snapshot from `all` (sorted oldest first) for a reference: `latest` (in any
/// case, as hex ids are), a full id, or a unique prefix of at least 6 characters.
pub fn resolve<'a>(all: &'a [Snapshot], reference: &str, filter: &Filter) -> Result<&'a Snapshot> {
    let candidates: Vec<&Snapshot> = all.iter().filter(|s| filter.matches(s)).collect();
    if is_latest(reference) {
        return candidates.last().copied().ok_or_else(|| {
            match (&filter.source, filter.tags.is_empty()) {
                (None, true) => Error::NoSnapshot(
                    "the repository has no snapshots yet; take one with `strongroom backup`".into(),
                ),
                _ => Error::NoMatchingSnapshot,
            }
        });
    }
    let reference = reference.to_ascii_lowercase();
    if reference.len() < 6 || !reference.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::BadReference(format!(
            "snapshot reference {reference:?} is neither `latest` nor a hex id of at least 6 characters"
        )));
    }
    let matching: Vec<&Snapshot> = candidates
        .into_iter()
        .filter(|s| s.id.starts_with(&reference))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::NoSnapshot(format!(
            "no snapshot {reference}; `strongroom list` shows the ids"
        ))),
        many => Err(Error::BadReference(format!(
            "snapshot prefix {reference} is ambiguous ({} snapshots match); give more characters",
            many.len()
        ))),
    }
}

/// Like [`resolve`], but `latest` must not cross sources: without a source in the filter,
/// `latest` is refused when the candidates come from more than one source (a restore or a
/// verify must never take one database's newest snapshot for another's).
pub fn resolve_one_source<'a>(
    all: &'a [Snapshot],
    reference: &str,
    filter: &Filter,
) -> Result<&'a Snapshot> {
    if is_latest(reference) && filter.source.is_none() {
        // One database under two spellings (a URL recorded by an older build, a config name
        // with its location) is one source.
        let mut sources: std::collections::BTreeMap<String, &str> = Default::default();
        for s in all.iter().filter(|s| filter.matches(s)) {
            sources.entry(s.identity()).or_insert(&s.source);
        }
        if sources.len() > 1 {
            let mut names: Vec<String> = sources.into_values().map(str::to_string).collect();
            names.sort();
            return Err(Error::AmbiguousLatest { sources: names });
        }
    }
    resolve(all, reference, filter)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(id: &str, source: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            id: id.into(),
            source: source.into(),
            source_location: None,
            engine: EngineKind::Sqlite,
            kind: BackupKind::Full,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
            size: 1,
            added: 1,
            metadata: Metadata::default(),
            wal: None,
            hostname: "h".into(),
            program_version: "0".into(),
            files: vec![],
            append_only: false,
            unvouched: false,
        }
    }

    #[test]
    fn resolve_cases() {
        let all = vec![
            sample("aaaaaa11", "a", &[]),
            sample("aaaaaa22", "b", &["pre-migration"]),
            sample("bbbbbb33", "a", &[]),
        ];
        let f = Filter::default();
        assert_eq!(resolve(&all, "latest", &f).unwrap().id, "bbbbbb33");
        assert_eq!(resolve(&all, "LATEST", &f).unwrap().id, "bbbbbb33");
        assert_eq!(resolve(&all, "Latest", &f).unwrap().id, "bbbbbb33");
        assert_eq!(resolve(&all, "aaaaaa2", &f).unwrap().id, "aaaaaa22");
        assert_eq!(resolve(&all, "AAAAAA2", &f).unwrap().id, "aaaaaa22");
        assert!(
            resolve(&all, "aaaaaa", &f)
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
        assert!(resolve(&all, "aaa", &f).is_err());
        assert!(
            resolve(&all, "cccccc", &f)
                .unwrap_err()
                .to_string()
                .contains("no snapshot")
        );
        let tagged = Filter {
            source: None,
            tags: vec!["pre-migration".into()],
        };
        assert_eq!(resolve(&all, "latest", &tagged).unwrap().id, "aaaaaa22");
        let src = Filter {
            source: Some(SourceMatch::new("a")),
            tags: vec![],
        };
        assert_eq!(resolve(&all, "aaaaaa", &src).unwrap().id, "aaaaaa11");
        assert_eq!(resolve(&all, "LATEST", &src).unwrap().id, "bbbbbb33");
        // latest across sources: refused for a restore, with the sources named
        let e = resolve_one_source(&all, "latest", &f).unwrap_err();
        assert!(
            matches!(e, Error::AmbiguousLatest { ref sources } if sources.len() == 2),
            "{e}"
        );
        assert_eq!(
            resolve_one_source(&all, "latest", &src).unwrap().id,
            "bbbbbb33"
        );
        assert_eq!(
            resolve_one_source(&all, "aaaaaa22", &f).unwrap().id,
            "aaaaaa22"
        );
        assert!(
            resolve(&[], "latest", &f)
                .unwrap_err()
                .to_string()
                .contains("no snapshots")
        );
    }

    #[test]
    fn manifest_round_trip_and_contract_fields() {
        let mut s = sample("ab".repeat(32).as_str(), "hotel", &["x"]);
        s.metadata.row_counts.insert("bookings".into(), 5);
        s.metadata.extra.insert("page_size".into(), 4096.into());
        let back = Snapshot::decode(&s.id, &s.encode()).unwrap();
        assert_eq!(back, s);
        let v = serde_json::to_value(s.summary()).unwrap();
        for k in [
            "id",
            "short_id",
            "source",
            "engine",
            "kind",
            "tags",
            "started_at",
            "finished_at",
            "size",
            "added",
            "metadata",
        ] {
            assert!(v.get(k).is_some(), "{k} missing");
        }
        assert_eq!(v["short_id"], "abababab");
        assert_eq!(v["metadata"]["row_counts"]["bookings"], 5);
        assert_eq!(v["metadata"]["page_size"], 4096);
        assert_eq!(v["started_at"], "1970-01-01T00:00:00Z");
        assert!(Snapshot::decode("x", b"{not json").is_err());
        assert_eq!(
            (v["engine"].as_str(), v["kind"].as_str()),
            (Some("sqlite"), Some("full"))
        );
    }

    #[test]
    fn unknown_engine_and_kind_names_survive_a_round_trip() {
        let mut s = sample("cd".repeat(32).as_str(), "hotel", &[]);
        s.engine = EngineKind::from("mysql");
        s.kind = BackupKind::from("binlog");
        let back = Snapshot::decode(&s.id, &s.encode()).unwrap();
        assert_eq!(back.engine, EngineKind::Other("mysql".into()));
        assert_eq!(back.kind.as_str(), "binlog");
        assert_eq!(BackupKind::from("physical"), BackupKind::Physical);
    }
}

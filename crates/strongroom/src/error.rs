//! The library's one error type.
//!
//! Every variant carries what a person needs to act: the object, file, snapshot or setting at
//! fault, and where it helps, what to do next. Messages are single sentences without secrets
//! (ARCHITECTURE invariant 7): passwords and keys never reach a `Display` here.

use crate::crypto::ChunkId;
use crate::repository::index::PackId;
use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strongroom, phrased for the person running it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository exists at the given location.
    #[error(
        "no repository at {0}: create one with `strongroom init` or check --repo / STRONGROOM_REPO"
    )]
    NoRepository(String),
    /// `init` found a repository already.
    #[error("a repository already exists at {0}; refusing to overwrite it")]
    RepositoryExists(String),
    /// The repository was written by a newer strongroom.
    #[error(
        "repository format version {found} is newer than this strongroom understands (up to {supported}); upgrade strongroom"
    )]
    UnsupportedVersion {
        /// Version found in the repository config.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// No key slot opened with the password given.
    #[error("wrong password: none of the repository's {slots} key slot(s) opens with it")]
    WrongPassword {
        /// How many key slots were tried.
        slots: usize,
    },
    /// An encrypted repository was opened without a password.
    #[error(
        "the repository is encrypted and no password was given: set STRONGROOM_PASSWORD, --password-file or password_command"
    )]
    PasswordMissing,
    /// A stored object failed authentication or its checksum.
    #[error("{object} is damaged: {detail}")]
    Corrupt {
        /// Repository path of the object, e.g. `data/ab/ab12…`.
        object: String,
        /// What exactly failed.
        detail: String,
    },
    /// Data inside a pack failed authentication or its checks. Structured, so the snapshots
    /// it affects can be found without parsing the message.
    #[error("{location} is damaged: {detail}", location = damage_location(.pack, .segment))]
    DamagedData {
        /// The pack.
        pack: PackId,
        /// Offset of the damaged segment, or `None` when the whole pack is in doubt.
        segment: Option<u32>,
        /// What exactly failed.
        detail: String,
    },
    /// A snapshot needs a chunk that no index lists.
    #[error("chunk {0} is missing from the repository (no index entry; run `strongroom check`)")]
    MissingChunk(ChunkId),
    /// A stored object that something references is missing.
    #[error("{object} is missing from the repository{context}")]
    Missing {
        /// Repository path of the missing object.
        object: String,
        /// Extra context such as the referencing snapshot, with a leading separator.
        context: String,
    },
    /// The storage backend failed.
    #[error("storage error on {location}: {detail}")]
    Storage {
        /// Repository URL or object path.
        location: String,
        /// Backend message.
        detail: String,
    },
    /// A local file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing the restored database to", …).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot reference matched nothing or more than one snapshot.
    #[error("{0}")]
    SnapshotRef(String),
    /// A source could not be read or is not what it claims to be.
    #[error("{0}")]
    Source(String),
    /// A restore target is not acceptable.
    #[error("{0}")]
    Target(String),
    /// SQLite reported an error.
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        /// Database file involved.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// A repository URL could not be understood.
    #[error("invalid repository URL {url:?}: {detail}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it is refused.
        detail: String,
    },
    /// A verification or check found problems (the report says which).
    #[error("{0}")]
    Failed(String),
}

fn damage_location(pack: &PackId, segment: &Option<u32>) -> String {
    match segment {
        Some(offset) => format!("{} (segment at byte {offset})", pack.object_key()),
        None => pack.object_key(),
    }
}

impl Error {
    /// Shorthand for an [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Sqlite`].
    pub fn sqlite(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            path: path.into(),
            source,
        }
    }

    /// Whether this error says stored data is damaged or missing (as opposed to, say, the
    /// store being unreachable).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. }
                | Error::Missing { .. }
                | Error::DamagedData { .. }
                | Error::MissingChunk(_)
        )
    }

    /// Shorthand for an [`Error::Corrupt`].
    pub fn corrupt(object: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            detail: detail.into(),
        }
    }
}

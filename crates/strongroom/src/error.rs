//! The library's one error type.
//!
//! Every variant carries what a person needs to act: the object, file, snapshot or setting at
//! fault, and where it helps, what to do next. Messages are single sentences without secrets
//! (docs/ARCHITECTURE.md, "Invariants": secrets never appear): passwords and keys never reach
//! a `Display` here. Messages speak of what is wrong, never of command-line flags: the
//! command-line crate adds the flag that fixes it.
//!
//! Every error also has an [`ErrorKind`]: a stable machine-readable name (printed in `--json`
//! failures) and whether trying again can help, so a scheduler retries an unreachable store
//! and a monitor does not retry a wrong password. Must not depend on any module above the
//! ids, the repository layout and [`crate::device`] (which device a full path is on).

use crate::device::Device;
use crate::id::{ChunkId, PackId};
use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strongroom, phrased for the person running it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository exists at the given location (the URL or path as given). Every use
    /// but creating one expects it to exist, so the location may be mistyped: a message
    /// that advised creating one would start a production archive in an empty repository.
    #[error("no strongroom repository at {0}")]
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
    /// No repository location was given anywhere.
    #[error("no repository given")]
    NoRepositoryGiven,
    /// An encrypted repository was opened without a password.
    #[error("the repository is encrypted and no password was given")]
    PasswordMissing,
    /// The other repository of a copy (the source of `init --copy-of`, the destination of
    /// `copy`) is encrypted and nothing gave its password.
    #[error("the repository at {url} is encrypted and no password was given for it")]
    NoPasswordFor {
        /// The repository as given.
        url: String,
        /// The variable its password is read from (`STRONGROOM_TO_PASSWORD`, …).
        variable: &'static str,
    },
    /// `copy` was given a destination that does not share the source's keys: it was not
    /// made with `init --copy-of` from this repository (or another of its family).
    #[error(
        "the repository at {destination} is not a copy of the repository at {source_url} (it has keys of its own, so it cannot take its packs as they are)"
    )]
    NotACopy {
        /// The destination as given.
        destination: String,
        /// The source as given.
        source_url: String,
    },
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
        /// Whether the failure may pass (network, throttling) rather than stay (no bucket,
        /// access denied).
        transient: bool,
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
    /// The device ran out of space (or a quota or file-size limit was reached).
    #[error(
        "no space left{on} {action} {path}: free space there (or choose another place) and retry; what was being written was removed",
        on = on_device(.device),
        path = .path.display()
    )]
    NoSpace {
        /// What was being done.
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The filesystem that filled up, when the system says (boxed: errors stay small).
        device: Option<Box<Device>>,
    },
    /// A backup stopped on a full device: what to free, what was cleaned and what reclaims
    /// the rest ([`Error::NoSpace`] as a backup phrases it).
    #[error(
        "no space left{on} {action} {path}: the backup stopped and its partial file was removed; free space there (or choose another place) and retry, and run `strongroom prune` to reclaim what the backup had stored (packs no snapshot uses)",
        on = on_device(.device),
        path = .path.display()
    )]
    BackupNoSpace {
        /// What was being done.
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The filesystem that filled up, when the system says (boxed: errors stay small).
        device: Option<Box<Device>>,
    },
    /// The consumer of restored data stopped taking it (a restore program that exited, a
    /// closed pipe), as opposed to the repository failing to give it.
    #[error("streaming the restored data to {file}: {source}")]
    Output {
        /// The stored file being streamed.
        file: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A local repository path names a plain file.
    #[error("{} is a file, not a repository directory", .0.display())]
    RepositoryIsFile(PathBuf),
    /// Object lock was asked of a store that cannot lock objects.
    #[error("{url} cannot lock objects: {reason}")]
    NoObjectLock {
        /// The repository URL.
        url: String,
        /// Why not, and what would.
        reason: String,
    },
    /// A new password is empty.
    #[error("the new password is empty")]
    EmptyPassword,
    /// No key slot matches a reference.
    #[error("{0}")]
    NoKeySlot(String),
    /// A WAL file is not in the archive (the repository was read; `wal fetch` exits 1).
    #[error("WAL file {name} of cluster {cluster} is not in the archive")]
    NotArchived {
        /// The file's name.
        name: String,
        /// The cluster's system identifier.
        cluster: String,
    },
    /// A WAL file name is archived already with other content; the archived copy is kept.
    #[error(
        "WAL file {name} of cluster {cluster} is archived already with different content; the archived copy was kept. Two clusters may share one system identifier (a copied data directory), or the server's pg_wal was altered: look at both before archiving further"
    )]
    WalConflict {
        /// The file's name.
        name: String,
        /// The cluster's system identifier.
        cluster: String,
    },
    /// The archive lacks WAL a recovery needs.
    #[error("{0}")]
    WalGap(String),
    /// No timeline of the archive can take a recovery where it was asked to go, or the
    /// timeline asked for does not pass through the snapshot.
    #[error("{0}")]
    Timeline(String),
    /// A data directory or server is not the cluster a source or snapshot belongs to.
    #[error("{0}")]
    WrongCluster(String),
    /// Removing a key slot would leave no slot that opens the repository.
    #[error(
        "key slot {0} is the last readable one; removing it would leave no password that opens the repository"
    )]
    LastKeySlot(String),
    /// No snapshot matches a reference.
    #[error("{0}")]
    NoSnapshot(String),
    /// `latest` was asked for under a source or tags that no snapshot has.
    #[error("no snapshot matches the source and tags given")]
    NoMatchingSnapshot,
    /// `latest` was asked for a restore or verify without a source, and the repository holds
    /// snapshots of several.
    #[error(
        "`latest` is ambiguous here: the repository holds snapshots of {} sources ({})",
        sources.len(),
        sources.join(", ")
    )]
    AmbiguousLatest {
        /// The sources, as recorded.
        sources: Vec<String>,
    },
    /// A snapshot or key slot reference is malformed or ambiguous.
    #[error("{0}")]
    BadReference(String),
    /// A source could not be read or is not what it claims to be.
    #[error("{0}")]
    Source(String),
    /// A restore target is not acceptable.
    #[error("{0}")]
    Target(String),
    /// A restore target holds data and replacing it was not asked for.
    #[error(
        "{target}; replacing it must be asked for (the old {old} is kept aside until the restore has succeeded)"
    )]
    TargetNotEmpty {
        /// What the target is and what it holds.
        target: String,
        /// What the old data is called ("file", "database").
        old: &'static str,
    },
    /// The restored data is in place, but something after the swap failed; the old data is
    /// kept so nothing is lost.
    #[error(
        "the restore is in place at {target}, but {trouble}{kept}",
        kept = old.as_ref().map(|o| format!("; the old data is kept as {o}")).unwrap_or_default()
    )]
    InPlace {
        /// The target, as people name it.
        target: String,
        /// What failed after the swap.
        trouble: String,
        /// Where the old data is kept, when there was any.
        old: Option<String>,
        /// The kind of the failure after the swap.
        cause: ErrorKind,
    },
    /// A snapshot was given a target of the wrong sort (a file for a database, …), or none
    /// (`crate::engine::misfit`, the one place this refusal is made).
    #[error("snapshot {snapshot} is a {engine} {kind} snapshot: it restores into {needs}")]
    TargetMismatch {
        /// Short id.
        snapshot: String,
        /// The engine that took it, as recorded ("sqlite", "postgres").
        engine: String,
        /// Its kind, as recorded ("full", "logical", "physical").
        kind: String,
        /// The sort of target that was given; `None` when none was.
        given: Option<TargetSort>,
        /// The sort of target it needs.
        needs: TargetSort,
    },
    /// A backup kind was asked of an engine that does not take it.
    #[error("a {kind} backup does not apply to {engine} source {source_name} (kinds: {kinds})")]
    KindMismatch {
        /// The kind asked for.
        kind: String,
        /// The source's engine.
        engine: String,
        /// The source.
        source_name: String,
        /// The kinds it takes.
        kinds: String,
    },
    /// Something this build cannot do for a snapshot or repository a newer one wrote.
    #[error("{0}")]
    Unsupported(String),
    /// A hook from the configuration failed or could not start.
    #[error("{hook} hook {detail}")]
    Hook {
        /// `before_restore`, `after_restore`, …
        hook: String,
        /// How it failed.
        detail: String,
    },
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
    /// A file or directory whose contents decide what strongroom does is in another
    /// user's hands (owned by them, or writable by them), so it is not used.
    #[error("refusing {what} {}: {problem}; {fix}", .path.display())]
    Untrusted {
        /// What the file or directory is for.
        what: Obeyed,
        /// The file or directory refused (a symbolic link's target, when a link led to it).
        path: PathBuf,
        /// Who controls it, in words: its owner or its mode.
        problem: String,
        /// What to do about it.
        fix: String,
    },
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
    /// The demo's directory holds something the demo did not make.
    #[error("{0} exists and was not made by the demo; choose another directory")]
    DemoDirTaken(PathBuf),
    /// A pipeline thread stopped because another part of it failed.
    #[error("{0}")]
    Internal(String),
    /// Another job holds a lock this one needs (another prune, say).
    #[error("{0}")]
    Locked(String),
    /// The repository was opened with an append-only key, which cannot do this (the text
    /// says what, as a verb phrase: "restore a snapshot").
    #[error(
        "the repository was opened with an append-only key, which cannot {0}: use a full key (the password made by `init`, or one added by `key add` without --append-only)"
    )]
    AppendOnly(String),
    /// An export's output file exists and replacing it was not asked for.
    #[error(
        "{} already exists; replacing it must be asked for (it stays as it is until the new export is complete)",
        .0.display()
    )]
    ExportExists(PathBuf),
    /// A key to encrypt an export to is not usable: not an age X25519 recipient, or one
    /// GnuPG cannot encrypt to (not in its keyring, not trusted, expired).
    #[error("{0}")]
    Recipient(String),
    /// Continuous capture cannot run as asked (a PostgreSQL source given to `replicate`, a
    /// SQLite database not in WAL mode).
    #[error("{0}")]
    Continuous(String),
}

/// The sorts of place a snapshot restores into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSort {
    /// A file path (SQLite).
    File,
    /// A database on a server (PostgreSQL logical).
    Database,
    /// A data directory (PostgreSQL physical).
    DataDirectory,
}

impl std::fmt::Display for TargetSort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetSort::File => "a file path",
            TargetSort::Database => "a database",
            TargetSort::DataDirectory => "a data directory",
        })
    }
}

/// What a file or directory strongroom obeys is for, in [`Error::Untrusted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obeyed {
    /// The configuration file (it names commands strongroom runs).
    ConfigFile,
    /// A file holding a password for a new key slot or a new repository.
    NewPasswordFile,
    /// The local state directory or a directory in it.
    StateDirectory,
    /// The local cache directory or a directory in it (the index and journal caches: what a
    /// backup believes the repository holds).
    Cache,
}

impl std::fmt::Display for Obeyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Obeyed::ConfigFile => "the config file",
            Obeyed::NewPasswordFile => "the new password file",
            Obeyed::StateDirectory => "the state directory",
            Obeyed::Cache => "the cache directory",
        })
    }
}

/// What sort of failure an error is: a stable name for scripts and whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The object store could not be reached or refused the request.
    StorageUnreachable,
    /// No key slot opens with the password.
    WrongPassword,
    /// Stored data is damaged or missing.
    DamagedData,
    /// The repository or snapshot asked for does not exist.
    NotFound,
    /// Something to be created exists already.
    AlreadyExists,
    /// The input (config, URL, reference, arguments) is not acceptable.
    BadInput,
    /// The repository or snapshot needs a newer strongroom.
    Unsupported,
    /// The source database could not be read.
    SourceFailed,
    /// The restore target refused or is not acceptable; it was not changed.
    TargetRefused,
    /// A local file operation failed.
    LocalIo,
    /// A configured hook failed.
    HookFailed,
    /// A verification, check or row-count comparison failed.
    CheckFailed,
    /// An internal step stopped (another error is the cause).
    Internal,
    /// The job's process ended before it could say how the job went (journal records only).
    Interrupted,
    /// Another job holds a lock this one needs; running it again later may succeed.
    Locked,
    /// Flags the command cannot take together, or a flag value it cannot read (exit 2).
    Usage,
    /// The repository was opened with an append-only key, which may only add backups and
    /// WAL and list its own snapshots.
    AppendOnly,
}

impl ErrorKind {
    /// The stable name printed in `--json` failures (`storage_unreachable`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::StorageUnreachable => "storage_unreachable",
            ErrorKind::WrongPassword => "wrong_password",
            ErrorKind::DamagedData => "damaged_data",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::BadInput => "bad_input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::SourceFailed => "source_failed",
            ErrorKind::TargetRefused => "target_refused",
            ErrorKind::LocalIo => "local_io",
            ErrorKind::HookFailed => "hook_failed",
            ErrorKind::CheckFailed => "check_failed",
            ErrorKind::Internal => "internal",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Locked => "locked",
            ErrorKind::Usage => "usage",
            ErrorKind::AppendOnly => "append_only",
        }
    }

    /// Every kind.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::StorageUnreachable,
        ErrorKind::WrongPassword,
        ErrorKind::DamagedData,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::BadInput,
        ErrorKind::Unsupported,
        ErrorKind::SourceFailed,
        ErrorKind::TargetRefused,
        ErrorKind::LocalIo,
        ErrorKind::HookFailed,
        ErrorKind::CheckFailed,
        ErrorKind::Internal,
        ErrorKind::Interrupted,
        ErrorKind::Locked,
        ErrorKind::Usage,
        ErrorKind::AppendOnly,
    ];

    /// The kind a [`ErrorKind::name`] names.
    pub fn parse(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether an error of this kind is an operator's mistake rather than a job's failure:
    /// a request that could not apply as given (`usage`: flags that do not go together;
    /// `bad_input`: config, an ambiguous or wrong reference; `append_only`: a host's key asked
    /// to read or delete) or a restore target that refused (`target_refused`: not empty
    /// without `--force`, a server running on it, in use, or not accepting the data; it was
    /// left as it was). Nothing of the source or the repository is at fault, and the person
    /// who asked reads the sentence: such a failure is neither journaled as a failed job nor
    /// alerted, and does not count against a source's health (except for jobs nobody
    /// attends: `repository::journal::is_job_failure`). The one place the kinds are chosen.
    pub fn is_operator_error(self) -> bool {
        matches!(
            self,
            ErrorKind::Usage
                | ErrorKind::BadInput
                | ErrorKind::TargetRefused
                | ErrorKind::AppendOnly
        )
    }
}

/// " on /srv (ext4, 0 B of 2.0 GiB free)", or nothing when the device is unknown.
fn on_device(device: &Option<Box<Device>>) -> String {
    device
        .as_ref()
        .map(|d| format!(" on {d}"))
        .unwrap_or_default()
}

fn damage_location(pack: &PackId, segment: &Option<u32>) -> String {
    match segment {
        Some(offset) => format!("{} (segment at byte {offset})", pack.object_key()),
        None => pack.object_key(),
    }
}

impl Error {
    /// Shorthand for an [`Error::Io`], or [`Error::NoSpace`] when the device is full.
    /// A full device is also recognised under the context the `tempfile` crate adds ("at
    /// path …/.tmp-…"), which hides the OS error number but keeps its kind.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let full = matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT)
        ) || matches!(
            source.kind(),
            K::StorageFull | K::FileTooLarge | K::QuotaExceeded
        );
        if full {
            let path = path.into();
            return Error::NoSpace {
                action,
                device: crate::device::of(&path).map(Box::new),
                path,
            };
        }
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

    /// What sort of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoRepository(_)
            | Error::NoSnapshot(_)
            | Error::NoMatchingSnapshot
            | Error::NoKeySlot(_)
            | Error::NotArchived { .. } => ErrorKind::NotFound,
            Error::WalConflict { .. } => ErrorKind::AlreadyExists,
            Error::WalGap(_) => ErrorKind::DamagedData,
            Error::WrongCluster(_) | Error::Timeline(_) => ErrorKind::BadInput,
            Error::RepositoryExists(_) => ErrorKind::AlreadyExists,
            Error::UnsupportedVersion { .. }
            | Error::Unsupported(_)
            | Error::NoObjectLock { .. } => ErrorKind::Unsupported,
            Error::WrongPassword { .. } => ErrorKind::WrongPassword,
            Error::Corrupt { .. }
            | Error::DamagedData { .. }
            | Error::MissingChunk(_)
            | Error::Missing { .. } => ErrorKind::DamagedData,
            Error::Storage { .. } => ErrorKind::StorageUnreachable,
            Error::Io { .. } | Error::NoSpace { .. } | Error::BackupNoSpace { .. } => {
                ErrorKind::LocalIo
            }
            Error::Output { .. }
            | Error::Target(_)
            | Error::TargetNotEmpty { .. }
            | Error::ExportExists(_) => ErrorKind::TargetRefused,
            Error::Source(_) | Error::Sqlite { .. } => ErrorKind::SourceFailed,
            Error::PasswordMissing
            | Error::NoPasswordFor { .. }
            | Error::NotACopy { .. }
            | Error::NoRepositoryGiven
            | Error::BadReference(_)
            | Error::AmbiguousLatest { .. }
            | Error::Config(_)
            | Error::Untrusted { .. }
            | Error::BadUrl { .. }
            | Error::TargetMismatch { .. }
            | Error::KindMismatch { .. }
            | Error::DemoDirTaken(_)
            | Error::RepositoryIsFile(_)
            | Error::EmptyPassword
            | Error::LastKeySlot(_)
            | Error::Recipient(_)
            | Error::Continuous(_) => ErrorKind::BadInput,
            Error::Hook { .. } => ErrorKind::HookFailed,
            Error::InPlace { cause, .. } => *cause,
            Error::Failed(_) => ErrorKind::CheckFailed,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Locked(_) => ErrorKind::Locked,
            Error::AppendOnly(_) => ErrorKind::AppendOnly,
        }
    }

    /// Whether running the same job again, unchanged, may succeed: the store was unreachable
    /// or throttled. Damage, a wrong password or bad input stay what they are.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Storage { transient, .. } => *transient,
            Error::Locked(_) => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Whether this error says stored data is damaged or missing (as opposed to, say, the
    /// store being unreachable).
    pub fn is_damage(&self) -> bool {
        self.kind() == ErrorKind::DamagedData
    }

    /// Shorthand for an [`Error::Corrupt`].
    pub fn corrupt(object: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_stable_names_and_retry_advice() {
        let unreachable = Error::Storage {
            location: "s3://b/config".into(),
            detail: "connection refused".into(),
            transient: true,
        };
        assert_eq!(unreachable.kind().name(), "storage_unreachable");
        assert!(unreachable.is_retryable());
        let denied = Error::Storage {
            location: "s3://b/config".into(),
            detail: "access denied".into(),
            transient: false,
        };
        assert!(!denied.is_retryable());
        assert_eq!(
            Error::WrongPassword { slots: 1 }.kind().name(),
            "wrong_password"
        );
        assert!(!Error::WrongPassword { slots: 1 }.is_retryable());
        let damaged = Error::corrupt("snapshots/ab", "bad tag");
        assert!(damaged.is_damage() && damaged.kind().name() == "damaged_data");
        assert_eq!(Error::Config("x".into()).kind().name(), "bad_input");
        assert_eq!(Error::Source("x".into()).kind().name(), "source_failed");
        assert_eq!(
            serde_json::to_value(ErrorKind::TargetRefused).unwrap(),
            "target_refused"
        );
    }

    #[test]
    fn operator_errors_are_refusals_not_failures() {
        let refused = Error::TargetNotEmpty {
            target: "hotel.db already exists".into(),
            old: "file",
        };
        assert!(refused.kind().is_operator_error());
        assert!(
            Error::Target("a server is running on it".into())
                .kind()
                .is_operator_error()
        );
        assert!(Error::Config("x".into()).kind().is_operator_error());
        for failure in [
            Error::Source("x".into()),
            Error::Internal("x".into()),
            Error::corrupt("snapshots/ab", "bad tag"),
        ] {
            assert!(!failure.kind().is_operator_error(), "{failure}");
        }
    }
}

//! The export job: a snapshot written out as its database's own artifact, for a way out
//! without strongroom (a SQLite file; a `pg_dump` custom-format archive and the globals as
//! SQL beside it; a tar of a PostgreSQL data directory that starts by itself), optionally
//! encrypted to an age or OpenPGP recipient.
//!
//! Owns, in this order: which snapshot the reference means (`latest` never crosses
//! sources, and takes only the kind asked for when one is); the files the engine announces (`Engine::export_files`) and the refusal of a
//! path that exists unless `force`, or that is a directory, before anything is read; each
//! file written into a temporary file beside its final name (`.NAME.strongroom-export-*`,
//! mode 0600, removed on failure and on SIGINT/SIGTERM/SIGHUP, and locked while written, so
//! that the next export to the same path removes one a SIGKILL left), through the recipient's
//! encryption when one is given (`crate::recipient`: with a recipient no plaintext byte
//! reaches the disk, not even in the temporary file); and only once every file is complete
//! and synced, each renamed over its final name and the directory synced. A file at the path
//! is therefore always whole: the one that was there stays until the new one is complete,
//! and a failure or a kill leaves it untouched (two files, a dump and its globals, are
//! renamed one after the other: a crash between the renames leaves a new dump beside the
//! previous globals). Also the job's journal record, marked `side`: an export is a copy for
//! someone else and says nothing of the source's health. Must not know what an engine's
//! files hold (`Engine::export`) and must not print (the outcome says what was written).

use crate::engine::export::{ExportFile, ExportSink};
use crate::engine::{self};
use crate::error::{Error, Result};
use crate::interrupt;
use crate::progress::Progress;
use crate::recipient::{Recipient, Sealed, seal};
use crate::repository::Repository;
use crate::repository::journal::JournalRecord;
use crate::repository::snapshot::{BackupKind, Filter, Snapshot, resolve_one_source};
use serde::Serialize;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What an export is asked to do.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// The snapshot: an id, a unique prefix of one, or `latest`.
    pub reference: String,
    /// Which sources and tags `reference` is taken among.
    pub filter: Filter,
    /// Only snapshots of this kind (a PostgreSQL source has logical and physical ones, and
    /// `latest` would otherwise take whichever is newer).
    pub kind: Option<BackupKind>,
    /// The file to write; companions get a suffix (`FILE.globals.sql`).
    pub to: PathBuf,
    /// Encrypt every file to this key.
    pub recipient: Option<Recipient>,
    /// Replace files that exist.
    pub force: bool,
}

/// One file an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Exported {
    /// Where it is.
    pub path: PathBuf,
    /// What it holds.
    pub what: &'static str,
    /// Its size on disk (after encryption).
    pub bytes: u64,
    /// The bytes of data it holds (before encryption).
    pub data_bytes: u64,
    /// Whether it replaced a file that was there.
    pub replaced: bool,
}

/// What an export did.
#[derive(Clone, Debug, Serialize)]
pub struct ExportOutcome {
    /// The snapshot exported.
    pub snapshot: Snapshot,
    /// The files written, in order.
    pub files: Vec<Exported>,
    /// The key they are encrypted to (`age age1…`, `gpg ID`); `None`: plaintext.
    pub recipient: Option<String>,
}

/// Exports the snapshot `request` names (see the module docs) and records the job.
pub fn run(
    repo: &Repository,
    request: ExportRequest,
    progress: &dyn Progress,
) -> Result<ExportOutcome> {
    repo.require_full("export a snapshot")?;
    let snap = repo.resolve_with(&request.reference, |all| {
        let pool: Vec<Snapshot> = all
            .iter()
            .filter(|s| request.kind.as_ref().is_none_or(|k| &s.kind == k))
            .cloned()
            .collect();
        resolve_one_source(&pool, &request.reference, &request.filter).cloned()
    })?;
    let engine = engine::for_snapshot(&snap)?;
    let announced = engine.export_files(&snap)?;
    let planned = plan(&request.to, &announced, request.force)?;
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("export", Some(&snap.source), Some(&snap.id), started_at);
    let result = (|| {
        for p in &planned {
            remove_stale(&p.path);
        }
        let _lock = repo.read_lock("export");
        let index = repo.load_index()?;
        let mut outputs = Outputs {
            planned,
            recipient: request.recipient.as_ref(),
            done: Vec::new(),
            current: None,
        };
        match engine.export(repo, &index, &snap, &mut outputs, progress) {
            // The file's own error (a full disk, gpg's exit) says more than the stream's.
            Err(e) => Err(outputs.failure().unwrap_or(e)),
            Ok(()) => outputs.commit(),
        }
    })();
    let mut rec = JournalRecord::new("export", started_at);
    rec.source = Some(snap.source.clone());
    rec.snapshot = Some(snap.id.clone());
    rec.side = true;
    match &result {
        Ok(files) => rec.size = files.iter().map(|f| f.data_bytes).sum(),
        Err(e) => rec.failed(e),
    }
    running.ended(repo, &rec);
    Ok(ExportOutcome {
        snapshot: snap,
        files: result?,
        recipient: request.recipient.as_ref().map(Recipient::describe),
    })
}

/// A file to write: where, what, and whether one is there now.
struct Planned {
    suffix: &'static str,
    what: &'static str,
    path: PathBuf,
    exists: bool,
}

/// The paths of `announced` for `to`, refused before anything is read when one is a
/// directory, or exists and `force` was not given, or its directory does not exist.
fn plan(to: &Path, announced: &[ExportFile], force: bool) -> Result<Vec<Planned>> {
    if to.file_name().is_none() || to.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::Target(format!(
            "{} is not a file path; give the path of the file to write",
            to.display()
        )));
    }
    let mut out = Vec::new();
    for f in announced {
        let mut name = OsString::from(to.as_os_str());
        name.push(f.suffix);
        let path = PathBuf::from(name);
        let exists = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                return Err(Error::Target(format!(
                    "{} is a directory; give the path of the file to write",
                    path.display()
                )));
            }
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("looking at", &path, e)),
        };
        if exists && !force {
            return Err(Error::ExportExists(path));
        }
        let dir = parent_of(&path);
        if !dir.is_dir() {
            return Err(Error::Target(format!(
                "directory {} does not exist; create it first",
                dir.display()
            )));
        }
        out.push(Planned {
            suffix: f.suffix,
            what: f.what,
            path,
            exists,
        });
    }
    Ok(out)
}

/// The directory a path is in (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The name prefix of the temporary files of an export to `path`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.strongroom-export-")
}

/// Removes the temporary files beside `path` that an export killed before its cleanup could
/// run (SIGKILL, a crash) left behind: regular files named by [`temp_prefix`] that no live
/// export holds locked, and older than a minute (one just made may not be locked yet). They
/// may hold the data in the clear.
fn remove_stale(path: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(parent_of(path)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let young = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < std::time::Duration::from_secs(60));
        if !meta.is_file() || young {
            continue;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(e.path())
        else {
            continue;
        };
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            tracing::warn!(file = %e.path().display(), "removing what an interrupted export left");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The file being written: the temporary file, and what is written into it.
struct Current {
    at: usize,
    tmp: tempfile::TempPath,
    guard: interrupt::Guard,
    writer: Counting,
}

/// A temporary file complete and synced, waiting to be renamed into place.
struct Done {
    at: usize,
    tmp: tempfile::TempPath,
    guard: interrupt::Guard,
    bytes: u64,
    data_bytes: u64,
}

/// The export job's [`ExportSink`]: temporary files beside the final ones, encrypted when
/// asked, renamed into place by [`Outputs::commit`]; dropped before that, they are removed.
struct Outputs<'r> {
    planned: Vec<Planned>,
    recipient: Option<&'r Recipient>,
    done: Vec<Done>,
    current: Option<Current>,
}

impl Outputs<'_> {
    /// Completes the file being written: the encryption's end, then fsync.
    fn finish_current(&mut self) -> Result<()> {
        let Some(c) = self.current.take() else {
            return Ok(());
        };
        let path = &self.planned[c.at].path;
        let data_bytes = c.writer.bytes;
        let file = c.writer.inner.finish()?;
        file.sync_all().map_err(|e| Error::io("syncing", path, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| Error::io("reading", path, e))?
            .len();
        self.done.push(Done {
            at: c.at,
            tmp: c.tmp,
            guard: c.guard,
            bytes,
            data_bytes,
        });
        Ok(())
    }

    /// The error the file being written met, when writing it failed.
    fn failure(&mut self) -> Option<Error> {
        self.current.as_mut().and_then(|c| c.writer.failed.take())
    }

    /// Completes the last file and renames every file into place, in order; then syncs
    /// their directory.
    fn commit(mut self) -> Result<Vec<Exported>> {
        self.finish_current()?;
        crate::fault::pause("export-before-rename");
        let mut out = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for d in self.done.drain(..) {
            let p = &self.planned[d.at];
            interrupt::critical(|| d.tmp.persist(&p.path).map(|()| d.guard.disarm()))
                .map_err(|e| Error::io("moving the export into place at", &p.path, e.error))?;
            let dir = parent_of(&p.path);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            out.push(Exported {
                path: p.path.clone(),
                what: p.what,
                bytes: d.bytes,
                data_bytes: d.data_bytes,
                replaced: p.exists,
            });
        }
        for dir in dirs {
            crate::storage::sync_dir(&dir)?;
        }
        Ok(out)
    }
}

impl ExportSink for Outputs<'_> {
    fn file(&mut self, suffix: &str) -> Result<&mut dyn Write> {
        self.finish_current()?;
        let at = self
            .planned
            .iter()
            .position(|p| p.suffix == suffix)
            .filter(|at| !self.done.iter().any(|d| d.at == *at))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "the export asked for a file ({suffix:?}) it did not announce"
                ))
            })?;
        let path = &self.planned[at].path;
        // 0600, in the final file's directory (so the rename stays on one filesystem).
        let (tmp, guard) = interrupt::temp_file(
            &parent_of(path),
            &temp_prefix(path),
            ".tmp",
            "the partly written export",
        )?;
        let (file, tmp): (File, tempfile::TempPath) = tmp.into_parts();
        // Held while it exists (gpg's copy of the descriptor shares it): a later export
        // tells a live one from one a SIGKILL left (`remove_stale`).
        let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        let inner = seal(self.recipient, file, path)?;
        let current = self.current.insert(Current {
            at,
            tmp,
            guard,
            writer: Counting {
                inner,
                bytes: 0,
                failed: None,
                path: path.clone(),
            },
        });
        Ok(&mut current.writer)
    }
}

/// Counts the data written and keeps the first error in the file's own words.
struct Counting {
    inner: Sealed,
    bytes: u64,
    failed: Option<Error>,
    path: PathBuf,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                let again = std::io::Error::new(e.kind(), e.to_string());
                self.failed
                    .get_or_insert_with(|| Error::io("writing", &self.path, e));
                Err(again)
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &[ExportFile] = &[
        ExportFile {
            suffix: "",
            what: "dump",
        },
        ExportFile {
            suffix: ".globals.sql",
            what: "globals",
        },
    ];

    #[test]
    fn existing_files_and_directories_are_refused_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("hotel.dump");
        let p = plan(&to, ONE, false).unwrap();
        assert_eq!(p[1].path, dir.path().join("hotel.dump.globals.sql"));
        // The companion alone already exists: refused as well.
        std::fs::write(dir.path().join("hotel.dump.globals.sql"), "x").unwrap();
        let e = plan(&to, ONE, false).err().unwrap();
        assert!(matches!(e, Error::ExportExists(_)), "{e}");
        assert!(e.to_string().contains("hotel.dump.globals.sql"), "{e}");
        assert!(plan(&to, ONE, true).unwrap()[1].exists);
        std::fs::create_dir(&to).unwrap();
        let e = plan(&to, ONE, true).err().unwrap();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = plan(&dir.path().join("nowhere/x.db"), ONE, false)
            .err()
            .unwrap();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}

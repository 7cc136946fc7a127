//! The engines' side of `strongroom export`: a snapshot written out as its engine's own
//! artifact, readable by the database's own tools without strongroom.
//!
//! Owns the seam between an engine and the export job: which files an export of a snapshot
//! writes ([`ExportFile`], announced before anything is read, so the job can refuse an
//! existing file first), the sink the engine writes them into one after the other
//! ([`ExportSink`]: the job's, which encrypts and moves them into place), and copying one
//! stored file into a writer in order, checked ([`copy_file`]). Must not decide where the
//! files go, whether they are encrypted or when they replace what was there (the job's,
//! `crate::jobs::export`), and must not hold a large file whole in memory: files stream
//! through `repository::reader`.

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{FileEntry, Snapshot};
use std::io::Write;

/// One file an export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportFile {
    /// Appended to the path asked for: `""` for the file itself, `".globals.sql"` for one
    /// beside it.
    pub suffix: &'static str,
    /// What it is, for people ("pg_dump custom-format archive").
    pub what: &'static str,
}

/// Where an engine writes an export's files, in the order it announced them.
pub trait ExportSink {
    /// The writer of the file `suffix` names (one of those announced); the previous file is
    /// complete once the next is asked for.
    fn file(&mut self, suffix: &str) -> Result<&mut dyn Write>;
}

/// A writer that hashes and counts what passes through it.
pub struct Hashing<W> {
    /// Where the bytes go.
    pub out: W,
    /// BLAKE3 of everything written.
    pub hash: blake3::Hasher,
    /// Bytes written.
    pub bytes: u64,
}

impl<W: Write> Hashing<W> {
    /// Hashes and counts what goes to `out`.
    pub fn new(out: W) -> Self {
        Hashing {
            out,
            hash: blake3::Hasher::new(),
            bytes: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes the stored file `file` of `snap` to `out`, in order, step by step (memory: the
/// reader's two steps, never the file), then checks its length and, when the snapshot
/// recorded one, its checksum: every chunk is authenticated on the way, and this proves
/// they are the right ones in the right order. Returns the bytes written.
pub fn copy_file(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    file: &FileEntry,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut w = Hashing::new(out);
    reader::stream_file(repo, index, snap, file, &mut w, progress)?;
    check_copy(snap, file, w.bytes, &w.hash)?;
    Ok(w.bytes)
}

/// Refuses a copy of `file` whose length or checksum is not what the snapshot recorded.
pub fn check_copy(
    snap: &Snapshot,
    file: &FileEntry,
    bytes: u64,
    hash: &blake3::Hasher,
) -> Result<()> {
    let want = file.tree.as_ref().and_then(|t| t.checksum.as_deref());
    if bytes != file.size || want.is_some_and(|w| w != hash.finalize().to_hex().as_str()) {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!(
                "file {} reads back as {bytes} bytes that do not match what the snapshot recorded ({} bytes{})",
                file.name,
                file.size,
                if want.is_some() {
                    " and a checksum"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

/// The stored file `name` of `snap`, or the damage its absence is.
pub fn stored<'s>(snap: &'s Snapshot, name: &str) -> Result<&'s FileEntry> {
    snap.files.iter().find(|f| f.name == name).ok_or_else(|| {
        Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!("the snapshot holds no {name}"),
        )
    })
}

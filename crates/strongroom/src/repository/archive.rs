//! The continuous archive: files a database hands over one by one (PostgreSQL WAL), stored
//! under `wal/<cluster>/<timeline>/<name>` beside the snapshots, under the same keys.
//!
//! Owns the archived object's format and the acknowledgement rule (docs/ARCHITECTURE.md,
//! "Invariants": an archived WAL file is acknowledged only when durable): [`Archive::put`]
//! returns only after the store confirmed the write, and a name archived already is compared,
//! not overwritten. Stores such as Garage ignore `If-None-Match`, and sealed bytes differ on
//! every write (random nonces), so the comparison is by a keyed hash of the plaintext kept in
//! the object's header. Must not know what the files mean (names, timelines and segments are
//! the engine's).
//!
//! Object format, sealed as a whole with the object's key as associated data (an object
//! copied under another name fails to open):
//! ```text
//! "SRWAL1" ‖ keyed BLAKE3 of the plaintext (32) ‖ plaintext length (u64 LE) ‖ zstd frame
//! ```

use super::Repository;
use super::layout::ObjectKind;
use crate::error::{Error, Result};
use crate::storage::ObjectInfo;

const MAGIC: &[u8; 6] = b"SRWAL1";
const HEADER: usize = 6 + 32 + 8;

/// What [`Archive::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// The file is now stored (durably).
    Stored {
        /// Bytes written to the store.
        stored: u64,
    },
    /// The same content was archived already; nothing was written.
    AlreadyArchived,
}

/// One archived file as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The timeline folder it is in.
    pub timeline: String,
    /// Its name.
    pub name: String,
    /// Stored (sealed, compressed) size.
    pub stored: u64,
    /// When it was archived, as the store reports it.
    pub modified: Option<jiff::Timestamp>,
}

/// The archive of one cluster in a repository.
pub struct Archive<'r> {
    repo: &'r Repository,
    cluster: String,
}

impl<'r> Archive<'r> {
    /// The archive of `cluster` (a system identifier) in `repo`.
    pub fn new(repo: &'r Repository, cluster: &str) -> Self {
        Archive {
            repo,
            cluster: cluster.to_string(),
        }
    }

    /// The clusters that have archived files in `repo`.
    pub fn clusters(repo: &Repository) -> Result<Vec<String>> {
        let mut out: Vec<String> = repo
            .storage()
            .list(ObjectKind::Wal.folder())?
            .iter()
            .filter_map(|o| {
                let rest = ObjectKind::Wal.name_of(&o.key)?;
                Some(rest.split('/').next()?.to_string())
            })
            .collect();
        out.dedup();
        Ok(out)
    }

    /// The cluster this archive belongs to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The object key of `name` on `timeline`.
    pub fn object_key(&self, timeline: &str, name: &str) -> String {
        ObjectKind::Wal.key(&format!("{}/{timeline}/{name}", self.cluster))
    }

    /// Whether `name` on `timeline` is archived (one existence check, no read).
    pub fn has(&self, timeline: &str, name: &str) -> Result<bool> {
        self.repo.storage().exists(&self.object_key(timeline, name))
    }

    /// Stores `data` as `name` on `timeline`, durably; when the name is archived already,
    /// succeeds if the content is the same and fails with [`Error::WalConflict`] otherwise,
    /// keeping the archived copy.
    pub fn put(&self, timeline: &str, name: &str, data: &[u8], level: i32) -> Result<Put> {
        let key = self.object_key(timeline, name);
        if self.repo.storage().exists(&key)? {
            if self.repo.role() == crate::crypto::KeyRole::AppendOnly {
                // A host cannot read what it archived, so it cannot compare: the archived
                // copy stays, as it would on a conflict, and `check` (full key) compares
                // what is archived against the timeline.
                tracing::info!(
                    "{name} is archived already; this append-only key cannot compare it with the file and keeps the archived copy"
                );
                return Ok(Put::AlreadyArchived);
            }
            let (archived, _) = self.open_header(&key)?;
            if archived == self.repo.key().chunk_id(data).0 {
                return Ok(Put::AlreadyArchived);
            }
            return Err(Error::WalConflict {
                name: name.to_string(),
                cluster: self.cluster.clone(),
            });
        }
        let stored = self.store(&key, data, level)?;
        Ok(Put::Stored { stored })
    }

    /// Stores `data` as `name` on `timeline`, durably, without asking first whether the name
    /// is taken (one request, not two): for names the caller makes unique, such as the
    /// pieces a stream of WAL is stored in, where a name written again holds the same bytes.
    /// Returns the bytes written to the store.
    pub fn put_new(&self, timeline: &str, name: &str, data: &[u8], level: i32) -> Result<u64> {
        self.store(&self.object_key(timeline, name), data, level)
    }

    /// Deletes `name` on `timeline` (a name not there is no error).
    pub fn delete(&self, timeline: &str, name: &str) -> Result<()> {
        match self.repo.storage().delete(&self.object_key(timeline, name)) {
            Ok(()) | Err(Error::Missing { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn store(&self, key: &str, data: &[u8], level: i32) -> Result<u64> {
        // Hashing and compressing are most of a push's work. The file is cut into one part
        // per core, each compressed on its own thread into a zstd frame of its own
        // (concatenated frames are one valid zstd stream); the hash runs beside them.
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let part = data.len().div_ceil(parts).max(1 << 20);
        let (hash, frames) = if data.len() <= part {
            (
                self.repo.key().chunk_id(data).0,
                vec![zstd::bulk::compress(data, level)],
            )
        } else {
            std::thread::scope(|s| {
                let frames: Vec<_> = data
                    .chunks(part)
                    .map(|piece| s.spawn(move || zstd::bulk::compress(piece, level)))
                    .collect();
                let hash = self.repo.key().chunk_id(data).0;
                let frames: Vec<_> = frames
                    .into_iter()
                    .map(|f| f.join().expect("compression thread"))
                    .collect();
                (hash, frames)
            })
        };
        let mut compressed = Vec::new();
        for f in frames {
            compressed.extend_from_slice(
                &f.map_err(|e| Error::Internal(format!("zstd compression failed: {e}")))?,
            );
        }
        let mut body = Vec::with_capacity(HEADER + compressed.len());
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&hash);
        body.extend_from_slice(&(data.len() as u64).to_le_bytes());
        body.extend_from_slice(&compressed);
        drop(compressed);
        let sealed = self.repo.key().seal(key.as_bytes(), &body);
        self.repo.storage().put(key, &sealed)?;
        Ok(sealed.len() as u64)
    }

    /// Reads `name` on `timeline` back, authenticated and checked against its recorded hash;
    /// [`Error::NotArchived`] when it is not there.
    pub fn get(&self, timeline: &str, name: &str) -> Result<Vec<u8>> {
        let key = self.object_key(timeline, name);
        let sealed = match self.repo.storage().get(&key) {
            Ok(s) => s,
            Err(Error::Missing { .. }) => {
                return Err(Error::NotArchived {
                    name: name.to_string(),
                    cluster: self.cluster.clone(),
                });
            }
            Err(e) => return Err(e),
        };
        open(self.repo, &key, &sealed)
    }

    /// Every archived file of this cluster, sorted by timeline folder and name.
    pub fn list(&self) -> Result<Vec<Listed>> {
        self.list_prefix("")
    }

    /// The archived files of this cluster in folder `folder` of `timeline` (names
    /// `<folder>/…`; one listing of that folder only), sorted by name.
    pub fn list_folder(&self, timeline: &str, folder: &str) -> Result<Vec<Listed>> {
        self.list_prefix(&format!("{timeline}/{folder}/"))
    }

    fn list_prefix(&self, within: &str) -> Result<Vec<Listed>> {
        let prefix = ObjectKind::Wal.key(&format!("{}/", self.cluster));
        let listed: Vec<ObjectInfo> = self.repo.storage().list(&format!("{prefix}{within}"))?;
        Ok(listed
            .into_iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(&prefix)?;
                let (timeline, name) = rest.split_once('/')?;
                Some(Listed {
                    timeline: timeline.to_string(),
                    name: name.to_string(),
                    stored: o.size,
                    modified: o.modified,
                })
            })
            .collect())
    }

    fn open_header(&self, key: &str) -> Result<([u8; 32], u64)> {
        let sealed = self.repo.storage().get(key)?;
        let body = self.repo.key().open(key, key.as_bytes(), &sealed)?;
        header(key, &body)
    }
}

/// Opens an archived object as stored under `key` (the whole key, `wal/…`): authenticated
/// (the key is its associated data), decompressed and checked against its recorded hash.
/// Returns the file's content. `copy` calls it on each object before writing it elsewhere.
pub fn open(repo: &Repository, key: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let body = repo.key().open(key, key.as_bytes(), sealed)?;
    let (hash, len) = header(key, &body)?;
    let mut data = Vec::with_capacity(len as usize);
    zstd::stream::copy_decode(&body[HEADER..], &mut data)
        .map_err(|e| Error::corrupt(key, format!("decompression failed: {e}")))?;
    if data.len() as u64 != len || repo.key().chunk_id(&data).0 != hash {
        return Err(Error::corrupt(
            key,
            "content does not match its recorded hash",
        ));
    }
    Ok(data)
}

fn header(key: &str, body: &[u8]) -> Result<([u8; 32], u64)> {
    if body.len() < HEADER || &body[..6] != MAGIC {
        return Err(Error::corrupt(key, "not an archived WAL file"));
    }
    let hash: [u8; 32] = body[6..38].try_into().expect("32 bytes");
    let len = u64::from_le_bytes(body[38..46].try_into().expect("8 bytes"));
    Ok((hash, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::writer::tests::{memory_repo, pages};

    #[test]
    fn archives_once_accepts_the_same_again_and_refuses_different_content() {
        let repo = memory_repo();
        let a = Archive::new(&repo, "7300000000000000001");
        // 3 MiB: cut into one zstd frame per core.
        let seg = pages(768, 7);
        assert!(matches!(
            a.put("00000001", "000000010000000000000003", &seg, 1)
                .unwrap(),
            Put::Stored { .. }
        ));
        assert_eq!(
            a.put("00000001", "000000010000000000000003", &seg, 1)
                .unwrap(),
            Put::AlreadyArchived
        );
        let other = pages(64, 8);
        let e = a
            .put("00000001", "000000010000000000000003", &other, 1)
            .unwrap_err();
        assert!(matches!(e, Error::WalConflict { .. }), "{e}");
        assert_eq!(a.get("00000001", "000000010000000000000003").unwrap(), seg);
        assert!(matches!(
            a.get("00000001", "000000010000000000000004"),
            Err(Error::NotArchived { .. })
        ));
        let listed = a.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "000000010000000000000003");
        assert_eq!(
            Archive::clusters(&repo).unwrap(),
            vec!["7300000000000000001"]
        );
        // Another cluster's archive does not see it.
        let b = Archive::new(&repo, "7300000000000000002");
        assert!(b.list().unwrap().is_empty());
        assert!(b.get("00000001", "000000010000000000000003").is_err());
    }

    #[test]
    fn a_copied_or_damaged_object_fails_to_open() {
        let repo = memory_repo();
        let a = Archive::new(&repo, "1");
        a.put("00000001", "000000010000000000000001", b"one", 1)
            .unwrap();
        let sealed = repo
            .storage()
            .get(&a.object_key("00000001", "000000010000000000000001"))
            .unwrap();
        // The same bytes under another name: the associated data no longer fits.
        repo.storage()
            .put(
                &a.object_key("00000001", "000000010000000000000002"),
                &sealed,
            )
            .unwrap();
        assert!(
            a.get("00000001", "000000010000000000000002")
                .unwrap_err()
                .is_damage()
        );
        let mut flipped = sealed.clone();
        let n = flipped.len() - 3;
        flipped[n] ^= 1;
        repo.storage()
            .put(
                &a.object_key("00000001", "000000010000000000000001"),
                &flipped,
            )
            .unwrap();
        assert!(
            a.get("00000001", "000000010000000000000001")
                .unwrap_err()
                .is_damage()
        );
    }
}

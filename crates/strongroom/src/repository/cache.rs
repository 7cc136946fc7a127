//! The local index cache: the repository's `index/` objects as sorted runs on local disk.
//!
//! Owns where the cache lives (`$STRONGROOM_CACHE_DIR`, else `$XDG_CACHE_HOME/strongroom`,
//! else `~/.cache/strongroom`; then `<repository id>/index-v1/`), keeping it in step with the
//! repository, and the pack table its records number. Must not be the only copy of anything:
//! every byte of it can be rebuilt from the repository, and is, whenever it does not match.
//!
//! Why a cache on disk. Format v1 loaded every index object into one hash map for every
//! backup, restore and check: ~100 bytes of memory per chunk, 1-2 GB for a 100 GB database of
//! 4-8 KiB pages, 14-28 GB for 1 TB. The records now live in `repository::table` runs (52
//! bytes per chunk on disk, 8 bytes of fences per 128 chunks in memory), and an index load
//! reads only the index objects the cache has not seen. The repository format is unchanged:
//! `index/` objects are what they were, so old repositories need no migration and other
//! hosts need no cache to be correct.
//!
//! Keeping in step: the table's manifest records which index objects it covers and how many
//! entries of the pack table (`packs`, 32 bytes per pack, append-only) are valid. Objects
//! listed but not covered are read and added as a run (in batches of [`BATCH`] entries); an
//! object covered but no longer listed (a prune or repair replaced it) makes the whole cache
//! be rebuilt, since entries cannot be taken out of sorted runs (prunes are rare; the model
//! in docs/ARCHITECTURE.md says what that costs at scale). One process updates the cache at
//! a time (`flock` on `lock`); others wait for it, then use what it wrote. Readers need no
//! lock: runs are immutable files, and one replaced while open stays readable.

use super::Repository;
use super::index::{self, Index};
use super::layout::ObjectKind;
use super::table::Table;
use crate::error::{Error, Result};
use crate::id::PackId;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Index entries gathered before they are written as one run (~7 MB in memory).
const BATCH: usize = 128 * 1024;

/// The cache root: `$STRONGROOM_CACHE_DIR`, `$XDG_CACHE_HOME/strongroom` or
/// `~/.cache/strongroom`; `None` when none can be named.
pub fn cache_root() -> Option<PathBuf> {
    let env = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("STRONGROOM_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("strongroom")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("strongroom")))
}

/// The cache root for `repo`: none for an in-memory store (tests), which lives as long as
/// its process, and so does its cache.
pub(crate) fn root_for(repo: &Repository) -> Option<PathBuf> {
    cache_root().filter(|_| !repo.storage().url().starts_with("memory:"))
}

/// A local directory for temporary files of large jobs (sorted id spills): beside the
/// cache when there is one, else the system's temporary directory.
pub fn scratch_dir(repo: &Repository) -> PathBuf {
    root_for(repo)
        .map(|r| r.join(&repo.config().id))
        .filter(|d| std::fs::create_dir_all(d).is_ok())
        .unwrap_or_else(std::env::temp_dir)
}

/// What the cache's manifest says it holds.
#[derive(Default)]
struct Covered {
    objects: HashSet<String>,
    packs: u32,
}

fn encode_meta(objects: &HashSet<String>, packs: u32) -> Vec<u8> {
    let mut names: Vec<&String> = objects.iter().collect();
    names.sort();
    let mut out = Vec::new();
    out.extend_from_slice(&packs.to_le_bytes());
    for n in names {
        out.extend_from_slice(n.as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_meta(meta: &[u8]) -> Option<Covered> {
    if meta.is_empty() {
        return Some(Covered::default());
    }
    let packs = u32::from_le_bytes(meta.get(..4)?.try_into().ok()?);
    let text = std::str::from_utf8(&meta[4..]).ok()?;
    Some(Covered {
        objects: text.lines().map(str::to_string).collect(),
        packs,
    })
}

/// How many objects the table's manifest says it covers.
fn table_objects(table: &Table<20>) -> usize {
    decode_meta(table.meta()).map_or(0, |c| c.objects.len())
}

/// Holds `flock` on the cache's lock file while it lives.
struct DirLock(std::fs::File);

impl DirLock {
    fn take(dir: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DirLock(f))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Where this repository's cache goes: the named root, else a private temporary directory
/// (removed when the returned guard drops).
fn place(repo: &Repository) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(root) = root_for(repo) {
        let dir = root.join(&repo.config().id).join("index-v1");
        match std::fs::create_dir_all(&dir) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700));
                return Ok((dir, None));
            }
            Err(e) => tracing::warn!(
                "cannot use the index cache at {} ({e}); using a temporary one for this run",
                dir.display()
            ),
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("strongroom-index-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary index cache", std::env::temp_dir(), e))?;
    Ok((tmp.path().to_path_buf(), Some(tmp)))
}

impl Repository {
    /// Brings the local index cache in step with the repository's `index/` objects and
    /// returns the index over it, knowing which packs are present, recorded damaged, or
    /// about to be deleted by a prune. A damaged index object costs only the chunks it alone
    /// lists: it is skipped and noted ([`Index::unreadable`]), and a backup stores those
    /// chunks again.
    pub fn load_index(&self) -> Result<Index> {
        // Marks before index objects: a prune writes its new index objects before its mark,
        // so whoever sees a mark also sees the copies it made. Index objects before packs: a
        // pack is durable before any index object names it, so every pack a listed object
        // names is in the later pack listing.
        let doomed = self.doomed_packs()?;
        let listed: Vec<String> = self
            .storage
            .list(ObjectKind::Index.folder())?
            .into_iter()
            .map(|o| o.key)
            .collect();
        let present: HashSet<PackId> = self
            .storage
            .list(ObjectKind::Pack.folder())?
            .iter()
            .filter_map(|o| PackId::from_object_key(&o.key))
            .collect();
        let damaged = self.damaged_packs()?;
        let (dir, temporary) = place(self)?;
        let cache_err = |e: std::io::Error| Error::io("updating the local index cache", &dir, e);
        let lock = DirLock::take(&dir).map_err(cache_err)?;
        let (table, packs, unreadable) = match self.sync_cache(&dir, &listed) {
            Ok(r) => r,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(
                    "the local index cache at {} is damaged ({source}); rebuilding it",
                    dir.display()
                );
                Table::<20>::open(&dir)
                    .and_then(|mut t| t.clear())
                    .map_err(cache_err)?;
                self.sync_cache(&dir, &listed)?
            }
            Err(e) => return Err(e),
        };
        drop(lock);
        let records = table.stored_records();
        let scratch = temporary.as_ref().map(|t| t.path().to_path_buf());
        let mut ix = Index::new(
            Some(table),
            packs,
            records,
            unreadable,
            scratch.or_else(|| dir.parent().map(Path::to_path_buf)),
        );
        ix.set_pack_health(&present, &damaged, doomed);
        ix.keep_alive(temporary);
        Ok(ix)
    }

    /// Adds the objects in `listed` the cache does not cover, rebuilding it when it covers
    /// one that is gone. Returns the table, the pack table and the unreadable objects.
    #[allow(clippy::type_complexity)]
    fn sync_cache(
        &self,
        dir: &Path,
        listed: &[String],
    ) -> Result<(Table<20>, Vec<PackId>, Vec<(String, String)>)> {
        let cache_err = |e: std::io::Error| Error::io("updating the local index cache", dir, e);
        let mut table = Table::<20>::open(dir).map_err(cache_err)?;
        let listed_set: HashSet<&String> = listed.iter().collect();
        let mut covered = decode_meta(table.meta()).unwrap_or_default();
        if covered.objects.iter().any(|o| !listed_set.contains(o))
            || decode_meta(table.meta()).is_none()
        {
            tracing::info!(
                "index objects were replaced (a prune or repair): rebuilding the local index cache"
            );
            table.clear().map_err(cache_err)?;
            covered = Covered::default();
        }
        let packs_path = dir.join("packs");
        let packs_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&packs_path)
            .map_err(cache_err)?;
        let mut raw = vec![0u8; covered.packs as usize * 32];
        packs_file
            .read_exact_at(&mut raw, 0)
            .map_err(|e| cache_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let mut packs: Vec<PackId> = raw
            .chunks_exact(32)
            .map(|c| PackId(c.try_into().expect("32 bytes")))
            .collect();
        let mut numbers: HashMap<PackId, u32> = packs
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
            .collect();
        let mut unreadable = Vec::new();
        let mut batch: Vec<(crate::repository::table::Key, index::Value)> = Vec::new();
        let mut added = 0usize;
        let fresh: Vec<&String> = listed
            .iter()
            .filter(|o| !covered.objects.contains(*o))
            .collect();
        let rebuilt = covered.objects.is_empty() && fresh.len() > 1;
        for (i, object) in fresh.iter().enumerate() {
            match self.read_index(object) {
                Ok(entries) => {
                    for (id, loc) in entries {
                        let next = packs.len() as u32;
                        let n = *numbers.entry(loc.pack).or_insert_with(|| {
                            packs.push(loc.pack);
                            next
                        });
                        batch.push((id.0, index::value_of(n, &loc)));
                    }
                    covered.objects.insert((*object).clone());
                }
                Err(e) if e.is_damage() => {
                    tracing::warn!(
                        "{e}; the chunks only it lists are unknown to this run (`strongroom check` tells which snapshots that affects)"
                    );
                    unreadable.push(((*object).clone(), e.to_string()));
                }
                Err(e) => return Err(e),
            }
            let last = i + 1 == fresh.len();
            if batch.is_empty() && last && covered.objects.len() != table_objects(&table) {
                table
                    .set_meta(encode_meta(&covered.objects, covered.packs))
                    .map_err(cache_err)?;
            } else if !batch.is_empty() && (batch.len() >= BATCH || last) {
                // The pack table first: the manifest written with the run says how much of it
                // is valid, so a kill in between leaves only an ignored tail.
                let from = covered.packs as usize;
                let tail: Vec<u8> = packs[from..].iter().flat_map(|p| p.0).collect();
                packs_file
                    .write_all_at(&tail, from as u64 * 32)
                    .map_err(cache_err)?;
                covered.packs = packs.len() as u32;
                added += batch.len();
                table
                    .add_run_with_meta(
                        std::mem::take(&mut batch),
                        encode_meta(&covered.objects, covered.packs),
                    )
                    .map_err(cache_err)?;
            }
        }
        if rebuilt && table.run_count() > 1 {
            table.compact_all().map_err(cache_err)?;
        }
        if added > 0 {
            tracing::debug!(
                entries = added,
                runs = table.run_count(),
                "local index cache updated"
            );
        }
        Ok((table, packs, unreadable))
    }
}

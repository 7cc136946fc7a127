//! The local index cache: the repository's `index/` objects as sorted runs on local disk.
//!
//! Owns where the cache lives (`$STRONGROOM_CACHE_DIR`, else `$XDG_CACHE_HOME/strongroom`,
//! else `~/.cache/strongroom`; then `<repository id>/index-v1/`), what happens when that
//! directory is refused (a temporary cache), keeping it in step with the repository,
//! authenticating it, and the pack table its records number; who may change it is
//! [`crate::private_dir`]'s rule. Must not be the only copy of anything: every byte of it
//! can be rebuilt from the repository, and is, whenever it does not match or does not
//! verify. Must not change the mode or owner of a directory it did not create.
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
//! object covered but no longer listed (a repair, or a prune this cache did not follow)
//! makes the whole cache be rebuilt, since entries cannot be taken out of sorted runs (the
//! model in docs/ARCHITECTURE.md says what that costs at scale). A prune follows itself
//! ([`Repository::cache_after_prune`]): the slots of the packs it deleted are marked in the
//! pack table ([`index::DROPPED_PACK`], whose records every reader skips) and the runs are
//! rewritten without them only once more than a quarter of the slots are marked. One
//! process updates the cache at a time (`flock` on `lock`); others wait for it, then use
//! what it wrote. Readers need no lock: runs are immutable files, and one replaced while
//! open stays readable.
//!
//! Who may change it. strongroom runs as root or `postgres` on hosts with other users. A
//! cache another user can write would let them choose what a backup believes is stored: an
//! entry for a chunk the repository lacks makes the backup skip it, and the snapshot does
//! not restore. So the root and the per-repository directories below it are a
//! [`crate::private_dir`] of kind [`Obeyed::Cache`], which owns the rule and its checks:
//! owned by the effective uid or root and writable by no one else, under directories only
//! they can change (or sticky, like `/tmp`), never links below the root, made 0700, and no
//! existing directory's mode ever changed (pointing the cache at `/tmp` must not make `/tmp`
//! private); files opened `O_NOFOLLOW`, with `lock` and `packs` replaced when they are not a
//! plain file of ours with one link. What is the cache's own: a root that fails is not
//! used; the run goes on with a private temporary cache, rebuilt from the repository, and a
//! warning says which directory was refused, why, and what to do. A backup at 2 a.m. that
//! runs slower is better than one that does not run, and the temporary cache is as correct
//! as the real one. A repository id names a directory only when it is made of letters,
//! digits, `-` and `_`.
//!
//! Authentication. Whatever the cache says, a backup must never reference a chunk the
//! repository does not hold, whoever wrote the cache (the directory checks above can be
//! undone by a careless `chmod`, and a copied or restored home directory carries its
//! cache). The table is opened with [`Table::open_keyed`] under a key derived from the
//! repository's secret ([`crate::crypto::MasterKey::local_key`], bound to the repository
//! id): the manifest's tag covers the runs' hashes and the meta, the meta covers the pack
//! table (its BLAKE3), and the table checks every run against its hash at open. A cache
//! that fails is rebuilt from the repository's `index/` objects with a warning. Replaying an
//! older authentic cache gains nothing: it covers only objects the repository lists (else it
//! is rebuilt), and a prune or repair that drops entries replaces the objects that held
//! them. For an unencrypted repository (`--encryption none`) the key comes from the id key,
//! which the repository's config holds in the clear: the tag then holds against local users
//! who cannot read the repository, and nothing in such a repository is secret anyway. The
//! cost is one sequential read of the runs per index load, ~52 bytes per chunk: on 1 M
//! records (52 MB, an 8 GB database of 8 KiB pages) 0.02-0.05 s from the page cache on two
//! shared cores (`table::speed::keyed_open_cost_at_a_million_records`), about 0.1 s cold at
//! 500 MB/s; 52 GB per billion chunks, 20 s to 2 minutes by the disk: small beside reading
//! the database, whose size it is 0.6% of (per-block tags would remove it; see the table).
//! Restore, check and prune load the index the same way, so they are covered too.

use super::Repository;
use super::index::{self, Index};
use super::layout::ObjectKind;
use super::table::Table;
use crate::error::{Error, Obeyed, Result};
use crate::id::PackId;
use crate::private_dir;
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
/// cache when its directory is the running user's alone, else the system's temporary
/// directory (where callers make private directories of random names).
pub fn scratch_dir(repo: &Repository) -> PathBuf {
    private_repo_dir(repo).unwrap_or_else(std::env::temp_dir)
}

/// This repository's directory under the cache root (`<root>/<repository id>`), made or
/// checked to be the running user's alone; `None` when there is no root or it fails the
/// checks (`load_index` warns why). Other local caches of the repository (the journal's)
/// live here.
pub(crate) fn private_repo_dir(repo: &Repository) -> Option<PathBuf> {
    root_for(repo).and_then(|r| repo_dir(&r, &repo.config().id, &[]).ok())
}

/// The repository's directory under the cache root (`<root>/<repository id>`), and `below`
/// it, made or checked: a private directory of the running user's (see the module docs).
/// Returned under the root as resolved once.
fn repo_dir(root: &Path, id: &str, below: &[&str]) -> Result<PathBuf> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::Config(format!(
            "the repository id {id:?} cannot name a cache directory"
        )));
    }
    let parts: Vec<&str> = std::iter::once(id).chain(below.iter().copied()).collect();
    private_dir::make(root, &parts, Obeyed::Cache)
}

/// What the cache's manifest says it holds.
#[derive(Default)]
struct Covered {
    objects: HashSet<String>,
    packs: u32,
    /// BLAKE3 of the first `packs` entries of the pack table.
    packs_hash: [u8; 32],
}

/// The table's meta: `packs (u32 LE) ‖ BLAKE3 of those pack-table bytes (32) ‖ covered
/// object names, each followed by a newline`. The table's authenticated manifest holds it.
fn encode_meta(objects: &HashSet<String>, packs: u32, packs_hash: &[u8; 32]) -> Vec<u8> {
    let mut names: Vec<&String> = objects.iter().collect();
    names.sort();
    let mut out = Vec::new();
    out.extend_from_slice(&packs.to_le_bytes());
    out.extend_from_slice(packs_hash);
    for n in names {
        out.extend_from_slice(n.as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_meta(meta: &[u8]) -> Option<Covered> {
    if meta.is_empty() {
        return Some(Covered {
            packs_hash: *blake3::hash(&[]).as_bytes(),
            ..Covered::default()
        });
    }
    let packs = u32::from_le_bytes(meta.get(..4)?.try_into().ok()?);
    let packs_hash = meta.get(4..36)?.try_into().ok()?;
    let text = std::str::from_utf8(&meta[36..]).ok()?;
    Some(Covered {
        objects: text.lines().map(str::to_string).collect(),
        packs,
        packs_hash,
    })
}

/// The key the cache's table is authenticated with: derived from the repository's secret,
/// bound to its id.
fn table_key(repo: &Repository) -> [u8; 32] {
    let key = repo
        .key()
        .local_key("strongroom 2024 local index cache table manifest");
    *blake3::keyed_hash(&key, repo.config().id.as_bytes()).as_bytes()
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
        let f = private_dir::open_rw_or_replace(&dir.join("lock"))?;
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

/// Where this repository's cache goes: the named root when it is the running user's
/// alone, else a private temporary directory (removed when the returned guard drops).
fn place(repo: &Repository) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    // An append-only key's index is its catalog: a cache of its own, beside a full key's.
    let sub = match repo.key().catalog_id() {
        Some(id) => format!("catalog-{id}-v1"),
        None => "index-v1".to_string(),
    };
    if let Some(root) = root_for(repo) {
        match repo_dir(&root, &repo.config().id, &[&sub]) {
            Ok(dir) => return Ok((dir, None)),
            Err(why) => tracing::warn!(
                "not using the index cache under {}: {why}. This run uses a private temporary cache, rebuilt from the repository (slower), until that is fixed",
                root.display()
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
    /// Brings the local index cache in step with the repository's `index/` objects (an
    /// append-only key: its catalog's entry objects, `repository::catalog`) and
    /// returns the index over it, knowing which packs are present, recorded damaged, or
    /// about to be deleted by a prune. A damaged index object costs only the chunks it alone
    /// lists: it is skipped and noted ([`Index::unreadable`]), and a backup stores those
    /// chunks again.
    pub fn load_index(&self) -> Result<Index> {
        // Marks before index objects: a prune writes its new index objects before its mark,
        // so whoever sees a mark also sees the copies it made. Index objects before packs: a
        // pack is durable before any index object names it, so every pack a listed object
        // names is in the later pack listing.
        let (doomed, unreadable_marks) = self.doomed_packs_and_unreadable()?;
        let listed = self.index_sources()?;
        let mut present: HashSet<PackId> = self
            .storage
            .list(ObjectKind::Pack.folder())?
            .iter()
            .filter_map(|o| PackId::from_object_key(&o.key))
            .collect();
        if unreadable_marks && self.catalog_folder().is_some() {
            // A mark this key cannot read (written before append-only keys, or damaged) may
            // doom any pack: build on none this time.
            tracing::warn!(
                "a prune's deletion mark cannot be read with this append-only key: this backup stores every chunk again"
            );
            present.clear();
        }
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
                Table::<20>::open_keyed(&dir, &table_key(self))
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
        let mut table = Table::<20>::open_keyed(dir, &table_key(self)).map_err(cache_err)?;
        if let Some(why) = table.discarded() {
            tracing::warn!(
                "the local index cache at {} cannot be trusted ({why}); rebuilding it from the repository",
                dir.display()
            );
        }
        let packs_file = private_dir::open_rw_or_replace(&dir.join("packs")).map_err(cache_err)?;
        let listed_set: HashSet<&String> = listed.iter().collect();
        let decoded = decode_meta(table.meta());
        let mut raw = Vec::new();
        let packs_ok = decoded.as_ref().is_some_and(|c| {
            raw.resize(c.packs as usize * 32, 0);
            packs_file.read_exact_at(&mut raw, 0).is_ok() && blake3::hash(&raw) == c.packs_hash
        });
        let mut covered = decoded.unwrap_or_default();
        if !packs_ok {
            tracing::warn!(
                "the pack table of the local index cache at {} is not what its manifest names; rebuilding the cache from the repository",
                dir.display()
            );
            table.clear().map_err(cache_err)?;
            covered = decode_meta(&[]).expect("empty meta");
            raw.clear();
        } else if covered.objects.iter().any(|o| !listed_set.contains(o)) {
            tracing::info!(
                "index objects were replaced (a prune or repair): rebuilding the local index cache"
            );
            table.clear().map_err(cache_err)?;
            covered = decode_meta(&[]).expect("empty meta");
            raw.clear();
        }
        let mut packs_hasher = blake3::Hasher::new();
        packs_hasher.update(&raw);
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
            match self.read_index_source(object) {
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
                    .set_meta(encode_meta(
                        &covered.objects,
                        covered.packs,
                        &covered.packs_hash,
                    ))
                    .map_err(cache_err)?;
            } else if !batch.is_empty() && (batch.len() >= BATCH || last) {
                // The pack table first: the manifest written with the run says how much of it
                // is valid, so a kill in between leaves only an ignored tail.
                let from = covered.packs as usize;
                let tail: Vec<u8> = packs[from..].iter().flat_map(|p| p.0).collect();
                packs_file
                    .write_all_at(&tail, from as u64 * 32)
                    .map_err(cache_err)?;
                packs_hasher.update(&tail);
                covered.packs = packs.len() as u32;
                covered.packs_hash = *packs_hasher.finalize().as_bytes();
                added += batch.len();
                table
                    .add_run_with_meta(
                        std::mem::take(&mut batch),
                        encode_meta(&covered.objects, covered.packs, &covered.packs_hash),
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

/// What a finished prune changed in the repository's index, for the local cache to follow
/// ([`Repository::cache_after_prune`]) instead of being rebuilt by the next job.
#[derive(Debug, Default)]
pub struct PruneChanges {
    /// Index objects the sweep deleted.
    pub superseded: Vec<String>,
    /// Packs the sweep deleted: their records go.
    pub dropped: HashSet<PackId>,
    /// Index objects written in place of superseded ones: each holds a superseded object's
    /// entries less those of dropped packs, so the cache holds their records already.
    pub derived: Vec<String>,
    /// Index objects written for new packs (the repack's)...
    pub added: Vec<String>,
    /// ...and their entries.
    pub added_entries: Vec<index::Entry>,
}

/// Streams a table's records without those of dropped packs, numbering the packs kept
/// anew in the order they come (values of one key re-sorted, as a run requires).
struct Renumbered<I: Iterator> {
    source: std::iter::Peekable<I>,
    dropped: Vec<bool>,
    numbers: Vec<u32>,
    packs: std::rc::Rc<std::cell::RefCell<Vec<PackId>>>,
    old_packs: Vec<PackId>,
    ready: std::collections::VecDeque<(super::table::Key, index::Value)>,
}

impl<I: Iterator<Item = std::io::Result<(super::table::Key, index::Value)>>> Iterator
    for Renumbered<I>
{
    type Item = std::io::Result<(super::table::Key, index::Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.ready.is_empty() {
            let (key, first) = match self.source.next()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let mut values = vec![first];
            while let Some(Ok((k, _))) = self.source.peek() {
                if *k != key {
                    break;
                }
                if let Some(Ok((_, v))) = self.source.next() {
                    values.push(v);
                }
            }
            let mut kept = Vec::with_capacity(values.len());
            let mut packs = self.packs.borrow_mut();
            for v in values {
                let old = index::pack_number(&v) as usize;
                if old >= self.old_packs.len() || self.dropped[old] {
                    continue;
                }
                if self.numbers[old] == u32::MAX {
                    self.numbers[old] = packs.len() as u32;
                    packs.push(self.old_packs[old]);
                }
                kept.push(index::renumbered(&v, self.numbers[old]));
            }
            kept.sort_unstable();
            self.ready.extend(kept.into_iter().map(|v| (key, v)));
        }
        self.ready.pop_front().map(Ok)
    }
}

impl Repository {
    /// Follows a finished prune in the local index cache, so the next job does not rebuild
    /// it from every index object: the `changes.dropped` packs' slots are marked dropped
    /// (their records skipped from then on), or, once more than a quarter of the slots are,
    /// their records go (one streaming pass over the runs into one new run, the pack table
    /// numbered anew); the superseded objects are no longer covered and the derived ones
    /// are, and the added objects' entries come in as a run. The result holds, for
    /// readers, the records of exactly the objects it covers, as a rebuild would. Leaves
    /// the cache as it is (the next job then rebuilds it, as before) when it did not cover
    /// every superseded object, when an object it would cover is not listed, or when it
    /// cannot be trusted; a temporary cache (none of the user's) is left alone. Memory:
    /// the pack table, and when it rewrites the runs one key's records at a time.
    pub fn cache_after_prune(&self, changes: &PruneChanges) -> Result<()> {
        if self.key().catalog_id().is_some() {
            return Ok(());
        }
        let Some(root) = root_for(self) else {
            return Ok(());
        };
        let Ok(dir) = repo_dir(&root, &self.config().id, &["index-v1"]) else {
            return Ok(());
        };
        let cache_err = |e: std::io::Error| Error::io("updating the local index cache", &dir, e);
        let _lock = DirLock::take(&dir).map_err(cache_err)?;
        let mut table = Table::<20>::open_keyed(&dir, &table_key(self)).map_err(cache_err)?;
        let Some(covered) = decode_meta(table.meta()).filter(|_| table.discarded().is_none())
        else {
            return Ok(());
        };
        let packs_file = private_dir::open_rw_or_replace(&dir.join("packs")).map_err(cache_err)?;
        let mut raw = vec![0u8; covered.packs as usize * 32];
        if packs_file.read_exact_at(&mut raw, 0).is_err()
            || blake3::hash(&raw) != covered.packs_hash
        {
            return Ok(());
        }
        let superseded: HashSet<&String> = changes.superseded.iter().collect();
        if !superseded.iter().all(|o| covered.objects.contains(*o)) {
            return Ok(());
        }
        let listed: HashSet<String> = self.index_sources()?.into_iter().collect();
        let mut objects: HashSet<String> = covered
            .objects
            .iter()
            .filter(|o| !superseded.contains(o))
            .chain(&changes.derived)
            .cloned()
            .collect();
        if !objects
            .iter()
            .chain(&changes.added)
            .all(|o| listed.contains(o))
        {
            return Ok(());
        }
        let mut packs: Vec<PackId> = raw
            .chunks_exact(32)
            .map(|c| PackId(c.try_into().expect("32 bytes")))
            .collect();
        let dropped: Vec<bool> = packs
            .iter()
            .map(|p| *p == index::DROPPED_PACK || changes.dropped.contains(p))
            .collect();
        let dropped_slots = dropped.iter().filter(|d| **d).count();
        if dropped_slots * 4 <= packs.len() {
            // Few packs went: their slots are marked and their records stay in the runs,
            // skipped by every reader, until a prune drops more than a quarter of the
            // slots. A pass over every record would cost most of a small prune.
            for (p, d) in packs.iter_mut().zip(&dropped) {
                if *d {
                    *p = index::DROPPED_PACK;
                }
            }
        } else {
            let new_packs = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let records = Renumbered {
                source: table.iter_merged().map_err(cache_err)?.peekable(),
                numbers: vec![u32::MAX; packs.len()],
                dropped,
                packs: new_packs.clone(),
                old_packs: packs,
                ready: Default::default(),
            };
            // The new run names a pack table written after it: a kill in between leaves a
            // cache whose pack table does not match its manifest, which is rebuilt.
            table
                .replace_all(records, || {
                    let packs = new_packs.borrow();
                    let bytes: Vec<u8> = packs.iter().flat_map(|p| p.0).collect();
                    encode_meta(
                        &objects,
                        packs.len() as u32,
                        blake3::hash(&bytes).as_bytes(),
                    )
                })
                .map_err(cache_err)?;
            packs = new_packs.take();
            packs_file.set_len(0).map_err(cache_err)?;
        }
        // The repack's objects, as a run of their own.
        let mut kept = Vec::with_capacity(changes.added_entries.len());
        let mut numbers: HashMap<PackId, u32> = packs
            .iter()
            .enumerate()
            .filter(|(_, p)| **p != index::DROPPED_PACK)
            .map(|(i, p)| (*p, i as u32))
            .collect();
        for (id, loc) in &changes.added_entries {
            let next = packs.len() as u32;
            let n = *numbers.entry(loc.pack).or_insert_with(|| {
                packs.push(loc.pack);
                next
            });
            kept.push((id.0, index::value_of(n, loc)));
        }
        objects.extend(changes.added.iter().cloned());
        let tail: Vec<u8> = packs.iter().flat_map(|p| p.0).collect();
        packs_file.write_all_at(&tail, 0).map_err(cache_err)?;
        let hash = *blake3::hash(&tail).as_bytes();
        table
            .add_run_with_meta(kept, encode_meta(&objects, packs.len() as u32, &hash))
            .map_err(cache_err)?;
        tracing::debug!(
            records = table.stored_records(),
            objects = objects.len(),
            "local index cache updated after the prune"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    fn refusal(root: &Path, id: &str) -> String {
        repo_dir(root, id, &[]).unwrap_err().to_string()
    }

    #[test]
    fn cache_dirs_we_create_are_private_from_the_start() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("a/b/cache");
        let dir = repo_dir(&root, "0123abcd", &["index-v1"]).unwrap();
        for d in [
            t.path().join("a"),
            t.path().join("a/b"),
            root.clone(),
            root.join("0123abcd"),
            dir,
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        // Found again as it was: fine.
        repo_dir(&root, "0123abcd", &[]).unwrap();
    }

    #[test]
    fn a_cache_root_others_can_write_is_refused_and_keeps_its_mode() {
        let t = tempfile::tempdir().unwrap();
        let shared = t.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        for m in [0o1777, 0o777, 0o770] {
            chmod(&shared, m);
            let err = refusal(&shared, "0123abcd");
            assert!(err.contains("writable by other users"), "{err}");
            assert!(err.contains(&shared.display().to_string()), "{err}");
            assert!(err.contains("STRONGROOM_CACHE_DIR"), "{err}");
            assert_eq!(mode(&shared), m);
            assert!(!shared.join("0123abcd").exists());
        }
        // Below a sticky shared directory, a private root of ours is fine.
        chmod(&shared, 0o1777);
        repo_dir(&shared.join("mine"), "0123abcd", &[]).unwrap();
        // Below a shared directory that is not sticky, it is not: others could rename it.
        chmod(&shared, 0o777);
        let err = refusal(&shared.join("mine"), "0123abcd");
        assert!(err.contains("can be changed by other users"), "{err}");
        assert_eq!(mode(&shared), 0o777);
    }

    #[test]
    fn links_and_odd_ids_below_the_root_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cache");
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        chmod(&elsewhere, 0o700);
        private_dir::make(&root, &[], Obeyed::Cache).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("0123abcd")).unwrap();
        let err = refusal(&root, "0123abcd");
        assert!(err.contains("not a directory"), "{err}");
        for id in ["", "..", "../x", "/etc", "a/b"] {
            assert!(refusal(&root, id).contains("repository id"));
        }
        // A root named through a link is resolved once: the path used from then on does not
        // go through the link, which whoever owns it could retarget.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let dir = repo_dir(&link, "feed", &[]).unwrap();
        assert_eq!(dir, root.canonicalize().unwrap().join("feed"));
    }

    #[test]
    fn a_cache_root_another_user_made_is_refused() {
        let Some(attacker) = strongroom_testkit::attacker::Attacker::find() else {
            return;
        };
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cache");
        std::fs::create_dir(&root).unwrap();
        chmod(&root, 0o700);
        attacker.take(&root);
        let err = refusal(&root, "0123abcd");
        assert!(
            err.contains(&format!("belongs to uid {}", attacker.uid)),
            "{err}"
        );
        assert!(err.contains("set STRONGROOM_CACHE_DIR to a directory you own"));
        assert!(!root.join("0123abcd").exists());
    }
}

//! Writing a physical snapshot's files into a directory: the part of a restore that moves
//! the bytes.
//!
//! Owns the order and the durability of the writes: directories and links first; files of
//! more than one chunk list streamed in order, one per core, past the page cache
//! ([`super::direct`]), hashed as they are written;
//! small files in groups (their chunk lists fetched together), read back against their
//! checksums; every file synced as it is written, then every directory; `global/pg_control`
//! last, so a directory cut short cannot start. Also owns where tablespaces come back:
//! inside the restored data directory ([`TABLESPACES_DIR`]), linked from `pg_tblspc/`, not at
//! their original locations, which on the same host belong to the cluster that was backed
//! up. And owns the rule that keeps a snapshot's names inside the directory
//! ([`check_names`]), checked before anything is written: a manifest is authenticated, but
//! whoever holds a key file can write one, and root restores it.
//!
//! Must not decide where the directory goes or how it recovers, and must not write through a
//! path: every write goes through [`crate::beneath`], relative to the directory's descriptor
//! and never following a link. A link the snapshot stores is created as a link and nothing
//! is written below it; the one exception is a tablespace (`pg_tblspc/<oid>`), whose stored
//! link is not created at all: its files are written into a new directory in its place, and
//! the link made at the end points into the restored directory, never at the stored target.

use super::direct::DirectFile;
use super::{PG_CONTROL, TABLESPACE_MAP};
use crate::beneath::Beneath;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{Chunking, FileEntry, Snapshot};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Small files restored together: their chunk lists are fetched in one go.
const FILES_PER_GROUP: usize = 256;

/// Writes every entry of the snapshot below `root` (which will be `final_dir` once moved
/// into place); returns the bytes written. Refuses a snapshot whose names break
/// [`check_names`] before writing anything.
pub(super) fn write_tree(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    root: &Beneath,
    final_dir: &Path,
    progress: &dyn Progress,
) -> Result<u64> {
    check_names(snap)?;
    progress.begin("restore", Some(snap.size));
    let mut files: Vec<&FileEntry> = Vec::new();
    let mut control = None;
    for f in &snap.files {
        let tree = f.tree.clone().unwrap_or_default();
        if tree.dir || is_tablespace(f) {
            // A tablespace is written here first and moved below the data directory
            // afterwards (see `place_tablespaces`); its stored link is never created.
            root.mkdir(&f.name, (tree.mode & 0o777).max(0o700))?;
        } else if let Some(link) = &tree.link {
            root.symlink(link, &f.name)?;
        } else if f.name == TABLESPACE_MAP {
            // Left out: it would point the restored cluster at the original tablespaces.
        } else if f.name == PG_CONTROL {
            control = Some(f);
        } else {
            files.push(f);
        }
    }
    let mut bytes = write_files(repo, index, snap, root, &files, progress)?;
    place_tablespaces(snap, root, final_dir)?;
    // Everything else is on disk before the one file that makes the directory startable:
    // each file was synced when written, and now every directory (their entries).
    root.sync_dirs()?;
    let control = control.ok_or_else(|| {
        Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without global/pg_control",
        )
    })?;
    bytes += write_files(repo, index, snap, root, &[control], progress)?;
    let path = root.path().join(PG_CONTROL);
    root.open_file(PG_CONTROL)?
        .ok_or_else(|| Error::io("syncing", &path, std::io::ErrorKind::NotFound.into()))?
        .sync_all()
        .map_err(|e| Error::io("syncing", &path, e))?;
    root.sync_dir("global")?;
    progress.end();
    Ok(bytes)
}

/// Where tablespaces come back: inside the restored data directory, linked from
/// `pg_tblspc/<oid>` as PostgreSQL requires (it refuses plain directories there at the end of
/// recovery). Their original locations belong to the cluster that was backed up.
pub const TABLESPACES_DIR: &str = "strongroom_tablespaces";

/// Whether `f` is a tablespace's link, `pg_tblspc/<oid>`: restored as a directory.
pub(super) fn is_tablespace(f: &FileEntry) -> bool {
    f.tree.as_ref().is_some_and(|t| t.link.is_some() && !t.dir)
        && f.name
            .strip_prefix("pg_tblspc/")
            .is_some_and(|oid| !oid.is_empty() && !oid.contains('/'))
}

/// Moves each tablespace written at `pg_tblspc/<oid>` to [`TABLESPACES_DIR`]`/<oid>` and
/// links it from `pg_tblspc/<oid>`, by the path it will have once the directory is
/// `final_dir`.
fn place_tablespaces(snap: &Snapshot, root: &Beneath, final_dir: &Path) -> Result<()> {
    let spaces: Vec<&str> = snap
        .files
        .iter()
        .filter(|f| is_tablespace(f))
        .filter_map(|f| f.name.strip_prefix("pg_tblspc/"))
        .collect();
    if spaces.is_empty() {
        return Ok(());
    }
    root.mkdir(TABLESPACES_DIR, 0o700)?;
    for oid in spaces {
        let written = format!("pg_tblspc/{oid}");
        root.rename(&written, &format!("{TABLESPACES_DIR}/{oid}"))?;
        let link = final_dir.join(TABLESPACES_DIR).join(oid);
        root.symlink(&link.to_string_lossy(), &written)?;
    }
    Ok(())
}

/// What a stored name is, for the rule on what may lie below it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sort {
    Dir,
    Link,
    File,
}

/// Checks that every name of the snapshot stays inside the data directory: a plain relative
/// path (no `..`, `.`, empty component, leading `/`), named once, not [`TABLESPACES_DIR`]
/// (which the restore makes), and below no entry the snapshot stores as a link or a file. A
/// tablespace's link (`pg_tblspc/<oid>`) counts as a directory: it is restored as one. Any
/// other link is created as a link, so an entry below it would be written through it, to
/// wherever it points. Order does not matter: links are created before files are written.
pub(super) fn check_names(snap: &Snapshot) -> Result<()> {
    let refuse = |detail: String| {
        Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!(
                "{detail}, so restoring snapshot {} would write outside the data directory; nothing was restored",
                snap.short_id()
            ),
        ))
    };
    let mut sorts: HashMap<&str, Sort> = HashMap::with_capacity(snap.files.len());
    for f in &snap.files {
        let name = f.name.as_str();
        let plain = !name.is_empty()
            && name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
        if !plain {
            return refuse(format!("entry {name:?} is not a plain relative path"));
        }
        if name == TABLESPACES_DIR || name.starts_with(&format!("{TABLESPACES_DIR}/")) {
            return refuse(format!(
                "entry {name:?} is where the restore places tablespaces itself"
            ));
        }
        let tree = f.tree.as_ref();
        let sort = if tree.is_some_and(|t| t.dir) || is_tablespace(f) {
            Sort::Dir
        } else if tree.is_some_and(|t| t.link.is_some()) {
            Sort::Link
        } else {
            Sort::File
        };
        if sorts.insert(name, sort).is_some() {
            return refuse(format!("entry {name:?} is named twice"));
        }
    }
    for f in &snap.files {
        let name = f.name.as_str();
        for (i, _) in name.match_indices('/') {
            let above = &name[..i];
            match sorts.get(above) {
                Some(Sort::Link) => {
                    return refuse(format!(
                        "entry {name:?} lies below {above:?}, which the snapshot stores as a link"
                    ));
                }
                Some(Sort::File) => {
                    return refuse(format!(
                        "entry {name:?} lies below {above:?}, which the snapshot stores as a file"
                    ));
                }
                Some(Sort::Dir) | None => {}
            }
        }
    }
    Ok(())
}

/// Writes `files` (grouped: many small files' chunks are fetched together, a large file's
/// window by window), then checks each against its checksum.
fn write_files(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    root: &Beneath,
    files: &[&FileEntry],
    progress: &dyn Progress,
) -> Result<u64> {
    let (large, small): (Vec<&FileEntry>, Vec<&FileEntry>) =
        files.iter().copied().partition(|f| f.lists.len() > 1);
    // Files written out of order (grouped), whose checksums are checked by reading back.
    let unhashed = &small;
    // Large files stream one per core (each fetches its next step while writing one), and
    // the small ones are written in groups beside them: one stream alone keeps one core busy.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let written = std::sync::atomic::AtomicU64::new(0);
    let failed: std::sync::Mutex<Option<Error>> = Default::default();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    std::thread::scope(|s| {
        for _ in 0..workers.min(large.len()) {
            s.spawn(|| {
                loop {
                    if failed.lock().expect("lock").is_some() {
                        break;
                    }
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = large.get(i) else { break };
                    match write_large(repo, index, snap, root, f, progress) {
                        Ok(n) => {
                            written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.lock().expect("lock").get_or_insert(e);
                        }
                    }
                }
            });
        }
        for group in small.chunks(FILES_PER_GROUP) {
            if failed.lock().expect("lock").is_some() {
                break;
            }
            match write_group(repo, index, snap, root, group, progress) {
                Ok(n) => {
                    written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    failed.lock().expect("lock").get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = failed.into_inner().expect("lock") {
        return Err(e);
    }
    let total = written.into_inner();
    // Checked after writing, reading back what is now in the page cache: the bytes on disk
    // are the bytes that were backed up.
    let failures: std::sync::Mutex<Vec<String>> = Default::default();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(f) = unhashed.get(i) else { break };
                    let Some(want) = f.tree.as_ref().and_then(|t| t.checksum.as_ref()) else {
                        continue;
                    };
                    let got = root.open_file(&f.name).ok().flatten().and_then(|mut file| {
                        let mut h = blake3::Hasher::new();
                        std::io::copy(&mut file, &mut h).ok()?;
                        Some(h.finalize().to_hex().to_string())
                    });
                    if got.as_deref() != Some(want.as_str()) {
                        failures.lock().expect("lock").push(f.name.clone());
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    if let Some(first) = failures.first() {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!(
                "restored file {first} does not match its checksum ({} file(s) in all)",
                failures.len()
            ),
        ));
    }
    Ok(total)
}

/// Creates the file for `f` with its size and mode (never through a link).
fn create(root: &Beneath, f: &FileEntry) -> Result<std::fs::File> {
    let mode = f.tree.as_ref().map(|t| t.mode).unwrap_or(0o600);
    let file = root.create_file(&f.name, mode)?;
    file.set_len(f.size)
        .map_err(|e| Error::io("sizing", root.path().join(&f.name), e))?;
    Ok(file)
}

fn chunk_size(snap: &Snapshot, f: &FileEntry) -> Result<u64> {
    match f.chunking {
        Chunking::Fixed { size } => Ok(size as u64),
        Chunking::ContentDefined => Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!("file {} of a physical snapshot is not cut in pages", f.name),
        )),
    }
}

/// Writes chunks at their positions: `places` says where each distinct chunk goes.
fn place_chunks(
    repo: &Repository,
    index: &Index,
    files: &[std::fs::File],
    names: &[&str],
    places: &HashMap<ChunkId, Vec<(usize, u64)>>,
    progress: &dyn Progress,
) -> Result<u64> {
    let ids: Vec<ChunkId> = places.keys().copied().collect();
    let written = std::sync::atomic::AtomicU64::new(0);
    reader::fetch(repo, index, &ids, |chunks| {
        for (id, data) in chunks {
            for &(file, offset) in &places[id] {
                files[file]
                    .write_all_at(data, offset)
                    .map_err(|e| reader::output_error(names[file], e))?;
                written.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                progress.advance(data.len() as u64);
            }
        }
        Ok(())
    })?;
    Ok(written.into_inner())
}

/// Writes files of at most one list blob each, together.
fn write_group(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    root: &Beneath,
    group: &[&FileEntry],
    progress: &dyn Progress,
) -> Result<u64> {
    let object = Snapshot::object_key(&snap.id);
    let list_ids: Vec<ChunkId> = group
        .iter()
        .flat_map(|f| f.lists.iter())
        .map(|h| ChunkId::from_hex(h).ok_or_else(|| Error::corrupt(&object, "bad list id")))
        .collect::<Result<_>>()?;
    let lists: std::sync::Mutex<HashMap<ChunkId, Vec<u8>>> = Default::default();
    reader::fetch(repo, index, &list_ids, |chunks| {
        let mut l = lists.lock().expect("lock");
        for (id, data) in chunks {
            l.insert(*id, data.to_vec());
        }
        Ok(())
    })?;
    let lists = lists.into_inner().expect("lock");
    let mut handles = Vec::with_capacity(group.len());
    let mut places: HashMap<ChunkId, Vec<(usize, u64)>> = HashMap::new();
    for (i, f) in group.iter().enumerate() {
        handles.push(create(root, f)?);
        let Some(list) = f.lists.first() else {
            continue;
        };
        let size = chunk_size(snap, f)?;
        let id = ChunkId::from_hex(list).expect("checked above");
        let body = &lists[&id];
        if body.len() as u64 != f.chunks * 32 {
            return Err(Error::corrupt(
                &object,
                format!("the chunk list of {} has the wrong length", f.name),
            ));
        }
        for (pos, raw) in body.chunks_exact(32).enumerate() {
            let id = ChunkId(raw.try_into().expect("32 bytes"));
            places.entry(id).or_default().push((i, pos as u64 * size));
        }
    }
    let names: Vec<&str> = group.iter().map(|f| f.name.as_str()).collect();
    let n = place_chunks(repo, index, &handles, &names, &places, progress)?;
    for (h, f) in handles.iter().zip(group) {
        h.sync_data()
            .map_err(|e| Error::io("syncing", root.path().join(&f.name), e))?;
    }
    Ok(n)
}

/// Writes one file of many list blobs in order (the next step is fetched while one is
/// written), past the page cache ([`DirectFile`]), hashing as it goes: no read-back needed
/// for its checksum.
fn write_large(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    root: &Beneath,
    f: &FileEntry,
    progress: &dyn Progress,
) -> Result<u64> {
    struct Hashing<W> {
        out: W,
        hash: blake3::Hasher,
        bytes: u64,
    }
    impl<W: std::io::Write> std::io::Write for Hashing<W> {
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
    chunk_size(snap, f)?;
    let mut out = Hashing {
        out: DirectFile::new(create(root, f)?),
        hash: blake3::Hasher::new(),
        bytes: 0,
    };
    reader::stream_file(repo, index, snap, f, &mut out, progress)?;
    out.out
        .finish()
        .map_err(|e| reader::output_error(&f.name, e))?
        .sync_data()
        .map_err(|e| Error::io("syncing", root.path().join(&f.name), e))?;
    let want = f.tree.as_ref().and_then(|t| t.checksum.as_ref());
    if want.is_some_and(|w| *w != out.hash.finalize().to_hex().as_str()) || out.bytes != f.size {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!("restored file {} does not match its checksum", f.name),
        ));
    }
    Ok(out.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::snapshot::TreeEntry;

    fn entry(name: &str, tree: TreeEntry) -> FileEntry {
        FileEntry {
            name: name.into(),
            size: 0,
            chunks: 0,
            chunking: Chunking::Fixed { size: 8192 },
            lists: vec![],
            deltas: vec![],
            tree: Some(tree),
        }
    }

    /// Entries written as `name` (a file), `name/` (a directory) or `name -> to` (a link).
    fn snapshot(spec: &[&str]) -> Snapshot {
        let mut s = crate::repository::snapshot::tests::sample(&"ab".repeat(32), "t", &[]);
        s.files = spec
            .iter()
            .map(|e| {
                if let Some((name, to)) = e.split_once(" -> ") {
                    let link = Some(to.to_string());
                    entry(
                        name,
                        TreeEntry {
                            mode: 0o777,
                            link,
                            ..TreeEntry::default()
                        },
                    )
                } else if let Some(name) = e.strip_suffix('/').filter(|n| !n.is_empty()) {
                    entry(
                        name,
                        TreeEntry {
                            mode: 0o700,
                            dir: true,
                            ..TreeEntry::default()
                        },
                    )
                } else {
                    entry(
                        e,
                        TreeEntry {
                            mode: 0o600,
                            ..TreeEntry::default()
                        },
                    )
                }
            })
            .collect();
        s
    }

    #[test]
    fn names_that_would_leave_the_data_directory_are_refused() {
        let accepted: &[&[&str]] = &[
            &["global/", "global/pg_control", "base/1/1259"],
            &[
                "postgresql.conf -> /etc/postgresql/main.conf",
                "global/pg_control",
            ],
            // A tablespace's link is restored as a directory: its files may lie below it.
            &[
                "pg_tblspc/",
                "pg_tblspc/16384 -> /srv/ts",
                "pg_tblspc/16384/PG_15/5/16385",
            ],
            // Files listed before their directory: order does not matter.
            &["base/1/1259", "base/", "base/1/"],
            &["a..b", "..a", "a/.b"],
        ];
        for spec in accepted {
            check_names(&snapshot(spec)).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        }
        let refused: &[(&[&str], &str)] = &[
            (
                &["lnk -> /root/vault", "lnk/file"],
                r#""lnk/file" lies below "lnk""#,
            ),
            // Wherever the file comes in the list.
            (
                &["lnk/file", "lnk -> /root/vault"],
                r#""lnk/file" lies below "lnk""#,
            ),
            (
                &["a/", "a/lnk -> /", "a/lnk/b/c"],
                r#""a/lnk/b/c" lies below "a/lnk""#,
            ),
            (&["a -> .", "a/b"], "stores as a link"),
            (&["global", "global/pg_control"], "stores as a file"),
            // Below a tablespace's directory, another link is only a link.
            (
                &[
                    "pg_tblspc/1 -> /t",
                    "pg_tblspc/1/x -> /etc",
                    "pg_tblspc/1/x/y",
                ],
                "as a link",
            ),
            (
                &["pg_tblspc -> /etc", "pg_tblspc/1 -> /t"],
                r#"below "pg_tblspc""#,
            ),
            (&["../escape"], "not a plain relative path"),
            (&["a/../../escape"], "not a plain relative path"),
            (&["/etc/cron.d/x"], "not a plain relative path"),
            (&[""], "not a plain relative path"),
            (&["a//b"], "not a plain relative path"),
            (&["a/./b"], "not a plain relative path"),
            (&["."], "not a plain relative path"),
            (&["a\0b"], "not a plain relative path"),
            (&["x", "x"], "named twice"),
            (
                &["strongroom_tablespaces -> /etc"],
                "places tablespaces itself",
            ),
            (&["strongroom_tablespaces/1/x"], "places tablespaces itself"),
        ];
        for (spec, why) in refused {
            let snap = snapshot(spec);
            let e = check_names(&snap).expect_err(&format!("{spec:?} must be refused"));
            let said = e.to_string();
            assert!(e.is_damage(), "{said}");
            assert!(said.contains(why), "{spec:?}: {said}");
            assert!(said.contains(snap.short_id()), "{said}");
            assert!(said.contains("nothing was restored"), "{said}");
        }
    }
}

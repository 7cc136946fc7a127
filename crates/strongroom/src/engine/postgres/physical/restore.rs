//! Restoring a physical snapshot into a data directory, ready to recover to a point in time.
//!
//! Owns writing the tree (beside the target, in a directory only the restore knows; files
//! written page by page in parallel, checked against their checksums; `global/pg_control`
//! last, so a directory cut short cannot start), the recovery settings (`recovery.signal`,
//! never `recovery.conf`, gone since PostgreSQL 12; `restore_command` naming strongroom by
//! absolute path and holding no secret; `recovery_target_*` in `postgresql.auto.conf`), the
//! check that the archive holds the WAL the snapshot needs, and moving the result into
//! place through the restore safety sequence. Must not start servers (that is
//! [`super::verify`] and [`start`]).
//!
//! Tablespaces come back inside the restored data directory ([`TABLESPACES_DIR`]), linked
//! from `pg_tblspc/`, not at their original locations, which on the same host belong to the
//! cluster that was backed up.

use super::{BACKUP_LABEL, PG_CONTROL, TABLESPACE_MAP, keys, wal_included};
use crate::engine::postgres::cluster::Lsn;
use crate::engine::postgres::wal::{self, segment_name};
use crate::engine::{RecoveryTarget, RestoreOptions, Staged, Swapped, TargetState};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::interrupt::ScratchDir;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{Chunking, FileEntry, Snapshot};
use std::collections::HashMap;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Small files restored together: their chunk lists are fetched in one go.
const FILES_PER_GROUP: usize = 256;

/// What is at a data-directory target.
pub fn inspect(snap: &Snapshot, dir: &Path) -> Result<TargetState> {
    let _ = snap;
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TargetState::Absent),
        Err(e) => Err(Error::io("reading", dir, e)),
        Ok(m) if !m.is_dir() => Err(Error::Target(format!(
            "{} exists and is not a directory; give a data directory path",
            dir.display()
        ))),
        Ok(_) => {
            if let Some(pid) = running_postmaster(dir) {
                return Err(Error::Target(format!(
                    "a PostgreSQL server (pid {pid}) is running on {}; stop it before restoring over it",
                    dir.display()
                )));
            }
            let mut rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
            if rd.next().is_none() {
                Ok(TargetState::Empty)
            } else {
                Ok(TargetState::Occupied {
                    what: format!("data directory {} is not empty", dir.display()),
                    old: "data directory",
                })
            }
        }
    }
}

/// The pid in `dir/postmaster.pid` when that process is alive.
pub fn running_postmaster(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Checks that the archive holds the WAL `snap` needs to become consistent, and says how
/// far it can recover; fails naming the first missing segment.
pub fn check_wal(repo: &Repository, snap: &Snapshot, recovery: &RecoveryTarget) -> Result<()> {
    if wal_included(snap) {
        if !matches!(recovery, RecoveryTarget::Immediate | RecoveryTarget::Latest) {
            tracing::warn!(
                "snapshot {} carries its own WAL (archiving was not into this repository when it was taken): it restores to the end of its backup, not to later points",
                snap.short_id()
            );
        }
        return Ok(());
    }
    let Some(range) = &snap.wal else {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its WAL range",
        ));
    };
    let needs = wal::needs_of(std::slice::from_ref(snap));
    let Some(need) = needs.first() else {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its cluster's system identifier",
        ));
    };
    let seg = need.segment_size;
    let stop = Lsn::parse(&range.stop_lsn).unwrap_or(need.start);
    let (first, last) = (
        need.start.segment(seg),
        Lsn(stop.0.saturating_sub(1)).segment(seg),
    );
    if let Some((missing, _)) =
        wal::first_missing(repo, &need.cluster, range.timeline, first, last, seg)?
    {
        return Err(Error::WalGap(format!(
            "snapshot {} needs WAL segment {missing} to become consistent, and the archive of cluster {} lacks it: no point in time can be reached from this snapshot; restore an earlier or later snapshot (`strongroom wal verify` lists the gaps)",
            snap.short_id(),
            need.cluster
        )));
    }
    // Beyond the snapshot's end: the first gap on its timeline limits how far it can go.
    let listed = crate::repository::archive::Archive::new(repo, &need.cluster).list()?;
    let folder = format!("{:08X}", range.timeline);
    let mut n = last + 1;
    let present: std::collections::HashSet<&str> = listed
        .iter()
        .filter(|l| l.timeline == folder)
        .map(|l| l.name.as_str())
        .collect();
    let newest = listed
        .iter()
        .filter(|l| l.timeline == folder)
        .filter_map(|l| wal::WalName::parse(&l.name)?.segment_number(seg))
        .max()
        .unwrap_or(last);
    while n <= newest && present.contains(segment_name(range.timeline, n, seg).as_str()) {
        n += 1;
    }
    if n <= newest {
        let reach = Lsn(n * seg);
        let message = format!(
            "the WAL archive lacks segment {} after snapshot {}: recovery on timeline {} can reach at most {reach} (the end of segment {})",
            segment_name(range.timeline, n, seg),
            snap.short_id(),
            range.timeline,
            segment_name(range.timeline, n - 1, seg)
        );
        if let RecoveryTarget::Lsn(l) = recovery {
            if Lsn::parse(l).is_some_and(|t| t > reach) {
                return Err(Error::WalGap(message));
            }
        }
        tracing::warn!("{message}");
    }
    Ok(())
}

/// Restores `snap` into a new directory beside `target` and prepares its recovery.
pub fn stage(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    target: &Path,
    state: &TargetState,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Box<dyn Staged>> {
    check_wal(repo, snap, &opts.recovery)?;
    let target = std::path::absolute(target).map_err(|e| Error::io("resolving", target, e))?;
    let parent = target
        .parent()
        .ok_or_else(|| Error::Target(format!("{} has no parent directory", target.display())))?;
    if !parent.is_dir() {
        return Err(Error::Target(format!(
            "{} does not exist; create it first",
            parent.display()
        )));
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scratch = ScratchDir::new(
        parent,
        &format!(".{name}.strongroom-new-"),
        "partly restored data directory",
    )?;
    let dir = scratch.path().to_path_buf();
    let bytes = write_tree(repo, index, snap, &dir, &target, progress)?;
    let timeline = timeline_for(repo, snap)?;
    write_recovery(snap, &dir, &opts.recovery, timeline)?;
    // The lock file of the scratch directory must not be restored with the cluster.
    let _ = std::fs::remove_file(dir.join(".lock"));
    if let Some(owner) = owner_for(snap, &target, parent) {
        chown_tree(&dir, owner)?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("setting permissions of", &dir, e))?;
    crate::storage::sync_dir(&dir)?;
    Ok(Box::new(StagedDir {
        scratch: Some(scratch),
        dir,
        target,
        existed: state.exists(),
        old: None,
        bytes,
    }))
}

/// Restores `snap` into the new directory `dir` (a scratch place: no swap, no safety
/// sequence), ready to recover to `recovery`; owned as [`stage`] would own it.
pub fn restore_into(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    dir: &Path,
    recovery: &RecoveryTarget,
    progress: &dyn Progress,
) -> Result<u64> {
    check_wal(repo, snap, recovery)?;
    std::fs::create_dir(dir).map_err(|e| Error::io("creating", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("setting permissions of", dir, e))?;
    let bytes = write_tree(repo, index, snap, dir, dir, progress)?;
    let timeline = timeline_for(repo, snap)?;
    write_recovery(snap, dir, recovery, timeline)?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if let Some(owner) = owner_for(snap, Path::new("/nonexistent"), parent) {
        chown_tree(dir, owner)?;
    }
    Ok(bytes)
}

/// The owner of `path` when it is not root.
pub fn owner_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    (m.uid() != 0).then_some((m.uid(), m.gid()))
}

/// Writes every entry of the snapshot below `dir`; returns the bytes written.
fn write_tree(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    dir: &Path,
    final_dir: &Path,
    progress: &dyn Progress,
) -> Result<u64> {
    progress.begin("restore", Some(snap.size));
    let mut files: Vec<&FileEntry> = Vec::new();
    let mut control = None;
    for f in &snap.files {
        let rel = safe_relative(snap, &f.name)?;
        let path = dir.join(rel);
        let tree = f.tree.clone().unwrap_or_default();
        if tree.dir || (tree.link.is_some() && f.name.starts_with("pg_tblspc/")) {
            // A tablespace is written here first and moved below the data directory
            // afterwards (see `place_tablespaces`).
            std::fs::create_dir_all(&path).map_err(|e| Error::io("creating", &path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(tree.mode.max(0o700)))
                .map_err(|e| Error::io("setting permissions of", &path, e))?;
        } else if let Some(link) = &tree.link {
            std::os::unix::fs::symlink(link, &path)
                .map_err(|e| Error::io("creating link", &path, e))?;
        } else if f.name == TABLESPACE_MAP {
            // Left out: it would point the restored cluster at the original tablespaces.
        } else if f.name == PG_CONTROL {
            control = Some(f);
        } else {
            files.push(f);
        }
    }
    let mut bytes = write_files(repo, index, snap, dir, &files, progress)?;
    place_tablespaces(snap, dir, final_dir)?;
    // Everything else is on disk before the one file that makes the directory startable:
    // each file was synced when written, and now every directory (their entries).
    sync_directories(dir)?;
    let control = control.ok_or_else(|| {
        Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without global/pg_control",
        )
    })?;
    bytes += write_files(repo, index, snap, dir, &[control], progress)?;
    let path = dir.join(PG_CONTROL);
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing", &path, e))?;
    crate::storage::sync_dir(path.parent().expect("global/"))?;
    progress.end();
    Ok(bytes)
}

/// Where tablespaces come back: inside the restored data directory, linked from
/// `pg_tblspc/<oid>` as PostgreSQL requires (it refuses plain directories there at the end of
/// recovery). Their original locations belong to the cluster that was backed up.
pub const TABLESPACES_DIR: &str = "strongroom_tablespaces";

/// Moves each tablespace written at `pg_tblspc/<oid>` to [`TABLESPACES_DIR`]`/<oid>` and
/// links it from `pg_tblspc/<oid>`, by the path it will have once `dir` is `final_dir`.
fn place_tablespaces(snap: &Snapshot, dir: &Path, final_dir: &Path) -> Result<()> {
    let spaces: Vec<&str> = snap
        .files
        .iter()
        .filter(|f| f.tree.as_ref().is_some_and(|t| t.link.is_some()))
        .filter_map(|f| f.name.strip_prefix("pg_tblspc/"))
        .filter(|oid| !oid.contains('/'))
        .collect();
    if spaces.is_empty() {
        return Ok(());
    }
    let home = dir.join(TABLESPACES_DIR);
    std::fs::create_dir_all(&home).map_err(|e| Error::io("creating", &home, e))?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("setting permissions of", &home, e))?;
    for oid in spaces {
        let written = dir.join("pg_tblspc").join(oid);
        let placed = home.join(oid);
        std::fs::rename(&written, &placed).map_err(|e| Error::io("moving", &written, e))?;
        let link = final_dir.join(TABLESPACES_DIR).join(oid);
        std::os::unix::fs::symlink(&link, &written)
            .map_err(|e| Error::io("creating link", &written, e))?;
    }
    Ok(())
}

/// A stored name as a path below the data directory, refusing anything that would leave it.
fn safe_relative<'a>(snap: &Snapshot, name: &'a str) -> Result<&'a Path> {
    let p = Path::new(name);
    if name.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!("file name {name:?} would leave the data directory"),
        ));
    }
    Ok(p)
}

/// Writes `files` (grouped: many small files' chunks are fetched together, a large file's
/// window by window), then checks each against its checksum.
fn write_files(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    dir: &Path,
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
                    match write_large(repo, index, snap, dir, f, progress) {
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
            match write_group(repo, index, snap, dir, group, progress) {
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
                    let path = dir.join(&f.name);
                    let got = std::fs::File::open(&path).and_then(|mut file| {
                        let mut h = blake3::Hasher::new();
                        std::io::copy(&mut file, &mut h)?;
                        Ok(h.finalize().to_hex().to_string())
                    });
                    if got.as_deref().ok() != Some(want.as_str()) {
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

/// Creates the file for `f` with its size and mode.
fn create(dir: &Path, f: &FileEntry) -> Result<std::fs::File> {
    let path = dir.join(&f.name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("creating", &path, e))?;
    file.set_len(f.size)
        .map_err(|e| Error::io("sizing", &path, e))?;
    let mode = f.tree.as_ref().map(|t| t.mode).unwrap_or(0o600);
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting permissions of", &path, e))?;
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
    dir: &Path,
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
        handles.push(create(dir, f)?);
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
            .map_err(|e| Error::io("syncing", dir.join(&f.name), e))?;
    }
    Ok(n)
}

/// Writes one file of many list blobs in order (the next step is fetched while one is
/// written), hashing as it goes: no read-back needed for its checksum.
fn write_large(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    dir: &Path,
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
        out: create(dir, f)?,
        hash: blake3::Hasher::new(),
        bytes: 0,
    };
    reader::stream_file(repo, index, snap, f, &mut out, progress)?;
    out.out
        .sync_data()
        .map_err(|e| Error::io("syncing", dir.join(&f.name), e))?;
    let want = f.tree.as_ref().and_then(|t| t.checksum.as_ref());
    if want.is_some_and(|w| *w != out.hash.finalize().to_hex().as_str()) || out.bytes != f.size {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            format!("restored file {} does not match its checksum", f.name),
        ));
    }
    Ok(out.bytes)
}

/// Fsyncs `dir` and every directory below it (not following links), so the entries of the
/// files written there survive a crash. Files are synced one by one as they are written:
/// a `syncfs` would also wait for every other process's dirty data on the filesystem (on a
/// database host, the running cluster's), which can be gigabytes.
fn sync_directories(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let e = e.map_err(|e| Error::io("listing", dir, e))?;
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            sync_directories(&e.path())?;
        }
    }
    crate::storage::sync_dir(dir)
}

/// The recovery settings strongroom writes, one per line.
pub fn recovery_settings(
    recovery: &RecoveryTarget,
    program: &Path,
    timeline: Option<u32>,
) -> Vec<(String, String)> {
    let mut out = vec![(
        "restore_command".to_string(),
        format!("{} wal fetch %f %p", program.display()),
    )];
    let target = match recovery {
        RecoveryTarget::Latest => None,
        RecoveryTarget::Immediate => Some(("recovery_target", "immediate".to_string())),
        // PostgreSQL wants a numeric offset here: it refuses `Z` at start-up.
        RecoveryTarget::Time(t) => Some((
            "recovery_target_time",
            t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )),
        RecoveryTarget::Lsn(l) => Some(("recovery_target_lsn", l.clone())),
        RecoveryTarget::Xid(x) => Some(("recovery_target_xid", x.to_string())),
        RecoveryTarget::Name(n) => Some(("recovery_target_name", n.clone())),
    };
    if let Some((k, v)) = target {
        out.push((k.to_string(), v));
        out.push(("recovery_target_action".into(), "promote".into()));
    }
    out.push((
        "recovery_target_timeline".into(),
        timeline.map_or_else(|| "latest".to_string(), |t| t.to_string()),
    ));
    out
}

/// The timeline recovery follows: the newest archived timeline that descends from the
/// snapshot's position (its history names the snapshot's timeline with a switch point after
/// the snapshot's start), else the snapshot's own. PostgreSQL's `latest` would take the
/// newest timeline of all, and a restored copy that was promoted and archived into this
/// repository (a drill, say) forks a timeline the primary never took: recovery from a later
/// snapshot of the primary then stops with "requested timeline is not a child of this
/// server's history". `None` when the snapshot carries its own WAL (no archive to follow).
fn timeline_for(repo: &Repository, snap: &Snapshot) -> Result<Option<u32>> {
    if wal_included(snap) {
        return Ok(None);
    }
    let needs = wal::needs_of(std::slice::from_ref(snap));
    let Some(need) = needs.first() else {
        return Ok(None);
    };
    let archive = crate::repository::archive::Archive::new(repo, &need.cluster);
    let mut best = need.timeline;
    for l in archive.list()? {
        let Some(name) = wal::WalName::parse(&l.name) else {
            continue;
        };
        if name.kind != wal::WalKind::History || name.timeline <= best {
            continue;
        }
        let text = archive.get(&l.timeline, &l.name)?;
        if descends(&String::from_utf8_lossy(&text), need.timeline, need.start) {
            best = name.timeline;
        }
    }
    Ok(Some(best))
}

/// Whether a timeline whose history file reads `history` passes through timeline `tli` at
/// `at`: the line for `tli` switches away after `at`.
fn descends(history: &str, tli: u32, at: Lsn) -> bool {
    history.lines().any(|line| {
        let mut f = line.split_whitespace();
        matches!(
            (f.next().and_then(|t| t.parse::<u32>().ok()), f.next().and_then(Lsn::parse)),
            (Some(t), Some(switch)) if t == tli && switch > at
        )
    })
}

/// Quotes a value for postgresql.conf.
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// Writes `recovery.signal` and the recovery settings into `postgresql.auto.conf`, replacing
/// any recovery settings the cluster had (a snapshot of a restored cluster carries its own).
fn write_recovery(
    snap: &Snapshot,
    dir: &Path,
    recovery: &RecoveryTarget,
    timeline: Option<u32>,
) -> Result<()> {
    let program = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find strongroom's own path: {e}")))?;
    let program = std::fs::canonicalize(&program).unwrap_or(program);
    let auto = dir.join("postgresql.auto.conf");
    let old = std::fs::read_to_string(&auto).unwrap_or_default();
    let mut text: String = old
        .lines()
        .filter(|l| {
            let key = l.trim_start().split(['=', ' ', '\t']).next().unwrap_or("");
            !(key == "restore_command" || key.starts_with("recovery_target"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!(
        "# Recovery settings written by strongroom, restoring snapshot {}\n",
        snap.short_id()
    ));
    for (k, v) in recovery_settings(recovery, &program, timeline) {
        text.push_str(&format!("{k} = {}\n", conf_quote(&v)));
    }
    std::fs::write(&auto, text).map_err(|e| Error::io("writing", &auto, e))?;
    let signal = dir.join("recovery.signal");
    std::fs::write(&signal, "").map_err(|e| Error::io("writing", &signal, e))?;
    for f in [&auto, &signal] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("setting permissions of", f, e))?;
    }
    if !dir.join(BACKUP_LABEL).exists() {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its backup_label",
        ));
    }
    Ok(())
}

/// Who should own the restored files when strongroom runs as root: the target directory's
/// owner, else its parent's, when not root; else the data directory's owner at backup time.
/// PostgreSQL refuses to run as root, so a root-owned directory could never start.
fn owner_for(snap: &Snapshot, target: &Path, parent: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for p in [target, parent] {
        if let Ok(m) = std::fs::metadata(p) {
            if m.uid() != 0 {
                return Some((m.uid(), m.gid()));
            }
        }
    }
    let owner = snap.metadata.extra.get(keys::OWNER)?.as_array()?;
    let uid = owner.first()?.as_u64()? as u32;
    let gid = owner.get(1)?.as_u64()? as u32;
    (uid != 0).then_some((uid, gid))
}

fn chown_tree(dir: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
        .map_err(|e| Error::io("changing the owner of", dir, e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io("reading", dir, e))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
            let e = e.map_err(|e| Error::io("listing", dir, e))?;
            chown_tree(&e.path(), (uid, gid))?;
        }
    }
    Ok(())
}

/// A restored data directory beside its target.
struct StagedDir {
    scratch: Option<ScratchDir>,
    dir: PathBuf,
    target: PathBuf,
    existed: bool,
    old: Option<PathBuf>,
    bytes: u64,
}

impl Staged for StagedDir {
    fn target(&self) -> String {
        self.target.display().to_string()
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn ready(&mut self) -> Result<()> {
        Ok(())
    }

    fn swap(&mut self) -> Result<Swapped> {
        if let Some(pid) = running_postmaster(&self.target) {
            return Err(Error::Target(format!(
                "a PostgreSQL server (pid {pid}) started on {} during the restore; nothing was changed",
                self.target.display()
            )));
        }
        let parent = self.target.parent().expect("checked in stage");
        let mut old = None;
        if self.existed && self.target.exists() {
            let empty = std::fs::read_dir(&self.target)
                .map(|mut rd| rd.next().is_none())
                .unwrap_or(false);
            if empty {
                std::fs::remove_dir(&self.target)
                    .map_err(|e| Error::io("removing the empty directory", &self.target, e))?;
            } else {
                let aside = parent.join(format!(
                    ".{}.strongroom-old-{}",
                    self.target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    jiff::Timestamp::now().as_second()
                ));
                std::fs::rename(&self.target, &aside).map_err(|e| {
                    Error::io("moving the old data directory aside", &self.target, e)
                })?;
                old = Some(aside);
            }
        }
        if let Err(e) = std::fs::rename(&self.dir, &self.target) {
            if let Some(aside) = &old {
                let _ = std::fs::rename(aside, &self.target);
            }
            return Err(Error::io(
                "moving the restored directory into place",
                &self.target,
                e,
            ));
        }
        // Moved: the scratch directory's cleanup must not touch it any more.
        if let Some(s) = self.scratch.take() {
            s.keep();
        }
        let incomplete = crate::storage::sync_dir(parent)
            .err()
            .map(|e| e.to_string());
        self.old = old.clone();
        Ok(Swapped {
            old: old.map(|p| p.display().to_string()),
            moved_aside: Vec::new(),
            incomplete,
        })
    }

    fn discard_old(&mut self) -> Result<()> {
        if let Some(old) = self.old.take() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io("removing", &old, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_descends_from_a_position_only_when_it_forked_after_it() {
        // Timeline 3 forked from 2 at 0/9000000, which forked from 1 at 0/6000000.
        let history =
            "1\t0/6000000\tno recovery target specified\n\n2\t0/9000000\tafter transaction 750\n";
        let at = |s| Lsn::parse(s).unwrap();
        assert!(
            descends(history, 1, at("0/5000028")),
            "forked after the snapshot"
        );
        assert!(!descends(history, 1, at("0/7000028")), "forked before it");
        assert!(descends(history, 2, at("0/8000000")));
        assert!(!descends(history, 4, at("0/1000000")), "not in its history");
        assert!(!descends("garbage\n", 1, at("0/1")));
    }

    #[test]
    fn recovery_settings_name_the_target_promote_and_hold_no_secret() {
        let t: jiff::Timestamp = "2026-12-01T22:59:00.5Z".parse().unwrap();
        let s = recovery_settings(
            &RecoveryTarget::Time(t),
            Path::new("/usr/local/bin/strongroom"),
            Some(2),
        );
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("restore_command"),
            Some("/usr/local/bin/strongroom wal fetch %f %p")
        );
        assert_eq!(
            get("recovery_target_time"),
            Some("2026-12-01 22:59:00.500000+00"),
            "a numeric offset: PostgreSQL refuses Z"
        );
        assert_eq!(get("recovery_target_action"), Some("promote"));
        assert_eq!(get("recovery_target_timeline"), Some("2"));
        let latest = recovery_settings(&RecoveryTarget::Latest, Path::new("/x"), None);
        assert!(
            latest
                .iter()
                .all(|(k, _)| !k.starts_with("recovery_target_action"))
        );
        assert!(
            latest
                .iter()
                .any(|(k, v)| k == "recovery_target_timeline" && v == "latest")
        );
    }
}

//! Exporting a physical snapshot: one tar of a data directory that PostgreSQL starts on by
//! itself, with no strongroom and no WAL archive.
//!
//! What the tar holds, for `tar -xf FILE -C DIR` into an empty directory (members are
//! relative, as in `pg_basebackup`'s `base.tar`):
//! - every directory, link and file of the snapshot, with its mode and time, owned by the
//!   data directory's recorded uid and gid and named `postgres` (as `pg_basebackup` names
//!   them), and `backup_label` as `pg_backup_stop` returned it;
//! - the WAL from the snapshot's start segment to its stop segment in `pg_wal/` (from the
//!   repository's archive, or the snapshot's own when it carries them), the timeline's
//!   history file when archived, and a `.done` mark per file in `pg_wal/archive_status/`,
//!   as `pg_basebackup` writes, so a copy that archives never re-archives them. Started on
//!   the extracted directory, PostgreSQL sees `backup_label`, replays that WAL from the
//!   label's checkpoint (crash recovery: no `recovery.signal`, no `restore_command`), passes
//!   the backup's end and opens, consistent;
//! - `archive_mode = 'off'` appended to `postgresql.auto.conf`: the copy must not run the
//!   source's `archive_command` (`strongroom wal push` would push a copy's WAL under the
//!   source's cluster, and elsewhere the command is missing and `pg_wal` fills up).
//!   `ALTER SYSTEM RESET archive_mode` undoes it. A cluster that kept its configuration
//!   elsewhere (Debian) gets the same minimal `postgresql.conf` and `pg_hba.conf` a restored
//!   copy gets (`super::recovery`), or it could not start at all;
//! - tablespaces inside the data directory, under `strongroom_tablespaces/<oid>`, linked by
//!   a *relative* link from `pg_tblspc/<oid>`, and no `tablespace_map`: `pg_basebackup -Ft`
//!   writes one tar per tablespace and a map pointing at the original locations, which on
//!   another host do not exist and on this one belong to the source. One self-contained tar
//!   extracts anywhere; the layout is the one `restore` makes.
//! - `global/pg_control` last, as `pg_basebackup` and `restore` do: a tar cut short lacks it
//!   and cannot start.
//!
//! The snapshot's names are checked first by the restore's own rule (`tree::check_names`):
//! a forged manifest cannot smuggle `../` or a member below a link into a tar that root
//! later extracts. The WAL the snapshot needs is checked before anything is written.
//!
//! Memory: files up to 16 MiB are fetched in groups of up to 32 MiB (their chunk lists and
//! chunks together: one round of reads per group instead of two per file, which matters on
//! S3 with thousands of small files) and written in order; larger files stream through
//! `reader::stream_file`; WAL files one at a time. Every file is checked against its
//! recorded length and checksum as it passes. Must not write anything but the tar stream.

use super::tree::{TABLESPACES_DIR, check_names, is_tablespace};
use super::{BACKUP_LABEL, PG_CONTROL, PhysicalMetadata, TABLESPACE_MAP, WAL_PREFIX, recovery};
use crate::engine::export::{ExportFile, Hashing, check_copy, copy_file};
use crate::engine::postgres::wal::{self, WalKind, WalName, segment_name, timeline_folder};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::pipe::{ChannelReader, ChannelWriter};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::archive::Archive;
use crate::repository::index::Index;
use crate::repository::reader;
use crate::repository::snapshot::{FileEntry, Snapshot};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use tar::{EntryType, Header};

/// The one file a physical export writes.
pub const TAR: ExportFile = ExportFile {
    suffix: "",
    what: "tar of the data directory with the WAL it needs to start",
};

/// Files up to this size are fetched with others; larger ones stream.
const SMALL_FILE: u64 = 16 << 20;
/// Bytes of small files fetched together (held in memory while written).
const GROUP_BYTES: u64 = 32 << 20;
/// The configuration file the export appends to.
const AUTO_CONF: &str = "postgresql.auto.conf";
/// `pg_wal`'s archive status directory.
const ARCHIVE_STATUS: &str = "pg_wal/archive_status";

/// Owner, names and time given to members.
struct Stamp {
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Stamp {
    fn header(&self, kind: EntryType, mode: u32, size: u64, mtime_ns: Option<i64>) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        // Permission bits only: no set-id bit reaches whoever extracts it as root.
        h.set_mode(mode & 0o777);
        h.set_size(size);
        h.set_mtime(
            mtime_ns
                .map(|ns| (ns.max(0) / 1_000_000_000) as u64)
                .unwrap_or(self.mtime),
        );
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        // As pg_basebackup names them: extracted as root, the files belong to the local
        // postgres user whatever its uid.
        let _ = h.set_username("postgres");
        let _ = h.set_groupname("postgres");
        h
    }
}

/// The WAL a snapshot that relies on the archive needs, checked present.
struct WalPlan {
    cluster: String,
    folder: String,
    /// Segments from start to stop, then the timeline's history file when archived.
    names: Vec<String>,
    segment_size: u64,
}

/// The WAL from `snap`'s start segment to its stop segment on its timeline, and its
/// timeline's history file when archived; `None` when the snapshot carries its WAL. Fails
/// naming the first segment the archive lacks.
fn wal_plan(repo: &Repository, snap: &Snapshot) -> Result<Option<WalPlan>> {
    if PhysicalMetadata::of(snap).wal_included {
        return Ok(None);
    }
    let needs = wal::needs_of(std::slice::from_ref(snap));
    let Some(need) = needs.first() else {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its WAL range or its cluster's system identifier",
        ));
    };
    let (tli, seg) = (need.timeline, need.segment_size);
    let folder = timeline_folder(tli);
    let listed = Archive::new(repo, &need.cluster).list()?;
    let present: HashSet<&str> = listed
        .iter()
        .filter(|l| l.timeline == folder)
        .map(|l| l.name.as_str())
        .collect();
    let mut names = Vec::new();
    for n in need.start.segment(seg)..=need.stop.segment_before(seg) {
        let name = segment_name(tli, n, seg);
        if !present.contains(name.as_str()) {
            return Err(Error::WalGap(format!(
                "snapshot {} needs WAL segment {name} to become consistent, and the archive of cluster {} lacks it: a data directory exported from it could never start; export another snapshot (`strongroom wal verify` lists the gaps)",
                snap.short_id(),
                need.cluster
            )));
        }
        names.push(name);
    }
    let history = format!("{tli:08X}.history");
    if tli > 1 && present.contains(history.as_str()) {
        names.push(history);
    }
    Ok(Some(WalPlan {
        cluster: need.cluster.clone(),
        folder,
        names,
        segment_size: seg,
    }))
}

/// Where a stored name goes in the tar: a tablespace's files move from `pg_tblspc/<oid>/…`
/// to `strongroom_tablespaces/<oid>/…`.
fn placed(name: &str, spaces: &BTreeSet<String>) -> String {
    if let Some(rest) = name.strip_prefix("pg_tblspc/") {
        let (oid, below) = rest.split_once('/').unwrap_or((rest, ""));
        if spaces.contains(oid) && !below.is_empty() {
            return format!("{TABLESPACES_DIR}/{oid}/{below}");
        }
    }
    name.to_string()
}

/// The settings appended to `postgresql.auto.conf`.
fn archive_off(snap: &Snapshot) -> String {
    format!(
        "# Written by strongroom export of snapshot {}: a copy must not run the source's
# archive_command (it would archive into the source's WAL archive, or fail and fill pg_wal).
# Set archiving for this copy's own archive, or undo this with ALTER SYSTEM RESET archive_mode.
archive_mode = 'off'
",
        snap.short_id()
    )
}

/// Writes `snap` as a tar (see the module docs) to `out`.
pub fn export(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<()> {
    check_names(snap)?;
    if !snap.files.iter().any(|f| f.name == BACKUP_LABEL) {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its backup_label",
        ));
    }
    let control = snap
        .files
        .iter()
        .find(|f| f.name == PG_CONTROL)
        .ok_or_else(|| {
            Error::corrupt(
                Snapshot::object_key(&snap.id),
                "a physical snapshot without global/pg_control",
            )
        })?;
    let wal = wal_plan(repo, snap)?;
    let facts = PhysicalMetadata::of(snap);
    let (uid, gid) = facts.owner.unwrap_or((0, 0));
    let stamp = Stamp {
        uid: uid as u64,
        gid: gid as u64,
        mtime: snap.finished_at.as_second().max(0) as u64,
    };
    let spaces: BTreeSet<String> = snap
        .files
        .iter()
        .filter(|f| is_tablespace(f))
        .filter_map(|f| f.name.strip_prefix("pg_tblspc/").map(str::to_string))
        .collect();

    // Directories first (a parent sorts before its children), then links, then files.
    let mut dirs: BTreeSet<(String, u32)> = BTreeSet::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut files: Vec<&FileEntry> = Vec::new();
    let mut auto_conf: Option<&FileEntry> = None;
    for f in &snap.files {
        let tree = f.tree.clone().unwrap_or_default();
        if is_tablespace(f) {
            let oid = f.name.trim_start_matches("pg_tblspc/");
            dirs.insert((format!("{TABLESPACES_DIR}/{oid}"), 0o700));
            links.push((f.name.clone(), format!("../{TABLESPACES_DIR}/{oid}")));
        } else if tree.dir {
            dirs.insert((placed(&f.name, &spaces), tree.mode));
        } else if let Some(link) = &tree.link {
            if f.name == AUTO_CONF {
                tracing::warn!(
                    "snapshot {} stores {AUTO_CONF} as a link; the export holds a file with only its own settings instead",
                    snap.short_id()
                );
            } else {
                links.push((placed(&f.name, &spaces), link.clone()));
            }
        } else if f.name == TABLESPACE_MAP || f.name == PG_CONTROL {
            // The map would send the copy to the original tablespaces; pg_control comes last.
        } else if f.name == AUTO_CONF {
            auto_conf = Some(f);
        } else {
            files.push(f);
        }
    }
    if !spaces.is_empty() {
        dirs.insert((TABLESPACES_DIR.to_string(), 0o700));
    }
    let have_dir = |name: &str, dirs: &BTreeSet<(String, u32)>| dirs.iter().any(|(d, _)| d == name);
    for d in ["pg_wal", ARCHIVE_STATUS] {
        if !have_dir(d, &dirs) {
            dirs.insert((d.to_string(), 0o700));
        }
    }

    let wal_bytes = wal
        .as_ref()
        .map_or(0, |w| w.names.len() as u64 * w.segment_size);
    progress.begin("export", Some(snap.size + wal_bytes));
    let mut tar = tar::Builder::new(out);
    let written = (|| -> Result<()> {
        for (name, mode) in &dirs {
            let mut h = stamp.header(EntryType::Directory, *mode, 0, None);
            append(&mut tar, &mut h, name, std::io::empty())?;
        }
        for (name, target) in &links {
            let mut h = stamp.header(EntryType::Symlink, 0o777, 0, None);
            tar.append_link(&mut h, name, target)
                .map_err(|e| reader::output_error(name, e))?;
        }
        let mut group: Vec<&FileEntry> = Vec::new();
        let mut group_bytes = 0u64;
        for f in files {
            if f.size > SMALL_FILE {
                write_group(
                    &mut tar, repo, index, snap, &group, &spaces, &stamp, progress,
                )?;
                group.clear();
                group_bytes = 0;
                write_large(&mut tar, repo, index, snap, f, &spaces, &stamp, progress)?;
                continue;
            }
            if group_bytes + f.size > GROUP_BYTES {
                write_group(
                    &mut tar, repo, index, snap, &group, &spaces, &stamp, progress,
                )?;
                group.clear();
                group_bytes = 0;
            }
            group_bytes += f.size;
            group.push(f);
        }
        write_group(
            &mut tar, repo, index, snap, &group, &spaces, &stamp, progress,
        )?;

        // postgresql.auto.conf, with archiving off.
        let mut conf = match auto_conf {
            Some(f) => {
                let bytes = read_small(repo, index, snap, f)?;
                progress.advance(f.size);
                bytes
            }
            None => Vec::new(),
        };
        if !conf.is_empty() && !conf.ends_with(b"\n") {
            conf.push(b'\n');
        }
        conf.extend_from_slice(archive_off(snap).as_bytes());
        let (mode, mtime) = auto_conf
            .and_then(|f| f.tree.as_ref())
            .map_or((0o600, None), |t| (t.mode, t.mtime_ns));
        let mut h = stamp.header(EntryType::Regular, mode, conf.len() as u64, mtime);
        append(&mut tar, &mut h, AUTO_CONF, &conf[..])?;
        if super::config_elsewhere(snap) {
            let mut h = stamp.header(
                EntryType::Regular,
                0o600,
                recovery::MINIMAL_CONF.len() as u64,
                None,
            );
            append(&mut tar, &mut h, "postgresql.conf", recovery::MINIMAL_CONF)?;
            if !snap.files.iter().any(|f| f.name == "pg_hba.conf") {
                let hba = recovery::HOST_ONLY_HBA;
                let mut h = stamp.header(EntryType::Regular, 0o600, hba.len() as u64, None);
                append(&mut tar, &mut h, "pg_hba.conf", hba)?;
            }
        }

        // The WAL, and its .done marks: from the archive, or the snapshot's own.
        let mut done: Vec<String> = snap
            .files
            .iter()
            .filter_map(|f| f.name.strip_prefix(WAL_PREFIX))
            .filter(|n| WalName::parse(n).is_some_and(|w| w.kind != WalKind::Partial))
            .map(str::to_string)
            .collect();
        if let Some(w) = &wal {
            let archive = Archive::new(repo, &w.cluster);
            for name in &w.names {
                let data = archive.get(&w.folder, name)?;
                let segment = WalName::parse(name).is_some_and(|n| n.kind == WalKind::Segment);
                if segment && data.len() as u64 != w.segment_size {
                    return Err(Error::corrupt(
                        archive.object_key(&w.folder, name),
                        format!(
                            "a WAL segment of {} bytes, where the cluster's segments are {}",
                            data.len(),
                            w.segment_size
                        ),
                    ));
                }
                let mut h = stamp.header(EntryType::Regular, 0o600, data.len() as u64, None);
                append(&mut tar, &mut h, &format!("{WAL_PREFIX}{name}"), &data[..])?;
                progress.advance(if segment { data.len() as u64 } else { 0 });
                done.push(name.clone());
            }
        }
        for name in done {
            let mut h = stamp.header(EntryType::Regular, 0o600, 0, None);
            append(
                &mut tar,
                &mut h,
                &format!("{ARCHIVE_STATUS}/{name}.done"),
                std::io::empty(),
            )?;
        }

        // Last: without it the directory cannot start.
        write_group(
            &mut tar,
            repo,
            index,
            snap,
            &[control],
            &spaces,
            &stamp,
            progress,
        )?;
        tar.finish()
            .map_err(|e| reader::output_error("the tar's end", e))?;
        Ok(())
    })();
    progress.end();
    written
}

/// Appends one member, naming the stored file in a failure.
fn append(
    tar: &mut tar::Builder<&mut dyn Write>,
    h: &mut Header,
    name: &str,
    data: impl std::io::Read,
) -> Result<()> {
    tar.append_data(h, name, data)
        .map_err(|e| reader::output_error(name, e))
}

/// The bytes of a small stored file, checked.
fn read_small(repo: &Repository, index: &Index, snap: &Snapshot, f: &FileEntry) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(f.size as usize);
    copy_file(repo, index, snap, f, &mut out, &crate::progress::Silent)?;
    Ok(out)
}

/// Writes small files together: their chunk lists in one round of reads, their chunks in a
/// second, then each file in order, checked against its length and checksum.
#[allow(clippy::too_many_arguments)]
fn write_group(
    tar: &mut tar::Builder<&mut dyn Write>,
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    group: &[&FileEntry],
    spaces: &BTreeSet<String>,
    stamp: &Stamp,
    progress: &dyn Progress,
) -> Result<()> {
    if group.is_empty() {
        return Ok(());
    }
    let object = Snapshot::object_key(&snap.id);
    let parse =
        |h: &String| ChunkId::from_hex(h).ok_or_else(|| Error::corrupt(&object, "bad list id"));
    let list_ids: Vec<ChunkId> = group
        .iter()
        .flat_map(|f| f.lists.iter())
        .map(parse)
        .collect::<Result<_>>()?;
    let lists = fetch_all(repo, index, &list_ids)?;
    let mut per_file: Vec<Vec<ChunkId>> = Vec::with_capacity(group.len());
    for f in group {
        let mut ids = Vec::with_capacity(f.chunks as usize);
        for l in &f.lists {
            let body = &lists[&parse(l)?];
            if body.len() % 32 != 0 {
                return Err(Error::corrupt(&object, "chunk list of odd length"));
            }
            ids.extend(
                body.chunks_exact(32)
                    .map(|raw| ChunkId(raw.try_into().expect("32 bytes"))),
            );
        }
        if ids.len() as u64 != f.chunks {
            return Err(Error::corrupt(
                &object,
                format!(
                    "file {} lists {} chunks, manifest says {}",
                    f.name,
                    ids.len(),
                    f.chunks
                ),
            ));
        }
        per_file.push(ids);
    }
    drop(lists);
    let all: Vec<ChunkId> = per_file.iter().flatten().copied().collect();
    let chunks = fetch_all(repo, index, &all)?;
    for (f, ids) in group.iter().zip(&per_file) {
        let mut data = Vec::with_capacity(f.size as usize);
        let mut w = Hashing::new(&mut data);
        for id in ids {
            w.write_all(&chunks[id])
                .map_err(|e| reader::output_error(&f.name, e))?;
        }
        let (bytes, hash) = (w.bytes, w.hash);
        check_copy(snap, f, bytes, &hash)?;
        let (mode, mtime) = f
            .tree
            .as_ref()
            .map_or((0o600, None), |t| (t.mode, t.mtime_ns));
        let mut h = stamp.header(EntryType::Regular, mode, data.len() as u64, mtime);
        append(tar, &mut h, &placed(&f.name, spaces), &data[..])?;
        progress.advance(f.size);
    }
    Ok(())
}

/// Every distinct chunk of `ids`, fetched and verified.
fn fetch_all(
    repo: &Repository,
    index: &Index,
    ids: &[ChunkId],
) -> Result<HashMap<ChunkId, Vec<u8>>> {
    let got: std::sync::Mutex<HashMap<ChunkId, Vec<u8>>> = Default::default();
    reader::fetch(repo, index, ids, |chunks| {
        let mut g = got.lock().expect("lock");
        for (id, data) in chunks {
            g.insert(*id, data.to_vec());
        }
        Ok(())
    })?;
    Ok(got.into_inner().expect("lock"))
}

/// Streams one large file into its member: the repository reader writes into a bounded pipe
/// on one thread while the tar reads it on this one.
#[allow(clippy::too_many_arguments)]
fn write_large(
    tar: &mut tar::Builder<&mut dyn Write>,
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    f: &FileEntry,
    spaces: &BTreeSet<String>,
    stamp: &Stamp,
    progress: &dyn Progress,
) -> Result<()> {
    let (mode, mtime) = f
        .tree
        .as_ref()
        .map_or((0o600, None), |t| (t.mode, t.mtime_ns));
    let mut h = stamp.header(EntryType::Regular, mode, f.size, mtime);
    let name = placed(&f.name, spaces);
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(4);
    let (appended, copied) = std::thread::scope(|s| {
        let copier = s.spawn(move || {
            let mut w = ChannelWriter(tx);
            copy_file(repo, index, snap, f, &mut w, progress)
        });
        // The reader is dropped when the member is written (or failed), which stops the
        // copier if it is still sending.
        let appended = append(tar, &mut h, &name, ChannelReader::new(rx, false));
        (appended, copier.join().expect("export reader thread"))
    });
    match (appended, copied) {
        // The repository's failure (damage, a short file) first: the member is then wrong.
        (_, Err(e)) if !reader::is_output_error(&e) => Err(e),
        // The tar's own failure (a full disk) over the copier's closed pipe.
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablespace_files_move_inside_and_nothing_else_does() {
        let spaces: BTreeSet<String> = ["16384".to_string()].into();
        assert_eq!(
            placed("pg_tblspc/16384/PG_15_202209061/5/16385", &spaces),
            "strongroom_tablespaces/16384/PG_15_202209061/5/16385"
        );
        assert_eq!(placed("pg_tblspc/16384", &spaces), "pg_tblspc/16384");
        assert_eq!(placed("pg_tblspc/99/x", &spaces), "pg_tblspc/99/x");
        assert_eq!(placed("base/1/1259", &spaces), "base/1/1259");
    }
}

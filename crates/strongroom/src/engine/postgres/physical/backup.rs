//! Taking a physical snapshot: `pg_backup_start`, every file of the data directory through
//! one writer session, `pg_backup_stop`, and the WAL the snapshot needs.
//!
//! Owns the non-exclusive backup protocol (one session holds the backup open; if strongroom
//! dies, the session ends and PostgreSQL aborts the backup by itself), what is left out of a
//! data directory (what `pg_basebackup` leaves out: runtime state PostgreSQL rebuilds at
//! start), and the rule that decides whether a snapshot can rely on the WAL archive: only if
//! every segment from its start to its stop is in this repository's archive once the backup
//! stopped. Otherwise it carries those segments itself, says so, and is restorable to its end.
//!
//! Incremental without chains: files are cut into 8 KiB chunks at page boundaries, and a
//! page that an earlier snapshot stored is not stored again; every snapshot lists all of its
//! pages, so each restores on its own and none depends on another being kept.

use super::{BACKUP_LABEL, PhysicalMetadata, TABLESPACE_MAP, WAL_PREFIX};
use crate::chunker::FixedBatcher;
use crate::engine::Captured;
use crate::engine::postgres::archiver::{self, Counts};
use crate::engine::postgres::cluster::{self, Lsn};
use crate::engine::postgres::logical::catalog::{row_counts, schema_version};
use crate::engine::postgres::logical::facts;
use crate::engine::postgres::server::Conn;
use crate::engine::postgres::wal::{self, segment_name};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::snapshot::{BackupKind, Chunking, Metadata, Snapshot, TreeEntry, WalRange};
use crate::repository::writer::{BackupWriter, ChunkSink};
use crate::source::{RowCounts, Source};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Directories whose contents are runtime state PostgreSQL recreates (kept as empty
/// directories), as `pg_basebackup` leaves them out.
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];

/// Top-level files left out: the running server's own, and what a restore writes anew.
const SKIPPED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "backup_manifest",
    "recovery.signal",
    "standby.signal",
];

/// Whether a directory entry is left out of the snapshot (`rel` is relative to the data
/// directory, `/`-separated).
fn skipped(rel: &str, name: &str) -> bool {
    if !rel.contains('/') && SKIPPED_FILES.contains(&rel) {
        return true;
    }
    // Tablespaces a restore placed inside the data directory are stored through their
    // links in pg_tblspc, like any tablespace.
    if rel == super::tree::TABLESPACES_DIR {
        return true;
    }
    name.starts_with("pg_internal.init") || name.starts_with("pgsql_tmp")
}

/// What the server says about itself, read before the backup starts.
struct ServerFacts {
    data_dir: String,
    system_id: String,
    segment_size: u64,
    block_size: u32,
    /// Archiving is on and `archive_command` runs strongroom.
    archives_here: bool,
    /// The archiver's last attempt failed.
    archiver_failing: bool,
    wal_level: String,
    /// `wal receive` streams from this server (a client named `strongroom` is streaming):
    /// the segments a backup needs reach the archive that way too.
    streams_here: bool,
}

fn server_facts(client: &mut postgres::Client, conn: &Conn) -> Result<ServerFacts> {
    let row = client
        .query_one(
            "SELECT current_setting('data_directory'), \
                    (SELECT system_identifier FROM pg_control_system())::text, \
                    pg_size_bytes(current_setting('wal_segment_size'))::int8, \
                    current_setting('block_size')::int4, \
                    current_setting('archive_mode'), current_setting('archive_command'), \
                    COALESCE((SELECT last_failed_time > COALESCE(last_archived_time, '-infinity') \
                              FROM pg_stat_archiver), false), \
                    current_setting('wal_level'), \
                    EXISTS (SELECT 1 FROM pg_stat_replication \
                            WHERE application_name = 'strongroom' AND state = 'streaming')",
            &[],
        )
        .map_err(|e| {
            Error::Source(format!(
                "reading the server's settings for a physical backup: {} (the role needs to be a superuser or a member of pg_read_all_settings and pg_monitor)",
                conn.explain(&e)
            ))
        })?;
    let mode: String = row.get(4);
    let command: String = row.get(5);
    Ok(ServerFacts {
        data_dir: row.get(0),
        system_id: row.get(1),
        segment_size: row.get::<_, i64>(2) as u64,
        block_size: row.get::<_, i32>(3) as u32,
        archives_here: mode != "off" && command.contains("strongroom") && command.contains("wal"),
        streams_here: row.get(8),
        archiver_failing: row.get(6),
        wal_level: row.get(7),
    })
}

/// The line `KEY: value` of a backup label.
fn label_field<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Takes a physical snapshot of the cluster serving `url`.
pub fn backup(
    source: &Source,
    url: &str,
    writer: &BackupWriter<'_>,
    progress: &dyn Progress,
) -> Result<Captured> {
    let conn = Conn::parse(url)?;
    let mut client = conn.connect()?;
    let f = facts(&mut client, &conn)?;
    if f.major() < 15 {
        return Err(Error::Unsupported(format!(
            "physical backups need PostgreSQL 15 or newer (pg_backup_start); the server at {} runs {}",
            conn.server(),
            f.version
        )));
    }
    let (may_reserve, may_backup): (bool, bool) = client
        .query_one(
            "SELECT r.rolsuper OR r.rolreplication, \
                    has_function_privilege('pg_backup_start(text, boolean)', 'EXECUTE') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .map_err(|e| Error::Source(conn.explain(&e)))?;
    if !may_backup {
        return Err(Error::Source(format!(
            "role {} may not run pg_backup_start on {}: grant it REPLICATION and EXECUTE on pg_backup_start and pg_backup_stop, or use a superuser",
            conn.user(),
            conn.server()
        )));
    }
    let s = server_facts(&mut client, &conn)?;
    if s.wal_level == "minimal" {
        return Err(Error::Source(format!(
            "the server at {} runs with wal_level = minimal, which cannot make an online backup: set wal_level = replica and restart it",
            conn.server()
        )));
    }
    let data_dir = Path::new(&s.data_dir);
    let local = cluster::identify(data_dir).map_err(|e| {
        Error::Source(format!(
            "the server's data directory {} cannot be read on this host ({e}); run the physical backup on the database host, as root or the server's system user",
            data_dir.display()
        ))
    })?;
    if local.system_id() != s.system_id {
        return Err(Error::WrongCluster(format!(
            "{} on this host belongs to cluster {}, but the server at {} is cluster {}: it runs on another host; run the backup there",
            data_dir.display(),
            local.system_id(),
            conn.server(),
            s.system_id
        )));
    }
    let parent = parent_of(writer, source, &s.system_id)?;
    let repo = writer.repository();
    let owner = std::fs::metadata(data_dir)
        .map(|m| (m.uid(), m.gid()))
        .map_err(|e| Error::io("reading", data_dir, e))?;

    // Keeps every WAL segment from here on in pg_wal until this session ends, so the
    // segments the snapshot may have to carry cannot be recycled under it. Temporary: it
    // goes away with the session, also when strongroom is killed.
    let slot = format!("strongroom_{}", std::process::id());
    if !may_reserve {
        tracing::info!(
            "the role may not create replication slots; WAL is not reserved during the backup"
        );
    } else if let Err(e) = client.execute(
        "SELECT pg_create_physical_replication_slot($1, true, true)",
        &[&slot],
    ) {
        tracing::warn!(
            "could not reserve WAL with a temporary replication slot ({}); WAL the snapshot may need could be recycled before it is read",
            conn.explain(&e)
        );
    }
    let total: Option<i64> = client
        .query_one(
            "SELECT sum(pg_database_size(oid))::int8 FROM pg_database",
            &[],
        )
        .ok()
        .and_then(|r| r.get(0));
    let label = format!("strongroom {}", jiff::Timestamp::now());
    let start: String = client
        .query_one("SELECT pg_backup_start($1, true)::text", &[&label])
        .map_err(|e| {
            Error::Source(format!(
                "pg_backup_start was refused: {} (the role needs REPLICATION, or EXECUTE on pg_backup_start and pg_backup_stop)",
                conn.explain(&e)
            ))
        })?
        .get(0);
    tracing::info!(server = %conn.display(), start = %start, data_dir = %data_dir.display(), "physical backup started");
    crate::fault::pause("after-backup-start");
    let counts = row_counts(&mut client, &conn, RowCounts::Estimate)?;
    let superuser: Option<String> = client
        .query_opt("SELECT rolname::text FROM pg_roles WHERE oid = 10", &[])
        .ok()
        .flatten()
        .map(|r| r.get(0));
    let schema = schema_version(&mut client, &conn, source.schema_version_query.as_deref())?;

    let chunking = Chunking::Fixed {
        size: s.block_size.max(4096),
    };
    let coding = writer.coding_for(chunking);
    progress.begin("physical", total.map(|t| t as u64));
    let mut stopped = None;
    let mut tablespaces = BTreeMap::new();
    let mut reused = (0u64, 0u64);
    let reuse = parent.as_ref().map(|p| Reuse::new(writer, p));
    let files = writer.write_files(coding, progress, |sink| {
        let mut walker = Walker {
            sink,
            chunking,
            tablespaces: &mut tablespaces,
            reuse: reuse.as_ref(),
            reused: &mut reused,
        };
        walker.dir(data_dir, "")?;
        let stop = stop_backup(&mut client, &conn)?;
        let tli: u32 = label_field(&stop.label, "START TIMELINE")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::Source("the backup label names no START TIMELINE".into()))?;
        walker.bytes(BACKUP_LABEL, stop.label.as_bytes(), 0o600)?;
        if let Some(map) = &stop.tablespace_map {
            walker.bytes(TABLESPACE_MAP, map.as_bytes(), 0o600)?;
        }
        let start_lsn = label_field(&stop.label, "START WAL LOCATION")
            .and_then(|v| v.split_whitespace().next())
            .and_then(Lsn::parse)
            .ok_or_else(|| Error::Source("the backup label names no START WAL LOCATION".into()))?;
        let (first, last) = (
            start_lsn.segment(s.segment_size),
            stop.lsn.segment_before(s.segment_size),
        );
        let missing = await_archive(&mut client, &s, stop.archived, || {
            wal::first_missing(repo, &s.system_id, tli, first, last, s.segment_size)
        })?;
        let included = match (&missing, s.archives_here || s.streams_here) {
            (None, true) => false,
            (missing, here) => {
                let why = if !here {
                    "WAL archiving into strongroom is off (archive_mode, archive_command) and `strongroom wal receive` is not streaming from it".to_string()
                } else {
                    format!(
                        "segment {} is not in this repository's WAL archive (archive_command may archive elsewhere, or be failing)",
                        missing.as_ref().map(|m| m.0.as_str()).unwrap_or("?")
                    )
                };
                tracing::warn!(
                    "this snapshot cannot give point-in-time recovery: {why}; it carries its own WAL and restores to the moment its backup ended"
                );
                wait_flushed(&mut client, &conn, stop.lsn)?;
                for n in first..=last {
                    let name = segment_name(tli, n, s.segment_size);
                    walker.wal_file(data_dir, &name)?;
                }
                if tli > 1 {
                    let history = format!("{}.history", wal::timeline_folder(tli));
                    if data_dir.join("pg_wal").join(&history).exists() {
                        walker.wal_file(data_dir, &history)?;
                    }
                }
                true
            }
        };
        stopped = Some((tli, start_lsn, stop.lsn, included));
        Ok(())
    })?;
    progress.end();
    let (tli, start_lsn, stop_lsn, included) =
        stopped.ok_or_else(|| Error::Internal("the backup did not stop".into()))?;
    tracing::info!(start = %start_lsn, stop = %stop_lsn, files = files.len(), "physical backup stopped");

    let mut extra: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    PhysicalMetadata {
        system_identifier: Some(s.system_id.clone()),
        wal_segment_size: Some(s.segment_size),
        wal_included: included,
        data_directory: Some(s.data_dir.clone()),
        owner: Some(owner),
        major_version: Some(f.major()),
        block_size: Some(s.block_size),
        database: Some(conn.dbname().to_string()),
        bootstrap_superuser: superuser,
        row_counts_estimated: true,
        stop_time: Some(jiff::Timestamp::now()),
        tablespaces,
        parent: parent.as_ref().map(|p| p.id.clone()),
        files_reused: parent.as_ref().map(|_| reused.0),
        bytes_reused: parent.as_ref().map(|_| reused.1),
    }
    .write_into(&mut extra);
    Ok(Captured {
        kind: BackupKind::Physical,
        files,
        metadata: Metadata {
            row_counts: counts,
            schema_version: schema,
            server_version: f.version,
            extra,
        },
        wal: Some(WalRange {
            timeline: tli,
            start_lsn: start_lsn.to_string(),
            stop_lsn: stop_lsn.to_string(),
        }),
    })
}

/// The newest earlier physical snapshot of this source and cluster, whose unchanged files
/// a backup takes over. Refuses a source whose earlier physical snapshots are of another
/// cluster: the URL now reaches a re-created or different cluster, whose WAL would never
/// continue theirs.
fn parent_of(
    writer: &BackupWriter<'_>,
    source: &Source,
    system_id: &str,
) -> Result<Option<Snapshot>> {
    // An append-only key reads its own snapshots, from its catalog.
    let repo = writer.repository();
    let snaps = match repo.role() {
        crate::crypto::KeyRole::Full => repo.snapshots()?,
        crate::crypto::KeyRole::AppendOnly => repo.catalog_snapshots()?.0,
    };
    let earlier: Option<&Snapshot> = snaps
        .iter()
        .filter(|s| is_of(s, source) && s.kind == BackupKind::Physical)
        .rfind(|s| {
            PhysicalMetadata::of(s)
                .system_identifier
                .is_some_and(|id| id != system_id)
        });
    if let Some(old) = earlier {
        return Err(Error::WrongCluster(format!(
            "source {} was cluster {} in snapshot {} and is now cluster {}: the server was re-created or the URL reaches another cluster; if that is intended, back it up under a new source name",
            source.name,
            PhysicalMetadata::of(old)
                .system_identifier
                .as_deref()
                .unwrap_or("?"),
            old.short_id(),
            system_id
        )));
    }
    Ok(snaps
        .into_iter()
        .filter(|s| is_of(s, source) && s.kind == BackupKind::Physical)
        .rfind(|s| PhysicalMetadata::of(s).system_identifier.as_deref() == Some(system_id)))
}

/// Whether `snap` is of `source`, under whichever name it was taken (a URL before the config
/// named it).
fn is_of(snap: &Snapshot, source: &Source) -> bool {
    snap.source == source.name || snap.identity() == source.location.identity()
}

struct Stopped {
    lsn: Lsn,
    label: String,
    tablespace_map: Option<String>,
    /// The archiver's counts just before the backup stopped (see [`await_archive`]).
    archived: Option<Counts>,
}

fn stop_backup(client: &mut postgres::Client, conn: &Conn) -> Result<Stopped> {
    // Never pg_backup_stop(true): PostgreSQL checks the archive once a second, so its wait
    // cost a whole second for a segment archived in 50 ms (40% of an incremental backup's
    // time). `await_archive` waits in short steps instead, as pgBackRest does.
    let archived = archiver::counts(client);
    let row = client
        .query_one(
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)",
            &[],
        )
        .map_err(|e| Error::Source(format!("pg_backup_stop failed: {}", conn.explain(&e))))?;
    let lsn: String = row.get(0);
    let map: Option<String> = row.get(2);
    Ok(Stopped {
        lsn: Lsn::parse(&lsn)
            .ok_or_else(|| Error::Source(format!("pg_backup_stop returned LSN {lsn:?}")))?,
        label: row.get(1),
        tablespace_map: map.filter(|m| !m.is_empty()),
        archived,
    })
}

/// The longest wait for the archive to take the backup's last segment before the snapshot
/// carries its WAL itself (an archive behind by many segments takes them in order).
const ARCHIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
/// The longest wait for `wal receive` to store a segment it streamed.
const STREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The first of the backup's segments still missing from this repository's archive
/// (`missing` says), after waiting where waiting can end: while archiving into strongroom
/// that has not failed since `before` (the counts before `pg_backup_stop`), or while
/// `wal receive` streams. Looks again each time the archiver archived something (or, when
/// streaming, in steps of 10 ms doubling to 200 ms), so a segment archived in 50 ms is
/// waited for about that long.
fn await_archive(
    client: &mut postgres::Client,
    s: &ServerFacts,
    before: Option<Counts>,
    mut missing: impl FnMut() -> Result<Option<(String, Option<String>)>>,
) -> Result<Option<(String, Option<String>)>> {
    let archiving = s.archives_here && !s.archiver_failing;
    let limit = match (archiving, s.streams_here) {
        (true, _) => ARCHIVE_WAIT,
        (false, true) => STREAM_WAIT,
        (false, false) => return missing(),
    };
    // Read before looking, so an archive finishing in between is seen as a change. Counts
    // that cannot be read count as a change each time.
    let mut seen = if archiving {
        archiver::counts(client)
    } else {
        None
    };
    let mut first = missing()?;
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(10);
    while first.is_some() && started.elapsed() < limit {
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
        if archiving {
            let now = archiver::counts(client);
            if let (Some(now), Some(before), Some(seen)) = (now, before, seen) {
                if now.failed > before.failed && now.archived == seen.archived {
                    tracing::warn!(
                        "archive_command failed during the backup; the snapshot carries its WAL instead of waiting"
                    );
                    break;
                }
                if now.archived == seen.archived {
                    continue;
                }
            }
            seen = now;
        }
        first = missing()?;
    }
    Ok(first)
}

/// Waits until the server has flushed WAL up to `lsn`, so the segment files read from
/// pg_wal hold the backup's end.
fn wait_flushed(client: &mut postgres::Client, conn: &Conn, lsn: Lsn) -> Result<()> {
    for _ in 0..600 {
        let flushed: String = client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .map_err(|e| Error::Source(conn.explain(&e)))?
            .get(0);
        if Lsn::parse(&flushed).is_some_and(|f| f >= lsn) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(Error::Source(format!(
        "the server did not flush its WAL up to {lsn} within 30 s"
    )))
}

/// What an earlier snapshot of the same cluster offers for files that did not change.
///
/// A file is taken over, not read, when its size and modification time are those the
/// earlier snapshot recorded, that time lies more than a second before the earlier snapshot
/// began (so it cannot have changed while that snapshot read it, nor within the time's
/// granularity), and every chunk of it is still stored where the repository vouches for
/// it. PostgreSQL writes relation files through write(2), which always sets the time.
/// pgBackRest's incremental backups rely on the same rule.
struct Reuse<'w, 'r> {
    writer: &'w BackupWriter<'r>,
    parent: &'w Snapshot,
    files: std::collections::HashMap<&'w str, &'w crate::repository::snapshot::FileEntry>,
    before_ns: i64,
}

impl<'w, 'r> Reuse<'w, 'r> {
    fn new(writer: &'w BackupWriter<'r>, parent: &'w Snapshot) -> Self {
        Reuse {
            writer,
            parent,
            files: parent.files.iter().map(|f| (f.name.as_str(), f)).collect(),
            before_ns: (parent.started_at.as_nanosecond() - 1_000_000_000)
                .try_into()
                .unwrap_or(i64::MIN),
        }
    }

    /// The earlier entry for file `rel` of `size` bytes modified at `mtime_ns`, when it may
    /// be taken over.
    fn entry(
        &self,
        rel: &str,
        size: u64,
        mtime_ns: i64,
        chunking: Chunking,
    ) -> Result<Option<crate::repository::snapshot::FileEntry>> {
        let Some(e) = self.files.get(rel) else {
            return Ok(None);
        };
        let fits = e.size == size
            && e.chunking == chunking
            && mtime_ns < self.before_ns
            && e.tree.as_ref().is_some_and(|t| {
                t.mtime_ns == Some(mtime_ns) && t.checksum.is_some() && !t.dir && t.link.is_none()
            });
        if !fits || !self.writer.still_stored(self.parent, e)? {
            return Ok(None);
        }
        Ok(Some((*e).clone()))
    }

    /// The parent's entry for file `rel`, to store its changed pages against (page deltas),
    /// when it was cut into the same pages.
    fn base_for(
        &self,
        rel: &str,
        chunking: Chunking,
    ) -> Option<crate::repository::snapshot::FileEntry> {
        self.files
            .get(rel)
            .filter(|e| e.chunking == chunking && e.chunks > 0)
            .map(|e| (*e).clone())
    }
}

/// Walks a data directory into a writer session.
struct Walker<'a, 's, 'p, 'w, 'r> {
    sink: &'a mut ChunkSink<'p>,
    chunking: Chunking,
    tablespaces: &'s mut BTreeMap<String, String>,
    reuse: Option<&'s Reuse<'w, 'r>>,
    /// Files and bytes taken over from the earlier snapshot.
    reused: &'s mut (u64, u64),
}

impl Walker<'_, '_, '_, '_, '_> {
    /// Stores `dir` (the data directory, or a directory below it called `rel`).
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<()> {
        let mut entries: Vec<_> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.flatten().collect(),
            // Dropped while we walked: WAL replay removes it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("listing", dir, e)),
        };
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if skipped(&child, &name) {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading", &path, e)),
            };
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|e| Error::io("reading link", &path, e))?;
                if rel == "pg_tblspc" {
                    // A tablespace: its location is recorded, its files are stored under
                    // the link's name.
                    self.tablespaces
                        .insert(name.clone(), target.display().to_string());
                    self.entry(
                        &child,
                        TreeEntry {
                            mode: 0o700,
                            link: Some(target.display().to_string()),
                            ..TreeEntry::default()
                        },
                    )?;
                    self.dir(&path, &child)?;
                } else if child == "pg_wal" {
                    // pg_wal elsewhere (initdb -X): restored as a directory.
                    self.entry(&child, dir_entry(0o700))?;
                } else {
                    self.entry(
                        &child,
                        TreeEntry {
                            mode,
                            link: Some(target.display().to_string()),
                            ..TreeEntry::default()
                        },
                    )?;
                }
            } else if meta.is_dir() {
                self.entry(&child, dir_entry(mode))?;
                if rel.is_empty() && EMPTY_DIRS.contains(&name.as_str()) {
                    continue;
                }
                self.dir(&path, &child)?;
            } else if meta.is_file() {
                let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
                if let Some(reuse) = self.reuse {
                    if let Some(entry) = reuse.entry(&child, meta.len(), mtime_ns, self.chunking)? {
                        self.reused.0 += 1;
                        self.reused.1 += entry.size;
                        self.sink.reuse_file(entry)?;
                        continue;
                    }
                }
                self.file(&path, &child, mode, Some(mtime_ns))?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, rel: &str, tree: TreeEntry) -> Result<()> {
        self.sink.end_file(rel, self.chunking, Some(tree))
    }

    /// Stores one file as it is now (pages changing under us are made whole by WAL replay).
    fn file(&mut self, path: &Path, rel: &str, mode: u32, mtime_ns: Option<i64>) -> Result<()> {
        match std::fs::File::open(path) {
            Ok(f) => self.read_from(f, path, rel, mode, mtime_ns),
            // Dropped while we walked: WAL replay removes it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("reading", path, e)),
        }
    }

    /// Stores bytes the server handed over as file `rel`.
    fn bytes(&mut self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        self.read_from(data, Path::new(rel), rel, mode, None)
    }

    /// Stores what `from` gives as file `rel`, in pages, with its checksum.
    fn read_from(
        &mut self,
        mut from: impl Read,
        path: &Path,
        rel: &str,
        mode: u32,
        mtime_ns: Option<i64>,
    ) -> Result<()> {
        let Chunking::Fixed { size } = self.chunking else {
            unreachable!("physical snapshots cut pages")
        };
        let mut batcher = FixedBatcher::new(size as usize);
        self.sink
            .base_on(self.reuse.and_then(|r| r.base_for(rel, self.chunking)));
        let mut hash = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading", path, e)),
            };
            hash.update(&buf[..n]);
            if let Some(b) = batcher.push(&buf[..n]) {
                self.sink.push(b)?;
            }
        }
        if let Some(b) = batcher.finish() {
            self.sink.push(b)?;
        }
        self.entry(
            rel,
            TreeEntry {
                mode,
                checksum: Some(hash.finalize().to_hex().to_string()),
                mtime_ns,
                ..TreeEntry::default()
            },
        )
    }

    /// Stores WAL file `name` from the server's pg_wal as `pg_wal/<name>`.
    fn wal_file(&mut self, data_dir: &Path, name: &str) -> Result<()> {
        let path = data_dir.join("pg_wal").join(name);
        if !path.exists() {
            return Err(Error::Source(format!(
                "WAL segment {name} is neither in the repository's archive nor in {}; no snapshot was recorded (archive into this repository with archive_command = 'strongroom wal push %p')",
                path.parent().expect("in pg_wal").display()
            )));
        }
        self.file(&path, &format!("{WAL_PREFIX}{name}"), 0o600, None)
    }
}

fn dir_entry(mode: u32) -> TreeEntry {
    TreeEntry {
        mode,
        dir: true,
        ..TreeEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_state_is_left_out() {
        for (rel, name) in [
            ("postmaster.pid", "postmaster.pid"),
            ("backup_label", "backup_label"),
            ("global/pg_internal.init", "pg_internal.init"),
            ("base/16384/pg_internal.init.1234", "pg_internal.init.1234"),
            ("base/pgsql_tmp", "pgsql_tmp"),
            ("recovery.signal", "recovery.signal"),
        ] {
            assert!(skipped(rel, name), "{rel}");
        }
        for (rel, name) in [
            ("global/pg_control", "pg_control"),
            ("base/1/1259", "1259"),
            ("postgresql.auto.conf", "postgresql.auto.conf"),
            ("base/16384/backup_label", "backup_label"),
        ] {
            assert!(!skipped(rel, name), "{rel}");
        }
    }

    #[test]
    fn backup_labels_are_read_by_field() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nSTART TIMELINE: 1\n";
        assert_eq!(label_field(label, "START TIMELINE"), Some("1"));
        assert_eq!(
            label_field(label, "START WAL LOCATION")
                .and_then(|v| v.split_whitespace().next())
                .and_then(Lsn::parse),
            Lsn::parse("0/2000028")
        );
        assert_eq!(label_field(label, "NOPE"), None);
    }
}

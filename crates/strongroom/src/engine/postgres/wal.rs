//! PostgreSQL WAL archiving: `archive_command` (push), `restore_command` (fetch) and the
//! continuity of what is archived (verify).
//!
//! Owns WAL file names (segments, `.history`, `.backup`, `.partial`), segment arithmetic, and
//! the rules PostgreSQL puts on its two commands. Push acts for the cluster in the current
//! data directory and is acknowledged only once durable ([`crate::repository::archive`]).
//! Fetch reports "not archived" only when the repository was read and the name is not in it:
//! PostgreSQL probes for history files and the next segment that way and treats that answer
//! as the end of the archive, so any other failure reported the same way would make it
//! promote early, at the wrong point, onto a new timeline. Must not decide retries or exit
//! codes (the command line's) and must not know how objects are sealed.

use super::cluster::{ClusterId, Lsn};
use super::physical::PhysicalMetadata;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::repository::archive::{Archive, Put};
use std::path::Path;

/// The default WAL segment size (`initdb --wal-segsize` changes it).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// What sort of file a WAL file name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalKind {
    /// A complete segment, `TTTTTTTTXXXXXXXXYYYYYYYY`.
    Segment,
    /// A segment cut short at a promotion, `….partial`: stored, never served for a segment.
    Partial,
    /// A backup history file, `….XXXXXXXX.backup`.
    Backup,
    /// A timeline history file, `TTTTTTTT.history`.
    History,
}

/// A parsed WAL file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalName {
    /// The name as PostgreSQL spells it.
    pub name: String,
    /// Its timeline.
    pub timeline: u32,
    /// What it is.
    pub kind: WalKind,
    /// For segments, partials and backup files: `(log, seg)` from the name.
    pub position: Option<(u32, u32)>,
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl WalName {
    /// Parses a WAL file name; `None` for anything PostgreSQL would not archive.
    pub fn parse(name: &str) -> Option<WalName> {
        let segment = |s: &str| -> Option<(u32, (u32, u32))> {
            if s.len() != 24 {
                return None;
            }
            Some((hex8(&s[..8])?, (hex8(&s[8..16])?, hex8(&s[16..])?)))
        };
        let (timeline, kind, position) = if let Some(tli) = name.strip_suffix(".history") {
            (hex8(tli)?, WalKind::History, None)
        } else if let Some(seg) = name.strip_suffix(".partial") {
            let (t, p) = segment(seg)?;
            (t, WalKind::Partial, Some(p))
        } else if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, offset) = rest.split_once('.')?;
            hex8(offset)?;
            let (t, p) = segment(seg)?;
            (t, WalKind::Backup, Some(p))
        } else {
            let (t, p) = segment(name)?;
            (t, WalKind::Segment, Some(p))
        };
        (timeline > 0).then(|| WalName {
            name: name.to_string(),
            timeline,
            kind,
            position,
        })
    }

    /// The timeline folder it is archived in (`00000001`).
    pub fn timeline_folder(&self) -> String {
        timeline_folder(self.timeline)
    }

    /// The segment number, for segments, partials and backup files.
    pub fn segment_number(&self, segment_size: u64) -> Option<u64> {
        let (log, seg) = self.position?;
        Some(log as u64 * segments_per_log(segment_size) + seg as u64)
    }
}

/// The archive folder of timeline `tli`: eight hex digits, as WAL file names spell it.
pub fn timeline_folder(tli: u32) -> String {
    format!("{tli:08X}")
}

fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size
}

/// The name of segment `number` on `timeline`.
pub fn segment_name(timeline: u32, number: u64, segment_size: u64) -> String {
    let per = segments_per_log(segment_size);
    format!("{timeline:08X}{:08X}{:08X}", number / per, number % per)
}

fn unarchivable(name: &str) -> Error {
    Error::Config(format!(
        "{name:?} is not a WAL file name (a segment, .partial, .backup or .history file)"
    ))
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The cluster it was archived for.
    pub cluster: ClusterId,
    /// The file's name.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Bytes written to the store (0 when it was archived already).
    pub stored: u64,
    /// Whether the same content was archived already.
    pub already: bool,
}

/// Archives the WAL file at `path` for the cluster whose data directory is `data_dir`
/// (PostgreSQL runs `archive_command` there, with `%p` relative to it). The `wal push` job
/// then records the timeline's origin ([`super::timeline::record_origin`]).
pub fn push(repo: &Repository, data_dir: &Path, path: &Path, level: i32) -> Result<Pushed> {
    let cluster = super::cluster::identify(data_dir)?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| unarchivable(&path.display().to_string()))?;
    let name = WalName::parse(file_name).ok_or_else(|| unarchivable(file_name))?;
    let full = data_dir.join(path);
    let data = std::fs::read(&full).map_err(|e| Error::io("reading", &full, e))?;
    let archive = Archive::new(repo, &cluster.system_id());
    let put = archive.put(&name.timeline_folder(), &name.name, &data, level)?;
    Ok(Pushed {
        name: name.name,
        bytes: data.len() as u64,
        stored: match put {
            Put::Stored { stored } => stored,
            Put::AlreadyArchived => 0,
        },
        already: put == Put::AlreadyArchived,
        cluster,
    })
}

/// Where prefetched segments wait, inside the data directory's `pg_wal` (PostgreSQL's own
/// cleanup only touches names that look like WAL files, and base backups skip `pg_wal`).
pub const PREFETCH_DIR: &str = "pg_wal/strongroom-prefetch";

/// Writes the archived file `name` of the cluster whose data directory is `data_dir` to
/// `dest` (relative to the data directory), atomically: a half-written segment would be
/// replayed as a damaged one. [`Error::NotArchived`] when the archive does not have it.
///
/// With `ahead` > 0, once a segment was found, the next `ahead` segments of its timeline are
/// fetched together (one thread each) into [`PREFETCH_DIR`], verified as any fetch, so the
/// calls for them only rename a file: `ahead + 1` segments cost about two round trips to
/// the repository instead of `ahead + 1` (an object store's latency is hidden, and
/// decompression runs on every core). Prefetched files recovery has passed are removed.
pub fn fetch(
    repo: &Repository,
    data_dir: &Path,
    name: &str,
    dest: &Path,
    ahead: u32,
) -> Result<u64> {
    repo.require_full("fetch archived WAL (restore_command needs a full key)")?;
    let cluster = super::cluster::identify(data_dir)?;
    let parsed = WalName::parse(name).ok_or_else(|| unarchivable(name))?;
    let dest = data_dir.join(dest);
    let spool = data_dir.join(PREFETCH_DIR);
    let spooled = spool.join(&parsed.name);
    if parsed.kind == WalKind::Segment {
        tidy_spool(&spool, &parsed);
        if let Ok(meta) = std::fs::metadata(&spooled) {
            let len = meta.len();
            if std::fs::rename(&spooled, &dest).is_ok() {
                return Ok(len);
            }
        }
    }
    let archive = Archive::new(repo, &cluster.system_id());
    let data = match archive.get(&parsed.timeline_folder(), &parsed.name) {
        // The complete segment is preferred; else what `wal receive` made durable of it,
        // zeros after, where recovery finds the end of WAL.
        Err(e @ Error::NotArchived { .. }) if parsed.kind == WalKind::Segment => {
            let assembled = match super::pieces::assemble(&archive, &parsed) {
                // Never "not archived" for what was listed: recovery would end there.
                Err(Error::NotArchived { .. }) => {
                    return Err(Error::Storage {
                        location: archive.object_key(
                            &parsed.timeline_folder(),
                            &super::pieces::folder(&parsed.name),
                        ),
                        detail: "a received piece was deleted while it was read (the segment was just archived whole); fetch it again".into(),
                        transient: true,
                    });
                }
                other => other?,
            };
            match assembled {
                Some((data, held)) => {
                    tracing::info!(
                        "{} is not archived whole; serving the {held} bytes received of it, then zeros",
                        parsed.name
                    );
                    write_atomically(
                        dest.parent()
                            .filter(|p| !p.as_os_str().is_empty())
                            .unwrap_or(Path::new(".")),
                        &dest,
                        &data,
                    )?;
                    return Ok(data.len() as u64);
                }
                None => return Err(e),
            }
        }
        other => other?,
    };
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    write_atomically(dir, &dest, &data)?;
    if parsed.kind == WalKind::Segment && ahead > 0 {
        // Only after a hit: PostgreSQL probes for names that do not exist (later
        // timelines), and those must not cost a round of failing requests each.
        let seg = data.len() as u64;
        let seg = if seg.is_power_of_two() && seg >= 1 << 20 {
            seg
        } else {
            DEFAULT_SEGMENT_SIZE
        };
        let at = parsed.segment_number(seg).unwrap_or(0);
        let next: Vec<String> = (1..=ahead as u64)
            .map(|i| segment_name(parsed.timeline, at + i, seg))
            .filter(|n| !spool.join(n).exists())
            .collect();
        std::thread::scope(|s| {
            for n in &next {
                let (archive, spool, folder) = (&archive, &spool, parsed.timeline_folder());
                s.spawn(move || {
                    // Best effort: a segment not archived yet, or any failure, is simply
                    // fetched again when PostgreSQL asks for it.
                    if let Ok(d) = archive.get(&folder, n) {
                        let _ = write_atomically(spool, &spool.join(n), &d);
                    }
                });
            }
        });
    }
    Ok(data.len() as u64)
}

/// Writes `data` to `path` through a temporary file in `dir` and a rename.
fn write_atomically(dir: &Path, path: &Path, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".strongroom-fetch-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    std::io::Write::write_all(&mut tmp, data).map_err(|e| Error::io("writing", path, e))?;
    // PostgreSQL fsyncs restored segments itself when it needs them durable.
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into place", path, e.error))?;
    Ok(())
}

/// Removes prefetched segments recovery has passed (numbered below `asked`, on any
/// timeline: PostgreSQL probes newer timelines first, so a timeline alone says nothing) and
/// leftovers of interrupted writes.
fn tidy_spool(spool: &Path, asked: &WalName) {
    let Ok(rd) = std::fs::read_dir(spool) else {
        return;
    };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let stale = match WalName::parse(&file) {
            Some(w) => w.position < asked.position,
            None => file.starts_with(".strongroom-fetch-"),
        };
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Where a physical snapshot starts, for [`super::continuity::verify`]: cluster, timeline, start LSN and the
/// segment size it recorded.
#[derive(Clone, Debug)]
pub struct NeededFrom {
    /// The snapshot's id.
    pub snapshot: String,
    /// System identifier.
    pub cluster: String,
    /// Timeline.
    pub timeline: u32,
    /// Start LSN.
    pub start: Lsn,
    /// Stop LSN (the snapshot needs everything up to it).
    pub stop: Lsn,
    /// WAL segment size.
    pub segment_size: u64,
}

/// Where each physical snapshot in `snaps` starts its need for WAL.
pub fn needs_of(snaps: &[crate::repository::snapshot::Snapshot]) -> Vec<NeededFrom> {
    snaps
        .iter()
        .filter_map(|s| {
            let facts = PhysicalMetadata::of(s);
            // A snapshot that carries its own WAL needs nothing from the archive.
            if facts.wal_included {
                return None;
            }
            let wal = s.wal.as_ref()?;
            Some(NeededFrom {
                snapshot: s.id.clone(),
                cluster: facts.system_identifier?,
                timeline: wal.timeline,
                start: Lsn::parse(&wal.start_lsn)?,
                stop: Lsn::parse(&wal.stop_lsn)?,
                segment_size: facts.wal_segment_size.unwrap_or(DEFAULT_SEGMENT_SIZE),
            })
        })
        .collect()
}

/// The physical snapshots (of `needs`) of `cluster` that need archived file `name` to
/// become consistent: it lies between their start and stop on their timeline. What a
/// damaged or missing WAL file breaks, for `check` and `copy`.
pub fn dependents(needs: &[NeededFrom], cluster: &str, name: &str) -> Vec<String> {
    let Some(file) = WalName::parse(name) else {
        return Vec::new();
    };
    needs
        .iter()
        .filter(|n| n.cluster == cluster && n.timeline == file.timeline)
        .filter(|n| {
            file.segment_number(n.segment_size).is_some_and(|seg| {
                seg >= n.start.segment(n.segment_size)
                    && seg <= n.stop.segment_before(n.segment_size)
            })
        })
        .map(|n| n.snapshot.clone())
        .collect()
}

/// An archived file no kept snapshot needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// Its object key.
    pub key: String,
    /// Stored bytes.
    pub stored: u64,
}

/// Archived WAL older than what `kept` (the snapshots that stay) need: per cluster, every
/// segment, partial segment, backup-history file and received piece
/// ([`super::pieces`]) numbered below the start segment of the oldest kept physical
/// snapshot that relies on the archive, on any timeline, and the pieces of segments that
/// are archived whole. Timeline
/// history files are never expired (they are tiny and recovery reads them to choose a
/// timeline). A cluster no kept snapshot relies on keeps all of its WAL: archiving may be
/// feeding a first base backup that is running right now.
pub fn expired(
    repo: &Repository,
    kept: &[crate::repository::snapshot::Snapshot],
) -> Result<Vec<Expired>> {
    let mut cut: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for n in needs_of(kept) {
        let first = n.start.segment(n.segment_size);
        let e = cut
            .entry(n.cluster.clone())
            .or_insert((first, n.segment_size));
        e.0 = e.0.min(first);
    }
    let mut out = Vec::new();
    for (cluster, (first, size)) in cut {
        let archive = Archive::new(repo, &cluster);
        let listed = archive.list()?;
        let complete: std::collections::HashSet<(String, String)> = listed
            .iter()
            .filter(|l| WalName::parse(&l.name).is_some_and(|n| n.kind == WalKind::Segment))
            .map(|l| (l.timeline.clone(), l.name.clone()))
            .collect();
        for l in listed {
            let name = match WalName::parse(&l.name) {
                Some(n) => n,
                // A piece of a segment that is archived whole, or that no kept snapshot
                // needs, is of no more use.
                None => match super::pieces::Piece::parse(&l.name) {
                    Some(p) if complete.contains(&(l.timeline.clone(), p.segment.name.clone())) => {
                        out.push(Expired {
                            key: archive.object_key(&l.timeline, &l.name),
                            stored: l.stored,
                        });
                        continue;
                    }
                    Some(p) => p.segment,
                    None => continue,
                },
            };
            if name.kind == WalKind::History {
                continue;
            }
            if name.segment_number(size).is_some_and(|n| n < first) {
                out.push(Expired {
                    key: archive.object_key(&l.timeline, &l.name),
                    stored: l.stored,
                });
            }
        }
    }
    Ok(out)
}

/// The segments from `from` to `to` (inclusive) on `timeline` that the archive lacks, as
/// the first missing one and the last one before it that is present (the newest point a
/// recovery can reach); `None` when all are there.
pub fn first_missing(
    repo: &Repository,
    cluster: &str,
    timeline: u32,
    from: u64,
    to: u64,
    segment_size: u64,
) -> Result<Option<(String, Option<String>)>> {
    let folder = timeline_folder(timeline);
    let present: std::collections::HashSet<String> = Archive::new(repo, cluster)
        .list()?
        .into_iter()
        .filter(|l| l.timeline == folder)
        .map(|l| l.name)
        .collect();
    for n in from..=to {
        let name = segment_name(timeline, n, segment_size);
        if !present.contains(&name) {
            let before = (n > from).then(|| segment_name(timeline, n - 1, segment_size));
            return Ok(Some((name, before)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory as fetch sees one: cluster 42's `pg_control`, `pg_wal`.
    fn data_directory() -> tempfile::TempDir {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        std::fs::create_dir_all(d.join("global")).unwrap();
        std::fs::create_dir_all(d.join("pg_wal")).unwrap();
        let mut control = 42u64.to_le_bytes().to_vec();
        control.resize(8192, 0);
        std::fs::write(d.join("global/pg_control"), control).unwrap();
        std::fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        data
    }

    #[test]
    fn fetch_prefetches_after_a_hit_and_serves_from_the_spool() {
        let repo = crate::repository::writer::tests::memory_repo();
        let data = data_directory();
        let d = data.path();
        let seg = 1u64 << 20;
        let archive = Archive::new(&repo, "42");
        let bodies: Vec<Vec<u8>> = (0..3)
            .map(|i| crate::repository::writer::tests::pages(256, i))
            .collect();
        for (i, b) in bodies.iter().enumerate() {
            let name = segment_name(1, 10 + i as u64, seg);
            archive.put("00000001", &name, b, 1).unwrap();
        }
        let first = segment_name(1, 10, seg);
        fetch(&repo, d, &first, Path::new("pg_wal/RECOVERYXLOG"), 4).unwrap();
        assert_eq!(
            std::fs::read(d.join("pg_wal/RECOVERYXLOG")).unwrap(),
            bodies[0]
        );
        let spool = d.join(PREFETCH_DIR);
        let second = segment_name(1, 11, seg);
        assert!(
            spool.join(&second).exists(),
            "the next segment waits in the spool"
        );
        // Served from the spool: even gone from the archive, it is delivered, verified when
        // it was fetched.
        repo.storage()
            .delete(&archive.object_key("00000001", &second))
            .unwrap();
        fetch(&repo, d, &second, Path::new("pg_wal/RECOVERYXLOG"), 4).unwrap();
        assert_eq!(
            std::fs::read(d.join("pg_wal/RECOVERYXLOG")).unwrap(),
            bodies[1]
        );
        assert!(!spool.join(&second).exists());
        // A probe for a name not archived is exit-1 material and prefetches nothing.
        let probe = segment_name(2, 12, seg);
        assert!(matches!(
            fetch(&repo, d, &probe, Path::new("pg_wal/RECOVERYXLOG"), 4),
            Err(Error::NotArchived { .. })
        ));
        // Asking for a later segment clears what recovery has passed.
        std::fs::write(spool.join(segment_name(1, 5, seg)), b"old").unwrap();
        let third = segment_name(1, 12, seg);
        fetch(&repo, d, &third, Path::new("pg_wal/RECOVERYXLOG"), 0).unwrap();
        assert!(!spool.join(segment_name(1, 5, seg)).exists());
    }

    #[test]
    fn fetch_prefers_the_whole_segment_then_puts_pieces_together() {
        let repo = crate::repository::writer::tests::memory_repo();
        let data = data_directory();
        let d = data.path();
        let seg = 1u64 << 20;
        let archive = Archive::new(&repo, "42");
        let name = segment_name(1, 7, seg);
        let mut whole = crate::repository::writer::tests::pages(256, 3);
        whole[32..36].copy_from_slice(&(seg as u32).to_le_bytes());
        // Pieces of the first 12 KiB, then the whole segment.
        for (from, to) in [(0usize, 0x1000usize), (0x1000, 0x3000)] {
            archive
                .put_new(
                    "00000001",
                    &super::super::pieces::name(&name, from as u64, to as u64),
                    &whole[from..to],
                    1,
                )
                .unwrap();
        }
        let dest = Path::new("pg_wal/RECOVERYXLOG");
        fetch(&repo, d, &name, dest, 0).unwrap();
        let got = std::fs::read(d.join(dest)).unwrap();
        assert_eq!(got.len() as u64, seg);
        assert_eq!(&got[..0x3000], &whole[..0x3000]);
        assert!(
            got[0x3000..].iter().all(|b| *b == 0),
            "zeros after the pieces"
        );
        archive.put("00000001", &name, &whole, 1).unwrap();
        fetch(&repo, d, &name, dest, 0).unwrap();
        assert_eq!(
            std::fs::read(d.join(dest)).unwrap(),
            whole,
            "the whole segment wins"
        );
        // Neither: not archived, as PostgreSQL needs to hear.
        assert!(matches!(
            fetch(&repo, d, &segment_name(1, 8, seg), dest, 0),
            Err(Error::NotArchived { .. })
        ));
    }

    #[test]
    fn prune_expires_pieces_of_segments_archived_whole_or_no_longer_needed() {
        let repo = crate::repository::writer::tests::memory_repo();
        let seg = 1u64 << 20;
        let archive = Archive::new(&repo, "42");
        // A kept snapshot starting in segment 5.
        let snap: crate::repository::snapshot::Snapshot =
            serde_json::from_value(serde_json::json!({
                "source": "prod", "engine": "postgres", "kind": "physical", "tags": [],
                "started_at": "2026-12-01T00:00:00Z", "finished_at": "2026-12-01T00:00:10Z",
                "size": 1, "added": 1,
                "metadata": {"row_counts": {}, "schema_version": null, "server_version": "17",
                             "system_identifier": "42", "wal_segment_size": seg},
                "wal": {"timeline": 1, "start_lsn": Lsn(5 * seg + 40).to_string(),
                        "stop_lsn": Lsn(5 * seg + 400).to_string()},
                "hostname": "db1", "program_version": "0", "files": []
            }))
            .unwrap();
        let piece = |n: u64| super::super::pieces::name(&segment_name(1, n, seg), 0, 16);
        for n in [4, 6, 7] {
            archive
                .put_new("00000001", &piece(n), &[n as u8; 16], 1)
                .unwrap();
        }
        // Segment 6 is archived whole; 7 is still being received.
        archive
            .put("00000001", &segment_name(1, 6, seg), b"whole", 1)
            .unwrap();
        let mut gone: Vec<String> = expired(&repo, std::slice::from_ref(&snap))
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        gone.sort();
        assert_eq!(
            gone,
            vec![
                archive.object_key("00000001", &piece(4)),
                archive.object_key("00000001", &piece(6)),
            ]
        );
    }

    #[test]
    fn names_parse_by_kind() {
        let s = WalName::parse("000000010000000A000000FF").unwrap();
        assert_eq!(
            (s.timeline, s.kind, s.position),
            (1, WalKind::Segment, Some((0xA, 0xFF)))
        );
        assert_eq!(
            s.segment_number(DEFAULT_SEGMENT_SIZE),
            Some(0xA * 256 + 0xFF)
        );
        assert_eq!(
            segment_name(1, 0xA * 256 + 0xFF, DEFAULT_SEGMENT_SIZE),
            "000000010000000A000000FF"
        );
        assert_eq!(
            WalName::parse("00000002.history").unwrap().kind,
            WalKind::History
        );
        let b = WalName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!((b.kind, b.timeline), (WalKind::Backup, 1));
        let p = WalName::parse("000000020000000000000005.partial").unwrap();
        assert_eq!((p.kind, p.timeline), (WalKind::Partial, 2));
        assert_eq!(p.timeline_folder(), "00000002");
        for bad in [
            "",
            "00000001",
            "0000000100000000000000",
            "00000001000000000000000G",
            "000000000000000000000001",
            "../../etc/passwd",
            "00000001.history.x",
        ] {
            assert!(WalName::parse(bad).is_none(), "{bad}");
        }
        // 1 GiB segments: four per log file.
        assert_eq!(segment_name(1, 5, 1 << 30), "000000010000000100000001");
    }
}

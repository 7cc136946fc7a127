//! Restoring a physical snapshot into a data directory, ready to recover to a point in time.
//!
//! Owns the restore of a physical snapshot as a whole: what is at the target, the check that
//! the archive holds the WAL the snapshot needs (before anything is written), a directory
//! beside the target only the restore knows, who owns the result, and moving it into place
//! through the restore safety sequence. Writing the files is [`super::tree`]'s, the
//! recovery settings [`super::recovery`]'s. Must not start servers (that is
//! [`super::verify`]), and must not change anything inside the directory by path: the
//! directory is opened once and every write, mode and owner below it goes through that
//! descriptor ([`crate::beneath`]), never following a link. The swap works the same way one
//! level up: the target's parent (often owned by `postgres`, who could swap it for a link
//! between two renames) is opened once at staging, and the old directory goes aside and the
//! new one into place by `renameat` relative to it.

use super::PhysicalMetadata;
use super::recovery::{is_source_dir, timeline_for, write_missing_config, write_recovery};
use super::start::running_postmaster;
use super::tree::write_tree;
use crate::beneath::Beneath;
use crate::engine::postgres::cluster::Lsn;
use crate::engine::postgres::timeline::TimelineRequest;
use crate::engine::postgres::wal::{self, segment_name};
use crate::engine::{RecoveryTarget, RestoreOptions, Staged, Swapped, TargetState};
use crate::error::{Error, Result};
use crate::interrupt::ScratchDir;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::archive::Archive;
use crate::repository::index::Index;
use crate::repository::snapshot::Snapshot;
use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// What is at a data-directory target. Refuses first (before a running server is named) a
/// `--start` that cannot work there.
pub fn inspect(snap: &Snapshot, dir: &Path, opts: &RestoreOptions) -> Result<TargetState> {
    let target = std::path::absolute(dir).map_err(|e| Error::io("resolving", dir, e))?;
    let own = is_source_dir(snap, &target);
    // The real recovery of a cluster that keeps its configuration elsewhere (Debian) is
    // started by its service, with that configuration and environment: pg_ctl -D cannot.
    if opts.start && own && super::config_elsewhere(snap) {
        return Err(Error::Target(format!(
            "{} is the source's own data directory, and its cluster keeps its configuration elsewhere (Debian: /etc/postgresql): restore it without --start, then start it as its service does ({}); nothing was restored",
            target.display(),
            super::start::service_start(snap, &target)
        )));
    }
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

/// Checks that the archive holds the WAL `snap` needs to become consistent, and warns how
/// far its own timeline can recover; fails naming the first missing segment.
pub fn check_wal(repo: &Repository, snap: &Snapshot, recovery: &RecoveryTarget) -> Result<()> {
    if PhysicalMetadata::of(snap).wal_included {
        if !matches!(recovery, RecoveryTarget::Immediate | RecoveryTarget::Latest) {
            tracing::warn!(
                "snapshot {} carries its own WAL (archiving was not into this repository when it was taken): it restores to the end of its backup, not to later points",
                snap.short_id()
            );
        }
        return Ok(());
    }
    let needs = wal::needs_of(std::slice::from_ref(snap));
    let Some(need) = needs.first() else {
        return Err(Error::corrupt(
            Snapshot::object_key(&snap.id),
            "a physical snapshot without its WAL range or its cluster's system identifier",
        ));
    };
    let (tli, seg) = (need.timeline, need.segment_size);
    let (first, last) = (need.start.segment(seg), need.stop.segment_before(seg));
    // One listing: the segments from the snapshot's start on, as far as they run unbroken.
    let folder = wal::timeline_folder(tli);
    let listed = Archive::new(repo, &need.cluster).list()?;
    let present: HashSet<&str> = listed
        .iter()
        .filter(|l| l.timeline == folder)
        .map(|l| l.name.as_str())
        .collect();
    let newest = present
        .iter()
        .filter_map(|n| wal::WalName::parse(n)?.segment_number(seg))
        .max()
        .unwrap_or(last)
        .max(last);
    let mut n = first;
    while n <= newest && present.contains(segment_name(tli, n, seg).as_str()) {
        n += 1;
    }
    if n <= last {
        return Err(Error::WalGap(format!(
            "snapshot {} needs WAL segment {} to become consistent, and the archive of cluster {} lacks it: no point in time can be reached from this snapshot; restore an earlier or later snapshot (`strongroom wal verify` lists the gaps)",
            snap.short_id(),
            segment_name(tli, n, seg),
            need.cluster
        )));
    }
    // Beyond the snapshot's end: the first gap on its timeline limits how far it can go.
    if n <= newest {
        let reach = Lsn(n * seg);
        let message = format!(
            "the WAL archive lacks segment {} after snapshot {}: recovery on timeline {tli} can reach at most {reach} (the end of segment {})",
            segment_name(tli, n, seg),
            snap.short_id(),
            segment_name(tli, n - 1, seg)
        );
        // A target past it is refused by the choice of timeline, which knows whether
        // another timeline gets there.
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
    // Chosen (or refused) before anything is written.
    let chosen = timeline_for(
        repo,
        snap,
        &opts.recovery,
        opts.timeline,
        crate::engine::postgres::postgres_url(opts.source_location.clone()).as_deref(),
    )?;
    let own = is_source_dir(snap, &target);
    let archive = own || opts.archive;
    let mut notes: Vec<String> = chosen.iter().filter_map(|c| c.note.clone()).collect();
    notes.push(archiving_note(snap, &target, own, archive));
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
    // The swap renames relative to the parent as it is now, never through a path again.
    let parent_dir = Beneath::open_named(parent)?;
    // Everything below is written through this descriptor, never by path.
    let root = Beneath::open(&dir)?;
    let bytes = write_tree(repo, index, snap, &root, &target, progress)?;
    let timeline = chosen.map(|c| c.timeline);
    write_recovery(snap, &root, &opts.recovery, timeline, archive)?;
    if !own {
        notes.extend(write_missing_config(snap, &root)?);
    }
    // The lock file of the scratch directory must not be restored with the cluster.
    root.remove_file(".lock")?;
    root.chmod(0o700)?;
    if let Some((uid, gid)) = owner_for(snap, &[&target, parent]) {
        root.chown_all(uid, gid)?;
    }
    root.sync()?;
    let scratch_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Box::new(StagedDir {
        scratch: Some(scratch),
        scratch_name,
        name,
        parent: parent_dir,
        target,
        existed: state.exists(),
        old: None,
        bytes,
        notes,
        timeline,
    }))
}

/// What a restore into `target` does about archiving, in one sentence.
fn archiving_note(snap: &Snapshot, target: &Path, own: bool, archive: bool) -> String {
    let recorded = PhysicalMetadata::of(snap).data_directory;
    let recorded = recorded.as_deref().unwrap_or("unknown");
    if own {
        format!(
            "{} is the source's own data directory: this is the real recovery, and the server archives into the repository as before (its promotion starts the source's next timeline)",
            target.display()
        )
    } else if archive {
        format!(
            "archiving stays on in {} as asked (--archive): once promoted it archives into this repository on a timeline of its own, a fork the source's restores do not follow",
            target.display()
        )
    } else {
        format!(
            "{} is not the source's own data directory ({recorded} on {}): archive_mode = off is set in its postgresql.auto.conf, so this copy never archives into the source's repository (--archive keeps archiving)",
            target.display(),
            snap.hostname
        )
    }
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
    let chosen = timeline_for(repo, snap, recovery, TimelineRequest::Source, None)?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("creating", dir, e))?;
    // Everything below is written through this descriptor, never by path.
    let root = Beneath::open(dir)?;
    root.chmod(0o700)?;
    let bytes = write_tree(repo, index, snap, &root, dir, progress)?;
    write_recovery(snap, &root, recovery, chosen.map(|c| c.timeline), false)?;
    write_missing_config(snap, &root)?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if let Some((uid, gid)) = owner_for(snap, &[parent]) {
        root.chown_all(uid, gid)?;
    }
    Ok(bytes)
}

/// The owner of `path` when it is not root.
pub fn owner_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    (m.uid() != 0).then_some((m.uid(), m.gid()))
}

/// Who should own the restored files when strongroom runs as root: the owner of the first
/// of `places` (the target directory, its parent) not owned by root; else the data
/// directory's owner at backup time. PostgreSQL refuses to run as root, so a root-owned
/// directory could never start.
fn owner_for(snap: &Snapshot, places: &[&Path]) -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    if let Some(owner) = places.iter().find_map(|p| owner_of(p)) {
        return Some(owner);
    }
    let (uid, gid) = PhysicalMetadata::of(snap).owner?;
    (uid != 0).then_some((uid, gid))
}

/// A restored data directory beside its target.
struct StagedDir {
    scratch: Option<ScratchDir>,
    /// The restored directory's name in the target's parent.
    scratch_name: String,
    /// The target's name in its parent.
    name: String,
    /// The target's parent, held open since staging.
    parent: Beneath,
    target: PathBuf,
    existed: bool,
    /// The old directory's name in the parent, once it is aside.
    old: Option<String>,
    bytes: u64,
    /// What the user should hear (timeline chosen, archiving).
    notes: Vec<String>,
    /// The timeline recovery follows.
    timeline: Option<u32>,
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

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn timeline(&self) -> Option<u32> {
        self.timeline
    }

    fn swap(&mut self) -> Result<Swapped> {
        if let Some(pid) = running_postmaster(&self.target) {
            return Err(Error::Target(format!(
                "a PostgreSQL server (pid {pid}) started on {} during the restore; nothing was changed",
                self.target.display()
            )));
        }
        let mut old = None;
        let at_target = self.parent.ino_name(&self.name);
        if self.existed && at_target.is_some() {
            let empty = std::fs::read_dir(self.parent.via(&self.name))
                .map(|mut rd| rd.next().is_none())
                .unwrap_or(false);
            if empty {
                self.parent
                    .unlink_name(&self.name, true)
                    .map_err(|e| Error::io("removing the empty directory", &self.target, e))?;
            } else {
                let aside = format!(
                    ".{}.strongroom-old-{}",
                    self.name,
                    jiff::Timestamp::now().as_second()
                );
                self.parent.rename_name(&self.name, &aside).map_err(|e| {
                    Error::io("moving the old data directory aside", &self.target, e)
                })?;
                old = Some(aside);
            }
        }
        if let Err(e) = self.parent.rename_name(&self.scratch_name, &self.name) {
            if let Some(aside) = &old {
                let _ = self.parent.rename_name(aside, &self.name);
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
        let incomplete = self.parent.sync().err().map(|e| e.to_string());
        self.old = old.clone();
        Ok(Swapped {
            old: old.map(|n| self.parent.shown(&n).display().to_string()),
            moved_aside: Vec::new(),
            incomplete,
        })
    }

    fn discard_old(&mut self) -> Result<()> {
        if let Some(old) = self.old.take() {
            // std's remove_dir_all never follows a link inside; the held parent keeps the
            // path from being redirected.
            std::fs::remove_dir_all(self.parent.via(&old))
                .map_err(|e| Error::io("removing", self.parent.shown(&old), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! A snapshot forged by whoever holds a key file (the README hands one to `postgres` for
    //! `archive_command`), restored by root: it must not reach outside the data directory.

    use super::*;
    use crate::chunker::FixedBatcher;
    use crate::progress::Silent;
    use crate::repository::snapshot::{BackupKind, Chunking, EngineKind, TreeEntry};
    use crate::repository::writer::BackupWriter;
    use crate::repository::writer::tests::memory_repo;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use strongroom_testkit::attacker::Attacker;

    /// One entry of a forged snapshot.
    pub(crate) enum Forged<'a> {
        Dir(&'a str),
        Link(&'a str, &'a str),
        File(&'a str, &'a [u8]),
    }

    /// Writes a physical snapshot of `entries` through the library's own writer, as anyone
    /// holding the repository's key could, claiming `owner` as the data directory's owner.
    pub(crate) fn forge(repo: &Repository, entries: &[Forged<'_>], owner: (u32, u32)) -> Snapshot {
        let w = BackupWriter::new(repo).unwrap();
        let chunking = Chunking::Fixed { size: 4096 };
        let files = w
            .write_files(crate::repository::pack::Coding::pages(3), &Silent, |sink| {
                for e in entries {
                    let (name, tree) = match e {
                        Forged::Dir(name) => (
                            name,
                            TreeEntry {
                                mode: 0o700,
                                dir: true,
                                ..TreeEntry::default()
                            },
                        ),
                        Forged::Link(name, to) => (
                            name,
                            TreeEntry {
                                mode: 0o777,
                                link: Some(to.to_string()),
                                ..TreeEntry::default()
                            },
                        ),
                        Forged::File(name, data) => {
                            let mut b = FixedBatcher::new(4096);
                            if let Some(x) = b.push(data) {
                                sink.push(x)?;
                            }
                            if let Some(x) = b.finish() {
                                sink.push(x)?;
                            }
                            let sum = blake3::hash(data).to_hex().to_string();
                            (
                                name,
                                TreeEntry {
                                    mode: 0o644,
                                    checksum: Some(sum),
                                    ..TreeEntry::default()
                                },
                            )
                        }
                    };
                    sink.end_file(name, chunking, Some(tree))?;
                }
                Ok(())
            })
            .unwrap();
        w.finish().unwrap();
        let mut s = crate::repository::snapshot::tests::sample("", "forged", &[]);
        s.engine = EngineKind::Postgres;
        s.kind = BackupKind::Physical;
        PhysicalMetadata {
            wal_included: true,
            owner: Some(owner),
            ..PhysicalMetadata::default()
        }
        .write_into(&mut s.metadata.extra);
        s.files = files;
        repo.write_snapshot(&mut s).unwrap();
        s
    }

    /// A world-readable scratch place holding `vault`, a directory only root may write in.
    fn place_with_vault(attacker: &Attacker) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let vault = tmp.path().join("vault");
        std::fs::create_dir(&vault).unwrap();
        std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
        let probe = attacker
            .command("touch")
            .arg(vault.join("probe"))
            .status()
            .unwrap();
        assert!(
            !probe.success(),
            "the attacker must not be able to write in the vault"
        );
        (tmp, vault)
    }

    #[test]
    fn a_forged_snapshot_cannot_write_below_a_link_it_stores() {
        let Some(attacker) = Attacker::find() else {
            return;
        };
        let (tmp, vault) = place_with_vault(&attacker);
        let repo = memory_repo();
        let vault_s = vault.to_string_lossy().into_owned();
        let snap = forge(
            &repo,
            &[
                Forged::Dir("global"),
                Forged::Link("lnk", &vault_s),
                Forged::File("lnk/file", b"* * * * * root sh /tmp/owned\n"),
                Forged::File("global/pg_control", b"control"),
                Forged::File("backup_label", b"label"),
            ],
            (attacker.uid, attacker.gid),
        );
        let index = repo.load_index().unwrap();

        // Both ways a physical snapshot is restored: beside a target, and into a new
        // directory (verify's throwaway server).
        let target = tmp.path().join("main");
        let staged = stage(
            &repo,
            &index,
            &snap,
            &target,
            &TargetState::Absent,
            &RestoreOptions::default(),
            &Silent,
        );
        let into = restore_into(
            &repo,
            &index,
            &snap,
            &tmp.path().join("throwaway"),
            &RecoveryTarget::Latest,
            &Silent,
        );
        for e in [staged.err(), into.err()] {
            let e = e.expect("the forged snapshot must be refused");
            let said = e.to_string();
            assert!(e.is_damage(), "{said}");
            assert!(
                said.contains("\"lnk/file\"") && said.contains(snap.short_id()),
                "{said}"
            );
            assert!(said.contains("outside the data directory"), "{said}");
        }
        let inside: Vec<_> = std::fs::read_dir(&vault).unwrap().collect();
        assert!(inside.is_empty(), "written into the vault: {inside:?}");
        assert!(!target.exists());
    }

    #[test]
    fn recovery_settings_are_never_written_through_a_link_the_snapshot_stores() {
        let Some(attacker) = Attacker::find() else {
            return;
        };
        let (tmp, vault) = place_with_vault(&attacker);
        let secret = vault.join("secret");
        std::fs::write(&secret, "root only\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let signal = vault.join("signal");
        std::fs::write(&signal, "keep me\n").unwrap();
        let repo = memory_repo();
        let (secret_s, signal_s) = (
            secret.to_string_lossy().into_owned(),
            signal.to_string_lossy().into_owned(),
        );
        let snap = forge(
            &repo,
            &[
                Forged::Dir("global"),
                Forged::Link("postgresql.auto.conf", &secret_s),
                Forged::Link("recovery.signal", &signal_s),
                Forged::File("global/pg_control", b"control"),
                Forged::File("backup_label", b"label"),
            ],
            (attacker.uid, attacker.gid),
        );
        let index = repo.load_index().unwrap();
        let dir = tmp.path().join("restored");
        restore_into(&repo, &index, &snap, &dir, &RecoveryTarget::Latest, &Silent).unwrap();

        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");
        assert_eq!(std::fs::read_to_string(&signal).unwrap(), "keep me\n");
        let meta = std::fs::metadata(&secret).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
        // The restored settings are a file of the attacker's own, holding none of root's.
        let auto = dir.join("postgresql.auto.conf");
        let meta = std::fs::symlink_metadata(&auto).unwrap();
        assert!(meta.is_file() && meta.uid() == attacker.uid);
        let read = attacker.sh(&format!("cat '{}'", auto.display()));
        let text = String::from_utf8_lossy(&read.stdout);
        assert!(
            text.contains("restore_command") && !text.contains("root only"),
            "{text}"
        );
        assert!(
            std::fs::symlink_metadata(dir.join("recovery.signal"))
                .unwrap()
                .is_file()
        );
    }

    /// Runs its action once, when the restore starts writing files.
    struct Midway<F: Fn() + Sync>(F, std::sync::Once);

    impl<F: Fn() + Sync> Progress for Midway<F> {
        fn begin(&self, label: &str, _total: Option<u64>) {
            if label == "restore" {
                self.1.call_once(|| (self.0)());
            }
        }
    }

    #[test]
    fn a_link_planted_in_the_directory_during_the_restore_is_never_followed() {
        let Some(attacker) = Attacker::find() else {
            return;
        };
        let (tmp, vault) = place_with_vault(&attacker);
        let repo = memory_repo();
        let snap = forge(
            &repo,
            &[
                Forged::Dir("base"),
                Forged::Dir("base/1"),
                Forged::File("base/1/1259", b"pages"),
                Forged::Dir("global"),
                Forged::File("global/pg_control", b"control"),
                Forged::File("backup_label", b"label"),
            ],
            (attacker.uid, attacker.gid),
        );
        let index = repo.load_index().unwrap();
        let dir = tmp.path().join("restored");
        // As if the directory were one another user can write in: they plant links where
        // the snapshot's directories go, after the restore created the directory.
        let plant = Midway(
            || {
                attacker.take(&dir);
                attacker.sh(&format!(
                    "ln -s '{v}' '{d}/base' && ln -s '{v}' '{d}/global'",
                    v = vault.display(),
                    d = dir.display()
                ));
            },
            std::sync::Once::new(),
        );
        let e = restore_into(&repo, &index, &snap, &dir, &RecoveryTarget::Latest, &plant)
            .expect_err("a planted link must stop the restore");
        assert!(plant.1.is_completed(), "the links were planted");
        assert!(e.to_string().contains("never follows links"), "{e}");
        let inside: Vec<_> = std::fs::read_dir(&vault).unwrap().collect();
        assert!(inside.is_empty(), "written into the vault: {inside:?}");
        let meta = std::fs::metadata(&vault).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700));
    }
}

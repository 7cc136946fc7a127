//! `strongroom demo`: the whole story on an embedded hotel database, no server needed.
//!
//! Owns the demo's script: build a hotel booking database, create a repository, back up while
//! guests keep booking, take a pre-migration backup, verify by test restores, lose the
//! database, restore it and prove it is whole, check the repository, drill, apply the
//! retention policy and prune, capture every commit continuously and restore the newest
//! state, and end on `status`. Uses only the library's public operations, so
//! the demo is also an end-to-end exercise of them. Must not print: it narrates through a
//! callback and returns a summary.

use crate::crypto::KdfParams;
use crate::engine::Target;
use crate::error::{Error, Result};
use crate::hotel::{self, Rng, Scale};
use crate::human_bytes;
use crate::jobs::backup::{self, BackupOptions};
use crate::jobs::restore::RestoreRequest;
use crate::jobs::{restore, verify};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::snapshot::Snapshot;
use crate::source::{Location, Source, SqlCheck};
use crate::storage::Storage;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

const MARKER: &str = ".strongroom-demo";
/// The demo repository's password (the demo is about the story, not the secret).
pub const DEMO_PASSWORD: &str = "demo-password";

/// One backup in the summary.
#[derive(Clone, Debug, Serialize)]
pub struct DemoBackup {
    /// What it was.
    pub label: String,
    /// Snapshot id.
    pub id: String,
    /// Database size.
    pub size: u64,
    /// Bytes it added to the repository.
    pub added: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// What the demo did and measured.
#[derive(Clone, Debug, Serialize)]
pub struct DemoSummary {
    /// Where it ran.
    pub dir: PathBuf,
    /// Bookings in the generated database.
    pub bookings: u64,
    /// Bookings made while the second backup ran.
    pub booked_during_backup: u64,
    /// Backups taken.
    pub backups: Vec<DemoBackup>,
    /// Repository size on disk at the end.
    pub repository_bytes: u64,
    /// Seconds the verification took.
    pub verify_seconds: f64,
    /// Seconds the restore took.
    pub restore_seconds: f64,
    /// Whether the restored row counts equal the snapshot's.
    pub counts_match: bool,
    /// The drill's measured recovery time, in seconds.
    pub drill_rto_seconds: f64,
    /// The data-loss window the repository gave at the drill, in seconds.
    pub drill_rpo_seconds: f64,
    /// Snapshots the retention policy removed at the end.
    pub forgotten: usize,
    /// Bytes the prune after it freed.
    pub freed: u64,
    /// Continuous capture: bookings made while it ran, and those the newest restore held.
    pub captured: (u64, u64),
    /// `status` at the end: `ok`, `warning` or `critical`.
    pub status: String,
    /// Total seconds.
    pub total_seconds: f64,
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| Error::io("reading", dir, e))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(Error::DemoDirTaken(dir.to_path_buf()));
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::io("clearing the previous demo in", dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `strongroom demo`; safe to delete\n",
    )
    .map_err(|e| Error::io("writing", dir.join(MARKER), e))
}

/// Runs the demo in `dir` with `bookings` generated bookings, narrating through `say`: the
/// numbered steps in order, each a method of [`Demo`].
pub fn run(
    dir: &Path,
    bookings: u64,
    say: &mut dyn FnMut(&str),
    progress: &dyn Progress,
) -> Result<DemoSummary> {
    let t0 = Instant::now();
    prepare_dir(dir)?;
    let db = dir.join("hotel.db");
    build_database(&db, bookings, say)?;
    let mut demo = Demo::new(dir, db, say, progress)?;
    demo.say("3. First full backup (online: a read transaction, never a file copy)");
    demo.take("first full backup", &["daily"])?;
    let booked_during_backup = demo.backup_while_guests_book()?;
    let pre = demo.pre_migration_backup()?;
    let verify_seconds = demo.verify_every_snapshot()?;
    demo.lose_the_database()?;
    let restore_seconds = demo.restore(&pre)?;
    let counts_match = demo.prove_restored(&pre)?;
    demo.check_repository()?;
    let drill = demo.drill()?;
    let (forgotten, freed) = demo.apply_retention()?;
    let captured = demo.capture_every_second()?;
    let status = demo.status()?;
    Ok(DemoSummary {
        captured,
        drill_rto_seconds: drill.rto_seconds,
        drill_rpo_seconds: drill.rpo_seconds,
        status,
        forgotten,
        freed,
        dir: dir.to_path_buf(),
        bookings,
        booked_during_backup,
        repository_bytes: dir_size(&dir.join("repository")),
        backups: demo.backups,
        verify_seconds,
        restore_seconds,
        counts_match,
        total_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Step 1: the hotel database, generated.
fn build_database(db: &Path, bookings: u64, say: &mut dyn FnMut(&str)) -> Result<()> {
    say(&format!(
        "1. Building a hotel booking database with {bookings} bookings at {}",
        db.display()
    ));
    let t = Instant::now();
    hotel::create(db, Scale::bookings(bookings), 2024).map_err(|e| Error::sqlite(db, e))?;
    say(&format!(
        "   {} in {:.1} s",
        human_bytes(std::fs::metadata(db).map(|m| m.len()).unwrap_or(0)),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The demo's state between its steps: the database, its repository and source, the
/// backups taken so far, and where the story is told.
struct Demo<'a> {
    db: PathBuf,
    repo: Repository,
    source: Source,
    /// The config the later steps read (none: the strategy's defaults).
    config: crate::config::Config,
    backups: Vec<DemoBackup>,
    say: &'a mut dyn FnMut(&str),
    progress: &'a dyn Progress,
}

impl<'a> Demo<'a> {
    /// Step 2: an encrypted repository beside the database, and the database as a source
    /// with the hotel's invariant as its check.
    fn new(
        dir: &Path,
        db: PathBuf,
        say: &'a mut dyn FnMut(&str),
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        let repo_dir = dir.join("repository");
        say(&format!(
            "2. Creating an encrypted repository at {}",
            repo_dir.display()
        ));
        let storage = Storage::from_url(repo_dir.to_str().unwrap_or_default())?;
        let repo = Repository::init(
            storage,
            Some(DEMO_PASSWORD.as_bytes()),
            KdfParams::default(),
        )?;
        let source = Source {
            checks: vec![SqlCheck {
                name: "every room's booked count matches its bookings".into(),
                sql: hotel::INVARIANT_SQL.into(),
            }],
            ..Source::new("hotel", Location::Sqlite(db.clone()))
        };
        Ok(Demo {
            db,
            repo,
            source,
            config: crate::config::Config::default(),
            backups: Vec::new(),
            say,
            progress,
        })
    }

    fn say(&mut self, line: &str) {
        (self.say)(line)
    }

    /// One backup, told and remembered for the summary.
    fn take(&mut self, label: &str, tags: &[&str]) -> Result<Snapshot> {
        let t = Instant::now();
        let opts = BackupOptions {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            kind: None,
        };
        let s = backup::run(&self.repo, &self.source, &opts, self.progress)?;
        let secs = t.elapsed().as_secs_f64();
        self.say(&format!(
            "   snapshot {} of {}: added {} in {:.2} s",
            s.short_id(),
            human_bytes(s.size),
            human_bytes(s.added),
            secs
        ));
        self.backups.push(DemoBackup {
            label: label.into(),
            id: s.id.clone(),
            size: s.size,
            added: s.added,
            seconds: secs,
        });
        Ok(s)
    }

    /// Step 4: a backup while a thread keeps booking rooms; returns the bookings made
    /// while it ran (the snapshot holds one consistent moment all the same).
    fn backup_while_guests_book(&mut self) -> Result<u64> {
        self.say("4. Guests keep booking while the second backup runs");
        let stop = Arc::new(AtomicBool::new(false));
        let booked = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, booked, db) = (stop.clone(), booked.clone(), self.db.clone());
            std::thread::spawn(move || -> rusqlite::Result<()> {
                let mut c = rusqlite::Connection::open(&db)?;
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                let mut rng = Rng::new(7);
                while !stop.load(Ordering::Relaxed) {
                    hotel::book_room(&mut c, &mut rng)?;
                    booked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        };
        // Let the guests get going before the backup starts.
        while booked.load(Ordering::Relaxed) < 50 && !writer.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let before = booked.load(Ordering::Relaxed);
        let second = self.take("backup during bookings", &["daily"]);
        let during = booked.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        writer
            .join()
            .expect("booking thread")
            .map_err(|e| Error::sqlite(&self.db, e))?;
        let second = second?;
        self.say(&format!(
            "   {during} rooms were booked while it ran; the snapshot holds {} bookings: one consistent moment",
            second
                .metadata
                .row_counts
                .get("bookings")
                .copied()
                .unwrap_or(0)
        ));
        Ok(during)
    }

    /// Step 5: the backup a migration is preceded by.
    fn pre_migration_backup(&mut self) -> Result<Snapshot> {
        self.say("5. A migration is coming: pre-migration backup");
        let pre = self.take("pre-migration backup", &["pre-migration"])?;
        self.say(&format!(
            "   schema version in the snapshot: {}",
            pre.metadata.schema_version.as_deref().unwrap_or("none")
        ));
        Ok(pre)
    }

    /// Step 6: every snapshot test-restored and checked; returns the seconds it took.
    fn verify_every_snapshot(&mut self) -> Result<f64> {
        self.say(
            "6. Verifying every snapshot by a real test restore (integrity_check, row counts, checks)",
        );
        let t = Instant::now();
        let snaps = self.repo.snapshots()?;
        let source = self.source.clone();
        let report = verify::run(
            &self.repo,
            &snaps,
            &[],
            &|_| Some(source.clone()),
            &crate::engine::Scratch {
                dir: std::env::temp_dir(),
                ..Default::default()
            },
            self.progress,
        )?;
        let seconds = t.elapsed().as_secs_f64();
        for s in &report.snapshots {
            self.say(&format!(
                "   {} {}: {}",
                &s.id[..8],
                if s.ok { "ok" } else { "FAILED" },
                s.checks
                    .iter()
                    .map(|c| format!("{} {}", c.name, if c.ok { "✓" } else { "✗" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !report.ok {
            return Err(Error::Failed("verification failed during the demo".into()));
        }
        Ok(seconds)
    }

    /// Step 7: a migration goes wrong, and the database file and its sidecars are deleted.
    fn lose_the_database(&mut self) -> Result<()> {
        self.say(
            "7. The migration 20241125_add_loyalty_points goes wrong and the database is lost",
        );
        let db = &self.db;
        {
            let c = rusqlite::Connection::open(db).map_err(|e| Error::sqlite(db, e))?;
            c.execute_batch(
                "ALTER TABLE users ADD COLUMN loyalty_points INTEGER NOT NULL DEFAULT 0",
            )
            .map_err(|e| Error::sqlite(db, e))?;
            hotel::record_migration(&c, "20241125_add_loyalty_points")
                .map_err(|e| Error::sqlite(db, e))?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        let gone = format!("   {} deleted", db.display());
        self.say(&gone);
        Ok(())
    }

    /// Step 8: the pre-migration snapshot restored where the database was; returns seconds.
    fn restore(&mut self, pre: &Snapshot) -> Result<f64> {
        self.say("8. Restoring the pre-migration snapshot");
        let t = Instant::now();
        restore::run(
            &self.repo,
            &self.config,
            RestoreRequest {
                reference: pre.id.clone(),
                target: Some(Target::File(self.db.clone())),
                ..RestoreRequest::default()
            },
            self.progress,
        )?;
        let seconds = t.elapsed().as_secs_f64();
        self.say(&format!(
            "   restored in {seconds:.2} s, integrity_check ok"
        ));
        Ok(seconds)
    }

    /// Step 9: the restored database's row counts are the snapshot's and its invariant
    /// holds; fails the demo otherwise.
    fn prove_restored(&mut self, pre: &Snapshot) -> Result<bool> {
        self.say("9. Proving the restored database is the snapshot");
        let db = self.db.clone();
        let c = rusqlite::Connection::open(&db).map_err(|e| Error::sqlite(&db, e))?;
        let found = crate::engine::sqlite::row_counts(&c, &db)?;
        let counts_match = found == pre.metadata.row_counts;
        for (t, n) in &found {
            self.say(&format!(
                "   {t:<20} {n:>9} {} (snapshot: {})",
                if *n == 1 { "row " } else { "rows" },
                pre.metadata.row_counts.get(t).copied().unwrap_or(0)
            ));
        }
        let invariant: bool = c
            .query_row(hotel::INVARIANT_SQL, [], |r| r.get(0))
            .map_err(|e| Error::sqlite(&db, e))?;
        if !counts_match || !invariant {
            return Err(Error::Failed(
                "the restored database does not match its snapshot".into(),
            ));
        }
        Ok(counts_match)
    }

    /// Step 10: `check --read-data`.
    fn check_repository(&mut self) -> Result<()> {
        self.say("10. Checking the repository: every object read back and authenticated");
        let checked = crate::jobs::integrity::run(&self.repo, true, self.progress)?;
        if !checked.ok {
            return Err(Error::Failed(
                "the repository check found damage during the demo".into(),
            ));
        }
        self.say(&format!(
            "   {} snapshots, every pack, index object and journal record: ok",
            checked.snapshots
        ));
        Ok(())
    }

    /// Step 11: a drill, timed phase by phase against the objectives.
    fn drill(&mut self) -> Result<crate::jobs::drill::DrillReport> {
        self.say(
            "11. A disaster-recovery drill: a random recent snapshot restored and checked, every phase timed",
        );
        let drill = crate::jobs::drill::run(
            &self.repo,
            &crate::jobs::drill::Plan {
                filter: Default::default(),
                reference: None,
                seed: 11,
                now: jiff::Timestamp::now(),
                config: &self.config,
                scratch: crate::engine::Scratch {
                    dir: std::env::temp_dir(),
                    ..Default::default()
                },
            },
            self.progress,
        )?;
        let objective =
            |secs: f64| crate::monitor::human_duration(std::time::Duration::from_secs_f64(secs));
        let met = |m: bool| if m { "met" } else { "MISSED" };
        self.say(&format!(
            "   snapshot {}: recovered and checked in {:.2} s ({}); RTO objective {}: {}",
            crate::repository::snapshot::short_id(&drill.snapshot),
            drill.rto_seconds,
            drill
                .phases
                .iter()
                .map(|p| format!("{} {:.2} s", p.name, p.seconds))
                .collect::<Vec<_>>()
                .join(", "),
            objective(drill.rto_objective_seconds),
            met(drill.rto_met)
        ));
        self.say(&format!(
            "   a failure now would lose the last {:.0} s of bookings (RPO objective {}: {})",
            drill.rpo_seconds,
            objective(drill.rpo_objective_seconds),
            met(drill.rpo_met)
        ));
        if !drill.ok {
            return Err(Error::Failed("the drill failed during the demo".into()));
        }
        Ok(drill)
    }

    /// Step 12: `forget --prune` with the strategy's policy; returns the snapshots removed
    /// and the bytes freed.
    fn apply_retention(&mut self) -> Result<(usize, u64)> {
        self.say(
            "12. Applying the retention policy, as status asks weekly (`strongroom forget --prune`): old snapshots forgotten, then what nothing needs deleted",
        );
        let forgotten = crate::jobs::forget::run(
            &self.repo,
            &crate::jobs::forget::ForgetOptions {
                policy: self.config.retention.policy().expect("validated at load"),
                filter: Default::default(),
                ids: Vec::new(),
                dry_run: false,
                now: jiff::Timestamp::now(),
            },
        )?;
        for k in &forgotten.keep {
            self.say(&format!(
                "   keep   {} ({})",
                k.short_id,
                k.reasons.join(", ")
            ));
        }
        for r in &forgotten.remove {
            self.say(&format!(
                "   remove {} (no rule keeps it: the policy keeps the newest of each day, week and month)",
                r.short_id
            ));
        }
        let pruned = crate::jobs::prune::run(&self.repo, &Default::default(), self.progress)?;
        let freed = pruned.freed.max(0) as u64;
        let reclaimed = if freed > 0 {
            format!("prune freed {}", human_bytes(freed))
        } else if pruned.unused_bytes_kept > 0 {
            format!(
                "the {} only they needed stays for now, in packs still mostly in use (prune repacks them once that is worth it)",
                human_bytes(pruned.unused_bytes_kept)
            )
        } else {
            "nothing for prune to delete: the kept snapshot needs every pack".to_string()
        };
        self.say(&format!(
            "   {} kept, {} removed; {reclaimed}",
            crate::counted(forgotten.keep.len(), "snapshot"),
            crate::counted(forgotten.remove.len(), "snapshot"),
        ));
        Ok((forgotten.remove.len(), freed))
    }

    /// Step 13: continuous capture while guests book, then the newest state restored
    /// beside the database; returns the bookings made and those the restore holds.
    fn capture_every_second(&mut self) -> Result<(u64, u64)> {
        self.say(
            "13. Continuous capture (`strongroom replicate`): each commit stored about a second after it is made",
        );
        let c = rusqlite::Connection::open(&self.db).map_err(|e| Error::sqlite(&self.db, e))?;
        let count = |c: &rusqlite::Connection| -> rusqlite::Result<u64> {
            c.query_row("SELECT count(*) FROM bookings", [], |r| r.get(0))
        };
        c.execute_batch("PRAGMA journal_mode = WAL")
            .map_err(|e| Error::sqlite(&self.db, e))?;
        let before = count(&c).map_err(|e| Error::sqlite(&self.db, e))?;
        let stop = AtomicBool::new(false);
        let guests_done = Arc::new(AtomicBool::new(false));
        let booked = Arc::new(AtomicU64::new(0));
        let opts = crate::jobs::replicate::ReplicateOptions::default();
        let (repo, source, progress) = (&self.repo, &self.source, self.progress);
        let summary = std::thread::scope(|s| -> Result<_> {
            let capture =
                s.spawn(|| crate::jobs::replicate::run(repo, source, &opts, &stop, progress));
            let guests = {
                let (done, booked, db) = (guests_done.clone(), booked.clone(), self.db.clone());
                s.spawn(move || -> rusqlite::Result<()> {
                    let mut c = rusqlite::Connection::open(&db)?;
                    c.busy_timeout(std::time::Duration::from_secs(10))?;
                    let mut rng = Rng::new(13);
                    while !done.load(Ordering::Relaxed) {
                        hotel::book_room(&mut c, &mut rng)?;
                        booked.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Ok(())
                })
            };
            std::thread::sleep(std::time::Duration::from_secs(4));
            guests_done.store(true, Ordering::Relaxed);
            let guests = guests.join().expect("booking thread");
            // The host goes down: the capture stores what was committed, then stops.
            stop.store(true, Ordering::SeqCst);
            let summary = capture.join().expect("capture thread");
            guests.map_err(|e| Error::sqlite(&self.db, e))?;
            summary
        })?;
        let made = booked.load(Ordering::Relaxed);
        self.say(&format!(
            "   {made} rooms booked in 4 s; {} transactions captured in {} segments ({}), base snapshot {}",
            summary.transactions,
            summary.segments,
            human_bytes(summary.bytes),
            if summary.bases > 0 { "taken" } else { "reused" }
        ));
        let side = self.db.with_file_name("hotel-captured.db");
        let _ = std::fs::remove_file(&side);
        let out = restore::run(
            &self.repo,
            &self.config,
            RestoreRequest {
                reference: "latest".into(),
                filter: crate::repository::snapshot::Filter {
                    source: Some(crate::source::SourceMatch::new("hotel")),
                    tags: Vec::new(),
                },
                target: Some(Target::File(side.clone())),
                ..RestoreRequest::default()
            },
            self.progress,
        )?;
        let r = rusqlite::Connection::open(&side).map_err(|e| Error::sqlite(&side, e))?;
        let held = count(&r).map_err(|e| Error::sqlite(&side, e))? - before;
        self.say(&format!(
            "   the newest state restored to {}: {held} of the {made} new bookings ({}), checked with integrity_check",
            side.display(),
            out.notes.join("; ")
        ));
        if held != made {
            return Err(Error::Failed(format!(
                "the captured restore holds {held} of {made} bookings"
            )));
        }
        Ok((made, held))
    }

    /// Step 14: `status` from the repository's evidence; returns its level's name.
    fn status(&mut self) -> Result<String> {
        self.say(
            "14. Status: can we recover, and how much would we lose? (from the repository's evidence)",
        );
        let evidence = crate::monitor::evidence::gather(
            &self.repo,
            &self.config,
            &crate::monitor::evidence::Scope::default(),
        )?;
        let health =
            crate::monitor::evaluate::evaluate(&self.config, &evidence, jiff::Timestamp::now());
        for h in &health.sources {
            self.say(&format!("   {}: {}", h.source, h.level.name()));
            for c in &h.checks {
                self.say(&format!(
                    "     {:<8} {:<18} {}",
                    c.level.name(),
                    c.name,
                    c.detail
                ));
            }
        }
        Ok(health.level().name().to_string())
    }
}

//! `strongroom demo`: the whole story on an embedded hotel database, no server needed.
//!
//! Owns the demo's script: build a hotel booking database, create a repository, back up while
//! guests keep booking, take a pre-migration backup, verify by test restores, lose the
//! database, restore it and prove it is whole, check the repository, drill, apply the
//! retention policy and prune, and end on `status`. Uses only the library's public operations, so
//! the demo is also an end-to-end exercise of them. Must not print: it narrates through a
//! callback and returns a summary.

use crate::backup::{self, BackupOptions};
use crate::crypto::KdfParams;
use crate::engine::Target;
use crate::error::{Error, Result};
use crate::hotel::{self, Rng, Scale};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::snapshot::Snapshot;
use crate::restore::RestoreRequest;
use crate::source::{Location, Source, SqlCheck};
use crate::storage::Storage;
use crate::{human_bytes, restore, verify};
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

/// Runs the demo in `dir` with `bookings` generated bookings, narrating through `say`.
pub fn run(
    dir: &Path,
    bookings: u64,
    say: &mut dyn FnMut(&str),
    progress: &dyn Progress,
) -> Result<DemoSummary> {
    let t0 = Instant::now();
    prepare_dir(dir)?;
    let db = dir.join("hotel.db");
    let repo_dir = dir.join("repository");

    say(&format!(
        "1. Building a hotel booking database with {bookings} bookings at {}",
        db.display()
    ));
    let t = Instant::now();
    hotel::create(&db, Scale::bookings(bookings), 2024).map_err(|e| Error::sqlite(&db, e))?;
    say(&format!(
        "   {} in {:.1} s",
        human_bytes(std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)),
        t.elapsed().as_secs_f64()
    ));

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
    let mut backups = Vec::new();
    let mut take = |label: &str, tags: &[&str], say: &mut dyn FnMut(&str)| -> Result<Snapshot> {
        let t = Instant::now();
        let opts = BackupOptions {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            kind: None,
        };
        let s = backup::run(&repo, &source, &opts, progress)?;
        let secs = t.elapsed().as_secs_f64();
        say(&format!(
            "   snapshot {} of {}: added {} in {:.2} s",
            s.short_id(),
            human_bytes(s.size),
            human_bytes(s.added),
            secs
        ));
        backups.push(DemoBackup {
            label: label.into(),
            id: s.id.clone(),
            size: s.size,
            added: s.added,
            seconds: secs,
        });
        Ok(s)
    };

    say("3. First full backup (online: a read transaction, never a file copy)");
    take("first full backup", &["daily"], say)?;

    say("4. Guests keep booking while the second backup runs");
    let stop = Arc::new(AtomicBool::new(false));
    let booked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, booked, db) = (stop.clone(), booked.clone(), db.clone());
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
    let second = take("backup during bookings", &["daily"], say);
    let during = booked.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer
        .join()
        .expect("booking thread")
        .map_err(|e| Error::sqlite(&db, e))?;
    let second = second?;
    say(&format!(
        "   {during} rooms were booked while it ran; the snapshot holds {} bookings: one consistent moment",
        second
            .metadata
            .row_counts
            .get("bookings")
            .copied()
            .unwrap_or(0)
    ));

    say("5. A migration is coming: pre-migration backup");
    let pre = take("pre-migration backup", &["pre-migration"], say)?;
    say(&format!(
        "   schema version in the snapshot: {}",
        pre.metadata.schema_version.as_deref().unwrap_or("none")
    ));

    say("6. Verifying every snapshot by a real test restore (integrity_check, row counts, checks)");
    let t = Instant::now();
    let snaps = repo.snapshots()?;
    let report = verify::run(
        &repo,
        &snaps,
        &[],
        &|_| Some(source.clone()),
        &crate::engine::Scratch {
            dir: std::env::temp_dir(),
            ..Default::default()
        },
        progress,
    )?;
    let verify_seconds = t.elapsed().as_secs_f64();
    for s in &report.snapshots {
        say(&format!(
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

    say("7. The migration 20241125_add_loyalty_points goes wrong and the database is lost");
    {
        let c = rusqlite::Connection::open(&db).map_err(|e| Error::sqlite(&db, e))?;
        c.execute_batch("ALTER TABLE users ADD COLUMN loyalty_points INTEGER NOT NULL DEFAULT 0")
            .map_err(|e| Error::sqlite(&db, e))?;
        hotel::record_migration(&c, "20241125_add_loyalty_points")
            .map_err(|e| Error::sqlite(&db, e))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    say(&format!("   {} deleted", db.display()));

    say("8. Restoring the pre-migration snapshot");
    let t = Instant::now();
    restore::run(
        &repo,
        &crate::config::Config::default(),
        RestoreRequest {
            reference: pre.id.clone(),
            target: Some(Target::File(db.clone())),
            ..RestoreRequest::default()
        },
        progress,
    )?;
    let restore_seconds = t.elapsed().as_secs_f64();
    say(&format!(
        "   restored in {restore_seconds:.2} s, integrity_check ok"
    ));

    say("9. Proving the restored database is the snapshot");
    let c = rusqlite::Connection::open(&db).map_err(|e| Error::sqlite(&db, e))?;
    let found = crate::engine::sqlite::row_counts(&c, &db)?;
    let counts_match = found == pre.metadata.row_counts;
    for (t, n) in &found {
        say(&format!(
            "   {t:<20} {n:>9} {} (snapshot: {})",
            if *n == 1 { "row " } else { "rows" },
            pre.metadata.row_counts.get(t).copied().unwrap_or(0)
        ));
    }
    let invariant: bool = c
        .query_row(hotel::INVARIANT_SQL, [], |r| r.get(0))
        .map_err(|e| Error::sqlite(&db, e))?;
    drop(c);
    if !counts_match || !invariant {
        return Err(Error::Failed(
            "the restored database does not match its snapshot".into(),
        ));
    }

    say("10. Checking the repository: every object read back and authenticated");
    let checked = crate::integrity::run(&repo, true, progress)?;
    if !checked.ok {
        return Err(Error::Failed(
            "the repository check found damage during the demo".into(),
        ));
    }
    say(&format!(
        "   {} snapshots, every pack, index object and journal record: ok",
        checked.snapshots
    ));

    say(
        "11. A disaster-recovery drill: a random recent snapshot restored and checked, every phase timed",
    );
    let config = crate::config::Config::default();
    let drill = crate::drill::run(
        &repo,
        &crate::drill::Plan {
            filter: Default::default(),
            reference: None,
            seed: 11,
            now: jiff::Timestamp::now(),
            config: &config,
            scratch: crate::engine::Scratch {
                dir: std::env::temp_dir(),
                ..Default::default()
            },
        },
        progress,
    )?;
    say(&format!(
        "   snapshot {}: recovered and checked in {:.2} s ({}); RTO objective {}: {}",
        crate::repository::snapshot::short_id(&drill.snapshot),
        drill.rto_seconds,
        drill
            .phases
            .iter()
            .map(|p| format!("{} {:.2} s", p.name, p.seconds))
            .collect::<Vec<_>>()
            .join(", "),
        crate::monitor::human_duration(std::time::Duration::from_secs_f64(
            drill.rto_objective_seconds
        )),
        if drill.rto_met { "met" } else { "MISSED" }
    ));
    say(&format!(
        "   a failure now would lose the last {:.0} s of bookings (RPO objective {}: {})",
        drill.rpo_seconds,
        crate::monitor::human_duration(std::time::Duration::from_secs_f64(
            drill.rpo_objective_seconds
        )),
        if drill.rpo_met { "met" } else { "MISSED" }
    ));
    if !drill.ok {
        return Err(Error::Failed("the drill failed during the demo".into()));
    }

    say(
        "12. Applying the retention policy, as status asks weekly (`strongroom forget --prune`): old snapshots forgotten, then what nothing needs deleted",
    );
    let forgotten = crate::forget::run(
        &repo,
        &crate::forget::ForgetOptions {
            policy: config.retention.policy().expect("validated at load"),
            filter: Default::default(),
            ids: Vec::new(),
            dry_run: false,
            now: jiff::Timestamp::now(),
        },
    )?;
    for k in &forgotten.keep {
        say(&format!(
            "   keep   {} ({})",
            k.short_id,
            k.reasons.join(", ")
        ));
    }
    for r in &forgotten.remove {
        say(&format!(
            "   remove {} (no rule keeps it: the policy keeps the newest of each day, week and month)",
            r.short_id
        ));
    }
    let pruned = crate::prune::run(&repo, &Default::default(), progress)?;
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
    say(&format!(
        "   {} kept, {} removed; {reclaimed}",
        crate::counted(forgotten.keep.len(), "snapshot"),
        crate::counted(forgotten.remove.len(), "snapshot"),
    ));

    say("13. Status: can we recover, and how much would we lose? (from the repository's evidence)");
    let evidence = crate::monitor::evidence::gather(
        &repo,
        &config,
        &crate::monitor::evidence::Scope::default(),
    )?;
    let health = crate::monitor::evaluate::evaluate(&config, &evidence, jiff::Timestamp::now());
    for h in &health.sources {
        say(&format!("   {}: {}", h.source, h.level.name()));
        for c in &h.checks {
            say(&format!(
                "     {:<8} {:<18} {}",
                c.level.name(),
                c.name,
                c.detail
            ));
        }
    }

    let summary = DemoSummary {
        drill_rto_seconds: drill.rto_seconds,
        drill_rpo_seconds: drill.rpo_seconds,
        status: health.level().name().to_string(),
        forgotten: forgotten.remove.len(),
        freed,
        dir: dir.to_path_buf(),
        bookings,
        booked_during_backup: during,
        repository_bytes: dir_size(&repo_dir),
        backups,
        verify_seconds,
        restore_seconds,
        counts_match,
        total_seconds: t0.elapsed().as_secs_f64(),
    };
    Ok(summary)
}

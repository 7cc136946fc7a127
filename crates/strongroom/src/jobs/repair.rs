//! Repair: rebuild the index from the packs themselves (`strongroom repair index`).
//!
//! Owns the `repair index` job. Every pack carries a sealed trailer listing its chunks
//! (`repository::pack`), so the index is redundant: when index objects are damaged or lost,
//! or name packs that are gone, the trailers say what is really stored. Must not delete a
//! pack or a snapshot: it rewrites only the index (and drops damage records of packs that
//! no longer exist).
//!
//! Why it matters for safety: after a repair, the index names only chunks whose packs exist
//! and open, so a backup never deduplicates against a chunk that is gone, and `prune`, which
//! refuses to run on an index it cannot fully read, can run again.
//!
//! Order: list the index objects, then the packs; read each pack's trailer (two ranged
//! reads, not the whole pack); write new index objects; only then delete the old ones. A
//! kill before the deletes leaves old and new side by side (entries the old ones hold for
//! missing packs are then still there; the next repair removes them). It takes the prune
//! lock, so it never runs beside a prune, and deletes no data, so backups and restores may
//! run meanwhile (their own new index objects were not listed, so they stay).

use crate::error::Result;
use crate::id::PackId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::repository::index::Entry;
use crate::repository::journal::JournalRecord;
use crate::repository::layout::ObjectKind;
use crate::repository::lock::LockKind;
use serde::Serialize;

/// Entries per index object written.
const PER_OBJECT: usize = 262_144;

/// What `repair index` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// Packs whose trailers were read.
    pub packs: usize,
    /// Chunks found in them.
    pub chunks: usize,
    /// Index objects written.
    pub index_written: usize,
    /// Old index objects removed.
    pub index_removed: usize,
    /// Packs whose trailer could not be read, with why (recorded damaged; their chunks are
    /// stored again by the next backup that meets them).
    pub unreadable_packs: Vec<String>,
    /// Damage records removed because their pack no longer exists or reads sound.
    pub damage_cleared: usize,
}

/// Rebuilds the index from pack trailers and records the job in the journal.
pub fn index(repo: &Repository, progress: &dyn Progress) -> Result<RepairReport> {
    repo.require_full("repair the index")?;
    let started_at = jiff::Timestamp::now();
    let running = repo.job_started("repair", None, None, started_at);
    let result = rebuild(repo, progress);
    let mut rec = JournalRecord::new("repair", started_at);
    if let Err(e) = &result {
        rec.failed(e);
    }
    running.ended(repo, &rec);
    result
}

fn rebuild(repo: &Repository, progress: &dyn Progress) -> Result<RepairReport> {
    let _lock = repo.lock(LockKind::Prune, "repair")?;
    let storage = repo.storage();
    let old = storage.list(ObjectKind::Index.folder())?;
    let packs: Vec<(PackId, u64)> = storage
        .list(ObjectKind::Pack.folder())?
        .into_iter()
        .filter_map(|o| Some((PackId::from_object_key(&o.key)?, o.size)))
        .collect();
    let damaged = repo.damaged_packs()?;
    // Packs an unfinished prune will delete stay out: indexing them again would leave the
    // index naming packs that are about to disappear (a pack the prune spares is indexed
    // by the prune itself).
    let doomed = repo.doomed_packs()?;
    let packs: Vec<(PackId, u64)> = packs
        .into_iter()
        .filter(|(p, _)| !doomed.contains(p))
        .collect();
    let mut report = RepairReport::default();
    let mut entries: Vec<Entry> = Vec::new();
    progress.begin("reading pack trailers", Some(packs.len() as u64));
    for (id, size) in &packs {
        let object = id.object_key();
        let found = repo.pack_trailer(*id, *size);
        progress.advance(1);
        match found {
            Ok(e) => {
                report.packs += 1;
                report.chunks += e.len();
                entries.extend(e);
            }
            Err(e) if e.is_damage() => {
                tracing::warn!("{e}; its chunks are left out of the index");
                let _ = repo.record_damage(id, &e.to_string());
                report.unreadable_packs.push(format!("{object}: {e}"));
            }
            Err(e) => return Err(e),
        }
        if entries.len() >= PER_OBJECT {
            repo.write_index(&entries)?;
            report.index_written += 1;
            entries.clear();
        }
    }
    progress.end();
    if !entries.is_empty() {
        repo.write_index(&entries)?;
        report.index_written += 1;
    }
    // With object lock, their versions wait in the expiring list for prune.
    let old_keys: Vec<String> = old.iter().map(|o| o.key.clone()).collect();
    repo.delete_objects(&old_keys)?;
    report.index_removed += old_keys.len();
    let present: std::collections::HashSet<PackId> = packs.iter().map(|(p, _)| *p).collect();
    for p in damaged.iter().filter(|p| !present.contains(p)) {
        repo.clear_damage(p)?;
        report.damage_cleared += 1;
    }
    Ok(report)
}

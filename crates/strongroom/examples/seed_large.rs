//! Grows a repository to the size the dashboard's speed goal names, for `bench/daemon.sh`:
//! `seed_large REPO SNAPSHOTS RECORDS` (password in `STRONGROOM_PASSWORD`).
//!
//! Takes the repository's newest snapshot as a template and writes SNAPSHOTS more manifests
//! an hour apart going back in time (each a real, restorable snapshot: the same chunks, its
//! own times and figures), then RECORDS journal records of the jobs a daemon runs (backups,
//! verifies, a failure now and then). Bench tooling, not a command: nothing else writes
//! manifests this way.

use jiff::SignedDuration;
use strongroom::repository::Repository;
use strongroom::repository::journal::JournalRecord;
use strongroom::storage::Storage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, snapshots, records] = args.as_slice() else {
        return Err("usage: seed_large REPO SNAPSHOTS RECORDS".into());
    };
    let (snapshots, records): (i64, i64) = (snapshots.parse()?, records.parse()?);
    let password = std::env::var("STRONGROOM_PASSWORD")?;
    let repo = Repository::open(Storage::from_url(url)?, Some(password.as_bytes()))?;
    let template = repo
        .snapshots()?
        .pop()
        .ok_or("the repository needs one snapshot to copy")?;
    for i in 1..=snapshots {
        let mut s = template.clone();
        let back = SignedDuration::from_hours(i);
        s.started_at = template.started_at - back;
        s.finished_at = template.finished_at - back;
        s.size = template.size + (i as u64 % 97) * 4096;
        s.added = (i as u64 % 13) * 8192;
        repo.write_snapshot(&mut s)?;
    }
    let host = strongroom::hostname();
    for i in 0..records {
        let at = template.finished_at - SignedDuration::from_mins(i * 7);
        let (job, ok) = match i % 10 {
            0 => ("verify", true),
            7 => ("backup", i % 70 != 7),
            _ => ("backup", true),
        };
        repo.journal(&JournalRecord {
            job: job.into(),
            source: Some(template.source.clone()),
            snapshot: Some(template.id.clone()),
            started_at: at - SignedDuration::from_secs(3),
            finished_at: at,
            seconds: 3.0,
            ok,
            error: (!ok).then(|| "the store did not answer".to_string()),
            error_kind: (!ok).then(|| "storage_unreachable".to_string()),
            size: template.size,
            added: 8192,
            hostname: host.clone(),
            kind: (job == "backup").then(|| template.kind.to_string()),
            wal: None,
            drill: None,
            side: false,
            copy: None,
            by: None,
        })?;
    }
    println!("wrote {snapshots} snapshots and {records} journal records");
    Ok(())
}

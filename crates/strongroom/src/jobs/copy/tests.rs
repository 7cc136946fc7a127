use super::*;
use crate::crypto::KdfParams;
use crate::progress::Silent;
use crate::repository::archive::Archive;
use crate::repository::writer::tests::{memory_repo, pages, snapshot_of, store_pages};
use crate::storage::Storage;

fn cheap() -> KdfParams {
    KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    }
}

fn copy_of(source: &Repository) -> Repository {
    Repository::init_copy(
        Storage::from_url("memory://").unwrap(),
        Some(b"its own"),
        cheap(),
        source,
        None,
    )
    .unwrap()
}

fn run_copy(source: &Repository, dest: &Repository) -> CopyReport {
    copy(source, dest, "memory://", &CopyOptions::default(), &Silent).unwrap()
}

/// The bytes of every file of `snap` as read back from `repo`.
fn restored(repo: &Repository, id: &str) -> Vec<u8> {
    let snap = repo.read_snapshot(id).unwrap();
    let index = repo.load_index().unwrap();
    let mut out = Vec::new();
    for f in &snap.files {
        reader::stream_file(repo, &index, &snap, f, &mut out, &Silent).unwrap();
    }
    out
}

#[test]
fn a_copy_shares_the_keys_and_a_second_run_moves_nothing() {
    let source = memory_repo();
    let a = pages(300, 1);
    let (fa, _) = store_pages(&source, &a);
    let sa = snapshot_of(&source, vec![fa]);
    let dest = copy_of(&source);
    assert_eq!(dest.config().family(), source.config().id);
    assert_ne!(dest.config().id, source.config().id);
    let r = run_copy(&source, &dest);
    assert_eq!(r.figures.snapshots_copied, 1);
    assert!(r.packs_copied >= 1 && r.failures.is_empty(), "{r:?}");
    assert!(restored(&dest, &sa.id) == a);

    // Half the pages change: the second run reads what the backup added, and no more.
    let mut b = a.clone();
    b[..150 * 4096].copy_from_slice(&pages(150, 2));
    let (fb, stats) = store_pages(&source, &b);
    let sb = snapshot_of(&source, vec![fb]);
    let r = run_copy(&source, &dest);
    assert_eq!(
        (r.figures.snapshots_copied, r.figures.snapshots_present),
        (1, 1)
    );
    let manifests = source.sealed_snapshot(&sb.id).unwrap().len() as u64;
    assert!(
        r.figures.bytes_read <= stats.added + 2 * manifests,
        "read {} for {} added",
        r.figures.bytes_read,
        stats.added
    );
    assert!(restored(&dest, &sb.id) == b);
    assert!(restored(&dest, &sa.id) == a);

    // Nothing new: nothing read, nothing written.
    let r = run_copy(&source, &dest);
    assert_eq!(r.figures.snapshots_copied, 0);
    assert_eq!(r.figures.snapshots_present, 2);
    assert_eq!((r.figures.bytes_read, r.figures.bytes_written), (0, 0));
}

#[test]
fn what_the_copy_forgot_stays_forgotten_unless_named() {
    let source = memory_repo();
    let (fa, _) = store_pages(&source, &pages(50, 1));
    let sa = snapshot_of(&source, vec![fa]);
    let (fb, _) = store_pages(&source, &pages(50, 2));
    snapshot_of(&source, vec![fb]);
    let dest = copy_of(&source);
    assert_eq!(run_copy(&source, &dest).figures.snapshots_copied, 2);
    let forget = crate::jobs::forget::ForgetOptions {
        policy: crate::retention::KeepRules::default().policy().unwrap(),
        filter: Filter::default(),
        ids: vec![sa.id.clone()],
        dry_run: false,
        now: jiff::Timestamp::now(),
    };
    crate::jobs::forget::run(&dest, &forget).unwrap();
    assert!(dest.forgotten().unwrap().contains(&sa.id));
    let r = run_copy(&source, &dest);
    assert_eq!(r.figures.snapshots_copied, 0, "{r:?}");
    assert_eq!(r.snapshots_forgotten_there, 1);
    assert_eq!(r.figures.snapshots_present, 1);
    // Named, it is copied again.
    let named = CopyOptions {
        references: vec![sa.id.clone()],
        filter: Filter::default(),
    };
    let r = copy(&source, &dest, "memory://", &named, &Silent).unwrap();
    assert_eq!(r.figures.snapshots_copied, 1, "{r:?}");
    // A primary (not a copy) keeps no such record.
    crate::jobs::forget::run(&source, &forget).unwrap();
    assert!(source.forgotten().unwrap().is_empty());
}

#[test]
fn a_repository_with_keys_of_its_own_is_refused() {
    let source = memory_repo();
    let other = memory_repo();
    let e = copy(
        &source,
        &other,
        "memory://",
        &CopyOptions::default(),
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotACopy { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::BadInput);
    let e = copy(
        &source,
        &source,
        "memory://",
        &CopyOptions::default(),
        &Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("same repository"), "{e}");
    // A copy of a copy is of the family: objects move both ways.
    let first = copy_of(&source);
    let second = copy_of(&first);
    assert_eq!(second.config().family(), source.config().id);
    crate::copies::check_family(&second, &source).unwrap();
}

#[test]
fn a_damaged_source_pack_is_named_with_its_snapshot_and_never_written() {
    let source = memory_repo();
    let (fa, _) = store_pages(&source, &pages(100, 1));
    let sa = snapshot_of(&source, vec![fa]);
    let before: HashSet<String> = source
        .storage()
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let (fb, _) = store_pages(&source, &pages(100, 2));
    let sb = snapshot_of(&source, vec![fb]);
    let new = source
        .storage()
        .list("data/")
        .unwrap()
        .into_iter()
        .find(|o| !before.contains(&o.key))
        .unwrap();
    let mut bytes = source.storage().get(&new.key).unwrap();
    bytes[100] ^= 0x20;
    source.storage().put(&new.key, &bytes).unwrap();

    let dest = copy_of(&source);
    let r = run_copy(&source, &dest);
    assert_eq!(r.figures.snapshots_copied, 1, "{r:?}");
    assert_eq!(r.failures.len(), 1, "{r:?}");
    assert_eq!(r.failures[0].object, new.key);
    assert_eq!(r.failures[0].snapshots, vec![sb.id.clone()]);
    assert_eq!(r.failure_kind(), Some(ErrorKind::DamagedData));
    let sentence = r.failures_found().unwrap();
    assert!(
        sentence.contains(&new.key) && sentence.contains(sb.short_id()),
        "{sentence}"
    );
    assert!(!dest.storage().exists(&new.key).unwrap(), "never written");
    assert!(dest.read_snapshot(&sb.id).is_err());
    dest.read_snapshot(&sa.id).unwrap();
    // The source now records the pack as damaged.
    assert!(
        source
            .damaged_packs()
            .unwrap()
            .contains(&PackId::from_object_key(&new.key).unwrap())
    );
}

#[test]
fn packs_a_killed_copy_left_are_indexed_not_copied_again() {
    let source = memory_repo();
    let data = pages(200, 3);
    let (f, _) = store_pages(&source, &data);
    let s = snapshot_of(&source, vec![f]);
    let dest = copy_of(&source);
    // As a copy killed after its packs and before its index objects leaves them.
    for o in source.storage().list("data/").unwrap() {
        let b = source.storage().get(&o.key).unwrap();
        dest.storage().put(&o.key, &b).unwrap();
    }
    let r = run_copy(&source, &dest);
    assert_eq!(r.packs_copied, 0, "{r:?}");
    assert!(r.packs_indexed >= 1, "{r:?}");
    assert_eq!(r.figures.snapshots_copied, 1);
    assert!(restored(&dest, &s.id) == data);
}

#[test]
fn wal_is_copied_authenticated_and_a_damaged_file_is_named() {
    let source = memory_repo();
    let a = Archive::new(&source, "7300000000000000001");
    a.put("00000001", "000000010000000000000001", b"one", 1)
        .unwrap();
    a.put("00000001", "000000010000000000000002", b"two", 1)
        .unwrap();
    let key = a.object_key("00000001", "000000010000000000000002");
    let mut sealed = source.storage().get(&key).unwrap();
    let n = sealed.len() - 2;
    sealed[n] ^= 1;
    source.storage().put(&key, &sealed).unwrap();
    let dest = copy_of(&source);
    let r = run_copy(&source, &dest);
    assert_eq!(r.figures.wal_files_copied, 1, "{r:?}");
    assert_eq!(r.failures[0].object, key);
    let d = Archive::new(&dest, "7300000000000000001");
    assert_eq!(
        d.get("00000001", "000000010000000000000001").unwrap(),
        b"one"
    );
    assert!(!d.has("00000001", "000000010000000000000002").unwrap());
}

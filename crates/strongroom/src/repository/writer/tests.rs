//! The backup pipeline's tests, and the in-memory repositories and page helpers other
//! modules' tests build on.

use super::*;
use crate::chunker::{CdcBatcher, FixedBatcher};
use crate::crypto::KdfParams;
use crate::progress::Silent;
use crate::repository::layout::ObjectKind;
use crate::repository::snapshot::{FileEntry, Snapshot};
use crate::storage::Storage;

/// An encrypted repository in memory, with a cheap key derivation.
pub(crate) fn memory_repo() -> Repository {
    let cheap = KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };
    Repository::init(Storage::from_url("memory://").unwrap(), Some(b"pw"), cheap).unwrap()
}

/// `n` pseudo-random 4 KiB pages.
pub(crate) fn pages(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::hotel::Rng::new(seed);
    (0..n * 4096 / 8)
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect()
}

/// Stores `data` as one page-chunked file in a session of its own.
pub(crate) fn store_pages(repo: &Repository, data: &[u8]) -> (FileEntry, WriteStats) {
    store_pages_on(repo, data, None)
}

/// [`store_pages`], its changed pages stored against `parent` (page deltas).
pub(crate) fn store_pages_on(
    repo: &Repository,
    data: &[u8],
    parent: Option<&FileEntry>,
) -> (FileEntry, WriteStats) {
    let w = BackupWriter::new(repo).unwrap();
    let f = w
        .write_file("main.db", Chunking::Fixed { size: 4096 }, &Silent, |sink| {
            sink.base_on(parent.cloned());
            let mut b = FixedBatcher::new(4096);
            for page in data.chunks(4096) {
                if let Some(x) = b.push(page) {
                    sink.push(x)?;
                }
            }
            if let Some(x) = b.finish() {
                sink.push(x)?;
            }
            Ok(())
        })
        .unwrap();
    (f, w.finish().unwrap())
}

/// Stores `data` as one content-defined stream in a session of its own.
pub(crate) fn store_stream(repo: &Repository, data: &[u8]) -> FileEntry {
    let w = BackupWriter::new(repo).unwrap();
    let f = w
        .write_file("dump", Chunking::ContentDefined, &Silent, |sink| {
            let mut b = CdcBatcher::new();
            for piece in data.chunks(100_000) {
                if let Some(x) = b.push(piece) {
                    sink.push(x)?;
                }
            }
            if let Some(x) = b.finish() {
                sink.push(x)?;
            }
            Ok(())
        })
        .unwrap();
    w.finish().unwrap();
    f
}

/// A manifest holding `files`, as a backup would write it.
pub(crate) fn snapshot_of(repo: &Repository, files: Vec<FileEntry>) -> Snapshot {
    let mut s = crate::repository::snapshot::tests::sample("", "test", &[]);
    s.files = files;
    repo.write_snapshot(&mut s).unwrap();
    s
}

#[test]
fn a_session_stores_each_page_once_and_a_second_adds_nothing() {
    let repo = memory_repo();
    let half = pages(300, 1);
    let data = [half.as_slice(), half.as_slice()].concat();
    let (f, stats) = store_pages(&repo, &data);
    assert_eq!((f.size, f.chunks), (data.len() as u64, 600));
    // 300 distinct pages (the list blob naming all 600 is stored but not counted).
    assert_eq!(stats.new_chunks, 300);
    assert_eq!(stats.reused_chunks, 300);
    assert_eq!(stats.size, data.len() as u64);
    let listed = |kind: ObjectKind| repo.storage().list(kind.folder()).unwrap().len();
    assert_eq!(listed(ObjectKind::Index), 1);
    assert!(listed(ObjectKind::Pack) >= 1);

    let (again, stats) = store_pages(&repo, &data);
    assert_eq!(again, f, "the same content gives the same chunk lists");
    assert_eq!((stats.new_chunks, stats.added), (0, 0));
    assert_eq!(
        listed(ObjectKind::Index),
        1,
        "no index object for nothing new"
    );

    // Every indexed chunk points into a pack that exists.
    let index = repo.load_index().unwrap();
    for (_, loc) in index.entries() {
        assert!(repo.storage().exists(&loc.pack.object_key()).unwrap());
    }
}

#[test]
fn deltas_and_lists_are_packed_apart_from_whole_pages() {
    let repo = memory_repo();
    let v1 = pages(600, 1);
    let (f1, _) = store_pages(&repo, &v1);
    let mut v2 = v1.clone();
    for page in v2.chunks_mut(4096).step_by(2) {
        page[100..120].fill(9);
    }
    v2[4096..8192].copy_from_slice(&pages(1, 77));
    let packs = || -> HashSet<String> {
        let listed = repo.storage().list(ObjectKind::Pack.folder()).unwrap();
        listed.into_iter().map(|o| o.key).collect()
    };
    let before = packs();
    let (f2, _) = store_pages_on(&repo, &v2, Some(&f1));
    let added: Vec<String> = packs().difference(&before).cloned().collect();
    assert_eq!(added.len(), 2, "one pack of whole pages, one of the rest");

    let index = repo.load_index().unwrap();
    let pack_of = |id: &ChunkId| index.get(id).unwrap().pack;
    let view = Parent::new(f2.clone());
    let at = |p| view.at(&repo, &index, p).unwrap().unwrap();
    // Page 1 was rewritten: stored whole. Page 0 was touched: stored as a delta.
    let whole = pack_of(&at(1).stored);
    assert_eq!(at(1).stored, repo.key().chunk_id(&v2[4096..8192]));
    assert!(at(0).record.is_some());
    let short = pack_of(&at(0).stored);
    assert_ne!(whole, short);
    let list = ChunkId::from_hex(&f2.lists[0]).unwrap();
    assert_eq!(pack_of(&list), short, "lists go with the deltas");
    for id in f2.delta_ids().unwrap() {
        assert_eq!(pack_of(&id), short, "records go with the deltas");
    }
    let snap = snapshot_of(&repo, vec![f2]);
    let mut out = Vec::new();
    super::super::reader::stream_file(&repo, &index, &snap, &snap.files[0], &mut out, &Silent)
        .unwrap();
    assert!(out == v2, "the snapshot restores exactly");
}

#[test]
fn one_session_stores_many_files_in_shared_packs() {
    let repo = memory_repo();
    let w = BackupWriter::new(&repo).unwrap();
    let sizes = [3 * 4096, 0, 4096 + 100, 8 * 4096];
    let chunking = Chunking::Fixed { size: 4096 };
    let files = w
        .write_files(3, &Silent, |sink| {
            for (i, n) in sizes.iter().enumerate() {
                let data = pages(9, i as u64)[..*n].to_vec();
                let mut b = FixedBatcher::new(4096);
                if let Some(x) = b.push(&data) {
                    sink.push(x)?;
                }
                if let Some(x) = b.finish() {
                    sink.push(x)?;
                }
                let tree = TreeEntry {
                    mode: 0o600,
                    ..TreeEntry::default()
                };
                sink.end_file(&format!("base/{i}"), chunking, Some(tree))?;
            }
            Ok(())
        })
        .unwrap();
    let got: Vec<(String, u64, u64)> = files
        .iter()
        .map(|f| (f.name.clone(), f.size, f.chunks))
        .collect();
    assert_eq!(
        got,
        vec![
            ("base/0".into(), 3 * 4096, 3),
            ("base/1".into(), 0, 0),
            ("base/2".into(), 4196, 2),
            ("base/3".into(), 8 * 4096, 8),
        ]
    );
    assert!(files[1].lists.is_empty());
    assert_eq!(files[0].tree.as_ref().unwrap().mode, 0o600);
    w.finish().unwrap();
    // Small files share packs instead of shipping part-filled ones each: one of pages,
    // one of their chunk-id lists.
    let packs = repo.storage().list(ObjectKind::Pack.folder()).unwrap();
    assert_eq!(packs.len(), 2);
    // And each reads back.
    let snap = snapshot_of(&repo, files.clone());
    let index = repo.load_index().unwrap();
    for (i, f) in snap.files.iter().enumerate() {
        let mut out = Vec::new();
        crate::repository::reader::stream_file(&repo, &index, &snap, f, &mut out, &Silent).unwrap();
        assert_eq!(out, pages(9, i as u64)[..sizes[i]].to_vec(), "{}", f.name);
    }
}

#[test]
fn a_failing_producer_fails_the_file_with_its_own_error() {
    let repo = memory_repo();
    let w = BackupWriter::new(&repo).unwrap();
    let data = pages(8, 2);
    let r = w.write_file("main.db", Chunking::Fixed { size: 4096 }, &Silent, |sink| {
        let mut b = FixedBatcher::new(4096);
        b.push(&data);
        sink.push(b.finish().unwrap())?;
        Err(Error::Source("the source went away".into()))
    });
    let e = r.unwrap_err();
    assert_eq!(e.to_string(), "the source went away");
    assert!(
        repo.storage()
            .list(ObjectKind::Snapshot.folder())
            .unwrap()
            .is_empty()
    );
}

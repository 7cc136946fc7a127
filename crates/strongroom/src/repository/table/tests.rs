//! Tests of the parent module.
use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Model = BTreeMap<Key, BTreeSet<[u8; 4]>>;

fn key(a: u8, b: u8, c: u8) -> Key {
    let mut k = [0u8; 32];
    k[0] = a;
    k[7] = b;
    k[31] = c;
    k
}

/// Keys from a small space: 8-byte prefixes shared by several keys.
fn all_small_keys() -> Vec<Key> {
    let mut keys = Vec::new();
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..5 {
                keys.push(key(a, b, c));
            }
        }
    }
    keys.push([0xff; 32]);
    keys
}

fn key_strategy() -> impl Strategy<Value = Key> {
    prop_oneof![
        4 => (0u8..3, 0u8..3, 0u8..4).prop_map(|(a, b, c)| key(a, b, c)),
        1 => any::<[u8; 32]>(),
    ]
}

fn record_strategy() -> impl Strategy<Value = Record<4>> {
    (key_strategy(), 0u8..3).prop_map(|(k, v)| (k, [v, 0, 0, 1]))
}

fn files(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn check_against(table: &Table<4>, model: &Model, meta: &[u8]) {
    assert_eq!(table.meta(), meta);
    let mut keys: Vec<Key> = all_small_keys();
    keys.extend(model.keys().copied());
    keys.sort_unstable();
    keys.dedup();
    for k in &keys {
        let want: Vec<[u8; 4]> = model
            .get(k)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        assert_eq!(table.get_all(k).unwrap(), want, "get_all {k:?}");
        assert_eq!(table.contains(k).unwrap(), !want.is_empty());
    }
    let many = table.get_many(&keys).unwrap();
    for (k, got) in keys.iter().zip(&many) {
        let want: Vec<[u8; 4]> = model
            .get(k)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        assert_eq!(got, &want, "get_many {k:?}");
    }
    let merged: Vec<Record<4>> = table
        .iter_merged()
        .unwrap()
        .collect::<io::Result<_>>()
        .unwrap();
    let want: Vec<Record<4>> = model
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (*k, *v)))
        .collect();
    assert_eq!(merged, want);
    // The size-tiered invariant: each run more than twice the next newer one.
    for pair in table.runs.windows(2) {
        assert!(pair[1].1.len() * 2 < pair[0].1.len(), "run sizes {pair:?}");
    }
    // Exactly the named runs and the manifest are on disk.
    let mut expected: BTreeSet<String> = table.runs.iter().map(|(n, _)| run_name(*n)).collect();
    expected.insert(MANIFEST.to_string());
    assert_eq!(files(table.dir()), expected);
}

impl<const V: usize> std::fmt::Debug for Run<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Run({})", self.count)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(Vec<Record<4>>),
    AddWithMeta(Vec<Record<4>>, Vec<u8>),
    SetMeta(Vec<u8>),
    CompactAll,
    Reopen,
    Clear,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(record_strategy(), 0..40).prop_map(Op::Add),
        2 => (
            prop::collection::vec(record_strategy(), 0..20),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(r, m)| Op::AddWithMeta(r, m)),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Op::SetMeta),
        1 => Just(Op::CompactAll),
        2 => Just(Op::Reopen),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn table_agrees_with_model(
        block in 1u32..5,
        ops in prop::collection::vec(op_strategy(), 1..14),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let mut table = Table::<4>::open_with_block_records(&path, block).unwrap();
        let mut model = Model::new();
        let mut meta = Vec::new();
        for op in ops {
            match op {
                Op::Add(records) => {
                    for (k, v) in &records {
                        model.entry(*k).or_default().insert(*v);
                    }
                    table.add_run(records).unwrap();
                }
                Op::AddWithMeta(records, m) => {
                    for (k, v) in &records {
                        model.entry(*k).or_default().insert(*v);
                    }
                    table.add_run_with_meta(records, m.clone()).unwrap();
                    meta = m;
                }
                Op::SetMeta(m) => {
                    table.set_meta(m.clone()).unwrap();
                    meta = m;
                }
                Op::CompactAll => {
                    table.compact_all().unwrap();
                    prop_assert!(table.run_count() <= 1);
                }
                Op::Reopen => {
                    drop(table);
                    table = Table::open_with_block_records(&path, block).unwrap();
                }
                Op::Clear => {
                    table.clear().unwrap();
                    model.clear();
                    meta.clear();
                }
            }
            check_against(&table, &model, &meta);
        }
        let stored: usize = model.values().map(|s| s.len()).sum();
        prop_assert!(table.stored_records() >= stored as u64);
    }

    #[test]
    fn id_sorter_yields_sorted_distinct_ids(
        ids in prop::collection::vec(key_strategy(), 0..600),
        limit in 0usize..200,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = IdSorter::new(dir.path(), limit);
        for id in &ids {
            sorter.push(*id).unwrap();
        }
        // Spill files are unlinked as soon as they are created.
        prop_assert!(files(dir.path()).is_empty());
        let got: Vec<Key> = sorter.finish().collect::<io::Result<_>>().unwrap();
        let want: Vec<Key> = ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn merge_join_pairs_ids_with_records(
        ids in prop::collection::vec(key_strategy(), 0..60),
        records in prop::collection::vec(record_strategy(), 0..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut table = Table::<4>::open_with_block_records(&dir.path().join("t"), 2).unwrap();
        table.add_run(records[..records.len() / 2].to_vec()).unwrap();
        table.add_run(records[records.len() / 2..].to_vec()).unwrap();
        let mut sorter = IdSorter::new(dir.path(), 64);
        for id in &ids {
            sorter.push(*id).unwrap();
        }
        let joined: Vec<Joined<4>> = merge_join(sorter.finish(), table.iter_merged().unwrap())
            .collect::<io::Result<_>>()
            .unwrap();
        // The model: every distinct record once, each id not in the table once, in order.
        let id_set: BTreeSet<Key> = ids.iter().copied().collect();
        let record_set: BTreeSet<Record<4>> = records.iter().copied().collect();
        let keys: BTreeSet<Key> = record_set.iter().map(|r| r.0).collect();
        let mut want: Vec<(Key, Option<[u8; 4]>, Joined<4>)> = record_set
            .iter()
            .map(|&(k, v)| {
                let j = if id_set.contains(&k) { Joined::Both(k, v) } else { Joined::TableOnly(k, v) };
                (k, Some(v), j)
            })
            .collect();
        want.extend(id_set.difference(&keys).map(|&k| (k, None, Joined::IdOnly(k))));
        want.sort_by_key(|a| (a.0, a.1));
        let want: Vec<Joined<4>> = want.into_iter().map(|w| w.2).collect();
        prop_assert_eq!(joined, want);
    }
}

#[test]
fn merge_join_skips_repeated_ids_and_refuses_disorder() {
    let (a, b, c) = (key(1, 0, 0), key(2, 0, 0), key(3, 0, 0));
    let ids = [a, a, b, c, c].map(Ok);
    let records = [(a, [1; 4]), (a, [2; 4]), (c, [3; 4])].map(Ok);
    let joined: Vec<Joined<4>> = merge_join(ids.into_iter(), records.into_iter())
        .collect::<io::Result<_>>()
        .unwrap();
    assert_eq!(
        joined,
        [
            Joined::Both(a, [1; 4]),
            Joined::Both(a, [2; 4]),
            Joined::IdOnly(b),
            Joined::Both(c, [3; 4]),
        ]
    );
    let ids = [b, a].map(Ok);
    let records: [io::Result<Record<4>>; 0] = [];
    let result: io::Result<Vec<Joined<4>>> =
        merge_join(ids.into_iter(), records.into_iter()).collect();
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn checksum_streams() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let whole = checksum(&data);
    for step in [1, 3, 8, 31, 32, 33, 52, 999] {
        let mut sum = Checksum::new();
        for piece in data.chunks(step) {
            sum.update(piece);
        }
        assert_eq!(sum.finish(), whole, "step {step}");
    }
    assert_ne!(checksum(&data[..999]), whole);
    let mut flipped = data.clone();
    flipped[500] ^= 1;
    assert_ne!(checksum(&flipped), whole);
}

/// Keys sharing 8-byte prefixes across block boundaries, with repeated keys, and a block
/// of one, two and three records.
#[test]
fn lookups_across_blocks_with_equal_prefixes() {
    let mut records: Vec<Record<4>> = Vec::new();
    for a in [1u8, 2, 4] {
        for c in 0..7u8 {
            let copies = if c % 3 == 0 { 3 } else { 1 };
            for v in 0..copies {
                records.push((key(a, 5, c * 2), [v, c, a, 0]));
            }
        }
    }
    records.push((key(3, 0, 0), [9; 4]));
    records.sort_unstable();
    for block in [1u32, 2, 3, 128] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let mut writer = RunWriter::<4>::create(&path, block).unwrap();
        for (k, v) in &records {
            writer.push(k, v).unwrap();
            writer.push(k, v).unwrap(); // an exact repeat is skipped
        }
        assert_eq!(writer.len(), records.len() as u64);
        let run = writer.finish().unwrap();
        assert_eq!(files(dir.path()), BTreeSet::from(["run".to_string()]));
        for run in [run, Run::open(&path).unwrap()] {
            let mut probes: Vec<Key> = records.iter().map(|r| r.0).collect();
            for a in 0..6 {
                for c in 0..16 {
                    probes.push(key(a, 5, c));
                    probes.push(key(a, 4, c));
                    probes.push(key(a, 6, c));
                }
            }
            probes.push([0; 32]);
            probes.push([0xff; 32]);
            probes.sort_unstable();
            probes.dedup();
            let many = run.get_many(&probes).unwrap();
            for (p, got_many) in probes.iter().zip(many) {
                let want: Vec<[u8; 4]> =
                    records.iter().filter(|r| r.0 == *p).map(|r| r.1).collect();
                assert_eq!(run.get_all(p).unwrap(), want, "block {block} key {p:?}");
                assert_eq!(got_many, want, "get_many block {block} key {p:?}");
                assert_eq!(run.contains(p).unwrap(), !want.is_empty());
            }
            let all: Vec<Record<4>> = run.iter().unwrap().collect::<io::Result<_>>().unwrap();
            assert_eq!(all, records);
        }
    }
}

#[test]
fn uniform_keys_are_found_around_their_interpolated_place() {
    // Random keys, as chunk ids are: lookups read the records around where a key should sit
    // in its block, and the whole block when those cannot be sure. Some keys have several
    // values, some blocks are a single key's.
    let mut seed = 7u64;
    let mut records: Vec<Record<4>> = Vec::new();
    for i in 0..5_000u32 {
        let k = random_key(&mut seed);
        let copies = if i % 97 == 0 { 3 } else { 1 };
        for v in 0..copies {
            records.push((k, [v, (i % 251) as u8, 0, 1]));
        }
    }
    let crowded = random_key(&mut seed);
    records.extend((0..300u32).map(|v| (crowded, v.to_le_bytes())));
    records.sort_unstable();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run");
    let mut writer = RunWriter::<4>::create(&path, 128).unwrap();
    for (k, v) in &records {
        writer.push(k, v).unwrap();
    }
    let run = writer.finish().unwrap();
    let mut probes: Vec<Key> = records.iter().map(|r| r.0).collect();
    probes.dedup();
    probes.extend((0..2_000).map(|_| random_key(&mut seed)));
    let want = |p: &Key| -> Vec<[u8; 4]> {
        let from = records.partition_point(|r| r.0 < *p);
        records[from..]
            .iter()
            .take_while(|r| r.0 == *p)
            .map(|r| r.1)
            .collect()
    };
    // Unsorted (each key alone in its block) and sorted (neighbours share blocks).
    let many = run.get_many(&probes).unwrap();
    for (p, got) in probes.iter().zip(&many) {
        assert_eq!(*got, want(p));
        assert_eq!(run.get_all(p).unwrap(), want(p));
    }
    probes.sort_unstable();
    for (p, got) in probes.iter().zip(run.get_many(&probes).unwrap()) {
        assert_eq!(got, want(p));
    }
    assert_eq!(want(&crowded).len(), 300);
}

#[test]
fn run_writer_refuses_disorder_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run");
    let mut writer = RunWriter::<4>::create(&path, 4).unwrap();
    writer.push(&key(2, 0, 0), &[0; 4]).unwrap();
    let err = writer.push(&key(1, 0, 0), &[0; 4]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    drop(writer);
    assert!(files(dir.path()).is_empty());
    assert!(Run::<4>::open(&path).is_err());
    let empty = RunWriter::<4>::create(&path, 4).unwrap().finish().unwrap();
    assert!(empty.is_empty());
    assert!(empty.get_all(&key(1, 0, 0)).unwrap().is_empty());
    assert_eq!(Run::<4>::open(&path).unwrap().iter().unwrap().count(), 0);
    // A run of another value length does not open.
    assert_eq!(
        Run::<5>::open(&path).err().unwrap().kind(),
        io::ErrorKind::InvalidData
    );
}

fn sample_table(path: &Path) -> (Table<4>, Model) {
    let mut table = Table::<4>::open_with_block_records(path, 3).unwrap();
    let mut model = Model::new();
    for batch in 0..5u8 {
        let records: Vec<Record<4>> = (0..20u8)
            .map(|i| (key(i % 4, i, batch), [batch, i, 0, 0]))
            .collect();
        for (k, v) in &records {
            model.entry(*k).or_default().insert(*v);
        }
        table.add_run_with_meta(records, vec![batch]).unwrap();
    }
    (table, model)
}

#[test]
fn torn_or_garbled_manifest_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let (table, model) = sample_table(&path);
    check_against(&table, &model, &[4]);
    drop(table);
    let good = fs::read(path.join(MANIFEST)).unwrap();
    let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
    for i in 0..good.len() {
        let mut g = good.clone();
        g[i] ^= 0x40;
        damaged.push(g);
    }
    let mut longer = good.clone();
    longer.push(0);
    damaged.push(longer);
    for bad in damaged {
        let (table, _) = sample_table(&path);
        drop(table);
        fs::write(path.join(MANIFEST), &bad).unwrap();
        let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
        check_against(&table, &Model::new(), &[]);
        assert_eq!(table.run_count(), 0);
        drop(table);
        fs::remove_dir_all(&path).unwrap();
    }
    // The good manifest still opens to the same state.
    let (table, model) = sample_table(&path);
    drop(table);
    let table = Table::<4>::open(&path).unwrap();
    check_against(&table, &model, &[4]);
}

#[test]
fn damaged_run_opens_empty_and_scans_catch_garbled_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let (table, model) = sample_table(&path);
    let run_path = table.runs[0].1.path().to_path_buf();
    drop(table);
    // A garbled record: lookups still work elsewhere, a scan reports it.
    let mut bytes = fs::read(&run_path).unwrap();
    bytes[40] ^= 1;
    fs::write(&run_path, &bytes).unwrap();
    let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    assert_eq!(table.meta(), &[4]);
    let result: io::Result<Vec<_>> = table.iter_merged().unwrap().collect();
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
    drop(table);
    // A truncated run named by the manifest: the table opens empty.
    fs::write(&run_path, &bytes[..bytes.len() - 1]).unwrap();
    let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    check_against(&table, &Model::new(), &[]);
    drop(table);
    // A missing one too.
    let (table, _) = sample_table(&path);
    let run_path = table.runs[0].1.path().to_path_buf();
    drop(table);
    fs::remove_file(run_path).unwrap();
    let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    check_against(&table, &Model::new(), &[]);
    drop(model);
    // A table of another value length opens empty.
    drop(table);
    let (table, _) = sample_table(&path);
    drop(table);
    let other = Table::<8>::open(&path).unwrap();
    assert_eq!(other.run_count(), 0);
}

#[test]
fn leftovers_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let (table, model) = sample_table(&path);
    drop(table);
    for name in [
        "run-00000000000000ff",
        "run-0000000000000100.tmp",
        MANIFEST_TMP,
    ] {
        fs::write(path.join(name), b"leftover").unwrap();
    }
    fs::write(path.join("notes.txt"), b"not ours").unwrap();
    fs::create_dir(path.join("run-dir")).unwrap();
    let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    let mut expected: BTreeSet<String> = table.runs.iter().map(|(n, _)| run_name(*n)).collect();
    expected.extend([MANIFEST, "notes.txt", "run-dir"].map(String::from));
    assert_eq!(files(&path), expected);
    fs::remove_file(path.join("notes.txt")).unwrap();
    fs::remove_dir(path.join("run-dir")).unwrap();
    check_against(&table, &model, &[4]);
}

/// Killing the process between writing a run and committing the manifest leaves the old
/// state (simulated: the new run file is there, the manifest is the old one).
#[test]
fn uncommitted_run_is_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let (table, model) = sample_table(&path);
    let old_manifest = fs::read(path.join(MANIFEST)).unwrap();
    drop(table);
    let mut table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    table
        .add_run_with_meta(vec![(key(9, 9, 9), [1; 4])], vec![9])
        .unwrap();
    table.compact_all().unwrap();
    drop(table);
    fs::write(path.join(MANIFEST), old_manifest).unwrap();
    // The old runs were deleted by the compaction: the old manifest names missing runs,
    // which opens empty; without compaction it opens to the old state.
    let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    check_against(&table, &Model::new(), &[]);
    drop(table);
    fs::remove_dir_all(&path).unwrap();
    let (table, _) = sample_table(&path);
    let old_manifest = fs::read(path.join(MANIFEST)).unwrap();
    let runs_before = table.run_count();
    drop(table);
    let mut table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    table
        .add_run_with_meta(vec![(key(9, 9, 9), [1; 4])], vec![9])
        .unwrap();
    assert_eq!(table.run_count(), runs_before + 1, "no compaction expected");
    drop(table);
    fs::write(path.join(MANIFEST), old_manifest).unwrap();
    let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    check_against(&table, &model, &[4]);
}

#[test]
fn run_count_stays_logarithmic() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = Table::<4>::open_with_block_records(&dir.path().join("t"), 16).unwrap();
    let mut n = 0u64;
    let mut seed = 1u64;
    for batch in 0..300u64 {
        let size = 1 + (batch * 37 % 23);
        let records: Vec<Record<4>> = (0..size)
            .map(|_| {
                let mut k = [0u8; 32];
                for chunk in k.chunks_mut(8) {
                    chunk.copy_from_slice(&splitmix(&mut seed).to_le_bytes());
                }
                (k, [0; 4])
            })
            .collect();
        n += size;
        table.add_run(records).unwrap();
        let bound = 1 + (n as f64).log2().ceil() as usize;
        assert!(
            table.run_count() <= bound,
            "{} runs for {n}",
            table.run_count()
        );
    }
    assert_eq!(table.stored_records(), n);
}

pub(super) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn random_key(seed: &mut u64) -> Key {
    let mut k = [0u8; 32];
    for chunk in k.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix(seed).to_le_bytes());
    }
    k
}

fn sample_keyed(path: &Path, key: &[u8; 32]) -> (Table<4>, Model) {
    let mut table = Table::<4>::open_with(path, 3, Some(key)).unwrap();
    let mut model = Model::new();
    for batch in 0..3u8 {
        let records: Vec<Record<4>> = (0..20u8)
            .map(|i| (key_of(i, batch), [batch, i, 0, 0]))
            .collect();
        for (k, v) in &records {
            model.entry(*k).or_default().insert(*v);
        }
        table.add_run_with_meta(records, vec![batch]).unwrap();
    }
    (table, model)
}

fn key_of(i: u8, batch: u8) -> Key {
    key(i % 4, i, batch)
}

/// Rewrites a run file in place as a valid run (its own checksums right) holding `records`:
/// what someone who can write the directory, but does not hold the key, can do.
fn forge_run(path: &Path, records: &[Record<4>]) {
    let forged = path.with_file_name("forged");
    let mut w = RunWriter::<4>::create(&forged, 3).unwrap();
    for (k, v) in records {
        w.push(k, v).unwrap();
    }
    drop(w.finish().unwrap());
    fs::rename(&forged, path).unwrap();
}

#[test]
fn keyed_tables_refuse_what_their_key_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let k = [7u8; 32];
    let (table, model) = sample_keyed(&path, &k);
    drop(table);
    // Reopened under its key: as it was.
    let table = Table::<4>::open_with(&path, 3, Some(&k)).unwrap();
    assert_eq!(table.discarded(), None);
    check_against(&table, &model, &[2]);
    drop(table);
    // Under another key, or none: empty, and it says why.
    for other in [Some(&[8u8; 32]), None] {
        let (table, _) = sample_keyed(&path, &k);
        drop(table);
        let table = Table::<4>::open_with(&path, 3, other).unwrap();
        assert!(
            table.discarded().unwrap().contains("authentication"),
            "{:?}",
            table.discarded()
        );
        check_against(&table, &Model::new(), &[]);
        drop(table);
        fs::remove_dir_all(&path).unwrap();
    }
    // A run replaced by a valid run of the same length claiming other keys: the manifest and
    // the run's own checksums pass, its hash does not.
    let (table, model) = sample_keyed(&path, &k);
    let (number, run) = &table.runs[0];
    let (run_path, count) = (path.join(run_name(*number)), run.len());
    drop(table);
    let forged = |count: u64| -> Vec<Record<4>> {
        (0..count)
            .map(|i| {
                let mut key = [0xAB; 32];
                key[..8].copy_from_slice(&i.to_be_bytes());
                (key, [9, 9, 9, 9])
            })
            .collect()
    };
    let claimed = forged(count)[0].0;
    forge_run(&run_path, &forged(count));
    let table = Table::<4>::open_with(&path, 3, Some(&k)).unwrap();
    assert!(
        table
            .discarded()
            .unwrap()
            .contains("not what the table manifest names"),
        "{:?}",
        table.discarded()
    );
    assert!(!table.contains(&claimed).unwrap());
    check_against(&table, &Model::new(), &[]);
    drop(table);
    // The same forgery in a table opened without a key is taken as it is: the checksums are
    // no defence, which is why the index cache is keyed.
    fs::remove_dir_all(&path).unwrap();
    let (table, _) = sample_table(&path);
    let (number, run) = &table.runs[0];
    let (run_path, count) = (path.join(run_name(*number)), run.len());
    drop(table);
    forge_run(&run_path, &forged(count));
    let table = Table::<4>::open_with_block_records(&path, 3).unwrap();
    assert_eq!(table.discarded(), None);
    assert!(table.contains(&claimed).unwrap());
    drop(model);
}

#[test]
fn links_planted_in_a_table_directory_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let victim = dir.path().join("victim");
    fs::write(&victim, b"someone else's file").unwrap();
    let k = [7u8; 32];
    let (table, model) = sample_keyed(&path, &k);
    let next = run_name(table.next_run);
    drop(table);
    // Links where the table will write its next run and manifest: replaced, not written
    // through.
    for name in [format!("{next}.tmp"), MANIFEST_TMP.to_string()] {
        std::os::unix::fs::symlink(&victim, path.join(name)).unwrap();
    }
    let mut table = Table::<4>::open_with(&path, 3, Some(&k)).unwrap();
    table
        .add_run_with_meta(vec![(key(9, 9, 9), [1; 4])], vec![2])
        .unwrap();
    let mut model = model;
    model.entry(key(9, 9, 9)).or_default().insert([1; 4]);
    check_against(&table, &model, &[2]);
    drop(table);
    assert_eq!(fs::read(&victim).unwrap(), b"someone else's file");
    // A link in place of the manifest or a run: not read through; the table opens empty.
    let manifest = path.join(MANIFEST);
    let moved = dir.path().join("manifest-copy");
    fs::rename(&manifest, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &manifest).unwrap();
    let table = Table::<4>::open_with(&path, 3, Some(&k)).unwrap();
    assert!(table.discarded().unwrap().contains("is a link"));
    check_against(&table, &Model::new(), &[]);
    drop(table);
    fs::remove_dir_all(&path).unwrap();
    let (table, _) = sample_keyed(&path, &k);
    let run_path = table.runs[0].1.path().to_path_buf();
    drop(table);
    fs::rename(&run_path, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &run_path).unwrap();
    let table = Table::<4>::open_with(&path, 3, Some(&k)).unwrap();
    assert!(table.discarded().unwrap().contains("is a link"));
    assert_eq!(fs::read(&victim).unwrap(), b"someone else's file");
    // Files the table creates are its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path.join(MANIFEST))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

//! Measurements of the table run by hand (ignored tests, `--ignored --nocapture`): lookups
//! a second and memory at millions of records, and the cost of a keyed open. Kept apart
//! from `tests`, which asserts behaviour; these print figures.
use super::tests::{random_key, splitmix};
use super::*;

fn status(field: &str) -> String {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_string())
}

fn rate<F: FnMut(&Key) -> bool>(keys: &[Key], mut f: F) -> (f64, usize) {
    let start = std::time::Instant::now();
    let found = keys.iter().filter(|k| f(k)).count();
    (keys.len() as f64 / start.elapsed().as_secs_f64(), found)
}

/// `cargo test --release -- --ignored --nocapture bench_lookups`
#[test]
#[ignore]
fn bench_lookups() {
    const N: u64 = 2_000_000;
    const BATCH: u64 = 100_000;
    const PROBES: usize = 200_000;
    println!("start: VmRSS {} VmHWM {}", status("VmRSS"), status("VmHWM"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let mut table = Table::<20>::open(&path).unwrap();
    let start = std::time::Instant::now();
    let mut seed = 42u64;
    for _ in 0..N / BATCH {
        let records: Vec<Record<20>> = (0..BATCH)
            .map(|i| (random_key(&mut seed), [i as u8; 20]))
            .collect();
        table.add_run(records).unwrap();
    }
    println!(
        "built {N} records in {:.1} s: {} runs {:?}",
        start.elapsed().as_secs_f64(),
        table.run_count(),
        table.runs.iter().map(|(_, r)| r.len()).collect::<Vec<_>>()
    );
    let fence_bytes: usize = table.runs.iter().map(|(_, r)| r.fences.len() * 8).sum();
    println!(
        "after build: fences {fence_bytes} bytes; VmRSS {} VmHWM {} (includes the \
         harness's 100k-record batch, 5.2 MB, kept by the allocator)",
        status("VmRSS"),
        status("VmHWM")
    );
    // Hits: keys regenerated from the same seed, sampled; misses: fresh random keys.
    let mut seed = 42u64;
    let mut hits: Vec<Key> = (0..N).map(|_| random_key(&mut seed)).step_by(10).collect();
    hits.truncate(PROBES);
    let mut shuffle = 7u64;
    for i in (1..hits.len()).rev() {
        hits.swap(i, (splitmix(&mut shuffle) % (i as u64 + 1)) as usize);
    }
    let mut seed = 4242u64;
    let misses: Vec<Key> = (0..PROBES).map(|_| random_key(&mut seed)).collect();
    for phase in ["tiered", "compacted"] {
        if phase == "compacted" {
            let start = std::time::Instant::now();
            table.compact_all().unwrap();
            println!("compact_all: {:.1} s", start.elapsed().as_secs_f64());
        }
        let runs = table.run_count();
        let (r, found) = rate(&hits, |k| !table.get_all(k).unwrap().is_empty());
        assert_eq!(found, hits.len());
        println!("{phase} ({runs} runs): get_all hits   {r:>10.0} lookups/s");
        let (r, found) = rate(&misses, |k| table.contains(k).unwrap());
        assert_eq!(found, 0);
        println!("{phase} ({runs} runs): contains misses {r:>10.0} lookups/s");
        let (r, _) = rate(&hits, |k| table.contains(k).unwrap());
        println!("{phase} ({runs} runs): contains hits  {r:>10.0} lookups/s");
        let mut sorted = misses.clone();
        sorted.extend_from_slice(&hits);
        sorted.sort_unstable();
        let start = std::time::Instant::now();
        let got = table.get_many(&sorted).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got.iter().filter(|v| !v.is_empty()).count(), hits.len());
        println!(
            "{phase} ({runs} runs): get_many sorted  {:>10.0} lookups/s (half hits)",
            sorted.len() as f64 / secs
        );
        let start = std::time::Instant::now();
        let mut count = 0u64;
        for r in table.iter_merged().unwrap() {
            r.unwrap();
            count += 1;
        }
        assert_eq!(count, N);
        println!(
            "{phase} ({runs} runs): iter_merged {:.0} records/s",
            count as f64 / start.elapsed().as_secs_f64()
        );
    }
    println!(
        "end: VmRSS {} VmHWM {} (includes the harness's probe keys and results, ~35 MB)",
        status("VmRSS"),
        status("VmHWM")
    );
    let start = std::time::Instant::now();
    let mut sorter = IdSorter::new(dir.path(), 8 << 20);
    let mut seed = 42u64;
    for _ in 0..N {
        let id = random_key(&mut seed);
        sorter.push(id).unwrap();
        sorter.push(id).unwrap();
    }
    let joined = merge_join(sorter.finish(), table.iter_merged().unwrap())
        .filter(|j| matches!(j, Ok(Joined::Both(..))))
        .count();
    assert_eq!(joined as u64, N);
    println!(
        "IdSorter (8 MiB limit) of {} ids + merge_join: {:.1} s; VmRSS {} VmHWM {}",
        2 * N,
        start.elapsed().as_secs_f64(),
        status("VmRSS"),
        status("VmHWM")
    );
}

/// The cost of a keyed open (every run read once and hashed) at a million index-sized
/// records; run with `cargo test --release -p strongroom --lib keyed_open_cost -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn keyed_open_cost_at_a_million_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let k = [7u8; 32];
    let mut table = Table::<20>::open_keyed(&path, &k).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..8 {
        let records: Vec<Record<20>> = (0..125_000)
            .map(|_| {
                let mut key = [0u8; 32];
                for c in key.chunks_mut(8) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    c.copy_from_slice(&state.to_le_bytes());
                }
                (key, [1u8; 20])
            })
            .collect();
        table.add_run(records).unwrap();
    }
    table.compact_all().unwrap();
    let bytes: u64 = table
        .runs
        .iter()
        .map(|(_, r)| r.file.metadata().unwrap().len())
        .sum();
    drop(table);
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let keyed = Table::<20>::open_keyed(&path, &k).unwrap();
        let keyed_s = t.elapsed().as_secs_f64();
        assert_eq!(keyed.discarded(), None);
        assert_eq!(keyed.stored_records(), 1_000_000);
        // The part of it that is the check: reading and hashing the run.
        let t = std::time::Instant::now();
        for (_, run) in &keyed.runs {
            run.check_hash(&run.hash).unwrap();
        }
        let check_s = t.elapsed().as_secs_f64();
        eprintln!(
            "1 M records, {bytes} bytes on disk: keyed open {keyed_s:.3} s, of which reading and hashing the runs {check_s:.3} s"
        );
    }
}

//! Choosing what a drill rehearses: a random snapshot among the source's recent ones, from a
//! seed that replays the choice.
//!
//! Owns the notion of "recent" (the last 7 days, else the newest 3) and the seeded random
//! numbers every drill choice draws from. Must not read the repository or the clock: the
//! snapshots and `now` are given.

use crate::error::{Error, Result};
use crate::repository::snapshot::{self, Filter, Snapshot};

/// Snapshots this recent are candidates.
pub const RECENT: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// When none is that recent, the newest this many are.
pub const NEWEST: usize = 3;

/// Seeded random numbers (SplitMix64): the same seed gives the same choices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Numbers from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Picks a snapshot at random among the recent ones `filter` lets through (`all` oldest
/// first), and says how. Several sources without a `--source` are refused, as `latest` is.
pub fn choose(
    all: &[Snapshot],
    filter: &Filter,
    now: jiff::Timestamp,
    rng: &mut Rng,
) -> Result<(Snapshot, String)> {
    // The same refusals as `latest`: no snapshot, or snapshots of several sources.
    snapshot::resolve_one_source(all, "latest", filter)?;
    let matching: Vec<&Snapshot> = all.iter().filter(|s| filter.matches(s)).collect();
    let since =
        now - jiff::SignedDuration::try_from(RECENT).expect("a week fits a signed duration");
    let recent: Vec<&Snapshot> = matching
        .iter()
        .copied()
        .filter(|s| s.finished_at >= since)
        .collect();
    let (pool, words) = if recent.is_empty() {
        let from = matching.len().saturating_sub(NEWEST);
        (
            matching[from..].to_vec(),
            format!(
                "none finished in the last 7 days: random among the newest {}",
                matching.len() - from
            ),
        )
    } else {
        (
            recent.clone(),
            format!(
                "random among the {} snapshot(s) of the last 7 days",
                recent.len()
            ),
        )
    };
    let Some(chosen) = pool.get(rng.below(pool.len() as u64) as usize) else {
        return Err(Error::NoMatchingSnapshot);
    };
    Ok(((*chosen).clone(), words))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::snapshot::tests::sample;

    fn at(days_ago: i64, id: &str) -> Snapshot {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let mut s = sample(id, "hotel", &[]);
        s.finished_at = now - jiff::SignedDuration::from_hours(24 * days_ago);
        s.started_at = s.finished_at;
        s
    }

    #[test]
    fn recent_snapshots_are_the_pool_else_the_newest_three() {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let all: Vec<Snapshot> = [
            (40, "a"),
            (30, "b"),
            (20, "c"),
            (10, "d"),
            (2, "e"),
            (1, "f"),
        ]
        .iter()
        .map(|(d, id)| at(*d, &id.repeat(64)))
        .collect();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let (s, words) = choose(&all, &Filter::default(), now, &mut Rng::new(seed)).unwrap();
            assert!(words.contains("last 7 days"), "{words}");
            seen.insert(s.id[..1].to_string());
        }
        assert_eq!(seen, ["e", "f"].map(String::from).into());
        let old = &all[..4];
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let (s, words) = choose(old, &Filter::default(), now, &mut Rng::new(seed)).unwrap();
            assert!(words.contains("newest 3"), "{words}");
            seen.insert(s.id[..1].to_string());
        }
        assert_eq!(seen, ["b", "c", "d"].map(String::from).into());
    }

    #[test]
    fn the_same_seed_makes_the_same_choice() {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let all: Vec<Snapshot> = (0..6).map(|i| at(i, &format!("{i}").repeat(64))).collect();
        let pick = |seed| {
            choose(&all, &Filter::default(), now, &mut Rng::new(seed))
                .unwrap()
                .0
                .id
        };
        assert_eq!(pick(42), pick(42));
        assert!(
            (0..20)
                .map(pick)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        );
        assert!(choose(&[], &Filter::default(), now, &mut Rng::new(1)).is_err());
    }
}

//! Property tests of the policy over random histories and policies.

use super::*;

// Property tests over random histories and policies.

const TAGS: [&str; 3] = ["pre-migration", "keep", "x"];

fn arb_snapshots() -> impl Strategy<Value = Vec<Candidate>> {
    let hours = prop_oneof![0i64..48, 0i64..2_000, 0i64..30_000];
    let row = (
        0usize..2,
        0usize..2,
        hours,
        0i64..60,
        -600i64..4 * 3600,
        prop::sample::subsequence(TAGS.to_vec(), 0..=2),
        prop::bool::weighted(0.2),
        any::<bool>(),
    );
    prop::collection::vec(row, 1..40).prop_map(|rows| {
        let base = at("2020-01-01T00:00");
        rows.into_iter()
            .enumerate()
            .map(|(n, (src, kind, h, m, took, tags, verified, physical))| {
                let started_at =
                    base + SignedDuration::from_hours(h) + SignedDuration::from_mins(m);
                Candidate {
                    id: format!("s{n:02}"),
                    source: ["a", "b"][src].into(),
                    kind: ["logical", "physical"][kind].into(),
                    started_at,
                    finished_at: started_at + SignedDuration::from_secs(took),
                    tags: tags.into_iter().map(String::from).collect(),
                    verified,
                    physical,
                }
            })
            .collect()
    })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    let count = || prop::option::of(0u32..6);
    let hours = || (0u64..200 * 24).prop_map(|h| Duration::from_secs(h * 3600));
    (
        (count(), count(), count(), count(), count(), count()),
        prop::option::of(hours()),
        prop::sample::subsequence(TAGS.to_vec(), 0..=2),
        prop::collection::vec((prop::sample::select(TAGS.to_vec()), hours()), 0..3),
        prop::option::of(hours()),
    )
        .prop_map(
            |((last, hourly, daily, weekly, monthly, yearly), within, tags, tw, pitr)| Policy {
                keep_last: last,
                keep_hourly: hourly,
                keep_daily: daily,
                keep_weekly: weekly,
                keep_monthly: monthly,
                keep_yearly: yearly,
                keep_within: within,
                keep_tags: tags.into_iter().map(String::from).collect(),
                tag_within: tw.into_iter().map(|(t, d)| (t.to_string(), d)).collect(),
                pitr_window: pitr,
            },
        )
}

fn arb_now() -> impl Strategy<Value = Timestamp> {
    (0i64..35_000).prop_map(|h| at("2020-01-01T00:00") + SignedDuration::from_hours(h))
}

/// Independent statement of the rank: newest first by start time, then id.
fn rank_key(s: &Candidate) -> (Timestamp, &str) {
    (s.started_at, &s.id)
}

fn group<'a>(snaps: &'a [Candidate], s: &Candidate) -> Vec<&'a Candidate> {
    snaps
        .iter()
        .filter(|o| o.source == s.source && o.kind == s.kind)
        .collect()
}

proptest! {
    #[test]
    fn decisions_are_consistent(
        snaps in arb_snapshots(), p in arb_policy(), now in arb_now(),
    ) {
        let decisions = apply(&p, &snaps, now);
        prop_assert_eq!(decisions.len(), snaps.len());
        for (s, d) in snaps.iter().zip(&decisions) {
            prop_assert_eq!((&d.id, &d.source, &d.kind), (&s.id, &s.source, &s.kind));
            prop_assert_eq!(d.keep, !d.reasons.is_empty());
            prop_assert!(d.reasons.windows(2).all(|w| w[0] < w[1]), "{:?}", d.reasons);
            let g = group(&snaps, s);
            let newest = g.iter().map(|o| rank_key(o)).max().unwrap();
            prop_assert_eq!(rank_key(s) == newest, d.reasons.contains(&Reason::Newest));
            let newest_verified = g.iter().filter(|o| o.verified).map(|o| rank_key(o)).max();
            prop_assert_eq!(
                Some(rank_key(s)) == newest_verified,
                d.reasons.contains(&Reason::NewestVerified)
            );
            if let Some(limit) = p.keep_within {
                let age = newest.0.duration_since(s.started_at).unsigned_abs();
                prop_assert_eq!(age <= limit, d.reasons.contains(&Reason::Within));
            }
        }
    }

    #[test]
    fn bucket_rules_keep_the_newest_of_the_newest_buckets(
        snaps in arb_snapshots(), p in arb_policy(),
    ) {
        let decisions = apply(&p, &snaps, at("2020-01-01T00:00"));
        let rules = [
            (p.keep_hourly, Period::Hour, Reason::Hourly),
            (p.keep_daily, Period::Day, Reason::Daily),
            (p.keep_weekly, Period::Week, Reason::Weekly),
            (p.keep_monthly, Period::Month, Reason::Monthly),
            (p.keep_yearly, Period::Year, Reason::Yearly),
        ];
        for s in &snaps {
            let g = group(&snaps, s);
            for (count, period, reason) in &rules {
                // The N newest buckets holding a snapshot, and each one's newest snapshot.
                let mut newest_of: BTreeMap<_, (Timestamp, &str)> = BTreeMap::new();
                for o in &g {
                    let e = newest_of.entry(period.bucket(o.started_at)).or_insert(rank_key(o));
                    *e = (*e).max(rank_key(o));
                }
                let picks: Vec<_> = newest_of
                    .values()
                    .rev()
                    .take(count.unwrap_or(0) as usize)
                    .collect();
                let expected = if p.is_empty() { false } else { picks.contains(&&rank_key(s)) };
                let d = &decisions[snaps.iter().position(|o| o.id == s.id).unwrap()];
                prop_assert_eq!(expected, d.reasons.contains(reason), "{} {:?}", s.id, reason);
            }
        }
    }

    #[test]
    fn applying_again_to_the_kept_changes_nothing(
        snaps in arb_snapshots(), p in arb_policy(), now in arb_now(),
    ) {
        let decisions = apply(&p, &snaps, now);
        let (kept_snaps, kept_decisions): (Vec<Candidate>, Vec<Decision>) = snaps
            .iter()
            .cloned()
            .zip(decisions)
            .filter(|(_, d)| d.keep)
            .unzip();
        prop_assert_eq!(apply(&p, &kept_snaps, now), kept_decisions);
    }

    #[test]
    fn an_older_snapshot_changes_no_decision(
        snaps in arb_snapshots(), p in arb_policy(), now in arb_now(),
        older_by in 1i64..20_000, took in 0i64..20_000, verified in any::<bool>(),
        physical in any::<bool>(), tags in prop::sample::subsequence(TAGS.to_vec(), 0..=2),
    ) {
        let before = apply(&p, &snaps, now);
        let oldest = group(&snaps, &snaps[0]).iter().map(|o| o.started_at).min().unwrap();
        let started_at = oldest - SignedDuration::from_mins(older_by);
        let mut more = snaps.clone();
        more.push(Candidate {
            id: "older".into(),
            started_at,
            finished_at: started_at + SignedDuration::from_mins(took),
            tags: tags.into_iter().map(String::from).collect(),
            verified,
            physical,
            ..snaps[0].clone()
        });
        let after = apply(&p, &more, now);
        prop_assert_eq!(&after[..snaps.len()], &before[..]);
    }

    #[test]
    fn groups_and_input_order_do_not_matter(
        snaps in arb_snapshots(), p in arb_policy(), now in arb_now(),
    ) {
        let decisions = apply(&p, &snaps, now);
        for (s, d) in snaps.iter().zip(&decisions) {
            let alone: Vec<Candidate> = group(&snaps, s).into_iter().cloned().collect();
            let in_group = apply(&p, &alone, now);
            prop_assert_eq!(in_group.iter().find(|o| o.id == s.id), Some(d));
        }
        let reversed: Vec<Candidate> = snaps.iter().rev().cloned().collect();
        let mut again = apply(&p, &reversed, now);
        again.reverse();
        prop_assert_eq!(again, decisions);
    }
}

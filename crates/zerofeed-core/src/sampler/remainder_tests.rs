//! Elastic resume arithmetic: an epoch begun on `N` ranks and finished on `M` ranks.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{num_batches, Sampler, Shard};

fn sampler(len: usize, drop_last: bool, rank: usize, world: usize) -> Sampler {
    Sampler::new(
        len,
        true,
        7,
        drop_last,
        Some(Shard {
            rank,
            world_size: world,
        }),
    )
    .unwrap()
}

/// Samples each rank of `world` reads in the first `batches` batches of an order that began
/// at global position `consumed` (batches stop where the loader's would: `num_batches`).
fn reads(
    len: usize,
    drop_last: bool,
    world: usize,
    consumed: usize,
    batch: usize,
    batches: Option<usize>,
) -> Vec<Vec<usize>> {
    (0..world)
        .map(|rank| {
            let order = sampler(len, drop_last, rank, world).remainder_order(3, consumed);
            let all = num_batches(order.len(), batch, drop_last).unwrap();
            let taken = batches.unwrap_or(all).min(all);
            order.range(0..taken * batch).collect()
        })
        .collect()
}

fn multiset(lists: &[Vec<usize>]) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for &sample in lists.iter().flatten() {
        *counts.entry(sample).or_insert(0) += 1;
    }
    counts
}

/// The whole check for one case: `n` samples, `from` ranks read `step` batches of `batch`,
/// then `to` ranks finish the epoch.
fn check(n: usize, from: usize, to: usize, batch: usize, step: usize, drop_last: bool) {
    let perm = sampler(n, drop_last, 0, 1).permutation(3);
    let before = reads(n, drop_last, from, 0, batch, Some(step));
    let consumed = sampler(n, drop_last, 0, from).consumed_after(0, step * batch);
    // Striping: the `from` ranks read exactly the global positions 0..consumed.
    let expected_before: Vec<usize> = (0..consumed).map(|g| perm.apply(g % n)).collect();
    let mut read_before: Vec<usize> = before.iter().flatten().copied().collect();
    let mut sorted_expected = expected_before.clone();
    read_before.sort_unstable();
    sorted_expected.sort_unstable();
    assert_eq!(
        read_before, sorted_expected,
        "n={n} N={from} B={batch} step={step}"
    );
    // Every rank of `from` saved the same global position.
    for rank in 0..from {
        let per_rank = sampler(n, drop_last, rank, from).consumed_after(0, step * batch);
        assert_eq!(per_rank, consumed);
    }

    let after = reads(n, drop_last, to, consumed, batch, None);
    let rest: BTreeSet<usize> = (consumed.min(n)..n).map(|g| perm.apply(g)).collect();
    let seen_before: BTreeSet<usize> = read_before.iter().copied().collect();
    let counts = multiset(&after);
    if drop_last {
        // Each remaining sample at most once, never one read before; what is left out is
        // the cut of the remainder (< M samples) and each rank's last partial batch.
        assert!(counts.values().all(|&c| c == 1));
        assert!(counts.keys().all(|s| rest.contains(s)));
        let share = sampler(n, true, 0, to).remainder_per_rank(consumed);
        assert_eq!(counts.len(), to * (share / batch) * batch);
        assert!(rest.len() - to * share < to);
    } else {
        // Every remaining sample exactly once, plus padding: the epoch's first samples
        // again (fewer than M), as DistributedSampler pads.
        let total: usize = counts.values().sum();
        let padded = n.saturating_sub(consumed).div_ceil(to) * to;
        assert_eq!(total, padded);
        let padding: Vec<usize> = (0..padded - rest.len())
            .map(|g| perm.apply(g % n))
            .collect();
        let mut expected = multiset(&[rest.iter().copied().collect(), padding]);
        expected.retain(|_, c| *c > 0);
        assert_eq!(
            counts, expected,
            "n={n} N={from} M={to} B={batch} step={step}"
        );
        assert!(padded - rest.len() < to);
        // Together the two jobs read the whole epoch.
        let union: BTreeSet<usize> = seen_before.union(&rest).copied().collect();
        assert_eq!(union.len(), n);
    }
    assert!(rest.is_disjoint(&seen_before));
    if from == to {
        // Resuming on the same world is the tail of the uninterrupted epoch, batch for batch.
        for rank in 0..to {
            let whole = reads(n, drop_last, to, 0, batch, None);
            assert_eq!(after[rank], whole[rank][before[rank].len()..]);
        }
    }
}

#[test]
fn every_small_case_resumes_exactly() {
    for n in 0..23 {
        for from in 1..5 {
            for to in 1..5 {
                for batch in 1..4 {
                    for drop_last in [false, true] {
                        let share = sampler(n, drop_last, 0, from).samples_per_epoch();
                        let steps = num_batches(share, batch, drop_last).unwrap();
                        for step in 0..=steps {
                            check(n, from, to, batch, step, drop_last);
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn larger_worlds_resume_exactly(
        n in 0usize..400,
        from in 1usize..17,
        to in 1usize..17,
        batch in 1usize..9,
        step_fraction in 0.0f64..1.2,
        drop_last: bool,
    ) {
        let share = sampler(n, drop_last, 0, from).samples_per_epoch();
        let steps = num_batches(share, batch, drop_last).unwrap();
        let step = ((steps as f64) * step_fraction) as usize;
        check(n, from, to, batch, step.min(steps), drop_last);
    }
}

#[test]
fn consumed_after_is_batches_times_batch_size_times_world_inside_the_epoch() {
    let s = sampler(100, false, 1, 4); // 25 per rank
    assert_eq!(s.consumed_after(0, 3 * 8), 96);
    // A last short batch counts as the rest of the share: the padded total.
    assert_eq!(s.consumed_after(0, 4 * 8), 100);
    let s = sampler(10, false, 0, 4); // 3 per rank, padded to 12
    assert_eq!(s.consumed_after(0, 4), 12);
    assert!(s.remainder_order(0, 12).is_empty());
    let s = sampler(10, true, 0, 4); // 2 per rank, cut to 8
    assert_eq!(s.consumed_after(0, 2), 8);
    assert_eq!(s.remainder_per_rank(8), 0);
    // From a remainder: offsets add up.
    let s = sampler(10, false, 0, 3);
    assert_eq!(s.consumed_after(4, 1), 7);
    assert_eq!(s.remainder_order(0, 4).offset(), 4);
}

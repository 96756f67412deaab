//! The computed sample order: a permutation for every length, seeded, sharded exactly as
//! DistributedSampler shards, uniform enough, and cheap for 10^12 samples.

use std::time::Instant;

use proptest::prelude::*;
use zerofeed_core::sampler::{EpochOrder, Permutation, Sampler, Shard};

/// True when `p` maps `0..len` onto `0..len` (checked with a bitmap).
fn is_permutation(p: &Permutation) -> bool {
    let mut seen = vec![false; p.len()];
    for i in 0..p.len() {
        let x = p.apply(i);
        if x >= p.len() || std::mem::replace(&mut seen[x], true) {
            return false;
        }
    }
    p.checked_apply(p.len()).is_none()
}

/// Interesting lengths: tiny, primes, powers of two and their neighbours, 10^5.
fn lengths() -> Vec<usize> {
    let mut lens = vec![0, 1, 2, 3, 5, 7, 11, 13, 97, 251, 65_521, 99_991, 100_000];
    for k in 1..=16 {
        lens.extend([(1 << k) - 1, 1 << k, (1 << k) + 1]);
    }
    lens
}

#[test]
fn shuffles_are_permutations_for_many_lengths_and_seeds() {
    for len in lengths() {
        for (seed, epoch) in [(0, 0), (1, 0), (0, 1), (u64::MAX, u64::MAX)] {
            let p = Permutation::shuffled(len, seed, epoch);
            assert!(is_permutation(&p), "len {len} seed {seed} epoch {epoch}");
        }
    }
}

/// The sharded order as torch.utils.data.DistributedSampler builds it, literally: pad
/// the list by repeating it (whole copies first when the padding exceeds it), or cut it,
/// then take `indices[rank:total:world]`.
fn distributed_sampler(global: &[usize], rank: usize, world: usize, drop_last: bool) -> Vec<usize> {
    let n = global.len();
    let per_rank = if drop_last {
        n / world
    } else {
        n.div_ceil(world)
    };
    let total = per_rank * world;
    let mut indices = global.to_vec();
    if !drop_last && n > 0 {
        let padding = total - n;
        let repeated: Vec<usize> = global
            .iter()
            .copied()
            .cycle()
            .take(n * padding.div_ceil(n))
            .collect();
        indices.extend_from_slice(&repeated[..padding]);
    }
    indices.truncate(total);
    indices.into_iter().skip(rank).step_by(world).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_lengths_are_permutations(len in 0usize..100_000, seed: u64, epoch: u64) {
        prop_assert!(is_permutation(&Permutation::shuffled(len, seed, epoch)));
    }

    #[test]
    fn shards_match_distributed_sampler(
        len in 0usize..2_000,
        world in 1usize..40,
        seed: u64,
        drop_last: bool,
        shuffle: bool,
    ) {
        let global_order = Sampler::new(len, shuffle, seed, drop_last, None).unwrap().epoch_order(4);
        let global: Vec<usize> = (0..len).map(|p| global_order.global(p)).collect();
        let mut visits = vec![0usize; len];
        for rank in 0..world {
            let shard = Some(Shard::new(rank, world).unwrap());
            let order = Sampler::new(len, shuffle, seed, drop_last, shard).unwrap().epoch_order(4);
            let got = order.to_vec();
            prop_assert_eq!(&got, &distributed_sampler(&global, rank, world, drop_last));
            prop_assert_eq!(order.checked_get(order.len()), None);
            for sample in got {
                visits[sample] += 1;
            }
        }
        // Disjoint with drop_last; a cover (each sample at least once, at most
        // ceil(world / len) + 1 times) without it.
        if drop_last {
            prop_assert!(visits.iter().all(|&v| v <= 1));
            prop_assert_eq!(visits.iter().sum::<usize>(), len / world * world);
        } else if len > 0 {
            prop_assert!(visits.iter().all(|&v| v >= 1 && v <= world.div_ceil(len) + 1));
        }
    }
}

#[test]
fn seeds_and_epochs_give_different_orders_and_repeat_exactly() {
    for len in [20, 1000] {
        let orders: Vec<Vec<usize>> = (0..8u64)
            .flat_map(|seed| (0..8u64).map(move |epoch| (seed, epoch)))
            .map(|(seed, epoch)| {
                let p = Permutation::shuffled(len, seed, epoch);
                assert_eq!(p, Permutation::shuffled(len, seed, epoch));
                (0..len).map(|i| p.apply(i)).collect()
            })
            .collect();
        for (i, a) in orders.iter().enumerate() {
            for b in &orders[i + 1..] {
                assert_ne!(a, b, "len {len}: two (seed, epoch) pairs gave one order");
            }
        }
    }
}

/// Pearson's chi-square statistic of `counts` against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn positions_are_uniform_over_seeds() {
    // Where sample 0 lands, and which sample lands first, over 20 000 seeds, for a
    // length with a power-of-two domain and ones that cycle-walk, in equal bins. At most
    // 9 degrees of freedom: the 1e-6 tail is about 45, so 60 fails only a broken shuffle.
    for (len, bins) in [(10usize, 10), (16, 8), (1000, 10)] {
        let (mut where_zero, mut first) = (vec![0u64; bins], vec![0u64; bins]);
        for seed in 0..20_000u64 {
            let p = Permutation::shuffled(len, seed, 0);
            let zero_at = (0..len).position(|i| p.apply(i) == 0).unwrap();
            where_zero[zero_at * bins / len] += 1;
            first[p.apply(0) * bins / len] += 1;
        }
        assert!(chi_square(&where_zero) < 60.0, "len {len}: {where_zero:?}");
        assert!(chi_square(&first) < 60.0, "len {len}: {first:?}");
    }
}

/// Pearson correlation of two equally long sequences.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn orders_are_not_structured() {
    // An unstructured shuffle of 1000 has position/value correlation ~ N(0, 1/sqrt(999))
    // = N(0, 0.032), and so have two epochs' orders. 0.2 is over 6 standard deviations.
    let len = 1000;
    let positions: Vec<f64> = (0..len).map(|i| i as f64).collect();
    for seed in 0..100u64 {
        let values = |epoch| -> Vec<f64> {
            let p = Permutation::shuffled(len, seed, epoch);
            (0..len).map(|i| p.apply(i) as f64).collect()
        };
        let (e0, e1) = (values(0), values(1));
        assert!(correlation(&positions, &e0).abs() < 0.2, "seed {seed}");
        assert!(correlation(&e0, &e1).abs() < 0.2, "seed {seed}");
        // Neighbours in the order are not neighbours in the data.
        let steps = (1..len)
            .filter(|&i| (e0[i] - e0[i - 1]).abs() == 1.0)
            .count();
        assert!(steps < 15, "seed {seed}: {steps} unit steps");
    }
}

#[test]
fn a_trillion_samples_cost_nothing_up_front() {
    let len = 1_000_000_000_000usize;
    let made = Instant::now();
    let sampler = Sampler::new(len, true, 5, false, Some(Shard::new(3, 8).unwrap())).unwrap();
    let order: EpochOrder = sampler.epoch_order(2);
    let made = made.elapsed();
    assert_eq!(order.len(), len / 8);
    let calls = 2_000_000;
    let timed = Instant::now();
    let mut got: Vec<usize> = (0..calls).map(|k| order.get(k * 997)).collect();
    let per_call = timed.elapsed().as_nanos() as f64 / calls as f64;
    // No timed assertion (debug builds and shared machines vary); the numbers are for
    // `cargo test --release -- --nocapture`.
    eprintln!("epoch_order(10^12) built in {made:?}; get: {per_call:.1} ns per call");
    assert!(got.iter().all(|&s| s < len));
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), calls, "distinct positions gave one sample twice");
}

#[test]
fn lengths_near_usize_max_do_not_overflow() {
    // n = usize::MAX with 7 ranks: total = n + 6, so rank 6's last global position,
    // 6 + (per_rank - 1) * 7, exceeds usize::MAX and must wrap to the start exactly.
    let len = usize::MAX;
    let world = 7;
    let order = Sampler::new(len, true, 1, false, Some(Shard::new(6, world).unwrap()))
        .unwrap()
        .epoch_order(0);
    let last = order.len() - 1;
    let global = (6 + last as u128 * world as u128) % len as u128;
    assert!(global < 7, "this position is padding");
    assert_eq!(order.get(last), order.global(global as usize));
    assert_eq!(order.get(0), order.global(6));
    assert_eq!(order.checked_get(order.len()), None);
    let identity = Sampler::new(len, false, 1, false, Some(Shard::new(6, world).unwrap()))
        .unwrap()
        .epoch_order(0);
    assert_eq!(identity.get(last), global as usize);
}

#[test]
#[should_panic(expected = "out of range")]
fn get_past_the_end_panics_like_indexing() {
    let order = Sampler::new(10, true, 0, false, None)
        .unwrap()
        .epoch_order(0);
    order.get(10);
}

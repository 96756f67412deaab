//! Sampler: permutations, determinism, and DistributedSampler's index arithmetic.

use std::collections::HashSet;

use zerofeed_core::sampler::{num_batches, Sampler, SamplerError, Shard};

fn sampler(len: usize, shuffle: bool, drop_last: bool, rank: usize, world: usize) -> Sampler {
    Sampler::new(
        len,
        shuffle,
        42,
        drop_last,
        Some(Shard::new(rank, world).unwrap()),
    )
    .unwrap()
}

fn orders(len: usize, shuffle: bool, drop_last: bool, world: usize) -> Vec<Vec<usize>> {
    (0..world)
        .map(|r| {
            sampler(len, shuffle, drop_last, r, world)
                .epoch_order(3)
                .to_vec()
        })
        .collect()
}

#[test]
fn global_order_is_a_permutation() {
    for len in [0, 1, 2, 7, 1000] {
        let s = Sampler::new(len, true, 9, false, None).unwrap();
        let p = s.permutation(5);
        let mut order: Vec<usize> = (0..len).map(|i| p.apply(i)).collect();
        order.sort_unstable();
        assert_eq!(order, (0..len).collect::<Vec<_>>());
    }
}

#[test]
fn order_is_deterministic_per_seed_and_epoch() {
    let a = Sampler::new(500, true, 1, false, None).unwrap();
    let b = Sampler::new(500, true, 1, false, None).unwrap();
    assert_eq!(a.epoch_order(0), b.epoch_order(0));
    assert_eq!(a.epoch_order(7).to_vec(), b.epoch_order(7).to_vec());
    assert_ne!(
        a.epoch_order(0).to_vec(),
        a.epoch_order(1).to_vec(),
        "epochs must differ"
    );
    let c = Sampler::new(500, true, 2, false, None).unwrap();
    assert_ne!(
        a.epoch_order(0).to_vec(),
        c.epoch_order(0).to_vec(),
        "seeds must differ"
    );
    assert_ne!(
        a.epoch_order(0).to_vec(),
        (0..500).collect::<Vec<_>>(),
        "shuffled"
    );
}

#[test]
fn no_shuffle_is_identity() {
    let s = Sampler::new(5, false, 1, false, None).unwrap();
    assert_eq!(s.epoch_order(0).to_vec(), vec![0, 1, 2, 3, 4]);
    assert_eq!(s.epoch_order(9).to_vec(), vec![0, 1, 2, 3, 4]);
    assert!(!s.permutation(0).is_shuffled());
    assert_eq!(s.samples_per_epoch(), 5);
}

#[test]
fn shuffle_positions_are_roughly_uniform() {
    // Sample 0 should land in each of 4 positions about 1/4 of the time over epochs.
    let s = Sampler::new(4, true, 3, false, None).unwrap();
    let mut counts = [0u32; 4];
    for epoch in 0..8000 {
        let pos = s
            .epoch_order(epoch)
            .range(0..4)
            .position(|i| i == 0)
            .unwrap();
        counts[pos] += 1;
    }
    for c in counts {
        assert!((1800..2200).contains(&c), "{counts:?}");
    }
}

// DistributedSampler, len=10, world=3, drop_last=False (worked by hand):
// num_samples = ceil(10/3) = 4, total = 12, padding = 2 -> indices + indices[:2]
// = [0,1,2,3,4,5,6,7,8,9,0,1]; rank r takes indices[r::3].
#[test]
fn distributed_padding_by_hand() {
    assert_eq!(
        orders(10, false, false, 3),
        vec![vec![0, 3, 6, 9], vec![1, 4, 7, 0], vec![2, 5, 8, 1]]
    );
    assert_eq!(sampler(10, false, false, 1, 3).samples_per_epoch(), 4);
}

// len=10, world=3, drop_last=True: num_samples = ceil((10-3)/3) = 3, total = 9,
// indices[:9] = [0..=8]; sample 9 is dropped.
#[test]
fn distributed_drop_last_by_hand() {
    assert_eq!(
        orders(10, false, true, 3),
        vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5, 8]]
    );
    assert_eq!(sampler(10, false, true, 0, 3).samples_per_epoch(), 3);
}

// len=2, world=5, drop_last=False: num_samples = 1, total = 5, padding = 3 > len, so
// (indices * ceil(3/2))[:3] = [0,1,0] is appended: [0,1,0,1,0].
// With drop_last=True: num_samples = ceil((2-5)/5) = 0: nothing at all.
#[test]
fn distributed_world_larger_than_dataset() {
    assert_eq!(
        orders(2, false, false, 5),
        vec![vec![0], vec![1], vec![0], vec![1], vec![0]]
    );
    assert!(orders(2, false, true, 5).iter().all(Vec::is_empty));
}

// len=8, world=4: divisible, so drop_last does not matter.
#[test]
fn distributed_even_split() {
    let want = vec![vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]];
    assert_eq!(orders(8, false, false, 4), want);
    assert_eq!(orders(8, false, true, 4), want);
}

#[test]
fn shards_partition_shuffled_epoch_with_drop_last() {
    for (len, world) in [(103, 4), (100, 4), (5, 2), (17, 16)] {
        let parts = orders(len, true, true, world);
        let all: Vec<usize> = parts.iter().flatten().copied().collect();
        let unique: HashSet<usize> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len(), "each sample at most once");
        assert_eq!(all.len(), len / world * world);
        assert!(parts.iter().all(|p| p.len() == len / world));
    }
}

#[test]
fn shards_cover_shuffled_epoch_with_padding() {
    for (len, world) in [(103, 4), (100, 4), (5, 2), (3, 8)] {
        let parts = orders(len, true, false, world);
        let per = len.div_ceil(world);
        assert!(parts.iter().all(|p| p.len() == per));
        // Interleave back into the padded global order: rank r holds positions r::world.
        let global = sampler(len, true, false, 0, world).epoch_order(3);
        let global: Vec<usize> = (0..len).map(|p| global.global(p)).collect();
        let padded: Vec<usize> = (0..per * world)
            .map(|p| parts[p % world][p / world])
            .collect();
        let want: Vec<usize> = global.iter().copied().cycle().take(per * world).collect();
        assert_eq!(padded, want);
        let unique: HashSet<usize> = padded.iter().copied().collect();
        assert_eq!(unique.len(), len, "every sample appears");
    }
}

#[test]
fn empty_dataset() {
    let s = Sampler::new(0, true, 0, false, Some(Shard::new(1, 2).unwrap())).unwrap();
    assert!(s.epoch_order(0).is_empty());
    assert_eq!(s.samples_per_epoch(), 0);
    assert!(s.is_empty());
}

#[test]
fn shard_validation_names_the_argument() {
    let err = Shard::new(3, 3).unwrap_err();
    assert_eq!(
        err,
        SamplerError::RankOutOfRange {
            rank: 3,
            world_size: 3
        }
    );
    assert!(err.to_string().contains("rank 3"), "{err}");
    assert!(err.to_string().contains("0..3"), "{err}");
    let err = Shard::new(0, 0).unwrap_err();
    assert!(err.to_string().contains("world_size"), "{err}");
    // Hand-built shards are checked by the sampler too.
    let bad = Shard {
        rank: 5,
        world_size: 2,
    };
    assert!(Sampler::new(10, false, 0, false, Some(bad)).is_err());
}

#[test]
fn batches() {
    assert_eq!(num_batches(10, 3, false), Ok(4));
    assert_eq!(num_batches(10, 3, true), Ok(3));
    assert_eq!(num_batches(9, 3, true), Ok(3));
    assert_eq!(num_batches(0, 3, false), Ok(0));
    assert_eq!(num_batches(2, 3, true), Ok(0));
    let err = num_batches(10, 0, false).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

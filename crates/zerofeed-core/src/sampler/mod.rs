//! Sample order: shuffling, shards across ranks, epochs, and counter-based randomness.
//!
//! Everything here is a pure function of `(seed, epoch, ...)`: the order of epoch `e` is
//! recomputed, never stored, so resuming mid-epoch needs only `(epoch, position)` and
//! any number of workers sees the same order.

mod rng;

pub use rng::{philox4x32_10, random_u64, CounterRng};
use thiserror::Error;

/// First stream words that keep independent uses of one seed apart.
pub mod domain {
    /// The epoch permutation: stream `[SHUFFLE, epoch]`, draw `i` picks the swap partner
    /// of position `i` in Fisher-Yates.
    pub const SHUFFLE: u64 = 0x5348_5546_464c_4531; // "SHUFFLE1"
    /// Per-sample op randomness: stream `[OPS, epoch, sample_index, op_index]`.
    pub const OPS: u64 = 0x4f50_5352_414e_4431; // "OPSRAND1"
}

/// A wrong sampler or batching argument, naming the argument and the fix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SamplerError {
    /// `world_size` must count at least one rank.
    #[error(
        "shard world_size must be at least 1, got 0; pass the number of ranks (e.g. WORLD_SIZE)"
    )]
    ZeroWorldSize,
    /// `rank` must be one of `0..world_size`.
    #[error("shard rank {rank} is out of range for world_size {world_size}; rank must be in 0..{world_size}")]
    RankOutOfRange {
        /// The rank given.
        rank: usize,
        /// The world size given.
        world_size: usize,
    },
    /// `batch_size` must be at least 1.
    #[error("batch_size must be at least 1, got 0")]
    ZeroBatchSize,
}

/// This process's part of a distributed job: rank `rank` of `world_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// This rank, in `0..world_size`.
    pub rank: usize,
    /// The number of ranks sharing the data.
    pub world_size: usize,
}

impl Shard {
    /// A validated shard.
    pub fn new(rank: usize, world_size: usize) -> Result<Shard, SamplerError> {
        let shard = Shard { rank, world_size };
        shard.validate()?;
        Ok(shard)
    }

    /// Checks `world_size >= 1` and `rank < world_size` (the fields are public, so a
    /// shard built by hand is checked again wherever it is used).
    pub fn validate(&self) -> Result<(), SamplerError> {
        if self.world_size == 0 {
            return Err(SamplerError::ZeroWorldSize);
        }
        if self.rank >= self.world_size {
            return Err(SamplerError::RankOutOfRange {
                rank: self.rank,
                world_size: self.world_size,
            });
        }
        Ok(())
    }
}

/// Which samples this rank visits in each epoch, and in which order.
///
/// Sharding follows `torch.utils.data.DistributedSampler` exactly (see
/// [`Sampler::epoch_order`]); `drop_last` here is that sampler's flag (even shards), not
/// the loader's "drop the last partial batch", which is [`num_batches`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampler {
    len: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    shard: Shard,
}

impl Sampler {
    /// A sampler over `len` samples. `shard: None` means a single rank (rank 0 of 1).
    pub fn new(
        len: usize,
        shuffle: bool,
        seed: u64,
        drop_last: bool,
        shard: Option<Shard>,
    ) -> Result<Sampler, SamplerError> {
        let shard = shard.unwrap_or(Shard {
            rank: 0,
            world_size: 1,
        });
        shard.validate()?;
        Ok(Sampler {
            len,
            shuffle,
            seed,
            drop_last,
            shard,
        })
    }

    /// The number of samples in the dataset.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the dataset is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The seed all randomness derives from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The shard (rank 0 of 1 when none was given).
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// How many samples this rank visits per epoch: DistributedSampler's `num_samples`,
    /// `floor(len / world)` with `drop_last`, `ceil(len / world)` without.
    pub fn samples_per_epoch(&self) -> usize {
        let world = self.shard.world_size;
        if self.drop_last {
            self.len / world
        } else {
            self.len.div_ceil(world)
        }
    }

    /// The global order of epoch `epoch` before sharding: the identity without shuffle,
    /// else a Fisher-Yates permutation driven by the counter RNG on `(seed, epoch)`.
    pub fn global_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            let rng = CounterRng::new(self.seed, &[domain::SHUFFLE, epoch]);
            // Durstenfeld's Fisher-Yates: position i swaps with a uniform j in 0..=i.
            // Draw i is used for position i, so the permutation depends on nothing but
            // (seed, epoch, len).
            for i in (1..self.len).rev() {
                let j = rng.below(i as u64, i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// This rank's sample indices for epoch `epoch`, in visiting order.
    ///
    /// DistributedSampler's rules: `total = samples_per_epoch() * world`; with `drop_last`
    /// the global order is cut to its first `total` entries, without it the order is
    /// padded to `total` by repeating it from the start (cycling when `world > len`);
    /// rank `r` then takes positions `r, r + world, r + 2 world, ...`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let world = self.shard.world_size;
        let per_rank = self.samples_per_epoch();
        let global = self.global_order(epoch);
        if global.is_empty() {
            return Vec::new();
        }
        (0..per_rank)
            .map(|k| global[(self.shard.rank + k * world) % global.len()])
            .collect()
    }
}

/// Batches in an epoch of `samples` samples: `floor` with `drop_last` (the last partial
/// batch is dropped), `ceil` without.
pub fn num_batches(
    samples: usize,
    batch_size: usize,
    drop_last: bool,
) -> Result<usize, SamplerError> {
    if batch_size == 0 {
        return Err(SamplerError::ZeroBatchSize);
    }
    Ok(if drop_last {
        samples / batch_size
    } else {
        samples.div_ceil(batch_size)
    })
}

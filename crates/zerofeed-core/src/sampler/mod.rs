//! Sample order: shuffling, shards across ranks, epochs, and counter-based randomness.
//!
//! Everything here is a pure function of `(seed, epoch, ...)`, and the order is computed,
//! not stored: [`Sampler::epoch_order`] returns an [`EpochOrder`] of a few dozen bytes
//! whose [`EpochOrder::get`] maps a position to a sample index in nanoseconds, whatever
//! the number of samples (10^12 costs nothing up front; see [`Permutation`] for the
//! keyed Feistel permutation behind it). Resuming mid-epoch needs only
//! `(epoch, position)`, and any number of workers sees the same order.
//!
//! Elastic resume works in global positions: after every rank of an `N`-rank job took `k`
//! positions, the job has read global positions `0..k * N` of the epoch's order (see
//! [`Sampler::consumed_after`]); [`Sampler::remainder_order`] re-shards the positions not
//! yet read over this sampler's own world size, so `M` ranks finish the epoch that `N`
//! ranks began.

mod permutation;
mod rng;

use std::ops::Range;

pub use permutation::{Permutation, ROUNDS};
pub use rng::{philox4x32_10, random_u64, CounterRng};
use thiserror::Error;

/// First stream words that keep independent uses of one seed apart.
pub mod domain {
    /// The epoch permutation: stream `[SHUFFLE, epoch]`, draw `i` is the key of Feistel
    /// round `i` (see [`super::Permutation`]).
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
        self.remainder_per_rank(0)
    }

    /// How many positions each rank takes from the rest of an epoch whose first `consumed`
    /// global positions were read: the remaining `len - consumed` samples sharded by
    /// DistributedSampler's rule (`floor` of the share with `drop_last`, `ceil` without).
    pub fn remainder_per_rank(&self, consumed: usize) -> usize {
        let world = self.shard.world_size;
        let rest = self.len.saturating_sub(consumed);
        if self.drop_last {
            rest / world
        } else {
            rest.div_ceil(world)
        }
    }

    /// Global positions read once every rank of this sampler's world took `positions`
    /// positions of an order that began at global position `consumed`.
    ///
    /// A rank cannot take more than [`Sampler::remainder_per_rank`] positions, so a short
    /// last batch counts as the rest of the rank's share: after the whole epoch the result
    /// is the padded (or cut) total, which is `>= len()` without `drop_last`. With striped
    /// shards (rank `r` takes `r, r + world, ...`), the positions read are exactly the
    /// global range `0..consumed_after(consumed, positions)`.
    pub fn consumed_after(&self, consumed: usize, positions: usize) -> usize {
        let taken = positions.min(self.remainder_per_rank(consumed));
        consumed.saturating_add(taken.saturating_mul(self.shard.world_size))
    }

    /// The global order of epoch `epoch` before sharding: the identity without shuffle,
    /// else the keyed permutation of `0..len()` for `(seed, epoch)`.
    pub fn permutation(&self, epoch: u64) -> Permutation {
        if self.shuffle {
            Permutation::shuffled(self.len, self.seed, epoch)
        } else {
            Permutation::identity(self.len)
        }
    }

    /// This rank's order for epoch `epoch`: a small `Copy` value that computes the sample
    /// at each position on demand (nothing is allocated, whatever `len()` is).
    ///
    /// DistributedSampler's rules: `total = samples_per_epoch() * world`; with `drop_last`
    /// the global order is cut to its first `total` entries, without it the order is
    /// padded to `total` by repeating it from the start (cycling when `world > len`);
    /// rank `r` then takes positions `r, r + world, r + 2 world, ...`.
    pub fn epoch_order(&self, epoch: u64) -> EpochOrder {
        self.remainder_order(epoch, 0)
    }

    /// This rank's order for the rest of epoch `epoch`, whose first `consumed` global
    /// positions were already read (by a job of any world size; see
    /// [`Sampler::consumed_after`]).
    ///
    /// The remaining positions `consumed..len()` are sharded over this sampler's world
    /// with DistributedSampler's rules applied to them: with `drop_last` cut to
    /// `remainder_per_rank(consumed) * world` positions (at most `world - 1` remaining
    /// samples are not read), without it padded to that total by continuing the epoch's
    /// padding, i.e. global position `g >= len()` is sample `permutation(g % len())`, the
    /// epoch's first samples again. Rank `r` takes remaining positions `r, r + world, ...`.
    /// For the world that read the first `consumed` positions, the result is exactly the
    /// tail of [`Sampler::epoch_order`]; `consumed >= len()` gives an empty order.
    pub fn remainder_order(&self, epoch: u64, consumed: usize) -> EpochOrder {
        EpochOrder {
            permutation: self.permutation(epoch),
            rank: self.shard.rank,
            world: self.shard.world_size,
            len: self.remainder_per_rank(consumed),
            offset: consumed,
        }
    }
}

/// One rank's visiting order for one epoch, computed position by position.
///
/// Made by [`Sampler::epoch_order`]. `Copy + Send + Sync` and heap-free: give every worker
/// its own copy. Position `k` of rank `r` is global position `offset + r + k * world` of
/// the epoch's [`Permutation`] (`offset` is 0 except for [`Sampler::remainder_order`]),
/// taken modulo the dataset length (DistributedSampler's padding by repetition). That
/// arithmetic is exact for every length up to `usize::MAX` (it falls back to 128-bit
/// integers where the sum would not fit), so there is no cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EpochOrder {
    permutation: Permutation,
    rank: usize,
    world: usize,
    len: usize,
    offset: usize,
}

impl EpochOrder {
    /// This rank's samples per epoch ([`Sampler::samples_per_epoch`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when this rank visits nothing this epoch.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The epoch's global permutation, before sharding.
    pub fn permutation(&self) -> &Permutation {
        &self.permutation
    }

    /// The sample index at this rank's position `position`, or `None` when
    /// `position >= len()`.
    #[inline]
    pub fn checked_get(&self, position: usize) -> Option<usize> {
        if position >= self.len {
            return None;
        }
        self.permutation
            .checked_apply(self.global_position(position))
    }

    /// The epoch's global position of this rank's position `position` (< len), wrapped
    /// into the dataset (DistributedSampler's padding).
    #[inline]
    fn global_position(&self, position: usize) -> usize {
        // `len > 0` implies a non-empty dataset: samples_per_epoch is 0 for 0 samples.
        let n = self.permutation.len();
        match position
            .checked_mul(self.world)
            .and_then(|p| p.checked_add(self.rank))
            .and_then(|p| p.checked_add(self.offset))
        {
            // The division only where the position wraps (padding, remainders).
            Some(p) if p < n => p,
            Some(p) => p % n,
            // Only for datasets within `world` of usize::MAX; the remainder is below `n`,
            // so it fits back into usize.
            None => {
                ((position as u128 * self.world as u128 + self.rank as u128 + self.offset as u128)
                    % n as u128) as usize
            }
        }
    }

    /// The sample index at this rank's position `position`.
    ///
    /// # Panics
    /// If `position >= len()`, like slice indexing.
    #[inline]
    pub fn get(&self, position: usize) -> usize {
        self.checked_get(position).unwrap_or_else(|| {
            panic!(
                "position {position} is out of range for an epoch of {} samples on this rank",
                self.len
            )
        })
    }

    /// The global position this order begins at (0 unless made by
    /// [`Sampler::remainder_order`]).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The sample at global (unsharded, unpadded) position `position` of the epoch's
    /// permutation.
    ///
    /// # Panics
    /// If `position` is not below the dataset length.
    #[inline]
    pub fn global(&self, position: usize) -> usize {
        self.permutation.apply(position)
    }

    /// The samples at this rank's positions `positions`, clipped to `0..len()`: one
    /// batch is `order.range(b * batch_size..(b + 1) * batch_size)`.
    pub fn range(&self, positions: Range<usize>) -> impl ExactSizeIterator<Item = usize> + Clone {
        let order = *self;
        let end = positions.end.min(self.len);
        let start = positions.start.min(end);
        (start..end).map(move |p| order.get(p))
    }

    /// The samples of [`EpochOrder::range`] into `out` (replacing its contents), computed
    /// several at a time ([`Permutation::apply_all`]): what a worker asks for one batch.
    pub fn fill_range(&self, positions: Range<usize>, out: &mut Vec<usize>) {
        let end = positions.end.min(self.len);
        let start = positions.start.min(end);
        out.clear();
        out.extend((start..end).map(|p| self.global_position(p)));
        self.permutation.apply_all(out);
    }

    /// Every sample of this rank's epoch, in order, as a vector: for tests and debugging
    /// only. It allocates `8 * len()` bytes, which is exactly what `EpochOrder` exists
    /// to avoid; production code calls [`EpochOrder::get`] or [`EpochOrder::range`].
    pub fn to_vec(&self) -> Vec<usize> {
        self.range(0..self.len).collect()
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

#[cfg(test)]
mod remainder_tests;

//! The loader's memory policy: how many bytes are in flight, what the pool may keep, whether
//! that fits in RAM, and which pool holds the batches. Every product is checked: sizes come
//! from users (`batch_size=2**60`) and must give an error, never a wrapped number.

use std::sync::Arc;

use crate::cuda;
use crate::pool::{BufferPool, PoolConfig};

use super::PipelineError;

/// What a loader's batches cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// One full batch of every field.
    pub batch_bytes: usize,
    /// Batches alive at once at most: `prefetch + workers` being built or waiting, plus the
    /// one the consumer holds.
    pub batches_in_flight: usize,
    /// `batches_in_flight * batch_bytes`.
    pub in_flight_bytes: usize,
    /// Idle bytes the pool keeps for reuse.
    pub budget: usize,
}

/// Bytes of batches prepared ahead at least, when `prefetch` asks for fewer: a window this
/// long holds about half a millisecond of a worker's writing (at ~10 GB/s), longer than a
/// sleeping thread takes to wake on a busy machine, so workers on batches that take
/// microseconds (token windows, tabular rows, labels) stay ahead without a wake-up per
/// batch; and it stays well inside the last-level cache, so the ready batches are still
/// there when the consumer takes them.
pub(super) const LOOKAHEAD_BYTES: usize = 4 << 20;
/// Batches prepared ahead, at most, however small.
pub(super) const MAX_SMALL_LOOKAHEAD: usize = 256;

/// The look-ahead [`LOOKAHEAD_BYTES`] gives batches of `batch_bytes` (0 for batches of more
/// than that).
pub(super) fn small_lookahead(batch_bytes: usize) -> usize {
    (LOOKAHEAD_BYTES / batch_bytes.max(1)).min(MAX_SMALL_LOOKAHEAD)
}

/// How many batches workers may prepare ahead of the consumer: `asked` (`prefetch +
/// workers`), or for small batches the look-ahead of [`small_lookahead`] as far as `budget`
/// (idle bytes the pool keeps) holds it, since buffers beyond the budget would be freed and
/// allocated again for every batch. Never changes what a batch holds.
pub(super) fn lookahead(asked: usize, batch_bytes: usize, budget: usize) -> usize {
    let affordable = (budget / batch_bytes.max(1)).saturating_sub(1);
    asked.max(small_lookahead(batch_bytes).min(affordable))
}

/// Checks and computes a loader's memory figures.
///
/// `sample_bytes` has one output sample's bytes per field; `available` is the RAM that can
/// still be allocated (`None` when unknown: no RAM check). The default budget holds every
/// batch in flight plus one, so steady state never allocates.
pub fn plan_memory(
    sample_bytes: &[usize],
    batch_size: usize,
    workers: usize,
    prefetch: usize,
    memory_budget: Option<usize>,
    available: Option<u64>,
) -> Result<MemoryPlan, PipelineError> {
    let overflow =
        |argument: &'static str, value: usize, what: &'static str| PipelineError::Overflow {
            argument,
            value,
            what,
        };
    let batch_bytes = sample_bytes
        .iter()
        .try_fold(0usize, |sum, &bytes| {
            bytes
                .checked_mul(batch_size)
                .and_then(|b| sum.checked_add(b))
        })
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| overflow("batch_size", batch_size, "the byte size of one batch"))?;
    let with_workers = workers
        .checked_add(1)
        .ok_or_else(|| overflow("workers", workers, "the number of batches in flight"))?;
    let batches_in_flight = prefetch
        .checked_add(with_workers)
        .ok_or_else(|| overflow("prefetch", prefetch, "the number of batches in flight"))?;
    let needed = batches_in_flight as u128 * batch_bytes as u128;
    // What to lower first when the batches in flight do not fit: the batch itself when two
    // batches do not fit, else the workers when their batches alone do not, else prefetch.
    let blame = |limit: u128| {
        let bytes = |batches: usize| batches as u128 * batch_bytes as u128;
        if bytes(with_workers) > limit {
            if workers > 1 && bytes(2) <= limit {
                "workers"
            } else {
                "batch_size"
            }
        } else {
            "prefetch"
        }
    };
    if let Some(available) = available {
        if needed > u128::from(available) {
            return Err(PipelineError::NotEnoughRam {
                argument: blame(u128::from(available)),
                batches: batches_in_flight,
                needed,
                available,
            });
        }
    }
    let in_flight_bytes = usize::try_from(needed)
        .ok()
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            let argument = blame(isize::MAX as u128);
            let value = match argument {
                "workers" => workers,
                "batch_size" => batch_size,
                _ => prefetch,
            };
            overflow(argument, value, "the bytes of the batches in flight")
        })?;
    let budget = match memory_budget {
        Some(budget) if budget < batch_bytes => {
            return Err(PipelineError::BudgetTooSmall {
                budget,
                batch_bytes,
            })
        }
        Some(budget) => budget,
        // Room for the small-batch look-ahead too (at most about LOOKAHEAD_BYTES).
        None => in_flight_bytes
            .max(small_lookahead(batch_bytes) * batch_bytes)
            .saturating_add(batch_bytes),
    };
    Ok(MemoryPlan {
        batch_bytes,
        batches_in_flight,
        in_flight_bytes,
        budget,
    })
}

/// The pool for `plan`: plain or `mlock`ed host memory, or, for a loader that feeds CUDA
/// device `pin_device`, buffers registered with the driver once, after checking the pinned
/// total (`max(budget, in flight)`) against the available RAM before anything is allocated.
pub(super) fn make_pool(
    plan: &MemoryPlan,
    pin: bool,
    pin_device: Option<i64>,
) -> Result<Arc<BufferPool>, PipelineError> {
    let config = PoolConfig {
        budget: plan.budget,
        pin,
    };
    match (pin, pin_device) {
        (true, Some(device)) => {
            let pinned = plan.budget.max(plan.in_flight_bytes) as u64;
            cuda::memory::check_pinned_budget(pinned)?;
            let context = cuda::Context::primary(device)?;
            let pinner = Arc::new(cuda::memory::CudaPinner::new(context));
            Ok(BufferPool::with_pinner(config, pinner))
        }
        _ => Ok(BufferPool::new(config)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_holds_every_batch_in_flight_plus_one() {
        let big = LOOKAHEAD_BYTES / 4;
        let plan = plan_memory(&[big, 8], 4, 2, 3, None, None).unwrap();
        let batch = 4 * (big + 8);
        assert_eq!(plan.batch_bytes, batch);
        assert_eq!(plan.batches_in_flight, 6);
        assert_eq!(plan.in_flight_bytes, 6 * batch);
        assert_eq!(plan.budget, 7 * batch);
        assert_eq!(
            lookahead(5, batch, plan.budget),
            5,
            "large batches: as asked"
        );
    }

    #[test]
    fn small_batches_get_a_long_lookahead_within_the_budget() {
        let plan = plan_memory(&[48, 8], 4, 2, 3, None, None).unwrap();
        assert_eq!(plan.batch_bytes, 224);
        assert_eq!(plan.batches_in_flight, 6);
        let ahead = (LOOKAHEAD_BYTES / 224).min(MAX_SMALL_LOOKAHEAD);
        assert_eq!(plan.budget, (ahead + 1) * 224, "room for the look-ahead");
        assert_eq!(lookahead(5, 224, plan.budget), ahead);
        // A budget the user chose bounds it (idle buffers beyond it would be freed).
        assert_eq!(lookahead(5, 224, 21 * 224), 20);
        assert_eq!(lookahead(5, 224, 3 * 224), 5, "never below what was asked");
    }

    #[test]
    fn huge_sizes_are_errors_naming_the_argument() {
        let err = plan_memory(&[4], 1 << 63, 1, 1, None, None).unwrap_err();
        assert_eq!(err.argument(), "batch_size");
        let err = plan_memory(&[4], (1 << 60) + 1, 1, 1, None, None).unwrap_err();
        assert_eq!(err.argument(), "batch_size");
        let err = plan_memory(&[4], 2, 1, usize::MAX - 1, None, None).unwrap_err();
        assert_eq!(err.argument(), "prefetch");
        let err = plan_memory(&[4], 2, usize::MAX, 0, None, None).unwrap_err();
        assert_eq!(err.argument(), "workers");
    }

    #[test]
    fn the_ram_check_names_what_to_lower() {
        let ram = Some(1000);
        let err = plan_memory(&[100], 20, 1, 0, None, ram).unwrap_err();
        assert_eq!(err.argument(), "batch_size");
        let err = plan_memory(&[100], 4, 4, 0, None, ram).unwrap_err();
        assert_eq!(err.argument(), "workers");
        let err = plan_memory(&[100], 4, 1, 1_000_000, None, ram).unwrap_err();
        assert_eq!(err.argument(), "prefetch");
        assert!(err.is_memory());
        assert!(plan_memory(&[100], 4, 1, 0, None, ram).is_ok());
    }

    #[test]
    fn a_budget_below_one_batch_is_refused() {
        let err = plan_memory(&[10], 4, 1, 0, Some(39), None).unwrap_err();
        assert!(matches!(
            err,
            PipelineError::BudgetTooSmall {
                budget: 39,
                batch_bytes: 40
            }
        ));
        assert_eq!(err.argument(), "memory_budget");
    }
}

//! Read-ahead of decided samples: when a worker claims batch `k`, the samples of batch
//! `k + distance` (already fixed by the epoch's order) are hinted to their source
//! ([`Source::will_need`]), so that a memory-mapped file on a cold page cache is read many
//! samples at once, ahead of the worker, instead of one synchronous fault at a time.
//!
//! The hints are issued from the claiming worker itself: `MADV_WILLNEED` only queues the
//! reads (it never waits for them), and a helper thread issuing them measured no faster
//! (within the run-to-run noise of a cold read; docs/guide.md, "Cold page cache"), so
//! there is no thread to start, stop or fork around. `posix_fadvise(WILLNEED)` and
//! `readahead(2)` are the same kernel call (`vfs_fadvise`) that `madvise` makes.
//!
//! `ZEROFEED_READAHEAD=0` in the environment turns the hints off (read when an epoch
//! starts): a diagnostic, for measuring what they buy (`zerofeed bench cold`).

use std::sync::Arc;

use crate::sampler::EpochOrder;
use crate::source::Source;

use super::Pipeline;

/// The most source bytes hinted ahead of the claimed batches. Hinted pages are clean page
/// cache (the kernel may drop them), but hinting much further than the workers read would
/// evict a file larger than RAM before its pages are used.
pub(super) const BUDGET: usize = 64 << 20;

/// How many batches ahead of a claimed one to hint: as many as `budget` bytes hold, no
/// more than the look-ahead `window`, at least one.
pub(super) fn distance(window: usize, batch_bytes: usize, budget: usize) -> usize {
    (budget / batch_bytes.max(1)).min(window).max(1)
}

/// A run's read-ahead: how far ahead of a claimed job to hint, and which source.
pub(super) struct Readahead {
    source: Arc<dyn Source>,
    batch_size: usize,
    /// Jobs (batches) between the one claimed and the one hinted.
    pub(super) distance: usize,
}

impl Readahead {
    /// The read-ahead of `pipeline`'s runs looking `window` batches ahead; `None` when
    /// its source takes no hints.
    pub(super) fn start(pipeline: &Pipeline, window: usize) -> Option<Readahead> {
        if !pipeline.source.takes_hints() || disabled() {
            return None;
        }
        let batch_size = pipeline.config.batch_size;
        let batch_bytes = pipeline
            .fields
            .iter()
            .map(|f| {
                let items = f.input_shape.iter().product::<usize>();
                items.saturating_mul(f.spec.dtype.itemsize())
            })
            .fold(0usize, usize::saturating_add)
            .saturating_mul(batch_size);
        Some(Readahead {
            source: pipeline.source.clone(),
            batch_size,
            distance: distance(window, batch_bytes, BUDGET),
        })
    }

    /// Hints the samples of batch `batch` of `order`, in the order the workers read them.
    pub(super) fn hint(&self, order: EpochOrder, batch: usize) {
        let start = batch.saturating_mul(self.batch_size);
        for sample in order.range(start..start.saturating_add(self.batch_size)) {
            self.source.will_need(sample);
        }
    }
}

/// `ZEROFEED_READAHEAD=0`: hints off.
fn disabled() -> bool {
    std::env::var_os("ZEROFEED_READAHEAD").is_some_and(|v| v == "0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlpack::DLDevice;
    use crate::dtype::DType;
    use crate::pool::{BufferPool, PoolConfig};
    use crate::sampler::Sampler;
    use crate::source::{ArraySource, NpyFile};
    use crate::view::View;

    /// Rows of 1000 bytes (not page-aligned: hints straddle pages) in a real `.npy`.
    fn npy_file(rows: usize, row: usize) -> (std::path::PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..rows * row).map(|i| (i * 7 + i / 991) as u8).collect();
        let mut header =
            format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({rows}, {row}), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&data);
        let path = std::env::temp_dir().join(format!("zf-readahead-{}.npy", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        (path, data)
    }

    fn batches(source: Arc<dyn Source>, rows: usize) -> (Vec<Vec<u8>>, bool) {
        let sampler = Sampler::new(rows, true, 3, false, None).unwrap();
        let config = super::super::PipelineConfig {
            batch_size: 8,
            drop_last: false,
            workers: 2,
            prefetch: 1,
        };
        let pool = BufferPool::new(PoolConfig {
            budget: 1 << 20,
            pin: false,
        });
        let pipeline = Pipeline::new(source, &[vec![]], sampler, config, pool).unwrap();
        let hinted = Readahead::start(&pipeline, 3).is_some();
        let mut run = pipeline.start(1, 0).unwrap();
        let mut out = Vec::new();
        while let Some(batch) = run.next_batch() {
            let batch = batch.unwrap();
            out.push(batch.buffers[0].as_slice()[..batch.len * 1000].to_vec());
        }
        (out, hinted)
    }

    #[test]
    fn a_mapped_npy_read_ahead_gives_exactly_the_batches_of_the_same_array_in_ram() {
        let (rows, row) = (203, 1000);
        let (path, data) = npy_file(rows, row);
        let view = View::from_npy(NpyFile::open(&path).unwrap()).unwrap();
        let mapped: Arc<dyn Source> = Arc::new(ArraySource::new(vec![("x".into(), view)]).unwrap());
        let ram = View::from_owned(data, &[rows, row], DType::U8, DLDevice::CPU, true).unwrap();
        let ram: Arc<dyn Source> = Arc::new(ArraySource::new(vec![("x".into(), ram)]).unwrap());
        assert!(mapped.takes_hints() && !ram.takes_hints());
        let (with_hints, hinted) = batches(mapped.clone(), rows);
        let (without, not_hinted) = batches(ram, rows);
        assert!(
            hinted && !not_hinted,
            "only the file-mapped source is read ahead"
        );
        assert_eq!(with_hints.len(), 26);
        assert_eq!(with_hints, without);
        // Hints past the end, or of a file that is gone, do nothing and never fail.
        mapped.will_need(rows);
        mapped.will_need(usize::MAX);
        std::fs::remove_file(&path).unwrap();
        mapped.will_need(0);
    }

    #[test]
    fn distance_is_bounded_by_the_budget_and_the_window_and_is_at_least_one() {
        let batch = 32 * 196_608; // 32 images of 256x256x3 u8: 6 MiB
        assert_eq!(distance(6, batch, BUDGET), 6); // the window binds
        assert_eq!(distance(64, batch, BUDGET), 10); // 64 MiB / 6 MiB
        assert_eq!(distance(6, BUDGET * 2, BUDGET), 1); // a batch over the budget
        assert_eq!(distance(0, batch, BUDGET), 1);
        assert_eq!(distance(8, 0, BUDGET), 8); // no bytes per batch: the window
    }
}

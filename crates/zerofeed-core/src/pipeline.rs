//! The pipeline: worker threads that assemble batches, in order, into pooled buffers.
//!
//! An epoch is a fixed list of batches (from the [`Sampler`]). Workers claim batch numbers
//! in order, but no further ahead of the consumer than `prefetch + workers`, run each
//! sample's fused op chain straight into the batch's buffer, and publish the finished batch.
//! The consumer takes batches strictly in order. Every random choice is keyed by
//! (seed, epoch, sample index), so the bytes do not depend on the number of workers or on
//! timing, and an epoch can restart at any batch.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use thiserror::Error;

use crate::dtype::DType;
use crate::gather::gather;
use crate::host::HostError;
use crate::layout::{Layout, LayoutError};
use crate::ops::{OpSpec, OpsError, Plan, SampleKey};
use crate::pool::{BufferPool, PooledBuffer};
use crate::sampler::{num_batches, EpochOrder, Sampler, SamplerError};

/// What can go wrong building or running a pipeline.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("field {field:?}: {source}")]
    Ops { field: String, source: OpsError },
    #[error("field {field:?}: {source}")]
    Layout { field: String, source: LayoutError },
    #[error("field {field:?} has {found} samples but field {first:?} has {expected}; every field needs the same length (first axis)")]
    LengthMismatch {
        field: String,
        found: usize,
        first: String,
        expected: usize,
    },
    #[error("field {field:?} is 0-dimensional; its first axis must index samples")]
    NoSampleAxis { field: String },
    #[error("{0}")]
    Sampler(#[from] SamplerError),
    #[error("batch buffer: {0}")]
    Memory(#[from] HostError),
    #[error("a worker thread failed: {0}")]
    WorkerPanic(String),
    #[error("workers={0} is not valid; use at least 1 (or None for one per core)")]
    Workers(usize),
    #[error("the loader needs at least one field")]
    NoFields,
}

/// One named array and its per-sample op chain.
pub struct Field {
    pub name: String,
    /// Address of sample 0's first element.
    pub address: usize,
    /// The whole array's layout; axis 0 indexes samples.
    pub layout: Layout,
    pub dtype: DType,
    /// Keeps the array's memory alive while the pipeline (or any batch) may read it.
    pub keep: Arc<dyn Any + Send + Sync>,
    /// The compiled chain; `None` gathers samples as they are.
    plan: Option<Plan>,
    sample_layout: Layout,
}

impl Field {
    /// Validates `ops` against one sample of the array (compiles the fused chain).
    pub fn new(
        name: String,
        address: usize,
        layout: Layout,
        dtype: DType,
        keep: Arc<dyn Any + Send + Sync>,
        ops: &[OpSpec],
    ) -> Result<Field, PipelineError> {
        if layout.ndim() == 0 {
            return Err(PipelineError::NoSampleAxis { field: name });
        }
        let sample_layout = Layout::new(
            layout.shape()[1..].to_vec(),
            layout.strides()[1..].to_vec(),
            layout.itemsize(),
        )
        .map_err(|source| PipelineError::Layout {
            field: name.clone(),
            source,
        })?;
        let plan = if ops.is_empty() {
            None
        } else {
            Some(
                Plan::compile(sample_layout.shape(), dtype, ops).map_err(|source| {
                    PipelineError::Ops {
                        field: name.clone(),
                        source,
                    }
                })?,
            )
        };
        Ok(Field {
            name,
            address,
            layout,
            dtype,
            keep,
            plan,
            sample_layout,
        })
    }

    pub fn len(&self) -> usize {
        self.layout.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one output sample.
    pub fn output_shape(&self) -> &[usize] {
        match &self.plan {
            Some(plan) => plan.output_shape(),
            None => self.sample_layout.shape(),
        }
    }

    pub fn output_dtype(&self) -> DType {
        self.plan.as_ref().map_or(self.dtype, |p| p.output_dtype())
    }

    /// Bytes of one output sample.
    pub fn sample_nbytes(&self) -> usize {
        match &self.plan {
            Some(plan) => plan.output_nbytes(),
            None => self.sample_layout.nbytes(),
        }
    }

    /// Writes sample `index`, processed, into `dst`.
    fn produce(&self, index: usize, key: SampleKey, dst: &mut [u8]) {
        let src =
            (self.address as *const u8).wrapping_offset(index as isize * self.layout.strides()[0]);
        match &self.plan {
            // SAFETY: `index < len` (the sampler only yields valid indices), so `src` is the
            // first element of a sample inside the array that `keep` holds alive, and the
            // sample layout addresses only that sample's bytes; `dst` is a distinct buffer.
            Some(plan) => unsafe { plan.run(src, self.sample_layout.strides(), key, dst) },
            // SAFETY: as above.
            None => unsafe { gather(src, &self.sample_layout, dst) },
        }
    }
}

/// Batch size, workers and look-ahead.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub batch_size: usize,
    pub drop_last: bool,
    pub workers: usize,
    pub prefetch: usize,
}

/// Counters shared by every epoch of a pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub batches: AtomicU64,
    pub samples: AtomicU64,
    pub bytes: AtomicU64,
    /// Nanoseconds workers spent waiting for the consumer to make room.
    pub worker_wait_ns: AtomicU64,
    /// Nanoseconds the consumer spent waiting for a batch.
    pub consumer_wait_ns: AtomicU64,
}

/// A finished batch: one pooled buffer per field (in field order), `len` samples each.
pub struct Batch {
    pub index: usize,
    pub len: usize,
    pub buffers: Vec<PooledBuffer>,
}

/// Fields, order and pool: everything needed to run epochs.
pub struct Pipeline {
    fields: Arc<Vec<Field>>,
    sampler: Sampler,
    config: PipelineConfig,
    pool: Arc<BufferPool>,
    stats: Arc<PipelineStats>,
}

impl Pipeline {
    pub fn new(
        fields: Vec<Field>,
        sampler: Sampler,
        config: PipelineConfig,
        pool: Arc<BufferPool>,
    ) -> Result<Pipeline, PipelineError> {
        let first = fields.first().ok_or(PipelineError::NoFields)?;
        for field in &fields[1..] {
            if field.len() != first.len() {
                return Err(PipelineError::LengthMismatch {
                    field: field.name.clone(),
                    found: field.len(),
                    first: first.name.clone(),
                    expected: first.len(),
                });
            }
        }
        if config.workers == 0 {
            return Err(PipelineError::Workers(0));
        }
        num_batches(
            sampler.samples_per_epoch(),
            config.batch_size,
            config.drop_last,
        )?;
        Ok(Pipeline {
            fields: Arc::new(fields),
            sampler,
            config,
            pool,
            stats: Arc::default(),
        })
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        num_batches(
            self.sampler.samples_per_epoch(),
            self.config.batch_size,
            self.config.drop_last,
        )
        .expect("validated in new")
    }

    /// Bytes of one full batch, all fields together.
    pub fn batch_nbytes(&self) -> usize {
        self.fields
            .iter()
            .map(|f| f.sample_nbytes() * self.config.batch_size)
            .sum()
    }

    /// Starts workers for `epoch`, beginning at batch `first_batch` (to resume).
    pub fn start(&self, epoch: u64, first_batch: usize) -> EpochRun {
        let order = self.sampler.epoch_order(epoch);
        let end = self.num_batches();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_job: first_batch.min(end),
                consumed: first_batch.min(end),
                ready: BTreeMap::new(),
                stop: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let job = Job {
            fields: self.fields.clone(),
            order,
            epoch,
            seed: self.sampler.seed(),
            batch_size: self.config.batch_size,
            window: self.config.prefetch + self.config.workers,
            end,
            pool: self.pool.clone(),
            stats: self.stats.clone(),
            shared: shared.clone(),
        };
        let job = Arc::new(job);
        let threads = (0..self.config.workers)
            .map(|i| {
                let job = job.clone();
                std::thread::Builder::new()
                    .name(format!("zerofeed-worker-{i}"))
                    .spawn(move || job.work())
                    .expect("spawning a worker thread")
            })
            .collect();
        EpochRun {
            shared,
            threads,
            end,
            stats: self.stats.clone(),
        }
    }
}

struct State {
    next_job: usize,
    consumed: usize,
    ready: BTreeMap<usize, Result<Batch, PipelineError>>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Workers wait here for room in the window.
    work: Condvar,
    /// The consumer waits here for its next batch.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock cannot leave the state half-written
        // (every update is a single assignment or insert), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What every worker of one epoch shares.
struct Job {
    fields: Arc<Vec<Field>>,
    order: EpochOrder,
    epoch: u64,
    seed: u64,
    batch_size: usize,
    window: usize,
    end: usize,
    pool: Arc<BufferPool>,
    stats: Arc<PipelineStats>,
    shared: Arc<Shared>,
}

impl Job {
    fn work(&self) {
        loop {
            let claimed = {
                let mut state = self.shared.lock();
                let waited = Instant::now();
                while !state.stop
                    && state.next_job < self.end
                    && state.next_job >= state.consumed + self.window
                {
                    state = self
                        .shared
                        .work
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                }
                self.stats
                    .worker_wait_ns
                    .fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if state.stop || state.next_job >= self.end {
                    return;
                }
                state.next_job += 1;
                state.next_job - 1
            };
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build(claimed)))
                    .unwrap_or_else(|panic| Err(PipelineError::WorkerPanic(panic_message(&panic))));
            let mut state = self.shared.lock();
            state.ready.insert(claimed, result);
            self.shared.done.notify_all();
        }
    }

    fn build(&self, index: usize) -> Result<Batch, PipelineError> {
        let start = index * self.batch_size;
        let samples = self
            .order
            .range(start..start.saturating_add(self.batch_size));
        let mut buffers = Vec::with_capacity(self.fields.len());
        for field in self.fields.iter() {
            let sample_bytes = field.sample_nbytes();
            // Full-size buffers even for a short last batch, so that every buffer is reusable.
            let mut buffer = self.pool.take(sample_bytes * self.batch_size)?;
            let slots = buffer.as_mut_slice().chunks_exact_mut(sample_bytes.max(1));
            for (sample, slot) in samples.clone().zip(slots) {
                let key = SampleKey {
                    seed: self.seed,
                    epoch: self.epoch,
                    index: sample as u64,
                };
                field.produce(sample, key, &mut slot[..sample_bytes]);
            }
            self.stats
                .bytes
                .fetch_add((sample_bytes * samples.len()) as u64, Ordering::Relaxed);
            buffers.push(buffer);
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .samples
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        Ok(Batch {
            index,
            len: samples.len(),
            buffers,
        })
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// One epoch in progress. Dropping it stops and joins its workers.
pub struct EpochRun {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    end: usize,
    stats: Arc<PipelineStats>,
}

impl EpochRun {
    /// The next batch in order, waiting for it; `None` at the end of the epoch.
    pub fn next_batch(&mut self) -> Option<Result<Batch, PipelineError>> {
        let mut state = self.shared.lock();
        if state.consumed >= self.end {
            return None;
        }
        let waited = Instant::now();
        let wanted = state.consumed;
        loop {
            if let Some(batch) = state.ready.remove(&wanted) {
                state.consumed += 1;
                self.shared.work.notify_all();
                self.stats
                    .consumer_wait_ns
                    .fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
                return Some(batch);
            }
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Batches of this epoch handed out so far (counting from 0, including skipped ones).
    pub fn position(&self) -> usize {
        self.shared.lock().consumed
    }

    /// Stops the workers and waits for them (also done on drop).
    pub fn stop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stop = true;
            state.ready.clear();
        }
        self.shared.work.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for EpochRun {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;

    fn pipeline(
        data: &Arc<Vec<u8>>,
        n: usize,
        workers: usize,
        shuffle: bool,
        ops: &[OpSpec],
    ) -> Pipeline {
        let layout = Layout::c_contiguous(&[n, 4, 4, 3], 1).unwrap();
        let field = Field::new(
            "image".into(),
            data.as_ptr() as usize,
            layout,
            DType::U8,
            data.clone(),
            ops,
        )
        .unwrap();
        let sampler = Sampler::new(n, shuffle, 7, false, None).unwrap();
        let config = PipelineConfig {
            batch_size: 4,
            drop_last: false,
            workers,
            prefetch: 2,
        };
        Pipeline::new(
            vec![field],
            sampler,
            config,
            BufferPool::new(PoolConfig {
                budget: 1 << 20,
                pin: false,
            }),
        )
        .unwrap()
    }

    fn collect(run: &mut EpochRun) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(batch) = run.next_batch() {
            let batch = batch.unwrap();
            let sample = batch.buffers[0].len() / 4;
            out.push(batch.buffers[0].as_slice()[..batch.len * sample].to_vec());
        }
        out
    }

    #[test]
    fn unshuffled_batches_are_the_samples_in_order() {
        let data: Arc<Vec<u8>> = Arc::new((0..10 * 48).map(|i| (i % 251) as u8).collect());
        let p = pipeline(&data, 10, 2, false, &[]);
        assert_eq!(p.num_batches(), 3);
        let batches = collect(&mut p.start(0, 0));
        assert_eq!(batches.concat(), data.as_slice());
    }

    #[test]
    fn output_is_identical_for_any_worker_count_and_resumes() {
        let data: Arc<Vec<u8>> = Arc::new((0..37 * 48).map(|i| (i * 7 % 256) as u8).collect());
        let ops = [
            OpSpec::RandomCrop {
                height: 2,
                width: 3,
            },
            OpSpec::RandomFlip { p: 0.5 },
        ];
        let one = collect(&mut pipeline(&data, 37, 1, true, &ops).start(3, 0));
        for workers in [2, 4] {
            assert_eq!(
                collect(&mut pipeline(&data, 37, workers, true, &ops).start(3, 0)),
                one
            );
        }
        let resumed = collect(&mut pipeline(&data, 37, 2, true, &ops).start(3, 5));
        assert_eq!(resumed, one[5..]);
        let other_epoch = collect(&mut pipeline(&data, 37, 2, true, &ops).start(4, 0));
        assert_ne!(other_epoch, one);
    }

    #[test]
    fn dropping_a_run_mid_epoch_joins_workers() {
        let data: Arc<Vec<u8>> = Arc::new(vec![1; 100 * 48]);
        let p = pipeline(&data, 100, 2, true, &[]);
        let mut run = p.start(0, 0);
        run.next_batch().unwrap().unwrap();
        drop(run);
        // The pool got its buffers back (or freed them): none is handed out.
        let s = p.pool().snapshot();
        assert_eq!(s.live_buffers, s.idle_buffers);
    }

    #[test]
    fn mismatched_lengths_are_named() {
        let a: Arc<Vec<u8>> = Arc::new(vec![0; 10]);
        let f = |name: &str, n: usize| {
            Field::new(
                name.into(),
                a.as_ptr() as usize,
                Layout::c_contiguous(&[n], 1).unwrap(),
                DType::U8,
                a.clone(),
                &[],
            )
            .unwrap()
        };
        let sampler = Sampler::new(10, false, 0, false, None).unwrap();
        let config = PipelineConfig {
            batch_size: 2,
            drop_last: false,
            workers: 1,
            prefetch: 1,
        };
        let pool = BufferPool::new(PoolConfig {
            budget: 0,
            pin: false,
        });
        let err = Pipeline::new(vec![f("x", 10), f("y", 9)], sampler, config, pool)
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"y\" has 9 samples"), "{err}");
    }
}

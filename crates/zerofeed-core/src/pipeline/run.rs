//! One epoch in progress: the claim/publish protocol between workers and the consumer.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ops::SampleKey;
use crate::pool::{forked_from, BufferPool, PooledBuffer};
use crate::sampler::{num_batches, EpochOrder};
use crate::source::{Sample, Source};

use super::image::FieldScratch;
use super::readahead::Readahead;
use super::{Batch, Field, Pipeline, PipelineError, PipelineStats};

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
    source: Arc<dyn Source>,
    fields: Arc<Vec<Field>>,
    order: EpochOrder,
    epoch: u64,
    seed: u64,
    keys: Option<Arc<[u64]>>,
    batch_size: usize,
    window: usize,
    end: usize,
    pool: Arc<BufferPool>,
    stats: Arc<PipelineStats>,
    shared: Arc<Shared>,
    readahead: Option<Readahead>,
}

pub(super) fn start(
    pipeline: &Pipeline,
    epoch: u64,
    order: EpochOrder,
    first_batch: usize,
) -> Result<EpochRun, PipelineError> {
    // Validated when the pipeline was built (batch_size >= 1), so this cannot fail.
    let end = num_batches(
        order.len(),
        pipeline.config.batch_size,
        pipeline.config.drop_last,
    )?;
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
    let job = Arc::new(Job {
        source: pipeline.source.clone(),
        fields: pipeline.fields.clone(),
        order,
        epoch,
        seed: pipeline.sampler.seed(),
        keys: pipeline.keys.clone(),
        batch_size: pipeline.config.batch_size,
        window: pipeline
            .config
            .prefetch
            .saturating_add(pipeline.config.workers),
        end,
        pool: pipeline.pool.clone(),
        stats: pipeline.stats.clone(),
        shared: shared.clone(),
        readahead: Readahead::start(pipeline, order, first_batch, end),
    });
    let mut run = EpochRun {
        shared,
        threads: Vec::with_capacity(pipeline.config.workers.min(1024)),
        end,
        stats: pipeline.stats.clone(),
        pid: std::process::id(),
        source: pipeline.source.clone(),
    };
    for i in 0..pipeline.config.workers {
        let job = job.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("zerofeed-worker-{i}"))
            .spawn(move || job.work());
        match spawned {
            Ok(thread) => run.threads.push(thread),
            // Dropping `run` stops and joins the workers already started.
            Err(err) => return Err(PipelineError::Spawn(err.to_string())),
        }
    }
    Ok(run)
}

impl Job {
    fn work(&self) {
        let mut scratch: Vec<FieldScratch> = self
            .fields
            .iter()
            .map(|_| FieldScratch::default())
            .collect();
        loop {
            let claimed = {
                let mut state = self.shared.lock();
                let waited = Instant::now();
                while !state.stop
                    && state.next_job < self.end
                    && state.next_job >= state.consumed.saturating_add(self.window)
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
            if let Some(readahead) = &self.readahead {
                readahead.claimed(claimed);
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.build(claimed, &mut scratch)
            }))
            .unwrap_or_else(|panic| Err(PipelineError::WorkerPanic(panic_message(&panic))));
            let mut state = self.shared.lock();
            state.ready.insert(claimed, result);
            self.shared.done.notify_all();
        }
    }

    fn build(&self, index: usize, scratch: &mut [FieldScratch]) -> Result<Batch, PipelineError> {
        let start = index * self.batch_size;
        let samples = self
            .order
            .range(start..start.saturating_add(self.batch_size));
        let mut buffers = Vec::with_capacity(self.fields.len());
        for field in self.fields.iter() {
            // Full-size buffers even for a short last batch, so that every buffer is reusable.
            buffers.push(self.pool.take(field.sample_nbytes() * self.batch_size)?);
        }
        let skip = self.fields.iter().any(Field::skips_bad_samples);
        for (position, sample) in samples.clone().enumerate() {
            let mut chosen = sample;
            let mut first_failure = None;
            // A bad sample is replaced by the next index that works (wrapping): a function of
            // the index alone, so every worker count and every resume picks the same one.
            loop {
                match self.produce(chosen, position, &mut buffers, scratch) {
                    Ok(()) => break,
                    Err(err) if skip && replaceable(&err) => {
                        self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .skipped_names
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(self.source.sample_name(chosen));
                        let first = first_failure.get_or_insert_with(|| err.to_string());
                        chosen = (chosen + 1) % self.source.len();
                        if chosen == sample {
                            return Err(PipelineError::AllSkipped {
                                label: "the source".to_owned(),
                                len: self.source.len(),
                                first: first.clone(),
                            });
                        }
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        for (field, _) in self.fields.iter().zip(&buffers) {
            self.stats.bytes.fetch_add(
                (field.sample_nbytes() * samples.len()) as u64,
                Ordering::Relaxed,
            );
        }
        // Whether the file changed under these samples is checked once, when the batch is
        // handed out (`poll_batch`): that covers batches built before the change too.
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

    /// Writes every field of sample `sample` into batch slot `position`.
    fn produce(
        &self,
        sample: usize,
        position: usize,
        buffers: &mut [PooledBuffer],
        scratch: &mut [FieldScratch],
    ) -> Result<(), PipelineError> {
        let key = SampleKey {
            seed: self.seed,
            epoch: self.epoch,
            index: Pipeline::op_key(self.keys.as_deref(), sample),
        };
        let name = || self.source.sample_name(sample);
        for (number, ((field, buffer), scratch)) in self
            .fields
            .iter()
            .zip(buffers.iter_mut())
            .zip(scratch.iter_mut())
            .enumerate()
        {
            let bytes = field.sample_nbytes();
            let slot = &mut buffer.as_mut_slice()[position * bytes..][..bytes];
            let failed = |source| PipelineError::Sample {
                label: crate::source::field_label(field.name()),
                source,
            };
            // Bytes read into the worker's buffer are moved out of the scratch for the call,
            // so that the sample can borrow them while the ops use the rest of the scratch.
            let mut encoded = std::mem::take(&mut scratch.encoded);
            let read = field.decode.is_some()
                && self
                    .source
                    .read_sample(sample, number, &mut encoded)
                    .map_err(failed)?;
            let produced = if read {
                field.produce(Sample::Encoded(&encoded), sample, key, slot, scratch, &name)
            } else {
                let data = self
                    .source
                    .sample_in_epoch(self.seed, self.epoch, sample, number)
                    .map_err(failed)?;
                field.produce(data, sample, key, slot, scratch, &name)
            };
            scratch.encoded = encoded;
            produced?;
        }
        Ok(())
    }
}

/// Failures of one sample that `on_error="skip"` replaces: bad bytes, an image the ops
/// cannot fit, a member that cannot be read. A changed file or a worker bug is not one.
fn replaceable(err: &PipelineError) -> bool {
    match err {
        PipelineError::Decode { .. } | PipelineError::Image { .. } => true,
        PipelineError::Sample { .. } => !err.is_source_changed(),
        _ => false,
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// What [`EpochRun::poll_batch`] found.
pub enum Polled {
    /// The next batch (or why it could not be made).
    Ready(Result<Batch, PipelineError>),
    /// Not ready within the timeout; ask again (after checking for signals, say).
    Pending,
    /// The epoch is over.
    Done,
}

/// One epoch in progress. Dropping it stops and joins its workers.
///
/// After `fork()`, the child inherits the run but not its worker threads: there, every call
/// answers [`PipelineError::Forked`] and dropping it leaks the run instead of joining threads
/// that do not exist (or locking a mutex a vanished thread held).
pub struct EpochRun {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    end: usize,
    stats: Arc<PipelineStats>,
    pid: u32,
    source: Arc<dyn Source>,
}

impl EpochRun {
    /// The next batch in order, waiting for it; `None` at the end of the epoch.
    pub fn next_batch(&mut self) -> Option<Result<Batch, PipelineError>> {
        loop {
            match self.poll_batch(Duration::from_secs(3600)) {
                Polled::Ready(batch) => return Some(batch),
                Polled::Done => return None,
                Polled::Pending => continue,
            }
        }
    }

    /// The next batch in order, waiting at most `timeout` for it, so that a caller can
    /// handle signals (Ctrl-C) while the workers are busy or stuck.
    pub fn poll_batch(&mut self, timeout: Duration) -> Polled {
        if forked_from(self.pid) {
            return Polled::Ready(Err(PipelineError::Forked));
        }
        let mut state = self.shared.lock();
        if state.consumed >= self.end {
            return Polled::Done;
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
                drop(state);
                // A batch prepared before its file changed is still refused: after a change
                // every batch handed out fails, so none is mistaken for the new data.
                let batch = batch.and_then(|batch| {
                    self.source
                        .check()
                        .map(|()| batch)
                        .map_err(|source| PipelineError::Sample {
                            label: "the source".to_owned(),
                            source,
                        })
                });
                return Polled::Ready(batch);
            }
            let left = timeout.saturating_sub(waited.elapsed());
            if left.is_zero() {
                self.stats
                    .consumer_wait_ns
                    .fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
                return Polled::Pending;
            }
            state = self
                .shared
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Batches of this epoch handed out so far (counting from 0, including skipped ones).
    pub fn position(&self) -> usize {
        if forked_from(self.pid) {
            return 0;
        }
        self.shared.lock().consumed
    }

    /// Stops the workers and waits for them (also done on drop).
    pub fn stop(&mut self) {
        if forked_from(self.pid) {
            // The threads are the parent's: there is nothing to join, and the state's lock
            // may have been held by one of them at the fork.
            std::mem::forget(std::mem::take(&mut self.threads));
            return;
        }
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

//! Epochs in progress: the claim/publish protocol between workers and the consumer.
//!
//! Jobs are numbered across epochs: the first epoch's batches (from the batch a run starts
//! at), then every batch of the next epoch. Workers claim job numbers in order, never more
//! than the window ahead of the consumer, and may run into the next epoch while the consumer
//! takes this one's last batches, so epochs join without a bubble when the consumer goes on
//! ([`EpochRun::next_epoch`]); those batches are discarded if it does not.
//!
//! Waking threads costs a system call each time on Linux (`futex`), more than a tiny batch
//! takes to build: both sides count who is asleep and wake only those, workers only once
//! the window has room for a run of batches.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ops::SampleKey;
use crate::pool::{forked_from, BufferPool, PooledBuffer};
use crate::sampler::{num_batches, EpochOrder, Sampler};
use crate::source::{Sample, Source};

use super::image::FieldScratch;
use super::memory::lookahead;
use super::readahead::Readahead;
use super::{Batch, Field, Pipeline, PipelineError, PipelineStats, RowKernel};

struct State {
    /// The next job number to claim.
    next_job: usize,
    /// Jobs handed to the consumer so far.
    consumed: usize,
    /// Jobs below this may be claimed: the end of the epoch being consumed, or of the one
    /// after it while it can still be chained.
    limit: usize,
    /// Finished jobs from `consumed` on: slot `i` is job `consumed + i` (never longer than
    /// the window), `None` while it is being built.
    ready: VecDeque<Option<Result<Batch, PipelineError>>>,
    stop: bool,
    /// Workers asleep on `work`.
    idle_workers: usize,
    /// A wake-up was sent that the sleeping workers have not all answered yet: sending
    /// more is a system call each for nothing.
    wake_sent: bool,
    /// Whether the consumer is asleep on `done`.
    consumer_waiting: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Workers wait here for room in the window.
    work: Condvar,
    /// The consumer waits here for its next batch.
    done: Condvar,
    /// Jobs published so far, read without the lock by a consumer spinning before it sleeps.
    published: AtomicUsize,
}

/// How long the consumer spins for a batch being built before it sleeps: a batch of small
/// samples is often a few microseconds away, and a sleep costs the worker a system call to
/// end it (and the consumer a reschedule).
const SPIN: Duration = Duration::from_micros(20);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock cannot leave the state half-written
        // (every update is a single assignment or insert), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The epochs a run's job numbers cover.
struct Legs {
    /// The first epoch, its order, and the batch its first job is.
    epoch: u64,
    order: EpochOrder,
    first_batch: usize,
    /// Jobs of the first epoch (its batches from `first_batch` on).
    first_jobs: usize,
    /// Batches of every later epoch; 0 when epochs cannot chain.
    full: usize,
    sampler: Sampler,
}

/// Where job `job` lands: its epoch, that epoch's order and its batch number in it.
#[derive(Clone, Copy)]
struct Place {
    epoch: u64,
    order: EpochOrder,
    batch: usize,
}

impl Legs {
    /// Hints the samples of job `job` to the source (read-ahead).
    fn hint(&self, readahead: &Readahead, job: usize) {
        let place = self.place(job);
        readahead.hint(place.order, place.batch);
    }

    fn place(&self, job: usize) -> Place {
        if job < self.first_jobs {
            return Place {
                epoch: self.epoch,
                order: self.order,
                batch: self.first_batch + job,
            };
        }
        // Only reached when `full > 0` (the limit keeps workers below `first_jobs`
        // otherwise), and `epoch + 1 + k` fits (checked when chaining was allowed).
        let later = job - self.first_jobs;
        let epoch = self.epoch + 1 + (later / self.full) as u64;
        Place {
            epoch,
            order: self.sampler.epoch_order(epoch),
            batch: later % self.full,
        }
    }
}

/// What every worker of one run shares.
struct Job {
    source: Arc<dyn Source>,
    fields: Arc<Vec<Field>>,
    legs: Legs,
    seed: u64,
    keys: Option<Arc<[u64]>>,
    batch_size: usize,
    window: usize,
    /// Free slots in the window that wake a sleeping worker (1, or half a long window).
    wake_gap: usize,
    /// Batches small enough to get the long look-ahead: one worker at a time keeps ahead of
    /// the consumer, and the others wake only when it falls behind.
    one_awake: bool,
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
    let config = &pipeline.config;
    // Validated when the pipeline was built (batch_size >= 1), so these cannot fail.
    let end = num_batches(order.len(), config.batch_size, config.drop_last)?;
    let full = num_batches(
        pipeline.sampler.samples_per_epoch(),
        config.batch_size,
        config.drop_last,
    )?;
    let first_jobs = end - first_batch.min(end);
    // Chaining needs a next epoch number (epochs stay below 2^63) and batches in it.
    let full = if epoch < (1 << 62) { full } else { 0 };
    let asked = config.prefetch.saturating_add(config.workers);
    // Page-locked buffers count against the memlock limit: those get the window asked for.
    let window = if pipeline.pool.config().pin {
        asked
    } else {
        lookahead(
            asked,
            pipeline.batch_nbytes(),
            pipeline.pool.config().budget,
        )
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            next_job: 0,
            consumed: 0,
            limit: first_jobs.saturating_add(full),
            ready: VecDeque::with_capacity(window),
            stop: false,
            idle_workers: 0,
            wake_sent: false,
            consumer_waiting: false,
        }),
        work: Condvar::new(),
        done: Condvar::new(),
        published: AtomicUsize::new(0),
    });
    let legs = Legs {
        epoch,
        order,
        first_batch: first_batch.min(end),
        first_jobs,
        full,
        sampler: pipeline.sampler.clone(),
    };
    if pipeline.pool.snapshot().allocations == 0 {
        // The first run: every buffer in flight (the window, the consumer's batch and one
        // across an epoch boundary), allocated and faulted in now rather than in epoch 1,
        // by as many threads as there are workers. Faulting them in as the workers filled
        // them was measured too: the first batch came in 0.3 s instead of 1-3 s (this VM's
        // page faults), but the pool then grew by a batch more and its faults landed in
        // later epochs: 20 % fewer images a second over epochs 3-8 of the train recipe.
        let lens: Vec<usize> = pipeline
            .fields
            .iter()
            .map(|f| f.sample_nbytes() * config.batch_size)
            .collect();
        pipeline
            .pool
            .prefill(&lens, window.saturating_add(2), config.workers);
    }
    let readahead = Readahead::start(pipeline, window);
    if let Some(readahead) = &readahead {
        // The first jobs are claimed before any hint for them could be: hint them now.
        for job in 0..readahead.distance.min(first_jobs.saturating_add(full)) {
            legs.hint(readahead, job);
        }
    }
    let job = Arc::new(Job {
        source: pipeline.source.clone(),
        fields: pipeline.fields.clone(),
        legs,
        seed: pipeline.sampler.seed(),
        keys: pipeline.keys.clone(),
        batch_size: config.batch_size,
        window,
        wake_gap: if window > asked { window / 2 } else { 1 },
        one_awake: window > asked,
        pool: pipeline.pool.clone(),
        stats: pipeline.stats.clone(),
        shared: shared.clone(),
        readahead,
    });
    let mut run = EpochRun {
        shared,
        threads: Vec::with_capacity(config.workers.min(1024)),
        job: job.clone(),
        epoch,
        leg_start: 0,
        leg_end: first_jobs,
        leg_base: first_batch.min(end),
        pid: crate::pool::current_pid(),
    };
    for i in 0..config.workers {
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
            let (claimed, limit) = {
                let mut state = self.shared.lock();
                let waited = Instant::now();
                while !state.stop
                    && (state.next_job >= state.limit
                        || state.next_job >= state.consumed.saturating_add(self.window))
                {
                    state.idle_workers += 1;
                    state.wake_sent = false;
                    state = self
                        .shared
                        .work
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                    state.idle_workers -= 1;
                }
                self.stats
                    .worker_wait_ns
                    .fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if state.stop {
                    return;
                }
                state.next_job += 1;
                (state.next_job - 1, state.limit)
            };
            // Everything between the claim and the publication runs under catch_unwind: a
            // claimed job that is never published would leave the consumer waiting for it.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if let Some(readahead) = &self.readahead {
                    // The job `distance` ahead of this one is decided: have its samples read.
                    let ahead = claimed.saturating_add(readahead.distance);
                    if ahead < limit {
                        self.legs.hint(readahead, ahead);
                    }
                }
                self.build(self.legs.place(claimed), &mut scratch)
            }))
            .unwrap_or_else(|panic| Err(PipelineError::WorkerPanic(panic_message(&panic))));
            let mut state = self.shared.lock();
            let wanted = claimed == state.consumed;
            // claimed >= consumed: jobs are handed out in order, and only once built.
            let slot = claimed - state.consumed;
            if state.ready.len() <= slot {
                state.ready.resize_with(slot + 1, || None);
            }
            state.ready[slot] = Some(result);
            self.shared.published.fetch_add(1, Ordering::Release);
            // The consumer only ever waits for the batch after the last one it took.
            if wanted && state.consumer_waiting {
                self.shared.done.notify_one();
            }
        }
    }

    fn build(&self, place: Place, scratch: &mut [FieldScratch]) -> Result<Batch, PipelineError> {
        let start = place.batch * self.batch_size;
        let mut indices = Vec::with_capacity(self.batch_size);
        place
            .order
            .fill_range(start..start.saturating_add(self.batch_size), &mut indices);
        let samples = indices.iter().copied();
        let mut buffers = Vec::with_capacity(self.fields.len());
        for field in self.fields.iter() {
            // Full-size buffers even for a short last batch, so that every buffer is reusable.
            buffers.push(self.pool.take(field.sample_nbytes() * self.batch_size)?);
        }
        let skip = self.fields.iter().any(Field::skips_bad_samples);
        let mut skipped = Vec::new();
        if !skip && self.copy_rows(place.epoch, &indices, &mut buffers)? {
            return Ok(Batch {
                index: place.batch,
                len: samples.len(),
                buffers,
                skipped,
            });
        }
        for (position, sample) in samples.clone().enumerate() {
            let mut chosen = sample;
            let mut first_failure = None;
            // A bad sample is replaced by the next index that works (wrapping): a function of
            // the index alone, so every worker count and every resume picks the same one.
            loop {
                match self.produce(place.epoch, chosen, position, &mut buffers, scratch) {
                    Ok(()) => break,
                    Err(err) if skip && replaceable(&err) => {
                        skipped.push(self.source.sample_name(chosen));
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
        // Whether the file changed under these samples is checked once, when the batch is
        // handed out (`poll_batch`): that covers batches built before the change too.
        Ok(Batch {
            index: place.batch,
            len: samples.len(),
            buffers,
            skipped,
        })
    }

    /// Copies (or converts) the whole batch row by row when every field is packed rows
    /// ([`Source::rows_in_epoch`]) that are copied or cast whole ([`Field::row_kernel`]);
    /// false (nothing written) when one is not.
    fn copy_rows(
        &self,
        epoch: u64,
        indices: &[usize],
        buffers: &mut [PooledBuffer],
    ) -> Result<bool, PipelineError> {
        let mut rows = Vec::with_capacity(self.fields.len());
        for (number, field) in self.fields.iter().enumerate() {
            let (Some(kernel), Some(r)) = (
                field.row_kernel(),
                self.source.rows_in_epoch(self.seed, epoch, number),
            ) else {
                return Ok(false);
            };
            let out = field.sample_nbytes();
            let fits = match kernel {
                RowKernel::Copy => r.row_bytes() == out,
                // A cast keeps the element count: the row's items in, the slot's out.
                RowKernel::Convert(_) => {
                    r.row_bytes() / field.spec.dtype.itemsize() * field.output_dtype().itemsize()
                        == out
                }
            };
            if !fits {
                return Ok(false);
            }
            rows.push((r, kernel));
        }
        for ((field, (rows, kernel)), buffer) in self.fields.iter().zip(rows).zip(buffers) {
            let dst = buffer.as_mut_slice();
            let out = field.sample_nbytes();
            match kernel {
                RowKernel::Copy => rows.copy_into(indices, dst),
                RowKernel::Convert(f) => rows.convert_into(indices, dst, out, f),
            }
            .map_err(|source| PipelineError::Sample {
                label: crate::source::field_label(field.name()),
                source,
            })?;
        }
        Ok(true)
    }

    /// Writes every field of sample `sample` into batch slot `position`.
    fn produce(
        &self,
        epoch: u64,
        sample: usize,
        position: usize,
        buffers: &mut [PooledBuffer],
        scratch: &mut [FieldScratch],
    ) -> Result<(), PipelineError> {
        let key = SampleKey {
            seed: self.seed,
            epoch,
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
                    .sample_in_epoch(self.seed, epoch, sample, number)
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
/// When the epoch is over, [`EpochRun::next_epoch`] goes on with the next one on the same
/// workers, whose first batches may already be built.
///
/// After `fork()`, the child inherits the run but not its worker threads: there, every call
/// answers [`PipelineError::Forked`] and dropping it leaks the run instead of joining threads
/// that do not exist (or locking a mutex a vanished thread held).
pub struct EpochRun {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    job: Arc<Job>,
    /// The epoch being consumed, and its jobs `leg_start..leg_end`.
    epoch: u64,
    leg_start: usize,
    leg_end: usize,
    /// The batch number of job `leg_start` in its epoch (a resumed first epoch's start).
    leg_base: usize,
    pid: u32,
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

    /// The next batch in order, waiting at most `timeout` for it (zero: only if it is
    /// ready), so that a caller can handle signals (Ctrl-C) while the workers are busy or
    /// stuck.
    pub fn poll_batch(&mut self, timeout: Duration) -> Polled {
        if forked_from(self.pid) {
            return Polled::Ready(Err(PipelineError::Forked));
        }
        let mut state = self.shared.lock();
        // After stop() no job is built or published any more: nothing to wait for.
        if state.consumed >= self.leg_end || state.stop {
            return Polled::Done;
        }
        // A batch that is ready costs no clock reading: the wait is only timed when there is one.
        let mut waited: Option<Instant> = None;
        let (mut spun, mut woke) = (false, false);
        loop {
            if let Some(Some(_)) = state.ready.front() {
                let batch = state
                    .ready
                    .pop_front()
                    .flatten()
                    .expect("checked just above");
                state.consumed += 1;
                self.wake_workers(&mut state);
                drop(state);
                if let Some(waited) = waited {
                    self.job
                        .stats
                        .consumer_wait_ns
                        .fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                return Polled::Ready(batch.and_then(|batch| self.hand_out(batch)));
            }
            if waited.is_none() && !self.job.one_awake {
                // Large batches: every worker that sleeps while there is room should build,
                // at once (even for a poll that does not wait).
                woke = true;
                self.wake_starved(&mut state);
            }
            let waited = *waited.get_or_insert_with(Instant::now);
            let left = timeout.saturating_sub(waited.elapsed());
            if left.is_zero() {
                drop(state);
                self.job
                    .stats
                    .consumer_wait_ns
                    .fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
                return Polled::Pending;
            }
            if !spun && state.idle_workers < self.threads.len() {
                // Someone is building: spin briefly, without the lock, for a publication.
                spun = true;
                let seen = self.shared.published.load(Ordering::Acquire);
                drop(state);
                let spin_end = Instant::now() + SPIN.min(left);
                while self.shared.published.load(Ordering::Acquire) == seen
                    && Instant::now() < spin_end
                {
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
                state = self.shared.lock();
                continue;
            }
            if !woke {
                // Small batches, nothing ready after the spin (or nobody building): every
                // worker that sleeps while there is room should build. Not before the spin: a
                // batch that comes within it needs no more workers, and on a machine with as
                // many workers as cores an extra one awake would contend with the spinning
                // consumer.
                woke = true;
                self.wake_starved(&mut state);
            }
            state.consumer_waiting = true;
            state = self
                .shared
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            state.consumer_waiting = false;
        }
    }

    /// Wakes one sleeping worker once the window has room for `wake_gap` jobs (or for every
    /// job left below the limit), so that tiny batches cost few wake-ups. For small batches
    /// (`one_awake`) only when every worker sleeps: when batches take microseconds to build,
    /// one worker keeps ahead of the consumer, and more awake would only contend with it
    /// (and with the consumer, for the cores: a loop over token windows on two cores ran at
    /// 97k batches/s with both awake, 137k this way, 146k with `workers=1`); a consumer that
    /// finds nothing ready wakes the rest ([`EpochRun::wake_starved`]). Large batches keep
    /// every worker building while there is room.
    fn wake_workers(&self, state: &mut State) {
        let some_awake = state.idle_workers < self.threads.len();
        if state.idle_workers == 0 || state.wake_sent || (self.job.one_awake && some_awake) {
            return;
        }
        let room = (state.consumed + self.job.window).saturating_sub(state.next_job);
        let left = state.limit.saturating_sub(state.next_job);
        if room >= self.job.wake_gap.min(left.max(1)) && left > 0 {
            state.wake_sent = true;
            self.shared.work.notify_one();
        }
    }

    /// The consumer is about to wait: every sleeping worker is woken if there is a job to
    /// claim, since the awake ones did not keep up.
    fn wake_starved(&self, state: &mut State) {
        if state.idle_workers > 0
            && state.next_job < state.limit
            && state.next_job < state.consumed + self.job.window
        {
            state.wake_sent = true;
            self.shared.work.notify_all();
        }
    }

    /// Counts a batch handed out (batches prepared ahead and never read are not counted),
    /// after checking that its file did not change: a batch
    /// prepared before the change is refused too, so that none is mistaken for the new data.
    fn hand_out(&self, batch: Batch) -> Result<Batch, PipelineError> {
        self.job
            .source
            .check()
            .map_err(|source| PipelineError::Sample {
                label: "the source".to_owned(),
                source,
            })?;
        let stats = &self.job.stats;
        let bytes: usize = self.job.fields.iter().map(Field::sample_nbytes).sum();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.samples.fetch_add(batch.len as u64, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add((bytes * batch.len) as u64, Ordering::Relaxed);
        if !batch.skipped.is_empty() {
            stats
                .skipped
                .fetch_add(batch.skipped.len() as u64, Ordering::Relaxed);
            let mut names = stats
                .skipped_names
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            names.extend(batch.skipped.iter().cloned());
        }
        Ok(batch)
    }

    /// The epoch being read.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Goes on with the next epoch (its batch 0 on) once this one has been read to the end,
    /// on the same workers; its first batches may be ready already. `false` (and nothing
    /// changes) while batches of this epoch are left, or when there is no next epoch to
    /// chain (an epoch without batches, or epoch numbers running out).
    pub fn next_epoch(&mut self) -> bool {
        if forked_from(self.pid) {
            return false;
        }
        let full = self.job.legs.full;
        let mut state = self.shared.lock();
        if state.consumed < self.leg_end || full == 0 || self.epoch >= (1 << 62) {
            return false;
        }
        self.epoch += 1;
        self.leg_start = self.leg_end;
        self.leg_end += full;
        self.leg_base = 0;
        // Workers may now run into the epoch after this one.
        let old_limit = state.limit;
        state.limit = self.leg_end.saturating_add(full);
        let claimed = state.next_job;
        if state.idle_workers > 0 {
            self.shared.work.notify_all();
        }
        drop(state);
        if let Some(readahead) = &self.job.readahead {
            // Job t is hinted when job t - distance is claimed, if t was below the limit
            // then: those claimed before the limit rose skipped theirs, hint them now.
            let end = claimed
                .saturating_add(readahead.distance)
                .min(old_limit.saturating_add(readahead.distance))
                .min(self.leg_end.saturating_add(full));
            for job in old_limit..end {
                self.job.legs.hint(readahead, job);
            }
        }
        true
    }

    /// Batches of this epoch handed out so far (counting from 0, including skipped ones).
    pub fn position(&self) -> usize {
        if forked_from(self.pid) {
            return 0;
        }
        let consumed = self.shared.lock().consumed;
        self.leg_base + consumed.min(self.leg_end) - self.leg_start
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

//! The pipeline: worker threads that assemble batches, in order, into pooled buffers.
//!
//! An epoch is a fixed sequence of batches (from the [`Sampler`]). Workers claim batch
//! numbers in order, but no further ahead of the consumer than `prefetch + workers`, ask the
//! [`Source`] for each sample, run each field's fused op chain straight into the batch's
//! buffer, and publish the finished batch. The consumer takes batches strictly in order.
//! Every random choice is keyed by (seed, epoch, sample index), so the bytes do not depend
//! on the number of workers or on timing, and an epoch can restart at any batch.
//!
//! [`build`] is the one place where a loader's options become a pipeline: validation,
//! size arithmetic (checked), the memory budget and RAM check, and the pool choice.

mod device;
mod error;
mod image;
mod memory;
mod readahead;
mod run;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::decode::{EntryPointCache, DEFAULT_ENTRY_POINT_BUDGET};
use crate::dtype::DType;
use crate::gather::gather;
use crate::ops::{needs_image_plan, ImagePlan, OpSpec, Plan, SampleKey};
use crate::pool::{BufferPool, PooledBuffer};
use crate::sampler::{num_batches, Sampler, SamplerError, Shard};
use crate::source::{FieldSpec, ImageOptions, OnError, Sample, Source};
use crate::view::{CopyCounter, View, ViewError};
use image::Failure;

pub use device::split_device_ops;
pub use error::PipelineError;
pub use memory::{plan_memory, MemoryPlan};
pub use run::{EpochRun, Polled};

/// One field of the source and its compiled op chain.
pub struct Field {
    spec: FieldSpec,
    /// The compiled chain; `None` gathers samples as they are.
    plan: Option<Plan>,
    /// The chain of an image field (resampling, padding, jitter, or samples of any size);
    /// `plan` is then `None`.
    image: Option<ImagePlan>,
    /// How encoded samples of this field decode (from [`Source::image_options`]).
    decode: Option<ImageOptions>,
    /// Where each file's JPEG scan rows start, learnt in one epoch and used in the next to
    /// skip the rows above a crop (fast decode only).
    entry_points: Option<EntryPointCache>,
    /// The input shape every sample must have (checked per sample).
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    output_dtype: DType,
    sample_nbytes: usize,
}

impl Field {
    fn new(
        spec: &FieldSpec,
        ops: &[OpSpec],
        channels: Option<usize>,
        decode: Option<ImageOptions>,
    ) -> Result<Field, PipelineError> {
        let label = spec.label();
        if spec.shape.is_none() || needs_image_plan(ops) {
            let channels = decode.map(|d| d.mode.channels()).or(channels);
            let mut field = Field::image(spec, ops, channels)?;
            field.decode = decode;
            field.entry_points = decode
                .filter(|d| d.fast_decode)
                .map(|_| EntryPointCache::new(DEFAULT_ENTRY_POINT_BUDGET));
            return Ok(field);
        }
        let Some(shape) = spec.shape.clone() else {
            return Err(PipelineError::VariableShape { label });
        };
        let plan = if ops.is_empty() {
            None
        } else {
            Some(
                Plan::compile(&shape, spec.dtype, ops)
                    .map_err(|source| PipelineError::Ops { label, source })?,
            )
        };
        let (output_shape, output_dtype) = match &plan {
            Some(plan) => (plan.output_shape().to_vec(), plan.output_dtype()),
            None => (shape.clone(), spec.dtype),
        };
        let sample_nbytes = match &plan {
            Some(plan) => plan.output_nbytes(),
            // The shape came from a valid layout, so this product fits.
            None => shape.iter().product::<usize>() * spec.dtype.itemsize(),
        };
        Ok(Field {
            spec: spec.clone(),
            plan,
            image: None,
            decode: None,
            entry_points: None,
            input_shape: shape,
            output_shape,
            output_dtype,
            sample_nbytes,
        })
    }

    /// A field whose chain is an [`ImagePlan`]: `channels` is what the source's images
    /// have when their shape is not fixed (`None`: unknown, so the chain cannot be built).
    fn image(
        spec: &FieldSpec,
        ops: &[OpSpec],
        channels: Option<usize>,
    ) -> Result<Field, PipelineError> {
        let label = spec.label();
        let channels = match spec.shape.as_deref() {
            Some([_, _]) => 1,
            Some([_, _, c]) => *c,
            Some(_) => 0, // refused by compile (not an image)
            None if ops.is_empty() => return Err(PipelineError::VariableShape { label }),
            None => channels.ok_or_else(|| PipelineError::VariableShape {
                label: label.clone(),
            })?,
        };
        let plan = ImagePlan::compile(spec.shape.as_deref(), channels, spec.dtype, ops).map_err(
            |source| PipelineError::Ops {
                label: label.clone(),
                source,
            },
        )?;
        Ok(Field {
            spec: spec.clone(),
            plan: None,
            input_shape: spec.shape.clone().unwrap_or_default(),
            output_shape: plan.output_shape().to_vec(),
            output_dtype: plan.output_dtype(),
            sample_nbytes: plan.output_nbytes(),
            image: Some(plan),
            decode: None,
            entry_points: None,
        })
    }

    /// True when samples are copied as they are (no ops, nothing to decode).
    pub fn is_plain(&self) -> bool {
        self.plan.is_none() && self.image.is_none() && self.decode.is_none()
    }

    /// How a packed sample of this field becomes its batch slot when the field is whole
    /// rows (see [`Source::rows_in_epoch`]): copied (no ops) or converted (a lone `Cast`);
    /// `None` when it needs the sample's own plan.
    pub(crate) fn row_kernel(&self) -> Option<RowKernel> {
        if self.image.is_some() || self.decode.is_some() {
            return None;
        }
        match &self.plan {
            None => Some(RowKernel::Copy),
            Some(plan) => plan.row_convert().map(RowKernel::Convert),
        }
    }

    /// True when bad samples of this field are replaced (`on_error="skip"`).
    pub fn skips_bad_samples(&self) -> bool {
        self.decode.is_some_and(|d| d.on_error == OnError::Skip)
    }

    /// The field's image chain, if it has one.
    pub fn image_plan(&self) -> Option<&ImagePlan> {
        self.image.as_ref()
    }

    /// The field's name (empty for a single-array source).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The shape of one output sample.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// The dtype of the output.
    pub fn output_dtype(&self) -> DType {
        self.output_dtype
    }

    /// Bytes of one output sample.
    pub fn sample_nbytes(&self) -> usize {
        self.sample_nbytes
    }

    /// Writes one sample, processed, into `dst` (`sample_nbytes` long).
    fn produce(
        &self,
        sample: Sample<'_>,
        index: usize,
        key: SampleKey,
        dst: &mut [u8],
        scratch: &mut image::FieldScratch,
        name: &dyn Fn() -> String,
    ) -> Result<(), PipelineError> {
        if let Some(plan) = &self.image {
            let done = match (sample, &self.decode) {
                (Sample::Strided(sample), _) => {
                    image::run_strided(plan, sample, key, dst, scratch).map_err(Failure::Ops)
                }
                (Sample::Encoded(bytes), Some(options)) => {
                    let entries = self.entry_points.as_ref();
                    image::run_encoded(plan, bytes, options, entries, key, dst, scratch)
                }
                // Computed position ids are 1-d int64, never an image: a source that hands
                // them to an image chain declared its field wrongly.
                (Sample::Encoded(_) | Sample::Arange(_), _) => {
                    return Err(PipelineError::NeedsDecoder {
                        label: self.spec.label(),
                    })
                }
            };
            return done.map_err(|f| f.named(self.spec.label(), name()));
        }
        let sample = match sample {
            Sample::Strided(sample) => sample,
            Sample::Arange(start) => return self.produce_arange(start, index, key, dst),
            Sample::Encoded(_) => {
                return Err(PipelineError::NeedsDecoder {
                    label: self.spec.label(),
                })
            }
        };
        let layout = sample.layout();
        // Shape and item size both: the plan reads items of the field's dtype, so a sample
        // of smaller items would make it read past the sample (a Source is safe to implement).
        if layout.shape() != self.input_shape.as_slice()
            || layout.itemsize() != self.spec.dtype.itemsize()
        {
            return Err(PipelineError::SampleShape {
                label: self.spec.label(),
                index,
                expected: self.input_shape.clone(),
                found: layout.shape().to_vec(),
                dtype: self.spec.dtype,
                itemsize: layout.itemsize(),
            });
        }
        match &self.plan {
            // SAFETY: `SampleRef` guarantees that its layout addresses only readable bytes
            // of a view borrowed for this call; the plan was compiled for exactly this shape
            // (checked above), and `dst` is a distinct pooled buffer.
            Some(plan) => unsafe { plan.run(sample.ptr(), layout.strides(), key, dst) },
            // SAFETY: as above; `dst` holds exactly the packed sample.
            None => unsafe { gather(sample.ptr(), layout, dst) },
        }
        Ok(())
    }
}

impl Field {
    /// Writes `start, start + 1, ...` (int64, the field's 1-d shape) through the field's
    /// ops: the values are made in a small buffer, then read like any strided sample.
    fn produce_arange(
        &self,
        start: i64,
        index: usize,
        key: SampleKey,
        dst: &mut [u8],
    ) -> Result<(), PipelineError> {
        let n = match self.input_shape.as_slice() {
            [n] if self.spec.dtype == DType::I64 => *n,
            _ => {
                return Err(PipelineError::SampleShape {
                    label: self.spec.label(),
                    index,
                    expected: self.input_shape.clone(),
                    found: vec![0],
                    dtype: self.spec.dtype,
                    itemsize: 8,
                })
            }
        };
        let values: Vec<i64> = (0..n as i64).map(|k| start.saturating_add(k)).collect();
        let layout = crate::layout::Layout::new(vec![n], vec![8], 8)
            .expect("a packed 1-d int64 layout is valid");
        let ptr = values.as_ptr().cast::<u8>();
        match &self.plan {
            // SAFETY: `values` holds the n packed int64 items the plan was compiled for
            // (shape and dtype checked above) and lives until the call returns; `dst` is a
            // distinct pooled buffer.
            Some(plan) => unsafe { plan.run(ptr, layout.strides(), key, dst) },
            // SAFETY: as above; `dst` holds exactly the packed sample.
            None => unsafe { gather(ptr, &layout, dst) },
        }
        Ok(())
    }
}

/// What [`Field::row_kernel`] found.
#[derive(Clone, Copy)]
pub(crate) enum RowKernel {
    /// The output is the sample's bytes.
    Copy,
    /// The output is this conversion of them.
    Convert(crate::ops::ConvertFn),
}

/// Batch size, workers and look-ahead.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Samples per batch (>= 1).
    pub batch_size: usize,
    /// Drop the last partial batch of each epoch.
    pub drop_last: bool,
    /// Worker threads (>= 1).
    pub workers: usize,
    /// Batches prepared ahead of the consumer, beyond one per worker.
    pub prefetch: usize,
}

/// Whether a loader page-locks its batch buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// Page-lock only when batches go to a CUDA device: pinning buys nothing for CPU
    /// consumers, and containers' 8 MiB memlock limit would make it warn everywhere.
    Auto,
    /// Always (falls back to unlocked memory once, reported, when the OS refuses).
    On,
    /// Never.
    Off,
}

impl Pin {
    /// The decision for a loader that feeds `pin_device` (None: the host).
    pub fn resolve(self, pin_device: Option<i64>) -> bool {
        match self {
            Pin::On => true,
            Pin::Off => false,
            Pin::Auto => pin_device.is_some(),
        }
    }
}

/// Everything `zerofeed.Loader` configures, in the engine's terms.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Shuffle every epoch.
    pub shuffle: bool,
    /// The seed of every random choice.
    pub seed: u64,
    /// Drop the last partial batch (and shard evenly).
    pub drop_last: bool,
    /// Worker threads.
    pub workers: usize,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// Whether batch buffers are page-locked.
    pub pin: Pin,
    /// This process's share.
    pub shard: Shard,
    /// Idle bytes the pool may keep; `None`: room for every batch in flight plus one.
    pub memory_budget: Option<usize>,
    /// Register buffers with this CUDA device instead of `mlock` (when `pin`).
    pub pin_device: Option<i64>,
}

/// Counters shared by every epoch of a pipeline, of the batches handed out (a batch
/// prepared ahead counts once the consumer takes it).
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Batches handed out.
    pub batches: AtomicU64,
    /// Samples produced.
    pub samples: AtomicU64,
    /// Output bytes written.
    pub bytes: AtomicU64,
    /// Nanoseconds workers spent waiting for the consumer to make room.
    pub worker_wait_ns: AtomicU64,
    /// Nanoseconds the consumer spent waiting for a batch.
    pub consumer_wait_ns: AtomicU64,
    /// Bad samples replaced by the next good one (`on_error="skip"`).
    pub skipped: AtomicU64,
    /// The files (or tar members) of the replaced samples, each once.
    pub skipped_names: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl PipelineStats {
    /// The names in [`PipelineStats::skipped_names`], sorted.
    pub fn skipped_files(&self) -> Vec<String> {
        let names = self.skipped_names.lock().unwrap_or_else(|e| e.into_inner());
        names.iter().cloned().collect()
    }
}

/// A finished batch: one pooled buffer per field (in field order), `len` samples each.
pub struct Batch {
    /// The batch's number in its epoch.
    pub index: usize,
    /// Samples in it (less than the batch size only for a last partial batch).
    pub len: usize,
    /// One buffer per field, each a full-size batch slot.
    pub buffers: Vec<PooledBuffer>,
    /// The names of the bad samples replaced in it (`on_error="skip"`).
    pub skipped: Vec<String>,
}

/// Source, order and pool: everything needed to run epochs.
pub struct Pipeline {
    source: Arc<dyn Source>,
    fields: Arc<Vec<Field>>,
    sampler: Sampler,
    config: PipelineConfig,
    pool: Arc<BufferPool>,
    stats: Arc<PipelineStats>,
    copies: Arc<CopyCounter>,
    /// The process that built it (see [`PipelineError::Forked`]).
    pid: u32,
    /// The dataset index that keys each sample's random ops, when it is not the sample's
    /// index in this source (a block of a larger dataset, as Ray Data hands out).
    keys: Option<Arc<[u64]>>,
}

/// Turns a loader's options into a running-ready pipeline: checks every argument and every
/// product of sizes, compiles the op chains, applies the memory policy (default budget,
/// budget >= one batch, batches in flight within the available RAM) and picks the pool
/// (plain, `mlock`ed, or CUDA-registered).
pub fn build(
    source: Arc<dyn Source>,
    ops: &[Vec<OpSpec>],
    config: &LoaderConfig,
) -> Result<Pipeline, PipelineError> {
    if config.batch_size == 0 {
        return Err(SamplerError::ZeroBatchSize.into());
    }
    if config.workers == 0 {
        return Err(PipelineError::Workers(0));
    }
    let fields = compile_fields(source.as_ref(), ops)?;
    if config.shuffle {
        source.expect_random_access();
    }
    let sampler = Sampler::new(
        source.len(),
        config.shuffle,
        config.seed,
        config.drop_last,
        Some(config.shard),
    )?;
    let sample_bytes = fields.iter().map(Field::sample_nbytes).collect::<Vec<_>>();
    let plan = plan_memory(
        &sample_bytes,
        config.batch_size,
        config.workers,
        config.prefetch,
        config.memory_budget,
        crate::host::available_memory(),
    )?;
    let pin = config.pin.resolve(config.pin_device);
    let pool = memory::make_pool(&plan, pin, config.pin_device)?;
    let pipeline_config = PipelineConfig {
        batch_size: config.batch_size,
        drop_last: config.drop_last,
        workers: config.workers,
        prefetch: config.prefetch,
    };
    Pipeline::with_fields(source, fields, sampler, pipeline_config, pool)
}

fn compile_fields(source: &dyn Source, ops: &[Vec<OpSpec>]) -> Result<Vec<Field>, PipelineError> {
    let specs = source.fields();
    if ops.len() != specs.len() {
        return Err(PipelineError::OpsCount {
            given: ops.len(),
            fields: specs.len(),
        });
    }
    specs
        .iter()
        .zip(ops)
        .enumerate()
        .map(|(number, (spec, chain))| {
            Field::new(
                spec,
                chain,
                image_channels(source, number),
                source.image_options(number),
            )
        })
        .collect()
}

/// The channels of a variable-size image field: those of its first sample when that is an
/// array (every later sample is checked against them).
fn image_channels(source: &dyn Source, field: usize) -> Option<usize> {
    if source.fields().get(field)?.shape.is_some() || source.is_empty() {
        return None;
    }
    match source.sample(0, field).ok()? {
        Sample::Strided(s) => match *s.layout().shape() {
            [_, _] => Some(1),
            [_, _, c] => Some(c),
            _ => None,
        },
        Sample::Encoded(_) | Sample::Arange(_) => None,
    }
}

impl Pipeline {
    /// A pipeline over `source` with one op chain per field (empty: samples as they are).
    /// Fails with [`PipelineError::SamplerMismatch`] unless the sampler covers exactly the
    /// source's samples, so no sampler can make workers read past a source.
    pub fn new(
        source: Arc<dyn Source>,
        ops: &[Vec<OpSpec>],
        sampler: Sampler,
        config: PipelineConfig,
        pool: Arc<BufferPool>,
    ) -> Result<Pipeline, PipelineError> {
        let fields = compile_fields(source.as_ref(), ops)?;
        Pipeline::with_fields(source, fields, sampler, config, pool)
    }

    fn with_fields(
        source: Arc<dyn Source>,
        fields: Vec<Field>,
        sampler: Sampler,
        config: PipelineConfig,
        pool: Arc<BufferPool>,
    ) -> Result<Pipeline, PipelineError> {
        if sampler.len() != source.len() {
            return Err(PipelineError::SamplerMismatch {
                sampler: sampler.len(),
                source_len: source.len(),
            });
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
            source,
            fields: Arc::new(fields),
            sampler,
            config,
            pool,
            stats: Arc::default(),
            copies: Arc::default(),
            pid: crate::pool::current_pid(),
            keys: None,
        })
    }

    /// Keys sample `i`'s random ops (crop, flip) by `keys[i]` instead of `i`, so that a
    /// pipeline over a slice of a dataset reproduces the ops of a pipeline over the whole
    /// dataset for the same samples. One key per sample of the source.
    pub fn with_op_keys(mut self, keys: Vec<u64>) -> Result<Pipeline, PipelineError> {
        if keys.len() != self.source.len() {
            return Err(PipelineError::KeyCount {
                keys: keys.len(),
                samples: self.source.len(),
            });
        }
        self.keys = Some(keys.into());
        Ok(self)
    }

    /// The key of sample `index`'s random ops (see [`Pipeline::with_op_keys`]).
    pub(crate) fn op_key(keys: Option<&[u64]>, index: usize) -> u64 {
        keys.map_or(index as u64, |keys| keys[index])
    }

    /// The fields, in output order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The source samples come from.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// Batch size, workers, look-ahead.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The order of every epoch.
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Whether batch buffers are page-locked (the loader's resolved `pin`).
    pub fn pinned(&self) -> bool {
        self.pool.config().pin
    }

    /// Where batch buffers come from.
    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// Production counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Copies made by conversions of this pipeline's batches (and views derived from them).
    pub fn copies(&self) -> &Arc<CopyCounter> {
        &self.copies
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

    /// Bytes of one full batch, all fields together (fits: checked by [`build`]).
    pub fn batch_nbytes(&self) -> usize {
        self.fields
            .iter()
            .map(|f| f.sample_nbytes() * self.config.batch_size)
            .sum()
    }

    /// The batch's buffers as views: `(len, *output_shape)` of each field's output dtype,
    /// counting their copies in this pipeline's counter.
    pub fn batch_views(&self, batch: Batch) -> Result<Vec<View>, ViewError> {
        let mut views = Vec::with_capacity(batch.buffers.len());
        for (field, buffer) in self.fields.iter().zip(batch.buffers) {
            let mut shape = Vec::with_capacity(field.output_shape.len() + 1);
            shape.push(batch.len);
            shape.extend_from_slice(&field.output_shape);
            let view = View::from_owned(
                buffer,
                &shape,
                field.output_dtype,
                crate::dlpack::DLDevice::CPU,
                false,
            )?;
            views.push(view.with_copy_counter(self.copies.clone()));
        }
        Ok(views)
    }

    /// Starts workers for `epoch`, beginning at batch `first_batch` (to resume).
    pub fn start(&self, epoch: u64, first_batch: usize) -> Result<EpochRun, PipelineError> {
        if crate::pool::forked_from(self.pid) {
            return Err(PipelineError::Forked);
        }
        run::start(self, epoch, self.sampler.epoch_order(epoch), first_batch)
    }

    /// Starts workers for the rest of `epoch` after its first `consumed` global positions
    /// were read, by a job of any world size (elastic resume): this rank's share of the
    /// remaining positions ([`Sampler::remainder_order`]) in batches of this pipeline's size.
    /// For the world that saved `consumed`, it is the same as [`Pipeline::start`] at the
    /// batch that `consumed` counts.
    pub fn start_at(&self, epoch: u64, consumed: usize) -> Result<EpochRun, PipelineError> {
        if crate::pool::forked_from(self.pid) {
            return Err(PipelineError::Forked);
        }
        run::start(
            self,
            epoch,
            self.sampler.remainder_order(epoch, consumed),
            0,
        )
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod image_tests;

//! [`PipelineError`]: everything that can go wrong building or running a pipeline, each
//! naming the loader argument at fault.

use thiserror::Error;

use crate::cuda::CudaError;
use crate::dtype::DType;
use crate::host::HostError;
use crate::ops::OpsError;
use crate::sampler::SamplerError;
use crate::source::{ArraySourceError, SampleError};
use crate::view::ViewError;

/// What can go wrong building or running a pipeline. [`PipelineError::argument`] names the
/// loader argument at fault, so that bindings never have to decide it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// An op chain does not fit its field.
    #[error("{label}: {source}")]
    Ops {
        /// `field "image"` or `the source`.
        label: String,
        /// What is wrong with the chain.
        source: OpsError,
    },
    /// One op chain per field is needed.
    #[error("{given} op chains for {fields} fields; give one chain (possibly empty) per field")]
    OpsCount {
        /// Chains given.
        given: usize,
        /// Fields in the source.
        fields: usize,
    },
    /// The arrays do not form a source.
    #[error(transparent)]
    Array(#[from] ArraySourceError),
    /// The sampler was built for another number of samples.
    #[error("the sampler covers {sampler} samples but the source has {source_len}; build the sampler for the source's length")]
    SamplerMismatch {
        /// The sampler's length.
        sampler: usize,
        /// The source's length.
        source_len: usize,
    },
    /// A sample could not be read.
    #[error("{label}: {source}")]
    Sample {
        /// The field.
        label: String,
        /// Why.
        source: SampleError,
    },
    /// A source returned a sample of another shape (or item size) than it declared.
    #[error("{label}: the source declared samples of shape {expected:?} and {dtype} items but sample {index} has shape {found:?} and {itemsize}-byte items")]
    SampleShape {
        /// The field.
        label: String,
        /// The sample's index.
        index: usize,
        /// Declared shape.
        expected: Vec<usize>,
        /// The sample's shape.
        found: Vec<usize>,
        /// The declared dtype.
        dtype: DType,
        /// The sample's item size.
        itemsize: usize,
    },
    /// Encoded samples need a decoder, which this field does not have.
    #[error("{label}: the source gives encoded bytes and no decoder is configured for them")]
    NeedsDecoder {
        /// The field.
        label: String,
    },
    /// The ops cannot be split between host and GPU as `normalize_on_device` needs.
    #[error("normalize_on_device=True: {label}: {reason}")]
    DeviceOps {
        /// The field.
        label: String,
        /// Why.
        reason: String,
    },
    /// An encoded sample that does not decode (corrupt, truncated, unsupported, too large).
    #[error("{label}: {name}: {source}")]
    Decode {
        /// The field.
        label: String,
        /// The file or tar member.
        name: String,
        /// What is wrong.
        source: Box<crate::decode::DecodeError>,
    },
    /// Every sample was bad with `on_error="skip"`: there is nothing to replace them with.
    #[error("{label}: every one of the {len} samples failed to decode or fit the ops (on_error=\"skip\"); the first: {first}")]
    AllSkipped {
        /// The field.
        label: String,
        /// Samples in the source.
        len: usize,
        /// The first failure.
        first: String,
    },
    /// An image sample the field's chain could not process (a crop larger than the image).
    #[error("{label}: {name}: {source}")]
    Image {
        /// The field.
        label: String,
        /// The sample (its file or tar member when the source knows it).
        name: String,
        /// What is wrong.
        source: Box<OpsError>,
    },
    /// A field with samples of varying shape needs an op chain that fixes the shape.
    #[error("{label}: samples differ in shape; add an op that gives them one shape")]
    VariableShape {
        /// The field.
        label: String,
    },
    /// Sampler or batching arguments.
    #[error("{0}")]
    Sampler(#[from] SamplerError),
    /// A batch buffer could not be allocated.
    #[error("batch buffer: {0}")]
    Memory(#[from] HostError),
    /// `memory_budget` cannot hold one batch.
    #[error("memory_budget={budget} bytes is smaller than one batch ({batch_bytes} bytes); raise it or lower batch_size")]
    BudgetTooSmall {
        /// The budget given.
        budget: usize,
        /// One batch of every field.
        batch_bytes: usize,
    },
    /// The batches in flight do not fit in RAM.
    #[error("{batches} batches in flight need {needed} bytes but only {available} bytes of RAM are available; lower {argument}")]
    NotEnoughRam {
        /// The argument to lower first.
        argument: &'static str,
        /// Batches in flight (`prefetch + workers + 1`).
        batches: usize,
        /// Bytes they need.
        needed: u128,
        /// Bytes of RAM available.
        available: u64,
    },
    /// A product of sizes does not fit in memory at all.
    #[error("{argument}={value} makes {what} overflow; use a smaller {argument}")]
    Overflow {
        /// The argument at fault.
        argument: &'static str,
        /// Its value.
        value: usize,
        /// What overflowed.
        what: &'static str,
    },
    /// `workers` must be at least 1.
    #[error("workers={0} is not valid; use at least 1 (or None for one per core)")]
    Workers(usize),
    /// The pinned (CUDA-registered) pool could not be set up.
    #[error("{0}")]
    Cuda(#[from] CudaError),
    /// A worker panicked; the batch is lost, the process lives.
    #[error("a worker thread failed: {0}")]
    WorkerPanic(String),
    /// An inherited loader used in a `fork()`ed child, whose worker threads stayed behind.
    #[error("this loader was inherited through fork(): its worker threads live in the parent process; create a new Loader in the child (or use the 'spawn' start method)")]
    Forked,
    /// The pipeline could not start its workers.
    #[error("could not start a worker thread: {0}")]
    Spawn(String),
    /// Per-sample op keys of another count than the source's samples.
    #[error("keys: {keys} op keys for a source of {samples} samples; give one key per sample")]
    KeyCount {
        /// Keys given.
        keys: usize,
        /// Samples of the source.
        samples: usize,
    },
}

impl PipelineError {
    /// The loader argument the error is about.
    pub fn argument(&self) -> &'static str {
        match self {
            PipelineError::Ops { .. } | PipelineError::OpsCount { .. } => "ops",
            PipelineError::Sampler(SamplerError::ZeroBatchSize) => "batch_size",
            PipelineError::Sampler(_) => "shard",
            PipelineError::Memory(_) | PipelineError::BudgetTooSmall { .. } => "memory_budget",
            PipelineError::Cuda(CudaError::PinnedBudget { .. }) => "memory_budget",
            PipelineError::Cuda(_) => "device",
            PipelineError::NotEnoughRam { argument, .. } => argument,
            PipelineError::Overflow { argument, .. } => argument,
            PipelineError::Workers(_) | PipelineError::Spawn(_) => "workers",
            PipelineError::DeviceOps { .. } => "normalize_on_device",
            PipelineError::Forked => "loader",
            PipelineError::KeyCount { .. } => "keys",
            PipelineError::Image { .. } => "ops",
            _ => "source",
        }
    }

    /// True when a memory-mapped file under the source changed (SourceChangedError).
    pub fn is_source_changed(&self) -> bool {
        matches!(
            self,
            PipelineError::Sample {
                source: SampleError::View(ViewError::SourceChanged(_)),
                ..
            }
        )
    }

    /// True for errors about memory (the bindings raise MemoryBudgetError for them).
    pub fn is_memory(&self) -> bool {
        matches!(
            self,
            PipelineError::Memory(_)
                | PipelineError::BudgetTooSmall { .. }
                | PipelineError::NotEnoughRam { .. }
                | PipelineError::Cuda(CudaError::PinnedBudget { .. })
        )
    }
}

//! The [`Source`] trait: where the pipeline gets sample `i` of each field.
//!
//! The pipeline never assumes that samples are rows of one fixed-shape array. It asks a
//! source how many samples it has and what its fields are, then, for the index the sampler
//! chose, one [`Sample`] per field:
//!
//! - [`Sample::Strided`]: host memory in place (a row of an array or `.npy` map, a window
//!   of a token stream at an offset, the target half of an input/target pair). The op chain
//!   reads it where it lies; nothing is staged.
//! - [`Sample::Encoded`]: bytes a decoder turns into pixels in the worker's scratch, whose
//!   size is known only once the header is read (a JPEG file, a tar member).
//! - [`Sample::Arange`]: consecutive integers computed on the fly (a window's position
//!   ids in its document), which no array holds.
//!
//! Arrays ([`super::ArraySource`]) are the first implementation; windows over sequences and
//! encoded images are further implementations of the same trait, not pipeline changes.

use crate::decode::ColorMode;
use crate::dtype::DType;
use crate::view::{SampleRef, ViewError};

use super::rows::Rows;

/// One field of a source: its name, element type and (when fixed) per-sample shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The field's name; empty for a single-array source ("the source").
    pub name: String,
    /// The element type of every sample.
    pub dtype: DType,
    /// The shape of one sample; `None` when samples differ (decoded images).
    pub shape: Option<Vec<usize>>,
}

impl FieldSpec {
    /// How error messages name the field: `field "image"`, or `the source` when unnamed.
    pub fn label(&self) -> String {
        field_label(&self.name)
    }
}

/// `field "image"`, or `the source` for the unnamed field of a single-array source.
pub fn field_label(name: &str) -> String {
    if name.is_empty() {
        "the source".to_owned()
    } else {
        format!("field {name:?}")
    }
}

/// What a source hands the pipeline for one field of one sample.
#[derive(Clone, Copy, Debug)]
pub enum Sample<'a> {
    /// Host memory in place, bounds-checked against the view it belongs to.
    Strided(SampleRef<'a>),
    /// Encoded bytes (JPEG, PNG) for a decoder.
    Encoded(&'a [u8]),
    /// The int64 values `start, start + 1, ...` filling the field's (1-d) shape: computed,
    /// not stored (position ids of a window in its document).
    Arange(i64),
}

/// What to do with a sample whose bytes do not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnError {
    /// Stop with an error naming the file.
    Raise,
    /// Replace it, deterministically, by the next sample that decodes, and count it.
    Skip,
}

/// How the pipeline decodes an [`Sample::Encoded`] field: a source's settings, from
/// [`Source::image_options`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageOptions {
    /// RGB (3 channels) or gray (1).
    pub mode: ColorMode,
    /// Images whose header declares more pixels are refused before decoding.
    pub max_pixels: u64,
    /// Whether region and DCT-scaled decoding may be used (false: exact full decode).
    pub fast_decode: bool,
    /// What a bad sample does.
    pub on_error: OnError,
}

/// A sample that could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// `index` is not below [`Source::len`].
    #[error("sample {index} is out of range for a source of {len} samples")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of samples.
        len: usize,
    },
    /// `field` is not below `fields().len()`.
    #[error("field number {field} does not exist; the source has {fields} fields")]
    NoSuchField {
        /// The field number asked for.
        field: usize,
        /// How many fields there are.
        fields: usize,
    },
    /// The sample's bytes could not be read (an image file that vanished or cannot be
    /// mapped).
    #[error("{name}: cannot read it: {reason}")]
    Read {
        /// The file or member, as [`Source::sample_name`] names it.
        name: String,
        /// What the operating system said.
        reason: String,
    },
    /// The sample's memory could not be addressed.
    #[error(transparent)]
    View(#[from] ViewError),
}

/// Where samples come from. Implementations must be cheap to query from many worker threads
/// at once (`Sync`) and must answer the same sample for the same `(index, field)` every time,
/// which is what makes epochs deterministic and resumable.
pub trait Source: Send + Sync {
    /// The number of samples.
    fn len(&self) -> usize;

    /// True when there is no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields every sample has, in output order.
    fn fields(&self) -> &[FieldSpec];

    /// Field `field` of sample `index`. For fields with a fixed shape, a strided sample's
    /// layout must have exactly that shape (the pipeline checks, and refuses others).
    fn sample(&self, index: usize, field: usize) -> Result<Sample<'_>, SampleError>;

    /// Field `field` of sample `index` in epoch `epoch` of a loader seeded with `seed`: what
    /// the pipeline asks. The default is [`Source::sample`]; sources whose samples move with
    /// the epoch (windows on a grid shifted per epoch) override it. [`Source::len`] and the
    /// fields must not depend on the epoch, since the sampler is built once for them.
    fn sample_in_epoch(
        &self,
        seed: u64,
        epoch: u64,
        index: usize,
        field: usize,
    ) -> Result<Sample<'_>, SampleError> {
        let _ = (seed, epoch);
        self.sample(index, field)
    }

    /// Fails when the data changed under the source since it was opened (a memory-mapped
    /// file truncated or rewritten). The pipeline asks after every batch, so a batch made of
    /// stale or zeroed bytes is never handed out. Cheap: one `fstat` per mapped file.
    fn check(&self) -> Result<(), SampleError> {
        Ok(())
    }

    /// The pipeline will read samples in random order (shuffled, or drawn): sources over
    /// memory-mapped files may turn the kernel's read-ahead off. A hint; the default does
    /// nothing.
    fn expect_random_access(&self) {}

    /// True when [`Source::will_need`] does something (samples live in memory-mapped
    /// files): the pipeline computes which samples to hint only for such sources, so that
    /// sources in RAM pay nothing for read-ahead.
    fn takes_hints(&self) -> bool {
        false
    }

    /// Sample `index` will be read soon (its batch is decided but not yet being built):
    /// sources over memory-mapped files ask the kernel to start reading its bytes now
    /// (`MADV_WILLNEED`), so that a cold page cache is read many samples at a time instead
    /// of one fault at a time. A hint: it must not change any sample, must not fault, and
    /// its errors are ignored. Sources whose samples move with the epoch may hint nothing.
    /// The default does nothing.
    fn will_need(&self, index: usize) {
        let _ = index;
    }

    /// Reads field `field` of sample `index` into `buffer` (replacing its contents) and
    /// returns true, for sources that keep no bytes in place for it: image files are read
    /// per sample, so a folder of a million files costs no memory or map entry per file.
    /// The default (false) means: ask [`Source::sample_in_epoch`]. Only asked for fields
    /// with [`Source::image_options`].
    fn read_sample(
        &self,
        index: usize,
        field: usize,
        buffer: &mut Vec<u8>,
    ) -> Result<bool, SampleError> {
        let _ = (index, field, buffer);
        Ok(false)
    }

    /// How field `field`'s encoded samples are decoded; `None` for fields that are not
    /// encoded images (every field of the default).
    fn image_options(&self, field: usize) -> Option<ImageOptions> {
        let _ = field;
        None
    }

    /// Field `field`'s samples as packed rows of one buffer, when they are (row `i` is
    /// sample `i` in every epoch): the pipeline then copies a plain field (no ops) a batch
    /// at a time. `None` (the default): ask sample by sample.
    fn rows(&self, field: usize) -> Option<Rows<'_>> {
        let _ = field;
        None
    }

    /// [`Source::rows`] for epoch `epoch` of a loader seeded with `seed`: for sources whose
    /// samples move with the epoch ([`Source::sample_in_epoch`]), row `i` is sample `i` of
    /// that epoch. The default: `rows(field)`.
    fn rows_in_epoch(&self, seed: u64, epoch: u64, field: usize) -> Option<Rows<'_>> {
        let _ = (seed, epoch);
        self.rows(field)
    }

    /// How messages name sample `index`: a file path or tar member where there is one.
    fn sample_name(&self, index: usize) -> String {
        format!("sample {index}")
    }

    /// A short description for messages and `repr`, e.g. `array source of 1000 samples`.
    fn describe(&self) -> String {
        format!("source of {} samples", self.len())
    }
}

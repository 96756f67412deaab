//! Fused per-sample kernels: crop, flip, normalize, cast and CHW layout in one pass.
//!
//! A chain of [`OpSpec`]s is compiled once into a [`Plan`] for a field's sample shape
//! and dtype. The plan canonicalizes the chain into a fused form: a crop window and a
//! flip flag (resolved per sample from a [`SampleKey`]), a short list of value stages
//! (usually one: a conversion or a per-channel `x * a_c + b_c`), and the output layout.
//! [`Plan::run`] then reads each source row once and writes the output straight into the
//! caller's buffer (a batch slot), so the cost is one pass over memory.
//!
//! Conventions:
//! - Samples are `(H, W, C)` or `(H, W)`; scalars and vectors (rank 0 and 1) accept value
//!   ops only. Crops and flips act on H and W; `RandomFlip` is horizontal. A rank-2 sample
//!   with a `Normalize` of one value per last-axis entry (more than one) is a `(length, F)`
//!   series window instead: its last axis is the channel axis, and it takes value ops only.
//! - `CenterCrop` puts the window at `round((H - h) / 2)`, `round((W - w) / 2)` with ties
//!   to even, as torchvision does (`int(round(...))` in Python), so validation crops match
//!   torchvision's pixel for pixel; for odd margins this is `// 2` or one more.
//! - `RandomCrop` offsets are uniform over every valid position, like torchvision.
//! - `Normalize`: `out = (x * scale - mean[c]) / std[c]`, computed as `x * a_c + b_c` with
//!   `a_c = scale / std_c`, `b_c = -mean_c / std_c` in float32 (float64 when the output is
//!   float64), then rounded to the output dtype. Expect a few float32 ulps of difference
//!   from NumPy's float64 formula.
//! - `Cast` follows NumPy's `astype`: integer -> integer wraps, float -> integer truncates
//!   toward zero (out-of-range values saturate and NaN becomes 0, where NumPy's result is
//!   undefined), anything -> float rounds to nearest even.
//! - Value ops run in the order given, each rounding as written; casts that cannot change
//!   a value (`uint8 -> float32` before `Normalize`) are folded away.

mod compile;
pub use compile::normalize_coefficients;
mod elem;
mod image;
pub use image::{
    needs_image_plan, rrc_box, shorter_side, Geometry, ImagePlan, ImageRef, ImageScratch,
};
mod jitter;
pub use jitter::{factors as jitter_factors, Factors};
mod kernels;
mod resample;
pub use resample::{Interpolation, ResizeTo};
mod run;
mod simd;
pub(crate) use simd::prefetch;
#[cfg(target_arch = "x86_64")]
mod simd_x86;

use std::fmt;

use thiserror::Error;

use crate::dtype::DType;
#[cfg(test)]
pub(crate) use kernels::convert_fn;
pub(crate) use kernels::ConvertFn;
use kernels::{Affine32Fn, Affine64Fn};
use simd::FastAffine;
pub use simd::SimdLevel;

/// One operation of a per-sample chain, as users write it.
#[derive(Clone, Debug, PartialEq)]
pub enum OpSpec {
    /// A `height x width` window at a uniformly random position.
    RandomCrop {
        /// Window height in pixels (>= 1).
        height: usize,
        /// Window width in pixels (>= 1).
        width: usize,
    },
    /// A `height x width` window in the middle of the sample.
    CenterCrop {
        /// Window height in pixels (>= 1).
        height: usize,
        /// Window width in pixels (>= 1).
        width: usize,
    },
    /// Mirror left-right with probability `p`.
    RandomFlip {
        /// Probability in `[0, 1]`.
        p: f64,
    },
    /// `(x * scale - mean[c]) / std[c]`, written as `dtype` (a float type).
    Normalize {
        /// Per-channel means (length = channels, or 1 for all channels).
        mean: Vec<f64>,
        /// Per-channel standard deviations, finite and non-zero.
        std: Vec<f64>,
        /// Applied to the raw value first. `None` (the default) resolves from the values
        /// Normalize reads ([`default_normalize_scale`]): `1/255` for `uint8` pixels, `1`
        /// for everything else, so that a float series is never divided by 255 unasked.
        scale: Option<f64>,
        /// float32, float16, bfloat16 or float64.
        dtype: DType,
    },
    /// Value conversion like NumPy's `astype(dtype)`.
    Cast {
        /// The target dtype.
        dtype: DType,
    },
    /// `(H, W, C) -> (C, H, W)`.
    ToCHW,
    /// Resample to a size (torchvision v2's `Resize`).
    Resize {
        /// The shorter side, or the exact size.
        size: ResizeTo,
        /// The filter.
        interpolation: Interpolation,
        /// Widen the filter by the downscale factor (PIL / torchvision `antialias=True`).
        antialias: bool,
    },
    /// A random box (torchvision's rule) resampled to `height x width`.
    RandomResizedCrop {
        /// Output height.
        height: usize,
        /// Output width.
        width: usize,
        /// Range of the box's area as a fraction of the image's.
        scale: (f64, f64),
        /// Range of the box's width / height (drawn log-uniformly).
        ratio: (f64, f64),
        /// The filter.
        interpolation: Interpolation,
        /// As for `Resize`.
        antialias: bool,
    },
    /// Random brightness, contrast and saturation (torchvision's definitions).
    ColorJitter {
        /// Factor range `[max(0, 1 - b), 1 + b]`; 0 = off.
        brightness: f64,
        /// As brightness.
        contrast: f64,
        /// As brightness.
        saturation: f64,
    },
    /// Borders of a constant value.
    Pad {
        /// Rows added above.
        top: usize,
        /// Columns added on the left.
        left: usize,
        /// Rows added below.
        bottom: usize,
        /// Columns added on the right.
        right: usize,
        /// The value written (0 to 255).
        fill: f64,
    },
}

impl fmt::Display for OpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpSpec::RandomCrop { height, width } => write!(f, "RandomCrop({height}, {width})"),
            OpSpec::CenterCrop { height, width } => write!(f, "CenterCrop({height}, {width})"),
            OpSpec::RandomFlip { p } => write!(f, "RandomFlip(p={p})"),
            OpSpec::Normalize { dtype, .. } => write!(f, "Normalize(dtype={dtype})"),
            OpSpec::Cast { dtype } => write!(f, "Cast({dtype})"),
            OpSpec::ToCHW => f.write_str("ToCHW"),
            OpSpec::Resize {
                size,
                interpolation,
                antialias,
            } => {
                match size {
                    ResizeTo::Shorter(s) => write!(f, "Resize({s}")?,
                    ResizeTo::Exact { height, width } => write!(f, "Resize(({height}, {width})")?,
                }
                write!(
                    f,
                    ", interpolation='{}', antialias={})",
                    interpolation.name(),
                    if *antialias { "True" } else { "False" }
                )
            }
            OpSpec::RandomResizedCrop {
                height,
                width,
                scale,
                ratio,
                interpolation,
                antialias,
            } => write!(
                f,
                "RandomResizedCrop(({height}, {width}), scale=({}, {}), ratio=({}, {}), interpolation='{}', antialias={})",
                scale.0,
                scale.1,
                ratio.0,
                ratio.1,
                interpolation.name(),
                if *antialias { "True" } else { "False" }
            ),
            OpSpec::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => write!(
                f,
                "ColorJitter(brightness={brightness}, contrast={contrast}, saturation={saturation})"
            ),
            OpSpec::Pad {
                top,
                left,
                bottom,
                right,
                fill,
            } => write!(f, "Pad(({left}, {top}, {right}, {bottom}), fill={fill})"),
        }
    }
}

/// The scale a `Normalize` without one applies to the values it reads: `1/255` takes
/// `uint8` pixels to `[0, 1]` (torchvision's `ToTensor`); any other type is taken as already
/// in its units (a float series, a float image), so nothing is divided by 255 unasked.
pub fn default_normalize_scale(input: DType) -> f64 {
    if input == DType::U8 {
        1.0 / 255.0
    } else {
        1.0
    }
}

/// An op whose own arguments are wrong, whatever the sample: names the argument.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{op}: {reason}")]
pub struct InvalidOp {
    /// The op, e.g. `RandomFlip`.
    pub op: &'static str,
    /// The constructor argument at fault, e.g. `"p"`.
    pub argument: &'static str,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl OpSpec {
    /// The op's name as users write it.
    pub fn name(&self) -> &'static str {
        match self {
            OpSpec::RandomCrop { .. } => "RandomCrop",
            OpSpec::CenterCrop { .. } => "CenterCrop",
            OpSpec::RandomFlip { .. } => "RandomFlip",
            OpSpec::Normalize { .. } => "Normalize",
            OpSpec::Cast { .. } => "Cast",
            OpSpec::ToCHW => "ToCHW",
            OpSpec::Resize { .. } => "Resize",
            OpSpec::RandomResizedCrop { .. } => "RandomResizedCrop",
            OpSpec::ColorJitter { .. } => "ColorJitter",
            OpSpec::Pad { .. } => "Pad",
        }
    }

    /// Checks the op's own arguments (what does not depend on the sample), so that a bad op
    /// fails where it is written, not when a loader compiles it. Normalize's coefficients
    /// are checked here by the same function the kernels use.
    pub fn validate(&self) -> Result<(), InvalidOp> {
        let invalid = |argument: &'static str, reason: String| InvalidOp {
            op: self.name(),
            argument,
            reason,
        };
        match self {
            OpSpec::RandomCrop { height, width } | OpSpec::CenterCrop { height, width } => {
                for (argument, value) in [("height", height), ("width", width)] {
                    if *value == 0 {
                        return Err(invalid(
                            argument,
                            format!("{argument}=0 must be at least 1"),
                        ));
                    }
                }
            }
            OpSpec::RandomFlip { p } => {
                if !(0.0..=1.0).contains(p) {
                    return Err(invalid(
                        "p",
                        format!("p={p} must be a probability in [0, 1]"),
                    ));
                }
            }
            OpSpec::Normalize {
                mean,
                std,
                scale,
                dtype,
            } => {
                for (argument, values) in [("mean", mean), ("std", std)] {
                    if values.is_empty() {
                        return Err(invalid(
                            argument,
                            format!(
                                "{argument} is empty; give one value per channel (or one for all)"
                            ),
                        ));
                    }
                }
                if !dtype.is_float() {
                    return Err(invalid(
                        "dtype",
                        format!("Normalize writes float32, float16, bfloat16 or float64, not {dtype}; add Cast({dtype}) after it"),
                    ));
                }
                let channels = mean.len().max(std.len());
                // An unset scale is checked with both values it can resolve to.
                let scales = scale.map_or([1.0 / 255.0, 1.0], |s| [s, s]);
                scales.iter().try_for_each(|&scale| {
                    compile::normalize_coefficients(self.name(), mean, std, scale, channels, *dtype)
                        .map(|_| ())
                        .map_err(|err| {
                            let argument = match &err {
                                OpsError::ChannelMismatch { what, .. } => what,
                                OpsError::NonFinite { what, .. } if what == "scale" => "scale",
                                OpsError::NonFinite { .. } => "mean",
                                _ => "std",
                            };
                            let text = err.to_string();
                            let reason =
                                text.strip_prefix("Normalize: ").unwrap_or(&text).to_owned();
                            invalid(argument, reason)
                        })
                })?;
            }
            OpSpec::Cast { .. } | OpSpec::ToCHW => {}
            OpSpec::Resize { size, .. } => {
                let zero = match size {
                    ResizeTo::Shorter(s) => *s == 0,
                    ResizeTo::Exact { height, width } => *height == 0 || *width == 0,
                };
                if zero {
                    return Err(invalid("size", "size must be at least 1".into()));
                }
            }
            OpSpec::RandomResizedCrop {
                height,
                width,
                scale,
                ratio,
                ..
            } => {
                if *height == 0 || *width == 0 {
                    return Err(invalid("size", "size must be at least 1".into()));
                }
                if !(scale.0.is_finite()
                    && scale.1.is_finite()
                    && 0.0 < scale.0
                    && scale.0 <= scale.1
                    && scale.1 <= 1.0)
                {
                    return Err(invalid(
                        "scale",
                        format!(
                            "scale=({}, {}) must satisfy 0 < min <= max <= 1",
                            scale.0, scale.1
                        ),
                    ));
                }
                if !(ratio.0.is_finite()
                    && ratio.1.is_finite()
                    && 0.0 < ratio.0
                    && ratio.0 <= ratio.1)
                {
                    return Err(invalid(
                        "ratio",
                        format!(
                            "ratio=({}, {}) must satisfy 0 < min <= max (finite)",
                            ratio.0, ratio.1
                        ),
                    ));
                }
            }
            OpSpec::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => {
                for (argument, v) in [
                    ("brightness", brightness),
                    ("contrast", contrast),
                    ("saturation", saturation),
                ] {
                    if !(v.is_finite() && *v >= 0.0) {
                        return Err(invalid(
                            argument,
                            format!("{argument}={v} must be a finite number >= 0"),
                        ));
                    }
                }
            }
            OpSpec::Pad { fill, .. } => {
                if !(0.0..=255.0).contains(fill) {
                    return Err(invalid(
                        "fill",
                        format!("fill={fill} must be a uint8 value in [0, 255]"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Addresses the randomness of one sample: every random choice of op number `k` is drawn
/// from the counter RNG on `(seed, [sampler::domain::OPS, epoch, index, k])`.
///
/// Use the sample's dataset index for `index`, so the same sample gets the same crop and
/// flip in a given epoch whichever worker, rank or batch position processes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// The loader's seed.
    pub seed: u64,
    /// The epoch number.
    pub epoch: u64,
    /// The sample's index in the dataset.
    pub index: u64,
}

/// Where a plan reads one sample: the crop window in source pixels and the flip flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// First source row.
    pub top: usize,
    /// First source column.
    pub left: usize,
    /// Rows read (the output height).
    pub height: usize,
    /// Columns read (the output width).
    pub width: usize,
    /// Output column `j` comes from source column `left + width - 1 - j`.
    pub flipped: bool,
}

/// A chain that cannot run on the given sample, or a run call with wrong arguments.
/// `op` reads like `ops[1] RandomCrop(300, 300)`.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OpsError {
    /// Samples must have rank 0 to 3.
    #[error("ops work on samples of rank 0 to 3 (scalar, vector, (H, W) or (H, W, C)), got shape {shape:?}; reshape the field first")]
    UnsupportedRank {
        /// The sample's shape.
        shape: Vec<usize>,
    },
    /// bool and complex values cannot be converted or normalized.
    #[error("{op}: cannot convert {dtype} values; value ops work on integer and float types")]
    UnsupportedDType {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// The dtype reaching it.
        dtype: DType,
    },
    /// Crops and flips need an image.
    #[error("{op} needs an image sample (H, W) or (H, W, C), got shape {shape:?}")]
    NotAnImage {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// The sample's shape reaching it.
        shape: Vec<usize>,
    },
    /// Crops and flips on a sample that a per-feature Normalize makes a series window.
    #[error("{op} needs an image, but a Normalize with one value per feature makes the sample of shape {shape:?} a (length, features) series window; crop and flip images only")]
    SeriesNotImage {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// The sample's shape.
        shape: Vec<usize>,
    },
    /// `ToCHW` needs a channel axis.
    #[error("{op} needs a 3-D (H, W, C) sample, got shape {shape:?}; 2-D samples have no channel axis to move")]
    LayoutNeeds3d {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// The sample's shape reaching it.
        shape: Vec<usize>,
    },
    /// Crop sizes start at 1.
    #[error("{op} has a zero size; crop height and width must be at least 1")]
    ZeroCrop {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
    },
    /// The crop does not fit in the (possibly already cropped) sample.
    #[error("{op} needs a sample of at least {need_h}x{need_w}, got {got_h}x{got_w}; crop smaller or resize first")]
    CropTooLarge {
        /// The crop op, as `ops[i] Name(args)`.
        op: String,
        /// Crop height in pixels.
        need_h: usize,
        /// Crop width in pixels.
        need_w: usize,
        /// Height of the sample reaching the crop.
        got_h: usize,
        /// Width of the sample reaching the crop.
        got_w: usize,
    },
    /// Flip probability outside `[0, 1]`.
    #[error("{op}: p must be in [0, 1], got {p}")]
    BadProbability {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// The probability given.
        p: f64,
    },
    /// `mean` or `std` with the wrong number of values.
    #[error("{op}: {what} has {len} values but the sample has {channels} channel(s) or feature(s) on its last axis (1 for 1-d samples and 2-d images); pass {channels} values, or 1 to use for every channel")]
    ChannelMismatch {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// Which argument: `"mean"` or `"std"`.
        what: &'static str,
        /// Values it has.
        len: usize,
        /// Channels of the sample: the last axis of 3-D images and of `(length, F)` series
        /// windows normalized per feature; 1 for 2-D images and 1-D samples.
        channels: usize,
    },
    /// A zero, infinite or NaN standard deviation.
    #[error("{op}: std[{index}] is {value}; every std must be finite and non-zero")]
    BadStd {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// The channel of the bad value.
        index: usize,
        /// The value given.
        value: f64,
    },
    /// A NaN or infinite mean or scale (or a zero scale).
    #[error("{op}: {what} must be finite (and scale non-zero), got {value}")]
    NonFinite {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// Which value: `"scale"` or `"mean[i]"`.
        what: String,
        /// The value given.
        value: f64,
    },
    /// Normalize's coefficients do not fit the precision the kernel computes in.
    #[error("{op}: {what} is {value}, which overflows {precision}; use a std and mean of ordinary magnitude (e.g. std=0.229, not 1e-320)")]
    CoefficientOverflow {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// Which coefficient, e.g. `"scale / std for channel 0"`.
        what: String,
        /// The coefficient, computed in f64.
        value: f64,
        /// The type it must fit: `"float32"` or `"float64"`.
        precision: &'static str,
    },
    /// `Normalize` writes floats only.
    #[error("{op}: Normalize writes float32, float16, bfloat16 or float64, not {dtype}; normalize to float32 and add Cast({dtype}) after it")]
    NormalizeDType {
        /// The op at fault, as `ops[i] Name(args)`.
        op: String,
        /// The output dtype asked for.
        dtype: DType,
    },
    /// `ToCHW` twice.
    #[error("{op}: the sample is already CHW; use ToCHW once")]
    DuplicateToCHW {
        /// The second `ToCHW`, as `ops[i] Name(args)`.
        op: String,
    },
    /// A crop or flip after `ToCHW`.
    #[error(
        "{op} comes after ToCHW; crops and flips act on HWC samples, so move ToCHW to the end"
    )]
    SpatialAfterLayout {
        /// The crop or flip, as `ops[i] Name(args)`.
        op: String,
    },
    /// An image op (Resize, RandomResizedCrop, ColorJitter, Pad) needs a Plan of its own.
    #[error("{op} needs an image chain (ImagePlan), not Plan")]
    NeedsImagePlan {
        /// The op, as `ops[i] Name(args)`.
        op: String,
    },
    /// Image ops read uint8 pixels.
    #[error("{op}: image ops read uint8 pixels, not {dtype}; resize before Normalize / Cast, or cast the source to uint8")]
    ImageDType {
        /// The op, as `ops[i] Name(args)`.
        op: String,
        /// The sample dtype.
        dtype: DType,
    },
    /// Image ops in an order the fused pass cannot run.
    #[error("{op}: {reason}")]
    ImageOrder {
        /// The op, as `ops[i] Name(args)`.
        op: String,
        /// The rule, and what to change.
        reason: String,
    },
    /// The chain leaves the output size depending on the input's.
    #[error("{op}: the chain does not fix the output size of images whose size varies; end it with a crop (CenterCrop / RandomCrop), Resize((h, w)) or RandomResizedCrop")]
    SizeNotFixed {
        /// Where: the first image op.
        op: String,
    },
    /// The pixels handed to `ImagePlan::run` do not cover the box it reads.
    #[error("the image given ({height}x{width} pixels) does not cover the source box {box_:?} (top, left, height, width)")]
    ImageRegion {
        /// The box.
        box_: (usize, usize, usize, usize),
        /// Rows given.
        height: usize,
        /// Columns given.
        width: usize,
    },
    /// `run` got a stride list of the wrong length.
    #[error(
        "run: got {got} strides for a rank-{rank} sample; pass one byte stride per input dimension"
    )]
    StrideCount {
        /// Strides passed.
        got: usize,
        /// Dimensions of the input sample.
        rank: usize,
    },
    /// `run` got an output buffer of the wrong size.
    #[error("run: dst has {got} bytes but the plan writes {expected}; size it with Plan::output_nbytes()")]
    DstSize {
        /// Bytes of `dst`.
        got: usize,
        /// Bytes the plan writes (`Plan::output_nbytes`).
        expected: usize,
    },
    /// The sample described by offset, strides and shape leaves the source buffer.
    #[error("run: the sample spans bytes {lo}..{hi} of a {len}-byte source; check offset, strides and shape")]
    OutOfBounds {
        /// First byte the sample touches, relative to the source start (may be negative).
        lo: i128,
        /// One past the last byte it touches.
        hi: i128,
        /// Bytes of the source.
        len: usize,
    },
}

/// Where the crop window comes from, in chain order.
#[derive(Clone, Debug)]
enum Spatial {
    Crop {
        random: bool,
        height: usize,
        width: usize,
        op_index: u64,
    },
    Flip {
        p: f64,
        op_index: u64,
    },
}

/// Per-channel coefficients laid out for the row loops: `hwc` repeats `(a_0..a_{C-1})`
/// over a whole chunk so the inner loop is `src[i] * a[i] + b[i]` with no modulo;
/// `planar` holds `C` runs of `out_w` copies of `a_c` for the CHW planes.
#[derive(Clone, Debug)]
struct Coefs<T> {
    a_hwc: Vec<T>,
    b_hwc: Vec<T>,
    a_planar: Vec<T>,
    b_planar: Vec<T>,
}

/// One value pass over a row, reading the previous stage's dtype.
#[derive(Clone, Debug)]
enum Stage {
    Convert {
        f: ConvertFn,
        out: DType,
    },
    Affine32 {
        f: Affine32Fn,
        coefs: Coefs<f32>,
        out: DType,
    },
    Affine64 {
        f: Affine64Fn,
        coefs: Coefs<f64>,
        out: DType,
    },
}

impl Stage {
    fn out(&self) -> DType {
        match self {
            Stage::Convert { out, .. }
            | Stage::Affine32 { out, .. }
            | Stage::Affine64 { out, .. } => *out,
        }
    }
}

/// A compiled op chain for one input shape and dtype: immutable, `Send + Sync`; share
/// one (e.g. in an `Arc`) between all worker threads.
#[derive(Clone, Debug)]
pub struct Plan {
    in_shape: Vec<usize>,
    in_dtype: DType,
    /// The input as (H, W, C): rank 0 is (1, 1, 1), rank 1 (1, n, 1), rank 2 (H, W, 1).
    h: usize,
    w: usize,
    c: usize,
    /// A rank-2 `(length, F)` series window read as `(1, length, F)`, for per-feature
    /// coefficients.
    features: bool,
    spatial: Vec<Spatial>,
    /// CHW output with more than one channel (with one channel CHW and HWC coincide).
    planar: bool,
    out_shape: Vec<usize>,
    out_dtype: DType,
    stages: Vec<Stage>,
    /// Elements per HWC chunk: a multiple of C, at least one output row, the length of
    /// the `hwc` coefficient rows.
    chunk: usize,
    /// The explicit-SIMD kernel for `u8 -> f32 / f16 / bf16` affine chains (one stage,
    /// HWC or 3-channel CHW), used when the sample's pixels are contiguous; `stages` stays
    /// the general fallback.
    fast: Option<FastAffine>,
    /// Write the output with non-temporal stores (large outputs only, see `simd`).
    stream: bool,
}

impl Plan {
    /// The sample shape the plan was compiled for.
    pub fn input_shape(&self) -> &[usize] {
        &self.in_shape
    }

    /// The sample dtype the plan was compiled for.
    pub fn input_dtype(&self) -> DType {
        self.in_dtype
    }

    /// Shape of one output sample (C-contiguous).
    pub fn output_shape(&self) -> &[usize] {
        &self.out_shape
    }

    /// Dtype of the output.
    pub fn output_dtype(&self) -> DType {
        self.out_dtype
    }

    /// Bytes of one output sample: the `dst` length [`Plan::run`] expects.
    pub fn output_nbytes(&self) -> usize {
        self.out_shape.iter().product::<usize>() * self.out_dtype.itemsize()
    }

    /// Byte strides of a C-contiguous input sample.
    pub fn input_c_strides(&self) -> Vec<isize> {
        let mut strides = vec![0isize; self.in_shape.len()];
        let mut step = self.in_dtype.itemsize() as isize;
        for (s, &n) in strides.iter_mut().zip(&self.in_shape).rev() {
            *s = step;
            step *= n as isize;
        }
        strides
    }

    /// The instruction set of the plan's fast row kernel, detected at compile time;
    /// [`SimdLevel::Scalar`] when the chain has none (not `u8 -> float32 / float16 /
    /// bfloat16`, CHW with other than 3 channels, or no SIMD).
    pub fn simd_level(&self) -> SimdLevel {
        self.fast
            .as_ref()
            .map_or(SimdLevel::Scalar, FastAffine::level)
    }

    /// The same plan with its fast kernel capped at `level` (`Scalar` turns it off) and,
    /// when `stream` is given, non-temporal stores forced on or off. For tests and
    /// benchmarks comparing paths: every level writes bit-identical output.
    #[doc(hidden)]
    pub fn with_simd(mut self, level: SimdLevel, stream: Option<bool>) -> Plan {
        self.fast = self.fast.and_then(|f| {
            let (a, b) = f.coefs();
            FastAffine::new(
                level.min(f.level()),
                f.channels(),
                a,
                b,
                f.out(),
                f.planar(),
            )
        });
        if let Some(s) = stream {
            self.stream = s;
        }
        self
    }

    /// True when the chain has random ops (the output depends on the [`SampleKey`]).
    pub fn is_random(&self) -> bool {
        self.spatial.iter().any(|s| match s {
            Spatial::Crop { random, .. } => *random,
            Spatial::Flip { p, .. } => *p > 0.0 && *p < 1.0,
        })
    }
}

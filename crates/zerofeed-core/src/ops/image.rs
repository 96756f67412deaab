//! [`ImagePlan`]: chains with resampling, padding or color jitter, on uint8 images of any
//! size (decoded JPEG/PNG, or fixed-shape arrays).
//!
//! A chain is canonicalized per sample into a [`Geometry`]: a box of the source image (the
//! crops and flips before the resampling op, and the resampling op's own box), the size the
//! box is resampled to, and a window of that resampled content (crops, flips and pads after
//! it; a window may reach past the content, where the pad fill is written). One pass then
//! resamples only the window's rows and columns (separable, per-axis weight tables; a flip
//! is the horizontal table reversed), writes the fill, applies the jitter, and hands the
//! finished uint8 image to the value ops (`Normalize`, `Cast`, `ToCHW`: a compiled [`Plan`]).
//!
//! Rules, checked at construction: at most one of `Resize` / `RandomResizedCrop`; `Pad`
//! after it (not before: padding then resampling would blend the fill into the image);
//! `ColorJitter` after the geometric ops and value ops after all of them. The chain must
//! fix the output size when the input size varies.

use super::jitter::{self, Factors};
use super::resample::{resample, Axis, Bufs, Img, Taps};
use super::simd::SimdLevel;
use super::{Interpolation, OpSpec, OpsError, Plan, ResizeTo, SampleKey};
use crate::dtype::DType;
use crate::sampler::{domain, CounterRng};

/// One geometric step, in chain order.
#[derive(Clone, Debug)]
enum Step {
    Crop {
        random: bool,
        height: usize,
        width: usize,
        k: u64,
    },
    Flip {
        p: f64,
        k: u64,
    },
    Resample {
        op: Resampler,
        interp: Interpolation,
        antialias: bool,
        k: u64,
    },
    Pad {
        top: usize,
        left: usize,
        bottom: usize,
        right: usize,
    },
}

#[derive(Clone, Debug)]
enum Resampler {
    Resize(ResizeTo),
    Rrc {
        height: usize,
        width: usize,
        scale: (f64, f64),
        ratio: (f64, f64),
    },
}

/// What one sample reads and writes, in full-resolution source pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// The source image's height and width.
    pub full: (usize, usize),
    /// The box the resampling reads: `(top, left, height, width)`.
    pub source_box: (usize, usize, usize, usize),
    /// The size the box is resampled to (the box's own size when the chain has no resize).
    pub resized: (usize, usize),
    /// The output window in resized coordinates `(top, left)`; may be negative or reach past
    /// `resized` where padding is.
    pub window: (i64, i64),
    /// The output height and width.
    pub out: (usize, usize),
    /// Output column `j` reads resized column `left + out_w - 1 - j`.
    pub flipped: bool,
    interp: Interpolation,
    antialias: bool,
    jitter: Option<Factors>,
}

impl Geometry {
    /// The full-resolution pixels the output reads, `(top, left, height, width)`: the
    /// source box narrowed to the footprint of the output window (a centre crop after a
    /// resize reads only the middle), widened by the filter's reach so that a decoder that
    /// returns just this region gives the same result as a whole image.
    pub fn footprint(&self) -> (usize, usize, usize, usize) {
        let (top, left, bh, bw) = self.source_box;
        let axis = |start: usize, len: usize, resized: usize, window: i64, out: usize| {
            let s = len as f64 / resized.max(1) as f64;
            let support = match self.interp {
                Interpolation::Bicubic => 2.0,
                _ => 1.0,
            };
            let reach = support * s.max(1.0) + 1.0;
            let a = window.clamp(0, resized as i64) as f64;
            let b = (window + out as i64).clamp(0, resized as i64) as f64;
            let lo = ((a * s - reach).floor().max(0.0) as usize).min(len);
            let hi = ((b * s + reach).ceil().max(0.0) as usize).min(len);
            (start + lo, hi.saturating_sub(lo).max(1))
        };
        let (y, h) = axis(top, bh, self.resized.0, self.window.0, self.out.0);
        let (x, w) = axis(left, bw, self.resized.1, self.window.1, self.out.1);
        (y, x, h, w)
    }

    /// The largest DCT downscale (1, 2, 4 or 8) a decoder may apply to the box without
    /// going below the resized size: the largest power of two `<= min(box / resized)`.
    pub fn max_scale_denom(&self) -> u32 {
        let (bh, bw) = (self.source_box.2, self.source_box.3);
        let (rh, rw) = self.resized;
        if self.interp == Interpolation::Nearest || rh == 0 || rw == 0 {
            return 1;
        }
        let ratio = (bh / rh).min(bw / rw);
        [8, 4, 2].into_iter().find(|&d| ratio >= d).unwrap_or(1) as u32
    }
}

/// Color jitter ranges (0 = off for that factor).
#[derive(Clone, Copy, Debug)]
struct JitterSpec {
    brightness: f64,
    contrast: f64,
    saturation: f64,
    k: u64,
}

/// A compiled image chain; immutable and shared by all workers like [`Plan`].
#[derive(Clone, Debug)]
pub struct ImagePlan {
    steps: Vec<Step>,
    jitter: Option<JitterSpec>,
    fill: u8,
    channels: usize,
    rank: usize,
    out_h: usize,
    out_w: usize,
    /// The value ops and layout, compiled for the `(out_h, out_w, channels)` uint8 image.
    tail: Plan,
    /// True when `tail` copies bytes unchanged, so rows go straight into the batch slot.
    tail_is_copy: bool,
    /// `tail`'s C-contiguous input strides, kept so that no sample allocates them.
    tail_strides: Vec<isize>,
    /// The resampler's instruction set, detected once here.
    simd: SimdLevel,
}

/// A worker's reusable memory for [`ImagePlan::run`].
#[derive(Debug, Default)]
pub struct ImageScratch {
    h: Taps,
    v: Taps,
    bufs: Bufs<u8>,
    image: Vec<u8>,
}

/// An image in memory: HWC uint8 rows of `row_bytes`, covering the source's full-resolution
/// pixels from `(origin_top, origin_left)`, each decoded pixel `scale` source pixels wide.
#[derive(Clone, Copy, Debug)]
pub struct ImageRef<'a> {
    /// The pixels.
    pub data: &'a [u8],
    /// Rows in `data`.
    pub height: usize,
    /// Pixels per row in `data`.
    pub width: usize,
    /// Bytes from one row to the next (`>= width * channels`).
    pub row_bytes: usize,
    /// Full-resolution row of `data`'s first row.
    pub origin_top: usize,
    /// Full-resolution column of `data`'s first column.
    pub origin_left: usize,
    /// Source pixels per decoded pixel (1 = full resolution).
    pub scale: u32,
}

fn is_image_op(op: &OpSpec) -> bool {
    matches!(
        op,
        OpSpec::Resize { .. }
            | OpSpec::RandomResizedCrop { .. }
            | OpSpec::ColorJitter { .. }
            | OpSpec::Pad { .. }
    )
}

/// True when `ops` needs an [`ImagePlan`] (a resize, pad or jitter), rather than a [`Plan`].
pub fn needs_image_plan(ops: &[OpSpec]) -> bool {
    ops.iter().any(is_image_op)
}

impl ImagePlan {
    /// Compiles `ops` for uint8 images of `shape` (`[H, W, C]` or `[H, W]`; `None` for images
    /// whose height and width vary, with `channels` channels).
    pub fn compile(
        shape: Option<&[usize]>,
        channels: usize,
        dtype: DType,
        ops: &[OpSpec],
    ) -> Result<ImagePlan, OpsError> {
        let rank = shape.map_or(3, <[usize]>::len);
        let (mut cur_h, mut cur_w) = match shape {
            None => (None, None),
            Some(&[h, w]) | Some(&[h, w, _]) => (Some(h), Some(w)),
            Some(other) => {
                return Err(OpsError::NotAnImage {
                    op: first_image_op(ops),
                    shape: other.to_vec(),
                })
            }
        };
        if !(1..=4).contains(&channels) {
            return Err(OpsError::NotAnImage {
                op: format!("{} (image ops take 1 to 4 channels)", first_image_op(ops)),
                shape: shape.map_or_else(|| vec![0, 0, channels], <[usize]>::to_vec),
            });
        }
        if dtype != DType::U8 {
            return Err(OpsError::ImageDType {
                op: first_image_op(ops),
                dtype,
            });
        }
        let mut steps = Vec::new();
        let mut jitter = None;
        let mut fill = 0u8;
        let mut tail_ops = Vec::new();
        let mut resampled = false;
        for (i, op) in ops.iter().enumerate() {
            let name = || format!("ops[{i}] {op}");
            let k = i as u64;
            let geometric = !matches!(
                op,
                OpSpec::ColorJitter { .. }
                    | OpSpec::Normalize { .. }
                    | OpSpec::Cast { .. }
                    | OpSpec::ToCHW
            );
            if geometric && (jitter.is_some() || !tail_ops.is_empty()) {
                return Err(OpsError::ImageOrder {
                    op: name(),
                    reason: "geometric ops (crops, flips, Resize, RandomResizedCrop, Pad) come before ColorJitter, Normalize, Cast and ToCHW".into(),
                });
            }
            if matches!(op, OpSpec::Resize { .. } | OpSpec::RandomResizedCrop { .. }) {
                if resampled {
                    return Err(one_resample(name()));
                }
                resampled = true;
            }
            match op {
                OpSpec::RandomCrop { height, width } | OpSpec::CenterCrop { height, width } => {
                    if let (Some(h), Some(w)) = (cur_h, cur_w) {
                        if height > &h || width > &w {
                            return Err(OpsError::CropTooLarge {
                                op: name(),
                                need_h: *height,
                                need_w: *width,
                                got_h: h,
                                got_w: w,
                            });
                        }
                    }
                    steps.push(Step::Crop {
                        random: matches!(op, OpSpec::RandomCrop { .. }),
                        height: *height,
                        width: *width,
                        k,
                    });
                    (cur_h, cur_w) = (Some(*height), Some(*width));
                }
                OpSpec::RandomFlip { p } => steps.push(Step::Flip { p: *p, k }),
                OpSpec::Resize {
                    size,
                    interpolation,
                    antialias,
                } => {
                    (cur_h, cur_w) = match (size, cur_h, cur_w) {
                        (ResizeTo::Exact { height, width }, ..) => (Some(*height), Some(*width)),
                        (ResizeTo::Shorter(s), Some(h), Some(w)) => {
                            let (rh, rw) = shorter_side(*s, h, w);
                            (Some(rh), Some(rw))
                        }
                        (ResizeTo::Shorter(_), ..) => (None, None),
                    };
                    steps.push(Step::Resample {
                        op: Resampler::Resize(*size),
                        interp: *interpolation,
                        antialias: *antialias,
                        k,
                    });
                }
                OpSpec::RandomResizedCrop {
                    height,
                    width,
                    scale,
                    ratio,
                    interpolation,
                    antialias,
                } => {
                    (cur_h, cur_w) = (Some(*height), Some(*width));
                    steps.push(Step::Resample {
                        op: Resampler::Rrc {
                            height: *height,
                            width: *width,
                            scale: *scale,
                            ratio: *ratio,
                        },
                        interp: *interpolation,
                        antialias: *antialias,
                        k,
                    });
                }
                OpSpec::Pad {
                    top,
                    left,
                    bottom,
                    right,
                    fill: f,
                } => {
                    if !resampled
                        && ops[i..].iter().any(|o| {
                            matches!(o, OpSpec::Resize { .. } | OpSpec::RandomResizedCrop { .. })
                        })
                    {
                        return Err(OpsError::ImageOrder {
                            op: name(),
                            reason: "Pad comes after Resize / RandomResizedCrop (resampling a padded image would blend the fill into it)".into(),
                        });
                    }
                    fill = f.round().clamp(0.0, 255.0) as u8;
                    cur_h = cur_h.map(|h| h + top + bottom);
                    cur_w = cur_w.map(|w| w + left + right);
                    steps.push(Step::Pad {
                        top: *top,
                        left: *left,
                        bottom: *bottom,
                        right: *right,
                    });
                }
                OpSpec::ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                } => {
                    if jitter.is_some() || !tail_ops.is_empty() {
                        return Err(OpsError::ImageOrder {
                            op: name(),
                            reason: "use one ColorJitter, before Normalize, Cast and ToCHW".into(),
                        });
                    }
                    jitter = Some(JitterSpec {
                        brightness: *brightness,
                        contrast: *contrast,
                        saturation: *saturation,
                        k,
                    });
                }
                OpSpec::Normalize { .. } | OpSpec::Cast { .. } | OpSpec::ToCHW => {
                    tail_ops.push(op.clone())
                }
            }
        }
        let (Some(out_h), Some(out_w)) = (cur_h, cur_w) else {
            return Err(OpsError::SizeNotFixed {
                op: first_image_op(ops),
            });
        };
        let tail_shape: Vec<usize> = if rank == 2 {
            vec![out_h, out_w]
        } else {
            vec![out_h, out_w, channels]
        };
        // The other ops become no-op casts, so errors name the value ops by their position.
        let _ = tail_ops;
        let value_ops: Vec<OpSpec> = ops
            .iter()
            .map(|o| match o {
                OpSpec::Normalize { .. } | OpSpec::Cast { .. } | OpSpec::ToCHW => o.clone(),
                _ => OpSpec::Cast { dtype: DType::U8 },
            })
            .collect();
        let tail = Plan::compile(&tail_shape, DType::U8, &value_ops)?;
        let tail_is_copy = tail.stages.is_empty() && !tail.planar;
        let tail_strides = tail.input_c_strides();
        Ok(ImagePlan {
            steps,
            jitter,
            fill,
            channels,
            rank,
            out_h,
            out_w,
            tail,
            tail_is_copy,
            tail_strides,
            simd: SimdLevel::detect(),
        })
    }

    /// Shape of one output sample.
    pub fn output_shape(&self) -> &[usize] {
        self.tail.output_shape()
    }

    /// Dtype of the output.
    pub fn output_dtype(&self) -> DType {
        self.tail.output_dtype()
    }

    /// Bytes of one output sample.
    pub fn output_nbytes(&self) -> usize {
        self.tail.output_nbytes()
    }

    /// Channels of the images the plan reads.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Rank of the samples (2: `(H, W)`, 3: `(H, W, C)`).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// True when the output depends on the [`SampleKey`].
    pub fn is_random(&self) -> bool {
        self.jitter.is_some()
            || self.steps.iter().any(|s| match s {
                Step::Crop { random, .. } => *random,
                Step::Flip { p, .. } => *p > 0.0 && *p < 1.0,
                Step::Resample { op, .. } => matches!(op, Resampler::Rrc { .. }),
                Step::Pad { .. } => false,
            })
    }

    /// The geometry of sample `key` on an image of `height x width` full-resolution pixels:
    /// a pure function of the plan, the size and the key. Fails when a crop does not fit.
    pub fn geometry(
        &self,
        height: usize,
        width: usize,
        key: SampleKey,
    ) -> Result<Geometry, OpsError> {
        let rng = |k: u64| CounterRng::new(key.seed, &[domain::OPS, key.epoch, key.index, k]);
        // Before the resampling op: a box of the source.
        let (mut top, mut left, mut bh, mut bw, mut flipped) =
            (0usize, 0usize, height, width, false);
        let mut interp = Interpolation::Nearest;
        let mut antialias = false;
        let mut resized: Option<(usize, usize)> = None;
        // After it: the window over the resized content.
        let (mut y0, mut x0, mut wh, mut ww) = (0i64, 0i64, 0usize, 0usize);
        let fits = |k: u64, need: (usize, usize), got: (usize, usize)| {
            if need.0 > got.0 || need.1 > got.1 {
                Err(OpsError::CropTooLarge {
                    op: format!("ops[{k}] crop"),
                    need_h: need.0,
                    need_w: need.1,
                    got_h: got.0,
                    got_w: got.1,
                })
            } else {
                Ok(())
            }
        };
        for step in &self.steps {
            let post = resized.is_some() || matches!(step, Step::Pad { .. });
            if post && resized.is_none() {
                // Pad without a resize: the box itself is the content.
                resized = Some((bh, bw));
                (y0, x0, wh, ww) = (0, 0, bh, bw);
            }
            match *step {
                Step::Crop {
                    random,
                    height: ch,
                    width: cw,
                    k,
                } => {
                    let (h, w) = if post { (wh, ww) } else { (bh, bw) };
                    fits(k, (ch, cw), (h, w))?;
                    let (dy, dx_src) =
                        super::run::crop_offset(random.then(|| rng(k)), (h, w), (ch, cw), flipped);
                    if post {
                        y0 += dy as i64;
                        x0 += dx_src as i64;
                        (wh, ww) = (ch, cw);
                    } else {
                        top += dy;
                        left += dx_src;
                        (bh, bw) = (ch, cw);
                    }
                }
                Step::Flip { p, k } => {
                    flipped ^= p >= 1.0 || (p > 0.0 && rng(k).uniform_f64(0) < p);
                }
                Step::Resample {
                    ref op,
                    interp: ip,
                    antialias: aa,
                    k,
                } => {
                    (interp, antialias) = (ip, aa);
                    let size = match *op {
                        Resampler::Resize(ResizeTo::Exact { height, width }) => (height, width),
                        Resampler::Resize(ResizeTo::Shorter(s)) => shorter_side(s, bh, bw),
                        Resampler::Rrc {
                            height: oh,
                            width: ow,
                            scale,
                            ratio,
                        } => {
                            let (i, j, h, w) = rrc_box(&rng(k), bh, bw, scale, ratio);
                            top += i;
                            left += if flipped { bw - j - w } else { j };
                            (bh, bw) = (h, w);
                            (oh, ow)
                        }
                    };
                    resized = Some(size);
                    (y0, x0, wh, ww) = (0, 0, size.0, size.1);
                }
                Step::Pad {
                    top: t,
                    left: l,
                    bottom: b,
                    right: r,
                } => {
                    y0 -= t as i64;
                    x0 -= if flipped { r } else { l } as i64;
                    wh += t + b;
                    ww += l + r;
                }
            }
        }
        let resized = resized.unwrap_or((bh, bw));
        let out = if self.has_post() { (wh, ww) } else { resized };
        if out != (self.out_h, self.out_w) {
            return Err(OpsError::SizeNotFixed {
                op: format!("an image of {height}x{width} gives {}x{} where the chain was compiled for {}x{}", out.0, out.1, self.out_h, self.out_w),
            });
        }
        let jitter = self
            .jitter
            .map(|j| jitter::factors(&rng(j.k), j.brightness, j.contrast, j.saturation));
        Ok(Geometry {
            full: (height, width),
            source_box: (top, left, bh, bw),
            resized,
            window: if self.has_post() { (y0, x0) } else { (0, 0) },
            out,
            flipped,
            interp,
            antialias,
            jitter,
        })
    }

    fn is_resampling(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Resample { .. }))
    }

    fn has_post(&self) -> bool {
        self.is_resampling() || self.steps.iter().any(|s| matches!(s, Step::Pad { .. }))
    }

    /// Writes the output of `geom` (from [`ImagePlan::geometry`]) for `image` into `dst`
    /// ([`ImagePlan::output_nbytes`] long). `image` must cover the geometry's source box.
    pub fn run(
        &self,
        image: ImageRef<'_>,
        geom: &Geometry,
        key: SampleKey,
        dst: &mut [u8],
        scratch: &mut ImageScratch,
    ) -> Result<(), OpsError> {
        if dst.len() != self.output_nbytes() {
            return Err(OpsError::DstSize {
                got: dst.len(),
                expected: self.output_nbytes(),
            });
        }
        let c = self.channels;
        let d = f64::from(image.scale.max(1));
        let (top, left, bh, bw) = geom.source_box;
        // The image may cover less than the box (a region decode of the output window's
        // footprint): source taps are clamped to the rows and columns it has.
        let covers = image.row_bytes >= image.width * c
            && (image.height.saturating_sub(1)) * image.row_bytes + image.width * c
                <= image.data.len();
        if !covers || image.height == 0 || image.width == 0 {
            return Err(OpsError::ImageRegion {
                box_: geom.source_box,
                height: image.height,
                width: image.width,
            });
        }
        let (rh, rw) = geom.resized;
        let (oh, ow) = geom.out;
        let (y0, x0) = geom.window;
        // Output rows / columns that land on content (the rest is padding).
        let inside = |start: i64, n: usize, len: usize| {
            let a = (-start).clamp(0, n as i64) as usize;
            let b = (len as i64 - start).clamp(a as i64, n as i64) as usize;
            (a, b)
        };
        let (ja, jb) = inside(y0, oh, rh);
        let (ka, kb) = if geom.flipped {
            // Output column j reads content column x0 + ow - 1 - j.
            let (a, b) = inside(x0, ow, rw);
            (ow - b, ow - a)
        } else {
            inside(x0, ow, rw)
        };
        let axis = |start: usize,
                    origin: usize,
                    len: usize,
                    out: usize,
                    first: i64,
                    count: usize,
                    have: usize| {
            let s0 = (start as f64 - origin as f64) / d;
            let s1 = ((start + len) as f64 - origin as f64) / d;
            Axis {
                start: s0,
                len: len as f64 / d,
                out,
                first: first.max(0) as usize,
                count,
                lo: (s0.floor().max(0.0) as usize).min(have - 1),
                hi: (s1.ceil().max(1.0) as usize).min(have),
            }
        };
        let first_col = if geom.flipped {
            x0 + (ow - kb) as i64
        } else {
            x0 + ka as i64
        };
        let ImageScratch {
            h,
            v,
            bufs,
            image: img,
        } = scratch;
        v.build(
            geom.interp,
            geom.antialias,
            axis(
                top,
                image.origin_top,
                bh,
                rh,
                y0 + ja as i64,
                jb - ja,
                image.height,
            ),
            false,
        );
        h.build(
            geom.interp,
            geom.antialias,
            axis(
                left,
                image.origin_left,
                bw,
                rw,
                first_col,
                kb - ka,
                image.width,
            ),
            geom.flipped,
        );
        let direct = self.tail_is_copy && geom.jitter.is_none();
        let out: &mut [u8] = if direct {
            dst
        } else {
            img.clear();
            img.resize(oh * ow * c, 0);
            img
        };
        let row = ow * c;
        if ja > 0 || jb < oh || ka > 0 || kb < ow {
            out.fill(self.fill);
        }
        let src = Img {
            data: image.data,
            row: image.row_bytes,
            c,
        };
        resample(src, h, v, bufs, self.simd, |y, line| {
            out[(ja + y) * row + ka * c..][..line.len()].copy_from_slice(line);
        });
        if let Some(f) = geom.jitter {
            jitter::apply(out, c, f);
        }
        if !direct {
            self.tail
                .run_checked(img, 0, &self.tail_strides, key, dst)?;
        }
        Ok(())
    }
}

/// torchvision v2's size for `Resize(int)`: the shorter side becomes `s`, the longer
/// `int(s * long / short)` (truncated, in float64 like Python).
pub fn shorter_side(s: usize, h: usize, w: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (s as f64 * long as f64 / short.max(1) as f64) as usize;
    if w <= h {
        (new_long, s)
    } else {
        (s, new_long)
    }
}

/// torchvision's `RandomResizedCrop.get_params` with the keyed generator: up to 10 tries
/// of an area fraction uniform in `scale` and a log-uniform aspect ratio (draws `2t`, `2t+1`),
/// sizes rounded half to even like Python's `round`; the offsets are draws 20 and 21. After
/// ten misses, the central crop of the closest allowed ratio. Returns `(top, left, h, w)`.
pub fn rrc_box(
    rng: &CounterRng,
    height: usize,
    width: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for t in 0..10u64 {
        let target = area * (scale.0 + rng.uniform_f64(2 * t) * (scale.1 - scale.0));
        let aspect = (lr0 + rng.uniform_f64(2 * t + 1) * (lr1 - lr0)).exp();
        let w = (target * aspect).sqrt().round_ties_even() as usize;
        let h = (target / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let i = rng.below(20, (height - h + 1) as u64) as usize;
            let j = rng.below(21, (width - w + 1) as u64) as usize;
            return (i, j, h, w);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (h, w) = if in_ratio < lo {
        ((width as f64 / lo).round_ties_even() as usize, width)
    } else if in_ratio > hi {
        (height, (height as f64 * hi).round_ties_even() as usize)
    } else {
        (height, width)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

fn one_resample(op: String) -> OpsError {
    OpsError::ImageOrder {
        op,
        reason: "a chain resamples once: use one Resize or one RandomResizedCrop".into(),
    }
}

fn first_image_op(ops: &[OpSpec]) -> String {
    ops.iter()
        .enumerate()
        .find(|(_, o)| is_image_op(o))
        .or_else(|| ops.iter().enumerate().next())
        .map_or_else(
            || "the empty chain".to_owned(),
            |(i, o)| format!("ops[{i}] {o}"),
        )
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;

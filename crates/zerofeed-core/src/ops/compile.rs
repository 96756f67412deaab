//! `Plan::compile`: validation and canonicalization of an op chain.

use super::elem::lossless;
use super::kernels::{affine32_fn, affine64_fn, convert_fn};
use super::simd::{FastAffine, OutKind, STREAM_MIN_BYTES};
use super::{Coefs, OpSpec, OpsError, Plan, SimdLevel, Spatial, Stage};
use crate::dtype::DType;

/// Below this many output pixels per row, chunks span several rows (when they are
/// contiguous) so short rows do not pay the per-call overhead each.
const MIN_CHUNK_PIXELS: usize = 256;

impl Plan {
    /// Validates `ops` against a sample of `input_shape` / `input_dtype` and compiles
    /// them. Errors name the op (`ops[i] Name(args)`) and what to change.
    pub fn compile(
        input_shape: &[usize],
        input_dtype: DType,
        ops: &[OpSpec],
    ) -> Result<Plan, OpsError> {
        let rank = input_shape.len();
        // A rank-2 sample is an (H, W) image unless a Normalize gives one value per entry
        // of its last axis: then it is a (length, F) series window, normalized per feature.
        let features = rank == 2
            && ops.iter().any(|op| {
                matches!(op, OpSpec::Normalize { mean, std, .. } if mean.len().max(std.len()) > 1)
            });
        let (h, w, c) = match *input_shape {
            [] => (1, 1, 1),
            [n] => (1, n, 1),
            [length, f] if features => (1, length, f),
            [h, w] => (h, w, 1),
            [h, w, c] => (h, w, c),
            _ => {
                return Err(OpsError::UnsupportedRank {
                    shape: input_shape.to_vec(),
                })
            }
        };
        let shape = || input_shape.to_vec();
        let mut spatial = Vec::new();
        let (mut cur_h, mut cur_w) = (h, w);
        let mut chw = false;
        let mut cur = input_dtype;
        // Value stages before coefficient layout is known (needs the output width).
        let mut pending: Vec<PendingStage> = Vec::new();

        for (i, op) in ops.iter().enumerate() {
            let name = || format!("ops[{i}] {op}");
            let is_image = (rank == 2 && !features) || rank == 3;
            if features
                && matches!(
                    op,
                    OpSpec::RandomCrop { .. }
                        | OpSpec::CenterCrop { .. }
                        | OpSpec::RandomFlip { .. }
                )
            {
                return Err(OpsError::SeriesNotImage {
                    op: name(),
                    shape: shape(),
                });
            }
            match op {
                OpSpec::RandomCrop { height, width } | OpSpec::CenterCrop { height, width } => {
                    if !is_image {
                        return Err(OpsError::NotAnImage {
                            op: name(),
                            shape: shape(),
                        });
                    }
                    if chw {
                        return Err(OpsError::SpatialAfterLayout { op: name() });
                    }
                    if *height == 0 || *width == 0 {
                        return Err(OpsError::ZeroCrop { op: name() });
                    }
                    if *height > cur_h || *width > cur_w {
                        return Err(OpsError::CropTooLarge {
                            op: name(),
                            need_h: *height,
                            need_w: *width,
                            got_h: cur_h,
                            got_w: cur_w,
                        });
                    }
                    spatial.push(Spatial::Crop {
                        random: matches!(op, OpSpec::RandomCrop { .. }),
                        height: *height,
                        width: *width,
                        op_index: i as u64,
                    });
                    (cur_h, cur_w) = (*height, *width);
                }
                OpSpec::RandomFlip { p } => {
                    if !is_image {
                        return Err(OpsError::NotAnImage {
                            op: name(),
                            shape: shape(),
                        });
                    }
                    if chw {
                        return Err(OpsError::SpatialAfterLayout { op: name() });
                    }
                    if !(0.0..=1.0).contains(p) {
                        return Err(OpsError::BadProbability { op: name(), p: *p });
                    }
                    spatial.push(Spatial::Flip {
                        p: *p,
                        op_index: i as u64,
                    });
                }
                OpSpec::ToCHW => {
                    if rank != 3 {
                        return Err(OpsError::LayoutNeeds3d {
                            op: name(),
                            shape: shape(),
                        });
                    }
                    if chw {
                        return Err(OpsError::DuplicateToCHW { op: name() });
                    }
                    chw = true;
                }
                OpSpec::Cast { dtype } => {
                    if *dtype != cur {
                        require_numeric(&name, cur)?;
                        require_numeric(&name, *dtype)?;
                        pending.push(PendingStage::Convert {
                            from: cur,
                            to: *dtype,
                        });
                        cur = *dtype;
                    }
                }
                OpSpec::Resize { .. }
                | OpSpec::RandomResizedCrop { .. }
                | OpSpec::ColorJitter { .. }
                | OpSpec::Pad { .. } => return Err(OpsError::NeedsImagePlan { op: name() }),
                OpSpec::Normalize {
                    mean,
                    std,
                    scale,
                    dtype,
                } => {
                    let scale = scale.unwrap_or_else(|| super::default_normalize_scale(cur));
                    let (a, b) = normalize_coefficients(&name(), mean, std, scale, c, *dtype)?;
                    if !dtype.is_float() {
                        return Err(OpsError::NormalizeDType {
                            op: name(),
                            dtype: *dtype,
                        });
                    }
                    require_numeric(&name, cur)?;
                    pending.push(PendingStage::Affine {
                        from: cur,
                        to: *dtype,
                        a,
                        b,
                    });
                    cur = *dtype;
                }
            }
        }

        let planar = chw && c > 1;
        let out_shape = match rank {
            0 => vec![],
            1 => vec![cur_w],
            2 if features => vec![cur_w, c],
            2 => vec![cur_h, cur_w],
            _ if chw => vec![c, cur_h, cur_w],
            _ => vec![cur_h, cur_w, c],
        };
        let chunk = c.max(1) * cur_w.max(MIN_CHUNK_PIXELS);
        let stages: Vec<Stage> = fold(pending)
            .into_iter()
            .map(|p| p.build(c, cur_w, chunk))
            .collect();
        let fast = fast_kernel(input_dtype, &stages, c, planar);
        let out_bytes = out_shape.iter().product::<usize>() * cur.itemsize();
        Ok(Plan {
            in_shape: input_shape.to_vec(),
            in_dtype: input_dtype,
            h,
            w,
            c,
            features,
            spatial,
            planar,
            out_shape,
            out_dtype: cur,
            stages,
            chunk,
            fast,
            stream: out_bytes >= STREAM_MIN_BYTES,
        })
    }
}

/// The explicit-SIMD kernel for a chain that is one `u8 -> f32 / f16 / bf16` value stage:
/// `Normalize` (its f32 coefficients) or a `Cast` (`x * 1 + 0`, exact for every `u8`, then
/// the same rounding to the output type as the cast kernel).
/// Value ops convert through numbers: bool and complex have no conversion kernel.
fn require_numeric(name: &impl Fn() -> String, dtype: DType) -> Result<(), OpsError> {
    match convert_fn(dtype, dtype) {
        Some(_) => Ok(()),
        None => Err(OpsError::UnsupportedDType { op: name(), dtype }),
    }
}

fn fast_kernel(input: DType, stages: &[Stage], c: usize, planar: bool) -> Option<FastAffine> {
    if input != DType::U8 {
        return None;
    }
    let level = SimdLevel::detect();
    match stages {
        [Stage::Affine32 { coefs, out, .. }] if coefs.a_hwc.len() >= c => FastAffine::new(
            level,
            c,
            &coefs.a_hwc[..c],
            &coefs.b_hwc[..c],
            OutKind::of(*out)?,
            planar,
        ),
        [Stage::Convert { out, .. }] => FastAffine::new(
            level,
            c,
            &vec![1.0; c],
            &vec![0.0; c],
            OutKind::of(*out)?,
            planar,
        ),
        _ => None,
    }
}

/// `a_c = scale / std_c`, `b_c = -mean_c / std_c`, one per channel, after validation: the
/// one place (host kernels and the GPU kernel alike) where Normalize's inputs are checked.
///
/// Besides NaN/inf/zero inputs, coefficients that overflow the precision the kernel computes
/// in (float64 for float64 outputs, float32 otherwise) are refused: `std=1e-320` or
/// `mean=1e308, std=1e-300` would otherwise make every output inf or NaN.
pub fn normalize_coefficients(
    op: &str,
    mean: &[f64],
    std: &[f64],
    scale: f64,
    channels: usize,
    out: DType,
) -> Result<(Vec<f64>, Vec<f64>), OpsError> {
    for (what, v) in [("mean", mean), ("std", std)] {
        if v.len() != channels && v.len() != 1 {
            return Err(OpsError::ChannelMismatch {
                op: op.into(),
                what,
                len: v.len(),
                channels,
            });
        }
    }
    if !scale.is_finite() || scale == 0.0 {
        return Err(OpsError::NonFinite {
            op: op.into(),
            what: "scale".into(),
            value: scale,
        });
    }
    if let Some((index, &value)) = mean.iter().enumerate().find(|(_, m)| !m.is_finite()) {
        return Err(OpsError::NonFinite {
            op: op.into(),
            what: format!("mean[{index}]"),
            value,
        });
    }
    if let Some((index, &value)) = std
        .iter()
        .enumerate()
        .find(|(_, s)| !s.is_finite() || **s == 0.0)
    {
        return Err(OpsError::BadStd {
            op: op.into(),
            index,
            value,
        });
    }
    let pick = |v: &[f64], k: usize| if v.len() == 1 { v[0] } else { v[k] };
    let a: Vec<f64> = (0..channels).map(|k| scale / pick(std, k)).collect();
    let b: Vec<f64> = (0..channels)
        .map(|k| -pick(mean, k) / pick(std, k))
        .collect();
    let representable = |v: f64| {
        if out == DType::F64 {
            v.is_finite()
        } else {
            (v as f32).is_finite()
        }
    };
    for (what, values) in [("scale / std", &a), ("-mean / std", &b)] {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !representable(**v))
        {
            return Err(OpsError::CoefficientOverflow {
                op: op.into(),
                what: format!("{what} for channel {index}"),
                value,
                precision: if out == DType::F64 {
                    "float64"
                } else {
                    "float32"
                },
            });
        }
    }
    Ok((a, b))
}

/// A value stage before its coefficient rows are laid out.
enum PendingStage {
    Convert {
        from: DType,
        to: DType,
    },
    Affine {
        from: DType,
        to: DType,
        a: Vec<f64>,
        b: Vec<f64>,
    },
}

/// Drops casts that cannot change what follows, so common chains run as one stage:
/// `A -> B -> C` becomes `A -> C` when `A -> B` is exact and does not switch between
/// integer and float semantics that `B -> C` would see (int -> int wraps where
/// float -> int saturates), and an exact cast before `Normalize` is read through.
fn fold(stages: Vec<PendingStage>) -> Vec<PendingStage> {
    let mut out: Vec<PendingStage> = Vec::with_capacity(stages.len());
    for stage in stages {
        let merged = match (out.last(), &stage) {
            (
                Some(&PendingStage::Convert { from: a, to: b }),
                PendingStage::Convert { to: c, .. },
            ) if lossless(a, b) && (a.is_float() == b.is_float() || c.is_float()) => {
                Some(PendingStage::Convert { from: a, to: *c })
            }
            (
                Some(&PendingStage::Convert { from: a, to: b }),
                PendingStage::Affine {
                    to, a: ca, b: cb, ..
                },
            ) if lossless(a, b) => Some(PendingStage::Affine {
                from: a,
                to: *to,
                a: ca.clone(),
                b: cb.clone(),
            }),
            _ => None,
        };
        match merged {
            Some(m) => {
                out.pop();
                // A cast folded back to its own source type is no stage at all.
                if !matches!(m, PendingStage::Convert { from, to } if from == to) {
                    out.push(m);
                }
            }
            None => out.push(stage),
        }
    }
    out
}

impl PendingStage {
    /// Picks the kernel instantiation and lays out coefficient rows for `out_w` pixels.
    fn build(self, c: usize, out_w: usize, chunk: usize) -> Stage {
        match self {
            PendingStage::Convert { from, to } => Stage::Convert {
                f: convert_fn(from, to).expect("dtypes checked at compile"),
                out: to,
            },
            PendingStage::Affine { from, to, a, b } if to == DType::F64 => Stage::Affine64 {
                f: affine64_fn(from).expect("dtype checked at compile"),
                coefs: layout(&a, &b, c, out_w, chunk, |x| x),
                out: to,
            },
            PendingStage::Affine { from, to, a, b } => Stage::Affine32 {
                f: affine32_fn(from, to).expect("dtypes checked at compile"),
                coefs: layout(&a, &b, c, out_w, chunk, |x| x as f32),
                out: to,
            },
        }
    }
}

fn layout<T: Copy>(
    a: &[f64],
    b: &[f64],
    c: usize,
    out_w: usize,
    chunk: usize,
    cast: fn(f64) -> T,
) -> Coefs<T> {
    let hwc = |v: &[f64]| (0..chunk).map(|i| cast(v[i % c])).collect();
    let planar = |v: &[f64]| {
        v.iter()
            .flat_map(|&x| std::iter::repeat_n(cast(x), out_w))
            .collect()
    };
    if c == 0 {
        return Coefs {
            a_hwc: vec![],
            b_hwc: vec![],
            a_planar: vec![],
            b_planar: vec![],
        };
    }
    Coefs {
        a_hwc: hwc(a),
        b_hwc: hwc(b),
        a_planar: planar(a),
        b_planar: planar(b),
    }
}

//! Every op against a naive reference written here: element by element, in f64,
//! reading the source through (offset, strides) exactly like NumPy indexing would.

use half::{bf16, f16};
use zerofeed_core::ops::{OpSpec, Plan, SampleKey};
use zerofeed_core::DType;

fn encode(values: &[f64], dtype: DType) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        match dtype {
            DType::U8 => out.push(v as u8),
            DType::U16 => out.extend((v as u16).to_ne_bytes()),
            DType::I16 => out.extend((v as i16).to_ne_bytes()),
            DType::I32 => out.extend((v as i32).to_ne_bytes()),
            DType::F16 => out.extend(f16::from_f64(v).to_bits().to_ne_bytes()),
            DType::F32 => out.extend((v as f32).to_ne_bytes()),
            DType::F64 => out.extend(v.to_ne_bytes()),
            other => panic!("test encodes no {other}"),
        }
    }
    out
}

fn decode(bytes: &[u8], dtype: DType) -> Vec<f64> {
    let n = dtype.itemsize();
    bytes
        .chunks_exact(n)
        .map(|b| match dtype {
            DType::U8 => b[0] as f64,
            DType::I8 => b[0] as i8 as f64,
            DType::U16 => u16::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::I16 => i16::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::I32 => i32::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::F16 => f16::from_bits(u16::from_ne_bytes(b.try_into().unwrap())).to_f64(),
            DType::BF16 => bf16::from_bits(u16::from_ne_bytes(b.try_into().unwrap())).to_f64(),
            DType::F32 => f32::from_ne_bytes(b.try_into().unwrap()) as f64,
            DType::F64 => f64::from_ne_bytes(b.try_into().unwrap()),
            other => panic!("test decodes no {other}"),
        })
        .collect()
}

/// NumPy's astype of a value currently held as `from`, for the dtypes these tests
/// produce: integer -> integer wraps, float -> integer truncates (saturating here).
fn astype(v: f64, from: DType, dtype: DType) -> f64 {
    if !from.is_float() && !dtype.is_float() {
        let i = v as i64;
        return match dtype {
            DType::U8 => i as u8 as f64,
            DType::I8 => i as i8 as f64,
            DType::I16 => i as i16 as f64,
            other => panic!("test casts to no {other}"),
        };
    }
    match dtype {
        DType::U8 => v as u8 as f64,
        DType::I8 => v as i8 as f64,
        DType::I16 => v as i16 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        DType::F32 => v as f32 as f64,
        DType::F64 => v,
        other => panic!("test casts to no {other}"),
    }
}

/// A source sample embedded in a larger parent buffer: values, bytes, offset, strides.
struct Sample {
    shape: Vec<usize>,
    dtype: DType,
    bytes: Vec<u8>,
    offset: usize,
    strides: Vec<isize>,
}

impl Sample {
    /// `(h, w, c)` (or `(h, w)` when `c == 0`) with values `f(y, x, k)`. `gap` adds
    /// padding pixels and channels so rows are not contiguous; `mirror` stores columns
    /// right to left (a negative W stride).
    fn new(h: usize, w: usize, c: usize, dtype: DType, gap: bool, mirror: bool) -> Sample {
        let ch = c.max(1);
        let (pw, pc) = if gap { (w + 3, ch + 1) } else { (w, ch) };
        let isz = dtype.itemsize();
        let mut parent = vec![0f64; h * pw * pc];
        for y in 0..h {
            for x in 0..w {
                for k in 0..ch {
                    let col = if mirror { pw - 1 - x } else { x };
                    parent[(y * pw + col) * pc + k] = value(y, x, k, dtype);
                }
            }
        }
        let first_col = if mirror { pw - 1 } else { 0 };
        let sw = (pc * isz) as isize * if mirror { -1 } else { 1 };
        let mut strides = vec![(pw * pc * isz) as isize, sw];
        let mut shape = vec![h, w];
        if c > 0 {
            strides.push(isz as isize);
            shape.push(c);
        }
        Sample {
            shape,
            dtype,
            bytes: encode(&parent, dtype),
            offset: first_col * pc * isz,
            strides,
        }
    }

    fn get(&self, idx: &[usize]) -> f64 {
        let at = idx
            .iter()
            .zip(&self.strides)
            .map(|(&i, &s)| i as isize * s)
            .sum::<isize>();
        let start = (self.offset as isize + at) as usize;
        decode(
            &self.bytes[start..start + self.dtype.itemsize()],
            self.dtype,
        )[0]
    }
}

/// Distinct, channel-dependent values that fit every test dtype (0..=255, with fractions
/// for floats).
fn value(y: usize, x: usize, k: usize, dtype: DType) -> f64 {
    let base = ((y * 37 + x * 11 + k * 71) % 256) as f64;
    if dtype.is_float() {
        base - 0.25 * (k as f64 + 1.0)
    } else {
        base
    }
}

/// The reference: run `ops` by hand on `s` with the window the plan chose.
fn reference(plan: &Plan, s: &Sample, ops: &[OpSpec], key: SampleKey) -> Vec<f64> {
    let win = plan.window(key);
    let c = if s.shape.len() == 3 { s.shape[2] } else { 1 };
    let chw = ops.contains(&OpSpec::ToCHW);
    let mut out = vec![0f64; win.height * win.width * c];
    for y in 0..win.height {
        for x in 0..win.width {
            let sx = if win.flipped {
                win.left + win.width - 1 - x
            } else {
                win.left + x
            };
            for k in 0..c {
                let idx = if s.shape.len() == 3 {
                    vec![win.top + y, sx, k]
                } else {
                    vec![win.top + y, sx]
                };
                let mut v = s.get(&idx);
                let mut cur = s.dtype;
                for op in ops {
                    match op {
                        OpSpec::Normalize {
                            mean,
                            std,
                            scale,
                            dtype,
                        } => {
                            let m = if mean.len() == 1 { mean[0] } else { mean[k] };
                            let d = if std.len() == 1 { std[0] } else { std[k] };
                            // Unset: 1/255 for uint8 values, 1 for every other type.
                            let scale =
                                scale.unwrap_or(if cur == DType::U8 { 1.0 / 255.0 } else { 1.0 });
                            v = astype((v * scale - m) / d, DType::F64, *dtype);
                            cur = *dtype;
                        }
                        OpSpec::Cast { dtype } => {
                            v = astype(v, cur, *dtype);
                            cur = *dtype;
                        }
                        _ => {}
                    }
                }
                let at = if chw {
                    (k * win.height + y) * win.width + x
                } else {
                    (y * win.width + x) * c + k
                };
                out[at] = v;
            }
        }
    }
    out
}

fn tolerance(dtype: DType, v: f64) -> f64 {
    let rel = match dtype {
        DType::F32 => 1e-6,
        DType::F16 => 1e-3,
        DType::BF16 => 8e-3,
        DType::F64 => 1e-12,
        _ => 0.0,
    };
    rel * v.abs().max(1.0)
}

fn check(s: &Sample, ops: &[OpSpec], keys: u64) {
    let plan = Plan::compile(&s.shape, s.dtype, ops).unwrap();
    let mut dst = vec![0u8; plan.output_nbytes()];
    for index in 0..keys {
        let key = SampleKey {
            seed: 5,
            epoch: 1,
            index,
        };
        plan.run_checked(&s.bytes, s.offset, &s.strides, key, &mut dst)
            .unwrap();
        let got = decode(&dst, plan.output_dtype());
        let want = reference(&plan, s, ops, key);
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = tolerance(plan.output_dtype(), *w);
            assert!(
                (g - w).abs() <= tol,
                "{ops:?} {:?} elem {i}: got {g}, want {w}",
                plan.window(key)
            );
        }
    }
}

fn normalize(dtype: DType, channels: usize) -> OpSpec {
    OpSpec::Normalize {
        mean: (0..channels).map(|k| 100.0 + 10.0 * k as f64).collect(),
        std: (0..channels).map(|k| 50.0 + 3.0 * k as f64).collect(),
        scale: Some(1.5),
        dtype,
    }
}

const OUT_FLOATS: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::F64];

#[test]
fn crop_flip_normalize_all_layouts_and_dtypes() {
    for src in [DType::U8, DType::F32, DType::U16, DType::F16] {
        for gap in [false, true] {
            let s = Sample::new(9, 11, 3, src, gap, false);
            for out in OUT_FLOATS {
                let base = vec![
                    OpSpec::RandomCrop {
                        height: 5,
                        width: 7,
                    },
                    OpSpec::RandomFlip { p: 0.5 },
                    normalize(out, 3),
                ];
                check(&s, &base, 12);
                let mut chw = base.clone();
                chw.push(OpSpec::ToCHW);
                check(&s, &chw, 12);
            }
        }
    }
}

#[test]
fn casts_match_numpy_astype() {
    for src in [DType::U8, DType::F32, DType::I16] {
        let s = Sample::new(6, 8, 3, src, false, false);
        for to in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::F64,
            DType::U8,
            DType::I8,
        ] {
            check(
                &s,
                &[OpSpec::RandomFlip { p: 0.5 }, OpSpec::Cast { dtype: to }],
                6,
            );
            check(&s, &[OpSpec::Cast { dtype: to }, OpSpec::ToCHW], 1);
        }
    }
}

#[test]
fn copy_only_chains_gather() {
    for src in [DType::U8, DType::F32, DType::F64, DType::U16] {
        for (gap, mirror) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = Sample::new(7, 10, 3, src, gap, mirror);
            check(&s, &[], 1);
            check(
                &s,
                &[OpSpec::CenterCrop {
                    height: 4,
                    width: 5,
                }],
                1,
            );
            check(
                &s,
                &[
                    OpSpec::RandomCrop {
                        height: 3,
                        width: 10,
                    },
                    OpSpec::RandomFlip { p: 0.5 },
                ],
                8,
            );
            check(&s, &[OpSpec::ToCHW], 1);
        }
    }
}

#[test]
fn two_dimensional_and_single_channel() {
    for (gap, mirror) in [(false, false), (true, true)] {
        let s = Sample::new(8, 9, 0, DType::U8, gap, mirror);
        check(
            &s,
            &[
                OpSpec::RandomCrop {
                    height: 5,
                    width: 5,
                },
                OpSpec::RandomFlip { p: 0.5 },
                normalize(DType::F32, 1),
            ],
            8,
        );
        let s1 = Sample::new(8, 9, 1, DType::F32, gap, mirror);
        check(
            &s1,
            &[
                OpSpec::RandomFlip { p: 0.5 },
                normalize(DType::F16, 1),
                OpSpec::ToCHW,
            ],
            8,
        );
    }
}

#[test]
fn crops_at_the_borders() {
    // A crop as large as the sample (only offset 0 fits) and crops pinned to a corner.
    let s = Sample::new(6, 7, 3, DType::U8, true, false);
    check(
        &s,
        &[
            OpSpec::RandomCrop {
                height: 6,
                width: 7,
            },
            OpSpec::RandomFlip { p: 1.0 },
        ],
        3,
    );
    check(
        &s,
        &[
            OpSpec::RandomCrop {
                height: 6,
                width: 1,
            },
            normalize(DType::F32, 3),
        ],
        20,
    );
    check(
        &s,
        &[
            OpSpec::RandomCrop {
                height: 1,
                width: 7,
            },
            normalize(DType::F32, 1),
        ],
        20,
    );
    // Crop after flip: the second window is taken in flipped coordinates.
    check(
        &s,
        &[
            OpSpec::RandomFlip { p: 0.5 },
            OpSpec::RandomCrop {
                height: 5,
                width: 5,
            },
            OpSpec::RandomFlip { p: 0.5 },
            OpSpec::CenterCrop {
                height: 3,
                width: 2,
            },
        ],
        30,
    );
}

#[test]
fn flip_then_crop_windows_are_in_flipped_coordinates() {
    // 1x4 sample [0, 1, 2, 3], always flipped -> [3, 2, 1, 0]; CenterCrop(1, 2) of that
    // is [2, 1], i.e. source columns 1..3 read backwards.
    let plan = Plan::compile(
        &[1, 4],
        DType::U8,
        &[
            OpSpec::RandomFlip { p: 1.0 },
            OpSpec::CenterCrop {
                height: 1,
                width: 2,
            },
        ],
    )
    .unwrap();
    let mut dst = [0u8; 2];
    plan.run_contiguous(&[0, 1, 2, 3], SampleKey::default(), &mut dst)
        .unwrap();
    assert_eq!(dst, [2, 1]);
    // Same with an offset crop: [3, 2, 1, 0] cropped at column 0 width 3 -> [3, 2, 1].
    let plan = Plan::compile(
        &[1, 5],
        DType::U8,
        &[
            OpSpec::RandomFlip { p: 1.0 },
            OpSpec::CenterCrop {
                height: 1,
                width: 3,
            },
        ],
    )
    .unwrap();
    let mut dst = [0u8; 3];
    plan.run_contiguous(&[0, 1, 2, 3, 4], SampleKey::default(), &mut dst)
        .unwrap();
    assert_eq!(dst, [3, 2, 1]);
}

#[test]
fn scalars_and_vectors_take_value_ops() {
    let plan = Plan::compile(&[], DType::I32, &[OpSpec::Cast { dtype: DType::F32 }]).unwrap();
    assert_eq!(plan.output_shape(), &[] as &[usize]);
    let mut dst = [0u8; 4];
    plan.run_contiguous(&(-7i32).to_ne_bytes(), SampleKey::default(), &mut dst)
        .unwrap();
    assert_eq!(f32::from_ne_bytes(dst), -7.0);

    let v: Vec<u8> = [1.5f64, -2.0, 300.7]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    let plan = Plan::compile(&[3], DType::F64, &[OpSpec::Cast { dtype: DType::U8 }]).unwrap();
    let mut dst = [0u8; 3];
    plan.run_contiguous(&v, SampleKey::default(), &mut dst)
        .unwrap();
    assert_eq!(
        dst,
        [1, 0, 255],
        "truncate toward zero, saturate out of range"
    );
}

#[test]
fn chained_casts_round_as_written() {
    // int16 300 -> uint8 wraps to 44 -> float32 44.0 (not 300 folded away).
    let plan = Plan::compile(
        &[1],
        DType::I16,
        &[
            OpSpec::Cast { dtype: DType::U8 },
            OpSpec::Cast { dtype: DType::F32 },
        ],
    )
    .unwrap();
    let mut dst = [0u8; 4];
    plan.run_contiguous(&300i16.to_ne_bytes(), SampleKey::default(), &mut dst)
        .unwrap();
    assert_eq!(f32::from_ne_bytes(dst), 44.0);
    // float32 2.7 -> uint8 2 -> int16 2.
    let plan = Plan::compile(
        &[1],
        DType::F32,
        &[
            OpSpec::Cast { dtype: DType::U8 },
            OpSpec::Cast { dtype: DType::I16 },
        ],
    )
    .unwrap();
    let mut dst = [0u8; 2];
    plan.run_contiguous(&2.7f32.to_ne_bytes(), SampleKey::default(), &mut dst)
        .unwrap();
    assert_eq!(i16::from_ne_bytes(dst), 2);
    // Normalize to float16 then Cast(float32): the float16 rounding stays visible.
    let ops = [normalize(DType::F16, 1), OpSpec::Cast { dtype: DType::F32 }];
    let s = Sample::new(3, 4, 0, DType::U8, false, false);
    check(&s, &ops, 1);
}

#[test]
fn half_conversions_match_the_half_crate() {
    // Every float16 bit pattern -> float32.
    let bits: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_ne_bytes()).collect();
    let plan = Plan::compile(&[65536], DType::F16, &[OpSpec::Cast { dtype: DType::F32 }]).unwrap();
    let mut dst = vec![0u8; plan.output_nbytes()];
    plan.run_contiguous(&bits, SampleKey::default(), &mut dst)
        .unwrap();
    for (b, out) in (0..=u16::MAX).zip(dst.chunks_exact(4)) {
        let got = f32::from_ne_bytes(out.try_into().unwrap());
        let want = f16::from_bits(b).to_f32();
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{b:#x}"
        );
    }
    // A spread of float32 bit patterns (all exponents, ties included) -> float16 / bfloat16.
    let mut xs: Vec<f32> = (0..=u32::MAX).step_by(4093).map(f32::from_bits).collect();
    xs.extend([
        65519.0,
        65520.0,
        65536.0,
        1e-8,
        -0.0,
        f32::INFINITY,
        f32::NAN,
        2.0f32.powi(-24) * 1.5,
    ]);
    let src: Vec<u8> = xs.iter().flat_map(|x| x.to_ne_bytes()).collect();
    for to in [DType::F16, DType::BF16] {
        let plan = Plan::compile(&[xs.len()], DType::F32, &[OpSpec::Cast { dtype: to }]).unwrap();
        let mut dst = vec![0u8; plan.output_nbytes()];
        plan.run_contiguous(&src, SampleKey::default(), &mut dst)
            .unwrap();
        for (x, out) in xs.iter().zip(dst.chunks_exact(2)) {
            let got = u16::from_ne_bytes(out.try_into().unwrap());
            let (want, got_f) = match to {
                DType::F16 => (f16::from_f32(*x).to_bits(), f16::from_bits(got).to_f32()),
                _ => (bf16::from_f32(*x).to_bits(), bf16::from_bits(got).to_f32()),
            };
            assert!(
                got == want || (x.is_nan() && got_f.is_nan()),
                "{to} {x:e}: {got:#x} vs {want:#x}"
            );
        }
    }
}

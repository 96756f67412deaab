//! The explicit-SIMD kernels against the portable path, bit for bit: every level this CPU
//! has, with and without streaming stores, flipped or not, for several channel counts,
//! odd widths, crops (separate rows), negative strides and misaligned destinations; f32,
//! f16 and bf16 outputs, HWC and (3-channel) CHW.

use zerofeed_core::ops::{OpSpec, Plan, SampleKey, SimdLevel};
use zerofeed_core::DType;

/// xorshift64*: deterministic test bytes without a dependency.
fn bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn levels() -> Vec<SimdLevel> {
    [
        SimdLevel::Sse2,
        SimdLevel::Ssse3,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
    ]
    .into_iter()
    .filter(|&l| l <= SimdLevel::detect())
    .collect()
}

fn normalize(c: usize, dtype: DType) -> OpSpec {
    OpSpec::Normalize {
        mean: (0..c).map(|k| 123.675 - 7.3 * k as f64).collect(),
        std: (0..c).map(|k| 58.395 + 1.7 * k as f64).collect(),
        scale: Some(1.0 / 255.0),
        dtype,
    }
}

/// Runs `ops` on an (h, w, c) u8 sample (given strides and offset into `src`) with the
/// portable path and with every SIMD level, into `dst` at byte offsets 0..=9 and 61, and
/// asserts identical bytes.
fn same_as_scalar(shape: &[usize], src: &[u8], offset: usize, strides: &[isize], ops: &[OpSpec]) {
    let plan = Plan::compile(shape, DType::U8, ops).unwrap();
    let scalar = plan.clone().with_simd(SimdLevel::Scalar, Some(false));
    let n = plan.output_nbytes();
    for index in 0..6 {
        let key = SampleKey {
            seed: 3,
            epoch: 0,
            index,
        };
        let mut want = vec![0u8; n];
        scalar
            .run_checked(src, offset, strides, key, &mut want)
            .unwrap();
        for level in levels() {
            for stream in [false, true] {
                let p = plan.clone().with_simd(level, Some(stream));
                // A level may not support the chain (f16 needs AVX2, CHW SSSE3): then the
                // plan falls back to the portable path, which must agree all the same.
                assert!(
                    p.simd_level() == level.min(plan.simd_level())
                        || p.simd_level() == SimdLevel::Scalar
                );
                for off in (0..=9).chain([61]) {
                    let mut buf = vec![0xa5u8; n + off + 7];
                    p.run_checked(src, offset, strides, key, &mut buf[off..off + n])
                        .unwrap();
                    assert!(
                        buf[off..off + n] == want[..],
                        "{ops:?} shape {shape:?} {level:?} stream={stream} off={off} window {:?}",
                        plan.window(key)
                    );
                    assert!(buf[..off].iter().all(|&b| b == 0xa5), "wrote before dst");
                    assert!(buf[off + n..].iter().all(|&b| b == 0xa5), "wrote past dst");
                }
            }
        }
    }
}

fn c_strides(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![0isize; shape.len()];
    let mut step = 1isize;
    for (d, &n) in s.iter_mut().zip(shape).rev() {
        *d = step;
        step *= n as isize;
    }
    s
}

#[test]
fn fast_path_is_picked_for_u8_to_f32() {
    let plan = Plan::compile(&[8, 8, 3], DType::U8, &[normalize(3, DType::F32)]).unwrap();
    assert_eq!(plan.simd_level(), SimdLevel::detect());
    let cast = Plan::compile(&[8, 8, 3], DType::U8, &[OpSpec::Cast { dtype: DType::F32 }]);
    assert_eq!(cast.unwrap().simd_level(), SimdLevel::detect());
    let f64 = Plan::compile(&[8, 8, 3], DType::U8, &[normalize(3, DType::F64)]).unwrap();
    assert_eq!(f64.simd_level(), SimdLevel::Scalar);
}

fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn fast_path_is_picked_for_chw_and_half_outputs() {
    let chw = [normalize(3, DType::F32), OpSpec::ToCHW];
    let level = Plan::compile(&[8, 8, 3], DType::U8, &chw)
        .unwrap()
        .simd_level();
    let want = if SimdLevel::detect() >= SimdLevel::Ssse3 {
        SimdLevel::detect()
    } else {
        SimdLevel::Scalar
    };
    assert_eq!(level, want);
    let bf16 = Plan::compile(&[8, 8, 3], DType::U8, &[normalize(3, DType::BF16)]).unwrap();
    assert_eq!(bf16.simd_level(), SimdLevel::detect());
    let f16 = Plan::compile(&[8, 8, 3], DType::U8, &[normalize(3, DType::F16)]).unwrap();
    let want = if SimdLevel::detect() >= SimdLevel::Avx2 && has_f16c() {
        SimdLevel::detect()
    } else {
        SimdLevel::Scalar
    };
    assert_eq!(f16.simd_level(), want);
    // CHW with 4 channels stays on the portable path.
    let chw4 = [normalize(4, DType::F32), OpSpec::ToCHW];
    let p = Plan::compile(&[8, 8, 4], DType::U8, &chw4).unwrap();
    assert_eq!(p.simd_level(), SimdLevel::Scalar);
}

const OUTS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

#[test]
fn half_outputs_every_channel_count_and_width() {
    for dtype in [DType::F16, DType::BF16] {
        for c in [1usize, 3, 4] {
            for (h, w) in [(1, 1), (3, 5), (4, 17), (5, 33), (2, 64), (3, 101)] {
                let shape = [h, w, c];
                let src = bytes(h * w * c, (c * 1000 + w) as u64 + 7);
                for flip in [0.0, 0.5, 1.0] {
                    let ops = [OpSpec::RandomFlip { p: flip }, normalize(c, dtype)];
                    same_as_scalar(&shape, &src, 0, &c_strides(&shape), &ops);
                }
                let cast = [OpSpec::Cast { dtype }];
                same_as_scalar(&shape, &src, 0, &c_strides(&shape), &cast);
            }
        }
    }
}

#[test]
fn chw_planes_every_width_flip_and_output_type() {
    for dtype in OUTS {
        for (h, w) in [(1, 1), (3, 5), (4, 16), (4, 17), (5, 33), (2, 64), (3, 101)] {
            let shape = [h, w, 3];
            let src = bytes(h * w * 3, w as u64 + 99);
            for flip in [0.0, 0.5, 1.0] {
                let ops = [
                    OpSpec::RandomFlip { p: flip },
                    normalize(3, dtype),
                    OpSpec::ToCHW,
                ];
                same_as_scalar(&shape, &src, 0, &c_strides(&shape), &ops);
            }
        }
    }
}

#[test]
fn chw_crops_strides_and_large_streamed_outputs() {
    for dtype in OUTS {
        let (h, w) = (40, 97);
        let src = bytes(2 * h * w * 3 + 5, 12);
        let shape = [h, w, 3];
        let ops = [
            OpSpec::RandomCrop {
                height: 17,
                width: 61,
            },
            OpSpec::RandomFlip { p: 0.5 },
            normalize(3, dtype),
            OpSpec::ToCHW,
        ];
        same_as_scalar(&shape, &src, 5, &c_strides(&shape), &ops);
        let cast = [
            OpSpec::RandomFlip { p: 0.5 },
            OpSpec::Cast { dtype },
            OpSpec::ToCHW,
        ];
        same_as_scalar(&shape, &src, 5, &c_strides(&shape), &cast);
        // Rows bottom-up and pixels right-to-left, and rows with gaps.
        let last = (h * w - 1) * 3;
        let rev = [-((w * 3) as isize), -3, 1];
        same_as_scalar(&shape, &src, last, &rev, &ops[1..]);
        let gapped = [(2 * w * 3) as isize, 3, 1];
        same_as_scalar(&shape, &src, 0, &gapped, &ops[1..]);
        // Big enough that the default plan streams (>= 256 KiB of output, also for f16);
        // 150 x 150 planes are 4-aligned only, 160 x 160 ones 32-aligned.
        for side in [150, 160] {
            let big = [200, 200, 3];
            let src = bytes(200 * 200 * 3, side as u64);
            let ops = [
                OpSpec::RandomCrop {
                    height: side,
                    width: side,
                },
                OpSpec::RandomFlip { p: 0.5 },
                normalize(3, dtype),
                OpSpec::ToCHW,
            ];
            same_as_scalar(&big, &src, 0, &c_strides(&big), &ops);
        }
    }
}

#[test]
fn half_outputs_large_streamed() {
    for dtype in [DType::F16, DType::BF16] {
        let shape = [200, 200, 3];
        let src = bytes(200 * 200 * 3, 21);
        let ops = [
            OpSpec::RandomCrop {
                height: 190,
                width: 190,
            },
            OpSpec::RandomFlip { p: 0.5 },
            normalize(3, dtype),
        ];
        same_as_scalar(&shape, &src, 0, &c_strides(&shape), &ops);
    }
}

/// Coefficients that overflow f32 (scale 1e300 / std 1 is finite in f64, infinite in f32)
/// make `0 * inf = NaN` and infinities: the fast kernels must round those exactly as the
/// scalar path (quiet NaN with the scalar path's payload and sign). Arithmetic only ever
/// makes the x86 default NaN (`0xffc0_0000`), which every rounding here maps alike; NaNs
/// with other payloads are covered by the bit-pattern sweep in `ops/simd_x86.rs`.
#[test]
fn infinite_outputs_match() {
    // Coefficients near float32's limit (finite, so accepted) make large pixels overflow
    // to inf; coefficients that overflow themselves are refused (no NaN can arise).
    let overflowing = OpSpec::Normalize {
        mean: vec![0.0, 1e300, -3.0],
        std: vec![1.0, 1e-300, 1.0],
        scale: Some(1e300),
        dtype: DType::F32,
    };
    assert!(Plan::compile(&[3, 37, 3], DType::U8, &[overflowing]).is_err());
    for dtype in OUTS {
        for chw in [false, true] {
            let shape = [3, 37, 3];
            let src = bytes(3 * 37 * 3, 5);
            let mut ops = vec![
                OpSpec::RandomFlip { p: 0.5 },
                OpSpec::Normalize {
                    mean: vec![0.0, 3e38, -3.0],
                    std: vec![1.0, 1.0, 1.0],
                    scale: Some(3e38),
                    dtype,
                },
            ];
            if chw {
                ops.push(OpSpec::ToCHW);
            }
            same_as_scalar(&shape, &src, 0, &c_strides(&shape), &ops);
        }
    }
}

#[test]
fn every_channel_count_and_width_flip_or_not() {
    for c in [1usize, 2, 3, 4, 6, 8] {
        for (h, w) in [(1, 1), (3, 5), (4, 17), (5, 33), (2, 64), (3, 101)] {
            let shape = [h, w, c];
            let src = bytes(h * w * c, (c * 1000 + w) as u64);
            for flip in [0.0, 0.5, 1.0] {
                let ops = [OpSpec::RandomFlip { p: flip }, normalize(c, DType::F32)];
                same_as_scalar(&shape, &src, 0, &c_strides(&shape), &ops);
            }
        }
    }
}

#[test]
fn crops_flips_and_casts() {
    let (h, w, c) = (40, 97, 3);
    let src = bytes(h * w * c + 5, 11);
    let shape = [h, w, c];
    let chains: Vec<Vec<OpSpec>> = vec![
        vec![
            OpSpec::RandomCrop {
                height: 17,
                width: 61,
            },
            OpSpec::RandomFlip { p: 0.5 },
            normalize(c, DType::F32),
        ],
        vec![
            OpSpec::CenterCrop {
                height: 9,
                width: 50,
            },
            OpSpec::RandomFlip { p: 1.0 },
            OpSpec::Cast { dtype: DType::F32 },
        ],
        vec![OpSpec::Cast { dtype: DType::F32 }],
    ];
    for ops in &chains {
        same_as_scalar(&shape, &src, 5, &c_strides(&shape), ops);
    }
}

#[test]
fn negative_and_gapped_strides() {
    let (h, w, c) = (6, 45, 3);
    let src = bytes(2 * h * w * c, 4);
    let ops = [OpSpec::RandomFlip { p: 0.5 }, normalize(c, DType::F32)];
    // Rows bottom-up and pixels right-to-left: element 0 is the last pixel in memory.
    let last = (h * w - 1) * c;
    let rev = [-((w * c) as isize), -(c as isize), 1];
    same_as_scalar(&[h, w, c], &src, last, &rev, &ops);
    // Rows with a gap between them (a crop of a wider image).
    let gapped = [(2 * w * c) as isize, c as isize, 1];
    same_as_scalar(&[h, w, c], &src, 0, &gapped, &ops);
}

#[test]
fn grayscale_2d_and_large_streamed_outputs() {
    let src = bytes(300 * 301, 9);
    let ops = [OpSpec::RandomFlip { p: 0.5 }, normalize(1, DType::F32)];
    same_as_scalar(&[300, 301], &src, 0, &c_strides(&[300, 301]), &ops);
    // Big enough that the default plan streams (>= 256 KiB of output).
    let shape = [160, 160, 3];
    let src = bytes(160 * 160 * 3, 10);
    let ops = [
        OpSpec::RandomCrop {
            height: 150,
            width: 150,
        },
        OpSpec::RandomFlip { p: 0.5 },
        normalize(3, DType::F32),
    ];
    same_as_scalar(&shape, &src, 0, &c_strides(&shape), &ops);
}

/// Outputs that are mostly exact rounding ties: `x + 256` has 9 significant bits (bf16
/// keeps 8, so every odd `x` is a tie), `x + 4096` 13 (f16 keeps 11: ties at x = 2 mod 4).
/// Random normalized values almost never land on a tie, so round-half-even needs this.
#[test]
fn rounding_ties_round_to_even() {
    for (dtype, offset) in [(DType::BF16, 256.0), (DType::F16, 4096.0)] {
        for chw in [false, true] {
            let shape = [4, 70, 3];
            let src: Vec<u8> = (0..4 * 70 * 3).map(|i| i as u8).collect();
            let mut ops = vec![
                OpSpec::RandomFlip { p: 0.5 },
                OpSpec::Normalize {
                    mean: vec![-offset],
                    std: vec![1.0],
                    scale: Some(1.0),
                    dtype,
                },
            ];
            if chw {
                ops.push(OpSpec::ToCHW);
            }
            same_as_scalar(&shape, &src, 0, &c_strides(&shape), &ops);
        }
    }
}

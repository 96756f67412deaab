//! Plan validation errors, run argument checks, and SampleKey-driven randomness.

use std::collections::HashSet;

use zerofeed_core::ops::{OpSpec, OpsError, Plan, SampleKey};
use zerofeed_core::DType;

fn err(shape: &[usize], dtype: DType, ops: &[OpSpec]) -> OpsError {
    Plan::compile(shape, dtype, ops).unwrap_err()
}

fn norm(mean: Vec<f64>, std: Vec<f64>, dtype: DType) -> OpSpec {
    OpSpec::Normalize {
        mean,
        std,
        scale: Some(1.0),
        dtype,
    }
}

#[test]
fn crop_larger_than_sample() {
    let e = err(
        &[256, 256, 3],
        DType::U8,
        &[OpSpec::RandomCrop {
            height: 300,
            width: 300,
        }],
    );
    assert_eq!(
        e.to_string(),
        "ops[0] RandomCrop(300, 300) needs a sample of at least 300x300, got 256x256; crop smaller or resize first"
    );
    // The size checked is the one left by earlier crops.
    let e = err(
        &[256, 256, 3],
        DType::U8,
        &[
            OpSpec::CenterCrop {
                height: 200,
                width: 100,
            },
            OpSpec::RandomCrop {
                height: 150,
                width: 150,
            },
        ],
    );
    assert!(e.to_string().contains("ops[1] RandomCrop(150, 150)"), "{e}");
    assert!(e.to_string().contains("got 200x100"), "{e}");
}

#[test]
fn bad_arguments_name_op_and_fix() {
    let cases: Vec<(Vec<usize>, Vec<OpSpec>, &str)> = vec![
        (
            vec![8, 8, 3],
            vec![OpSpec::RandomCrop {
                height: 0,
                width: 4,
            }],
            "zero size",
        ),
        (
            vec![8, 8, 3],
            vec![norm(vec![0.0; 4], vec![1.0], DType::F32)],
            "mean has 4 values but the sample has 3 channel(s)",
        ),
        (
            vec![8, 8, 3],
            vec![norm(vec![0.0], vec![1.0, 1.0], DType::F32)],
            "std has 2 values",
        ),
        (
            // Three values for a rank-2 sample: read per feature, and there are 8.
            vec![8, 8],
            vec![norm(vec![0.0; 3], vec![1.0; 3], DType::F32)],
            "8 channel(s) or feature(s)",
        ),
        (
            vec![8, 8, 3],
            vec![norm(vec![0.0], vec![1.0, 0.0, 1.0], DType::F32)],
            "std[1] is 0",
        ),
        (
            vec![8, 8, 3],
            vec![norm(vec![f64::NAN], vec![1.0], DType::F32)],
            "mean[0] must be finite",
        ),
        (
            vec![8, 8, 3],
            vec![norm(vec![0.0], vec![1.0], DType::U8)],
            "Cast(uint8) after it",
        ),
        (
            vec![8, 8],
            vec![OpSpec::ToCHW],
            "needs a 3-D (H, W, C) sample",
        ),
        (vec![8], vec![OpSpec::ToCHW], "needs a 3-D"),
        (
            vec![8, 8, 3],
            vec![OpSpec::ToCHW, OpSpec::ToCHW],
            "ops[1] ToCHW: the sample is already CHW",
        ),
        (
            vec![8, 8, 3],
            vec![
                OpSpec::ToCHW,
                OpSpec::RandomCrop {
                    height: 2,
                    width: 2,
                },
            ],
            "comes after ToCHW",
        ),
        (
            vec![8, 8, 3],
            vec![OpSpec::ToCHW, OpSpec::RandomFlip { p: 0.5 }],
            "move ToCHW to the end",
        ),
        (
            vec![8, 8, 3],
            vec![OpSpec::RandomFlip { p: 1.5 }],
            "p must be in [0, 1]",
        ),
        (
            vec![8],
            vec![OpSpec::RandomFlip { p: 0.5 }],
            "needs an image sample",
        ),
        (
            vec![],
            vec![OpSpec::CenterCrop {
                height: 1,
                width: 1,
            }],
            "needs an image sample",
        ),
        (vec![2, 8, 8, 3], vec![], "rank 0 to 3"),
    ];
    for (shape, ops, want) in cases {
        let e = err(&shape, DType::U8, &ops);
        assert!(e.to_string().contains(want), "{shape:?} {ops:?}: {e}");
    }
    let e = err(&[4, 4], DType::Bool, &[OpSpec::Cast { dtype: DType::F32 }]);
    assert!(
        matches!(
            e,
            OpsError::UnsupportedDType {
                dtype: DType::Bool,
                ..
            }
        ),
        "{e}"
    );
    let e = err(&[4, 4], DType::F32, &[OpSpec::Cast { dtype: DType::C64 }]);
    assert!(e.to_string().contains("complex64"), "{e}");
}

#[test]
fn bool_and_complex_still_copy_and_crop() {
    let plan = Plan::compile(
        &[2, 3],
        DType::Bool,
        &[OpSpec::CenterCrop {
            height: 1,
            width: 2,
        }],
    )
    .unwrap();
    let mut dst = [9u8; 2];
    plan.run_contiguous(&[1, 0, 1, 0, 1, 1], SampleKey::default(), &mut dst)
        .unwrap();
    assert_eq!(dst, [1, 0]);
    let plan = Plan::compile(&[2, 2], DType::C128, &[OpSpec::RandomFlip { p: 1.0 }]).unwrap();
    assert_eq!(plan.output_nbytes(), 64);
}

#[test]
fn run_checked_refuses_bad_descriptors() {
    let plan = Plan::compile(&[4, 4, 3], DType::U8, &[]).unwrap();
    let src = vec![0u8; 48];
    let mut dst = vec![0u8; 48];
    let key = SampleKey::default();
    let strides = plan.input_c_strides();
    assert_eq!(strides, vec![12, 3, 1]);
    assert!(plan.run_checked(&src, 0, &strides, key, &mut dst).is_ok());
    assert!(matches!(
        plan.run_checked(&src, 1, &strides, key, &mut dst),
        Err(OpsError::OutOfBounds { .. })
    ));
    assert!(matches!(
        plan.run_checked(&src, 0, &[12, 3], key, &mut dst),
        Err(OpsError::StrideCount { got: 2, rank: 3 })
    ));
    assert!(matches!(
        plan.run_checked(&src, 0, &strides, key, &mut dst[..40]),
        Err(OpsError::DstSize { .. })
    ));
    // A negative stride needs the offset to leave room before element 0.
    assert!(plan
        .run_checked(&src, 0, &[12, -3, 1], key, &mut dst)
        .is_err());
    assert!(plan
        .run_checked(&src, 9, &[12, -3, 1], key, &mut dst)
        .is_ok());
}

#[test]
fn shapes_and_dtypes_of_plans() {
    let ops = [
        OpSpec::RandomCrop {
            height: 4,
            width: 5,
        },
        norm(vec![0.5], vec![0.25], DType::BF16),
        OpSpec::ToCHW,
    ];
    let plan = Plan::compile(&[10, 12, 3], DType::U8, &ops).unwrap();
    assert_eq!(plan.output_shape(), &[3, 4, 5]);
    assert_eq!(plan.output_dtype(), DType::BF16);
    assert_eq!(plan.output_nbytes(), 3 * 4 * 5 * 2);
    assert!(plan.is_random());
    let plan = Plan::compile(&[10, 12], DType::U16, &[OpSpec::Cast { dtype: DType::F64 }]).unwrap();
    assert_eq!(plan.output_shape(), &[10, 12]);
    assert!(!plan.is_random());
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Plan>();
}

fn key(index: u64) -> SampleKey {
    SampleKey {
        seed: 11,
        epoch: 2,
        index,
    }
}

#[test]
fn same_key_same_window_different_index_different_window() {
    let plan = Plan::compile(
        &[64, 64, 3],
        DType::U8,
        &[
            OpSpec::RandomCrop {
                height: 32,
                width: 32,
            },
            OpSpec::RandomFlip { p: 0.5 },
        ],
    )
    .unwrap();
    assert_eq!(plan.window(key(7)), plan.window(key(7)));
    let windows: HashSet<_> = (0..200).map(|i| plan.window(key(i))).collect();
    assert!(
        windows.len() > 150,
        "only {} distinct windows",
        windows.len()
    );
    let other_epoch = SampleKey { epoch: 3, ..key(7) };
    let differs = (0..50).any(|i| {
        plan.window(SampleKey {
            index: i,
            ..other_epoch
        }) != plan.window(key(i))
    });
    assert!(differs, "epochs must draw differently");
    // The output is a function of the key too.
    let src: Vec<u8> = (0..64 * 64 * 3).map(|i| (i % 253) as u8).collect();
    let (mut a, mut b) = (
        vec![0u8; plan.output_nbytes()],
        vec![0u8; plan.output_nbytes()],
    );
    plan.run_contiguous(&src, key(3), &mut a).unwrap();
    plan.run_contiguous(&src, key(3), &mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn random_crop_covers_every_position_uniformly() {
    let plan = Plan::compile(
        &[10, 10],
        DType::U8,
        &[OpSpec::RandomCrop {
            height: 8,
            width: 7,
        }],
    )
    .unwrap();
    let mut counts = [[0u32; 4]; 3];
    for i in 0..12_000 {
        let w = plan.window(key(i));
        assert!(w.top + w.height <= 10 && w.left + w.width <= 10);
        counts[w.top][w.left] += 1;
    }
    for row in counts {
        for c in row {
            assert!((850..1150).contains(&c), "{counts:?}");
        }
    }
}

#[test]
fn center_crop_position() {
    let plan = Plan::compile(
        &[10, 9, 3],
        DType::U8,
        &[OpSpec::CenterCrop {
            height: 4,
            width: 4,
        }],
    )
    .unwrap();
    let w = plan.window(key(0));
    assert_eq!(
        (w.top, w.left, w.height, w.width, w.flipped),
        (3, 2, 4, 4, false)
    );
}

#[test]
fn flip_rate_matches_p() {
    for p in [0.0, 0.3, 0.5, 1.0] {
        let plan = Plan::compile(&[4, 4], DType::U8, &[OpSpec::RandomFlip { p }]).unwrap();
        let flips = (0..10_000).filter(|&i| plan.window(key(i)).flipped).count() as f64 / 10_000.0;
        assert!((flips - p).abs() < 0.02, "p={p}: rate {flips}");
    }
    // Two flips at different op positions draw independently: rate 2p(1-p) = 0.5 at 0.5.
    let plan = Plan::compile(
        &[4, 4],
        DType::U8,
        &[OpSpec::RandomFlip { p: 0.5 }, OpSpec::RandomFlip { p: 0.5 }],
    )
    .unwrap();
    let flips = (0..10_000).filter(|&i| plan.window(key(i)).flipped).count() as f64 / 10_000.0;
    assert!((flips - 0.5).abs() < 0.02, "{flips}");
}

#[test]
fn plans_run_from_many_threads_identically() {
    let plan = std::sync::Arc::new(
        Plan::compile(
            &[32, 32, 3],
            DType::U8,
            &[
                OpSpec::RandomCrop {
                    height: 16,
                    width: 16,
                },
                OpSpec::RandomFlip { p: 0.5 },
                norm(vec![1.0], vec![2.0], DType::F32),
            ],
        )
        .unwrap(),
    );
    let src: std::sync::Arc<Vec<u8>> =
        std::sync::Arc::new((0..32 * 32 * 3).map(|i| (i % 251) as u8).collect());
    let run = |plan: &Plan, src: &[u8], i: u64| {
        let mut d = vec![0u8; plan.output_nbytes()];
        plan.run_contiguous(src, key(i), &mut d).unwrap();
        d
    };
    let serial: Vec<Vec<u8>> = (0..16).map(|i| run(&plan, &src, i)).collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (plan, src) = (plan.clone(), src.clone());
            std::thread::spawn(move || {
                (t..16)
                    .step_by(4)
                    .map(|i| (i, run(&plan, &src, i)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for (i, out) in h.join().unwrap() {
            assert_eq!(out, serial[i as usize]);
        }
    }
}

#[test]
fn per_feature_normalize_reads_rank_2_as_length_by_features() {
    // (4, 3) f32 series window: feature k normalized with mean[k], std[k].
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let (mean, std) = (vec![1.0, 2.0, 4.0], vec![1.0, 2.0, 0.5]);
    let plan = Plan::compile(
        &[4, 3],
        DType::F32,
        &[norm(mean.clone(), std.clone(), DType::F32)],
    )
    .unwrap();
    assert_eq!(plan.output_shape(), &[4, 3]);
    let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut dst = vec![0u8; plan.output_nbytes()];
    plan.run_checked(&src, 0, &[12, 4], SampleKey::default(), &mut dst)
        .unwrap();
    let out: Vec<f32> = dst
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    for (i, (&got, &v)) in out.iter().zip(&x).enumerate() {
        let k = i % 3;
        assert_eq!(got, ((v as f64 - mean[k]) / std[k]) as f32, "element {i}");
    }
    // Crops and flips are for images, and the count must match the feature axis.
    let e = err(
        &[4, 3],
        DType::F32,
        &[
            norm(vec![0.0; 3], vec![1.0], DType::F32),
            OpSpec::RandomFlip { p: 0.5 },
        ],
    );
    assert!(matches!(e, OpsError::SeriesNotImage { .. }), "{e}");
    let e = err(
        &[4, 3],
        DType::F32,
        &[norm(vec![0.0; 2], vec![1.0; 2], DType::F32)],
    );
    assert!(e.to_string().contains("3 channel(s) or feature(s)"), "{e}");
    let e = err(
        &[12],
        DType::F32,
        &[norm(vec![0.0; 3], vec![1.0], DType::F32)],
    );
    assert!(e.to_string().contains("1 channel(s)"), "{e}");
}

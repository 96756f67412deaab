//! ImagePlan: geometry composition, decoded-region input, and compile-time rules.

use super::*;
use crate::ops::Interpolation;

fn smooth(h: usize, w: usize) -> Vec<u8> {
    (0..h * w * 3)
        .map(|i| {
            let (y, x, c) = (i / (w * 3), (i / 3) % w, i % 3);
            (128.0 + 100.0 * ((y as f64 / 9.0).sin() * (x as f64 / 13.0 + c as f64).cos())) as u8
        })
        .collect()
}

fn key(index: u64) -> SampleKey {
    SampleKey {
        seed: 1,
        epoch: 0,
        index,
    }
}

fn full(data: &[u8], h: usize, w: usize) -> ImageRef<'_> {
    ImageRef {
        data,
        height: h,
        width: w,
        row_bytes: w * 3,
        origin_top: 0,
        origin_left: 0,
        scale: 1,
    }
}

fn resize(h: usize, w: usize) -> OpSpec {
    OpSpec::Resize {
        size: ResizeTo::Exact {
            height: h,
            width: w,
        },
        interpolation: Interpolation::Bilinear,
        antialias: true,
    }
}

#[test]
fn a_region_at_half_scale_approximates_the_full_resolution_result() {
    let (h, w) = (160, 200);
    let img = smooth(h, w);
    let plan = ImagePlan::compile(
        None,
        3,
        DType::U8,
        &[OpSpec::RandomResizedCrop {
            height: 24,
            width: 24,
            scale: (0.3, 1.0),
            ratio: (0.75, 4.0 / 3.0),
            interpolation: Interpolation::Bilinear,
            antialias: true,
        }],
    )
    .unwrap();
    let mut scratch = ImageScratch::default();
    for index in 0..20 {
        let g = plan.geometry(h, w, key(index)).unwrap();
        assert!(g.max_scale_denom() >= 2, "{g:?}");
        let mut exact = vec![0u8; plan.output_nbytes()];
        plan.run(full(&img, h, w), &g, key(index), &mut exact, &mut scratch)
            .unwrap();
        // What a region + 1/2-scale decode hands over: the box's 2x2 means.
        let (top, left, bh, bw) = g.source_box;
        let (dh, dw) = (bh.div_ceil(2), bw.div_ceil(2));
        let mut half = vec![0u8; dh * dw * 3];
        for y in 0..dh {
            for x in 0..dw {
                for c in 0..3 {
                    let mut sum = 0u32;
                    let mut n = 0u32;
                    for (yy, xx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let (sy, sx) = (top + 2 * y + yy, left + 2 * x + xx);
                        if sy < top + bh && sx < left + bw {
                            sum += u32::from(img[(sy * w + sx) * 3 + c]);
                            n += 1;
                        }
                    }
                    half[(y * dw + x) * 3 + c] = ((sum + n / 2) / n) as u8;
                }
            }
        }
        let decoded = ImageRef {
            data: &half,
            height: dh,
            width: dw,
            row_bytes: dw * 3,
            origin_top: top,
            origin_left: left,
            scale: 2,
        };
        let mut fast = vec![0u8; plan.output_nbytes()];
        plan.run(decoded, &g, key(index), &mut fast, &mut scratch)
            .unwrap();
        let diff: Vec<i32> = exact
            .iter()
            .zip(&fast)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let mean = diff.iter().sum::<i32>() as f64 / diff.len() as f64;
        assert!(
            mean < 2.0 && *diff.iter().max().unwrap() <= 16,
            "{index}: mean {mean}"
        );
    }
}

#[test]
fn pad_crop_and_flip_compose_in_the_flipped_view() {
    // 4x5 image, Pad(left 2, right 0), flip, CenterCrop(4, 5): the crop of the flipped
    // padded view keeps the right-hand (in the view) columns, i.e. the image's left side.
    let (h, w) = (4, 5);
    let img: Vec<u8> = (0..h * w * 3).map(|i| (i / 3) as u8 + 1).collect();
    let ops = [
        OpSpec::Pad {
            top: 0,
            left: 2,
            bottom: 0,
            right: 0,
            fill: 0.0,
        },
        OpSpec::RandomFlip { p: 1.0 },
        OpSpec::CenterCrop {
            height: 4,
            width: 6,
        },
    ];
    let plan = ImagePlan::compile(Some(&[h, w, 3]), 3, DType::U8, &ops).unwrap();
    let g = plan.geometry(h, w, key(0)).unwrap();
    let mut out = vec![0u8; plan.output_nbytes()];
    plan.run(
        full(&img, h, w),
        &g,
        key(0),
        &mut out,
        &mut ImageScratch::default(),
    )
    .unwrap();
    // Padded row 0 is [0, 0, 1, 2, 3, 4, 5]; flipped [5, 4, 3, 2, 1, 0, 0]; the centre
    // 6 columns start at (7 - 6) // 2 = 0: [5, 4, 3, 2, 1, 0].
    let row0: Vec<u8> = out[..6 * 3].iter().step_by(3).copied().collect();
    assert_eq!(row0, [5, 4, 3, 2, 1, 0]);
}

#[test]
fn compile_rules() {
    let shape = Some(&[10usize, 12, 3][..]);
    let err = |ops: &[OpSpec]| ImagePlan::compile(shape, 3, DType::U8, ops).unwrap_err();
    assert!(matches!(
        err(&[resize(4, 4), resize(2, 2)]),
        OpsError::ImageOrder { .. }
    ));
    let pad = OpSpec::Pad {
        top: 1,
        left: 1,
        bottom: 1,
        right: 1,
        fill: 0.0,
    };
    assert!(matches!(
        err(&[pad.clone(), resize(4, 4)]),
        OpsError::ImageOrder { .. }
    ));
    assert!(matches!(
        ImagePlan::compile(
            None,
            3,
            DType::U8,
            &[OpSpec::Resize {
                size: ResizeTo::Shorter(8),
                interpolation: Interpolation::Nearest,
                antialias: false
            }]
        )
        .unwrap_err(),
        OpsError::SizeNotFixed { .. }
    ));
    assert!(matches!(
        ImagePlan::compile(shape, 3, DType::F32, &[resize(4, 4)]).unwrap_err(),
        OpsError::ImageDType { .. }
    ));
    // Shorter-side resize on a known shape fixes the size: 10x12 -> 8x9 (int(8 * 12 / 10)).
    let plan = ImagePlan::compile(
        shape,
        3,
        DType::U8,
        &[OpSpec::Resize {
            size: ResizeTo::Shorter(8),
            interpolation: Interpolation::Bilinear,
            antialias: true,
        }],
    )
    .unwrap();
    assert_eq!(plan.output_shape(), [8, 9, 3]);
    assert_eq!(shorter_side(256, 375, 500), (256, 341));
    assert_eq!(shorter_side(256, 500, 375), (341, 256));
    // A variable-size chain fails per sample when a crop does not fit.
    let crop = ImagePlan::compile(
        None,
        3,
        DType::U8,
        &[OpSpec::CenterCrop {
            height: 20,
            width: 20,
        }],
    )
    .unwrap();
    assert!(matches!(
        crop.geometry(10, 30, key(0)),
        Err(OpsError::CropTooLarge { .. })
    ));
}

#[test]
fn the_footprint_alone_gives_the_same_output_as_the_whole_image() {
    let (h, w) = (90, 120);
    let img = smooth(h, w);
    let chains = [
        vec![
            OpSpec::Resize {
                size: ResizeTo::Shorter(40),
                interpolation: Interpolation::Bicubic,
                antialias: true,
            },
            OpSpec::RandomFlip { p: 0.5 },
            OpSpec::CenterCrop {
                height: 24,
                width: 24,
            },
        ],
        vec![
            resize(60, 80),
            OpSpec::RandomCrop {
                height: 20,
                width: 30,
            },
            OpSpec::RandomFlip { p: 0.5 },
        ],
    ];
    let mut scratch = ImageScratch::default();
    for ops in &chains {
        let plan = ImagePlan::compile(None, 3, DType::U8, ops).unwrap();
        for index in 0..8 {
            let g = plan.geometry(h, w, key(index)).unwrap();
            let (top, left, fh, fw) = g.footprint();
            assert!(fh < h || fw < w, "{g:?}");
            let region: Vec<u8> = (top..top + fh)
                .flat_map(|y| img[(y * w + left) * 3..(y * w + left + fw) * 3].to_vec())
                .collect();
            let part = ImageRef {
                data: &region,
                height: fh,
                width: fw,
                row_bytes: fw * 3,
                origin_top: top,
                origin_left: left,
                scale: 1,
            };
            let (mut a, mut b) = (
                vec![0u8; plan.output_nbytes()],
                vec![0u8; plan.output_nbytes()],
            );
            plan.run(full(&img, h, w), &g, key(index), &mut a, &mut scratch)
                .unwrap();
            plan.run(part, &g, key(index), &mut b, &mut scratch)
                .unwrap();
            assert_eq!(a, b, "{ops:?} sample {index}");
        }
    }
}

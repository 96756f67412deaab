//! `cargo bench -p zerofeed-core --bench ops`: the fused kernel against the memory floor.
//!
//! Workload: a 512x512x3 uint8 sample, RandomCrop(256, 256) + RandomFlip(0.5) +
//! Normalize(mean, std, 1/255, float32), vs a plain u8 -> f32 conversion loop writing
//! the same number of output bytes (what `np.copyto(f32_out, u8_in)` does). Both write
//! into one reused buffer, like a batch slot. Plain std::time::Instant, no harness.

use std::hint::black_box;
use std::time::Instant;

use zerofeed_core::ops::{OpSpec, Plan, SampleKey};
use zerofeed_core::DType;

/// Best of `reps` timed runs of `iters` calls, in ns per call.
fn time(reps: usize, iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut best = f64::INFINITY;
    for rep in 0..reps {
        let t = Instant::now();
        for i in 0..iters {
            f(rep as u64 * iters + i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn report(name: &str, ns: f64, out_bytes: usize, floor: f64) {
    let gbs = out_bytes as f64 / ns;
    println!(
        "{name:<44} {ns:>10.0} ns/sample {gbs:>7.2} GB/s written  {:>5.2}x floor time",
        ns / floor
    );
}

fn main() {
    let (h, w, c) = (512usize, 512usize, 3usize);
    let src: Vec<u8> = (0..h * w * c).map(|i| (i * 31 % 251) as u8).collect();
    let normalize = OpSpec::Normalize {
        mean: vec![123.675, 116.28, 103.53],
        std: vec![58.395, 57.12, 57.375],
        scale: 1.0,
        dtype: DType::F32,
    };
    let crop = OpSpec::RandomCrop {
        height: 256,
        width: 256,
    };
    let flip = OpSpec::RandomFlip { p: 0.5 };
    let out_elems = 256 * 256 * 3;
    let out_bytes = out_elems * 4;

    // The floor: u8 -> f32 over the same output size, contiguous, like np.copyto.
    let mut floor_dst = vec![0f32; out_elems];
    let floor = time(7, 400, |_| {
        for (d, &s) in floor_dst.iter_mut().zip(&src[..out_elems]) {
            *d = s as f32;
        }
        black_box(&mut floor_dst);
    });
    report("floor: u8 -> f32 convert loop", floor, out_bytes, floor);

    let cases: Vec<(&str, Vec<OpSpec>)> = vec![
        (
            "crop+flip+normalize f32 (HWC)",
            vec![crop.clone(), flip.clone(), normalize.clone()],
        ),
        (
            "crop+normalize f32 (no flip)",
            vec![crop.clone(), normalize.clone()],
        ),
        (
            "crop+flip(p=1)+normalize f32",
            vec![
                crop.clone(),
                OpSpec::RandomFlip { p: 1.0 },
                normalize.clone(),
            ],
        ),
        (
            "crop+flip+normalize f32 + ToChw",
            vec![crop.clone(), flip.clone(), normalize.clone(), OpSpec::ToChw],
        ),
        ("crop+flip+normalize f16", {
            let mut n = normalize.clone();
            if let OpSpec::Normalize { dtype, .. } = &mut n {
                *dtype = DType::F16;
            }
            vec![crop.clone(), flip.clone(), n]
        }),
        ("crop+flip+normalize bf16", {
            let mut n = normalize.clone();
            if let OpSpec::Normalize { dtype, .. } = &mut n {
                *dtype = DType::BF16;
            }
            vec![crop.clone(), flip.clone(), n]
        }),
        (
            "crop+flip+Cast(f32)",
            vec![
                crop.clone(),
                flip.clone(),
                OpSpec::Cast { dtype: DType::F32 },
            ],
        ),
        ("crop+flip (u8 copy)", vec![crop.clone(), flip.clone()]),
    ];
    for (name, ops) in cases {
        let plan = Plan::compile(&[h, w, c], DType::U8, &ops).expect("valid chain");
        let strides = plan.input_c_strides();
        let mut dst = vec![0u8; plan.output_nbytes()];
        let ns = time(7, 400, |i| {
            let key = SampleKey {
                seed: 1,
                epoch: 0,
                index: i,
            };
            plan.run_checked(&src, 0, &strides, key, &mut dst)
                .expect("in bounds");
            black_box(&mut dst);
        });
        report(name, ns, plan.output_nbytes(), floor);
    }
}

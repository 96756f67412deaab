//! `cargo bench -p zerofeed-core --bench ops`: the fused kernel against the memory floor,
//! on the Loader's real workload.
//!
//! Each batch is 32 samples picked from a 200-image (512, 512, 3) uint8 array (157 MB, so
//! the source is not cache resident), RandomCrop(256, 256) + RandomFlip + Normalize into
//! a 64-byte-aligned (32, 256, 256, 3) float32 batch (25 MB, far beyond cache). The floor
//! is `np.copyto(out_f32, in_u8)`: a plain u8 -> f32 conversion with ordinary stores
//! writing the same output bytes from the same images. The CHW f32, HWC f16 and HWC bf16
//! variants run with their SIMD kernels and with the portable ones, compared with the
//! floor of their own output bytes (`u8 -> f32`, or `u8 -> u16` for f16 / bf16, as
//! `zerofeed bench` does), and at AVX2 where the CPU has AVX-512. All run on 1 and 2 threads
//! (`std::thread::scope`, each thread its own batch buffer), medians of several reps.
//! Plain std::time::Instant, no harness.

use std::hint::black_box;
use std::time::Instant;

use zerofeed_core::ops::{OpSpec, Plan, SampleKey, SimdLevel};
use zerofeed_core::DType;

const IMAGES: usize = 200;
const BATCH: usize = 32;
const SIDE: usize = 512;
const CROP: usize = 256;
const BATCHES_PER_REP: usize = 12;
const REPS: usize = 7;

/// A zeroed, `align`-aligned byte buffer of `len` bytes (inside a larger Vec).
struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize, align: usize) -> Aligned {
        let buf = vec![0u8; len + align];
        let start = buf.as_ptr().align_offset(align);
        Aligned { buf, start, len }
    }
    fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// A case name that lives for the whole run.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Which image sample `i` of batch `b` reads: spread over the whole source.
fn pick(b: usize, i: usize) -> usize {
    (b * BATCH + i).wrapping_mul(7919) % IMAGES
}

/// `np.copyto(out_f32, in_u8)` for one batch: each slot converted from the first slot-size
/// bytes of its image, ordinary (auto-vectorized) stores.
fn floor_batch(src: &[u8], image_bytes: usize, b: usize, out: &mut [u8]) {
    let elems = out.len() / BATCH / 4;
    for (i, slot) in out.chunks_exact_mut(elems * 4).enumerate() {
        let img = &src[pick(b, i) * image_bytes..][..elems];
        for (d, &s) in slot.chunks_exact_mut(4).zip(img) {
            d.copy_from_slice(&f32::from(s).to_ne_bytes());
        }
    }
}

/// The 2-byte outputs' floor, `np.copyto(out_u16, in_u8)`: the same widening copy into
/// `u16`, the cheapest conversion writing the bytes a float16 / bfloat16 batch has.
fn floor16_batch(src: &[u8], image_bytes: usize, b: usize, out: &mut [u8]) {
    let elems = out.len() / BATCH / 2;
    for (i, slot) in out.chunks_exact_mut(elems * 2).enumerate() {
        let img = &src[pick(b, i) * image_bytes..][..elems];
        for (d, &s) in slot.chunks_exact_mut(2).zip(img) {
            d.copy_from_slice(&u16::from(s).to_ne_bytes());
        }
    }
}

fn plan_batch(plan: &Plan, src: &[u8], image_bytes: usize, b: usize, out: &mut [u8]) {
    let strides = plan.input_c_strides();
    for (i, slot) in out.chunks_exact_mut(plan.output_nbytes()).enumerate() {
        let index = pick(b, i);
        let key = SampleKey {
            seed: 1,
            epoch: 0,
            index: (b * BATCH + i) as u64,
        };
        plan.run_checked(src, index * image_bytes, &strides, key, slot)
            .expect("in bounds");
    }
}

/// A batch function: fills the output of batch number `b`.
type BatchFn<'a> = Box<dyn Fn(usize, &mut [u8]) + Sync + 'a>;

/// Runs every case once per rep, interleaved (the machine is shared and its speed drifts
/// within seconds), on `threads` threads each with its own batch buffer. Returns each
/// case's median img/s and median per-rep ratio to its floor (`floors[case]`).
fn interleaved(threads: usize, cases: &[(usize, BatchFn)], floors: &[usize]) -> Vec<(f64, f64)> {
    let mut outs: Vec<Vec<Aligned>> = cases
        .iter()
        .map(|(bytes, _)| (0..threads).map(|_| Aligned::new(*bytes, 64)).collect())
        .collect();
    // Warm-up: fault the output pages in, so the reps measure steady state (pooled slots).
    for ((_, run), outs) in cases.iter().zip(&mut outs) {
        for o in outs {
            run(0, o.bytes());
        }
    }
    let mut rates = vec![Vec::new(); cases.len()];
    for rep in 0..REPS {
        for (((_, run), outs), rates) in cases.iter().zip(&mut outs).zip(&mut rates) {
            let t = Instant::now();
            std::thread::scope(|s| {
                for (k, o) in outs.iter_mut().enumerate() {
                    s.spawn(move || {
                        for n in 0..BATCHES_PER_REP {
                            let b = (rep * threads + k) * BATCHES_PER_REP + n;
                            run(b, o.bytes());
                            black_box(o.bytes().as_ptr());
                        }
                    });
                }
            });
            rates.push((threads * BATCHES_PER_REP * BATCH) as f64 / t.elapsed().as_secs_f64());
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    rates
        .iter()
        .zip(floors)
        .map(|(r, &floor)| {
            let ratios = r.iter().zip(&rates[floor]).map(|(x, f)| x / f).collect();
            (median(r.clone()), median(ratios))
        })
        .collect()
}

fn main() {
    let image_bytes = SIDE * SIDE * 3;
    let src: Vec<u8> = (0..IMAGES * image_bytes)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let normalize = |dtype| OpSpec::Normalize {
        mean: vec![123.675, 116.28, 103.53],
        std: vec![58.395, 57.12, 57.375],
        scale: Some(1.0),
        dtype,
    };
    let crop = OpSpec::RandomCrop {
        height: CROP,
        width: CROP,
    };
    let flip = OpSpec::RandomFlip { p: 0.5 };
    let hwc = vec![crop.clone(), flip.clone(), normalize(DType::F32)];
    let compile = |ops: &[OpSpec]| Plan::compile(&[SIDE, SIDE, 3], DType::U8, ops).unwrap();
    let best = compile(&hwc);
    println!(
        "detected SIMD level: {:?}; batch {BATCH} x {CROP}x{CROP}x3 from {IMAGES} images of {SIDE}x{SIDE}x3 u8",
        SimdLevel::detect()
    );
    let mut cases: Vec<(&'static str, Plan)> = vec![
        ("crop+flip+normalize f32 (SIMD, streaming)", best.clone()),
        (
            "crop+flip+normalize f32 (AVX2, streaming)",
            best.clone().with_simd(SimdLevel::Avx2, None),
        ),
        (
            "crop+flip+normalize f32 (SIMD, regular stores)",
            best.clone().with_simd(SimdLevel::Avx2, Some(false)),
        ),
        (
            "crop+flip+normalize f32 (SSSE3, streaming)",
            best.clone().with_simd(SimdLevel::Ssse3, None),
        ),
        (
            "crop+flip+normalize f32 (portable kernels)",
            best.clone().with_simd(SimdLevel::Scalar, Some(false)),
        ),
    ];
    // The new variants, each SIMD (the plan as compiled) and portable (SIMD capped off).
    let variants = [
        (
            "crop+flip+normalize f32 + ToCHW",
            compile(&[
                crop.clone(),
                flip.clone(),
                normalize(DType::F32),
                OpSpec::ToCHW,
            ]),
        ),
        (
            "crop+flip+normalize f16",
            compile(&[crop.clone(), flip.clone(), normalize(DType::F16)]),
        ),
        (
            "crop+flip+normalize bf16",
            compile(&[crop.clone(), flip.clone(), normalize(DType::BF16)]),
        ),
    ];
    for (name, plan) in variants {
        let level = format!("{name} ({:?})", plan.simd_level());
        cases.push((leak(level), plan.clone()));
        if plan.simd_level() > SimdLevel::Avx2 {
            let avx2 = plan.clone().with_simd(SimdLevel::Avx2, None);
            cases.push((leak(format!("{name} (Avx2)")), avx2));
        }
        let portable = plan.with_simd(SimdLevel::Scalar, Some(false));
        cases.push((leak(format!("{name} (portable)")), portable));
    }
    let f32_batch = BATCH * CROP * CROP * 3 * 4;
    let src = &src;
    let mut names = vec![
        "floor: np.copyto u8 -> f32 (regular stores)",
        "floor: np.copyto u8 -> u16 (2-byte outputs' floor)",
    ];
    let mut runs: Vec<(usize, BatchFn)> = vec![
        (
            f32_batch,
            Box::new(move |b, out| floor_batch(src, image_bytes, b, out)),
        ),
        (
            f32_batch / 2,
            Box::new(move |b, out| floor16_batch(src, image_bytes, b, out)),
        ),
    ];
    // Each case's ratio is to the floor writing as many bytes.
    let mut floors = vec![0, 1];
    for (name, plan) in cases {
        names.push(name);
        floors.push(usize::from(plan.output_nbytes() * BATCH < f32_batch));
        runs.push((
            BATCH * plan.output_nbytes(),
            Box::new(move |b, out| plan_batch(&plan, src, image_bytes, b, out)),
        ));
    }
    for threads in [1, 2] {
        println!(
            "\n{threads} thread(s), medians of {REPS} interleaved reps; x floor: img/s ratio \
             to the floor writing the same output bytes (u8 -> f32, or u8 -> u16 for f16 / bf16):"
        );
        for (name, (rate, ratio)) in names.iter().zip(interleaved(threads, &runs, &floors)) {
            println!("{name:<56} {rate:>7.0} img/s  {ratio:>5.2}x floor");
        }
    }
}

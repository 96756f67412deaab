//! The fixed-point uint8 resampler: every SIMD level gives the scalar kernel's bytes, and
//! the fixed point stays within a level of the float kernel.

use proptest::prelude::*;

use super::*;

/// One axis of a random case: a box `[start, start + len)` of an image `size` pixels
/// long, resampled to `out`, of which `count` outputs from `first` are wanted.
#[derive(Clone, Debug)]
struct Case {
    size: usize,
    start: f64,
    len: f64,
    out: usize,
    first: usize,
    count: usize,
}

fn case(max: usize) -> impl Strategy<Value = Case> {
    (
        1..max,
        0.0..1.0f64,
        0.05..1.0f64,
        1..max,
        0.0..1.0f64,
        0.0..1.0f64,
    )
        .prop_map(|(size, a, b, out, f, n)| {
            let start = (a * size as f64).floor().min(size as f64 - 1.0);
            let len = ((b * (size as f64 - start)).round()).max(1.0);
            let first = ((f * out as f64) as usize).min(out - 1);
            let count = ((n * (out - first) as f64) as usize).max(1);
            Case {
                size,
                start,
                len,
                out,
                first,
                count,
            }
        })
}

fn taps(c: &Case, interp: Interpolation, antialias: bool, reverse: bool) -> Taps {
    let mut t = Taps::default();
    t.build(
        interp,
        antialias,
        Axis {
            start: c.start,
            len: c.len,
            out: c.out,
            first: c.first,
            count: c.count,
            lo: c.start as usize,
            hi: (c.start + c.len) as usize,
        },
        reverse,
    );
    t
}

fn interp(i: u8) -> Interpolation {
    [
        Interpolation::Nearest,
        Interpolation::Bilinear,
        Interpolation::Bicubic,
    ][i as usize % 3]
}

/// The image resampled by `f`, rows concatenated.
fn run(
    f: impl FnOnce(Img<'_, u8>, &Taps, &Taps, &mut Bufs<u8>, &mut dyn FnMut(usize, &[u8])),
    data: &[u8],
    row: usize,
    c: usize,
    h: &Taps,
    v: &Taps,
) -> Vec<u8> {
    let mut got = Vec::new();
    let mut bufs = Bufs::default();
    f(Img { data, row, c }, h, v, &mut bufs, &mut |_, r| {
        got.extend_from_slice(r)
    });
    got
}

fn levels() -> Vec<SimdLevel> {
    [SimdLevel::Ssse3, SimdLevel::Avx2, SimdLevel::Avx512]
        .into_iter()
        .filter(|&l| l <= SimdLevel::detect())
        .collect()
}

#[test]
fn every_simd_level_of_this_cpu_gets_simd_kernels() {
    // The plan passes SimdLevel::detect(): a level the match forgot would run scalar code
    // (correct, 7x slower), which the bit-for-bit tests cannot see.
    for level in levels().into_iter().chain([SimdLevel::detect()]) {
        assert_ne!(Kernels::at(level), Kernels::Scalar, "{level:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn simd_fixed_point_is_the_scalar_fixed_point_bit_for_bit(
        hc in case(90), vc in case(70), c in 1usize..=4, ip in 0u8..3, aa: bool, flip: bool,
        pad in 0usize..5, seed: u64,
    ) {
        let (ih, iw) = (vc.size, hc.size);
        let row = iw * c + pad;
        // The image ends at its last pixel, so a kernel that read past it would be caught.
        let data: Vec<u8> = (0..(ih - 1) * row + iw * c)
            .map(|i| (seed.wrapping_mul(i as u64 * 2 + 1).rotate_left(29) >> 56) as u8)
            .collect();
        let h = taps(&hc, interp(ip), aa, flip);
        let v = taps(&vc, interp(ip), aa, false);
        let scalar = run(|s, h, v, b, e| resample_fixed(s, h, v, &mut b.fixed, SimdLevel::Scalar, e),
            &data, row, c, &h, &v);
        prop_assert_eq!(scalar.len(), hc.count * vc.count * c);
        for level in levels() {
            let simd = run(|s, h, v, b, e| resample_fixed(s, h, v, &mut b.fixed, level, e),
                &data, row, c, &h, &v);
            prop_assert!(simd == scalar, "{:?} differs from the scalar kernel", level);
        }
    }

    /// Bilinear within one level. Bicubic within two: a one-level difference between the
    /// passes' uint8 rows (where the float sum sat at a rounding boundary) is scaled by the
    /// vertical weights, whose absolute sum exceeds 1 with the negative lobes.
    #[test]
    fn fixed_point_is_within_a_level_of_the_float_kernel(
        hc in case(90), vc in case(70), c in 1usize..=4, ip in 1u8..3, aa: bool, seed: u64,
    ) {
        let (ih, iw) = (vc.size, hc.size);
        let data: Vec<u8> = (0..ih * iw * c)
            .map(|i| (seed.wrapping_mul(i as u64 * 2 + 1).rotate_left(29) >> 56) as u8)
            .collect();
        let h = taps(&hc, interp(ip), aa, false);
        let v = taps(&vc, interp(ip), aa, false);
        let fixed = run(|s, h, v, b, e| resample_fixed(s, h, v, &mut b.fixed, SimdLevel::detect(), e),
            &data, iw * c, c, &h, &v);
        let float = run(|s, h, v, b, e| resample_float(s, h, v, b, e), &data, iw * c, c, &h, &v);
        let worst = fixed.iter().zip(&float).map(|(&a, &b)| a.abs_diff(b)).max().unwrap_or(0);
        let allowed = if interp(ip) == Interpolation::Bicubic { 2 } else { 1 };
        prop_assert!(worst <= allowed, "{} levels apart", worst);
        let off = fixed.iter().zip(&float).filter(|(a, b)| a != b).count();
        // A pass's rounding flips where its sum lies within the weights' quantization error
        // (up to 255 * 2^-14 levels when a weight near 1 leaves 14 fraction bits) of a half
        // level: a few percent of the values after two passes on most scales, but scales of
        // small rational steps put many sums exactly on a half (6 -> 33 then 14 -> 63
        // pixels: 10.5 %), where the two kernels' weights round to either side.
        prop_assert!(fixed.len() < 2000 || off * 5 <= fixed.len(), "{} of {} differ", off, fixed.len());
    }
}

#[test]
fn fraction_bits_follow_the_largest_weight() {
    use super::tests::axis;
    let mut t = Taps::default();
    // Same size: a weight of 1 needs 2^14 = 16384 (2^15 would not fit i16).
    t.build(Interpolation::Bilinear, true, axis(50, 50), false);
    assert_eq!(t.bits, 14);
    // Downscale by 8: the largest weight is about 1/8, so three more bits fit.
    t.build(Interpolation::Bilinear, true, axis(400, 50), false);
    assert_eq!(t.bits, 17);
    for i in 0..t.outputs() {
        let (_, q) = t.fixed_row(i);
        let sum: i32 = q.iter().map(|&w| i32::from(w)).sum();
        assert!((sum - (1 << 17)).abs() <= q.len() as i32, "{sum}");
    }
}

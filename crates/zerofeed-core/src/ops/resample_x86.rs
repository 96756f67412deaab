//! The fixed-point resampler's x86 kernels (AVX2, and SSSE3 with 128-bit registers).
//!
//! Horizontal: one output pixel at a time, four taps per step. Sixteen source bytes from the
//! step's first pixel are loaded (both 128-bit lanes, for AVX2) and a `pshufb` turns them
//! into `i16` pairs `(pixel t, pixel t + 1)` of each channel (lane 0: taps 0 and 1, lane 1:
//! taps 2 and 3), so one `pmaddwd` against the pre-laid weights `(q_t, q_t+1)` adds two taps
//! of every channel into one `i32` per channel. Up to four channels fit a lane; three-channel
//! pixels waste the fourth `i32`, which is cheaper than any RGB de-interleave.
//!
//! Vertical: 32 (AVX2) or 16 (SSSE3) bytes of an output row at a time, two source rows per
//! step: their bytes are interleaved and widened to `i16` pairs, and `pmaddwd` against
//! `(q_t, q_t+1)` adds both rows. The `unpack` / `pack` instructions work within 128-bit
//! lanes, and the packs undo the unpacks' order exactly, so no cross-lane permute is needed.
//!
//! Both compute exactly the scalar kernel's integers (see `resample.rs`); the pack
//! instructions saturate, which clamps to `[0, 255]` as the scalar kernel does.

use std::arch::x86_64::*;

use super::Taps;

/// The `pshufb` mask that turns 16 bytes from pixel `t` (`c` channels) into lane 0:
/// `(p_t[k], p_t+1[k])` and lane 1: `(p_t+2[k], p_t+3[k])` as `i16`, `k < c`, zeros elsewhere.
fn pair_mask(c: usize) -> [u8; 32] {
    let mut m = [0x80u8; 32];
    for lane in 0..2 {
        for k in 0..c {
            for j in 0..2 {
                m[lane * 16 + 2 * (2 * k + j)] = ((2 * lane + j) * c + k) as u8;
            }
        }
    }
    m
}

/// Lays out `h`'s weights for the horizontal kernels: for each output, each group of four
/// taps as `[q0, q1] x 4` then `[q2, q3] x 4` (16 `i16`), `groups(h)` groups an output.
pub(super) fn lay_out(h: &Taps, wide: &mut Vec<i16>) {
    let g = groups(h);
    wide.clear();
    wide.resize(h.outputs() * g * 16, 0);
    for x in 0..h.outputs() {
        let q = h.fixed_padded(x);
        for (k, four) in q.chunks_exact(4).enumerate() {
            let out = &mut wide[(x * g + k) * 16..][..16];
            for p in 0..4 {
                out[2 * p..][..2].copy_from_slice(&four[..2]);
                out[8 + 2 * p..][..2].copy_from_slice(&four[2..]);
            }
        }
    }
}

/// Groups of four taps laid out per output.
fn groups(h: &Taps) -> usize {
    h.fixed_taps() / 4
}

/// Checks what the horizontal kernels read and write, once per row (cheaply: `(x0, x1)`
/// is the caller's `h.span()`, which every tap lies in).
fn check_horizontal(
    row: &[u8],
    (x0, x1): (usize, usize),
    h: &Taps,
    c: usize,
    wide: &[i16],
    out: &[u8],
) {
    assert!(x1 > x0 && (1..=4).contains(&c));
    // The last step's load starts at a real tap (`<= x1 - 1`) and reads 16 bytes.
    assert!(row.len() >= (x1 - x0 - 1) * c + 16);
    assert!(wide.len() >= h.outputs() * groups(h) * 16);
    assert!(out.len() >= h.outputs() * c + 4);
}

/// The horizontal pass of one source row (`row` holds source pixels `span.0..span.1`,
/// `h.span()`, then padding) into `out`.
///
/// # Safety
/// The CPU must have AVX2, and `span` must be `h.span()` (the bounds checks trust it).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn horizontal_avx2(
    row: &[u8],
    span: (usize, usize),
    h: &Taps,
    c: usize,
    wide: &[i16],
    out: &mut [u8],
) {
    check_horizontal(row, span, h, c, wide, out);
    let x0 = span.0;
    let g = groups(h);
    let mask = pair_mask(c);
    // SAFETY: `mask` is 32 bytes; unaligned loads.
    let m = unsafe { _mm256_loadu_si256(mask.as_ptr().cast()) };
    let round = _mm_set1_epi32((1i32 << h.bits) >> 1);
    let shift = _mm_cvtsi32_si128(h.bits as i32);
    for x in 0..h.outputs() {
        let (start, q) = h.fixed_row(x);
        let mut acc = _mm256_setzero_si256();
        for k in 0..q.len().div_ceil(4) {
            // SAFETY: tap `start + 4k` is a real tap (`4k < q.len()`), so the 16-byte load
            // stays in `row` (checked above); `wide` holds `g` groups of 16 for every output.
            unsafe {
                let p = _mm_loadu_si128(row.as_ptr().add((start - x0 + 4 * k) * c).cast());
                let p = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(p), m);
                let w = _mm256_loadu_si256(wide.as_ptr().add((x * g + k) * 16).cast());
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, w));
            }
        }
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256(acc, 1),
        );
        let s = _mm_sra_epi32(_mm_add_epi32(s, round), shift);
        let s = _mm_packus_epi16(_mm_packs_epi32(s, s), s);
        // SAFETY: `out` has `outputs * c + 4` bytes (checked above); the store of 4 bytes
        // at pixel `x` spills into pixel `x + 1`, written next, or into the padding.
        unsafe {
            out.as_mut_ptr()
                .add(x * c)
                .cast::<i32>()
                .write_unaligned(_mm_cvtsi128_si32(s));
        }
    }
}

/// [`horizontal_avx2`] with 128-bit registers.
///
/// # Safety
/// The CPU must have SSSE3, and `span` must be `h.span()`.
#[target_feature(enable = "ssse3")]
pub(super) unsafe fn horizontal_ssse3(
    row: &[u8],
    span: (usize, usize),
    h: &Taps,
    c: usize,
    wide: &[i16],
    out: &mut [u8],
) {
    check_horizontal(row, span, h, c, wide, out);
    let x0 = span.0;
    let g = groups(h);
    let mask = pair_mask(c);
    // SAFETY: `mask` is 32 bytes; unaligned loads.
    let (m0, m1) = unsafe {
        (
            _mm_loadu_si128(mask.as_ptr().cast()),
            _mm_loadu_si128(mask.as_ptr().add(16).cast()),
        )
    };
    let round = _mm_set1_epi32((1i32 << h.bits) >> 1);
    let shift = _mm_cvtsi32_si128(h.bits as i32);
    for x in 0..h.outputs() {
        let (start, q) = h.fixed_row(x);
        let mut acc = round;
        for k in 0..q.len().div_ceil(4) {
            // SAFETY: as in `horizontal_avx2`.
            unsafe {
                let p = _mm_loadu_si128(row.as_ptr().add((start - x0 + 4 * k) * c).cast());
                let w = wide.as_ptr().add((x * g + k) * 16);
                let w0 = _mm_loadu_si128(w.cast());
                let w1 = _mm_loadu_si128(w.add(8).cast());
                acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(p, m0), w0));
                acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_shuffle_epi8(p, m1), w1));
            }
        }
        let s = _mm_sra_epi32(acc, shift);
        let s = _mm_packus_epi16(_mm_packs_epi32(s, s), s);
        // SAFETY: as in `horizontal_avx2`.
        unsafe {
            out.as_mut_ptr()
                .add(x * c)
                .cast::<i32>()
                .write_unaligned(_mm_cvtsi128_si32(s));
        }
    }
}

/// `(q_t, q_t+1)` as the `i32` that `pmaddwd` pairs with `(row t, row t+1)` bytes.
#[inline]
fn pair(a: i16, b: i16) -> i32 {
    i32::from(a as u16) | (i32::from(b) << 16)
}

/// The vertical kernels' step at tap `t`: the second row of the pair and both weights
/// packed for `pmaddwd`; an odd last tap pairs with itself at weight 0.
#[inline(always)]
fn tap_pair(q: &[i16], t: usize) -> (usize, i32) {
    match q.get(t + 1) {
        Some(&next) => (t + 1, pair(q[t], next)),
        None => (t, pair(q[t], 0)),
    }
}

/// Checks what the vertical kernels read and write, once per output row.
fn check_vertical(rows: &[u8], stride: usize, q: &[i16], line: &[u8]) {
    assert!(stride.is_multiple_of(32) && line.len() >= stride && !q.is_empty());
    assert!(rows.len() >= q.len() * stride);
}

/// One output row: `line[i] = clamp((sum_t q[t] * rows[t * stride + i] + r) >> bits)` for
/// every `i < stride`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn vertical_avx2(
    rows: &[u8],
    stride: usize,
    q: &[i16],
    bits: u32,
    line: &mut [u8],
) {
    check_vertical(rows, stride, q, line);
    let round = _mm256_set1_epi32((1i32 << bits) >> 1);
    let shift = _mm_cvtsi32_si128(bits as i32);
    let zero = _mm256_setzero_si256();
    for off in (0..stride).step_by(32) {
        let (mut a0, mut a1, mut a2, mut a3) = (round, round, round, round);
        for t in (0..q.len()).step_by(2) {
            let (u, w) = tap_pair(q, t);
            let w = _mm256_set1_epi32(w);
            // SAFETY: rows `t` and `u` are below `q.len()`, so both 32-byte loads lie
            // within `rows` (`q.len() * stride` bytes, `off + 32 <= stride`; checked above).
            let (ra, rb) = unsafe {
                (
                    _mm256_loadu_si256(rows.as_ptr().add(t * stride + off).cast()),
                    _mm256_loadu_si256(rows.as_ptr().add(u * stride + off).cast()),
                )
            };
            let lo = _mm256_unpacklo_epi8(ra, rb);
            let hi = _mm256_unpackhi_epi8(ra, rb);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, zero), w));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, zero), w));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, zero), w));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, zero), w));
        }
        let (a0, a1) = (_mm256_sra_epi32(a0, shift), _mm256_sra_epi32(a1, shift));
        let (a2, a3) = (_mm256_sra_epi32(a2, shift), _mm256_sra_epi32(a3, shift));
        let r = _mm256_packus_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
        // SAFETY: `off + 32 <= stride <= line.len()` (checked above).
        unsafe { _mm256_storeu_si256(line.as_mut_ptr().add(off).cast(), r) };
    }
}

/// [`vertical_avx2`] with 128-bit registers.
///
/// # Safety
/// The CPU must have SSSE3 (the kernel itself needs only SSE2).
#[target_feature(enable = "ssse3")]
pub(super) unsafe fn vertical_ssse3(
    rows: &[u8],
    stride: usize,
    q: &[i16],
    bits: u32,
    line: &mut [u8],
) {
    check_vertical(rows, stride, q, line);
    let round = _mm_set1_epi32((1i32 << bits) >> 1);
    let shift = _mm_cvtsi32_si128(bits as i32);
    let zero = _mm_setzero_si128();
    for off in (0..stride).step_by(16) {
        let (mut a0, mut a1, mut a2, mut a3) = (round, round, round, round);
        for t in (0..q.len()).step_by(2) {
            let (u, w) = tap_pair(q, t);
            let w = _mm_set1_epi32(w);
            // SAFETY: as in `vertical_avx2`, with 16-byte loads.
            let (ra, rb) = unsafe {
                (
                    _mm_loadu_si128(rows.as_ptr().add(t * stride + off).cast()),
                    _mm_loadu_si128(rows.as_ptr().add(u * stride + off).cast()),
                )
            };
            let lo = _mm_unpacklo_epi8(ra, rb);
            let hi = _mm_unpackhi_epi8(ra, rb);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi8(lo, zero), w));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi8(lo, zero), w));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi8(hi, zero), w));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi8(hi, zero), w));
        }
        let (a0, a1) = (_mm_sra_epi32(a0, shift), _mm_sra_epi32(a1, shift));
        let (a2, a3) = (_mm_sra_epi32(a2, shift), _mm_sra_epi32(a3, shift));
        let r = _mm_packus_epi16(_mm_packs_epi32(a0, a1), _mm_packs_epi32(a2, a3));
        // SAFETY: `off + 16 <= stride <= line.len()` (checked above).
        unsafe { _mm_storeu_si128(line.as_mut_ptr().add(off).cast(), r) };
    }
}

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

use super::{Laid, Taps};

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
/// taps as `[q0, q1] x 4` then `[q2, q3] x 4` (16 `i16`), `groups(h)` groups an output; and
/// each output's first byte within a row that starts at source pixel `x0` (`c` channels).
/// Both run to a multiple of four outputs (offset 0, zero weights past the last), so the
/// two-row kernel computes four outputs a step without a tail.
pub(super) fn lay_out(h: &Taps, c: usize, x0: usize, laid: &mut Laid) {
    let g = groups(h);
    let n = h.outputs();
    let padded = n.next_multiple_of(4);
    laid.wide.clear();
    laid.wide.resize(padded * g * 16, 0);
    laid.offsets.clear();
    laid.offsets.resize(padded, 0);
    for x in 0..n {
        let q = h.fixed_padded(x);
        for (k, four) in q.chunks_exact(4).enumerate() {
            let out = &mut laid.wide[(x * g + k) * 16..][..16];
            for p in 0..4 {
                out[2 * p..][..2].copy_from_slice(&four[..2]);
                out[8 + 2 * p..][..2].copy_from_slice(&four[2..]);
            }
        }
        laid.offsets[x] = (h.fixed_row(x).0 - x0) * c;
    }
    let last = laid.offsets.iter().copied().max().unwrap_or(0);
    // Every group's 16-byte load, the zero-weight groups past an output's taps included.
    laid.reach = last + 4 * (g.max(1) - 1) * c + 16;
    laid.groups = g;
    laid.outputs = n;
    laid.channels = c;
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

/// The `pshufb` mask that keeps, of four pixels held as four bytes each (`c` of them real),
/// the `4 * c` real bytes first.
fn compact_mask(c: usize) -> [u8; 16] {
    let mut m = [0x80u8; 16];
    for j in 0..4 {
        for k in 0..c {
            m[j * c + k] = (4 * j + k) as u8;
        }
    }
    m
}

/// [`horizontal_avx2`] of two source rows at once, one a 128-bit lane: both rows share
/// every output's taps, so the lanes need no horizontal sum, and four outputs are packed
/// and stored together. Each output runs the table's whole group count (its zero-weight
/// padding included) from a precomputed byte offset, so the loop has no data-dependent
/// branch and no per-row index arithmetic. About 8 instructions an output pixel where the
/// one-row kernel spends 13 plus its indexing (five of them shuffles: that kernel's
/// throughput was the shuffle port's).
///
/// # Safety
/// The CPU must have AVX2, and `laid` must be `lay_out(h, c, ..)` for this `h` and `c`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn horizontal_pair_avx2(
    rows: [&[u8]; 2],
    h: &Taps,
    c: usize,
    laid: &Laid,
    outs: [&mut [u8]; 2],
) {
    // SAFETY: the caller's contract, passed on; `G` is `laid.groups`.
    unsafe {
        match laid.groups {
            1 => pair_steps::<1>(rows, h, c, laid, outs),
            2 => pair_steps::<2>(rows, h, c, laid, outs),
            3 => pair_steps::<3>(rows, h, c, laid, outs),
            4 => pair_steps::<4>(rows, h, c, laid, outs),
            g => {
                assert!(g > 4, "a table has one group of taps at least");
                pair_steps::<0>(rows, h, c, laid, outs)
            }
        }
    }
}

/// [`horizontal_pair_avx2`] with `G` groups an output (`0`: `laid.groups`, not unrolled).
///
/// # Safety
/// As [`horizontal_pair_avx2`], and `G` is `0` or `laid.groups`.
#[target_feature(enable = "avx2")]
unsafe fn pair_steps<const G: usize>(
    rows: [&[u8]; 2],
    h: &Taps,
    c: usize,
    laid: &Laid,
    outs: [&mut [u8]; 2],
) {
    let g = laid.groups;
    let n = laid.outputs;
    assert!((1..=4).contains(&c) && c == laid.channels);
    assert!(n == h.outputs() && n > 0 && (G == 0 || G == g));
    assert!(laid.offsets.len() >= n.next_multiple_of(4));
    assert!(laid.wide.len() >= n.next_multiple_of(4) * g * 16);
    for (row, out) in rows.iter().zip(&outs) {
        // Every load lies within `laid.reach` bytes (`lay_out` measured it).
        assert!(row.len() >= laid.reach);
        // The last step's 16-byte store starts at its first pixel, below `n`.
        assert!(out.len() >= (n - 1) / 4 * 4 * c + 16);
    }
    let mask = pair_mask(c);
    let compact = compact_mask(c);
    // SAFETY: `mask` is 32 bytes and `compact` 16; unaligned loads.
    let (m01, m23, compact) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(mask.as_ptr().cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(mask.as_ptr().add(16).cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(compact.as_ptr().cast())),
        )
    };
    let round = _mm256_set1_epi32((1i32 << h.bits) >> 1);
    let shift = _mm_cvtsi32_si128(h.bits as i32);
    let steps = if G == 0 { g } else { G };
    let (a, b) = (rows[0].as_ptr(), rows[1].as_ptr());
    let [out_a, out_b] = outs;
    for x in (0..n).step_by(4) {
        // Outputs past `n` have zero weights and land in the rows' padding.
        let mut acc = [round; 4];
        for (j, acc) in acc.iter_mut().enumerate() {
            let off = laid.offsets[x + j];
            // SAFETY: `x + j` is below the laid-out outputs (checked above).
            let w = unsafe { laid.wide.as_ptr().add((x + j) * g * 16) };
            for k in 0..steps {
                // SAFETY: `lay_out` made `off + 4kc + 16 <= reach <= row.len()` for both
                // rows, and `wide` holds `g` groups of 16 for each laid-out output.
                unsafe {
                    let lo = _mm_loadu_si128(a.add(off + 4 * k * c).cast());
                    let hi = _mm_loadu_si128(b.add(off + 4 * k * c).cast());
                    let p = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
                    let w01 = _mm256_broadcastsi128_si256(_mm_loadu_si128(w.add(16 * k).cast()));
                    let w23 =
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(w.add(16 * k + 8).cast()));
                    let s01 = _mm256_madd_epi16(_mm256_shuffle_epi8(p, m01), w01);
                    let s23 = _mm256_madd_epi16(_mm256_shuffle_epi8(p, m23), w23);
                    *acc = _mm256_add_epi32(*acc, _mm256_add_epi32(s01, s23));
                }
            }
        }
        let [s0, s1, s2, s3] = acc.map(|a| _mm256_sra_epi32(a, shift));
        // Each lane: the four outputs' four channel bytes, in order; then the real ones first.
        let r = _mm256_packus_epi16(_mm256_packs_epi32(s0, s1), _mm256_packs_epi32(s2, s3));
        let r = _mm256_shuffle_epi8(r, compact);
        // SAFETY: 16 bytes from pixel `x` lie within each `out` (checked above); bytes past
        // pixel `x + 3` are rewritten by the next step or lie in the padding.
        unsafe {
            _mm_storeu_si128(
                out_a.as_mut_ptr().add(x * c).cast(),
                _mm256_castsi256_si128(r),
            );
            _mm_storeu_si128(
                out_b.as_mut_ptr().add(x * c).cast(),
                _mm256_extracti128_si256(r, 1),
            );
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

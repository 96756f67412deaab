//! The AVX-512 block loop (F + BW + VBMI): per 48-byte block, one masked load, one
//! `vpermb` for a flip or the RGB -> planes split (the AVX2 loop needs 9 `pshufb` and 6
//! `por` for it), then three 16-lane widen / `* a + b` / round / store steps.
//!
//! Why a fourth loop: on one thread the AVX2 loop is compute bound for 2-byte outputs
//! (profiled: `vpmovzxbd`, the NaN blend and spilled shuffle masks dominate, 16 ymm
//! registers are not enough for the 9 masks and 6 coefficient rows), so it cannot keep up
//! with a plain `u8 -> u16` copy. Here the whole block's state fits in the 32 zmm
//! registers and a third of the instructions retire per element.
//!
//! Roundings are the same as the AVX2 loop's, lane for lane: `vcvtps2ph` with
//! round-to-nearest-even in the immediate for f16 (NaNs first made canonical), the
//! integer bf16 rounding with a logical shift and `vpmovdw` truncation (exact: the
//! rounded value fits in 16 bits). The `_FINITE` variants skip the NaN fix-up, which no
//! finite coefficient can need.

use std::arch::x86_64::*;

use super::super::simd::{FastAffine, Geometry, ALIGNED, UNALIGNED};
use super::{store32, BF16_FINITE, F16, F16_FINITE, F32};

/// bf16 bits of 16 floats as 16 u16; NaN lanes made quiet as the scalar code does only
/// when `NAN`.
///
/// # Safety
/// AVX-512 F.
#[inline(always)]
pub(in crate::ops) unsafe fn bf16x16<const NAN: bool>(x: __m512) -> __m256i {
    // SAFETY: register arithmetic only; the caller guarantees AVX-512 F (this fn's
    // contract: inlined into the `avx512` wrapper, or called by tests after detection).
    unsafe {
        let bits = _mm512_castps_si512(x);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let sum = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), odd);
        let mut r = _mm512_srli_epi32::<16>(sum);
        if NAN {
            let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x40));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            r = _mm512_mask_blend_epi32(nan, r, quiet);
        }
        _mm512_cvtepi32_epi16(r)
    }
}

/// f16 bits of 16 floats as 16 u16, NaNs made canonical (`sign | 0x7e00`) only when `NAN`.
///
/// # Safety
/// AVX-512 F.
#[inline(always)]
pub(in crate::ops) unsafe fn f16x16<const NAN: bool>(x: __m512) -> __m256i {
    // SAFETY: register arithmetic only; AVX-512 F per this fn's contract.
    unsafe {
        let mut x = x;
        if NAN {
            let bits = _mm512_castps_si512(x);
            let sign = _mm512_and_si512(bits, _mm512_set1_epi32(i32::MIN));
            let canon = _mm512_or_si512(sign, _mm512_set1_epi32(0x7fc0_0000));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            x = _mm512_mask_blend_ps(nan, x, _mm512_castsi512_ps(canon));
        }
        _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x)
    }
}

/// Rounds 16 floats to `OUT` and stores them at `p` the `MODE` way.
///
/// # Safety
/// `16 * size(OUT)` writable bytes at `p`, aligned to that size (64 or 32) unless
/// `MODE == UNALIGNED`; AVX-512 F.
#[inline(always)]
unsafe fn emit16<const OUT: u8, const MODE: u8>(p: *mut u8, y: __m512) {
    // SAFETY: this fn's contract covers each arm's bytes, alignment and features.
    unsafe {
        match OUT {
            F32 => match MODE {
                UNALIGNED => _mm512_storeu_ps(p.cast(), y),
                ALIGNED => _mm512_store_ps(p.cast(), y),
                _ => _mm512_stream_ps(p.cast(), y),
            },
            // The 16 halves as 32 bytes, through the AVX2 kernels' store.
            F16 => store32::<MODE>(p, _mm256_castsi256_ps(f16x16::<true>(y))),
            F16_FINITE => store32::<MODE>(p, _mm256_castsi256_ps(f16x16::<false>(y))),
            BF16_FINITE => store32::<MODE>(p, _mm256_castsi256_ps(bf16x16::<false>(y))),
            _ => store32::<MODE>(p, _mm256_castsi256_ps(bf16x16::<true>(y))),
        }
    }
}

/// The `vpermb` control of a block: mirrored pixels (HWC, `flip`), or for CHW (`c == 3`)
/// bytes `16k..16k + 16` = channel `k` of the 16 pixels, read mirrored when `flip`.
/// Bytes 48.. are never used (index 0).
pub(in crate::ops) fn block_perm(c: usize, planar: bool, flip: bool) -> [u8; 64] {
    let pixels = 48 / c;
    let mut perm = [0u8; 64];
    for (o, slot) in perm.iter_mut().enumerate().take(48) {
        let i = if planar {
            let (k, q) = (o / 16, o % 16);
            (if flip { 15 - q } else { q }) * 3 + k
        } else {
            let p = if flip { pixels - 1 - o / c } else { o / c };
            p * c + o % c
        };
        *slot = i as u8;
    }
    perm
}

/// The AVX-512 block loop (see the module docs).
///
/// # Safety
/// As `sse_body` in the parent module, with `MODE` meaning alignment to the store size
/// (64 bytes for f32, 32 for f16 / bf16: blocks advance 192 / 96 bytes HWC, 64 / 32 a
/// plane); inlined only into the `avx512` wrapper.
#[inline(always)]
unsafe fn avx512_body<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    let bpx = 48 / g.c;
    let size = if OUT == F32 { 4 } else { 2 };
    // Element i of a block is channel i % c: the 24-float period twice over.
    let a48: [f32; 48] = std::array::from_fn(|i| f.a[i % 24]);
    let b48: [f32; 48] = std::array::from_fn(|i| f.b[i % 24]);
    // SAFETY: 48 floats = 3 unaligned 16-float loads each; 64 bytes of the permutation;
    // AVX-512 F / BW / VBMI per this fn's contract.
    unsafe {
        let a: [__m512; 3] = std::array::from_fn(|i| _mm512_loadu_ps(a48.as_ptr().add(16 * i)));
        let b: [__m512; 3] = std::array::from_fn(|i| _mm512_loadu_ps(b48.as_ptr().add(16 * i)));
        let ak: [__m512; 3] = std::array::from_fn(|k| _mm512_set1_ps(f.a[k]));
        let bk: [__m512; 3] = std::array::from_fn(|k| _mm512_set1_ps(f.b[k]));
        let perm = _mm512_loadu_si512(f.vperm[FLIP as usize].as_ptr().cast());
        for blk in 0..blocks {
            let j = head + blk * bpx;
            let p = g.block_src::<FLIP>(j);
            let x: [__m128i; 3] = if FLIP || PLANAR {
                // The masked load reads exactly the block's 48 bytes (no fault past it).
                let v = _mm512_maskz_loadu_epi8(0xffff_ffff_ffff, p.cast());
                let v = _mm512_permutexvar_epi8(perm, v);
                [
                    _mm512_castsi512_si128(v),
                    _mm512_extracti32x4_epi32::<1>(v),
                    _mm512_extracti32x4_epi32::<2>(v),
                ]
            } else {
                std::array::from_fn(|r| _mm_loadu_si128(p.add(16 * r).cast()))
            };
            for (r, x) in x.into_iter().enumerate() {
                let v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x));
                // Separate multiply and add (never FMA): bit-exact with the scalar path.
                let (y, at) = if PLANAR {
                    let y = _mm512_add_ps(_mm512_mul_ps(v, ak[r]), bk[r]);
                    (y, r * g.plane + j * size)
                } else {
                    let y = _mm512_add_ps(_mm512_mul_ps(v, a[r]), b[r]);
                    (y, (j * g.c + 16 * r) * size)
                };
                // 16 output elements inside the row (plane r when planar), per MODE.
                emit16::<OUT, MODE>(g.dst.add(at), y);
            }
        }
    }
}

/// [`avx512_body`] compiled with AVX-512 F, BW and VBMI.
///
/// # Safety
/// As [`avx512_body`]; the CPU has AVX-512 F, BW and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn avx512<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    // SAFETY: forwarded contract; this function enables the features the body needs.
    unsafe { avx512_body::<FLIP, MODE, OUT, PLANAR>(f, g, head, blocks) }
}

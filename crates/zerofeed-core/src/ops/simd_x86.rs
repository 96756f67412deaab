//! The x86 block loops behind [`FastAffine::row`]: per 48 source bytes (16 RGB pixels,
//! or 48 / C pixels), widen to f32, `* a + b`, round to the output type, store.
//!
//! Each loop is generic over the flip, the store mode (unaligned / aligned / streaming),
//! the output type and the layout (HWC or CHW planes), so the per-block code has no
//! branches; [`block_table`] picks the six (flip x mode) instantiations a plan uses once,
//! when it is compiled. The loop bodies are `#[inline(always)]` and only ever inlined
//! into the small `#[target_feature]` wrappers at the bottom, so every intrinsic runs
//! with the features its wrapper enables (and the CPU was checked to have).
//!
//! Half floats, bit-exact with `elem::f32_to_f16` / `elem::f32_to_bf16`:
//! - f16: `vcvtps2ph` with round-to-nearest-even in the immediate (never MXCSR) rounds
//!   exactly as the scalar code, overflow to infinity and f32 subnormals to zero
//!   included. It keeps a NaN's payload (top 10 bits, quiet bit set) where the scalar
//!   code writes the canonical `0x7e00`, so NaN lanes are first replaced by the f32 NaN
//!   `sign | 0x7fc0_0000`, which converts to `sign | 0x7e00`.
//! - bf16: the scalar integer rounding `(bits + 0x7fff + ((bits >> 16) & 1)) >> 16` in
//!   32-bit lanes, NaN lanes replaced by `(bits >> 16) | 0x0040`; the shift is arithmetic
//!   so that `packs_epi32` (signed saturation, SSE2 has no unsigned one) keeps the low
//!   16 bits exactly.

use std::arch::x86_64::*;

use super::simd::{FastAffine, Geometry, OutKind, SimdLevel, ALIGNED, STREAM, UNALIGNED};

mod avx512;
use avx512::avx512;
pub(super) use avx512::block_perm;

/// A block loop: `blocks` blocks of the row from output pixel `head` on.
pub(super) type BlockFn = unsafe fn(&FastAffine, Geometry, usize, usize);

/// Output types as const generic arguments.
const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;
/// bf16 from finite coefficients: `x * a + b` with finite `a`, `b` is finite or
/// infinite, never NaN, so the NaN blend (a fifth of the AVX2 loop's time) is skipped.
const BF16_FINITE: u8 = 3;
/// f16 from finite coefficients: no NaN lane to make canonical.
const F16_FINITE: u8 = 4;

/// The `[flip][mode]` table of a level, output type and layout; `finite` when every
/// coefficient is finite (no NaN can come out). Entries a kernel never reaches (a flip
/// at SSE2, which `can_flip` rules out) still point at real loops.
pub(super) fn block_table(
    level: SimdLevel,
    out: OutKind,
    planar: bool,
    finite: bool,
) -> [[BlockFn; 3]; 2] {
    macro_rules! table {
        ($f:ident, $out:ident, $planar:literal) => {
            [
                [
                    $f::<false, UNALIGNED, $out, $planar> as BlockFn,
                    $f::<false, ALIGNED, $out, $planar>,
                    $f::<false, STREAM, $out, $planar>,
                ],
                [
                    $f::<true, UNALIGNED, $out, $planar>,
                    $f::<true, ALIGNED, $out, $planar>,
                    $f::<true, STREAM, $out, $planar>,
                ],
            ]
        };
    }
    match (level, out, planar) {
        (SimdLevel::Avx512, OutKind::F32, false) => table!(avx512, F32, false),
        (SimdLevel::Avx512, OutKind::F32, true) => table!(avx512, F32, true),
        (SimdLevel::Avx512, OutKind::F16, false) if finite => table!(avx512, F16_FINITE, false),
        (SimdLevel::Avx512, OutKind::F16, true) if finite => table!(avx512, F16_FINITE, true),
        (SimdLevel::Avx512, OutKind::F16, false) => table!(avx512, F16, false),
        (SimdLevel::Avx512, OutKind::F16, true) => table!(avx512, F16, true),
        (SimdLevel::Avx512, OutKind::Bf16, false) if finite => table!(avx512, BF16_FINITE, false),
        (SimdLevel::Avx512, OutKind::Bf16, true) if finite => table!(avx512, BF16_FINITE, true),
        (SimdLevel::Avx512, OutKind::Bf16, false) => table!(avx512, BF16, false),
        (SimdLevel::Avx512, OutKind::Bf16, true) => table!(avx512, BF16, true),
        (SimdLevel::Avx2, OutKind::F16, false) if finite => table!(avx2_f16c, F16_FINITE, false),
        (SimdLevel::Avx2, OutKind::F16, true) if finite => table!(avx2_f16c, F16_FINITE, true),
        (SimdLevel::Avx2, OutKind::Bf16, false) if finite => table!(avx2, BF16_FINITE, false),
        (SimdLevel::Avx2, OutKind::Bf16, true) if finite => table!(avx2, BF16_FINITE, true),
        (SimdLevel::Avx2, OutKind::F32, false) => table!(avx2, F32, false),
        (SimdLevel::Avx2, OutKind::F32, true) => table!(avx2, F32, true),
        (SimdLevel::Avx2, OutKind::Bf16, false) => table!(avx2, BF16, false),
        (SimdLevel::Avx2, OutKind::Bf16, true) => table!(avx2, BF16, true),
        (SimdLevel::Avx2, OutKind::F16, false) => table!(avx2_f16c, F16, false),
        (SimdLevel::Avx2, OutKind::F16, true) => table!(avx2_f16c, F16, true),
        (_, OutKind::F32, false) => {
            let mut t = table!(sse2, F32, false);
            t[1] = table!(ssse3, F32, false)[1];
            t
        }
        (_, OutKind::Bf16, false) => {
            let mut t = table!(sse2, BF16, false);
            t[1] = table!(ssse3, BF16, false)[1];
            t
        }
        (_, OutKind::F32, true) => table!(ssse3, F32, true),
        (_, OutKind::Bf16, true) => table!(ssse3, BF16, true),
        // `FastAffine::new` builds f16 kernels only at AVX2 with F16C.
        (_, OutKind::F16, _) => unreachable!("f16 needs AVX2 + F16C"),
    }
}

/// Stores 16 bytes at `p` the `MODE` way.
///
/// # Safety
/// 16 writable bytes at `p`, 16-aligned unless `MODE == UNALIGNED`.
#[inline(always)]
unsafe fn store16<const MODE: u8>(p: *mut u8, v: __m128i) {
    // SAFETY: the caller guarantees 16 writable bytes at `p`, 16-aligned for the aligned
    // and streaming stores; these are SSE2 stores, baseline on x86-64.
    unsafe {
        match MODE {
            UNALIGNED => _mm_storeu_si128(p.cast(), v),
            ALIGNED => _mm_store_si128(p.cast(), v),
            _ => _mm_stream_si128(p.cast(), v),
        }
    }
}

/// Stores 32 bytes at `p` the `MODE` way.
///
/// # Safety
/// 32 writable bytes at `p`, 32-aligned unless `MODE == UNALIGNED`; AVX.
#[inline(always)]
unsafe fn store32<const MODE: u8>(p: *mut u8, v: __m256) {
    // SAFETY: the caller guarantees 32 writable bytes at `p`, 32-aligned for the aligned
    // and streaming stores, and AVX (only `avx2_body` and the AVX-512 block loop, behind
    // wrappers that detected AVX2 or AVX-512, reach it).
    unsafe {
        match MODE {
            UNALIGNED => _mm256_storeu_ps(p.cast(), v),
            ALIGNED => _mm256_store_ps(p.cast(), v),
            _ => _mm256_stream_ps(p.cast(), v),
        }
    }
}

/// bf16 bits of 4 + 4 floats, in order, as 8 u16.
///
/// # Safety
/// SSE2 (always there on x86-64; `unsafe` only because intrinsics are).
#[inline(always)]
pub(super) unsafe fn bf16x4x2(lo: __m128, hi: __m128) -> __m128i {
    #[inline(always)]
    unsafe fn one(x: __m128) -> __m128i {
        // SAFETY: SSE2 register arithmetic only (no memory is touched); every x86-64
        // CPU has SSE2, so no run-time check is needed.
        unsafe {
            let bits = _mm_castps_si128(x);
            let odd = _mm_and_si128(_mm_srli_epi32::<16>(bits), _mm_set1_epi32(1));
            let sum = _mm_add_epi32(_mm_add_epi32(bits, _mm_set1_epi32(0x7fff)), odd);
            let rounded = _mm_srai_epi32::<16>(sum);
            let quiet = _mm_or_si128(_mm_srai_epi32::<16>(bits), _mm_set1_epi32(0x40));
            let nan = _mm_castps_si128(_mm_cmpunord_ps(x, x));
            _mm_or_si128(_mm_and_si128(nan, quiet), _mm_andnot_si128(nan, rounded))
        }
    }
    // SAFETY: SSE2 register arithmetic only, baseline on x86-64; no memory is touched.
    unsafe { _mm_packs_epi32(one(lo), one(hi)) }
}

/// bf16 bits of 8 floats as 8 u16; NaN lanes are only handled when `NAN` (without, they
/// come out rounded like numbers, which may turn them into infinities).
///
/// # Safety
/// AVX2.
#[inline(always)]
pub(super) unsafe fn bf16x8<const NAN: bool>(x: __m256) -> __m128i {
    // SAFETY: register arithmetic only (no memory is touched); the caller guarantees
    // AVX2 (this fn's contract): it is inlined into the `avx2` / `avx2_f16c` wrappers,
    // which `block_table` hands out only at `SimdLevel::Avx2`, a level `FastAffine::new`
    // caps at `SimdLevel::detect()`; the tests call it after `is_x86_feature_detected!`.
    unsafe {
        let bits = _mm256_castps_si256(x);
        let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
        let sum = _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), odd);
        let rounded = _mm256_srai_epi32::<16>(sum);
        if !NAN {
            let r = rounded;
            return _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
        }
        let quiet = _mm256_or_si256(_mm256_srai_epi32::<16>(bits), _mm256_set1_epi32(0x40));
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
        let r = _mm256_blendv_epi8(rounded, quiet, nan);
        _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r))
    }
}

/// f16 bits of 8 floats as 8 u16, NaNs made canonical as the scalar code does (only when
/// `NAN`: without, a NaN keeps its payload).
///
/// # Safety
/// AVX and F16C.
#[inline(always)]
pub(super) unsafe fn f16x8<const NAN: bool>(x: __m256) -> __m128i {
    // SAFETY: register arithmetic only (no memory is touched); the caller guarantees
    // AVX and F16C (this fn's contract): it is inlined into the `avx2_f16c` wrapper,
    // which `block_table` hands out only for f16 output, which `FastAffine::new` allows
    // only when `SimdLevel::detect()` found AVX2 and `detect_f16c()` F16C; the tests
    // call it after `is_x86_feature_detected!`.
    unsafe {
        if !NAN {
            return _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
        }
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
        let sign = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN)));
        let canon = _mm256_or_ps(sign, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc0_0000)));
        let x = _mm256_blendv_ps(x, canon, nan);
        _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x)
    }
}

/// Rounds 8 floats to `OUT` and stores them at `p` the `MODE` way.
///
/// # Safety
/// `8 * size(OUT)` writable bytes at `p`, aligned to that size (32 or 16) unless
/// `MODE == UNALIGNED`; AVX2, and F16C when `OUT == F16`.
#[inline(always)]
unsafe fn emit8<const OUT: u8, const MODE: u8>(p: *mut u8, y: __m256) {
    // SAFETY: this fn's contract covers each arm: the bytes and alignment `store32` /
    // `store16` need, AVX2 for `bf16x8`, and F16C for `f16x8` (only with `OUT == F16`).
    unsafe {
        match OUT {
            F32 => store32::<MODE>(p, y),
            F16 => store16::<MODE>(p, f16x8::<true>(y)),
            F16_FINITE => store16::<MODE>(p, f16x8::<false>(y)),
            BF16_FINITE => store16::<MODE>(p, bf16x8::<false>(y)),
            _ => store16::<MODE>(p, bf16x8::<true>(y)),
        }
    }
}

/// Rounds 4 x 4 floats (in order) to `OUT` (f32 or bf16) and stores them at `p`.
///
/// # Safety
/// `16 * size(OUT)` writable bytes at `p`, 16-aligned unless `MODE == UNALIGNED`.
#[inline(always)]
unsafe fn emit4x4<const OUT: u8, const MODE: u8>(p: *mut u8, y: [__m128; 4]) {
    // SAFETY: caller contract; every store is one 16-byte piece of the range.
    unsafe {
        if OUT == F32 {
            for (i, v) in y.into_iter().enumerate() {
                store16::<MODE>(p.add(16 * i), _mm_castps_si128(v));
            }
        } else {
            store16::<MODE>(p, bf16x4x2(y[0], y[1]));
            store16::<MODE>(p.add(16), bf16x4x2(y[2], y[3]));
        }
    }
}

/// Applies three `pshufb` masks per output register to a 48-byte block (a mirror, or the
/// split into channel registers).
///
/// # Safety
/// SSSE3.
#[inline(always)]
unsafe fn permute48(r: [__m128i; 3], m: &[[__m128i; 3]; 3]) -> [__m128i; 3] {
    // SAFETY: register shuffles only (no memory is touched); the caller guarantees SSSE3
    // (this fn's contract): the body loops call it only when `FLIP || PLANAR`, inlined
    // into the `ssse3` / `avx2` / `avx2_f16c` wrappers, which `block_table` hands out
    // only at a level `FastAffine::new` capped at `SimdLevel::detect()`.
    unsafe {
        let mut out = [_mm_setzero_si128(); 3];
        for (k, o) in out.iter_mut().enumerate() {
            let x = _mm_or_si128(
                _mm_shuffle_epi8(r[0], m[k][0]),
                _mm_shuffle_epi8(r[1], m[k][1]),
            );
            *o = _mm_or_si128(x, _mm_shuffle_epi8(r[2], m[k][2]));
        }
        out
    }
}

/// Loads a 3 x 3 set of shuffle masks into registers (once per row, not per block).
#[inline(always)]
fn masks(m: &[[[u8; 16]; 3]; 3]) -> [[__m128i; 3]; 3] {
    // SAFETY: each mask is a 16-byte array; loadu needs no alignment.
    m.map(|row| row.map(|m| unsafe { _mm_loadu_si128(m.as_ptr().cast()) }))
}

/// The shuffles a block needs: the mirror (HWC flipped) or the plane split.
#[inline(always)]
fn block_masks<const FLIP: bool, const PLANAR: bool>(f: &FastAffine) -> [[__m128i; 3]; 3] {
    if PLANAR {
        masks(&f.split[FLIP as usize])
    } else {
        masks(&f.rev)
    }
}

/// Loads a 48-byte block as three registers.
///
/// # Safety
/// 48 readable bytes at `p` (any alignment: loadu).
#[inline(always)]
unsafe fn load48(p: *const u8) -> [__m128i; 3] {
    // SAFETY: the caller guarantees 48 readable bytes at `p`; SSE2 unaligned loads
    // (baseline on x86-64) need no alignment.
    unsafe {
        [
            _mm_loadu_si128(p.cast()),
            _mm_loadu_si128(p.add(16).cast()),
            _mm_loadu_si128(p.add(32).cast()),
        ]
    }
}

/// The 128-bit block loop: zero-extend u8 -> u16 -> i32 (unpack with zero), convert to
/// f32, `* a + b`, round and store. HWC uses the 6-register coefficient period; CHW
/// splits the block into R, G, B registers with `pshufb` and uses one broadcast
/// coefficient pair per channel.
///
/// # Safety
/// Blocks `head..` (`blocks` of them) inside the row (`FastAffine::row` contract);
/// inlined only into wrappers that enable SSSE3 when `FLIP || PLANAR`; `OUT` is f32 or
/// bf16; `MODE` matches the alignment of every output at pixel `head` (then every block
/// stays 16-aligned: it advances 192 or 96 bytes HWC, 64 or 32 per plane).
#[inline(always)]
unsafe fn sse_body<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    let bpx = 48 / g.c;
    let size = if OUT == F32 { 4 } else { 2 };
    // SAFETY: the coefficient arrays hold 24 floats = 6 unaligned 4-float loads.
    let (a, b): ([__m128; 6], [__m128; 6]) = unsafe {
        (
            std::array::from_fn(|i| _mm_loadu_ps(f.a.as_ptr().add(4 * i))),
            std::array::from_fn(|i| _mm_loadu_ps(f.b.as_ptr().add(4 * i))),
        )
    };
    let m = block_masks::<FLIP, PLANAR>(f);
    // SAFETY: SSE2 register arithmetic (baseline on x86-64); no memory is touched.
    let z = unsafe { _mm_setzero_si128() };
    let widen = |reg: __m128i| {
        // SAFETY: SSE2 register arithmetic (baseline on x86-64); no memory is touched.
        unsafe {
            let lo = _mm_unpacklo_epi8(reg, z);
            let hi = _mm_unpackhi_epi8(reg, z);
            [
                _mm_cvtepi32_ps(_mm_unpacklo_epi16(lo, z)),
                _mm_cvtepi32_ps(_mm_unpackhi_epi16(lo, z)),
                _mm_cvtepi32_ps(_mm_unpacklo_epi16(hi, z)),
                _mm_cvtepi32_ps(_mm_unpackhi_epi16(hi, z)),
            ]
        }
    };
    for blk in 0..blocks {
        let j = head + blk * bpx;
        // SAFETY: the block's 48 source bytes are pixels of the row (see block_src).
        let mut v = unsafe { load48(g.block_src::<FLIP>(j)) };
        if FLIP || PLANAR {
            // SAFETY: SSSE3 is enabled by the wrapper (function contract).
            v = unsafe { permute48(v, &m) };
        }
        for (ri, reg) in v.into_iter().enumerate() {
            let x = widen(reg);
            // SAFETY: SSE register arithmetic (baseline on x86-64); no memory is touched.
            let y: [__m128; 4] = unsafe {
                if PLANAR {
                    // Register ri is channel ri of 16 pixels; a[ri] is its coefficient.
                    let (ak, bk) = (_mm_set1_ps(f.a[ri]), _mm_set1_ps(f.b[ri]));
                    x.map(|x| _mm_add_ps(_mm_mul_ps(x, ak), bk))
                } else {
                    std::array::from_fn(|q| {
                        let i = (ri * 4 + q) % 6;
                        _mm_add_ps(_mm_mul_ps(x[q], a[i]), b[i])
                    })
                }
            };
            // HWC: elements 16ri.. of the block; CHW: pixels j.. of plane ri.
            let at = if PLANAR {
                ri * g.plane + j * size
            } else {
                (j * g.c + 16 * ri) * size
            };
            // SAFETY: 16 output elements inside the row (plane); alignment per MODE.
            unsafe { emit4x4::<OUT, MODE>(g.dst.add(at), y) };
        }
    }
}

/// The AVX2 block loop: per 8 source bytes one `vpmovzxbd` (8 bytes -> 8 i32), convert,
/// `* a + b`, round and store 8 elements. HWC: the 3-register coefficient period; CHW:
/// the `pshufb` split into R, G, B registers, two 8-pixel halves each.
///
/// # Safety
/// As [`sse_body`], with `MODE` meaning alignment to the store size (32 bytes for f32,
/// 16 for f16 / bf16); inlined only into wrappers enabling AVX2 (and F16C for f16).
#[inline(always)]
unsafe fn avx2_body<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    let bpx = 48 / g.c;
    let size = if OUT == F32 { 4 } else { 2 };
    let (pa, pb) = (f.a.as_ptr(), f.b.as_ptr());
    // SAFETY: 24 floats = 3 unaligned 8-float loads each.
    let (a, b): ([__m256; 3], [__m256; 3]) = unsafe {
        (
            std::array::from_fn(|i| _mm256_loadu_ps(pa.add(8 * i))),
            std::array::from_fn(|i| _mm256_loadu_ps(pb.add(8 * i))),
        )
    };
    let m = block_masks::<FLIP, PLANAR>(f);
    for blk in 0..blocks {
        let j = head + blk * bpx;
        // SAFETY: the block's 48 source bytes are pixels of the row (see block_src).
        let mut v = unsafe { load48(g.block_src::<FLIP>(j)) };
        if FLIP || PLANAR {
            // SAFETY: AVX2 implies SSSE3.
            v = unsafe { permute48(v, &m) };
        }
        for (ri, reg) in v.into_iter().enumerate() {
            // SAFETY: SSE2 register arithmetic (baseline on x86-64); no memory is touched.
            let halves = [reg, unsafe { _mm_unpackhi_epi64(reg, reg) }];
            for (hi, x) in halves.into_iter().enumerate() {
                // SAFETY: AVX / AVX2 register arithmetic, no memory touched; the CPU has
                // AVX2 (this fn's contract: inlined only into the `avx2` / `avx2_f16c`
                // wrappers, which `block_table` hands out only at `SimdLevel::Avx2`, a
                // level `FastAffine::new` caps at `SimdLevel::detect()`).
                let (y, at) = unsafe {
                    let x = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x));
                    if PLANAR {
                        let (ak, bk) = (_mm256_set1_ps(f.a[ri]), _mm256_set1_ps(f.b[ri]));
                        let y = _mm256_add_ps(_mm256_mul_ps(x, ak), bk);
                        (y, ri * g.plane + (j + 8 * hi) * size)
                    } else {
                        let i = ri * 2 + hi;
                        let y = _mm256_add_ps(_mm256_mul_ps(x, a[i % 3]), b[i % 3]);
                        (y, (j * g.c + 8 * i) * size)
                    }
                };
                // SAFETY: 8 output elements inside the row (plane ri when planar);
                // aligned per MODE (blocks advance 192 / 96 bytes HWC, 64 / 32 a plane).
                unsafe { emit8::<OUT, MODE>(g.dst.add(at), y) };
            }
        }
    }
}

/// [`sse_body`] with baseline SSE2 only (no flip, HWC).
///
/// # Safety
/// As [`sse_body`]; `!FLIP && !PLANAR`.
unsafe fn sse2<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    debug_assert!(!FLIP && !PLANAR, "pshufb needs SSSE3");
    // SAFETY: `sse_body`'s contract is this fn's; without a flip or planes (this fn's
    // contract too) it needs no SSSE3, only baseline SSE2.
    unsafe { sse_body::<FLIP, MODE, OUT, PLANAR>(f, g, head, blocks) }
}

/// [`sse_body`] compiled with SSSE3 so `pshufb` inlines.
///
/// # Safety
/// As [`sse_body`]; the CPU has SSSE3.
#[target_feature(enable = "ssse3")]
unsafe fn ssse3<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    // SAFETY: forwarded contract; this function enables SSSE3.
    unsafe { sse_body::<FLIP, MODE, OUT, PLANAR>(f, g, head, blocks) }
}

/// [`avx2_body`] compiled with AVX2.
///
/// # Safety
/// As [`avx2_body`]; the CPU has AVX2; `OUT != F16`.
#[target_feature(enable = "avx2")]
unsafe fn avx2<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    // SAFETY: forwarded contract; this function enables AVX2.
    unsafe { avx2_body::<FLIP, MODE, OUT, PLANAR>(f, g, head, blocks) }
}

/// [`avx2_body`] compiled with AVX2 and F16C, for f16 output.
///
/// # Safety
/// As [`avx2_body`]; the CPU has AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn avx2_f16c<const FLIP: bool, const MODE: u8, const OUT: u8, const PLANAR: bool>(
    f: &FastAffine,
    g: Geometry,
    head: usize,
    blocks: usize,
) {
    // SAFETY: forwarded contract; this function enables AVX2 and F16C.
    unsafe { avx2_body::<FLIP, MODE, OUT, PLANAR>(f, g, head, blocks) }
}

#[cfg(test)]
mod tests {
    //! The vector roundings against `elem`'s scalar ones on f32 bit patterns: every sign
    //! and exponent (so zeros, subnormals, the f16 subnormal and overflow ranges,
    //! infinities and NaNs with many payloads) times mantissa tails around each
    //! rounding boundary (bf16 ties at 0x8000 of the low half, f16 ties at 0x1000 of the
    //! low 13 bits, with odd and even kept bits), plus an exhaustive sweep (`--ignored`).
    use super::*;
    use crate::ops::elem::{f32_to_bf16, f32_to_f16};

    const TAILS: [u32; 16] = [
        0, 1, 0x0fff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001, 0x9000, 0xa5a5,
        0xe000, 0xefff, 0xf000, 0xffff,
    ];

    fn patterns() -> impl Iterator<Item = u32> {
        (0..=0xffffu32).flat_map(|hi| TAILS.iter().map(move |&t| (hi << 16) | t))
    }

    /// Checks the 128-bit bf16 rounding (and the 256-bit ones where the CPU has them) on
    /// 8 lanes of bit patterns; returns the number of mismatches.
    fn check8(bits: [u32; 8]) -> usize {
        let x = bits.map(f32::from_bits);
        let want_bf = x.map(f32_to_bf16);
        let want_h = x.map(f32_to_f16);
        let mut bad = 0;
        let mut got = [0u16; 8];
        // SAFETY: SSE2 is baseline; 8 u16 = 16 bytes stored into `got` (loadu / storeu).
        unsafe {
            let lo = _mm_loadu_ps(x.as_ptr());
            let hi = _mm_loadu_ps(x.as_ptr().add(4));
            _mm_storeu_si128(got.as_mut_ptr().cast(), bf16x4x2(lo, hi));
        }
        bad += usize::from(got != want_bf);
        if is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 checked; 32 bytes loaded from `x`, 16 stored into `got`.
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr());
                _mm_storeu_si128(got.as_mut_ptr().cast(), bf16x8::<true>(v));
            }
            bad += usize::from(got != want_bf);
            // SAFETY: as above.
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr());
                _mm_storeu_si128(got.as_mut_ptr().cast(), bf16x8::<false>(v));
            }
            let nan = x.iter().any(|v| v.is_nan());
            bad += usize::from(!nan && got != want_bf);
            if is_x86_feature_detected!("f16c") {
                // SAFETY: AVX2 and F16C checked; same buffers.
                unsafe {
                    let v = _mm256_loadu_ps(x.as_ptr());
                    _mm_storeu_si128(got.as_mut_ptr().cast(), f16x8::<false>(v));
                }
                bad += usize::from(!nan && got != want_h);
                // SAFETY: AVX2 and F16C checked; same buffers.
                unsafe {
                    let v = _mm256_loadu_ps(x.as_ptr());
                    _mm_storeu_si128(got.as_mut_ptr().cast(), f16x8::<true>(v));
                }
                if got != want_h {
                    bad += 1;
                    eprintln!("f16 {bits:08x?}: got {got:04x?} want {want_h:04x?}");
                }
            }
        }
        bad
    }

    /// The AVX-512 roundings on 16 lanes (0 where the CPU lacks AVX-512 F).
    fn check16(bits: &[u32]) -> usize {
        if !is_x86_feature_detected!("avx512f") {
            return 0;
        }
        let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        let want_bf: Vec<u16> = x.iter().map(|&v| f32_to_bf16(v)).collect();
        let want_h: Vec<u16> = x.iter().map(|&v| f32_to_f16(v)).collect();
        let nan = x.iter().any(|v| v.is_nan());
        let mut got = [0u16; 16];
        let mut bad = 0;
        let mut run = |conv: unsafe fn(__m512) -> __m256i| {
            // SAFETY: AVX-512 F checked; 64 bytes loaded from `x`, 32 stored into `got`.
            unsafe {
                let v = _mm512_loadu_ps(x.as_ptr());
                _mm256_storeu_si256(got.as_mut_ptr().cast(), conv(v));
            }
            got
        };
        bad += usize::from(run(avx512::bf16x16::<true>) != want_bf[..]);
        bad += usize::from(!nan && run(avx512::bf16x16::<false>) != want_bf[..]);
        bad += usize::from(run(avx512::f16x16::<true>) != want_h[..]);
        bad += usize::from(!nan && run(avx512::f16x16::<false>) != want_h[..]);
        bad
    }

    fn sweep(it: impl Iterator<Item = u32>) -> usize {
        let v: Vec<u32> = it.collect();
        let narrow: usize = v
            .chunks_exact(8)
            .map(|c| check8(c.try_into().unwrap()))
            .sum();
        narrow + v.chunks_exact(16).map(check16).sum::<usize>()
    }

    #[test]
    fn half_roundings_match_scalar_on_bit_patterns() {
        assert_eq!(sweep(patterns()), 0);
    }

    #[test]
    #[ignore = "2^32 values: run with --release -- --ignored"]
    fn half_roundings_match_scalar_on_every_f32() {
        let bad: usize = (0..=0xffffu32)
            .map(|hi| sweep((0..=0xffffu32).map(|lo| (hi << 16) | lo)))
            .sum();
        assert_eq!(bad, 0);
    }
}

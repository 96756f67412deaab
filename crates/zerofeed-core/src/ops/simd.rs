//! Explicit-SIMD row kernels for the hot path: `u8` HWC pixels -> `f32` `x * a_c + b_c`
//! (Normalize, or a plain `Cast(float32)` with `a = 1, b = 0`), optionally mirrored.
//!
//! Why by hand: LLVM's auto-vectorized loop over coefficient rows (see `kernels.rs`)
//! streams two extra f32 rows (`a`, `b`) through the core per output element and cannot
//! read a row backwards, so a flip needs a gathered scratch row. Here a block of 48
//! source bytes is widened to 48 floats with the coefficients held in registers (the
//! `a`/`b` pattern repeats every 24 floats for any `C` dividing 24), a flip is a byte
//! shuffle of the block read from the mirrored position, and the output can go out with
//! non-temporal stores, which skip the read-for-ownership of the destination lines.
//!
//! Bit-exactness: every element is `(x as f32) * a + b` with a separate multiply and add,
//! both rounded to nearest, exactly as the scalar kernel computes it. FMA is deliberately
//! not used even where the CPU has it: a fused multiply-add rounds once and would make the
//! output depend on the machine; determinism across machines matters more than the one
//! instruction (the loop is memory bound anyway).
//!
//! The instruction set is detected once, when the plan is compiled ([`SimdLevel::detect`]),
//! never per row. SSE2 is part of x86-64, so it needs no check; a flip needs SSSE3
//! (`pshufb`); AVX2 widens 8 bytes at a time. Other targets use the portable kernels.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Outputs at least this large (bytes per sample) are written with non-temporal stores:
/// they cannot stay in cache until the consumer reads them anyway (a batch of 32 such
/// samples is megabytes), so bypassing the cache saves the read of every destination line.
/// Smaller outputs are likely still cached when read, so they use ordinary stores.
pub(crate) const STREAM_MIN_BYTES: usize = 256 << 10;

/// The instruction set a plan's fast `u8 -> f32` row kernel uses, best first in `Ord`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// No explicit SIMD: the portable (auto-vectorized) kernels.
    Scalar,
    /// SSE2 (every x86-64 CPU): no flip.
    Sse2,
    /// SSE2 + SSSE3 `pshufb`: flips too.
    Ssse3,
    /// AVX2: 8 floats per instruction.
    Avx2,
}

impl SimdLevel {
    /// The best level this CPU supports (a run-time check; call it once, not per row).
    pub fn detect() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            // Every AVX2 CPU has SSSE3; Rust's `avx2` feature implies it too.
            if is_x86_feature_detected!("avx2") {
                SimdLevel::Avx2
            } else if is_x86_feature_detected!("ssse3") {
                SimdLevel::Ssse3
            } else {
                SimdLevel::Sse2
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            SimdLevel::Scalar
        }
    }
}

/// Store flavours, as const generic arguments of the block loops.
const UNALIGNED: u8 = 0;
const ALIGNED: u8 = 1;
const STREAM: u8 = 2;

/// A compiled fast row kernel: the level, the channel count and the coefficients laid out
/// as one 24-float period, plus the byte shuffles that mirror a 48-byte block.
#[derive(Clone, Debug)]
pub(crate) struct FastAffine {
    level: SimdLevel,
    c: usize,
    /// `a[i % c]` for `i < 24`: element `i` of any block that starts on a pixel boundary.
    a: [f32; 24],
    b: [f32; 24],
    /// `rev[k][r]`: the `pshufb` control that moves the bytes of output register `k` of a
    /// mirrored 48-byte block that come from input register `r` (0x80 zeroes the rest).
    rev: [[[u8; 16]; 3]; 3],
}

impl FastAffine {
    /// A kernel for `c` channels with per-channel `a`, `b`; `None` where no SIMD level
    /// applies (`level == Scalar`, a non-x86 target, or `c` not dividing 24).
    pub(crate) fn new(level: SimdLevel, c: usize, a: &[f32], b: &[f32]) -> Option<FastAffine> {
        let level = level.min(SimdLevel::detect());
        if level == SimdLevel::Scalar || c == 0 || 24 % c != 0 || a.len() < c || b.len() < c {
            return None;
        }
        let mut rev = [[[0x80u8; 16]; 3]; 3];
        let pixels = 48 / c;
        for o in 0..48 {
            // Output byte o is channel o % c of output pixel o / c, which is source pixel
            // pixels - 1 - o / c of the block.
            let i = (pixels - 1 - o / c) * c + o % c;
            rev[o / 16][i / 16][o % 16] = (i % 16) as u8;
        }
        Some(FastAffine {
            level,
            c,
            a: std::array::from_fn(|i| a[i % c]),
            b: std::array::from_fn(|i| b[i % c]),
            rev,
        })
    }

    /// The instruction set in use.
    pub(crate) fn level(&self) -> SimdLevel {
        self.level
    }

    /// The channel count the coefficients are laid out for.
    pub(crate) fn channels(&self) -> usize {
        self.c
    }

    /// Per-channel coefficients `(a, b)`, to rebuild the kernel at another level.
    pub(crate) fn coefs(&self) -> (&[f32], &[f32]) {
        (&self.a[..self.c], &self.b[..self.c])
    }

    /// Whether [`FastAffine::row`] can read rows backwards (a flip needs `pshufb`).
    pub(crate) fn can_flip(&self) -> bool {
        self.level >= SimdLevel::Ssse3
    }

    /// Writes `px` pixels (`px * c` f32 values, native endian) to `dst`, read from the
    /// `px * c` contiguous bytes at `src`, left to right, or right to left when `flip`.
    /// `stream` asks for non-temporal stores where `dst` can be aligned; the caller must
    /// then call [`store_fence`] before anyone else reads `dst`.
    ///
    /// # Safety
    /// `src..src + px*c` readable, `dst..dst + px*c*4` writable, the two disjoint, and
    /// `flip` only when [`FastAffine::can_flip`].
    pub(crate) unsafe fn row(
        &self,
        src: *const u8,
        dst: *mut u8,
        px: usize,
        flip: bool,
        stream: bool,
    ) {
        debug_assert!(!flip || self.can_flip());
        let c = self.c;
        let align = if self.level == SimdLevel::Avx2 {
            32
        } else {
            16
        };
        // Whole pixels written one by one until dst is vector-aligned, so the block
        // loop's pattern still starts on a pixel; when no pixel count gets there (a dst
        // not 4-aligned, or C = 4 and dst at 8 mod 16), every store is unaligned.
        let (head, mode) = match (0..align / 4).find(|p| (dst as usize + p * c * 4) % align == 0) {
            Some(p) if p <= px => (p, if stream { STREAM } else { ALIGNED }),
            _ => (0, UNALIGNED),
        };
        let bpx = 48 / c;
        let blocks = (px - head) / bpx;
        let tail = head + blocks * bpx;
        let g = Geometry { src, dst, px, c };
        for j in (0..head).chain(tail..px) {
            // SAFETY: j < px, inside the caller's row.
            unsafe { self.pixel(g, j, flip) };
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: blocks cover pixels head..tail <= px of the caller's row; flip only with
        // SSSE3 (caller contract), AVX2 only when detected (the level is capped by
        // `detect` in `new`); the store mode matches dst's alignment at pixel `head`.
        unsafe {
            let r = (head, blocks);
            match (self.level, flip, mode) {
                (SimdLevel::Avx2, false, UNALIGNED) => avx2::<false, UNALIGNED>(self, g, r),
                (SimdLevel::Avx2, false, ALIGNED) => avx2::<false, ALIGNED>(self, g, r),
                (SimdLevel::Avx2, false, _) => avx2::<false, STREAM>(self, g, r),
                (SimdLevel::Avx2, true, UNALIGNED) => avx2::<true, UNALIGNED>(self, g, r),
                (SimdLevel::Avx2, true, ALIGNED) => avx2::<true, ALIGNED>(self, g, r),
                (SimdLevel::Avx2, true, _) => avx2::<true, STREAM>(self, g, r),
                (_, false, UNALIGNED) => sse::<false, UNALIGNED>(self, g, r),
                (_, false, ALIGNED) => sse::<false, ALIGNED>(self, g, r),
                (_, false, _) => sse::<false, STREAM>(self, g, r),
                (_, true, UNALIGNED) => ssse3_flip::<UNALIGNED>(self, g, r),
                (_, true, ALIGNED) => ssse3_flip::<ALIGNED>(self, g, r),
                (_, true, _) => ssse3_flip::<STREAM>(self, g, r),
            }
        }
    }

    /// One output pixel `j`, the scalar way (heads, tails): the same `x * a + b`.
    ///
    /// # Safety
    /// `j < g.px` and the [`FastAffine::row`] contract.
    #[inline(always)]
    unsafe fn pixel(&self, g: Geometry, j: usize, flip: bool) {
        let c = g.c;
        let sj = if flip { g.px - 1 - j } else { j };
        for k in 0..c {
            // SAFETY: pixel sj < px of the source row, pixel j < px of the output row;
            // f32 stores are unaligned writes because dst carries no alignment promise.
            unsafe {
                let x = *g.src.add(sj * c + k);
                let y = f32::from(x) * self.a[k] + self.b[k];
                g.dst.add((j * c + k) * 4).cast::<f32>().write_unaligned(y);
            }
        }
    }
}

/// Makes non-temporal stores of this thread visible in order before later stores: call it
/// once after a run that streamed, before publishing the output to another thread.
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` is SSE (baseline on x86-64) and has no memory operands.
    unsafe {
        _mm_sfence()
    };
}

/// Asks for the `len` bytes at `p` to be brought into L1 ahead of use: strided crop rows
/// are short (768 bytes of every 1536 for a 256 crop of 512) and hardware prefetchers
/// neither learn such short streams in time nor stop at their end.
#[inline]
pub(crate) fn prefetch(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..len + 63).step_by(64) {
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off.min(len.saturating_sub(1))).cast())
        };
    }
}

/// How many rows ahead of the one being converted [`prefetch`] asks for: about 3 KB in
/// flight for a 256-pixel RGB crop, enough to cover memory latency at the kernel's speed;
/// measured on the Loader workload: 0.95-1.03x the copyto floor without, 1.08-1.23x with.
pub(crate) const PREFETCH_ROWS: usize = 4;

/// One row as the block loops see it.
#[derive(Clone, Copy)]
struct Geometry {
    src: *const u8,
    dst: *mut u8,
    px: usize,
    c: usize,
}

impl Geometry {
    /// Source address of the 48-byte block that makes output pixels `j..j + 48 / c`.
    #[inline(always)]
    fn block_src<const FLIP: bool>(self, j: usize) -> *const u8 {
        let first = if FLIP { self.px - j - 48 / self.c } else { j };
        self.src.wrapping_add(first * self.c)
    }
}

/// Stores 4 floats at `p` the `MODE` way.
///
/// # Safety
/// 16 writable bytes at `p`, 16-aligned unless `MODE == UNALIGNED`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store4<const MODE: u8>(p: *mut u8, v: __m128) {
    // SAFETY: caller contract (bounds, and alignment for the aligned forms).
    unsafe {
        match MODE {
            UNALIGNED => _mm_storeu_ps(p.cast(), v),
            ALIGNED => _mm_store_ps(p.cast(), v),
            _ => _mm_stream_ps(p.cast(), v),
        }
    }
}

/// Reverses the pixel order of a 48-byte block held in three registers.
///
/// # Safety
/// Needs SSSE3.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "ssse3")]
unsafe fn mirror(r: [__m128i; 3], m: &[[__m128i; 3]; 3]) -> [__m128i; 3] {
    // Explicit rather than a closure: the shuffles must inline into SSSE3/AVX2 code.
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

/// Loads the mirror shuffles into registers (once per row, not per block).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mirror_masks(f: &FastAffine) -> [[__m128i; 3]; 3] {
    // SAFETY: each mask is a 16-byte array; loadu needs no alignment.
    f.rev
        .map(|row| row.map(|m| unsafe { _mm_loadu_si128(m.as_ptr().cast()) }))
}

/// Loads a 48-byte block as three registers.
///
/// # Safety
/// 48 readable bytes at `p` (any alignment: loadu).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load48(p: *const u8) -> [__m128i; 3] {
    // SAFETY: caller contract.
    unsafe {
        [
            _mm_loadu_si128(p.cast()),
            _mm_loadu_si128(p.add(16).cast()),
            _mm_loadu_si128(p.add(32).cast()),
        ]
    }
}

/// The SSE2 block loop: per 48 source bytes, zero-extend u8 -> u16 -> i32 (unpack with
/// zero), convert to f32, `* a + b` with the 6-register coefficient period, 12 stores.
///
/// # Safety
/// Blocks `r.0..` (`r.1` of them) inside the row; `mirror` is only reached when `FLIP`,
/// which callers instantiate only from an SSSE3 function; `MODE` matches the alignment of
/// the output at pixel `r.0` (then every block stays aligned: 192 bytes per block).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sse<const FLIP: bool, const MODE: u8>(f: &FastAffine, g: Geometry, r: (usize, usize)) {
    let (head, blocks) = r;
    let bpx = 48 / g.c;
    // SAFETY: the coefficient arrays hold 24 floats = 6 unaligned 4-float loads.
    let (a, b): ([__m128; 6], [__m128; 6]) = unsafe {
        (
            std::array::from_fn(|i| _mm_loadu_ps(f.a.as_ptr().add(4 * i))),
            std::array::from_fn(|i| _mm_loadu_ps(f.b.as_ptr().add(4 * i))),
        )
    };
    let masks = if FLIP { Some(mirror_masks(f)) } else { None };
    let z = _mm_setzero_si128();
    for blk in 0..blocks {
        let j = head + blk * bpx;
        // SAFETY: the block's 48 source bytes are pixels of the row (see block_src).
        let mut v = unsafe { load48(g.block_src::<FLIP>(j)) };
        if let Some(m) = &masks {
            // SAFETY: FLIP is only instantiated with SSSE3 enabled (function contract).
            v = unsafe { mirror(v, m) };
        }
        // SAFETY: output pixels j..j + bpx are 48 floats = 192 bytes inside the row.
        let out = unsafe { g.dst.add(j * g.c * 4) };
        for (ri, reg) in v.into_iter().enumerate() {
            let lo = _mm_unpacklo_epi8(reg, z);
            let hi = _mm_unpackhi_epi8(reg, z);
            let q = [
                _mm_unpacklo_epi16(lo, z),
                _mm_unpackhi_epi16(lo, z),
                _mm_unpacklo_epi16(hi, z),
                _mm_unpackhi_epi16(hi, z),
            ];
            for (qi, x) in q.into_iter().enumerate() {
                let i = ri * 4 + qi;
                let y = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(x), a[i % 6]), b[i % 6]);
                // SAFETY: float 4i.. of the block, in bounds; aligned per MODE contract.
                unsafe { store4::<MODE>(out.add(16 * i), y) };
            }
        }
    }
}

/// [`sse`] mirrored, compiled with SSSE3 so `pshufb` inlines.
///
/// # Safety
/// As [`sse`]; the CPU has SSSE3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn ssse3_flip<const MODE: u8>(f: &FastAffine, g: Geometry, r: (usize, usize)) {
    // SAFETY: forwarded contract; this function enables SSSE3 for `mirror`.
    unsafe { sse::<true, MODE>(f, g, r) }
}

/// The AVX2 block loop: per 48 source bytes, six `vpmovzxbd` (8 bytes -> 8 i32), convert,
/// `* a + b` with the 3-register coefficient period, 6 stores of 32 bytes.
///
/// # Safety
/// As [`sse`], with `MODE` meaning 32-byte alignment; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<const FLIP: bool, const MODE: u8>(f: &FastAffine, g: Geometry, r: (usize, usize)) {
    let (head, blocks) = r;
    let bpx = 48 / g.c;
    let (pa, pb) = (f.a.as_ptr(), f.b.as_ptr());
    // SAFETY: 24 floats = 3 unaligned 8-float loads each.
    let (a, b) = unsafe {
        (
            [
                _mm256_loadu_ps(pa),
                _mm256_loadu_ps(pa.add(8)),
                _mm256_loadu_ps(pa.add(16)),
            ],
            [
                _mm256_loadu_ps(pb),
                _mm256_loadu_ps(pb.add(8)),
                _mm256_loadu_ps(pb.add(16)),
            ],
        )
    };
    let masks = mirror_masks(f);
    for blk in 0..blocks {
        let j = head + blk * bpx;
        // SAFETY: the block's 48 source bytes are pixels of the row (see block_src).
        let mut v = unsafe { load48(g.block_src::<FLIP>(j)) };
        if FLIP {
            // SAFETY: AVX2 implies SSSE3.
            v = unsafe { mirror(v, &masks) };
        }
        // SAFETY: output pixels j..j + bpx are 192 bytes inside the row.
        let out = unsafe { g.dst.add(j * g.c * 4) };
        for (ri, reg) in v.into_iter().enumerate() {
            let halves = [reg, _mm_unpackhi_epi64(reg, reg)];
            for (hi, x) in halves.into_iter().enumerate() {
                let i = ri * 2 + hi;
                let x = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x));
                let y = _mm256_add_ps(_mm256_mul_ps(x, a[i % 3]), b[i % 3]);
                // SAFETY: floats 8i..8i+8 of the block, in bounds; 32-aligned for the
                // aligned and streaming forms (MODE contract: 192-byte blocks keep it).
                unsafe {
                    let p = out.add(32 * i).cast::<f32>();
                    match MODE {
                        UNALIGNED => _mm256_storeu_ps(p, y),
                        ALIGNED => _mm256_store_ps(p, y),
                        _ => _mm256_stream_ps(p, y),
                    }
                }
            }
        }
    }
}

//! Explicit-SIMD row kernels for the hot path: `u8` pixels -> `x * a_c + b_c` (Normalize,
//! or a plain cast with `a = 1, b = 0`) written as `f32`, `f16` or `bf16`, in HWC order or,
//! for three channels, as CHW planes; optionally mirrored.
//!
//! Why by hand: LLVM's auto-vectorized loop over coefficient rows (see `kernels.rs`)
//! streams two extra f32 rows (`a`, `b`) through the core per output element, cannot
//! read a row backwards (a flip needs a gathered scratch row), gathers CHW planes one
//! element at a time, and keeps the half-float conversions scalar. Here a block of 48
//! source bytes is widened to 48 floats with the coefficients held in registers (the
//! `a`/`b` pattern repeats every 24 floats for any `C` dividing 24); a flip and the
//! RGB -> planes split are byte shuffles of the block (`pshufb`, one network for both);
//! f16 is one F16C instruction per 8 floats, bf16 a few integer ops; and the output can
//! go out with non-temporal stores, which skip the read-for-ownership of the
//! destination lines. The block loops themselves live in `simd_x86.rs`.
//!
//! Bit-exactness: every element is `(x as f32) * a + b` with a separate multiply and add,
//! both rounded to nearest, exactly as the scalar kernel computes it, then rounded to the
//! output type exactly as `elem::f32_to_f16` / `elem::f32_to_bf16` do (NaNs included,
//! see `simd_x86.rs`). FMA is deliberately not used even where the CPU has it: a fused
//! multiply-add rounds once and would make the output depend on the machine;
//! determinism across machines matters more than the one instruction (the loop is memory
//! bound anyway).
//!
//! The instruction set is detected once, when the plan is compiled ([`SimdLevel::detect`],
//! F16C in [`FastAffine::new`]), never per row. SSE2 is part of x86-64, so it needs no
//! check; a flip and CHW need SSSE3 (`pshufb`); AVX2 widens 8 bytes at a time; f16
//! output needs AVX2 and F16C; AVX-512 (F, BW, VBMI: `simd_x86/avx512.rs`) widens 16 and
//! mirrors or splits a block with one `vpermb`. Everything else uses the portable kernels.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::elem::{f32_to_bf16, f32_to_f16};
#[cfg(target_arch = "x86_64")]
use super::simd_x86::{block_perm, block_table, BlockFn};
use crate::dtype::DType;

/// Outputs at least this large (bytes per sample) are written with non-temporal stores:
/// they cannot stay in cache until the consumer reads them anyway (a batch of 32 such
/// samples is megabytes), so bypassing the cache saves the read of every destination line.
/// Smaller outputs are likely still cached when read, so they use ordinary stores.
pub(crate) const STREAM_MIN_BYTES: usize = 256 << 10;

/// The instruction set a plan's fast `u8 -> float` row kernel uses, best first in `Ord`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// No explicit SIMD: the portable (auto-vectorized) kernels.
    Scalar,
    /// SSE2 (every x86-64 CPU): HWC f32 / bf16, no flip.
    Sse2,
    /// SSE2 + SSSE3 `pshufb`: flips and CHW planes too.
    Ssse3,
    /// AVX2: 8 floats per instruction; f16 output when the CPU also has F16C.
    Avx2,
    /// AVX-512 F + BW + VBMI: 16 floats per instruction, a flip or the plane split one
    /// `vpermb` per block.
    Avx512,
}

impl SimdLevel {
    /// The best level this CPU supports (a run-time check; call it once, not per row).
    pub fn detect() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            // Every AVX2 CPU has SSSE3; Rust's `avx2` feature implies it too.
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vbmi")
            {
                SimdLevel::Avx512
            } else if is_x86_feature_detected!("avx2") {
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

/// Whether the CPU converts f32 -> f16 in hardware (`vcvtps2ph`).
fn detect_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Store flavours, as const generic arguments of the block loops.
pub(super) const UNALIGNED: u8 = 0;
pub(super) const ALIGNED: u8 = 1;
pub(super) const STREAM: u8 = 2;

/// The output element type of a fast kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutKind {
    F32,
    F16,
    Bf16,
}

impl OutKind {
    /// The kind writing `dtype`, if a fast kernel can.
    pub(crate) fn of(dtype: DType) -> Option<OutKind> {
        match dtype {
            DType::F32 => Some(OutKind::F32),
            DType::F16 => Some(OutKind::F16),
            DType::BF16 => Some(OutKind::Bf16),
            _ => None,
        }
    }

    /// Bytes per output element.
    pub(crate) fn size(self) -> usize {
        match self {
            OutKind::F32 => 4,
            OutKind::F16 | OutKind::Bf16 => 2,
        }
    }
}

/// A compiled fast row kernel: the level, channel count, output type and layout, the
/// coefficients laid out as one 24-float period, and the byte shuffles that mirror a
/// 48-byte block or split it into channel planes.
#[derive(Clone, Debug)]
pub(crate) struct FastAffine {
    level: SimdLevel,
    c: usize,
    out: OutKind,
    /// CHW output (then `c == 3`): channel `k` goes to the plane `k * plane` bytes on.
    planar: bool,
    /// `a[i % c]` for `i < 24`: element `i` of any block that starts on a pixel boundary.
    pub(super) a: [f32; 24],
    pub(super) b: [f32; 24],
    /// `rev[k][r]`: the `pshufb` control that moves the bytes of output register `k` of a
    /// mirrored 48-byte block that come from input register `r` (0x80 zeroes the rest).
    pub(super) rev: [[[u8; 16]; 3]; 3],
    /// `split[flip][k][r]`: the same for channel `k` of 16 RGB pixels (one register per
    /// channel), reading the block mirrored when `flip == 1`.
    pub(super) split: [[[[u8; 16]; 3]; 3]; 2],
    /// `vperm[flip]`: the AVX-512 `vpermb` control doing what `rev` / `split` do.
    #[cfg(target_arch = "x86_64")]
    pub(super) vperm: [[u8; 64]; 2],
    /// The block loop for `[flip][store mode]`, picked here once (not per row).
    #[cfg(target_arch = "x86_64")]
    blocks: [[BlockFn; 3]; 2],
}

impl FastAffine {
    /// A kernel for `c` channels with per-channel `a`, `b`, writing `out`, as CHW planes
    /// when `planar`. `None` where no SIMD level applies: `level == Scalar`, a non-x86
    /// target, `c` not dividing 24, CHW without SSSE3 or with `c != 3`, f16 without AVX2
    /// and F16C (checked here, at plan compile time).
    pub(crate) fn new(
        level: SimdLevel,
        c: usize,
        a: &[f32],
        b: &[f32],
        out: OutKind,
        planar: bool,
    ) -> Option<FastAffine> {
        let level = level.min(SimdLevel::detect());
        if level == SimdLevel::Scalar || c == 0 || 24 % c != 0 || a.len() < c || b.len() < c {
            return None;
        }
        if planar && (c != 3 || level < SimdLevel::Ssse3) {
            return None;
        }
        if out == OutKind::F16 && (level < SimdLevel::Avx2 || !detect_f16c()) {
            return None;
        }
        // Finite coefficients never make a NaN (finite * u8 + finite is finite or +-inf).
        let finite = a[..c].iter().chain(&b[..c]).all(|v| v.is_finite());
        let mut rev = [[[0x80u8; 16]; 3]; 3];
        let pixels = 48 / c;
        for o in 0..48 {
            // Output byte o is channel o % c of output pixel o / c, which is source pixel
            // pixels - 1 - o / c of the block.
            let i = (pixels - 1 - o / c) * c + o % c;
            rev[o / 16][i / 16][o % 16] = (i % 16) as u8;
        }
        let mut split = [[[[0x80u8; 16]; 3]; 3]; 2];
        for (flip, masks) in split.iter_mut().enumerate() {
            for (k, mask) in masks.iter_mut().enumerate() {
                // Byte o of channel register k is channel k of output pixel o, source
                // pixel p = o (or 15 - o mirrored) of the 16-pixel RGB block.
                let pixels = (0..16).map(|o| (o, if flip == 1 { 15 - o } else { o }));
                for (o, p) in pixels {
                    let i = p * 3 + k;
                    mask[i / 16][o] = (i % 16) as u8;
                }
            }
        }
        Some(FastAffine {
            level,
            c,
            out,
            planar,
            a: std::array::from_fn(|i| a[i % c]),
            b: std::array::from_fn(|i| b[i % c]),
            rev,
            split,
            #[cfg(target_arch = "x86_64")]
            vperm: [false, true].map(|flip| block_perm(c, planar, flip)),
            #[cfg(target_arch = "x86_64")]
            blocks: block_table(level, out, planar, finite),
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

    /// The output element type.
    pub(crate) fn out(&self) -> OutKind {
        self.out
    }

    /// Whether the output is CHW planes.
    pub(crate) fn planar(&self) -> bool {
        self.planar
    }

    /// Per-channel coefficients `(a, b)`, to rebuild the kernel at another level.
    pub(crate) fn coefs(&self) -> (&[f32], &[f32]) {
        (&self.a[..self.c], &self.b[..self.c])
    }

    /// Whether [`FastAffine::row`] can read rows backwards (a flip needs `pshufb`).
    pub(crate) fn can_flip(&self) -> bool {
        self.level >= SimdLevel::Ssse3
    }

    /// Converts `px` pixels read from the `px * c` contiguous bytes at `src`, left to
    /// right, or right to left when `flip`, writing `px * c` output elements (native
    /// endian) to `dst`: HWC, or for a planar kernel `px` elements to each of the planes
    /// at `dst + k * plane` (bytes). `stream` asks for non-temporal stores where `dst`
    /// can be aligned; the caller must then call [`store_fence`] before anyone else reads
    /// `dst`.
    ///
    /// # Safety
    /// `src..src + px*c` readable; `dst..dst + px*c*size` writable (HWC) or, planar,
    /// `dst + k*plane..+ px*size` for every `k < c`; source and output disjoint; `flip`
    /// only when [`FastAffine::can_flip`].
    pub(crate) unsafe fn row(
        &self,
        src: *const u8,
        dst: *mut u8,
        plane: usize,
        px: usize,
        flip: bool,
        stream: bool,
    ) {
        debug_assert!(!flip || self.can_flip());
        let c = self.c;
        // The widest store of the block loop.
        let align = match (self.level, self.out) {
            (SimdLevel::Avx512, OutKind::F32) => 64,
            (SimdLevel::Avx512, _) | (SimdLevel::Avx2, OutKind::F32) => 32,
            _ => 16,
        };
        // Output bytes one pixel advances the (first) store address by.
        let step = if self.planar { 1 } else { c } * self.out.size();
        // Whole pixels written one by one until dst is vector-aligned, so the block
        // loop's pattern still starts on a pixel; when no pixel count gets there (a dst
        // not element-aligned, C = 4 f32 at 8 mod 16, planes not all aligned alike),
        // every store is unaligned.
        let planes_alike = !self.planar || plane.is_multiple_of(align);
        let head = (0..align).find(|p| (dst as usize + p * step).is_multiple_of(align));
        let (head, mode) = match head {
            Some(p) if p <= px && planes_alike => (p, if stream { STREAM } else { ALIGNED }),
            _ => (0, UNALIGNED),
        };
        let bpx = 48 / c;
        let blocks = (px - head) / bpx;
        let tail = head + blocks * bpx;
        let g = Geometry {
            src,
            dst,
            plane,
            px,
            c,
        };
        for j in (0..head).chain(tail..px) {
            // SAFETY: j < px, inside the caller's row.
            unsafe { self.pixel(g, j, flip) };
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: blocks cover pixels head..tail <= px of the caller's row; the table was
        // built in `new` for a level (and F16C) this CPU has, flip only with SSSE3 (caller
        // contract); the store mode matches dst's alignment at pixel `head` in every plane.
        unsafe {
            (self.blocks[flip as usize][mode as usize])(self, g, head, blocks)
        };
    }

    /// One output pixel `j`, the scalar way (heads, tails): the same `x * a + b`, rounded
    /// by the same functions as the portable kernels.
    ///
    /// # Safety
    /// `j < g.px` and the [`FastAffine::row`] contract.
    #[inline(always)]
    unsafe fn pixel(&self, g: Geometry, j: usize, flip: bool) {
        let c = g.c;
        let size = self.out.size();
        let sj = if flip { g.px - 1 - j } else { j };
        for k in 0..c {
            let at = if self.planar {
                k * g.plane + j * size
            } else {
                (j * c + k) * size
            };
            // SAFETY: pixel sj < px of the source row, element (j, k) of the output row
            // (plane k when planar); unaligned writes because dst carries no alignment
            // promise.
            unsafe {
                let x = *g.src.add(sj * c + k);
                let y = f32::from(x) * self.a[k] + self.b[k];
                let d = g.dst.add(at);
                match self.out {
                    OutKind::F32 => d.cast::<f32>().write_unaligned(y),
                    OutKind::F16 => d.cast::<u16>().write_unaligned(f32_to_f16(y)),
                    OutKind::Bf16 => d.cast::<u16>().write_unaligned(f32_to_bf16(y)),
                }
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

/// Asks for the `len` bytes at `p` to be brought into L2 (`prefetcht1`) ahead of use: the
/// kernel's crop rows. Into L1 (`prefetcht0`) each line holds one of the core's few L1
/// miss buffers until it arrives, which caps the lines in flight: reading 256 crop rows
/// (768 of every 1536 bytes) measured 29k samples/s with T0 hints, 56-60k with T1 (AMD
/// EPYC, `examples`-style read loop), so the kernel was read bound at ~17k samples/s.
/// L2 is a few cycles from L1, which the block loop's loads absorb.
#[inline]
pub(crate) fn prefetch_l2(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..len + 63).step_by(64) {
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(off.min(len.saturating_sub(1))).cast())
        };
    }
}

/// How many rows ahead of the one being converted [`prefetch_l2`] asks for: about 6 KB in
/// flight for a 256-pixel RGB crop, enough to cover memory latency at the kernel's speed.
pub(crate) const PREFETCH_ROWS: usize = 8;

/// One row as the block loops see it.
#[derive(Clone, Copy)]
pub(super) struct Geometry {
    pub(super) src: *const u8,
    pub(super) dst: *mut u8,
    /// Bytes from one output plane to the next (CHW only).
    pub(super) plane: usize,
    pub(super) px: usize,
    pub(super) c: usize,
}

impl Geometry {
    /// Source address of the 48-byte block that makes output pixels `j..j + 48 / c`.
    #[inline(always)]
    pub(super) fn block_src<const FLIP: bool>(self, j: usize) -> *const u8 {
        let first = if FLIP { self.px - j - 48 / self.c } else { j };
        self.src.wrapping_add(first * self.c)
    }
}

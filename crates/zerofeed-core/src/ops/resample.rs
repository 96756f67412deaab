//! Separable resampling with precomputed per-row / per-column weight tables.
//!
//! The tables follow torchvision's definitions (which are PIL's for `antialias=True`):
//!
//! - antialiased bilinear / bicubic: output pixel `i` of a box resampled from `len` to `out`
//!   pixels has its centre at `start + (i + 0.5) * s` (`s = len / out`), and reads every
//!   source pixel within `support * max(s, 1)` of it (triangle support 1; Keys cubic with
//!   `a = -0.5`, support 2), weighted by the filter at `(j + 0.5 - centre) / max(s, 1)` and
//!   normalized to sum 1. A downscale therefore averages over the whole footprint.
//! - `antialias=False`: PyTorch's `interpolate(align_corners=False)`: bilinear reads the two
//!   pixels around `start + (i + 0.5) * s - 0.5` (clamped at 0), bicubic the four around it
//!   with `a = -0.75` and edge-replicated indices.
//! - nearest: pixel `floor(start + i * s)` (PyTorch's `nearest`, not `nearest-exact`).
//!
//! Source pixels outside `[lo, hi)` (the box, or the decoded region) are never read: the
//! filter is cut there and renormalized, as PIL does at image borders.
//!
//! uint8 pixels (every decoded JPEG and PNG) are resampled in fixed point, as PIL's and
//! torchvision's uint8 kernels are: each table's weights become `i16` with `bits` fraction
//! bits ([`Taps::bits`]: the most that keep every weight within `i16`, at most 22), a pass
//! sums `q * pixel` in `i32` from `2^(bits-1)` and keeps `clamp(sum >> bits, 0, 255)`; the
//! horizontal pass's rows are uint8, which is the rounding torchvision and PIL apply between
//! the passes. Overflow cannot happen: `|q| <= 32767` and a table has at most 64 taps, so
//! `|sum| <= 255 * 64 * 32767 + 2^21 < 2^30`, and each `_mm256_madd_epi16` pair sum is at
//! most `2 * 255 * 32767 < 2^24`. The explicit-SIMD kernels (`resample_x86.rs`: AVX2, or
//! SSSE3 with 128-bit registers) compute exactly the same integers as the scalar kernel
//! here (integer sums do not depend on their order, and their zero-weight padding taps add
//! nothing), so the output does not depend on the CPU. Other element types use the float
//! kernel (`resample_float`), which the tests also use as the reference for the fixed point.

use super::simd::SimdLevel;

/// The target of `Resize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTo {
    /// The shorter side becomes this; the longer keeps the aspect ratio (truncated).
    Shorter(usize),
    /// Exactly this size.
    Exact {
        /// Output height.
        height: usize,
        /// Output width.
        width: usize,
    },
}

/// Resampling filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// The pixel at `floor(i * in / out)`.
    Nearest,
    /// Triangle filter.
    Bilinear,
    /// Keys cubic filter.
    Bicubic,
}

impl Interpolation {
    /// The name users write: `"nearest"`, `"bilinear"`, `"bicubic"`.
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Interpolation> {
        match name {
            "nearest" => Some(Interpolation::Nearest),
            "bilinear" => Some(Interpolation::Bilinear),
            "bicubic" => Some(Interpolation::Bicubic),
            _ => None,
        }
    }
}

/// One axis' weights: output `i` is `sum_t weight[i * taps + t] * src[index[i * taps + t]]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Taps {
    pub(crate) taps: usize,
    pub(crate) index: Vec<u32>,
    pub(crate) weight: Vec<f32>,
    /// The same weights over contiguous source runs (duplicate edge indices merged): output
    /// `i` reads `len[i]` pixels from `start[i]` with weights `packed[i * taps..]`.
    start: Vec<u32>,
    len: Vec<u32>,
    packed: Vec<f32>,
    /// Fraction bits of `fixed`.
    pub(crate) bits: u32,
    /// `packed` in fixed point, `fixed_taps` (a multiple of 4) a row, zero-padded.
    fixed: Vec<i16>,
    fixed_taps: usize,
}

/// Most fraction bits a fixed-point table uses (PIL's `PRECISION_BITS`).
const MAX_BITS: u32 = 22;

/// Where one axis reads: the continuous box `[start, start + len)` resampled to `out`
/// pixels, of which outputs `first..first + count` are wanted, reading only `[lo, hi)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Axis {
    pub(crate) start: f64,
    pub(crate) len: f64,
    pub(crate) out: usize,
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) lo: usize,
    pub(crate) hi: usize,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Keys' cubic convolution kernel with parameter `a`.
fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

impl Taps {
    /// Rebuilds the table in place (no allocation once the vectors are large enough).
    /// `reverse` lists the outputs last to first, which is how a horizontal flip is free.
    pub(crate) fn build(
        &mut self,
        interp: Interpolation,
        antialias: bool,
        axis: Axis,
        reverse: bool,
    ) {
        let s = axis.len / axis.out as f64;
        let (lo, hi) = (axis.lo as i64, axis.hi as i64 - 1);
        let clamp = |j: i64| j.clamp(lo, hi) as u32;
        self.index.clear();
        self.weight.clear();
        let mut ws = [0f64; 64];
        let outputs = (axis.first..axis.first + axis.count).map(|k| {
            if reverse {
                2 * axis.first + axis.count - 1 - k
            } else {
                k
            }
        });
        match (interp, antialias) {
            (Interpolation::Nearest, _) => {
                self.taps = 1;
                // float32 like PyTorch's nearest index, so both pick the same pixel.
                let s32 = (axis.len as f32) / axis.out as f32;
                for i in outputs {
                    let j = (axis.start as f32 + i as f32 * s32).floor() as i64;
                    self.index.push(clamp(j));
                    self.weight.push(1.0);
                }
            }
            (_, true) => {
                let (support, a) = match interp {
                    Interpolation::Bicubic => (2.0, -0.5),
                    _ => (1.0, 0.0),
                };
                let widen = s.max(1.0);
                let reach = support * widen;
                // Widest footprint: enough slots for every output (at most 2 * reach + 2).
                self.taps = ((2.0 * reach).ceil() as usize + 2).min(ws.len());
                for i in outputs {
                    let centre = axis.start + (i as f64 + 0.5) * s;
                    let j0 = ((centre - reach + 0.5).floor() as i64).max(lo);
                    let j1 = ((centre + reach + 0.5).floor() as i64).min(hi + 1);
                    let n = ((j1 - j0).max(1) as usize).min(self.taps);
                    let mut total = 0.0;
                    for (t, w) in ws[..n].iter_mut().enumerate() {
                        let x = (j0 + t as i64) as f64 + 0.5 - centre;
                        *w = match interp {
                            Interpolation::Bicubic => cubic(x / widen, a),
                            _ => triangle(x / widen),
                        };
                        total += *w;
                    }
                    let norm = if total != 0.0 { 1.0 / total } else { 0.0 };
                    for (t, &w) in ws[..self.taps].iter().enumerate() {
                        self.index.push(clamp(j0 + t.min(n - 1) as i64));
                        self.weight
                            .push(if t < n { (w * norm) as f32 } else { 0.0 });
                    }
                }
            }
            (Interpolation::Bilinear, false) => {
                self.taps = 2;
                for i in outputs {
                    let real = (axis.start + (i as f64 + 0.5) * s - 0.5).max(lo as f64);
                    let j0 = real.floor() as i64;
                    let l = real - j0 as f64;
                    self.index.push(clamp(j0));
                    self.index.push(clamp(j0 + 1));
                    self.weight.push((1.0 - l) as f32);
                    self.weight.push(l as f32);
                }
            }
            (Interpolation::Bicubic, false) => {
                self.taps = 4;
                for i in outputs {
                    let real = axis.start + (i as f64 + 0.5) * s - 0.5;
                    let j0 = real.floor() as i64;
                    let t = real - j0 as f64;
                    for (k, x) in [1.0 + t, t, 1.0 - t, 2.0 - t].into_iter().enumerate() {
                        self.index.push(clamp(j0 - 1 + k as i64));
                        self.weight.push(cubic(x, -0.75) as f32);
                    }
                }
            }
        }
        self.pack();
    }

    /// Merges each output's taps into one contiguous run of source pixels.
    fn pack(&mut self) {
        let taps = self.taps.max(1);
        let outputs = self.index.len() / taps;
        self.start.clear();
        self.len.clear();
        self.packed.clear();
        self.packed.resize(outputs * taps, 0.0);
        for i in 0..outputs {
            let idx = &self.index[i * taps..][..taps];
            let lo = idx.iter().copied().min().unwrap_or(0);
            let hi = idx.iter().copied().max().unwrap_or(0);
            let out = &mut self.packed[i * taps..][..taps];
            for (&j, &w) in idx.iter().zip(&self.weight[i * taps..][..taps]) {
                out[(j - lo) as usize] += w;
            }
            self.start.push(lo);
            // Zero-weight tail taps (padding) do not widen the run.
            let mut n = (hi - lo + 1) as usize;
            while n > 1 && out[n - 1] == 0.0 {
                n -= 1;
            }
            self.len.push(n as u32);
        }
        self.quantize();
    }

    /// `packed` to `i16` with as many fraction bits as the largest weight allows.
    fn quantize(&mut self) {
        let taps = self.taps.max(1);
        let biggest = self.packed.iter().fold(0f32, |m, w| m.max(w.abs()));
        // The largest `bits` with `biggest * 2^bits <= 32767` (rounding included).
        let mut bits = MAX_BITS;
        while bits > 0 && (f64::from(biggest) * f64::from(1u32 << bits)).round() > 32767.0 {
            bits -= 1;
        }
        self.bits = bits;
        // The longest run, not `taps`: `taps` bounds every output's footprint (2 * reach + 2
        // slots), and its last slots are often all zero: a 1.4x bilinear downscale reads at
        // most 4 pixels an output but has 5 slots, which would cost the SIMD kernels a
        // second group of four taps on every output.
        let longest = self.len.iter().copied().max().unwrap_or(1) as usize;
        self.fixed_taps = longest.next_multiple_of(4);
        self.fixed.clear();
        self.fixed.resize(self.len.len() * self.fixed_taps, 0);
        let one = f64::from(1u32 << bits);
        for (i, &n) in self.len.iter().enumerate() {
            let q = &mut self.fixed[i * self.fixed_taps..][..n as usize];
            for (q, &w) in q.iter_mut().zip(&self.packed[i * taps..]) {
                *q = (f64::from(w) * one).round() as i16;
            }
        }
    }

    /// Output `i`'s first source index and its fixed-point weights (`len` of them).
    #[inline]
    pub(crate) fn fixed_row(&self, i: usize) -> (usize, &[i16]) {
        (
            self.start[i] as usize,
            &self.fixed[i * self.fixed_taps..][..self.len[i] as usize],
        )
    }

    /// Output `i`'s weights zero-padded to a multiple of 4 taps.
    #[inline]
    pub(crate) fn fixed_padded(&self, i: usize) -> &[i16] {
        let n = (self.len[i] as usize).next_multiple_of(4);
        &self.fixed[i * self.fixed_taps..][..n]
    }

    /// Taps per output in the fixed-point table (a multiple of 4, `>=` every padded row).
    pub(crate) fn fixed_taps(&self) -> usize {
        self.fixed_taps
    }

    /// Outputs of the table.
    pub(crate) fn outputs(&self) -> usize {
        self.start.len()
    }

    /// The first and one-past-last source index any output reads.
    pub(crate) fn span(&self) -> (usize, usize) {
        let lo = self.index.iter().copied().min().unwrap_or(0) as usize;
        let hi = self
            .index
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        (lo, hi)
    }
}

/// Element types the resampler reads and writes.
pub(crate) trait Pixel: Copy + Default + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
    /// `from_f32` then `to_f32`, in float arithmetic.
    fn settle(v: f32) -> f32;

    /// [`resample`] for this type: the float kernel unless the type has a faster one.
    fn resample(
        src: Img<'_, Self>,
        h: &Taps,
        v: &Taps,
        bufs: &mut Bufs<Self>,
        _level: SimdLevel,
        emit: impl FnMut(usize, &[Self]),
    ) {
        resample_float(src, h, v, bufs, emit);
    }
}

impl Pixel for u8 {
    #[inline]
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
    #[inline]
    fn from_f32(v: f32) -> u8 {
        round_u8(v) as u8
    }
    #[inline]
    fn settle(v: f32) -> f32 {
        round_u8(v)
    }

    fn resample(
        src: Img<'_, u8>,
        h: &Taps,
        v: &Taps,
        bufs: &mut Bufs<u8>,
        level: SimdLevel,
        emit: impl FnMut(usize, &[u8]),
    ) {
        resample_fixed(src, h, v, &mut bufs.fixed, level, emit);
    }
}

/// An HWC image in memory: `row` elements between rows, pixels `c` elements apart.
#[derive(Clone, Copy)]
pub(crate) struct Img<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) row: usize,
    pub(crate) c: usize,
}

/// A worker's reusable rows for [`resample`].
#[derive(Debug, Default)]
pub(crate) struct Bufs<T> {
    /// One source row as floats, each pixel padded to `L` lanes.
    rowf: Vec<f32>,
    /// The horizontal pass of every source row the vertical pass reads (`L` lanes a pixel).
    hbuf: Vec<f32>,
    acc: Vec<f32>,
    line: Vec<T>,
    fixed: FixedBufs,
}

/// The fixed-point kernels' rows. Every row is padded (see [`FixedBufs::stride`]) so that
/// the SIMD kernels read and write whole registers without a scalar tail.
#[derive(Debug, Default)]
pub(crate) struct FixedBufs {
    /// One source row's span, then [`ROW_PAD`] bytes.
    pub(crate) row: Vec<u8>,
    /// The horizontal pass of every source row the vertical pass reads, `stride` apart.
    pub(crate) hbuf: Vec<u8>,
    /// One output row (`stride` bytes, of which the first `outputs * c` are emitted).
    pub(crate) line: Vec<u8>,
    /// The horizontal table laid out for the SIMD kernels.
    pub(crate) laid: Laid,
}

/// A horizontal table laid out for the SIMD kernels (`resample_x86.rs`, `lay_out`).
#[derive(Debug, Default)]
pub(crate) struct Laid {
    /// Each output's groups of four taps, as the kernels' `pmaddwd` pairs take them.
    wide: Vec<i16>,
    /// Each output's first byte within its row.
    offsets: Vec<usize>,
    groups: usize,
    outputs: usize,
    /// Channels of the pixels the offsets count.
    channels: usize,
    /// How many bytes from a row's first span pixel the two-row kernel may read.
    reach: usize,
}

/// Bytes past a source row's span that a SIMD load may touch (16 from the last pixel).
pub(crate) const ROW_PAD: usize = 32;

impl FixedBufs {
    /// Row stride for `bytes` emitted bytes: whole 32-byte blocks, with room for the
    /// 16-byte store of the last four pixels.
    pub(crate) fn stride(bytes: usize) -> usize {
        (bytes + 16).next_multiple_of(32)
    }
}

/// Grows `v` to at least `n` elements without clearing what is there: every byte the
/// kernels read back they wrote first, or it lies in a padding no one emits.
fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// `v` clamped to `[0, 255]` and rounded half up (as torchvision's fixed-point uint8 kernels
/// round), in float arithmetic only so that loops over it vectorize: adding and removing
/// 1.5 * 2^23 rounds to the nearest integer, and stepping back where that went above
/// `v + 0.5` makes it the floor of `v + 0.5`.
#[inline]
fn round_u8(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let t = v.clamp(0.0, 255.0) + 0.5;
    let r = (t + MAGIC) - MAGIC;
    r - if r > t { 1.0 } else { 0.0 }
}

/// Rounds to the pixel type and back: the horizontal pass's output is uint8 in
/// torchvision's and PIL's kernels; without it bicubic overshoot differs by up to 8 levels.
#[inline]
fn settle<T: Pixel>(v: f32) -> f32 {
    T::settle(v)
}

/// Horizontal pass of the source rows the vertical table reads, then the vertical pass of
/// each output row into `emit(y, row)` (`row`: `count * c` values, packed HWC). `level`
/// picks the uint8 kernels' instruction set (detected once, when the plan is compiled).
pub(crate) fn resample<T: Pixel>(
    src: Img<'_, T>,
    h: &Taps,
    v: &Taps,
    bufs: &mut Bufs<T>,
    level: SimdLevel,
    emit: impl FnMut(usize, &[T]),
) {
    T::resample(src, h, v, bufs, level, emit);
}

/// Pure index maps (crops, flips, nearest): values copied, no arithmetic.
fn copy_picks<T: Pixel>(
    src: Img<'_, T>,
    h: &Taps,
    v: &Taps,
    line: &mut [T],
    mut emit: impl FnMut(usize, &[T]),
) {
    let c = src.c;
    for (y, &i) in v.index.iter().enumerate() {
        let row = &src.data[i as usize * src.row..];
        for (px, &j) in line.chunks_exact_mut(c).zip(&h.index) {
            px.copy_from_slice(&row[j as usize * c..][..c]);
        }
        emit(y, line);
    }
}

/// The float kernel: pixels widened to `f32`, the horizontal pass rounded to `T`.
pub(crate) fn resample_float<T: Pixel>(
    src: Img<'_, T>,
    h: &Taps,
    v: &Taps,
    bufs: &mut Bufs<T>,
    emit: impl FnMut(usize, &[T]),
) {
    match src.c {
        1 => resample_lanes::<T, 1, 1>(src, h, v, bufs, emit),
        2 => resample_lanes::<T, 2, 2>(src, h, v, bufs, emit),
        // Three channels ride in four lanes, so each tap is one 4-wide multiply-add.
        3 => resample_lanes::<T, 3, 4>(src, h, v, bufs, emit),
        4 => resample_lanes::<T, 4, 4>(src, h, v, bufs, emit),
        _ => unreachable!("image plans have 1 to 4 channels (checked at compile)"),
    }
}

/// `C` channels per pixel (a constant, so per-pixel loops unroll) computed in `L` lanes.
fn resample_lanes<T: Pixel, const C: usize, const L: usize>(
    src: Img<'_, T>,
    h: &Taps,
    v: &Taps,
    bufs: &mut Bufs<T>,
    mut emit: impl FnMut(usize, &[T]),
) {
    let c = C;
    let ow = h.start.len();
    let oh = v.start.len();
    let Bufs {
        rowf,
        hbuf,
        acc,
        line,
        ..
    } = bufs;
    line.clear();
    line.resize(ow * c, T::default());
    if h.taps == 1 && v.taps == 1 {
        return copy_picks(src, h, v, line, emit);
    }
    let (y0, y1) = v.span();
    let (x0, x1) = h.span();
    let width = ow * L;
    hbuf.clear();
    hbuf.resize((y1 - y0) * width, 0.0);
    rowf.clear();
    rowf.resize((x1 - x0) * L, 0.0);
    for (y, out) in (y0..y1).zip(hbuf.chunks_exact_mut(width.max(1))) {
        let row = &src.data[y * src.row + x0 * c..][..(x1 - x0) * c];
        for (f, px) in rowf.chunks_exact_mut(L).zip(row.chunks_exact(C)) {
            for k in 0..C {
                f[k] = px[k].to_f32();
            }
        }
        for (x, o) in out.chunks_exact_mut(L).enumerate() {
            let n = h.len[x] as usize;
            let from = (h.start[x] as usize - x0) * L;
            let mut sum = [0f32; L];
            for (p, &w) in rowf[from..from + n * L]
                .chunks_exact(L)
                .zip(&h.packed[x * h.taps..][..n])
            {
                for k in 0..L {
                    sum[k] += w * p[k];
                }
            }
            for k in 0..L {
                o[k] = settle::<T>(sum[k]);
            }
        }
    }
    acc.clear();
    acc.resize(width, 0.0);
    for y in 0..oh {
        let n = v.len[y] as usize;
        let from = v.start[y] as usize - y0;
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (t, &w) in v.packed[y * v.taps..][..n].iter().enumerate() {
            let r = &hbuf[(from + t) * width..][..width];
            for (a, &x) in acc.iter_mut().zip(r) {
                *a += w * x;
            }
        }
        for (px, a) in line.chunks_exact_mut(C).zip(acc.chunks_exact(L)) {
            for k in 0..C {
                px[k] = T::from_f32(a[k]);
            }
        }
        emit(y, line);
    }
}

/// Which fixed-point kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernels {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Ssse3,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernels {
    /// The kernels for `level`, never above what this CPU has (so the SIMD kernels' one
    /// precondition, the instruction set, holds whatever level a caller passes).
    fn at(level: SimdLevel) -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            match level.min(SimdLevel::detect()) {
                // AVX-512 CPUs have AVX2: the resampler's widest kernels are AVX2's.
                SimdLevel::Avx2 | SimdLevel::Avx512 => Kernels::Avx2,
                SimdLevel::Ssse3 => Kernels::Ssse3,
                _ => Kernels::Scalar,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = level;
            Kernels::Scalar
        }
    }
}

/// The uint8 kernel: fixed point (see the module docs), with `level`'s SIMD kernels.
pub(crate) fn resample_fixed(
    src: Img<'_, u8>,
    h: &Taps,
    v: &Taps,
    bufs: &mut FixedBufs,
    level: SimdLevel,
    mut emit: impl FnMut(usize, &[u8]),
) {
    let c = src.c;
    let (ow, oh) = (h.outputs(), v.outputs());
    let bytes = ow * c;
    let stride = FixedBufs::stride(bytes);
    grow(&mut bufs.line, stride);
    if h.taps == 1 && v.taps == 1 {
        return copy_picks(src, h, v, &mut bufs.line[..bytes], emit);
    }
    let kernels = Kernels::at(level);
    let (y0, y1) = v.span();
    let (x0, x1) = h.span();
    let span = (x1 - x0) * c;
    grow(&mut bufs.hbuf, (y1 - y0) * stride);
    #[cfg(target_arch = "x86_64")]
    if kernels != Kernels::Scalar {
        x86::lay_out(h, c, x0, &mut bufs.laid);
    }
    // The bytes from a row's first span pixel that the SIMD loads may read.
    let reach = match kernels {
        Kernels::Scalar => span + ROW_PAD,
        #[cfg(target_arch = "x86_64")]
        _ => (span + ROW_PAD).max(bufs.laid.reach),
    };
    grow(&mut bufs.row, reach);
    // Where row `y`'s span starts, and whether the SIMD loads can read it in place: the
    // image goes on `reach` bytes from there (every row but the last ones).
    let at = |y: usize| y * src.row + x0 * c;
    let in_place = |y: usize| src.data.len() >= at(y) + reach;
    let mut y = y0;
    while y < y1 {
        #[cfg(target_arch = "x86_64")]
        if kernels == Kernels::Avx2 && y + 1 < y1 && in_place(y + 1) {
            let (a, b) = bufs.hbuf[(y - y0) * stride..].split_at_mut(stride);
            let rows = [&src.data[at(y)..], &src.data[at(y + 1)..]];
            // SAFETY: `Kernels::at` picked a level this CPU has; `laid` is `h`'s, for `c`.
            unsafe {
                x86::horizontal_pair_avx2(rows, h, c, &bufs.laid, [a, &mut b[..stride]]);
            }
            y += 2;
            continue;
        }
        let out = &mut bufs.hbuf[(y - y0) * stride..][..stride];
        let from = &src.data[at(y)..][..span];
        match kernels {
            Kernels::Scalar => horizontal_scalar(from, x0, h, c, out),
            #[cfg(target_arch = "x86_64")]
            _ => {
                // The SIMD loads read up to 16 bytes from a row's last pixel: in place where
                // the image goes on that far, else from a padded copy.
                let row: &[u8] = if in_place(y) {
                    &src.data[at(y)..]
                } else {
                    bufs.row[..span].copy_from_slice(from);
                    &bufs.row
                };
                // SAFETY: `Kernels::at` picked a level this CPU has; `(x0, x1)` is `h.span()`.
                unsafe {
                    if kernels == Kernels::Avx2 {
                        x86::horizontal_avx2(row, (x0, x1), h, c, &bufs.laid.wide, out);
                    } else {
                        x86::horizontal_ssse3(row, (x0, x1), h, c, &bufs.laid.wide, out);
                    }
                }
            }
        }
        y += 1;
    }
    let line = &mut bufs.line[..stride];
    for y in 0..oh {
        let (start, q) = v.fixed_row(y);
        let rows = &bufs.hbuf[(start - y0) * stride..][..q.len() * stride];
        match kernels {
            Kernels::Scalar => vertical_scalar(rows, stride, q, v.bits, &mut line[..bytes]),
            // SAFETY: `Kernels::at` picked a level this CPU has.
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 => unsafe { x86::vertical_avx2(rows, stride, q, v.bits, line) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernels::Ssse3 => unsafe { x86::vertical_ssse3(rows, stride, q, v.bits, line) },
        }
        emit(y, &line[..bytes]);
    }
}

/// `sum >> bits` clamped to a byte.
#[inline]
fn clamp8(sum: i32, bits: u32) -> u8 {
    (sum >> bits).clamp(0, 255) as u8
}

/// The scalar horizontal pass of one source row (`row` starts at source pixel `x0`).
fn horizontal_scalar(row: &[u8], x0: usize, h: &Taps, c: usize, out: &mut [u8]) {
    let round = (1i32 << h.bits) >> 1;
    for (x, px) in out[..h.outputs() * c].chunks_exact_mut(c).enumerate() {
        let (start, q) = h.fixed_row(x);
        let from = &row[(start - x0) * c..][..q.len() * c];
        for (k, o) in px.iter_mut().enumerate() {
            let mut sum = round;
            for (&w, p) in q.iter().zip(from.chunks_exact(c)) {
                sum += i32::from(w) * i32::from(p[k]);
            }
            *o = clamp8(sum, h.bits);
        }
    }
}

/// The scalar vertical pass: `line[i]` from `rows[t * stride + i]`, `t < q.len()`.
fn vertical_scalar(rows: &[u8], stride: usize, q: &[i16], bits: u32, line: &mut [u8]) {
    let round = (1i32 << bits) >> 1;
    for (i, o) in line.iter_mut().enumerate() {
        let mut sum = round;
        for (t, &w) in q.iter().enumerate() {
            sum += i32::from(w) * i32::from(rows[t * stride + i]);
        }
        *o = clamp8(sum, bits);
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "resample_x86.rs"]
mod x86;

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn axis(len: usize, out: usize) -> Axis {
        Axis {
            start: 0.0,
            len: len as f64,
            out,
            first: 0,
            count: out,
            lo: 0,
            hi: len,
        }
    }

    #[test]
    fn weights_sum_to_one_and_stay_inside() {
        for interp in [Interpolation::Bilinear, Interpolation::Bicubic] {
            for aa in [true, false] {
                for (len, out) in [(500, 224), (7, 3), (3, 10), (224, 224)] {
                    let mut t = Taps::default();
                    t.build(interp, aa, axis(len, out), false);
                    assert_eq!(t.index.len(), out * t.taps);
                    for i in 0..out {
                        let s: f32 = t.weight[i * t.taps..][..t.taps].iter().sum();
                        assert!((s - 1.0).abs() < 1e-5, "{interp:?} {aa} {len}->{out}: {s}");
                    }
                    assert!(t.span().1 <= len);
                }
            }
        }
    }

    #[test]
    fn same_size_is_identity_and_reverse_mirrors() {
        let mut t = Taps::default();
        t.build(Interpolation::Bilinear, true, axis(5, 5), false);
        let picks: Vec<u32> = (0..5)
            .map(|i| {
                t.index[i * t.taps..][..t.taps][t.weight[i * t.taps..][..t.taps]
                    .iter()
                    .position(|&w| w > 0.99)
                    .unwrap()]
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 3, 4]);
        let mut r = Taps::default();
        r.build(Interpolation::Nearest, false, axis(4, 4), true);
        assert_eq!(r.index, [3, 2, 1, 0]);
    }

    #[test]
    fn downscale_by_two_averages_pairs() {
        let data: Vec<u8> = vec![0, 100, 200, 50];
        let mut h = Taps::default();
        h.build(Interpolation::Bilinear, true, axis(4, 2), false);
        let mut v = Taps::default();
        v.build(Interpolation::Bilinear, true, axis(1, 1), false);
        let mut got = Vec::new();
        let mut bufs = Bufs::default();
        let img = Img {
            data: &data,
            row: 4,
            c: 1,
        };
        resample(img, &h, &v, &mut bufs, SimdLevel::detect(), |_, r| {
            got.extend_from_slice(r)
        });
        // Centre 1.0 reaches [-1, 3): weights 1/8, 3/8, 3/8, 1/8 cut at 0 and renormalized.
        let first = (0.375 * 0.0 + 0.375 * 100.0 + 0.125 * 200.0) / 0.875;
        assert_eq!(got[0], (first + 0.5) as u8);
    }
}

#[cfg(test)]
#[path = "resample_tests.rs"]
mod fixed_tests;

//! Row kernels: the per-element loops, written so LLVM vectorizes them, and the
//! dtype -> instantiation tables that pick one per plan (never per element).

use super::elem::{convert, with_elem, Elem};
use crate::dtype::DType;

/// Converts every element of a contiguous source row into a contiguous destination row.
pub(crate) type ConvertFn = fn(src: &[u8], dst: &mut [u8]);
/// `dst[i] = D::from(src[i] * a[i] + b[i])` computed in f32, for `a.len()` elements.
pub(crate) type Affine32Fn = fn(src: &[u8], dst: &mut [u8], a: &[f32], b: &[f32]);
/// The same in f64.
pub(crate) type Affine64Fn = fn(src: &[u8], dst: &mut [u8], a: &[f64], b: &[f64]);

// The loops zip `chunks_exact` iterators of compile-time sizes: no bounds checks, no
// aliasing (a `&[u8]` and a `&mut [u8]`), a known trip count, so LLVM emits SIMD loads,
// conversions, mul/add and stores with plain SSE2.

#[inline(always)]
fn convert_row<S: Elem, D: Elem>(src: &[u8], dst: &mut [u8]) {
    for (s, d) in src.chunks_exact(S::SIZE).zip(dst.chunks_exact_mut(D::SIZE)) {
        convert::<S, D>(S::load(s)).store(d);
    }
}

fn affine32_row<S: Elem, D: Elem>(src: &[u8], dst: &mut [u8], a: &[f32], b: &[f32]) {
    let n = a.len().min(b.len());
    let pairs = a[..n].iter().zip(&b[..n]);
    for ((s, d), (&a, &b)) in src
        .chunks_exact(S::SIZE)
        .zip(dst.chunks_exact_mut(D::SIZE))
        .zip(pairs)
    {
        // Deliberately not fused (mul_add): a library call on SSE2-only targets. The
        // coefficient rows (rather than a[i % C]) keep the loop free of shuffles; a
        // register-blocked variant (12 elements for C = 3) was tried and LLVM vectorized
        // across blocks with transposes, 2x slower.
        D::from_f32(S::load(s).to_f32() * a + b).store(d);
    }
}

fn affine64_row<S: Elem, D: Elem>(src: &[u8], dst: &mut [u8], a: &[f64], b: &[f64]) {
    let n = a.len().min(b.len());
    let pairs = a[..n].iter().zip(&b[..n]);
    for ((s, d), (&a, &b)) in src
        .chunks_exact(S::SIZE)
        .zip(dst.chunks_exact_mut(D::SIZE))
        .zip(pairs)
    {
        D::from_f64(S::load(s).to_f64() * a + b).store(d);
    }
}

/// The conversion kernel `from -> to`; `None` for bool and complex types.
pub(crate) fn convert_fn(from: DType, to: DType) -> Option<ConvertFn> {
    #[cfg(target_arch = "x86_64")]
    if let Some(widen) = widen_avx2_fn(from, to) {
        return Some(widen);
    }
    with_elem!(from, S => with_elem!(to, D => convert_row::<S, D> as ConvertFn)).flatten()
}

/// `convert_row` compiled for AVX2, where the CPU has it, for the integer widenings that
/// token windows take on their way into a batch (uint16 -> int64 and the like): SSE2 widens
/// 4 bytes into 16 with two unpacks per register, AVX2 in one `vpmovzx`/`vpmovsx` per
/// 32 bytes written, the same values.
#[cfg(target_arch = "x86_64")]
fn widen_avx2_fn(from: DType, to: DType) -> Option<ConvertFn> {
    #[target_feature(enable = "avx2")]
    unsafe fn avx2<S: Elem, D: Elem>(src: &[u8], dst: &mut [u8]) {
        convert_row::<S, D>(src, dst)
    }
    fn dispatch<S: Elem, D: Elem>(src: &[u8], dst: &mut [u8]) {
        // SAFETY: `widen_avx2_fn` hands this out only once it has seen AVX2 on this CPU.
        unsafe { avx2::<S, D>(src, dst) }
    }
    if !std::arch::is_x86_feature_detected!("avx2") {
        return None;
    }
    let f: ConvertFn = match (from, to) {
        (DType::U8, DType::I32) => dispatch::<u8, i32>,
        (DType::U8, DType::I64) => dispatch::<u8, i64>,
        (DType::U16, DType::I32) => dispatch::<u16, i32>,
        (DType::U16, DType::I64) => dispatch::<u16, i64>,
        (DType::I16, DType::I32) => dispatch::<i16, i32>,
        (DType::I16, DType::I64) => dispatch::<i16, i64>,
        (DType::I32, DType::I64) => dispatch::<i32, i64>,
        (DType::U32, DType::I64) => dispatch::<u32, i64>,
        _ => return None,
    };
    Some(f)
}

/// The f32 affine kernel reading `from` and writing `to` (float32, float16 or bfloat16).
pub(crate) fn affine32_fn(from: DType, to: DType) -> Option<Affine32Fn> {
    with_elem!(from, S => match to {
        DType::F32 => Some(affine32_row::<S, f32> as Affine32Fn),
        DType::F16 => Some(affine32_row::<S, half::f16> as Affine32Fn),
        DType::BF16 => Some(affine32_row::<S, half::bf16> as Affine32Fn),
        _ => None,
    })
    .flatten()
}

/// The f64 affine kernel reading `from` and writing float64.
pub(crate) fn affine64_fn(from: DType) -> Option<Affine64Fn> {
    with_elem!(from, S => affine64_row::<S, f64> as Affine64Fn)
}

/// Reads `N` bytes at `p`.
///
/// # Safety
/// `p..p + N` must be readable.
#[inline(always)]
unsafe fn read<const N: usize>(p: *const u8) -> [u8; N] {
    // SAFETY: the caller guarantees N readable bytes; read_unaligned needs no alignment.
    unsafe { p.cast::<[u8; N]>().read_unaligned() }
}

/// Where one source row's elements are: `w` pixels `sw` bytes apart (negative when the
/// row is walked right to left for a flip), `c` channels `sc` bytes apart within a pixel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowGeometry {
    pub(crate) sw: isize,
    pub(crate) sc: isize,
    pub(crate) w: usize,
    pub(crate) c: usize,
}

/// Copies one source row into `dst`, contiguous, in HWC order (`planar == false`) or
/// as `c` planes of `w` elements (`planar == true`, the CHW deinterleave).
///
/// # Safety
/// For every `j < w`, `k < c`, the `itemsize` bytes at `src + j*sw + k*sc` must be
/// readable. `dst` must hold `w * c * itemsize` bytes (checked).
pub(crate) unsafe fn gather_row(
    src: *const u8,
    g: RowGeometry,
    itemsize: usize,
    planar: bool,
    dst: &mut [u8],
) {
    // SAFETY: every arm forwards this fn's contract unchanged, with `N == itemsize`
    // (the `gather_n` contract); `dst` is sliced to `w * c * N` there, so a short one panics.
    unsafe {
        match itemsize {
            1 => gather_n::<1>(src, g, planar, dst),
            2 => gather_n::<2>(src, g, planar, dst),
            4 => gather_n::<4>(src, g, planar, dst),
            8 => gather_n::<8>(src, g, planar, dst),
            16 => gather_n::<16>(src, g, planar, dst),
            other => unreachable!("no dtype has itemsize {other}"),
        }
    }
}

/// # Safety
/// As [`gather_row`], with `N == itemsize`.
unsafe fn gather_n<const N: usize>(src: *const u8, g: RowGeometry, planar: bool, dst: &mut [u8]) {
    let RowGeometry { sw, sc, w, c } = g;
    let dst = &mut dst[..w * c * N];
    if !planar && sc == N as isize {
        // Channels contiguous (a flipped or gapped row): copy whole pixels, with the pixel
        // size a constant so each copy is one or two moves, not a memcpy call.
        // SAFETY: forwarded caller contract; pixel j spans [src + j*sw, + c*N).
        unsafe {
            match c * N {
                1 => return gather_px::<1>(src, sw, dst),
                2 => return gather_px::<2>(src, sw, dst),
                3 => return gather_px::<3>(src, sw, dst),
                4 => return gather_px::<4>(src, sw, dst),
                6 => return gather_px::<6>(src, sw, dst),
                8 => return gather_px::<8>(src, sw, dst),
                12 => return gather_px::<12>(src, sw, dst),
                16 => return gather_px::<16>(src, sw, dst),
                _ => {}
            }
        }
    }
    if planar {
        for (k, plane) in dst.chunks_exact_mut(w * N).enumerate() {
            // SAFETY: k < c, so channel k of pixel 0 is inside the sample.
            let base = unsafe { src.offset(k as isize * sc) };
            for (j, d) in plane.chunks_exact_mut(N).enumerate() {
                // SAFETY: element (j, k) of the row, readable by the caller's contract.
                d.copy_from_slice(&unsafe { read::<N>(base.offset(j as isize * sw)) });
            }
        }
    } else {
        for (j, px) in dst.chunks_exact_mut(c * N).enumerate() {
            // SAFETY: pixel j < w of the row.
            let base = unsafe { src.offset(j as isize * sw) };
            for (k, d) in px.chunks_exact_mut(N).enumerate() {
                // SAFETY: element (j, k) of the row.
                d.copy_from_slice(&unsafe { read::<N>(base.offset(k as isize * sc)) });
            }
        }
    }
}

/// # Safety
/// `PX` bytes readable at `src + j*sw` for every pixel `j` of `dst`.
#[inline(always)]
unsafe fn gather_px<const PX: usize>(src: *const u8, sw: isize, dst: &mut [u8]) {
    for (j, d) in dst.chunks_exact_mut(PX).enumerate() {
        // SAFETY: caller contract for pixel j.
        d.copy_from_slice(&unsafe { read::<PX>(src.offset(j as isize * sw)) });
    }
}

//! Element types as Rust types: byte loads/stores and NumPy `astype` conversions.
//!
//! Kernels are generic over [`Elem`] and instantiated once per dtype pair, so the
//! per-element work is a few inlined instructions with no dynamic dispatch. Loads and
//! stores go through native-endian byte arrays: sample memory (a memory-mapped file, a
//! batch slot handed out as `&mut [u8]`) carries no alignment promise, and
//! `from_ne_bytes` on a `chunks_exact` slice compiles to a plain (unaligned) load.

use half::{bf16, f16};

use crate::dtype::DType;

/// A numeric element the kernels can read, convert and write.
pub(crate) trait Elem: Copy + 'static {
    /// Bytes per element.
    const SIZE: usize;
    /// Floating point (including f16 / bf16).
    const FLOAT: bool;
    /// Every value converts to `f32` exactly (so `f32` is a lossless intermediate).
    const EXACT_F32: bool;
    /// This is `f32` itself.
    const IS_F32: bool = false;

    /// Reads one element from exactly `SIZE` bytes.
    fn load(bytes: &[u8]) -> Self;
    /// Writes one element into exactly `SIZE` bytes.
    fn store(self, bytes: &mut [u8]);
    /// `astype(float32)`.
    fn to_f32(self) -> f32;
    /// `astype(float64)`.
    fn to_f64(self) -> f64;
    /// Two's complement value for integers (`as i64`, wrapping for u64); unused for floats.
    fn to_i64(self) -> i64;
    /// `f32 -> Self`: rounds to nearest for floats; truncates toward zero and saturates for
    /// integers (NaN -> 0).
    fn from_f32(x: f32) -> Self;
    /// `f64 -> Self`, same rules as [`Elem::from_f32`].
    fn from_f64(x: f64) -> Self;
    /// Integer -> integer: keeps the low bits (wraps), exactly like NumPy's `astype`.
    fn from_i64(x: i64) -> Self;
}

macro_rules! int_elem {
    ($($t:ty => $d:ident, $exact:expr);* $(;)?) => {$(
        impl Elem for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const FLOAT: bool = false;
            const EXACT_F32: bool = $exact;
            #[inline(always)]
            fn load(bytes: &[u8]) -> Self {
                <$t>::from_ne_bytes(bytes.try_into().expect("SIZE bytes"))
            }
            #[inline(always)]
            fn store(self, bytes: &mut [u8]) {
                bytes.copy_from_slice(&self.to_ne_bytes());
            }
            #[inline(always)]
            fn to_f32(self) -> f32 { self as f32 }
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn to_i64(self) -> i64 { self as i64 }
            #[inline(always)]
            fn from_f32(x: f32) -> Self { x as $t }
            #[inline(always)]
            fn from_f64(x: f64) -> Self { x as $t }
            #[inline(always)]
            fn from_i64(x: i64) -> Self { x as $t }
        }
    )*};
}

int_elem! {
    i8 => I8, true; i16 => I16, true; i32 => I32, false; i64 => I64, false;
    u8 => U8, true; u16 => U16, true; u32 => U32, false; u64 => U64, false;
}

impl Elem for f32 {
    const SIZE: usize = 4;
    const FLOAT: bool = true;
    const EXACT_F32: bool = true;
    const IS_F32: bool = true;
    #[inline(always)]
    fn load(bytes: &[u8]) -> Self {
        f32::from_ne_bytes(bytes.try_into().expect("SIZE bytes"))
    }
    #[inline(always)]
    fn store(self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_ne_bytes());
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn from_i64(x: i64) -> Self {
        x as f32
    }
}

impl Elem for f64 {
    const SIZE: usize = 8;
    const FLOAT: bool = true;
    const EXACT_F32: bool = false;
    #[inline(always)]
    fn load(bytes: &[u8]) -> Self {
        f64::from_ne_bytes(bytes.try_into().expect("SIZE bytes"))
    }
    #[inline(always)]
    fn store(self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_ne_bytes());
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        f64::from(x)
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn from_i64(x: i64) -> Self {
        x as f64
    }
}

// f16 / bf16 are stored as `half`'s types, but the f32 conversions are the branch-free
// bit manipulations below rather than `half`'s: those test for F16C at run time on every
// element, which keeps loops scalar (a 15x slowdown measured). From f64 they use `half`'s
// direct software conversions (`from_f64_const`): its `from_f64` may round via f32 on F16C
// machines, and rounding twice can differ from NumPy on ties.
macro_rules! half_elem {
    ($($t:ty => $d:ident, $to:ident, $from:ident);* $(;)?) => {$(
        impl Elem for $t {
            const SIZE: usize = 2;
            const FLOAT: bool = true;
            const EXACT_F32: bool = true;
            #[inline(always)]
            fn load(bytes: &[u8]) -> Self {
                <$t>::from_bits(u16::from_ne_bytes(bytes.try_into().expect("SIZE bytes")))
            }
            #[inline(always)]
            fn store(self, bytes: &mut [u8]) {
                bytes.copy_from_slice(&self.to_bits().to_ne_bytes());
            }
            #[inline(always)]
            fn to_f32(self) -> f32 { $to(self.to_bits()) }
            #[inline(always)]
            fn to_f64(self) -> f64 { f64::from($to(self.to_bits())) }
            #[inline(always)]
            fn to_i64(self) -> i64 { $to(self.to_bits()) as i64 }
            #[inline(always)]
            fn from_f32(x: f32) -> Self { <$t>::from_bits($from(x)) }
            #[inline(always)]
            fn from_f64(x: f64) -> Self { <$t>::from_f64_const(x) }
            #[inline(always)]
            fn from_i64(x: i64) -> Self { <$t>::from_f64_const(x as f64) }
        }
    )*};
}

half_elem! { f16 => F16, f16_to_f32, f32_to_f16; bf16 => BF16, bf16_to_f32, f32_to_bf16 }

/// IEEE binary16 bits -> f32, exact. The technique is F. Giesen's `half_to_float`
/// ("Half to float done quic", 2012): move exponent and mantissa into place, rebias, then
/// fix infinities/NaNs (exponent 31) and renormalize subnormals with one float subtraction.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let shifted_exp = 0x7c00u32 << 13;
    let body = (h & 0x7fff) << 13;
    let exp = body & shifted_exp;
    let normal = body + ((127 - 15) << 23);
    let special = normal + ((128 - 16) << 23);
    // Subnormal: add 1 to the exponent, then subtract 2^-14 (the implicit bit's value).
    let sub = (f32::from_bits(normal + (1 << 23)) - f32::from_bits(113 << 23)).to_bits();
    let bits = if exp == shifted_exp {
        special
    } else if exp == 0 {
        sub
    } else {
        normal
    };
    f32::from_bits(bits | ((h & 0x8000) << 16))
}

/// f32 -> IEEE binary16 bits, round to nearest even, overflow to infinity, NaN to quiet
/// NaN. F. Giesen's `float_to_half_fast3_rtne` (public domain gist, 2016): subnormal
/// results come from one float addition of a magic constant that aligns the mantissa
/// (the FPU does the rounding); normal ones from an integer rebias plus a rounding bias.
#[inline(always)]
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    const INF: u32 = 255 << 23;
    const OVERFLOW: u32 = (127 + 16) << 23; // 65536.0: this and above become infinity
    const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let f = bits & 0x7fff_ffff;
    let special = if f > INF { 0x7e00 } else { 0x7c00 };
    let sub = (f32::from_bits(f) + f32::from_bits(DENORM_MAGIC))
        .to_bits()
        .wrapping_sub(DENORM_MAGIC) as u16;
    let mant_odd = (f >> 13) & 1;
    // Wrapping throughout: for NaN / overflowing `f` this sum can pass u32::MAX (a debug
    // build panicked there), and its value is then discarded (`f >= OVERFLOW` below).
    let normal = f
        .wrapping_add(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xfff))
        .wrapping_add(mant_odd)
        >> 13;
    let o = if f >= OVERFLOW {
        special
    } else if f < (113 << 23) {
        sub
    } else {
        normal as u16
    };
    o | sign
}

/// bfloat16 bits -> f32: the top half of the f32, exact.
#[inline(always)]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// f32 -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN.
#[inline(always)]
pub(crate) fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        ((bits >> 16) as u16) | 0x0040
    } else {
        rounded
    }
}

/// NumPy `astype` from `S` to `D` with a single rounding wherever the types allow:
/// integer -> integer wraps; anything -> float rounds to nearest once (through f32 only
/// when `S -> f32` is exact or the target is f32 itself); float -> integer truncates
/// toward zero and saturates at the target's range, NaN giving 0 (NumPy leaves
/// out-of-range float -> int undefined; in-range values agree exactly).
#[inline(always)]
pub(crate) fn convert<S: Elem, D: Elem>(s: S) -> D {
    if !S::FLOAT && !D::FLOAT {
        D::from_i64(s.to_i64())
    } else if D::IS_F32 || S::EXACT_F32 {
        D::from_f32(s.to_f32())
    } else {
        D::from_f64(s.to_f64())
    }
}

/// Calls `$body` with `$t` bound to the Rust type of a numeric `$dtype` (`Some(body)`),
/// or gives `None` for bool and complex types.
macro_rules! with_elem {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            DType::I8 => {
                type $t = i8;
                Some($body)
            }
            DType::I16 => {
                type $t = i16;
                Some($body)
            }
            DType::I32 => {
                type $t = i32;
                Some($body)
            }
            DType::I64 => {
                type $t = i64;
                Some($body)
            }
            DType::U8 => {
                type $t = u8;
                Some($body)
            }
            DType::U16 => {
                type $t = u16;
                Some($body)
            }
            DType::U32 => {
                type $t = u32;
                Some($body)
            }
            DType::U64 => {
                type $t = u64;
                Some($body)
            }
            DType::F16 => {
                type $t = half::f16;
                Some($body)
            }
            DType::BF16 => {
                type $t = half::bf16;
                Some($body)
            }
            DType::F32 => {
                type $t = f32;
                Some($body)
            }
            DType::F64 => {
                type $t = f64;
                Some($body)
            }
            DType::Bool | DType::C64 | DType::C128 => None,
        }
    };
}
pub(crate) use with_elem;

/// True when every value of `from` is exactly representable in `to`, so a cast to `to`
/// in the middle of a chain changes nothing and can be dropped.
pub(crate) fn lossless(from: DType, to: DType) -> bool {
    use DType::*;
    if from == to {
        return true;
    }
    match to {
        I16 => matches!(from, I8 | U8),
        I32 => matches!(from, I8 | U8 | I16 | U16),
        I64 => matches!(from, I8 | U8 | I16 | U16 | I32 | U32),
        U16 => matches!(from, U8),
        U32 => matches!(from, U8 | U16),
        U64 => matches!(from, U8 | U16 | U32),
        // 8 significant bits: all of u8 and i8.
        BF16 => matches!(from, I8 | U8),
        // 11 significant bits.
        F16 => matches!(from, I8 | U8),
        F32 => matches!(from, I8 | U8 | I16 | U16 | F16 | BF16),
        F64 => matches!(from, I8 | U8 | I16 | U16 | I32 | U32 | F16 | BF16 | F32),
        _ => false,
    }
}

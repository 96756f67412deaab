//! Element types and their encodings: names, DLPack codes, NumPy type strings.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// An element type that zerofeed can view, export and compute on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// NumPy `bool`: one byte holding 0 or 1.
    Bool,
    /// Signed 8-bit integer (`int8`).
    I8,
    /// Signed 16-bit integer (`int16`).
    I16,
    /// Signed 32-bit integer (`int32`).
    I32,
    /// Signed 64-bit integer (`int64`).
    I64,
    /// Unsigned 8-bit integer (`uint8`), the usual image pixel type.
    U8,
    /// Unsigned 16-bit integer (`uint16`).
    U16,
    /// Unsigned 32-bit integer (`uint32`).
    U32,
    /// Unsigned 64-bit integer (`uint64`).
    U64,
    /// IEEE 754 half precision (`float16`): 5 exponent, 10 mantissa bits.
    F16,
    /// bfloat16: the top 16 bits of a float32 (8 exponent, 7 mantissa bits).
    BF16,
    /// IEEE 754 single precision (`float32`).
    F32,
    /// IEEE 754 double precision (`float64`).
    F64,
    /// Complex of two float32 (real, then imaginary): `complex64`.
    C64,
    /// Complex of two float64 (real, then imaginary): `complex128`.
    C128,
}

/// DLPack type codes (`DLDataTypeCode` in dlpack.h).
pub mod dl_code {
    /// `kDLInt`: signed integers.
    pub const INT: u8 = 0;
    /// `kDLUInt`: unsigned integers.
    pub const UINT: u8 = 1;
    /// `kDLFloat`: IEEE floats (16, 32 and 64 bits).
    pub const FLOAT: u8 = 2;
    /// `kDLBfloat`: bfloat16.
    pub const BFLOAT: u8 = 4;
    /// `kDLComplex`: complex numbers; `bits` counts both parts.
    pub const COMPLEX: u8 = 5;
    /// `kDLBool`: booleans, 8 bits each.
    pub const BOOL: u8 = 6;
}

/// A type that zerofeed does not handle, with what was asked for.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unsupported dtype {found:?}: use one of {}", DType::NAMES.join(", "))]
pub struct UnsupportedDType {
    /// What was asked for, as given (a name, type string or DLPack code), for the message.
    pub found: String,
}

impl DType {
    /// Every type, in the order of [`DType::NAMES`].
    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::C64,
        DType::C128,
    ];

    /// NumPy-style names, the ones users type.
    pub const NAMES: [&'static str; 15] = [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    ];

    /// Bytes per element.
    pub const fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    /// The NumPy-style name (`"float32"`).
    pub fn name(self) -> &'static str {
        let index = DType::ALL
            .iter()
            .position(|d| *d == self)
            .expect("ALL lists every variant");
        DType::NAMES[index]
    }

    /// `(code, bits)` of the DLPack `DLDataType` with one lane.
    pub const fn dlpack(self) -> (u8, u8) {
        let code = match self {
            DType::Bool => dl_code::BOOL,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => dl_code::INT,
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => dl_code::UINT,
            DType::F16 | DType::F32 | DType::F64 => dl_code::FLOAT,
            DType::BF16 => dl_code::BFLOAT,
            DType::C64 | DType::C128 => dl_code::COMPLEX,
        };
        (code, (self.itemsize() * 8) as u8)
    }

    /// The type that a DLPack `DLDataType` describes.
    pub fn from_dlpack(code: u8, bits: u8, lanes: u16) -> Result<DType, UnsupportedDType> {
        let unsupported = || UnsupportedDType {
            found: format!("DLPack code={code} bits={bits} lanes={lanes}"),
        };
        if lanes != 1 {
            return Err(unsupported());
        }
        DType::ALL
            .into_iter()
            .find(|d| d.dlpack() == (code, bits))
            // NumPy exports bool as uint8 with code BOOL and 8 bits; some old producers
            // say UINT/1 bit. Only the exact pair is accepted: guessing would be silent garbage.
            .ok_or_else(unsupported)
    }

    /// Parses a NumPy array-interface type string such as `"<f4"`, `"|u1"`, `"|b1"`.
    ///
    /// Only native (little-endian) byte order is accepted: zerofeed views bytes in place
    /// and never swaps them silently.
    pub fn from_typestr(typestr: &str) -> Result<DType, UnsupportedDType> {
        let unsupported = || UnsupportedDType {
            found: typestr.to_owned(),
        };
        let mut chars = typestr.chars();
        let order = chars.next().ok_or_else(unsupported)?;
        let kind = chars.next().ok_or_else(unsupported)?;
        let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
        let native =
            order == '<' || order == '|' || (order == '=' && cfg!(target_endian = "little"));
        let single_byte_marked_big = size == 1 && order == '>';
        if !native && !single_byte_marked_big {
            return Err(UnsupportedDType {
                found: format!("{typestr} (big-endian data must be byte-swapped first)"),
            });
        }
        let dtype = match (kind, size) {
            ('b', 1) => DType::Bool,
            ('i', 1) => DType::I8,
            ('i', 2) => DType::I16,
            ('i', 4) => DType::I32,
            ('i', 8) => DType::I64,
            ('u', 1) => DType::U8,
            ('u', 2) => DType::U16,
            ('u', 4) => DType::U32,
            ('u', 8) => DType::U64,
            ('f', 2) => DType::F16,
            ('f', 4) => DType::F32,
            ('f', 8) => DType::F64,
            ('c', 8) => DType::C64,
            ('c', 16) => DType::C128,
            _ => return Err(unsupported()),
        };
        Ok(dtype)
    }

    /// The little-endian NumPy type string (`"<f4"`). bfloat16 has none in NumPy itself and
    /// is described as `"<V2"` (what ml_dtypes' arrays report).
    pub fn typestr(self) -> &'static str {
        match self {
            DType::Bool => "|b1",
            DType::I8 => "|i1",
            DType::I16 => "<i2",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
            DType::U8 => "|u1",
            DType::U16 => "<u2",
            DType::U32 => "<u4",
            DType::U64 => "<u8",
            DType::F16 => "<f2",
            DType::BF16 => "<V2",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
            DType::C64 => "<c8",
            DType::C128 => "<c16",
        }
    }

    /// The PEP 3118 struct format character(s) for the buffer protocol.
    /// bfloat16 has none; it travels as raw 16-bit words (`"H"`).
    pub fn buffer_format(self) -> &'static str {
        match self {
            DType::Bool => "?",
            DType::I8 => "b",
            DType::I16 => "h",
            DType::I32 => "i",
            DType::I64 => "q",
            DType::U8 => "B",
            DType::U16 | DType::BF16 => "H",
            DType::U32 => "I",
            DType::U64 => "Q",
            DType::F16 => "e",
            DType::F32 => "f",
            DType::F64 => "d",
            DType::C64 => "Zf",
            DType::C128 => "Zd",
        }
    }

    /// Parses a PEP 3118 format as produced by NumPy, `array.array` and `memoryview`
    /// (native byte order and size only: `"<f"`, `"@i"`, `"=q"`, `"B"`).
    pub fn from_buffer_format(format: &str) -> Result<DType, UnsupportedDType> {
        let body = format.trim_start_matches(['@', '=', '<']);
        let long_size = std::mem::size_of::<libc::c_long>();
        let dtype = match body {
            "?" => DType::Bool,
            "b" => DType::I8,
            "h" => DType::I16,
            "i" => DType::I32,
            "l" if long_size == 8 => DType::I64,
            "l" => DType::I32,
            "q" | "n" => DType::I64,
            "B" | "c" => DType::U8,
            "H" => DType::U16,
            "I" => DType::U32,
            "L" if long_size == 8 => DType::U64,
            "L" => DType::U32,
            "Q" | "N" => DType::U64,
            "e" => DType::F16,
            "f" => DType::F32,
            "d" => DType::F64,
            "Zf" => DType::C64,
            "Zd" => DType::C128,
            _ => {
                return Err(UnsupportedDType {
                    found: format!("buffer format {format:?}"),
                })
            }
        };
        Ok(dtype)
    }

    /// True for floating types (including bfloat16), the ones `Normalize` can produce.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = UnsupportedDType;

    /// Accepts NumPy names (`"float32"`), their short aliases (`"f4"`, `"u1"`) and type strings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(i) = DType::NAMES.iter().position(|n| *n == s) {
            return Ok(DType::ALL[i]);
        }
        let alias = match s {
            "bool_" | "b1" | "?" => Some(DType::Bool),
            "half" | "f2" => Some(DType::F16),
            "float" | "double" | "f8" => Some(DType::F64),
            "f4" | "single" => Some(DType::F32),
            "u1" => Some(DType::U8),
            "i1" => Some(DType::I8),
            "c8" => Some(DType::C64),
            "c16" => Some(DType::C128),
            _ => None,
        };
        if let Some(d) = alias {
            return Ok(d);
        }
        DType::from_typestr(s).map_err(|_| UnsupportedDType {
            found: s.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
    }

    #[test]
    fn dlpack_round_trip() {
        for d in DType::ALL {
            let (code, bits) = d.dlpack();
            assert_eq!(DType::from_dlpack(code, bits, 1).unwrap(), d);
        }
        assert!(DType::from_dlpack(dl_code::FLOAT, 32, 4).is_err());
        assert!(DType::from_dlpack(dl_code::FLOAT, 8, 1).is_err());
    }

    #[test]
    fn typestr_round_trip_except_bfloat16() {
        for d in DType::ALL.into_iter().filter(|d| *d != DType::BF16) {
            assert_eq!(DType::from_typestr(d.typestr()).unwrap(), d);
        }
    }

    #[test]
    fn big_endian_is_refused_with_a_hint() {
        let err = DType::from_typestr(">f4").unwrap_err();
        assert!(err.to_string().contains("byte-swapped"), "{err}");
        assert_eq!(DType::from_typestr(">u1").unwrap(), DType::U8);
    }

    #[test]
    fn buffer_formats() {
        for d in DType::ALL.into_iter().filter(|d| *d != DType::BF16) {
            assert_eq!(DType::from_buffer_format(d.buffer_format()).unwrap(), d);
        }
        assert_eq!(DType::from_buffer_format("<f").unwrap(), DType::F32);
        assert!(DType::from_buffer_format("T{i:x:}").is_err());
    }

    #[test]
    fn unknown_name_lists_the_choices() {
        let err = "float128".parse::<DType>().unwrap_err();
        assert!(err.to_string().contains("float32"));
    }
}

//! `.npy` header parsing and validation.
//!
//! Format (NEP 1, `numpy.lib.format`): the magic `\x93NUMPY`, a major and a minor version
//! byte, the header length (u16 little-endian in 1.0, u32 in 2.0 and 3.0), then the
//! header: a Python dict literal (Latin-1 in 1.0/2.0, UTF-8 in 3.0) padded with spaces and
//! ending with `'\n'`. The array bytes follow immediately and run to the end of the file.
//!
//! A header is trusted only after every field is checked: a lying header must become a
//! clear error here, never an out-of-bounds view later.

use thiserror::Error;

use super::pydict::{self, Value};
use crate::dtype::DType;

/// The six bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Largest header accepted, in bytes. `np.save` writes about 128; NumPy itself refuses
/// more than 10 000 by default. The cap bounds what a hostile file can make us parse.
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Most dimensions a shape may have: NumPy's own limit (`NPY_MAXDIMS` in NumPy 2).
pub const MAX_NDIM: usize = 64;

/// Bytes before the header proper: magic, version, and a 2-byte length (1.0).
const MIN_PREAMBLE: usize = 10;

/// A validated `.npy` header: what the array is and where its bytes are.
///
/// Produced by [`parse_npy_header`], which guarantees that `data_offset + data_len`
/// equals the file length, that `data_len` is the product of `shape` times the item
/// size, and that every stride of [`NpyHeader::byte_strides`] fits in `isize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version `(major, minor)`: `(1, 0)`, `(2, 0)` or `(3, 0)`.
    pub version: (u8, u8),
    /// Element type, from the `descr` field.
    pub dtype: DType,
    /// True when the data is stored column-major (Fortran order).
    pub fortran_order: bool,
    /// Dimensions; empty for a 0-d array.
    pub shape: Vec<usize>,
    /// Offset of the first data byte from the start of the file.
    pub data_offset: usize,
    /// Number of data bytes: product of `shape` times the item size.
    pub data_len: usize,
}

impl NpyHeader {
    /// Byte strides of the stored array: C order (last axis fastest) or Fortran order
    /// (first axis fastest) per `fortran_order`. Empty for a 0-d array.
    ///
    /// Zero-length axes count as length 1 here (as NumPy's own stride computation does),
    /// so strides stay meaningful and bounded; a zero-size array addresses no element.
    /// For a header not built by [`parse_npy_header`], strides saturate instead of
    /// overflowing.
    pub fn byte_strides(&self) -> Vec<isize> {
        let mut strides = vec![0isize; self.shape.len()];
        let mut step = isize::try_from(self.dtype.itemsize()).unwrap_or(isize::MAX);
        let mut fill = |axis: usize| {
            if let Some(stride) = strides.get_mut(axis) {
                *stride = step;
            }
            let dim = self.shape.get(axis).copied().unwrap_or(1).max(1);
            step = step.saturating_mul(isize::try_from(dim).unwrap_or(isize::MAX));
        };
        if self.fortran_order {
            (0..self.shape.len()).for_each(&mut fill);
        } else {
            (0..self.shape.len()).rev().for_each(&mut fill);
        }
        strides
    }

    /// Number of elements: the product of `shape` (1 for a 0-d array).
    pub fn num_elements(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

/// Why a `.npy` header was refused. Each message starts with the field at fault
/// (also given by [`NpyError::field`]) and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NpyError {
    /// Fewer bytes than the fixed preamble.
    #[error("magic: file is {len} bytes, too short for a .npy file (at least {needed} needed); is it empty or truncated?")]
    TooShort {
        /// Length of the file.
        len: u64,
        /// Bytes the preamble needs (10 for version 1.0, 12 for 2.0 and 3.0).
        needed: usize,
    },
    /// The caller passed fewer bytes than the header spans (the file itself may be fine).
    #[error("header length: the header ends at byte {needed} but only {available} bytes were given; pass at least {needed} bytes of the file")]
    PrefixTooShort {
        /// Bytes needed from the start of the file.
        needed: usize,
        /// Bytes passed.
        available: usize,
    },
    /// The file does not start with `\x93NUMPY`.
    #[error("magic: expected b\"\\x93NUMPY\" at the start, found b\"{found}\"; this is not a .npy file (write one with np.save; unzip .npz archives first)")]
    BadMagic {
        /// The first bytes of the file, escaped.
        found: String,
    },
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("version: {major}.{minor} is not supported; only 1.0, 2.0 and 3.0 exist (re-save with np.save)")]
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The header length field is above [`MAX_HEADER_LEN`].
    #[error("header length: {len} bytes is over the {max}-byte limit; the header is corrupt (np.save writes a few hundred bytes)")]
    HeaderTooLong {
        /// The header length the file claims.
        len: u64,
        /// The limit, [`MAX_HEADER_LEN`].
        max: usize,
    },
    /// The header length field points past the end of the file.
    #[error("header length: the header ends at byte {header_end} but the file holds only {file_len} bytes (truncated file?)")]
    HeaderPastEnd {
        /// Where the header claims to end.
        header_end: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A version 3.0 header that is not valid UTF-8.
    #[error("header encoding: byte {offset} is not valid UTF-8, which version 3.0 headers must be; the file is corrupt (re-save with np.save)")]
    NotUtf8 {
        /// File offset of the first invalid byte.
        offset: usize,
    },
    /// The header is not a dict literal of the form NumPy writes.
    #[error("header dict: expected {expected} at byte {offset}, found {found}; the header must read like {{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }}")]
    Syntax {
        /// File offset of the offending byte.
        offset: usize,
        /// What the grammar allows there.
        expected: &'static str,
        /// What is there instead, escaped.
        found: String,
    },
    /// One of `descr`, `fortran_order`, `shape` is absent.
    #[error("header dict: key '{key}' is missing; a .npy header has exactly 'descr', 'fortran_order' and 'shape' (re-save with np.save)")]
    MissingKey {
        /// The missing key.
        key: &'static str,
    },
    /// A key other than the three allowed ones.
    #[error("header dict: unknown key '{key}'; only 'descr', 'fortran_order' and 'shape' are allowed (re-save with np.save)")]
    UnknownKey {
        /// The key, escaped and clipped.
        key: String,
    },
    /// The same key twice (Python would silently keep the last; we refuse to guess).
    #[error("header dict: key '{key}' appears more than once; keep exactly one")]
    DuplicateKey {
        /// The repeated key.
        key: &'static str,
    },
    /// A field holds the wrong kind of value (`'fortran_order': 1`, `'shape': 5`).
    #[error("{key}: expected {expected}, found {found}")]
    WrongType {
        /// The field: `"descr"`, `"fortran_order"` or `"shape"`.
        key: &'static str,
        /// What the field must hold.
        expected: &'static str,
        /// What it holds (`"an integer"`, `"a list"`, ...).
        found: &'static str,
    },
    /// `descr` is a list of fields.
    #[error("descr: structured dtypes (a list of fields) are not supported; save each field as its own array")]
    StructuredDescr,
    /// `descr` is the object type `|O`.
    #[error("descr: object arrays ('{descr}') hold Python pointers and cannot be memory-mapped; convert with arr.astype(<a numeric dtype>) and save again")]
    ObjectDescr {
        /// The type string, escaped.
        descr: String,
    },
    /// A multi-byte big-endian type string.
    #[error("descr: big-endian '{descr}' is not supported; byte-swap with arr.astype('{swapped}') and save again")]
    BigEndian {
        /// The type string (`">f4"`).
        descr: String,
        /// Its little-endian twin (`"<f4"`).
        swapped: String,
    },
    /// A type string zerofeed does not handle (strings, datetimes, `float128`, ...).
    #[error(
        "descr: '{descr}' is not a supported type string; use one of {}",
        supported_typestrs()
    )]
    UnsupportedDescr {
        /// The type string, escaped and clipped.
        descr: String,
    },
    /// More than [`MAX_NDIM`] dimensions.
    #[error(
        "shape: {ndim} dimensions are more than NumPy's limit of {max}; the header is corrupt"
    )]
    TooManyDims {
        /// Dimensions in the header.
        ndim: usize,
        /// The limit, [`MAX_NDIM`].
        max: usize,
    },
    /// A shape element that is not an integer.
    #[error(
        "shape: element {axis} is {found}, expected a non-negative integer; the header is corrupt"
    )]
    ShapeElement {
        /// Position in the shape tuple.
        axis: usize,
        /// What is there (`"a string"`, `"a tuple"`, ...).
        found: &'static str,
    },
    /// A negative dimension.
    #[error("shape: dimension {value} (axis {axis}) is negative; sizes must be >= 0 (the header is corrupt)")]
    NegativeDim {
        /// Position in the shape tuple.
        axis: usize,
        /// The dimension as written, clipped.
        value: String,
    },
    /// A dimension that does not fit in `usize`.
    #[error("shape: dimension {value} (axis {axis}) is too large for this machine's usize; the header is corrupt")]
    DimTooLarge {
        /// Position in the shape tuple.
        axis: usize,
        /// The dimension as written, clipped.
        value: String,
    },
    /// The array would span more than `isize::MAX` bytes.
    #[error("shape: {shape} of {itemsize}-byte items is more than isize::MAX bytes; the header is corrupt")]
    SizeOverflow {
        /// The shape, as Python prints it.
        shape: String,
        /// Bytes per element.
        itemsize: usize,
    },
    /// Fewer data bytes in the file than the header describes.
    #[error("data length: header says {expected} bytes but file holds {actual} after the header (truncated file?)")]
    DataTruncated {
        /// Bytes the header describes.
        expected: u64,
        /// Bytes after the header.
        actual: u64,
    },
    /// More data bytes in the file than the header describes.
    #[error("data length: header says {expected} bytes but file holds {actual} after the header ({} trailing bytes; was it appended to, or not written by np.save?)", actual.saturating_sub(*expected))]
    TrailingBytes {
        /// Bytes the header describes.
        expected: u64,
        /// Bytes after the header.
        actual: u64,
    },
}

impl NpyError {
    /// The header field at fault: `"magic"`, `"version"`, `"header length"`,
    /// `"header encoding"`, `"header dict"`, `"descr"`, `"fortran_order"`, `"shape"` or
    /// `"data length"`. Every message starts with it.
    pub fn field(&self) -> &'static str {
        match self {
            NpyError::TooShort { .. } | NpyError::BadMagic { .. } => "magic",
            NpyError::UnsupportedVersion { .. } => "version",
            NpyError::PrefixTooShort { .. }
            | NpyError::HeaderTooLong { .. }
            | NpyError::HeaderPastEnd { .. } => "header length",
            NpyError::NotUtf8 { .. } => "header encoding",
            NpyError::Syntax { .. }
            | NpyError::MissingKey { .. }
            | NpyError::UnknownKey { .. }
            | NpyError::DuplicateKey { .. } => "header dict",
            NpyError::WrongType { key, .. } => key,
            NpyError::StructuredDescr
            | NpyError::ObjectDescr { .. }
            | NpyError::BigEndian { .. }
            | NpyError::UnsupportedDescr { .. } => "descr",
            NpyError::TooManyDims { .. }
            | NpyError::ShapeElement { .. }
            | NpyError::NegativeDim { .. }
            | NpyError::DimTooLarge { .. }
            | NpyError::SizeOverflow { .. } => "shape",
            NpyError::DataTruncated { .. } | NpyError::TrailingBytes { .. } => "data length",
        }
    }
}

/// Parses and validates a `.npy` header.
///
/// `prefix` is the start of the file — at least the header (the whole file is fine, and
/// is what [`super::NpyFile::open`] passes) — and `file_len` the length of the whole file.
/// Bytes of `prefix` past `file_len` are ignored. If `prefix` is too short, the error is
/// [`NpyError::PrefixTooShort`] with the number of bytes needed.
///
/// Never panics, on any input.
pub fn parse_npy_header(prefix: &[u8], file_len: u64) -> Result<NpyHeader, NpyError> {
    // Bytes past the end of the file do not exist, whatever the caller passed.
    let available = usize::try_from(file_len).map_or(prefix.len(), |n| n.min(prefix.len()));
    let bytes = prefix.get(..available).unwrap_or(prefix);
    let take = |start: usize, end: usize| {
        bytes.get(start..end).ok_or(NpyError::PrefixTooShort {
            needed: end,
            available: bytes.len(),
        })
    };

    if file_len < MIN_PREAMBLE as u64 {
        return Err(NpyError::TooShort {
            len: file_len,
            needed: MIN_PREAMBLE,
        });
    }
    let magic = take(0, MAGIC.len())?;
    if magic != MAGIC {
        return Err(NpyError::BadMagic {
            found: magic.escape_ascii().to_string(),
        });
    }
    let version = take(6, 8)?;
    let (major, minor) = match *version {
        [major, minor] => (major, minor),
        _ => (0, 0),
    };
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    let preamble = 8 + len_bytes;
    if file_len < preamble as u64 {
        return Err(NpyError::TooShort {
            len: file_len,
            needed: preamble,
        });
    }
    let header_len = take(8, preamble)?
        .iter()
        .rev()
        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let header_len = usize::try_from(header_len)
        .ok()
        .filter(|&n| n <= MAX_HEADER_LEN)
        .ok_or(NpyError::HeaderTooLong {
            len: header_len,
            max: MAX_HEADER_LEN,
        })?;
    let header_end = preamble + header_len; // both small: no overflow
    if header_end as u64 > file_len {
        return Err(NpyError::HeaderPastEnd {
            header_end: header_end as u64,
            file_len,
        });
    }
    let header = take(preamble, header_end)?;
    if major == 3 {
        if let Err(e) = std::str::from_utf8(header) {
            return Err(NpyError::NotUtf8 {
                offset: preamble + e.valid_up_to(),
            });
        }
    }

    let (descr, fortran_order, shape) = split_fields(pydict::parse_dict(header, preamble)?)?;
    let dtype = parse_descr(&descr)?;
    let fortran_order = match fortran_order {
        Value::Bool(b) => b,
        other => {
            return Err(NpyError::WrongType {
                key: "fortran_order",
                expected: "True or False",
                found: other.kind(),
            })
        }
    };
    let shape = parse_shape(&shape)?;
    let data_len = checked_data_len(&shape, dtype.itemsize())?;

    let actual = file_len - header_end as u64; // header_end <= file_len checked above
    let expected = data_len as u64; // usize is at most 64 bits on every target Rust has
    if expected > actual {
        return Err(NpyError::DataTruncated { expected, actual });
    }
    if expected < actual {
        return Err(NpyError::TrailingBytes { expected, actual });
    }
    Ok(NpyHeader {
        version: (major, minor),
        dtype,
        fortran_order,
        shape,
        data_offset: header_end,
        data_len,
    })
}

/// Picks out exactly the three allowed keys, refusing unknown and repeated ones.
fn split_fields(
    entries: Vec<pydict::Entry<'_>>,
) -> Result<(Value<'_>, Value<'_>, Value<'_>), NpyError> {
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for entry in entries {
        let (slot, key) = match entry.key {
            b"descr" => (&mut descr, "descr"),
            b"fortran_order" => (&mut fortran_order, "fortran_order"),
            b"shape" => (&mut shape, "shape"),
            other => {
                return Err(NpyError::UnknownKey {
                    key: clip(other).to_string(),
                })
            }
        };
        if slot.replace(entry.value).is_some() {
            return Err(NpyError::DuplicateKey { key });
        }
    }
    let missing = |key| NpyError::MissingKey { key };
    Ok((
        descr.ok_or(missing("descr"))?,
        fortran_order.ok_or(missing("fortran_order"))?,
        shape.ok_or(missing("shape"))?,
    ))
}

fn parse_descr(value: &Value<'_>) -> Result<DType, NpyError> {
    let raw = match value {
        Value::Str(raw) => *raw,
        Value::List(_) => return Err(NpyError::StructuredDescr),
        other => {
            return Err(NpyError::WrongType {
                key: "descr",
                expected: "a type string such as '<f4'",
                found: other.kind(),
            })
        }
    };
    let descr = clip(raw).to_string();
    // Non-UTF-8 bytes (Latin-1 in a 1.0 header) cannot be a valid type string.
    let text = std::str::from_utf8(raw).unwrap_or("");
    if let Ok(dtype) = DType::from_typestr(text) {
        return Ok(dtype);
    }
    if let Some(rest) = text.strip_prefix(['>', '!']) {
        let swapped = format!("<{rest}");
        if DType::from_typestr(&swapped).is_ok() {
            return Err(NpyError::BigEndian { descr, swapped });
        }
    }
    if raw.get(1) == Some(&b'O') {
        return Err(NpyError::ObjectDescr { descr });
    }
    Err(NpyError::UnsupportedDescr { descr })
}

fn parse_shape(value: &Value<'_>) -> Result<Vec<usize>, NpyError> {
    let items = match value {
        Value::Tuple(items) => items,
        other => {
            return Err(NpyError::WrongType {
                key: "shape",
                expected: "a tuple of non-negative integers such as (3, 4), (5,) or ()",
                found: other.kind(),
            })
        }
    };
    if items.len() > MAX_NDIM {
        return Err(NpyError::TooManyDims {
            ndim: items.len(),
            max: MAX_NDIM,
        });
    }
    let mut shape = Vec::with_capacity(items.len());
    for (axis, item) in items.iter().enumerate() {
        let (negative, digits) = match item {
            Value::Int { negative, digits } => (*negative, *digits),
            other => {
                return Err(NpyError::ShapeElement {
                    axis,
                    found: other.kind(),
                })
            }
        };
        // The parser guarantees ASCII digits without leading zeros, so "-0" is the
        // only negative spelling of zero.
        if negative && digits != b"0" {
            return Err(NpyError::NegativeDim {
                axis,
                value: format!("-{}", clip(digits)),
            });
        }
        let dim = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| NpyError::DimTooLarge {
                axis,
                value: clip(digits).to_string(),
            })?;
        shape.push(dim);
    }
    Ok(shape)
}

/// `product(shape) * itemsize`, refusing any array whose span (zero-length axes counted
/// as 1, which bounds every stride too) exceeds `isize::MAX` bytes — the most a Rust
/// slice or a pointer offset may cover.
fn checked_data_len(shape: &[usize], itemsize: usize) -> Result<usize, NpyError> {
    let overflow = || NpyError::SizeOverflow {
        shape: shape_str(shape),
        itemsize,
    };
    let limit = isize::MAX as usize;
    let mut span = itemsize;
    for &dim in shape {
        span = span
            .checked_mul(dim.max(1))
            .filter(|&s| s <= limit)
            .ok_or_else(overflow)?;
    }
    shape
        .iter()
        .try_fold(itemsize, |n, &d| n.checked_mul(d))
        .ok_or_else(overflow)
}

/// A shape the way Python prints it: `()`, `(5,)`, `(3, 4)`.
fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The supported type strings, for the `UnsupportedDescr` message.
fn supported_typestrs() -> String {
    let names: Vec<String> = DType::ALL
        .iter()
        .filter(|d| **d != DType::BF16) // NumPy has no bfloat16 type string
        .map(|d| format!("'{}' ({d})", d.typestr()))
        .collect();
    names.join(", ")
}

/// Untrusted bytes made safe to put in a message: escaped, and cut at 64 bytes so a
/// megabyte of garbage does not become a megabyte of error text.
pub(crate) fn clip(bytes: &[u8]) -> impl std::fmt::Display + '_ {
    const MAX: usize = 64;
    struct Clipped<'a>(&'a [u8]);
    impl std::fmt::Display for Clipped<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let head = self.0.get(..MAX).unwrap_or(self.0);
            write!(f, "{}", head.escape_ascii())?;
            if self.0.len() > MAX {
                write!(f, "...({} bytes)", self.0.len())?;
            }
            Ok(())
        }
    }
    Clipped(bytes)
}

#[cfg(test)]
mod tests;

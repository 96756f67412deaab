//! Encoded images to pixels: JPEG (libjpeg-turbo's decoder, as vendored by `mozjpeg-sys`)
//! and PNG (the `png` crate), chosen by content, never by file name.
//!
//! [`probe`] reads only the header (size and format). [`decode`] turns bytes into HWC `uint8`
//! pixels, RGB or gray, and may skip work the caller does not need:
//!
//! - a [`Region`]: a JPEG decode skips the MCU rows below and above it
//!   (`jpeg_skip_scanlines`) and the MCU columns left and right of it (`jpeg_crop_scanline`);
//! - a DCT-domain downscale (`max_scale_denom` 2, 4 or 8): libjpeg's scaled inverse DCT
//!   yields each 8x8 block as 4x4, 2x2 or 1x1 pixels, so the decode does a fraction of the
//!   work and the resampler reads a fraction of the pixels;
//! - fast chroma upsampling ([`DecodeRequest::fast_upsampling`]);
//! - with [`decode_indexed`], the MCU rows above the region (their entropy-coded data is
//!   still read in order otherwise), once [`EntryPoints`] know where the region's first
//!   row starts.
//!
//! A baseline JPEG scan is entropy-decoded by zerofeed's own Huffman decoder (the private
//! `huffman` module, plugged into libjpeg), the same coefficients as libjpeg's, faster;
//! every other JPEG by libjpeg's.
//!
//! What comes back says which full-resolution box each decoded pixel covers
//! ([`Decoded::origin_top`], [`Decoded::scale_denom`]), so the caller maps its crop box into
//! decoded coordinates. The size in the header is checked against `max_pixels` before any
//! pixel memory is allocated, and every malformed input is a typed [`DecodeError`]: libjpeg's
//! fatal errors unwind out of the C code to this module's boundary instead of calling
//! `exit()`, and a panic of either decoder is caught there too.
//!
//! Gray output from colour images uses Pillow's `convert("L")` (ITU-R 601-2 luma,
//! `L = R * 299/1000 + G * 587/1000 + B * 114/1000`, in Pillow's 16-bit fixed point), so
//! `mode="L"` matches `Image.open(f).convert("L")`. 16-bit PNG samples become 8-bit by
//! rounding (`round(v / 257)`), alpha is dropped (not composited), palettes are expanded.

mod entry;
mod huffman;
mod jpeg;
mod png;

pub use entry::{EntryPointCache, EntryPoints, DEFAULT_ENTRY_POINT_BUDGET};

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The encoded formats [`decode`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG / JFIF (baseline, extended and progressive; gray, YCbCr, RGB, CMYK, YCCK).
    Jpeg,
    /// PNG (1- to 16-bit; gray, gray+alpha, RGB, RGBA, palette).
    Png,
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Png => "PNG",
        })
    }
}

/// The channels of decoded pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColorMode {
    /// Three channels, red, green, blue.
    Rgb,
    /// One channel, Pillow's `"L"` luma.
    Gray,
}

impl ColorMode {
    /// The number of channels decoded pixels have: 3 or 1.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Rgb => 3,
            ColorMode::Gray => 1,
        }
    }
}

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Full-resolution rows.
    pub height: usize,
    /// Full-resolution columns.
    pub width: usize,
    /// The format found by content.
    pub format: ImageFormat,
}

/// A rectangle in full-resolution pixel coordinates of the encoded image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// What to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeRequest {
    /// The output channels.
    pub mode: ColorMode,
    /// Pixels outside it may be skipped (JPEG: MCU rows/columns); None = whole image.
    pub region: Option<Region>,
    /// Largest DCT downscale the caller accepts: 1, 2, 4 or 8. The decoder may use a smaller
    /// one (PNG always uses 1). 1 = exact full-resolution pixels.
    pub max_scale_denom: u32,
    /// Refuse before allocating when height*width exceeds this (decompression bombs).
    pub max_pixels: u64,
    /// JPEG with subsampled chroma (4:2:0, 4:2:2): upsample the chroma by repeating each
    /// sample, in the same pass as the colour conversion (libjpeg's merged upsampler),
    /// instead of the smooth (triangle) filter Pillow uses. Faster; the pixels differ from
    /// a full decode's by the chroma's half-pixel detail (see the README's fast-decode table).
    pub fast_upsampling: bool,
}

/// The default `max_pixels`: 178,956,970 pixels, Pillow's `MAX_IMAGE_PIXELS` doubled (the
/// size at which Pillow refuses an image outright).
pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;

impl DecodeRequest {
    /// The exact, whole-image request: every full-resolution pixel, [`DEFAULT_MAX_PIXELS`].
    pub fn full(mode: ColorMode) -> DecodeRequest {
        DecodeRequest {
            mode,
            region: None,
            max_scale_denom: 1,
            max_pixels: DEFAULT_MAX_PIXELS,
            fast_upsampling: false,
        }
    }
}

/// Decoded pixels, HWC uint8, contiguous. Decoded pixel (y, x) covers the full-resolution box
/// rows [origin_top + y*scale_denom, origin_top + (y+1)*scale_denom) and likewise columns
/// (clipped at the image's edge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// `height * width * channels` bytes, row-major, channels last.
    pub pixels: Vec<u8>,
    /// Decoded rows.
    pub height: usize,
    /// Decoded columns.
    pub width: usize,
    /// 3 (RGB) or 1 (gray).
    pub channels: usize,
    /// The full-resolution row of decoded row 0.
    pub origin_top: usize,
    /// The full-resolution column of decoded column 0.
    pub origin_left: usize,
    /// The downscale used: 1, 2, 4 or 8.
    pub scale_denom: u32,
}

/// Why bytes could not be decoded. Messages say what is wrong; the caller adds the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Zero bytes.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// The data ends before the image does.
    #[error("the {format} data is truncated: it ends before the image does")]
    Truncated {
        /// The format the header announced.
        format: ImageFormat,
    },
    /// The data is not a valid image of its format.
    #[error("corrupt {format} data: {reason}")]
    Corrupt {
        /// The format the header announced.
        format: ImageFormat,
        /// What the decoder found.
        reason: String,
    },
    /// A known image format zerofeed does not decode (GIF, WebP, ...), or a JPEG/PNG variant
    /// it does not (arithmetic-coded JPEG, 12-bit JPEG).
    #[error("{format} is not supported: convert it to JPEG or PNG")]
    Unsupported {
        /// The format or variant.
        format: String,
    },
    /// The bytes are not an image at all (a text file named `.jpg`, say).
    #[error("not a JPEG or PNG image: the content starts with {start}")]
    NotAnImage {
        /// The first bytes, escaped.
        start: String,
    },
    /// The header declares more pixels than allowed; refused before allocating.
    #[error("the image is {height}x{width} = {} pixels, more than max_pixels={max_pixels} (a decompression bomb?); raise max_pixels if it is genuine", (*.height as u64) * (*.width as u64))]
    TooManyPixels {
        /// Rows in the header.
        height: usize,
        /// Columns in the header.
        width: usize,
        /// The limit.
        max_pixels: u64,
    },
    /// The bytes could not be had at all (a file that vanished after the source was made).
    #[error("cannot read it: {reason}")]
    Unreadable {
        /// What the operating system said.
        reason: String,
    },
    /// The request itself is invalid for this image.
    #[error("invalid decode request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
}

/// Which format the bytes are, by their first bytes.
fn sniff(bytes: &[u8]) -> Result<ImageFormat, DecodeError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(PNG) || (bytes.len() < PNG.len() && PNG.starts_with(bytes)) {
        return Ok(ImageFormat::Png);
    }
    let other = if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("GIF")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("WebP")
    } else if bytes.starts_with(b"BM") && bytes.len() >= 14 {
        Some("BMP")
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some("TIFF")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        Some("HEIF/AVIF")
    } else if bytes.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) || bytes.starts_with(b"\0\0\0\x0cjP  ") {
        Some("JPEG 2000")
    } else {
        None
    };
    match other {
        Some(format) => Err(DecodeError::Unsupported {
            format: format.to_owned(),
        }),
        None => Err(DecodeError::NotAnImage {
            start: escape_start(bytes),
        }),
    }
}

fn escape_start(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    let text: String = head
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    format!("b\"{text}\"{}", if bytes.len() > 16 { "..." } else { "" })
}

/// The header's size and format, without decoding pixels.
///
/// Reads only the markers (JPEG) or the `IHDR` chunk (PNG) at the start of `bytes`.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, DecodeError> {
    let format = sniff(bytes)?;
    let (height, width) = match format {
        ImageFormat::Jpeg => jpeg::probe(bytes)?,
        ImageFormat::Png => png::probe(bytes)?,
    };
    Ok(ImageInfo {
        height,
        width,
        format,
    })
}

/// Decodes `bytes` (JPEG or PNG, found by content) as `request` asks.
///
/// Never panics and never aborts: every failure is a [`DecodeError`].
pub fn decode(bytes: &[u8], request: &DecodeRequest) -> Result<Decoded, DecodeError> {
    decode_reusing(bytes, request, Vec::new())
}

/// [`decode`] into `buffer`'s allocation (a JPEG's pixels; a PNG's are its decoder's own):
/// a worker hands back the last image's [`Decoded::pixels`], so that decoding an image
/// neither allocates nor zeroes its pixels (that was 5 % of a train-recipe image's time:
/// the zeroing, the page faults of fresh memory, and `malloc`).
///
/// ```
/// # use zerofeed_core::decode::{decode_reusing, ColorMode, DecodeRequest};
/// let png = [137u8, 80, 78, 71, 13, 10, 26, 10];
/// let request = DecodeRequest::full(ColorMode::Rgb);
/// assert!(decode_reusing(&png, &request, Vec::with_capacity(1 << 20)).is_err());
/// ```
pub fn decode_reusing(
    bytes: &[u8],
    request: &DecodeRequest,
    buffer: Vec<u8>,
) -> Result<Decoded, DecodeError> {
    decode_with(bytes, request, buffer, Huffman::Own)
}

/// [`decode_reusing`] that starts a JPEG's scan at the first MCU row the region needs when
/// `entries` knows where that row starts, and records the starts of the rows it decodes
/// (see [`EntryPoints`]): a loader keeps each file's entry points between epochs. The
/// pixels are those of [`decode_reusing`]. PNG ignores `entries`.
///
/// ```
/// # use zerofeed_core::decode::{decode_indexed, ColorMode, DecodeRequest, EntryPoints};
/// let mut entries = EntryPoints::new();
/// let request = DecodeRequest::full(ColorMode::Rgb);
/// assert!(decode_indexed(b"not an image", &request, Vec::new(), &mut entries).is_err());
/// assert_eq!(entries.rows(), 0);
/// ```
pub fn decode_indexed(
    bytes: &[u8],
    request: &DecodeRequest,
    buffer: Vec<u8>,
    entries: &mut EntryPoints,
) -> Result<Decoded, DecodeError> {
    decode_inner(bytes, request, buffer, Huffman::Own, Some(entries))
}

/// Whose Huffman decoder reads a baseline JPEG's scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Huffman {
    /// zerofeed's (the default; see the `huffman` module).
    Own,
    /// libjpeg-turbo's own: the reference that tests and benchmarks compare against.
    Libjpeg,
}

/// [`decode_reusing`] with a choice of Huffman decoder, for tests and benchmarks.
#[doc(hidden)]
pub fn decode_with(
    bytes: &[u8],
    request: &DecodeRequest,
    buffer: Vec<u8>,
    huffman: Huffman,
) -> Result<Decoded, DecodeError> {
    decode_inner(bytes, request, buffer, huffman, None)
}

fn decode_inner(
    bytes: &[u8],
    request: &DecodeRequest,
    buffer: Vec<u8>,
    huffman: Huffman,
    entries: Option<&mut EntryPoints>,
) -> Result<Decoded, DecodeError> {
    let info = probe(bytes)?;
    check_request(&info, request)?;
    // Neither decoder is expected to panic; a panic would be a decoder bug on hostile input,
    // and one bad file must not take a training run down.
    let result = catch_unwind(AssertUnwindSafe(|| match info.format {
        ImageFormat::Jpeg => jpeg::decode(bytes, &info, request, buffer, huffman, entries),
        ImageFormat::Png => png::decode(bytes, &info, request),
    }));
    result.unwrap_or_else(|payload| {
        let reason = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("the decoder failed");
        Err(DecodeError::Corrupt {
            format: info.format,
            reason: reason.to_owned(),
        })
    })
}

fn check_request(info: &ImageInfo, request: &DecodeRequest) -> Result<(), DecodeError> {
    let pixels = (info.height as u64).saturating_mul(info.width as u64);
    if pixels > request.max_pixels {
        return Err(DecodeError::TooManyPixels {
            height: info.height,
            width: info.width,
            max_pixels: request.max_pixels,
        });
    }
    if ![1, 2, 4, 8].contains(&request.max_scale_denom) {
        return Err(DecodeError::BadRequest {
            reason: format!(
                "max_scale_denom is {}; use 1, 2, 4 or 8",
                request.max_scale_denom
            ),
        });
    }
    if let Some(r) = request.region {
        let fits = r.height > 0
            && r.width > 0
            && r.top
                .checked_add(r.height)
                .is_some_and(|b| b <= info.height)
            && r.left.checked_add(r.width).is_some_and(|e| e <= info.width);
        if !fits {
            return Err(DecodeError::BadRequest {
                reason: format!(
                    "region {r:?} is empty or outside the {}x{} image",
                    info.height, info.width
                ),
            });
        }
    }
    Ok(())
}

/// The region, or the whole image.
fn region_or_all(info: &ImageInfo, request: &DecodeRequest) -> Region {
    request.region.unwrap_or(Region {
        top: 0,
        left: 0,
        height: info.height,
        width: info.width,
    })
}

/// Pillow's `L` from RGB: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`, the 16-bit
/// fixed-point form of ITU-R 601-2 luma that `Image.convert("L")` uses.
#[inline]
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// Interleaved RGB to Pillow's `L`, `rgb.len() / 3` pixels into `gray`.
fn rgb_to_gray(rgb: &[u8], gray: &mut [u8]) {
    for (px, out) in rgb.chunks_exact(3).zip(gray.iter_mut()) {
        *out = luma(px[0], px[1], px[2]);
    }
}

#[cfg(test)]
mod tests;

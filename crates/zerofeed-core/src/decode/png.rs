//! PNG through the `png` crate (pure Rust): every bit depth and colour type, expanded to
//! 8-bit gray or RGB with alpha dropped, CRCs checked.

use std::io::ErrorKind;

use super::{
    luma, region_or_all, ColorMode, DecodeError, DecodeRequest, Decoded, ImageFormat, ImageInfo,
};

/// `(height, width)` from `IHDR`, which the format puts first.
pub(super) fn probe(bytes: &[u8]) -> Result<(usize, usize), DecodeError> {
    let Some(ihdr) = bytes.get(8..24) else {
        return Err(DecodeError::Truncated {
            format: ImageFormat::Png,
        });
    };
    if &ihdr[..8] != b"\0\0\0\x0dIHDR" {
        return Err(corrupt("the first chunk is not a 13-byte IHDR"));
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (width, height) = (be(&ihdr[8..12]), be(&ihdr[12..16]));
    if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(corrupt(format!("IHDR declares {height}x{width} pixels")));
    }
    Ok((height as usize, width as usize))
}

fn corrupt(reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt {
        format: ImageFormat::Png,
        reason: reason.into(),
    }
}

fn error(e: png::DecodingError) -> DecodeError {
    match e {
        png::DecodingError::IoError(io) if io.kind() == ErrorKind::UnexpectedEof => {
            DecodeError::Truncated {
                format: ImageFormat::Png,
            }
        }
        png::DecodingError::LimitsExceeded => {
            corrupt("the decoded image would exceed the memory limit")
        }
        other => corrupt(other.to_string()),
    }
}

pub(super) fn decode(
    bytes: &[u8],
    info: &ImageInfo,
    request: &DecodeRequest,
) -> Result<Decoded, DecodeError> {
    let mut decoder = png::Decoder::new(bytes);
    decoder.set_transformations(png::Transformations::EXPAND);
    // The header was checked against max_pixels; this bounds what the crate allocates to
    // that image at 16-bit RGBA, whatever the later chunks claim.
    let limit = info
        .height
        .saturating_mul(info.width)
        .saturating_mul(8)
        .saturating_add(1 << 20);
    decoder.set_limits(png::Limits { bytes: limit });
    let mut reader = decoder.read_info().map_err(error)?;
    let mut frame = vec![0u8; reader.output_buffer_size()];
    let out = reader.next_frame(&mut frame).map_err(error)?;
    let (height, width) = (out.height as usize, out.width as usize);
    if (height, width) != (info.height, info.width) {
        return Err(corrupt("the decoder and IHDR disagree on the image size"));
    }
    let samples = match out.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(corrupt("the palette was not expanded")),
    };
    let wide = out.bit_depth == png::BitDepth::Sixteen;
    let bytes_per = if wide { 2 } else { 1 };
    let line = out.line_size;
    let region = region_or_all(info, request);
    let channels = request.mode.channels();
    let mut pixels = Vec::with_capacity(region.height * region.width * channels);
    for y in region.top..region.top + region.height {
        let row = &frame[y * line..(y + 1) * line];
        for x in region.left..region.left + region.width {
            let px = &row[x * samples * bytes_per..(x + 1) * samples * bytes_per];
            // 16 -> 8 bits: round(v / 257), the nearest 8-bit level.
            let at = |c: usize| {
                if wide {
                    ((u32::from(u16::from_be_bytes([px[2 * c], px[2 * c + 1]])) * 255 + 32895)
                        >> 16) as u8
                } else {
                    px[c]
                }
            };
            match (samples, request.mode) {
                (1 | 2, ColorMode::Gray) => pixels.push(at(0)),
                (1 | 2, ColorMode::Rgb) => {
                    let v = at(0);
                    pixels.extend_from_slice(&[v, v, v]);
                }
                (_, ColorMode::Rgb) => pixels.extend_from_slice(&[at(0), at(1), at(2)]),
                (_, ColorMode::Gray) => pixels.push(luma(at(0), at(1), at(2))),
            }
        }
    }
    Ok(Decoded {
        pixels,
        height: region.height,
        width: region.width,
        channels,
        origin_top: region.top,
        origin_left: region.left,
        scale_denom: 1,
    })
}

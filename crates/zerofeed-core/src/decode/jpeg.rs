//! JPEG through libjpeg-turbo's decoder (vendored and built with `cc` by `mozjpeg-sys`).
//!
//! libjpeg reports a fatal error by calling `error_exit`, which must not return. Ours unwinds
//! (`resume_unwind`, so no panic hook prints anything) out through the C frames, which
//! `mozjpeg-sys` compiles with `-fexceptions` for exactly this, to [`decode`]'s
//! `catch_unwind`, which frees libjpeg's memory and returns the message as a [`DecodeError`].
//! Corrupt-data warnings (libjpeg would otherwise fill the rest of the image with gray and
//! carry on) are made fatal the same way, so a truncated file is an error, as in Pillow.

use std::ffi::{c_int, c_ulong, CStr};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg_sys as ffi;

use super::{
    huffman, region_or_all, rgb_to_gray, ColorMode, DecodeError, DecodeRequest, Decoded,
    EntryPoints, Huffman, ImageFormat, ImageInfo,
};

pub(super) fn corrupt(reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt {
        format: ImageFormat::Jpeg,
        reason: reason.into(),
    }
}

pub(super) const TRUNCATED: DecodeError = DecodeError::Truncated {
    format: ImageFormat::Jpeg,
};

/// `(height, width)` from the first frame header, reading markers only.
pub(super) fn probe(bytes: &[u8]) -> Result<(usize, usize), DecodeError> {
    scan(bytes).map(|h| (h.height, h.width))
}

/// What the markers before the image data say.
struct Header {
    height: usize,
    width: usize,
    /// An Adobe APP14 segment came first: CMYK is then stored inverted.
    adobe: bool,
}

fn scan(bytes: &[u8]) -> Result<Header, DecodeError> {
    let mut adobe = false;
    let mut at = 2; // past SOI
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(if at + 1 >= bytes.len() {
                TRUNCATED
            } else {
                corrupt(format!("no marker at byte {at} of the header"))
            });
        };
        at += 2;
        match marker {
            0x01 | 0xD0..=0xD7 => continue, // no length
            0xD8..=0xDA => {
                return Err(corrupt("no frame header (SOF) before the image data"));
            }
            _ => {}
        }
        let Some(len) = bytes
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return Err(TRUNCATED);
        };
        if len < 2 {
            return Err(corrupt(format!("marker 0x{marker:02X} has length {len}")));
        }
        let is_frame = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            let Some(sof) = bytes.get(at + 2..at + 8) else {
                return Err(TRUNCATED);
            };
            if matches!(marker, 0xC3 | 0xC7 | 0xCB | 0xCF) {
                return Err(DecodeError::Unsupported {
                    format: "lossless JPEG".to_owned(),
                });
            }
            if sof[0] != 8 {
                return Err(DecodeError::Unsupported {
                    format: format!("{}-bit JPEG", sof[0]),
                });
            }
            let height = usize::from(u16::from_be_bytes([sof[1], sof[2]]));
            let width = usize::from(u16::from_be_bytes([sof[3], sof[4]]));
            if height == 0 || width == 0 {
                return Err(corrupt(format!(
                    "the frame header declares {height}x{width} pixels"
                )));
            }
            return Ok(Header {
                height,
                width,
                adobe,
            });
        }
        if marker == 0xEE && bytes.get(at + 2..at + 7) == Some(b"Adobe") {
            adobe = true;
        }
        at += len;
    }
}

/// What `error_exit` unwinds with.
pub(super) struct Abort(pub(super) DecodeError);

fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    type Format = unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut u8);
    let mut buffer = [0u8; 200]; // JMSG_LENGTH_MAX
                                 // SAFETY: `cinfo.err` is the manager set up in `decode`, alive for the whole decode.
    let format = unsafe { (*cinfo.err).format_message };
    if let Some(format) = format {
        // SAFETY: the C prototype is `void (*)(j_common_ptr, char *)`: the binding's
        // `&[u8; 80]` is the same pointer ABI, but libjpeg writes through it (up to
        // JMSG_LENGTH_MAX bytes), so it is called with a mutable pointer to 200 bytes.
        unsafe {
            let format: Format = std::mem::transmute(format);
            format(cinfo, buffer.as_mut_ptr());
        }
    }
    CStr::from_bytes_until_nul(&buffer)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn classify(text: String) -> DecodeError {
    if text.starts_with("Premature end") || text.contains("Empty input buffer") {
        return TRUNCATED;
    }
    if text.contains("Unsupported") || text.contains("not implemented") || text.contains("Sorry") {
        return DecodeError::Unsupported {
            format: format!("this JPEG ({text})"),
        };
    }
    corrupt(text)
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let error = classify(message(cinfo));
    resume_unwind(Box::new(Abort(error)));
}

unsafe extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return; // trace messages
    }
    let text = message(cinfo);
    // Stray bytes between segments and odd metadata are common in real files and harmless
    // (Pillow ignores them too); anything about the entropy-coded data means wrong pixels.
    let fatal = text.starts_with("Premature end")
        || (text.starts_with("Corrupt JPEG data")
            && !text.contains("extraneous")
            && !text.contains("ICC"))
        || text.contains("SOS parameters")
        || text.contains("progression")
        || text.contains("resync");
    if fatal {
        resume_unwind(Box::new(Abort(classify(text))));
    }
}

pub(super) fn decode(
    bytes: &[u8],
    info: &ImageInfo,
    request: &DecodeRequest,
    buffer: Vec<u8>,
    huffman: Huffman,
    entries: Option<&mut EntryPoints>,
) -> Result<Decoded, DecodeError> {
    // SAFETY: jpeg_error_mgr is plain C data (integers, pointers, Option<fn>) for which
    // all-zero is valid; jpeg_std_error fills it in below.
    let mut err: Box<ffi::jpeg_error_mgr> =
        Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
    // SAFETY: as above; jpeg_CreateDecompress initialises the struct.
    let mut cinfo: Box<ffi::jpeg_decompress_struct> =
        Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
    // SAFETY: `err` is a valid, exclusively borrowed manager.
    unsafe { ffi::jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    cinfo.common.err = &mut *err;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `cinfo` is zeroed with a valid `err`, as jpeg_CreateDecompress requires.
        unsafe {
            ffi::jpeg_CreateDecompress(
                &mut *cinfo,
                ffi::JPEG_LIB_VERSION,
                std::mem::size_of::<ffi::jpeg_decompress_struct>(),
            )
        };
        run(&mut cinfo, bytes, info, request, buffer, huffman, entries)
    }));
    // SAFETY: valid after jpeg_CreateDecompress in any state, including after an error exit
    // unwound out of the library; also harmless on the zeroed struct if creation failed
    // (its `mem` is null and destroy then does nothing).
    unsafe { ffi::jpeg_destroy_decompress(&mut cinfo) };
    drop(err); // outlives every use through cinfo.common.err
    match outcome {
        Ok(result) => result,
        Err(payload) => match payload.downcast::<Abort>() {
            Ok(abort) => Err(abort.0),
            Err(other) => resume_unwind(other), // a real panic: decode()'s boundary reports it
        },
    }
}

fn run(
    cinfo: &mut ffi::jpeg_decompress_struct,
    bytes: &[u8],
    info: &ImageInfo,
    request: &DecodeRequest,
    buffer: Vec<u8>,
    huffman: Huffman,
    entries: Option<&mut EntryPoints>,
) -> Result<Decoded, DecodeError> {
    // SAFETY: `bytes` outlives the decompressor (destroyed before `decode` returns).
    unsafe { ffi::jpeg_mem_src(cinfo, bytes.as_ptr(), bytes.len() as c_ulong) };
    // SAFETY: a created decompressor with a source.
    unsafe { ffi::jpeg_read_header(cinfo, 1) };
    if cinfo.image_height as usize != info.height || cinfo.image_width as usize != info.width {
        return Err(corrupt(
            "the frame header and libjpeg disagree on the image size",
        ));
    }
    let source_space = cinfo.jpeg_color_space;
    let cmyk = matches!(source_space, ffi::JCS_CMYK | ffi::JCS_YCCK);
    let (space, components) = match (request.mode, source_space) {
        (_, ffi::JCS_CMYK | ffi::JCS_YCCK) => (ffi::JCS_CMYK, 4),
        (ColorMode::Gray, ffi::JCS_GRAYSCALE) => (ffi::JCS_GRAYSCALE, 1),
        _ => (ffi::JCS_RGB, 3),
    };
    cinfo.out_color_space = space;
    let denom = request.max_scale_denom;
    cinfo.scale_num = 8 / denom;
    cinfo.scale_denom = 8;
    cinfo.do_fancy_upsampling = ffi::boolean::from(!request.fast_upsampling);
    // SAFETY: a decompressor after jpeg_read_header.
    unsafe { ffi::jpeg_start_decompress(cinfo) };
    let (out_h, out_w) = (cinfo.output_height as usize, cinfo.output_width as usize);
    let d = denom as usize;
    let region = region_or_all(info, request);
    let top = region.top / d;
    let bottom = (region.top + region.height).div_ceil(d).min(out_h);
    let left = region.left / d;
    let right = (region.left + region.width).div_ceil(d).min(out_w);
    if top >= bottom || left >= right {
        return Err(corrupt("the scaled image is smaller than the region"));
    }
    // Chroma upsampling treats a cropped window's edges as the image's, so the outermost
    // column on a cut side differs from a full decode; ask for one column more on each side
    // and drop those columns below, so what is returned equals a full decode's pixels.
    let want_left = left.saturating_sub(1);
    let want_right = (right + 1).min(out_w);
    let (mut x, mut w) = (
        want_left as ffi::JDIMENSION,
        (want_right - want_left) as ffi::JDIMENSION,
    );
    if w as usize != out_w {
        // SAFETY: after jpeg_start_decompress, before any scanline is read. Moves `x` left to
        // an iMCU boundary and widens `w` to cover the asked-for columns.
        unsafe { ffi::jpeg_crop_scanline(cinfo, &mut x, &mut w) };
    } else {
        x = 0;
    }
    let window = cinfo.output_width as usize;
    debug_assert_eq!(window, w as usize);
    // Kept alive (libjpeg calls into it) until the decompressor stops, below.
    let _scan = match huffman {
        // SAFETY: started and cropped, no scanline read yet, reading `bytes` through
        // jpeg_mem_src.
        Huffman::Own => unsafe { huffman::install(cinfo, bytes, entries)? },
        Huffman::Libjpeg => None,
    };
    let cut_left = usize::from(x > 0);
    let cut_right = usize::from((x as usize) + window < out_w);
    if top > 0 {
        // SAFETY: a started decompressor with `top` < output_height rows left.
        let skipped = unsafe { ffi::jpeg_skip_scanlines(cinfo, top as ffi::JDIMENSION) };
        if skipped as usize != top {
            return Err(TRUNCATED);
        }
    }
    let height = bottom - top;
    let row = window * components;
    // The buffer's old bytes need no zeroing: every scanline below is written in full before
    // `raw` is returned (a short read returns an error instead).
    let mut raw = buffer;
    raw.resize(height * row, 0);
    let mut done = 0;
    while done < height {
        let mut rows: Vec<*mut u8> = raw[done * row..]
            .chunks_exact_mut(row)
            .map(<[u8]>::as_mut_ptr)
            .collect();
        // SAFETY: `rows` holds `height - done` pointers to distinct rows of `row` bytes each,
        // `output_width * output_components` being exactly `row`.
        let got = unsafe {
            ffi::jpeg_read_scanlines(cinfo, rows.as_mut_ptr(), rows.len() as ffi::JDIMENSION)
        };
        if got == 0 {
            return Err(TRUNCATED);
        }
        done += got as usize;
    }
    if (cinfo.output_scanline as usize) < out_h {
        // SAFETY: a started decompressor; stops it without reading the rest.
        unsafe { ffi::jpeg_abort_decompress(cinfo) };
    } else {
        // SAFETY: every scanline has been read.
        unsafe { ffi::jpeg_finish_decompress(cinfo) };
    }
    let width = window - cut_left - cut_right;
    if width != window {
        let keep = width * components;
        for y in 0..height {
            let from = y * row + cut_left * components;
            raw.copy_within(from..from + keep, y * keep);
        }
        raw.truncate(height * keep);
    }
    let channels = request.mode.channels();
    let pixels = if cmyk {
        cmyk_to(&raw, scan(bytes)?.adobe, request.mode)
    } else if components == channels {
        raw
    } else {
        let mut gray = vec![0u8; height * width];
        rgb_to_gray(&raw, &mut gray);
        gray
    };
    Ok(Decoded {
        pixels,
        height,
        width,
        channels,
        origin_top: top * d,
        origin_left: (x as usize + cut_left) * d,
        scale_denom: denom,
    })
}

/// CMYK (inverted, as Adobe writes it and Pillow saves it, when the Adobe marker is there)
/// to RGB the way Pillow's `convert("RGB")` does: `R = (255 - K) - C * (255 - K) / 255`.
fn cmyk_to(raw: &[u8], inverted: bool, mode: ColorMode) -> Vec<u8> {
    let mul_div_255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(raw.len() / 4 * mode.channels());
    for px in raw.chunks_exact(4) {
        let [c, m, y, k] = if inverted {
            [255 - px[0], 255 - px[1], 255 - px[2], 255 - px[3]]
        } else {
            [px[0], px[1], px[2], px[3]]
        };
        let nk = 255 - u32::from(k);
        let ch = |v: u8| (nk - mul_div_255(u32::from(v), nk)) as u8;
        let (r, g, b) = (ch(c), ch(m), ch(y));
        match mode {
            ColorMode::Rgb => out.extend_from_slice(&[r, g, b]),
            ColorMode::Gray => out.push(super::luma(r, g, b)),
        }
    }
    out
}

//! Image fields: samples of any size (decoded per sample, or variable-shape arrays) run
//! through an [`ImagePlan`] into fixed-size batch slots, with per-worker scratch.

use crate::decode::{
    decode_indexed, decode_reusing, probe, DecodeError, DecodeRequest, EntryPointCache, Region,
};
use crate::gather::gather;
use crate::layout::Layout;
use crate::ops::{ImagePlan, ImageRef, ImageScratch, OpsError, SampleKey};
use crate::source::ImageOptions;
use crate::view::SampleRef;

use super::PipelineError;

/// One worker's reusable memory for one field.
#[derive(Debug, Default)]
pub(super) struct FieldScratch {
    pub(super) image: ImageScratch,
    /// Strided samples whose pixels are not packed HWC rows are packed here first.
    staging: Vec<u8>,
    /// The encoded bytes of sources that read samples ([`Source::read_sample`]): image files.
    pub(super) encoded: Vec<u8>,
    /// The last decoded image's pixels, whose allocation the next decode reuses.
    pixels: Vec<u8>,
}

/// Why one image sample failed, before the field's label and the sample's name are added.
pub(super) enum Failure {
    Decode(DecodeError),
    Ops(OpsError),
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Failure {
        Failure::Decode(e)
    }
}

impl From<OpsError> for Failure {
    fn from(e: OpsError) -> Failure {
        Failure::Ops(e)
    }
}

impl Failure {
    pub(super) fn named(self, label: String, name: String) -> PipelineError {
        match self {
            Failure::Decode(source) => PipelineError::Decode {
                label,
                name,
                source: Box::new(source),
            },
            Failure::Ops(source) => PipelineError::Image {
                label,
                name,
                source: Box::new(source),
            },
        }
    }
}

/// Decodes one encoded sample and runs `plan` on it. The geometry is resolved on the
/// header's size first, so the decoder is asked only for what the output reads (the source
/// box, narrowed to the output window's footprint: JPEG skips the MCU rows and columns
/// outside it) at the largest DCT downscale that stays at or above
/// the resized size; `fast_decode=False` asks for every full-resolution pixel. With
/// `entries`, a region decode starts at the first MCU row it needs once an earlier epoch
/// has recorded where that row starts in this file.
pub(super) fn run_encoded(
    plan: &ImagePlan,
    bytes: &[u8],
    options: &ImageOptions,
    entries: Option<&EntryPointCache>,
    key: SampleKey,
    dst: &mut [u8],
    scratch: &mut FieldScratch,
) -> Result<(), Failure> {
    let info = probe(bytes)?;
    let geometry = plan.geometry(info.height, info.width, key)?;
    let (top, left, height, width) = geometry.footprint();
    let whole = (top, left, height, width) == (0, 0, info.height, info.width);
    let request = DecodeRequest {
        mode: options.mode,
        region: (options.fast_decode && !whole).then_some(Region {
            top,
            left,
            height,
            width,
        }),
        max_scale_denom: if options.fast_decode {
            geometry.max_scale_denom()
        } else {
            1
        },
        max_pixels: options.max_pixels,
        fast_upsampling: options.fast_decode,
    };
    let buffer = std::mem::take(&mut scratch.pixels);
    let decoded = match entries {
        Some(cache) if request.region.is_some() => {
            let mut points = cache.take(key.index);
            let decoded = decode_indexed(bytes, &request, buffer, &mut points);
            cache.put(key.index, points);
            decoded?
        }
        _ => decode_reusing(bytes, &request, buffer)?,
    };
    if decoded.channels != plan.channels() {
        return Err(Failure::Ops(OpsError::NotAnImage {
            op: format!("an image chain compiled for {} channel(s)", plan.channels()),
            shape: vec![decoded.height, decoded.width, decoded.channels],
        }));
    }
    let image = ImageRef {
        data: &decoded.pixels,
        height: decoded.height,
        width: decoded.width,
        row_bytes: decoded.width * decoded.channels,
        origin_top: decoded.origin_top,
        origin_left: decoded.origin_left,
        scale: decoded.scale_denom,
    };
    let result = plan.run(image, &geometry, key, dst, &mut scratch.image);
    scratch.pixels = decoded.pixels;
    result?;
    Ok(())
}

/// Runs `plan` on one strided (decoded-array) sample.
pub(super) fn run_strided(
    plan: &ImagePlan,
    sample: SampleRef<'_>,
    key: SampleKey,
    dst: &mut [u8],
    scratch: &mut FieldScratch,
) -> Result<(), OpsError> {
    let layout: &Layout = sample.layout();
    let shape = layout.shape();
    let c = plan.channels();
    let (h, w) = match *shape {
        [h, w] if c == 1 && plan.rank() == 2 => (h, w),
        [h, w, cc] if cc == c && plan.rank() == 3 => (h, w),
        _ => {
            return Err(OpsError::NotAnImage {
                op: format!("an image chain compiled for {c} channel(s)"),
                shape: shape.to_vec(),
            })
        }
    };
    let geometry = plan.geometry(h, w, key)?;
    if h == 0 || w == 0 {
        return Err(OpsError::CropTooLarge {
            op: "the image".into(),
            need_h: geometry.out.0,
            need_w: geometry.out.1,
            got_h: h,
            got_w: w,
        });
    }
    let strides = layout.strides();
    let packed_pixels = layout.itemsize() == 1
        && strides[0] >= (w * c) as isize
        && strides[1] == c as isize
        && (c == 1 || strides.get(2) == Some(&1));
    let (data, row_bytes): (&[u8], usize) = if packed_pixels {
        let row = strides[0] as usize;
        // SAFETY: `SampleRef` guarantees that every element its layout addresses is readable
        // for the borrow; with these strides (checked above: rows `row >= w * c` bytes apart,
        // pixels packed) that is exactly the bytes `[0, (h - 1) * row + w * c)` from `ptr`.
        let bytes = unsafe { std::slice::from_raw_parts(sample.ptr(), (h - 1) * row + w * c) };
        (bytes, row)
    } else {
        scratch.staging.clear();
        scratch.staging.resize(layout.nbytes(), 0);
        // SAFETY: as above, the layout addresses only readable bytes; `staging` holds exactly
        // the packed sample.
        unsafe { gather(sample.ptr(), layout, &mut scratch.staging) };
        (&scratch.staging, w * c)
    };
    let image = ImageRef {
        data,
        height: h,
        width: w,
        row_bytes,
        origin_top: 0,
        origin_left: 0,
        scale: 1,
    };
    plan.run(image, &geometry, key, dst, &mut scratch.image)
}

//! Image fields: samples of any size (decoded per sample, or variable-shape arrays) run
//! through an [`ImagePlan`] into fixed-size batch slots, with per-worker scratch.

use crate::gather::gather;
use crate::layout::Layout;
use crate::ops::{ImagePlan, ImageRef, ImageScratch, SampleKey};
use crate::view::SampleRef;

use super::PipelineError;

/// One worker's reusable memory for one field.
#[derive(Debug, Default)]
pub(super) struct FieldScratch {
    pub(super) image: ImageScratch,
    /// Strided samples whose pixels are not packed HWC rows are packed here first.
    staging: Vec<u8>,
}

/// A per-sample failure of an image field, before it is given the field's label and the
/// sample's name.
pub(super) fn ops_error(
    label: String,
    name: String,
    source: crate::ops::OpsError,
) -> PipelineError {
    PipelineError::Image {
        label,
        name,
        source,
    }
}

/// Runs `plan` on one strided (decoded-array) sample.
pub(super) fn run_strided(
    plan: &ImagePlan,
    sample: SampleRef<'_>,
    key: SampleKey,
    dst: &mut [u8],
    scratch: &mut FieldScratch,
) -> Result<(), crate::ops::OpsError> {
    let layout: &Layout = sample.layout();
    let shape = layout.shape();
    let c = plan.channels();
    let (h, w) = match *shape {
        [h, w] if c == 1 && plan.rank() == 2 => (h, w),
        [h, w, cc] if cc == c && plan.rank() == 3 => (h, w),
        _ => {
            return Err(crate::ops::OpsError::NotAnImage {
                op: format!("an image chain compiled for {c} channel(s)"),
                shape: shape.to_vec(),
            })
        }
    };
    let geometry = plan.geometry(h, w, key)?;
    if h == 0 || w == 0 {
        return Err(crate::ops::OpsError::CropTooLarge {
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

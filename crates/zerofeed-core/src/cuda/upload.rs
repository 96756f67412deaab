//! Host views to CUDA device views: the one-off upload strategy behind `zerofeed.to_device`,
//! and device views over device allocations.
//!
//! Strategy (measured on an H200, see the README): pinned sources are copied straight from
//! their memory; contiguous pageable sources below one staging chunk too (the driver's own
//! pageable path beats the ring there: 14 vs 6 GB/s at 1 MiB); larger contiguous ones go
//! through the pinned staging ring by bytes, and strided ones row by row along axis 0, so no
//! extra full-size host copy is ever made.

use std::ops::Range;
use std::sync::Arc;

use crate::dlpack::{device_type, DLDevice};
use crate::dtype::DType;
use crate::gather::gather;
use crate::layout::Layout;
use crate::view::{KeepAlive, View};

use super::engine::{DeviceKeep, Uploader, STAGING_CHUNK};
use super::CudaError;

/// The DLPack device of CUDA device `index`.
pub fn cuda_device(index: i64) -> DLDevice {
    DLDevice {
        device_type: device_type::CUDA,
        device_id: i32::try_from(index).unwrap_or(i32::MAX),
    }
}

/// A C-contiguous device view of `shape` x `dtype` over the allocation `keep` owns.
pub fn device_view(
    keep: DeviceKeep,
    shape: &[usize],
    dtype: DType,
    index: i64,
) -> Result<View, CudaError> {
    let unsupported = |e: crate::view::ViewError| CudaError::Unsupported(e.to_string());
    let layout = Layout::c_contiguous(shape, dtype.itemsize())
        .map_err(|e| CudaError::Unsupported(e.to_string()))?;
    let address = keep.ptr() as usize;
    let keep: KeepAlive = Arc::new(keep);
    // SAFETY: `keep` owns a device allocation of at least `layout.nbytes()` bytes (every
    // caller allocates it for exactly this shape) and frees it only when dropped.
    unsafe { View::from_raw_parts(address, layout, dtype, cuda_device(index), false, keep) }
        .map_err(unsupported)
}

/// Copies a host view to `cuda:device` and returns the device view; the copy runs on the
/// uploader's stream and consumers' streams wait for it (DLPack stream rules).
pub fn to_device(view: &View, device: i64) -> Result<View, CudaError> {
    if !view.device().is_host_accessible() {
        return Err(CudaError::Unsupported(format!(
            "the source is on {}; to_device copies host memory",
            view.device().name()
        )));
    }
    let changed = |e: crate::view::ViewError| CudaError::Unsupported(e.to_string());
    view.check().map_err(changed)?;
    let uploader = Uploader::for_device(device)?;
    let mut uploader = uploader.lock().unwrap_or_else(|e| e.into_inner());
    let layout = view.layout();
    let nbytes = layout.nbytes();
    let pinned = view.device().device_type == device_type::CUDA_HOST;
    let keep = if let Some(bytes) = view.contiguous_bytes() {
        if pinned || nbytes < STAGING_CHUNK {
            // SAFETY: the view's keep-alive, held by the returned keep until the copy's event
            // completes, keeps these bytes alive (pageable sources are even consumed before
            // the call returns).
            unsafe { uploader.direct(bytes.as_ptr() as usize, nbytes, view.keep().clone())? }
        } else {
            let fill = |range: Range<usize>, out: &mut [u8]| out.copy_from_slice(&bytes[range]);
            uploader.staged(nbytes, 1, &fill)?
        }
    } else {
        upload_rows(&mut uploader, view)?
    };
    // The staged copies have read the host bytes by now; a file that changed meanwhile
    // left stale or zeroed bytes on the device.
    view.check().map_err(changed)?;
    device_view(keep, layout.shape(), view.dtype(), device)
}

/// A strided host view, gathered row by row (axis 0) into the staging chunks.
fn upload_rows(uploader: &mut Uploader, view: &View) -> Result<DeviceKeep, CudaError> {
    let layout = view.layout();
    let row_layout = Layout::new(
        layout.shape()[1..].to_vec(),
        layout.strides()[1..].to_vec(),
        layout.itemsize(),
    )
    .map_err(|e| CudaError::Unsupported(e.to_string()))?;
    let rows = layout.shape()[0];
    let row_bytes = row_layout.nbytes();
    let stride0 = layout.strides()[0];
    // An address, not a pointer, so that the fill closure is `Sync` (staging threads share it).
    let first = view.address();
    let fill = |range: Range<usize>, out: &mut [u8]| {
        for (k, row) in range.enumerate() {
            let start = (first as *const u8).wrapping_offset(row as isize * stride0);
            let dst = &mut out[k * row_bytes..(k + 1) * row_bytes];
            // SAFETY: `row < rows`, so the row lies inside the view's memory, which `view`
            // (borrowed for the whole upload) keeps alive and readable on the host.
            unsafe { gather(start, &row_layout, dst) };
        }
    };
    uploader.staged(rows, row_bytes, &fill)
}

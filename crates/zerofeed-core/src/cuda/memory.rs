//! Pinned host memory: pool buffers registered with the driver once at their exact size
//! (the pool's [`Pinner`]), and page-locked allocations for `zerofeed.pinned_empty`.

use std::ffi::c_void;
use std::sync::Arc;

use super::{Context, CudaError};
use crate::host::{available_memory, AlignedBuffer};
use crate::pool::Pinner;

/// Pinned memory may take at most this share of the RAM available when it is checked:
/// page-locked memory cannot be swapped, and locking too much starves the system.
pub const PINNED_RAM_SHARE: f64 = 0.5;

/// Checks that pinning `bytes` more fits in the available RAM share, before allocating.
pub fn check_pinned_budget(bytes: u64) -> Result<(), CudaError> {
    if let Some(available) = available_memory() {
        let limit = (available as f64 * PINNED_RAM_SHARE) as u64;
        if bytes > limit {
            return Err(CudaError::PinnedBudget {
                bytes,
                limit,
                limit_name: "half of the available RAM",
            });
        }
    }
    Ok(())
}

/// Registers pool buffers with `cuMemHostRegister` (portable, not write-combined).
pub struct CudaPinner {
    context: Arc<Context>,
}

impl CudaPinner {
    /// Pins for every context of the machine (portable); `context` is entered for the calls.
    pub fn new(context: Arc<Context>) -> CudaPinner {
        CudaPinner { context }
    }
}

impl Pinner for CudaPinner {
    fn pin(&self, buffer: &AlignedBuffer) -> Result<(), String> {
        if buffer.is_empty() {
            return Err("empty buffers are not registered".into());
        }
        let guard = self.context.enter().map_err(|e| e.to_string())?;
        // SAFETY: the range is exactly the buffer's live allocation, which the pool
        // unregisters (`unpin`) before freeing it.
        let rc = unsafe {
            (self.context.driver.mem_host_register)(
                buffer.as_ptr().cast::<c_void>(),
                buffer.len(),
                super::ffi::CU_MEMHOST_PORTABLE,
            )
        };
        drop(guard);
        self.context
            .check("cuMemHostRegister", rc)
            .map_err(|e| e.to_string())
    }

    fn unpin(&self, buffer: &AlignedBuffer) {
        if let Ok(_guard) = self.context.enter() {
            // SAFETY: registered by `pin` at this address; the buffer is still allocated.
            unsafe { (self.context.driver.mem_host_unregister)(buffer.as_ptr().cast::<c_void>()) };
        }
    }
}

/// Page-locked host memory from `cuMemHostAlloc` (portable, not write-combined).
pub struct PinnedHost {
    context: Arc<Context>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain host memory owned by this value.
unsafe impl Send for PinnedHost {}
// SAFETY: shared access only hands out the address.
unsafe impl Sync for PinnedHost {}

impl PinnedHost {
    /// `len` pinned bytes, checked against the available RAM first.
    pub fn new(context: &Arc<Context>, len: usize) -> Result<PinnedHost, CudaError> {
        check_pinned_budget(len as u64)?;
        let _guard = context.enter()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: writes one pointer; the context is current.
        context.check("cuMemHostAlloc", unsafe {
            (context.driver.mem_host_alloc)(&mut ptr, len.max(1), super::ffi::CU_MEMHOST_PORTABLE)
        })?;
        Ok(PinnedHost {
            context: context.clone(),
            ptr: ptr.cast(),
            len,
        })
    }

    /// The first pinned byte; valid until this value is dropped.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Pinned bytes usable from [`PinnedHost::as_ptr`] on.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-byte allocation (the driver still got one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for PinnedHost {
    fn drop(&mut self) {
        if let Ok(_guard) = self.context.enter() {
            // SAFETY: allocated by cuMemHostAlloc in `new`, freed once.
            unsafe { (self.context.driver.mem_free_host)(self.ptr.cast()) };
        }
    }
}

/// A C-contiguous `shape` x `dtype` view of fresh pinned (page-locked, portable) host memory
/// registered with device `device`'s context, its size checked against the RAM first.
pub fn pinned_view(
    device: i64,
    shape: &[usize],
    dtype: crate::dtype::DType,
) -> Result<crate::view::View, CudaError> {
    let layout = crate::layout::Layout::c_contiguous(shape, dtype.itemsize())
        .map_err(|e| CudaError::Unsupported(e.to_string()))?;
    let context = Context::primary(device)?;
    let memory = PinnedHost::new(&context, layout.nbytes())?;
    let pinned = crate::dlpack::DLDevice {
        device_type: crate::dlpack::device_type::CUDA_HOST,
        device_id: 0,
    };
    crate::view::View::from_owned(memory, shape, dtype, pinned, false)
        .map_err(|e| CudaError::Unsupported(e.to_string()))
}

// SAFETY: pinned host memory from `cuMemHostAlloc`, `len()` bytes at a fixed address until
// the PinnedHost is dropped.
unsafe impl crate::view::OwnedBytes for PinnedHost {
    fn bytes_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_len(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_budget_refuses_absurd_sizes_before_allocating() {
        let err = check_pinned_budget(u64::MAX / 2).unwrap_err();
        assert!(err.to_string().contains("available RAM"), "{err}");
        check_pinned_budget(4096).unwrap();
    }
}

//! CUDA, found at run time: the driver (`libcuda.so.1`) is loaded on first use, so this
//! crate builds, runs and passes its tests where there is no GPU and no CUDA at all.
//!
//! - [`ffi`]: the driver entry points, resolved by name with no panic on a missing one
//! - this module: errors, device queries, the primary context, streams, events
//! - [`memory`]: device allocations, pinned host memory, the pool's CUDA [`Pinner`](crate::pool::Pinner)
//! - [`kernel`]: the normalize / cast / HWC->CHW kernel, shipped as PTX for the driver's JIT
//! - [`engine`]: the real [`Engine`](crate::transfer::Engine) behind `transfer`'s state machines

pub mod engine;
pub mod ffi;
pub mod kernel;
pub mod memory;
pub mod upload;

use std::ffi::{c_char, c_int, CStr};
use std::sync::{Arc, OnceLock};

use thiserror::Error;

use ffi::{CUcontext, CUdevice, CUevent, CUresult, CUstream, Driver};

/// Why CUDA could not do what was asked.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CudaError {
    /// No usable driver: the library or one of its symbols is missing, or `cuInit` failed.
    #[error("no CUDA driver found: {reason}")]
    NoDriver {
        /// What was missing: the library, a symbol, or `cuInit`'s error.
        reason: String,
    },
    /// A driver call failed.
    #[error("{function} failed: {message} (CUresult {code})")]
    Call {
        /// The driver entry point that failed, e.g. `cuMemAlloc`.
        function: &'static str,
        /// Its `CUresult`.
        code: i32,
        /// The driver's own text for `code` (`cuGetErrorString`).
        message: String,
    },
    /// A device index that does not exist.
    #[error("CUDA device {index} does not exist: this machine has {count} CUDA device(s){hint}")]
    BadDevice {
        /// The device index asked for.
        index: i64,
        /// CUDA devices this machine has.
        count: usize,
        /// The valid range to use instead, or empty when there is no device.
        hint: &'static str,
    },
    /// A request the kernels or copies cannot serve (size limits, dtypes, shapes).
    #[error("{0}")]
    Unsupported(String),
    /// Pinned memory that would exceed what the machine can spare.
    #[error("pinning {bytes} bytes would exceed {limit_name} ({limit} bytes); lower batch_size, prefetch or memory_budget, or pass pin=False")]
    PinnedBudget {
        /// Bytes the request would pin.
        bytes: u64,
        /// The most bytes that may be pinned.
        limit: u64,
        /// Where `limit` comes from, for the message (e.g. half of the available RAM).
        limit_name: &'static str,
    },
}

static DRIVER: OnceLock<Result<Driver, CudaError>> = OnceLock::new();

/// The loaded and initialised driver, or why there is none (cached after the first call).
pub fn driver() -> Result<&'static Driver, CudaError> {
    DRIVER
        .get_or_init(|| {
            let driver = Driver::load("libcuda.so.1")?;
            // SAFETY: cuInit takes flags (must be 0) and has no other precondition.
            let rc = unsafe { (driver.init)(0) };
            if rc != ffi::CUDA_SUCCESS {
                return Err(CudaError::NoDriver {
                    reason: format!(
                        "cuInit failed: {} (CUresult {rc}); is a GPU visible (CUDA_VISIBLE_DEVICES, driver loaded)?",
                        error_string(&driver, rc)
                    ),
                });
            }
            Ok(driver)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn error_string(driver: &Driver, code: CUresult) -> String {
    let mut text: *const c_char = std::ptr::null();
    // SAFETY: cuGetErrorString writes a pointer to a static string (or leaves it null).
    let rc = unsafe { (driver.get_error_string)(code, &mut text) };
    if rc != ffi::CUDA_SUCCESS || text.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: the driver returned a NUL-terminated static string.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// Turns a `CUresult` into `Ok` or a [`CudaError::Call`] naming the function.
pub fn check(driver: &Driver, function: &'static str, code: CUresult) -> Result<(), CudaError> {
    if code == ffi::CUDA_SUCCESS {
        return Ok(());
    }
    Err(CudaError::Call {
        function,
        code,
        message: error_string(driver, code),
    })
}

/// Whether a CUDA driver is present and initialises.
pub fn available() -> bool {
    driver().is_ok()
}

/// Why CUDA is unavailable, or `None` when it is available.
pub fn unavailable_reason() -> Option<String> {
    driver().err().map(|e| e.to_string())
}

/// The number of visible CUDA devices (an error without a driver).
pub fn device_count() -> Result<usize, CudaError> {
    let d = driver()?;
    let mut count: c_int = 0;
    // SAFETY: writes one int.
    check(d, "cuDeviceGetCount", unsafe {
        (d.device_get_count)(&mut count)
    })?;
    Ok(count.max(0) as usize)
}

/// The driver version as `major * 1000 + minor * 10` (e.g. 12040).
pub fn driver_version() -> Result<i32, CudaError> {
    let d = driver()?;
    let mut version: c_int = 0;
    // SAFETY: writes one int.
    check(d, "cuDriverGetVersion", unsafe {
        (d.driver_get_version)(&mut version)
    })?;
    Ok(version)
}

/// Checks `index` against the visible devices and returns the driver's device handle.
pub fn device(index: i64) -> Result<CUdevice, CudaError> {
    let count = device_count()?;
    if index < 0 || index as usize >= count {
        return Err(CudaError::BadDevice {
            index,
            count,
            hint: if count == 0 {
                ""
            } else {
                "; use device=\"cuda:0\" .. \"cuda:<count-1>\""
            },
        });
    }
    let d = driver()?;
    let mut handle: CUdevice = 0;
    // SAFETY: writes one device handle; the index was checked above.
    check(d, "cuDeviceGet", unsafe {
        (d.device_get)(&mut handle, index as c_int)
    })?;
    Ok(handle)
}

/// The device's name, e.g. `"NVIDIA H100 80GB HBM3"`.
pub fn device_name(index: i64) -> Result<String, CudaError> {
    let handle = device(index)?;
    let d = driver()?;
    let mut name = [0 as c_char; 256];
    // SAFETY: the buffer holds 256 chars and the driver writes a NUL-terminated name.
    check(d, "cuDeviceGetName", unsafe {
        (d.device_get_name)(name.as_mut_ptr(), name.len() as c_int, handle)
    })?;
    // SAFETY: NUL-terminated within the buffer, as above.
    Ok(unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// Total device memory in bytes.
pub fn device_total_memory(index: i64) -> Result<usize, CudaError> {
    let handle = device(index)?;
    let d = driver()?;
    let mut bytes = 0usize;
    // SAFETY: writes one size.
    check(d, "cuDeviceTotalMem", unsafe {
        (d.device_total_mem)(&mut bytes, handle)
    })?;
    Ok(bytes)
}

/// A retained primary context: the one PyTorch, CuPy and JAX use too, so pointers and
/// events are shared with them. Released when the last `Arc` goes.
pub struct Context {
    pub(crate) driver: &'static Driver,
    raw: CUcontext,
    device: CUdevice,
    index: i32,
}

// SAFETY: a CUcontext handle may be used from any thread (made current by push/pop).
unsafe impl Send for Context {}
// SAFETY: as above; the driver API is thread-safe.
unsafe impl Sync for Context {}

impl Context {
    /// Retains device `index`'s primary context.
    pub fn primary(index: i64) -> Result<Arc<Context>, CudaError> {
        let device = device(index)?;
        let driver = driver()?;
        let mut raw: CUcontext = std::ptr::null_mut();
        // SAFETY: writes one context handle for a valid device.
        check(driver, "cuDevicePrimaryCtxRetain", unsafe {
            (driver.primary_ctx_retain)(&mut raw, device)
        })?;
        Ok(Arc::new(Context {
            driver,
            raw,
            device,
            index: index as i32,
        }))
    }

    /// The device index (as in `cuda:N`).
    pub fn index(&self) -> i32 {
        self.index
    }

    /// Makes this context current on the calling thread until the guard drops.
    pub fn enter(&self) -> Result<ContextGuard<'_>, CudaError> {
        // SAFETY: pushes a valid, retained context; popped by the guard.
        check(self.driver, "cuCtxPushCurrent", unsafe {
            (self.driver.ctx_push_current)(self.raw)
        })?;
        Ok(ContextGuard { context: self })
    }

    /// Checks a result of a call made in this context.
    pub fn check(&self, function: &'static str, code: CUresult) -> Result<(), CudaError> {
        check(self.driver, function, code)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: balances the retain in `primary`.
        unsafe { (self.driver.primary_ctx_release)(self.device) };
    }
}

/// The context is current while this lives.
pub struct ContextGuard<'a> {
    context: &'a Context,
}

impl Drop for ContextGuard<'_> {
    fn drop(&mut self) {
        let mut previous: CUcontext = std::ptr::null_mut();
        // SAFETY: pops the context pushed by `enter` on this thread.
        unsafe { (self.context.driver.ctx_pop_current)(&mut previous) };
    }
}

/// A stream owned by zerofeed (non-blocking with respect to the legacy default stream).
pub struct Stream {
    context: Arc<Context>,
    raw: CUstream,
}

// SAFETY: stream handles may be used from any thread with the context current.
unsafe impl Send for Stream {}
// SAFETY: as above.
unsafe impl Sync for Stream {}

impl Stream {
    /// A new stream in `context`, non-blocking with respect to the legacy default stream.
    pub fn new(context: &Arc<Context>) -> Result<Stream, CudaError> {
        let _guard = context.enter()?;
        let mut raw: CUstream = std::ptr::null_mut();
        // SAFETY: writes one stream handle; the context is current.
        context.check("cuStreamCreate", unsafe {
            (context.driver.stream_create)(&mut raw, ffi::CU_STREAM_NON_BLOCKING)
        })?;
        Ok(Stream {
            context: context.clone(),
            raw,
        })
    }

    /// The driver handle, for calls and for DLPack consumers; valid while `self` lives.
    pub fn raw(&self) -> CUstream {
        self.raw
    }

    /// The context the stream belongs to (entered for every call on it).
    pub fn context(&self) -> &Arc<Context> {
        &self.context
    }

    /// Blocks the host until everything queued on this stream is done.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let _guard = self.context.enter()?;
        // SAFETY: a live stream of the current context.
        self.context.check("cuStreamSynchronize", unsafe {
            (self.context.driver.stream_synchronize)(self.raw)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(_guard) = self.context.enter() {
            // SAFETY: destroys our own stream once; queued work still completes.
            unsafe { (self.context.driver.stream_destroy)(self.raw) };
        }
    }
}

/// A CUDA event, recorded on a stream to mark "everything before this is done".
pub struct Event {
    pub(crate) context: Arc<Context>,
    raw: CUevent,
}

// SAFETY: event handles may be used from any thread with the context current.
unsafe impl Send for Event {}
// SAFETY: as above.
unsafe impl Sync for Event {}

impl Event {
    /// A fresh event; `timing` enables `elapsed_ms` (slightly costlier).
    pub fn new(context: &Arc<Context>, timing: bool) -> Result<Event, CudaError> {
        let _guard = context.enter()?;
        let mut raw: CUevent = std::ptr::null_mut();
        let flags = if timing {
            ffi::CU_EVENT_DEFAULT
        } else {
            ffi::CU_EVENT_DISABLE_TIMING
        };
        // SAFETY: writes one event handle; the context is current.
        context.check("cuEventCreate", unsafe {
            (context.driver.event_create)(&mut raw, flags)
        })?;
        Ok(Event {
            context: context.clone(),
            raw,
        })
    }

    /// The driver handle; valid while `self` lives.
    pub fn raw(&self) -> CUevent {
        self.raw
    }

    /// Records the event on `stream` (a `CUstream` as an integer: ours, or a consumer's).
    pub fn record_raw(&self, stream: usize) -> Result<(), CudaError> {
        let _guard = self.context.enter()?;
        // SAFETY: a live event; `stream` is a stream handle of this context or a special one.
        self.context.check("cuEventRecord", unsafe {
            (self.context.driver.event_record)(self.raw, stream as CUstream)
        })
    }

    /// True once all work recorded before the event has finished.
    pub fn query(&self) -> Result<bool, CudaError> {
        let _guard = self.context.enter()?;
        // SAFETY: a live event.
        let rc = unsafe { (self.context.driver.event_query)(self.raw) };
        if rc == ffi::CUDA_ERROR_NOT_READY {
            return Ok(false);
        }
        self.context.check("cuEventQuery", rc).map(|()| true)
    }

    /// Blocks the host until the event has completed (only this event: not the device).
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let _guard = self.context.enter()?;
        // SAFETY: a live event.
        self.context.check("cuEventSynchronize", unsafe {
            (self.context.driver.event_synchronize)(self.raw)
        })
    }

    /// Makes `stream` (any handle, e.g. a consumer's) wait for this event on the device.
    pub fn make_wait(&self, stream: usize) -> Result<(), CudaError> {
        let _guard = self.context.enter()?;
        // SAFETY: a live event and a stream handle the caller vouches for.
        self.context.check("cuStreamWaitEvent", unsafe {
            (self.context.driver.stream_wait_event)(stream as CUstream, self.raw, 0)
        })
    }

    /// Milliseconds between `start` and this event (both timing events, both completed).
    pub fn elapsed_ms(&self, start: &Event) -> Result<f32, CudaError> {
        let _guard = self.context.enter()?;
        let mut ms = 0f32;
        // SAFETY: two live events of this context.
        self.context.check("cuEventElapsedTime", unsafe {
            (self.context.driver.event_elapsed_time)(&mut ms, start.raw, self.raw)
        })?;
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Ok(_guard) = self.context.enter() {
            // SAFETY: destroys our own event once; pending waits on it still resolve.
            unsafe { (self.context.driver.event_destroy)(self.raw) };
        }
    }
}

/// Parses a DLPack / array-API `stream` value for CUDA into a stream handle to wait on.
///
/// `None` means the legacy default stream (1), `-1` means "do not synchronize", 2 is the
/// per-thread default stream, anything else is a `cudaStream_t` as an integer. 0 is
/// ambiguous in the spec; it is taken as the legacy default stream, as CuPy does.
pub fn consumer_stream(stream: Option<i64>) -> Option<usize> {
    match stream {
        None | Some(0) | Some(1) => Some(ffi::CU_STREAM_LEGACY),
        Some(-1) => None,
        Some(2) => Some(ffi::CU_STREAM_PER_THREAD),
        Some(handle) => Some(handle as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        match driver() {
            Ok(_) => assert!(device_count().is_ok()),
            Err(err) => {
                assert!(err.to_string().starts_with("no CUDA driver found"), "{err}");
                assert!(!available());
                assert!(device_count().is_err());
                assert!(matches!(device(0), Err(CudaError::NoDriver { .. })));
            }
        }
    }

    #[test]
    fn missing_library_names_itself() {
        let err = Driver::load("libcuda-does-not-exist.so.1")
            .err()
            .expect("absent");
        assert!(err.to_string().contains("libcuda-does-not-exist.so.1"));
    }

    #[test]
    fn dlpack_stream_values() {
        assert_eq!(consumer_stream(None), Some(1));
        assert_eq!(consumer_stream(Some(-1)), None);
        assert_eq!(consumer_stream(Some(2)), Some(2));
        assert_eq!(consumer_stream(Some(0x7f00)), Some(0x7f00));
    }

    #[test]
    fn bad_device_message() {
        let err = CudaError::BadDevice {
            index: 3,
            count: 1,
            hint: "",
        };
        assert!(err.to_string().contains("device 3 does not exist"));
    }
}

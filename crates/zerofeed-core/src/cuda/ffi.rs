//! The CUDA driver API, loaded at run time from `libcuda.so.1`.
//!
//! Only the ~30 entry points zerofeed uses are resolved, each by its versioned name
//! (`cuMemAlloc_v2`, ...). Loading never panics: a missing library or symbol is a
//! [`CudaError`] naming what was missing, returned before any driver call is made.

use std::ffi::{c_char, c_int, c_uint, c_void};

use libloading::Library;

use super::CudaError;

/// A driver call's status: [`CUDA_SUCCESS`] or an error code for `cuGetErrorString`.
pub type CUresult = c_int;
/// A device ordinal as the driver numbers them (`0..cuDeviceGetCount`).
pub type CUdevice = c_int;
/// A device address (bytes); 0 is never a live allocation.
pub type CUdeviceptr = u64;
/// An opaque driver context handle (here always a device's primary context).
pub type CUcontext = *mut c_void;
/// An opaque stream handle; null is the legacy default stream.
pub type CUstream = *mut c_void;
/// An opaque event handle, recorded on a stream to mark a point in its work.
pub type CUevent = *mut c_void;
/// An opaque handle of a loaded PTX module.
pub type CUmodule = *mut c_void;
/// An opaque handle of one kernel inside a [`CUmodule`].
pub type CUfunction = *mut c_void;

/// The [`CUresult`] of a call that succeeded.
pub const CUDA_SUCCESS: CUresult = 0;
/// The [`CUresult`] of `cuEventQuery` on work still pending: not an error.
pub const CUDA_ERROR_NOT_READY: CUresult = 600;
/// `CU_STREAM_NON_BLOCKING`: the copy stream does not synchronize with the legacy stream.
pub const CU_STREAM_NON_BLOCKING: c_uint = 0x1;
/// `CU_EVENT_DISABLE_TIMING`: cheaper events for ordering only.
pub const CU_EVENT_DISABLE_TIMING: c_uint = 0x2;
/// `CU_EVENT_DEFAULT`: an event that records timing (for `cuEventElapsedTime`).
pub const CU_EVENT_DEFAULT: c_uint = 0x0;
/// `CU_MEMHOSTREGISTER_PORTABLE` / `CU_MEMHOSTALLOC_PORTABLE`: pinned for every context.
/// Write-combining (`0x4` for `cuMemHostAlloc`) is deliberately never set: the CPU writes
/// *and reads* batch buffers, and write-combined memory is uncached for CPU reads.
pub const CU_MEMHOST_PORTABLE: c_uint = 0x1;
/// `CU_STREAM_LEGACY` and `CU_STREAM_PER_THREAD`, as DLPack's `stream` argument spells them.
pub const CU_STREAM_LEGACY: usize = 0x1;
/// `CU_STREAM_PER_THREAD`: the calling thread's default stream, as DLPack's `stream` spells it.
pub const CU_STREAM_PER_THREAD: usize = 0x2;

macro_rules! driver_table {
    ($( $field:ident = $symbol:literal : fn($($arg:ty),*); )*) => {
        /// Resolved driver entry points; the library stays loaded as long as this lives.
        pub struct Driver {
            $(
                #[doc = concat!("The driver's `", $symbol, "`, valid while the table lives.")]
                pub $field: unsafe extern "C" fn($($arg),*) -> CUresult,
            )*
            _library: Library,
        }

        impl Driver {
            /// Loads `name` and resolves every entry point, or says what is missing.
            pub fn load(name: &str) -> Result<Driver, CudaError> {
                // SAFETY: loading libcuda runs its initialisers, which have no preconditions
                // on us; the library is kept alive in the returned table.
                let library = unsafe { Library::new(name) }.map_err(|e| CudaError::NoDriver {
                    reason: format!("{name} could not be loaded: {e}"),
                })?;
                $(
                    // SAFETY: the symbol's C signature is the one declared in `cuda.h` for
                    // this versioned name; the pointer is only used while `library` lives.
                    let $field = unsafe {
                        *library
                            .get::<unsafe extern "C" fn($($arg),*) -> CUresult>(
                                concat!($symbol, "\0").as_bytes(),
                            )
                            .map_err(|e| CudaError::NoDriver {
                                reason: format!("{name} lacks {}: {e} (driver too old?)", $symbol),
                            })?
                    };
                )*
                Ok(Driver { $( $field, )* _library: library })
            }
        }
    };
}

driver_table! {
    init = "cuInit": fn(c_uint);
    driver_get_version = "cuDriverGetVersion": fn(*mut c_int);
    get_error_string = "cuGetErrorString": fn(CUresult, *mut *const c_char);
    device_get = "cuDeviceGet": fn(*mut CUdevice, c_int);
    device_get_count = "cuDeviceGetCount": fn(*mut c_int);
    device_get_name = "cuDeviceGetName": fn(*mut c_char, c_int, CUdevice);
    device_total_mem = "cuDeviceTotalMem_v2": fn(*mut usize, CUdevice);
    primary_ctx_retain = "cuDevicePrimaryCtxRetain": fn(*mut CUcontext, CUdevice);
    primary_ctx_release = "cuDevicePrimaryCtxRelease_v2": fn(CUdevice);
    ctx_push_current = "cuCtxPushCurrent_v2": fn(CUcontext);
    ctx_pop_current = "cuCtxPopCurrent_v2": fn(*mut CUcontext);
    mem_alloc = "cuMemAlloc_v2": fn(*mut CUdeviceptr, usize);
    mem_free = "cuMemFree_v2": fn(CUdeviceptr);
    mem_host_register = "cuMemHostRegister_v2": fn(*mut c_void, usize, c_uint);
    mem_host_unregister = "cuMemHostUnregister": fn(*mut c_void);
    mem_host_alloc = "cuMemHostAlloc": fn(*mut *mut c_void, usize, c_uint);
    mem_free_host = "cuMemFreeHost": fn(*mut c_void);
    memcpy_htod_async = "cuMemcpyHtoDAsync_v2": fn(CUdeviceptr, *const c_void, usize, CUstream);
    memcpy_dtoh_async = "cuMemcpyDtoHAsync_v2": fn(*mut c_void, CUdeviceptr, usize, CUstream);
    stream_create = "cuStreamCreate": fn(*mut CUstream, c_uint);
    stream_destroy = "cuStreamDestroy_v2": fn(CUstream);
    stream_wait_event = "cuStreamWaitEvent": fn(CUstream, CUevent, c_uint);
    stream_synchronize = "cuStreamSynchronize": fn(CUstream);
    event_create = "cuEventCreate": fn(*mut CUevent, c_uint);
    event_record = "cuEventRecord": fn(CUevent, CUstream);
    event_query = "cuEventQuery": fn(CUevent);
    event_synchronize = "cuEventSynchronize": fn(CUevent);
    event_destroy = "cuEventDestroy_v2": fn(CUevent);
    event_elapsed_time = "cuEventElapsedTime": fn(*mut f32, CUevent, CUevent);
    module_load_data = "cuModuleLoadData": fn(*mut CUmodule, *const c_void);
    module_get_function = "cuModuleGetFunction": fn(*mut CUfunction, CUmodule, *const c_char);
    launch_kernel = "cuLaunchKernel": fn(
        CUfunction, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, CUstream,
        *mut *mut c_void, *mut *mut c_void
    );
}

// SAFETY: the table holds plain function pointers into a library that is never unloaded
// while the table lives; the driver API is thread-safe.
unsafe impl Send for Driver {}
// SAFETY: as above.
unsafe impl Sync for Driver {}

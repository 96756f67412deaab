//! The normalize / cast / HWC->CHW kernel, shipped as PTX (`kernels/normalize.ptx`,
//! from `kernels/normalize.cu`) and JIT-compiled by the driver: no toolkit needed.

use std::ffi::{c_uint, c_void, CString};
use std::sync::Arc;

use super::ffi::{CUfunction, CUmodule, CUstream};
use super::{Context, CudaError};
use crate::dtype::DType;

/// The PTX text the driver compiles for the GPU at hand.
pub const NORMALIZE_PTX: &str = include_str!("kernels/normalize.ptx");
/// The CUDA C source the PTX was generated from (kept for review and regeneration).
pub const NORMALIZE_CU: &str = include_str!("kernels/normalize.cu");
const ENTRY: &str = "zf_normalize";
const BLOCK: u32 = 256;

/// The output element code the kernel takes (`kind`), or an error for other dtypes.
pub fn output_kind(dtype: DType) -> Result<u32, CudaError> {
    match dtype {
        DType::F32 => Ok(0),
        DType::F16 => Ok(1),
        DType::BF16 => Ok(2),
        other => Err(CudaError::Unsupported(format!(
            "normalize_on_device writes float32, float16 or bfloat16, not {other}; normalize on the host instead"
        ))),
    }
}

/// Grid size for `total` elements: enough blocks to fill the GPU, grid-stride beyond.
pub fn grid_for(total: u32) -> u32 {
    total.div_ceil(BLOCK).clamp(1, 65_535)
}

/// One normalize launch: `n` samples of `hw` pixels with `c` channels.
#[derive(Clone, Copy, Debug)]
pub struct NormalizeLaunch {
    /// Device address of the `n` uint8 HWC input samples.
    pub src: u64,
    /// Device address of the output, `n * hw * c` elements of `kind`.
    pub dst: u64,
    /// `2 * c` floats on the device: a[0..c) then b[0..c).
    pub coef: u64,
    /// Samples in the batch.
    pub n: usize,
    /// Pixels per sample (height times width).
    pub hw: usize,
    /// Channels per pixel.
    pub c: usize,
    /// Write CHW planes (`true`) instead of HWC.
    pub chw: bool,
    /// Output element code from [`output_kind`]: 0 float32, 1 float16, 2 bfloat16.
    pub kind: u32,
}

impl NormalizeLaunch {
    /// The element count, checked to fit the kernel's 31-bit indexing.
    pub fn total(&self) -> Result<u32, CudaError> {
        let total = self
            .n
            .checked_mul(self.hw)
            .and_then(|v| v.checked_mul(self.c))
            .filter(|&t| t < (1 << 31))
            .ok_or_else(|| {
                CudaError::Unsupported(format!(
                    "a batch of {} x {} x {} elements is too large for the device kernel (2^31); lower batch_size",
                    self.n, self.hw, self.c
                ))
            })?;
        Ok(total as u32)
    }
}

/// The loaded module and its entry point, for one context.
pub struct NormalizeKernel {
    context: Arc<Context>,
    _module: CUmodule,
    function: CUfunction,
}

// SAFETY: module and function handles are usable from any thread with the context current.
unsafe impl Send for NormalizeKernel {}
// SAFETY: as above; launches are thread-safe in the driver.
unsafe impl Sync for NormalizeKernel {}

impl NormalizeKernel {
    /// JIT-compiles the PTX in `context` (a few ms, once per loader).
    pub fn load(context: &Arc<Context>) -> Result<NormalizeKernel, CudaError> {
        let _guard = context.enter()?;
        let text = CString::new(NORMALIZE_PTX).expect("PTX has no NUL");
        let mut module: CUmodule = std::ptr::null_mut();
        // SAFETY: a NUL-terminated PTX image; the context is current.
        context.check("cuModuleLoadData", unsafe {
            (context.driver.module_load_data)(&mut module, text.as_ptr().cast())
        })?;
        let name = CString::new(ENTRY).expect("no NUL");
        let mut function: CUfunction = std::ptr::null_mut();
        // SAFETY: a loaded module and a NUL-terminated entry name.
        context.check("cuModuleGetFunction", unsafe {
            (context.driver.module_get_function)(&mut function, module, name.as_ptr())
        })?;
        Ok(NormalizeKernel {
            context: context.clone(),
            _module: module,
            function,
        })
    }

    /// Queues the kernel on `stream`.
    ///
    /// # Safety
    /// `src` holds `total` bytes, `dst` `total` output elements and `coef` `2 * c` floats,
    /// all device memory of this context that stays alive until the launch completes.
    pub unsafe fn launch(&self, stream: CUstream, l: &NormalizeLaunch) -> Result<(), CudaError> {
        let total = l.total()?;
        let (hw, c) = (l.hw as u32, l.c as u32);
        let chw = u32::from(l.chw);
        let mut args: [*mut c_void; 8] = [
            (&l.src as *const u64).cast_mut().cast(),
            (&l.dst as *const u64).cast_mut().cast(),
            (&l.coef as *const u64).cast_mut().cast(),
            (&total as *const u32).cast_mut().cast(),
            (&hw as *const u32).cast_mut().cast(),
            (&c as *const u32).cast_mut().cast(),
            (&chw as *const u32).cast_mut().cast(),
            (&l.kind as *const u32).cast_mut().cast(),
        ];
        let _guard = self.context.enter()?;
        // SAFETY: eight argument pointers matching the entry's eight parameters (u64 x3,
        // u32 x5), alive for the call (the driver copies them); memory per the contract.
        self.context.check("cuLaunchKernel", unsafe {
            (self.context.driver.launch_kernel)(
                self.function,
                grid_for(total) as c_uint,
                1,
                1,
                BLOCK,
                1,
                1,
                0,
                stream,
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ptx_is_shipped_for_old_targets_with_the_entry() {
        assert!(NORMALIZE_PTX.contains(".version 7.0"));
        assert!(NORMALIZE_PTX.contains(".target sm_52"));
        assert!(NORMALIZE_PTX.contains(".visible .entry zf_normalize("));
        assert_eq!(NORMALIZE_PTX.matches("\t.param ").count(), 8);
        assert!(NORMALIZE_CU.contains("zf_normalize"));
    }

    #[test]
    fn kinds_and_limits() {
        assert_eq!(output_kind(DType::F32).unwrap(), 0);
        assert_eq!(output_kind(DType::BF16).unwrap(), 2);
        assert!(output_kind(DType::F64).is_err());
        let big = NormalizeLaunch {
            src: 0,
            dst: 0,
            coef: 0,
            n: 1 << 20,
            hw: 1 << 10,
            c: 3,
            chw: true,
            kind: 0,
        };
        assert!(big.total().is_err());
        assert_eq!(grid_for(1), 1);
        assert_eq!(grid_for(u32::MAX), 65_535);
    }
}

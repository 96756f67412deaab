//! The DLPack ABI (v1.x, with the legacy pre-1.0 struct): export and import.
//!
//! The structs mirror `dlpack.h` field for field (`#[repr(C)]`). Exports own their shape
//! and stride arrays and an arbitrary `owner` value that keeps the memory alive; the
//! deleter drops it, on whichever thread the consumer calls it from. Imports take
//! ownership of a producer's managed tensor and call its deleter exactly once, error or
//! not; they trust no field: every one is checked, with caps, before it is used
//! ([`ManagedTensor::import`] lists the checks; `tests/dlpack_import.rs` fuzzes them).

use std::any::Any;
use std::ffi::c_void;
use std::ptr::NonNull;

use thiserror::Error;

use crate::dtype::{DType, UnsupportedDType};
use crate::layout::{Layout, LayoutError};

/// The DLPack version this crate implements.
pub const DLPACK_VERSION: (u32, u32) = (1, 1);
/// `DLPACK_FLAG_BITMASK_READ_ONLY`.
pub const FLAG_READ_ONLY: u64 = 1 << 0;
/// `DLPACK_FLAG_BITMASK_IS_COPIED`.
pub const FLAG_IS_COPIED: u64 = 1 << 1;

/// `DLDeviceType` values zerofeed meets.
pub mod device_type {
    /// `kDLCPU`: plain host memory.
    pub const CPU: i32 = 1;
    /// `kDLCUDA`: CUDA device memory (`device_id` is the GPU ordinal).
    pub const CUDA: i32 = 2;
    /// `kDLCUDAHost`: host memory pinned by `cudaMallocHost`; `device_id` is 0.
    pub const CUDA_HOST: i32 = 3;
    /// `kDLROCM`: ROCm (HIP) device memory (`device_id` is the GPU ordinal).
    pub const ROCM: i32 = 10;
    /// `kDLROCMHost`: host memory pinned by `hipMallocHost`; `device_id` is 0.
    pub const ROCM_HOST: i32 = 11;
    /// `kDLCUDAManaged`: CUDA managed (unified) memory from `cudaMallocManaged`.
    pub const CUDA_MANAGED: i32 = 13;
}

/// Device types whose memory the host CPU reads directly: CPU, CUDA pinned host, ROCm pinned
/// host and CUDA managed memory.
pub const HOST_ACCESSIBLE: [i32; 4] = [
    device_type::CPU,
    device_type::CUDA_HOST,
    device_type::ROCM_HOST,
    device_type::CUDA_MANAGED,
];

/// `DLDevice`: where a tensor's memory lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDevice {
    /// A `DLDeviceType` value (see [`device_type`]).
    pub device_type: i32,
    /// The device ordinal for device memory; 0 for CPU, pinned and managed memory.
    pub device_id: i32,
}

impl DLDevice {
    /// Host memory: `(kDLCPU, 0)`.
    pub const CPU: DLDevice = DLDevice {
        device_type: device_type::CPU,
        device_id: 0,
    };

    /// True when the host CPU can read the memory directly (plain or pinned host memory).
    pub fn is_host_accessible(&self) -> bool {
        HOST_ACCESSIBLE.contains(&self.device_type)
    }

    /// A short name as the array API spells devices: `cpu`, `cuda:0`, `cuda_host`.
    pub fn name(&self) -> String {
        match self.device_type {
            device_type::CPU => "cpu".to_owned(),
            device_type::CUDA => format!("cuda:{}", self.device_id),
            device_type::CUDA_HOST => "cuda_host".to_owned(),
            device_type::CUDA_MANAGED => format!("cuda_managed:{}", self.device_id),
            device_type::ROCM => format!("rocm:{}", self.device_id),
            device_type::ROCM_HOST => "rocm_host".to_owned(),
            other => format!("dlpack_device_{other}:{}", self.device_id),
        }
    }
}

/// `DLDataType`: the element type, as a type code, a width and a lane count.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLDataType {
    /// A `DLDataTypeCode`: 0 int, 1 uint, 2 float, 4 bfloat, 5 complex, 6 bool, ...
    pub code: u8,
    /// Bits per lane (8, 16, 32, 64, ...); a lane of `bits / 8` bytes.
    pub bits: u8,
    /// Lanes per element: 1 for scalars, more for vector types (which zerofeed refuses).
    pub lanes: u16,
}

/// `DLTensor`: a borrowed description of an N-d strided array; it owns nothing it points to.
#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    /// The allocation's base address (opaque on some devices); the first element is at
    /// `data + byte_offset`. May be NULL only when the tensor has no element.
    pub data: *mut c_void,
    /// Where the memory lives.
    pub device: DLDevice,
    /// Number of dimensions (0 for a scalar); the length of `shape` and `strides`.
    pub ndim: i32,
    /// The element type.
    pub dtype: DLDataType,
    /// `ndim` sizes, outermost first, owned by whoever owns the managed tensor.
    pub shape: *mut i64,
    /// `ndim` strides counted in elements, not bytes; NULL means C-contiguous (row-major).
    pub strides: *mut i64,
    /// Bytes from `data` to the first element.
    pub byte_offset: u64,
}

/// `DLManagedTensor` (pre-1.0, a `"dltensor"` capsule): a tensor plus the producer's means
/// to free it. The consumer that takes it calls `deleter` once when done.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensor {
    /// The tensor being managed.
    pub dl_tensor: DLTensor,
    /// The producer's private context (what keeps the memory alive); may be NULL.
    pub manager_ctx: *mut c_void,
    /// Frees `manager_ctx` and the struct itself; NULL when the producer has nothing to free.
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// `DLPackVersion`: the ABI version a managed tensor was made for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DLPackVersion {
    /// Major version: a different one means an incompatible ABI.
    pub major: u32,
    /// Minor version: additions that keep the ABI compatible.
    pub minor: u32,
}

/// `DLManagedTensorVersioned` (DLPack 1.x, a `"dltensor_versioned"` capsule): a versioned
/// tensor plus the producer's means to free it; the consumer calls `deleter` once when done.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    /// The ABI version; comes first so that a consumer can check it before reading on.
    pub version: DLPackVersion,
    /// The producer's private context (what keeps the memory alive); may be NULL.
    pub manager_ctx: *mut c_void,
    /// Frees `manager_ctx` and the struct itself; NULL when the producer has nothing to free.
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    /// `FLAG_*` bits ([`FLAG_READ_ONLY`], [`FLAG_IS_COPIED`]); 0 by default.
    pub flags: u64,
    /// The tensor being managed.
    pub dl_tensor: DLTensor,
}

/// The most dimensions an imported tensor may have. NumPy 2 allows 64 (NumPy 1 allowed
/// 32) and no framework goes further; the cap is what keeps a hostile `ndim` (say 2^30)
/// from making us read, or allocate for, gigabytes of "shape".
pub const MAX_IMPORT_NDIM: usize = 64;

/// What went wrong exchanging a tensor. Import errors name the `DLTensor` field at
/// fault and its value.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DlpackError {
    /// The capsule held a NULL managed-tensor pointer.
    #[error("DLPack tensor has a null managed-tensor pointer")]
    Null,
    /// A `DLManagedTensorVersioned` of a major version other than 1.
    #[error("DLPack major version {major} is not supported; zerofeed speaks 1.x (ask the producer for max_version=(1, 0))")]
    Version {
        /// The producer's `version.major`.
        major: u32,
    },
    /// A negative `ndim` (the value given).
    #[error("DLPack tensor has ndim={0}; it must be >= 0")]
    BadNdim(i32),
    /// An `ndim` above [`MAX_IMPORT_NDIM`] (the value given).
    #[error("DLPack tensor has ndim={0}; zerofeed takes at most {MAX_IMPORT_NDIM} dimensions (NumPy's limit)")]
    TooManyDims(i32),
    /// `shape` is NULL although `ndim` (the value given) is positive.
    #[error("DLPack tensor has shape=NULL but ndim={0}; shape must point to ndim sizes")]
    NullShape(i32),
    /// A negative size in `shape`.
    #[error("DLPack tensor has shape[{axis}]={dim}, a negative dimension; sizes must be >= 0")]
    NegativeDim {
        /// The axis (0-based).
        axis: usize,
        /// Its size.
        dim: i64,
    },
    /// The tensor's byte size (every size, 0 counted as 1, times the item size) exceeds `isize::MAX`.
    #[error("DLPack tensor has shape={shape:?} of {itemsize}-byte items: the size overflows the address space")]
    SizeOverflow {
        /// The shape as given.
        shape: Vec<i64>,
        /// Bytes per element.
        itemsize: usize,
    },
    /// A stride whose byte span along its axis overflows `isize`.
    #[error("DLPack tensor has strides[{axis}]={stride} with shape[{axis}]={dim} and {itemsize}-byte items: the span overflows the address space")]
    StrideOverflow {
        /// The axis (0-based).
        axis: usize,
        /// Its stride, in elements.
        stride: i64,
        /// Its size.
        dim: i64,
        /// Bytes per element.
        itemsize: usize,
    },
    /// An unknown `(code, bits)` pair, or `lanes != 1` (vector types): the message
    /// names all three fields.
    #[error("DLPack tensor: {0}")]
    DType(#[from] UnsupportedDType),
    /// A `device_type` that is no `DLDeviceType` (the value given).
    #[error("DLPack tensor has device.device_type={0}, not a DLPack device type (1-4, 7-18)")]
    UnknownDevice(i32),
    /// A negative `device_id` (the value given).
    #[error("DLPack tensor has device.device_id={0}; device ids are >= 0")]
    NegativeDeviceId(i32),
    /// Shape and strides that form no valid [`Layout`] (e.g. a total span overflowing `isize`).
    #[error("DLPack tensor layout: {0}")]
    Layout(#[from] LayoutError),
    /// On export: a byte stride that is no whole number of items, which DLPack cannot express.
    #[error("DLPack strides count elements, and a stride of {stride_bytes} bytes is not a multiple of the {itemsize}-byte item; copy to a packed array first")]
    StrideNotElementMultiple {
        /// The offending stride, in bytes.
        stride_bytes: isize,
        /// Bytes per element.
        itemsize: usize,
    },
    /// `data` is NULL although the tensor has elements.
    #[error("DLPack tensor has data=NULL but {size} elements")]
    NullData {
        /// The number of elements.
        size: usize,
    },
    /// `data + byte_offset`, or the span of the elements from there, wraps the address space.
    #[error("DLPack tensor has data={data:#x} and byte_offset={byte_offset}: {what} wraps around the address space")]
    AddressOverflow {
        /// The tensor's `data` address.
        data: usize,
        /// Its `byte_offset`.
        byte_offset: u64,
        /// Which address wraps (for the message).
        what: &'static str,
    },
}

/// A tensor to export: where it is, what it holds, and who keeps it alive.
pub struct ExportSpec {
    /// Address of the first element (exports always have `byte_offset == 0`).
    pub data: *mut u8,
    /// Where the memory lives.
    pub device: DLDevice,
    /// The element type.
    pub dtype: DType,
    /// Shape and byte strides; every stride must be a whole number of items.
    pub layout: Layout,
    /// Sets [`FLAG_READ_ONLY`] on versioned exports (legacy ones cannot carry it).
    pub readonly: bool,
}

/// The heap block behind an exported tensor. `managed` comes first so that a pointer to
/// the block is a pointer to the managed tensor the consumer sees.
#[repr(C)]
struct Exported<M> {
    managed: M,
    shape: Vec<i64>,
    strides: Vec<i64>,
    _owner: Box<dyn Any + Send>,
}

fn dl_tensor(spec: &ExportSpec, shape: &mut [i64], strides: &mut [i64]) -> DLTensor {
    let (code, bits) = spec.dtype.dlpack();
    DLTensor {
        data: spec.data.cast(),
        device: spec.device,
        ndim: shape.len() as i32,
        dtype: DLDataType {
            code,
            bits,
            lanes: 1,
        },
        shape: shape.as_mut_ptr(),
        strides: strides.as_mut_ptr(),
        byte_offset: 0,
    }
}

fn element_shape_strides(spec: &ExportSpec) -> Result<(Vec<i64>, Vec<i64>), DlpackError> {
    let itemsize = spec.dtype.itemsize() as isize;
    let shape = spec.layout.shape().iter().map(|&n| n as i64).collect();
    let strides = spec
        .layout
        .strides()
        .iter()
        .map(|&s| {
            if s % itemsize == 0 {
                Ok((s / itemsize) as i64)
            } else {
                Err(DlpackError::StrideNotElementMultiple {
                    stride_bytes: s,
                    itemsize: itemsize as usize,
                })
            }
        })
        .collect::<Result<_, _>>()?;
    Ok((shape, strides))
}

fn run_deleter_body(body: impl FnOnce()) {
    // A panic must not unwind into the consumer's C frames; losing the owner is the lesser evil.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        eprintln!("zerofeed: a panic occurred while releasing a DLPack export");
    }
}

/// The two managed-tensor structs, for the code that boxes and deletes our exports.
trait ManagedStruct {
    fn set_manager_ctx(&mut self, ctx: *mut c_void);
}

impl ManagedStruct for DLManagedTensorVersioned {
    fn set_manager_ctx(&mut self, ctx: *mut c_void) {
        self.manager_ctx = ctx;
    }
}

impl ManagedStruct for DLManagedTensor {
    fn set_manager_ctx(&mut self, ctx: *mut c_void) {
        self.manager_ctx = ctx;
    }
}

/// The deleter of every export: reclaims the `Exported<M>` block.
unsafe extern "C" fn delete_exported<M>(managed: *mut M) {
    if managed.is_null() {
        return;
    }
    run_deleter_body(|| {
        // SAFETY: `managed` was produced by `box_export` from `Box::into_raw` of an
        // `Exported<M>` whose first field it is; the DLPack contract says the deleter is
        // called once, so the box is reclaimed exactly once.
        drop(unsafe { Box::from_raw(managed.cast::<Exported<M>>()) });
    });
}

/// Moves an export onto the heap with the arrays its tensor points to and its owner.
fn box_export<M: ManagedStruct>(
    managed: M,
    shape: Vec<i64>,
    strides: Vec<i64>,
    owner: Box<dyn Any + Send>,
) -> NonNull<M> {
    // Moving the Vecs into the box does not move their heap buffers: the pointers stay valid.
    let raw = Box::into_raw(Box::new(Exported {
        managed,
        shape,
        strides,
        _owner: owner,
    }));
    // SAFETY: `raw` comes from `Box::into_raw` and is non-null and exclusively ours here.
    unsafe { (*raw).managed.set_manager_ctx(raw.cast()) };
    NonNull::new(raw.cast()).expect("Box::into_raw is never null")
}

/// Builds a DLPack 1.x managed tensor. The caller hands the pointer to a consumer (in a
/// `"dltensor_versioned"` capsule), which calls its deleter exactly once.
pub fn export_versioned(
    spec: ExportSpec,
    owner: Box<dyn Any + Send>,
) -> Result<NonNull<DLManagedTensorVersioned>, DlpackError> {
    let (mut shape, mut strides) = element_shape_strides(&spec)?;
    let dl_tensor = dl_tensor(&spec, &mut shape, &mut strides);
    let flags = if spec.readonly { FLAG_READ_ONLY } else { 0 };
    let managed = DLManagedTensorVersioned {
        version: DLPackVersion {
            major: DLPACK_VERSION.0,
            minor: DLPACK_VERSION.1,
        },
        manager_ctx: std::ptr::null_mut(),
        deleter: Some(delete_exported::<DLManagedTensorVersioned>),
        flags,
        dl_tensor,
    };
    Ok(box_export(managed, shape, strides, owner))
}

/// Builds a legacy (pre-1.0) managed tensor, for consumers that only take `"dltensor"`
/// capsules (TensorFlow, JAX). It has no read-only flag: callers must only hand read-only
/// memory to consumers that do not write.
pub fn export_legacy(
    spec: ExportSpec,
    owner: Box<dyn Any + Send>,
) -> Result<NonNull<DLManagedTensor>, DlpackError> {
    let (mut shape, mut strides) = element_shape_strides(&spec)?;
    let dl_tensor = dl_tensor(&spec, &mut shape, &mut strides);
    let managed = DLManagedTensor {
        dl_tensor,
        manager_ctx: std::ptr::null_mut(),
        deleter: Some(delete_exported::<DLManagedTensor>),
    };
    Ok(box_export(managed, shape, strides, owner))
}

/// A producer's managed tensor that we own: dropping it calls the producer's deleter once.
pub enum ManagedTensor {
    /// A pre-1.0 tensor, from a `"dltensor"` capsule.
    Legacy(NonNull<DLManagedTensor>),
    /// A DLPack 1.x tensor, from a `"dltensor_versioned"` capsule.
    Versioned(NonNull<DLManagedTensorVersioned>),
}

// SAFETY: the DLPack specification requires deleters to be callable from any thread, and
// we only read the tensor's immutable description after import.
unsafe impl Send for ManagedTensor {}
// SAFETY: shared references only read the immutable description; deletion needs `Drop`.
unsafe impl Sync for ManagedTensor {}

impl Drop for ManagedTensor {
    fn drop(&mut self) {
        match *self {
            ManagedTensor::Legacy(p) => {
                // SAFETY: we took ownership of `p` at import (the capsule was marked used), so
                // calling its deleter once, here, is what the protocol asks of us.
                unsafe {
                    if let Some(deleter) = (*p.as_ptr()).deleter {
                        deleter(p.as_ptr());
                    }
                }
            }
            ManagedTensor::Versioned(p) => {
                // SAFETY: as above, for the versioned struct.
                unsafe {
                    if let Some(deleter) = (*p.as_ptr()).deleter {
                        deleter(p.as_ptr());
                    }
                }
            }
        }
    }
}

/// An imported tensor: its description plus the handle that keeps the producer's memory alive.
pub struct Imported {
    /// Address of the first element (`data + byte_offset`).
    pub data: *mut u8,
    /// Where the memory lives (checked to be a known device type with a non-negative id).
    pub device: DLDevice,
    /// The element type.
    pub dtype: DType,
    /// Shape and strides, the strides converted from elements to bytes.
    pub layout: Layout,
    /// The producer's [`FLAG_READ_ONLY`]; always false for legacy tensors, which cannot say.
    pub readonly: bool,
    /// Keeps the producer's memory alive; dropping it calls the producer's deleter.
    pub handle: ManagedTensor,
}

// SAFETY: `data` is only an address here; access rules are enforced by the view that holds it.
unsafe impl Send for Imported {}
// SAFETY: as above.
unsafe impl Sync for Imported {}

impl ManagedTensor {
    /// Takes ownership of a raw legacy managed tensor and reads its description.
    ///
    /// A NULL pointer is [`DlpackError::Null`] (nothing was taken, so nothing is deleted).
    ///
    /// # Safety
    /// As [`ManagedTensor::import`], for `managed` when it is not NULL.
    pub unsafe fn import_legacy(managed: *mut DLManagedTensor) -> Result<Imported, DlpackError> {
        let managed = NonNull::new(managed).ok_or(DlpackError::Null)?;
        // SAFETY: the caller's contract, passed on.
        unsafe { ManagedTensor::Legacy(managed).import() }
    }

    /// Takes ownership of a raw DLPack 1.x managed tensor and reads its description.
    ///
    /// A NULL pointer is [`DlpackError::Null`] (nothing was taken, so nothing is deleted).
    ///
    /// # Safety
    /// As [`ManagedTensor::import`], for `managed` when it is not NULL.
    pub unsafe fn import_versioned(
        managed: *mut DLManagedTensorVersioned,
    ) -> Result<Imported, DlpackError> {
        let managed = NonNull::new(managed).ok_or(DlpackError::Null)?;
        // SAFETY: the caller's contract, passed on.
        unsafe { ManagedTensor::Versioned(managed).import() }
    }

    /// Takes ownership of a managed tensor and reads its description, validating every
    /// field before it is used: the version, dtype (code, bits, lanes), device, `ndim`
    /// (0 to [`MAX_IMPORT_NDIM`]), NULL shape, negative sizes, sizes and strides whose
    /// span overflows, NULL data, and a `byte_offset` or extent that wraps the address
    /// space. On any error the deleter has already been called (ownership was taken
    /// either way), exactly once.
    ///
    /// # Safety
    /// `self` must point to a live managed tensor that nobody else will delete. What no
    /// check can establish is trusted: when `0 < ndim <= MAX_IMPORT_NDIM`, a non-NULL
    /// `shape` (and `strides`) must point to `ndim` readable `i64`s (at any alignment),
    /// and the memory the tensor describes must be the producer's.
    pub unsafe fn import(self) -> Result<Imported, DlpackError> {
        let (tensor, flags) = match &self {
            ManagedTensor::Legacy(p) => {
                // SAFETY: the caller guarantees `p` is live.
                (unsafe { &(*p.as_ptr()).dl_tensor }, 0)
            }
            ManagedTensor::Versioned(p) => {
                // SAFETY: the caller guarantees `p` is live.
                let managed = unsafe { &*p.as_ptr() };
                // The version comes first in every DLPack version's struct; nothing
                // after it is read until it is one we know.
                if managed.version.major != 1 {
                    return Err(DlpackError::Version {
                        major: managed.version.major,
                    });
                }
                (&managed.dl_tensor, managed.flags)
            }
        };
        // SAFETY: `tensor` belongs to the live managed tensor above; the caller vouches
        // for its arrays as `describe` requires.
        let (data, dtype, layout) = unsafe { describe(tensor)? };
        Ok(Imported {
            data,
            device: tensor.device,
            dtype,
            layout,
            readonly: flags & FLAG_READ_ONLY != 0,
            handle: self,
        })
    }
}

/// `ndim` values from `ptr`, copied out (so `ptr` need not be aligned); `None` when values
/// are needed and `ptr` is NULL.
///
/// # Safety
/// When `ndim > 0` and `ptr` is not NULL, `ptr` must point to `ndim` readable `i64`s.
unsafe fn read_i64s(ptr: *const i64, ndim: usize) -> Option<Vec<i64>> {
    if ndim == 0 {
        return Some(Vec::new());
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `ndim` readable values; `read_unaligned` has no
    // alignment requirement, and `ndim <= MAX_IMPORT_NDIM` bounds the copy.
    Some(
        (0..ndim)
            .map(|i| unsafe { ptr.add(i).read_unaligned() })
            .collect(),
    )
}

fn check_device(device: DLDevice) -> Result<(), DlpackError> {
    // `DLDeviceType` of dlpack.h up to 1.2; 5 and 6 were retired before 1.0.
    if !matches!(device.device_type, 1..=4 | 7..=18) {
        return Err(DlpackError::UnknownDevice(device.device_type));
    }
    if device.device_id < 0 {
        return Err(DlpackError::NegativeDeviceId(device.device_id));
    }
    Ok(())
}

/// Validates a `DLTensor` field by field and reads it into an address, a dtype and a
/// byte layout whose every element address lies in `1..=usize::MAX`.
///
/// # Safety
/// When `0 < ndim <= MAX_IMPORT_NDIM`, non-NULL `shape` and `strides` must point to
/// `ndim` readable values each.
unsafe fn describe(tensor: &DLTensor) -> Result<(*mut u8, DType, Layout), DlpackError> {
    let DLDataType { code, bits, lanes } = tensor.dtype;
    // Refuses lanes != 1 before looking at code and bits.
    let dtype = DType::from_dlpack(code, bits, lanes)?;
    check_device(tensor.device)?;
    let ndim = usize::try_from(tensor.ndim).map_err(|_| DlpackError::BadNdim(tensor.ndim))?;
    if ndim > MAX_IMPORT_NDIM {
        return Err(DlpackError::TooManyDims(tensor.ndim));
    }
    // SAFETY: ndim is capped; the caller vouches for a non-NULL shape's `ndim` values.
    let dims =
        unsafe { read_i64s(tensor.shape, ndim) }.ok_or(DlpackError::NullShape(tensor.ndim))?;
    let shape = dims
        .iter()
        .enumerate()
        .map(|(axis, &dim)| {
            usize::try_from(dim).map_err(|_| DlpackError::NegativeDim { axis, dim })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let itemsize = dtype.itemsize();
    // Zero sizes count as 1 so that a hostile empty tensor cannot hide an overflowing
    // extent (the C-order strides below multiply them all).
    shape
        .iter()
        .try_fold(itemsize, |bytes, &n| bytes.checked_mul(n.max(1)))
        .filter(|&bytes| bytes <= isize::MAX as usize)
        .ok_or_else(|| DlpackError::SizeOverflow {
            shape: dims.clone(),
            itemsize,
        })?;
    let strides = if tensor.strides.is_null() {
        // DLPack: NULL strides mean C-contiguous.
        crate::layout::c_strides(&shape, itemsize)?
    } else {
        // SAFETY: as for the shape.
        let elems = unsafe { read_i64s(tensor.strides, ndim) }.unwrap_or_default();
        elems
            .iter()
            .zip(&dims)
            .enumerate()
            .map(|(axis, (&stride, &dim))| {
                let overflow = || DlpackError::StrideOverflow {
                    axis,
                    stride,
                    dim,
                    itemsize,
                };
                let bytes = isize::try_from(stride)
                    .ok()
                    .and_then(|s| s.checked_mul(itemsize as isize))
                    .ok_or_else(overflow)?;
                // The farthest element along the axis must be addressable on its own;
                // `Layout::new` then checks the sum over axes.
                isize::try_from(dim.max(1) - 1)
                    .ok()
                    .and_then(|last| last.checked_mul(bytes))
                    .ok_or_else(overflow)?;
                Ok(bytes)
            })
            .collect::<Result<Vec<isize>, DlpackError>>()?
    };
    let layout = Layout::new(shape, strides, itemsize)?;
    if tensor.data.is_null() && layout.size() > 0 {
        return Err(DlpackError::NullData {
            size: layout.size(),
        });
    }
    let base = tensor.data as usize;
    let wraps = |what| DlpackError::AddressOverflow {
        data: base,
        byte_offset: tensor.byte_offset,
        what,
    };
    let offset = usize::try_from(tensor.byte_offset).map_err(|_| wraps("data + byte_offset"))?;
    let first = base
        .checked_add(offset)
        .ok_or_else(|| wraps("data + byte_offset"))?;
    if layout.size() > 0 {
        let (low, end) = layout.byte_span()?;
        first
            .checked_add_signed(low)
            .filter(|&lowest| lowest != 0)
            .ok_or_else(|| wraps("the lowest element's address (through NULL)"))?;
        // `end >= itemsize >= 1` for a non-empty layout.
        first
            .checked_add(end.unsigned_abs() - 1)
            .ok_or_else(|| wraps("the last byte's address"))?;
    }
    // `wrapping_add` keeps the producer pointer's provenance; the checks above make it
    // an exact addition.
    Ok((tensor.data.cast::<u8>().wrapping_add(offset), dtype, layout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn spec(data: &mut [f32], layout: Layout) -> ExportSpec {
        ExportSpec {
            data: data.as_mut_ptr().cast(),
            device: DLDevice::CPU,
            dtype: DType::F32,
            layout,
            readonly: true,
        }
    }

    #[test]
    fn versioned_round_trip_calls_owner_drop_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut data = [0f32; 12];
        let layout = Layout::c_contiguous(&[3, 4], 4)
            .unwrap()
            .transpose(None)
            .unwrap();
        let exported = export_versioned(
            spec(&mut data, layout.clone()),
            Box::new(CountDrop(drops.clone())),
        )
        .unwrap();
        // SAFETY: freshly exported and not handed to anyone else.
        let imported = unsafe { ManagedTensor::Versioned(exported).import() }.unwrap();
        assert_eq!(imported.layout, layout);
        assert_eq!(imported.dtype, DType::F32);
        assert!(imported.readonly);
        assert_eq!(imported.data, data.as_mut_ptr().cast());
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(imported);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn legacy_has_element_strides_and_no_flags() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut data = [0f32; 12];
        let layout = Layout::c_contiguous(&[3, 4], 4).unwrap();
        let exported =
            export_legacy(spec(&mut data, layout), Box::new(CountDrop(drops.clone()))).unwrap();
        // SAFETY: reading the struct we just built.
        let strides = unsafe {
            let t = &(*exported.as_ptr()).dl_tensor;
            std::slice::from_raw_parts(t.strides, 2).to_vec()
        };
        assert_eq!(strides, vec![4, 1]);
        // SAFETY: freshly exported and not handed to anyone else.
        let imported = unsafe { ManagedTensor::Legacy(exported).import() }.unwrap();
        assert!(!imported.readonly);
        drop(imported);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn byte_strides_that_split_items_are_refused() {
        let mut data = [0f32; 4];
        let layout = Layout::new(vec![2], vec![6], 4).unwrap();
        let err = export_versioned(spec(&mut data, layout), Box::new(()))
            .err()
            .unwrap();
        assert!(matches!(
            err,
            DlpackError::StrideNotElementMultiple {
                stride_bytes: 6,
                ..
            }
        ));
    }

    #[test]
    fn unknown_major_version_is_refused_and_still_deleted() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut data = [0f32; 1];
        let exported = export_versioned(
            spec(&mut data, Layout::c_contiguous(&[1], 4).unwrap()),
            Box::new(CountDrop(drops.clone())),
        )
        .unwrap();
        // SAFETY: we own the struct; pretend a future producer made it.
        unsafe { (*exported.as_ptr()).version.major = 2 };
        // SAFETY: freshly exported and not handed to anyone else.
        let err = unsafe { ManagedTensor::Versioned(exported).import() }
            .err()
            .unwrap();
        assert!(matches!(err, DlpackError::Version { major: 2 }));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn negative_dims_are_refused() {
        let mut shape = [2i64, -1];
        let tensor = DLTensor {
            data: std::ptr::null_mut(),
            device: DLDevice::CPU,
            ndim: 2,
            dtype: DLDataType {
                code: 2,
                bits: 32,
                lanes: 1,
            },
            shape: shape.as_mut_ptr(),
            strides: std::ptr::null_mut(),
            byte_offset: 0,
        };
        // SAFETY: shape points to 2 values; strides are null.
        let err = unsafe { describe(&tensor) }.err().unwrap();
        assert!(matches!(err, DlpackError::NegativeDim { axis: 1, dim: -1 }));
    }
}

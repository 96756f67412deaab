//! Batch views handed to Python as NumPy arrays made through NumPy's C API, with the view
//! as the array's base.
//!
//! Why: `np.asarray(view)` goes through the buffer protocol, which allocates a memoryview,
//! a shape / strides / format record and the array, and runs a Python frame per field. For
//! batches of a few kilobytes that costs as much as the batch itself. `PyArray_New` over
//! the view's memory makes the same array (same address, shape, strides, dtype,
//! writability; the view kept alive as its `base`, so the buffer is not recycled while the
//! array lives) in one call. Binding-only: the core knows nothing of NumPy.
//!
//! The C API is found the way NumPy's own `import_array()` finds it: the `_ARRAY_API`
//! capsule of `numpy._core._multiarray_umath` (NumPy 2) or `numpy.core._multiarray_umath`
//! (NumPy 1), a table of function pointers whose slots used here (0, 2, 93, 282) are the
//! same in both ABIs. Anything unexpected (another ABI, no capsule) leaves the table unset,
//! and callers fall back to the buffer protocol.

use std::ffi::{c_int, c_long, c_void};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCapsule;

use zerofeed_core::DType;

use crate::view::PyView;

/// `PyArray_New(subtype, nd, dims, type_num, strides, data, itemsize, flags, obj)`.
type NewFn = unsafe extern "C" fn(
    *mut ffi::PyTypeObject,
    c_int,
    *const isize,
    c_int,
    *const isize,
    *mut c_void,
    c_int,
    c_int,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
/// `PyArray_SetBaseObject(array, base)`: steals the reference to `base`.
type SetBaseFn = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> c_int;
/// `PyArray_GetNDArrayCVersion()`: the ABI version, `0x0100_0009` (NumPy 1) or `0x0200_0000`.
type AbiVersionFn = unsafe extern "C" fn() -> u32;

/// `NPY_ARRAY_WRITEABLE`.
const WRITEABLE: c_int = 0x0400;
/// NumPy's dimension limit in both ABIs this table is used with (`NPY_MAXDIMS` is 32 in
/// NumPy 1, 64 in NumPy 2).
const MAX_DIMS: usize = 32;

struct Api {
    array_type: *mut ffi::PyTypeObject,
    new: NewFn,
    set_base: SetBaseFn,
}

// SAFETY: the pointers are NumPy's static type object and functions, valid for the life of
// the process once NumPy is imported (the capsule holds the module's table), and only used
// with the GIL held.
unsafe impl Send for Api {}
// SAFETY: as above.
unsafe impl Sync for Api {}

static API: PyOnceLock<Option<Api>> = PyOnceLock::new();

fn api(py: Python<'_>) -> Option<&'static Api> {
    API.get_or_init(py, || load(py).ok().flatten()).as_ref()
}

fn load(py: Python<'_>) -> PyResult<Option<Api>> {
    let module = py
        .import("numpy._core._multiarray_umath")
        .or_else(|_| py.import("numpy.core._multiarray_umath"))?;
    let capsule = module.getattr("_ARRAY_API")?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let table = capsule
        .pointer_checked(None)?
        .as_ptr()
        .cast::<*mut c_void>();
    // SAFETY: `_ARRAY_API` is NumPy's table of C API pointers (what `import_array()` reads);
    // slot 0 is `PyArray_GetNDArrayCVersion` in every ABI, so it is read first, and the
    // other slots only for the ABIs whose layout is known. The module (and so the table)
    // stays imported for the process: `sys.modules` holds it.
    unsafe {
        let abi: AbiVersionFn = std::mem::transmute(*table);
        if !matches!(abi() >> 24, 1 | 2) {
            return Ok(None);
        }
        Ok(Some(Api {
            array_type: (*table.add(2)).cast(),
            new: std::mem::transmute::<*mut c_void, NewFn>(*table.add(93)),
            set_base: std::mem::transmute::<*mut c_void, SetBaseFn>(*table.add(282)),
        }))
    }
}

/// NumPy's type number for `dtype`, or `None` for types NumPy does not have (bfloat16).
fn type_number(dtype: DType) -> Option<c_int> {
    // int64 is `long` where long has 64 bits (Linux, macOS), `long long` elsewhere: the
    // number NumPy itself gives `np.int64`.
    let long64 = std::mem::size_of::<c_long>() == 8;
    Some(match dtype {
        DType::Bool => 0,
        DType::I8 => 1,
        DType::U8 => 2,
        DType::I16 => 3,
        DType::U16 => 4,
        DType::I32 => 5,
        DType::U32 => 6,
        DType::I64 if long64 => 7,
        DType::U64 if long64 => 8,
        DType::I64 => 9,
        DType::U64 => 10,
        DType::F32 => 11,
        DType::F64 => 12,
        DType::C64 => 14,
        DType::C128 => 15,
        DType::F16 => 23,
        DType::BF16 => return None,
    })
}

/// The host view as a NumPy array over its memory (the view its base), or the view itself
/// where NumPy's C API was not found or has no such dtype (the caller converts it as before).
pub fn array_or_view(py: Python<'_>, view: PyView) -> PyResult<Py<PyAny>> {
    let inner = view.view();
    let (Some(api), Some(type_num)) = (api(py), type_number(inner.dtype())) else {
        return Ok(Py::new(py, view)?.into_any());
    };
    let layout = inner.layout();
    if layout.ndim() > MAX_DIMS || !inner.device().is_host_accessible() {
        return Ok(Py::new(py, view)?.into_any());
    }
    // On the stack: this runs for every field of every batch.
    let ndim = layout.ndim();
    let (mut dims, mut strides) = ([0isize; MAX_DIMS], [0isize; MAX_DIMS]);
    for (d, &n) in dims.iter_mut().zip(layout.shape()) {
        *d = n as isize;
    }
    strides[..ndim].copy_from_slice(layout.strides());
    let flags = if inner.readonly() { 0 } else { WRITEABLE };
    let data = inner.address() as *mut c_void;
    let owner = Py::new(py, view)?;
    // SAFETY: `api` is NumPy's C API table (see `load`), used with the GIL held. The array
    // describes `data`, the view's own memory, with the view's shape, byte strides and
    // dtype, so it reads and writes only what the view may; its base, set before anything
    // else sees it, is the view, which keeps that memory alive (and out of the pool) while
    // the array lives. `PyArray_New` copies `dims` and `strides`.
    unsafe {
        let array = (api.new)(
            api.array_type,
            ndim as c_int,
            dims.as_ptr(),
            type_num,
            strides.as_ptr(),
            data,
            0,
            flags,
            std::ptr::null_mut(),
        );
        if array.is_null() {
            return Err(PyErr::fetch(py));
        }
        let array = Bound::from_owned_ptr(py, array);
        if (api.set_base)(array.as_ptr(), owner.into_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(array.unbind())
    }
}

/// True when batches can be handed out as NumPy arrays made through NumPy's C API
/// (`_Epoch.next_arrays`); False where it was not found, and views are converted in Python.
#[pyfunction]
pub fn _numpy_arrays_available(py: Python<'_>) -> bool {
    api(py).is_some()
}

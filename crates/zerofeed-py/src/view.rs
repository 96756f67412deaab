//! `zerofeed.View`: a zero-copy N-d strided view of someone's memory.
//!
//! A view is an address, a [`Layout`], a dtype, a device and a keep-alive handle. Indexing
//! makes new views sharing the handle; the buffer protocol and DLPack hand out the same
//! bytes, each export holding the handle until its consumer lets go.

use std::any::Any;
use std::ffi::{c_int, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyEllipsis, PyList, PySlice, PyTuple};

use zerofeed_core::dlpack::{self as core_dlpack, DLDevice, ExportSpec};
use zerofeed_core::exchange::{self, ExportPlan, Route, Target, ViewFacts};
use zerofeed_core::gather::gather;
use zerofeed_core::host::{AlignedBuffer, Alignment};
use zerofeed_core::layout::{alignment_of, IndexItem};
use zerofeed_core::{DType, Layout};

use crate::dlpack::{legacy_capsule, versioned_capsule};
use crate::errors::{dtype_error, host_error, layout_error, raise, Kind};

/// Whatever keeps a view's memory alive: a memoryview, a DLPack handle, a Rust buffer.
pub type KeepAlive = Arc<dyn Any + Send + Sync>;

/// A zero-copy N-d strided view of a buffer. Create one with `zerofeed.view(obj)`.
#[pyclass(frozen, module = "zerofeed", name = "View")]
pub struct PyView {
    pub keep: KeepAlive,
    pub address: usize,
    pub layout: Layout,
    pub dtype: DType,
    pub device: DLDevice,
    pub readonly: bool,
}

/// An address that may cross into a GIL-free closure; the view it came from outlives the call.
#[derive(Clone, Copy)]
struct SendPtr(*const u8);
// SAFETY: only used while the owning view (and so the memory) is alive and borrowed.
unsafe impl Send for SendPtr {}

impl SendPtr {
    // A method call makes closures capture the whole wrapper, not its raw-pointer field.
    fn get(self) -> *const u8 {
        self.0
    }
}

/// Copies made by views in this process, and their bytes (`zerofeed.copy_stats()`).
static COPIES: AtomicU64 = AtomicU64::new(0);
static COPIED_BYTES: AtomicU64 = AtomicU64::new(0);

/// `(copies, bytes)` made by `View.copy` and the conversions that needed one.
#[pyfunction]
pub fn _copy_stats() -> (u64, u64) {
    (
        COPIES.load(Ordering::Relaxed),
        COPIED_BYTES.load(Ordering::Relaxed),
    )
}

/// Aligned Rust memory behind `zerofeed.empty` and every copy.
pub fn rust_buffer(nbytes: usize, align: Alignment) -> PyResult<AlignedBuffer> {
    AlignedBuffer::new(nbytes, align).map_err(|e| host_error("align", e))
}

impl PyView {
    pub fn facts(&self) -> ViewFacts<'_> {
        ViewFacts {
            address: self.address,
            layout: &self.layout,
            dtype: self.dtype,
            device: self.device,
            readonly: self.readonly,
        }
    }

    fn with_layout(&self, layout: Layout, byte_offset: isize) -> PyView {
        PyView {
            keep: self.keep.clone(),
            address: self.address.wrapping_add_signed(byte_offset),
            layout,
            dtype: self.dtype,
            device: self.device,
            readonly: self.readonly,
        }
    }

    fn permuted(&self, axes: &[usize]) -> PyResult<PyView> {
        let layout = if axes.is_empty() {
            self.layout.transpose(None)
        } else {
            self.layout.transpose(Some(axes))
        }
        .map_err(|e| layout_error("axes", e))?;
        Ok(self.with_layout(layout, 0))
    }

    fn require_host(&self, what: &str) -> PyResult<()> {
        if self.device.is_host_accessible() {
            return Ok(());
        }
        Err(raise(
            Kind::Device,
            "obj",
            format!(
                "{what} needs host memory but the view is on {}; move it with a GPU framework first",
                self.device.name()
            ),
        ))
    }

    /// A packed, aligned copy owned by Rust (the GIL is released while bytes move).
    pub fn packed_copy(&self, py: Python<'_>, align: usize) -> PyResult<PyView> {
        self.require_host("copying")?;
        let layout = Layout::c_contiguous(self.layout.shape(), self.dtype.itemsize())
            .map_err(|e| layout_error("obj", e))?;
        let mut buffer = rust_buffer(layout.nbytes(), Alignment::Bytes(align))?;
        let src = SendPtr(self.address as *const u8);
        let source_layout = &self.layout;
        let destination = buffer.as_mut_slice();
        py.detach(move || {
            // SAFETY: `self` is borrowed for the call, so its keep-alive holds the memory,
            // and its layout only addresses bytes of that memory.
            unsafe { gather(src.get(), source_layout, destination) }
        });
        COPIES.fetch_add(1, Ordering::Relaxed);
        COPIED_BYTES.fetch_add(layout.nbytes() as u64, Ordering::Relaxed);
        let address = buffer.as_ptr() as usize;
        Ok(PyView {
            keep: Arc::new(buffer),
            address,
            layout,
            dtype: self.dtype,
            device: DLDevice::CPU,
            readonly: false,
        })
    }

    /// Exports as a DLPack capsule without any copy (callers decide about copies first).
    pub fn capsule(&self, py: Python<'_>, legacy: bool, copied: bool) -> PyResult<Py<PyAny>> {
        let spec = ExportSpec {
            data: self.address as *mut u8,
            device: self.device,
            dtype: self.dtype,
            layout: self.layout.clone(),
            readonly: self.readonly,
        };
        let owner: Box<dyn Any + Send> = Box::new(self.keep.clone());
        if legacy {
            let managed = core_dlpack::export_legacy(spec, owner)
                .map_err(|e| crate::errors::dlpack_error("obj", e))?;
            legacy_capsule(py, managed)
        } else {
            let managed = core_dlpack::export_versioned(spec, owner)
                .map_err(|e| crate::errors::dlpack_error("obj", e))?;
            if copied {
                // SAFETY: freshly exported, not yet shared.
                unsafe { (*managed.as_ptr()).flags |= core_dlpack::FLAG_IS_COPIED };
            }
            versioned_capsule(py, managed)
        }
    }
}

/// The value of an integer-like object (`int`, NumPy integers: anything with `__index__`,
/// as NumPy and Python accept), saturated to the i64 range, which behaves like +-infinity
/// for slicing and is out of range as an index. `None` for anything else (floats, strings).
fn as_index(value: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    // SAFETY: `value` is a live object; PyNumber_Index returns a new reference or NULL.
    let index = unsafe { ffi::PyNumber_Index(value.as_ptr()) };
    if index.is_null() {
        let _ = PyErr::take(value.py());
        return Ok(None);
    }
    // SAFETY: a new, owned reference to an int.
    let index = unsafe { Bound::from_owned_ptr(value.py(), index) };
    match index.extract::<i64>() {
        Ok(v) => Ok(Some(v)),
        Err(_) => Ok(Some(if index.gt(0)? { i64::MAX } else { i64::MIN })),
    }
}

fn extract_i64_opt(value: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if value.is_none() {
        return Ok(None);
    }
    match as_index(value)? {
        Some(v) => Ok(Some(v)),
        None => Err(raise(
            Kind::IndexOutOfRange,
            "key",
            format!(
                "slice indices must be integers or None, got {}",
                value.get_type().name()?
            ),
        )),
    }
}

fn index_item(item: &Bound<'_, PyAny>) -> PyResult<IndexItem> {
    if item.is_none() {
        return Ok(IndexItem::NewAxis);
    }
    if item.is_instance_of::<PyEllipsis>() {
        return Ok(IndexItem::Ellipsis);
    }
    if let Ok(slice) = item.cast::<PySlice>() {
        return Ok(IndexItem::Slice {
            start: extract_i64_opt(&slice.getattr("start")?)?,
            stop: extract_i64_opt(&slice.getattr("stop")?)?,
            step: extract_i64_opt(&slice.getattr("step")?)?,
        });
    }
    if item.is_instance_of::<pyo3::types::PyBool>() {
        return Err(raise(Kind::IndexOutOfRange, "key", "boolean indices select elements and would copy; a View only takes integers, slices, ... and None"));
    }
    match as_index(item)? {
        Some(i) => Ok(IndexItem::Int(i)),
        None => Err(raise(
            Kind::IndexOutOfRange,
            "key",
            format!(
                "only integers, slices (`:`), ellipsis (`...`) and None are valid indices, got {}; for fancy indexing convert with np.asarray(view) first",
                item.get_type().name()?
            ),
        )),
    }
}

fn shape_tuple<'py>(
    py: Python<'py>,
    values: impl IntoIterator<Item = i64>,
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, values.into_iter().collect::<Vec<_>>())
}

#[pymethods]
impl PyView {
    /// The shape, one entry per axis.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        shape_tuple(py, self.layout.shape().iter().map(|&n| n as i64))
    }

    /// Byte strides, one per axis (may be negative or zero), as NumPy reports them.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        shape_tuple(py, self.layout.strides().iter().map(|&s| s as i64))
    }

    /// The element type's NumPy name, e.g. `"float32"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    #[getter]
    fn ndim(&self) -> usize {
        self.layout.ndim()
    }

    #[getter]
    fn size(&self) -> usize {
        self.layout.size()
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.layout.nbytes()
    }

    #[getter]
    fn itemsize(&self) -> usize {
        self.dtype.itemsize()
    }

    /// Address of the first element.
    #[getter]
    fn ptr(&self) -> usize {
        self.address
    }

    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }

    /// Where the data lives: `"cpu"`, `"cuda:0"`, `"cuda_host"`...
    #[getter]
    fn device(&self) -> String {
        self.device.name()
    }

    #[getter]
    fn is_c_contiguous(&self) -> bool {
        self.layout.is_c_contiguous()
    }

    #[getter]
    fn is_f_contiguous(&self) -> bool {
        self.layout.is_f_contiguous()
    }

    /// The largest power of two dividing `ptr`, capped at 4096.
    #[getter]
    fn alignment(&self) -> usize {
        alignment_of(self.address)
    }

    /// The same view, read-only (`True`) or checked writable (`False`: fails on read-only data).
    fn _with_readonly(&self, readonly: bool) -> PyResult<PyView> {
        if !readonly && self.readonly {
            return Err(raise(
                Kind::ReadOnly,
                "readonly",
                "readonly=False but the view is read-only",
            ));
        }
        let mut view = self.with_layout(self.layout.clone(), 0);
        view.readonly = readonly;
        Ok(view)
    }

    /// The transpose (axes reversed).
    #[getter(T)]
    fn transposed(&self) -> PyResult<PyView> {
        self.permuted(&[])
    }

    fn __len__(&self) -> PyResult<usize> {
        self.layout
            .shape()
            .first()
            .copied()
            .ok_or_else(|| PyTypeError::new_err("len() of a 0-d view"))
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<PyView> {
        let items: Vec<IndexItem> = match key.cast::<PyTuple>() {
            Ok(tuple) => tuple
                .iter()
                .map(|i| index_item(&i))
                .collect::<PyResult<_>>()?,
            Err(_) => vec![index_item(key)?],
        };
        let indexed = self
            .layout
            .index(&items)
            .map_err(|e| layout_error("key", e))?;
        Ok(self.with_layout(indexed.layout, indexed.byte_offset))
    }

    /// Permutes the axes (no axes: reverse them). Always a view.
    #[pyo3(signature = (*axes))]
    fn transpose(&self, axes: &Bound<'_, PyTuple>) -> PyResult<PyView> {
        let axes: Vec<usize> =
            if axes.len() == 1 && !axes.get_item(0)?.is_instance_of::<pyo3::types::PyInt>() {
                axes.get_item(0)?.extract()?
            } else {
                axes.extract()?
            };
        self.permuted(&axes)
    }

    /// A packed, C-contiguous copy in fresh Rust memory aligned to `align` bytes.
    #[pyo3(signature = (*, align = 64))]
    fn copy(&self, py: Python<'_>, align: usize) -> PyResult<PyView> {
        self.packed_copy(py, align)
    }
    /// A view with a new shape (one entry may be -1); ValueError when strides forbid it.
    #[pyo3(signature = (*shape))]
    fn reshape(&self, shape: &Bound<'_, PyTuple>) -> PyResult<PyView> {
        let dims: Vec<i64> =
            if shape.len() == 1 && !shape.get_item(0)?.is_instance_of::<pyo3::types::PyInt>() {
                shape.get_item(0)?.extract()?
            } else {
                shape.extract()?
            };
        let layout = self
            .layout
            .reshape(&dims)
            .map_err(|e| layout_error("shape", e))?;
        Ok(self.with_layout(layout, 0))
    }

    /// DLPack export (Python array API semantics).
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<&Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        // Device views: the consumer's stream waits on the copy's event (host: a no-op).
        crate::cuda::before_export(self, stream)?;
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        if let Some((device_type, device_id)) = dl_device {
            let wanted = DLDevice {
                device_type,
                device_id,
            };
            if wanted != self.device
                && !(wanted.is_host_accessible() && self.device.is_host_accessible())
            {
                return Err(raise(
                    Kind::Export,
                    "dl_device",
                    format!(
                        "the view is on {} and cannot be exported to {}",
                        self.device.name(),
                        wanted.name()
                    ),
                ));
            }
        }
        let needs_copy = !self.layout.strides_are_element_multiples();
        if copy == Some(false) && needs_copy {
            return Err(raise(
                Kind::Export,
                "copy",
                "copy=False but the strides are not whole items, which DLPack cannot express",
            ));
        }
        if copy == Some(true) || needs_copy {
            return self.packed_copy(py, 64)?.capsule(py, !versioned, true);
        }
        if !versioned && self.readonly {
            return Err(raise(
                Kind::ReadOnly,
                "max_version",
                "the view is read-only and a legacy DLPack capsule cannot say so; ask for max_version=(1, 0) or pass copy=True",
            ));
        }
        self.capsule(py, !versioned, false)
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (self.device.device_type, self.device.device_id)
    }

    /// A legacy capsule even for read-only data: only for consumers whose tensors are
    /// immutable (TensorFlow, JAX), which never write through it.
    fn _legacy_capsule_for_immutable_consumer(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.capsule(py, true, false)
    }

    /// The export plan for `target` as a dict (used by `zerofeed.explain`).
    #[pyo3(signature = (target, *, jax_x64 = false))]
    fn _plan<'py>(
        &self,
        py: Python<'py>,
        target: &str,
        jax_x64: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let target: Target = match target.parse() {
            Ok(Target::Jax { .. }) => Target::Jax { x64: jax_x64 },
            Ok(t) => t,
            Err(e) => return Err(raise(Kind::Layout, "target", e.to_string())),
        };
        plan_dict(py, &exchange::plan(&self.facts(), target))
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let owner = slf.clone();
        let this = slf.get();
        this.require_host("the buffer protocol")?;
        if flags & ffi::PyBUF_WRITABLE != 0 && this.readonly {
            return Err(raise(
                Kind::ReadOnly,
                "flags",
                "the view is read-only; request a read-only buffer (np.asarray works) or copy it",
            ));
        }
        let layout = &this.layout;
        let wants = |bits: c_int| flags & bits == bits;
        let contiguous_ok = if wants(ffi::PyBUF_C_CONTIGUOUS) {
            layout.is_c_contiguous()
        } else if wants(ffi::PyBUF_F_CONTIGUOUS) {
            layout.is_f_contiguous()
        } else if wants(ffi::PyBUF_ANY_CONTIGUOUS) || !wants(ffi::PyBUF_STRIDES) {
            layout.is_c_contiguous()
                || (wants(ffi::PyBUF_ANY_CONTIGUOUS) && layout.is_f_contiguous())
        } else {
            true
        };
        if !contiguous_ok {
            return Err(raise(
                Kind::Export,
                "flags",
                "the consumer asked for a contiguous buffer but the view is strided; use np.asarray(view) (strided) or view.copy()",
            ));
        }
        let format = CString::new(this.dtype.buffer_format()).expect("formats have no NUL");
        let parts = Box::new(BufferParts {
            shape: layout
                .shape()
                .iter()
                .map(|&n| n as ffi::Py_ssize_t)
                .collect(),
            strides: layout
                .strides()
                .iter()
                .map(|&s| s as ffi::Py_ssize_t)
                .collect(),
            format,
        });
        let parts = Box::into_raw(parts);
        // SAFETY: CPython hands us a Py_buffer to fill; the arrays it points to live in
        // `parts`, freed in `__releasebuffer__`; `obj` takes a strong reference to the view,
        // which keeps the memory alive until the buffer is released.
        unsafe {
            (*view).obj = owner.into_any().into_ptr();
            (*view).buf = this.address as *mut std::ffi::c_void;
            (*view).len = layout.nbytes() as ffi::Py_ssize_t;
            (*view).readonly = c_int::from(this.readonly);
            (*view).itemsize = this.dtype.itemsize() as ffi::Py_ssize_t;
            (*view).format = if wants(ffi::PyBUF_FORMAT) {
                (*parts).format.as_ptr() as *mut _
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = layout.ndim() as c_int;
            (*view).shape = if wants(ffi::PyBUF_ND) {
                (*parts).shape.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if wants(ffi::PyBUF_STRIDES) {
                (*parts).strides.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = parts.cast();
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, view: *mut ffi::Py_buffer) {
        // SAFETY: `internal` was set by `__getbuffer__` from `Box::into_raw` and is freed once.
        unsafe {
            let parts = (*view).internal.cast::<BufferParts>();
            if !parts.is_null() {
                drop(Box::from_raw(parts));
            }
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "View(shape={:?}, dtype={}, strides={:?}, device={}, readonly={}, ptr=0x{:x})",
            self.layout.shape(),
            self.dtype,
            self.layout.strides(),
            self.device.name(),
            self.readonly,
            self.address
        )
    }
}

struct BufferParts {
    shape: Vec<ffi::Py_ssize_t>,
    strides: Vec<ffi::Py_ssize_t>,
    format: CString,
}

fn plan_dict<'py>(py: Python<'py>, plan: &ExportPlan) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("target", plan.target.name())?;
    dict.set_item("zero_copy", plan.zero_copy)?;
    dict.set_item("copy_bytes", plan.copy_bytes)?;
    dict.set_item("reasons", PyList::new(py, &plan.reasons)?)?;
    dict.set_item("notes", PyList::new(py, &plan.notes)?)?;
    let route = match plan.route {
        Route::Buffer => "buffer",
        Route::Dlpack { legacy: true } => "dlpack-legacy",
        Route::Dlpack { legacy: false } => "dlpack",
    };
    dict.set_item("route", route)?;
    Ok(dict)
}

/// Parses a dtype name, naming `argument` on failure.
pub fn parse_dtype(argument: &str, name: &str) -> PyResult<DType> {
    name.parse::<DType>().map_err(|e| dtype_error(argument, e))
}

//! `zerofeed.View`: a zero-copy N-d strided view of someone's memory.
//!
//! A view is an address, a [`Layout`], a dtype, a device and a keep-alive handle. Indexing
//! makes new views sharing the handle; the buffer protocol and DLPack hand out the same
//! bytes, each export holding the handle until its consumer lets go.

use std::ffi::{c_int, CString};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyEllipsis, PyList, PySlice, PyTuple};

use zerofeed_core::dlpack::DLDevice;
use zerofeed_core::exchange::{
    self, BufferRefusal, BufferRequest, DlpackExport, ExportPlan, Route, Target,
};
use zerofeed_core::host::Alignment;
use zerofeed_core::layout::{alignment_of, IndexItem};
use zerofeed_core::view::{process_copies, Exported, View};
use zerofeed_core::DType;

use crate::dlpack::{legacy_capsule, versioned_capsule};
use crate::errors::{dtype_error, export_error, guard, raise, view_error, Kind};

/// A zero-copy N-d strided view of a buffer. Create one with `zerofeed.view(obj)`.
#[pyclass(frozen, module = "zerofeed", name = "View")]
pub struct PyView {
    inner: View,
}

impl From<View> for PyView {
    fn from(inner: View) -> PyView {
        PyView { inner }
    }
}

/// `(copies, bytes)` made by `View.copy` and the conversions that needed one, process-wide.
#[pyfunction]
pub fn _copy_stats() -> (u64, u64) {
    process_copies().snapshot()
}

impl PyView {
    fn plan(&self, target: &str, jax_x64: bool) -> PyResult<ExportPlan> {
        let target: Target = match target.parse() {
            Ok(Target::Jax { .. }) => Target::Jax { x64: jax_x64 },
            Ok(t) => t,
            Err(e) => return Err(raise(Kind::Layout, "target", e.to_string())),
        };
        Ok(exchange::plan(&self.inner.facts(), target))
    }

    /// The core view.
    pub fn view(&self) -> &View {
        &self.inner
    }

    /// A packed, aligned copy owned by Rust (the GIL is released while bytes move).
    pub fn packed_copy(&self, py: Python<'_>, align: usize) -> PyResult<PyView> {
        let inner = &self.inner;
        py.detach(|| inner.packed_copy(Alignment::Bytes(align)))
            .map(PyView::from)
            .map_err(|e| view_error("obj", e))
    }

    /// Exports as a DLPack capsule without any copy (callers decide about copies first).
    pub fn capsule(&self, py: Python<'_>, legacy: bool, copied: bool) -> PyResult<Py<PyAny>> {
        match self
            .inner
            .export_dlpack(!legacy, copied)
            .map_err(|e| view_error("obj", e))?
        {
            Exported::Legacy(managed) => legacy_capsule(py, managed),
            Exported::Versioned(managed) => versioned_capsule(py, managed),
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
        shape_tuple(py, self.inner.layout().shape().iter().map(|&n| n as i64))
    }

    /// Byte strides, one per axis (may be negative or zero), as NumPy reports them.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        shape_tuple(py, self.inner.layout().strides().iter().map(|&s| s as i64))
    }

    /// The element type's NumPy name, e.g. `"float32"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }

    #[getter]
    fn ndim(&self) -> usize {
        self.inner.layout().ndim()
    }

    #[getter]
    fn size(&self) -> usize {
        self.inner.layout().size()
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.layout().nbytes()
    }

    #[getter]
    fn itemsize(&self) -> usize {
        self.inner.dtype().itemsize()
    }

    /// Address of the first element.
    #[getter]
    fn ptr(&self) -> usize {
        self.inner.address()
    }

    #[getter]
    fn readonly(&self) -> bool {
        self.inner.readonly()
    }

    /// Where the data lives: `"cpu"`, `"cuda:0"`, `"cuda_host"`...
    #[getter]
    fn device(&self) -> String {
        self.inner.device().name()
    }

    #[getter]
    fn is_c_contiguous(&self) -> bool {
        self.inner.layout().is_c_contiguous()
    }

    #[getter]
    fn is_f_contiguous(&self) -> bool {
        self.inner.layout().is_f_contiguous()
    }

    /// The largest power of two dividing `ptr`, capped at 4096.
    #[getter]
    fn alignment(&self) -> usize {
        alignment_of(self.inner.address())
    }

    /// The same view, read-only (`True`) or checked writable (`False`: fails on read-only data).
    fn _with_readonly(&self, readonly: bool) -> PyResult<PyView> {
        guard(|| {
            self.inner
                .with_readonly(readonly)
                .map(PyView::from)
                .map_err(|e| view_error("readonly", e))
        })
    }

    /// The transpose (axes reversed).
    #[getter(T)]
    fn transposed(&self) -> PyResult<PyView> {
        self.inner
            .transpose(None)
            .map(PyView::from)
            .map_err(|e| view_error("axes", e))
    }

    fn __len__(&self) -> PyResult<usize> {
        self.inner
            .layout()
            .shape()
            .first()
            .copied()
            .ok_or_else(|| PyTypeError::new_err("len() of a 0-d view"))
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<PyView> {
        guard(|| {
            let items: Vec<IndexItem> = match key.cast::<PyTuple>() {
                Ok(tuple) => tuple
                    .iter()
                    .map(|i| index_item(&i))
                    .collect::<PyResult<_>>()?,
                Err(_) => vec![index_item(key)?],
            };
            self.inner
                .index(&items)
                .map(PyView::from)
                .map_err(|e| view_error("key", e))
        })
    }

    /// Permutes the axes (no axes: reverse them). Always a view.
    #[pyo3(signature = (*axes))]
    fn transpose(&self, axes: &Bound<'_, PyTuple>) -> PyResult<PyView> {
        guard(|| {
            let axes = crate::args::integers("axes", &crate::args::spread(axes)?)?;
            let axes = (!axes.is_empty()).then_some(axes.as_slice());
            self.inner
                .transpose(axes)
                .map(PyView::from)
                .map_err(|e| view_error("axes", e))
        })
    }

    /// A packed, C-contiguous copy in fresh Rust memory aligned to `align` bytes.
    #[pyo3(signature = (*, align = 64))]
    fn copy(&self, py: Python<'_>, align: usize) -> PyResult<PyView> {
        guard(|| self.packed_copy(py, align))
    }

    /// A view with a new shape (one entry may be -1); ValueError when strides forbid it.
    #[pyo3(signature = (*shape))]
    fn reshape(&self, shape: &Bound<'_, PyTuple>) -> PyResult<PyView> {
        guard(|| {
            let dims = crate::args::integers("shape", &crate::args::spread(shape)?)?;
            self.inner
                .reshape(&dims)
                .map(PyView::from)
                .map_err(|e| view_error("shape", e))
        })
    }

    /// DLPack export (Python array API semantics; the decision is `exchange::dlpack_decision`).
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<&Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        guard(|| {
            // Device views: the consumer's stream waits on the copy's event (host: a no-op).
            crate::cuda::before_export(self, stream)?;
            let versioned = max_version.is_some_and(|(major, _)| major >= 1);
            let wanted = dl_device.map(|(device_type, device_id)| DLDevice {
                device_type,
                device_id,
            });
            match exchange::dlpack_decision(&self.inner.facts(), versioned, copy, wanted)
                .map_err(export_error)?
            {
                DlpackExport::Copy => self.packed_copy(py, 64)?.capsule(py, !versioned, true),
                DlpackExport::Share => self.capsule(py, !versioned, false),
                DlpackExport::ShareReadOnly => {
                    let warning = py.get_type::<pyo3::exceptions::PyUserWarning>();
                    PyErr::warn(
                        py,
                        &warning,
                        c"zerofeed: copy=False shares read-only memory with a consumer that may write to it; a write is undefined (a crash for a read-only map)",
                        1,
                    )?;
                    self.capsule(py, !versioned, false)
                }
            }
        })
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        let device = self.inner.device();
        (device.device_type, device.device_id)
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
        guard(|| plan_dict(py, &self.plan(target, jax_x64)?))
    }

    /// What `to_<target>(copy=...)` does: `"share"`, `"copy"` or `"share-read-only"` (share
    /// and warn), or ExportError for `copy=False` when a copy is needed.
    #[pyo3(signature = (target, *, copy, jax_x64 = false))]
    fn _conversion(
        &self,
        target: &str,
        copy: Option<bool>,
        jax_x64: bool,
    ) -> PyResult<&'static str> {
        guard(|| {
            let plan = self.plan(target, jax_x64)?;
            Ok(
                match exchange::conversion(&plan, copy).map_err(export_error)? {
                    DlpackExport::Share => "share",
                    DlpackExport::Copy => "copy",
                    DlpackExport::ShareReadOnly => "share-read-only",
                },
            )
        })
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let owner = slf.clone();
        let this = slf.get().view();
        let wants = |bits: c_int| flags & bits == bits;
        let request = BufferRequest {
            writable: wants(ffi::PyBUF_WRITABLE),
            strides: wants(ffi::PyBUF_STRIDES),
            c_contiguous: wants(ffi::PyBUF_C_CONTIGUOUS),
            f_contiguous: wants(ffi::PyBUF_F_CONTIGUOUS),
            any_contiguous: wants(ffi::PyBUF_ANY_CONTIGUOUS),
        };
        exchange::buffer_request(&this.facts(), request).map_err(|refusal| {
            let kind = match refusal {
                BufferRefusal::ReadOnly => Kind::ReadOnly,
                BufferRefusal::NotContiguous => Kind::Export,
                BufferRefusal::NotOnHost(_) => Kind::Device,
            };
            raise(kind, "flags", refusal.to_string())
        })?;
        let layout = this.layout();
        let format = CString::new(this.dtype().buffer_format()).expect("formats have no NUL");
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
            (*view).buf = this.address() as *mut std::ffi::c_void;
            (*view).len = layout.nbytes() as ffi::Py_ssize_t;
            (*view).readonly = c_int::from(this.readonly());
            (*view).itemsize = this.dtype().itemsize() as ffi::Py_ssize_t;
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
            self.inner.layout().shape(),
            self.inner.dtype(),
            self.inner.layout().strides(),
            self.inner.device().name(),
            self.inner.readonly(),
            self.inner.address()
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

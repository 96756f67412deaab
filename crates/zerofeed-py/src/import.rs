//! Making views: from the buffer protocol, a DLPack capsule, a raw address
//! (`__array_interface__`) or fresh aligned Rust memory.

use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;

use zerofeed_core::dlpack::DLDevice;
use zerofeed_core::host::Alignment;
use zerofeed_core::view::{KeepAlive, View};
use zerofeed_core::{DType, Layout};

use crate::dlpack::import_capsule;
use crate::errors::{dtype_error, guard, layout_error, raise, view_error, Kind};
use crate::view::{parse_dtype, PyView};

/// Holds a Python object (a memoryview pinning a buffer export, or a DLPack producer) for
/// as long as a view, or any export of it, lives.
///
/// The last owner is often dropped by C code that PyO3 does not see: a capsule destructor,
/// or a consumer's DLPack deleter (PyTorch, TensorFlow, JAX), maybe on another thread. A
/// plain `Py` drop there only queues the decref until the next call into zerofeed, keeping
/// the producer and its memory alive until then; so the drop attaches to the interpreter
/// (taking the GIL if needed, as NumPy's own DLPack deleter does) and releases it at once.
struct PythonOwner(Option<Py<PyAny>>);

impl PythonOwner {
    fn new(object: Py<PyAny>) -> PythonOwner {
        PythonOwner(Some(object))
    }
}

impl Drop for PythonOwner {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            // When the interpreter cannot be attached to (finalizing), the closure and the
            // object in it are dropped unrun, which queues the decref as before.
            let _ = Python::try_attach(move |_py| drop(object));
        }
    }
}

/// A view of an object exporting the buffer protocol.
#[pyfunction]
#[pyo3(signature = (obj, *, readonly = None, dtype = None))]
pub fn _view_from_buffer(
    obj: &Bound<'_, PyAny>,
    readonly: Option<bool>,
    dtype: Option<&str>,
) -> PyResult<PyView> {
    guard(|| {
        let py = obj.py();
        // SAFETY: `obj` is a live object; PyMemoryView_FromObject returns a new reference or NULL.
        let memoryview = unsafe { ffi::PyMemoryView_FromObject(obj.as_ptr()) };
        if memoryview.is_null() {
            let cause = PyErr::fetch(py);
            return Err(raise(
                Kind::UnsupportedSource,
                "obj",
                format!(
                    "{} does not export the buffer protocol ({cause})",
                    obj.get_type().name()?
                ),
            ));
        }
        // SAFETY: a new, owned reference.
        let memoryview: Py<PyAny> = unsafe { Bound::from_owned_ptr(py, memoryview) }.unbind();
        // SAFETY: Py_buffer is plain data; zeroed is a valid "empty" value before GetBuffer fills it.
        let mut buffer: ffi::Py_buffer = unsafe { std::mem::zeroed() };
        // SAFETY: `memoryview` is live; on success we own one export, released right below. The
        // memoryview's own export (held by `PythonOwner`) keeps the pointers valid after that.
        let rc = unsafe {
            ffi::PyObject_GetBuffer(memoryview.as_ptr(), &mut buffer, ffi::PyBUF_RECORDS_RO)
        };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        let described = describe_buffer(&buffer);
        // SAFETY: releases exactly the export obtained above.
        unsafe { ffi::PyBuffer_Release(&mut buffer) };
        let (address, found_dtype, layout, source_readonly) = described?;
        let keep: KeepAlive = Arc::new(PythonOwner::new(memoryview));
        // SAFETY: the memoryview held by `keep` holds a buffer export of `obj`, which (by the
        // buffer protocol) keeps `buf` with this shape and these strides valid until released;
        // writable only when the exporter said so (a readonly= request never loosens that).
        let view = unsafe {
            View::from_raw_parts(
                address,
                layout,
                found_dtype,
                DLDevice::CPU,
                source_readonly,
                keep,
            )
        }
        .map_err(|e| view_error("obj", e))?;
        let view = match dtype {
            Some(name) => view
                .with_dtype(parse_dtype("dtype", name)?)
                .map_err(|e| view_error("dtype", e))?,
            None => view,
        };
        view.with_readonly_request(readonly)
            .map(PyView::from)
            .map_err(|e| view_error("readonly", e))
    })
}

fn describe_buffer(buffer: &ffi::Py_buffer) -> PyResult<(usize, DType, Layout, bool)> {
    // SAFETY: a filled Py_buffer: `format` is NUL-terminated when non-null, and `shape` /
    // `strides` point to `ndim` values when non-null (RECORDS requests both).
    unsafe {
        let format = if buffer.format.is_null() {
            "B".to_owned()
        } else {
            std::ffi::CStr::from_ptr(buffer.format)
                .to_string_lossy()
                .into_owned()
        };
        let dtype = DType::from_buffer_format(&format).map_err(|e| dtype_error("obj", e))?;
        if dtype.itemsize() as isize != buffer.itemsize {
            return Err(raise(
                Kind::DType,
                "obj",
                format!(
                    "buffer format {format:?} disagrees with its itemsize {}",
                    buffer.itemsize
                ),
            ));
        }
        if !buffer.suboffsets.is_null() {
            return Err(raise(Kind::UnsupportedSource, "obj", "buffers with suboffsets (PIL-style) are not supported; convert with np.asarray first"));
        }
        let ndim = buffer.ndim as usize;
        let shape: Vec<usize> = if ndim == 0 {
            vec![]
        } else {
            std::slice::from_raw_parts(buffer.shape, ndim)
                .iter()
                .map(|&n| n as usize)
                .collect()
        };
        let layout = if buffer.strides.is_null() || ndim == 0 {
            Layout::c_contiguous(&shape, dtype.itemsize())
        } else {
            let strides = std::slice::from_raw_parts(buffer.strides, ndim).to_vec();
            Layout::new(shape, strides, dtype.itemsize())
        }
        .map_err(|e| layout_error("obj", e))?;
        Ok((buffer.buf as usize, dtype, layout, buffer.readonly != 0))
    }
}

/// Keeps an imported DLPack tensor and (optionally) its producer alive.
struct DlpackOwner {
    _tensor: zerofeed_core::dlpack::ManagedTensor,
    _producer: Option<PythonOwner>,
}

/// A view of a DLPack capsule (consumed); `producer` is kept alive alongside.
#[pyfunction]
#[pyo3(signature = (capsule, producer = None, *, readonly = None))]
pub fn _view_from_capsule(
    capsule: &Bound<'_, PyAny>,
    producer: Option<Py<PyAny>>,
    readonly: Option<bool>,
) -> PyResult<PyView> {
    guard(|| {
        let imported = import_capsule(capsule)?;
        let keep: KeepAlive = Arc::new(DlpackOwner {
            _tensor: imported.handle,
            _producer: producer.map(PythonOwner::new),
        });
        // SAFETY: the DLPack contract: the producer keeps the tensor's memory (on its device)
        // valid until its deleter runs, which happens when `keep`'s handle drops; read-only
        // tensors stay read-only (a readonly= request never loosens that).
        let view = unsafe {
            View::from_raw_parts(
                imported.data as usize,
                imported.layout,
                imported.dtype,
                imported.device,
                imported.readonly,
                keep,
            )
        }
        .map_err(|e| view_error("obj", e))?;
        view.with_readonly_request(readonly)
            .map(PyView::from)
            .map_err(|e| view_error("readonly", e))
    })
}

/// A view of raw memory described by `__array_interface__`; `owner` must keep it alive.
#[pyfunction]
#[pyo3(signature = (address, shape, strides, dtype, readonly, owner))]
pub fn _view_from_address(
    address: usize,
    shape: &Bound<'_, PyAny>,
    strides: Option<&Bound<'_, PyAny>>,
    dtype: &str,
    readonly: bool,
    owner: Py<PyAny>,
) -> PyResult<PyView> {
    guard(|| {
        let dtype = parse_dtype("dtype", dtype)?;
        let shape = crate::args::dims("obj", shape)?;
        let layout = match strides {
            None => Layout::c_contiguous(&shape, dtype.itemsize()),
            Some(s) => {
                let strides = crate::args::integers("obj", s)?;
                let strides = strides
                    .into_iter()
                    .map(|s| isize::try_from(s).unwrap_or(isize::MAX))
                    .collect();
                Layout::new(shape, strides, dtype.itemsize())
            }
        }
        .map_err(|e| layout_error("obj", e))?;
        if address == 0 && layout.size() > 0 {
            return Err(raise(
                Kind::UnsupportedSource,
                "obj",
                "the array interface reports a null data pointer",
            ));
        }
        let keep: KeepAlive = Arc::new(PythonOwner::new(owner));
        // SAFETY: `__array_interface__`'s contract: `owner` (the object that reported it) keeps
        // the described host memory valid while it lives, writable unless it said read-only.
        let view =
            unsafe { View::from_raw_parts(address, layout, dtype, DLDevice::CPU, readonly, keep) };
        view.map(PyView::from).map_err(|e| view_error("obj", e))
    })
}

/// Parses `align`: a power of two, `"page"` or `"huge"`.
pub fn parse_alignment(align: &Bound<'_, PyAny>) -> PyResult<Alignment> {
    if let Ok(text) = align.extract::<String>() {
        return match text.as_str() {
            "page" => Ok(Alignment::Page),
            "huge" => Ok(Alignment::Huge),
            other => Err(raise(
                Kind::Layout,
                "align",
                format!("align={other:?} is not valid; use a power of two, \"page\" or \"huge\""),
            )),
        };
    }
    let bytes: usize = align.extract().map_err(|_| {
        raise(
            Kind::Layout,
            "align",
            "align must be an int power of two, \"page\" or \"huge\"",
        )
    })?;
    if bytes == 0 || !bytes.is_power_of_two() {
        return Err(raise(
            Kind::Layout,
            "align",
            format!("align={bytes} is not a power of two; use 64, 4096, \"page\" or \"huge\""),
        ));
    }
    Ok(Alignment::Bytes(bytes))
}

/// A writable C-contiguous view of fresh, aligned Rust memory (contents unspecified).
#[pyfunction]
#[pyo3(signature = (shape, dtype, *, align))]
pub fn _empty(shape: &Bound<'_, PyAny>, dtype: &str, align: &Bound<'_, PyAny>) -> PyResult<PyView> {
    guard(|| {
        let shape = crate::args::dims("shape", shape)?;
        let dtype = parse_dtype("dtype", dtype)?;
        let alignment = parse_alignment(align)?;
        View::empty(&shape, dtype, alignment)
            .map(PyView::from)
            .map_err(|e| view_error("shape", e))
    })
}

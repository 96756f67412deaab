//! `zerofeed.open_npy`: memory-mapped, fully validated `.npy` files as read-only views.

use pyo3::prelude::*;
use std::path::PathBuf;

use zerofeed_core::dlpack::DLDevice;
use zerofeed_core::source::{FileRegion, NpyFile, SourceError};
use zerofeed_core::Layout;

use zerofeed_core::view::View;

use crate::errors::{guard, layout_error, raise, view_error, Kind};
use crate::view::PyView;

/// Maps a source error to the matching exception, naming the file.
pub fn source_error(argument: &str, err: SourceError) -> PyErr {
    match err {
        SourceError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            raise(Kind::FileMissing, argument, err.to_string())
        }
        SourceError::Io { .. } => raise(Kind::Io, argument, err.to_string()),
        other => raise(Kind::NpyFormat, argument, other.to_string()),
    }
}

/// Opens `path` read-only, memory-mapped; no byte is read beyond the header.
pub fn open(path: PathBuf) -> PyResult<NpyFile> {
    NpyFile::open(&path).map_err(|e| source_error("path", e))
}

/// A read-only view of a `.npy` file's array, memory-mapped.
#[pyfunction]
pub fn _open_npy(py: Python<'_>, path: PathBuf) -> PyResult<PyView> {
    guard(|| {
        let file = py.detach(|| open(path))?;
        let header = file.header();
        let dtype = header.dtype;
        let layout = Layout::new(
            header.shape.clone(),
            header.byte_strides(),
            dtype.itemsize(),
        )
        .map_err(|e| layout_error("path", e))?;
        View::over_owned(file, layout, dtype, DLDevice::CPU, true)
            .map(PyView::from)
            .map_err(|e| view_error("path", e))
    })
}

/// A read-only view of `shape`/`strides` x `dtype` whose first element is at byte
/// `first_offset` of the file at `path`, over zerofeed's own private copy-on-write map of it
/// (used for NumPy's read-only `np.memmap`s, so that writers can share them safely).
#[pyfunction]
pub fn _view_of_file(
    py: Python<'_>,
    path: PathBuf,
    first_offset: usize,
    shape: Vec<usize>,
    strides: Vec<isize>,
    dtype: &str,
) -> PyResult<PyView> {
    guard(|| {
        let dtype = crate::view::parse_dtype("dtype", dtype)?;
        let layout =
            Layout::new(shape, strides, dtype.itemsize()).map_err(|e| layout_error("obj", e))?;
        let (low, _) = layout.byte_span().map_err(|e| layout_error("obj", e))?;
        let start = first_offset.checked_add_signed(low).ok_or_else(|| {
            raise(
                Kind::Layout,
                "obj",
                "the array starts before the beginning of its file",
            )
        })?;
        let region = py.detach(|| FileRegion::open(&path, start)).map_err(|e| {
            raise(
                Kind::Io,
                "obj",
                format!("{}: cannot map: {e}", path.display()),
            )
        })?;
        View::over_owned(region, layout, dtype, DLDevice::CPU, true)
            .map(PyView::from)
            .map_err(|e| view_error("obj", e))
    })
}

//! `zerofeed.open_npy`: memory-mapped, fully validated `.npy` files as read-only views.

use pyo3::prelude::*;
use std::path::PathBuf;

use zerofeed_core::source::{NpyFile, SourceError};
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

/// A read-only view of a `.npy` file's array, memory-mapped (private copy-on-write).
#[pyfunction]
pub fn _open_npy(py: Python<'_>, path: PathBuf) -> PyResult<PyView> {
    guard(|| {
        let file = py.detach(|| open(path))?;
        View::from_npy(file)
            .map(PyView::from)
            .map_err(|e| view_error("path", e))
    })
}

/// A read-only view of `shape`/`strides` x `dtype` whose first element is at byte
/// `first_offset` of the file at `path`, over zerofeed's own private copy-on-write map.
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
        py.detach(|| View::of_file(&path, first_offset, layout, dtype))
            .map(PyView::from)
            .map_err(|e| view_error("obj", e))
    })
}

/// `[(name, sample_shape, dtype)]` of a source's fields (shape `[]` where it varies), as
/// the Python front reads them.
pub fn field_specs(
    fields: &[zerofeed_core::source::FieldSpec],
) -> Vec<(String, Vec<usize>, &'static str)> {
    fields
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                f.shape.clone().unwrap_or_default(),
                f.dtype.name(),
            )
        })
        .collect()
}

//! Core errors to Python exceptions.
//!
//! The exception classes are defined in Python (`zerofeed/errors.py`) so that they can
//! subclass both `zerofeed.ZerofeedError` and the matching built-in (`IndexError`,
//! `ValueError`, ...) and carry fields. The package registers them here at import; until
//! then (or if a name is missing) the plain built-in is raised, so an error is never lost.

use pyo3::exceptions::{PyBufferError, PyIndexError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use zerofeed_core::dlpack::DlpackError;
use zerofeed_core::dtype::UnsupportedDType;
use zerofeed_core::exchange::ExportError;
use zerofeed_core::host::HostError;
use zerofeed_core::layout::LayoutError;
use zerofeed_core::pipeline::PipelineError;
use zerofeed_core::source::ArraySourceError;
use zerofeed_core::view::ViewError;

static CLASSES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// Called once by `zerofeed/__init__.py` with `{name: class}`.
#[pyfunction]
pub fn _register_errors(py: Python<'_>, classes: Bound<'_, PyDict>) -> PyResult<()> {
    let _ = CLASSES.set(py, classes.unbind());
    Ok(())
}

/// The Python exception kinds zerofeed raises, by the name of their class in `errors.py`.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An index out of range, too many indices, or an index of the wrong type (as NumPy).
    IndexOutOfRange,
    Layout,
    DType,
    UnsupportedSource,
    Export,
    ReadOnly,
    Device,
    NpyFormat,
    Memory,
    Pipeline,
    /// A memory-mapped file changed after it was opened.
    SourceChanged,
    /// A path that does not exist.
    FileMissing,
    /// Any other refusal of the operating system (permissions, a map that failed).
    Io,
    /// A bug: a panic caught at the boundary.
    Internal,
    /// Image bytes that do not decode (`.file` names them).
    ImageDecode,
    /// An image folder, file list or tar shard that cannot be a source (`.file` names it).
    ImageSource,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::IndexOutOfRange => "ViewIndexError",
            Kind::Layout => "LayoutError",
            Kind::DType => "DTypeError",
            Kind::UnsupportedSource => "UnsupportedSourceError",
            Kind::Export => "ExportError",
            Kind::ReadOnly => "ReadOnlyError",
            Kind::Device => "DeviceError",
            Kind::NpyFormat => "NpyFormatError",
            Kind::Memory => "MemoryBudgetError",
            Kind::Pipeline => "PipelineError",
            Kind::SourceChanged => "SourceChangedError",
            Kind::FileMissing => "FileMissingError",
            Kind::Io => "SourceIOError",
            Kind::Internal => "InternalError",
            Kind::ImageDecode => "ImageDecodeError",
            Kind::ImageSource => "ImageSourceError",
        }
    }

    fn builtin(self, message: String) -> PyErr {
        match self {
            Kind::IndexOutOfRange => PyIndexError::new_err(message),
            Kind::DType | Kind::UnsupportedSource => PyTypeError::new_err(message),
            Kind::Export | Kind::ReadOnly => PyBufferError::new_err(message),
            Kind::Memory => PyMemoryError::new_err(message),
            Kind::SourceChanged | Kind::Io => pyo3::exceptions::PyOSError::new_err(message),
            Kind::FileMissing => pyo3::exceptions::PyFileNotFoundError::new_err(message),
            Kind::Internal => pyo3::exceptions::PyRuntimeError::new_err(message),
            Kind::Layout
            | Kind::Device
            | Kind::NpyFormat
            | Kind::Pipeline
            | Kind::ImageDecode
            | Kind::ImageSource => PyValueError::new_err(message),
        }
    }
}

/// Builds the exception of `kind`, naming `argument` (the parameter at fault).
pub fn raise(kind: Kind, argument: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        let class = CLASSES
            .get(py)
            .and_then(|d| d.bind(py).get_item(kind.class_name()).ok().flatten())
            .and_then(|c| c.cast_into::<PyType>().ok());
        let Some(class) = class else {
            return kind.builtin(message);
        };
        match class.call1((message.clone(), argument)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(_) => kind.builtin(message),
        }
    })
}

pub fn layout_error(argument: &str, err: LayoutError) -> PyErr {
    let kind = match err {
        LayoutError::IndexOutOfRange { .. }
        | LayoutError::TooManyIndices { .. }
        | LayoutError::MultipleEllipsis => Kind::IndexOutOfRange,
        _ => Kind::Layout,
    };
    raise(kind, argument, err.to_string())
}

pub fn dtype_error(argument: &str, err: UnsupportedDType) -> PyErr {
    raise(Kind::DType, argument, err.to_string())
}

pub fn dlpack_error(argument: &str, err: DlpackError) -> PyErr {
    match err {
        DlpackError::DType(e) => dtype_error(argument, e),
        DlpackError::Layout(e) => layout_error(argument, e),
        other => raise(Kind::Export, argument, other.to_string()),
    }
}

pub fn host_error(argument: &str, err: HostError) -> PyErr {
    let kind = match err {
        HostError::BadAlignment(_) => Kind::Layout,
        _ => Kind::Memory,
    };
    raise(kind, argument, err.to_string())
}

pub fn view_error(argument: &str, err: ViewError) -> PyErr {
    match err {
        ViewError::Layout(e) => layout_error(argument, e),
        ViewError::Host(e) => host_error(argument, e),
        ViewError::Dlpack(e) => dlpack_error(argument, e),
        ViewError::ItemSize { .. } => raise(Kind::DType, argument, err.to_string()),
        ViewError::ReadOnly => raise(Kind::ReadOnly, argument, err.to_string()),
        ViewError::NotOnHost { .. } => raise(Kind::Device, argument, err.to_string()),
        ViewError::OutOfBounds { .. } => raise(Kind::IndexOutOfRange, argument, err.to_string()),
        ViewError::SourceChanged(_) => raise(Kind::SourceChanged, argument, err.to_string()),
        ViewError::DTypeSize { .. } => raise(Kind::DType, argument, err.to_string()),
        ViewError::File { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            raise(Kind::FileMissing, argument, err.to_string())
        }
        ViewError::File { .. } => raise(Kind::Io, argument, err.to_string()),
        _ => raise(Kind::UnsupportedSource, argument, err.to_string()),
    }
}

/// A pipeline error names its own argument (the core decides which).
pub fn pipeline_error(err: PipelineError) -> PyErr {
    let kind = if err.is_memory() {
        Kind::Memory
    } else if err.is_source_changed() {
        Kind::SourceChanged
    } else if matches!(
        err,
        PipelineError::Array(ArraySourceError::NotOnHost { .. })
    ) {
        Kind::Device
    } else {
        Kind::Pipeline
    };
    raise(kind, err.argument(), err.to_string())
}

pub fn export_error(err: ExportError) -> PyErr {
    raise(Kind::Export, err.argument(), err.to_string())
}

/// Runs a binding's body; a panic (a bug: every input error is typed) becomes
/// `zerofeed.InternalError` instead of crossing into Python as a `PanicException`, which
/// `except Exception` does not catch.
pub fn guard<T>(body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(raise(
                Kind::Internal,
                "internal",
                format!("internal error in zerofeed ({message}); this is a bug, please report it with this message"),
            ))
        }
    }
}

/// Panics on purpose, so that tests can check that `guard` turns panics into errors.
#[pyfunction]
pub fn _panic_for_tests() -> PyResult<()> {
    guard(|| panic!("a deliberate panic"))
}

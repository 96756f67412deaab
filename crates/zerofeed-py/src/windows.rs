//! `_Windows`: the core's `WindowSource` (windows over token streams and time series), for
//! `zerofeed.Windows` and `_Pipeline(windows=...)`.

use std::sync::Arc;

use pyo3::prelude::*;

use zerofeed_core::source::{Phase, Source, Target, WindowError, WindowSource, WindowSpec};

use crate::errors::{guard, raise, Kind};
use crate::view::PyView;

/// The exception for a window error: dtypes and devices have their own classes.
fn window_error(err: WindowError) -> PyErr {
    let kind = match err {
        WindowError::DTypeMismatch { .. } => Kind::DType,
        WindowError::NotOnHost { .. } => Kind::Device,
        _ => Kind::Pipeline,
    };
    raise(kind, err.argument(), err.to_string())
}

/// Windows over one or more series, validated; shared with the pipeline without copying.
#[pyclass(frozen, module = "zerofeed", name = "_Windows")]
pub struct PyWindows {
    inner: Arc<WindowSource>,
}

impl PyWindows {
    /// The source, for the pipeline.
    pub fn source(&self) -> Arc<dyn Source> {
        self.inner.clone()
    }
}

#[pymethods]
impl PyWindows {
    /// `target`: `"none"`, `"next"` or `"horizon"` (with `horizon` steps); `boundaries`:
    /// little-endian u64 offsets (NumPy's `tobytes()` of a `<u8` array).
    #[new]
    #[pyo3(signature = (series, *, length, stride, target, horizon, boundaries, random_phase))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        series: Vec<PyRef<'_, PyView>>,
        length: usize,
        stride: Option<usize>,
        target: &str,
        horizon: usize,
        boundaries: Vec<u8>,
        random_phase: bool,
    ) -> PyResult<PyWindows> {
        guard(|| {
            let target = match target {
                "none" => Target::None,
                "next" => Target::Next,
                "horizon" => Target::Horizon(horizon),
                other => {
                    return Err(raise(
                        Kind::Pipeline,
                        "target",
                        format!("target={other:?} must be None, \"next\" or a number of steps"),
                    ))
                }
            };
            let boundaries = boundaries
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("chunks of 8 bytes")))
                .collect();
            let spec = WindowSpec {
                length,
                stride,
                target,
                boundaries,
                phase: if random_phase {
                    Phase::Random
                } else {
                    Phase::Fixed
                },
            };
            let views = series.iter().map(|v| v.view().clone()).collect();
            let source = py
                .detach(|| WindowSource::new(views, spec))
                .map_err(window_error)?;
            Ok(PyWindows {
                inner: Arc::new(source),
            })
        })
    }

    /// Windows per epoch.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// `[(name, sample_shape, dtype)]` of the fields (name `""` for a plain window).
    fn field_specs(&self) -> Vec<(String, Vec<usize>, &'static str)> {
        crate::source::field_specs(self.inner.fields())
    }

    /// The distance between window starts.
    #[getter]
    fn stride(&self) -> usize {
        self.inner.stride()
    }

    /// `(series, step)` where window `index` starts in `epoch` of a loader seeded with
    /// `seed`, or None when out of range.
    fn window_start(&self, seed: u64, epoch: u64, index: usize) -> Option<(usize, usize)> {
        self.inner.window_start(seed, epoch, index)
    }

    fn __repr__(&self) -> String {
        format!("<zerofeed._Windows: {}>", self.inner.describe())
    }
}

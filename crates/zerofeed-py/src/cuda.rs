//! Bindings of `zerofeed_core::cuda`: device queries, pinned arrays, `to_device`, the
//! loader's device stage, and the DLPack stream hook of device views.

use std::any::Any;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use zerofeed_core::cuda::engine::{DeviceKeep, DeviceStage, FieldPlan, HostField};
use zerofeed_core::cuda::{self, upload, CudaError};
use zerofeed_core::view::KeepAlive;

use crate::errors::{guard, raise, Kind};
use crate::view::{parse_dtype, PyView};

/// Core CUDA errors to Python: no driver or a bad index is a DeviceError (ValueError).
pub fn cuda_error(argument: &str, err: CudaError) -> PyErr {
    let kind = match err {
        CudaError::PinnedBudget { .. } => Kind::Memory,
        CudaError::Unsupported(_) => Kind::Pipeline,
        _ => Kind::Device,
    };
    raise(kind, argument, err.to_string())
}

#[pyfunction]
pub fn _cuda_available() -> bool {
    cuda::available()
}

#[pyfunction]
pub fn _cuda_unavailable_reason() -> Option<String> {
    cuda::unavailable_reason()
}

#[pyfunction]
pub fn _cuda_device_count() -> PyResult<usize> {
    cuda::device_count().map_err(|e| cuda_error("device", e))
}

#[pyfunction]
pub fn _cuda_device_name(index: i64) -> PyResult<String> {
    cuda::device_name(index).map_err(|e| cuda_error("device", e))
}

#[pyfunction]
pub fn _cuda_driver_version() -> PyResult<i32> {
    cuda::driver_version().map_err(|e| cuda_error("device", e))
}

/// Raises DeviceError unless `cuda:index` exists.
#[pyfunction]
pub fn _cuda_check_device(index: i64) -> PyResult<()> {
    cuda::device(index)
        .map(|_| ())
        .map_err(|e| cuda_error("device", e))
}

/// The DLPack producer's stream duty, called by `View.__dlpack__` for device views.
pub fn before_export(view: &PyView, stream: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let Some(keep) = view.view().owner::<DeviceKeep>() else {
        return Ok(());
    };
    let stream = match stream {
        None => None,
        Some(s) if s.is_none() => None,
        Some(s) => Some(s.extract::<i64>().map_err(|_| {
            raise(
                Kind::Export,
                "stream",
                "stream must be an integer (a CUDA stream handle), -1 or None",
            )
        })?),
    };
    keep.export_to(stream).map_err(|e| cuda_error("stream", e))
}

/// Blocks until a device view's copy has arrived (for consumers that ignore streams).
#[pyfunction]
pub fn _cuda_wait(py: Python<'_>, view: PyRef<'_, PyView>) -> PyResult<()> {
    let keep = view
        .view()
        .owner::<DeviceKeep>()
        .ok_or_else(|| raise(Kind::Device, "obj", "not a zerofeed device view"))?;
    py.detach(|| keep.wait_host())
        .map_err(|e| cuda_error("obj", e))
}

/// A C-contiguous array of `shape` and `dtype` in pinned (page-locked) host memory.
#[pyfunction]
pub fn _pinned_empty(
    py: Python<'_>,
    shape: &Bound<'_, PyAny>,
    dtype: &str,
    device: i64,
) -> PyResult<PyView> {
    guard(|| {
        let shape = crate::args::dims("shape", shape)?;
        let dtype = parse_dtype("dtype", dtype)?;
        py.detach(|| cuda::memory::pinned_view(device, &shape, dtype))
            .map(PyView::from)
            .map_err(|e| cuda_error("shape", e))
    })
}

/// Copies a host view to `cuda:device` (the strategy is `zerofeed_core::cuda::upload`).
#[pyfunction]
pub fn _to_device(py: Python<'_>, view: PyRef<'_, PyView>, device: i64) -> PyResult<PyView> {
    guard(|| {
        let source = view.view();
        py.detach(|| upload::to_device(source, device))
            .map(PyView::from)
            .map_err(|e| cuda_error("obj", e))
    })
}

/// A loader's device stage: host batches in, device batches out (see `zerofeed.cuda`).
#[pyclass(frozen, module = "zerofeed", name = "_DeviceStage")]
pub struct PyDeviceStage {
    inner: DeviceStage,
    device: i64,
    plans: Vec<FieldPlan>,
}

impl PyDeviceStage {
    /// A stage for `plans` (from `Pipeline::device_plans`), `prefetch` copies in flight.
    pub fn new(
        device: i64,
        plans: Vec<FieldPlan>,
        prefetch: usize,
        budget: usize,
    ) -> PyResult<Self> {
        let inner = DeviceStage::new(device, plans.clone(), prefetch, budget)
            .map_err(|e| cuda_error("device", e))?;
        Ok(PyDeviceStage {
            inner,
            device,
            plans,
        })
    }
}

#[pymethods]
impl PyDeviceStage {
    /// Queues one host batch (a tuple of views) and returns its device views.
    fn submit<'py>(
        &self,
        py: Python<'py>,
        views: Vec<PyRef<'py, PyView>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        guard(|| {
            let mut fields = Vec::with_capacity(views.len());
            let mut holds: Vec<KeepAlive> = Vec::with_capacity(views.len());
            for v in &views {
                let v = v.view();
                let Some(bytes) = v.contiguous_bytes() else {
                    return Err(raise(
                        Kind::Layout,
                        "batch",
                        "device stage inputs are contiguous host batches",
                    ));
                };
                let samples = v.layout().shape().first().copied().unwrap_or(1);
                fields.push(HostField {
                    address: bytes.as_ptr() as usize,
                    len: bytes.len(),
                    samples,
                });
                holds.push(v.keep().clone());
            }
            let hold: Box<dyn Any + Send> = Box::new(holds);
            let (buffers, event) = py
                // SAFETY: `hold` owns a clone of every view's keep-alive, so the host bytes
                // live until the stage releases it after the copy's event.
                .detach(|| unsafe { self.inner.submit(hold, &fields) })
                .map_err(|e| cuda_error("batch", e))?;
            let mut out = Vec::with_capacity(buffers.len());
            for ((buffer, plan), v) in buffers.into_iter().zip(&self.plans).zip(&views) {
                let (shape, dtype) = plan.output(v.view().layout().shape(), v.view().dtype());
                let keep = DeviceKeep::new(buffer, event.clone(), None);
                let view = upload::device_view(keep, &shape, dtype, self.device)
                    .map_err(|e| cuda_error("batch", e))?;
                out.push(Py::new(py, PyView::from(view))?);
            }
            PyTuple::new(py, out)
        })
    }

    /// Waits for queued copies and releases held host buffers.
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.drain())
            .map_err(|e| cuda_error("device", e))
    }

    /// Device pool and pending-copy counters.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use std::sync::atomic::Ordering::Relaxed;
        let d = PyDict::new(py);
        let s = self.inner.pool().stats();
        let (pending, released) = self.inner.pending();
        let (idle, idle_bytes) = self.inner.pool().idle();
        d.set_item("device_allocations", s.allocations.load(Relaxed))?;
        d.set_item("device_reuses", s.reuses.load(Relaxed))?;
        d.set_item("device_buffers", s.live_buffers.load(Relaxed))?;
        d.set_item("device_idle_buffers", idle)?;
        d.set_item("device_idle_bytes", idle_bytes)?;
        d.set_item("device_fences_waited", s.fences_waited.load(Relaxed))?;
        d.set_item("host_buffers_pending", pending)?;
        d.set_item("host_buffers_released", released)?;
        Ok(d)
    }
}

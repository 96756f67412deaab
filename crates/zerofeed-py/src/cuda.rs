//! Bindings of `zerofeed_core::cuda`: device queries, pinned arrays, `to_device`, the
//! loader's device stage, and the DLPack stream hook of device views.

use std::any::Any;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use zerofeed_core::cuda::engine::{
    DeviceKeep, DeviceStage, FieldPlan, HostField, Uploader, STAGING_CHUNK,
};
use zerofeed_core::cuda::memory::PinnedHost;
use zerofeed_core::cuda::{self, Context, CudaError, Event};
use zerofeed_core::dlpack::{device_type, DLDevice};
use zerofeed_core::gather::gather;
use zerofeed_core::transfer::Engine;
use zerofeed_core::{DType, Layout};

use crate::errors::{layout_error, raise, Kind};
use crate::view::{parse_dtype, KeepAlive, PyView};

/// Core CUDA errors to Python: no driver or a bad index is a DeviceError (ValueError).
pub fn cuda_error(argument: &str, err: CudaError) -> PyErr {
    let kind = match err {
        CudaError::PinnedBudget { .. } => Kind::Memory,
        CudaError::Unsupported(_) => Kind::Pipeline,
        _ => Kind::Device,
    };
    raise(kind, argument, err.to_string())
}

fn cuda_device(index: i64) -> DLDevice {
    DLDevice {
        device_type: device_type::CUDA,
        device_id: index as i32,
    }
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
    let Some(keep) = view.keep.downcast_ref::<DeviceKeep>() else {
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

fn device_keep(view: &PyView) -> PyResult<&DeviceKeep> {
    view.keep
        .downcast_ref::<DeviceKeep>()
        .ok_or_else(|| raise(Kind::Device, "obj", "not a zerofeed device view"))
}

/// Blocks until a device view's copy has arrived (for consumers that ignore streams).
#[pyfunction]
pub fn _cuda_wait(py: Python<'_>, view: PyRef<'_, PyView>) -> PyResult<()> {
    let keep = device_keep(&view)?;
    py.detach(|| keep.wait_host())
        .map_err(|e| cuda_error("obj", e))
}

fn device_view(keep: DeviceKeep, shape: &[usize], dtype: DType, index: i64) -> PyResult<PyView> {
    let layout =
        Layout::c_contiguous(shape, dtype.itemsize()).map_err(|e| layout_error("obj", e))?;
    let address = keep.ptr() as usize;
    Ok(PyView {
        keep: Arc::new(keep),
        address,
        layout,
        dtype,
        device: cuda_device(index),
        readonly: false,
    })
}

/// A C-contiguous array of `shape` and `dtype` in pinned (page-locked) host memory.
#[pyfunction]
pub fn _pinned_empty(
    py: Python<'_>,
    shape: Vec<usize>,
    dtype: &str,
    device: i64,
) -> PyResult<PyView> {
    let dtype = parse_dtype("dtype", dtype)?;
    let layout =
        Layout::c_contiguous(&shape, dtype.itemsize()).map_err(|e| layout_error("shape", e))?;
    let context = Context::primary(device).map_err(|e| cuda_error("device", e))?;
    let memory = py
        .detach(|| PinnedHost::new(&context, layout.nbytes()))
        .map_err(|e| cuda_error("shape", e))?;
    let address = memory.as_ptr() as usize;
    Ok(PyView {
        keep: Arc::new(memory),
        address,
        layout,
        dtype,
        device: DLDevice {
            device_type: device_type::CUDA_HOST,
            device_id: 0,
        },
        readonly: false,
    })
}

/// An address that may cross into the GIL-free closure; the view outlives the call.
#[derive(Clone, Copy)]
struct Addr(usize);

/// Copies a host view to `cuda:device`: pinned sources directly, pageable ones through
/// the pinned staging ring (contiguous: by bytes; strided: by rows along axis 0).
#[pyfunction]
pub fn _to_device(py: Python<'_>, view: PyRef<'_, PyView>, device: i64) -> PyResult<PyView> {
    if !view.device.is_host_accessible() {
        return Err(raise(
            Kind::Device,
            "obj",
            format!(
                "the source is on {}; to_device copies host memory",
                view.device.name()
            ),
        ));
    }
    let uploader = Uploader::for_device(device).map_err(|e| cuda_error("device", e))?;
    let dtype = view.dtype;
    let shape = view.layout.shape().to_vec();
    let nbytes = view.layout.nbytes();
    let contiguous = view.layout.is_c_contiguous();
    let src = Addr(view.address);
    let layout = view.layout.clone();
    let pinned = view.device.device_type == device_type::CUDA_HOST;
    let source: KeepAlive = view.keep.clone();
    let keep = py.detach(move || -> Result<DeviceKeep, CudaError> {
        let src = src;
        let mut uploader = uploader.lock().unwrap_or_else(|e| e.into_inner());
        // Below one staging chunk there is nothing to overlap: the driver's own pageable
        // path beats the ring there (measured on an H200: 14 vs 6 GB/s at 1 MiB).
        if contiguous && (pinned || nbytes < STAGING_CHUNK) {
            // SAFETY: `source` keeps the host memory alive until the copy's event completes
            // (pageable sources are even consumed before the call returns).
            return unsafe { uploader.direct(src.0, nbytes, Arc::new(source)) };
        }
        if contiguous || layout.ndim() == 0 {
            let fill = |range: std::ops::Range<usize>, out: &mut [u8]| {
                // SAFETY: the view (borrowed for the call) keeps `nbytes` bytes from `src` alive.
                let bytes = unsafe { std::slice::from_raw_parts(src.0 as *const u8, nbytes) };
                out.copy_from_slice(&bytes[range]);
            };
            return uploader.staged(nbytes, 1, &fill);
        }
        let rows = layout.shape()[0];
        let row_layout = Layout::new(
            layout.shape()[1..].to_vec(),
            layout.strides()[1..].to_vec(),
            layout.itemsize(),
        )
        .map_err(|e| CudaError::Unsupported(e.to_string()))?;
        let row_bytes = row_layout.nbytes();
        let stride0 = layout.strides()[0];
        let fill = |range: std::ops::Range<usize>, out: &mut [u8]| {
            for (k, row) in range.enumerate() {
                let start = (src.0 as *const u8).wrapping_offset(row as isize * stride0);
                let dst = &mut out[k * row_bytes..(k + 1) * row_bytes];
                // SAFETY: `row < rows`, so the row lies inside the borrowed view's memory.
                unsafe { gather(start, &row_layout, dst) };
            }
        };
        uploader.staged(rows, row_bytes, &fill)
    });
    let keep = keep.map_err(|e| cuda_error("obj", e))?;
    device_view(keep, &shape, dtype, device)
}

/// Seconds per host-to-device copy of `view`'s bytes, straight from its memory (no
/// staging: a pageable source is the naive copy), timed with events over `repeats`.
#[pyfunction]
pub fn _bench_h2d(
    py: Python<'_>,
    view: PyRef<'_, PyView>,
    device: i64,
    repeats: usize,
) -> PyResult<f64> {
    if !view.layout.is_c_contiguous() || !view.device.is_host_accessible() {
        return Err(raise(
            Kind::Layout,
            "obj",
            "the benchmark source must be a contiguous host array",
        ));
    }
    let (src, len) = (Addr(view.address), view.layout.nbytes());
    let run = move || -> Result<f64, CudaError> {
        let src = src;
        let context = Context::primary(device)?;
        let engine = zerofeed_core::cuda::engine::CudaEngine::new(&context)?;
        let dst = engine.alloc(len)?;
        let result = (|| {
            // SAFETY (both copies): the view is borrowed for the call and the stream is
            // synchronized before returning; `dst` holds `len` bytes.
            unsafe { engine.copy_h2d(dst, src.0 as *const u8, len)? }; // warm-up
            engine.stream().synchronize()?;
            let start = Event::new(&context, true)?;
            let end = Event::new(&context, true)?;
            start.record_raw(engine.stream().raw() as usize)?;
            for _ in 0..repeats.max(1) {
                unsafe { engine.copy_h2d(dst, src.0 as *const u8, len)? };
            }
            end.record_raw(engine.stream().raw() as usize)?;
            end.synchronize()?;
            Ok(f64::from(end.elapsed_ms(&start)?) * 1e-3 / repeats.max(1) as f64)
        })();
        // SAFETY: allocated above, no copy in flight (synchronized or failed).
        let _ = engine.stream().synchronize();
        unsafe { engine.free(dst) };
        result
    };
    py.detach(run).map_err(|e| cuda_error("device", e))
}

fn parse_plan(item: &Bound<'_, PyAny>) -> PyResult<FieldPlan> {
    if item.is_none() {
        return Ok(FieldPlan::Copy);
    }
    let (height, width, channels, a, b, dtype, chw): (
        usize,
        usize,
        usize,
        Vec<f32>,
        Vec<f32>,
        String,
        bool,
    ) = item.extract()?;
    if a.len() != channels || b.len() != channels {
        return Err(raise(
            Kind::Pipeline,
            "ops",
            "one coefficient per channel is needed",
        ));
    }
    Ok(FieldPlan::Normalize {
        height,
        width,
        channels,
        a,
        b,
        dtype: parse_dtype("dtype", &dtype)?,
        chw,
    })
}

/// A loader's device stage: host batches in, device batches out (see `zerofeed.cuda`).
#[pyclass(frozen, module = "zerofeed", name = "_DeviceStage")]
pub struct PyDeviceStage {
    inner: DeviceStage,
    device: i64,
    plans: Vec<FieldPlan>,
}

#[pymethods]
impl PyDeviceStage {
    /// `plans`: per field, None (copy) or `(h, w, c, a, b, dtype, chw)` for the kernel.
    #[new]
    fn new(
        device: i64,
        plans: Vec<Bound<'_, PyAny>>,
        prefetch: usize,
        budget: usize,
    ) -> PyResult<Self> {
        let plans = plans.iter().map(parse_plan).collect::<PyResult<Vec<_>>>()?;
        let inner = DeviceStage::new(device, plans.clone(), prefetch, budget)
            .map_err(|e| cuda_error("device", e))?;
        Ok(PyDeviceStage {
            inner,
            device,
            plans,
        })
    }

    /// Queues one host batch (a tuple of views) and returns its device views.
    fn submit<'py>(
        &self,
        py: Python<'py>,
        views: Vec<PyRef<'py, PyView>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let mut fields = Vec::with_capacity(views.len());
        let mut holds: Vec<KeepAlive> = Vec::with_capacity(views.len());
        for v in &views {
            if !v.layout.is_c_contiguous() || !v.device.is_host_accessible() {
                return Err(raise(
                    Kind::Layout,
                    "batch",
                    "device stage inputs are contiguous host batches",
                ));
            }
            let samples = v.layout.shape().first().copied().unwrap_or(1);
            fields.push(HostField {
                address: v.address,
                len: v.layout.nbytes(),
                samples,
            });
            holds.push(v.keep.clone());
        }
        let hold: Box<dyn Any + Send> = Box::new(holds);
        // SAFETY: `hold` owns a clone of every view's keep-alive, so the host bytes live
        // until the stage releases it after the copy's event.
        let (buffers, event) = py
            .detach(|| unsafe { self.inner.submit(hold, &fields) })
            .map_err(|e| cuda_error("batch", e))?;
        let mut out = Vec::with_capacity(buffers.len());
        for ((buffer, plan), v) in buffers.into_iter().zip(&self.plans).zip(&views) {
            let (shape, dtype) = plan.output(v.layout.shape(), v.dtype);
            let keep = DeviceKeep::new(buffer, event.clone(), None);
            out.push(Py::new(py, device_view(keep, &shape, dtype, self.device)?)?);
        }
        PyTuple::new(py, out)
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

/// A host pool whose buffers are CUDA-registered, after checking the pinned total
/// (`max(budget, in_flight)`) against the available RAM, before anything is allocated.
pub fn pinned_pool(
    config: zerofeed_core::pool::PoolConfig,
    device: i64,
    in_flight: usize,
) -> PyResult<Arc<zerofeed_core::pool::BufferPool>> {
    let pinned = config.budget.max(in_flight) as u64;
    cuda::memory::check_pinned_budget(pinned).map_err(|e| cuda_error("memory_budget", e))?;
    let context = Context::primary(device).map_err(|e| cuda_error("device", e))?;
    let pinner = Arc::new(cuda::memory::CudaPinner::new(context));
    Ok(zerofeed_core::pool::BufferPool::with_pinner(config, pinner))
}

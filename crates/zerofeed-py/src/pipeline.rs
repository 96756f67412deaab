//! Bindings of the pipeline: `_Pipeline` (source, order, pool) and `_Epoch` (an iterator of
//! batches whose buffers come back to the pool when Python lets go of them). Every rule
//! (validation, sizes, memory policy, the device split) is the core's `pipeline::build`.

use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use zerofeed_core::cuda::engine::FieldPlan;
use zerofeed_core::ops::OpSpec;
use zerofeed_core::pipeline::{self, Batch, EpochRun, LoaderConfig, Pin, Pipeline, Polled};
use zerofeed_core::sampler::Shard;
use zerofeed_core::source::{field_label, ArraySource, Source};

use crate::cuda::PyDeviceStage;
use crate::errors::{guard, raise, view_error, Kind};
use crate::images::PyImages;
use crate::ops::op_chain;
use crate::view::PyView;
use crate::windows::PyWindows;

/// [`crate::errors::pipeline_error`], except that an image that does not decode is
/// `zerofeed.ImageDecodeError` with `.file` naming it.
fn pipeline_error(err: pipeline::PipelineError) -> PyErr {
    if let pipeline::PipelineError::Decode { name, .. } = &err {
        let file = name.clone();
        let exc = raise(Kind::ImageDecode, err.argument(), err.to_string());
        Python::attach(|py| {
            let _ = exc.value(py).setattr("file", file);
        });
        return exc;
    }
    crate::errors::pipeline_error(err)
}

/// The engine behind `zerofeed.Loader`.
#[pyclass(frozen, module = "zerofeed", name = "_Pipeline")]
pub struct PyPipeline {
    inner: Arc<Pipeline>,
    /// The ops that run on the GPU (normalize_on_device), one (maybe empty) list per field.
    device_tails: Vec<Vec<OpSpec>>,
}

/// Reads an integer argument of any size as usize, or a typed error naming it.
fn count(argument: &'static str, value: &Bound<'_, PyAny>, min: usize) -> PyResult<usize> {
    let expected = match argument {
        "workers" => "a positive integer or None",
        "memory_budget" => "a non-negative integer (bytes) or None",
        _ if min == 0 => "a non-negative integer",
        _ => "a positive integer",
    };
    let fail = || {
        raise(
            Kind::Pipeline,
            argument,
            format!(
                "{argument}={} must be {expected}",
                value.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ),
        )
    };
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(fail());
    }
    match value.extract::<u128>() {
        // Sizes beyond usize are errors of their own (overflow), named by the core.
        Ok(n) if n >= min as u128 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(fail()),
    }
}

/// `pin`: True, False or "auto".
fn parse_pin(pin: &Bound<'_, PyAny>) -> PyResult<Pin> {
    if let Ok(flag) = pin.cast::<pyo3::types::PyBool>() {
        return Ok(if flag.is_true() { Pin::On } else { Pin::Off });
    }
    if pin.extract::<String>().is_ok_and(|s| s == "auto") {
        return Ok(Pin::Auto);
    }
    Err(raise(
        Kind::Pipeline,
        "pin",
        format!("pin={pin} must be True, False or \"auto\""),
    ))
}

#[pymethods]
impl PyPipeline {
    /// `fields`: a list of `(name, View, [Op, ...])`; or, with `windows` (a `_Windows` or an
    /// `_Images`), empty, and `window_ops` one op list per field of that source.
    #[new]
    #[pyo3(signature = (fields, *, batch_size, shuffle, seed, drop_last, workers, prefetch, pin, rank, world_size, memory_budget, pin_device = None, normalize_on_device = false, windows = None, window_ops = None, op_keys = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        fields: Vec<(String, PyRef<'_, PyView>, Bound<'_, PyAny>)>,
        batch_size: &Bound<'_, PyAny>,
        shuffle: bool,
        seed: u64,
        drop_last: bool,
        workers: &Bound<'_, PyAny>,
        prefetch: &Bound<'_, PyAny>,
        pin: &Bound<'_, PyAny>,
        rank: usize,
        world_size: usize,
        memory_budget: Option<&Bound<'_, PyAny>>,
        pin_device: Option<i64>,
        normalize_on_device: bool,
        windows: Option<Bound<'_, PyAny>>,
        window_ops: Option<Vec<Bound<'_, PyAny>>>,
        op_keys: Option<Vec<u64>>,
    ) -> PyResult<PyPipeline> {
        guard(|| {
            let mut chains = Vec::with_capacity(fields.len());
            let custom: Option<Arc<dyn Source>> = match &windows {
                None => None,
                Some(w) => Some(match w.cast::<PyWindows>() {
                    Ok(windows) => windows.borrow().source(),
                    Err(_) => w
                        .cast::<PyImages>()
                        .map_err(|_| {
                            raise(
                                Kind::Pipeline,
                                "source",
                                "windows must be a _Windows or _Images",
                            )
                        })?
                        .borrow()
                        .source(),
                }),
            };
            let source: Arc<dyn Source> = match custom {
                Some(source) if fields.is_empty() => {
                    let window_ops = window_ops.unwrap_or_default();
                    for (spec, ops) in source.fields().iter().zip(&window_ops) {
                        chains.push(op_chain(&spec.label(), ops)?);
                    }
                    // A count that differs is the core's OpsCount error.
                    if window_ops.len() != source.fields().len() {
                        chains.resize(window_ops.len(), Vec::new());
                    }
                    source
                }
                Some(_) => {
                    return Err(raise(
                        Kind::Pipeline,
                        "source",
                        "give either array fields or windows, not both",
                    ))
                }
                None => {
                    let mut arrays = Vec::with_capacity(fields.len());
                    for (name, view, ops) in &fields {
                        chains.push(op_chain(&field_label(name), ops)?);
                        arrays.push((name.clone(), view.view().clone()));
                    }
                    Arc::new(ArraySource::new(arrays).map_err(|e| pipeline_error(e.into()))?)
                }
            };
            let (chains, device_tails) = if normalize_on_device {
                pipeline::split_device_ops(source.fields(), chains).map_err(pipeline_error)?
            } else {
                let none = vec![Vec::new(); chains.len()];
                (chains, none)
            };
            let config = LoaderConfig {
                batch_size: count("batch_size", batch_size, 1)?,
                shuffle,
                seed,
                drop_last,
                workers: count("workers", workers, 1)?,
                prefetch: count("prefetch", prefetch, 0)?,
                pin: parse_pin(pin)?,
                shard: Shard::new(rank, world_size)
                    .map_err(|e| raise(Kind::Pipeline, "shard", e.to_string()))?,
                memory_budget: memory_budget
                    .map(|b| count("memory_budget", b, 0))
                    .transpose()?,
                pin_device,
            };
            let inner = py
                .detach(|| {
                    let built = pipeline::build(source, &chains, &config)?;
                    match op_keys {
                        Some(keys) => built.with_op_keys(keys),
                        None => Ok(built),
                    }
                })
                .map_err(pipeline_error)?;
            Ok(PyPipeline {
                inner: Arc::new(inner),
                device_tails,
            })
        })
    }

    /// Whether batch buffers are page-locked (`pin` resolved).
    #[getter]
    fn pinned(&self) -> bool {
        self.inner.pinned()
    }

    /// Batches per epoch.
    fn __len__(&self) -> usize {
        self.inner.num_batches()
    }

    /// `[(name, sample_shape, dtype)]` of the output fields.
    fn field_specs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let specs: Vec<(String, Vec<usize>, &'static str)> = self
            .inner
            .fields()
            .iter()
            .map(|f| {
                (
                    f.name().to_owned(),
                    f.output_shape().to_vec(),
                    f.output_dtype().name(),
                )
            })
            .collect();
        PyList::new(py, specs)
    }

    /// Samples this rank sees per epoch.
    fn samples_per_epoch(&self) -> usize {
        self.inner.sampler().samples_per_epoch()
    }

    /// This rank's sample order for `epoch` (for tests and debugging).
    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        self.inner.sampler().epoch_order(epoch).to_vec()
    }

    /// `(copies, bytes)` made converting this pipeline's batches (never other loaders').
    fn copy_stats(&self) -> (u64, u64) {
        self.inner.copies().snapshot()
    }

    /// The device stage of a `device="cuda:N"` loader: a copy stream, a device pool and,
    /// with `normalize_on_device`, the normalize kernel.
    fn device_stage(&self, device: i64, prefetch: usize) -> PyResult<PyDeviceStage> {
        guard(|| {
            let plans = self.device_plans()?;
            let budget = self.inner.device_budget(&plans, prefetch);
            PyDeviceStage::new(device, plans, prefetch.max(1), budget)
        })
    }

    /// `[(name, sample_shape, dtype)]` of the batches as they arrive on the device.
    fn device_field_specs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        guard(|| {
            let plans = self.device_plans()?;
            let specs: Vec<(String, Vec<usize>, &'static str)> = self
                .inner
                .fields()
                .iter()
                .zip(self.inner.device_output(&plans))
                .map(|(f, (shape, dtype))| (f.name().to_owned(), shape, dtype.name()))
                .collect();
            PyList::new(py, specs)
        })
    }

    /// Starts workers for `epoch` at batch `first_batch`.
    fn start(&self, py: Python<'_>, epoch: u64, first_batch: usize) -> PyResult<PyEpoch> {
        self.run_epoch(py, move |pipeline| pipeline.start(epoch, first_batch))
    }

    /// Starts workers for the rest of `epoch` after its first `consumed` global positions
    /// (elastic resume: this rank's share of what any world size left unread).
    fn start_at(&self, py: Python<'_>, epoch: u64, consumed: usize) -> PyResult<PyEpoch> {
        self.run_epoch(py, move |pipeline| pipeline.start_at(epoch, consumed))
    }

    /// Global positions read once every rank took `batches` batches of a pass that began
    /// at global position `consumed`.
    fn global_consumed(&self, consumed: usize, batches: usize) -> usize {
        let positions = batches.saturating_mul(self.inner.config().batch_size);
        self.inner.sampler().consumed_after(consumed, positions)
    }

    /// Counters: batches, samples, bytes, waits, pool and pinning figures.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let d = PyDict::new(py);
            let s = self.inner.stats();
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            d.set_item("batches", load(&s.batches))?;
            d.set_item("samples", load(&s.samples))?;
            d.set_item("bytes_produced", load(&s.bytes))?;
            d.set_item("worker_wait_s", load(&s.worker_wait_ns) as f64 * 1e-9)?;
            d.set_item("consumer_wait_s", load(&s.consumer_wait_ns) as f64 * 1e-9)?;
            d.set_item("skipped", load(&s.skipped))?;
            d.set_item("skipped_files", s.skipped_files())?;
            let pool = self.inner.pool().snapshot();
            d.set_item("pool_allocations", pool.allocations)?;
            d.set_item("pool_reuses", pool.reuses)?;
            d.set_item("pool_buffers", pool.live_buffers)?;
            d.set_item("pool_idle_buffers", pool.idle_buffers)?;
            d.set_item("pool_freed_over_budget", pool.freed_over_budget)?;
            d.set_item("pool_budget_bytes", self.inner.pool().config().budget)?;
            d.set_item("pinned_bytes", pool.pinned_bytes)?;
            d.set_item("pin_failures", pool.pin_failures)?;
            d.set_item("pin_error", self.inner.pool().pin_error())?;
            let (copies, copied) = self.inner.copies().snapshot();
            d.set_item("conversion_copies", copies)?;
            d.set_item("conversion_bytes_copied", copied)?;
            Ok(d)
        })
    }
}

impl PyPipeline {
    fn device_plans(&self) -> PyResult<Vec<FieldPlan>> {
        self.inner
            .device_plans(&self.device_tails)
            .map_err(pipeline_error)
    }
}

impl PyPipeline {
    /// Starts an epoch's workers without the GIL (spawning threads can take a while).
    fn run_epoch(
        &self,
        py: Python<'_>,
        start: impl FnOnce(&Pipeline) -> Result<EpochRun, pipeline::PipelineError> + Send,
    ) -> PyResult<PyEpoch> {
        guard(|| {
            let pipeline = self.inner.clone();
            let run = py
                .detach(move || start(&pipeline))
                .map_err(pipeline_error)?;
            Ok(PyEpoch {
                run: Mutex::new(Some(run)),
                pipeline: self.inner.clone(),
                pid: zerofeed_core::pool::current_pid(),
            })
        })
    }
}

/// One epoch's batches, in order. Closing (or dropping) it stops and joins the workers.
#[pyclass(frozen, module = "zerofeed", name = "_Epoch")]
pub struct PyEpoch {
    run: Mutex<Option<EpochRun>>,
    pipeline: Arc<Pipeline>,
    /// The process that started it: a fork()ed child must not take `run`'s lock, which a
    /// parent's thread may have held at the fork.
    pid: u32,
}

/// How long a wait for a batch runs before Python gets to handle signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(10);

impl PyEpoch {
    fn forked(&self) -> bool {
        zerofeed_core::pool::current_pid() != self.pid
    }

    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<Batch>> {
        if self.forked() {
            return Err(pipeline_error(
                zerofeed_core::pipeline::PipelineError::Forked,
            ));
        }
        // A batch that is ready is taken without releasing the GIL: releasing it and taking
        // it back costs more than handing out a tiny batch.
        let ready = match self.run.try_lock() {
            Ok(mut guard) => guard.as_mut().map(|run| run.poll_batch(Duration::ZERO)),
            Err(TryLockError::Poisoned(e)) => e
                .into_inner()
                .as_mut()
                .map(|run| run.poll_batch(Duration::ZERO)),
            Err(TryLockError::WouldBlock) => Some(Polled::Pending),
        };
        match ready {
            None | Some(Polled::Done) => return Ok(None),
            Some(Polled::Ready(batch)) => return batch.map(Some).map_err(pipeline_error),
            Some(Polled::Pending) => {}
        }
        loop {
            let polled = py.detach(|| {
                let mut guard = self.run.lock().unwrap_or_else(|e| e.into_inner());
                match guard.as_mut() {
                    None => Polled::Done,
                    Some(run) => run.poll_batch(SIGNAL_CHECK),
                }
            });
            match polled {
                Polled::Ready(batch) => return batch.map(Some).map_err(pipeline_error),
                Polled::Done => return Ok(None),
                // KeyboardInterrupt (and any signal handler's exception) surfaces here; the
                // epoch stays usable: the next call waits for the same batch.
                Polled::Pending => py.check_signals()?,
            }
        }
    }

    /// The next batch, each field's view made into a Python object by `export`.
    fn next_with<'py>(
        &self,
        py: Python<'py>,
        export: impl Fn(Python<'py>, PyView) -> PyResult<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        guard(|| {
            let Some(batch) = self.next_batch(py)? else {
                return Err(PyStopIteration::new_err(()));
            };
            let views = self
                .pipeline
                .batch_views(batch)
                .map_err(|e| view_error("source", e))?;
            let fields = views
                .into_iter()
                .map(|v| export(py, PyView::from(v)))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, fields)
        })
    }
}

#[pymethods]
impl PyEpoch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next batch as a tuple of views (one per field), in field order.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.next_with(py, |py, v| Ok(Py::new(py, v)?.into_any()))
    }

    /// The next batch as a tuple of NumPy arrays over the batch buffers (one per field, in
    /// field order; a field whose dtype NumPy lacks, bfloat16, stays a view): what
    /// `np.asarray` of each view gives, made without the buffer protocol.
    fn next_arrays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.next_with(py, crate::numpy::array_or_view)
    }

    /// Goes on with the next epoch on the same workers once this one was read to the end
    /// (its first batches may be ready already); False while batches are left or when no
    /// next epoch can follow.
    fn next_epoch(&self) -> bool {
        if self.forked() {
            return false;
        }
        let mut guard = self.run.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().is_some_and(|r| r.next_epoch())
    }

    /// The epoch being read.
    #[getter]
    fn epoch(&self) -> Option<u64> {
        if self.forked() {
            return None;
        }
        let guard = self.run.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|r| r.epoch())
    }

    /// Batches handed out so far in this epoch (resumed ones counted from 0).
    fn position(&self) -> usize {
        if self.forked() {
            return 0;
        }
        let guard = self.run.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map_or(0, |r| r.position())
    }

    /// Stops the workers now (the GIL is released while they finish their batch).
    fn close(&self, py: Python<'_>) {
        if self.forked() {
            return; // nothing runs here; the run is leaked with the object (see Drop)
        }
        let run = self.run.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(move || drop(run));
    }
}

impl Drop for PyEpoch {
    fn drop(&mut self) {
        // Dropping joins the workers; they never need the GIL, so holding it here is safe.
        // `get_mut` takes no lock, and EpochRun's Drop leaks instead of joining after fork().
        drop(self.run.get_mut().unwrap_or_else(|e| e.into_inner()).take());
    }
}

//! Bindings of the pipeline: `_Pipeline` (fields, order, pool) and `_Epoch` (an iterator
//! of batches whose buffers come back to the pool when Python lets go of them).

use std::sync::Arc;

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use zerofeed_core::dlpack::DLDevice;
use zerofeed_core::ops::OpSpec;
use zerofeed_core::pipeline::{EpochRun, Field, Pipeline, PipelineConfig, PipelineError};
use zerofeed_core::pool::{BufferPool, PoolConfig};
use zerofeed_core::sampler::{Sampler, Shard};
use zerofeed_core::Layout;

use crate::errors::{layout_error, raise, Kind};
use crate::view::{parse_dtype, PyView};

fn pipeline_error(argument: &str, err: PipelineError) -> PyErr {
    let kind = match err {
        PipelineError::Memory(_) => Kind::Memory,
        _ => Kind::Pipeline,
    };
    raise(kind, argument, err.to_string())
}

/// Parses one op from its Python description: `(name, *args)` as `zerofeed.ops` builds it.
fn parse_op(op: &Bound<'_, PyTuple>) -> PyResult<OpSpec> {
    let name: String = op.get_item(0)?.extract()?;
    let arg = |i: usize| op.get_item(i);
    let spec = match name.as_str() {
        "RandomCrop" => OpSpec::RandomCrop {
            height: arg(1)?.extract()?,
            width: arg(2)?.extract()?,
        },
        "CenterCrop" => OpSpec::CenterCrop {
            height: arg(1)?.extract()?,
            width: arg(2)?.extract()?,
        },
        "RandomFlip" => OpSpec::RandomFlip {
            p: arg(1)?.extract()?,
        },
        "Normalize" => OpSpec::Normalize {
            mean: arg(1)?.extract()?,
            std: arg(2)?.extract()?,
            scale: arg(3)?.extract()?,
            dtype: parse_dtype("dtype", &arg(4)?.extract::<String>()?)?,
        },
        "Cast" => OpSpec::Cast {
            dtype: parse_dtype("dtype", &arg(1)?.extract::<String>()?)?,
        },
        "ToCHW" => OpSpec::ToChw,
        other => {
            return Err(raise(
                Kind::Pipeline,
                "ops",
                format!("unknown op {other:?}; use RandomCrop, CenterCrop, RandomFlip, Normalize, Cast or ToCHW"),
            ))
        }
    };
    Ok(spec)
}

/// The engine behind `zerofeed.Loader`.
#[pyclass(frozen, module = "zerofeed", name = "_Pipeline")]
pub struct PyPipeline {
    inner: Arc<Pipeline>,
}

#[pymethods]
impl PyPipeline {
    /// `fields`: a list of `(name, View, [op tuples])`.
    #[new]
    #[pyo3(signature = (fields, *, batch_size, shuffle, seed, drop_last, workers, prefetch, pin, rank, world_size, memory_budget, pin_device = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        fields: Vec<(String, PyRef<'_, PyView>, Vec<Bound<'_, PyTuple>>)>,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        drop_last: bool,
        workers: usize,
        prefetch: usize,
        pin: bool,
        rank: usize,
        world_size: usize,
        memory_budget: Option<usize>,
        pin_device: Option<i64>,
    ) -> PyResult<PyPipeline> {
        if batch_size == 0 {
            return Err(raise(
                Kind::Pipeline,
                "batch_size",
                "batch_size must be at least 1",
            ));
        }
        let mut built = Vec::with_capacity(fields.len());
        for (name, view, ops) in &fields {
            if !view.device.is_host_accessible() {
                return Err(raise(
                    Kind::Device,
                    "source",
                    format!("field {name:?} is on {}; the Loader reads host memory (NumPy arrays, .npy files)", view.device.name()),
                ));
            }
            let specs = ops.iter().map(parse_op).collect::<PyResult<Vec<_>>>()?;
            let field = Field::new(
                name.clone(),
                view.address,
                view.layout.clone(),
                view.dtype,
                Arc::new(view.keep.clone()),
                &specs,
            )
            .map_err(|e| pipeline_error("ops", e))?;
            built.push(field);
        }
        let len = built.first().map_or(0, |f| f.len());
        let shard = Shard::new(rank, world_size)
            .map_err(|e| raise(Kind::Pipeline, "shard", e.to_string()))?;
        let sampler = Sampler::new(len, shuffle, seed, drop_last, Some(shard))
            .map_err(|e| raise(Kind::Pipeline, "shard", e.to_string()))?;
        let batch_bytes: usize = built.iter().map(|f| f.sample_nbytes() * batch_size).sum();
        let default_budget = (prefetch + workers + 2) * batch_bytes;
        let budget = memory_budget.unwrap_or(default_budget);
        if let Some(budget) = memory_budget {
            if budget < batch_bytes {
                return Err(raise(
                    Kind::Memory,
                    "memory_budget",
                    format!("memory_budget={budget} bytes is smaller than one batch ({batch_bytes} bytes); raise it or lower batch_size"),
                ));
            }
        }
        let in_flight = (prefetch + workers + 1) * batch_bytes;
        if let Some(available) = zerofeed_core::host::available_memory() {
            if in_flight as u64 > available {
                return Err(raise(
                    Kind::Memory,
                    "batch_size",
                    format!(
                        "{} batches in flight need {in_flight} bytes but only {available} bytes of RAM are available; lower batch_size, prefetch or workers",
                        prefetch + workers + 1
                    ),
                ));
            }
        }
        let config = PoolConfig { budget, pin };
        let pool = match (pin, pin_device) {
            // CUDA loaders: buffers registered with the driver once (see zerofeed.cuda).
            (true, Some(device)) => crate::cuda::pinned_pool(config, device, in_flight)?,
            _ => BufferPool::new(config),
        };
        let config = PipelineConfig {
            batch_size,
            drop_last,
            workers,
            prefetch,
        };
        let inner =
            Pipeline::new(built, sampler, config, pool).map_err(|e| pipeline_error("source", e))?;
        Ok(PyPipeline {
            inner: Arc::new(inner),
        })
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
                    f.name.clone(),
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

    /// Starts workers for `epoch` at batch `first_batch`.
    fn start(&self, py: Python<'_>, epoch: u64, first_batch: usize) -> PyEpoch {
        let pipeline = self.inner.clone();
        let run = py.detach(move || pipeline.start(epoch, first_batch));
        PyEpoch {
            run: std::sync::Mutex::new(Some(run)),
            pipeline: self.inner.clone(),
        }
    }

    /// Counters: batches, samples, bytes, waits, pool and pinning figures.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let s = self.inner.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        d.set_item("batches", load(&s.batches))?;
        d.set_item("samples", load(&s.samples))?;
        d.set_item("bytes_produced", load(&s.bytes))?;
        d.set_item("worker_wait_s", load(&s.worker_wait_ns) as f64 * 1e-9)?;
        d.set_item("consumer_wait_s", load(&s.consumer_wait_ns) as f64 * 1e-9)?;
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
        Ok(d)
    }
}

/// One epoch's batches, in order. Closing (or dropping) it stops and joins the workers.
#[pyclass(frozen, module = "zerofeed", name = "_Epoch")]
pub struct PyEpoch {
    run: std::sync::Mutex<Option<EpochRun>>,
    pipeline: Arc<Pipeline>,
}

impl PyEpoch {
    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<zerofeed_core::pipeline::Batch>> {
        py.detach(|| {
            let mut guard = self.run.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                None => Ok(None),
                Some(run) => run.next_batch().transpose(),
            }
        })
        .map_err(|e| pipeline_error("source", e))
    }
}

#[pymethods]
impl PyEpoch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next batch as a tuple of views (one per field), in field order.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let Some(batch) = self.next_batch(py)? else {
            return Err(PyStopIteration::new_err(()));
        };
        let mut views = Vec::with_capacity(batch.buffers.len());
        for (field, buffer) in self.pipeline.fields().iter().zip(batch.buffers) {
            let mut shape = vec![batch.len];
            shape.extend_from_slice(field.output_shape());
            let dtype = field.output_dtype();
            let layout = Layout::c_contiguous(&shape, dtype.itemsize())
                .map_err(|e| layout_error("source", e))?;
            let view = PyView {
                address: buffer.as_ptr() as usize,
                keep: Arc::new(buffer),
                layout,
                dtype,
                device: DLDevice::CPU,
                readonly: false,
            };
            views.push(Py::new(py, view)?);
        }
        PyTuple::new(py, views)
    }

    /// Batches handed out so far in this epoch (resumed ones counted from 0).
    fn position(&self) -> usize {
        let guard = self.run.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map_or(0, |r| r.position())
    }

    /// Stops the workers now (the GIL is released while they finish their batch).
    fn close(&self, py: Python<'_>) {
        let run = self.run.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(move || drop(run));
    }
}

impl Drop for PyEpoch {
    fn drop(&mut self) {
        // Dropping joins the workers; they never need the GIL, so holding it here is safe.
        drop(self.run.get_mut().unwrap_or_else(|e| e.into_inner()).take());
    }
}

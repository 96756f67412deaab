//! The real [`Engine`]: one copy stream in a device's primary context. On top of it,
//! [`DeviceStage`] (a loader's host batches -> device batches, optionally normalized on
//! the device), [`Uploader`] (one-off `to_device`) and [`DeviceKeep`] (what a device
//! view holds: its buffer, the copy's event, and the consumer streams it was given to).

use std::any::Any;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use super::ffi::CUdeviceptr;
use super::kernel::{output_kind, NormalizeKernel, NormalizeLaunch};
use super::memory::{check_pinned_budget, CudaPinner};
use super::{consumer_stream, Context, CudaError, Event, Stream};
use crate::dtype::DType;
use crate::pool::{BufferPool, PoolConfig};
use crate::transfer::{CopyJob, DeviceBuffer, DevicePool, Engine, Stager, Transfers};

/// A copy stream on one device.
pub struct CudaEngine {
    stream: Stream,
}

impl CudaEngine {
    /// A new non-blocking copy stream in `context`, shared by a stage and its device pool.
    pub fn new(context: &Arc<Context>) -> Result<Arc<CudaEngine>, CudaError> {
        Ok(Arc::new(CudaEngine {
            stream: Stream::new(context)?,
        }))
    }

    /// The device's primary context the stream lives in.
    pub fn context(&self) -> &Arc<Context> {
        self.stream.context()
    }

    /// The copy stream every upload and kernel of this engine is queued on.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }
}

impl Engine for CudaEngine {
    type Event = Event;

    fn alloc(&self, len: usize) -> Result<u64, CudaError> {
        let ctx = self.context();
        let _guard = ctx.enter()?;
        let mut ptr: CUdeviceptr = 0;
        // SAFETY: writes one device pointer; the context is current.
        ctx.check("cuMemAlloc", unsafe {
            (ctx.driver.mem_alloc)(&mut ptr, len.max(1))
        })?;
        Ok(ptr)
    }

    unsafe fn free(&self, ptr: u64) {
        let ctx = self.context();
        if let Ok(_guard) = ctx.enter() {
            // SAFETY: the caller's contract: `ptr` came from `alloc`, used no more.
            unsafe { (ctx.driver.mem_free)(ptr) };
        }
    }

    unsafe fn copy_h2d(&self, dst: u64, src: *const u8, len: usize) -> Result<(), CudaError> {
        if len == 0 {
            return Ok(());
        }
        let ctx = self.context();
        let _guard = ctx.enter()?;
        // SAFETY: the caller's contract (source alive until the next event, dst in bounds).
        ctx.check("cuMemcpyHtoDAsync", unsafe {
            (ctx.driver.memcpy_htod_async)(dst, src.cast::<c_void>(), len, self.stream.raw())
        })
    }

    fn record(&self) -> Result<Event, CudaError> {
        let event = Event::new(self.context(), false)?;
        event.record_raw(self.stream.raw() as usize)?;
        Ok(event)
    }

    fn is_done(&self, event: &Event) -> Result<bool, CudaError> {
        event.query()
    }

    fn wait(&self, event: &Event) -> Result<(), CudaError> {
        event.synchronize()
    }

    fn stream_wait(&self, event: &Event) -> Result<(), CudaError> {
        event.make_wait(self.stream.raw() as usize)
    }
}

/// What a device view keeps alive: the device buffer (back to its pool when the last
/// view or DLPack consumer lets go), the event of the copy that filled it, the consumer
/// streams it was exported to (fenced before reuse), and optionally its pinned source.
pub struct DeviceKeep {
    buffer: Mutex<Option<DeviceBuffer<CudaEngine>>>,
    event: Arc<Event>,
    consumers: Mutex<Vec<usize>>,
    source: Option<Arc<dyn Any + Send + Sync>>,
}

impl DeviceKeep {
    /// Keeps `buffer` until `event` (its copy) is done and every consumer stream is
    /// fenced; `source` is kept too when the copy reads it directly (not staged).
    pub fn new(
        buffer: DeviceBuffer<CudaEngine>,
        event: Arc<Event>,
        source: Option<Arc<dyn Any + Send + Sync>>,
    ) -> DeviceKeep {
        DeviceKeep {
            buffer: Mutex::new(Some(buffer)),
            event,
            consumers: Mutex::new(Vec::new()),
            source,
        }
    }

    /// The device address of the kept buffer: where the view's data starts.
    pub fn ptr(&self) -> u64 {
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |b| b.ptr())
    }

    /// The DLPack producer's duty: the consumer's `stream` (DLPack encoding) waits on the
    /// copy's event on the device. `-1` skips it; no host or device-wide synchronization.
    pub fn export_to(&self, stream: Option<i64>) -> Result<(), CudaError> {
        let Some(handle) = consumer_stream(stream) else {
            return Ok(());
        };
        self.event.make_wait(handle)?;
        let mut consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        if !consumers.contains(&handle) {
            consumers.push(handle);
        }
        Ok(())
    }

    /// Blocks the host until the copy has arrived (for consumers without stream support).
    pub fn wait_host(&self) -> Result<(), CudaError> {
        self.event.synchronize()
    }

    /// True once the copy has arrived.
    pub fn arrived(&self) -> Result<bool, CudaError> {
        self.event.query()
    }
}

impl Drop for DeviceKeep {
    fn drop(&mut self) {
        let buffer = self
            .buffer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut buffer) = buffer {
            // Work a consumer queued on its stream may still read the buffer: fence it.
            let consumers =
                std::mem::take(self.consumers.get_mut().unwrap_or_else(|e| e.into_inner()));
            for stream in consumers {
                if let Ok(fence) = Event::new(self.event_context(), false) {
                    if fence.record_raw(stream).is_ok() {
                        buffer.add_fence(fence);
                    }
                }
            }
            drop(buffer);
        }
        if self.source.is_some() {
            // The copy reads the source directly: keep it until the copy is done.
            let _ = self.event.synchronize();
        }
    }
}

impl DeviceKeep {
    fn event_context(&self) -> &Arc<Context> {
        &self.event.context
    }
}

/// How one field of a loader batch goes to the device.
#[derive(Clone, Debug)]
pub enum FieldPlan {
    /// Copied as is.
    Copy,
    /// uint8 HWC samples normalized (and cast, and maybe transposed) by the kernel.
    Normalize {
        /// Sample height in pixels (rows of the HWC input).
        height: usize,
        /// Sample width in pixels.
        width: usize,
        /// Channels per pixel, the length of `a` and `b`.
        channels: usize,
        /// `x * a[c] + b[c]`
        a: Vec<f32>,
        /// The per-channel offsets added after scaling by `a`.
        b: Vec<f32>,
        /// The output element type: float32, float16 or bfloat16.
        dtype: DType,
        /// Write each sample as CHW planes (`true`) instead of keeping HWC.
        chw: bool,
    },
}

impl FieldPlan {
    /// Output bytes per sample given the host bytes per sample.
    pub fn output_bytes(&self, host_bytes: usize) -> usize {
        match self {
            FieldPlan::Copy => host_bytes,
            FieldPlan::Normalize { dtype, .. } => host_bytes * dtype.itemsize(),
        }
    }

    /// The device batch's shape and dtype, given the host batch's.
    pub fn output(&self, host_shape: &[usize], host_dtype: DType) -> (Vec<usize>, DType) {
        match self {
            FieldPlan::Copy => (host_shape.to_vec(), host_dtype),
            FieldPlan::Normalize {
                height,
                width,
                channels,
                dtype,
                chw: true,
                ..
            } => (vec![host_shape[0], *channels, *height, *width], *dtype),
            FieldPlan::Normalize { dtype, .. } => (host_shape.to_vec(), *dtype),
        }
    }
}

/// One host field of a batch: address, bytes, samples.
#[derive(Clone, Copy, Debug)]
pub struct HostField {
    /// Host address of the field's first byte.
    pub address: usize,
    /// Bytes of the field (all its samples).
    pub len: usize,
    /// Samples (batch rows) in the field.
    pub samples: usize,
}

/// A loader's device stage: copy stream, device pool, pending host buffers, the kernel.
pub struct DeviceStage {
    engine: Arc<CudaEngine>,
    pool: Arc<DevicePool<CudaEngine>>,
    transfers: Mutex<Transfers<CudaEngine, Box<dyn Any + Send>>>,
    plans: Vec<FieldPlan>,
    kernel: Option<NormalizeKernel>,
    coefs: Vec<Option<DeviceBuffer<CudaEngine>>>,
}

impl DeviceStage {
    /// `prefetch` batches may be in flight; `device_budget` caps idle device bytes.
    pub fn new(
        device: i64,
        plans: Vec<FieldPlan>,
        prefetch: usize,
        device_budget: usize,
    ) -> Result<DeviceStage, CudaError> {
        let context = Context::primary(device)?;
        let engine = CudaEngine::new(&context)?;
        let pool = DevicePool::new(engine.clone(), device_budget);
        let needs_kernel = plans
            .iter()
            .any(|p| matches!(p, FieldPlan::Normalize { .. }));
        let kernel = needs_kernel
            .then(|| NormalizeKernel::load(&context))
            .transpose()?;
        let mut coefs = Vec::with_capacity(plans.len());
        for plan in &plans {
            let FieldPlan::Normalize { a, b, dtype, .. } = plan else {
                coefs.push(None);
                continue;
            };
            output_kind(*dtype)?;
            let host: Vec<f32> = a.iter().chain(b.iter()).copied().collect();
            let buffer = pool.take(host.len() * 4)?;
            // SAFETY: `host` lives until the stream is synchronized just below; the
            // buffer holds exactly these bytes.
            unsafe { engine.copy_h2d(buffer.ptr(), host.as_ptr().cast(), host.len() * 4)? };
            engine.stream().synchronize()?;
            coefs.push(Some(buffer));
        }
        Ok(DeviceStage {
            transfers: Mutex::new(Transfers::new(engine.clone(), prefetch + 2)),
            engine,
            pool,
            plans,
            kernel,
            coefs,
        })
    }

    /// The CUDA device ordinal the stage copies to.
    pub fn device(&self) -> i32 {
        self.engine.context().index()
    }

    /// The pool the stage's device batches come from and return to.
    pub fn pool(&self) -> &Arc<DevicePool<CudaEngine>> {
        &self.pool
    }

    /// Host batches still held for their copies, and released so far.
    pub fn pending(&self) -> (usize, u64) {
        let t = self.transfers.lock().unwrap_or_else(|e| e.into_inner());
        (t.pending(), t.released())
    }

    /// Queues one batch: copies (and kernels) on the copy stream, then one event. `hold`
    /// keeps the host buffers and is released only after the event completes. Returns
    /// one device buffer per field and the event.
    ///
    /// # Safety
    /// Each field's `address..address+len` is host memory that `hold` keeps alive.
    pub unsafe fn submit(
        &self,
        hold: Box<dyn Any + Send>,
        fields: &[HostField],
    ) -> Result<(Vec<DeviceBuffer<CudaEngine>>, Arc<Event>), CudaError> {
        if fields.len() != self.plans.len() {
            return Err(CudaError::Unsupported(format!(
                "{} fields given for a stage of {}",
                fields.len(),
                self.plans.len()
            )));
        }
        let mut outputs = Vec::with_capacity(fields.len());
        let mut staging = Vec::new();
        let mut jobs = Vec::with_capacity(fields.len());
        let mut launches = Vec::new();
        for (i, (field, plan)) in fields.iter().zip(&self.plans).enumerate() {
            let out = self.pool.take(plan.output_bytes(field.len))?;
            match plan {
                FieldPlan::Copy => jobs.push(CopyJob {
                    dst: out.ptr(),
                    src: field.address as *const u8,
                    len: field.len,
                }),
                FieldPlan::Normalize {
                    height,
                    width,
                    channels,
                    dtype,
                    chw,
                    ..
                } => {
                    let wire = self.pool.take(field.len)?;
                    jobs.push(CopyJob {
                        dst: wire.ptr(),
                        src: field.address as *const u8,
                        len: field.len,
                    });
                    launches.push(NormalizeLaunch {
                        src: wire.ptr(),
                        dst: out.ptr(),
                        coef: self.coefs[i].as_ref().map_or(0, |c| c.ptr()),
                        n: field.samples,
                        hw: height * width,
                        c: *channels,
                        chw: *chw,
                        kind: output_kind(*dtype)?,
                    });
                    // Back to the pool after the launch is queued: the next copy into it
                    // is on the same stream, so after this kernel.
                    staging.push(wire);
                }
            }
            outputs.push(out);
        }
        let stream = self.engine.stream().raw();
        let kernel = self.kernel.as_ref();
        let launch_all = |_: &CudaEngine| -> Result<(), CudaError> {
            for launch in &launches {
                let kernel = kernel.expect("loaded when any field normalizes");
                // SAFETY: wire, output and coefficient buffers are live device buffers of
                // the right sizes, returned to the pool only in stream order.
                unsafe { kernel.launch(stream, launch)? };
            }
            Ok(())
        };
        let mut transfers = self.transfers.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the caller's contract for the sources; every destination was just taken
        // from the pool at its full size.
        let event = unsafe { transfers.submit(hold, &jobs, launch_all)? };
        drop(staging);
        Ok((outputs, event))
    }

    /// Waits for every queued copy and releases every held host buffer.
    pub fn drain(&self) -> Result<(), CudaError> {
        self.transfers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
    }
}

/// Staging chunk size and count for pageable `to_device` sources.
pub const STAGING_CHUNK: usize = 8 << 20;
/// Staging chunks in the ring, so one fills while others copy.
pub const STAGING_SLOTS: usize = 3;
/// Idle device bytes `to_device` keeps for reuse (repeated same-size uploads skip
/// `cuMemAlloc`/`cuMemFree`, and `cuMemFree` may synchronize).
pub const UPLOAD_POOL_BUDGET: usize = 1 << 30;

/// One device's one-off upload machinery: copy stream, staging ring, device pool.
pub struct Uploader {
    engine: Arc<CudaEngine>,
    stager: Stager<CudaEngine>,
    pool: Arc<DevicePool<CudaEngine>>,
    _staging_pool: Arc<BufferPool>,
}

static UPLOADERS: OnceLock<Mutex<HashMap<i64, Arc<Mutex<Uploader>>>>> = OnceLock::new();

impl Uploader {
    /// The shared uploader of device `index` (created on first use).
    pub fn for_device(index: i64) -> Result<Arc<Mutex<Uploader>>, CudaError> {
        let map = UPLOADERS.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = map.get(&index) {
            return Ok(found.clone());
        }
        let context = Context::primary(index)?;
        let engine = CudaEngine::new(&context)?;
        check_pinned_budget((STAGING_CHUNK * STAGING_SLOTS) as u64)?;
        let staging_pool = BufferPool::with_pinner(
            PoolConfig {
                budget: STAGING_CHUNK * STAGING_SLOTS,
                pin: true,
            },
            Arc::new(CudaPinner::new(context.clone())),
        );
        let slots = (0..STAGING_SLOTS)
            .map(|_| staging_pool.take(STAGING_CHUNK))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CudaError::Unsupported(format!("staging buffers: {e}")))?;
        if let Some(err) = staging_pool.pin_error() {
            return Err(CudaError::Unsupported(format!(
                "staging buffers could not be pinned: {err}"
            )));
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let uploader = Arc::new(Mutex::new(Uploader {
            stager: Stager::new(engine.clone(), slots, threads),
            pool: DevicePool::new(engine.clone(), UPLOAD_POOL_BUDGET),
            engine,
            _staging_pool: staging_pool,
        }));
        map.insert(index, uploader.clone());
        Ok(uploader)
    }

    /// Copies `units` units through the staging ring into a fresh device buffer.
    pub fn staged(
        &mut self,
        units: usize,
        unit_bytes: usize,
        fill: &(dyn Fn(Range<usize>, &mut [u8]) + Sync),
    ) -> Result<DeviceKeep, CudaError> {
        let buffer = self.pool.take(units * unit_bytes)?;
        let event = match self.stager.run(buffer.ptr(), units, unit_bytes, fill)? {
            Some(event) => event,
            None => Arc::new(self.engine.record()?),
        };
        Ok(DeviceKeep::new(buffer, event, None))
    }

    /// Copies straight from pinned host memory that `source` keeps alive.
    ///
    /// # Safety
    /// `address..address+len` is host memory kept alive (and unchanged) by `source`.
    pub unsafe fn direct(
        &mut self,
        address: usize,
        len: usize,
        source: Arc<dyn Any + Send + Sync>,
    ) -> Result<DeviceKeep, CudaError> {
        let buffer = self.pool.take(len)?;
        // SAFETY: the caller's contract; `source` is kept by the returned keep until the
        // copy's event has completed.
        unsafe {
            self.engine
                .copy_h2d(buffer.ptr(), address as *const u8, len)?
        };
        let event = Arc::new(self.engine.record()?);
        Ok(DeviceKeep::new(buffer, event, Some(source)))
    }
}

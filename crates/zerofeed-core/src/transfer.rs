//! Host -> device transfer logic, written against an [`Engine`] trait so that the state
//! machines are tested without a GPU (a fake engine in the tests; `cuda::engine` is the
//! real one).
//!
//! - [`DevicePool`]: device buffers recycled by size under a byte budget; a buffer comes
//!   back when its last user (a DLPack deleter) drops it, with *fences*: events recorded
//!   on the consumer streams that imported it, which the copy stream waits on before the
//!   buffer is written again (a consumer may free a tensor while its kernels still read).
//! - [`Transfers`]: the event-gated pending list. Each submitted batch queues its copies
//!   on the copy stream and records one event; the batch's *host* buffers are held until
//!   that event completes and only then dropped (back to the host pool), in order.
//! - [`Stager`]: one-off copies of pageable memory through a ring of pinned staging
//!   chunks: the CPU fills chunk k+1 while chunk k is on the bus; a chunk is refilled only
//!   after the event of its previous copy has completed.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::cuda::CudaError;
use crate::pool::PooledBuffer;

/// The device operations the transfer logic needs, all on one copy stream.
pub trait Engine: Send + Sync + 'static {
    /// A point on the copy stream; completes when everything queued before it is done.
    type Event: Send + Sync + 'static;
    /// A device allocation of `len` bytes (its address).
    fn alloc(&self, len: usize) -> Result<u64, CudaError>;
    /// Frees an allocation made by `alloc`.
    ///
    /// # Safety
    /// `ptr` came from `alloc` and is not used afterwards.
    unsafe fn free(&self, ptr: u64);
    /// Queues a copy of `len` bytes from host `src` to device `dst` on the copy stream.
    ///
    /// # Safety
    /// `src` stays valid and unchanged until an event recorded after this call completes;
    /// `dst..dst+len` lies in a live device allocation.
    unsafe fn copy_h2d(&self, dst: u64, src: *const u8, len: usize) -> Result<(), CudaError>;
    /// Records an event on the copy stream after everything queued so far.
    fn record(&self) -> Result<Self::Event, CudaError>;
    /// True once the event has completed.
    fn is_done(&self, event: &Self::Event) -> Result<bool, CudaError>;
    /// Blocks the host until the event has completed.
    fn wait(&self, event: &Self::Event) -> Result<(), CudaError>;
    /// Makes the copy stream wait (on the device) for an event.
    fn stream_wait(&self, event: &Self::Event) -> Result<(), CudaError>;
}

/// Counters of a [`DevicePool`].
#[derive(Debug, Default)]
pub struct DevicePoolStats {
    /// Device buffers allocated fresh (`Engine::alloc`).
    pub allocations: AtomicU64,
    /// Buffers handed out again after being returned.
    pub reuses: AtomicU64,
    /// Buffers allocated and not yet freed (handed out or idle).
    pub live_buffers: AtomicU64,
    /// Returned buffers freed because keeping them would exceed the budget.
    pub freed_over_budget: AtomicU64,
    /// Consumer fences the copy stream waited on before reusing a buffer.
    pub fences_waited: AtomicU64,
}

struct Block<E: Engine> {
    ptr: u64,
    len: usize,
    fences: Vec<E::Event>,
}

/// Device buffers recycled by exact size; idle bytes are capped by `budget`.
pub struct DevicePool<E: Engine> {
    engine: Arc<E>,
    budget: usize,
    idle: Mutex<(Vec<Block<E>>, usize)>,
    stats: DevicePoolStats,
}

impl<E: Engine> DevicePool<E> {
    /// A pool allocating through `engine` that keeps at most `budget` idle bytes.
    pub fn new(engine: Arc<E>, budget: usize) -> Arc<DevicePool<E>> {
        Arc::new(DevicePool {
            engine,
            budget,
            idle: Mutex::new((Vec::new(), 0)),
            stats: DevicePoolStats::default(),
        })
    }

    /// The engine buffers are allocated and fenced on.
    pub fn engine(&self) -> &Arc<E> {
        &self.engine
    }

    /// Live counters, updated as buffers come and go.
    pub fn stats(&self) -> &DevicePoolStats {
        &self.stats
    }

    /// Idle buffers and their bytes.
    pub fn idle(&self) -> (usize, usize) {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        (idle.0.len(), idle.1)
    }

    /// A buffer of `len` bytes. A recycled one's fences are waited on by the copy stream
    /// first, so nothing queued after this call can overwrite data a consumer still reads.
    pub fn take(self: &Arc<Self>, len: usize) -> Result<DeviceBuffer<E>, CudaError> {
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let at = idle.0.iter().rposition(|b| b.len == len);
            at.map(|i| {
                idle.1 -= len;
                idle.0.swap_remove(i)
            })
        };
        let block = match found {
            Some(mut block) => {
                for fence in block.fences.drain(..) {
                    self.engine.stream_wait(&fence)?;
                    self.stats.fences_waited.fetch_add(1, Ordering::Relaxed);
                }
                self.stats.reuses.fetch_add(1, Ordering::Relaxed);
                block
            }
            None => {
                let ptr = self.engine.alloc(len)?;
                self.stats.allocations.fetch_add(1, Ordering::Relaxed);
                self.stats.live_buffers.fetch_add(1, Ordering::Relaxed);
                Block {
                    ptr,
                    len,
                    fences: Vec::new(),
                }
            }
        };
        Ok(DeviceBuffer {
            block: Some(block),
            pool: Arc::downgrade(self),
            engine: self.engine.clone(),
        })
    }

    fn give_back(&self, block: Block<E>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.1 + block.len <= self.budget {
            idle.1 += block.len;
            idle.0.push(block);
            return;
        }
        drop(idle);
        self.stats.freed_over_budget.fetch_add(1, Ordering::Relaxed);
        self.stats.live_buffers.fetch_sub(1, Ordering::Relaxed);
        free_block(&*self.engine, block);
    }
}

fn free_block<E: Engine>(engine: &E, block: Block<E>) {
    // Freeing while a consumer's kernel may still read: wait for its fences first.
    for fence in &block.fences {
        let _ = engine.wait(fence);
    }
    // SAFETY: the block came from `alloc` and nobody holds it any more.
    unsafe { engine.free(block.ptr) };
}

impl<E: Engine> Drop for DevicePool<E> {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.idle.get_mut().unwrap_or_else(|e| e.into_inner()).0);
        for block in idle {
            free_block(&*self.engine, block);
        }
    }
}

/// A device buffer on loan; dropping it returns it to its pool (or frees it).
pub struct DeviceBuffer<E: Engine> {
    block: Option<Block<E>>,
    pool: Weak<DevicePool<E>>,
    engine: Arc<E>,
}

impl<E: Engine> DeviceBuffer<E> {
    /// The device address of the buffer.
    pub fn ptr(&self) -> u64 {
        self.block.as_ref().map_or(0, |b| b.ptr)
    }

    /// Bytes of the buffer, exactly as asked of [`DevicePool::take`].
    pub fn len(&self) -> usize {
        self.block.as_ref().map_or(0, |b| b.len)
    }

    /// True for a zero-byte buffer (the engine may still have allocated one byte).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An event that must complete before the buffer is written again (a consumer's).
    pub fn add_fence(&mut self, event: E::Event) {
        if let Some(block) = self.block.as_mut() {
            block.fences.push(event);
        }
    }
}

impl<E: Engine> Drop for DeviceBuffer<E> {
    fn drop(&mut self) {
        let Some(block) = self.block.take() else {
            return;
        };
        match self.pool.upgrade() {
            Some(pool) => pool.give_back(block),
            None => free_block(&*self.engine, block),
        }
    }
}

/// One host -> device copy of a batch field.
#[derive(Clone, Copy, Debug)]
pub struct CopyJob {
    /// Device address to copy to.
    pub dst: u64,
    /// Host address to copy from; must stay valid until the copy's event completes.
    pub src: *const u8,
    /// Bytes to copy.
    pub len: usize,
}

struct Pending<E: Engine, H> {
    event: Arc<E::Event>,
    /// Dropped (host memory released) only when `event` has completed.
    _hold: H,
}

/// The event-gated pending list: host memory `H` is held until its copy's event completes.
pub struct Transfers<E: Engine, H> {
    engine: Arc<E>,
    pending: VecDeque<Pending<E, H>>,
    /// At most this many batches' host buffers are held; the oldest is waited for beyond.
    max_pending: usize,
    released: u64,
}

impl<E: Engine, H> Transfers<E, H> {
    /// An empty list over `engine` holding at most `max_pending` batches (at least 1).
    pub fn new(engine: Arc<E>, max_pending: usize) -> Transfers<E, H> {
        Transfers {
            engine,
            pending: VecDeque::new(),
            max_pending: max_pending.max(1),
            released: 0,
        }
    }

    /// Host holds waiting for their copies.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Host holds released so far.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Queues `jobs`, then `after` (e.g. kernels on the copy stream), records one event and
    /// holds `hold` until that event completes. Returns the event (for consumers to wait on).
    ///
    /// # Safety
    /// Every job's `src` lies in memory that `hold` keeps alive and unchanged; every `dst`
    /// range lies in a live device buffer.
    pub unsafe fn submit(
        &mut self,
        hold: H,
        jobs: &[CopyJob],
        after: impl FnOnce(&E) -> Result<(), CudaError>,
    ) -> Result<Arc<E::Event>, CudaError> {
        for job in jobs {
            // SAFETY: the caller's contract; `hold` is kept until the event below completes.
            unsafe { self.engine.copy_h2d(job.dst, job.src, job.len)? };
        }
        after(&self.engine)?;
        let event = Arc::new(self.engine.record()?);
        self.pending.push_back(Pending {
            event: event.clone(),
            _hold: hold,
        });
        self.poll()?;
        while self.pending.len() > self.max_pending {
            let oldest = self.pending.pop_front().expect("non-empty");
            self.engine.wait(&oldest.event)?;
            self.released += 1;
        }
        Ok(event)
    }

    /// Releases the holds whose copies have completed, oldest first (one stream: in order).
    pub fn poll(&mut self) -> Result<usize, CudaError> {
        let mut count = 0;
        while let Some(front) = self.pending.front() {
            if !self.engine.is_done(&front.event)? {
                break;
            }
            self.pending.pop_front();
            self.released += 1;
            count += 1;
        }
        Ok(count)
    }

    /// Waits for every pending copy and releases every hold.
    pub fn drain(&mut self) -> Result<(), CudaError> {
        while let Some(front) = self.pending.pop_front() {
            self.engine.wait(&front.event)?;
            self.released += 1;
        }
        Ok(())
    }
}

impl<E: Engine, H> Drop for Transfers<E, H> {
    fn drop(&mut self) {
        // Host memory must not go back while the DMA engine may still read it.
        let _ = self.drain();
    }
}

/// Splits `units` (rows, or bytes) into chunks of at most `chunk_bytes`, at least one unit.
pub fn plan_chunks(units: usize, unit_bytes: usize, chunk_bytes: usize) -> Vec<Range<usize>> {
    let per_chunk = (chunk_bytes / unit_bytes.max(1)).max(1);
    (0..units)
        .step_by(per_chunk)
        .map(|start| start..(start + per_chunk).min(units))
        .collect()
}

/// A ring of pinned staging chunks for pageable sources.
pub struct Stager<E: Engine> {
    engine: Arc<E>,
    slots: Vec<(PooledBuffer, Option<Arc<E::Event>>)>,
    threads: usize,
}

impl<E: Engine> Stager<E> {
    /// `slots` are the (pinned) staging buffers, all of the same size; `threads` fill each chunk.
    pub fn new(engine: Arc<E>, slots: Vec<PooledBuffer>, threads: usize) -> Stager<E> {
        Stager {
            engine,
            slots: slots.into_iter().map(|b| (b, None)).collect(),
            threads: threads.max(1),
        }
    }

    /// Bytes per staging chunk (0 without slots): the most one copy moves.
    pub fn chunk_bytes(&self) -> usize {
        self.slots.first().map_or(0, |s| s.0.len())
    }

    /// Copies `units` units of `unit_bytes` each to device `dst`. `fill(range, out)` writes
    /// units `range` packed into `out` (it is called from several threads for big chunks).
    /// Returns the event of the last chunk; staging slots are reused only after their
    /// previous copy's event has completed.
    pub fn run(
        &mut self,
        dst: u64,
        units: usize,
        unit_bytes: usize,
        fill: &(dyn Fn(Range<usize>, &mut [u8]) + Sync),
    ) -> Result<Option<Arc<E::Event>>, CudaError> {
        let chunk_bytes = self.chunk_bytes();
        if chunk_bytes == 0 {
            return Err(CudaError::Unsupported("the stager has no slots".into()));
        }
        if unit_bytes > chunk_bytes {
            return Err(CudaError::Unsupported(format!(
                "a unit of {unit_bytes} bytes does not fit a staging chunk of {chunk_bytes} bytes"
            )));
        }
        let chunks = plan_chunks(units, unit_bytes, chunk_bytes);
        let slot_count = self.slots.len();
        let mut last = None;
        for (k, range) in chunks.into_iter().enumerate() {
            let (buffer, event) = &mut self.slots[k % slot_count];
            if let Some(previous) = event.take() {
                self.engine.wait(&previous)?;
            }
            let len = range.len() * unit_bytes;
            let out = &mut buffer.as_mut_slice()[..len];
            parallel_fill(range.clone(), unit_bytes, out, self.threads, fill);
            // SAFETY: the slot is ours and is not refilled before the event recorded below
            // completes (waited above on its next use); `dst + offset` lies in the caller's
            // device allocation of `units * unit_bytes` bytes.
            unsafe {
                self.engine.copy_h2d(
                    dst + (range.start * unit_bytes) as u64,
                    buffer.as_ptr(),
                    len,
                )?
            };
            let recorded = Arc::new(self.engine.record()?);
            *event = Some(recorded.clone());
            last = Some(recorded);
        }
        Ok(last)
    }

    /// Waits until every staging slot is free again.
    pub fn drain(&mut self) -> Result<(), CudaError> {
        for (_, event) in &mut self.slots {
            if let Some(e) = event.take() {
                self.engine.wait(&e)?;
            }
        }
        Ok(())
    }
}

impl<E: Engine> Drop for Stager<E> {
    fn drop(&mut self) {
        let _ = self.drain();
    }
}

/// Runs `fill` over `range`, split across up to `threads` threads for chunks of 1 MiB+.
fn parallel_fill(
    range: Range<usize>,
    unit_bytes: usize,
    out: &mut [u8],
    threads: usize,
    fill: &(dyn Fn(Range<usize>, &mut [u8]) + Sync),
) {
    let parts = if out.len() >= (1 << 20) {
        threads.min(range.len()).max(1)
    } else {
        1
    };
    if parts == 1 {
        fill(range, out);
        return;
    }
    let per = range.len().div_ceil(parts);
    std::thread::scope(|scope| {
        let mut rest = out;
        let mut start = range.start;
        while start < range.end {
            let end = (start + per).min(range.end);
            let (mine, tail) = rest.split_at_mut((end - start) * unit_bytes);
            rest = tail;
            let part = start..end;
            scope.spawn(move || fill(part, mine));
            start = end;
        }
    });
}

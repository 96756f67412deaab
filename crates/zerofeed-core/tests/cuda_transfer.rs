//! The transfer state machines against a fake engine: no GPU needed.
//!
//! The fake executes a queued copy only when an event covering it completes (as a DMA
//! engine reads the source late), so reusing host memory too early shows up as wrong
//! bytes on the "device".

use std::sync::{Arc, Mutex};

use zerofeed_core::cuda::CudaError;
use zerofeed_core::pool::{BufferPool, PoolConfig};
use zerofeed_core::transfer::{plan_chunks, CopyJob, DevicePool, Engine, Stager, Transfers};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Alloc(u64, usize),
    Free(u64),
    Copy { dst: u64, len: usize },
    Record(usize),
    Wait(usize),
    StreamWait(usize),
}

#[derive(Default)]
struct State {
    device: Vec<u8>,
    /// (dst offset, src address, len): queued, not yet executed.
    queue: Vec<(usize, usize, usize)>,
    executed: usize,
    /// Each event covers the queue up to this length.
    events: Vec<usize>,
    log: Vec<Op>,
}

#[derive(Default)]
struct Fake {
    state: Mutex<State>,
    /// When false, `is_done` reports nothing complete until `complete_all`.
    auto_complete: Mutex<bool>,
}

const BASE: u64 = 0x1000;

impl Fake {
    fn run_until(state: &mut State, upto: usize) {
        while state.executed < upto {
            let (dst, src, len) = state.queue[state.executed];
            // SAFETY: the engine contract keeps `src` alive until the event completes.
            let bytes = unsafe { std::slice::from_raw_parts(src as *const u8, len) };
            state.device[dst..dst + len].copy_from_slice(bytes);
            state.executed += 1;
        }
    }

    fn complete_all(&self) {
        let mut s = self.state.lock().unwrap();
        let n = s.queue.len();
        Self::run_until(&mut s, n);
    }

    fn device(&self, ptr: u64, len: usize) -> Vec<u8> {
        let s = self.state.lock().unwrap();
        let at = (ptr - BASE) as usize;
        s.device[at..at + len].to_vec()
    }

    fn log(&self) -> Vec<Op> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Engine for Fake {
    type Event = usize;

    fn alloc(&self, len: usize) -> Result<u64, CudaError> {
        let mut s = self.state.lock().unwrap();
        let at = s.device.len();
        s.device.resize(at + len.max(1), 0);
        s.log.push(Op::Alloc(BASE + at as u64, len));
        Ok(BASE + at as u64)
    }

    unsafe fn free(&self, ptr: u64) {
        self.state.lock().unwrap().log.push(Op::Free(ptr));
    }

    unsafe fn copy_h2d(&self, dst: u64, src: *const u8, len: usize) -> Result<(), CudaError> {
        let mut s = self.state.lock().unwrap();
        s.queue.push(((dst - BASE) as usize, src as usize, len));
        s.log.push(Op::Copy { dst, len });
        Ok(())
    }

    fn record(&self) -> Result<usize, CudaError> {
        let mut s = self.state.lock().unwrap();
        let covers = s.queue.len();
        s.events.push(covers);
        let id = s.events.len() - 1;
        s.log.push(Op::Record(id));
        Ok(id)
    }

    fn is_done(&self, event: &usize) -> Result<bool, CudaError> {
        let mut s = self.state.lock().unwrap();
        let covers = s.events[*event];
        if *self.auto_complete.lock().unwrap() {
            Self::run_until(&mut s, covers);
        }
        Ok(s.executed >= covers)
    }

    fn wait(&self, event: &usize) -> Result<(), CudaError> {
        let mut s = self.state.lock().unwrap();
        let covers = s.events[*event];
        Self::run_until(&mut s, covers);
        s.log.push(Op::Wait(*event));
        Ok(())
    }

    fn stream_wait(&self, event: &usize) -> Result<(), CudaError> {
        self.state.lock().unwrap().log.push(Op::StreamWait(*event));
        Ok(())
    }
}

fn host_pool() -> Arc<BufferPool> {
    BufferPool::new(PoolConfig {
        budget: 1 << 20,
        pin: false,
    })
}

#[test]
fn host_buffers_return_only_after_their_copy_event() {
    let fake = Arc::new(Fake::default());
    let host = host_pool();
    let device = DevicePool::new(fake.clone(), 1 << 20);
    let mut transfers = Transfers::new(fake.clone(), 8);
    let mut outputs = Vec::new();
    for k in 0..3u8 {
        let mut buffer = host.take(256).unwrap();
        buffer.as_mut_slice().fill(k + 1);
        let out = device.take(256).unwrap();
        let job = CopyJob {
            dst: out.ptr(),
            src: buffer.as_ptr(),
            len: 256,
        };
        // SAFETY: `buffer` is the hold and owns the source bytes.
        unsafe { transfers.submit(buffer, &[job], |_| Ok(())).unwrap() };
        outputs.push(out);
    }
    // Nothing completed: all three host buffers are held, none idle in the pool.
    assert_eq!(transfers.pending(), 3);
    assert_eq!(host.snapshot().idle_buffers, 0);
    // A new batch must get a fresh buffer, never one whose copy is in flight.
    let fresh = host.take(256).unwrap();
    assert_eq!(host.snapshot().allocations, 4);
    drop(fresh);
    fake.complete_all();
    assert_eq!(transfers.poll().unwrap(), 3);
    assert_eq!(transfers.pending(), 0);
    assert_eq!(host.snapshot().idle_buffers, 4);
    // The bytes arrived, batch by batch, in order.
    for (k, out) in outputs.iter().enumerate() {
        assert_eq!(fake.device(out.ptr(), 256), vec![k as u8 + 1; 256]);
    }
}

#[test]
fn release_is_in_order_and_bounded() {
    let fake = Arc::new(Fake::default());
    let host = host_pool();
    let device = DevicePool::new(fake.clone(), 1 << 20);
    let mut transfers = Transfers::new(fake.clone(), 2);
    for _ in 0..5 {
        let buffer = host.take(64).unwrap();
        let out = device.take(64).unwrap();
        let job = CopyJob {
            dst: out.ptr(),
            src: buffer.as_ptr(),
            len: 64,
        };
        // SAFETY: as above.
        unsafe { transfers.submit(buffer, &[job], |_| Ok(())).unwrap() };
        assert!(transfers.pending() <= 2, "bounded by max_pending");
    }
    // The bound was enforced by waiting on the oldest events, in order.
    let waits: Vec<_> = fake
        .log()
        .into_iter()
        .filter_map(|op| match op {
            Op::Wait(e) => Some(e),
            _ => None,
        })
        .collect();
    let mut sorted = waits.clone();
    sorted.sort_unstable();
    assert_eq!(waits, sorted);
    assert_eq!(transfers.released(), 3);
    // Released buffers were reused: 2 held + 1 taken while the oldest was in flight.
    assert_eq!(host.snapshot().allocations, 3);
    drop(transfers); // drains: every host buffer back
    assert_eq!(host.snapshot().idle_buffers, 3);
}

#[test]
fn device_buffers_are_pooled_and_fenced_before_reuse() {
    let fake = Arc::new(Fake::default());
    let device = DevicePool::new(fake.clone(), 1000);
    let mut a = device.take(512).unwrap();
    let address = a.ptr();
    a.add_fence(41); // a consumer stream's release event
    drop(a);
    assert_eq!(device.idle(), (1, 512));
    let b = device.take(512).unwrap();
    assert_eq!(b.ptr(), address, "recycled");
    assert!(
        fake.log().contains(&Op::StreamWait(41)),
        "the copy stream waits on the fence"
    );
    assert_eq!(
        device
            .stats()
            .fences_waited
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Over budget: freed, not kept.
    let c = device.take(800).unwrap();
    let c_ptr = c.ptr();
    drop(b);
    drop(c);
    assert!(fake.log().contains(&Op::Free(c_ptr)));
    drop(device);
    assert!(fake.log().contains(&Op::Free(address)));
}

#[test]
fn chunk_plans_cover_everything_once() {
    assert_eq!(plan_chunks(10, 1, 4), vec![0..4, 4..8, 8..10]);
    assert_eq!(plan_chunks(3, 100, 50), vec![0..1, 1..2, 2..3]);
    assert!(plan_chunks(0, 4, 16).is_empty());
    let chunks = plan_chunks(1000, 12, 4096);
    assert_eq!(chunks.first().unwrap().start, 0);
    assert_eq!(chunks.last().unwrap().end, 1000);
    assert!(chunks.windows(2).all(|w| w[0].end == w[1].start));
}

fn staged(
    total: usize,
    chunk: usize,
    slots: usize,
    threads: usize,
) -> (Arc<Fake>, Vec<u8>, Vec<u8>) {
    let fake = Arc::new(Fake::default());
    let staging = host_pool();
    let buffers = (0..slots).map(|_| staging.take(chunk).unwrap()).collect();
    let mut stager = Stager::new(fake.clone(), buffers, threads);
    let source: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
    let dst = fake.alloc(total).unwrap();
    let fill = |range: std::ops::Range<usize>, out: &mut [u8]| out.copy_from_slice(&source[range]);
    let last = stager.run(dst, total, 1, &fill).unwrap();
    if let Some(event) = last {
        fake.wait(&event).unwrap();
    }
    let device = fake.device(dst, total);
    (fake, source, device)
}

#[test]
fn staging_never_refills_a_chunk_before_its_copy_is_done() {
    // 10 chunks through 2 slots: the fake copies lazily, so an early refill corrupts data.
    let (fake, source, device) = staged(10 * 4096 + 100, 4096, 2, 1);
    assert_eq!(device, source);
    // Chunk k's copy goes to offset k * chunk, in order.
    let copies: Vec<_> = fake
        .log()
        .into_iter()
        .filter_map(|op| match op {
            Op::Copy { dst, len } => Some((dst - BASE, len)),
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 11);
    for (k, (offset, len)) in copies.iter().enumerate() {
        assert_eq!(*offset as usize, k * 4096);
        assert_eq!(*len, if k == 10 { 100 } else { 4096 });
    }
    // With 2 slots, chunk k >= 2 waited on the event of chunk k - 2 first.
    let log = fake.log();
    let waits: Vec<_> = log
        .iter()
        .filter_map(|op| match op {
            Op::Wait(e) => Some(*e),
            _ => None,
        })
        .collect();
    assert_eq!(&waits[..9], &(0..9).collect::<Vec<_>>()[..]);
}

#[test]
fn staging_with_parallel_fill_and_big_chunks() {
    let (_, source, device) = staged(5 << 20, 2 << 20, 3, 4);
    assert_eq!(device, source);
}

#[test]
fn staging_rejects_units_larger_than_a_chunk() {
    let fake = Arc::new(Fake::default());
    let staging = host_pool();
    let mut stager = Stager::new(fake.clone(), vec![staging.take(64).unwrap()], 1);
    let err = stager.run(BASE, 2, 100, &|_, _| {}).unwrap_err();
    assert!(err.to_string().contains("does not fit"));
}

#[test]
fn field_plans_describe_the_device_batch() {
    use zerofeed_core::cuda::engine::FieldPlan;
    use zerofeed_core::DType;

    let normalize = |chw| FieldPlan::Normalize {
        height: 4,
        width: 5,
        channels: 3,
        a: vec![1.0; 3],
        b: vec![0.0; 3],
        dtype: DType::F16,
        chw,
    };
    let hwc = [8, 4, 5, 3];
    assert_eq!(
        FieldPlan::Copy.output(&hwc, DType::U8),
        (hwc.to_vec(), DType::U8)
    );
    assert_eq!(
        normalize(false).output(&hwc, DType::U8),
        (hwc.to_vec(), DType::F16)
    );
    assert_eq!(
        normalize(true).output(&hwc, DType::U8),
        (vec![8, 3, 4, 5], DType::F16)
    );
    assert_eq!(normalize(true).output_bytes(60), 120);
}

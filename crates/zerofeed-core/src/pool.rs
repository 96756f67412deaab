//! A recycling pool of aligned (optionally page-locked) batch buffers under a byte budget.
//!
//! A [`PooledBuffer`] goes back to its pool when dropped, which happens only when nothing
//! references it any more: the pipeline hands it out behind an `Arc`, and every export
//! (NumPy base, buffer-protocol view, DLPack deleter) holds a clone. So a batch that a user
//! keeps is never reused. The pool keeps at most `budget` bytes of idle buffers; when users
//! keep more batches than that, fresh buffers are allocated and counted, never a live one
//! reused.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

use crate::host::{memlock_limit, AlignedBuffer, Alignment, HostError};

/// Buffers at least this large are page-aligned (and locked page by page).
const PAGE_ALIGN_FROM: usize = 64 << 10;
/// Buffers from this size on are aligned to 2 MiB and advised for transparent huge pages:
/// a 25 MB batch on 4 KiB pages is 6,000 TLB entries the workers' streaming stores walk
/// through (measured: +25% for one worker on the reference workload), and rounding up to a
/// whole huge page wastes under 25% only from 8 MiB on.
const HUGE_FROM: usize = 8 << 20;

/// How the pool allocates.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Idle bytes kept for reuse; returns beyond this are freed.
    pub budget: usize,
    /// Page-lock buffers with `mlock` (falls back to unlocked memory, once reported).
    pub pin: bool,
}

/// Pins pool buffers some other way than `mlock` (e.g. CUDA host registration).
///
/// The pool calls `pin` once per buffer, right after allocating it at its exact size, and
/// `unpin` once, right before freeing it: never per use. A failed `pin` leaves the buffer
/// unpinned, counted in `pin_failures` and reported once, as a failed `mlock` is.
pub trait Pinner: Send + Sync {
    /// Pins the buffer, or says why not.
    fn pin(&self, buffer: &AlignedBuffer) -> Result<(), String>;
    /// Unpins a buffer that `pin` succeeded on.
    fn unpin(&self, buffer: &AlignedBuffer);
}

/// Counters, readable while the pool works.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Buffers allocated fresh (the first fill, and whenever none was idle).
    pub allocations: AtomicU64,
    /// Buffers handed out again after being returned.
    pub reuses: AtomicU64,
    /// Bytes currently page-locked by this pool.
    pub pinned_bytes: AtomicU64,
    /// Buffers that could not be locked (memlock limit) and were used unlocked.
    pub pin_failures: AtomicU64,
    /// Returned buffers freed because keeping them would exceed the budget.
    pub freed_over_budget: AtomicU64,
    /// Buffers alive (handed out or idle).
    pub live_buffers: AtomicU64,
}

/// A snapshot of [`PoolStats`] plus the idle count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Buffers allocated fresh (the first fill, and whenever none was idle).
    pub allocations: u64,
    /// Buffers handed out again after being returned.
    pub reuses: u64,
    /// Bytes page-locked by this pool at the time of the snapshot.
    pub pinned_bytes: u64,
    /// Buffers that could not be locked and were used unlocked.
    pub pin_failures: u64,
    /// Returned buffers freed because keeping them would exceed the budget.
    pub freed_over_budget: u64,
    /// Buffers alive (handed out or idle).
    pub live_buffers: u64,
    /// Buffers waiting in the pool for reuse.
    pub idle_buffers: u64,
    /// Bytes of those idle buffers (at most the budget).
    pub idle_bytes: u64,
}

struct Idle {
    buffers: Vec<AlignedBuffer>,
    bytes: usize,
}

/// The pool. Share it as `Arc<BufferPool>`; buffers find their way back through a `Weak`.
pub struct BufferPool {
    config: PoolConfig,
    idle: Mutex<Idle>,
    stats: PoolStats,
    /// The first lock failure's message, for the one warning the bindings print.
    pin_error: Mutex<Option<String>>,
    /// Pins instead of `mlock` when set (with `config.pin`).
    pinner: Option<Arc<dyn Pinner>>,
    /// Addresses of live buffers that `pinner` pinned.
    pinned: Mutex<HashSet<usize>>,
    /// The process that made the pool. A `fork()`ed child inherits the pool but not its
    /// worker threads, one of which may have held a lock at the fork: the child never
    /// touches the pool's locks, the pinner (CUDA is unusable after fork) or its buffers,
    /// and leaks them instead (the child's copy of memory dies with it).
    pid: u32,
}

/// True in a process other than `pid` (a `fork()`ed child).
pub(crate) fn forked_from(pid: u32) -> bool {
    current_pid() != pid
}

/// This process's id, kept current across `fork()` by a child handler.
static PID: AtomicU32 = AtomicU32::new(0);
static PID_HANDLER: Once = Once::new();

extern "C" fn refresh_pid() {
    // SAFETY: getpid has no preconditions and is async-signal-safe (it runs in a child right
    // after fork, where only such calls are allowed).
    PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
}

/// The id of this process, without a system call: fork checks run several times per batch,
/// and `getpid` is a system call each time (glibc stopped caching it). A `pthread_atfork`
/// child handler refreshes it in every child that `fork()` (Python's `os.fork`,
/// multiprocessing's fork start method) makes.
pub fn current_pid() -> u32 {
    PID_HANDLER.call_once(|| {
        refresh_pid();
        // SAFETY: the handler only stores an atomic; registering has no other effect. Its
        // result is ignored: on failure (ENOMEM) forks are no longer detected, as before any
        // handler existed, which only matters for a child that touches a parent's loader.
        unsafe { libc::pthread_atfork(None, None, Some(refresh_pid)) };
    });
    PID.load(Ordering::Relaxed)
}

impl BufferPool {
    /// A pool that page-locks with `mlock` when `config.pin`.
    pub fn new(config: PoolConfig) -> Arc<BufferPool> {
        Self::build(config, None)
    }

    /// A pool whose buffers `pinner` pins (when `config.pin`) instead of `mlock`.
    pub fn with_pinner(config: PoolConfig, pinner: Arc<dyn Pinner>) -> Arc<BufferPool> {
        Self::build(config, Some(pinner))
    }

    fn build(config: PoolConfig, pinner: Option<Arc<dyn Pinner>>) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            config,
            idle: Mutex::new(Idle {
                buffers: Vec::new(),
                bytes: 0,
            }),
            stats: PoolStats::default(),
            pin_error: Mutex::new(None),
            pinner,
            pinned: Mutex::new(HashSet::new()),
            pid: current_pid(),
        })
    }

    fn pinned_by(&self, buffer: &AlignedBuffer) -> Option<Arc<dyn Pinner>> {
        let pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if pinned.contains(&(buffer.as_ptr() as usize)) {
            self.pinner.clone()
        } else {
            None
        }
    }

    /// The budget and pinning the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// A buffer of exactly `len` bytes: an idle one of that size, or a fresh one.
    pub fn take(self: &Arc<Self>, len: usize) -> Result<PooledBuffer, HostError> {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let found = idle.buffers.iter().rposition(|b| b.len() == len);
            found.map(|i| {
                let buffer = idle.buffers.swap_remove(i);
                idle.bytes -= buffer.len();
                buffer
            })
        };
        let buffer = match reused {
            Some(buffer) => {
                self.stats.reuses.fetch_add(1, Ordering::Relaxed);
                buffer
            }
            None => self.allocate(len)?,
        };
        Ok(PooledBuffer {
            pinned_by: self.pinned_by(&buffer),
            buffer: Some(buffer),
            pool: Arc::downgrade(self),
            pid: self.pid,
        })
    }

    fn allocate(&self, len: usize) -> Result<AlignedBuffer, HostError> {
        let align = if len >= HUGE_FROM {
            Alignment::Huge
        } else if len >= PAGE_ALIGN_FROM {
            Alignment::Page
        } else {
            Alignment::Bytes(crate::host::FRAMEWORK_ALIGNMENT)
        };
        let mut buffer = AlignedBuffer::new(len, align)?;
        if let (true, Some(pinner)) = (self.config.pin, &self.pinner) {
            match pinner.pin(&buffer) {
                Ok(()) => {
                    self.pinned
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(buffer.as_ptr() as usize);
                    self.stats
                        .pinned_bytes
                        .fetch_add(len as u64, Ordering::Relaxed);
                }
                Err(reason) => {
                    self.stats.pin_failures.fetch_add(1, Ordering::Relaxed);
                    let mut first = self.pin_error.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert(reason);
                }
            }
        } else if self.config.pin {
            // Honour the soft memlock limit even where the process could exceed it (root has
            // CAP_IPC_LOCK): the limit is how administrators budget page-locked memory.
            let pinned = self.stats.pinned_bytes.load(Ordering::Relaxed);
            let within_limit = memlock_limit().is_none_or(|limit| pinned + len as u64 <= limit);
            let locked = if within_limit {
                buffer.lock()
            } else {
                Err(HostError::Lock {
                    bytes: len,
                    limit: memlock_limit().map_or("unlimited".to_owned(), |l| format!("{l} bytes")),
                    reason: format!("{pinned} bytes are already locked by this pool"),
                })
            };
            match locked {
                Ok(()) => {
                    self.stats
                        .pinned_bytes
                        .fetch_add(len as u64, Ordering::Relaxed);
                }
                Err(err) => {
                    self.stats.pin_failures.fetch_add(1, Ordering::Relaxed);
                    let mut first = self.pin_error.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert_with(|| err.to_string());
                }
            }
        }
        self.stats.allocations.fetch_add(1, Ordering::Relaxed);
        self.stats.live_buffers.fetch_add(1, Ordering::Relaxed);
        Ok(buffer)
    }

    /// Allocates idle buffers of each size in `lens`, faulted in, until `count` for each are
    /// idle or the budget is full (round by round, so every size gets its share). A loader's
    /// first epoch then finds its memory ready instead of its workers paying the page faults
    /// (and, for huge pages, the kernel's compaction) batch by batch: for a small dataset,
    /// whose epoch is a few batches, that cost would otherwise land in its first epochs.
    /// `threads` threads fault the buffers in side by side (page faults scale with cores: 924
    /// MiB took 127 ms on one thread and 65 ms on two on the 2-core Xeon VM the bench ran on).
    /// Best effort: an allocation that fails stops its thread (the workers' `take` reports it).
    pub fn prefill(&self, lens: &[usize], count: usize, threads: usize) {
        // Which buffers to make, decided up front so that the threads share them out.
        let mut make: Vec<usize> = Vec::new();
        {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut bytes = idle.bytes;
            for _ in 0..count {
                for &len in lens {
                    // Sizes that several fields share need `count` buffers for each of them.
                    let wanted = count * lens.iter().filter(|&&l| l == len).count();
                    let have = idle.buffers.iter().filter(|b| b.len() == len).count()
                        + make.iter().filter(|&&m| m == len).count();
                    if have >= wanted || bytes + len > self.config.budget {
                        continue;
                    }
                    bytes += len;
                    make.push(len);
                }
            }
        }
        let fill = |share: &mut dyn Iterator<Item = &usize>| {
            for &len in share {
                let Ok(mut buffer) = self.allocate(len) else {
                    return;
                };
                buffer.fault_in();
                self.give_back(buffer);
            }
        };
        // `mlock`'s soft-limit check is read-then-lock, so locking pools fill on one thread.
        let threads = if self.config.pin { 1 } else { threads };
        let threads = threads.clamp(1, make.len().max(1));
        if threads == 1 {
            return fill(&mut make.iter());
        }
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (make, fill) = (&make, &fill);
                let share = move || fill(&mut make.iter().skip(t).step_by(threads));
                // A thread that cannot be made (a pids limit) leaves its share to this one.
                if std::thread::Builder::new()
                    .spawn_scoped(scope, share)
                    .is_err()
                {
                    share();
                }
            }
        });
    }

    fn give_back(&self, buffer: AlignedBuffer) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.bytes + buffer.len() <= self.config.budget {
            idle.bytes += buffer.len();
            idle.buffers.push(buffer);
        } else {
            drop(idle);
            self.stats.freed_over_budget.fetch_add(1, Ordering::Relaxed);
            self.release(buffer);
        }
    }

    fn release(&self, buffer: AlignedBuffer) {
        let address = buffer.as_ptr() as usize;
        let by_pinner = self
            .pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address);
        if let (true, Some(pinner)) = (by_pinner, &self.pinner) {
            pinner.unpin(&buffer);
            self.stats
                .pinned_bytes
                .fetch_sub(buffer.len() as u64, Ordering::Relaxed);
        }
        if buffer.is_locked() {
            self.stats
                .pinned_bytes
                .fetch_sub(buffer.len() as u64, Ordering::Relaxed);
        }
        self.stats.live_buffers.fetch_sub(1, Ordering::Relaxed);
        drop(buffer);
    }

    /// The first page-lock failure, if any (the caller warns once).
    pub fn pin_error(&self) -> Option<String> {
        if forked_from(self.pid) {
            return None; // the lock may have been held by a thread that stayed in the parent
        }
        self.pin_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters and the idle count, read now (each counter on its own: not one atomic view).
    pub fn snapshot(&self) -> PoolSnapshot {
        let s = &self.stats;
        // After fork() the idle list's lock may have been held by a parent's thread: the
        // child reports the counters only.
        let (idle_buffers, idle_bytes) = if forked_from(self.pid) {
            (0, 0)
        } else {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            (idle.buffers.len() as u64, idle.bytes as u64)
        };
        PoolSnapshot {
            allocations: s.allocations.load(Ordering::Relaxed),
            reuses: s.reuses.load(Ordering::Relaxed),
            pinned_bytes: s.pinned_bytes.load(Ordering::Relaxed),
            pin_failures: s.pin_failures.load(Ordering::Relaxed),
            freed_over_budget: s.freed_over_budget.load(Ordering::Relaxed),
            live_buffers: s.live_buffers.load(Ordering::Relaxed),
            idle_buffers,
            idle_bytes,
        }
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        if forked_from(self.pid) {
            let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::forget(std::mem::take(&mut idle.buffers));
            return;
        }
        let idle = std::mem::take(
            &mut self
                .idle
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .buffers,
        );
        for buffer in idle {
            self.release(buffer);
        }
    }
}

/// A buffer on loan from a pool; dropping it returns it (or frees it if the pool is gone).
pub struct PooledBuffer {
    buffer: Option<AlignedBuffer>,
    pool: Weak<BufferPool>,
    /// Set when the pool's pinner pinned this buffer: unpinned here if the pool is gone.
    pinned_by: Option<Arc<dyn Pinner>>,
    /// The pool's process (see [`BufferPool`]'s `pid`).
    pid: u32,
}

impl PooledBuffer {
    /// The first byte: 64-byte aligned, page-aligned for large buffers.
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner().as_ptr()
    }

    /// Bytes of the buffer, exactly as asked of [`BufferPool::take`].
    pub fn len(&self) -> usize {
        self.inner().len()
    }

    /// True for a zero-byte buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `mlock` locked the buffer (a [`Pinner`]'s pinning is not reported here).
    pub fn is_locked(&self) -> bool {
        self.inner().is_locked()
    }

    /// The buffer as writable bytes, to fill a batch in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .expect("present until dropped")
            .as_mut_slice()
    }

    /// The buffer as bytes; what a previous loan wrote may still be there.
    pub fn as_slice(&self) -> &[u8] {
        self.inner().as_slice()
    }

    fn inner(&self) -> &AlignedBuffer {
        self.buffer.as_ref().expect("present until dropped")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        if forked_from(self.pid) {
            std::mem::forget(buffer);
            return;
        }
        match self.pool.upgrade() {
            Some(pool) => pool.give_back(buffer),
            // The pool (and its loader) is gone: the buffer dies with its last user,
            // unpinned first if the pool's pinner pinned it.
            None => {
                if let Some(pinner) = self.pinned_by.take() {
                    pinner.unpin(&buffer);
                }
                drop(buffer)
            }
        }
    }
}

impl std::fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuffer")
            .field("ptr", &self.as_ptr())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(budget: usize) -> Arc<BufferPool> {
        BufferPool::new(PoolConfig { budget, pin: false })
    }

    #[test]
    fn returned_buffers_are_reused() {
        let p = pool(1 << 20);
        let a = p.take(4096).unwrap();
        let address = a.as_ptr();
        drop(a);
        let b = p.take(4096).unwrap();
        assert_eq!(b.as_ptr(), address);
        let s = p.snapshot();
        assert_eq!((s.allocations, s.reuses), (1, 1));
    }

    #[test]
    fn large_buffers_sit_on_huge_page_boundaries_and_small_ones_on_pages() {
        let p = pool(64 << 20);
        let big = p.take(HUGE_FROM).unwrap();
        assert_eq!(big.as_ptr() as usize % crate::host::HUGE_PAGE, 0);
        let page = p.take(PAGE_ALIGN_FROM).unwrap();
        assert_eq!(page.as_ptr() as usize % crate::host::page_size(), 0);
        let small = p.take(100).unwrap();
        assert_eq!(
            small.as_ptr() as usize % crate::host::FRAMEWORK_ALIGNMENT,
            0
        );
    }

    #[test]
    fn prefill_stops_at_the_count_and_the_budget() {
        let p = pool(10 * 4096);
        p.prefill(&[4096, 8192], 3, 2);
        let s = p.snapshot();
        assert_eq!(s.allocations, 6, "three of each size: 36 KiB within 40 KiB");
        assert_eq!(s.idle_buffers, 6);
        p.prefill(&[4096, 8192], 3, 1);
        assert_eq!(p.snapshot().allocations, 6, "already idle: nothing more");
        let small = pool(3 * 4096);
        small.prefill(&[4096], 10, 4);
        assert_eq!(small.snapshot().allocations, 3, "the budget bounds it");
        let a = small.take(4096).unwrap();
        assert_eq!(small.snapshot().reuses, 1, "prefilled buffers are taken");
        drop(a);
    }

    #[test]
    fn the_cached_pid_is_this_process() {
        assert_eq!(current_pid(), std::process::id());
        assert!(!forked_from(std::process::id()));
    }

    #[test]
    fn a_buffer_in_use_is_never_handed_out_twice() {
        let p = pool(1 << 20);
        let kept: Vec<_> = (0..10).map(|_| p.take(1000).unwrap()).collect();
        let mut addresses: Vec<_> = kept.iter().map(|b| b.as_ptr() as usize).collect();
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), 10);
        assert_eq!(p.snapshot().allocations, 10);
    }

    #[test]
    fn budget_caps_idle_bytes() {
        let p = pool(2500);
        let held: Vec<_> = (0..4).map(|_| p.take(1000).unwrap()).collect();
        drop(held);
        let s = p.snapshot();
        assert_eq!(s.idle_buffers, 2);
        assert_eq!(s.freed_over_budget, 2);
        assert_eq!(s.live_buffers, 2);
    }

    #[test]
    fn buffers_outliving_the_pool_are_freed_by_their_user() {
        let p = pool(1 << 20);
        let mut b = p.take(128).unwrap();
        drop(p);
        b.as_mut_slice()[0] = 1;
        assert_eq!(b.as_slice()[0], 1);
    }

    #[derive(Default)]
    struct CountingPinner {
        pins: Mutex<Vec<(usize, usize)>>,
        unpins: Mutex<Vec<usize>>,
        refuse_over: usize,
    }

    impl Pinner for CountingPinner {
        fn pin(&self, buffer: &AlignedBuffer) -> Result<(), String> {
            if buffer.len() > self.refuse_over {
                return Err(format!("refused {} bytes", buffer.len()));
            }
            self.pins
                .lock()
                .unwrap()
                .push((buffer.as_ptr() as usize, buffer.len()));
            Ok(())
        }
        fn unpin(&self, buffer: &AlignedBuffer) {
            self.unpins.lock().unwrap().push(buffer.as_ptr() as usize);
        }
    }

    #[test]
    fn a_pinner_pins_once_at_exact_size_and_unpins_on_free() {
        let pinner = Arc::new(CountingPinner {
            refuse_over: 1 << 20,
            ..Default::default()
        });
        let p = BufferPool::with_pinner(
            PoolConfig {
                budget: 3000,
                pin: true,
            },
            pinner.clone(),
        );
        for _ in 0..5 {
            drop(p.take(1000).unwrap()); // reused: pinned once, not per use
        }
        assert_eq!(pinner.pins.lock().unwrap().len(), 1);
        assert_eq!(pinner.pins.lock().unwrap()[0].1, 1000);
        assert_eq!(p.snapshot().pinned_bytes, 1000);
        let held: Vec<_> = (0..4).map(|_| p.take(1000).unwrap()).collect();
        assert!(held.iter().all(|b| !b.is_locked()), "no mlock on top");
        assert_eq!(p.snapshot().pinned_bytes, 4000);
        drop(held); // budget 3000: one is freed, and unpinned before that
        assert_eq!(pinner.unpins.lock().unwrap().len(), 1);
        assert_eq!(p.snapshot().pinned_bytes, 3000);
        let orphan = p.take(1000).unwrap();
        drop(p); // the three idle ones
        assert_eq!(pinner.unpins.lock().unwrap().len(), 3);
        drop(orphan); // outlived its pool: still unpinned
        assert_eq!(pinner.unpins.lock().unwrap().len(), 4);
        let pins = pinner.pins.lock().unwrap();
        assert_eq!(pins.len(), 4);
    }

    #[test]
    fn a_refused_pin_is_counted_and_reported() {
        let pinner = Arc::new(CountingPinner::default());
        let p = BufferPool::with_pinner(
            PoolConfig {
                budget: 1 << 20,
                pin: true,
            },
            pinner.clone(),
        );
        drop(p.take(64).unwrap());
        let s = p.snapshot();
        assert_eq!((s.pin_failures, s.pinned_bytes), (1, 0));
        assert!(p.pin_error().unwrap().contains("refused 64 bytes"));
        drop(p);
        assert!(pinner.unpins.lock().unwrap().is_empty());
    }

    #[test]
    fn pinning_is_counted_or_reported() {
        let p = BufferPool::new(PoolConfig {
            budget: 1 << 20,
            pin: true,
        });
        let b = p.take(8192).unwrap();
        let s = p.snapshot();
        if b.is_locked() {
            assert_eq!(s.pinned_bytes, 8192);
        } else {
            assert_eq!(s.pin_failures, 1);
            assert!(p.pin_error().unwrap().contains("memlock"));
        }
        drop(b);
        drop(p);
    }
}

//! A recycling pool of aligned (optionally page-locked) batch buffers under a byte budget.
//!
//! A [`PooledBuffer`] goes back to its pool when dropped, which happens only when nothing
//! references it any more: the pipeline hands it out behind an `Arc`, and every export
//! (NumPy base, buffer-protocol view, DLPack deleter) holds a clone. So a batch that a user
//! keeps is never reused. The pool keeps at most `budget` bytes of idle buffers; when users
//! keep more batches than that, fresh buffers are allocated and counted, never a live one
//! reused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::host::{memlock_limit, AlignedBuffer, Alignment, HostError};

/// Buffers at least this large are page-aligned (and locked page by page).
const PAGE_ALIGN_FROM: usize = 64 << 10;

/// How the pool allocates.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Idle bytes kept for reuse; returns beyond this are freed.
    pub budget: usize,
    /// Page-lock buffers with `mlock` (falls back to unlocked memory, once reported).
    pub pin: bool,
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
    pub allocations: u64,
    pub reuses: u64,
    pub pinned_bytes: u64,
    pub pin_failures: u64,
    pub freed_over_budget: u64,
    pub live_buffers: u64,
    pub idle_buffers: u64,
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
}

impl BufferPool {
    pub fn new(config: PoolConfig) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            config,
            idle: Mutex::new(Idle {
                buffers: Vec::new(),
                bytes: 0,
            }),
            stats: PoolStats::default(),
            pin_error: Mutex::new(None),
        })
    }

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
            buffer: Some(buffer),
            pool: Arc::downgrade(self),
        })
    }

    fn allocate(&self, len: usize) -> Result<AlignedBuffer, HostError> {
        let align = if len >= PAGE_ALIGN_FROM {
            Alignment::Page
        } else {
            Alignment::Bytes(crate::host::FRAMEWORK_ALIGNMENT)
        };
        let mut buffer = AlignedBuffer::new(len, align)?;
        if self.config.pin {
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
        self.pin_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let s = &self.stats;
        PoolSnapshot {
            allocations: s.allocations.load(Ordering::Relaxed),
            reuses: s.reuses.load(Ordering::Relaxed),
            pinned_bytes: s.pinned_bytes.load(Ordering::Relaxed),
            pin_failures: s.pin_failures.load(Ordering::Relaxed),
            freed_over_budget: s.freed_over_budget.load(Ordering::Relaxed),
            live_buffers: s.live_buffers.load(Ordering::Relaxed),
            idle_buffers: idle.buffers.len() as u64,
            idle_bytes: idle.bytes as u64,
        }
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
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
}

impl PooledBuffer {
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner().as_ptr()
    }

    pub fn len(&self) -> usize {
        self.inner().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_locked(&self) -> bool {
        self.inner().is_locked()
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .expect("present until dropped")
            .as_mut_slice()
    }

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
        match self.pool.upgrade() {
            Some(pool) => pool.give_back(buffer),
            // The pool (and its loader) is gone: the buffer simply dies with its last user.
            None => drop(buffer),
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

//! Host memory: aligned allocations (64 bytes, a page, or a 2 MiB huge page) that can be
//! page-locked, and the queries that budgets need (memlock limit, available RAM).

use std::alloc::{self, Layout as AllocLayout};
use std::ptr::NonNull;

use thiserror::Error;

/// The alignment TensorFlow and XLA require of imported buffers (`EIGEN_MAX_ALIGN_BYTES`).
pub const FRAMEWORK_ALIGNMENT: usize = 64;
/// The size of a transparent huge page on x86-64 and most arm64 kernels.
pub const HUGE_PAGE: usize = 2 << 20;

/// How to align an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// A power of two number of bytes.
    Bytes(usize),
    /// The system page size (4 KiB on most machines).
    Page,
    /// A 2 MiB boundary, with the kernel asked to back it by transparent huge pages.
    Huge,
}

impl Alignment {
    /// The alignment in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Alignment::Bytes(n) => n,
            Alignment::Page => page_size(),
            Alignment::Huge => HUGE_PAGE,
        }
    }
}

/// Why host memory could not be had.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HostError {
    /// An alignment that is not a power of two; holds the alignment asked for, in bytes.
    #[error("align={0} is not a power of two; use 64, 4096, \"page\" or \"huge\"")]
    BadAlignment(usize),
    /// The size rounded up for the alignment (or huge pages) overflows `isize`.
    #[error("{bytes} bytes with alignment {align} cannot be allocated: the size overflows")]
    TooLarge {
        /// Bytes asked for.
        bytes: usize,
        /// Alignment asked for, in bytes.
        align: usize,
    },
    /// The allocator returned null.
    #[error("out of memory allocating {bytes} bytes (available RAM: {available} bytes); reduce the batch size or memory_budget")]
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
        /// RAM available at the time, in bytes (0 when unknown).
        available: u64,
    },
    /// `mlock` refused to page-lock the buffer.
    #[error("mlock of {bytes} bytes failed ({reason}); the memlock limit is {limit}; raise it with `ulimit -l` or pass pin=False")]
    Lock {
        /// Bytes that were to be locked.
        bytes: usize,
        /// The process's memlock limit (`ulimit -l`), as text ("unlimited" or "N bytes").
        limit: String,
        /// The OS error `mlock` returned.
        reason: String,
    },
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it returns -1 on error, handled below.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes, or `None` when unlimited.
pub fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; it is valid for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        None
    } else {
        Some(limit.rlim_cur)
    }
}

/// `MemAvailable` from `/proc/meminfo` in bytes (`None` where the kernel does not say).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// An owned, aligned, zero-initialised block of host memory.
///
/// Large buffers are anonymous memory maps: the kernel hands out zeroed pages on first
/// touch, so a large `empty` costs no resident memory (and no `memset`) until written, and
/// every byte is initialised as Rust requires of a `&[u8]`. Optionally page-locked
/// (`mlock`) so that it can neither be swapped out nor moved, which is what DMA engines need.
pub struct AlignedBuffer {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
    locked: bool,
}

/// Where an [`AlignedBuffer`]'s memory came from, and so how to give it back.
#[derive(Clone, Copy, Debug)]
enum Backing {
    /// Zero bytes: no allocation.
    None,
    /// The global allocator (`alloc_zeroed`), for buffers below [`MAP_FROM`].
    Heap(AllocLayout),
    /// An anonymous map of this many bytes at `ptr`.
    Map(usize),
}

/// Buffers from this size on are anonymous maps (zero pages from the kernel, no `memset`).
const MAP_FROM: usize = 1 << 20;

// SAFETY: the buffer is plain memory owned by this value; moving it between threads is fine.
unsafe impl Send for AlignedBuffer {}
// SAFETY: shared access only hands out the address and length; writes go through `&mut`.
unsafe impl Sync for AlignedBuffer {}

impl AlignedBuffer {
    /// Allocates `len` zeroed bytes at `align`.
    pub fn new(len: usize, align: Alignment) -> Result<AlignedBuffer, HostError> {
        let bytes = align.bytes();
        if !bytes.is_power_of_two() {
            return Err(HostError::BadAlignment(bytes));
        }
        if len == 0 {
            // A dangling but aligned address: what Vec does for zero-sized storage.
            let ptr = NonNull::new(bytes as *mut u8).expect("alignment is non-zero");
            return Ok(AlignedBuffer {
                ptr,
                len,
                backing: Backing::None,
                locked: false,
            });
        }
        // Huge pages only help when whole pages are ours: round the size up.
        let alloc_len = if align == Alignment::Huge {
            len.checked_next_multiple_of(HUGE_PAGE)
        } else {
            Some(len)
        };
        let layout = alloc_len
            .and_then(|n| AllocLayout::from_size_align(n, bytes).ok())
            .ok_or(HostError::TooLarge {
                bytes: len,
                align: bytes,
            })?;
        let out_of_memory = || HostError::OutOfMemory {
            bytes: len,
            available: available_memory().unwrap_or(0),
        };
        let (ptr, backing) = if layout.size() >= MAP_FROM && bytes <= HUGE_PAGE {
            let (ptr, mapped) = map_aligned(layout.size(), bytes).ok_or_else(out_of_memory)?;
            (ptr, Backing::Map(mapped))
        } else {
            // SAFETY: `layout` has a non-zero size (len > 0) and a valid power-of-two alignment.
            let raw = unsafe { alloc::alloc_zeroed(layout) };
            (
                NonNull::new(raw).ok_or_else(out_of_memory)?,
                Backing::Heap(layout),
            )
        };
        if align == Alignment::Huge {
            // SAFETY: the range is exactly our allocation; madvise only changes paging policy
            // and failure (no THP support) is harmless, so its result is ignored.
            unsafe {
                libc::madvise(ptr.as_ptr().cast(), layout.size(), libc::MADV_HUGEPAGE);
            }
        }
        Ok(AlignedBuffer {
            ptr,
            len,
            backing,
            locked: false,
        })
    }

    /// Allocates zeroed memory and touches every page (resident at once, unlike `new`).
    pub fn zeroed(len: usize, align: Alignment) -> Result<AlignedBuffer, HostError> {
        let mut buffer = AlignedBuffer::new(len, align)?;
        buffer.fault_in();
        Ok(buffer)
    }

    /// Faults every page in by writing a zero to one byte a page (and to the last byte): on
    /// a buffer fresh from [`AlignedBuffer::new`], all zero, nothing changes. A write, not a
    /// read: reading a fresh page maps the shared zero page and a later write faults again.
    /// The kernel zeroes the pages it hands out (a huge page at once), so this costs the
    /// faults alone, where `fill(0)` writes every byte a second time: 154 MiB took 21 ms so
    /// on a Xeon VM, and 470 ms with `fill(0)` on huge pages.
    pub fn fault_in(&mut self) {
        let (ptr, len) = (self.ptr.as_ptr(), self.len);
        // Every page the range touches: from the first byte on, then the last one (a buffer
        // that does not start on a page boundary can end on a page the steps skip).
        for offset in (0..len).step_by(4096).chain(len.checked_sub(1)) {
            // SAFETY: `offset < len`, inside our allocation; volatile so the store stays.
            unsafe { std::ptr::write_volatile(ptr.add(offset), 0) };
        }
    }

    /// Page-locks the buffer with `mlock`. Locking faults every page in.
    pub fn lock(&mut self) -> Result<(), HostError> {
        if self.locked || matches!(self.backing, Backing::None) {
            return Ok(());
        }
        // SAFETY: the range is exactly our live allocation.
        let rc = unsafe { libc::mlock(self.ptr.as_ptr().cast(), self.len) };
        if rc != 0 {
            return Err(HostError::Lock {
                bytes: self.len,
                limit: memlock_limit().map_or("unlimited".to_owned(), |l| format!("{l} bytes")),
                reason: std::io::Error::last_os_error().to_string(),
            });
        }
        self.locked = true;
        Ok(())
    }

    /// True once [`AlignedBuffer::lock`] succeeded; the pages stay locked until drop.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The first byte, aligned as asked; dangling (but aligned) when `len == 0`.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Bytes usable from [`AlignedBuffer::as_ptr`] on (the size asked for, not rounded up).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-byte buffer, which owns no allocation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer as bytes: zero where nothing was written yet.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` bytes (or dangling with len 0), and every byte is
        // initialised: `alloc_zeroed` or a fresh anonymous map (zero pages) made them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The buffer as writable bytes, to fill in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        if matches!(self.backing, Backing::None) {
            return;
        }
        if self.locked {
            // SAFETY: the range was locked by us and is still allocated.
            unsafe { libc::munlock(self.ptr.as_ptr().cast(), self.len) };
        }
        match self.backing {
            Backing::None => {}
            // SAFETY: allocated in `new` with exactly this layout, freed once here.
            Backing::Heap(layout) => unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) },
            // SAFETY: `map_aligned` mapped exactly these `n` bytes at `ptr`; unmapped once.
            Backing::Map(n) => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), n);
            },
        }
    }
}

/// An anonymous, private, read-write map of at least `len` bytes aligned to `align` (a
/// power of two up to [`HUGE_PAGE`]), and its length (`len` rounded up to whole pages):
/// `mmap` gives page alignment, so a larger one maps `align` bytes more and unmaps the
/// ends. `None` when the kernel refuses.
fn map_aligned(len: usize, align: usize) -> Option<(NonNull<u8>, usize)> {
    let page = page_size();
    let keep = len.checked_next_multiple_of(page)?;
    let extra = if align > page { align } else { 0 };
    let map_len = keep.checked_add(extra)?;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks; no file, no aliasing.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(align.max(page));
    let head = aligned - start;
    let tail = map_len - head - keep;
    // SAFETY: both ranges are whole pages inside the map just made (`start`, `aligned` and
    // `keep` are page multiples), outside the `keep` bytes kept.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + keep) as *mut libc::c_void, tail);
        }
    }
    Some((NonNull::new(aligned as *mut u8)?, keep))
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuffer")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("locked", &self.locked)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::alignment_of;

    #[test]
    fn alignments_are_honoured() {
        for align in [
            Alignment::Bytes(64),
            Alignment::Bytes(256),
            Alignment::Page,
            Alignment::Huge,
        ] {
            let buffer = AlignedBuffer::new(1000, align).unwrap();
            assert_eq!(buffer.as_ptr() as usize % align.bytes(), 0, "{align:?}");
            assert_eq!(buffer.len(), 1000);
        }
    }

    #[test]
    fn zero_length_is_aligned_and_free() {
        let buffer = AlignedBuffer::new(0, Alignment::Bytes(64)).unwrap();
        assert!(alignment_of(buffer.as_ptr() as usize) >= 64);
        assert!(buffer.as_slice().is_empty());
    }

    #[test]
    fn bad_alignment_is_named() {
        let err = AlignedBuffer::new(10, Alignment::Bytes(48)).unwrap_err();
        assert_eq!(err, HostError::BadAlignment(48));
        assert!(err.to_string().contains("power of two"));
    }

    #[test]
    fn absurd_sizes_fail_cleanly() {
        assert!(AlignedBuffer::new(usize::MAX - 10, Alignment::Bytes(64)).is_err());
    }

    #[test]
    fn zeroed_is_zero_and_writable() {
        let mut buffer = AlignedBuffer::zeroed(4096, Alignment::Page).unwrap();
        assert!(buffer.as_slice().iter().all(|&b| b == 0));
        buffer.as_mut_slice()[4095] = 7;
        assert_eq!(buffer.as_slice()[4095], 7);
    }

    #[test]
    fn large_buffers_are_zeroed_maps_of_every_alignment() {
        for (len, align) in [
            ((1 << 20) + 100, Alignment::Bytes(64)),
            (3 << 20, Alignment::Page),
            ((9 << 20) + 1, Alignment::Huge),
        ] {
            let mut buffer = AlignedBuffer::new(len, align).unwrap();
            assert!(
                matches!(buffer.backing, Backing::Map(n) if n >= len),
                "{align:?}"
            );
            assert_eq!(buffer.as_ptr() as usize % align.bytes(), 0, "{align:?}");
            assert!(buffer.as_slice().iter().all(|&b| b == 0), "{align:?}");
            buffer.fault_in();
            assert!(buffer.as_slice().iter().all(|&b| b == 0), "still zero");
            buffer.as_mut_slice()[len - 1] = 9;
            assert_eq!(buffer.as_slice()[len - 1], 9);
        }
        let small = AlignedBuffer::new(5000, Alignment::Bytes(256)).unwrap();
        assert!(matches!(small.backing, Backing::Heap(_)));
        assert!(small.as_slice().iter().all(|&b| b == 0));
    }

    #[test]
    fn fault_in_makes_every_page_resident() {
        let len = 8 << 20;
        let mut buffer = AlignedBuffer::new(len, Alignment::Huge).unwrap();
        buffer.fault_in();
        let pages = len.div_ceil(4096);
        let mut resident = vec![0u8; pages];
        // SAFETY: the range is our live, page-aligned allocation; `resident` has a byte a page.
        let rc = unsafe { libc::mincore(buffer.as_ptr() as *mut _, len, resident.as_mut_ptr()) };
        assert_eq!(rc, 0);
        assert!(resident.iter().all(|&r| r & 1 == 1), "a page was left out");
    }

    #[test]
    fn lock_small_buffer_or_report_limit() {
        let mut buffer = AlignedBuffer::new(4096, Alignment::Page).unwrap();
        match buffer.lock() {
            Ok(()) => assert!(buffer.is_locked()),
            Err(HostError::Lock { limit, .. }) => assert!(!limit.is_empty()),
            Err(other) => panic!("unexpected {other}"),
        }
    }
}

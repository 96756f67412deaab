//! Memory maps of files that survive the file changing under them.
//!
//! Two hazards come with mapping a file someone else may rewrite (`np.save` to the path a
//! training run reads truncates it first):
//!
//! - **Writes through zero-copy exports.** PyTorch tensors are always writable, and a write
//!   to a read-only mapping kills the process. Maps are therefore private and writable
//!   (`MAP_PRIVATE`, copy-on-write): a write lands in this process's own copy of the page and
//!   the file never changes. `MAP_NORESERVE` keeps the kernel from reserving swap for the
//!   whole file up front, so files larger than RAM still open lazily; where the kernel refuses
//!   such a map (strict overcommit), the file is mapped shared read-only instead and exports
//!   that could write copy (see [`FileMap::is_private`]).
//! - **Truncation.** Touching a page past the new end of file raises `SIGBUS`, which kills the
//!   process. A process-wide `SIGBUS` handler looks the faulting address up in a fixed table
//!   of live maps (lock-free, as a signal handler needs) and, for a fault inside one, maps
//!   anonymous zero pages over the rest of that map and returns: the read retries and sees
//!   zeros. The map is marked changed, so zerofeed's own reads ([`FileMap::check`]) report
//!   the change instead of using those zeros. Faults anywhere else go to the handler that was
//!   installed before (or the default action), exactly as without zerofeed.
//!
//! The JVM handles a fault in a mapped buffer the same way (it turns it into an exception).
//! `mmap` is not on POSIX's list of async-signal-safe functions, but on Linux it is a plain
//! system call with no user-space locks, which is what the handler relies on.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

/// The largest piece one `MADV_WILLNEED` call asks for: the kernel's default read-ahead
/// window (`read_ahead_kb` = 128), which every device reads in full per request.
pub const WILLNEED_CHUNK: usize = 128 << 10;

/// Live maps the `SIGBUS` handler knows about; more open at once are mapped unprotected.
const SLOTS: usize = 4096;

/// One live map. `generation` is a sequence lock: odd while the slot is being written, bumped
/// on every change, so the handler can tell that what it read belongs to one map.
struct Slot {
    generation: AtomicUsize,
    start: AtomicUsize,
    end: AtomicUsize,
    changed: AtomicPtr<AtomicBool>,
}

#[allow(clippy::declare_interior_mutable_const)] // the array initializer needs a const item
const EMPTY_SLOT: Slot = Slot {
    generation: AtomicUsize::new(0),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    changed: AtomicPtr::new(std::ptr::null_mut()),
};

static TABLE: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
/// The `SIGBUS` action before ours, for faults that are not in a map of ours.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

/// What a map watches: its file's identity when opened, and whether it changed since.
#[derive(Debug)]
pub struct MapState {
    path: PathBuf,
    file: File,
    changed: AtomicBool,
    size: u64,
    modified: (i64, i64),
}

/// The mapped file changed (truncated, rewritten) after it was opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{}: the file changed after it was opened ({reason}); its mapped bytes are no longer the array that was opened: reopen it, and write new data to a new file and rename it into place", path.display())]
pub struct SourceChanged {
    /// The file.
    pub path: PathBuf,
    /// What was seen: the new size, a new modification time, or a fault past its end.
    pub reason: String,
}

/// A whole file mapped into memory, private copy-on-write when the kernel allows it.
#[derive(Debug)]
pub struct FileMap {
    ptr: Option<NonNull<u8>>,
    len: usize,
    private: bool,
    slot: Option<usize>,
    state: Arc<MapState>,
}

// SAFETY: the map is plain memory owned by this value; shared references only read it (or
// read atomics), and unmapping needs `&mut` (Drop).
unsafe impl Send for FileMap {}
// SAFETY: as above.
unsafe impl Sync for FileMap {}

fn modified(meta: &std::fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.mtime(), meta.mtime_nsec())
}

impl FileMap {
    /// Maps all of `file` (opened for reading), watched for changes.
    pub fn new(file: File, path: &Path) -> io::Result<FileMap> {
        let meta = file.metadata()?;
        let len = usize::try_from(meta.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to map"))?;
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(&file);
        let state = Arc::new(MapState {
            path: path.to_path_buf(),
            file,
            changed: AtomicBool::new(false),
            size: meta.len(),
            modified: modified(&meta),
        });
        if len == 0 {
            return Ok(FileMap {
                ptr: None,
                len,
                private: true,
                slot: None,
                state,
            });
        }
        install_handler();
        let map = |prot, flags| {
            // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED) of an open file.
            let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
            (ptr != libc::MAP_FAILED).then_some(ptr)
        };
        let private = map(
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        );
        let (ptr, private) = match private {
            Some(ptr) => (ptr, true),
            None => match map(libc::PROT_READ, libc::MAP_SHARED) {
                Some(ptr) => (ptr, false),
                None => return Err(io::Error::last_os_error()),
            },
        };
        let ptr = NonNull::new(ptr.cast::<u8>());
        let start = ptr.map_or(0, |p| p.as_ptr() as usize);
        let slot = register(start, start + len, &state.changed);
        Ok(FileMap {
            ptr,
            len,
            private,
            slot,
            state,
        })
    }

    /// The file's bytes as mapped.
    pub fn bytes(&self) -> &[u8] {
        match self.ptr {
            // SAFETY: `len` mapped bytes from `ptr`, alive until drop. Another process may
            // change them (the caveat of every file map); truncation is defused above.
            Some(ptr) => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.len) },
            None => &[],
        }
    }

    /// True when writes through the map land in private copy-on-write pages (the file never
    /// changes); false for the shared read-only fallback, where a write would be a crash.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// What the map watches (shared with views of it).
    pub fn state(&self) -> &Arc<MapState> {
        &self.state
    }

    /// Fails once the file changed since it was opened (sticky: once changed, always).
    pub fn check(&self) -> Result<(), SourceChanged> {
        self.state.check()
    }

    /// Asks the kernel to start reading `offset..offset + len` of the map now
    /// (`MADV_WILLNEED`, clipped; a hint that never waits for the read). Issued in pieces of
    /// [`WILLNEED_CHUNK`]: the kernel cuts each request to the device's read-ahead window
    /// (`force_page_cache_ra` reads at most `max(io_pages, ra_pages)` pages), which is
    /// 128 KiB on a default block device, so one call for a 192 KiB image reads only part.
    pub fn will_need(&self, offset: usize, len: usize) -> io::Result<()> {
        let end = offset.saturating_add(len).min(self.len);
        let mut at = offset.min(end);
        while at < end {
            let piece = (end - at).min(WILLNEED_CHUNK);
            self.advise(libc::MADV_WILLNEED, at, piece)?;
            at += piece;
        }
        Ok(())
    }

    /// `madvise(advice)` over `offset..offset + len` of the map (clipped; a hint).
    pub fn advise(&self, advice: libc::c_int, offset: usize, len: usize) -> io::Result<()> {
        let Some(ptr) = self.ptr else { return Ok(()) };
        let page = PAGE.load(Ordering::Relaxed);
        let start = offset.min(self.len) / page * page;
        let end = offset.saturating_add(len).min(self.len);
        if end <= start {
            return Ok(());
        }
        // SAFETY: the range lies inside our mapping; madvise with these advices only hints.
        let rc = unsafe { libc::madvise(ptr.as_ptr().add(start).cast(), end - start, advice) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl MapState {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn changed(&self, reason: String) -> SourceChanged {
        self.changed.store(true, Ordering::Release);
        SourceChanged {
            path: self.path.clone(),
            reason,
        }
    }

    /// Fails once the file changed since it was opened: a fault past its end, another
    /// size or modification time (one `fstat`, cheap enough for every batch). Sticky.
    pub fn check(&self) -> Result<(), SourceChanged> {
        if self.changed.load(Ordering::Acquire) {
            return Err(self.changed("its bytes vanished or changed under the map".into()));
        }
        let meta = self
            .file
            .metadata()
            .map_err(|e| self.changed(format!("cannot stat it: {e}")))?;
        if meta.len() != self.size {
            return Err(self.changed(format!("{} bytes, then {}", self.size, meta.len())));
        }
        if modified(&meta) != self.modified {
            return Err(self.changed("it was written to".into()));
        }
        Ok(())
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            unregister(slot);
        }
        if let Some(ptr) = self.ptr.take() {
            // SAFETY: our own mapping of `len` bytes; nothing refers to it any more (views
            // hold the FileMap alive through their keep-alive).
            unsafe { libc::munmap(ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// The bytes of a file from `offset` on, in a [`FileMap`] (a view of part of a file).
#[derive(Debug)]
pub struct FileRegion {
    map: FileMap,
    offset: usize,
}

impl FileRegion {
    /// Maps all of `path` and keeps the bytes from `offset` on (clipped to the end).
    pub fn open(path: &Path, offset: usize) -> io::Result<FileRegion> {
        let file = File::open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let map = FileMap::new(file, path)?;
        let offset = offset.min(map.len);
        Ok(FileRegion { map, offset })
    }

    /// The region's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map.bytes()[self.offset..]
    }

    /// Asks the kernel to start reading `range` of [`FileRegion::bytes`] now
    /// ([`FileMap::will_need`]; clipped to the region). A hint.
    pub fn advise_willneed(&self, range: Range<usize>) -> io::Result<()> {
        let len = self.map.len - self.offset;
        let start = range.start.min(len);
        let end = range.end.clamp(start, len);
        self.map.will_need(self.offset + start, end - start)
    }

    /// Tells the kernel that the region will be read in random order (`MADV_RANDOM`):
    /// no read-around of 32 pages per fault, which on a cold file costs more than the
    /// windows read. A hint.
    pub fn advise_random(&self) -> io::Result<()> {
        self.map.advise(libc::MADV_RANDOM, self.offset, usize::MAX)
    }
}

// SAFETY: the region is inside the FileMap this value owns, alive until it drops; writes are
// private exactly when the map is (MAP_PRIVATE).
unsafe impl crate::view::OwnedBytes for FileRegion {
    fn bytes_ptr(&self) -> *const u8 {
        self.bytes().as_ptr()
    }
    fn bytes_len(&self) -> usize {
        self.bytes().len()
    }
    fn writes_are_private(&self) -> bool {
        self.map.is_private()
    }
    fn watch(&self) -> Option<Arc<MapState>> {
        Some(self.map.state().clone())
    }
}

fn register(start: usize, end: usize, changed: &AtomicBool) -> Option<usize> {
    for (index, slot) in TABLE.iter().enumerate() {
        // Claim a free slot (even generation, start 0) by making its generation odd.
        let generation = slot.generation.load(Ordering::Acquire);
        if generation % 2 == 1 || slot.start.load(Ordering::Acquire) != 0 {
            continue;
        }
        if slot
            .generation
            .compare_exchange(
                generation,
                generation + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            continue;
        }
        slot.changed.store(
            changed as *const AtomicBool as *mut AtomicBool,
            Ordering::Release,
        );
        slot.end.store(end, Ordering::Release);
        slot.start.store(start, Ordering::Release);
        slot.generation.store(generation + 2, Ordering::Release);
        return Some(index);
    }
    None
}

fn unregister(index: usize) {
    let slot = &TABLE[index];
    let generation = slot.generation.fetch_add(1, Ordering::AcqRel); // odd: being written
    slot.start.store(0, Ordering::Release);
    slot.changed.store(std::ptr::null_mut(), Ordering::Release);
    slot.end.store(0, Ordering::Release);
    slot.generation.store(generation + 2, Ordering::Release);
}

/// Reads a slot consistently: `(start, end, changed)` of one map, or None while it is being
/// written or when it changed under the reader.
fn read_slot(slot: &Slot) -> Option<(usize, usize, *mut AtomicBool)> {
    let before = slot.generation.load(Ordering::Acquire);
    if before % 2 == 1 {
        return None;
    }
    let start = slot.start.load(Ordering::Acquire);
    let end = slot.end.load(Ordering::Acquire);
    let changed = slot.changed.load(Ordering::Acquire);
    let after = slot.generation.load(Ordering::Acquire);
    (before == after && start != 0).then_some((start, end, changed))
}

fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: sigaction is plain data; zeroed is a valid empty set of flags and masks.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        let previous = Box::into_raw(Box::new(
            // SAFETY: as above.
            unsafe { std::mem::zeroed::<libc::sigaction>() },
        ));
        // SAFETY: installs a valid handler; `previous` receives the old action, kept forever.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, previous) };
        if rc == 0 {
            PREVIOUS.store(previous, Ordering::Release);
        }
    });
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (address, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
    // Only faults the kernel raised (si_code > 0) carry a faulting address; a SIGBUS sent by
    // kill() or raise() (a handler installed after ours re-raising it) is not ours to handle.
    if code > 0 {
        let page = PAGE.load(Ordering::Relaxed);
        for slot in &TABLE {
            let Some((start, end, changed)) = read_slot(slot) else {
                continue;
            };
            if address < start || address >= end {
                continue;
            }
            let from = address / page * page;
            let len = end.div_ceil(page) * page - from;
            // SAFETY: replaces the rest of our own live mapping (its slot was read whole and
            // unchanged, so it is registered and not yet unmapped) with zero pages.
            let zeros = unsafe {
                libc::mmap(
                    from as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeros != libc::MAP_FAILED {
                // SAFETY: the flag lives in the MapState that the registered FileMap keeps.
                if let Some(flag) = unsafe { changed.as_ref() } {
                    flag.store(true, Ordering::Release);
                }
                return;
            }
        }
    }
    forward(signal, info, context);
}

/// Hands a fault that is not ours to the previous handler, or to the default action.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: written once at install and never freed.
    let Some(previous) = (unsafe { previous.as_ref() }) else {
        return;
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_IGN {
        return;
    }
    if handler == libc::SIG_DFL {
        // Restore it. A fault then runs its instruction again and gets the default action (a
        // core dump), as if we had never been here; a signal that was sent (kill, raise) is
        // sent again, since returning would swallow it.
        // SAFETY: reinstates the saved action; raise is async-signal-safe.
        unsafe {
            libc::sigaction(signal, previous, std::ptr::null_mut());
            // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
            if (*info).si_code <= 0 {
                libc::raise(signal);
            }
        }
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed as an SA_SIGINFO handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: the previous handler was installed as a plain handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_truncated_file_reads_zeros_and_reports_the_change() {
        let dir = std::env::temp_dir().join(format!("zf-filemap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shrinks.bin");
        let page = PAGE.load(Ordering::Relaxed).max(4096);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![7u8; 4 * page])
            .unwrap();
        let map = FileMap::new(File::open(&path).unwrap(), &path).unwrap();
        assert!(map.check().is_ok());
        assert_eq!(map.bytes()[3 * page], 7);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(page as u64)
            .unwrap();
        // Past the new end: without the handler this read is a SIGBUS.
        // SAFETY: a volatile read of mapped memory, to defeat caching of the earlier read.
        let after = unsafe { std::ptr::read_volatile(map.bytes().as_ptr().add(3 * page + 1)) };
        assert_eq!(after, 0);
        let err = map.check().unwrap_err();
        assert!(err.to_string().contains("shrinks.bin"), "{err}");
        assert!(map.check().is_err(), "the change is sticky");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_land_in_a_private_copy() {
        let dir = std::env::temp_dir().join(format!("zf-filemap-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cow.bin");
        std::fs::write(&path, [1u8; 64]).unwrap();
        let map = FileMap::new(File::open(&path).unwrap(), &path).unwrap();
        assert!(map.is_private());
        let first = map.ptr.unwrap().as_ptr();
        // SAFETY: a private writable mapping; the write goes to this process's copy.
        unsafe { first.write_volatile(9) };
        assert_eq!(map.bytes()[0], 9);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [1u8; 64],
            "the file never changes"
        );
        assert!(
            map.check().is_ok(),
            "private writes are not changes of the file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

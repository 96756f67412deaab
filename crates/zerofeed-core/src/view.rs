//! The one view type: an address, a [`Layout`], a dtype, a device and a keep-alive.
//!
//! Everything that reads array memory (pipeline sources, exports, copies, uploads) takes a
//! [`View`]. A view can only come from raw parts through [`View::from_raw_parts`], whose
//! caller promises that the memory is there; every other constructor takes something that
//! owns its bytes ([`OwnedBytes`]) and checks the layout against them. Indexing, transposing
//! and reshaping derive new views that share the keep-alive, so no view outlives its memory.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use thiserror::Error;

use crate::dlpack::{self, DLDevice, DLManagedTensor, DLManagedTensorVersioned, ExportSpec};
use crate::dtype::DType;
use crate::exchange::ViewFacts;
use crate::gather::gather;
use crate::host::{AlignedBuffer, Alignment, HostError};
use crate::layout::{IndexItem, Layout, LayoutError};
use crate::source::{MapState, SourceChanged};

/// Whatever keeps a view's memory alive: a Python object, a DLPack handle, a Rust buffer.
pub type KeepAlive = Arc<dyn Any + Send + Sync>;

/// Why a view could not be made or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The layout's item size is not the dtype's.
    #[error("the layout has {layout}-byte items but {dtype} has {}", dtype.itemsize())]
    ItemSize {
        /// The layout's item size.
        layout: usize,
        /// The dtype.
        dtype: DType,
    },
    /// A non-empty view at address 0.
    #[error("the data pointer is null but the view holds {size} elements")]
    NullAddress {
        /// Elements the layout addresses.
        size: usize,
    },
    /// The layout reaches below address 0 or past the end of the address space.
    #[error(
        "the view's bytes [{low}, {high}) relative to address {address:#x} wrap the address space"
    )]
    AddressWraps {
        /// The first element's address.
        address: usize,
        /// Lowest byte offset the layout touches.
        low: isize,
        /// One past the highest byte offset.
        high: isize,
    },
    /// The owned bytes are fewer than the layout addresses.
    #[error("the buffer holds {available} bytes but the layout needs {needed}")]
    TooSmall {
        /// Bytes available.
        available: usize,
        /// Bytes the layout addresses.
        needed: usize,
    },
    /// A derived view would leave the parent's bytes.
    #[error("the sample at byte offset {offset} with layout {shape:?} leaves the view's bytes")]
    OutOfBounds {
        /// Byte offset of the sample's first element from the view's.
        offset: isize,
        /// The sample's shape.
        shape: Vec<usize>,
    },
    /// The host cannot read the memory.
    #[error(
        "{what} needs host memory but the view is on {device}; move it with a GPU framework first"
    )]
    NotOnHost {
        /// What was attempted.
        what: &'static str,
        /// The device name.
        device: String,
    },
    /// A writable view of read-only memory was asked for.
    #[error("readonly=False but the source is read-only (e.g. np.load(..., mmap_mode='r')); open it writable or leave readonly=None")]
    ReadOnly,
    /// A dtype reinterpretation with another item size.
    #[error("dtype={wanted} has {} bytes per item but the buffer holds {}-byte items", wanted.itemsize(), found.itemsize())]
    DTypeSize {
        /// The dtype asked for.
        wanted: DType,
        /// The buffer's own dtype.
        found: DType,
    },
    /// Shape or index arithmetic failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Allocating a copy failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The DLPack export failed.
    #[error(transparent)]
    Dlpack(#[from] dlpack::DlpackError),
    /// A file could not be opened or mapped.
    #[error("{}: cannot map: {source}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file under a memory-mapped view changed after it was opened.
    #[error(transparent)]
    SourceChanged(#[from] SourceChanged),
}

/// Copies made and bytes copied: one process-wide counter ([`process_copies`]) plus, when a
/// view carries one, the counter of whoever made it (a loader), so that loaders running in
/// other threads never leak into each other's figures.
#[derive(Debug, Default)]
pub struct CopyCounter {
    copies: AtomicU64,
    bytes: AtomicU64,
}

impl CopyCounter {
    /// Counts one copy of `bytes` bytes.
    pub fn record(&self, bytes: usize) {
        self.copies.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `(copies, bytes)` so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.copies.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

static PROCESS_COPIES: CopyCounter = CopyCounter {
    copies: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
};

/// Every copy any view in this process made (`zerofeed.copy_stats()`).
pub fn process_copies() -> &'static CopyCounter {
    &PROCESS_COPIES
}

/// Memory that owns its bytes at a stable address (moving the owner does not move them).
///
/// # Safety
/// Implementors promise that `as_ptr()..as_ptr() + len()` is readable (and, unless the
/// bytes are read-only by nature, writable through views made writable) for as long as the
/// value lives, and that the address does not change when the value is moved.
pub unsafe trait OwnedBytes: Any + Send + Sync {
    /// The first byte.
    fn bytes_ptr(&self) -> *const u8;
    /// How many bytes there are.
    fn bytes_len(&self) -> usize;
    /// True when writing to the bytes is harmless even where views are read-only: the
    /// writes land in this process's private copy-on-write pages (a private file map).
    /// Implementors must only say so when a write can neither crash nor reach shared data.
    fn writes_are_private(&self) -> bool {
        false
    }
    /// The file whose change would make the bytes stale, for memory maps.
    fn watch(&self) -> Option<Arc<MapState>> {
        None
    }
}

// SAFETY: an AlignedBuffer owns a heap block of `len()` bytes until dropped.
unsafe impl OwnedBytes for AlignedBuffer {
    fn bytes_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_len(&self) -> usize {
        self.len()
    }
}

// SAFETY: a PooledBuffer owns its AlignedBuffer until dropped (then returns it to the pool).
unsafe impl OwnedBytes for crate::pool::PooledBuffer {
    fn bytes_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_len(&self) -> usize {
        self.len()
    }
}

// SAFETY: the mapping lives as long as the NpyFile; `data()` is inside it. Its writes are
// private exactly when the map is `MAP_PRIVATE` (FileMap::is_private).
unsafe impl OwnedBytes for crate::source::NpyFile {
    fn bytes_ptr(&self) -> *const u8 {
        self.data_ptr()
    }
    fn bytes_len(&self) -> usize {
        self.data().len()
    }
    fn writes_are_private(&self) -> bool {
        self.writes_are_private()
    }
    fn watch(&self) -> Option<Arc<MapState>> {
        Some(self.watch().clone())
    }
}

// SAFETY: a Vec's heap block does not move when the Vec value moves, and is never resized
// through the view.
unsafe impl OwnedBytes for Vec<u8> {
    fn bytes_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_len(&self) -> usize {
        self.len()
    }
}

/// A zero-copy N-d strided view of someone's memory. Cheap to clone (the keep-alive is an `Arc`).
#[derive(Clone)]
pub struct View {
    address: usize,
    layout: Layout,
    dtype: DType,
    device: DLDevice,
    readonly: bool,
    /// `layout.byte_span()`, kept because every sample read checks against it.
    span: (isize, isize),
    /// Writes cannot crash or reach shared data (private copy-on-write file pages), so a
    /// read-only view may still be shared with consumers that ignore read-only flags.
    private_writes: bool,
    keep: KeepAlive,
    copies: Option<Arc<CopyCounter>>,
    /// The file under a memory map, checked by reads that zerofeed makes itself.
    watch: Option<Arc<MapState>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("address", &format_args!("{:#x}", self.address))
            .field("shape", &self.layout.shape())
            .field("strides", &self.layout.strides())
            .field("dtype", &self.dtype)
            .field("device", &self.device.name())
            .field("readonly", &self.readonly)
            .finish()
    }
}

/// What the layout touches, checked not to wrap: `(address + low, address + high)`.
fn checked_extent(address: usize, layout: &Layout) -> Result<(usize, usize), ViewError> {
    let (low, high) = layout.byte_span()?;
    let wraps = || ViewError::AddressWraps { address, low, high };
    let start = address.checked_add_signed(low).ok_or_else(wraps)?;
    let end = address.checked_add_signed(high).ok_or_else(wraps)?;
    Ok((start, end))
}

impl View {
    /// The one constructor from raw parts.
    ///
    /// Checks what can be checked: the item size matches the dtype, a non-empty view has a
    /// non-null address, and the bytes the layout addresses do not wrap the address space.
    ///
    /// # Safety
    /// For as long as `keep` is alive, every byte that `layout` addresses from `address` must
    /// be memory on `device` that stays allocated; readable when `device` is host-accessible,
    /// and writable through the view too unless `readonly` is true. Nobody may free or
    /// reuse that memory while any clone of `keep` lives.
    pub unsafe fn from_raw_parts(
        address: usize,
        layout: Layout,
        dtype: DType,
        device: DLDevice,
        readonly: bool,
        keep: KeepAlive,
    ) -> Result<View, ViewError> {
        if layout.itemsize() != dtype.itemsize() {
            return Err(ViewError::ItemSize {
                layout: layout.itemsize(),
                dtype,
            });
        }
        if layout.size() > 0 {
            if address == 0 {
                return Err(ViewError::NullAddress {
                    size: layout.size(),
                });
            }
            checked_extent(address, &layout)?;
        }
        let span = layout.byte_span()?;
        Ok(View {
            address,
            span,
            layout,
            dtype,
            device,
            readonly,
            private_writes: false,
            keep,
            copies: None,
            watch: None,
        })
    }

    /// A C-contiguous view of `shape` x `dtype` over the first bytes of `owner`, on `device`.
    pub fn from_owned<B: OwnedBytes>(
        owner: B,
        shape: &[usize],
        dtype: DType,
        device: DLDevice,
        readonly: bool,
    ) -> Result<View, ViewError> {
        let layout = Layout::c_contiguous(shape, dtype.itemsize())?;
        View::over_owned(owner, layout, dtype, device, readonly)
    }

    /// A view of `layout` (any strides, first element at the owner's first byte plus the
    /// layout's lowest offset) over `owner`'s bytes, after checking they hold it.
    pub fn over_owned<B: OwnedBytes>(
        owner: B,
        layout: Layout,
        dtype: DType,
        device: DLDevice,
        readonly: bool,
    ) -> Result<View, ViewError> {
        let (low, high) = layout.byte_span()?;
        let needed = (high - low) as usize;
        if needed > owner.bytes_len() {
            return Err(ViewError::TooSmall {
                available: owner.bytes_len(),
                needed,
            });
        }
        let address = (owner.bytes_ptr() as usize).wrapping_sub(low as usize);
        let private_writes = owner.writes_are_private();
        let watch = owner.watch();
        // SAFETY: `owner` keeps `bytes_len()` bytes from `bytes_ptr()` alive (its trait
        // contract) and the layout's bytes `[address + low, address + high)` lie inside them.
        let view = unsafe {
            View::from_raw_parts(
                address,
                layout,
                dtype,
                device,
                readonly,
                Arc::new(owner) as KeepAlive,
            )
        }?;
        Ok(View {
            private_writes,
            watch,
            ..view
        })
    }

    /// Fresh aligned host memory, writable, its contents unspecified.
    pub fn empty(shape: &[usize], dtype: DType, align: Alignment) -> Result<View, ViewError> {
        let layout = Layout::c_contiguous(shape, dtype.itemsize())?;
        let buffer = AlignedBuffer::new(layout.nbytes(), align)?;
        View::over_owned(buffer, layout, dtype, DLDevice::CPU, false)
    }

    /// The array of a `.npy` file (read-only; private copy-on-write pages, watched).
    pub fn from_npy(file: crate::source::NpyFile) -> Result<View, ViewError> {
        let header = file.header();
        let dtype = header.dtype;
        let layout = Layout::new(
            header.shape.clone(),
            header.byte_strides(),
            dtype.itemsize(),
        )?;
        View::over_owned(file, layout, dtype, DLDevice::CPU, true)
    }

    /// A read-only view of `layout` x `dtype` whose first element is at byte `first_offset`
    /// of the file at `path`, over zerofeed's own private copy-on-write map of it (for
    /// NumPy's read-only `np.memmap`s, so that writers can share them safely).
    pub fn of_file(
        path: &std::path::Path,
        first_offset: usize,
        layout: Layout,
        dtype: DType,
    ) -> Result<View, ViewError> {
        let (low, _) = layout.byte_span()?;
        let start = first_offset
            .checked_add_signed(low)
            .ok_or(ViewError::OutOfBounds {
                offset: low,
                shape: layout.shape().to_vec(),
            })?;
        let region =
            crate::source::FileRegion::open(path, start).map_err(|source| ViewError::File {
                path: path.to_path_buf(),
                source,
            })?;
        View::over_owned(region, layout, dtype, DLDevice::CPU, true)
    }

    /// Address of the first element (`[0, 0, ...]`).
    pub fn address(&self) -> usize {
        self.address
    }

    /// Shape, byte strides and item size.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Where the memory is.
    pub fn device(&self) -> DLDevice {
        self.device
    }

    /// True when writes through this view are not allowed.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// True when a write to the memory can neither crash nor reach shared data, even if the
    /// view is read-only (private copy-on-write pages of a file map).
    pub fn writes_are_private(&self) -> bool {
        self.private_writes
    }

    /// Fails when the file under this memory-mapped view changed since it was opened (a
    /// no-op for other memory). Zerofeed's own reads (copies, loader batches) call it.
    pub fn check(&self) -> Result<(), ViewError> {
        match &self.watch {
            Some(watch) => Ok(watch.check()?),
            None => Ok(()),
        }
    }

    /// The keep-alive, shared by every view derived from this one.
    pub fn keep(&self) -> &KeepAlive {
        &self.keep
    }

    /// The keep-alive as a concrete type, when it is one (e.g. a CUDA device allocation).
    pub fn owner<T: Any>(&self) -> Option<&T> {
        self.keep.downcast_ref::<T>()
    }

    /// The same view; copies it makes are also counted in `counter`.
    pub fn with_copy_counter(mut self, counter: Arc<CopyCounter>) -> View {
        self.copies = Some(counter);
        self
    }

    /// What [`crate::exchange::plan`] needs to know.
    pub fn facts(&self) -> ViewFacts<'_> {
        ViewFacts {
            address: self.address,
            layout: &self.layout,
            dtype: self.dtype,
            device: self.device,
            readonly: self.readonly,
            private_writes: self.private_writes,
        }
    }

    fn derive(&self, layout: Layout, byte_offset: isize) -> View {
        View {
            // A derived layout addresses a subset of the parent's bytes (the layout module
            // guarantees it), so the address cannot wrap where the parent's did not.
            address: self.address.wrapping_add_signed(byte_offset),
            // A valid layout always has a span; (0, 0) would only make `sample` refuse.
            span: layout.byte_span().unwrap_or((0, 0)),
            layout,
            ..self.clone()
        }
    }

    /// `v[items]`: integers, slices, `...` and new axes; always a view.
    pub fn index(&self, items: &[IndexItem]) -> Result<View, ViewError> {
        let indexed = self.layout.index(items)?;
        Ok(self.derive(indexed.layout, indexed.byte_offset))
    }

    /// Permutes the axes (`None`: reverses them).
    pub fn transpose(&self, axes: Option<&[i64]>) -> Result<View, ViewError> {
        Ok(self.derive(self.layout.transpose(axes)?, 0))
    }

    /// A new shape over the same bytes, or `LayoutError::ReshapeNeedsCopy`.
    pub fn reshape(&self, shape: &[i64]) -> Result<View, ViewError> {
        Ok(self.derive(self.layout.reshape(shape)?, 0))
    }

    /// The same view marked read-only (`true`), or checked writable (`false`).
    pub fn with_readonly(&self, readonly: bool) -> Result<View, ViewError> {
        if !readonly && self.readonly {
            return Err(ViewError::ReadOnly);
        }
        Ok(View {
            readonly,
            ..self.clone()
        })
    }

    /// The same bytes read as `dtype`, which must have the same item size (e.g. uint16 words
    /// that are bfloat16 values).
    pub fn with_dtype(&self, dtype: DType) -> Result<View, ViewError> {
        if dtype.itemsize() != self.dtype.itemsize() {
            return Err(ViewError::DTypeSize {
                wanted: dtype,
                found: self.dtype,
            });
        }
        Ok(View {
            dtype,
            ..self.clone()
        })
    }

    /// Applies a `readonly=` request: `None` keeps the view as it is, `Some(true)` makes it
    /// read-only, `Some(false)` demands a writable source.
    pub fn with_readonly_request(self, readonly: Option<bool>) -> Result<View, ViewError> {
        match readonly {
            None => Ok(self),
            Some(readonly) => self.with_readonly(readonly),
        }
    }

    /// Fails unless the host can read the memory.
    pub fn require_host(&self, what: &'static str) -> Result<(), ViewError> {
        if self.device.is_host_accessible() {
            Ok(())
        } else {
            Err(ViewError::NotOnHost {
                what,
                device: self.device.name(),
            })
        }
    }

    /// A packed, C-contiguous copy in fresh host memory aligned to `align`, counted.
    pub fn packed_copy(&self, align: Alignment) -> Result<View, ViewError> {
        self.require_host("copying")?;
        self.check()?;
        let layout = Layout::c_contiguous(self.layout.shape(), self.dtype.itemsize())?;
        let mut buffer = AlignedBuffer::new(layout.nbytes(), align)?;
        // SAFETY: the view's contract: every byte its layout addresses from `address` is
        // readable host memory while `self` (and so `keep`) is borrowed here.
        unsafe {
            gather(
                self.address as *const u8,
                &self.layout,
                buffer.as_mut_slice(),
            )
        };
        // A file that changed during the copy leaves stale or zeroed bytes in it.
        self.check()?;
        PROCESS_COPIES.record(layout.nbytes());
        if let Some(counter) = &self.copies {
            counter.record(layout.nbytes());
        }
        let copy = View::over_owned(buffer, layout, self.dtype, DLDevice::CPU, false)?;
        Ok(View {
            copies: self.copies.clone(),
            ..copy
        })
    }

    /// The bytes of a C-contiguous host view, in place.
    pub fn contiguous_bytes(&self) -> Option<&[u8]> {
        if !self.layout.is_c_contiguous() || !self.device.is_host_accessible() {
            return None;
        }
        if self.layout.nbytes() == 0 {
            return Some(&[]);
        }
        // SAFETY: C-contiguous: the layout addresses exactly `nbytes` bytes from `address`,
        // readable host memory kept alive by `keep` while `self` is borrowed.
        Some(unsafe { std::slice::from_raw_parts(self.address as *const u8, self.layout.nbytes()) })
    }

    /// A borrowed sample: `layout` placed `byte_offset` bytes from this view's first element,
    /// checked to lie inside this view's bytes. The result is valid while `self` is borrowed.
    pub fn sample<'a>(
        &'a self,
        layout: &'a Layout,
        byte_offset: isize,
    ) -> Result<SampleRef<'a>, ViewError> {
        self.require_host("reading samples")?;
        let out_of_bounds = || ViewError::OutOfBounds {
            offset: byte_offset,
            shape: layout.shape().to_vec(),
        };
        if layout.itemsize() != self.dtype.itemsize() {
            return Err(ViewError::ItemSize {
                layout: layout.itemsize(),
                dtype: self.dtype,
            });
        }
        let (low, high) = self.span;
        let (sample_low, sample_high) = layout.byte_span()?;
        if layout.size() > 0 {
            let lo = byte_offset
                .checked_add(sample_low)
                .ok_or_else(out_of_bounds)?;
            let hi = byte_offset
                .checked_add(sample_high)
                .ok_or_else(out_of_bounds)?;
            if lo < low || hi > high {
                return Err(out_of_bounds());
            }
        }
        Ok(SampleRef {
            ptr: (self.address as *const u8).wrapping_offset(byte_offset),
            layout,
            _view: std::marker::PhantomData,
        })
    }

    /// Exports as a DLPack managed tensor (no copy; decide copies with
    /// [`crate::exchange::dlpack_decision`] first). `copied` sets the versioned IS_COPIED flag.
    pub fn export_dlpack(&self, versioned: bool, copied: bool) -> Result<Exported, ViewError> {
        let spec = ExportSpec {
            data: self.address as *mut u8,
            device: self.device,
            dtype: self.dtype,
            layout: self.layout.clone(),
            readonly: self.readonly,
        };
        let owner: Box<dyn Any + Send> = Box::new(self.keep.clone());
        if versioned {
            let managed = dlpack::export_versioned(spec, owner)?;
            if copied {
                // SAFETY: freshly exported and not yet shared with anyone.
                unsafe { (*managed.as_ptr()).flags |= dlpack::FLAG_IS_COPIED };
            }
            Ok(Exported::Versioned(managed))
        } else {
            Ok(Exported::Legacy(dlpack::export_legacy(spec, owner)?))
        }
    }
}

/// A managed tensor we built, to hand to a consumer (who calls its deleter once).
#[derive(Debug)]
pub enum Exported {
    /// A pre-1.0 `DLManagedTensor` (for `"dltensor"` capsules).
    Legacy(std::ptr::NonNull<DLManagedTensor>),
    /// A 1.x `DLManagedTensorVersioned` (for `"dltensor_versioned"` capsules).
    Versioned(std::ptr::NonNull<DLManagedTensorVersioned>),
}

/// One sample's bytes in place: a pointer and a layout, valid while the view it came from is
/// borrowed. Only [`View::sample`] makes one, after checking the bounds.
#[derive(Clone, Copy, Debug)]
pub struct SampleRef<'a> {
    ptr: *const u8,
    layout: &'a Layout,
    _view: std::marker::PhantomData<&'a View>,
}

impl<'a> SampleRef<'a> {
    /// The first element.
    pub fn ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Shape and byte strides of the sample.
    pub fn layout(&self) -> &'a Layout {
        self.layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> View {
        let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
        View::from_owned(data, &[n], DType::U8, DLDevice::CPU, false).unwrap()
    }

    #[test]
    fn raw_parts_reject_wrapping_and_null() {
        let layout = Layout::c_contiguous(&[16], 1).unwrap();
        let keep: KeepAlive = Arc::new(());
        // SAFETY: the constructor fails before anything could read the memory.
        let err = unsafe {
            View::from_raw_parts(
                usize::MAX - 4,
                layout.clone(),
                DType::U8,
                DLDevice::CPU,
                true,
                keep.clone(),
            )
        }
        .unwrap_err();
        assert!(matches!(err, ViewError::AddressWraps { .. }), "{err}");
        // SAFETY: as above.
        let err = unsafe {
            View::from_raw_parts(0, layout, DType::U8, DLDevice::CPU, true, keep.clone())
        }
        .unwrap_err();
        assert!(matches!(err, ViewError::NullAddress { size: 16 }), "{err}");
        let f32_layout = Layout::c_contiguous(&[4], 4).unwrap();
        // SAFETY: as above.
        let err = unsafe {
            View::from_raw_parts(0x1000, f32_layout, DType::U8, DLDevice::CPU, true, keep)
        }
        .unwrap_err();
        assert!(matches!(err, ViewError::ItemSize { .. }), "{err}");
    }

    #[test]
    fn owned_views_check_their_size() {
        let err =
            View::from_owned(vec![0u8; 7], &[2, 4], DType::U8, DLDevice::CPU, false).unwrap_err();
        assert!(
            matches!(
                err,
                ViewError::TooSmall {
                    available: 7,
                    needed: 8
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn negative_strides_place_the_first_element_inside_the_owner() {
        let layout = Layout::new(vec![4], vec![-1], 1).unwrap();
        let v =
            View::over_owned(vec![1u8, 2, 3, 4], layout, DType::U8, DLDevice::CPU, true).unwrap();
        let copy = v.packed_copy(Alignment::Bytes(64)).unwrap();
        assert_eq!(copy.contiguous_bytes().unwrap(), &[4, 3, 2, 1]);
    }

    #[test]
    fn samples_are_bounds_checked() {
        let v = bytes(10);
        let four = Layout::c_contiguous(&[4], 1).unwrap();
        assert!(v.sample(&four, 6).is_ok());
        assert!(matches!(
            v.sample(&four, 7).unwrap_err(),
            ViewError::OutOfBounds { offset: 7, .. }
        ));
        assert!(v.sample(&four, -1).is_err());
        assert!(v.sample(&four, isize::MAX).is_err());
    }

    #[test]
    fn copies_count_per_counter_and_process_wide() {
        let counter = Arc::new(CopyCounter::default());
        let v = bytes(32).with_copy_counter(counter.clone());
        let before = process_copies().snapshot();
        let step = v.index(&[IndexItem::Slice {
            start: None,
            stop: None,
            step: Some(2),
        }]);
        step.unwrap().packed_copy(Alignment::Bytes(64)).unwrap();
        assert_eq!(counter.snapshot(), (1, 16));
        let after = process_copies().snapshot();
        assert!(after.0 > before.0 && after.1 >= before.1 + 16);
    }

    #[test]
    fn writable_views_of_read_only_memory_are_refused() {
        let v = bytes(4).with_readonly(true).unwrap();
        assert!(matches!(v.with_readonly(false), Err(ViewError::ReadOnly)));
        assert!(v.with_readonly(true).unwrap().readonly());
    }
}

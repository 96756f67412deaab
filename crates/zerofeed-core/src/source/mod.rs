//! Where samples come from: the [`Source`] trait, arrays ([`ArraySource`]), windows over
//! token streams and time series ([`WindowSource`]), and
//! memory-mapped `.npy` files with fully validated headers.
//!
//! [`parse_npy_header`] checks a header byte by byte (it never panics, whatever the
//! input); [`NpyFile`] maps a file read-only and hands out exactly its array bytes,
//! without copying them. Every error names the file and the header field at fault.

mod array;
mod bos;
mod filemap;
mod hint;
mod images;
mod npy;
mod pydict;
mod rows;
mod sample;
mod tar;
mod windows;

use std::fs::OpenOptions;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

pub use array::{ArraySource, ArraySourceError};
pub use bos::bos_boundaries;
pub use filemap::{FileMap, FileRegion, MapState, SourceChanged, WILLNEED_CHUNK};
pub use images::{Blobs, ImageError, ImageSource, ImageSourceError, IMAGE_EXTENSIONS};
pub use npy::{parse_npy_header, NpyError, NpyHeader, MAGIC, MAX_HEADER_LEN, MAX_NDIM};
pub use rows::Rows;
pub use sample::{field_label, FieldSpec, ImageOptions, OnError, Sample, SampleError, Source};
pub use tar::{TarError, TarSample, TarShards};
pub use windows::{Phase, Sampling, Target, WindowError, WindowSource, WindowSpec, POSITION_FIELD};

/// Why a source could not be opened. Every message starts with the path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The file is readable but is not a valid `.npy` file.
    #[error("{}: {source}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with its header or length.
        #[source]
        source: NpyError,
    },
    /// The operating system refused an operation on the file.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done: `"open"`, `"stat"` or `"memory-map"`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The path is a directory, device or pipe, which cannot be mapped as an array.
    /// Checked before the file is opened, so a named pipe fails at once instead of
    /// waiting for a writer.
    #[error("{}: not a regular file; pass the path of a .npy file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
}

impl SourceError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            SourceError::Npy { path, .. }
            | SourceError::Io { path, .. }
            | SourceError::NotAFile { path } => path,
        }
    }

    /// The header problem, when that is what went wrong.
    pub fn npy_error(&self) -> Option<&NpyError> {
        match self {
            SourceError::Npy { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A `.npy` file mapped read-only into memory, its header validated.
///
/// [`NpyFile::data`] is the array's bytes in place: nothing is read until touched, so
/// opening a file larger than RAM is cheap. `NpyFile` is `Send + Sync`; share it with
/// `Arc` and keep it alive as long as any view of its data.
///
/// # When the file changes while mapped
///
/// The map is private copy-on-write: writes through it (a PyTorch tensor over it) land in
/// this process's own pages, never in the file. Another process writing to the file can
/// still change what the map shows; truncating it would raise `SIGBUS` on the lost pages,
/// which [`FileMap`] turns into zeros plus a sticky "changed" mark. Either way
/// [`MapState::check`] (through [`NpyFile::watch`]) then fails with [`SourceChanged`],
/// which zerofeed's own reads check. Write new files and rename them into place.
#[derive(Debug)]
pub struct NpyFile {
    map: FileMap,
    header: NpyHeader,
    path: PathBuf,
}

impl NpyFile {
    /// Opens and maps `path` read-only, validating the header and that the file holds
    /// exactly the bytes the header describes.
    pub fn open(path: &Path) -> Result<NpyFile, SourceError> {
        let io_error = |op: &'static str| {
            move |source: io::Error| SourceError::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let not_a_file = || SourceError::NotAFile {
            path: path.to_path_buf(),
        };
        // Opening a named pipe blocks until a writer appears (forever, and EINTR is
        // retried), and opening a device can have effects: refuse them before opening.
        // Reported as "open" because, to the user, that is the step that failed.
        if !std::fs::metadata(path).map_err(io_error("open"))?.is_file() {
            return Err(not_a_file());
        }
        // The path may be swapped for a pipe between that check and the open; O_NONBLOCK
        // makes such an open return at once, and the check on the opened file below then
        // refuses it. On a regular file O_NONBLOCK changes nothing, least of all mmap.
        let mut options = OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
        let file = options.open(path).map_err(io_error("open"))?;
        if !file.metadata().map_err(io_error("stat"))?.is_file() {
            return Err(not_a_file());
        }
        // Private copy-on-write, watched for truncation and rewrites: see `FileMap`.
        let map = FileMap::new(file, path).map_err(io_error("memory-map"))?;
        let mmap = map.bytes();
        // The mapping's length, not the earlier metadata: the file may have changed size
        // in between, and the mapping is what `data()` will index.
        let header =
            parse_npy_header(mmap, mmap.len() as u64).map_err(|source| SourceError::Npy {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(NpyFile {
            map,
            header,
            path: path.to_path_buf(),
        })
    }

    /// The validated header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Exactly the array's bytes: `header().data_len` bytes from `header().data_offset`.
    pub fn data(&self) -> &[u8] {
        // `parse_npy_header` checked data_offset + data_len == mmap.len(), so `get`
        // always succeeds; it is used so that no code path here can panic.
        self.map
            .bytes()
            .get(self.header.data_offset..)
            .unwrap_or_default()
    }

    /// The address of the first data byte (`data().as_ptr()`). Never null; for an
    /// empty array it points at the end of the mapping and must not be read.
    pub fn data_ptr(&self) -> *const u8 {
        self.data().as_ptr()
    }

    /// Tells the kernel that access will be random (`MADV_RANDOM`), which turns off
    /// read-ahead: right for shuffled sampling, where read-ahead wastes I/O. A hint; a
    /// no-op where `madvise` does not exist.
    pub fn advise_random(&self) -> io::Result<()> {
        self.map.advise(libc::MADV_RANDOM, 0, usize::MAX)
    }

    /// Asks the kernel to start reading `range` of [`NpyFile::data`] now
    /// (`MADV_WILLNEED`), e.g. the next batch's samples. The range is clipped to the
    /// data; an empty one does nothing. A hint; a no-op where `madvise` does not exist.
    pub fn advise_willneed(&self, range: Range<usize>) -> io::Result<()> {
        let len = self.header.data_len;
        let start = range.start.min(len);
        let end = range.end.clamp(start, len);
        if start == end {
            return Ok(());
        }
        // FileMap aligns the start down to a page boundary itself.
        self.map
            .will_need(self.header.data_offset + start, end - start)
    }

    /// True when writes through the map land in this process's private copy-on-write pages
    /// (the file never changes); false when the kernel only allowed a shared read-only map.
    pub fn writes_are_private(&self) -> bool {
        self.map.is_private()
    }

    /// What to ask whether the file changed since it was opened.
    pub fn watch(&self) -> &Arc<MapState> {
        self.map.state()
    }
}

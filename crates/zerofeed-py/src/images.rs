//! `_Images` and `_TarShards`: the core's `ImageSource` and `TarShards`, for
//! `zerofeed.Images` and `zerofeed.open_tar`.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

use zerofeed_core::decode::{decode_with, probe, ColorMode, DecodeRequest, Huffman, Region};
use zerofeed_core::source::{
    Blobs, ImageError, ImageOptions, ImageSource, ImageSourceError, OnError, Source, TarError,
    TarShards,
};

use crate::errors::{guard, raise, Kind};

/// Sets `.file` on an exception just built.
fn with_file(err: PyErr, file: String) -> PyErr {
    Python::attach(|py| {
        let _ = err.value(py).setattr("file", file);
    });
    err
}

fn tar_file(err: &TarError) -> String {
    let shard = match err {
        TarError::Io { shard, .. }
        | TarError::Truncated { shard, .. }
        | TarError::Corrupt { shard, .. }
        | TarError::UnsafePath { shard, .. }
        | TarError::BadSample { shard, .. } => shard,
        _ => return String::new(),
    };
    shard.display().to_string()
}

fn source_error(err: ImageSourceError) -> PyErr {
    let (kind, file) = match &err {
        ImageSourceError::Io { path, source, .. } => (
            if source.kind() == std::io::ErrorKind::NotFound {
                Kind::FileMissing
            } else {
                Kind::Io
            },
            path.display().to_string(),
        ),
        ImageSourceError::Tar(TarError::Io { source, .. }) => (
            if source.kind() == std::io::ErrorKind::NotFound {
                Kind::FileMissing
            } else {
                Kind::Io
            },
            tar_file(match &err {
                ImageSourceError::Tar(t) => t,
                _ => unreachable!(),
            }),
        ),
        ImageSourceError::Tar(t) => (Kind::ImageSource, tar_file(t)),
        ImageSourceError::NoImages { path, .. } => (Kind::ImageSource, path.display().to_string()),
        ImageSourceError::MixedLabels { first_unlabelled } => {
            (Kind::ImageSource, first_unlabelled.clone())
        }
        _ => (Kind::ImageSource, String::new()),
    };
    with_file(raise(kind, err.argument(), err.to_string()), file)
}

/// An image that does not decode: `zerofeed.ImageDecodeError` with `.file`.
pub fn image_error(err: ImageError) -> PyErr {
    let file = err.name.clone();
    with_file(raise(Kind::ImageDecode, "source", err.to_string()), file)
}

/// `(mode, on_error, max_pixels, fast_decode)`, as `zerofeed.Images` passes them.
type Settings = (String, String, u64, bool);

fn options((mode, on_error, max_pixels, fast_decode): Settings) -> PyResult<ImageOptions> {
    let mode = match mode.as_str() {
        "RGB" => ColorMode::Rgb,
        "L" => ColorMode::Gray,
        other => {
            return Err(raise(
                Kind::Pipeline,
                "mode",
                format!("mode={other:?} must be \"RGB\" or \"L\""),
            ))
        }
    };
    let on_error = match on_error.as_str() {
        "raise" => OnError::Raise,
        "skip" => OnError::Skip,
        other => {
            return Err(raise(
                Kind::Pipeline,
                "on_error",
                format!("on_error={other:?} must be \"raise\" or \"skip\""),
            ))
        }
    };
    Ok(ImageOptions {
        mode,
        max_pixels,
        fast_decode,
        on_error,
    })
}

/// Indexed, memory-mapped WebDataset shards.
#[pyclass(frozen, module = "zerofeed", name = "_TarShards")]
pub struct PyTarShards {
    inner: Arc<TarShards>,
}

#[pymethods]
impl PyTarShards {
    fn __len__(&self) -> usize {
        self.inner.samples().len()
    }

    /// The shards' paths.
    fn paths(&self) -> Vec<String> {
        self.inner
            .paths()
            .map(|p| p.display().to_string())
            .collect()
    }

    /// `shard:member` of every sample's image.
    fn names(&self) -> Vec<String> {
        (0..self.inner.samples().len())
            .map(|i| self.inner.name(i))
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "<zerofeed._TarShards: {} samples in {} shards>",
            self.inner.samples().len(),
            self.inner.paths().count()
        )
    }
}

/// Maps and indexes tar shards.
#[pyfunction]
pub fn _open_tar(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<PyTarShards> {
    guard(|| {
        let shards = py
            .detach(|| TarShards::open(&paths))
            .map_err(|e| source_error(ImageSourceError::Tar(e)))?;
        Ok(PyTarShards {
            inner: Arc::new(shards),
        })
    })
}

/// One decode through the contract's API, for tests and the accuracy script:
/// `(pixels, height, width, channels, origin_top, origin_left, scale_denom)`. `region` is
/// `(top, left, height, width)` in full-resolution pixels; `fast_upsampling` as the Loader's
/// fast decode does it; `huffman` `"zerofeed"` (the Loader's) or `"libjpeg"` (the reference
/// the tests compare it with).
#[pyfunction]
#[pyo3(signature = (data, mode, region, max_scale_denom, max_pixels, fast_upsampling=false, huffman="zerofeed"))]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::type_complexity)]
pub fn _decode<'py>(
    py: Python<'py>,
    data: &[u8],
    mode: &str,
    region: Option<(usize, usize, usize, usize)>,
    max_scale_denom: u32,
    max_pixels: u64,
    fast_upsampling: bool,
    huffman: &str,
) -> PyResult<(
    Bound<'py, PyByteArray>,
    usize,
    usize,
    usize,
    usize,
    usize,
    u32,
)> {
    guard(|| {
        let mode = options((mode.to_owned(), "raise".to_owned(), max_pixels, true))?.mode;
        let request = DecodeRequest {
            mode,
            region: region.map(|(top, left, height, width)| Region {
                top,
                left,
                height,
                width,
            }),
            max_scale_denom,
            max_pixels,
            fast_upsampling,
        };
        let huffman = match huffman {
            "zerofeed" => Huffman::Own,
            "libjpeg" => Huffman::Libjpeg,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "huffman must be \"zerofeed\" or \"libjpeg\", not {other:?}"
                )))
            }
        };
        let d = py
            .detach(|| decode_with(data, &request, Vec::new(), huffman))
            .map_err(|source| {
                image_error(ImageError {
                    name: "data".to_owned(),
                    source,
                })
            })?;
        let pixels = PyByteArray::new(py, &d.pixels);
        Ok((
            pixels,
            d.height,
            d.width,
            d.channels,
            d.origin_top,
            d.origin_left,
            d.scale_denom,
        ))
    })
}

/// `(height, width, format)` from the header alone.
#[pyfunction]
pub fn _probe(data: &[u8]) -> PyResult<(usize, usize, String)> {
    guard(|| {
        let info = probe(data).map_err(|source| {
            image_error(ImageError {
                name: "data".to_owned(),
                source,
            })
        })?;
        Ok((info.height, info.width, info.format.to_string()))
    })
}

/// Python objects that keep in-memory buffers alive; dropped (decref'd) with the source.
struct Owners(#[allow(dead_code)] Vec<Py<PyAny>>);

/// Encoded images with optional labels, shared with the pipeline without copying.
#[pyclass(frozen, module = "zerofeed", name = "_Images")]
pub struct PyImages {
    inner: Arc<ImageSource>,
}

impl PyImages {
    /// The source, for the pipeline.
    pub fn source(&self) -> Arc<dyn Source> {
        self.inner.clone()
    }
}

fn built(source: Result<ImageSource, ImageSourceError>) -> PyResult<PyImages> {
    source
        .map(|s| PyImages { inner: Arc::new(s) })
        .map_err(source_error)
}

#[pymethods]
impl PyImages {
    /// Every image under `path`; `by_class`: the ImageFolder layout.
    #[staticmethod]
    #[pyo3(signature = (path, by_class, settings))]
    fn folder(
        py: Python<'_>,
        path: PathBuf,
        by_class: bool,
        settings: Settings,
    ) -> PyResult<PyImages> {
        guard(|| {
            let options = options(settings)?;
            built(py.detach(|| ImageSource::from_folder(&path, by_class, options)))
        })
    }

    /// These files, in order.
    #[staticmethod]
    #[pyo3(signature = (paths, labels, settings))]
    fn files(
        paths: Vec<PathBuf>,
        labels: Option<Vec<i64>>,
        settings: Settings,
    ) -> PyResult<PyImages> {
        guard(|| {
            let options = options(settings)?;
            built(ImageSource::from_files(paths, labels, options))
        })
    }

    /// `bytes` objects, read in place (they are immutable and kept alive by the source).
    #[staticmethod]
    #[pyo3(signature = (buffers, labels, settings))]
    fn buffers(
        buffers: Vec<Bound<'_, PyBytes>>,
        labels: Option<Vec<i64>>,
        settings: Settings,
    ) -> PyResult<PyImages> {
        guard(|| {
            let options = options(settings)?;
            let spans = buffers
                .iter()
                .map(|b| {
                    let bytes = b.as_bytes();
                    (bytes.as_ptr() as usize, bytes.len())
                })
                .collect();
            let owners = Owners(buffers.into_iter().map(|b| b.into_any().unbind()).collect());
            // SAFETY: `bytes` objects are immutable and their data never moves; `owners` holds
            // a reference to each for as long as the source lives.
            let blobs = unsafe { Blobs::new(Box::new(owners), spans) };
            built(ImageSource::from_blobs(blobs, labels, options))
        })
    }

    /// Arrow Binary / LargeBinary chunks, read in place: for each chunk
    /// `(offsets_address, offsets_bytes, data_address, data_bytes, offset, length, large)`;
    /// `owner` (the pyarrow array) keeps the buffers alive.
    #[staticmethod]
    #[pyo3(signature = (owner, chunks, labels, settings))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn arrow(
        owner: Bound<'_, PyAny>,
        chunks: Vec<(usize, usize, usize, usize, usize, usize, bool)>,
        labels: Option<Vec<i64>>,
        settings: Settings,
    ) -> PyResult<PyImages> {
        guard(|| {
            let options = options(settings)?;
            let mut spans = Vec::new();
            for (offsets_at, offsets_len, data_at, data_len, offset, length, large) in chunks {
                let width = if large { 8 } else { 4 };
                let needed = (offset + length + 1) * width;
                if length == 0 {
                    continue;
                }
                if offsets_at == 0 || offsets_len < needed || (data_at == 0 && data_len > 0) {
                    return Err(raise(
                        Kind::UnsupportedSource,
                        "source",
                        "the Arrow array's offsets buffer is shorter than its length says",
                    ));
                }
                // SAFETY: pyarrow reported `offsets_len` readable bytes at `offsets_at`, kept
                // alive by `owner`; `needed <= offsets_len` was checked above.
                let offsets =
                    unsafe { std::slice::from_raw_parts(offsets_at as *const u8, needed) };
                let at = |i: usize| -> u64 {
                    let b = &offsets[i * width..(i + 1) * width];
                    if large {
                        u64::from_le_bytes(b.try_into().expect("8 bytes"))
                    } else {
                        u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))
                    }
                };
                for i in offset..offset + length {
                    let (start, end) = (at(i), at(i + 1));
                    if start > end || end > data_len as u64 {
                        return Err(raise(
                            Kind::UnsupportedSource,
                            "source",
                            format!("the Arrow array's offsets {start}..{end} of element {} lie outside its {data_len}-byte data buffer", i - offset),
                        ));
                    }
                    spans.push((data_at + start as usize, (end - start) as usize));
                }
            }
            let owners = Owners(vec![owner.unbind()]);
            // SAFETY: every span was checked to lie inside a data buffer that pyarrow reported
            // and that `owner` (an immutable Arrow array) keeps alive and unchanged.
            let blobs = unsafe { Blobs::new(Box::new(owners), spans) };
            built(ImageSource::from_blobs(blobs, labels, options))
        })
    }

    /// The samples of indexed tar shards.
    #[staticmethod]
    #[pyo3(signature = (shards, settings))]
    fn tar(shards: PyRef<'_, PyTarShards>, settings: Settings) -> PyResult<PyImages> {
        guard(|| {
            let options = options(settings)?;
            built(ImageSource::from_tar(shards.inner.clone(), options))
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Sample `index` decoded whole: `(pixels, height, width, channels)`.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        index: usize,
    ) -> PyResult<(Bound<'py, PyByteArray>, usize, usize, usize)> {
        guard(|| {
            if index >= self.inner.len() {
                return Err(raise(
                    Kind::IndexOutOfRange,
                    "index",
                    format!(
                        "index {index} is out of range for {} images",
                        self.inner.len()
                    ),
                ));
            }
            let inner = &self.inner;
            let decoded = py
                .detach(|| inner.decode_full(index))
                .map_err(image_error)?;
            let pixels = PyByteArray::new(py, &decoded.pixels);
            Ok((pixels, decoded.height, decoded.width, decoded.channels))
        })
    }

    /// The label of sample `index`, or None when the source has none.
    fn label(&self, index: usize) -> Option<i64> {
        self.inner.label(index)
    }

    /// Whether samples have labels.
    #[getter]
    fn has_labels(&self) -> bool {
        self.inner.fields().len() > 1
    }

    /// Class names in label order (ImageFolder layout), else empty.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.inner.classes().to_vec()
    }

    /// How messages name each sample: paths, `shard:member`, or `bytes[i]`.
    fn names(&self) -> Vec<String> {
        (0..self.inner.len())
            .map(|i| self.inner.sample_name(i))
            .collect()
    }

    /// `[(name, sample_shape, dtype)]` of the fields (shape `[]` for the variable image).
    fn field_specs(&self) -> Vec<(String, Vec<usize>, &'static str)> {
        crate::source::field_specs(self.inner.fields())
    }

    fn __repr__(&self) -> String {
        format!("<zerofeed._Images: {}>", self.inner.describe())
    }
}

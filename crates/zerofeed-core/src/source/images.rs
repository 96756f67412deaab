//! [`ImageSource`]: encoded images (JPEG, PNG) from a folder, a list of files, tar shards
//! or byte buffers, as a [`Source`] whose field `"image"` is [`Sample::Encoded`] (the
//! pipeline decodes it in the worker) and whose field `"label"` is an `int64` scalar.
//!
//! Files are memory-mapped the first time a sample is asked for and stay mapped, so every
//! later epoch reads the page cache in place. A map costs one entry of the kernel's
//! `vm.max_map_count` (65,530 by default); past it a file is read into memory instead.

use std::any::Any;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::filemap::FileMap;
use super::sample::{FieldSpec, ImageOptions, Sample, SampleError, Source};
use super::tar::{TarError, TarShards};
use crate::decode::{decode, ColorMode, DecodeError, DecodeRequest, Decoded};
use crate::dlpack::DLDevice;
use crate::dtype::DType;
use crate::layout::Layout;
use crate::view::View;

/// The extensions a folder listing takes (case-insensitive), as torchvision's `ImageFolder`
/// does for these formats; decoding then goes by content.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Why an image source could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageSourceError {
    /// A folder or file that cannot be listed or opened.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// `"list"` or `"open"`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A folder (or class subfolder) without any `.jpg`, `.jpeg` or `.png` file.
    #[error("{}: no image files (.jpg, .jpeg, .png) in this folder{hint}", path.display())]
    NoImages {
        /// The folder.
        path: PathBuf,
        /// What to do.
        hint: &'static str,
    },
    /// Labels that do not match the images one to one.
    #[error("labels has {labels} entries for {images} images; pass one label per image")]
    LabelsLength {
        /// Labels given.
        labels: usize,
        /// Images.
        images: usize,
    },
    /// Nothing to read: an empty list of files or buffers.
    #[error("{what} is empty: an image source needs at least one image")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// Tar shards that could not be indexed, or whose samples disagree on having labels.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// Some tar samples have a `.cls` label and some do not.
    #[error("{first_unlabelled}: this sample has no .cls/.txt label but others do; label every sample or none")]
    MixedLabels {
        /// The first sample without one.
        first_unlabelled: String,
    },
}

impl ImageSourceError {
    /// The argument of `zf.Images` / `zf.open_tar` at fault.
    pub fn argument(&self) -> &'static str {
        match self {
            ImageSourceError::LabelsLength { .. } => "labels",
            ImageSourceError::Tar(_) | ImageSourceError::MixedLabels { .. } => "paths",
            _ => "source",
        }
    }
}

/// A sample that could not be decoded, naming it (file path, `shard.tar:member`, or
/// `bytes[i]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {source}")]
pub struct ImageError {
    /// The file, member or buffer.
    pub name: String,
    /// What is wrong with its bytes.
    #[source]
    pub source: DecodeError,
}

/// Encoded buffers owned elsewhere (Python `bytes`, an Arrow data buffer), read in place.
pub struct Blobs {
    spans: Vec<(usize, usize)>,
    _owner: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blobs({} buffers)", self.spans.len())
    }
}

impl Blobs {
    /// Buffers at `(address, length)` spans, kept alive by `owner`.
    ///
    /// # Safety
    /// Every span must be readable memory that `owner` keeps alive and unchanged for as long
    /// as the returned value lives (immutable Python `bytes`, an Arrow buffer).
    pub unsafe fn new(owner: Box<dyn Any + Send + Sync>, spans: Vec<(usize, usize)>) -> Blobs {
        Blobs {
            spans,
            _owner: owner,
        }
    }

    /// Buffers owned by the value itself.
    pub fn from_vecs(buffers: Vec<Vec<u8>>) -> Blobs {
        let spans = buffers
            .iter()
            .map(|b| (b.as_ptr() as usize, b.len()))
            .collect();
        // SAFETY: the vectors move into the owner unchanged (moving a Vec does not move its
        // heap buffer) and are never touched again.
        unsafe { Blobs::new(Box::new(buffers), spans) }
    }

    fn get(&self, index: usize) -> Option<&[u8]> {
        let &(address, len) = self.spans.get(index)?;
        if len == 0 {
            return Some(&[]);
        }
        // SAFETY: `new`'s contract: readable, alive and unchanged while `self` is.
        Some(unsafe { std::slice::from_raw_parts(address as *const u8, len) })
    }
}

enum Mapped {
    Map(FileMap),
    Read(Vec<u8>),
}

enum Storage {
    Files {
        paths: Vec<PathBuf>,
        maps: Vec<OnceLock<Result<Mapped, String>>>,
    },
    Tar(Arc<TarShards>),
    Blobs(Blobs),
}

/// Encoded images with optional integer labels.
pub struct ImageSource {
    storage: Storage,
    labels: Option<View>,
    label_values: Vec<i64>,
    scalar: Layout,
    fields: Vec<FieldSpec>,
    classes: Vec<String>,
    options: ImageOptions,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The entries of `dir`, sorted.
fn list(dir: &Path) -> Result<Vec<PathBuf>, ImageSourceError> {
    let io = |source| ImageSourceError::Io {
        path: dir.to_path_buf(),
        op: "list",
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

/// Image files under `dir`, recursively, in sorted path order (symlinks followed).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImageSourceError> {
    for path in list(dir)? {
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

impl ImageSource {
    /// Every image file under `root`; with `by_class`, the ImageFolder layout: each
    /// subfolder is a class, labels are the classes' positions in sorted name order.
    pub fn from_folder(
        root: &Path,
        by_class: bool,
        options: ImageOptions,
    ) -> Result<ImageSource, ImageSourceError> {
        let mut files = Vec::new();
        let mut labels = Vec::new();
        let mut classes = Vec::new();
        if by_class {
            let dirs: Vec<PathBuf> = list(root)?.into_iter().filter(|p| p.is_dir()).collect();
            if dirs.is_empty() {
                return Err(ImageSourceError::NoImages {
                    path: root.to_path_buf(),
                    hint: " (labels=\"folders\" wants one subfolder of images per class)",
                });
            }
            for (label, dir) in dirs.iter().enumerate() {
                let before = files.len();
                walk(dir, &mut files)?;
                if files.len() == before {
                    return Err(ImageSourceError::NoImages {
                        path: dir.clone(),
                        hint: " (every class folder needs at least one image)",
                    });
                }
                labels.resize(files.len(), label as i64);
                classes.push(
                    dir.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        } else {
            walk(root, &mut files)?;
            if files.is_empty() {
                return Err(ImageSourceError::NoImages {
                    path: root.to_path_buf(),
                    hint: "",
                });
            }
        }
        let labels = by_class.then_some(labels);
        let mut source = ImageSource::from_files(files, labels, options)?;
        source.classes = classes;
        Ok(source)
    }

    /// These files, in order, with one label each (or none).
    pub fn from_files(
        paths: Vec<PathBuf>,
        labels: Option<Vec<i64>>,
        options: ImageOptions,
    ) -> Result<ImageSource, ImageSourceError> {
        if paths.is_empty() {
            return Err(ImageSourceError::Empty {
                what: "the list of files",
            });
        }
        // One stat each: a missing or misspelt path fails here, naming it, not mid-epoch.
        for path in &paths {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => {
                    return Err(ImageSourceError::Io {
                        path: path.clone(),
                        op: "open",
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "not a regular file",
                        ),
                    })
                }
                Err(source) => {
                    return Err(ImageSourceError::Io {
                        path: path.clone(),
                        op: "open",
                        source,
                    })
                }
            }
        }
        let maps = paths.iter().map(|_| OnceLock::new()).collect();
        ImageSource::new(Storage::Files { paths, maps }, labels, options)
    }

    /// Encoded buffers, with one label each (or none).
    pub fn from_blobs(
        blobs: Blobs,
        labels: Option<Vec<i64>>,
        options: ImageOptions,
    ) -> Result<ImageSource, ImageSourceError> {
        if blobs.spans.is_empty() {
            return Err(ImageSourceError::Empty {
                what: "the sequence of encoded images",
            });
        }
        ImageSource::new(Storage::Blobs(blobs), labels, options)
    }

    /// Indexed tar shards; labels from their `.cls` members when every sample has one.
    pub fn from_tar(
        shards: Arc<TarShards>,
        options: ImageOptions,
    ) -> Result<ImageSource, ImageSourceError> {
        let samples = shards.samples();
        if samples.is_empty() {
            return Err(ImageSourceError::Empty {
                what: "the tar shards",
            });
        }
        let labels = if samples[0].label.is_some() {
            let mut labels = Vec::with_capacity(samples.len());
            for (i, s) in samples.iter().enumerate() {
                labels.push(s.label.ok_or_else(|| ImageSourceError::MixedLabels {
                    first_unlabelled: shards.name(i),
                })?);
            }
            Some(labels)
        } else {
            if samples.iter().any(|s| s.label.is_some()) {
                return Err(ImageSourceError::MixedLabels {
                    first_unlabelled: shards.name(0),
                });
            }
            None
        };
        ImageSource::new(Storage::Tar(shards), labels, options)
    }

    fn new(
        storage: Storage,
        labels: Option<Vec<i64>>,
        options: ImageOptions,
    ) -> Result<ImageSource, ImageSourceError> {
        let len = match &storage {
            Storage::Files { paths, .. } => paths.len(),
            Storage::Tar(t) => t.samples().len(),
            Storage::Blobs(b) => b.spans.len(),
        };
        let mut fields = vec![FieldSpec {
            name: "image".to_owned(),
            dtype: DType::U8,
            shape: None,
        }];
        let label_values = labels.clone().unwrap_or_default();
        let labels = match labels {
            Some(labels) if labels.len() != len => {
                return Err(ImageSourceError::LabelsLength {
                    labels: labels.len(),
                    images: len,
                })
            }
            Some(labels) => {
                fields.push(FieldSpec {
                    name: "label".to_owned(),
                    dtype: DType::I64,
                    shape: Some(Vec::new()),
                });
                let bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_ne_bytes()).collect();
                Some(
                    View::from_owned(bytes, &[len], DType::I64, DLDevice::CPU, true)
                        .expect("an int64 view of a vector of len * 8 bytes"),
                )
            }
            None => None,
        };
        Ok(ImageSource {
            storage,
            labels,
            label_values,
            scalar: Layout::c_contiguous(&[], 8).expect("a scalar layout"),
            fields,
            classes: Vec::new(),
            options,
        })
    }

    /// The class names in label order (folder sources with `labels="folders"`), else empty.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The decode settings.
    pub fn options(&self) -> ImageOptions {
        self.options
    }

    /// The label of sample `index`, if the source has labels.
    pub fn label(&self, index: usize) -> Option<i64> {
        self.label_values.get(index).copied()
    }

    /// The encoded bytes of sample `index`, in place.
    pub fn encoded(&self, index: usize) -> Result<&[u8], SampleError> {
        let len = self.len();
        let out_of_range = || SampleError::IndexOutOfRange { index, len };
        match &self.storage {
            Storage::Files { paths, maps } => {
                let path = paths.get(index).ok_or_else(out_of_range)?;
                match maps[index].get_or_init(|| map_file(path)) {
                    Ok(Mapped::Map(map)) => Ok(map.bytes()),
                    Ok(Mapped::Read(bytes)) => Ok(bytes),
                    Err(reason) => Err(SampleError::Read {
                        name: self.sample_name(index),
                        reason: reason.clone(),
                    }),
                }
            }
            Storage::Tar(shards) => shards.image(index).ok_or_else(out_of_range),
            Storage::Blobs(blobs) => blobs.get(index).ok_or_else(out_of_range),
        }
    }

    /// Sample `index` decoded whole at full resolution, in the source's mode.
    pub fn decode_full(&self, index: usize) -> Result<Decoded, ImageError> {
        let bytes = self.encoded(index).map_err(|e| ImageError {
            name: self.sample_name(index),
            source: DecodeError::Unreadable {
                reason: match e {
                    SampleError::Read { reason, .. } => reason,
                    other => other.to_string(),
                },
            },
        })?;
        let request = DecodeRequest {
            max_pixels: self.options.max_pixels,
            ..DecodeRequest::full(self.options.mode)
        };
        decode(bytes, &request).map_err(|source| ImageError {
            name: self.sample_name(index),
            source,
        })
    }

    /// The channels decoded samples have.
    pub fn channels(&self) -> usize {
        match self.options.mode {
            ColorMode::Rgb => 3,
            ColorMode::Gray => 1,
        }
    }
}

fn map_file(path: &Path) -> Result<Mapped, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    match FileMap::new(file, path) {
        Ok(map) => Ok(Mapped::Map(map)),
        // Out of map entries (or a file system that cannot map): read it instead.
        Err(_) => std::fs::read(path)
            .map(Mapped::Read)
            .map_err(|e| e.to_string()),
    }
}

impl Source for ImageSource {
    fn len(&self) -> usize {
        match &self.storage {
            Storage::Files { paths, .. } => paths.len(),
            Storage::Tar(t) => t.samples().len(),
            Storage::Blobs(b) => b.spans.len(),
        }
    }

    fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    fn sample(&self, index: usize, field: usize) -> Result<Sample<'_>, SampleError> {
        match (field, &self.labels) {
            (0, _) => self.encoded(index).map(Sample::Encoded),
            (1, Some(labels)) => {
                let len = self.len();
                if index >= len {
                    return Err(SampleError::IndexOutOfRange { index, len });
                }
                Ok(Sample::Strided(
                    labels.sample(&self.scalar, (index * 8) as isize)?,
                ))
            }
            _ => Err(SampleError::NoSuchField {
                field,
                fields: self.fields.len(),
            }),
        }
    }

    fn check(&self) -> Result<(), SampleError> {
        if let Storage::Tar(shards) = &self.storage {
            shards
                .check()
                .map_err(|e| SampleError::View(crate::view::ViewError::SourceChanged(e)))?;
        }
        Ok(())
    }

    fn image_options(&self, field: usize) -> Option<ImageOptions> {
        (field == 0).then_some(self.options)
    }

    fn sample_name(&self, index: usize) -> String {
        match &self.storage {
            Storage::Files { paths, .. } => paths
                .get(index)
                .map_or_else(|| format!("sample {index}"), |p| p.display().to_string()),
            Storage::Tar(shards) => shards.name(index),
            Storage::Blobs(_) => format!("bytes[{index}]"),
        }
    }

    fn describe(&self) -> String {
        let kind = match &self.storage {
            Storage::Files { .. } => "image files".to_owned(),
            Storage::Tar(t) => format!("images in {} tar shards", t.paths().count()),
            Storage::Blobs(_) => "encoded images in memory".to_owned(),
        };
        let labels = if self.labels.is_some() {
            ", labelled"
        } else {
            ""
        };
        format!("{} {kind}{labels}", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ColorMode;
    use crate::source::OnError;

    fn options() -> ImageOptions {
        ImageOptions {
            mode: ColorMode::Rgb,
            max_pixels: 1 << 20,
            fast_decode: true,
            on_error: OnError::Skip,
        }
    }

    fn png(width: u32, height: u32, value: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = ::png::Encoder::new(&mut out, width, height);
        enc.set_color(::png::ColorType::Grayscale);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&vec![value; (width * height) as usize])
            .unwrap();
        drop(w);
        out
    }

    /// A ustar member header + data, padded to blocks, as tar(1) writes them.
    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK_FOR_TESTS];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h.extend_from_slice(data);
        h.resize(h.len().div_ceil(BLOCK_FOR_TESTS) * BLOCK_FOR_TESTS, 0);
        h
    }

    const BLOCK_FOR_TESTS: usize = 512;

    #[test]
    fn blobs_give_encoded_images_and_int64_labels() {
        let source = ImageSource::from_blobs(
            Blobs::from_vecs(vec![png(3, 2, 10), png(1, 1, 20)]),
            Some(vec![7, -3]),
            options(),
        )
        .unwrap();
        assert_eq!(source.len(), 2);
        assert_eq!(source.fields()[1].dtype, DType::I64);
        let Sample::Encoded(bytes) = source.sample(1, 0).unwrap() else {
            panic!("the image is encoded")
        };
        assert_eq!(crate::decode::probe(bytes).unwrap().width, 1);
        let Sample::Strided(label) = source.sample(1, 1).unwrap() else {
            panic!("the label is strided")
        };
        // SAFETY: a strided int64 scalar of a live source.
        assert_eq!(unsafe { label.ptr().cast::<i64>().read_unaligned() }, -3);
        assert_eq!(source.label(0), Some(7));
        assert!(matches!(
            source.sample(2, 0),
            Err(SampleError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            source.sample(0, 2),
            Err(SampleError::NoSuchField { .. })
        ));
        assert_eq!(source.image_options(0), Some(options()));
        assert_eq!(source.image_options(1), None);
        assert_eq!(source.sample_name(1), "bytes[1]");
        assert_eq!(source.decode_full(0).unwrap().pixels, vec![10; 18]);
        let short = ImageSource::from_blobs(
            Blobs::from_vecs(vec![png(1, 1, 0)]),
            Some(vec![1, 2]),
            options(),
        );
        assert!(matches!(
            short,
            Err(ImageSourceError::LabelsLength {
                labels: 2,
                images: 1
            })
        ));
    }

    #[test]
    fn tar_members_group_by_key() {
        let dir = std::env::temp_dir().join(format!("zerofeed-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut tar = Vec::new();
        tar.extend(member("a/000.png", &png(2, 2, 1)));
        tar.extend(member("a/000.cls", b"4\n"));
        tar.extend(member("a/001.PNG", &png(1, 3, 2))); // extensions compare lowercased
        tar.extend(member("a/001.cls", b"5"));
        tar.extend([0u8; 1024]);
        let path = dir.join("shard.tar");
        std::fs::write(&path, &tar).unwrap();
        let shards = TarShards::open(std::slice::from_ref(&path)).unwrap();
        assert_eq!(shards.samples().len(), 2);
        assert_eq!(shards.samples()[1].label, Some(5));
        let source = ImageSource::from_tar(Arc::new(shards), options()).unwrap();
        assert_eq!(source.label(0), Some(4));
        assert!(source.sample_name(0).ends_with("shard.tar:a/000.png"));
        assert_eq!(source.decode_full(1).unwrap().height, 3);
        // WebDataset's key ends at the first dot: `b/002.seg.png` has extension `seg.png`,
        // so sample b/002 has no image member.
        let mut odd = member("b/002.seg.png", &png(1, 1, 0));
        odd.extend([0u8; 1024]);
        let odd_path = dir.join("odd.tar");
        std::fs::write(&odd_path, &odd).unwrap();
        assert!(matches!(
            TarShards::open(&[odd_path]),
            Err(TarError::BadSample { .. })
        ));
        let cut = dir.join("cut.tar");
        std::fs::write(&cut, &tar[..700]).unwrap();
        assert!(matches!(
            TarShards::open(&[cut]),
            Err(TarError::Truncated { .. })
        ));
        let mut evil = member("../x.png", &png(1, 1, 0));
        evil.extend([0u8; 1024]);
        let evil_path = dir.join("evil.tar");
        std::fs::write(&evil_path, &evil).unwrap();
        assert!(matches!(
            TarShards::open(&[evil_path]),
            Err(TarError::UnsafePath { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

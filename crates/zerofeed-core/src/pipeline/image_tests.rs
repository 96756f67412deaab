//! Image fields end to end: encoded PNGs through probe / decode / ImagePlan give the same
//! bytes as the same pixels from an array; bad samples are replaced or named.

use super::*;
use crate::decode::{ColorMode, DEFAULT_MAX_PIXELS};
use crate::dlpack::DLDevice;
use crate::ops::{Interpolation, ResizeTo};
use crate::pool::PoolConfig;
use crate::source::{ArraySource, Blobs, ImageSource};
use std::sync::atomic::Ordering;

fn png(width: u32, height: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = ::png::Encoder::new(&mut out, width, height);
        enc.set_color(::png::ColorType::Rgb);
        enc.set_depth(::png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(data).unwrap();
    }
    out
}

/// A smooth but varied picture, different per sample.
fn pixels(h: usize, w: usize, k: usize) -> Vec<u8> {
    (0..h * w * 3)
        .map(|i| {
            let (y, x, c) = (i / (w * 3), (i / 3) % w, i % 3);
            ((y * (3 + k) + x * (5 + c) + k * 40 + (x * y) % 17) % 256) as u8
        })
        .collect()
}

fn options(on_error: OnError) -> ImageOptions {
    ImageOptions {
        mode: ColorMode::Rgb,
        max_pixels: DEFAULT_MAX_PIXELS,
        fast_decode: false,
        on_error,
    }
}

fn chain() -> Vec<OpSpec> {
    vec![
        OpSpec::Resize {
            size: ResizeTo::Shorter(20),
            interpolation: Interpolation::Bilinear,
            antialias: true,
        },
        OpSpec::RandomCrop {
            height: 16,
            width: 16,
        },
        OpSpec::RandomFlip { p: 0.5 },
        OpSpec::ToCHW,
    ]
}

fn run(
    source: Arc<dyn Source>,
    ops: Vec<OpSpec>,
    workers: usize,
) -> (Result<Vec<u8>, PipelineError>, Pipeline) {
    let n = source.len();
    let fields = source.fields().len();
    let mut chains = vec![Vec::new(); fields];
    chains[0] = ops;
    let sampler = Sampler::new(n, true, 3, false, None).unwrap();
    let pool = BufferPool::new(PoolConfig {
        budget: 1 << 22,
        pin: false,
    });
    let config = PipelineConfig {
        batch_size: 2,
        drop_last: false,
        workers,
        prefetch: 1,
    };
    let p = Pipeline::new(source, &chains, sampler, config, pool).unwrap();
    let mut out = Vec::new();
    let mut epoch = p.start(1, 0).unwrap();
    while let Some(batch) = epoch.next_batch() {
        match batch {
            Ok(batch) => {
                let bytes = p.fields()[0].sample_nbytes() * batch.len;
                out.extend_from_slice(&batch.buffers[0].as_slice()[..bytes]);
            }
            Err(err) => return (Err(err), p),
        }
    }
    drop(epoch);
    (Ok(out), p)
}

#[test]
fn decoded_pngs_match_the_same_pixels_from_an_array_for_any_worker_count() {
    let (h, w, n) = (24, 30, 5);
    let raw: Vec<Vec<u8>> = (0..n).map(|k| pixels(h, w, k)).collect();
    let blobs = Blobs::from_vecs(raw.iter().map(|p| png(w as u32, h as u32, p)).collect());
    let images: Arc<dyn Source> =
        Arc::new(ImageSource::from_blobs(blobs, None, options(OnError::Raise)).unwrap());
    let view =
        View::from_owned(raw.concat(), &[n, h, w, 3], DType::U8, DLDevice::CPU, true).unwrap();
    let array: Arc<dyn Source> = Arc::new(ArraySource::new(vec![("image".into(), view)]).unwrap());
    let (from_array, _) = run(array, chain(), 1);
    let from_array = from_array.unwrap();
    assert_eq!(from_array.len(), n * 3 * 16 * 16);
    for workers in [1, 3] {
        let (decoded, _) = run(images.clone(), chain(), workers);
        assert_eq!(decoded.unwrap(), from_array, "workers={workers}");
    }
}

#[test]
fn bad_samples_are_replaced_by_the_next_good_one_or_named() {
    let (h, w) = (24, 30);
    let mut blobs: Vec<Vec<u8>> = (0..6)
        .map(|k| png(w, h, &pixels(h as usize, w as usize, k)))
        .collect();
    blobs[1] = b"not an image".to_vec();
    let mut cut = blobs[4].clone();
    cut.truncate(cut.len() / 2);
    blobs[4] = cut;
    let make = |on_error| -> Arc<dyn Source> {
        Arc::new(
            ImageSource::from_blobs(Blobs::from_vecs(blobs.clone()), None, options(on_error))
                .unwrap(),
        )
    };
    let (skipped1, p1) = run(make(OnError::Skip), chain(), 1);
    let (skipped3, p3) = run(make(OnError::Skip), chain(), 3);
    let skipped1 = skipped1.unwrap();
    assert_eq!(skipped1, skipped3.unwrap());
    assert_eq!(skipped1.len(), 6 * 3 * 16 * 16);
    for p in [&p1, &p3] {
        assert_eq!(p.stats().skipped.load(Ordering::Relaxed), 2);
        assert_eq!(p.stats().skipped_files(), ["bytes[1]", "bytes[4]"]);
    }
    let (raised, _) = run(make(OnError::Raise), chain(), 2);
    let err = raised.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PipelineError::Decode { .. }), "{text}");
    assert!(
        text.contains("bytes[1]") || text.contains("bytes[4]"),
        "{text}"
    );
    assert_eq!(err.argument(), "source");
}

#[test]
fn a_variable_size_field_needs_a_chain_that_fixes_the_size() {
    let blobs = Blobs::from_vecs(vec![png(4, 4, &pixels(4, 4, 0))]);
    let source: Arc<dyn Source> =
        Arc::new(ImageSource::from_blobs(blobs, None, options(OnError::Raise)).unwrap());
    let sampler = || Sampler::new(1, false, 0, false, None).unwrap();
    let pool = || {
        BufferPool::new(PoolConfig {
            budget: 1 << 20,
            pin: false,
        })
    };
    let config = PipelineConfig {
        batch_size: 1,
        drop_last: false,
        workers: 1,
        prefetch: 1,
    };
    let resize_only = vec![OpSpec::Resize {
        size: ResizeTo::Shorter(2),
        interpolation: Interpolation::Bilinear,
        antialias: true,
    }];
    for chain in [Vec::new(), resize_only] {
        let err = Pipeline::new(source.clone(), &[chain], sampler(), config.clone(), pool())
            .err()
            .expect("a chain that does not fix the size is refused");
        assert!(
            err.to_string().contains("shape") || err.to_string().contains("size"),
            "{err}"
        );
    }
}

//! `cargo bench -p zerofeed-core --bench images -- DIR`: where one image's time goes, per
//! stage, on the JPEG files under `DIR` (e.g. the `zerofeed bench images` cache folder).
//!
//! One thread, files in memory, medians of several passes. For the train recipe
//! (RandomResizedCrop 224 + flip + Normalize + ToCHW, float32) and the validation recipe
//! (Resize 256 + CenterCrop 224 + the same tail) it times: the full decode (what the floor
//! does), the decode the recipe asks for (region + DCT scale), the resampling alone (the
//! chain without its value ops, so the rows go straight into the slot), and the whole
//! `ImagePlan::run` (resample + normalize + CHW write); the value tail is the difference.
//! Last, the whole of it one image at a time, as a worker runs it (the decoded pixels still
//! in cache when they are resampled, each decode into the last one's allocation).
//! Plain std::time::Instant, no harness.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use zerofeed_core::decode::{
    decode, decode_indexed, decode_reusing, decode_with, probe, ColorMode, DecodeRequest, Decoded,
    EntryPoints, Huffman, Region,
};
use zerofeed_core::ops::{
    Geometry, ImagePlan, ImageRef, ImageScratch, Interpolation, OpSpec, ResizeTo, SampleKey,
};
use zerofeed_core::DType;

const PASSES: usize = 5;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("a readable directory")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        {
            out.push(p);
        }
    }
}

fn chain(train: bool, values: bool) -> Vec<OpSpec> {
    let mut ops = if train {
        vec![
            OpSpec::RandomResizedCrop {
                height: 224,
                width: 224,
                scale: (0.08, 1.0),
                ratio: (0.75, 4.0 / 3.0),
                interpolation: Interpolation::Bilinear,
                antialias: true,
            },
            OpSpec::RandomFlip { p: 0.5 },
        ]
    } else {
        vec![
            OpSpec::Resize {
                size: ResizeTo::Shorter(256),
                interpolation: Interpolation::Bilinear,
                antialias: true,
            },
            OpSpec::CenterCrop {
                height: 224,
                width: 224,
            },
        ]
    };
    if values {
        ops.push(OpSpec::Normalize {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
            scale: None,
            dtype: DType::F32,
        });
        ops.push(OpSpec::ToCHW);
    }
    ops
}

fn request(g: &Geometry) -> DecodeRequest {
    let (top, left, height, width) = g.footprint();
    let whole = (top, left, height, width) == (0, 0, g.full.0, g.full.1);
    DecodeRequest {
        region: (!whole).then_some(Region {
            top,
            left,
            height,
            width,
        }),
        max_scale_denom: g.max_scale_denom(),
        fast_upsampling: true,
        ..DecodeRequest::full(ColorMode::Rgb)
    }
}

fn image(d: &Decoded) -> ImageRef<'_> {
    ImageRef {
        data: &d.pixels,
        height: d.height,
        width: d.width,
        row_bytes: d.width * d.channels,
        origin_top: d.origin_top,
        origin_left: d.origin_left,
        scale: d.scale_denom,
    }
}

/// Median microseconds per image of two ways of decoding, `run(way, image)` for way 0 and
/// 1, interleaved image by image so that the machine's drifts hit both alike (and in turn
/// first, so that neither always finds the file in cache).
fn interleaved(n: usize, mut run: impl FnMut(usize, usize)) -> [f64; 2] {
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..PASSES {
        let mut sums = [0.0; 2];
        for i in 0..n {
            for w in [i % 2, 1 - i % 2] {
                let start = Instant::now();
                run(w, i);
                sums[w] += start.elapsed().as_secs_f64();
            }
        }
        for w in 0..2 {
            times[w].push(sums[w] * 1e6 / n as f64);
        }
    }
    times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[PASSES / 2]
    })
}

/// Prints how long `label`'s way of decoding takes against the default (`requests`,
/// zerofeed's Huffman decoder).
fn compare(label: &str, bytes: &[Vec<u8>], requests: &[DecodeRequest], other: Way) {
    let ways = [
        (Way::Default, requests.to_vec()),
        (other, requests.iter().map(|r| other.apply(*r)).collect()),
    ];
    let [ours, theirs] = interleaved(bytes.len(), |w, i| {
        let (way, requests) = &ways[w];
        black_box(decode_with(&bytes[i], &requests[i], Vec::new(), way.huffman()).unwrap());
    });
    println!(
        "  {label:<42}{theirs:>8.0}  (as above: {ours:.0}, {:.3}x faster)",
        theirs / ours
    );
}

/// The next epoch's decodes (each file with a new crop) with the entry points the last
/// epoch recorded, against the same decodes without: checked equal, then timed.
fn entry_points(bytes: &[Vec<u8>], last: &[DecodeRequest], next: &[DecodeRequest]) {
    let mut points: Vec<EntryPoints> = bytes
        .iter()
        .zip(last)
        .map(|(b, r)| {
            let mut points = EntryPoints::new();
            decode_indexed(b, r, Vec::new(), &mut points).unwrap();
            points
        })
        .collect();
    for (i, b) in bytes.iter().enumerate() {
        let with = decode_indexed(b, &next[i], Vec::new(), &mut points[i].clone()).unwrap();
        assert!(
            with == decode(b, &next[i]).unwrap(),
            "entry points changed the pixels"
        );
    }
    let [with, without] = interleaved(bytes.len(), |w, i| {
        let d = if w == 0 {
            decode_indexed(&bytes[i], &next[i], Vec::new(), &mut points[i])
        } else {
            decode(&bytes[i], &next[i])
        };
        black_box(d.unwrap());
    });
    println!(
        "  {:<42}{with:>8.0}  (without: {without:.0}, {:.3}x faster)",
        "next epoch, with this one's entry points",
        without / with
    );
}

/// A way of decoding to compare with the default.
#[derive(Clone, Copy)]
enum Way {
    Default,
    /// libjpeg-turbo's own Huffman decoder.
    LibjpegHuffman,
    /// Pillow's smooth chroma upsampling instead of the fast one.
    SmoothUpsampling,
}

impl Way {
    fn huffman(self) -> Huffman {
        match self {
            Way::LibjpegHuffman => Huffman::Libjpeg,
            _ => Huffman::Own,
        }
    }

    fn apply(self, request: DecodeRequest) -> DecodeRequest {
        match self {
            Way::SmoothUpsampling => DecodeRequest {
                fast_upsampling: false,
                ..request
            },
            _ => request,
        }
    }
}

/// Median microseconds per image of `f` over all images.
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[PASSES / 2]
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .expect("usage: cargo bench --bench images -- DIR (a folder of JPEG files)");
    let mut paths = Vec::new();
    files(Path::new(&dir), &mut paths);
    let bytes: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let n = bytes.len();
    assert!(n > 0, "no .jpg files under {dir}");
    let full = DecodeRequest::full(ColorMode::Rgb);
    println!("{n} JPEG files from {dir}; us per image, median of {PASSES} passes, 1 thread");
    let t_full = time(n, || {
        for b in &bytes {
            black_box(decode(b, &full).unwrap());
        }
    });
    println!("{:<44}{t_full:>8.0}", "full decode (the floor's work)");
    // The same decode with libjpeg-turbo's own Huffman decoder: what zerofeed's saves.
    for b in &bytes {
        let ours = decode(b, &full).unwrap();
        let theirs = decode_with(b, &full, Vec::new(), Huffman::Libjpeg).unwrap();
        assert!(ours == theirs, "the two Huffman decoders disagree");
    }
    compare(
        "with libjpeg's Huffman decoder",
        &bytes,
        &vec![full; n],
        Way::LibjpegHuffman,
    );
    for train in [true, false] {
        let name = if train { "train" } else { "val" };
        let plan = ImagePlan::compile(None, 3, DType::U8, &chain(train, true)).unwrap();
        let bare = ImagePlan::compile(None, 3, DType::U8, &chain(train, false)).unwrap();
        let keys: Vec<SampleKey> = (0..n as u64)
            .map(|index| SampleKey {
                seed: 0,
                epoch: 0,
                index,
            })
            .collect();
        let geoms: Vec<Geometry> = bytes
            .iter()
            .zip(&keys)
            .map(|(b, &k)| {
                let info = probe(b).unwrap();
                plan.geometry(info.height, info.width, k).unwrap()
            })
            .collect();
        let t_probe = time(n, || {
            for (b, &k) in bytes.iter().zip(&keys) {
                let info = probe(b).unwrap();
                black_box(plan.geometry(info.height, info.width, k).unwrap());
            }
        });
        let t_decode = time(n, || {
            for (b, g) in bytes.iter().zip(&geoms) {
                black_box(decode(b, &request(g)).unwrap());
            }
        });
        let decoded: Vec<Decoded> = bytes
            .iter()
            .zip(&geoms)
            .map(|(b, g)| decode(b, &request(g)).unwrap())
            .collect();
        for ((b, g), d) in bytes.iter().zip(&geoms).zip(&decoded) {
            let theirs = decode_with(b, &request(g), Vec::new(), Huffman::Libjpeg).unwrap();
            assert!(
                *d == theirs,
                "the two Huffman decoders disagree on a {name} region"
            );
        }
        let (mut px_full, mut px_dec) = (0usize, 0usize);
        for (d, g) in decoded.iter().zip(&geoms) {
            px_full += g.full.0 * g.full.1;
            px_dec += d.height * d.width;
        }
        let mut scratch = ImageScratch::default();
        let mut dst = vec![0u8; plan.output_nbytes()];
        let mut dst_bare = vec![0u8; bare.output_nbytes()];
        let t_resample = time(n, || {
            for ((d, g), &k) in decoded.iter().zip(&geoms).zip(&keys) {
                bare.run(image(d), g, k, &mut dst_bare, &mut scratch)
                    .unwrap();
            }
        });
        let t_run = time(n, || {
            for ((d, g), &k) in decoded.iter().zip(&geoms).zip(&keys) {
                plan.run(image(d), g, k, &mut dst, &mut scratch).unwrap();
            }
        });
        println!("{name}: probe + geometry{:>27.1}", t_probe);
        println!(
            "{name}: region/DCT decode ({:.0}% of the pixels){:>9.0}",
            100.0 * px_dec as f64 / px_full as f64,
            t_decode
        );
        let requests: Vec<DecodeRequest> = geoms.iter().map(request).collect();
        compare(
            "with libjpeg's Huffman decoder",
            &bytes,
            &requests,
            Way::LibjpegHuffman,
        );
        compare(
            "with smooth chroma upsampling",
            &bytes,
            &requests,
            Way::SmoothUpsampling,
        );
        let next: Vec<DecodeRequest> = bytes
            .iter()
            .zip(&keys)
            .map(|(b, &k)| {
                let info = probe(b).unwrap();
                let k = SampleKey { epoch: 1, ..k };
                request(&plan.geometry(info.height, info.width, k).unwrap())
            })
            .collect();
        entry_points(&bytes, &requests, &next);
        println!(
            "{name}: resample (u8 rows into the slot){:>12.0}",
            t_resample
        );
        println!(
            "{name}: normalize + CHW write (run - resample){:>6.0}",
            t_run - t_resample
        );
        println!(
            "{name}: total{:>38.0}  ({:.2}x the full decode)",
            t_probe + t_decode + t_run,
            t_full / (t_probe + t_decode + t_run)
        );
        // As a worker runs it: each image decoded, then resampled while still in cache (the
        // rows above resample every decoded image after all were decoded, from memory).
        let mut pixels = Vec::new();
        let t_worker = time(n, || {
            for (b, &k) in bytes.iter().zip(&keys) {
                let info = probe(b).unwrap();
                let g = plan.geometry(info.height, info.width, k).unwrap();
                let d = decode_reusing(b, &request(&g), std::mem::take(&mut pixels)).unwrap();
                plan.run(image(&d), &g, k, &mut dst, &mut scratch).unwrap();
                pixels = d.pixels;
            }
        });
        println!(
            "{name}: one image at a time, as a worker{:>12.0}  (resample + tail {:.0})",
            t_worker,
            t_worker - t_probe - t_decode
        );
    }
}

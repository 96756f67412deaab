//! Windows checked against positions computed independently: the stream is `0..n` (u32), so
//! every value read names the step it came from.

use super::*;
use crate::dlpack::DLDevice;

fn stream(start: u32, n: usize) -> View {
    let bytes: Vec<u8> = (start..start + n as u32)
        .flat_map(u32::to_le_bytes)
        .collect();
    View::from_owned(bytes, &[n], DType::U32, DLDevice::CPU, true).unwrap()
}

fn series_2d(t: usize, f: usize) -> View {
    let bytes: Vec<u8> = (0..(t * f) as u32).flat_map(u32::to_le_bytes).collect();
    View::from_owned(bytes, &[t, f], DType::U32, DLDevice::CPU, true).unwrap()
}

fn spec(length: usize) -> WindowSpec {
    WindowSpec {
        length,
        stride: None,
        target: Target::None,
        boundaries: Vec::new(),
        phase: Phase::Fixed,
        sampling: Sampling::Grid,
        positions: false,
    }
}

fn values(sample: Sample<'_>) -> Vec<u32> {
    let Sample::Strided(s) = sample else {
        panic!("windows are strided samples")
    };
    let layout = s.layout();
    let n: usize = layout.shape().iter().product();
    assert_eq!(layout.strides().last(), Some(&4), "contiguous test data");
    // SAFETY: the sample was bounds-checked by View::sample; its n elements are contiguous
    // (asserted above for the last axis, and the test views are C-contiguous).
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr(), n * 4) };
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn starts(source: &WindowSource, seed: u64, epoch: u64) -> Vec<u32> {
    (0..source.len())
        .map(|i| values(source.sample_in_epoch(seed, epoch, i, 0).unwrap())[0])
        .collect()
}

#[test]
fn default_stride_covers_every_step_once() {
    let s = WindowSource::new(vec![stream(0, 20)], spec(4)).unwrap();
    assert_eq!(s.len(), 5);
    assert_eq!(s.fields()[0].shape, Some(vec![4]));
    assert_eq!(s.fields()[0].name, "");
    let all: Vec<u32> = (0..5)
        .flat_map(|i| values(s.sample(i, 0).unwrap()))
        .collect();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    assert!(matches!(
        s.sample(5, 0),
        Err(SampleError::IndexOutOfRange { index: 5, len: 5 })
    ));
    assert!(matches!(
        s.sample(0, 1),
        Err(SampleError::NoSuchField { .. })
    ));
}

#[test]
fn next_targets_are_shifted_by_one_and_stay_inside() {
    let mut sp = spec(5);
    sp.target = Target::Next;
    sp.stride = Some(3);
    let s = WindowSource::new(vec![stream(100, 16)], sp).unwrap();
    // starts 0, 3, 6, 9 (9 + 5 + 1 = 15 <= 16), not 12
    assert_eq!(s.len(), 4);
    for i in 0..s.len() {
        let x = values(s.sample(i, 0).unwrap());
        let y = values(s.sample(i, 1).unwrap());
        let first = 100 + 3 * i as u32;
        assert_eq!(x, (first..first + 5).collect::<Vec<_>>());
        assert_eq!(y, (first + 1..first + 6).collect::<Vec<_>>());
    }
    assert_eq!(s.fields()[1].name, "target");
}

#[test]
fn horizon_targets_follow_the_window_in_2d_series() {
    let mut sp = spec(3);
    sp.target = Target::Horizon(2);
    sp.stride = Some(1);
    let s = WindowSource::new(vec![series_2d(7, 2)], sp).unwrap();
    assert_eq!(s.len(), 3); // starts 0, 1, 2: 2 + 3 + 2 = 7
    assert_eq!(s.fields()[0].shape, Some(vec![3, 2]));
    assert_eq!(s.fields()[1].shape, Some(vec![2, 2]));
    let x = values(s.sample(2, 0).unwrap());
    let y = values(s.sample(2, 1).unwrap());
    assert_eq!(x, (4..10).collect::<Vec<_>>());
    assert_eq!(y, (10..14).collect::<Vec<_>>());
}

#[test]
fn windows_never_cross_series_or_boundaries() {
    let mut sp = spec(3);
    sp.stride = Some(1);
    // stream: series 0 = steps 0..10 (values 0..10), series 1 = steps 10..18 (values 50..58)
    sp.boundaries = vec![0, 4, 12, 13];
    let s = WindowSource::new(vec![stream(0, 10), stream(50, 8)], sp).unwrap();
    let docs: [(u32, u32); 5] = [(0, 4), (4, 10), (50, 52), (52, 53), (53, 58)];
    let mut expected = Vec::new();
    for (a, b) in docs {
        let mut p = a;
        while p + 3 <= b {
            expected.push(p);
            p += 1;
        }
    }
    assert_eq!(starts(&s, 0, 0), expected);
    for i in 0..s.len() {
        let w = values(s.sample(i, 0).unwrap());
        assert!(docs.iter().any(|&(a, b)| w[0] >= a && w[2] < b), "{w:?}");
        assert_eq!(w[2], w[0] + 2);
    }
}

#[test]
fn random_phase_keeps_the_count_and_moves_the_grid_by_epoch() {
    let mut sp = spec(8);
    sp.phase = Phase::Random;
    sp.target = Target::Next;
    let s = WindowSource::new(vec![stream(0, 1000)], sp).unwrap();
    // (1000 - 9 + 1) / 8 = 124 windows at any phase in 0..8
    assert_eq!(s.len(), 124);
    let mut phases = std::collections::BTreeSet::new();
    for epoch in 0..40 {
        let st = starts(&s, 7, epoch);
        let phase = st[0];
        assert!(phase < 8);
        phases.insert(phase);
        for (k, &start) in st.iter().enumerate() {
            assert_eq!(start, phase + 8 * k as u32);
            assert!(start as usize + 9 <= 1000);
        }
        assert_eq!(
            st,
            starts(&s, 7, epoch),
            "the same epoch gives the same grid"
        );
    }
    assert!(phases.len() > 4, "phases over 40 epochs: {phases:?}");
    // the epoch-free answer is the unshifted grid
    assert_eq!(values(s.sample(1, 0).unwrap())[0], 8);
}

#[test]
fn random_phase_in_a_series_of_one_window_uses_its_slack() {
    let mut sp = spec(6);
    sp.phase = Phase::Random;
    sp.stride = Some(10);
    let s = WindowSource::new(vec![stream(0, 9)], sp).unwrap();
    assert_eq!(s.len(), 1);
    let all: std::collections::BTreeSet<u32> = (0..64).map(|e| starts(&s, 1, e)[0]).collect();
    assert!(all.iter().all(|&p| p <= 3) && all.len() > 1, "{all:?}");
}

#[test]
fn bad_arguments_are_typed_and_named() {
    let err = |sp: WindowSpec, series: Vec<View>| WindowSource::new(series, sp).err().unwrap();
    let e = err(spec(0), vec![stream(0, 4)]);
    assert_eq!(
        (e.argument(), e.clone()),
        ("length", WindowError::ZeroLength)
    );
    let mut sp = spec(2);
    sp.stride = Some(0);
    assert_eq!(err(sp, vec![stream(0, 4)]).argument(), "stride");
    let e = err(spec(5), vec![stream(0, 8), stream(0, 4)]);
    assert_eq!(e.argument(), "length");
    assert!(e.to_string().contains("series 1, which has 4 steps"), "{e}");
    let mut sp = spec(4);
    sp.target = Target::Next;
    assert_eq!(err(sp, vec![stream(0, 4)]).argument(), "target");
    let mut sp = spec(4);
    sp.target = Target::Horizon(0);
    assert_eq!(err(sp, vec![stream(0, 8)]).argument(), "target");
    let mut sp = spec(2);
    sp.boundaries = vec![3, 3];
    let e = err(sp, vec![stream(0, 8)]);
    assert_eq!(e.argument(), "boundaries");
    assert!(e.to_string().starts_with("boundaries[1]=3"), "{e}");
    let mut sp = spec(2);
    sp.boundaries = vec![8];
    assert!(matches!(
        err(sp, vec![stream(0, 8)]),
        WindowError::BoundaryOutOfRange { total: 8, .. }
    ));
    assert_eq!(err(spec(2), vec![]).argument(), "source");
    let e = err(spec(2), vec![stream(0, 8), series_2d(8, 2)]);
    assert!(
        matches!(e, WindowError::ShapeMismatch { series: 1, .. }),
        "{e}"
    );
    let scalar = View::from_owned(vec![0u8; 4], &[], DType::U32, DLDevice::CPU, true).unwrap();
    assert!(matches!(
        err(spec(1), vec![scalar]),
        WindowError::Rank { ndim: 0, .. }
    ));
    let bytes = View::from_owned(vec![0u8; 8], &[8], DType::U8, DLDevice::CPU, true).unwrap();
    assert!(matches!(
        err(spec(1), vec![stream(0, 8), bytes]),
        WindowError::DTypeMismatch { series: 1, .. }
    ));
    let mut sp = spec(usize::MAX);
    sp.target = Target::Next;
    assert!(matches!(
        err(sp, vec![stream(0, 8)]),
        WindowError::Overflow { .. }
    ));
}

#[test]
fn documents_shorter_than_a_window_have_none() {
    let mut sp = spec(4);
    sp.boundaries = (0..10).map(|d| d * 3).collect(); // 10 documents of 3 steps
    let s = WindowSource::new(vec![stream(0, 30)], sp).unwrap();
    assert_eq!(s.len(), 0);
    assert!(s.is_empty());
}

#[test]
fn replacement_draws_fit_inside_their_segment_and_repeat_per_key() {
    let mut sp = spec(4);
    sp.sampling = Sampling::Replacement;
    sp.target = Target::Next;
    sp.boundaries = vec![7, 9]; // segments 0..7, 9..30 (7..9 is too short for 5 steps)
    let s = WindowSource::new(vec![stream(0, 30)], sp).unwrap();
    assert_eq!(s.len(), 1 + 5); // the fixed grid's count: (7-5)/4+1 + (21-5)/4+1
    let mut seen = std::collections::BTreeSet::new();
    for epoch in 0..200 {
        for i in 0..s.len() {
            let x = values(s.sample_in_epoch(3, epoch, i, 0).unwrap())[0];
            assert_eq!(x, values(s.sample_in_epoch(3, epoch, i, 0).unwrap())[0]);
            assert!(
                x <= 2 || (9..=25).contains(&x),
                "start {x} crosses a boundary"
            );
            seen.insert(x);
        }
    }
    // Every start that fits is drawn: 0..=2 and 9..=25.
    assert_eq!(seen.len(), 3 + 17);
}

#[test]
fn document_positions_count_from_each_segment_start() {
    let mut sp = spec(3);
    sp.positions = true;
    sp.phase = Phase::Random;
    sp.boundaries = vec![10];
    let s = WindowSource::new(vec![stream(0, 16), stream(100, 8)], sp).unwrap();
    let names: Vec<&str> = s.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["input", POSITION_FIELD]);
    assert_eq!(s.fields()[1].dtype, DType::I64);
    for epoch in 0..5 {
        for i in 0..s.len() {
            let first = values(s.sample_in_epoch(1, epoch, i, 0).unwrap())[0];
            let Sample::Arange(position) = s.sample_in_epoch(1, epoch, i, 1).unwrap() else {
                panic!("positions are computed")
            };
            let doc_start = match first {
                0..=9 => 0,
                10..=15 => 10,
                _ => 100,
            };
            assert_eq!(
                position,
                i64::from(first - doc_start),
                "window {i} of epoch {epoch}"
            );
        }
    }
}

/// Every window of `rows`, read through the rows' own copy.
fn row_values(rows: &Rows<'_>, len: usize) -> Vec<Vec<u32>> {
    let indices: Vec<usize> = (0..len).collect();
    let mut out = vec![0u8; len * rows.row_bytes()];
    rows.copy_into(&indices, &mut out).unwrap();
    out.chunks_exact(rows.row_bytes())
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

#[test]
fn one_segment_offers_its_windows_as_rows_of_the_epochs_grid() {
    let mut s = spec(6);
    s.stride = Some(4);
    s.target = Target::Next;
    s.phase = Phase::Random;
    let source = WindowSource::new(vec![stream(0, 61)], s.clone()).unwrap();
    for epoch in 0..4 {
        for field in 0..2 {
            let rows = source
                .rows_in_epoch(9, epoch, field)
                .expect("one uncut stream");
            let expected: Vec<Vec<u32>> = (0..source.len())
                .map(|i| values(source.sample_in_epoch(9, epoch, i, field).unwrap()))
                .collect();
            assert_eq!(row_values(&rows, source.len()), expected, "epoch {epoch}");
        }
    }
    // Series (one segment each), boundaries and draws with replacement: sample by sample.
    let two = WindowSource::new(vec![stream(0, 30), stream(100, 30)], spec(6)).unwrap();
    assert!(two.rows_in_epoch(0, 0, 0).is_none());
    let mut cut = spec(6);
    cut.boundaries = vec![17];
    let cut = WindowSource::new(vec![stream(0, 40)], cut).unwrap();
    assert!(cut.rows_in_epoch(0, 0, 0).is_none());
    let mut drawn = spec(6);
    drawn.sampling = Sampling::Replacement;
    let drawn = WindowSource::new(vec![stream(0, 40)], drawn).unwrap();
    assert!(drawn.rows_in_epoch(0, 0, 0).is_none());
    // A (T, F) series' windows are whole rows of F features.
    let wide = WindowSource::new(vec![series_2d(20, 3)], spec(4)).unwrap();
    let rows = wide.rows_in_epoch(0, 0, 0).expect("a packed 2-d series");
    assert_eq!(rows.row_bytes(), 4 * 3 * 4);
    assert_eq!(row_values(&rows, 1)[0], (0..12).collect::<Vec<u32>>());
}

//! [`WindowSource`]: fixed-length windows over token streams and time series, read in place.
//!
//! The series (1-d token arrays or `(T, F)` arrays whose axis 0 is time) are laid end to end
//! in one logical stream: `boundaries` and window positions are offsets in it. A window never
//! crosses from one series to the next, nor a document boundary: the cuts split the stream
//! into segments, and each segment has its own grid of windows, `stride` apart. Sample `i` is
//! found by a binary search over the segments' cumulative window counts, so memory grows with
//! the number of segments (series plus boundaries), never with the number of windows.
//!
//! With [`Phase::Random`] each segment's grid is shifted by an offset drawn from
//! `(seed, epoch, segment)` and the number of windows per segment does not depend on the
//! offset, so the sampler (built once for [`Source::len`]) stays valid in every epoch: the
//! pipeline passes the epoch through [`Source::sample_in_epoch`].

use std::cell::Cell;

use crate::layout::Layout;
use crate::sampler::CounterRng;
use crate::view::View;
use crate::DType;

use super::rows::Rows;
use super::sample::{FieldSpec, Sample, SampleError, Source};

/// Stream word that keeps the phase draws apart from the shuffle and op randomness.
const PHASE_DOMAIN: u64 = 0x5048_4153_4552_4e44; // "PHASERND"
/// Stream word of the window starts drawn with [`Sampling::Replacement`].
const REPLACE_DOMAIN: u64 = 0x5245_504c_4143_4544; // "REPLACED"

thread_local! {
    /// The last phase this thread drew, with what it was drawn from: a batch's windows
    /// mostly share a segment (one token stream is one segment), and three Philox rounds
    /// per window and field were a tenth of a worker's time on 2 KB windows.
    static LAST_PHASE: Cell<Option<([u64; 4], usize)>> = const { Cell::new(None) };
}

/// The grid offset of segment `number` in `epoch`: uniform in `0..=max_phase`, a function
/// of its arguments alone (cached per thread, never stored per segment).
fn segment_phase(seed: u64, epoch: u64, number: usize, max_phase: usize) -> usize {
    let key = [seed, epoch, number as u64, max_phase as u64];
    if let Some((last, phase)) = LAST_PHASE.get() {
        if last == key {
            return phase;
        }
    }
    let phase = CounterRng::new(seed, &[PHASE_DOMAIN, epoch])
        .below(number as u64, max_phase as u64 + 1) as usize;
    LAST_PHASE.set(Some((key, phase)));
    phase
}

/// The name of the position-ids field ([`WindowSpec::positions`]).
pub const POSITION_FIELD: &str = "document_position";

/// What a window's sample is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The window itself: one unnamed field of `length` steps.
    None,
    /// `"input"` and `"target"`, the target one step later; both lie in one window of
    /// `length + 1` steps.
    Next,
    /// `"input"` (`length` steps) and `"target"`, the `H` steps after it (forecasting).
    Horizon(usize),
}

impl Target {
    /// Steps a window needs beyond `length`.
    fn extra(self) -> usize {
        match self {
            Target::None => 0,
            Target::Next => 1,
            Target::Horizon(h) => h,
        }
    }
}

/// Where each segment's grid of windows starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// At the segment's first step, in every epoch.
    Fixed,
    /// Shifted by an offset in `0..stride` drawn from `(seed, epoch, segment)`, so that over
    /// epochs every position starts windows and no step is always at a window's edge.
    Random,
}

/// How sample `i` of an epoch finds its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// On the segments' grids, `stride` apart (shifted per epoch with [`Phase::Random`]).
    Grid,
    /// At a start drawn uniformly from every start that fits a window, keyed by
    /// `(seed, epoch, index)` (nanoGPT's random offsets, but deterministic and resumable).
    /// An epoch has as many samples as the fixed grid has windows.
    Replacement,
}

/// How to cut windows out of the series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length in steps (the input's length when there is a target).
    pub length: usize,
    /// Distance between window starts; `None` means `length` (every step in one window).
    pub stride: Option<usize>,
    /// What the sample is made of.
    pub target: Target,
    /// Document start offsets in the logical stream, strictly increasing, each below its
    /// total length: no window crosses one.
    pub boundaries: Vec<u64>,
    /// Where each segment's grid starts.
    pub phase: Phase,
    /// Grid windows or starts drawn with replacement.
    pub sampling: Sampling,
    /// Add the field [`POSITION_FIELD`]: int64 position ids of the input's steps in their
    /// document (each series and each boundary starts one, at 0).
    pub positions: bool,
}

/// A bad window argument. [`WindowError::argument`] names the argument at fault.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowError {
    /// No series was given.
    #[error("the source has no series; give at least one token array or time series")]
    NoSeries,
    /// A series that worker threads cannot read.
    #[error("series {series} is on {device}; windows are read from host memory (NumPy arrays, memory-mapped files)")]
    NotOnHost {
        /// The series' position in the list.
        series: usize,
        /// Where it is.
        device: String,
    },
    /// A series that is neither 1-d tokens nor a `(T, F)` series.
    #[error("series {series} has {ndim} dimensions; give 1-d token arrays or 2-d (time, features) arrays")]
    Rank {
        /// The series' position.
        series: usize,
        /// Its number of dimensions.
        ndim: usize,
    },
    /// Series of different element types.
    #[error("series {series} holds {found} but series 0 holds {expected}; every series needs the same dtype (convert them, or open them as separate sources)")]
    DTypeMismatch {
        /// The series at fault.
        series: usize,
        /// Its dtype.
        found: DType,
        /// The first series' dtype.
        expected: DType,
    },
    /// Series whose steps have different shapes.
    #[error("series {series} has steps of shape {found:?} but series 0 has {expected:?}; every series needs the same number of features")]
    ShapeMismatch {
        /// The series at fault.
        series: usize,
        /// Its step shape.
        found: Vec<usize>,
        /// The first series' step shape.
        expected: Vec<usize>,
    },
    /// `length` is 0.
    #[error("length=0 is not valid; a window needs at least one step")]
    ZeroLength,
    /// `stride` is 0.
    #[error(
        "stride=0 is not valid; use a positive distance between window starts (default: length)"
    )]
    ZeroStride,
    /// A horizon of 0 steps.
    #[error("target=0 is not valid; give a positive horizon, \"next\" or None")]
    ZeroHorizon,
    /// A series shorter than one window.
    #[error("length={length} is longer than series {series}, which has {steps} steps; use a shorter length")]
    SeriesTooShort {
        /// The series.
        series: usize,
        /// Its steps.
        steps: usize,
        /// The window length.
        length: usize,
    },
    /// A series with room for the window but not for its target.
    #[error("target needs {extra} steps after a window of length={length}, but series {series} has only {steps} steps; use a shorter length or target")]
    TargetTooLong {
        /// The series.
        series: usize,
        /// Its steps.
        steps: usize,
        /// The window length.
        length: usize,
        /// Steps the target needs after the window.
        extra: usize,
    },
    /// Boundaries out of order.
    #[error("boundaries[{position}]={value} is not above boundaries[{}]={previous}; give sorted, distinct document start offsets", position - 1)]
    BoundariesUnsorted {
        /// The position of the offending entry.
        position: usize,
        /// Its value.
        value: u64,
        /// The entry before it.
        previous: u64,
    },
    /// A boundary past the stream.
    #[error("boundaries[{position}]={value} is out of range for a stream of {total} steps; offsets must be below the total length")]
    BoundaryOutOfRange {
        /// The position of the offending entry.
        position: usize,
        /// Its value.
        value: u64,
        /// Steps in all series together.
        total: u64,
    },
    /// A begin-of-sequence token the series' dtype cannot hold.
    #[error("bos={token} does not fit in the tokens' dtype {dtype}; give a token id the stream can hold")]
    BosOutOfRange {
        /// The token given.
        token: i64,
        /// The series' dtype.
        dtype: DType,
    },
    /// `bos` scans 1-d contiguous token arrays only.
    #[error("bos= needs 1-d contiguous token arrays in host memory, and series {series} is not; pass the tokens (or a copy) as a contiguous array, or give boundaries=")]
    BosNeedsContiguous {
        /// The series at fault.
        series: usize,
    },
    /// A count that does not fit in memory's index type.
    #[error("{argument}: {what} overflows; use fewer or shorter series, or a larger stride")]
    Overflow {
        /// The argument at fault.
        argument: &'static str,
        /// What overflowed.
        what: &'static str,
    },
}

impl WindowError {
    /// The argument the error is about: `source`, `length`, `stride`, `target` or `boundaries`.
    pub fn argument(&self) -> &'static str {
        match self {
            WindowError::ZeroLength | WindowError::SeriesTooShort { .. } => "length",
            WindowError::ZeroStride => "stride",
            WindowError::ZeroHorizon | WindowError::TargetTooLong { .. } => "target",
            WindowError::BoundariesUnsorted { .. } | WindowError::BoundaryOutOfRange { .. } => {
                "boundaries"
            }
            WindowError::BosOutOfRange { .. } | WindowError::BosNeedsContiguous { .. } => "bos",
            WindowError::Overflow { argument, .. } => argument,
            _ => "source",
        }
    }
}

/// One series and the layout of each field's window over it.
struct Series {
    view: View,
    /// Bytes between consecutive steps.
    step: isize,
    /// One layout per field (the window or the target's steps).
    layouts: Vec<Layout>,
}

/// A run of the stream between cuts, with room for at least one window.
#[derive(Clone, Copy, Debug)]
struct Segment {
    series: usize,
    /// First step, counted within the series.
    start: usize,
    /// Windows in all segments before this one.
    first: usize,
    /// Windows in this one (the same in every epoch).
    count: usize,
    /// The largest phase offset that keeps `count` windows inside.
    max_phase: usize,
    /// Window starts (every step a window fits after) in all segments before this one.
    first_start: u64,
    /// Window starts in this one.
    starts: u64,
}

/// Windows over one or more series; see the module documentation.
pub struct WindowSource {
    series: Vec<Series>,
    segments: Vec<Segment>,
    specs: Vec<FieldSpec>,
    spec: WindowSpec,
    stride: usize,
    len: usize,
    /// Window starts in all segments ([`Sampling::Replacement`] draws below it).
    starts: u64,
}

/// Windows (and the largest phase offset) for a segment of `steps` steps when each window
/// takes `need` steps: fixed grids start at 0; random grids keep the count they would have at
/// any offset below `stride`, so it is the same in every epoch.
fn grid(steps: usize, need: usize, stride: usize, phase: Phase) -> (usize, usize) {
    let Some(last) = steps.checked_sub(need) else {
        return (0, 0);
    };
    match phase {
        Phase::Fixed => (last / stride + 1, 0),
        Phase::Random => {
            // last + 1 cannot overflow: need >= 1.
            let count = ((last + 1) / stride).max(1);
            // count >= 2 only when (count - 1) * stride <= last + 1 - stride <= last.
            let slack = last - (count - 1) * stride;
            (count, slack.min(stride - 1))
        }
    }
}

impl WindowSource {
    /// Windows over `series` (in order: the logical stream) as `spec` describes.
    pub fn new(series: Vec<View>, spec: WindowSpec) -> Result<WindowSource, WindowError> {
        if spec.length == 0 {
            return Err(WindowError::ZeroLength);
        }
        let stride = spec.stride.unwrap_or(spec.length);
        if stride == 0 {
            return Err(WindowError::ZeroStride);
        }
        if spec.target == Target::Horizon(0) {
            return Err(WindowError::ZeroHorizon);
        }
        let extra = spec.target.extra();
        let need = spec
            .length
            .checked_add(extra)
            .ok_or(WindowError::Overflow {
                argument: "target",
                what: "length + target",
            })?;
        let first = series.first().ok_or(WindowError::NoSeries)?;
        // A 0-d first series has no steps; check_series refuses it before comparing shapes.
        let step_shape = first.layout().shape().get(1..).unwrap_or_default().to_vec();
        let dtype = first.dtype();
        let mut parts = Vec::with_capacity(series.len());
        for (number, view) in series.into_iter().enumerate() {
            parts.push(Self::check_series(
                number,
                view,
                dtype,
                &step_shape,
                &spec,
                need,
            )?);
        }
        let segments = Self::segments(&parts, &spec, need, stride)?;
        let len = segments.last().map_or(0, |s| s.first + s.count);
        let starts = segments.last().map_or(0, |s| s.first_start + s.starts);
        let field = |name: &str, steps: usize| {
            let mut shape = vec![steps];
            shape.extend_from_slice(&step_shape);
            FieldSpec {
                name: name.to_owned(),
                dtype,
                shape: Some(shape),
            }
        };
        let mut specs = match spec.target {
            // With positions the sample is a dict, so the window needs a name.
            Target::None if spec.positions => vec![field("input", spec.length)],
            Target::None => vec![field("", spec.length)],
            Target::Next => vec![field("input", spec.length), field("target", spec.length)],
            Target::Horizon(h) => vec![field("input", spec.length), field("target", h)],
        };
        if spec.positions {
            specs.push(FieldSpec {
                name: POSITION_FIELD.to_owned(),
                dtype: DType::I64,
                shape: Some(vec![spec.length]),
            });
        }
        let source = WindowSource {
            series: parts,
            segments,
            specs,
            spec,
            stride,
            len,
            starts,
        };
        if source.spec.sampling == Sampling::Replacement {
            source.expect_random_access();
        }
        Ok(source)
    }

    fn check_series(
        number: usize,
        view: View,
        dtype: DType,
        step_shape: &[usize],
        spec: &WindowSpec,
        need: usize,
    ) -> Result<Series, WindowError> {
        if !view.device().is_host_accessible() {
            return Err(WindowError::NotOnHost {
                series: number,
                device: view.device().name(),
            });
        }
        let layout = view.layout().clone();
        if !(1..=2).contains(&layout.ndim()) {
            return Err(WindowError::Rank {
                series: number,
                ndim: layout.ndim(),
            });
        }
        if view.dtype() != dtype {
            return Err(WindowError::DTypeMismatch {
                series: number,
                found: view.dtype(),
                expected: dtype,
            });
        }
        if layout.shape()[1..] != *step_shape {
            return Err(WindowError::ShapeMismatch {
                series: number,
                found: layout.shape()[1..].to_vec(),
                expected: step_shape.to_vec(),
            });
        }
        let steps = layout.shape()[0];
        if steps < spec.length {
            return Err(WindowError::SeriesTooShort {
                series: number,
                steps,
                length: spec.length,
            });
        }
        if steps < need {
            return Err(WindowError::TargetTooLong {
                series: number,
                steps,
                length: spec.length,
                extra: spec.target.extra(),
            });
        }
        let window = |steps: usize| {
            let mut shape = layout.shape().to_vec();
            shape[0] = steps;
            // A prefix of the series along axis 0 with its strides: valid as the series is.
            Layout::new(shape, layout.strides().to_vec(), layout.itemsize())
                .expect("a window of a valid layout is valid")
        };
        let layouts = match spec.target {
            Target::None => vec![window(spec.length)],
            Target::Next => vec![window(spec.length), window(spec.length)],
            Target::Horizon(h) => vec![window(spec.length), window(h)],
        };
        Ok(Series {
            step: layout.strides()[0],
            view,
            layouts,
        })
    }

    /// Cuts the stream at series ends and boundaries; keeps the segments with a window.
    fn segments(
        parts: &[Series],
        spec: &WindowSpec,
        need: usize,
        stride: usize,
    ) -> Result<Vec<Segment>, WindowError> {
        let overflow = |what| WindowError::Overflow {
            argument: "source",
            what,
        };
        let mut total: u64 = 0;
        for part in parts {
            total = total
                .checked_add(part.view.layout().shape()[0] as u64)
                .ok_or(overflow("the total number of steps"))?;
        }
        for (position, &value) in spec.boundaries.iter().enumerate() {
            if value >= total {
                return Err(WindowError::BoundaryOutOfRange {
                    position,
                    value,
                    total,
                });
            }
            if let Some(&previous) = position.checked_sub(1).map(|p| &spec.boundaries[p]) {
                if value <= previous {
                    return Err(WindowError::BoundariesUnsorted {
                        position,
                        value,
                        previous,
                    });
                }
            }
        }
        let mut segments = Vec::new();
        let mut windows: usize = 0;
        let mut starts: u64 = 0;
        // The grid count does not depend on the phase with replacement (no grid is read).
        let phase = match spec.sampling {
            Sampling::Grid => spec.phase,
            Sampling::Replacement => Phase::Fixed,
        };
        let mut cuts = spec.boundaries.iter().peekable();
        let mut base: u64 = 0;
        for (number, part) in parts.iter().enumerate() {
            let steps = part.view.layout().shape()[0];
            let end = base + steps as u64; // <= total, checked above
            let mut start = 0usize;
            loop {
                // Cuts at or before this series' start are already behind us.
                while cuts.next_if(|&&b| b <= base + start as u64).is_some() {}
                let stop = match cuts.peek() {
                    Some(&&b) if b < end => (b - base) as usize,
                    _ => steps,
                };
                let (count, max_phase) = grid(stop - start, need, stride, phase);
                if count > 0 {
                    // count > 0: the segment holds `need` steps.
                    let here = (stop - start - need + 1) as u64;
                    segments.push(Segment {
                        series: number,
                        start,
                        first: windows,
                        count,
                        max_phase,
                        first_start: starts,
                        starts: here,
                    });
                    // Below the total steps, checked to fit in u64.
                    starts += here;
                    windows = windows
                        .checked_add(count)
                        .ok_or(overflow("the number of windows"))?;
                }
                if stop == steps {
                    break;
                }
                start = stop;
            }
            base = end;
        }
        Ok(segments)
    }

    /// The window arguments, as given.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// The distance between window starts (`stride`, or `length` by default).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The series, in stream order.
    pub fn views(&self) -> impl Iterator<Item = &View> {
        self.series.iter().map(|s| &s.view)
    }

    /// Where window `index` starts in epoch `epoch` of a loader seeded with `seed` (the
    /// pipeline's grid): the series number and the step within it. `None` for an index out
    /// of range.
    pub fn window_start(&self, seed: u64, epoch: u64, index: usize) -> Option<(usize, usize)> {
        self.start_of(Some((seed, epoch)), index)
            .map(|(series, step, _)| (series, step))
    }

    /// `epoch` is `(seed, epoch)` for the epoch's grid, `None` for the unshifted one (seed
    /// and epoch 0 for draws with replacement). Returns the series, the step in it, and the
    /// step's position in its document.
    fn start_of(&self, epoch: Option<(u64, u64)>, index: usize) -> Option<(usize, usize, usize)> {
        if index >= self.len {
            return None;
        }
        if self.spec.sampling == Sampling::Replacement {
            let (seed, epoch) = epoch.unwrap_or((0, 0));
            let draw =
                CounterRng::new(seed, &[REPLACE_DOMAIN, epoch]).below(index as u64, self.starts);
            let number = self.segments.partition_point(|s| s.first_start <= draw) - 1;
            let segment = &self.segments[number];
            // draw - first_start < segment.starts, which is a count of steps in the series.
            let offset = (draw - segment.first_start) as usize;
            return Some((segment.series, segment.start + offset, offset));
        }
        let number = self.segments.partition_point(|s| s.first <= index) - 1;
        let segment = &self.segments[number];
        let phase = match (self.spec.phase, epoch) {
            (Phase::Random, Some((seed, epoch))) => {
                segment_phase(seed, epoch, number, segment.max_phase)
            }
            _ => 0,
        };
        // k * stride + phase <= (count - 1) * stride + max_phase <= steps - need (see `grid`).
        let offset = phase + (index - segment.first) * self.stride;
        Some((segment.series, segment.start + offset, offset))
    }

    fn read(
        &self,
        epoch: Option<(u64, u64)>,
        index: usize,
        field: usize,
    ) -> Result<Sample<'_>, SampleError> {
        if field >= self.specs.len() {
            return Err(SampleError::NoSuchField {
                field,
                fields: self.specs.len(),
            });
        }
        let out_of_range = SampleError::IndexOutOfRange {
            index,
            len: self.len,
        };
        let Some((number, start, position)) = self.start_of(epoch, index) else {
            return Err(out_of_range);
        };
        if self.spec.positions && field == self.specs.len() - 1 {
            // A document of this many steps lies in the series, whose bytes fit in isize.
            return Ok(Sample::Arange(position as i64));
        }
        let series = &self.series[number];
        let shift = match (self.spec.target, field) {
            (Target::Next, 1) => 1,
            (Target::Horizon(_), 1) => self.spec.length,
            _ => 0,
        };
        // The step lies inside the series, whose byte span fits in isize; checked anyway.
        let Some(offset) = isize::try_from(start + shift)
            .ok()
            .and_then(|s| s.checked_mul(series.step))
        else {
            return Err(out_of_range);
        };
        Ok(Sample::Strided(
            series.view.sample(&series.layouts[field], offset)?,
        ))
    }
}

impl Source for WindowSource {
    fn len(&self) -> usize {
        self.len
    }

    fn fields(&self) -> &[FieldSpec] {
        &self.specs
    }

    /// The window on the unshifted grid (phase 0 in every segment).
    fn sample(&self, index: usize, field: usize) -> Result<Sample<'_>, SampleError> {
        self.read(None, index, field)
    }

    fn sample_in_epoch(
        &self,
        seed: u64,
        epoch: u64,
        index: usize,
        field: usize,
    ) -> Result<Sample<'_>, SampleError> {
        self.read(Some((seed, epoch)), index, field)
    }

    /// One uncut segment (a token stream, or one series, with no boundaries) on this
    /// epoch's grid: its windows are rows `stride` steps apart, which the pipeline copies or
    /// widens a batch at a time instead of window by window.
    fn rows_in_epoch(&self, seed: u64, epoch: u64, field: usize) -> Option<Rows<'_>> {
        if self.segments.len() != 1 || self.spec.sampling == Sampling::Replacement {
            return None;
        }
        let read = |index| match self.read(Some((seed, epoch)), index, field) {
            Ok(Sample::Strided(sample)) => Some(sample),
            _ => None,
        };
        let first = read(0)?;
        // Bounds-checked like every sample, so that every window between lies inside too.
        read(self.len.checked_sub(1)?)?;
        let layout = first.layout();
        if !layout.is_c_contiguous() || layout.nbytes() == 0 {
            return None;
        }
        let step = self.series[self.segments[0].series].step;
        let stride = isize::try_from(self.stride).ok()?.checked_mul(step)?;
        // SAFETY: window i < len of the only segment starts `i * stride` steps after window
        // 0 (`start_of`), so its field is the C-contiguous `nbytes` at `first + i * stride`
        // bytes; windows 0 and len - 1 were bounds-checked against the series' view, which
        // `self` owns, and every window between lies between them; those offsets fit in
        // isize because the view's span does.
        Some(unsafe { Rows::new(first.ptr(), stride, layout.nbytes(), self.len) })
    }

    fn check(&self) -> Result<(), SampleError> {
        for series in &self.series {
            series.view.check()?;
        }
        Ok(())
    }

    fn expect_random_access(&self) {
        for series in &self.series {
            // Hints only: a failed madvise changes nothing but speed.
            if let Some(region) = series.view.owner::<super::FileRegion>() {
                let _ = region.advise_random();
            } else if let Some(npy) = series.view.owner::<super::NpyFile>() {
                let _ = npy.advise_random();
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} windows of length {} over {} series",
            self.len,
            self.spec.length,
            self.series.len()
        )
    }
}

#[cfg(test)]
#[path = "windows_tests.rs"]
mod tests;

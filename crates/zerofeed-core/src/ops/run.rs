//! Running a plan on one sample: resolve the window, then one pass over the rows.

use super::kernels::{gather_row, ConvertFn, RowGeometry};
use super::simd::{prefetch_l2, store_fence, FastAffine, PREFETCH_ROWS};
use super::{OpsError, Plan, SampleKey, Spatial, Stage, Window};
use crate::sampler::{domain, CounterRng};

/// Where a `ch x cw` crop of an `h x w` view starts: uniform over every position where it
/// fits (draw 0 the row, draw 1 the column) when `rng` is given, else centred (floored).
/// The column is in unflipped coordinates: in a flipped view, view column `dx` is column
/// `w - 1 - dx`, so the window's unflipped span ends where the view's starts.
pub(super) fn crop_offset(
    rng: Option<CounterRng>,
    (h, w): (usize, usize),
    (ch, cw): (usize, usize),
    flipped: bool,
) -> (usize, usize) {
    let (dy, dx) = match rng {
        Some(r) => (
            r.below(0, (h - ch + 1) as u64) as usize,
            r.below(1, (w - cw + 1) as u64) as usize,
        ),
        None => (center_offset(h - ch), center_offset(w - cw)),
    };
    (dy, if flipped { w - dx - cw } else { dx })
}

/// Where a centered window starts given the pixels left over: torchvision's
/// `int(round(margin / 2))`, whose ties go to the even offset (Python's `round`), so that a
/// validation crop lands on the same pixels as torchvision's `CenterCrop`.
fn center_offset(margin: usize) -> usize {
    let half = margin / 2;
    if margin % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Which coefficient run a row segment uses.
#[derive(Clone, Copy)]
enum Segment {
    /// An HWC chunk starting at a pixel boundary.
    Hwc,
    /// Output plane `k` (CHW), one row of `out_w` elements.
    Plane(usize),
}

impl Plan {
    /// The crop window and flip flag of the sample `key`: a pure function of the plan
    /// and the key (counter-based randomness), so any thread gets the same answer.
    pub fn window(&self, key: SampleKey) -> Window {
        let (mut top, mut left, mut height, mut width, mut flipped) = (0, 0, self.h, self.w, false);
        let rng = |op_index: u64| {
            CounterRng::new(key.seed, &[domain::OPS, key.epoch, key.index, op_index])
        };
        for stage in &self.spatial {
            match *stage {
                Spatial::Crop {
                    random,
                    height: ch,
                    width: cw,
                    op_index,
                } => {
                    let (dy, dx) = crop_offset(
                        random.then(|| rng(op_index)),
                        (height, width),
                        (ch, cw),
                        flipped,
                    );
                    top += dy;
                    left += dx;
                    (height, width) = (ch, cw);
                }
                Spatial::Flip { p, op_index } => {
                    let flip = p >= 1.0 || (p > 0.0 && rng(op_index).uniform_f64(0) < p);
                    flipped ^= flip;
                }
            }
        }
        Window {
            top,
            left,
            height,
            width,
            flipped,
        }
    }

    /// The element conversion this plan is, when it is nothing more (one `Cast`, no crop,
    /// flip or layout change): a packed sample's output is then that conversion of its bytes
    /// in order, which the pipeline applies to whole rows of a batch at once.
    pub(crate) fn row_convert(&self) -> Option<ConvertFn> {
        match self.stages.as_slice() {
            [Stage::Convert { f, .. }] if self.spatial.is_empty() && !self.planar => Some(*f),
            _ => None,
        }
    }

    /// Runs the chain on one sample, writing the C-contiguous output into `dst`.
    ///
    /// `src` points at the sample's element `[0, 0, 0]` and `src_strides` gives the byte
    /// step of each input dimension (negative allowed, any alignment).
    ///
    /// # Panics
    /// If `src_strides.len()` differs from the input rank or `dst.len()` from
    /// [`Plan::output_nbytes`].
    ///
    /// # Safety
    /// Every byte of every element of the input shape, addressed as
    /// `src + sum(i_k * src_strides[k])`, must be readable and not written by anyone for
    /// the duration of the call, and must not overlap `dst`. [`Plan::run_checked`] checks
    /// this against a byte slice instead.
    pub unsafe fn run(
        &self,
        src: *const u8,
        src_strides: &[isize],
        key: SampleKey,
        dst: &mut [u8],
    ) {
        assert_eq!(
            src_strides.len(),
            self.in_shape.len(),
            "one byte stride per input dimension"
        );
        assert_eq!(
            dst.len(),
            self.output_nbytes(),
            "dst must be output_nbytes() long"
        );
        if dst.is_empty() {
            return;
        }
        let isz = self.in_dtype.itemsize() as isize;
        let [sh, sw, sc] = match *src_strides {
            [] => [0, 0, isz],
            [s0] => [0, s0, isz],
            [s0, s1] if self.features => [0, s0, s1],
            [s0, s1] => [s0, s1, isz],
            [s0, s1, s2] => [s0, s1, if self.c == 1 { isz } else { s2 }],
            _ => unreachable!("rank checked at compile"),
        };
        let window = self.window(key);
        // SAFETY: forwarded caller contract; the window lies inside the input shape.
        unsafe { self.execute(src, [sh, sw, sc], window, dst) }
    }

    /// [`Plan::run`] on a byte slice: the sample's element 0 is at `src[offset]`.
    /// Checks stride count, output size and that every element lies inside `src`.
    pub fn run_checked(
        &self,
        src: &[u8],
        offset: usize,
        src_strides: &[isize],
        key: SampleKey,
        dst: &mut [u8],
    ) -> Result<(), OpsError> {
        let rank = self.in_shape.len();
        if src_strides.len() != rank {
            return Err(OpsError::StrideCount {
                got: src_strides.len(),
                rank,
            });
        }
        if dst.len() != self.output_nbytes() {
            return Err(OpsError::DstSize {
                got: dst.len(),
                expected: self.output_nbytes(),
            });
        }
        if self.in_shape.contains(&0) {
            return Ok(()); // no element to read, and dst is empty too
        }
        let (mut lo, mut hi) = (
            offset as i128,
            offset as i128 + self.in_dtype.itemsize() as i128,
        );
        for (&n, &s) in self.in_shape.iter().zip(src_strides) {
            let span = (n as i128 - 1) * s as i128;
            if span < 0 {
                lo += span;
            } else {
                hi += span;
            }
        }
        if lo < 0 || hi > src.len() as i128 {
            return Err(OpsError::OutOfBounds {
                lo,
                hi,
                len: src.len(),
            });
        }
        // SAFETY: every element lies in `src` (checked above), which is borrowed shared
        // for the call, so nobody writes it, and `dst` is a distinct `&mut`.
        unsafe { self.run(src.as_ptr().add(offset), src_strides, key, dst) };
        Ok(())
    }

    /// [`Plan::run_checked`] for a C-contiguous sample occupying the start of `src`.
    pub fn run_contiguous(
        &self,
        src: &[u8],
        key: SampleKey,
        dst: &mut [u8],
    ) -> Result<(), OpsError> {
        self.run_checked(src, 0, &self.input_c_strides(), key, dst)
    }

    /// # Safety
    /// As [`Plan::run`]; `[sh, sw, sc]` are the (H, W, C) byte strides and `win` lies in
    /// the input; `dst` is `output_nbytes()` long and not empty.
    unsafe fn execute(
        &self,
        src: *const u8,
        [sh, sw, sc]: [isize; 3],
        win: Window,
        dst: &mut [u8],
    ) {
        let isz = self.in_dtype.itemsize();
        let osz = self.out_dtype.itemsize();
        let (h, w, c) = (win.height, win.width, self.c);
        // A flip walks each source row from its last window pixel backwards.
        let x0 = if win.flipped {
            win.left + w - 1
        } else {
            win.left
        };
        // SAFETY: (top, x0, 0) is an element of the input (the window is inside it).
        let origin = unsafe { src.offset(win.top as isize * sh + x0 as isize * sw) };
        let sw = if win.flipped { -sw } else { sw };
        if let Some(fast) = &self.fast {
            // Contiguous u8 pixels, read forwards or (with pshufb) backwards.
            let px = c as isize;
            // (A fast kernel exists for a planar plan only if it writes planes itself.)
            if sc == 1 && (sw == px || (sw == -px && fast.can_flip())) {
                // SAFETY: forwarded contract; `origin` is pixel 0 of the window's first
                // row and the strides were just checked to be contiguous pixels.
                unsafe { self.execute_fast(fast, origin, sh, sw < 0, win, dst) };
                return;
            }
        }
        let row_contig = sc == isz as isize && sw == (c * isz) as isize;
        // Rows that follow each other in memory are one long row: fewer, longer loops.
        let merged = row_contig && !self.planar && (h == 1 || sh == (w * c * isz) as isize);
        let (rows, n) = if merged { (1, h * w * c) } else { (h, w * c) };
        let direct = row_contig && !self.planar;
        let mut gathered = if direct {
            Vec::new()
        } else {
            vec![0u8; n * isz]
        };
        let longest = if self.planar { w } else { n.min(self.chunk) };
        let mut scratch = Scratch::new(if self.stages.len() > 1 {
            longest * 8
        } else {
            0
        });
        for y in 0..rows {
            // SAFETY: y < h, so row y of the window is inside the input.
            let row = unsafe { origin.offset(y as isize * sh) };
            let srow: &[u8] = if direct {
                // SAFETY: the row's n elements are contiguous (checked strides) and
                // readable, unwritten for the call (caller contract).
                unsafe { std::slice::from_raw_parts(row, n * isz) }
            } else {
                let g = RowGeometry { sw, sc, w, c };
                // SAFETY: the row's w x c elements are readable (caller contract).
                unsafe { gather_row(row, g, isz, self.planar, &mut gathered) };
                &gathered
            };
            if self.planar {
                for k in 0..c {
                    let d = &mut dst[(k * h + y) * w * osz..][..w * osz];
                    self.apply(
                        &srow[k * w * isz..][..w * isz],
                        d,
                        Segment::Plane(k),
                        &mut scratch,
                    );
                }
            } else {
                let d = &mut dst[y * n * osz..][..n * osz];
                let step = self.chunk;
                for (s, d) in srow.chunks(step * isz).zip(d.chunks_mut(step * osz)) {
                    self.apply(s, d, Segment::Hwc, &mut scratch);
                }
            }
        }
    }

    /// The explicit-SIMD path: each row's `w * c` bytes are contiguous, starting at
    /// `origin + y * sh` and going up in memory, or down when `backwards`.
    ///
    /// # Safety
    /// As [`Plan::execute`], with `sc == 1`, `|sw| == c` and `self.fast` in use.
    unsafe fn execute_fast(
        &self,
        fast: &FastAffine,
        origin: *const u8,
        sh: isize,
        backwards: bool,
        win: Window,
        dst: &mut [u8],
    ) {
        let (h, w, c) = (win.height, win.width, self.c);
        let osz = fast.out().size();
        let plane = h * w * osz;
        debug_assert_eq!(dst.len(), plane * c);
        // Forward rows that follow each other in memory are one long row (in every
        // plane too: plane rows are contiguous).
        let merged = !backwards && (h == 1 || sh == (w * c) as isize);
        let (rows, px) = if merged { (1, h * w) } else { (h, w) };
        // Merged rows are one long stream the hardware prefetcher follows by itself.
        let ahead = if merged { 0 } else { PREFETCH_ROWS };
        // wrapping_* because prefetch addresses are only hints (never dereferenced).
        let row_lo = |y: usize| {
            let row = origin.wrapping_offset(y as isize * sh);
            if backwards {
                row.wrapping_sub((w - 1) * c)
            } else {
                row
            }
        };
        for y in 0..ahead.min(rows) {
            prefetch_l2(row_lo(y), w * c);
        }
        for y in 0..rows {
            if y + ahead < rows {
                prefetch_l2(row_lo(y + ahead), w * c);
            }
            // SAFETY: y < h: row y of the window; backwards, its lowest byte is pixel
            // w - 1 (the window lies inside the input, caller contract).
            let lo = unsafe {
                let row = origin.offset(y as isize * sh);
                if backwards {
                    row.sub((w - 1) * c)
                } else {
                    row
                }
            };
            // HWC: row y is px * c elements at element y * px * c. CHW: px elements of
            // each plane at element y * px, planes h * w elements apart.
            let at = y * px * if fast.planar() { 1 } else { c } * osz;
            // SAFETY: the row's px * c bytes from `lo` are readable (caller contract) and
            // disjoint from `dst`; `dst` holds h * w * c elements, so the row's elements
            // (in every plane: (c - 1) * plane + (y + 1) * px * osz <= len) lie inside it;
            // flip only if `can_flip`.
            unsafe {
                fast.row(
                    lo,
                    dst.as_mut_ptr().add(at),
                    plane,
                    px,
                    backwards,
                    self.stream,
                )
            };
        }
        if self.stream {
            // Non-temporal stores are weakly ordered: fence before the batch is handed on.
            store_fence();
        }
    }

    /// Runs the value stages over one contiguous segment: `src` in the input dtype,
    /// `dst` in the output dtype, intermediate stages through L1-sized scratch rows.
    fn apply(&self, src: &[u8], dst: &mut [u8], seg: Segment, scratch: &mut Scratch) {
        let Some((last, first)) = self.stages.split_last() else {
            dst.copy_from_slice(src);
            return;
        };
        let n = src.len() / self.in_dtype.itemsize();
        if first.is_empty() {
            run_stage(last, src, dst, n, seg);
            return;
        }
        let Scratch { a, b } = scratch;
        // Stage i writes `a`; the swap hands its output to stage i + 1 as `b`.
        let mut in_bytes = 0;
        for (i, stage) in first.iter().enumerate() {
            let bytes = n * stage.out().itemsize();
            let input: &[u8] = if i == 0 { src } else { &b[..in_bytes] };
            run_stage(stage, input, &mut a[..bytes], n, seg);
            std::mem::swap(a, b);
            in_bytes = bytes;
        }
        run_stage(last, &b[..in_bytes], dst, n, seg);
    }
}

fn run_stage(stage: &Stage, src: &[u8], dst: &mut [u8], n: usize, seg: Segment) {
    fn pick<T>(c: &super::Coefs<T>, seg: Segment, n: usize) -> (&[T], &[T]) {
        match seg {
            Segment::Hwc => (&c.a_hwc[..n], &c.b_hwc[..n]),
            Segment::Plane(k) => (&c.a_planar[k * n..][..n], &c.b_planar[k * n..][..n]),
        }
    }
    match stage {
        Stage::Convert { f, .. } => f(src, dst),
        Stage::Affine32 { f, coefs, .. } => {
            let (a, b) = pick(coefs, seg, n);
            f(src, dst, a, b)
        }
        Stage::Affine64 { f, coefs, .. } => {
            let (a, b) = pick(coefs, seg, n);
            f(src, dst, a, b)
        }
    }
}

/// Two ping-pong rows for chains of more than one value stage.
struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Scratch {
    fn new(bytes: usize) -> Scratch {
        Scratch {
            a: vec![0; bytes],
            b: vec![0; bytes],
        }
    }
}

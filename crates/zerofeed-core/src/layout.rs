//! Shape, byte strides and N-d indexing: the arithmetic behind every zero-copy view.
//!
//! A [`Layout`] says where each element of an array lies relative to its first element
//! (element `[0, 0, ...]`). Indexing produces a new layout plus the byte offset of the new
//! first element; no bytes move. All arithmetic is overflow-checked, because shapes and
//! strides come from users and files.

use thiserror::Error;

/// The largest alignment [`alignment_of`] reports: a page.
pub const MAX_REPORTED_ALIGNMENT: usize = 4096;

/// What can go wrong when building or indexing a layout. Each message names the
/// argument at fault and what to do instead.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// An integer index beyond an axis, after negative indices count from its end.
    #[error("index {index} is out of range for axis {axis} with size {size}: use -{size} <= index < {size}")]
    IndexOutOfRange {
        /// The axis indexed.
        axis: usize,
        /// The index as given (maybe negative).
        index: i64,
        /// The axis length.
        size: usize,
    },
    /// More axis-consuming indices (not `None` or `...`) than the view has axes.
    #[error("too many indices: {given} given for a {ndim}-dimensional view; use at most {ndim} (plus `...`)")]
    TooManyIndices {
        /// Indices that consume an axis.
        given: usize,
        /// Axes of the view.
        ndim: usize,
    },
    /// A slice with `step == 0`.
    #[error("slice step cannot be zero (axis {axis}); use a positive or negative step")]
    ZeroStep {
        /// The axis the slice was for.
        axis: usize,
    },
    /// More than one `...` in one index expression.
    #[error("an index can only have a single ellipsis ('...')")]
    MultipleEllipsis,
    /// A stride count that differs from the number of axes.
    #[error("shape and strides differ in length ({shape} vs {strides})")]
    StridesLength {
        /// Number of axes in the shape.
        shape: usize,
        /// Number of strides given.
        strides: usize,
    },
    /// A shape or stride whose byte arithmetic does not fit in `isize`.
    #[error("{what} overflows the address space; check the shape {shape:?}")]
    Overflow {
        /// Which quantity overflowed (e.g. "stride", "byte size").
        what: &'static str,
        /// The shape it was computed for.
        shape: Vec<usize>,
    },
    /// A transpose order that is not a permutation of the axes.
    #[error("axes {axes:?} are not a permutation of 0..{ndim}; pass each axis exactly once")]
    BadAxes {
        /// The order given.
        axes: Vec<i64>,
        /// Axes of the view.
        ndim: usize,
    },
    /// A reshape target with another element count.
    #[error("cannot reshape a view of {size} elements into shape {shape:?} ({target} elements)")]
    ReshapeSize {
        /// Elements in the view.
        size: usize,
        /// The shape asked for, `-1` included.
        shape: Vec<i64>,
        /// Elements of that shape (of its known dimensions when one is `-1`).
        target: usize,
    },
    /// A reshape target that is not a shape: more than one `-1`, a negative size, or overflow.
    #[error("shape {shape:?}: {reason}")]
    BadShape {
        /// The shape asked for.
        shape: Vec<i64>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A reshape the strides cannot express over the same bytes.
    #[error("reshape to {shape:?} would need a copy: the strides {strides:?} cannot express it as a view; copy first (np.ascontiguousarray) or reshape before slicing")]
    ReshapeNeedsCopy {
        /// The resolved target shape.
        shape: Vec<usize>,
        /// The view's byte strides that prevent it.
        strides: Vec<isize>,
    },
}

/// One entry of an index expression, as Python spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexItem {
    /// `v[3]`, `v[-1]`: selects one position and removes the axis.
    Int(i64),
    /// `v[a:b:c]` with Python's defaults for missing parts.
    Slice {
        /// First position (negative counts from the end); `None` starts at the end the
        /// step walks from.
        start: Option<i64>,
        /// Position to stop before; `None` runs to the end in the step's direction.
        stop: Option<i64>,
        /// Stride in positions, non-zero; `None` means 1.
        step: Option<i64>,
    },
    /// `...`: as many full slices as needed.
    Ellipsis,
    /// `None` / `np.newaxis`: a new axis of size 1.
    NewAxis,
}

/// Where the elements of an N-d array lie, relative to its first element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<isize>,
    itemsize: usize,
}

/// The result of indexing: the new layout, and how far its first element lies from the old one's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indexed {
    /// The indexed layout.
    pub layout: Layout,
    /// Bytes from the old first element to the new one (negative for reversed axes).
    pub byte_offset: isize,
}

fn overflow(what: &'static str, shape: &[usize]) -> LayoutError {
    LayoutError::Overflow {
        what,
        shape: shape.to_vec(),
    }
}

impl Layout {
    /// A C-contiguous (row-major) layout.
    pub fn c_contiguous(shape: &[usize], itemsize: usize) -> Result<Layout, LayoutError> {
        let strides = c_strides(shape, itemsize)?;
        Layout::new(shape.to_vec(), strides, itemsize)
    }

    /// A Fortran-contiguous (column-major) layout.
    pub fn f_contiguous(shape: &[usize], itemsize: usize) -> Result<Layout, LayoutError> {
        let mut strides = vec![0isize; shape.len()];
        let mut step = itemsize;
        for (axis, &n) in shape.iter().enumerate() {
            strides[axis] = isize::try_from(step).map_err(|_| overflow("stride", shape))?;
            step = step
                .checked_mul(n.max(1))
                .ok_or_else(|| overflow("stride", shape))?;
        }
        Layout::new(shape.to_vec(), strides, itemsize)
    }

    /// Any strided layout. Fails if the elements' byte span does not fit in `isize`.
    pub fn new(
        shape: Vec<usize>,
        strides: Vec<isize>,
        itemsize: usize,
    ) -> Result<Layout, LayoutError> {
        if shape.len() != strides.len() {
            return Err(LayoutError::StridesLength {
                shape: shape.len(),
                strides: strides.len(),
            });
        }
        let layout = Layout {
            shape,
            strides,
            itemsize,
        };
        layout.byte_span()?;
        Ok(layout)
    }

    /// Length of each axis, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Strides in bytes, one per axis; may be negative or zero.
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// Number of axes (0 for a scalar).
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (1 for a 0-d layout). Cannot overflow: checked at construction.
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes the elements take when packed: `size * itemsize`.
    pub fn nbytes(&self) -> usize {
        self.size() * self.itemsize
    }

    /// Byte offsets `(lowest, one past highest)` touched relative to the first element;
    /// `(0, 0)` when the layout holds no element.
    pub fn byte_span(&self) -> Result<(isize, isize), LayoutError> {
        let shape = &self.shape;
        // The element count must fit, even when strides are zero (broadcast views).
        let size = shape
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| overflow("element count", shape))?;
        size.checked_mul(self.itemsize)
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| overflow("byte size", shape))?;
        if size == 0 {
            return Ok((0, 0));
        }
        let (mut low, mut high) = (0isize, 0isize);
        for (&n, &s) in shape.iter().zip(&self.strides) {
            let last = isize::try_from(n - 1)
                .ok()
                .and_then(|k| k.checked_mul(s))
                .ok_or_else(|| overflow("stride * size", shape))?;
            if last < 0 {
                low = low
                    .checked_add(last)
                    .ok_or_else(|| overflow("span", shape))?;
            } else {
                high = high
                    .checked_add(last)
                    .ok_or_else(|| overflow("span", shape))?;
            }
        }
        let itemsize = isize::try_from(self.itemsize).map_err(|_| overflow("itemsize", shape))?;
        let end = high
            .checked_add(itemsize)
            .ok_or_else(|| overflow("span", shape))?;
        Ok((low, end))
    }

    /// NumPy's rule: packed row-major, ignoring axes of length 1; empty layouts count.
    pub fn is_c_contiguous(&self) -> bool {
        self.is_packed(self.shape.iter().zip(&self.strides).rev())
    }

    /// NumPy's rule: packed column-major, ignoring axes of length 1; empty layouts count.
    pub fn is_f_contiguous(&self) -> bool {
        self.is_packed(self.shape.iter().zip(&self.strides))
    }

    fn is_packed<'a>(
        &self,
        axes_fastest_first: impl Iterator<Item = (&'a usize, &'a isize)>,
    ) -> bool {
        if self.size() == 0 {
            return true;
        }
        let mut expected = self.itemsize as isize;
        for (&n, &s) in axes_fastest_first {
            if n == 1 {
                continue;
            }
            if s != expected {
                return false;
            }
            expected *= n as isize;
        }
        true
    }

    /// True when some stride is negative (a reversed axis), which some consumers refuse.
    pub fn has_negative_strides(&self) -> bool {
        self.shape
            .iter()
            .zip(&self.strides)
            .any(|(&n, &s)| n > 1 && s < 0)
    }

    /// True when every stride is a whole number of elements, as DLPack requires.
    pub fn strides_are_element_multiples(&self) -> bool {
        self.itemsize == 0 || self.strides.iter().all(|s| s % self.itemsize as isize == 0)
    }

    /// Applies a Python index expression. Every result is a view: no element moves.
    pub fn index(&self, items: &[IndexItem]) -> Result<Indexed, LayoutError> {
        let ellipses = items.iter().filter(|i| **i == IndexItem::Ellipsis).count();
        if ellipses > 1 {
            return Err(LayoutError::MultipleEllipsis);
        }
        let consuming = items
            .iter()
            .filter(|i| matches!(i, IndexItem::Int(_) | IndexItem::Slice { .. }))
            .count();
        if consuming > self.ndim() {
            return Err(LayoutError::TooManyIndices {
                given: consuming,
                ndim: self.ndim(),
            });
        }
        let mut shape = Vec::with_capacity(self.ndim() + items.len());
        let mut strides = Vec::with_capacity(self.ndim() + items.len());
        let mut offset = 0isize;
        let mut axis = 0usize;
        let full = IndexItem::Slice {
            start: None,
            stop: None,
            step: None,
        };
        let expanded = items.iter().flat_map(|item| {
            let repeat = if *item == IndexItem::Ellipsis {
                self.ndim() - consuming
            } else {
                1
            };
            let each = if *item == IndexItem::Ellipsis {
                full
            } else {
                *item
            };
            std::iter::repeat_n(each, repeat)
        });
        for item in expanded {
            match item {
                IndexItem::NewAxis => {
                    shape.push(1);
                    strides.push(0);
                }
                IndexItem::Int(i) => {
                    let size = self.shape[axis];
                    let pos = normalize_index(i, size).ok_or(LayoutError::IndexOutOfRange {
                        axis,
                        index: i,
                        size,
                    })?;
                    offset += pos as isize * self.strides[axis];
                    axis += 1;
                }
                IndexItem::Slice { start, stop, step } => {
                    let size = self.shape[axis];
                    let (first, len, step) = slice_indices(start, stop, step, size)
                        .ok_or(LayoutError::ZeroStep { axis })?;
                    if len > 0 {
                        offset += first as isize * self.strides[axis];
                    }
                    shape.push(len);
                    strides.push(self.strides[axis] * step as isize);
                    axis += 1;
                }
                IndexItem::Ellipsis => unreachable!("expanded above"),
            }
        }
        for rest in axis..self.ndim() {
            shape.push(self.shape[rest]);
            strides.push(self.strides[rest]);
        }
        // An empty result may point past the end; keep its first element where the input's was.
        let layout = Layout::new(shape, strides, self.itemsize)?;
        let byte_offset = if layout.size() == 0 { 0 } else { offset };
        Ok(Indexed {
            layout,
            byte_offset,
        })
    }

    /// Permutes axes (`transpose()` with no axes reverses them, as NumPy does; a negative
    /// axis counts from the end, as in NumPy).
    pub fn transpose(&self, axes: Option<&[i64]>) -> Result<Layout, LayoutError> {
        let ndim = self.ndim();
        let order: Vec<usize> = match axes {
            None => (0..ndim).rev().collect(),
            Some(given) => {
                let bad = || LayoutError::BadAxes {
                    axes: given.to_vec(),
                    ndim,
                };
                given
                    .iter()
                    .map(|&a| {
                        let a = if a < 0 {
                            a.checked_add(ndim as i64)
                        } else {
                            Some(a)
                        };
                        a.and_then(|a| usize::try_from(a).ok())
                            .filter(|&a| a < ndim)
                            .ok_or_else(bad)
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let mut seen = vec![false; ndim];
        let valid = order.len() == ndim
            && order
                .iter()
                .all(|&a| !std::mem::replace(&mut seen[a], true));
        if !valid {
            return Err(LayoutError::BadAxes {
                axes: axes.map_or_else(Vec::new, <[i64]>::to_vec),
                ndim,
            });
        }
        Ok(Layout {
            shape: order.iter().map(|&a| self.shape[a]).collect(),
            strides: order.iter().map(|&a| self.strides[a]).collect(),
            itemsize: self.itemsize,
        })
    }

    /// Reinterprets the elements, in row-major order, with a new shape (one entry may be -1).
    /// Succeeds only when the result is expressible as strides over the same bytes.
    pub fn reshape(&self, requested: &[i64]) -> Result<Layout, LayoutError> {
        let shape = resolve_shape(requested, self.size())?;
        let size = self.size();
        if size == 0 || self.is_c_contiguous() {
            return Layout::c_contiguous(&shape, self.itemsize);
        }
        match reshape_strides(&self.shape, &self.strides, &shape) {
            Some(strides) => Layout::new(shape, strides, self.itemsize),
            None => Err(LayoutError::ReshapeNeedsCopy {
                shape,
                strides: self.strides.clone(),
            }),
        }
    }
}

/// Row-major byte strides for `shape`.
pub fn c_strides(shape: &[usize], itemsize: usize) -> Result<Vec<isize>, LayoutError> {
    let mut strides = vec![0isize; shape.len()];
    let mut step = itemsize;
    for axis in (0..shape.len()).rev() {
        strides[axis] = isize::try_from(step).map_err(|_| overflow("stride", shape))?;
        step = step
            .checked_mul(shape[axis].max(1))
            .ok_or_else(|| overflow("stride", shape))?;
    }
    Ok(strides)
}

/// The largest power of two dividing `address`, capped at [`MAX_REPORTED_ALIGNMENT`].
pub fn alignment_of(address: usize) -> usize {
    if address == 0 {
        return MAX_REPORTED_ALIGNMENT;
    }
    (1usize << address.trailing_zeros()).min(MAX_REPORTED_ALIGNMENT)
}

fn normalize_index(index: i64, size: usize) -> Option<usize> {
    let size = i64::try_from(size).ok()?;
    let pos = if index < 0 { index + size } else { index };
    (0..size).contains(&pos).then_some(pos as usize)
}

/// Python's `slice.indices`: returns `(first, length, step)`, or `None` for a zero step.
fn slice_indices(
    start: Option<i64>,
    stop: Option<i64>,
    step: Option<i64>,
    size: usize,
) -> Option<(usize, usize, i64)> {
    let step = step.unwrap_or(1);
    if step == 0 {
        return None;
    }
    // Sizes above i64::MAX cannot exist: byte sizes are capped at isize::MAX.
    let n = size as i64;
    let clamp = |value: Option<i64>, default: i64| -> i64 {
        match value {
            None => default,
            Some(v) if v < 0 => {
                let v = v.saturating_add(n);
                if v < 0 {
                    if step < 0 {
                        -1
                    } else {
                        0
                    }
                } else {
                    v
                }
            }
            Some(v) if v >= n => {
                if step < 0 {
                    n - 1
                } else {
                    n
                }
            }
            Some(v) => v,
        }
    };
    let (first, last) = if step > 0 {
        (clamp(start, 0), clamp(stop, n))
    } else {
        (clamp(start, n - 1), clamp(stop, -1))
    };
    let len = if step > 0 && last > first {
        (last - first - 1) / step + 1
    } else if step < 0 && first > last {
        (first - last - 1) / (-step) + 1
    } else {
        0
    };
    Some((first.max(0) as usize, len as usize, step))
}

fn resolve_shape(requested: &[i64], size: usize) -> Result<Vec<usize>, LayoutError> {
    let bad = |reason| LayoutError::BadShape {
        shape: requested.to_vec(),
        reason,
    };
    let unknown = requested.iter().filter(|&&d| d == -1).count();
    if unknown > 1 {
        return Err(bad("only one dimension can be -1"));
    }
    if requested.iter().any(|&d| d < -1) {
        return Err(bad("dimensions must be >= 0 (or a single -1)"));
    }
    let known = requested
        .iter()
        .filter(|&&d| d != -1)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| bad("the product of the dimensions overflows"))?;
    let mismatch = |target| LayoutError::ReshapeSize {
        size,
        shape: requested.to_vec(),
        target,
    };
    let shape: Vec<usize> = if unknown == 1 {
        if known == 0 || !size.is_multiple_of(known) {
            return Err(mismatch(known));
        }
        requested
            .iter()
            .map(|&d| if d == -1 { size / known } else { d as usize })
            .collect()
    } else {
        requested.iter().map(|&d| d as usize).collect()
    };
    let target: usize = shape.iter().product();
    if target != size {
        return Err(mismatch(target));
    }
    Ok(shape)
}

/// Strides for a no-copy reshape of a non-contiguous, non-empty layout (NumPy's
/// `_attempt_nocopy_reshape` idea): walk old and new axes in groups of equal element count;
/// each old group must be internally packed, then the new group's strides follow from it.
fn reshape_strides(
    old_shape: &[usize],
    old_strides: &[isize],
    new_shape: &[usize],
) -> Option<Vec<isize>> {
    let (olds, oldst): (Vec<usize>, Vec<isize>) = old_shape
        .iter()
        .zip(old_strides)
        .filter(|(&n, _)| n != 1)
        .map(|(&n, &s)| (n, s))
        .unzip();
    let mut new_strides = vec![0isize; new_shape.len()];
    let (mut oi, mut ni) = (0usize, 0usize);
    let (on, nn) = (olds.len(), new_shape.len());
    while ni < nn && oi < on {
        let (mut oj, mut nj) = (oi + 1, ni + 1);
        let (mut op, mut np) = (olds[oi], new_shape[ni]);
        while op != np {
            if np < op {
                np *= new_shape[nj];
                nj += 1;
            } else {
                op *= olds[oj];
                oj += 1;
            }
        }
        for k in oi..oj - 1 {
            if oldst[k] != olds[k + 1] as isize * oldst[k + 1] {
                return None;
            }
        }
        new_strides[nj - 1] = oldst[oj - 1];
        for k in (ni + 1..nj).rev() {
            new_strides[k - 1] = new_strides[k] * new_shape[k] as isize;
        }
        ni = nj;
        oi = oj;
    }
    // Trailing new axes must be of length 1 (size matched); give them a harmless stride.
    let last = new_strides.get(ni.wrapping_sub(1)).copied().unwrap_or(0);
    for s in new_strides.iter_mut().skip(ni) {
        *s = last;
    }
    Some(new_strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> IndexItem {
        IndexItem::Slice { start, stop, step }
    }

    #[test]
    fn c_and_f_strides() {
        let c = Layout::c_contiguous(&[2, 3, 4], 4).unwrap();
        assert_eq!(c.strides(), &[48, 16, 4]);
        assert!(c.is_c_contiguous() && !c.is_f_contiguous());
        let f = Layout::f_contiguous(&[2, 3, 4], 4).unwrap();
        assert_eq!(f.strides(), &[4, 8, 24]);
        assert!(f.is_f_contiguous() && !f.is_c_contiguous());
    }

    #[test]
    fn slice_indices_match_python() {
        // Values from CPython's slice(a, b, c).indices(10) and len(range(...)).
        assert_eq!(slice_indices(None, None, None, 10), Some((0, 10, 1)));
        assert_eq!(slice_indices(None, None, Some(-1), 10), Some((9, 10, -1)));
        assert_eq!(slice_indices(Some(-3), None, None, 10), Some((7, 3, 1)));
        assert_eq!(
            slice_indices(Some(8), Some(2), Some(-2), 10),
            Some((8, 3, -2))
        );
        assert_eq!(
            slice_indices(Some(100), Some(-100), Some(-1), 10),
            Some((9, 10, -1))
        );
        assert_eq!(slice_indices(Some(5), Some(2), None, 10), Some((5, 0, 1)));
        assert_eq!(slice_indices(None, None, Some(3), 0), Some((0, 0, 3)));
        assert_eq!(slice_indices(None, None, Some(0), 10), None);
        assert_eq!(
            slice_indices(Some(i64::MIN), Some(i64::MAX), Some(i64::MAX), 10),
            Some((0, 1, i64::MAX))
        );
    }

    #[test]
    fn ellipsis_fills_leading_axes() {
        let batch = Layout::c_contiguous(&[8, 512, 512, 3], 1).unwrap();
        let crop = batch
            .index(&[
                IndexItem::Ellipsis,
                s(Some(128), Some(384), None),
                s(Some(128), Some(384), None),
                s(None, None, None),
            ])
            .unwrap();
        assert_eq!(crop.layout.shape(), &[8, 256, 256, 3]);
        assert_eq!(crop.byte_offset, 128 * 1536 + 128 * 3);
    }

    #[test]
    fn crop_offsets_and_strides() {
        let batch = Layout::c_contiguous(&[8, 512, 512, 3], 1).unwrap();
        let crop = batch
            .index(&[
                s(None, None, None),
                s(Some(128), Some(384), None),
                s(Some(128), Some(384), None),
            ])
            .unwrap();
        assert_eq!(crop.layout.shape(), &[8, 256, 256, 3]);
        assert_eq!(crop.layout.strides(), batch.strides());
        assert_eq!(crop.byte_offset, 128 * 1536 + 128 * 3);
        assert!(!crop.layout.is_c_contiguous());
    }

    #[test]
    fn negative_steps_and_ints() {
        let l = Layout::c_contiguous(&[4, 5], 8).unwrap();
        let r = l
            .index(&[IndexItem::Int(-1), s(None, None, Some(-2))])
            .unwrap();
        assert_eq!(r.layout.shape(), &[3]);
        assert_eq!(r.layout.strides(), &[-16]);
        assert_eq!(r.byte_offset, 3 * 40 + 4 * 8);
        assert!(r.layout.has_negative_strides());
        let err = l.index(&[IndexItem::Int(4)]).unwrap_err();
        assert_eq!(
            err,
            LayoutError::IndexOutOfRange {
                axis: 0,
                index: 4,
                size: 4
            }
        );
        assert!(err.to_string().contains("-4 <= index < 4"));
    }

    #[test]
    fn newaxis_and_ellipsis() {
        let l = Layout::c_contiguous(&[2, 3, 4], 2).unwrap();
        let r = l
            .index(&[IndexItem::NewAxis, IndexItem::Ellipsis, IndexItem::Int(1)])
            .unwrap();
        assert_eq!(r.layout.shape(), &[1, 2, 3]);
        assert_eq!(r.byte_offset, 2);
        assert_eq!(
            l.index(&[IndexItem::Ellipsis, IndexItem::Ellipsis]),
            Err(LayoutError::MultipleEllipsis)
        );
    }

    #[test]
    fn zero_step_names_the_axis() {
        let l = Layout::c_contiguous(&[2, 3], 1).unwrap();
        assert_eq!(
            l.index(&[s(None, None, None), s(None, None, Some(0))]),
            Err(LayoutError::ZeroStep { axis: 1 })
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(matches!(
            Layout::c_contiguous(&[usize::MAX / 2, 3], 1),
            Err(LayoutError::Overflow { .. })
        ));
        assert!(Layout::new(vec![1 << 40, 1 << 40], vec![1, 1], 1).is_err());
        assert!(Layout::new(vec![3], vec![isize::MAX], 1).is_err());
    }

    #[test]
    fn span_with_negative_strides() {
        let l = Layout::new(vec![3, 2], vec![-8, 4], 4).unwrap();
        assert_eq!(l.byte_span().unwrap(), (-16, 8));
        let empty = Layout::new(vec![0, 5], vec![20, 4], 4).unwrap();
        assert_eq!(empty.byte_span().unwrap(), (0, 0));
    }

    #[test]
    fn transpose_and_bad_axes() {
        let l = Layout::c_contiguous(&[2, 3, 4], 1).unwrap();
        assert_eq!(l.transpose(None).unwrap().shape(), &[4, 3, 2]);
        assert_eq!(
            l.transpose(Some(&[2, 0, 1])).unwrap().strides(),
            &[1, 12, 4]
        );
        assert!(l.transpose(Some(&[0, 0, 1])).is_err());
        assert!(l.transpose(Some(&[0, 1])).is_err());
        assert_eq!(
            l.transpose(Some(&[-1, 0, 1])).unwrap(),
            l.transpose(Some(&[2, 0, 1])).unwrap()
        );
        assert!(l.transpose(Some(&[-4, 0, 1])).is_err());
        assert!(l.transpose(Some(&[i64::MIN, 0, 1])).is_err());
    }

    #[test]
    fn reshape_views_and_refusals() {
        let l = Layout::c_contiguous(&[4, 6], 4).unwrap();
        assert_eq!(l.reshape(&[2, -1, 3]).unwrap().shape(), &[2, 4, 3]);
        // Every other row: rows stay packed inside, so splitting the row axis works.
        let rows = l.index(&[s(None, None, Some(2))]).unwrap().layout;
        let split = rows.reshape(&[2, 2, 3]).unwrap();
        assert_eq!(split.strides(), &[48, 12, 4]);
        // Merging rows that are not adjacent in memory cannot be a view.
        assert!(matches!(
            rows.reshape(&[12]),
            Err(LayoutError::ReshapeNeedsCopy { .. })
        ));
        assert!(matches!(
            l.reshape(&[5, 5]),
            Err(LayoutError::ReshapeSize { .. })
        ));
        assert!(matches!(
            l.reshape(&[-1, -1]),
            Err(LayoutError::BadShape { .. })
        ));
        let t = l.transpose(None).unwrap();
        assert!(t.reshape(&[24]).is_err());
        assert_eq!(t.reshape(&[6, 4, 1]).unwrap().strides()[..2], [4, 24]);
    }

    #[test]
    fn alignment_is_capped() {
        assert_eq!(alignment_of(0x1000_0010), 16);
        assert_eq!(alignment_of(0x1000_0000), MAX_REPORTED_ALIGNMENT);
        assert_eq!(alignment_of(3), 1);
    }
}

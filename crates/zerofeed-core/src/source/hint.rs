//! Read-ahead hints for samples that lie in memory-mapped files: which bytes a row spans,
//! and asking the file under a view to start reading them ([`super::Source::will_need`]).

use crate::view::View;

use super::{FileRegion, NpyFile};

/// The bytes row `index` spans, relative to the view's first element: `index * stride0`
/// plus the row layout's `(low, high)` byte span. `None` for an empty row or when the
/// arithmetic overflows (nothing to hint, never a wrong range).
pub(crate) fn row_range(
    index: usize,
    stride0: isize,
    row_span: (isize, isize),
) -> Option<(isize, isize)> {
    let (low, high) = row_span;
    if high <= low {
        return None;
    }
    let base = isize::try_from(index).ok()?.checked_mul(stride0)?;
    Some((base.checked_add(low)?, base.checked_add(high)?))
}

/// True when the view's memory is one of zerofeed's file maps (`zf.open_npy`, a read-only
/// `np.memmap`), the only memory whose hints do anything.
pub(crate) fn is_file_mapped(view: &View) -> bool {
    view.owner::<NpyFile>().is_some() || view.owner::<FileRegion>().is_some()
}

/// Asks the file under `view` to read `range` (bytes relative to the view's first element,
/// as [`row_range`] gives) ahead. Errors are ignored: a hint on a file that shrank just
/// fails, and reads stay covered by the map's `SIGBUS` handler.
pub(crate) fn will_need(view: &View, range: (isize, isize)) {
    let (Some(start), Some(end)) = (
        view.address().checked_add_signed(range.0),
        view.address().checked_add_signed(range.1),
    ) else {
        return;
    };
    // Offsets into the owner's bytes; both owners clip them to what they map.
    let relative = |base: *const u8| {
        let base = base as usize;
        start.saturating_sub(base)..end.saturating_sub(base)
    };
    if let Some(npy) = view.owner::<NpyFile>() {
        let _ = npy.advise_willneed(relative(npy.data_ptr()));
    } else if let Some(region) = view.owner::<FileRegion>() {
        let _ = region.advise_willneed(relative(region.bytes().as_ptr()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_spans_its_stride_times_its_index_plus_its_own_span() {
        // Rows of 256x256x3 u8 images, packed: row i is bytes i*196608 .. (i+1)*196608.
        let row = 256 * 256 * 3;
        assert_eq!(row_range(0, row, (0, row)), Some((0, row)));
        assert_eq!(row_range(7, row, (0, row)), Some((7 * row, 8 * row)));
        // A cropped view: each row starts 12 bytes in and spans 100 bytes.
        assert_eq!(row_range(3, 1000, (12, 112)), Some((3012, 3112)));
        // A reversed axis 0 (a[::-1]): rows go down from the first element.
        assert_eq!(row_range(2, -500, (0, 500)), Some((-1000, -500)));
        // Negative inner strides put the row's low end before its first element.
        assert_eq!(row_range(1, 64, (-16, 8)), Some((48, 72)));
    }

    #[test]
    fn empty_rows_and_overflow_hint_nothing() {
        assert_eq!(row_range(5, 100, (0, 0)), None);
        assert_eq!(row_range(usize::MAX, 2, (0, 2)), None);
        assert_eq!(row_range(isize::MAX as usize, 2, (0, 2)), None);
        assert_eq!(row_range(1, isize::MAX, (0, 2)), None);
    }
}

//! Packing a strided view into a C-contiguous buffer: the one copy zerofeed makes when a
//! consumer cannot take a layout as it is.

use crate::layout::Layout;

/// Copies the elements of a strided layout, in row-major order, into `dst`.
///
/// The innermost run of contiguous bytes is moved with one `copy_from_slice`, so a crop of
/// an image batch copies whole pixel rows at a time.
///
/// # Safety
/// `src` must be the address of the layout's first element, and every byte that the layout
/// addresses from there must be readable for the duration of the call.
///
/// # Panics
/// If `dst.len() != layout.nbytes()`.
pub unsafe fn gather(src: *const u8, layout: &Layout, dst: &mut [u8]) {
    assert_eq!(
        dst.len(),
        layout.nbytes(),
        "destination must hold the packed view"
    );
    if dst.is_empty() {
        return;
    }
    if layout.is_c_contiguous() {
        // SAFETY: a C-contiguous layout addresses exactly `nbytes` bytes from `src`, which
        // the caller guarantees readable.
        dst.copy_from_slice(unsafe { std::slice::from_raw_parts(src, dst.len()) });
        return;
    }
    // Merge trailing axes that are packed into one run of `run` bytes.
    let shape = layout.shape();
    let strides = layout.strides();
    let mut run = layout.itemsize();
    let mut outer = shape.len();
    while outer > 0 && (shape[outer - 1] == 1 || strides[outer - 1] == run as isize) {
        run *= shape[outer - 1];
        outer -= 1;
    }
    let outer_shape = &shape[..outer];
    let outer_strides = &strides[..outer];
    let mut counter = vec![0usize; outer];
    let mut offset = 0isize;
    for chunk in dst.chunks_exact_mut(run) {
        // SAFETY: `offset` is the byte offset of an element of the layout (maintained by the
        // odometer below) and the next `run` bytes belong to the same packed run.
        let from = unsafe { std::slice::from_raw_parts(src.offset(offset), run) };
        chunk.copy_from_slice(from);
        for axis in (0..outer).rev() {
            counter[axis] += 1;
            offset += outer_strides[axis];
            if counter[axis] < outer_shape[axis] {
                break;
            }
            offset -= outer_strides[axis] * outer_shape[axis] as isize;
            counter[axis] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::IndexItem;

    fn s(start: i64, stop: i64, step: i64) -> IndexItem {
        IndexItem::Slice {
            start: Some(start),
            stop: Some(stop),
            step: Some(step),
        }
    }

    #[test]
    fn crop_with_negative_step() {
        let data: Vec<u8> = (0..4 * 5 * 2).map(|x| x as u8).collect();
        let full = Layout::c_contiguous(&[4, 5, 2], 1).unwrap();
        let view = full.index(&[s(1, 3, 1), s(4, 0, -2)]).unwrap();
        let mut out = vec![0u8; view.layout.nbytes()];
        // SAFETY: the view lies inside `data`.
        unsafe {
            gather(
                data.as_ptr().offset(view.byte_offset),
                &view.layout,
                &mut out,
            )
        };
        // Reference by hand: rows 1..3, columns 4 and 2, both channels.
        let expected: Vec<u8> = [1usize, 2]
            .iter()
            .flat_map(|&r| {
                [4usize, 2]
                    .into_iter()
                    .flat_map(move |c| [0usize, 1].map(|k| (r * 10 + c * 2 + k) as u8))
            })
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn transposed_and_zero_strided() {
        let data: Vec<u8> = (0..6).collect();
        let t = Layout::c_contiguous(&[2, 3], 1)
            .unwrap()
            .transpose(None)
            .unwrap();
        let mut out = vec![0u8; 6];
        // SAFETY: the layout addresses the 6 bytes of `data`.
        unsafe { gather(data.as_ptr(), &t, &mut out) };
        assert_eq!(out, [0, 3, 1, 4, 2, 5]);
        let broadcast = Layout::new(vec![3, 2], vec![0, 1], 1).unwrap();
        let mut out = vec![0u8; 6];
        // SAFETY: the layout addresses bytes 0 and 1 of `data`.
        unsafe { gather(data.as_ptr(), &broadcast, &mut out) };
        assert_eq!(out, [0, 1, 0, 1, 0, 1]);
    }
}

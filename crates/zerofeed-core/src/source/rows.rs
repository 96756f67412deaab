//! [`Rows`]: a field whose samples are equally spaced packed rows of one host buffer, which
//! the pipeline copies a whole batch at a time (what NumPy's `take` does) instead of asking
//! the source sample by sample: for rows of a few dozen bytes the per-sample path costs
//! more than the copy.

use std::marker::PhantomData;

use crate::ops::{prefetch, ConvertFn};

use super::sample::SampleError;

/// How many rows ahead the copy loop asks the CPU to fetch: random rows miss the cache, and
/// a tight loop only overlaps the misses it has announced.
const PREFETCH_AHEAD: usize = 8;
/// Bytes of each row announced, at most: a long row is one sequential stream that the
/// hardware prefetcher follows once started, and announcing all of it would be thousands of
/// instructions and megabytes in flight.
const PREFETCH_BYTES: usize = 4096;

/// Sample `i` of one field is the `bytes` contiguous bytes at `base + i * stride`, for
/// `i < len`, all readable for `'a`.
///
/// Made only by [`Rows::new`], from a pointer its caller vouches for (an array source's view),
/// so that copying can be safe.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    base: *const u8,
    stride: isize,
    bytes: usize,
    len: usize,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> Rows<'a> {
    /// Rows at `base + i * stride`, `bytes` each, `len` of them.
    ///
    /// # Safety
    /// For every `i < len`, the `bytes` bytes at `base + i * stride` must be readable for
    /// `'a`, and `i * stride` must fit in `isize`.
    pub unsafe fn new(base: *const u8, stride: isize, bytes: usize, len: usize) -> Rows<'a> {
        Rows {
            base,
            stride,
            bytes,
            len,
            _data: PhantomData,
        }
    }

    /// Bytes in one row.
    pub fn row_bytes(&self) -> usize {
        self.bytes
    }

    /// Copies row `indices[k]` to `dst[k * row_bytes..]` for every `k`; fails on an index
    /// out of range (rows before it are copied) or panics when `dst` is too short.
    pub fn copy_into(&self, indices: &[usize], dst: &mut [u8]) -> Result<(), SampleError> {
        self.each_row(indices, dst, self.bytes, |row, slot| {
            slot.copy_from_slice(row)
        })
    }

    /// Converts row `indices[k]` with `convert` into `dst[k * out_bytes..][..out_bytes]`
    /// for every `k` (`convert` reads a whole row, writes a whole slot); errors and panics
    /// as [`Rows::copy_into`].
    pub(crate) fn convert_into(
        &self,
        indices: &[usize],
        dst: &mut [u8],
        out_bytes: usize,
        convert: ConvertFn,
    ) -> Result<(), SampleError> {
        self.each_row(indices, dst, out_bytes, convert)
    }

    fn each_row(
        &self,
        indices: &[usize],
        dst: &mut [u8],
        out_bytes: usize,
        mut write: impl FnMut(&[u8], &mut [u8]),
    ) -> Result<(), SampleError> {
        assert!(
            indices
                .len()
                .checked_mul(out_bytes)
                .is_some_and(|b| b <= dst.len()),
            "the batch buffer holds every row"
        );
        if let Some(&index) = indices.iter().find(|&&i| i >= self.len) {
            return Err(SampleError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        // Every index is below len: its offset fits in isize and stays inside the rows.
        let row = |i: usize| self.base.wrapping_offset(i as isize * self.stride);
        for &i in indices.iter().take(PREFETCH_AHEAD) {
            prefetch(row(i), self.bytes.min(PREFETCH_BYTES));
        }
        for ((k, &i), slot) in indices
            .iter()
            .enumerate()
            .zip(dst.chunks_exact_mut(out_bytes.max(1)))
        {
            if let Some(&next) = indices.get(k + PREFETCH_AHEAD) {
                prefetch(row(next), self.bytes.min(PREFETCH_BYTES));
            }
            // SAFETY: row i < len holds `bytes` readable bytes (`new`'s contract), shared
            // read-only for 'a; `slot` is in `dst`, our own buffer, so they do not overlap.
            let src = unsafe { std::slice::from_raw_parts(row(i), self.bytes) };
            write(src, slot);
        }
        Ok(())
    }
}

// SAFETY: `Rows` only reads through its pointer, and the bytes it points at are shared
// read-only for `'a` (`new`'s contract), like a `&'a [u8]`.
unsafe impl Send for Rows<'_> {}
// SAFETY: as above.
unsafe impl Sync for Rows<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_copied_in_the_order_asked_and_bad_indices_fail() {
        let data: Vec<u8> = (0..40).collect();
        // Every other 4-byte row of 8-byte strides: rows 0..5 at 0, 8, ..., 32.
        // SAFETY: row i < 5 is data[8 i..8 i + 4], inside `data`, which outlives `rows`.
        let rows = unsafe { Rows::new(data.as_ptr(), 8, 4, 5) };
        let mut out = vec![0u8; 12];
        rows.copy_into(&[4, 0, 2], &mut out).unwrap();
        assert_eq!(out, [32, 33, 34, 35, 0, 1, 2, 3, 16, 17, 18, 19]);
        let err = rows.copy_into(&[1, 5], &mut out).unwrap_err();
        assert!(matches!(
            err,
            SampleError::IndexOutOfRange { index: 5, len: 5 }
        ));
        // Negative strides (a reversed array): row i is at base - 8 i.
        // SAFETY: row i < 5 is data[32 - 8 i..36 - 8 i].
        let back = unsafe { Rows::new(data.as_ptr().wrapping_add(32), -8, 4, 5) };
        back.copy_into(&[0, 4], &mut out).unwrap();
        assert_eq!(out[..8], [32, 33, 34, 35, 0, 1, 2, 3]);
    }

    #[test]
    fn rows_are_converted_into_wider_slots() {
        let data: Vec<u8> = [7u16, 8, 9, 10, 11, 12]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        // SAFETY: row i < 3 is data[4 i..4 i + 4], two u16 inside `data`.
        let rows = unsafe { Rows::new(data.as_ptr(), 4, 4, 3) };
        let widen = crate::ops::convert_fn(crate::DType::U16, crate::DType::I64).unwrap();
        let mut out = vec![0u8; 2 * 16];
        rows.convert_into(&[2, 0], &mut out, 16, widen).unwrap();
        let got: Vec<i64> = out
            .chunks_exact(8)
            .map(|b| i64::from_ne_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(got, [11, 12, 7, 8]);
        assert!(rows.convert_into(&[3], &mut out, 16, widen).is_err());
    }
}

//! [`ArraySource`]: named host arrays (in RAM or memory-mapped) whose axis 0 indexes samples.

use crate::layout::Layout;
use crate::view::View;

use super::rows::Rows;
use super::sample::{field_label, FieldSpec, Sample, SampleError, Source};

/// Why an array source could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArraySourceError {
    /// No field was given.
    #[error("the source needs at least one field")]
    NoFields,
    /// A 0-d array has no sample axis.
    #[error("{label} is 0-dimensional; its first axis must index samples")]
    NoSampleAxis {
        /// `field "x"` or `the source`.
        label: String,
    },
    /// Fields of different lengths.
    #[error("{label} has {found} samples but {first} has {expected}; every field needs the same length (first axis)")]
    LengthMismatch {
        /// The field at fault.
        label: String,
        /// Its length.
        found: usize,
        /// The first field.
        first: String,
        /// The first field's length.
        expected: usize,
    },
    /// Device memory cannot be read by worker threads.
    #[error("{label} is on {device}; the Loader reads host memory (NumPy arrays, .npy files)")]
    NotOnHost {
        /// The field at fault.
        label: String,
        /// Where it is.
        device: String,
    },
}

struct ArrayField {
    view: View,
    /// The layout of one row (axis 0 removed).
    row: Layout,
    stride0: isize,
    /// The row's `(low, high)` byte span, for read-ahead hints.
    row_span: (isize, isize),
    /// Whether the array lies in a file map, so that hints can do something.
    mapped: bool,
}

/// Rows of one or more host arrays of equal length: sample `i` is row `i` of each.
pub struct ArraySource {
    fields: Vec<ArrayField>,
    specs: Vec<FieldSpec>,
    len: usize,
}

impl ArraySource {
    /// Named arrays, all of the same length along axis 0, all in host memory.
    pub fn new(arrays: Vec<(String, View)>) -> Result<ArraySource, ArraySourceError> {
        let mut fields = Vec::with_capacity(arrays.len());
        let mut specs = Vec::with_capacity(arrays.len());
        for (name, view) in arrays {
            let label = field_label(&name);
            if !view.device().is_host_accessible() {
                return Err(ArraySourceError::NotOnHost {
                    label,
                    device: view.device().name(),
                });
            }
            let layout = view.layout();
            if layout.ndim() == 0 {
                return Err(ArraySourceError::NoSampleAxis { label });
            }
            let row = Layout::new(
                layout.shape()[1..].to_vec(),
                layout.strides()[1..].to_vec(),
                layout.itemsize(),
            )
            .expect("a sub-layout of a valid layout is valid");
            specs.push(FieldSpec {
                name,
                dtype: view.dtype(),
                shape: Some(row.shape().to_vec()),
            });
            let stride0 = layout.strides()[0];
            // No span (it cannot fail for a sub-layout of a valid view): hint nothing.
            let row_span = row.byte_span().unwrap_or((0, 0));
            let mapped = super::hint::is_file_mapped(&view);
            fields.push(ArrayField {
                view,
                row,
                stride0,
                row_span,
                mapped,
            });
        }
        let len = fields
            .first()
            .ok_or(ArraySourceError::NoFields)?
            .view
            .layout()
            .shape()[0];
        for (field, spec) in fields.iter().zip(&specs).skip(1) {
            let found = field.view.layout().shape()[0];
            if found != len {
                return Err(ArraySourceError::LengthMismatch {
                    label: spec.label(),
                    found,
                    first: specs[0].label(),
                    expected: len,
                });
            }
        }
        Ok(ArraySource { fields, specs, len })
    }

    /// The arrays, in field order.
    pub fn views(&self) -> impl Iterator<Item = &View> {
        self.fields.iter().map(|f| &f.view)
    }
}

impl Source for ArraySource {
    fn len(&self) -> usize {
        self.len
    }

    fn fields(&self) -> &[FieldSpec] {
        &self.specs
    }

    fn sample(&self, index: usize, field: usize) -> Result<Sample<'_>, SampleError> {
        let f = self.fields.get(field).ok_or(SampleError::NoSuchField {
            field,
            fields: self.fields.len(),
        })?;
        if index >= self.len {
            return Err(SampleError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        // index < len <= isize::MAX / |stride0| because the whole array's span fits in isize.
        let offset = index as isize * f.stride0;
        Ok(Sample::Strided(f.view.sample(&f.row, offset)?))
    }

    fn rows(&self, field: usize) -> Option<Rows<'_>> {
        let f = self.fields.get(field)?;
        // Empty rows have no address to vouch for (an empty view may sit at null).
        if !f.row.is_c_contiguous() || self.len == 0 || f.row.nbytes() == 0 {
            return None;
        }
        let first = f.view.sample(&f.row, 0).ok()?;
        // SAFETY: row i < len is the sample at offset i * stride0 of the view, whose whole
        // span is readable while the view (owned by `self`) lives; the row is C-contiguous,
        // so its `nbytes` bytes are exactly the sample, and i * stride0 fits in isize because
        // the view's span does.
        Some(unsafe { Rows::new(first.ptr(), f.stride0, f.row.nbytes(), self.len) })
    }

    fn check(&self) -> Result<(), SampleError> {
        for field in &self.fields {
            field.view.check()?;
        }
        Ok(())
    }

    fn takes_hints(&self) -> bool {
        self.fields.iter().any(|f| f.mapped)
    }

    fn will_need(&self, index: usize) {
        if index >= self.len {
            return;
        }
        for field in self.fields.iter().filter(|f| f.mapped) {
            if let Some(range) = super::hint::row_range(index, field.stride0, field.row_span) {
                super::hint::will_need(&field.view, range);
            }
        }
    }

    fn describe(&self) -> String {
        format!("array source of {} samples", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlpack::DLDevice;
    use crate::DType;

    fn array(n: usize, row: usize) -> View {
        View::from_owned(
            vec![7u8; n * row],
            &[n, row],
            DType::U8,
            DLDevice::CPU,
            true,
        )
        .unwrap()
    }

    #[test]
    fn rows_are_samples_and_out_of_range_is_an_error() {
        let s = ArraySource::new(vec![("x".into(), array(5, 3))]).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s.fields()[0].shape, Some(vec![3]));
        let Sample::Strided(row) = s.sample(4, 0).unwrap() else {
            panic!("arrays give strided samples")
        };
        assert_eq!(row.layout().shape(), &[3]);
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
    fn unnamed_fields_are_the_source_in_messages() {
        let scalar = View::from_owned(vec![0u8], &[], DType::U8, DLDevice::CPU, true).unwrap();
        let err = ArraySource::new(vec![(String::new(), scalar)])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "the source is 0-dimensional; its first axis must index samples"
        );
        let err = ArraySource::new(vec![("a".into(), array(3, 1)), ("b".into(), array(2, 1))])
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("field \"b\" has 2 samples"),
            "{err}"
        );
    }

    #[test]
    fn packed_rows_are_offered_and_strided_ones_are_not() {
        let data: Vec<u8> = (0..24).collect();
        let view = View::from_owned(data, &[4, 6], DType::U8, DLDevice::CPU, true).unwrap();
        let packed = ArraySource::new(vec![("x".into(), view.clone())]).unwrap();
        let rows = packed.rows(0).expect("C-contiguous rows");
        let mut out = [0u8; 12];
        rows.copy_into(&[3, 0], &mut out).unwrap();
        assert_eq!(out, [18, 19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5]);
        assert!(packed.rows(1).is_none(), "no such field");
        // Columns of a transposed array are samples whose items are 6 bytes apart.
        let columns = ArraySource::new(vec![("t".into(), view.transpose(None).unwrap())]).unwrap();
        assert!(columns.rows(0).is_none());
        let empty = View::from_owned(Vec::<u8>::new(), &[4, 0], DType::U8, DLDevice::CPU, true);
        let empty = ArraySource::new(vec![("e".into(), empty.unwrap())]).unwrap();
        assert!(
            empty.rows(0).is_none(),
            "zero-size rows go sample by sample"
        );
    }
}

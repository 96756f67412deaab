//! A second kind of source, written outside the crate against the public `Source` trait:
//! fixed-length windows of a 1-d token stream, split into an input and a target shifted by
//! one, the shape that language-model loaders need. It runs through the unchanged pipeline.

use std::sync::Arc;

use zerofeed_core::dlpack::DLDevice;
use zerofeed_core::layout::Layout;
use zerofeed_core::pipeline::{Pipeline, PipelineConfig, PipelineError};
use zerofeed_core::pool::{BufferPool, PoolConfig};
use zerofeed_core::sampler::Sampler;
use zerofeed_core::source::{FieldSpec, Sample, SampleError, Source};
use zerofeed_core::{DType, View};

/// Window `i` starts at token `i * stride`; "input" is `length` tokens, "target" the same
/// window one token later.
struct Windows {
    tokens: View,
    window: Layout,
    stride: usize,
    len: usize,
    fields: Vec<FieldSpec>,
}

impl Windows {
    fn new(tokens: View, length: usize, stride: usize) -> Windows {
        let n = tokens.layout().shape()[0];
        let item = tokens.dtype().itemsize() as isize;
        let window = Layout::new(
            vec![length],
            vec![tokens.layout().strides()[0]],
            item as usize,
        )
        .unwrap();
        let spec = |name: &str| FieldSpec {
            name: name.into(),
            dtype: tokens.dtype(),
            shape: Some(vec![length]),
        };
        Windows {
            len: (n - length - 1) / stride + 1,
            fields: vec![spec("input"), spec("target")],
            tokens,
            window,
            stride,
        }
    }
}

impl Source for Windows {
    fn len(&self) -> usize {
        self.len
    }

    fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    fn sample(&self, index: usize, field: usize) -> Result<Sample<'_>, SampleError> {
        if index >= self.len {
            return Err(SampleError::IndexOutOfRange {
                index,
                len: self.len,
            });
        }
        let start = index * self.stride + field;
        let offset = start as isize * self.tokens.layout().strides()[0];
        Ok(Sample::Strided(self.tokens.sample(&self.window, offset)?))
    }
}

/// A source that lies about its samples: it declares 4 elements and hands out 8.
struct Liar {
    data: View,
    long: Layout,
    fields: Vec<FieldSpec>,
}

impl Source for Liar {
    fn len(&self) -> usize {
        2
    }
    fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }
    fn sample(&self, _: usize, _: usize) -> Result<Sample<'_>, SampleError> {
        Ok(Sample::Strided(self.data.sample(&self.long, 0)?))
    }
}

fn run_all(pipeline: &Pipeline) -> Vec<Vec<Vec<u16>>> {
    let mut run = pipeline.start(0, 0).unwrap();
    let mut batches = Vec::new();
    while let Some(batch) = run.next_batch() {
        let views = pipeline.batch_views(batch.unwrap()).unwrap();
        batches.push(
            views
                .iter()
                .map(|v| {
                    v.contiguous_bytes()
                        .unwrap()
                        .chunks_exact(2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                        .collect()
                })
                .collect(),
        );
    }
    batches
}

fn pool() -> Arc<BufferPool> {
    BufferPool::new(PoolConfig {
        budget: 1 << 20,
        pin: false,
    })
}

#[test]
fn windows_with_next_token_targets_run_through_the_pipeline() {
    let tokens: Vec<u8> = (0u16..100).flat_map(|t| t.to_le_bytes()).collect();
    let view = View::from_owned(tokens, &[100], DType::U16, DLDevice::CPU, true).unwrap();
    let source = Arc::new(Windows::new(view, 8, 8));
    assert_eq!(source.len(), 12);
    let config = PipelineConfig {
        batch_size: 5,
        drop_last: true,
        workers: 2,
        prefetch: 1,
    };
    let sampler = Sampler::new(source.len(), true, 3, false, None).unwrap();
    let order = sampler.epoch_order(0).to_vec();
    let pipeline = Pipeline::new(source, &[vec![], vec![]], sampler, config, pool()).unwrap();
    let batches = run_all(&pipeline);
    assert_eq!(batches.len(), 2);
    for (b, batch) in batches.iter().enumerate() {
        let (input, target) = (&batch[0], &batch[1]);
        for k in 0..5 {
            let start = order[b * 5 + k] as u16 * 8;
            let want: Vec<u16> = (start..start + 8).collect();
            assert_eq!(input[k * 8..(k + 1) * 8], want[..]);
            assert_eq!(
                target[k * 8..(k + 1) * 8],
                (start + 1..start + 9).collect::<Vec<_>>()[..]
            );
        }
    }
}

#[test]
fn a_source_whose_items_are_smaller_than_declared_gets_an_error_not_an_over_read() {
    // Declares float32 items of shape [4] (16 bytes) but hands out 4 bytes: the plan would
    // read 12 bytes past the view if the item size were not checked.
    let data = View::from_owned(vec![0u8; 8], &[8], DType::U8, DLDevice::CPU, true).unwrap();
    let liar = Liar {
        long: Layout::c_contiguous(&[4], 1).unwrap(),
        data,
        fields: vec![FieldSpec {
            name: "x".into(),
            dtype: DType::F32,
            shape: Some(vec![4]),
        }],
    };
    let config = PipelineConfig {
        batch_size: 2,
        drop_last: false,
        workers: 1,
        prefetch: 0,
    };
    let sampler = Sampler::new(2, false, 0, false, None).unwrap();
    let cast = vec![zerofeed_core::ops::OpSpec::Cast { dtype: DType::F64 }];
    let pipeline = Pipeline::new(Arc::new(liar), &[cast], sampler, config, pool()).unwrap();
    let mut run = pipeline.start(0, 0).unwrap();
    let err = run.next_batch().unwrap().err().unwrap();
    assert!(
        matches!(err, PipelineError::SampleShape { itemsize: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_source_whose_samples_do_not_match_its_declaration_gets_an_error_not_a_read() {
    let data = View::from_owned(vec![0u8; 8], &[8], DType::U8, DLDevice::CPU, true).unwrap();
    let liar = Liar {
        long: Layout::c_contiguous(&[8], 1).unwrap(),
        data,
        fields: vec![FieldSpec {
            name: "x".into(),
            dtype: DType::U8,
            shape: Some(vec![4]),
        }],
    };
    let config = PipelineConfig {
        batch_size: 2,
        drop_last: false,
        workers: 1,
        prefetch: 0,
    };
    let sampler = Sampler::new(2, false, 0, false, None).unwrap();
    let pipeline = Pipeline::new(Arc::new(liar), &[vec![]], sampler, config, pool()).unwrap();
    let mut run = pipeline.start(0, 0).unwrap();
    let err = run.next_batch().unwrap().err().unwrap();
    assert!(matches!(err, PipelineError::SampleShape { .. }), "{err}");
}

/// A source whose samples take `delay` each: a stand-in for a slow disk.
struct Slow {
    data: View,
    row: Layout,
    delay: std::time::Duration,
    fields: Vec<FieldSpec>,
}

impl Source for Slow {
    fn len(&self) -> usize {
        4
    }
    fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }
    fn sample(&self, index: usize, _: usize) -> Result<Sample<'_>, SampleError> {
        std::thread::sleep(self.delay);
        Ok(Sample::Strided(
            self.data.sample(&self.row, index as isize)?,
        ))
    }
}

#[test]
fn a_consumer_can_stop_waiting_for_a_slow_batch_and_wait_again() {
    use zerofeed_core::pipeline::Polled;
    let slow = Slow {
        data: View::from_owned(vec![1u8, 2, 3, 4], &[4], DType::U8, DLDevice::CPU, true).unwrap(),
        row: Layout::c_contiguous(&[], 1).unwrap(),
        delay: std::time::Duration::from_millis(300),
        fields: vec![FieldSpec {
            name: "x".into(),
            dtype: DType::U8,
            shape: Some(vec![]),
        }],
    };
    let config = PipelineConfig {
        batch_size: 2,
        drop_last: false,
        workers: 1,
        prefetch: 0,
    };
    let sampler = Sampler::new(4, false, 0, false, None).unwrap();
    let pipeline = Pipeline::new(Arc::new(slow), &[vec![]], sampler, config, pool()).unwrap();
    let mut run = pipeline.start(0, 0).unwrap();
    let asked = std::time::Instant::now();
    assert!(matches!(
        run.poll_batch(std::time::Duration::from_millis(20)),
        Polled::Pending
    ));
    assert!(asked.elapsed() < std::time::Duration::from_millis(250));
    let Polled::Ready(batch) = run.poll_batch(std::time::Duration::from_secs(30)) else {
        panic!("the batch arrives after the wait")
    };
    assert_eq!(batch.unwrap().buffers[0].as_slice(), &[1, 2]);
    let mut rest = Vec::new();
    while let Some(batch) = run.next_batch() {
        rest.extend_from_slice(batch.unwrap().buffers[0].as_slice());
    }
    assert_eq!(rest, [3, 4]);
}

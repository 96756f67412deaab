use std::sync::atomic::Ordering;

use super::*;
use crate::dlpack::DLDevice;
use crate::pool::PoolConfig;
use crate::source::ArraySource;

fn images(data: &[u8], n: usize) -> Arc<dyn Source> {
    let view =
        View::from_owned(data.to_vec(), &[n, 4, 4, 3], DType::U8, DLDevice::CPU, true).unwrap();
    Arc::new(ArraySource::new(vec![("image".into(), view)]).unwrap())
}

fn pool() -> Arc<BufferPool> {
    BufferPool::new(PoolConfig {
        budget: 1 << 20,
        pin: false,
    })
}

fn config(workers: usize) -> PipelineConfig {
    PipelineConfig {
        batch_size: 4,
        drop_last: false,
        workers,
        prefetch: 2,
    }
}

fn pipeline(data: &[u8], n: usize, workers: usize, shuffle: bool, ops: &[OpSpec]) -> Pipeline {
    let sampler = Sampler::new(n, shuffle, 7, false, None).unwrap();
    Pipeline::new(
        images(data, n),
        &[ops.to_vec()],
        sampler,
        config(workers),
        pool(),
    )
    .unwrap()
}

fn collect(run: &mut EpochRun) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(batch) = run.next_batch() {
        let batch = batch.unwrap();
        let sample = batch.buffers[0].len() / 4;
        out.push(batch.buffers[0].as_slice()[..batch.len * sample].to_vec());
    }
    out
}

#[test]
fn unshuffled_batches_are_the_samples_in_order() {
    let data: Vec<u8> = (0..10 * 48).map(|i| (i % 251) as u8).collect();
    let p = pipeline(&data, 10, 2, false, &[]);
    assert_eq!(p.num_batches(), 3);
    let batches = collect(&mut p.start(0, 0).unwrap());
    assert_eq!(batches.concat(), data);
}

#[test]
fn chained_epochs_are_the_epochs_a_fresh_start_gives() {
    let data: Vec<u8> = (0..37 * 48).map(|i| (i * 11 % 256) as u8).collect();
    let ops = [
        OpSpec::RandomCrop {
            height: 2,
            width: 3,
        },
        OpSpec::RandomFlip { p: 0.5 },
    ];
    for workers in [1, 3] {
        let p = pipeline(&data, 37, workers, true, &ops);
        let fresh = |epoch| collect(&mut p.start(epoch, 0).unwrap());
        let (e3, e4, e5) = (fresh(3), fresh(4), fresh(5));
        // From a resumed batch, and through two chained epochs on the same workers.
        let mut run = p.start(3, 2).unwrap();
        assert!(!run.next_epoch(), "epoch 3 is not read to its end yet");
        assert_eq!(collect(&mut run), e3[2..]);
        assert_eq!(run.position(), e3.len());
        let before = p.stats().batches.load(Ordering::Relaxed);
        assert!(run.next_epoch());
        assert_eq!((run.epoch(), run.position()), (4, 0));
        assert_eq!(collect(&mut run), e4);
        assert!(run.next_epoch());
        assert_eq!(collect(&mut run), e5);
        // Batches prepared ahead count only once handed out.
        let after = p.stats().batches.load(Ordering::Relaxed);
        assert_eq!(after - before, (e4.len() + e5.len()) as u64);
        assert_ne!(e4, e5);
    }
}

#[test]
fn an_elastic_resume_chains_into_full_epochs() {
    let data: Vec<u8> = (0..37 * 48).map(|i| (i * 13 % 256) as u8).collect();
    let p = pipeline(&data, 37, 2, true, &[]);
    let next = collect(&mut p.start(6, 0).unwrap());
    let mut run = p.start_at(5, 9).unwrap();
    let rest = collect(&mut run);
    assert_eq!(rest.concat().len(), (37 - 9) * 48);
    assert!(run.next_epoch());
    assert_eq!(collect(&mut run), next);
}

#[test]
fn tiny_batches_cross_the_window_without_losing_any() {
    // 1-sample batches of 48 bytes: the small-batch look-ahead, its wake-up gap and the
    // epoch chain all in play; every batch arrives, in order, for every worker count.
    let data: Vec<u8> = (0..997 * 48).map(|i| (i * 3 % 256) as u8).collect();
    let sampler = Sampler::new(997, true, 7, false, None).unwrap();
    let order = sampler.epoch_order(0);
    let expected: Vec<u8> = (0..997)
        .flat_map(|k| data[order.get(k) * 48..][..48].to_vec())
        .collect();
    for workers in [1, 2, 5] {
        let cfg = PipelineConfig {
            batch_size: 1,
            ..config(workers)
        };
        let p = Pipeline::new(images(&data, 997), &[vec![]], sampler.clone(), cfg, pool()).unwrap();
        let mut run = p.start(0, 0).unwrap();
        let mut got = Vec::new();
        while let Some(batch) = run.next_batch() {
            got.extend_from_slice(&batch.unwrap().buffers[0].as_slice()[..48]);
        }
        assert!(
            got == expected,
            "{workers} workers: batches lost or out of order"
        );
        assert!(run.next_epoch());
        let mut second = 0;
        while let Some(batch) = run.next_batch() {
            assert_eq!(batch.unwrap().index, second);
            second += 1;
        }
        assert_eq!(second, 997);
    }
}

#[test]
fn output_is_identical_for_any_worker_count_and_resumes() {
    let data: Vec<u8> = (0..37 * 48).map(|i| (i * 7 % 256) as u8).collect();
    let ops = [
        OpSpec::RandomCrop {
            height: 2,
            width: 3,
        },
        OpSpec::RandomFlip { p: 0.5 },
    ];
    let one = collect(&mut pipeline(&data, 37, 1, true, &ops).start(3, 0).unwrap());
    for workers in [2, 4] {
        let run = &mut pipeline(&data, 37, workers, true, &ops)
            .start(3, 0)
            .unwrap();
        assert_eq!(collect(run), one);
    }
    let resumed = collect(&mut pipeline(&data, 37, 2, true, &ops).start(3, 5).unwrap());
    assert_eq!(resumed, one[5..]);
    let other_epoch = collect(&mut pipeline(&data, 37, 2, true, &ops).start(4, 0).unwrap());
    assert_ne!(other_epoch, one);
}

#[test]
fn dropping_a_run_mid_epoch_joins_workers() {
    let data = vec![1; 100 * 48];
    let p = pipeline(&data, 100, 2, true, &[]);
    let mut run = p.start(0, 0).unwrap();
    run.next_batch().unwrap().unwrap();
    drop(run);
    // The pool got its buffers back (or freed them): none is handed out.
    let s = p.pool().snapshot();
    assert_eq!(s.live_buffers, s.idle_buffers);
}

#[test]
fn a_sampler_longer_than_the_source_is_refused() {
    let tiny = View::from_owned(vec![0u8; 4], &[4], DType::U8, DLDevice::CPU, true).unwrap();
    let source: Arc<dyn Source> = Arc::new(ArraySource::new(vec![("x".into(), tiny)]).unwrap());
    let sampler = Sampler::new(4096, true, 0, false, None).unwrap();
    let err = Pipeline::new(source, &[vec![]], sampler, config(1), pool())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            PipelineError::SamplerMismatch {
                sampler: 4096,
                source_len: 4
            }
        ),
        "{err}"
    );
    assert_eq!(err.argument(), "source");
}

#[test]
fn one_op_chain_per_field() {
    let data = vec![0u8; 2 * 48];
    let sampler = Sampler::new(2, false, 0, false, None).unwrap();
    let err = Pipeline::new(images(&data, 2), &[], sampler, config(1), pool())
        .err()
        .unwrap();
    assert_eq!(err.argument(), "ops");
}

#[test]
fn build_applies_the_memory_policy() {
    let data = vec![0u8; 8 * 48];
    let cfg = LoaderConfig {
        batch_size: 4,
        shuffle: false,
        seed: 0,
        drop_last: false,
        workers: 1,
        prefetch: 1,
        pin: Pin::Auto,
        shard: Shard::new(0, 1).unwrap(),
        memory_budget: Some(10),
        pin_device: None,
    };
    let err = build(images(&data, 8), &[vec![]], &cfg).err().unwrap();
    assert!(matches!(err, PipelineError::BudgetTooSmall { .. }), "{err}");
    let ok = build(
        images(&data, 8),
        &[vec![]],
        &LoaderConfig {
            memory_budget: None,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_eq!(ok.batch_nbytes(), 4 * 48);
    assert!(
        !ok.pinned(),
        "pin=auto does not page-lock host-only loaders"
    );
    // Small batches: room for the small-batch look-ahead (memory.rs), not just in flight.
    assert_eq!(
        ok.pool().config().budget,
        (memory::small_lookahead(4 * 48) + 1) * 4 * 48
    );
    let err = build(
        images(&data, 8),
        &[vec![]],
        &LoaderConfig {
            batch_size: 1 << 62,
            memory_budget: None,
            ..cfg
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.argument(), "batch_size");
}

#[test]
fn batch_views_count_copies_per_pipeline() {
    let data: Vec<u8> = (0..8 * 48).map(|i| i as u8).collect();
    let p = pipeline(&data, 8, 1, false, &[]);
    let other = pipeline(&data, 8, 1, false, &[]);
    let mut run = p.start(0, 0).unwrap();
    let batch = run.next_batch().unwrap().unwrap();
    let views = p.batch_views(batch).unwrap();
    assert_eq!(views[0].layout().shape(), &[4, 4, 4, 3]);
    views[0]
        .transpose(None)
        .unwrap()
        .packed_copy(crate::host::Alignment::Bytes(64))
        .unwrap();
    assert_eq!(p.copies().snapshot(), (1, 4 * 48));
    assert_eq!(other.copies().snapshot(), (0, 0));
}

#[test]
fn start_at_a_global_position_is_start_at_the_batch_it_counts() {
    let data: Vec<u8> = (0..10 * 48).map(|i| (i * 7 % 251) as u8).collect();
    let p = pipeline(&data, 10, 2, true, &[]);
    for batch in 0..=3 {
        let consumed = p.sampler().consumed_after(0, batch * 4);
        let resumed = collect(&mut p.start_at(1, consumed).unwrap());
        assert_eq!(resumed, collect(&mut p.start(1, batch).unwrap()));
    }
    // Past the end (a padded total): nothing left.
    assert!(collect(&mut p.start_at(1, 12).unwrap()).is_empty());
}

#[test]
fn op_keys_give_a_slice_the_ops_of_the_whole_dataset() {
    let data: Vec<u8> = (0..12 * 48).map(|i| (i * 13 % 256) as u8).collect();
    let ops = [
        OpSpec::RandomCrop {
            height: 2,
            width: 2,
        },
        OpSpec::RandomFlip { p: 0.5 },
    ];
    let whole = collect(&mut pipeline(&data, 12, 1, false, &ops).start(2, 0).unwrap()).concat();
    let sample = 2 * 2 * 3;
    // Samples 9, 2, 5, 11 of the dataset, as a source of their own (a Ray Data block).
    let picked = [9usize, 2, 5, 11];
    let block: Vec<u8> = picked
        .iter()
        .flat_map(|&i| data[i * 48..(i + 1) * 48].to_vec())
        .collect();
    let keys = picked.iter().map(|&i| i as u64).collect::<Vec<_>>();
    let keyed = pipeline(&block, 4, 2, false, &ops)
        .with_op_keys(keys)
        .unwrap();
    let out = collect(&mut keyed.start(2, 0).unwrap()).concat();
    for (k, &i) in picked.iter().enumerate() {
        assert_eq!(
            out[k * sample..(k + 1) * sample],
            whole[i * sample..(i + 1) * sample]
        );
    }
    let unkeyed = collect(&mut pipeline(&block, 4, 2, false, &ops).start(2, 0).unwrap()).concat();
    assert_ne!(unkeyed, out);
    let err = pipeline(&block, 4, 1, false, &ops)
        .with_op_keys(vec![1, 2])
        .err()
        .unwrap();
    assert_eq!(err.argument(), "keys");
    assert!(err
        .to_string()
        .contains("2 op keys for a source of 4 samples"));
}

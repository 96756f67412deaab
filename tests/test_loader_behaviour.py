"""Loader behaviour: determinism, resumption, shards, kept batches, .npy sources, shutdown."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import (
    DTYPES,
    describe_exit,
    require,
    subprocess_env,
    worker_thread_ids,
    worker_threads,
    worker_threads_settle,
)

import zerofeed as zf

OPS = [zf.RandomCrop(6, 6), zf.RandomFlip(), zf.Normalize([120.0], [60.0], scale=1.0)]


def dataset(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 12, 10, 3), dtype=np.uint8)


def run(loader: zf.Loader) -> list[np.ndarray]:
    return [np.array(b, copy=True) for b in loader]


threads = worker_threads


def test_len_and_drop_last():
    data = dataset(50)
    assert len(zf.Loader(data, batch_size=8)) == 7
    assert len(zf.Loader(data, batch_size=8, drop_last=True)) == 6
    assert [len(b) for b in zf.Loader(data, batch_size=8)][-1] == 2


def test_same_batches_for_any_worker_count():
    data = dataset()
    reference = run(zf.Loader(data, batch_size=7, ops=OPS, shuffle=True, seed=3, workers=1))
    for workers in (2, 4):
        other = run(zf.Loader(data, batch_size=7, ops=OPS, shuffle=True, seed=3, workers=workers, prefetch=1))
        assert all(np.array_equal(a, b) for a, b in zip(reference, other, strict=True))


def test_seeds_and_epochs_differ():
    data = dataset()
    a = run(zf.Loader(data, batch_size=50, ops=OPS, shuffle=True, seed=1))[0]
    b = run(zf.Loader(data, batch_size=50, ops=OPS, shuffle=True, seed=2))[0]
    assert not np.array_equal(a, b)
    loader = zf.Loader(data, batch_size=50, ops=OPS, shuffle=True, seed=1)
    first, second = run(loader)[0], run(loader)[0]
    assert loader.epoch == 2
    assert not np.array_equal(first, second)
    loader.set_epoch(0)
    assert np.array_equal(run(loader)[0], first)


def test_shuffle_is_a_permutation_per_epoch():
    labels = np.arange(103)
    loader = zf.Loader(labels, batch_size=10, shuffle=True, seed=5)
    for _ in range(3):
        seen = np.concatenate(list(loader))
        assert sorted(seen.tolist()) == labels.tolist()
        assert seen.tolist() != labels.tolist()


@pytest.mark.parametrize("stop_after", [0, 1, 3, 6])
def test_resume_from_state_dict_is_bit_identical(stop_after):
    data = dataset()
    make = lambda: zf.Loader(data, batch_size=7, ops=OPS, shuffle=True, seed=9, workers=2)  # noqa: E731
    full = run(make())
    interrupted = make()
    iterator = iter(interrupted)
    for _ in range(stop_after):
        next(iterator)
    state = interrupted.state_dict()
    interrupted.close()
    resumed = make()
    resumed.load_state_dict(state)
    rest = run(resumed)
    assert len(rest) == len(full) - stop_after
    assert all(np.array_equal(a, b) for a, b in zip(full[stop_after:], rest, strict=True))


def test_state_dict_after_a_full_epoch_points_at_the_next_one():
    loader = zf.Loader(np.arange(10), batch_size=4, shuffle=True)
    list(loader)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batch"]) == (1, 0)


def test_state_from_another_configuration_is_refused():
    state = zf.Loader(np.arange(10), batch_size=4, seed=1).state_dict()
    with pytest.raises(zf.PipelineError, match="seed"):
        zf.Loader(np.arange(10), batch_size=4, seed=2).load_state_dict(state)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [10, 11, 13])
def test_shards_cover_the_data_like_distributed_sampler(n, drop_last):
    torch = require("torch", reason="torch is needed for DistributedSampler's reference")
    from torch.utils.data import DistributedSampler

    world = 3
    labels = np.arange(n)
    per_rank = []
    for rank in range(world):
        loader = zf.Loader(labels, batch_size=2, shard=(rank, world), drop_last=drop_last)
        per_rank.append(np.concatenate(list(loader)) if len(loader) else np.array([], int))
        reference = DistributedSampler(
            torch.utils.data.TensorDataset(torch.arange(n)),
            num_replicas=world,
            rank=rank,
            shuffle=False,
            drop_last=drop_last,
        )
        expected = list(reference)
        usable = len(expected) // 2 * 2 if drop_last else len(expected)
        assert per_rank[-1].tolist() == expected[:usable]
    if drop_last:
        everything = np.concatenate(per_rank)
        assert len(set(everything.tolist())) == len(everything)


def test_shuffled_shards_are_disjoint_and_complete():
    labels = np.arange(40)
    seen = [
        np.concatenate(list(zf.Loader(labels, batch_size=5, shuffle=True, shard=(r, 4)))) for r in range(4)
    ]
    assert sorted(np.concatenate(seen).tolist()) == labels.tolist()


def test_shard_from_env(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert zf.Shard.from_env() == zf.Shard(2, 4)


@pytest.mark.parametrize("framework", ["numpy", "torch", "tensorflow", "jax"])
def test_kept_batches_never_change(framework):
    if framework != "numpy":
        require(framework, reason=f"{framework} not installed")
    data = dataset(64)
    loader = zf.Loader(data, batch_size=4, ops=OPS, shuffle=True, workers=2, prefetch=2)
    iterate = {
        "numpy": loader.numpy,
        "torch": loader.torch,
        "tensorflow": loader.tensorflow,
        "jax": loader.jax,
    }
    as_numpy = {
        "numpy": np.asarray,
        "torch": lambda t: t.numpy(),
        "tensorflow": lambda t: t.numpy(),
        "jax": np.asarray,
    }[framework]
    kept, snapshots = [], []
    produced = 0
    while produced < 550:
        for batch in iterate[framework]():
            if len(kept) < 50:
                kept.append(batch)
                snapshots.append(np.array(as_numpy(batch), copy=True))
            produced += 1
            if produced >= 550:
                break
    assert all(np.array_equal(as_numpy(k), s) for k, s in zip(kept, snapshots, strict=True))
    stats = loader.stats
    assert stats["pool_allocations"] >= 50  # kept batches forced fresh buffers
    assert stats["pool_reuses"] > 0


def test_epochs_chain_on_the_same_workers_and_equal_fresh_loaders():
    # The next epoch is prepared by the workers of this one while its last batches are
    # read: the same threads go on, and every epoch is the one a fresh loader gives.
    data = dataset(41)
    make = lambda: zf.Loader(data, batch_size=4, ops=OPS, workers=2, shuffle=True, seed=3)  # noqa: E731
    before = worker_thread_ids()
    loader = make()
    epochs, workers = [], []
    for _ in range(3):
        epochs.append(run(loader))
        # A thread takes its name when it first runs: on a busy machine the first worker can
        # read a whole epoch of these tiny batches before the second one is scheduled.
        deadline = time.monotonic() + 2.0
        while len(ids := worker_thread_ids() - before) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        workers.append(ids)
    assert len(workers[0]) == 2 and workers[0] == workers[1] == workers[2]
    assert loader.stats["batches"] == 3 * len(loader)  # prepared-ahead batches not counted
    for e, got in enumerate(epochs):
        fresh = make()
        fresh.set_epoch(e)
        assert all(np.array_equal(a, b) for a, b in zip(got, run(fresh), strict=True))
        fresh.close()
    # Choosing another epoch, or a mid-epoch state, drops what was prepared for epoch 3.
    loader.set_epoch(7)
    fresh = make()
    fresh.set_epoch(7)
    assert all(np.array_equal(a, b) for a, b in zip(run(loader), run(fresh), strict=True))
    assert not worker_thread_ids() & workers[0], "the chained workers were stopped and joined"
    fresh.close()
    loader.close()
    assert worker_threads_settle(len(before)) == len(before)


def test_a_finished_iterator_lets_go_of_the_run_the_next_pass_took_over():
    # Closing (or asking the position of) an iterator read to its end must not reach the
    # workers that went on into the next epoch, which the next pass owns.
    loader = zf.Loader(dataset(24), batch_size=4, ops=OPS, workers=2, shuffle=True, seed=5)
    first = iter(loader)
    assert len(list(first)) == len(loader)
    second = iter(loader)
    first.close()
    assert first.position == len(loader)
    got = [np.array(b, copy=True) for b in second]
    fresh = zf.Loader(dataset(24), batch_size=4, ops=OPS, workers=2, shuffle=True, seed=5)
    fresh.set_epoch(1)
    assert all(np.array_equal(a, b) for a, b in zip(got, run(fresh), strict=True))
    assert len(got) == len(loader)
    fresh.close()
    loader.close()


@pytest.mark.parametrize("arrays_from_core", [True, False])
@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_batches_share_the_pool_buffers_without_a_copy(target, arrays_from_core, monkeypatch):
    # The per-field conversions decided once per pass (arrays made by the core through
    # NumPy's C API, or, where it is missing, NumPy's buffer export; torch.from_numpy over
    # either; ml_dtypes' bfloat16 view) must hand out the batch buffer itself.
    if target == "torch":
        require("torch", reason="torch not installed")
    from zerofeed.frameworks import to_numpy, to_torch

    if not arrays_from_core:
        monkeypatch.setattr(zf._zerofeed, "_numpy_arrays_available", lambda: False)
    source = {
        "x": dataset(16),
        "y": np.arange(16, dtype=np.int64),
    }
    loader = zf.Loader(source, batch_size=4, ops={"x": [zf.Normalize([120.0], [60.0], scale=1.0)]}, workers=1)
    if target == "numpy":
        bf16 = zf.Loader(
            dataset(16), batch_size=4, ops=[zf.Normalize([1.0], [1.0], dtype="bfloat16")], workers=1
        )
        make, takes_arrays = bf16._batch_maker(to_numpy)
        assert not takes_arrays  # NumPy has no bfloat16: the view goes through ml_dtypes
        views = next(bf16._pipeline.start(0, 0))
        array = make(views)
        assert array.dtype.name == "bfloat16" and array.ctypes.data == views[0].ptr
        bf16.close()
    run = loader._pipeline.start(0, 0)
    make, takes_arrays = loader._batch_maker(to_numpy if target == "numpy" else to_torch)
    assert takes_arrays == arrays_from_core
    if takes_arrays:
        arrays = run.next_arrays()
        # Each array lies over its view's memory, and the view (holding the pool buffer) is
        # its base: the buffer is not recycled while the array lives.
        views = tuple(a.base for a in arrays)
        assert all(isinstance(v, zf.View) for v in views)
        for a, v in zip(arrays, views, strict=True):
            assert a.shape == v.shape and a.strides == v.strides and a.flags.writeable
        batch = make(arrays)
    else:
        views = next(run)
        batch = make(views)
    for name, view in zip(("x", "y"), views, strict=True):
        got = batch[name]
        address = got.ctypes.data if target == "numpy" else got.data_ptr()
        assert address == view.ptr, f"{name} was copied"
    run.close()
    loader.close()


def test_core_arrays_equal_the_buffer_protocol_for_every_dtype():
    # next_arrays builds arrays through NumPy's C API: the same dtype, shape, strides,
    # values and memory as np.asarray of the same views, for every dtype a field may have.
    rng = np.random.default_rng(3)
    source = {d: (rng.random((12, 3, 2)) * 100).astype(d) for d in DTYPES}
    loader = zf.Loader(source, batch_size=4, shuffle=True, workers=2)
    by_buffer = [[np.asarray(v).copy() for v in views] for views in loader._pipeline.start(0, 0)]
    run = loader._pipeline.start(0, 0)
    for want in by_buffer:
        arrays = run.next_arrays()
        assert len(arrays) == len(DTYPES)
        for d, got, expected in zip(DTYPES, arrays, want, strict=True):
            assert got.dtype == expected.dtype == np.dtype(d), d
            assert got.shape == expected.shape and got.strides == expected.strides, d
            assert got.ctypes.data == got.base.ptr, d
            np.testing.assert_array_equal(got, expected)
    with pytest.raises(StopIteration):
        run.next_arrays()
    loader.close()


def test_batches_released_by_the_user_are_recycled():
    # Batches of 1 MiB: the small-batch look-ahead (4 MiB) is no longer than what prefetch and
    # workers ask, so the pool holds that plus the consumer's batch, across epochs (the next
    # epoch is prepared on the same buffers).
    big = np.zeros((32, 128, 256, 4), np.float32)
    loader = zf.Loader(big, batch_size=2, workers=2, prefetch=2)
    for _ in range(3):
        for _batch in loader:
            pass
    stats = loader.stats
    assert stats["pool_allocations"] <= loader.prefetch + loader.workers + 3
    assert stats["pool_reuses"] >= 48 - stats["pool_allocations"]


def test_small_batches_are_prepared_further_ahead_and_recycled():
    # 1.7 KB batches: a wake-up costs more than one, so workers run up to 256 of them
    # ahead; the budget grows to hold them (and the first run allocates them up front).
    loader = zf.Loader(dataset(64), batch_size=4, ops=OPS, workers=2, prefetch=2)
    batch_bytes = 4 * 6 * 6 * 3 * 4
    for _ in range(2):
        for _batch in loader:
            pass
    allocated = loader.stats["pool_allocations"]
    for _ in range(4):
        for _batch in loader:
            pass
    stats = loader.stats
    assert stats["batches"] == 6 * len(loader)
    assert stats["pool_budget_bytes"] // batch_bytes > 256  # the look-ahead cap, and one more
    assert stats["pool_allocations"] == allocated, "steady state allocates nothing"
    assert stats["pool_allocations"] * batch_bytes <= stats["pool_budget_bytes"]
    assert stats["pool_reuses"] >= 6 * len(loader)


def test_npy_path_source_matches_array(tmp_path):
    data = dataset(30)
    path = tmp_path / "images.npy"
    np.save(path, data)
    from_file = run(zf.Loader(str(path), batch_size=8, ops=OPS, shuffle=True, seed=4))
    from_array = run(zf.Loader(data, batch_size=8, ops=OPS, shuffle=True, seed=4))
    assert all(np.array_equal(a, b) for a, b in zip(from_file, from_array, strict=True))


def test_npy_larger_than_what_is_read_touches_only_the_batches(tmp_path):
    """A 6 GiB sparse .npy: one batch of 4 samples costs about 4 samples of memory."""
    path = tmp_path / "huge.npy"
    shape = (2048, 1024, 1024, 3)  # 6 GiB of uint8, never written
    header = np.lib.format.header_data_from_array_1_0(np.zeros((0, 1), np.uint8))
    header["shape"] = shape
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
    os.truncate(path, offset + int(np.prod(shape)))
    loader = zf.Loader(str(path), batch_size=4, ops=[zf.CenterCrop(64, 64)], shuffle=True)
    with open("/proc/self/status") as status:
        before = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    batch = next(iter(loader))
    with open("/proc/self/status") as status:
        after = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    assert batch.shape == (4, 64, 64, 3) and not batch.any()
    assert (after - before) * 1024 < 64 << 20
    loader.close()


def test_abandoned_loaders_leave_no_threads():
    data = dataset(64)
    gc.collect()
    before = threads()
    for i in range(200):
        loader = zf.Loader(data, batch_size=4, ops=OPS, workers=2, shuffle=True, seed=i)
        iterator = iter(loader)
        next(iterator)
        del loader, iterator
    gc.collect()
    assert worker_threads_settle(before) == before


def test_close_and_context_manager_stop_workers():
    data = dataset(64)
    before = threads()
    with zf.Loader(data, batch_size=4, workers=3) as loader:
        it = iter(loader)  # kept: a dropped iterator stops its workers at once
        next(it)
        # One batch can be ready before every worker has started (and named itself).
        deadline = time.monotonic() + 10
        while threads() < before + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threads() == before + 3
    assert worker_threads_settle(before) == before  # close() joins them


def test_stats_count_the_work():
    loader = zf.Loader(dataset(20), batch_size=8, ops=OPS)
    list(loader)
    stats = loader.stats
    assert stats["batches"] == 3 and stats["samples"] == 20
    assert stats["bytes_produced"] == 20 * 6 * 6 * 3 * 4
    assert stats["copies"] == 0
    assert {"worker_wait_s", "consumer_wait_s", "pinned_bytes", "pool_buffers"} <= set(stats)


def test_pin_falls_back_with_one_warning_when_memlock_forbids():
    code = textwrap.dedent(
        """
        import resource, warnings, numpy as np, zerofeed as zf
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
        loader = zf.Loader(np.zeros((16, 64, 64, 3), np.uint8), batch_size=4, pin=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            list(loader); list(loader)
        messages = [str(w.message) for w in caught if "page-locked" in str(w.message)]
        stats = loader.stats
        assert len(messages) == 1, messages
        assert stats["pin_failures"] >= 1 and stats["pinned_bytes"] == 0, stats
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


PIN_SCRIPT = """
import json, resource, sys, warnings
import numpy as np, zerofeed as zf
limit = int(sys.argv[1])
if limit >= 0:
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]))
soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
loader = zf.Loader(np.zeros((16, 12, 10, 3), np.uint8), batch_size=4, pin=True, workers=2)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    list(loader)
stats = {k: v for k, v in loader.stats.items() if k in (
    "pinned_bytes", "pin_failures", "pin_error", "pool_allocations", "pool_buffers")}
stats["warnings"] = sum("page-locked" in str(w.message) for w in caught)
stats["soft"] = None if soft == resource.RLIM_INFINITY else soft
print(json.dumps(stats))
"""


@pytest.mark.parametrize("limit", ["inherited", "1MiB", "1000B"])
def test_pinned_bytes_follow_the_memlock_limit(limit):
    """Each pool buffer is page-locked while the soft memlock limit has room for it, and
    counted as a pin failure (with the reason, warned once) when it does not."""
    import json
    import resource

    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    wanted = {"inherited": -1, "1MiB": 1 << 20, "1000B": 1000}[limit]
    if wanted > 0 and hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard memlock limit ({hard} bytes) is below {wanted} bytes")
    proc = subprocess.run(
        [sys.executable, "-c", PIN_SCRIPT, str(wanted)],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, describe_exit(proc)
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    batch = 4 * 12 * 10 * 3
    buffers = stats["pool_allocations"]
    assert buffers >= 1
    # Each buffer is pinned or counted as a failure, never both or neither.
    assert stats["pinned_bytes"] + stats["pin_failures"] * batch == buffers * batch, stats
    page = os.sysconf("SC_PAGE_SIZE")
    # mlock counts whole pages: a buffer of `batch` bytes spans at most this many.
    locked_per_buffer = (batch + page - 1) // page * page + page
    soft = stats["soft"]
    if soft is None or soft >= buffers * locked_per_buffer:
        assert stats["pinned_bytes"] == buffers * batch, stats
        assert stats["pin_failures"] == 0 and stats["pin_error"] is None and stats["warnings"] == 0, stats
    elif soft < batch:  # the pool refuses before asking the kernel
        assert stats["pinned_bytes"] == 0 and stats["pin_failures"] == buffers, stats
        assert "memlock limit" in stats["pin_error"] and stats["warnings"] == 1, stats
    elif soft >= locked_per_buffer:
        assert stats["pinned_bytes"] > 0, stats
    # (between one batch and its pages, mlock succeeds as root and fails otherwise)


def test_tf_dataset_has_a_correct_element_spec():
    tf = require("tensorflow", reason="tensorflow not installed")
    labels = np.arange(10, dtype=np.int32)
    loader = zf.Loader(
        {"image": dataset(10), "label": labels}, batch_size=4, ops={"image": OPS}, drop_last=True
    )
    ds = loader.tf_dataset()
    assert ds.element_spec["image"] == tf.TensorSpec((4, 6, 6, 3), tf.float32)
    assert ds.element_spec["label"] == tf.TensorSpec((4,), tf.int32)
    got = [b["label"].numpy().tolist() for b in ds]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_keras_fit_runs_on_the_loader():
    keras = require("keras", reason="keras not installed")
    require("tensorflow", reason="the keras test uses the TensorFlow backend")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("keras backend is not tensorflow")
    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    y = (x.sum(axis=1) > 2).astype(np.float32)
    loader = zf.Loader({"x": x, "y": y}, batch_size=8, shuffle=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    history = model.fit(loader.keras(x="x", y="y"), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))
    # Keras peeks at batches before training and calls on_epoch_end then too.
    assert loader.epoch >= 2


def test_conversions_that_must_copy_are_counted_in_stats():
    require("jax", reason="jax not installed")
    from zerofeed.explain import jax_x64_enabled

    if jax_x64_enabled():
        pytest.skip("jax_enable_x64 is on: float64 batches go to JAX without a copy")
    loader = zf.Loader(dataset(8), batch_size=4, ops=[zf.Normalize([0.0], [1.0], dtype="float64")])
    batches = list(loader.jax())
    assert [str(b.dtype) for b in batches] == ["float32", "float32"]  # JAX without x64
    assert loader.stats["copies"] == 2
    assert loader.stats["bytes_copied"] == 2 * 4 * 12 * 10 * 3 * 8
    list(loader)  # NumPy takes float64 as it is
    assert loader.stats["copies"] == 2

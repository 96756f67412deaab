"""How a Loader behaves as a PyTorch user expects (issue 9: 8, 11, 13, 16, 17): each iter()
begins the next epoch, superseded iterators raise, dropped loaders stop at once, states are
validated, pinning only where it helps, and Keras fit runs at loader speed."""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from conftest import require, worker_threads, worker_threads_settle

import zerofeed as zf

workers_alive = worker_threads


def test_breaking_out_of_an_epoch_begins_the_next_one():
    loader = zf.Loader(np.arange(64), batch_size=4, shuffle=True, seed=5)
    reference = zf.Loader(np.arange(64), batch_size=4, shuffle=True, seed=5)
    first_batches = []
    for epoch in range(3):
        reference.set_epoch(epoch)
        first_batches.append(next(iter(reference)).tolist())
    for b in loader:  # break after one batch
        assert b.tolist() == first_batches[0]
        break
    assert next(itertools.islice(loader, 1)).tolist() == first_batches[1]
    assert [b.tolist() for _, b in zip(range(1), loader, strict=False)] == [first_batches[2]]
    assert len({tuple(b) for b in first_batches}) == 3  # reshuffled each epoch


def test_a_complete_epoch_then_the_next():
    loader = zf.Loader(np.arange(8), batch_size=4, shuffle=True, seed=1)
    one, two = [np.concatenate(list(loader)).tolist() for _ in range(2)]
    assert sorted(one) == sorted(two) == list(range(8)) and one != two
    loader.set_epoch(0)
    assert np.concatenate(list(loader)).tolist() == one  # set_epoch replays exactly


def test_a_superseded_iterator_raises_instead_of_stopping():
    loader = zf.Loader(np.arange(16), batch_size=4)
    with pytest.raises(zf.PipelineError, match="superseded") as info:
        list(zip(loader, loader, strict=False))
    assert info.value.argument == "iterator"
    first = iter(loader)
    next(first)
    loader.set_epoch(0)
    with pytest.raises(zf.PipelineError, match="superseded"):
        next(first)


def test_state_dict_during_an_epoch_resumes_it():
    loader = zf.Loader(np.arange(40), batch_size=4, shuffle=True, seed=2)
    it = iter(loader)
    seen = [next(it).tolist() for _ in range(3)]
    state = loader.state_dict()
    assert (state["epoch"], state["batch"]) == (0, 3)
    rest = [b.tolist() for b in it]
    again = zf.Loader(np.arange(40), batch_size=4, shuffle=True, seed=2)
    again.load_state_dict(state)
    assert [b.tolist() for b in again] == rest
    assert sorted(sum(seen + rest, [])) == list(range(40))


def test_dropping_an_iterator_or_loader_stops_workers_without_the_garbage_collector():
    gc.collect()
    gc.disable()
    try:
        base = workers_alive()
        for _ in range(200):
            loader = zf.Loader(np.zeros((64, 16), np.float32), batch_size=4, workers=2)
            it = iter(loader)
            next(it)
            del it
            assert worker_threads_settle(base) == base
            for _ in loader:
                break
            del loader
        assert worker_threads_settle(base) == base
        loader = zf.Loader(np.zeros((64, 16), np.float32), batch_size=4, workers=2)
        next(iter(loader))
        del loader  # its iterator was never kept: nothing holds the workers
        assert worker_threads_settle(base) == base
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"batch": 99}, "batch=99"),
        ({"batch": 1.7}, "batch=1.7"),
        ({"batch": -1}, "batch=-1"),
        ({"epoch": -2}, "epoch=-2"),
        ({"epoch": True}, "epoch=True"),
        ({"seed": 4}, "seed=4"),
        ({"ops": {"": ["RandomFlip(p=0.5)"]}}, "ops="),
    ],
)
def test_load_state_dict_validates_every_key(change, match):
    make = lambda: zf.Loader(np.zeros((40, 4, 4), np.uint8), batch_size=4, seed=3, ops=[zf.CenterCrop(2, 2)])  # noqa: E731
    state = make().state_dict()
    state.update(change)
    with pytest.raises(zf.PipelineError, match=match) as info:
        make().load_state_dict(state)
    assert info.value.argument == "state"


def test_load_state_dict_names_missing_keys():
    loader = zf.Loader(np.arange(8), batch_size=4)
    state = loader.state_dict()
    del state["batch"], state["length"]
    with pytest.raises(zf.PipelineError, match=r"missing \['batch', 'length'\]"):
        loader.load_state_dict(state)
    with pytest.raises(zf.PipelineError):
        loader.load_state_dict([("epoch", 0)])  # type: ignore[arg-type]


def test_pin_auto_page_locks_only_for_cuda_loaders_and_never_warns_on_the_cpu():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = zf.Loader(np.zeros((64, 1024), np.uint8), batch_size=32)
        list(loader)
    assert loader.pin is False
    assert loader.stats["pinned_bytes"] == 0 and loader.stats["pin_failures"] == 0
    explicit = zf.Loader(np.zeros((64, 1024), np.uint8), batch_size=32, pin=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small memlock limit warns, as before
        list(explicit)
    assert explicit.pin is True
    assert explicit.stats["pinned_bytes"] + explicit.stats["pin_failures"] >= 1
    with pytest.raises(zf.PipelineError) as info:
        zf.Loader(np.zeros(4), batch_size=2, pin="yes")
    assert info.value.argument == "pin"


KERAS_FIT = textwrap.dedent(
    """
    import os, sys, warnings, logging
    import numpy as np
    import keras
    import zerofeed as zf

    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    rng = np.random.default_rng(0)
    x = rng.random((200, 4)).astype(np.float32)
    y = (x.sum(axis=1) > 2).astype(np.float32)
    loader = zf.Loader({"x": x, "y": y}, batch_size=16, shuffle=True, seed=0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    epochs = 3
    history = model.fit(loader.keras(x="x", y="y"), epochs=epochs, verbose=0)  # shuffle=True
    assert len(history.history["loss"]) == epochs and all(np.isfinite(history.history["loss"]))
    assert loader.epoch == epochs, loader.epoch  # Keras' shape peek used up no epoch
    produced = loader.stats["batches"]
    # no restarts: each epoch is one pass (plus at most a look-ahead window of the last one)
    assert produced <= epochs * len(loader) + 8, (produced, len(loader))
    ds = loader.tf_dataset() if os.environ["KERAS_BACKEND"] == "tensorflow" else None
    if ds is not None:
        import tensorflow as tf
        assert int(ds.cardinality()) == len(loader)
        model.fit(ds.map(lambda b: (b["x"], b["y"])), epochs=2, verbose=0)
    print("ok", produced)
    """
)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_fit_with_its_defaults_runs_one_pass_per_epoch(backend, tmp_path):
    require("keras", "keras is not installed")
    require(backend, f"the {backend} backend is not installed")
    script = tmp_path / "fit.py"
    script.write_text(KERAS_FIT)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "0"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "ok" in done.stdout
    assert "ran out of data" not in output, output[-3000:]
    assert time.monotonic() - started < 300

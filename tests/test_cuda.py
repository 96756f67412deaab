"""The CUDA path. CPU-side behaviour (clear errors without a driver, op splitting) runs
everywhere; GPU tests skip with the reason where no driver is found.
The transfer state machines are tested without a GPU in Rust (crates/zerofeed-core/tests/cuda_transfer.rs).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

import zerofeed as zf
import zerofeed.cuda as zc

HAS_CUDA = zc.available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason=f"GPU test skipped: {zc.unavailable_reason()}")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _images(n=12, h=20, w=24):
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# -- everywhere ------------------------------------------------------------------------------


def test_queries_never_raise():
    assert isinstance(zc.available(), bool)
    if HAS_CUDA:
        assert zc.device_count() >= 1 and zc.unavailable_reason() is None
    else:
        assert zc.device_count() == 0
        assert zc.unavailable_reason().startswith("no CUDA driver found")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:-1", "cuda:0:1", "CUDA"])
def test_malformed_devices_are_device_errors(device):
    with pytest.raises(zf.DeviceError) as info:
        zc.parse_device(device)
    assert info.value.argument == "device"
    assert isinstance(info.value, ValueError)


def test_a_device_index_that_does_not_exist():
    with pytest.raises(zf.DeviceError, match="does not exist|no CUDA driver") as info:
        zc.parse_device("cuda:4096")
    assert info.value.argument == "device"


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-driver message")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_loader_without_a_driver_says_so(device):
    with pytest.raises(zf.DeviceError, match="no CUDA driver found") as info:
        zf.Loader(_images(), batch_size=4, device=device)
    assert info.value.argument == "device"


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-driver message")
def test_pinned_and_to_device_without_a_driver():
    with pytest.raises(zf.DeviceError, match="no CUDA driver"):
        zc.pinned_empty((4,), "uint8")
    with pytest.raises(zf.DeviceError, match="no CUDA driver"):
        zc.to_device(np.zeros(4))


def test_normalize_on_device_needs_a_cuda_device():
    with pytest.raises(zf.PipelineError) as info:
        zf.Loader(_images(), batch_size=4, normalize_on_device=True)
    assert info.value.argument == "normalize_on_device"


# -- on a GPU --------------------------------------------------------------------------------


@gpu
def test_device_queries():
    assert zc.device_count() >= 1
    assert zc.device_name(0)
    with pytest.raises(zf.DeviceError, match="does not exist"):
        zc.device_name(zc.device_count())


@gpu
def test_pinned_empty_is_a_writable_numpy_array():
    a = zc.pinned_empty((3, 5), "float32")
    a[:] = 2.5
    assert a.shape == (3, 5) and a.dtype == np.float32 and float(a.sum()) == 37.5


@gpu
@pytest.mark.parametrize("make", ["contiguous", "strided", "pinned", "big"])
def test_to_device_round_trip(make):
    torch = require("torch")
    if make == "big":
        src = np.random.default_rng(1).integers(0, 255, 40 << 20, dtype=np.uint8)  # 5 chunks
    elif make == "pinned":
        src = zc.pinned_empty((64, 33), "float32")
        src[:] = np.arange(64 * 33, dtype=np.float32).reshape(64, 33)
    else:
        src = np.arange(64 * 33 * 2, dtype=np.float32).reshape(64, 33, 2)
        if make == "strided":
            src = src[::2, 3:30, :]
    d = zc.to_device(src, "cuda:0")
    assert d.device == "cuda:0" and d.shape == src.shape
    t = torch.from_dlpack(d)
    assert t.device.type == "cuda" and t.data_ptr() == d.ptr  # no device copy
    np.testing.assert_array_equal(t.cpu().numpy(), np.ascontiguousarray(src))


@gpu
def test_dlpack_stream_rules():
    torch = require("torch")
    d = zc.to_device(np.ones((1024, 1024), np.float32))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        t = torch.from_dlpack(d)  # torch passes s: s waits on the copy's event
        assert float(t.sum()) == 1024 * 1024
    d.__dlpack__(stream=-1)  # no synchronization requested: allowed
    d.__dlpack__(stream=None)  # legacy default stream


def _cpu_reference(images, ops, batch):
    return [b.copy() for b in zf.Loader(images, batch_size=batch, ops=ops)]


@gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("chw", [True, False])
@pytest.mark.parametrize("on_device", [True, False])
def test_loader_batches_equal_the_cpu_path(dtype, chw, on_device):
    require("torch")
    images = _images()
    ops = [zf.CenterCrop(16, 16), zf.Normalize(MEAN, STD, dtype=dtype)] + ([zf.ToCHW()] if chw else [])
    expected = _cpu_reference(images, ops, 5)
    loader = zf.Loader(images, batch_size=5, ops=ops, device="cuda:0", normalize_on_device=on_device)
    got = [t.float().cpu().numpy() for t in loader.torch()]
    assert len(got) == len(expected)
    tol = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
    for g, e in zip(got, expected, strict=True):
        e = np.asarray(e).astype(np.float32)
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)
    stats = loader.stats
    assert stats["pinned_bytes"] > 0 and stats["pin_failures"] == 0


@gpu
def test_loader_dict_source_and_host_buffer_reuse():
    require("torch")
    images, labels = _images(40), np.arange(40)
    loader = zf.Loader(
        {"image": images, "label": labels},
        batch_size=4,
        ops={"image": [zf.RandomFlip(), zf.Normalize(MEAN, STD), zf.ToCHW()]},
        device="cuda:0",
        normalize_on_device=True,
        prefetch=3,
        seed=3,
    )
    for _ in range(2):
        seen = []
        for batch in loader.torch():
            assert batch["image"].is_cuda and batch["image"].shape[1:] == (3, 20, 24)
            seen.extend(batch["label"].cpu().tolist())
        assert seen == list(range(40))
    stats = loader.stats
    assert stats["host_buffers_released"] > 0
    assert stats["pool_reuses"] > 0, "host buffers come back after their copy's event and are reused"
    assert stats["device_reuses"] > 0, "device buffers come back through the DLPack deleter"


@gpu
def test_kept_device_batches_never_change():
    require("torch")
    images = _images(24)
    loader = zf.Loader(images, batch_size=4, ops=[zf.Normalize(MEAN, STD)], device="cuda:0")
    kept = list(loader.torch())
    expected = _cpu_reference(images, [zf.Normalize(MEAN, STD)], 4)
    for t, e in zip(kept, expected, strict=True):
        np.testing.assert_allclose(t.cpu().numpy(), e, rtol=1e-6)


@gpu
def test_cupy_and_jax_adapters():
    images = _images(8)
    loader = zf.Loader(
        images,
        batch_size=4,
        ops=[zf.Normalize(MEAN, STD), zf.ToCHW()],
        device="cuda:0",
        normalize_on_device=True,
    )
    expected = _cpu_reference(images, [zf.Normalize(MEAN, STD), zf.ToCHW()], 4)
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        for c, e in zip(loader.cupy(), expected, strict=True):
            np.testing.assert_allclose(cupy.asnumpy(c), e, rtol=1e-5, atol=1e-5)
    jax = require("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("jax has no GPU backend here")
    for j, e in zip(loader.jax(), expected, strict=True):
        np.testing.assert_allclose(np.asarray(j), e, rtol=1e-5, atol=1e-5)


@gpu
def test_pinned_budget_is_checked_before_allocating():
    with pytest.raises(zf.MemoryBudgetError, match="available RAM"):
        zc.pinned_empty((1 << 62,), "uint8")

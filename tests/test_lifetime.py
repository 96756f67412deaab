"""Nothing is freed while anyone can still see it, and everything is freed after.

A weak reference to the producer shows both halves: it stays alive while any view,
buffer export, DLPack capsule or framework tensor made from it lives (and the data stays
correct), and it dies once the last of them is gone.
"""

from __future__ import annotations

import gc
import weakref
from types import ModuleType

import numpy as np
import pytest
from conftest import addr, require, rss_bytes

import zerofeed as zf


def producer(n: int = 4096, dtype: str = "float32") -> tuple[np.ndarray, weakref.ref]:
    a = np.arange(n, dtype=dtype)
    return a, weakref.ref(a)


def collect() -> None:
    gc.collect()


def test_views_keep_the_producer_alive() -> None:
    a, alive = producer()
    v = zf.view(a)[10:20]
    w = v[::2]
    del a
    collect()
    assert alive() is not None
    assert np.asarray(w).tolist() == [10.0, 12.0, 14.0, 16.0, 18.0]
    del v
    collect()
    assert alive() is not None
    assert np.asarray(w)[-1] == 18.0
    del w
    collect()
    assert alive() is None


def test_buffer_exports_keep_the_producer_alive() -> None:
    a, alive = producer()
    m = memoryview(zf.view(a)[100:])
    arr = np.asarray(zf.view(a)[::-1])
    del a
    collect()
    assert alive() is not None
    assert m[0] == 100.0 and arr[0] == 4095.0
    del m
    collect()
    assert alive() is not None and arr[-1] == 0.0
    del arr
    collect()
    assert alive() is None


def test_numpy_export_outlives_everything() -> None:
    a, alive = producer()
    out = zf.to_numpy(zf.view(a)[5:])
    del a
    collect()
    assert alive() is not None and out[0] == 5.0
    del out
    collect()
    assert alive() is None


@pytest.mark.parametrize("versioned", [False, True])
def test_capsules_outlive_the_view(versioned: bool) -> None:
    # 64-byte aligned data: legacy capsules of anything else are copies (TensorFlow's rule)
    a = zf.aligned(np.arange(4096, dtype="float32"))
    alive = weakref.ref(a)
    v = zf.view(a)[16:19]
    capsule = v.__dlpack__(max_version=(1, 0) if versioned else None)
    del a, v
    collect()
    assert alive() is not None
    assert np.asarray(zf.view(capsule)).tolist() == [16.0, 17.0, 18.0]
    collect()
    assert alive() is None  # the consumed capsule's view was the last holder


@pytest.mark.parametrize("versioned", [False, True])
def test_unconsumed_capsule_is_freed(versioned: bool) -> None:
    a = zf.aligned(np.arange(4096, dtype="float32"))
    alive = weakref.ref(a)
    capsule = zf.view(a).__dlpack__(max_version=(1, 0) if versioned else None)
    del a
    collect()
    assert alive() is not None
    del capsule
    collect()
    assert alive() is None


def test_copies_do_not_keep_the_producer() -> None:
    a, alive = producer()
    c = zf.view(a)[::-2].copy()
    del a
    collect()
    assert alive() is None
    assert np.asarray(c)[0] == 4095.0


def test_torch_tensor_keeps_the_producer_alive() -> None:
    torch = require("torch", reason="torch is not installed")
    a, alive = producer()
    t = zf.to_torch(zf.view(a)[8:16])
    ptr = addr(a) + 32
    del a
    collect()
    assert alive() is not None
    assert t.data_ptr() == ptr and t.tolist() == [float(i) for i in range(8, 16)]
    t2 = t[2:]  # a torch view of the export shares its storage
    del t
    collect()
    assert alive() is not None and t2[0].item() == 10.0
    del t2
    collect()
    assert alive() is None
    del torch


@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
def test_immutable_framework_tensors_keep_the_producer_alive(framework: str) -> None:
    require(framework, reason=f"{framework} is not installed")
    buf = zf.empty(4096, "float32")  # aligned, so that the export is zero-copy
    buf[:] = np.arange(4096, dtype=np.float32)
    alive = weakref.ref(buf)
    convert = zf.to_tensorflow if framework == "tensorflow" else zf.to_jax
    x = convert(buf)
    del buf
    collect()
    assert alive() is not None
    assert float(np.asarray(x)[4095]) == 4095.0
    del x
    collect()
    assert alive() is None


def test_view_in_a_reference_cycle_is_collected() -> None:
    a, alive = producer()

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    node.view = zf.view(a)[3:]  # type: ignore[attr-defined]
    node.exported = np.asarray(node.view)  # type: ignore[attr-defined]
    del a, node
    collect()
    assert alive() is None


class SelfViewing:
    """A producer that keeps a view of itself: producer -> view -> producer."""

    def __init__(self) -> None:
        self.backing = np.arange(64, dtype=np.int32)
        self.__array_interface__ = self.backing.__array_interface__
        self.view = zf.view(self)


@pytest.mark.xfail(
    strict=True,
    reason="a cycle that runs THROUGH a View (producer -> view -> producer) is not collected: "
    "View has no tp_traverse (its keep-alive is shared with DLPack exports, so it cannot "
    "report it to the collector safely)",
)
def test_cycle_through_a_view_is_collected() -> None:
    obj = SelfViewing()
    alive = weakref.ref(obj)
    assert np.asarray(obj.view)[5] == 5
    del obj
    collect()
    assert alive() is None


def test_many_views_and_exports_do_not_leak() -> None:
    torch = require("torch", reason="torch is not installed")

    def churn(count: int) -> weakref.ref:
        last = None
        for i in range(count):
            a = np.full(16384, i % 256, dtype=np.uint8)  # 16 KiB: a leak of each is visible
            v = zf.view(a)[1:, None][::3]
            _ = np.asarray(v)
            _ = memoryview(v)
            _ = zf.to_numpy(v)
            _ = zf.view(v.__dlpack__(max_version=(1, 0)))
            _ = v.__dlpack__()  # never consumed
            _ = zf.to_torch(v)
            _ = zf.explain(v, "tensorflow")
            _ = v.copy()
            last = weakref.ref(a)
        return last  # type: ignore[return-value]

    churn(1000)
    collect()
    before = rss_bytes()
    last = churn(10_000)
    collect()
    grown = rss_bytes() - before
    assert last() is None
    assert grown < 16 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 10k views and exports"
    del torch


def test_many_tensorflow_and_jax_exports_do_not_leak() -> None:
    require("tensorflow", reason="tensorflow is not installed")
    require("jax", reason="jax is not installed")

    def churn(count: int) -> None:
        for i in range(count):
            a = zf.empty(16384, "uint8")
            a[:] = i % 256
            x = zf.to_tensorflow(a)
            y = zf.to_jax(a)
            z = zf.to_tensorflow(zf.view(a)[1:])  # copies (misaligned)
            del x, y, z, a

    churn(300)
    collect()
    before = rss_bytes()
    churn(3000)
    collect()
    grown = rss_bytes() - before
    assert grown < 24 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 3000 TF/JAX exports"


def test_framework_results_do_not_hold_the_producer() -> None:
    torch: ModuleType = require("torch", reason="torch is not installed")
    a, alive = producer()
    s = zf.to_torch(a).sum()
    del a
    collect()
    assert alive() is None and s.item() == sum(range(4096))
    del torch

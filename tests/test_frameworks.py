"""Handing views to NumPy, PyTorch, TensorFlow and JAX, and ``zf.explain``.

For every target: pointer equality where zero-copy is promised, mutations visible on both
sides where the target is writable, value equality after every forced copy, exactly one
counted copy per forced conversion, ``copy=False`` refusing with the reasons and
``copy=True`` always copying. TensorFlow must compute correctly on what zerofeed hands it
at every alignment 0..63 (in a subprocess, so that an abort is a failed test); a second
subprocess shows that the naive path (a misaligned NumPy array straight into TensorFlow)
is what aborts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import addr, describe_exit, require, run_python

import zerofeed as zf

# ---------------------------------------------------------------------------------------
# frameworks (a missing one is a visible skip)


@pytest.fixture(scope="module")
def torch() -> ModuleType:
    return require("torch", reason="torch is not installed: PyTorch tests skipped")


@pytest.fixture(scope="module")
def tf() -> ModuleType:
    return require("tensorflow", reason="tensorflow is not installed: TensorFlow tests skipped")


@pytest.fixture(scope="module")
def jax() -> ModuleType:
    jax = require("jax", reason="jax is not installed: JAX tests skipped")
    assert not jax.config.read("jax_enable_x64"), "these tests assume JAX's default (no x64)"
    return jax


def tf_ptr(tf: ModuleType, t: Any) -> int:
    """The address of a TensorFlow tensor's data: export it back by DLPack and look."""
    return zf.view(tf.experimental.dlpack.to_dlpack(t)).ptr


def to_np(target: str, out: Any) -> np.ndarray:
    if target == "torch":
        return out.numpy()
    return np.asarray(out)


def ptr_of(target: str, out: Any, tf: ModuleType | None = None) -> int:
    if target == "numpy":
        return addr(out)
    if target == "torch":
        return out.data_ptr()
    if target == "jax":
        return out.unsafe_buffer_pointer()
    assert tf is not None
    return tf_ptr(tf, out)


class Delta:
    """``zf.copy_stats()`` growth over a block."""

    def __enter__(self) -> Delta:
        self.before = zf.copy_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        after = zf.copy_stats()
        self.copies = after["copies"] - self.before["copies"]
        self.bytes = after["bytes"] - self.before["bytes"]


TARGETS = ["numpy", "torch", "tensorflow", "jax"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any], ModuleType | None]:
    """``(name, convert, tf-or-None)`` for each target, skipping missing frameworks."""
    name = request.param
    tf = None
    if name == "torch":
        request.getfixturevalue("torch")
    elif name == "tensorflow":
        tf = request.getfixturevalue("tf")
    elif name == "jax":
        request.getfixturevalue("jax")
    convert = {
        "numpy": zf.to_numpy,
        "torch": zf.to_torch,
        "tensorflow": zf.to_tensorflow,
        "jax": zf.to_jax,
    }[name]
    return name, convert, tf


def images(seed: int = 0) -> np.ndarray:
    """A (4, 16, 16, 3) uint8 batch in 64-byte-aligned memory, filled."""
    a = zf.empty((4, 16, 16, 3), "uint8")
    a[...] = np.random.default_rng(seed).integers(0, 256, a.shape, dtype=np.uint8)
    return a


# ---------------------------------------------------------------------------------------
# zero-copy paths


def test_aligned_contiguous_is_zero_copy_everywhere(target: tuple) -> None:
    name, convert, tf = target
    a = images()
    plan = zf.explain(a, name)
    assert plan.zero_copy and plan.reasons == [] and plan.copy_bytes == 0
    assert "zero-copy" in str(plan)
    with Delta() as d:
        out = convert(a)
    assert d.copies == 0 and d.bytes == 0
    assert ptr_of(name, out, tf) == addr(a)
    assert tuple(out.shape) == a.shape
    np.testing.assert_array_equal(to_np(name, out), a)


def test_zero_copy_float32(target: tuple) -> None:
    name, convert, tf = target
    a = zf.empty((5, 7), "float32")
    a[...] = np.arange(35, dtype=np.float32).reshape(5, 7) / 3
    out = convert(a)
    assert ptr_of(name, out, tf) == addr(a)
    np.testing.assert_array_equal(to_np(name, out), a)


def test_numpy_shares_any_strided_view() -> None:
    a = images()
    v = zf.view(a)[1:3, ::-2, 4:12, ::-1]
    with Delta() as d:
        out = zf.to_numpy(v)
    assert d.copies == 0
    assert addr(out) == v.ptr and out.strides == v.strides
    np.testing.assert_array_equal(out, a[1:3, ::-2, 4:12, ::-1])
    out[0, 0, 0, 0] = 255 - out[0, 0, 0, 0]
    assert a[1, 15, 4, 2] == out[0, 0, 0, 0]


def test_torch_shares_crops_and_mutations_are_visible(torch: ModuleType) -> None:
    a = images()
    crop = zf.view(a)[:, 4:12, 4:12, :]
    assert zf.explain(crop, "torch").zero_copy
    with Delta() as d:
        t = zf.to_torch(crop)
    assert d.copies == 0
    assert t.data_ptr() == crop.ptr
    assert tuple(t.stride()) == tuple(s // 1 for s in crop.strides)
    np.testing.assert_array_equal(t.numpy(), a[:, 4:12, 4:12, :])
    t[0, 0, 0, 0] = 7
    assert a[0, 4, 4, 0] == 7
    a[3, 11, 11, 2] = 9
    assert t[3, 7, 7, 2].item() == 9


def test_torch_gets_a_copy_of_read_only_memory_and_shares_it_only_on_request(torch: ModuleType) -> None:
    source = images()
    ro = zf.view(source, readonly=True)
    assert not zf.explain(ro, "torch").zero_copy
    assert "read-only" in zf.explain(ro, "torch").reasons[0]
    t = zf.to_torch(ro)
    assert t.data_ptr() != ro.ptr
    t += 1  # a write to the copy: the read-only source never changes
    np.testing.assert_array_equal(np.asarray(ro), source)
    with pytest.warns(UserWarning, match="read-only"):
        shared = zf.to_torch(ro, copy=False)
    assert shared.data_ptr() == ro.ptr


def test_torch_misaligned_is_zero_copy(torch: ModuleType) -> None:
    raw = zf.empty(1024 + 64, "uint8")
    raw[:] = np.arange(raw.size) % 256
    v = zf.view(raw)[3:1027]
    with Delta() as d:
        t = zf.to_torch(v)
    assert d.copies == 0 and t.data_ptr() == v.ptr
    np.testing.assert_array_equal(t.numpy(), raw[3:1027])


# ---------------------------------------------------------------------------------------
# forced copies: one copy, counted, values equal, reasons given


def check_forced_copy(
    name: str,
    convert: Callable[..., Any],
    tf: ModuleType | None,
    v: zf.View,
    expected: np.ndarray,
    reason: str,
) -> Any:
    plan = zf.explain(v, name)
    assert not plan.zero_copy
    assert any(reason in r for r in plan.reasons), plan.reasons
    assert plan.copy_bytes == v.nbytes
    text = str(plan)
    assert "one copy" in text and f"{v.nbytes:,} bytes" in text and reason in text
    with pytest.raises(zf.ExportError, match="copy=False") as info:
        convert(v, copy=False)
    assert isinstance(info.value, BufferError) and info.value.argument == "copy"
    assert reason in str(info.value)
    with Delta() as d:
        out = convert(v)
    assert d.copies == 1, f"{name}: {d.copies} copies for one forced conversion"
    assert d.bytes == v.nbytes
    assert ptr_of(name, out, tf) != v.ptr
    np.testing.assert_array_equal(to_np(name, out), expected)
    return out


@pytest.mark.parametrize("target_name", ["tensorflow", "jax"])
def test_crops_copy_once_for_tensorflow_and_jax(target_name: str, request: pytest.FixtureRequest) -> None:
    fixture = {"tensorflow": "tf", "jax": "jax"}[target_name]
    module = request.getfixturevalue(fixture)
    convert = zf.to_tensorflow if target_name == "tensorflow" else zf.to_jax
    a = images()
    crop = zf.view(a)[:, 4:12, 4:12, :]
    out = check_forced_copy(
        target_name,
        convert,
        module if target_name == "tensorflow" else None,
        crop,
        a[:, 4:12, 4:12, :],
        "not C-contiguous",
    )
    if target_name == "jax":
        assert out.unsafe_buffer_pointer() % 64 == 0


@pytest.mark.parametrize("offset", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("target_name", ["tensorflow", "jax"])
def test_misaligned_copies_once_for_tensorflow_and_jax(
    target_name: str, offset: int, request: pytest.FixtureRequest
) -> None:
    module = request.getfixturevalue({"tensorflow": "tf", "jax": "jax"}[target_name])
    convert = zf.to_tensorflow if target_name == "tensorflow" else zf.to_jax
    raw = zf.empty(4096 + 64, "uint8")
    raw[:] = np.arange(raw.size) % 251
    v = zf.view(raw)[offset : offset + 4096]
    assert v.alignment == offset
    check_forced_copy(
        target_name,
        convert,
        module if target_name == "tensorflow" else None,
        v,
        raw[offset : offset + 4096],
        f"aligned to {offset} bytes",
    )


def test_negative_strides_copy_once_for_torch(torch: ModuleType) -> None:
    a = images()
    flipped = zf.view(a)[:, :, ::-1]
    t = check_forced_copy("torch", zf.to_torch, None, flipped, a[:, :, ::-1], "negative")
    assert t.is_contiguous()
    before = a.copy()
    t[0, 0, 0, 0] = (1 + int(t[0, 0, 0, 0])) % 256  # a copy: the source does not change
    assert int(t[0, 0, 0, 0]) != int(before[0, 0, 15, 0])
    np.testing.assert_array_equal(a, before)


def test_negative_strides_for_tensorflow_and_jax(tf: ModuleType, jax: ModuleType) -> None:
    a = images()
    flipped = zf.view(a)[::-1]
    check_forced_copy("tensorflow", zf.to_tensorflow, tf, flipped, a[::-1], "not C-contiguous")
    check_forced_copy("jax", zf.to_jax, None, flipped, a[::-1], "not C-contiguous")


def test_float64_for_jax_without_x64(jax: ModuleType) -> None:
    a = zf.empty((6, 5), "float64")
    a[...] = np.arange(30).reshape(6, 5) / 7
    plan = zf.explain(a, "jax")
    assert not plan.zero_copy and any("jax_enable_x64" in r for r in plan.reasons)
    with pytest.raises(zf.ExportError, match="jax_enable_x64"):
        zf.to_jax(a, copy=False)
    with Delta() as d:
        x = zf.to_jax(a)
    assert d.copies == 1 and d.bytes == a.nbytes
    assert x.dtype == np.float32  # JAX without x64 keeps 32 bits
    np.testing.assert_array_equal(np.asarray(x), a.astype(np.float32))
    # float32 needs no copy
    f32 = zf.aligned(a.astype(np.float32))
    assert zf.to_jax(f32).unsafe_buffer_pointer() == addr(f32)


def test_copy_true_always_copies(target: tuple) -> None:
    name, convert, tf = target
    a = images()
    assert zf.explain(a, name).zero_copy
    with Delta() as d:
        out = convert(a, copy=True)
    assert d.copies == 1 and d.bytes == a.nbytes
    assert ptr_of(name, out, tf) != addr(a)
    np.testing.assert_array_equal(to_np(name, out), a)
    if name in ("numpy", "torch"):
        before = int(a[0, 0, 0, 0])
        out[0, 0, 0, 0] = (before + 1) % 256
        assert a[0, 0, 0, 0] == before


def test_copy_false_when_no_copy_is_needed(target: tuple) -> None:
    name, convert, tf = target
    a = images()
    with Delta() as d:
        out = convert(a, copy=False)
    assert d.copies == 0 and ptr_of(name, out, tf) == addr(a)


def test_tensorflow_computes_on_zero_copy_input(tf: ModuleType) -> None:
    a = images()
    t = zf.to_tensorflow(a)
    assert tf_ptr(tf, t) == addr(a)
    got = tf.reduce_sum(tf.cast(t, tf.int64) + 1, axis=(1, 2)).numpy()
    np.testing.assert_array_equal(got, (a.astype(np.int64) + 1).sum(axis=(1, 2)))


def test_jax_computes_on_zero_copy_input(jax: ModuleType) -> None:
    import jax.numpy as jnp

    a = images()
    x = zf.to_jax(a)
    assert x.unsafe_buffer_pointer() == addr(a)
    got = np.asarray(jnp.sum(x.astype(jnp.int32) * 2, axis=(0, 3)))
    np.testing.assert_array_equal(got, (a.astype(np.int32) * 2).sum(axis=(0, 3)))


def test_readonly_sources_reach_tensorflow_and_jax(tf: ModuleType, jax: ModuleType, tmp_path: object) -> None:
    path = f"{tmp_path}/x.npy"
    np.save(path, np.arange(4096, dtype=np.float32).reshape(64, 64))
    v = zf.open_npy(path)
    assert v.readonly
    t = zf.to_tensorflow(v)
    x = zf.to_jax(v)
    if v.alignment >= 64:
        assert tf_ptr(tf, t) == v.ptr
        assert x.unsafe_buffer_pointer() == v.ptr
    np.testing.assert_array_equal(t.numpy(), np.load(path))
    np.testing.assert_array_equal(np.asarray(x), np.load(path))


def test_bfloat16_to_frameworks(torch: ModuleType, tf: ModuleType, jax: ModuleType) -> None:
    ml_dtypes = require("ml_dtypes", reason="bfloat16 needs ml_dtypes")
    a = zf.empty((4, 8), "bfloat16")
    a[...] = (np.arange(32, dtype=np.float32).reshape(4, 8) / 4).astype(ml_dtypes.bfloat16)
    expected = a.astype(np.float32)
    t = zf.to_torch(a)
    assert t.dtype == torch.bfloat16 and t.data_ptr() == addr(a)
    np.testing.assert_array_equal(t.float().numpy(), expected)
    y = zf.to_tensorflow(a)
    assert y.dtype == tf.bfloat16 and tf_ptr(tf, y) == addr(a)
    np.testing.assert_array_equal(tf.cast(y, tf.float32).numpy(), expected)
    x = zf.to_jax(a)
    assert x.unsafe_buffer_pointer() == addr(a)
    np.testing.assert_array_equal(np.asarray(x).astype(np.float32), expected)


# ---------------------------------------------------------------------------------------
# explain


def test_explain_fields_for_every_target() -> None:
    a = images()
    crop = zf.view(a)[:, 2:6, 2:6]
    expectations = {
        "numpy": (True, None),
        "torch": (True, None),
        "tensorflow": (False, "not C-contiguous"),
        "jax": (False, "not C-contiguous"),
        "cupy": (False, "host memory"),
    }
    for target_name, (zero_copy, reason) in expectations.items():
        e = zf.explain(crop, target_name)
        assert isinstance(e, zf.Explanation)
        assert e.target == target_name and e.zero_copy is zero_copy
        assert e.shape == (4, 4, 4, 3) and e.dtype == "uint8" and e.alignment == crop.alignment
        assert e.route in ("buffer", "dlpack", "dlpack-legacy")
        text = str(e)
        assert text.startswith(f"{target_name}: ")
        if zero_copy:
            assert e.reasons == [] and e.copy_bytes == 0 and "zero-copy" in text
        else:
            assert e.copy_bytes == crop.nbytes == 4 * 4 * 4 * 3
            assert any(reason in r for r in e.reasons), e.reasons
            assert "one copy" in text and "because" in text
            assert all(f"- {r}" in text for r in e.reasons)
    assert zf.explain(a, "numpy").route == "buffer"
    assert zf.explain(a, "tensorflow").route == "dlpack-legacy"


def test_explain_cupy_on_host_data_is_not_zero_copy() -> None:
    e = zf.explain(images(), "cupy")
    assert not e.zero_copy and e.copy_bytes == images().nbytes
    on_gpu = [r for r in e.reasons if "CuPy arrays live on the GPU" in r and "copied to the device" in r]
    assert on_gpu, e.reasons


def test_explain_accepts_anything_view_does() -> None:
    assert zf.explain(np.arange(10.0)[::2], "tensorflow").reasons
    assert zf.explain(bytearray(64), "numpy").zero_copy
    with pytest.raises(zf.LayoutError, match="target") as info:
        zf.explain(np.zeros(3), "paddle")
    assert info.value.argument == "target"


def test_explain_is_stable_and_does_not_copy() -> None:
    a = images()
    with Delta() as d:
        for t in ("numpy", "torch", "tensorflow", "jax", "cupy"):
            zf.explain(zf.view(a)[:, ::2], t)
    assert d.copies == 0


# ---------------------------------------------------------------------------------------
# TensorFlow at every alignment, in a subprocess (an abort must fail a test, not the run)

TF_ALIGNMENT_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
import zerofeed as zf

n = 1000
failures = []
for k in range(64):
    print("alignment", k, flush=True)
    raw = zf.empty(n + 64, "uint8")
    u8 = raw[k : k + n]
    u8[:] = (np.arange(n) * 7 + k) % 256
    before = zf.copy_stats()["copies"]
    t = zf.to_tensorflow(u8)
    copies = zf.copy_stats()["copies"] - before
    if copies != (0 if k == 0 else 1):
        failures.append(f"{k}: uint8 made {copies} copies")
    if k == 0 and zf.view(tf.experimental.dlpack.to_dlpack(t)).ptr != u8.ctypes.data:
        failures.append("0: aligned uint8 was not zero-copy")
    f = tf.cast(t, tf.float32)
    got_sum = float(tf.reduce_sum(f + 1.5).numpy())
    want_sum = float((u8.astype(np.float32) + 1.5).sum())
    if got_sum != want_sum:
        failures.append(f"{k}: uint8 sum {got_sum} != {want_sum}")
    # float32 data starting k bytes past a 64-byte boundary (unaligned for k % 4 != 0)
    rawf = zf.empty(4 * n + 64, "uint8")
    f32 = rawf[k : k + 4 * n].view(np.float32)
    f32[:] = np.arange(n, dtype=np.float32) / 8 - k
    tf32 = zf.to_tensorflow(f32)
    got = (tf.cast(tf32, tf.float64) * 2 + tf.cast(tf.add(tf32, 1.0), tf.float64)).numpy()
    want = f32.astype(np.float64) * 2 + (f32 + np.float32(1.0)).astype(np.float64)
    if not np.array_equal(got, want):
        failures.append(f"{k}: float32 elementwise differs")
    if float(tf.reduce_sum(tf32).numpy()) != float(np.sum(f32, dtype=np.float32)):
        if abs(float(tf.reduce_sum(tf32).numpy()) - float(f32.sum(dtype=np.float64))) > 1e-2:
            failures.append(f"{k}: float32 reduce_sum differs")
print("FAILURES", failures, flush=True)
sys.exit(1 if failures else 0)
"""


@pytest.mark.slow
def test_tensorflow_computes_at_every_alignment() -> None:
    require("tensorflow", reason="tensorflow is not installed")
    proc = run_python(TF_ALIGNMENT_SCRIPT)
    if proc.returncode != 0:
        reached = [line for line in proc.stdout.splitlines() if line.startswith("alignment")]
        where = reached[-1] if reached else "before the first alignment"
        pytest.fail(f"TensorFlow failed at {where}: {describe_exit(proc)}")
    assert "FAILURES []" in proc.stdout


NAIVE_SCRIPT = r"""
import numpy as np
import tensorflow as tf

n = 4096
base = np.empty(n + 4096, np.uint8)
start = (-base.ctypes.data) % 64 + 1          # 1 byte past a 64-byte boundary
x = base[start : start + n]
x[:] = np.arange(n) % 251
print("handing TensorFlow an array aligned to", x.ctypes.data % 64, flush=True)
t = tf.experimental.dlpack.from_dlpack(x.__dlpack__())
s = tf.reduce_sum(tf.cast(t, tf.float32))
print("TensorFlow survived:", float(s), flush=True)
"""


@pytest.mark.slow
def test_naive_misaligned_dlpack_aborts_tensorflow() -> None:
    """Documents the trap zerofeed avoids: NOT a zerofeed test, a TensorFlow fact.

    A misaligned NumPy array handed to TensorFlow through DLPack is accepted, and the first
    op aborts the whole process (``Check failed: IsAligned()``).
    """
    require("tensorflow", reason="tensorflow is not installed")
    proc = run_python(NAIVE_SCRIPT)
    if "TensorFlow survived" in proc.stdout and proc.returncode == 0:
        pytest.skip(
            "this TensorFlow did not abort on a misaligned DLPack buffer; the trap that "
            "zerofeed avoids does not exist here"
        )
    assert proc.returncode != 0, describe_exit(proc)
    assert "TensorFlow survived" not in proc.stdout
    assert "IsAligned" in proc.stderr or proc.returncode < 0, describe_exit(proc)


# ---------------------------------------------------------------------------------------
# a framework that is not installed


MISSING_SCRIPT = r"""
import sys
import numpy as np
import zerofeed as zf

a = zf.empty(16, "uint8")
# explain never imports a framework
for target in ("numpy", "torch", "tensorflow", "jax", "cupy"):
    zf.explain(zf.view(a)[::2], target)
imported = [m for m in ("tensorflow", "torch", "jax", "cupy") if m in sys.modules]
assert not imported, f"explain imported {imported}"

sys.modules["tensorflow"] = None   # makes `import tensorflow` raise ImportError
sys.modules["torch"] = None
sys.modules["jax"] = None
for name, fn in (("tensorflow", zf.to_tensorflow), ("torch", zf.to_torch), ("jax", zf.to_jax)):
    try:
        fn(a)
    except zf.FrameworkMissingError as err:
        assert isinstance(err, ImportError), type(err).__mro__
        assert "pip install" in str(err) and name in str(err), str(err)
        assert err.argument == "target"
        print("ok", name, "->", err)
    else:
        raise SystemExit(f"to_{name} did not raise")
print("DONE")
"""


def test_missing_framework_raises_with_install_hint() -> None:
    proc = run_python(MISSING_SCRIPT, timeout=60)
    assert proc.returncode == 0 and "DONE" in proc.stdout, describe_exit(proc)
    assert "pip install tensorflow" in proc.stdout


def test_missing_framework_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tensorflow", None)
    with pytest.raises(zf.FrameworkMissingError, match="pip install tensorflow") as info:
        zf.to_tensorflow(np.zeros(4, np.uint8))
    assert isinstance(info.value, ImportError)


def test_no_warning_for_writable_torch_exports(torch: ModuleType) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zf.to_torch(images())

"""Views against NumPy as the oracle: indexing, chained indexing, transpose, reshape and
every View property, for random shapes (0-5 dims, zero sizes), every dtype and strided
inputs (views of views, negative steps, transposes).

Each comparison checks the values AND that the data address, shape and strides are the
ones NumPy's own view has: zero-copy is a claim to prove.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import DTYPES, addr, filled, require
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import zerofeed as zf

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------
# strategies


@st.composite
def base_arrays(draw: st.DrawFn, max_dims: int = 5) -> np.ndarray:
    """A C-contiguous array: 0-5 dims, each 0-5 long, any supported dtype."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=max_dims)))
    return filled(shape, dtype, seed=draw(st.integers(0, 2**16)))


def slices(size: int) -> st.SearchStrategy[slice]:
    bound = st.one_of(st.none(), st.integers(-size - 3, size + 3))
    step = st.one_of(st.none(), st.sampled_from([-4, -3, -2, -1, 1, 2, 3, 4]))
    return st.builds(slice, bound, bound, step)


@st.composite
def index_exprs(draw: st.DrawFn, shape: tuple[int, ...]) -> object:
    """A basic index expression valid for ``shape``: ints (also negative), slices with any
    step, ``...`` at most once, ``None`` anywhere; a bare item or a tuple."""
    ndim = len(shape)
    use_ellipsis = draw(st.booleans())
    n_consuming = draw(st.integers(0, ndim))
    # Without an ellipsis the consuming items apply to the leading axes.
    consumed_axes = list(range(n_consuming))
    if use_ellipsis:
        split = draw(st.integers(0, n_consuming))
        consumed_axes = list(range(split)) + list(range(ndim - (n_consuming - split), ndim))
    else:
        split = n_consuming
    items: list[object] = []
    for k, axis in enumerate(consumed_axes):
        if use_ellipsis and k == split:
            items.append(Ellipsis)
        size = shape[axis]
        if size > 0 and draw(st.booleans()):
            items.append(draw(st.integers(-size, size - 1)))
        else:
            items.append(draw(slices(size)))
    if use_ellipsis and split == len(consumed_axes):
        items.append(Ellipsis)
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), None)
    if len(items) == 1 and draw(st.booleans()):
        return items[0]
    return tuple(items)


@st.composite
def strided_arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """``(base, a)``: ``a`` is a NumPy view of ``base`` made by slicing (negative steps
    included) and transposing, so its strides are anything NumPy can produce."""
    base = draw(base_arrays())
    a = base
    for _ in range(draw(st.integers(0, 2))):
        if a.ndim and draw(st.booleans()):
            a = a.transpose(draw(st.permutations(range(a.ndim))))
        else:
            a = numpy_view(a, tuple(draw(slices(n)) for n in a.shape))
    return base, a


def numpy_view(a: np.ndarray, idx: object) -> np.ndarray:
    """NumPy's result of ``a[idx]`` as an array view (NumPy returns scalars for full
    integer indexing; adding ``...`` makes it a 0-d view instead)."""
    result = a[idx]
    if isinstance(result, np.ndarray):
        return result
    key = idx if isinstance(idx, tuple) else (idx,)
    result = a[(*key, Ellipsis)]
    assert isinstance(result, np.ndarray)
    return result


def meaningful_strides(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int | None, ...]:
    """Strides with those of length-1 axes blanked out, and all of them for empty arrays.

    Those strides are never used to address an element, and NumPy itself rewrites them when
    it exports a contiguous array through the buffer protocol (``memoryview(a).strides``
    differs from ``a.strides`` there), so a view of NumPy's export cannot keep them.
    """
    if math.prod(shape) == 0:
        return (None,) * len(shape)
    return tuple(s if n > 1 else None for n, s in zip(shape, strides, strict=True))


def assert_same_view(got: np.ndarray, expected: np.ndarray, base: np.ndarray) -> None:
    """Same values, shape, strides, dtype and data address; sharing ``base``'s memory."""
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    if expected.size:
        assert meaningful_strides(got.shape, got.strides) == meaningful_strides(
            expected.shape, expected.strides
        )
        assert addr(got) == addr(expected)
        assert np.shares_memory(got, base)
    assert got.flags.writeable == expected.flags.writeable


# ---------------------------------------------------------------------------------------
# indexing


@SETTINGS
@given(data=st.data())
def test_indexing_matches_numpy(data: st.DataObject) -> None:
    base, a = data.draw(strided_arrays())
    idx = data.draw(index_exprs(a.shape))
    v = zf.view(a)[idx]
    got = np.asarray(v)
    expected = numpy_view(a, idx)
    assert_same_view(got, expected, base)
    assert v.shape == expected.shape
    if expected.size:
        assert v.ptr == addr(expected)
        assert meaningful_strides(v.shape, v.strides) == meaningful_strides(expected.shape, expected.strides)


@SETTINGS
@given(data=st.data())
def test_chained_indexing_matches_numpy(data: st.DataObject) -> None:
    base, a = data.draw(strided_arrays())
    v = zf.view(a)
    expected = a
    for _ in range(data.draw(st.integers(1, 3))):
        idx = data.draw(index_exprs(expected.shape))
        v = v[idx]
        expected = numpy_view(expected, idx)
    assert_same_view(np.asarray(v), expected, base)


@SETTINGS
@given(data=st.data())
def test_transpose_matches_numpy(data: st.DataObject) -> None:
    base, a = data.draw(strided_arrays())
    v = zf.view(a)
    axes = tuple(data.draw(st.permutations(range(a.ndim))))
    assert_same_view(np.asarray(v.transpose(*axes)), a.transpose(axes), base)
    assert_same_view(np.asarray(v.transpose(axes)), a.transpose(axes), base)
    assert_same_view(np.asarray(v.transpose()), a.transpose(), base)
    assert_same_view(np.asarray(v.T), a.T, base)


@st.composite
def reshape_targets(draw: st.DrawFn, size: int) -> tuple[int, ...]:
    """A shape with ``size`` elements (random factorisation, 1s inserted, maybe a -1)."""
    if size == 0:
        dims = [draw(st.integers(0, 4)) for _ in range(draw(st.integers(0, 3)))]
        dims.insert(draw(st.integers(0, len(dims))), 0)
        return tuple(dims)
    factors = []
    n, p = size, 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    k = draw(st.integers(1, 4))
    dims = [1] * k
    for f in factors:
        dims[draw(st.integers(0, k - 1))] *= f
    for _ in range(draw(st.integers(0, 2))):
        dims.insert(draw(st.integers(0, len(dims))), 1)
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


@st.composite
def non_contiguous_arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """``(base, a)`` where ``a`` is a transposed and/or step-sliced view of a 2-4-d base, so
    that reshapes regularly cannot be views."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    base = filled(shape, dtype)
    a = base.transpose(draw(st.permutations(range(base.ndim))))
    if draw(st.booleans()):
        axis = draw(st.integers(0, a.ndim - 1))
        key = [slice(None)] * a.ndim
        key[axis] = slice(None, None, draw(st.sampled_from([-2, -1, 2])))
        a = a[tuple(key)]
    return base, a


def check_reshape(base: np.ndarray, a: np.ndarray, shape: tuple[int, ...]) -> None:
    v = zf.view(a)
    try:
        expected = a.reshape(shape, copy=False)
    except ValueError:
        expected = None
    event("numpy: needs a copy" if expected is None else "numpy: a view")
    if expected is None:
        with pytest.raises(ValueError, match="copy") as info:
            v.reshape(*shape)
        assert isinstance(info.value, zf.LayoutError)
        assert info.value.argument == "shape"
        return
    got = np.asarray(v.reshape(shape))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if expected.size:
        assert addr(got) == addr(expected)
        assert np.shares_memory(got, base)
        assert meaningful_strides(got.shape, got.strides) == meaningful_strides(
            expected.shape, expected.strides
        )
    assert v.reshape(*shape).shape == expected.shape


@SETTINGS
@given(data=st.data())
def test_reshape_is_a_view_exactly_when_numpy_can_make_one(data: st.DataObject) -> None:
    base, a = data.draw(strided_arrays())
    check_reshape(base, a, data.draw(reshape_targets(a.size)))


@SETTINGS
@given(data=st.data())
def test_reshape_of_non_contiguous_views(data: st.DataObject) -> None:
    base, a = data.draw(non_contiguous_arrays())
    check_reshape(base, a, data.draw(reshape_targets(a.size)))


def test_reshape_of_a_strided_view_names_the_reason() -> None:
    a = np.arange(24, dtype=np.int32).reshape(4, 6)[:, :3]
    with pytest.raises(ValueError):
        a.reshape(12, copy=False)
    with pytest.raises(zf.LayoutError, match=r"would need a copy.*strides"):
        zf.view(a).reshape(12)
    with pytest.raises(ValueError, match="cannot reshape"):
        zf.view(a).reshape(5, 3)
    with pytest.raises(ValueError, match="-1"):
        zf.view(a).reshape(-1, -1)


# ---------------------------------------------------------------------------------------
# properties


def expected_alignment(address: int) -> int:
    if address == 0:
        return 4096
    return min(address & -address, 4096)


@SETTINGS
@given(data=st.data())
def test_properties_match_numpy(data: st.DataObject) -> None:
    _, a = data.draw(strided_arrays())
    if data.draw(st.booleans()):
        a = a.view()
        a.flags.writeable = False
    v = zf.view(a)
    assert v.shape == a.shape
    assert meaningful_strides(v.shape, v.strides) == meaningful_strides(a.shape, a.strides)
    assert v.dtype == a.dtype.name
    assert v.ndim == a.ndim
    assert v.size == a.size
    assert v.nbytes == a.nbytes
    assert v.itemsize == a.itemsize
    assert v.ptr == addr(a)
    assert v.readonly == (not a.flags.writeable)
    assert v.device == "cpu"
    assert v.is_c_contiguous == a.flags.c_contiguous
    assert v.is_f_contiguous == a.flags.f_contiguous
    assert v.alignment == expected_alignment(v.ptr)
    assert v.alignment & (v.alignment - 1) == 0
    if a.ndim:
        assert len(v) == len(a)
    else:
        with pytest.raises(TypeError):
            len(v)
    assert "View(" in repr(v) and a.dtype.name in repr(v)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 8, 24, 63, 64, 100, 4095, 4096, 8192])
def test_alignment_at_known_offsets(k: int) -> None:
    raw = zf.empty(16384, "uint8", align=4096)
    v = zf.view(raw)[k:]
    assert v.ptr == addr(raw) + k
    assert v.alignment == expected_alignment(addr(raw) + k)
    assert v.alignment == (4096 if k % 4096 == 0 else k & -k)


def test_empty_and_aligned_produce_aligned_writable_memory() -> None:
    for align in (64, 128, 4096, "page", "huge"):
        a = zf.empty((3, 5), "float32", align=align)
        boundary = {"page": 4096, "huge": 2 << 20}.get(align, align)  # type: ignore[call-overload]
        assert addr(a) % boundary == 0
        assert a.flags.writeable and a.flags.c_contiguous
    src = np.arange(10, dtype=np.float64)[1:]
    out = zf.aligned(src)
    assert addr(out) % 64 == 0 and not np.shares_memory(out, src)
    np.testing.assert_array_equal(out, src)
    again = zf.aligned(out)
    assert again is out
    with pytest.raises(ValueError, match="power of two"):
        zf.empty(4, "uint8", align=48)


def test_bfloat16_views() -> None:
    ml_dtypes = require("ml_dtypes", reason="bfloat16 needs ml_dtypes")
    a = np.arange(60, dtype=np.float32).reshape(3, 4, 5).astype(ml_dtypes.bfloat16)
    v = zf.view(a)
    assert v.dtype == "bfloat16" and v.itemsize == 2 and v.shape == (3, 4, 5)
    sub = v[1:, ::-2, 3]
    expected = a[1:, ::-2, 3]
    got = zf.to_numpy(sub)
    assert got.dtype == ml_dtypes.bfloat16
    assert addr(got) == addr(expected) and got.strides == expected.strides
    np.testing.assert_array_equal(got.astype(np.float32), expected.astype(np.float32))
    e = zf.empty((4, 4), "bfloat16")
    assert e.dtype == ml_dtypes.bfloat16 and addr(e) % 64 == 0


def test_large_integer_slice_bounds_behave_like_python() -> None:
    a = np.arange(10)
    v = zf.view(a)
    for s in (slice(-(2**80), 2**80), slice(2**80, -(2**80), -1), slice(None, None, 2**70)):
        np.testing.assert_array_equal(np.asarray(v[s]), a[s])


def test_index_with_numpy_integers() -> None:
    a = np.arange(24).reshape(4, 6)
    v = zf.view(a)
    got = np.asarray(v[np.int64(2), np.int32(-1) :])
    np.testing.assert_array_equal(got, a[2, -1:])


def test_view_of_a_view_returns_the_same_or_a_readonly_view() -> None:
    v = zf.view(np.zeros(4))
    assert zf.view(v) is v
    ro = zf.view(v, readonly=True)
    assert ro.readonly and ro.ptr == v.ptr and not v.readonly
    assert not np.asarray(ro).flags.writeable
    with pytest.raises(zf.ReadOnlyError):
        zf.view(ro, readonly=False)


def test_large_shape_math() -> None:
    """Size and nbytes are exact for shapes whose products are large (no float math)."""
    a = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (2**20, 2**20, 8), (0, 0, 0))
    v = zf.view(a)
    assert v.size == 2**43 == math.prod(a.shape)
    assert v.nbytes == 2**43

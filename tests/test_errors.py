"""Bad input gets a typed error naming the argument, never a crash.

Covers indexing errors, unsupported objects and dtypes, writable exports of read-only
data, malformed DLPack capsules (built by hand with ctypes, including one that claims to
live on a CUDA device: zerofeed must refuse to read it on the host without touching it)
and the exception hierarchy itself.
"""

from __future__ import annotations

import ctypes
import gc

import numpy as np
import pytest

import zerofeed as zf

# ---------------------------------------------------------------------------------------
# hierarchy


def test_every_error_is_a_zerofeed_error_and_a_builtin() -> None:
    pairs = {
        zf.ViewIndexError: IndexError,
        zf.LayoutError: ValueError,
        zf.DTypeError: TypeError,
        zf.UnsupportedSourceError: TypeError,
        zf.ExportError: BufferError,
        zf.ReadOnlyError: BufferError,
        zf.DeviceError: ValueError,
        zf.NpyFormatError: ValueError,
        zf.MemoryBudgetError: MemoryError,
        zf.PipelineError: ValueError,
        zf.FrameworkMissingError: ImportError,
    }
    for cls, builtin in pairs.items():
        assert issubclass(cls, zf.ZerofeedError) and issubclass(cls, builtin), cls
        err = cls("message", "arg")
        assert err.argument == "arg" and str(err) == "message"


# ---------------------------------------------------------------------------------------
# indexing

V = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


@pytest.mark.parametrize("key", [2, -3, (0, 3), (0, 0, 4), (0, -4), (Ellipsis, 4), (None, 0, 0, -5)])
def test_out_of_range_index(key: object) -> None:
    with pytest.raises(IndexError, match="out of range") as info:
        zf.view(V)[key]
    assert isinstance(info.value, zf.ViewIndexError)
    assert info.value.argument == "key"
    with pytest.raises(IndexError):
        V[key]  # NumPy agrees


@pytest.mark.parametrize("key", [(0, 0, 0, 0), (0, slice(None), 0, 0), (1, 1, 1, Ellipsis, 1)])
def test_too_many_indices(key: object) -> None:
    with pytest.raises(zf.ViewIndexError, match="too many indices") as info:
        zf.view(V)[key]
    assert info.value.argument == "key"


def test_zero_step() -> None:
    with pytest.raises(ValueError, match="step cannot be zero") as info:
        zf.view(V)[:, ::0]
    assert isinstance(info.value, zf.LayoutError) and info.value.argument == "key"


@pytest.mark.parametrize(
    ("key", "match"),
    [
        (True, "boolean"),
        ((0, False), "boolean"),
        (1.5, "float"),
        ([0, 1], "list"),
        (np.array([0, 1]), "ndarray"),
        ("a", "str"),
        ((Ellipsis, Ellipsis), "single ellipsis"),
        (slice(0.5, 2), "integers"),
    ],
)
def test_invalid_index_types(key: object, match: str) -> None:
    with pytest.raises(zf.ZerofeedError, match=match) as info:
        zf.view(V)[key]
    assert info.value.argument == "key"
    assert isinstance(info.value, IndexError)  # as NumPy raises for invalid index items


def test_index_errors_on_zero_d_views() -> None:
    v = zf.view(np.array(5.0))
    with pytest.raises(zf.ViewIndexError):
        v[0]
    assert np.asarray(v[()]) == 5.0
    assert v[None].shape == (1,)


def test_transpose_and_reshape_arguments() -> None:
    v = zf.view(V)
    for axes in [(0, 1), (0, 1, 1), (0, 1, 3)]:
        with pytest.raises(zf.LayoutError, match="permutation") as info:
            v.transpose(*axes)
        assert info.value.argument == "axes"
    with pytest.raises(zf.LayoutError, match="cannot reshape") as err:
        v.reshape(5, 5)
    assert err.value.argument == "shape"
    with pytest.raises(zf.LayoutError, match=">= 0"):
        v.reshape(-2, -12)


# ---------------------------------------------------------------------------------------
# sources and dtypes


@pytest.mark.parametrize("obj", [object(), 5, 3.5, None, {"a": 1}, [1, 2, 3], np.float64])
def test_unsupported_objects(obj: object) -> None:
    with pytest.raises(TypeError, match="cannot view") as info:
        zf.view(obj)
    assert isinstance(info.value, zf.UnsupportedSourceError)
    assert info.value.argument == "obj"


def test_paths_point_to_open_npy(tmp_path: object) -> None:
    from pathlib import Path

    for p in ("data.npy", Path("data.npy")):
        with pytest.raises(zf.UnsupportedSourceError, match="open_npy"):
            zf.view(p)


@pytest.mark.parametrize(
    ("array", "word"),
    [
        (np.arange(3, dtype=">i4"), ">i"),
        (np.arange(3, dtype=">f8"), ">d"),
        (np.zeros(3, dtype=[("a", "<i4"), ("b", "<f4")]), "T{"),
        (np.array([1, "a"], dtype=object), "O"),
        (np.zeros(3, "U3"), "w"),
        (np.zeros(2, np.longdouble), "g"),
    ],
)
def test_unsupported_dtypes(array: np.ndarray, word: str) -> None:
    with pytest.raises(TypeError, match="unsupported dtype") as info:
        zf.view(array)
    assert isinstance(info.value, zf.DTypeError)
    assert word in str(info.value) and "float32" in str(info.value)  # lists what works
    assert info.value.argument == "obj"


def test_datetime_arrays_are_a_typed_error() -> None:
    """NumPy exports datetimes by neither the buffer protocol nor DLPack."""
    with pytest.raises(zf.ZerofeedError) as info:
        zf.view(np.zeros(3, "M8[s]"))
    assert isinstance(info.value, TypeError) and info.value.argument == "obj"
    assert "cannot view ndarray" in str(info.value)
    assert "convert it to a supported dtype" in str(info.value)


@pytest.mark.parametrize("dtype", ["object", ">f4", "U3", "float128", "nonsense", "V8"])
def test_empty_refuses_bad_dtypes(dtype: str) -> None:
    with pytest.raises(zf.DTypeError) as info:
        zf.empty(4, dtype)
    assert info.value.argument == "dtype"


def test_empty_refuses_bad_shapes_and_alignments() -> None:
    with pytest.raises((zf.LayoutError, zf.MemoryBudgetError, OverflowError)):
        zf.empty((2**40, 2**40), "float64")
    for align in (0, 3, 48, "wide", -64):
        with pytest.raises(zf.ZerofeedError) as info:
            zf.empty(8, "uint8", align=align)
        assert info.value.argument == "align"


def test_array_interface_with_null_pointer() -> None:
    class Null:
        __array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(zf.UnsupportedSourceError, match="null"):
        zf.view(Null())


# ---------------------------------------------------------------------------------------
# read-only data


def test_writable_exports_of_readonly_data() -> None:
    ro = zf.view(bytes(64))
    with pytest.raises(zf.ReadOnlyError) as info:
        zf.view(ro, readonly=False)
    assert isinstance(info.value, BufferError) and info.value.argument == "readonly"
    # a consumer may ignore read-only flags (legacy capsules cannot carry one): read-only
    # memory leaves as a copy, so these bytes (CPython's own) are never shared
    for kwargs in ({}, {"max_version": (1, 0)}):
        assert zf.view(ro.__dlpack__(**kwargs)).ptr != ro.ptr
    out = np.asarray(ro)
    assert not out.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        out[0] = 1
    copied = zf.to_numpy(ro, copy=True)
    assert copied.flags.writeable


# ---------------------------------------------------------------------------------------
# hand-made DLPack capsules


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", DELETER),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
VERSIONED_NAME = ctypes.create_string_buffer(b"dltensor_versioned")


class HandMade:
    """A versioned DLPack tensor over ``backing`` (host memory, whatever device it claims),
    whose deleter counts its calls."""

    def __init__(
        self,
        backing: np.ndarray,
        device: tuple[int, int] = (1, 0),
        shape: tuple[int, ...] | None = None,
        strides: tuple[int, ...] | None = None,
        dtype: tuple[int, int, int] = (2, 32, 1),
        version: tuple[int, int] = (1, 1),
        ndim: int | None = None,
        flags: int = 0,
    ) -> None:
        self.backing = backing
        self.deleted = 0
        shape = backing.shape if shape is None else shape
        self.shape = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        self.strides = None if strides is None else (ctypes.c_int64 * len(strides))(*strides)

        def deleter(_: int) -> None:
            self.deleted += 1

        self.deleter = DELETER(deleter)
        self.managed = DLManagedTensorVersioned()
        self.managed.version = DLPackVersion(*version)
        self.managed.deleter = self.deleter
        self.managed.flags = flags
        t = self.managed.dl_tensor
        t.data = backing.ctypes.data
        t.device = DLDevice(*device)
        t.ndim = len(shape) if ndim is None else ndim
        t.dtype = DLDataType(*dtype)
        t.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        if self.strides is not None:
            t.strides = ctypes.cast(self.strides, ctypes.POINTER(ctypes.c_int64))
        self.device = device

    def capsule(self) -> object:
        return _capsule_new(ctypes.addressof(self.managed), VERSIONED_NAME, None)

    # a producer object, for zf.view(producer)
    def __dlpack__(self, **_: object) -> object:
        return self.capsule()

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.device


def test_hand_made_capsule_round_trip_and_deleter() -> None:
    backing = np.arange(12, dtype=np.float32)
    made = HandMade(backing, shape=(3, 4))
    v = zf.view(made.capsule())
    assert v.ptr == backing.ctypes.data and v.shape == (3, 4) and v.strides == (16, 4)
    np.testing.assert_array_equal(np.asarray(v), backing.reshape(3, 4))
    assert made.deleted == 0
    del v
    assert made.deleted == 1  # called once, when the last view died
    strided = HandMade(backing, shape=(3, 2), strides=(4, 2))
    w = zf.view(strided.capsule())
    assert w.strides == (16, 8)
    np.testing.assert_array_equal(np.asarray(w), backing.reshape(3, 4)[:, ::2])
    ro = HandMade(backing, shape=(12,), flags=1)
    assert zf.view(ro.capsule()).readonly


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"version": (2, 0)}, zf.ExportError, "major version 2"),
        ({"version": (0, 9)}, zf.ExportError, "major version 0"),
        ({"ndim": -1}, zf.ExportError, "ndim=-1"),
        ({"shape": (3, -4)}, zf.ExportError, "negative dimension"),
        ({"dtype": (2, 128, 1)}, zf.DTypeError, "unsupported dtype"),
        ({"dtype": (7, 8, 1)}, zf.DTypeError, "unsupported dtype"),
        ({"dtype": (2, 32, 4)}, zf.DTypeError, "unsupported dtype"),
        ({"shape": (2**62, 2**62)}, zf.ZerofeedError, "overflow"),
    ],
)
def test_malformed_capsules_are_refused_and_released(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    made = HandMade(np.zeros(12, np.float32), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        zf.view(made.capsule())
    assert made.deleted == 1  # ownership was taken, so the tensor was released


def test_not_a_capsule_or_consumed_capsule() -> None:
    made = HandMade(np.zeros(4, np.float32))
    capsule = made.capsule()
    zf.view(capsule)
    with pytest.raises(zf.UnsupportedSourceError, match="consumed"):
        zf.view(capsule)
    other = _capsule_new(ctypes.addressof(made.managed), ctypes.create_string_buffer(b"x"), None)
    with pytest.raises(zf.UnsupportedSourceError):
        zf.view(other)


def test_cuda_tensor_refuses_to_become_numpy() -> None:
    """A DLPack tensor that says it lives on CUDA device 0 (its pointer is host memory so a
    wrong read would not crash, but zerofeed must not read it at all)."""
    backing = np.arange(16, dtype=np.float32)
    producer = HandMade(backing, device=(2, 0), shape=(4, 4))
    v = zf.view(producer)  # a producer on a device skips the buffer protocol
    assert v.device == "cuda:0" and v.__dlpack_device__() == (2, 0)
    assert v.ptr == backing.ctypes.data
    crop = v[1:, :2]  # indexing is metadata only: fine on any device
    assert crop.shape == (3, 2) and crop.device == "cuda:0"

    plan = zf.explain(v, "numpy")
    assert not plan.zero_copy and any("cuda:0" in r for r in plan.reasons)
    assert zf.explain(v, "cupy").zero_copy
    assert zf.explain(v, "tensorflow").zero_copy  # alignment only matters on the host

    with pytest.raises(zf.ExportError, match="cuda:0"):
        zf.to_numpy(v, copy=False)
    with pytest.raises(zf.DeviceError, match="host memory") as info:
        zf.to_numpy(v)
    assert isinstance(info.value, ValueError)
    with pytest.raises(zf.DeviceError):
        memoryview(v)
    with pytest.raises(zf.DeviceError):
        v.copy()
    with pytest.raises(zf.ExportError, match="cannot be exported"):
        v.__dlpack__(max_version=(1, 0), dl_device=(1, 0))
    before = zf.copy_stats()
    with pytest.raises(zf.DeviceError):
        v.__dlpack__(max_version=(1, 0), copy=True)
    assert zf.copy_stats() == before
    # exporting it to a device consumer is fine (metadata only)
    again = zf.view(v.__dlpack__(max_version=(1, 0)))
    assert again.device == "cuda:0" and again.ptr == v.ptr
    del v, crop, again, info  # (the traceback in `info` holds frames that hold `v`)
    gc.collect()
    assert producer.deleted == 1


def test_cuda_host_memory_is_readable() -> None:
    """Pinned host memory (kDLCUDAHost) is host memory: NumPy reads it without a copy."""
    backing = np.arange(8, dtype=np.float32)
    v = zf.view(HandMade(backing, device=(3, 0)).capsule())
    assert v.device == "cuda_host"
    out = zf.to_numpy(v)
    assert out.ctypes.data == backing.ctypes.data
    np.testing.assert_array_equal(out, backing)


def test_producer_dlpack_errors_are_typed() -> None:
    class Broken:
        def __dlpack__(self, **_: object) -> object:
            raise BufferError("cannot export this")

        def __dlpack_device__(self) -> tuple[int, int]:
            return (1, 0)

    with pytest.raises(zf.ZerofeedError, match="cannot export this") as info:
        zf.view(Broken())
    assert info.value.argument == "obj"

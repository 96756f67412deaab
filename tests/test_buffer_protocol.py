"""Getting bytes in and out of views without copying them.

In: every kind of source (NumPy arrays and memory maps, memoryview, bytes, bytearray,
mmap, array.array, ``__array_interface__`` objects, ``__dlpack__`` producers, raw DLPack
capsules) and the ``readonly=None/True/False`` rules.

Out: the buffer protocol (with the consumer's request flags honoured, checked both through
real consumers and by calling ``PyObject_GetBuffer`` with each flag combination) and
``__dlpack__`` / ``__dlpack_device__`` (versioned vs legacy capsules, read-only flag,
``copy=``, ``dl_device=``).
"""

from __future__ import annotations

import array
import ctypes
import hashlib
import io
import mmap
import os

import numpy as np
import pytest
from conftest import DTYPES, addr, capsule_is_valid, capsule_name, filled, require

import zerofeed as zf

# ---------------------------------------------------------------------------------------
# PyObject_GetBuffer through ctypes, to send exact request flags.

PyBUF_SIMPLE = 0
PyBUF_WRITABLE = 0x0001
PyBUF_FORMAT = 0x0004
PyBUF_ND = 0x0008
PyBUF_STRIDES = 0x0010 | PyBUF_ND
PyBUF_C_CONTIGUOUS = 0x0020 | PyBUF_STRIDES
PyBUF_F_CONTIGUOUS = 0x0040 | PyBUF_STRIDES
PyBUF_ANY_CONTIGUOUS = 0x0080 | PyBUF_STRIDES
PyBUF_RECORDS_RO = PyBUF_STRIDES | PyBUF_FORMAT
PyBUF_RECORDS = PyBUF_RECORDS_RO | PyBUF_WRITABLE


class PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.py_object),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.POINTER(ctypes.c_ssize_t)),
        ("strides", ctypes.POINTER(ctypes.c_ssize_t)),
        ("suboffsets", ctypes.POINTER(ctypes.c_ssize_t)),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(PyBuffer)]
_release_buffer.restype = None


def get_buffer(obj: object, flags: int) -> dict[str, object]:
    """Request a buffer with ``flags``; return what was filled in (then release it)."""
    buf = PyBuffer()
    _get_buffer(obj, ctypes.byref(buf), flags)  # raises the exporter's exception
    try:
        ndim = buf.ndim
        return {
            "buf": buf.buf or 0,
            "len": buf.len,
            "itemsize": buf.itemsize,
            "readonly": bool(buf.readonly),
            "ndim": ndim,
            "format": buf.format.decode() if buf.format else None,
            "shape": tuple(buf.shape[i] for i in range(ndim)) if buf.shape else None,
            "strides": tuple(buf.strides[i] for i in range(ndim)) if buf.strides else None,
            "suboffsets": bool(buf.suboffsets),
        }
    finally:
        _release_buffer(ctypes.byref(buf))


# ---------------------------------------------------------------------------------------
# sources


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_arrays_of_every_dtype(dtype: str) -> None:
    a = filled((3, 4, 5), dtype)[:, ::-2, 1:]
    v = zf.view(a)
    assert v.dtype == dtype and v.ptr == addr(a) and v.shape == a.shape
    assert not v.readonly
    back = np.asarray(v)
    assert back.dtype == a.dtype and addr(back) == addr(a)
    np.testing.assert_array_equal(back, a)


def test_writes_through_a_view_reach_the_source() -> None:
    a = np.zeros((4, 4), np.int16)
    np.asarray(zf.view(a)[1:3, ::-1])[0, 0] = 7
    assert a[1, 3] == 7
    memoryview(zf.view(a)[2]).cast("B")[0] = 9
    assert a[2, 0] == 9


def test_memmap_modes(tmp_path: object) -> None:
    path = f"{tmp_path}/m.dat"
    np.arange(100, dtype=np.float32).tofile(path)
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=(10, 10))
    v = zf.view(ro)
    # zerofeed's own private copy-on-write map of the same file: the same bytes (page
    # cache, no copy), shareable with writers such as PyTorch
    assert v.readonly and zf.explain(v, "torch").zero_copy
    assert np.asarray(v).tobytes() == ro.tobytes()
    np.testing.assert_array_equal(np.asarray(v[2:4, ::3]), ro[2:4, ::3])
    with pytest.raises(zf.ReadOnlyError, match="read-only") as info:
        zf.view(ro, readonly=False)
    assert isinstance(info.value, BufferError) and info.value.argument == "readonly"
    rw = np.memmap(path, dtype=np.float32, mode="r+", shape=(10, 10))
    w = zf.view(rw)
    assert not w.readonly
    np.asarray(w)[9, 9] = -1.0
    rw.flush()
    del w, rw
    assert np.fromfile(path, dtype=np.float32)[-1] == -1.0


def test_np_load_mmap_is_readonly(tmp_path: object) -> None:
    path = f"{tmp_path}/a.npy"
    np.save(path, np.arange(60, dtype=np.int64).reshape(3, 4, 5))
    m = np.load(path, mmap_mode="r")
    v = zf.view(m)
    assert v.readonly and v.dtype == "int64" and v.shape == m.shape
    assert v.ptr % 64 == addr(m) % 64  # the same file offset, mapped privately by zerofeed
    for sliced in (m[1:, ::-1, 2:], m[:, 3]):
        w = zf.view(sliced)
        np.testing.assert_array_equal(np.asarray(w), sliced)
        assert w.strides == sliced.strides
    out = np.asarray(v[:, 1])
    assert not out.flags.writeable
    np.testing.assert_array_equal(out, m[:, 1])


def test_bytes_is_readonly_bytearray_is_writable() -> None:
    b = bytes(range(16))
    v = zf.view(b)
    assert v.readonly and v.dtype == "uint8" and v.shape == (16,)
    assert np.asarray(v).tolist() == list(range(16))
    with pytest.raises(zf.ReadOnlyError):
        zf.view(b, readonly=False)
    ba = bytearray(16)
    w = zf.view(ba)
    assert not w.readonly
    np.asarray(w[::4])[:] = 5
    assert ba[::4] == b"\x05" * 4 and ba[1] == 0


def test_memoryview_sources() -> None:
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    m = memoryview(a)[::-1]
    v = zf.view(m)
    assert v.shape == (2, 3, 4) and v.strides == (-96, 32, 8) and v.dtype == "float64"
    np.testing.assert_array_equal(np.asarray(v), a[::-1])
    assert zf.view(memoryview(b"abc")).readonly
    assert zf.view(memoryview(a).toreadonly()).readonly


def test_mmap_sources(tmp_path: object) -> None:
    anon = mmap.mmap(-1, 4096)
    v = zf.view(anon)
    assert not v.readonly and v.shape == (4096,)
    np.asarray(v)[10] = 42
    assert anon[10] == 42
    path = f"{tmp_path}/f.bin"
    with open(path, "wb") as f:
        f.write(bytes(range(256)))
    with open(path, "rb") as f:
        ro = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    rv = zf.view(ro)
    assert rv.readonly and np.asarray(rv[250:]).tolist() == list(range(250, 256))
    del v, rv
    anon.close()
    ro.close()


@pytest.mark.parametrize(
    ("code", "dtype"),
    [
        ("b", "int8"),
        ("B", "uint8"),
        ("h", "int16"),
        ("i", "int32"),
        ("q", "int64"),
        ("Q", "uint64"),
        ("f", "float32"),
        ("d", "float64"),
    ],
)
def test_array_array(code: str, dtype: str) -> None:
    arr = array.array(code, range(10))
    v = zf.view(arr)
    assert v.dtype == dtype and v.shape == (10,) and not v.readonly
    assert v.ptr == arr.buffer_info()[0]
    np.asarray(v)[3] = 99
    assert arr[3] == 99


class InterfaceOnly:
    """Exposes memory by ``__array_interface__`` only (no buffer protocol, no DLPack)."""

    def __init__(self, backing: np.ndarray, readonly: bool = False) -> None:
        self.backing = backing
        interface = dict(backing.__array_interface__)
        interface["data"] = (interface["data"][0], readonly)
        self.__array_interface__ = interface


def test_array_interface_only_objects() -> None:
    base = np.arange(30, dtype=np.uint16).reshape(5, 6)
    a = base[::2, ::-1]
    src = InterfaceOnly(a)
    with pytest.raises(TypeError):
        memoryview(src)  # type: ignore[arg-type]
    v = zf.view(src)
    assert v.ptr == addr(a) and v.strides == a.strides and v.dtype == "uint16"
    assert not v.readonly
    np.testing.assert_array_equal(np.asarray(v), a)
    np.asarray(v)[0, 0] = 1000
    assert base[0, 5] == 1000
    assert zf.view(InterfaceOnly(a, readonly=True)).readonly
    assert zf.view(InterfaceOnly(a), readonly=True).readonly
    with pytest.raises(zf.ReadOnlyError):
        zf.view(InterfaceOnly(a, readonly=True), readonly=False)
    c = InterfaceOnly(np.arange(6, dtype=np.float32))  # strides None: C order
    assert zf.view(c).strides == (4,)


def test_raw_dlpack_capsules() -> None:
    a = np.arange(12, dtype=np.int32).reshape(3, 4)[:, 1:]
    legacy = a.__dlpack__()
    assert capsule_name(legacy) == "dltensor"
    v = zf.view(legacy)
    assert capsule_name(legacy) == "used_dltensor"
    assert v.ptr == addr(a) and v.strides == a.strides
    np.testing.assert_array_equal(np.asarray(v), a)
    versioned = a.__dlpack__(max_version=(1, 0))
    assert capsule_name(versioned) == "dltensor_versioned"
    w = zf.view(versioned)
    assert capsule_name(versioned) == "used_dltensor_versioned"
    assert w.ptr == addr(a)
    with pytest.raises(zf.UnsupportedSourceError, match="consumed only once"):
        zf.view(versioned)


def test_numpy_readonly_flag_travels_through_dlpack() -> None:
    a = np.arange(5.0)
    a.flags.writeable = False
    v = zf.view(a.__dlpack__(max_version=(1, 0)))
    assert v.readonly


def test_dlpack_producer_torch() -> None:
    torch = require("torch", reason="torch is not installed")
    t = torch.arange(24, dtype=torch.float32).reshape(4, 6)[:, 1::2]
    v = zf.view(t)
    assert v.ptr == t.data_ptr() and not v.readonly
    assert v.strides == tuple(s * 4 for s in t.stride())
    np.testing.assert_array_equal(np.asarray(v), t.numpy())
    np.asarray(v)[0, 0] = -5
    assert t[0, 0].item() == -5
    legacy = torch.utils.dlpack.to_dlpack(t)
    assert zf.view(legacy).ptr == t.data_ptr()


def test_dlpack_producer_jax() -> None:
    jax = require("jax", reason="jax is not installed")
    # On a CUDA machine JAX's default device is the GPU; this test is about host arrays.
    x = jax.device_put(jax.numpy.arange(12, dtype="float32").reshape(3, 4), jax.devices("cpu")[0])
    v = zf.view(x)
    assert v.ptr == x.unsafe_buffer_pointer()
    assert v.readonly  # JAX arrays are immutable: it says so in the versioned capsule
    np.testing.assert_array_equal(np.asarray(v), np.arange(12, dtype=np.float32).reshape(3, 4))


def test_dlpack_producer_tensorflow() -> None:
    tf = require("tensorflow", reason="tensorflow is not installed")
    y = tf.reshape(tf.range(12, dtype=tf.int32), (3, 4))
    v = zf.view(y)
    expected_ptr = zf.view(tf.experimental.dlpack.to_dlpack(y)).ptr
    assert v.ptr == expected_ptr
    np.testing.assert_array_equal(np.asarray(v), y.numpy())


def test_readonly_argument_semantics() -> None:
    a = np.arange(6)
    assert not zf.view(a).readonly
    assert not zf.view(a, readonly=False).readonly
    ro = zf.view(a, readonly=True)
    assert ro.readonly
    assert not np.asarray(ro).flags.writeable
    assert a.flags.writeable  # the source is untouched
    frozen = a.view()
    frozen.flags.writeable = False
    assert zf.view(frozen).readonly and zf.view(frozen, readonly=True).readonly
    with pytest.raises(zf.ReadOnlyError) as info:
        zf.view(frozen, readonly=False)
    assert info.value.argument == "readonly"
    # readonly=True survives indexing, transposes and reshapes
    assert ro[1:].readonly and ro.reshape(2, 3).T.readonly


# ---------------------------------------------------------------------------------------
# buffer protocol export


def test_memoryview_and_asarray_share_memory() -> None:
    a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    v = zf.view(a)[1:, ::-1, 2:4]
    m = memoryview(v)
    assert m.shape == v.shape and m.strides == v.strides and m.format == "f"
    assert m.itemsize == 4 and m.nbytes == v.nbytes and not m.readonly
    arr = np.asarray(v)
    assert addr(arr) == v.ptr and np.shares_memory(arr, a)
    arr[0, 0, 0] = -1
    assert a[1, 3, 2] == -1
    assert m[0, 0, 0] == -1
    m.release()


@pytest.mark.parametrize("dtype", DTYPES)
def test_buffer_format_round_trips(dtype: str) -> None:
    a = filled((2, 3), dtype)
    back = np.asarray(memoryview(zf.view(a)))
    assert back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)


def test_request_flags_on_a_strided_view() -> None:
    a = np.arange(24, dtype=np.int32).reshape(4, 6)
    strided = zf.view(a)[:, ::2]
    info = get_buffer(strided, PyBUF_RECORDS)
    assert info["buf"] == strided.ptr and info["strides"] == (24, 8)
    assert info["shape"] == (4, 3) and info["format"] == "i" and not info["readonly"]
    for flags in (
        PyBUF_SIMPLE,
        PyBUF_ND,
        PyBUF_C_CONTIGUOUS,
        PyBUF_F_CONTIGUOUS,
        PyBUF_ANY_CONTIGUOUS,
    ):
        with pytest.raises(BufferError, match="contiguous") as err:
            get_buffer(strided, flags)
        assert isinstance(err.value, zf.ExportError)
    # Real consumers that ask for a contiguous buffer get a clean BufferError too.
    flat_strided = zf.view(np.arange(8, dtype=np.uint8))[::2]  # hashlib takes 1-d only
    with pytest.raises(zf.ExportError, match="contiguous"):
        hashlib.md5(flat_strided)  # type: ignore[arg-type]
    with pytest.raises((BufferError, TypeError)):
        (ctypes.c_char * 48).from_buffer(strided)
    # ... while strided consumers copy correctly
    assert bytes(strided) == a[:, ::2].tobytes()


def test_request_flags_on_contiguous_views() -> None:
    a = np.arange(24, dtype=np.int32).reshape(4, 6)
    c = zf.view(a)
    simple = get_buffer(c, PyBUF_SIMPLE)
    assert simple["buf"] == addr(a) and simple["len"] == 96
    assert simple["format"] is None and simple["shape"] is None and simple["strides"] is None
    nd = get_buffer(c, PyBUF_ND)
    assert nd["shape"] == (4, 6) and nd["strides"] is None
    assert get_buffer(c, PyBUF_C_CONTIGUOUS)["strides"] == (24, 4)
    with pytest.raises(BufferError):
        get_buffer(c, PyBUF_F_CONTIGUOUS)
    assert get_buffer(c, PyBUF_ANY_CONTIGUOUS)["buf"] == addr(a)
    f = zf.view(a).T
    assert get_buffer(f, PyBUF_F_CONTIGUOUS)["strides"] == (4, 24)
    assert get_buffer(f, PyBUF_ANY_CONTIGUOUS)["shape"] == (6, 4)
    with pytest.raises(BufferError):
        get_buffer(f, PyBUF_C_CONTIGUOUS)
    with pytest.raises(BufferError):
        get_buffer(f, PyBUF_SIMPLE)
    flat = zf.view(a.reshape(-1))
    assert hashlib.md5(flat).hexdigest() == hashlib.md5(a.tobytes()).hexdigest()  # type: ignore[arg-type]


def test_writable_requests_on_readonly_views() -> None:
    a = np.arange(24, dtype=np.uint8)
    ro = zf.view(a, readonly=True)
    info = get_buffer(ro, PyBUF_RECORDS_RO)
    assert info["readonly"] and info["buf"] == addr(a)
    for flags in (PyBUF_WRITABLE, PyBUF_RECORDS, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE):
        with pytest.raises(BufferError, match="read-only") as err:
            get_buffer(ro, flags)
        assert isinstance(err.value, zf.ReadOnlyError)
    with pytest.raises(TypeError):  # readinto wraps the BufferError in a TypeError
        io.BytesIO(b"x" * 24).readinto(ro)  # type: ignore[arg-type]
    assert (a == np.arange(24)).all()
    assert memoryview(ro).readonly
    out = np.frombuffer(ro, dtype=np.uint8)  # type: ignore[call-overload]
    assert not out.flags.writeable and addr(out) == addr(a)
    with pytest.raises(ValueError, match="read-only"):
        out[0] = 1
    # writable views accept writable requests
    w = zf.view(a)
    assert not get_buffer(w, PyBUF_RECORDS)["readonly"]
    assert io.BytesIO(b"\x07" * 24).readinto(w) == 24  # type: ignore[arg-type]
    assert (a == 7).all()


def test_exported_buffer_keeps_view_alive() -> None:
    a = np.arange(10.0)
    m = memoryview(zf.view(a)[2:])
    del a
    assert m.tolist() == [float(i) for i in range(2, 10)]


# ---------------------------------------------------------------------------------------
# DLPack export


def test_dlpack_versioned_or_legacy_by_max_version() -> None:
    v = zf.view(zf.aligned(np.arange(6, dtype=np.float32)))  # aligned: legacy capsules share it
    assert v.__dlpack_device__() == (1, 0)
    for kwargs, name in (
        ({}, "dltensor"),
        ({"max_version": None}, "dltensor"),
        ({"max_version": (0, 8)}, "dltensor"),
        ({"max_version": (1, 0)}, "dltensor_versioned"),
        ({"max_version": (1, 1)}, "dltensor_versioned"),
        ({"max_version": (2, 0)}, "dltensor_versioned"),
    ):
        capsule = v.__dlpack__(**kwargs)
        assert capsule_name(capsule) == name, kwargs
        assert capsule_is_valid(capsule, name)
        assert zf.view(capsule).ptr == v.ptr
    assert capsule_name(v.__dlpack__(stream=None, max_version=(1, 0), dl_device=(1, 0))) == (
        "dltensor_versioned"
    )


def test_numpy_from_dlpack_shares_memory_and_respects_readonly() -> None:
    a = np.arange(24, dtype=np.int64).reshape(4, 6)
    v = zf.view(a)[1:, ::2]
    got = np.from_dlpack(v)
    assert addr(got) == v.ptr and got.strides == v.strides and got.flags.writeable
    np.testing.assert_array_equal(got, a[1:, ::2])
    # read-only memory that a write would corrupt leaves as a copy (a consumer may ignore
    # the read-only flag); a private copy-on-write map (open_npy) is shared, flagged read-only
    ro = np.from_dlpack(zf.view(a, readonly=True))
    assert addr(ro) != addr(a) and ro.flags.writeable
    np.testing.assert_array_equal(ro, a)


def test_dlpack_copy_argument() -> None:
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    v = zf.view(a)[:, 1:4]
    before = zf.copy_stats()
    copied = zf.view(v.__dlpack__(max_version=(1, 0), copy=True))
    assert copied.ptr != v.ptr and copied.is_c_contiguous and not copied.readonly
    np.testing.assert_array_equal(np.asarray(copied), a[:, 1:4])
    assert zf.copy_stats()["copies"] == before["copies"] + 1
    viaconsumer = np.from_dlpack(v, copy=True)
    assert not np.shares_memory(viaconsumer, a)
    np.testing.assert_array_equal(viaconsumer, a[:, 1:4])
    same = zf.view(v.__dlpack__(max_version=(1, 0), copy=False))
    assert same.ptr == v.ptr
    # strides that are not whole items cannot travel by DLPack: copy=False refuses
    raw = np.zeros(64, np.uint8)
    odd = np.ndarray((4,), np.int32, buffer=raw, offset=0, strides=(6,))
    ov = zf.view(odd)
    with pytest.raises(zf.ExportError, match="not whole items") as info:
        ov.__dlpack__(max_version=(1, 0), copy=False)
    assert isinstance(info.value, BufferError) and info.value.argument == "copy"
    raw[6:10] = [1, 0, 0, 0]
    packed = zf.view(ov.__dlpack__(max_version=(1, 0)))
    assert packed.ptr != ov.ptr and np.asarray(packed).tolist() == [0, 1, 0, 0]
    np.testing.assert_array_equal(np.asarray(packed), odd)


def test_read_only_memory_leaves_as_a_copy_unless_copy_false_shares_it_with_a_warning() -> None:
    base = zf.aligned(np.arange(4.0))
    ro = zf.view(base, readonly=True)
    assert ro.alignment >= 64
    for kwargs in ({}, {"max_version": (1, 0)}):
        copied = zf.view(ro.__dlpack__(**kwargs))
        assert copied.ptr != ro.ptr and not copied.readonly
        np.testing.assert_array_equal(np.asarray(copied), base)
    with pytest.warns(UserWarning, match="copy=False shares read-only memory"):
        shared = ro.__dlpack__(copy=False)
    assert capsule_name(shared) == "dltensor" and zf.view(shared).ptr == ro.ptr


def test_legacy_capsules_of_misaligned_or_strided_data_are_aligned_copies() -> None:
    """A legacy-capsule consumer may be TensorFlow, which aborts on such data: copy instead."""
    raw = zf.aligned(np.arange(40, dtype=np.float32))
    for v in (zf.view(raw)[1:9], zf.view(raw)[::2]):
        assert v.alignment < 64 or not v.is_c_contiguous
        legacy = zf.view(v.__dlpack__())
        assert legacy.ptr != v.ptr and legacy.alignment >= 64 and legacy.is_c_contiguous
        np.testing.assert_array_equal(np.asarray(legacy), np.asarray(v))
        with pytest.raises(zf.ExportError, match="legacy capsule") as info:
            v.__dlpack__(copy=False)
        assert info.value.argument == "copy"
        # versioned consumers (PyTorch, NumPy) take it as it is
        assert zf.view(v.__dlpack__(max_version=(1, 0))).ptr == v.ptr


def test_dl_device_argument() -> None:
    v = zf.view(np.arange(4.0))
    assert capsule_name(v.__dlpack__(max_version=(1, 0), dl_device=(1, 0))) == ("dltensor_versioned")
    with pytest.raises(zf.ExportError, match="cuda") as info:
        v.__dlpack__(max_version=(1, 0), dl_device=(2, 0))
    assert info.value.argument == "dl_device"


def test_unconsumed_exports_and_readonly_flag_read_back(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.arange(8, dtype=np.uint8))
    ro = zf.open_npy(tmp_path / "a.npy")  # private copy-on-write: shared, flagged read-only
    back = zf.view(ro.__dlpack__(max_version=(1, 0)))
    assert back.readonly and back.ptr == ro.ptr
    for _ in range(100):
        ro.__dlpack__(max_version=(1, 0))  # dropped unconsumed: the destructor frees it


def test_copy_on_write_memmaps_keep_numpys_own_pages(tmp_path: object) -> None:
    """A mode="c" memmap holds private writes the file does not have: never redirected."""
    path = f"{tmp_path}/c.npy"
    np.save(path, np.arange(1000, dtype=np.float32))
    m = np.load(path, mmap_mode="c")
    m[500] = -1
    m.flags.writeable = False
    v = zf.view(m)
    assert v.ptr == addr(m) and float(np.asarray(v)[500]) == -1.0


def test_a_replaced_file_is_not_mistaken_for_the_one_numpy_mapped(tmp_path: object) -> None:
    path = f"{tmp_path}/r.npy"
    np.save(path, np.arange(1000, dtype=np.float32))
    m = np.load(path, mmap_mode="r")
    other = np.arange(1000, dtype=np.float32)
    other[500] = -7  # same edges, another middle: only the inode tells them apart
    np.save(f"{tmp_path}/new.npy", other)
    os.replace(f"{tmp_path}/new.npy", path)
    v = zf.view(m)
    assert v.ptr == addr(m) and float(np.asarray(v)[500]) == 500.0

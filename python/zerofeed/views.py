"""``zerofeed.view``: a zero-copy N-d view of anything that exposes its memory."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _zerofeed
from ._dtypes import dtype_name
from .errors import UnsupportedSourceError

View = _zerofeed.View

# DLPack device types the CPU reads without a copy (the core's list).
_HOST_DEVICES = frozenset(_zerofeed._HOST_DEVICE_TYPES)


def _dlpack_capsule(obj: Any) -> Any:
    """Ask a producer for a capsule, versioned first (DLPack 1.x), legacy if it is older.

    A producer that refuses (e.g. NumPy for datetime64, which it exports by neither the
    buffer protocol nor DLPack) is an unsupported source, named as such.
    """
    try:
        try:
            return obj.__dlpack__(max_version=(1, 1))
        except TypeError:
            return obj.__dlpack__()
    except (BufferError, TypeError, ValueError, RuntimeError) as err:
        raise UnsupportedSourceError(
            f"cannot view {type(obj).__name__}: its __dlpack__() refused to export ({err}) "
            "and it exposes no usable buffer; convert it to a supported dtype first",
            "obj",
        ) from err


def _dlpack_device_type(obj: Any) -> int | None:
    """The DLPack device type ``obj.__dlpack_device__()`` reports, checked (None: no method)."""
    method = getattr(obj, "__dlpack_device__", None)
    if method is None or isinstance(obj, type):
        return None
    name = type(obj).__name__
    try:
        device = method()
    except (TypeError, ValueError, AttributeError, RuntimeError, BufferError) as err:
        raise UnsupportedSourceError(f"{name}.__dlpack_device__() failed: {err}", "obj") from err
    if not (isinstance(device, tuple) and len(device) == 2 and all(isinstance(d, int) for d in device)):
        raise UnsupportedSourceError(
            f"{name}.__dlpack_device__() must return (device_type, device_id), got {device!r}", "obj"
        )
    return int(device[0])


def view(obj: Any, *, readonly: bool | None = None) -> View:
    """Return a zero-copy, N-d strided :class:`View` of ``obj``'s memory.

    ``obj`` may export the buffer protocol (NumPy arrays, memory-mapped arrays, memoryview,
    bytes, bytearray, mmap, array.array), ``__dlpack__`` (NumPy, PyTorch, JAX, CuPy,
    TensorFlow) or ``__array_interface__``, or be a DLPack capsule. The view keeps ``obj``
    alive. ``readonly=None`` follows the source; ``True`` forbids writes through the view;
    ``False`` demands a writable source.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> images = np.zeros((4, 512, 512, 3), np.uint8)
        >>> crop = zf.view(images)[:, 128:384, 128:384, :]
        >>> crop.shape, np.shares_memory(np.asarray(crop), images)
        ((4, 256, 256, 3), True)

    """
    if isinstance(obj, View):
        if readonly is None or readonly == obj.readonly:
            return obj
        return obj._with_readonly(readonly)
    if isinstance(obj, (str, os.PathLike)):
        raise UnsupportedSourceError(
            f"{obj!r} is a path; open .npy files with zerofeed.open_npy(path)", "obj"
        )
    if isinstance(obj, np.memmap) and getattr(obj, "mode", None) == "r" and readonly is not False:
        private = _private_map_of(obj)
        if private is not None:
            return private
    if isinstance(obj, np.ndarray) and obj.dtype.name == "bfloat16":
        # The buffer protocol has no bfloat16 format: view the 16-bit words and say what they are.
        return _zerofeed._view_from_buffer(obj.view(np.uint16), readonly=readonly, dtype="bfloat16")
    on_device = _dlpack_device_type(obj) not in (None, *_HOST_DEVICES)
    if not on_device and not isinstance(obj, type):
        try:
            return _zerofeed._view_from_buffer(obj, readonly=readonly)
        except UnsupportedSourceError:
            pass
    if hasattr(obj, "__dlpack__"):
        return _zerofeed._view_from_capsule(_dlpack_capsule(obj), obj, readonly=readonly)
    interface = getattr(obj, "__array_interface__", None)
    if isinstance(interface, dict):
        return _from_array_interface(obj, interface, readonly)
    if type(obj).__name__ == "PyCapsule":
        return _zerofeed._view_from_capsule(obj, None, readonly=readonly)
    raise UnsupportedSourceError(
        f"cannot view {type(obj).__name__}: it exposes neither the buffer protocol, "
        "__dlpack__ nor __array_interface__; convert it with np.asarray first",
        "obj",
    )


def _private_map_of(m: np.memmap[Any, Any]) -> View | None:
    """The same bytes of a read-only (``mode="r"``) ``np.memmap``, through zerofeed's own
    private copy-on-write map of its file (so frameworks whose tensors can be written, PyTorch,
    share it safely), or None when that cannot be proven to be the same data. Other modes are
    not redirected: ``"c"`` maps hold private writes the file does not have.
    """
    import mmap as _mmap

    raw = getattr(m, "_mmap", None)
    filename = getattr(m, "filename", None)
    if raw is None or not filename or m.dtype.name == "bfloat16" or m.size == 0:
        return None
    try:
        start = np.frombuffer(raw, dtype=np.uint8).ctypes.data
        mapped_from = int(m.offset) - int(m.offset) % _mmap.ALLOCATIONGRANULARITY
        first = m.ctypes.data - start + mapped_from
        private = _zerofeed._view_of_file(
            os.fspath(filename), first, list(m.shape), list(m.strides), dtype_name(m.dtype)
        )
    except (OSError, ValueError, TypeError, BufferError):
        return None
    # The file may have been replaced since NumPy mapped it: only the same bytes will do.
    return private if _same_file_mapping(start, filename, mapped_from) else None


def _same_file_mapping(address: int, filename: Any, offset: int) -> bool:
    """Whether NumPy's mapping at ``address`` is of ``filename`` (same device and inode) from
    file offset ``offset``: the path may name another file by now (replaced since NumPy
    mapped it). Without /proc/self/maps nothing can be proven, and the answer is no.
    """
    try:
        info = os.stat(filename)
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                low, _, high = fields[0].partition("-")
                if int(low, 16) <= address < int(high, 16):
                    major, _, minor = fields[3].partition(":")
                    return (
                        int(fields[4]) == info.st_ino
                        and os.makedev(int(major, 16), int(minor, 16)) == info.st_dev
                        and int(fields[2], 16) == offset
                    )
    except (OSError, ValueError, IndexError):
        return False
    return False


def _from_array_interface(obj: Any, interface: dict[str, Any], readonly: bool | None) -> View:
    """Return a view of the memory that ``obj`` describes by ``__array_interface__``."""
    address, source_readonly = interface["data"]
    strides = interface.get("strides")
    result = _zerofeed._view_from_address(
        int(address),
        [int(n) for n in interface["shape"]],
        None if strides is None else [int(s) for s in strides],
        dtype_name(np.dtype(interface["typestr"])),
        bool(source_readonly),
        obj,
    )
    return result if readonly is None else view(result, readonly=readonly)

"""NumPy arrays backed by aligned Rust memory, which TensorFlow and JAX take without a copy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _zerofeed
from ._dtypes import bfloat16, dtype_name


def empty(shape: int | Sequence[int], dtype: Any = "float32", *, align: int | str = 64) -> np.ndarray:
    """Return a writable, C-contiguous NumPy array of aligned memory (zero, as allocated).

    ``align`` is a power of two, ``"page"`` or ``"huge"`` (2 MiB, backed by transparent huge
    pages where the kernel allows). The memory is owned by Rust and freed when the last
    reference (the array, its views, any DLPack export) dies. Arrays of 1 MiB and more are
    anonymous memory maps: zero pages from the kernel, which cost RAM only once written. Like
    ``np.empty``, do not rely on the contents; unlike it, they are never stale bytes.

    Example:
        >>> import zerofeed as zf
        >>> a = zf.empty((1024, 3), "float32", align=4096)
        >>> a.ctypes.data % 4096, a.flags.writeable
        (0, True)

    """
    name = dtype_name(dtype)
    array = np.asarray(_zerofeed._empty(shape, name, align=align))  # the core checks the shape
    return array.view(bfloat16()) if name == "bfloat16" else array


def aligned(array: Any, *, align: int | str = 64) -> np.ndarray:
    """``array`` itself if it is C-contiguous and aligned to ``align``, else one aligned copy.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> a = zf.aligned(np.arange(10, dtype=np.float64)[1:])
        >>> a.ctypes.data % 64, a[0]
        (0, np.float64(1.0))

    """
    source = np.asarray(array)
    named = {"page": 4096, "huge": 2 << 20}
    boundary = named.get(align, align) if isinstance(align, str) else align
    aligned_now = isinstance(boundary, int) and source.ctypes.data % boundary == 0
    if source.flags.c_contiguous and aligned_now:
        return source
    out = empty(source.shape, source.dtype, align=align)
    np.copyto(out, source)
    return out


def copy_stats() -> dict[str, int]:
    """Count the copies zerofeed made in this process (for conversions that needed one).

    Example:
        >>> import zerofeed as zf
        >>> sorted(zf.copy_stats())
        ['bytes', 'copies']

    """
    copies, nbytes = _zerofeed._copy_stats()
    return {"copies": copies, "bytes": nbytes}

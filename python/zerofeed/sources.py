"""``zerofeed.open_npy``: memory-mapped ``.npy`` files as read-only views."""

from __future__ import annotations

import os

from . import _zerofeed
from .views import View


def open_npy(path: str | os.PathLike[str]) -> View:
    """Memory-map a ``.npy`` file read-only and return a :class:`View` of its array.

    The header is validated completely (magic, version 1.0/2.0/3.0, dict syntax, dtype and
    byte order, Fortran order, shape without overflow, data length equal to the file size);
    any violation is a :class:`zerofeed.NpyFormatError` naming the file and the field. Only
    the header is read: pages of data are loaded when something touches them, so files
    larger than RAM work. NumPy writes 64-byte-aligned headers, so the view is normally
    aligned for TensorFlow and JAX.

    Example:
        >>> import numpy as np, tempfile, os, zerofeed as zf
        >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
        >>> np.save(path, np.arange(6, dtype=np.int16).reshape(2, 3))
        >>> v = zf.open_npy(path)
        >>> v.shape, v.dtype, v.readonly, np.asarray(v)[1].tolist()
        ((2, 3), 'int16', True, [3, 4, 5])

    """
    return _zerofeed._open_npy(os.fspath(path))

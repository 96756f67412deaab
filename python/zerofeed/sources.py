"""``zerofeed.open_npy``: memory-mapped ``.npy`` files as read-only views."""

from __future__ import annotations

import os

from . import _zerofeed
from .errors import UnsupportedSourceError
from .views import View


def open_npy(path: str | bytes | os.PathLike[str]) -> View:
    """Memory-map a ``.npy`` file and return a read-only :class:`View` of its array.

    The map is private copy-on-write: the view is read-only for NumPy, and frameworks whose
    tensors are always writable (PyTorch) share it without a copy, because a write lands in
    this process's own copy of the page and never in the file. If the file changes after it
    was opened (truncated or rewritten, e.g. by ``np.save`` to the same path), nothing
    crashes: zerofeed's own reads raise :class:`zerofeed.SourceChangedError` naming the
    file, and other code reading through a zero-copy view sees zeros where bytes vanished.

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
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(bytes(path))  # NumPy accepts bytes paths too
    if not isinstance(path, (str, os.PathLike)):
        raise UnsupportedSourceError(f"path={path!r} must be a str, bytes or os.PathLike", "path")
    return _zerofeed._open_npy(os.fspath(path))

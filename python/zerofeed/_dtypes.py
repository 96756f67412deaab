"""NumPy dtype <-> zerofeed dtype names, with bfloat16 through ml_dtypes."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from .errors import DTypeError


@cache
def bfloat16() -> np.dtype[Any]:
    """Return the NumPy dtype for bfloat16 (from ml_dtypes, which NumPy needs for it).

    Example:
        >>> bfloat16().itemsize
        2

    """
    try:
        import ml_dtypes
    except ImportError as err:  # pragma: no cover - ml_dtypes is a dependency
        raise DTypeError("bfloat16 needs the ml_dtypes package: pip install ml_dtypes", "dtype") from err
    dtype: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
    return dtype


def dtype_name(dtype: Any) -> str:
    """Return the zerofeed name of ``dtype`` (anything ``np.dtype`` takes, or ``"bfloat16"``).

    Example:
        >>> dtype_name(np.float32), dtype_name("u1"), dtype_name("bfloat16")
        ('float32', 'uint8', 'bfloat16')

    """
    if isinstance(dtype, str) and dtype == "bfloat16":
        return dtype
    try:
        resolved: np.dtype[Any] = np.dtype(dtype)
    except TypeError as err:
        raise DTypeError(f"dtype={dtype!r} is not a dtype: use e.g. 'float32'", "dtype") from err
    if resolved.byteorder == ">":
        raise DTypeError(
            f"dtype {resolved} is big-endian; byte-swap first with arr.astype(arr.dtype.newbyteorder('<'))",
            "dtype",
        )
    return resolved.name


def numpy_dtype(name: str) -> np.dtype[Any]:
    """Return the NumPy dtype for a zerofeed dtype name.

    Example:
        >>> numpy_dtype("float16")
        dtype('float16')

    """
    return bfloat16() if name == "bfloat16" else np.dtype(name)

"""Handing views to NumPy, PyTorch, TensorFlow and JAX.

Zero-copy where the target can take the layout, otherwise exactly one copy into fresh
64-byte-aligned memory.

TensorFlow imports DLPack buffers without checking their alignment and aborts the process
at the first op if they are not 64-byte aligned; JAX silently copies them. zerofeed checks
first (see :func:`zerofeed.explain`), so neither ever receives such a buffer.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any

import numpy as np

from . import _zerofeed
from ._dtypes import bfloat16
from .errors import FrameworkMissingError
from .explain import jax_x64_enabled
from .views import View, view

_INSTALL_HINTS = {
    "tensorflow": "pip install tensorflow-cpu  (or tensorflow for GPUs)",
    "torch": "pip install torch",
    "jax": 'pip install "jax[cpu]"  (or "jax[cuda12]" for GPUs)',
    "cupy": "pip install cupy-cuda12x",
}


def require(module: str) -> ModuleType:
    """Import a framework lazily, or raise an ImportError that says how to install it.

    Example:
        >>> require("numpy").__name__
        'numpy'

    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        hint = _INSTALL_HINTS.get(module, f"pip install {module}")
        raise FrameworkMissingError(f"{module} is not installed: {hint}", "target") from err


def _prepared(obj: Any, target: str, copy: bool | None) -> View:
    """Return the view to export to ``target``: the input itself, or its one aligned copy."""
    v = view(obj)
    decision = v._conversion(target, copy=copy, jax_x64=jax_x64_enabled())
    if decision == "copy":
        v = v.copy(align=64)
    elif decision == "share-read-only":
        warnings.warn(
            f"zerofeed: copy=False shares read-only memory with {target}, whose tensors can be "
            "written; a write is undefined (a crash for a read-only memory map)",
            UserWarning,
            stacklevel=3,
        )
    return v


class _ImmutableExport:
    """Hands a consumer a capsule of the view exactly as :func:`_prepared` decided.

    ``_prepared`` already chose to share (a private copy-on-write map, or ``copy=False``
    with its warning) or to copy; the consumer's own ``__dlpack__`` call must not decide
    again, so this exports the view itself in a legacy capsule (which every consumer takes).
    """

    def __init__(self, v: View) -> None:
        self._view = v

    def __dlpack__(self, **_: Any) -> Any:
        if self._view.device.startswith("cuda"):
            # A legacy capsule carries no stream: wait for the copy that fills a device view.
            _zerofeed._cuda_wait(self._view)
        return self._view._legacy_capsule_for_immutable_consumer()

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._view.__dlpack_device__()


def to_numpy(obj: Any, *, copy: bool | None = None) -> np.ndarray:
    """Return a NumPy array sharing ``obj``'s memory (any strides), or a copy if asked.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> a = np.arange(12, dtype=np.float32).reshape(3, 4)
        >>> b = zf.to_numpy(zf.view(a)[::-1, 1:3])
        >>> np.shares_memory(a, b), b[0].tolist()
        (True, [9.0, 10.0])

    """
    v = _prepared(obj, "numpy", copy)
    array = np.asarray(v)
    return array.view(bfloat16()) if v.dtype == "bfloat16" else array


def to_torch(obj: Any, *, copy: bool | None = None) -> Any:
    """Return a ``torch.Tensor`` over ``obj``'s memory through DLPack.

    A copy is made only for layouts PyTorch cannot express (negative strides). PyTorch
    tensors cannot be read-only: converting read-only data warns, as ``torch.from_numpy``
    does, since writing to such a tensor is undefined.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> a = np.ones((2, 3), np.float32)
        >>> t = zf.to_torch(a)  # doctest: +SKIP
        >>> t.data_ptr() == a.ctypes.data  # doctest: +SKIP
        True

    """
    torch = require("torch")
    v = _prepared(obj, "torch", copy)
    return torch.from_dlpack(_ImmutableExport(v) if v.readonly else v)


def to_tensorflow(obj: Any, *, copy: bool | None = None) -> Any:
    """Return a ``tf.Tensor`` over ``obj``'s memory, copying once only when TensorFlow needs it.

    TensorFlow needs a copy for a non-contiguous view, or data not aligned to 64 bytes.

    Example:
        >>> import zerofeed as zf
        >>> images = zf.empty((2, 4, 4, 3), "uint8")
        >>> t = zf.to_tensorflow(images)  # doctest: +SKIP
        >>> t.shape  # doctest: +SKIP
        TensorShape([2, 4, 4, 3])

    """
    tf = require("tensorflow")
    v = _prepared(obj, "tensorflow", copy)
    return tf.experimental.dlpack.from_dlpack(v._legacy_capsule_for_immutable_consumer())


def to_jax(obj: Any, *, copy: bool | None = None) -> Any:
    """Return a ``jax.Array`` over ``obj``'s memory, copying once only where JAX would.

    JAX would otherwise copy by itself: non-contiguous, misaligned, or 64-bit types
    without x64.

    Example:
        >>> import zerofeed as zf
        >>> x = zf.to_jax(zf.empty((3, 3), "float32"))  # doctest: +SKIP
        >>> x.shape  # doctest: +SKIP
        (3, 3)

    """
    jax = require("jax")
    v = _prepared(obj, "jax", copy)
    return jax.dlpack.from_dlpack(_ImmutableExport(v))

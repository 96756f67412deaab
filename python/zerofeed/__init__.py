"""zerofeed: zero-copy N-d views, DLPack exchange and aligned memory for feeding NumPy
data to TensorFlow, PyTorch, JAX and CuPy.

Example:
    >>> import numpy as np, zerofeed as zf
    >>> images = zf.empty((8, 64, 64, 3), "uint8")
    >>> crop = zf.view(images)[:, 16:48, 16:48, :]
    >>> zf.explain(crop, "torch").zero_copy
    True

"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import _zerofeed, cuda
from ._dtypes import bfloat16 as _bfloat16
from .cuda import pinned_empty, to_device
from .distributed import Shard
from .errors import (
    ALL_ERRORS,
    DeviceError,
    DTypeError,
    ExportError,
    FileMissingError,
    FrameworkMissingError,
    ImageDecodeError,
    ImageSourceError,
    InternalError,
    LayoutError,
    MemoryBudgetError,
    NpyFormatError,
    PipelineError,
    ReadOnlyError,
    SourceChangedError,
    SourceIOError,
    UnsupportedSourceError,
    ViewIndexError,
    ZerofeedError,
)
from .explain import Explanation, explain
from .frameworks import to_jax, to_numpy, to_tensorflow, to_torch
from .images import Images, TarShards, open_tar
from .loader import Loader
from .memory import aligned, copy_stats, empty
from .ops import (
    Cast,
    CenterCrop,
    ColorJitter,
    Normalize,
    Op,
    Pad,
    RandomCrop,
    RandomFlip,
    RandomResizedCrop,
    Resize,
    ToCHW,
)
from .sequences import TokenStream, Windows, open_tokens
from .sources import open_npy
from .views import View, view

_zerofeed._register_errors(dict(ALL_ERRORS))  # typed as the stub's dict[str, type[Exception]]

__version__: str = _zerofeed.__version__


if TYPE_CHECKING:
    #: NumPy's bfloat16 dtype (from ml_dtypes): ``np.zeros(2, zf.bfloat16)``.
    bfloat16: np.dtype[Any]
else:
    # Defined for the interpreter only, so that type checkers still flag misspelt names.
    def __getattr__(name: str) -> Any:
        """``zf.bfloat16``, NumPy's bfloat16 dtype (from ml_dtypes), made on first use: importing
        ml_dtypes takes about a second (measured 1.07 s of ``import zerofeed``'s 1.32 s with
        ml_dtypes 0.7 and NumPy 2.4, ``python -X importtime``), which a loader that never
        touches bfloat16 should not pay.

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> np.zeros(2, zf.bfloat16).itemsize
            2

        """
        if name == "bfloat16":
            return _bfloat16()
        raise AttributeError(f"module 'zerofeed' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | {"bfloat16"})


__all__ = [
    "Cast",
    "CenterCrop",
    "ColorJitter",
    "DTypeError",
    "DeviceError",
    "ExportError",
    "Explanation",
    "FrameworkMissingError",
    "ImageDecodeError",
    "ImageSourceError",
    "Images",
    "InternalError",
    "LayoutError",
    "Loader",
    "MemoryBudgetError",
    "Normalize",
    "NpyFormatError",
    "Op",
    "Pad",
    "PipelineError",
    "RandomCrop",
    "RandomFlip",
    "RandomResizedCrop",
    "ReadOnlyError",
    "Resize",
    "SourceChangedError",
    "FileMissingError",
    "SourceIOError",
    "Shard",
    "TarShards",
    "ToCHW",
    "TokenStream",
    "UnsupportedSourceError",
    "View",
    "ViewIndexError",
    "Windows",
    "ZerofeedError",
    "__version__",
    "aligned",
    "bfloat16",
    "copy_stats",
    "cuda",
    "empty",
    "explain",
    "open_npy",
    "open_tar",
    "open_tokens",
    "pinned_empty",
    "to_jax",
    "to_device",
    "to_numpy",
    "to_tensorflow",
    "to_torch",
    "view",
]

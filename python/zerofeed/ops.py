"""Per-sample operations for :class:`zerofeed.Loader`, fused by the Rust core into one pass.

Samples are images in HWC layout (height, width, channels) or HW. A chain such as
``[RandomCrop(256, 256), RandomFlip(), Normalize(mean, std), ToCHW()]`` reads each source
pixel once and writes the output straight into the batch buffer. Every random choice is
keyed by (seed, epoch, sample index), so results do not depend on worker count or timing.
Chains are validated against the sample shape when the Loader is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._dtypes import dtype_name
from .errors import PipelineError


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineError(f"{name}={value!r} must be a positive integer", name)
    return value


class Op:
    """Base class of the operations; ``spec()`` is what the Rust core receives."""

    def spec(self) -> tuple[Any, ...]:
        """The op as a plain tuple ``(name, *args)``."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Crop(Op):
    """A ``height x width`` window; subclasses choose where it lies."""

    height: int
    width: int

    def __post_init__(self) -> None:
        _positive("height", self.height)
        _positive("width", self.width)

    def spec(self) -> tuple[Any, ...]:
        """The op as a plain tuple."""
        return (type(self).__name__, self.height, self.width)


@dataclass(frozen=True)
class RandomCrop(_Crop):
    """A ``height x width`` window at a uniformly random position.

    Example:
        >>> RandomCrop(256, 256).spec()
        ('RandomCrop', 256, 256)

    """


@dataclass(frozen=True)
class CenterCrop(_Crop):
    """A ``height x width`` window in the middle of the sample (top-left rounding down).

    Example:
        >>> CenterCrop(224, 224).spec()
        ('CenterCrop', 224, 224)

    """


@dataclass(frozen=True)
class RandomFlip(Op):
    """Mirror left-right (horizontal flip) with probability ``p``.

    Example:
        >>> RandomFlip().spec()
        ('RandomFlip', 0.5)

    """

    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise PipelineError(f"p={self.p!r} must be a probability in [0, 1]", "p")

    def spec(self) -> tuple[Any, ...]:
        """The op as a plain tuple."""
        return ("RandomFlip", float(self.p))


@dataclass(frozen=True)
class Normalize(Op):
    """``(x * scale - mean[c]) / std[c]`` per channel, written as a float ``dtype``.

    ``mean`` and ``std`` have one entry per channel (or a single entry for all). The default
    ``scale=1/255`` takes uint8 pixels to [0, 1] first, as torchvision's ``ToTensor`` does.
    ``dtype`` is ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"float64"``.

    Example:
        >>> Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).spec()[0]
        'Normalize'

    """

    mean: Sequence[float]
    std: Sequence[float]
    scale: float = 1 / 255
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if isinstance(values, (int, float)):
                object.__setattr__(self, name, (float(values),))
        if any(float(s) == 0.0 for s in self.std):
            raise PipelineError(f"std={list(self.std)} contains 0: division by zero", "std")
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    def spec(self) -> tuple[Any, ...]:
        """The op as a plain tuple."""
        return (
            "Normalize",
            [float(m) for m in self.mean],
            [float(s) for s in self.std],
            float(self.scale),
            self.dtype,
        )


@dataclass(frozen=True)
class Cast(Op):
    """Convert values to ``dtype`` as NumPy's ``astype`` does.

    Example:
        >>> Cast("float16").spec()
        ('Cast', 'float16')

    """

    dtype: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    def spec(self) -> tuple[Any, ...]:
        """The op as a plain tuple."""
        return ("Cast", self.dtype)


@dataclass(frozen=True)
class ToCHW(Op):
    """Write the sample channels-first (CHW), as PyTorch models expect.

    Example:
        >>> ToCHW().spec()
        ('ToCHW',)

    """

    def spec(self) -> tuple[Any, ...]:
        """The op as a plain tuple."""
        return ("ToCHW",)

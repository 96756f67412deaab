"""Per-sample operations for :class:`zerofeed.Loader`, fused by the Rust core into one pass.

Samples are images in HWC layout (height, width, channels) or HW. A chain such as
``[RandomCrop(256, 256), RandomFlip(), Normalize(mean, std), ToCHW()]`` reads each source
pixel once and writes the output straight into the batch buffer. Every random choice is
keyed by (seed, epoch, sample index), so results do not depend on worker count or timing.
Chains are validated against the sample shape when the Loader is built.

:class:`Resize`, :class:`RandomResizedCrop`, :class:`Pad` and :class:`ColorJitter` work on
uint8 images of any size (decoded files, or arrays): the chain then resamples only the
output window of each image (separable, antialiased weight tables) and must fix the output
size, e.g. ``[Resize(256), CenterCrop(224)]``.
"""

from __future__ import annotations

from ._zerofeed import (
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

# The classes live in the extension (over the core's OpSpec, which validates them); their
# docstring examples run as doctests through this table.
__test__ = {
    cls.__name__: cls.__doc__ or ""
    for cls in (
        RandomCrop,
        CenterCrop,
        RandomFlip,
        Normalize,
        Cast,
        ToCHW,
        Resize,
        RandomResizedCrop,
        ColorJitter,
        Pad,
    )
}

__all__ = [
    "Cast",
    "CenterCrop",
    "ColorJitter",
    "Normalize",
    "Op",
    "Pad",
    "RandomCrop",
    "RandomFlip",
    "RandomResizedCrop",
    "Resize",
    "ToCHW",
]

"""``zerofeed.Images`` and ``zerofeed.open_tar``: encoded JPEG and PNG images as a source.

The bytes stay where they are (memory-mapped files and tar shards, Python ``bytes``, an
Arrow data buffer); the Loader's Rust workers decode them. See docs/images.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _zerofeed
from .errors import ImageSourceError, PipelineError, UnsupportedSourceError, ViewIndexError

#: The default ``max_pixels``: Pillow's decompression-bomb error threshold (2 x 89,478,485).
DEFAULT_MAX_PIXELS = 2 * 89_478_485

_PathLike = str | os.PathLike[str]


class TarShards:
    """WebDataset tar shards, memory-mapped and indexed once; pass to :class:`Images`.

    Made by :func:`open_tar`. ``len()`` is the number of samples (members grouped by key).
    """

    def __init__(self, inner: _zerofeed._TarShards) -> None:
        self._inner = inner

    @property
    def paths(self) -> list[str]:
        """The shards' paths, in order."""
        return self._inner.paths()

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return f"zerofeed.TarShards({len(self)} samples in {len(self.paths)} shards)"


def open_tar(paths: _PathLike | Sequence[_PathLike]) -> TarShards:
    """Memory-map and index WebDataset tar shards, for :class:`Images`.

    Members are grouped by key as WebDataset does (``a/000123.jpg`` and ``a/000123.cls`` are
    one sample, key ``a/000123``); a sample's image is its ``.jpg``, ``.jpeg`` or ``.png``
    member and its label the integer in ``.cls`` (or ``.txt``). A shard cut short, a bad
    header, or a member path that is absolute or contains ``..`` raises
    :class:`zerofeed.ImageSourceError` naming the shard and member.

    Example:
        >>> import io, os, tarfile, tempfile, zerofeed as zf
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "train-000000.tar")
        >>> buf = io.BytesIO()
        >>> Image.new("RGB", (4, 2)).save(buf, "PNG")
        >>> with tarfile.open(path, "w") as tar:
        ...     for key, label in (("000000", 3), ("000001", 5)):
        ...         for ext, data in (("png", buf.getvalue()), ("cls", str(label).encode())):
        ...             info = tarfile.TarInfo(f"{key}.{ext}")
        ...             info.size = len(data)
        ...             tar.addfile(info, io.BytesIO(data))
        >>> images = zf.Images(zf.open_tar(path))
        >>> len(images), images[1]["label"], images[1]["image"].shape
        (2, 5, (2, 4, 3))

    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items or not all(isinstance(p, (str, os.PathLike)) for p in items):
        raise UnsupportedSourceError(f"paths={paths!r} must be a path or a non-empty list of paths", "paths")
    return TarShards(_zerofeed._open_tar([os.fspath(p) for p in items]))


def _labels(labels: Any) -> list[int] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise PipelineError(
            f'labels={labels!r}: "folders" works only with a folder; pass a list of ints here', "labels"
        )
    values = np.asarray(labels)
    if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
        raise PipelineError("labels must be a 1-d sequence of integers, one per image", "labels")
    return [int(v) for v in values]


def _is_bytes_sequence(source: Any) -> bool:
    if isinstance(source, np.ndarray):
        return bool(source.dtype == object or source.dtype.kind == "S")
    return (
        isinstance(source, (list, tuple))
        and len(source) > 0
        and isinstance(source[0], (bytes, bytearray, memoryview))
    )


def _arrow_chunks(source: Any) -> tuple[Any, list[tuple[int, int, int, int, int, int, bool]]] | None:
    """The buffers of a pyarrow Binary/LargeBinary array, or None if it is not one."""
    module = type(source).__module__
    if not module.startswith("pyarrow"):
        return None
    import pyarrow as pa  # type: ignore[import-untyped]  # no stubs; its objects are Any here

    if isinstance(source, pa.ChunkedArray):
        arrays = list(source.chunks)
    elif isinstance(source, pa.Array):
        arrays = [source]
    else:
        return None
    chunks = []
    for arr in arrays:
        large = pa.types.is_large_binary(arr.type)
        if not (large or pa.types.is_binary(arr.type)):
            raise UnsupportedSourceError(
                f"a pyarrow array of {arr.type} cannot hold encoded images; use binary or large_binary",
                "source",
            )
        if arr.null_count:
            raise ImageSourceError(
                f"the pyarrow array has {arr.null_count} null entries; drop them first", "source"
            )
        _, offsets, data = arr.buffers()
        chunks.append(
            (
                offsets.address if offsets is not None else 0,
                offsets.size if offsets is not None else 0,
                data.address if data is not None else 0,
                data.size if data is not None else 0,
                arr.offset,
                len(arr),
                large,
            )
        )
    return source, chunks


class Images:
    """Encoded JPEG and PNG images as a :class:`Loader` source, decoded in Rust.

    ``source`` is one of:

    - a folder: every ``.jpg``/``.jpeg``/``.png`` under it (sorted paths); with
      ``labels="folders"``, torchvision's ImageFolder layout: one subfolder per class,
      labels by sorted class name (``.classes``);
    - a list of file paths, with ``labels`` a list of ints of the same length (or None);
    - a sequence of encoded images: a list of ``bytes``, a NumPy object array of ``bytes``,
      or a pyarrow ``binary`` / ``large_binary`` array (read in place over its data buffer);
    - :func:`open_tar`'s shards (labels from ``.cls`` members).

    Formats are found by content, not file name. ``mode`` is ``"RGB"`` or ``"L"`` (Pillow's
    luma formula). ``max_pixels`` refuses images whose header declares more pixels, before
    decoding. ``on_error="skip"`` lets the Loader replace a bad image by the next good one;
    ``"raise"`` stops at the first. ``fast_decode`` lets the Loader decode JPEGs only inside
    the crop, at 1/2, 1/4 or 1/8 scale when the crop is downsampled that much, with 4:2:0
    chroma upsampled by repetition (about half a level from the exact pixels), and, from the
    second epoch on, from the crop's first row; ``fast_decode=False`` is exact.

    ``images[i]`` decodes sample ``i`` whole: ``{"image": HWC uint8 array, "label": int}``.

    Example:
        >>> import io, zerofeed as zf
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("RGB", (3, 2), (200, 10, 0)).save(buf, "PNG")
        >>> images = zf.Images([buf.getvalue()], labels=[7])
        >>> sample = images[0]
        >>> sample["image"].shape, sample["image"][0, 0].tolist(), sample["label"]
        ((2, 3, 3), [200, 10, 0], 7)

    """

    def __init__(
        self,
        source: Any,
        *,
        labels: Any = None,
        mode: str = "RGB",
        on_error: str = "raise",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        fast_decode: bool = True,
    ) -> None:
        if not isinstance(max_pixels, (int, np.integer)) or isinstance(max_pixels, bool) or max_pixels < 1:
            raise PipelineError(f"max_pixels={max_pixels!r} must be a positive int", "max_pixels")
        settings = (mode, on_error, int(max_pixels), bool(fast_decode))
        self.mode = mode
        self.on_error = on_error
        self.max_pixels = int(max_pixels)
        self.fast_decode = bool(fast_decode)
        if isinstance(source, TarShards):
            if labels is not None:
                raise PipelineError("labels come from the shards' .cls members; pass labels=None", "labels")
            self._inner = _zerofeed._Images.tar(source._inner, settings)
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if labels not in (None, "folders"):
                raise PipelineError(f'labels={labels!r} with a folder must be "folders" or None', "labels")
            if not os.path.isdir(path):
                raise ImageSourceError(
                    f"{path}: not a folder; pass a folder, a list of files, encoded bytes "
                    "or zf.open_tar(...)",
                    "source",
                )
            self._inner = _zerofeed._Images.folder(path, labels == "folders", settings)
        elif (arrow := _arrow_chunks(source)) is not None:
            self._inner = _zerofeed._Images.arrow(arrow[0], arrow[1], _labels(labels), settings)
        elif _is_bytes_sequence(source):
            items = source.tolist() if isinstance(source, np.ndarray) else list(source)
            bad = next(
                (i for i, b in enumerate(items) if not isinstance(b, (bytes, bytearray, memoryview))), None
            )
            if bad is not None:
                raise UnsupportedSourceError(
                    f"source[{bad}] is a {type(items[bad]).__name__}, not bytes", "source"
                )
            # bytes are immutable and read in place; mutable buffers are copied once
            items = [b if isinstance(b, bytes) else bytes(b) for b in items]
            self._inner = _zerofeed._Images.buffers(items, _labels(labels), settings)
        elif isinstance(source, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in source):
            self._inner = _zerofeed._Images.files([os.fspath(p) for p in source], _labels(labels), settings)
        else:
            raise UnsupportedSourceError(
                f"source={type(source).__name__} is not a folder, a list of files, encoded bytes, "
                "a pyarrow binary array or zf.open_tar(...)",
                "source",
            )

    @property
    def classes(self) -> list[str]:
        """Class names in label order (``labels="folders"``), else ``[]``."""
        return self._inner.classes

    @property
    def files(self) -> list[str]:
        """How each sample is named in errors: its path, ``shard.tar:member``, or ``bytes[i]``."""
        return self._inner.names()

    @property
    def fields(self) -> tuple[str, ...]:
        """``("image", "label")``, or ``("image",)`` without labels."""
        return tuple(name for name, _, _ in self._inner.field_specs())

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise ViewIndexError(f"index={index!r} must be an int", "index")
        n = len(self)
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise ViewIndexError(f"index {index} is out of range for {n} images", "index")
        pixels, height, width, channels = self._inner.decode(i)
        sample: dict[str, Any] = {"image": np.frombuffer(pixels, np.uint8).reshape(height, width, channels)}
        if self._inner.has_labels:
            sample["label"] = self._inner.label(i)
        return sample

    def __repr__(self) -> str:
        extra = f", {len(self.classes)} classes" if self.classes else ""
        return f"zerofeed.Images({len(self)} images{extra}, mode={self.mode!r}, on_error={self.on_error!r})"

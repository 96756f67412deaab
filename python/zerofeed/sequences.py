"""Sequences: token streams (``open_tokens``) and windows over them or over time series
(``Windows``), read in place by the Loader's Rust workers.

A window is never copied until it lands in a batch: each sample is a strided view of the
memory-mapped file or array at an offset the core computes (nothing is stored per window).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _megatron, _zerofeed
from .errors import DTypeError, FileMissingError, LayoutError, PipelineError, SourceIOError
from .sources import open_npy
from .views import View, view

_Path = str | os.PathLike[str]


class TokenStream:
    """One logical stream of tokens made of one or more files or arrays, end to end.

    Made by :func:`open_tokens`. Nothing is copied: each part stays memory-mapped (or the
    array it was). ``offsets[i]`` is where part ``i`` starts in the stream; :class:`Windows`
    positions and ``boundaries`` are counted in the stream. Windows never cross from one
    part to the next: a file's end is a document boundary.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> s = zf.open_tokens([np.arange(5, dtype=np.uint16), np.arange(3, dtype=np.uint16)])
        >>> len(s), s.dtype, s.offsets
        (8, 'uint16', (0, 5))

    """

    def __init__(
        self, parts: Sequence[View], names: Sequence[str], documents: Sequence[np.ndarray] | None = None
    ) -> None:
        self.parts: tuple[View, ...] = tuple(parts)
        self.names: tuple[str, ...] = tuple(names)
        starts, total = [], 0
        for part in self.parts:
            starts.append(total)
            total += part.shape[0]
        self.offsets: tuple[int, ...] = tuple(starts)
        self._len = total
        #: Document start offsets in the stream (from Megatron ``.idx`` files), or None.
        self.boundaries: np.ndarray | None = None
        if documents is not None:
            self.boundaries = np.concatenate([d + o for d, o in zip(documents, starts, strict=True)])

    @property
    def dtype(self) -> str:
        """The tokens' dtype (the same in every part)."""
        return self.parts[0].dtype

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"<zerofeed.TokenStream: {self._len} tokens of {self.dtype} in {len(self.parts)} parts>"


def _raw_tokens(path: str, dtype: str | None) -> View:
    if dtype is None:
        raise PipelineError(
            f"{path}: raw token files carry no dtype; pass dtype= (e.g. dtype='uint16' for nanoGPT's .bin)",
            "dtype",
        )
    try:
        size = os.stat(path).st_size
    except FileNotFoundError as err:
        raise FileMissingError(f"{path}: no such file", "paths") from err
    except OSError as err:
        raise SourceIOError(f"{path}: cannot stat: {err}", "paths") from err
    item = np.dtype(dtype).itemsize
    if size == 0 or size % item:
        raise LayoutError(
            f"{path}: {size} bytes is not a positive whole number of {dtype} tokens ({item} bytes each); "
            "check dtype= or the file",
            "paths",
        )
    return _zerofeed._view_of_file(path, 0, [size // item], [item], dtype)


def _dtype_name(dtype: Any) -> str | None:
    if dtype is None:
        return None
    try:
        parsed = np.dtype(dtype)
    except TypeError as err:
        raise DTypeError(f"dtype={dtype!r} is not a NumPy dtype: {err}", "dtype") from err
    if parsed.kind not in "iu" or parsed.byteorder == ">":
        raise DTypeError(f"dtype={dtype!r}: tokens must be little-endian integers (e.g. 'uint16')", "dtype")
    return str(parsed.name)


def open_tokens(paths: Any, *, dtype: Any = None, format: str | None = None) -> TokenStream:
    """Open token files or arrays as one logical stream, without copying.

    ``paths`` is one item or a list of them: a raw token file (nanoGPT's ``.bin``: the
    tokens and nothing else; ``dtype`` required), a ``.npy`` file (dtype from its header), a
    1-d array or :class:`View`. Files are memory-mapped privately; a file that changes later
    raises :class:`zerofeed.SourceChangedError` at the next batch. Every part needs the same
    dtype. Windows never cross from one part to the next (each file ends a document).

    ``format="megatron"``: each item is the prefix of a Megatron indexed dataset
    (``prefix.bin`` + ``prefix.idx``); the ``.idx`` is validated field by field (magic,
    version, dtype code, counts against its size, pointers in order, document indices,
    the ``.bin``'s size) and gives the dtype and the document boundaries, which
    :class:`Windows` then uses (``stream.boundaries``).

    Example:
        >>> import numpy as np, tempfile, os, zerofeed as zf
        >>> path = os.path.join(tempfile.mkdtemp(), "train.bin")
        >>> np.arange(100, dtype=np.uint16).tofile(path)
        >>> tokens = zf.open_tokens(path, dtype="uint16")
        >>> len(tokens), np.asarray(tokens.parts[0])[98:].tolist()
        (100, [98, 99])

    """
    wanted = _dtype_name(dtype)
    if format not in (None, "megatron"):
        raise PipelineError(f"format={format!r} must be None or 'megatron'", "format")
    items = list(paths) if isinstance(paths, (list, tuple)) else [paths]
    if not items:
        raise PipelineError("paths is empty; give at least one token file or array", "paths")
    parts: list[View] = []
    names: list[str] = []
    documents: list[np.ndarray] = []
    for item in items:
        if isinstance(item, (bytes, bytearray)):
            item = os.fsdecode(bytes(item))
        if format == "megatron":
            if not isinstance(item, (str, os.PathLike)):
                raise PipelineError(f"format='megatron' takes path prefixes, got {item!r}", "paths")
            name = os.fspath(item)
            idx_dtype, starts = _megatron.read_index(name)
            part = _raw_tokens(name + ".bin", idx_dtype)
            documents.append(starts)
        elif isinstance(item, (str, os.PathLike)):
            name = os.fspath(item)
            part = open_npy(name) if name.endswith(".npy") else _raw_tokens(name, wanted)
        else:
            name = f"paths[{len(parts)}]"
            try:
                part = view(item)
            except TypeError as err:
                raise PipelineError(
                    f"{name}: {err}; pass a file path, a NumPy array or a View", "paths"
                ) from err
        if len(part.shape) != 1:
            raise LayoutError(f"{name}: tokens must be 1-d, got shape {part.shape}", "paths")
        if wanted is not None and part.dtype != wanted:
            raise DTypeError(f"{name} holds {part.dtype} but dtype={wanted!r}", "dtype")
        if parts and part.dtype != parts[0].dtype:
            raise DTypeError(
                f"{name} holds {part.dtype} but {names[0]} holds {parts[0].dtype}; "
                "every shard needs the same dtype",
                "paths",
            )
        parts.append(part)
        names.append(name)
    return TokenStream(parts, names, documents if format == "megatron" else None)


def _steps(argument: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise PipelineError(f"{argument}={value!r} must be a positive integer", argument)
    return int(value)


def _series(source: Any) -> list[View]:
    if isinstance(source, TokenStream):
        return list(source.parts)
    if isinstance(source, (list, tuple)):
        return [part for item in source for part in _series(item)]
    if isinstance(source, (str, os.PathLike)):
        return [open_npy(source)]
    try:
        return [view(source)]
    except TypeError as err:
        raise PipelineError(
            f"source: {err}; pass open_tokens(...), an array, a View, a .npy path or a list of them", "source"
        ) from err


def _boundaries(boundaries: Any) -> bytes:
    if boundaries is None:
        return b""
    offsets = np.asarray(boundaries)
    if offsets.ndim != 1 or (offsets.size and offsets.dtype.kind not in "iu"):
        raise PipelineError("boundaries must be a 1-d sequence of integer start offsets", "boundaries")
    if offsets.size and offsets.min() < 0:
        raise PipelineError(
            f"boundaries has a negative offset {offsets.min()}; offsets start at 0", "boundaries"
        )
    return offsets.astype("<u8").tobytes()


def _token(bos: Any) -> int:
    value = int(bos)
    if not -(2**63) <= value < 2**63:
        raise DTypeError(
            f"bos={value} does not fit in any token dtype; give a token id the stream holds", "bos"
        )
    return value


class Windows:
    """Fixed-length windows over token streams or time series: a source for :class:`Loader`.

    ``source`` is :func:`open_tokens`'s stream, an array / View / ``.npy`` path whose axis 0
    is time (1-d tokens or ``(T, F)`` series), or a list of them (separate series: no window
    crosses from one to the next). ``length`` is the window's steps; ``stride`` the distance
    between window starts (default ``length``: every step in exactly one window per epoch).

    ``target=None``: the sample is the window. ``target="next"``: ``"input"`` and
    ``"target"``, the target one step later (both from one window of ``length + 1``).
    ``target=H``: ``"input"`` is ``length`` steps and ``"target"`` the ``H`` after it.
    ``boundaries``: sorted document start offsets in the stream; no window crosses one
    (documents shorter than a window give none). By default, a stream opened with
    ``format="megatron"`` brings its own. ``bos=TOKEN_ID`` instead: every occurrence of the
    token starts a document (found once, here, by a multi-threaded scan in Rust; memory
    grows with the number of documents). ``phase="random"`` shifts each segment's
    grid by an offset drawn from the loader's (seed, epoch), keeping the window count fixed,
    so over epochs every position starts windows; ``phase=0`` keeps the grid at 0.

    ``positions=True`` adds the field ``"document_position"``: int64 position ids of the
    input's steps in their document (0 at each document start; each series and each
    boundary starts a document), for packed training; the target of ``target="next"`` sits
    one position later. The plain window is then named ``"input"``. The loader's ``dtype=``
    casts it like every field.

    ``sampling="replacement"``: nanoGPT-style random windows. Sample ``i`` of an epoch starts
    at a step drawn uniformly from every step a window fits after (inside one document),
    keyed by the loader's (seed, epoch) and ``i``: deterministic for any worker count and
    resumable; shards read different ``i`` and so draw from different keys (windows may still
    overlap, as with nanoGPT's offsets). ``len()`` is the number of windows the fixed grid has,
    so an epoch reads as many tokens as the default. ``sampling="grid"`` is the default.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> w = zf.Windows(np.arange(10, dtype=np.uint16), 4, target="next", phase=0)
        >>> len(w), w.fields
        (2, ('input', 'target'))
        >>> b = next(iter(zf.Loader(w, batch_size=2, dtype="int64")))
        >>> b["input"][1].tolist(), b["target"][1].tolist(), b["input"].dtype
        ([4, 5, 6, 7], [5, 6, 7, 8], dtype('int64'))
        >>> docs = np.array([7, 1, 2, 7, 3, 4, 5], dtype=np.uint16)  # 7 starts each document
        >>> d = zf.Windows(docs, 2, bos=7, positions=True, phase=0)
        >>> b = next(iter(zf.Loader(d, batch_size=3)))
        >>> b["input"].tolist(), b["document_position"].tolist()
        ([[7, 1], [7, 3], [4, 5]], [[0, 1], [0, 1], [2, 3]])

    """

    def __init__(
        self,
        source: Any,
        length: int,
        *,
        stride: int | None = None,
        target: str | int | None = None,
        boundaries: Any = None,
        bos: int | None = None,
        phase: str | int = "random",
        sampling: str = "grid",
        positions: bool = False,
    ) -> None:
        self.length = _steps("length", length)
        self.stride = None if stride is None else _steps("stride", stride)
        if target is None or target == "next":
            kind, horizon = ("none" if target is None else "next"), 0
        elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            kind, horizon = "horizon", _steps("target", target)
        else:
            raise PipelineError(f"target={target!r} must be None, 'next' or a number of steps", "target")
        if phase not in ("random", 0) or isinstance(phase, bool):
            raise PipelineError(f"phase={phase!r} must be 'random' or 0", "phase")
        if sampling not in ("grid", "replacement"):
            raise PipelineError(f"sampling={sampling!r} must be 'grid' or 'replacement'", "sampling")
        if not isinstance(positions, bool):
            raise PipelineError(f"positions={positions!r} must be True or False", "positions")
        if bos is not None:
            if isinstance(bos, bool) or not isinstance(bos, (int, np.integer)):
                raise PipelineError(f"bos={bos!r} must be a token id (an integer)", "bos")
            if boundaries is not None:
                raise PipelineError("give boundaries= or bos=, not both (bos= finds the boundaries)", "bos")
        self.target = target
        self.phase = phase
        self.sampling = sampling
        self.positions = positions
        if boundaries is None and bos is None and isinstance(source, TokenStream):
            boundaries = source.boundaries
        self._inner = _zerofeed._Windows(
            _series(source),
            length=self.length,
            stride=self.stride,
            target=kind,
            horizon=horizon,
            boundaries=_boundaries(boundaries),
            random_phase=phase == "random",
            bos=None if bos is None else _token(bos),
            sampling=sampling,
            positions=positions,
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The sample's field names: ``("",)`` for a plain window, else input and target
        (and ``"document_position"`` with ``positions=True``).
        """
        return tuple(name for name, _, _ in self._inner.field_specs())

    def window_start(self, index: int, *, seed: int = 0, epoch: int = 0) -> tuple[int, int]:
        """``(series, step)`` where window ``index`` starts in ``epoch`` of a loader seeded
        with ``seed``.

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> zf.Windows(np.arange(10), 4, phase=0).window_start(1)
            (0, 4)

        """
        start = self._inner.window_start(_steps("seed", seed), _steps("epoch", epoch), _steps("index", index))
        if start is None:
            raise PipelineError(f"window {index} is out of range for {len(self)} windows", "index")
        return start

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return (
            f"zerofeed.Windows({len(self)} windows, length={self.length}, stride={self._inner.stride}, "
            f"target={self.target!r}, phase={self.phase!r}, sampling={self.sampling!r}, "
            f"positions={self.positions!r})"
        )

"""Built-in data, workloads and the NumPy oracle of ``zerofeed bench tokens`` and ``series``.

tokens: a synthetic token stream written as a nanoGPT-style ``.bin`` (raw little-endian
``uint16``, nothing else), read as windows of ``block + 1`` tokens: ``input`` is the first
``block``, ``target`` the same shifted by one, both widened to ``int64``. series: a
``(T, F)`` ``float32`` series in a ``.npy``, read as windows of ``length`` steps with the
``horizon`` steps after them as the target.

The oracle knows nothing about any implementation: it finds where each delivered window
starts in the data (by its first row) and compares every value of input and target with
the data at that start.

Example:
    >>> w = TokensWorkload(tokens=4097, block=64, batch=4)
    >>> w.batches_per_epoch, w.tokens_per_batch
    (16, 256)

"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed_bench.data import cache_dir, usable_cores

#: Bumped whenever the generated data changes, so stale caches are not reused.
SEQ_DATA_VERSION = 1

#: GPT-2's vocabulary: the synthetic tokens are drawn below it, as nanoGPT's are.
VOCAB = 50257


class _Windowed:
    """What the tokens and series workloads share: batches of their windows per epoch."""

    batch: int
    workers: int

    @property
    def windows(self) -> int:
        """Windows per epoch."""
        raise NotImplementedError

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch (the last partial batch is dropped)."""
        return self.windows // self.batch

    def threads(self) -> int:
        """Worker threads: ``workers`` or, when 0, the usable cores."""
        return self.workers if self.workers > 0 else usable_cores()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class TokensWorkload(_Windowed):
    """nanoGPT's training read: ``batch`` windows of ``block + 1`` tokens, widened to int64.

    An epoch is the stream cut into ``block``-token windows (``tokens // block`` of them
    with room for the shifted target), in batches; implementations that draw random
    offsets with replacement (nanoGPT) deliver the same number of batches per epoch.

    Example:
        >>> TokensWorkload(tokens=10_000, block=100, batch=8).windows
        99

    """

    tokens: int = 20_000_000
    block: int = 1024
    batch: int = 12
    epochs: int = 2
    workers: int = 0
    seed: int = 0

    @property
    def windows(self) -> int:
        """Windows per epoch: starts ``0, block, 2*block, ...`` with ``block + 1`` tokens left."""
        return (self.tokens - 1) // self.block

    @property
    def tokens_per_batch(self) -> int:
        """Input tokens per batch (the unit of tokens/s)."""
        return self.batch * self.block

    @property
    def out_bytes_per_batch(self) -> int:
        """Bytes of int64 output per batch (input and target)."""
        return 2 * self.tokens_per_batch * 8

    def check_variant(self) -> TokensWorkload:
        """The tiny workload every implementation is checked on before it is timed."""
        return dataclasses.replace(self, tokens=16 * 64 * 4 + 1, block=64, batch=4, epochs=1)


@dataclasses.dataclass(frozen=True)
class SeriesWorkload(_Windowed):
    """Forecasting windows: ``length`` steps of a ``(steps, features)`` float32 series as
    input, the ``horizon`` steps after them as target, windows ``stride`` apart (default
    ``length``), shuffled, in batches.

    Example:
        >>> SeriesWorkload(steps=1000, features=2, length=64, horizon=8, batch=4).windows
        15

    """

    steps: int = 2_000_000
    features: int = 8
    length: int = 64
    horizon: int = 8
    stride: int = 0
    batch: int = 256
    epochs: int = 3
    workers: int = 0
    seed: int = 0

    @property
    def step(self) -> int:
        """Distance between window starts (``stride``, or ``length`` when 0)."""
        return self.stride or self.length

    @property
    def windows(self) -> int:
        """Windows per epoch: starts ``0, step, ...`` with ``length + horizon`` steps left."""
        return (self.steps - self.length - self.horizon) // self.step + 1

    @property
    def out_bytes_per_batch(self) -> int:
        """Bytes of float32 output per batch (input and target)."""
        return self.batch * (self.length + self.horizon) * self.features * 4

    def check_variant(self) -> SeriesWorkload:
        """The tiny workload every implementation is checked on before it is timed."""
        return dataclasses.replace(self, steps=2000, features=3, length=16, horizon=4, batch=8, epochs=1)


def make_tokens(n: int, seed: int = 0) -> np.ndarray:
    """``n`` deterministic ``uint16`` tokens below GPT-2's vocabulary.

    Example:
        >>> t = make_tokens(1000, seed=1)
        >>> t.dtype.name, bool((t == make_tokens(1000, seed=1)).all()), int(t.max() < VOCAB)
        ('uint16', True, 1)

    """
    rng = np.random.default_rng([seed, SEQ_DATA_VERSION, 11])
    return rng.integers(0, VOCAB, size=n, dtype=np.uint16)


def make_series(steps: int, features: int, seed: int = 0) -> np.ndarray:
    """A deterministic ``(steps, features)`` float32 series: random walks plus daily and
    weekly waves plus noise, so no two steps are alike (the oracle relies on it).

    Example:
        >>> s = make_series(100, 3)
        >>> s.shape, s.dtype.name, len(np.unique(s[:, 0])) == 100
        ((100, 3), 'float32', True)

    """
    rng = np.random.default_rng([seed, SEQ_DATA_VERSION, 12])
    out = np.empty((steps, features), np.float32)
    t = np.arange(steps, dtype=np.float64)
    chunk = 1 << 20
    for f in range(features):
        walk = np.cumsum(rng.normal(0.0, 0.1, steps))
        period = rng.uniform(20.0, 30.0)
        wave = np.sin(2 * np.pi * t / period) + 0.5 * np.sin(2 * np.pi * t / (7 * period))
        for lo in range(0, steps, chunk):
            hi = min(steps, lo + chunk)
            out[lo:hi, f] = walk[lo:hi] + wave[lo:hi] + rng.normal(0.0, 0.05, hi - lo)
    return out


def _cached(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` once, atomically (a half-written file is never reused)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def tokens_path(w: TokensWorkload, directory: Path | None = None) -> Path:
    """Where the ``.bin`` of ``w`` is cached (whether or not it exists yet)."""
    d = directory if directory is not None else cache_dir()
    return d / f"tokens-v{SEQ_DATA_VERSION}-n{w.tokens}-s{w.seed}.bin"


def ensure_tokens(w: TokensWorkload, directory: Path | None = None) -> Path:
    """Write the token stream of ``w`` as a raw ``uint16`` ``.bin`` once; return its path.

    Example:
        >>> import tempfile
        >>> p = ensure_tokens(TokensWorkload(tokens=1000), Path(tempfile.mkdtemp()))
        >>> np.fromfile(p, np.uint16).size
        1000

    """

    def write(tmp: Path) -> None:
        chunk = 1 << 24  # generated in slices: 10^8 tokens never sit in RAM as int64
        with open(tmp, "wb") as f:
            for lo in range(0, w.tokens, chunk):
                rng_seed = w.seed * 1_000_003 + lo // chunk
                f.write(make_tokens(min(chunk, w.tokens - lo), rng_seed).tobytes())

    return _cached(tokens_path(w, directory), write)


def series_path(w: SeriesWorkload, directory: Path | None = None) -> Path:
    """Where the ``.npy`` of ``w`` is cached (whether or not it exists yet)."""
    d = directory if directory is not None else cache_dir()
    return d / f"series-v{SEQ_DATA_VERSION}-{w.steps}x{w.features}-s{w.seed}.npy"


def ensure_series(w: SeriesWorkload, directory: Path | None = None) -> Path:
    """Write the series of ``w`` as a ``.npy`` once; return its path."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, make_series(w.steps, w.features, w.seed))

    return _cached(series_path(w, directory), write)


def map_resident(path: Path) -> np.ndarray:
    """Memory-map ``path`` (``.npy`` or raw ``uint16``) and touch every page once, so the
    data is resident before the memory baseline is taken.
    """
    arr = np.load(path, mmap_mode="r") if path.suffix == ".npy" else np.memmap(path, np.uint16, "r")
    flat = arr.reshape(-1)
    step = 1 << 22
    for lo in range(0, flat.size, step):
        flat[lo : lo + step].max()
    return arr


def _starts_by_first_row(data: np.ndarray) -> dict[bytes, list[int]]:
    """Map the bytes of each step's row (and, for tokens, the next 3) to its positions."""
    key_len = 4 if data.ndim == 1 else 1
    index: dict[bytes, list[int]] = {}
    for p in range(data.shape[0] - key_len + 1):
        index.setdefault(data[p : p + key_len].tobytes(), []).append(p)
    return index


def check_windows(
    data: np.ndarray,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    length: int,
    horizon: int,
    batch: int,
    dtype: str,
    batches_per_epoch: int,
    replacement: bool = False,
) -> dict[str, Any]:
    """Check one epoch of ``(input, target)`` batches against ``data``.

    Each input must equal ``data[s : s + length]`` for some start ``s``, and its target:
    for tokens (``horizon == 0``) the input shifted by one step
    (``data[s + 1 : s + 1 + length]``), for series it is
    ``data[s + length : s + length + horizon]``. Without ``replacement`` no window may come
    twice in the epoch. Values are compared exactly (widening and copying are exact).

    Example:
        >>> d = make_tokens(200)
        >>> good = [(d[None, 0:8].astype(np.int64), d[None, 1:9].astype(np.int64))]
        >>> check_windows(d, good, length=8, horizon=0, batch=1, dtype="int64",
        ...               batches_per_epoch=1)["passed"]
        True
        >>> check_windows(d, [(good[0][0], good[0][0])], length=8, horizon=0, batch=1,
        ...               dtype="int64", batches_per_epoch=1)["passed"]
        False

    """
    index = _starts_by_first_row(data)
    key_len = 4 if data.ndim == 1 else 1
    tail = data.shape[1:]
    t_len = horizon or length
    problems: list[str] = []
    starts: list[int] = []
    n_batches = 0
    for b, (x, y) in enumerate(batches):
        n_batches += 1
        x, y = np.asarray(x), np.asarray(y)
        want_x, want_y = (batch, length, *tail), (batch, t_len, *tail)
        if x.shape != want_x or y.shape != want_y or x.dtype != dtype or y.dtype != dtype:
            problems.append(
                f"batch {b}: got {x.dtype}{x.shape} / {y.dtype}{y.shape}, "
                f"expected {dtype}{want_x} / {dtype}{want_y}"
            )
            continue
        for s in range(batch):
            key = x[s, :key_len].astype(data.dtype).tobytes()
            found = None
            for p in index.get(key, []):
                if p + length + (horizon or 1) > data.shape[0]:
                    continue
                t0 = p + length if horizon else p + 1
                if np.array_equal(x[s], data[p : p + length]) and np.array_equal(y[s], data[t0 : t0 + t_len]):
                    found = p
                    break
            if found is None:
                problems.append(f"batch {b} sample {s}: input/target are not a window of the data")
            else:
                starts.append(found)
    if n_batches != batches_per_epoch:
        problems.append(f"got {n_batches} batches in the epoch, expected {batches_per_epoch}")
    if not replacement and len(set(starts)) != len(starts):
        problems.append("a window was delivered twice in one epoch")
    if len(starts) >= 8 and len(set(starts)) < 2:
        problems.append("every sample is the same window")
    return {"passed": not problems, "samples": len(starts), "problems": problems[:10]}

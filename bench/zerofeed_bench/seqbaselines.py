"""The implementations ``zerofeed bench tokens`` and ``zerofeed bench series`` time.

Each builder is ``build_<name>(path, workload, threads)``: ``path`` is the cached data file
(the ``.bin`` token stream or the series ``.npy``), which every implementation opens itself
the way its users do. Each returns an :class:`~zerofeed_bench.baselines.Impl` whose
``to_numpy(batch)`` gives ``(input, target)`` as NumPy arrays (for the oracle only).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from zerofeed_bench.seqdata import TokensWorkload, ensure_tokens
    >>> w = TokensWorkload(tokens=4097, block=64, batch=4)
    >>> impl = build_nanogpt(ensure_tokens(w, Path(tempfile.mkdtemp())), w, 1)
    >>> x, y = next(iter(impl.epoch(0)))
    >>> tuple(x.shape), x.dtype
    ((4, 64), torch.int64)

"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed_bench.baselines import Impl, Spec, _split, _ThreadedImpl
from zerofeed_bench.seqdata import SeriesWorkload, TokensWorkload


def _pair(batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(input, target)`` of a dict or pair batch, as NumPy."""
    if isinstance(batch, dict):
        batch = (batch["input"], batch["target"])
    x, y = batch
    return tuple(np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in (x, y))  # type: ignore[return-value]


class _SeqImpl(Impl):
    """An implementation yielding ``(input, target)`` pairs or dicts of them."""

    def to_numpy(self, batch: Any) -> Any:
        return _pair(batch)


def _zerofeed_impl(
    loader: Any, convert: Callable[[Any], Iterator[Any]], to_numpy: Callable[[Any], Any] = _pair
) -> Impl:
    """An :class:`Impl` over a ``zf.Loader``: ``convert(loader)`` is one epoch (``iter``,
    ``.torch()``, ...), ``to_numpy`` turns one of its batches into NumPy for the oracle.
    """

    class _Zerofeed(Impl):
        # phase="random" shifts the grid each epoch and keeps the count fixed, which may
        # leave a window fewer than the stream holds at phase 0: the loader says its own
        batches_per_epoch = len(loader)

        def to_numpy(self, batch: Any) -> Any:
            return to_numpy(batch)

        def epoch(self, e: int) -> Iterator[Any]:
            loader.set_epoch(e)
            yield from convert(loader)

        def stats(self) -> dict[str, Any]:
            return {str(k): v for k, v in dict(loader.stats).items()}

        def close(self) -> None:
            loader.close()

    return _Zerofeed()


# ------------------------------------------------------------------------------ tokens


def build_zerofeed_tokens(path: Path, w: TokensWorkload, threads: int) -> Impl:
    """``zf.open_tokens`` + ``zf.Windows(target="next")`` + ``zf.Loader(dtype="int64")``,
    iterated through ``.torch()``, as the README shows it.
    """
    import zerofeed as zf

    tokens = zf.open_tokens(str(path), dtype="uint16")
    windows = zf.Windows(tokens, length=w.block, target="next")
    loader = zf.Loader(
        windows,
        batch_size=w.batch,
        shuffle=True,
        seed=w.seed,
        drop_last=True,
        dtype="int64",
        workers=w.workers or None,
    )
    return _zerofeed_impl(loader, lambda ld: ld.torch())


def build_nanogpt(path: Path, w: TokensWorkload, threads: int) -> Impl:
    """NanoGPT's ``get_batch`` as karpathy/nanoGPT's train.py has it (commit 3adf61e,
    lines 116-131, CPU branch): a fresh ``np.memmap`` per batch, offsets from
    ``torch.randint`` (with replacement), per-row ``astype(np.int64)``, ``torch.stack``.
    """
    import torch

    torch.manual_seed(1337 + w.seed)
    block, batch = w.block, w.batch

    def get_batch() -> tuple[Any, Any]:
        data = np.memmap(path, dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - block, (batch,))
        x = torch.stack([torch.from_numpy((data[i : i + block]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1 : i + 1 + block]).astype(np.int64)) for i in ix])
        return x, y

    class _NanoGPT(_SeqImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            for _ in range(w.batches_per_epoch):
                yield get_batch()

    return _NanoGPT()


def _torch_loader(dataset: Any, batch: int, threads: int, seed: int) -> Any:
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=threads,
        persistent_workers=threads > 0,
        prefetch_factor=2 if threads > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


class _TorchImpl(_SeqImpl):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def epoch(self, e: int) -> Iterator[Any]:
        yield from self.loader

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


def build_torch_tokens(path: Path, w: TokensWorkload, threads: int) -> Impl:
    """PyTorch ``DataLoader`` over a map-style Dataset of the stride-``block`` windows:
    ``__getitem__`` slices ``block + 1`` tokens of a memmap (opened once per worker),
    widens them with ``torch.from_numpy(...).long()`` and returns ``(x, y)`` views.
    """
    import torch
    from torch.utils.data import Dataset

    block = w.block

    class _Windows(Dataset):
        def __init__(self) -> None:
            self.data: np.ndarray | None = None

        def __len__(self) -> int:
            return w.windows

        def __getitem__(self, i: int) -> Any:
            if self.data is None:  # opened in the worker, not pickled into it
                self.data = np.memmap(path, dtype=np.uint16, mode="r")
            chunk = torch.from_numpy(self.data[i * block : i * block + block + 1].astype(np.int64))
            return chunk[:-1], chunk[1:]

    return _TorchImpl(_torch_loader(_Windows(), w.batch, threads, w.seed))


_LITDATA_PIECE = 1 << 22


def _litdata_piece(path: str, i: int) -> Iterator[Any]:
    """Piece ``i`` of the stream, as ``optimize`` wants its items (module level: pickled)."""
    import torch

    data = np.memmap(path, dtype=np.uint16, mode="r")
    yield torch.from_numpy(np.array(data[i * _LITDATA_PIECE : (i + 1) * _LITDATA_PIECE]))


def _litdata_copy(path: Path, w: TokensWorkload) -> Path:
    """LitData's optimized copy of the token stream, made once next to the ``.bin`` with
    ``litdata.optimize(..., item_loader=TokensLoader())`` (LitData's documented recipe).
    """
    import json

    from litdata import TokensLoader, optimize

    out = path.with_name(path.stem + f"-litdata-b{w.block}")
    if (out / "index.json").exists():
        try:
            json.loads((out / "index.json").read_text())
            return out
        except ValueError:
            pass
    n = -(-w.tokens // _LITDATA_PIECE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimize(
            fn=functools.partial(_litdata_piece, str(path)),
            inputs=list(range(n)),
            output_dir=str(out),
            chunk_size=(w.block + 1) * 2048,
            item_loader=TokensLoader(),
            num_workers=1,
            verbose=False,
            mode="overwrite",
        )
    return out


def build_litdata(path: Path, w: TokensWorkload, threads: int) -> Impl:
    """LitData ``StreamingDataset(item_loader=TokensLoader(block_size=block + 1))`` on a local
    optimized copy, in a ``StreamingDataLoader``; ``x, y = b[:, :-1].long(), b[:, 1:].long()``.

    Its blocks do not straddle chunks, so an epoch has a few windows fewer than the
    ``.bin``'s; the row counts its own batches.
    """
    from litdata import StreamingDataLoader, StreamingDataset, TokensLoader

    local = _litdata_copy(path, w)
    ds = StreamingDataset(
        str(local),
        item_loader=TokensLoader(block_size=w.block + 1),
        shuffle=True,
        drop_last=True,
        seed=w.seed,
    )
    loader = StreamingDataLoader(
        ds, batch_size=w.batch, num_workers=threads, drop_last=True, persistent_workers=threads > 0
    )

    class _LitData(_SeqImpl):
        batches_per_epoch = len(ds) // w.batch

        def epoch(self, e: int) -> Iterator[Any]:
            ds.set_epoch(e + 1)
            for b in loader:
                yield b[:, :-1].long(), b[:, 1:].long()

    return _LitData()


class _TokenFloor(_ThreadedImpl):
    """The floor: widen the same tokens (the stream in order, ``batch`` windows of
    ``block + 1`` per batch, read from the memory-mapped file) into int64 input and target.

    ``fresh=False`` writes into two output buffers in turn: the honest bound for a pooled
    loader such as zerofeed's, which hands out one batch while it fills the next.
    ``fresh=True`` asks ``np.empty`` for the outputs of every batch, as a loader that cannot
    recycle does; glibc hands back the block just freed, so this is one cache-hot buffer, an
    optimistic figure shown beside the bound, not the bound.
    """

    def __init__(self, path: Path, w: TokensWorkload, threads: int, fresh: bool) -> None:
        super().__init__(threads)
        self.w, self.fresh = w, fresh
        data = np.memmap(path, dtype=np.uint16, mode="r")
        self.windows = np.lib.stride_tricks.as_strided(
            data, shape=(w.windows, w.block + 1), strides=(w.block * 2, 2), writeable=False
        )
        self.chunks = _split(w.batch, threads)
        self.bufs = [np.empty((2, w.batch, w.block), np.int64) for _ in range(2)]

    def _copy(self, out: np.ndarray, rows: np.ndarray, lo: int, hi: int) -> None:
        np.copyto(out[0, lo:hi], rows[lo:hi, :-1])
        np.copyto(out[1, lo:hi], rows[lo:hi, 1:])

    def epoch(self, e: int) -> Iterator[Any]:
        b = self.w.batch
        for k in range(self.w.batches_per_epoch):
            out = np.empty((2, b, self.w.block), np.int64) if self.fresh else self.bufs[k % 2]
            rows = self.windows[k * b : (k + 1) * b]
            self._run(self._copy, [(out, rows, lo, hi) for lo, hi in self.chunks])
            yield out[0], out[1]

    def to_numpy(self, batch: Any) -> Any:
        return batch


def build_floor_reused(path: Path, w: TokensWorkload, threads: int) -> Impl:
    """Floor: u16 -> i64 of the same tokens into reused buffers (see :class:`_TokenFloor`)."""
    return _TokenFloor(path, w, threads, fresh=False)


def build_floor_fresh(path: Path, w: TokensWorkload, threads: int) -> Impl:
    """Floor: u16 -> i64 of the same tokens into fresh outputs (see :class:`_TokenFloor`)."""
    return _TokenFloor(path, w, threads, fresh=True)


def _specs(rows: list[tuple[str, str, str, Any, int, str]]) -> list[Spec]:
    """Specs of ``(name, group, modules (comma-separated), builder, threads, description)``."""
    return [Spec(a, g, tuple(m.split(",")), b, th, d) for a, g, m, b, th, d in rows]


def token_specs(w: TokensWorkload) -> list[Spec]:
    """Every row of ``zerofeed bench tokens``, zerofeed first, floors last.

    Example:
        >>> [s.name for s in token_specs(TokensWorkload(workers=2))][:3]
        ['zerofeed', 'nanogpt', 'torch-w0']

    """
    t = w.threads()
    n = t if t > 1 else 2
    rows: list[tuple[str, str, str, Any, int, str]] = [
        ("zerofeed", "zerofeed", "zerofeed._zerofeed,torch", build_zerofeed_tokens, t,
         "open_tokens + Windows(target='next') + Loader(dtype='int64').torch()"),
        ("nanogpt", "nanogpt", "torch", build_nanogpt, 1,
         "nanoGPT get_batch: memmap per batch, torch.randint, astype, torch.stack"),
        ("torch-w0", "torch", "torch", build_torch_tokens, 0,
         "torch DataLoader, map-style windows, 0 workers"),
        (f"torch-w{n}", "torch", "torch", build_torch_tokens, n,
         f"torch DataLoader, map-style windows, {n} workers"),
        ("litdata", "litdata", "litdata", build_litdata, n,
         f"LitData StreamingDataset + TokensLoader, local copy, {n} workers"),
    ]  # fmt: skip
    out = _specs(rows)
    for k in (1, n):
        for kind, build in (("reused", build_floor_reused), ("fresh", build_floor_fresh)):
            desc = f"u16->i64 copy of the same tokens into {kind} buffers, {k} thread(s)"
            # Only the reused rows bound zerofeed ("vs floor"): see _TokenFloor.
            group = "floor" if kind == "reused" else "floor-fresh"
            out.append(Spec(f"floor-{kind}-{k}t", group, ("numpy",), build, k, desc, None, False))
    return out


#: The ``--against`` groups of ``zerofeed bench tokens``.
TOKEN_GROUPS: tuple[str, ...] = ("nanogpt", "torch", "litdata")


# ------------------------------------------------------------------------------ series


def _load_series(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def build_zerofeed_series(path: Path, w: SeriesWorkload, threads: int) -> Impl:
    """``zf.Windows(path, length, target=horizon)`` + ``zf.Loader(shuffle=True)``, NumPy out."""
    import zerofeed as zf

    windows = zf.Windows(str(path), w.length, stride=w.step, target=w.horizon)
    loader = zf.Loader(
        windows, batch_size=w.batch, shuffle=True, seed=w.seed, drop_last=True, workers=w.workers or None
    )
    return _zerofeed_impl(loader, iter)


def _starts(w: SeriesWorkload) -> np.ndarray:
    return np.arange(w.windows, dtype=np.int64) * w.step


def build_keras(path: Path, w: SeriesWorkload, threads: int) -> Impl:
    """Keras ``timeseries_dataset_from_array`` over windows of ``length + horizon``, split
    into input and target by a ``map`` (Keras's recipe for multi-step targets).
    """
    import keras
    import tensorflow as tf

    series = _load_series(path)
    L = w.length
    ds = keras.utils.timeseries_dataset_from_array(
        np.asarray(series),
        None,
        sequence_length=L + w.horizon,
        sequence_stride=w.step,
        batch_size=w.batch,
        shuffle=True,
        seed=w.seed,
    )
    ds = ds.map(lambda b: (b[:, :L], b[:, L:]), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
    return _TfImpl(ds, w.batches_per_epoch)


def build_tfdata_series(path: Path, w: SeriesWorkload, threads: int) -> Impl:
    """tf.data windows, vectorized: shuffle the window starts, batch them, one
    ``tf.gather`` of ``start + range(length + horizon)`` per batch, split, prefetch.
    """
    import tensorflow as tf

    data = tf.convert_to_tensor(np.asarray(_load_series(path)))
    span = tf.range(w.length + w.horizon, dtype=tf.int64)
    L = w.length

    def gather(starts: Any) -> Any:
        b = tf.gather(data, starts[:, None] + span[None, :])
        return b[:, :L], b[:, L:]

    ds = (
        tf.data.Dataset.from_tensor_slices(_starts(w))
        .shuffle(w.windows, seed=w.seed, reshuffle_each_iteration=True)
        .batch(w.batch, drop_remainder=True)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return _TfImpl(ds, w.batches_per_epoch)


class _TfImpl(_SeqImpl):
    def __init__(self, ds: Any, batches: int) -> None:
        self.ds, self.batches = ds, batches

    def epoch(self, e: int) -> Iterator[Any]:
        # full batches only: Keras keeps the last partial one
        yield from itertools.islice(self.ds, self.batches)


def build_torch_series(path: Path, w: SeriesWorkload, threads: int) -> Impl:
    """PyTorch ``DataLoader`` over a map-style Dataset: ``__getitem__`` slices input and
    target out of one tensor over the series (``torch.from_numpy``, no copy until collate).
    """
    import torch
    from torch.utils.data import Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memmap: never written
        data = torch.from_numpy(_load_series(path))
    L, H, step = w.length, w.horizon, w.step

    class _Windows(Dataset):
        def __len__(self) -> int:
            return w.windows

        def __getitem__(self, i: int) -> Any:
            s = i * step
            return data[s : s + L], data[s + L : s + L + H]

    return _TorchImpl(_torch_loader(_Windows(), w.batch, threads, w.seed))


def build_numpy_series(path: Path, w: SeriesWorkload, threads: int) -> Impl:
    """NumPy: ``sliding_window_view`` of the series, a shuffled fancy index per batch
    (one gathering copy), input and target as slices of it.
    """
    series = _load_series(path)
    L = w.length
    view = np.lib.stride_tricks.sliding_window_view(series, (L + w.horizon, w.features))[:, 0]

    class _Numpy(_SeqImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            order = np.random.default_rng([w.seed, e]).permutation(w.windows) * w.step
            for k in range(w.batches_per_epoch):
                b = view[order[k * w.batch : (k + 1) * w.batch]]
                yield b[:, :L], b[:, L:]

    return _Numpy()


class _SeriesFloor(_ThreadedImpl):
    """The floor: copy the same bytes (``batch`` consecutive windows of ``length +
    horizon`` steps, in order) into a reused float32 buffer per batch.
    """

    def __init__(self, path: Path, w: SeriesWorkload, threads: int) -> None:
        super().__init__(threads)
        self.w = w
        series = _load_series(path)
        s0, s1 = series.strides
        span = w.length + w.horizon
        self.windows = np.lib.stride_tricks.as_strided(
            series, shape=(w.windows, span, w.features), strides=(w.step * s0, s0, s1), writeable=False
        )
        self.chunks = _split(w.batch, threads)
        self.bufs = [np.empty((w.batch, span, w.features), np.float32) for _ in range(2)]

    def _copy(self, out: np.ndarray, rows: np.ndarray, lo: int, hi: int) -> None:
        np.copyto(out[lo:hi], rows[lo:hi])

    def epoch(self, e: int) -> Iterator[Any]:
        b, L = self.w.batch, self.w.length
        for k in range(self.w.batches_per_epoch):
            out = self.bufs[k % 2]
            rows = self.windows[k * b : (k + 1) * b]
            self._run(self._copy, [(out, rows, lo, hi) for lo, hi in self.chunks])
            yield out[:, :L], out[:, L:]


def build_series_floor(path: Path, w: SeriesWorkload, threads: int) -> Impl:
    """Floor: copy of the same float32 bytes into reused buffers (see :class:`_SeriesFloor`)."""
    return _SeriesFloor(path, w, threads)


def series_specs(w: SeriesWorkload) -> list[Spec]:
    """Every row of ``zerofeed bench series``, zerofeed first, floors last.

    Example:
        >>> [s.name for s in series_specs(SeriesWorkload(workers=2))][:3]
        ['zerofeed', 'keras', 'tfdata']

    """
    t = w.threads()
    n = t if t > 1 else 2
    rows: list[tuple[str, str, str, Any, int, str]] = [
        ("zerofeed", "zerofeed", "zerofeed._zerofeed", build_zerofeed_series, t,
         "Windows(target=H) + Loader(shuffle=True)"),
        ("keras", "keras", "keras", build_keras, t, "keras timeseries_dataset_from_array + split map"),
        ("tfdata", "tfdata", "tensorflow", build_tfdata_series, t,
         "tf.data shuffled starts, batch, gather map, prefetch"),
        ("torch-w0", "torch", "torch", build_torch_series, 0,
         "torch DataLoader, map-style windows, 0 workers"),
        (f"torch-w{n}", "torch", "torch", build_torch_series, n,
         f"torch DataLoader, map-style windows, {n} workers"),
        ("numpy", "numpy", "numpy", build_numpy_series, 1, "sliding_window_view + fancy index per batch"),
    ]  # fmt: skip
    out = _specs(rows)
    for k in (1, n):
        desc = f"copy of the same float32 window bytes into reused buffers, {k} thread(s)"
        out.append(Spec(f"floor-{k}t", "floor", ("numpy",), build_series_floor, k, desc, None, False))
    return out


#: The ``--against`` groups of ``zerofeed bench series``.
SERIES_GROUPS: tuple[str, ...] = ("keras", "tfdata", "torch", "numpy")

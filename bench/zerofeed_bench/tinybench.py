"""``zerofeed bench tiny``: what a batch costs when there is almost nothing to copy.

The workload is tabular: ``rows`` rows of ``features`` float32 and an int64 label per row,
shuffled each epoch, in batches of ``batch`` (64: 2 KiB of features), the last partial one
dropped. Moving the bytes takes well under a microsecond, so the throughput (batches/s)
measures everything else a loader does per batch: the index, the Python loop step, the
allocation, the framework's tensor. Rows:

- ``zerofeed``, ``zerofeed-labels`` (a dict source ``{"x", "y"}``): ``zf.Loader(...).torch()``,
  the tensors the user gets; ``zerofeed-numpy``: ``iter(loader)``, NumPy arrays;
- ``numpy``, ``numpy-labels``: the loop a competent user writes (a NumPy generator's
  permutation per epoch, ``x[idx[s:s+b]]``, ``torch.from_numpy``), the reference;
- ``dataloader``, ``dataloader-labels``: PyTorch's fast way for tensors in memory;
- ``floor``: ``np.take(x, idx[s:s+b], axis=0, out=buf)`` into one reused buffer, one Python
  loop step plus the bytes, with no framework and no allocation.

Every row is run for two epochs of a small variant of the workload first and checked by
:func:`check_batches`, which knows nothing of any implementation's order.

Example:
    >>> w = TinyWorkload(rows=1000, features=3, batch=64)
    >>> w.batches_per_epoch, w.out_bytes_per_batch
    (15, 768)
    >>> x, y = make_rows(1000, 3)
    >>> impl = build_numpy_labels((x, y), w, 1)
    >>> bx, by = impl.to_numpy(next(iter(impl.epoch(0))))
    >>> row_of_label = np.argsort(y)  # y is a permutation: y[row_of_label[v]] == v
    >>> bx.shape, by.dtype.name, bool((bx == x[row_of_label[by]]).all())
    ((64, 3), 'int64', True)

"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed_bench.baselines import Impl, Spec
from zerofeed_bench.data import cache_dir, usable_cores
from zerofeed_bench.seqbaselines import _zerofeed_impl
from zerofeed_bench.seqdata import _cached

#: Bumped whenever the generated data changes, so stale caches are not reused.
TINY_DATA_VERSION = 1

Batch = tuple[np.ndarray, "np.ndarray | None"]  # features, labels (None: the row has none)


@dataclasses.dataclass(frozen=True)
class TinyWorkload:
    """Tiny shuffled batches of a ``(rows, features)`` float32 table and its int64 labels.

    Example:
        >>> TinyWorkload(rows=100, batch=64).batches_per_epoch  # drop_last
        1

    """

    rows: int = 100_000
    features: int = 8
    batch: int = 64
    epochs: int = 3
    workers: int = 0
    seed: int = 0

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch (the last partial batch is dropped)."""
        return self.rows // self.batch

    @property
    def out_bytes_per_batch(self) -> int:
        """Bytes of float32 features per batch (the labels rows move 8 bytes a row more)."""
        return self.batch * self.features * 4

    def threads(self) -> int:
        """Worker threads: ``workers`` or, when 0, the usable cores."""
        return self.workers if self.workers > 0 else usable_cores()

    def check_variant(self) -> TinyWorkload:
        """The small workload every row is checked on before it is timed: the same features,
        a batch that does not divide the rows (so ``drop_last`` has something to drop).
        """
        return dataclasses.replace(self, rows=1000, batch=min(self.batch, 24), epochs=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TinyWorkload:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def make_rows(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic ``(rows, features)`` float32 table and ``rows`` int64 labels.

    The labels are a permutation of ``0..rows-1``, each row's own, so the oracle can tell
    from a label which row it belongs to (the cost of gathering them does not depend on
    their values).

    Example:
        >>> x, y = make_rows(500, 4, seed=1)
        >>> x.dtype.name, x.shape, y.dtype.name, sorted(y.tolist()) == list(range(500))
        ('float32', (500, 4), 'int64', True)

    """
    rng = np.random.default_rng([seed, TINY_DATA_VERSION, 13])
    return rng.standard_normal((rows, features), dtype=np.float32), rng.permutation(rows).astype(np.int64)


def tiny_path(w: TinyWorkload, directory: Path | None = None) -> Path:
    """Where the ``.npz`` of ``w``'s table is cached (whether or not it exists yet)."""
    d = directory if directory is not None else cache_dir()
    return d / f"tiny-v{TINY_DATA_VERSION}-{w.rows}x{w.features}-s{w.seed}.npz"


def ensure_tiny(w: TinyWorkload, directory: Path | None = None) -> Path:
    """Write the table and labels of ``w`` once (``x`` and ``y`` of an ``.npz``); its path."""

    def write(tmp: Path) -> None:
        x, y = make_rows(w.rows, w.features, w.seed)
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y)

    return _cached(tiny_path(w, directory), write)


def load_tiny(path: Path, w: TinyWorkload) -> tuple[Any, Any]:
    """The table and labels in memory, as every builder gets them (and keeps them alive)."""
    with np.load(path) as f:
        data = (np.ascontiguousarray(f["x"]), np.ascontiguousarray(f["y"]))
    return data, data


# ---------------------------------------------------------------------------- the oracle


def check_batches(
    x: np.ndarray,
    labels: np.ndarray,
    epochs: Sequence[Iterable[Batch]],
    *,
    batch: int,
    batches_per_epoch: int,
) -> dict[str, Any]:
    """Check epochs of ``(features, labels or None)`` batches against the table.

    Each batch must be ``batch`` rows of float32 features that are rows of ``x`` (compared
    exactly, byte for byte) and, where labels come, int64 labels that are those rows' own.
    No row may come twice in an epoch (a row whose bytes occur ``k`` times in ``x`` at most
    ``k`` times), an epoch has ``batches_per_epoch`` batches, and the order must be shuffled:
    not the table's, and not the same in two epochs.

    Example:
        >>> x, y = make_rows(40, 2)
        >>> epoch = [(x[[3, 1]], y[[3, 1]]), (x[[0, 2]], None)]
        >>> check_batches(x, y, [epoch], batch=2, batches_per_epoch=2)["passed"]
        True
        >>> swapped = [(x[[3, 1]], y[[1, 3]])]
        >>> check_batches(x, y, [swapped], batch=2, batches_per_epoch=1)["problems"][0]
        'batch 0 of epoch 0, sample 0: label 0 is not the label of that row'

    """
    where: dict[bytes, list[int]] = {}
    for i in range(x.shape[0]):
        where.setdefault(x[i].tobytes(), []).append(i)
    by_label = {int(v): i for i, v in enumerate(labels)}
    want_x = (batch, *x.shape[1:])
    problems: list[str] = []
    orders: list[list[bytes]] = []
    for e, batches in enumerate(epochs):
        used: Counter[bytes] = Counter()
        order: list[bytes] = []
        n = 0
        for b, (bx, by) in enumerate(batches):
            n += 1
            at = f"batch {b} of epoch {e}"
            bx = np.asarray(bx)
            if bx.shape != want_x or bx.dtype != np.float32:
                problems.append(f"{at}: features are {bx.dtype}{bx.shape}, expected float32{want_x}")
                continue
            if by is not None:
                by = np.asarray(by)
                if by.shape != (batch,) or by.dtype != np.int64:
                    problems.append(f"{at}: labels are {by.dtype}{by.shape}, expected int64({batch},)")
                    by = None
            for s in range(batch):
                key = bx[s].tobytes()
                rows = where.get(key)
                if rows is None:
                    problems.append(f"{at}, sample {s}: the features are not a row of the data")
                    continue
                used[key] += 1
                order.append(key)
                if used[key] > len(rows):
                    problems.append(f"{at}, sample {s}: row {rows[0]} came twice in the epoch")
                if by is not None and by_label.get(int(by[s]), -1) not in rows:
                    problems.append(f"{at}, sample {s}: label {int(by[s])} is not the label of that row")
        if n != batches_per_epoch:
            problems.append(f"epoch {e} gave {n} batches, expected {batches_per_epoch}")
        orders.append(order)
    in_order = [x[i].tobytes() for i in range(min(x.shape[0], len(orders[0])))] if orders else []
    if orders and len(orders[0]) > 1 and orders[0] == in_order:
        problems.append("epoch 0 is the table in order: not shuffled")
    if len(orders) > 1 and len(orders[0]) > 1 and orders[0] == orders[1]:
        problems.append("epochs 0 and 1 came in the same order: not reshuffled each epoch")
    samples = sum(len(o) for o in orders)
    return {"passed": not problems, "samples": samples, "problems": problems[:10]}


# ------------------------------------------------------------------------------ builders


def _numpy_of(v: Any) -> np.ndarray:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


def _batch(batch: Any) -> Batch:
    """``(features, labels or None)`` as NumPy, of a features batch, a dict ``{"x", "y"}`` or
    a pair (torch tensors or arrays).
    """
    if isinstance(batch, dict):
        batch = (batch["x"], batch["y"])
    if isinstance(batch, (tuple, list)):
        return (_numpy_of(batch[0]), _numpy_of(batch[1]) if len(batch) > 1 else None)
    return (_numpy_of(batch), None)


class _TinyImpl(Impl):
    """An implementation yielding what :func:`_batch` reads."""

    def to_numpy(self, batch: Any) -> Any:
        return _batch(batch)


def _zerofeed(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, labels: bool,
              convert: Callable[[Any], Iterator[Any]]) -> Impl:  # fmt: skip
    import zerofeed as zf

    x, y = data
    loader = zf.Loader(
        {"x": x, "y": y} if labels else x,
        batch_size=w.batch,
        shuffle=True,
        seed=w.seed,
        drop_last=True,
        workers=w.workers or None,
    )

    return _zerofeed_impl(loader, convert, _batch)


def build_zerofeed(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """``zf.Loader(x, batch_size, shuffle=True, seed, drop_last=True).torch()``: torch tensors."""
    return _zerofeed(data, w, False, lambda ld: ld.torch())


def build_zerofeed_labels(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """The same over ``{"x": x, "y": labels}``: a dict of two torch tensors per batch."""
    return _zerofeed(data, w, True, lambda ld: ld.torch())


def build_zerofeed_numpy(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """The same as :func:`build_zerofeed`, iterated as ``iter(loader)``: NumPy arrays."""
    return _zerofeed(data, w, False, iter)


def _numpy_loop(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, labels: bool) -> Impl:
    import torch

    x, y = data
    b, n = w.batch, w.batches_per_epoch * w.batch

    class _Numpy(_TinyImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            idx = np.random.default_rng([w.seed, e]).permutation(x.shape[0])
            if labels:
                for s in range(0, n, b):
                    i = idx[s : s + b]
                    yield torch.from_numpy(x[i]), torch.from_numpy(y[i])
            else:
                for s in range(0, n, b):
                    yield torch.from_numpy(x[idx[s : s + b]])

    return _Numpy()


def build_numpy(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """A competent user's loop: a NumPy generator's permutation per epoch, ``x[idx[s:s+b]]``
    (one gathering copy), ``torch.from_numpy`` (no copy).
    """
    return _numpy_loop(data, w, False)


def build_numpy_labels(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """:func:`build_numpy` with the labels gathered by the same slice of the permutation."""
    return _numpy_loop(data, w, True)


def _dataloader(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, labels: bool) -> Impl:
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    x, y = data
    ds = TensorDataset(*((torch.from_numpy(x), torch.from_numpy(y)) if labels else (torch.from_numpy(x),)))
    sampler = BatchSampler(
        RandomSampler(ds, generator=torch.Generator().manual_seed(w.seed)), w.batch, drop_last=True
    )
    loader = DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0)

    class _DataLoader(_TinyImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            yield from loader

    return _DataLoader()


def build_dataloader(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """PyTorch ``DataLoader`` over a ``TensorDataset``, the fast way for tensors in memory:
    a ``BatchSampler(RandomSampler)`` as ``sampler=`` with ``batch_size=None``, so each batch
    is one fancy index of the tensor instead of ``batch`` ``__getitem__`` calls and a
    collate; 0 workers (a worker process only adds a pickle per batch here).
    """
    return _dataloader(data, w, False)


def build_dataloader_labels(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """:func:`build_dataloader` over ``TensorDataset(x, labels)``: a pair per batch."""
    return _dataloader(data, w, True)


def build_floor(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """The floor: ``np.take(x, idx[s:s+b], axis=0, out=buf)`` into one reused buffer.

    The same permutation per epoch as :func:`build_numpy`, one Python loop step and the bytes,
    no framework, no allocation; the oracle copies each batch before the next overwrites it.
    """
    x, _ = data
    b, n = w.batch, w.batches_per_epoch * w.batch
    buf = np.empty((b, *x.shape[1:]), x.dtype)

    class _Floor(_TinyImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            idx = np.random.default_rng([w.seed, e]).permutation(x.shape[0])
            for s in range(0, n, b):
                np.take(x, idx[s : s + b], axis=0, out=buf)
                yield buf

    return _Floor()


def tiny_specs(w: TinyWorkload) -> list[Spec]:
    """Every row of ``zerofeed bench tiny``, zerofeed first, the floor last.

    Example:
        >>> [s.name for s in tiny_specs(TinyWorkload())]  # doctest: +NORMALIZE_WHITESPACE
        ['zerofeed', 'zerofeed-labels', 'zerofeed-numpy', 'numpy', 'numpy-labels', 'dataloader',
         'dataloader-labels', 'floor']

    """
    t = w.threads()
    rows: list[tuple[str, str, str, Any, int, str]] = [
        ("zerofeed", "zerofeed", "zerofeed._zerofeed,torch", build_zerofeed, t,
         "Loader(x, shuffle=True, drop_last=True).torch()"),
        ("zerofeed-labels", "zerofeed", "zerofeed._zerofeed,torch", build_zerofeed_labels, t,
         "Loader({'x': x, 'y': labels}, ...).torch()"),
        ("zerofeed-numpy", "zerofeed", "zerofeed._zerofeed", build_zerofeed_numpy, t,
         "iter(Loader(x, ...)): NumPy arrays"),
        ("numpy", "numpy", "torch", build_numpy, 1, "permutation per epoch, x[idx[s:s+b]], torch.from_numpy"),
        ("numpy-labels", "numpy", "torch", build_numpy_labels, 1, "the same, labels gathered too"),
        ("dataloader", "torch", "torch", build_dataloader, 0,
         "DataLoader(TensorDataset, sampler=BatchSampler(RandomSampler), batch_size=None)"),
        ("dataloader-labels", "torch", "torch", build_dataloader_labels, 0,
         "the same over TensorDataset(x, labels)"),
        ("floor", "floor", "numpy", build_floor, 1, "np.take(x, idx[s:s+b], axis=0, out=reused buffer)"),
    ]  # fmt: skip
    return [Spec(a, g, tuple(m.split(",")), bld, th, d) for a, g, m, bld, th, d in rows]


#: The ``--against`` groups of ``zerofeed bench tiny``.
TINY_GROUPS: tuple[str, ...] = ("numpy", "torch")


# ------------------------------------------------------------------- scenario callbacks


def tiny_check(spec: Spec, w: TinyWorkload) -> dict[str, Any]:
    """Run two epochs of ``spec`` on the check variant of ``w`` through :func:`check_batches`."""
    cw = w.check_variant()
    x, y = make_rows(cw.rows, cw.features, cw.seed)
    impl = spec.build((x, y), cw, spec.threads)
    try:
        epochs = run_epochs(impl, 2)
        expected = int(getattr(impl, "batches_per_epoch", cw.batches_per_epoch))
    finally:
        impl.close()
    return check_batches(x, y, epochs, batch=cw.batch, batches_per_epoch=expected)


def run_epochs(impl: Impl, n: int) -> list[list[Batch]]:
    """Epochs ``0..n-1`` of ``impl`` as NumPy ``(features, labels or None)``, each batch
    copied (a row may hand out one buffer again and again).
    """
    out: list[list[Batch]] = []
    for e in range(n):
        batches = (impl.to_numpy(b) for b in impl.epoch(e))
        out.append([(np.array(bx), None if by is None else np.array(by)) for bx, by in batches])
    return out


def tiny_first(impl: Impl, batch: Any, w: TinyWorkload) -> str | None:
    """A problem with the first timed batch (its shape or dtype), or ``None``."""
    bx, by = impl.to_numpy(batch)
    got = (str(bx.dtype), tuple(bx.shape))
    if got != ("float32", (w.batch, w.features)):
        return f"first batch is {got[0]}{got[1]}, expected float32{(w.batch, w.features)}"
    if by is not None and (by.dtype != np.int64 or by.shape != (w.batch,)):
        return f"first batch's labels are {by.dtype}{by.shape}, expected int64({w.batch},)"
    return None

"""Ray Data with zerofeed: fused ops as a ``map_batches`` transform, and device batches.

Ray Train needs nothing from this module: inside a ``TorchTrainer`` (or any Ray Train
worker), ``zf.Shard.from_env()`` reads the worker's rank from ``ray.train.get_context()``,
so each worker builds its own :class:`zerofeed.Loader` over its shard. For data that lives in
a ``ray.data.Dataset`` instead:

* :func:`map_ops` runs zerofeed's fused ops (crop, flip, normalize, cast, layout) on every
  batch of the dataset, each sample keyed like the :class:`~zerofeed.Loader` keys it (seed,
  epoch and the sample's dataset index from a key column), so both give the same results;
* :func:`device_batches` turns a Ray Data iterator (``streaming_split`` shard,
  ``ray.train.get_dataset_shard``) into batches in zerofeed-owned memory: 64-byte aligned
  buffers on the CPU (every framework takes them without a copy), pinned buffers copied to
  the GPU for ``device="cuda:N"``. A batch you keep never changes.

Importing :mod:`zerofeed` does not import this module, nor Ray; this module imports Ray only
when a function needs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import cuda as _cuda
from .errors import PipelineError
from .frameworks import require, to_jax, to_numpy, to_tensorflow, to_torch
from .loader import Loader
from .memory import empty
from .ops import Op

_CONVERT = {"numpy": to_numpy, "torch": to_torch, "jax": to_jax, "tensorflow": to_tensorflow}


class _KeyedLoader(Loader):
    """A Loader whose sample ``i`` has the random ops of dataset sample ``keys[i]``."""

    def __init__(self, keys: list[int], source: Any, **options: Any) -> None:
        self._op_keys = keys
        super().__init__(source, **options)


class FusedOps:
    """A ``map_batches`` callable: zerofeed's fused ops on a batch of NumPy columns.

    ``ops`` is a list (for the column ``"image"``) or a dict of column names to lists.
    Columns without ops pass through untouched (no copy). Sample ``i`` of a batch is keyed by
    ``batch[key][i]``, its index in the dataset, so its random crop and flip are the ones a
    ``zf.Loader(..., seed=seed)`` over the whole dataset gives it in ``epoch``.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> from zerofeed.ray import FusedOps
        >>> fused = FusedOps([zf.CenterCrop(2, 2)])
        >>> out = fused({"image": np.zeros((4, 8, 8, 3), np.uint8), "id": np.arange(4)})
        >>> out["image"].shape, out["id"].tolist()
        ((4, 2, 2, 3), [0, 1, 2, 3])

    """

    def __init__(
        self,
        ops: Sequence[Op] | Mapping[str, Sequence[Op]],
        *,
        seed: int = 0,
        epoch: int = 0,
        key: str = "id",
        workers: int = 1,
    ) -> None:
        self.ops = dict(ops) if isinstance(ops, Mapping) else {"image": list(ops)}
        self.seed, self.epoch, self.key, self.workers = seed, epoch, key, workers

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The batch with the ops applied to their columns (run by Ray's workers)."""
        if not isinstance(batch, Mapping):
            raise PipelineError(
                f"map_batches gave a {type(batch).__name__}; use batch_format='numpy'", "batch_format"
            )
        missing = sorted({self.key, *self.ops} - set(batch))
        if missing:
            raise PipelineError(
                f"the batch has no column {missing}; its columns are {sorted(batch)} (the key column "
                f"{self.key!r} holds each row's dataset index: add it, e.g. with "
                "ds.add_column or an 'id' column, or pass key=...)",
                "key" if self.key in missing else "ops",
            )
        keys = np.asarray(batch[self.key])
        if keys.ndim != 1 or keys.dtype.kind not in "iu" or (keys.size and int(keys.min()) < 0):
            raise PipelineError(
                f"key column {self.key!r} must hold non-negative integer dataset indices, "
                f"got {keys.dtype} of shape {keys.shape}",
                "key",
            )
        out = dict(batch)
        if len(keys) == 0 or not self.ops:
            return out
        loader = _KeyedLoader(
            keys.tolist(),
            {name: batch[name] for name in self.ops},
            batch_size=len(keys),
            ops=self.ops,
            seed=self.seed,
            workers=self.workers,
            prefetch=0,
        )
        loader.set_epoch(self.epoch)
        with loader:
            out.update(next(iter(loader)))
        return out


def map_ops(
    dataset: Any,
    ops: Sequence[Op] | Mapping[str, Sequence[Op]],
    *,
    seed: int = 0,
    epoch: int = 0,
    key: str = "id",
    **map_batches_args: Any,
) -> Any:
    """``dataset.map_batches`` running :class:`FusedOps` (lazy, like every Ray Data transform).

    Batches reach the ops as NumPy views of Ray's Arrow blocks (``zero_copy_batch=True``:
    fixed-shape tensor columns are not copied) and leave as NumPy arrays over zerofeed's
    batch buffers, which Ray wraps into the output block without a copy; Ray then copies the
    finished block once into its object store, as it does for every task's output.
    ``map_batches_args`` go to ``map_batches`` (``batch_size``, ``concurrency``, ...).

    Example:
        >>> import numpy as np, zerofeed as zf, zerofeed.ray
        >>> import ray  # doctest: +SKIP
        >>> ds = ray.data.from_items([{"image": np.zeros((8, 8, 3), np.uint8), "id": i}
        ...                           for i in range(4)])  # doctest: +SKIP
        >>> out = zerofeed.ray.map_ops(ds, [zf.RandomCrop(4, 4)], seed=1)  # doctest: +SKIP
        >>> out.take(1)[0]["image"].shape  # doctest: +SKIP
        (4, 4, 3)

    """
    if not hasattr(dataset, "map_batches"):
        raise PipelineError(f"dataset must be a ray.data.Dataset, got {type(dataset).__name__}", "dataset")
    fused = FusedOps(ops, seed=seed, epoch=epoch, key=key)
    map_batches_args.setdefault("batch_format", "numpy")
    map_batches_args.setdefault("zero_copy_batch", True)
    return dataset.map_batches(fused, **map_batches_args)


def device_batches(
    iterator: Any,
    *,
    batch_size: int,
    device: str = "cpu",
    to: str = "numpy",
    drop_last: bool = False,
    prefetch_batches: int = 1,
) -> Iterator[dict[str, Any]]:
    """Batches of a Ray Data iterator in zerofeed-owned memory, ready for ``device``.

    ``iterator`` is a ``ray.data.DataIterator`` (a ``streaming_split`` shard, or
    ``ray.train.get_dataset_shard(...)`` in a Ray Train worker) or a ``Dataset``. Each column
    of each batch is copied once into fresh zerofeed memory: 64-byte aligned on the CPU
    (``to="torch"``, ``"jax"``, ``"tensorflow"`` then take it without another copy), pinned and
    sent to the GPU for ``device="cuda:N"`` (``to`` must then be ``"torch"`` or ``"jax"``).
    Ray's own batch memory may be reused or freed once the next batch is fetched; these buffers
    belong to the batch, so a batch you keep never changes.

    Example:
        >>> import zerofeed.ray
        >>> import ray  # doctest: +SKIP
        >>> shard = ray.data.range(8).streaming_split(1)[0]  # doctest: +SKIP
        >>> [b["id"].tolist() for b in zerofeed.ray.device_batches(shard, batch_size=4)]  # doctest: +SKIP
        [[0, 1, 2, 3], [4, 5, 6, 7]]

    """
    if not hasattr(iterator, "iter_batches"):
        raise PipelineError(
            f"iterator must be a ray.data.DataIterator (streaming_split, get_dataset_shard) or a "
            f"Dataset, got {type(iterator).__name__}",
            "iterator",
        )
    if to not in _CONVERT:
        raise PipelineError(f"to={to!r} must be one of {sorted(_CONVERT)}", "to")
    if device != "cpu" and to not in ("torch", "jax"):
        raise PipelineError(f"device={device!r} gives GPU batches: use to='torch' or to='jax'", "to")
    index = _cuda.parse_device(device)
    if to != "numpy":
        require(to)
    convert = _CONVERT[to]

    def owned(column: np.ndarray) -> Any:
        column = np.asarray(column)
        if index is None:
            buffer = empty(column.shape, column.dtype)
        else:
            buffer = _cuda.pinned_empty(column.shape, column.dtype, device)
        np.copyto(buffer, column)
        return convert(buffer if index is None else _cuda.to_device(buffer, device))

    batches = iterator.iter_batches(
        batch_size=batch_size,
        batch_format="numpy",
        drop_last=drop_last,
        prefetch_batches=prefetch_batches,
    )
    for batch in batches:
        yield {name: owned(column) for name, column in batch.items()}

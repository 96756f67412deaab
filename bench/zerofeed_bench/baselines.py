"""The implementations ``zerofeed bench`` times: zerofeed, its peers, and the copy floor.

Each is written the way a competent user would write it for this workload (random crop,
random horizontal flip, per-channel mean/std normalize to float32, batches, shuffled
epochs), and each is built by one function ``build_<name>(images, workload, threads)``
returning an :class:`Impl`.

The zerofeed row is built by :func:`build_zerofeed` alone: adjust it there if the
``zerofeed.Loader`` API changes.

Example:
    >>> from zerofeed_bench.data import Workload, make_images
    >>> w = Workload(images=8, height=24, width=24, crop_h=16, crop_w=16, batch=4)
    >>> impl = build_numpy(make_images(8, 24, 24), w, threads=1)
    >>> [b.shape for b in impl.epoch(0)]
    [(4, 16, 16, 3), (4, 16, 16, 3)]

"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from zerofeed_bench.data import Workload


class Impl:
    """One implementation, ready to run epochs.

    ``epoch(e)`` yields the batches of epoch ``e`` in whatever type the tool produces;
    ``to_numpy`` turns one into a NumPy array (only used by the correctness check).
    """

    def epoch(self, e: int) -> Iterator[Any]:
        """Yield the batches of epoch ``e``."""
        raise NotImplementedError

    def to_numpy(self, batch: Any) -> np.ndarray:
        """Convert one batch to NumPy (copying if the tool needs it)."""
        return np.asarray(batch)

    def stats(self) -> dict[str, Any]:
        """Counters the tool reports itself (copies, bytes copied), if any."""
        return {}

    def close(self) -> None:
        """Release threads, workers and buffers."""


Builder = Callable[[np.ndarray, Workload, int], Impl]


@dataclasses.dataclass(frozen=True)
class Spec:
    """A row of the benchmark: name, the ``--against`` group, what it needs installed."""

    name: str
    group: str
    modules: tuple[str, ...]
    build: Builder
    threads: int
    description: str
    copies: str | None = None
    timed_check: bool = True

    def missing(self) -> str | None:
        """Why this row cannot run here (a module that is not installed), or ``None``."""
        for m in self.modules:
            try:
                if importlib.util.find_spec(m) is None:
                    return f"{m} is not installed"
            except (ImportError, ValueError) as e:
                return f"{m} cannot be imported: {e}"
        return None


def _draws(w: Workload, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Order, crop rows, crop columns and flips of epoch ``e`` (NumPy generator)."""
    rng = np.random.default_rng([w.seed, e])
    n = w.images
    order = rng.permutation(n)
    ys = rng.integers(0, w.height - w.out_h + 1, n) if "crop" in w.ops else np.zeros(n, int)
    xs = rng.integers(0, w.width - w.out_w + 1, n) if "crop" in w.ops else np.zeros(n, int)
    flips = rng.random(n) < 0.5 if "flip" in w.ops else np.zeros(n, bool)
    return order, ys, xs, flips


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``parts`` contiguous chunks."""
    step = -(-n // parts)
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


class _ThreadedImpl(Impl):
    """An implementation that splits each batch across ``threads`` Python threads
    (NumPy's ufuncs release the GIL); one thread runs inline, with no pool.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def _run(self, work: Callable[..., None], calls: list[tuple[Any, ...]]) -> None:
        """Run ``work(*args)`` for every ``args`` in ``calls``, in parallel when pooled."""
        if self.pool is None:
            for args in calls:
                work(*args)
            return
        for future in [self.pool.submit(work, *args) for args in calls]:
            future.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class _NumpyImpl(_ThreadedImpl):
    """Tuned NumPy: per sample, one small uint8 copy and two ufuncs over whole rows.

    Broadcasting a ``(3,)`` mean over ``(h, w, 3)`` makes NumPy's inner loop 3 elements
    long (~6x slower), so the sample is first copied (cropped, flipped per channel) into a
    contiguous per-thread ``uint8`` scratch, then handled as ``(h, w*3)`` rows against
    mean and 1/std tiled to ``w*3``: one ufunc casts and subtracts into the reused batch
    buffer, one multiplies in place. The samples of a batch are split across threads
    (ufuncs release the GIL).
    """

    def __init__(self, images: np.ndarray, w: Workload, threads: int) -> None:
        super().__init__(threads)
        self.images, self.w = images, w
        h, wd = w.out_h, w.out_w
        self.mean_row = np.tile(np.asarray(w.mean, np.float32), wd)
        self.inv_row = np.tile((1.0 / np.asarray(w.std, np.float64)).astype(np.float32), wd)
        shape = (w.batch, h, wd, 3)
        self.bufs = [np.empty(shape, np.float32) for _ in range(2)]
        self.scratch = [np.empty((h, wd, 3), np.uint8) for _ in range(max(1, threads))]

    def _fill(self, out: np.ndarray, base: int, lo: int, hi: int, draws: tuple, slot: int) -> None:
        order, ys, xs, flips = draws
        h, wd = self.w.out_h, self.w.out_w
        tmp = self.scratch[slot]
        rows = tmp.reshape(h, wd * 3)
        for j in range(lo, hi):
            k = base + j
            y, x = ys[k], xs[k]
            src = self.images[order[k], y : y + h, x : x + wd]
            if flips[k]:
                src = src[:, ::-1]
            for c in range(3):
                np.copyto(tmp[..., c], src[..., c])
            o = out[j].reshape(h, wd * 3)
            np.subtract(rows, self.mean_row, out=o, dtype=np.float32)
            np.multiply(o, self.inv_row, out=o)

    def epoch(self, e: int) -> Iterator[np.ndarray]:
        draws = _draws(self.w, e)
        chunks = _split(self.w.batch, self.threads)
        for b in range(self.w.batches_per_epoch):
            out = self.bufs[b % 2]
            base = b * self.w.batch
            self._run(self._fill, [(out, base, lo, hi, draws, i) for i, (lo, hi) in enumerate(chunks)])
            yield out


def build_numpy(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Tuned NumPy with ``threads`` threads (see :class:`_NumpyImpl`)."""
    return _NumpyImpl(images, w, threads)


#: ``zf.Loader``'s default ``prefetch``: the pool floor's ring follows the loader's pool.
POOL_PREFETCH = 2


def l3_bytes() -> int:
    """The last-level cache of this machine in bytes (sysconf; 32 MiB when it does not say).

    Example:
        >>> l3_bytes() > 0
        True

    """
    try:
        size = os.sysconf("SC_LEVEL3_CACHE_SIZE")
    except (ValueError, OSError):
        size = 0
    return size if size > 0 else 32 << 20


class _FloorImpl(_ThreadedImpl):
    """The floor: ``np.copyto`` of the batch's source bytes to the output dtype, nothing else.

    Threads split the batch. Two kinds:

    - the **floor** (``floor-Nt``, the bound the table's ratios use): each batch reads the
      next batch-sized stretch of the dataset itself (so the source is no more cache
      resident than a loader's), and writes into a ring of batch buffers spanning twice
      the last-level cache plus one, pre-faulted: memory a consumer can keep (a loader must
      keep at least ``prefetch + 1`` batches alive), so every write goes to memory.
    - the **cached floor** (``floor-cached-Nt``): one cache-sized source and two reused
      batch buffers, part of which stays in cache: faster than memory, not a bound for a
      loader whose batches outlive the next one; shown for comparison.
    - the **pool floor** (``floor-pool-Nt``): the floor's source, written into a ring of as
      many batch buffers as zerofeed keeps in flight with N workers (``prefetch`` 2 + N + 2,
      its pool after the first epoch): the same bytes in flight as the loader, so a
      last-level cache large enough to keep them would serve both alike.

    2-byte outputs (``float16`` / ``bfloat16``) copy into ``uint16``: the cheapest
    conversion NumPy has that writes the same output bytes.
    """

    def __init__(
        self, images: np.ndarray, w: Workload, threads: int, kind: Literal["memory", "cached", "pool"]
    ) -> None:
        super().__init__(threads)
        self.w = w
        n = w.batch * w.out_h * w.out_w * 3
        out = np.float32 if w.out_dtype == "float32" else np.uint16
        self.flat = np.asarray(images).reshape(-1)
        if kind == "cached":
            reps = -(-n // self.flat.size)
            self.flat = np.ascontiguousarray(np.tile(self.flat[: min(n, self.flat.size)], reps)[:n])
            ring = 2
        elif kind == "pool":
            ring = POOL_PREFETCH + threads + 2
        else:
            ring = max(2, -(-2 * l3_bytes() // (n * np.dtype(out).itemsize)) + 1)
        self.n = n
        self.bufs = [np.empty(n, out) for _ in range(ring)]
        for buf in self.bufs:  # faulted in now (np.zeros would map zero pages lazily)
            buf.fill(0)
        self.chunks = _split(n, threads)
        self.next_source = 0

    def _copy(self, out: np.ndarray, src: np.ndarray, lo: int, hi: int) -> None:
        np.copyto(out[lo:hi], src[lo:hi], casting="unsafe")

    def _source(self) -> np.ndarray:
        """The next batch-sized stretch of the source, wrapping round it."""
        if self.flat.size <= self.n:
            return self.flat[: self.n]
        if self.next_source + self.n > self.flat.size:
            self.next_source = 0
        src = self.flat[self.next_source : self.next_source + self.n]
        self.next_source += self.n
        return src

    def epoch(self, e: int) -> Iterator[np.ndarray]:
        for b in range(self.w.batches_per_epoch):
            out = self.bufs[b % len(self.bufs)]
            src = self._source()
            self._run(self._copy, [(out, src, lo, hi) for lo, hi in self.chunks])
            yield out


def build_floor(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build the copy floor with ``threads`` threads (see :class:`_FloorImpl`).

    It copies the dataset's own bytes into memory a consumer can keep.
    """
    return _FloorImpl(images, w, threads, "memory")


def build_floor_cached(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build the cached floor: a cache-sized source into two reused buffers (for comparison)."""
    return _FloorImpl(images, w, threads, "cached")


def build_floor_pool(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build the pool floor: the floor's copy into as many buffers as zerofeed keeps in flight."""
    return _FloorImpl(images, w, threads, "pool")


def build_zerofeed(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build the zerofeed row: ``zf.Loader`` with the fused ops; adjust here if the API moves.

    ``threads`` is passed as ``workers`` (``None`` lets zerofeed choose when the user
    gave no ``--workers``).
    """
    import zerofeed as zf

    ops: list[Any] = []
    if "crop" in w.ops:
        ops.append(zf.RandomCrop(w.crop_h, w.crop_w))
    if "flip" in w.ops:
        ops.append(zf.RandomFlip())
    # mean/std are in pixel units: scale=1.0 (zf.Normalize's default 1/255 expects [0, 1])
    ops.append(zf.Normalize(list(w.mean), list(w.std), scale=1.0, dtype=w.out_dtype))
    if w.chw:
        ops.append(zf.ToCHW())
    loader = zf.Loader(
        images,
        batch_size=w.batch,
        ops=ops,
        shuffle=True,
        seed=w.seed,
        drop_last=True,
        workers=w.workers or None,
        prefetch=2,
    )

    class _Zerofeed(Impl):
        def epoch(self, e: int) -> Iterator[Any]:
            loader.set_epoch(e)
            yield from loader

        def stats(self) -> dict[str, Any]:
            st = getattr(loader, "stats", None)
            if st is None:
                return {}
            try:
                return {str(k): v for k, v in dict(st).items()}
            except (TypeError, ValueError):
                return {"stats": repr(st)}

        def close(self) -> None:
            loader.close()

    return _Zerofeed()


def build_tfdata(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build tf.data: ``from_tensor_slices``, ``shuffle``, ``map``, ``batch``, ``prefetch``.

    ``from_tensor_slices`` over indices, ``map`` and ``prefetch`` with AUTOTUNE. The map
    slices only the crop out of the image tensor (``tf.slice``), so no whole image is
    copied per sample.
    """
    import tensorflow as tf

    tf.random.set_seed(w.seed)
    imgs = tf.convert_to_tensor(np.asarray(images))
    mean = tf.constant(w.mean, tf.float32)
    inv_std = tf.constant([1.0 / s for s in w.std], tf.float32)
    h, wd = w.out_h, w.out_w
    do_crop, do_flip = "crop" in w.ops, "flip" in w.ops

    def aug(i: Any) -> Any:
        if do_crop:
            y = tf.random.uniform((), 0, w.height - h + 1, tf.int32)
            x = tf.random.uniform((), 0, w.width - wd + 1, tf.int32)
        else:
            y = x = tf.constant(0, tf.int32)
        c = tf.slice(imgs, tf.stack([tf.cast(i, tf.int32), y, x, 0]), [1, h, wd, 3])[0]
        if do_flip:
            c = tf.image.random_flip_left_right(c)
        return (tf.cast(c, tf.float32) - mean) * inv_std

    auto = tf.data.AUTOTUNE
    ds = (
        tf.data.Dataset.from_tensor_slices(tf.range(w.images))
        .shuffle(w.images, seed=w.seed, reshuffle_each_iteration=True)
        .map(aug, num_parallel_calls=auto)
        .batch(w.batch, drop_remainder=True)
        .prefetch(auto)
    )

    class _TF(Impl):
        def epoch(self, e: int) -> Iterator[Any]:
            yield from ds

        def to_numpy(self, batch: Any) -> np.ndarray:
            return batch.numpy()

    return _TF()


def build_torch(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """PyTorch ``DataLoader`` with ``threads`` worker processes (0 = in the main process).

    The dataset wraps the whole array as one tensor; ``__getitem__`` slices the crop,
    flips with ``torch.flip``, casts and normalizes in place; the RNG is torch's, which
    the DataLoader seeds per worker. Workers are persistent.
    """
    import warnings

    import torch
    from torch.utils.data import DataLoader, Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memmap: we never write
        data = torch.from_numpy(images) if images.flags.writeable else torch.as_tensor(images)
    mean = torch.tensor(w.mean, dtype=torch.float32)
    std = torch.tensor(w.std, dtype=torch.float32)
    h, wd = w.out_h, w.out_w
    do_crop, do_flip = "crop" in w.ops, "flip" in w.ops

    class _DS(Dataset):
        def __len__(self) -> int:
            return w.images

        def __getitem__(self, i: int) -> Any:
            y = int(torch.randint(0, w.height - h + 1, ())) if do_crop else 0
            x = int(torch.randint(0, w.width - wd + 1, ())) if do_crop else 0
            c = data[i, y : y + h, x : x + wd]
            if do_flip and bool(torch.rand(()) < 0.5):
                c = torch.flip(c, (1,))
            return c.float().sub_(mean).div_(std)

    loader = DataLoader(
        _DS(),
        batch_size=w.batch,
        shuffle=True,
        drop_last=True,
        num_workers=threads,
        persistent_workers=threads > 0,
        prefetch_factor=2 if threads > 0 else None,
        generator=torch.Generator().manual_seed(w.seed),
    )

    class _Torch(Impl):
        def epoch(self, e: int) -> Iterator[Any]:
            yield from loader

        def to_numpy(self, batch: Any) -> np.ndarray:
            return batch.numpy()

        def close(self) -> None:
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()

    return _Torch()


def build_jax(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build JAX: one ``jit`` per batch, ``vmap`` of ``lax.dynamic_slice``.

    The dataset goes on the (CPU) device once; the jitted function draws the
    crops and flips with ``jax.random`` and ``vmap``s ``lax.dynamic_slice`` so only the
    crops are gathered; the batch is ready when ``block_until_ready`` returns.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    dev = jax.device_put(np.asarray(images))
    h, wd = w.out_h, w.out_w
    mean = jnp.asarray(w.mean, jnp.float32)
    inv_std = jnp.asarray([1.0 / s for s in w.std], jnp.float32)
    do_crop, do_flip = "crop" in w.ops, "flip" in w.ops

    @jax.jit
    def make_batch(imgs: jax.Array, idx: jax.Array, key: jax.Array) -> jax.Array:
        ky, kx, kf = jax.random.split(key, 3)
        n = idx.shape[0]
        zeros = jnp.zeros((n,), jnp.int32)
        ys = jax.random.randint(ky, (n,), 0, w.height - h + 1) if do_crop else zeros
        xs = jax.random.randint(kx, (n,), 0, w.width - wd + 1) if do_crop else zeros
        fl = jax.random.bernoulli(kf, 0.5, (n,)) if do_flip else zeros.astype(bool)

        def one(i: jax.Array, y: jax.Array, x: jax.Array, f: jax.Array) -> jax.Array:
            c = lax.dynamic_slice(imgs, (i, y, x, 0), (1, h, wd, 3))[0]
            c = jnp.where(f, c[:, ::-1], c)
            return (c.astype(jnp.float32) - mean) * inv_std

        return jax.vmap(one)(idx, ys, xs, fl)

    base = jax.random.key(w.seed)

    class _Jax(Impl):
        def epoch(self, e: int) -> Iterator[Any]:
            order = np.random.default_rng([w.seed, e]).permutation(w.images).astype(np.int32)
            for b in range(w.batches_per_epoch):
                idx = order[b * w.batch : (b + 1) * w.batch]
                key = jax.random.fold_in(base, e * w.batches_per_epoch + b)
                yield make_batch(dev, idx, key).block_until_ready()

    return _Jax()


def build_dali(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build NVIDIA DALI on the CPU: ``fn.crop_mirror_normalize`` after an external source.

    ``device_id=None``, ``exec_dynamic=False`` (measured faster than the default
    executor): an external source feeds shuffled batches of image views,
    ``fn.crop_mirror_normalize`` crops at random positions, mirrors by a coin flip and
    normalizes. Batches are consumed as DALI tensors (no copy out: generous to DALI).
    """
    from nvidia.dali import fn, pipeline_def, types

    class _Source:
        def __init__(self) -> None:
            self.e = -1
            self.b = 0
            self.order = np.arange(w.images)

        def __iter__(self) -> _Source:
            self.e += 1
            self.b = 0
            self.order = np.random.default_rng([w.seed, self.e]).permutation(w.images)
            return self

        def __next__(self) -> list[np.ndarray]:
            if self.b >= w.batches_per_epoch:
                raise StopIteration
            idx = self.order[self.b * w.batch : (self.b + 1) * w.batch]
            self.b += 1
            return [images[i] for i in idx]

    kwargs: dict[str, Any] = {}
    if "crop" in w.ops:
        kwargs["crop"] = (w.crop_h, w.crop_w)

    @pipeline_def(
        batch_size=w.batch,
        num_threads=max(1, threads),
        device_id=None,
        seed=w.seed + 1,
        exec_dynamic=False,
        prefetch_queue_depth=2,
    )
    def pipe() -> Any:
        imgs = fn.external_source(source=_Source(), layout="HWC", dtype=types.UINT8, cycle="raise")
        extra = dict(kwargs)
        if "crop" in w.ops:
            extra["crop_pos_x"] = fn.random.uniform(range=(0.0, 1.0))
            extra["crop_pos_y"] = fn.random.uniform(range=(0.0, 1.0))
        return fn.crop_mirror_normalize(
            imgs,
            mirror=fn.random.coin_flip() if "flip" in w.ops else 0,
            mean=list(w.mean),
            std=list(w.std),
            dtype=types.FLOAT,
            output_layout="HWC",
            **extra,
        )

    p = pipe()
    p.build()

    class _Dali(Impl):
        def __init__(self) -> None:
            self.started = False

        def epoch(self, e: int) -> Iterator[Any]:
            if self.started:
                p.reset()
            self.started = True
            while True:
                try:
                    (out,) = p.run()
                except StopIteration:
                    return
                yield out.as_tensor()

        def to_numpy(self, batch: Any) -> np.ndarray:
            return np.array(batch)

    return _Dali()


def build_grain(images: np.ndarray, w: Workload, threads: int) -> Impl:
    """Build Google Grain: per-image ``random_map`` for the crop, one map per batch.

    ``MapDataset.source`` -> ``shuffle`` -> per-image ``random_map`` that
    returns the (flipped) crop as a view -> ``batch`` whose ``batch_fn`` normalizes the
    whole batch into one float32 array (a map per batch is ~1.5x a per-image map) ->
    ``to_iter_dataset`` with read options sized for this machine (the default buffers 500
    elements).
    """
    import grain

    h, wd = w.out_h, w.out_w
    mean = np.asarray(w.mean, np.float32)
    inv_std = (1.0 / np.asarray(w.std, np.float64)).astype(np.float32)
    do_crop, do_flip = "crop" in w.ops, "flip" in w.ops

    def crop_flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        y = int(rng.integers(0, w.height - h + 1)) if do_crop else 0
        x = int(rng.integers(0, w.width - wd + 1)) if do_crop else 0
        c = img[y : y + h, x : x + wd]
        return c[:, ::-1] if do_flip and rng.random() < 0.5 else c

    mean_row, inv_row = np.tile(mean, wd), np.tile(inv_std, wd)

    def normalize(views: Any) -> np.ndarray:
        # Gather into contiguous uint8 (per channel: flipped views copy fast that way), then
        # normalize whole (h, w*3) rows; broadcasting a (3,) mean is ~6x slower in NumPy.
        u8 = np.empty((len(views), h, wd, 3), np.uint8)
        for j, v in enumerate(views):
            for c in range(3):
                np.copyto(u8[j, ..., c], v[..., c])
        out = np.empty((len(views) * h, wd * 3), np.float32)
        np.subtract(u8.reshape(-1, wd * 3), mean_row, out=out, dtype=np.float32)
        np.multiply(out, inv_row, out=out)
        return out.reshape(len(views), h, wd, 3)

    opts = grain.ReadOptions(num_threads=max(1, threads), prefetch_buffer_size=2 * max(1, threads))

    class _Grain(Impl):
        def epoch(self, e: int) -> Iterator[Any]:
            ds = (
                grain.MapDataset.source(images)
                .shuffle(seed=w.seed * 1000 + e)
                .random_map(crop_flip, seed=w.seed * 1000 + e)
                .batch(w.batch, drop_remainder=True, batch_fn=normalize)
            )
            yield from ds.to_iter_dataset(opts)

    return _Grain()


def specs(w: Workload) -> list[Spec]:
    """Return every row for workload ``w``, in report order (zerofeed first, floors last).

    Example:
        >>> [s.name for s in specs(Workload(workers=2))][:3]
        ['zerofeed', 'numpy-1t', 'numpy-2t']

    """
    t = w.threads()
    n = t if t > 1 else 2
    once = "0 (written once into the batch)"
    rows: list[tuple[str, str, str, Builder, int, str, str | None]] = [
        ("zerofeed", "zerofeed", "zerofeed._zerofeed", build_zerofeed, t,
         "zf.Loader, fused Rust ops", None),
        ("numpy-1t", "numpy", "numpy", build_numpy, 1, "tuned NumPy, 1 thread", once),
        (f"numpy-{n}t", "numpy", "numpy", build_numpy, n, f"tuned NumPy, {n} threads", once),
        ("tfdata", "tfdata", "tensorflow", build_tfdata, t,
         "tf.data map(AUTOTUNE) batch prefetch", None),
        ("torch-w0", "torch", "torch", build_torch, 0, "torch DataLoader, 0 workers",
         "1 (collate)"),
        (f"torch-w{t}", "torch", "torch", build_torch, t, f"torch DataLoader, {t} workers",
         "1 (collate, into shared memory)"),
        ("jax", "jax", "jax", build_jax, t, "jax.jit, vmap(dynamic_slice)", None),
        ("dali", "dali", "nvidia.dali", build_dali, t, "DALI CPU, crop_mirror_normalize",
         "1 (external source feed)"),
        ("grain", "grain", "grain", build_grain, t, "Grain, per-batch map",
         "0 (views; batch_fn writes once)"),
    ]  # fmt: skip
    out = [Spec(a, g, (m,), b, th, d, c) for a, g, m, b, th, d, c in rows]
    if w.output != "hwc-f32":  # the peers compute HWC float32; the variants are zerofeed's
        out = out[:1]
    to = "f32" if w.out_dtype == "float32" else "u16"
    for k in (1, n):
        desc = f"np.copyto u8->{to} of the same bytes into memory kept, {k} thread(s)"
        out.append(Spec(f"floor-{k}t", "floor", ("numpy",), build_floor, k, desc, None, False))
    for k in (1, n):
        desc = f"np.copyto u8->{to} into {POOL_PREFETCH + k + 2} buffers (zerofeed's pool), {k} thread(s)"
        out.append(Spec(f"floor-pool-{k}t", "floor-pool", ("numpy",), build_floor_pool, k, desc, None,
                        False))  # fmt: skip
    for k in (1, n):
        desc = f"np.copyto u8->{to}, cache-sized source, 2 reused buffers, {k} thread(s)"
        out.append(Spec(f"floor-cached-{k}t", "floor-cached", ("numpy",), build_floor_cached, k,
                        desc, None, False))  # fmt: skip
    return out


#: The ``--against`` groups (zerofeed and the floor always run).
GROUPS: tuple[str, ...] = ("numpy", "tfdata", "torch", "jax", "dali", "grain")

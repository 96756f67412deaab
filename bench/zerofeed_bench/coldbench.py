"""``zerofeed bench cold``: shuffled batches of a memory-mapped ``.npy`` read from a cold page
cache, against NumPy fancy indexing on ``np.load(mmap_mode="r")`` and the sequential read
bandwidth of the same file.

Before every timed epoch of every row the page cache is dropped (``sync; echo 3 >
/proc/sys/vm/drop_caches``, which needs root); where that is refused the benchmark stops and
says so instead of measuring a warm cache. Rows:

- ``zerofeed``: ``zf.Loader`` over the file's path, shuffled, raw ``uint8`` batches (no ops:
  this benchmark measures reading, and an op chain would only add compute that hides it);
  ``zerofeed-no-readahead`` is the same with ``ZEROFEED_READAHEAD=0`` (no hints);
- ``numpy-memmap``: a shuffled index, ``a[idx[i:i + batch]]`` per batch (the baseline);
- ``floor``: the whole file read in order with ``readinto`` into one reused 8 MiB buffer.

Every row counts images of the file per second; the table shows them as MB/s of source read.
Each epoch maps the file afresh (and unmaps it at its end): ``drop_caches`` cannot drop pages
that a live map still holds, so a map kept across epochs would be read warm.

Example:
    >>> w = ColdWorkload(images=100, height=8, width=8, batch=32)
    >>> w.batches_per_epoch, w.image_bytes
    (3, 192)

"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed_bench.baselines import Impl, Spec
from zerofeed_bench.data import cache_dir, usable_cores
from zerofeed_bench.seqdata import _cached

#: Bumped whenever the generated data changes, so stale caches are not reused.
COLD_DATA_VERSION = 1
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
CHUNK = 8 << 20  # the floor's read size
GROUPS = ("numpy-memmap",)


class CacheDropRefused(RuntimeError):
    """The page cache cannot be dropped here (not root, or a read-only /proc)."""


def drop_page_cache() -> None:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``, or :class:`CacheDropRefused` saying why.

    Example:
        >>> try:
        ...     drop_page_cache()
        ... except CacheDropRefused as e:
        ...     print("cannot:", e)  # doctest: +SKIP

    """
    os.sync()
    try:
        with open(DROP_CACHES, "w") as f:
            f.write("3\n")
    except OSError as e:
        raise CacheDropRefused(
            f"cannot drop the page cache ({DROP_CACHES}: {e.strerror or e}); `zerofeed bench cold` "
            "times reads from disk and needs root (sudo) to empty the cache before every epoch"
        ) from e


def cache_drop_refused() -> str | None:
    """Why the page cache cannot be dropped here, or ``None`` when it can (it is dropped)."""
    try:
        drop_page_cache()
    except CacheDropRefused as e:
        return str(e)
    return None


@dataclasses.dataclass(frozen=True)
class ColdWorkload:
    """``images`` uint8 images of ``height x width x 3`` in one ``.npy``, read shuffled in
    batches of ``batch`` (the last partial batch dropped), from a cold page cache.
    """

    images: int = 4000
    height: int = 256
    width: int = 256
    batch: int = 32
    epochs: int = 2
    workers: int = 0
    seed: int = 0

    @property
    def image_bytes(self) -> int:
        """Bytes of one image."""
        return self.height * self.width * 3

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch."""
        return self.images // self.batch

    @property
    def out_bytes_per_batch(self) -> int:
        """Bytes of one batch (raw uint8: what is read)."""
        return self.batch * self.image_bytes

    def threads(self) -> int:
        """Worker threads: ``workers`` or, when 0, the usable cores."""
        return self.workers if self.workers > 0 else usable_cores()

    def check_variant(self) -> ColdWorkload:
        """The tiny workload zerofeed is checked on before it is timed."""
        return dataclasses.replace(self, images=40, height=16, width=12, batch=8, epochs=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColdWorkload:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def ensure_cold(w: ColdWorkload, directory: Path | None = None) -> Path:
    """Write the images of ``w`` as a ``.npy`` once (in slices); return its path.

    Example:
        >>> import tempfile
        >>> p = ensure_cold(ColdWorkload(images=3, height=2, width=2), Path(tempfile.mkdtemp()))
        >>> np.load(p).shape
        (3, 2, 2, 3)

    """
    d = directory if directory is not None else cache_dir()
    path = d / f"cold-v{COLD_DATA_VERSION}-{w.images}x{w.height}x{w.width}-s{w.seed}.npy"

    def write(tmp: Path) -> None:
        shape = (w.images, w.height, w.width, 3)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        step = max(1, (64 << 20) // w.image_bytes)
        for lo in range(0, w.images, step):
            rng = np.random.default_rng([w.seed, lo])
            hi = min(w.images, lo + step)
            out[lo:hi] = rng.integers(0, 256, size=(hi - lo, *shape[1:]), dtype=np.uint8)
        out.flush()
        del out

    return _cached(path, write)


class _Zerofeed(Impl):
    def __init__(self, path: Path, w: ColdWorkload, threads: int, readahead: bool) -> None:
        if not readahead:  # read when each epoch starts; this process runs this row only
            os.environ["ZEROFEED_READAHEAD"] = "0"
        self.path, self.w, self.threads = path, w, threads

    def epoch(self, e: int) -> Iterator[Any]:
        import zerofeed as zf

        # A fresh map per epoch: pages a live map holds survive drop_caches.
        w = self.w
        with zf.Loader(
            str(self.path),
            batch_size=w.batch,
            shuffle=True,
            seed=w.seed,
            drop_last=True,
            workers=self.threads,
        ) as loader:
            loader.set_epoch(e)
            yield from loader.numpy()


def build_zerofeed(path: Path, w: ColdWorkload, threads: int) -> Impl:
    """Zerofeed's Loader over the file's path (read ahead: the default)."""
    return _Zerofeed(path, w, threads, readahead=True)


def build_zerofeed_no_readahead(path: Path, w: ColdWorkload, threads: int) -> Impl:
    """The same Loader with its read-ahead hints off (``ZEROFEED_READAHEAD=0``)."""
    return _Zerofeed(path, w, threads, readahead=False)


class _Memmap(Impl):
    def __init__(self, path: Path, w: ColdWorkload) -> None:
        self.path, self.w = path, w

    def epoch(self, e: int) -> Iterator[Any]:
        array = np.load(self.path, mmap_mode="r")  # a fresh map per epoch, as zerofeed's
        order = np.random.default_rng([self.w.seed, e]).permutation(self.w.images)
        for b in range(self.w.batches_per_epoch):
            yield array[order[b * self.w.batch : (b + 1) * self.w.batch]]
        del array


def build_numpy_memmap(path: Path, w: ColdWorkload, threads: int) -> Impl:
    """NumPy fancy indexing of ``np.load(mmap_mode="r")`` with a shuffled index."""
    return _Memmap(path, w)


class _Floor(Impl):
    """The file read in order, 8 MiB at a time into one buffer; a "batch" is yielded for every
    batch's worth of image bytes read, so that its images/s is the file's read bandwidth.
    """

    def __init__(self, path: Path, w: ColdWorkload) -> None:
        self.path, self.w = path, w
        self.buffer = bytearray(CHUNK)

    def epoch(self, e: int) -> Iterator[Any]:
        view = memoryview(self.buffer)
        per_batch = self.w.out_bytes_per_batch
        read = given = 0
        with open(self.path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                read += n
                while given < self.w.batches_per_epoch and read >= (given + 1) * per_batch:
                    given += 1
                    yield n
        while given < self.w.batches_per_epoch:  # the header's bytes: never short in practice
            given += 1
            yield 0


def build_floor(path: Path, w: ColdWorkload, threads: int) -> Impl:
    """The sequential read floor."""
    return _Floor(path, w)


def cold_specs(w: ColdWorkload) -> list[Spec]:
    """The rows of ``zerofeed bench cold``."""
    t = w.threads()
    return [
        Spec("zerofeed", "zerofeed", ("zerofeed",), build_zerofeed, t,
             "zf.Loader(path), shuffled, raw uint8, reading ahead the decided batches"),
        Spec("zerofeed-no-readahead", "zerofeed", ("zerofeed",), build_zerofeed_no_readahead, t,
             "the same with ZEROFEED_READAHEAD=0 (one fault at a time)"),
        Spec("numpy-memmap", "numpy-memmap", ("numpy",), build_numpy_memmap, 1,
             'np.load(mmap_mode="r")[shuffled index], per batch'),
        Spec("floor", "floor", (), build_floor, 1,
             "sequential readinto, 8 MiB chunks, one reused buffer", timed_check=False),
    ]  # fmt: skip


def check_cold(spec: Spec, w: ColdWorkload) -> dict[str, Any]:
    """Run ``spec`` for one epoch of the tiny check workload: every batch must be rows of the
    file, exactly, and the epoch must visit every image at most once (a permutation).

    Example:
        >>> spec = cold_specs(ColdWorkload(workers=1))[2]
        >>> check_cold(spec, ColdWorkload())["passed"]
        True

    """
    import tempfile

    cw = w.check_variant()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="zf-bench-check-") as tmp:
        path = ensure_cold(cw, Path(tmp))
        data = np.load(path)
        rows = {data[i].tobytes(): i for i in range(len(data))}
        impl = spec.build(path, cw, spec.threads)
        try:
            batches = [np.array(impl.to_numpy(b), copy=True) for b in impl.epoch(0)]
        finally:
            impl.close()
    seen: list[int] = []
    for k, b in enumerate(batches):
        if b.shape != (cw.batch, cw.height, cw.width, 3) or b.dtype != np.uint8:
            problems.append(f"batch {k} is {b.dtype}{b.shape}")
            continue
        for j, image in enumerate(b):
            index = rows.get(image.tobytes())
            if index is None:
                problems.append(f"batch {k} row {j} is no image of the file")
            else:
                seen.append(index)
    if len(batches) != cw.batches_per_epoch:
        problems.append(f"{len(batches)} batches, expected {cw.batches_per_epoch}")
    if len(set(seen)) != len(seen):
        problems.append("an image came twice in one epoch")
    return {"passed": not problems, "problems": problems[:5], "images": len(seen)}


def first_batch(impl: Impl, batch: Any, w: ColdWorkload) -> str | None:
    """A problem with the first timed batch's shape, or ``None``."""
    arr = impl.to_numpy(batch)
    expected = (w.batch, w.height, w.width, 3)
    if tuple(arr.shape) != expected or arr.dtype != np.uint8:
        return f"first batch is {arr.dtype}{tuple(arr.shape)}, expected uint8{expected}"
    return None


def format_cold(result: dict[str, Any]) -> str:
    """The readable report: MB/s of source read, vs floor, vs numpy-memmap, the target."""
    from zerofeed.doctor import format_bytes
    from zerofeed_bench.report import _check, _layout, _machine_line, _not_ok, _ratio

    w = result["workload"]
    image_bytes = w["height"] * w["width"] * 3
    header = ("implementation", "MB/s read", "min-max", "vs floor", "vs numpy-memmap", "RSS growth", "check")
    rows: list[tuple[str, ...]] = []
    for r in result["results"]:
        if r["status"] != "ok":
            rows.append(_not_ok(r, len(header)))
            continue
        t = r["images_per_s"]
        mb = {k: t[k] * image_bytes / 1e6 for k in ("median", "min", "max")}
        rows.append((r["name"], f"{mb['median']:,.0f}", f"{mb['min']:,.0f}-{mb['max']:,.0f}",
                     _ratio(r.get("ratio_to_floor")), _ratio(r.get("ratio_to_reference")),
                     format_bytes(r["memory"]["rss_growth_bytes"]), _check(r)))  # fmt: skip
    lines = [
        f"workload: {w['images']} images {w['height']}x{w['width']}x3 uint8 "
        f"({w['images'] * image_bytes / 1e6:,.0f} MB .npy, memory-mapped), shuffled, batch {w['batch']}, "
        f"page cache dropped before each of {w['epochs']} timed epochs x {result['repeats']} rounds, "
        f"{w['threads']} threads",
        _machine_line(result["machine"]),
        "",
        *_layout(header, rows),
    ]
    ok = {r["name"]: r for r in result["results"] if r["status"] == "ok"}
    if "zerofeed" in ok and ok["zerofeed"].get("ratio_to_floor") is not None:
        ratio = ok["zerofeed"]["ratio_to_floor"]
        lines += ["", f"target: zerofeed {ratio:.2f}x the sequential read (>= 0.8x: "
                  f"{'met' if ratio >= 0.8 else 'NOT met'})"]  # fmt: skip
    lines += [
        "",
        "MB/s read: source bytes of the images delivered per second, median over every timed epoch",
        "(min-max beside it), each epoch from a cold page cache. floor: the same file read in order",
        "with readinto into one 8 MiB buffer. vs floor / vs numpy-memmap: ratios in this run.",
        "check: every row of every batch matched against the file's images before timing.",
    ]
    return "\n".join(lines)

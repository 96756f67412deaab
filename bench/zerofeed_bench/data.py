"""Built-in benchmark data, the workload description and the one reference implementation.

The images are generated deterministically (image ``i`` depends only on ``seed`` and ``i``),
with a smooth per-image colour field plus noise, so values spread over the whole ``uint8``
range and no two crops of the same image look alike (which the correctness check relies on).

Example:
    >>> w = Workload(images=4, height=24, width=24, crop_h=16, crop_w=16, batch=2)
    >>> imgs = make_images(w.images, w.height, w.width)
    >>> imgs.shape, imgs.dtype.name
    ((4, 24, 24, 3), 'uint8')

"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

#: ImageNet channel statistics in pixel units (what users normalize with).
MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
STD: tuple[float, float, float] = (58.395, 57.12, 57.375)

#: Every op the workload knows, in pipeline order.
ALL_OPS: tuple[str, ...] = ("crop", "flip", "meanstd")

#: Bumped whenever :func:`make_images` changes, so stale caches are not reused.
DATA_VERSION = 1

#: Absolute tolerance of the correctness check (one pixel step after normalizing is ~0.017).
CHECK_ATOL = 1e-3

#: The output variants: layout and dtype of the batches (``--output``).
OUTPUTS: tuple[str, ...] = ("hwc-f32", "chw-f32", "hwc-f16", "hwc-bf16")

#: The check's tolerance per output dtype: half a unit in the last place of the largest
#: normalized value (about 2.7), plus the float32 tolerance.
OUTPUT_ATOL: dict[str, float] = {"float32": CHECK_ATOL, "float16": 2.5e-3, "bfloat16": 1.2e-2}


def output_dtype(name: str) -> np.dtype[Any]:
    """The NumPy dtype of an output dtype name (``bfloat16`` through ml_dtypes).

    Example:
        >>> output_dtype("float16").itemsize
        2

    """
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclasses.dataclass(frozen=True)
class Workload:
    """What every implementation computes: crop, maybe flip, normalize to float32, batch.

    Without ``crop`` in ``ops`` the whole image is used; without ``meanstd`` the output is
    the plain ``float32`` cast (mean 0, std 1), so the output bytes stay the same.

    Example:
        >>> Workload(images=8, height=24, width=24, crop_h=16, crop_w=16, batch=4).out_h
        16

    """

    images: int = 1000
    height: int = 512
    width: int = 512
    crop_h: int = 256
    crop_w: int = 256
    batch: int = 32
    epochs: int = 3
    workers: int = 0
    ops: tuple[str, ...] = ALL_OPS
    source: str = "memory"
    seed: int = 0
    output: str = "hwc-f32"

    @property
    def chw(self) -> bool:
        """Whether batches are channels-first (``chw-*`` outputs)."""
        return self.output.startswith("chw")

    @property
    def out_dtype(self) -> str:
        """The output dtype's name: ``float32``, ``float16`` or ``bfloat16``."""
        return {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[self.output.split("-")[1]]

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """The shape of one batch."""
        if self.chw:
            return (self.batch, 3, self.out_h, self.out_w)
        return (self.batch, self.out_h, self.out_w, 3)

    @property
    def out_h(self) -> int:
        """Output height (the crop height, or the image height without ``crop``)."""
        return self.crop_h if "crop" in self.ops else self.height

    @property
    def out_w(self) -> int:
        """Output width (the crop width, or the image width without ``crop``)."""
        return self.crop_w if "crop" in self.ops else self.width

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean used by ``meanstd`` (zeros without it)."""
        return MEAN if "meanstd" in self.ops else (0.0, 0.0, 0.0)

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel std used by ``meanstd`` (ones without it)."""
        return STD if "meanstd" in self.ops else (1.0, 1.0, 1.0)

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch (every implementation drops the last partial batch)."""
        return self.images // self.batch

    @property
    def images_per_epoch(self) -> int:
        """Images delivered per epoch."""
        return self.batches_per_epoch * self.batch

    @property
    def out_bytes_per_image(self) -> int:
        """Bytes of output per image (``float32``: 4 a value, ``float16`` / ``bfloat16``: 2)."""
        return self.out_h * self.out_w * 3 * (4 if self.out_dtype == "float32" else 2)

    def threads(self) -> int:
        """Worker threads to use: ``workers`` or, when 0, the number of usable cores."""
        return self.workers if self.workers > 0 else usable_cores()

    def check_variant(self) -> Workload:
        """Return the tiny workload every implementation is checked on before it is timed.

        32 images of 24x24 with 16x16 crops (or full 24x24 images without ``crop``), batch 8:
        small enough to search every crop position and flip for each output sample.
        """
        return dataclasses.replace(
            self, images=32, height=24, width=24, crop_h=16, crop_w=16, batch=8, epochs=1
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ops`` as a list)."""
        d = dataclasses.asdict(self)
        d["ops"] = list(self.ops)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Workload:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["ops"] = tuple(d.get("ops", ALL_OPS))
        return cls(**d)


def usable_cores() -> int:
    """Cores this process may run on (affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def make_images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Generate ``n`` deterministic ``(height, width, 3)`` ``uint8`` images.

    Each image is a random low-frequency colour wave plus uniform noise of +-48, clipped,
    so pixel values use the whole range (not zero, not constant).

    Example:
        >>> a = make_images(2, 8, 8, seed=1)
        >>> bool((a == make_images(2, 8, 8, seed=1)).all()), int(a.std() > 20)
        (True, 1)

    """
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    for i in range(n):
        rng = np.random.default_rng([seed, i, DATA_VERSION])
        fy, fx = rng.uniform(0.5, 4.0, size=(2, 3)).astype(np.float32)
        phase = rng.uniform(0.0, 2 * np.pi, size=3).astype(np.float32)
        level = rng.uniform(70.0, 180.0, size=3).astype(np.float32)
        amp = rng.uniform(30.0, 75.0, size=3).astype(np.float32)
        wave = np.sin(2 * np.pi * (fy * yy + fx * xx) + phase) * amp + level
        noise = rng.integers(-48, 49, size=(height, width, 3), dtype=np.int16)
        np.clip(wave + noise, 0, 255, out=wave)
        out[i] = wave.astype(np.uint8)
    return out


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$ZEROFEED_CACHE`` or ``~/.cache/zerofeed/bench``."""
    env = os.environ.get("ZEROFEED_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zerofeed" / "bench"


def dataset_path(w: Workload, directory: Path | None = None) -> Path:
    """Path of the cached ``.npy`` for ``w`` (whether or not it exists yet)."""
    d = directory if directory is not None else cache_dir()
    name = f"images-v{DATA_VERSION}-n{w.images}-{w.height}x{w.width}-s{w.seed}.npy"
    return d / name


def ensure_dataset(w: Workload, directory: Path | None = None) -> Path:
    """Generate and cache the dataset of ``w`` once (atomically); return its path.

    Example:
        >>> import tempfile
        >>> p = ensure_dataset(Workload(images=2, height=8, width=8), Path(tempfile.mkdtemp()))
        >>> np.load(p, mmap_mode="r").shape
        (2, 8, 8, 3)

    """
    path = dataset_path(w, directory)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, make_images(w.images, w.height, w.width, w.seed))
    os.replace(tmp, path)
    return path


def load_dataset(path: Path, source: str) -> np.ndarray:
    """Load the cached dataset: ``memory`` reads it into RAM, ``npy`` memory-maps it.

    For ``npy`` every page is touched once, so the dataset is resident before the
    memory baseline is taken and "memory above the dataset" means the same for both.
    """
    if source == "npy":
        arr = np.load(path, mmap_mode="r")
        for i in range(0, arr.shape[0], 64):
            arr[i : i + 64].max()
        return arr
    if source == "memory":
        return np.load(path)
    raise ValueError(f"source must be 'memory' or 'npy', got {source!r}")


def reference(
    img: np.ndarray,
    y: int,
    x: int,
    flip: bool,
    out_h: int,
    out_w: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> np.ndarray:
    """Compute the reference result for one sample: float64 math, then cast to float32.

    Example:
        >>> img = make_images(1, 8, 8)[0]
        >>> reference(img, 1, 2, True, 4, 4, MEAN, STD).shape
        (4, 4, 3)

    """
    c = img[y : y + out_h, x : x + out_w].astype(np.float64)
    if flip:
        c = c[:, ::-1]
    return ((c - np.asarray(mean)) / np.asarray(std)).astype(np.float32)


def all_references(images: np.ndarray, w: Workload) -> np.ndarray:
    """Every possible output for every image of a (small) check set.

    Returns shape ``(N, Y, X, 2, out_h, out_w, 3)``: image, crop row, crop column, flip.
    Only meant for :meth:`Workload.check_variant` sizes.
    """
    norm = (images.astype(np.float64) - np.asarray(w.mean)) / np.asarray(w.std)
    norm = norm.astype(np.float32)
    n, h, wd, _ = images.shape
    ny, nx = h - w.out_h + 1, wd - w.out_w + 1
    out = np.empty((n, ny, nx, 2, w.out_h, w.out_w, 3), dtype=np.float32)
    for y in range(ny):
        for x in range(nx):
            patch = norm[:, y : y + w.out_h, x : x + w.out_w]
            out[:, y, x, 0] = patch
            out[:, y, x, 1] = patch[:, :, ::-1]
    return out


def check_outputs(images: np.ndarray, outputs: list[np.ndarray], w: Workload) -> dict[str, Any]:
    """Check one epoch of outputs of a check-variant run against :func:`reference`.

    Implementations draw crop positions and flips in their own way, so each output sample
    is matched against *every* valid ``(image, y, x, flip)``; it passes when the closest one
    is within :data:`CHECK_ATOL`. The epoch must also use each image at most once, and the
    random ops must actually vary (both flips seen, more than one crop position).

    Example:
        >>> w = Workload(ops=("crop",)).check_variant()
        >>> imgs = make_images(w.images, w.height, w.width)
        >>> out = [np.stack([reference(imgs[i], 0, 0, False, 16, 16, w.mean, w.std)
        ...                  for i in range(8)])]
        >>> check_outputs(imgs, out, w)["passed"]
        False

    """
    refs = all_references(images, w)
    n, ny, nx = refs.shape[:3]
    flat = refs.reshape(n * ny * nx * 2, -1)
    problems: list[str] = []
    matches: list[tuple[int, int, int, int]] = []
    worst = 0.0
    samples = 0
    expected_shape = w.out_shape
    expected_dtype = output_dtype(w.out_dtype)
    atol = OUTPUT_ATOL[w.out_dtype]
    for b, batch in enumerate(outputs):
        arr = np.asarray(batch)
        if arr.shape != expected_shape or arr.dtype != expected_dtype:
            problems.append(f"batch {b}: got {arr.dtype}{arr.shape}, expected {w.out_dtype}{expected_shape}")
            continue
        arr = arr.astype(np.float32)
        if w.chw:
            arr = arr.transpose(0, 2, 3, 1)
        for s in range(arr.shape[0]):
            samples += 1
            err = np.abs(flat - arr[s].reshape(1, -1)).max(axis=1)
            best = int(err.argmin())
            e = float(err[best])
            worst = max(worst, e)
            i, rest = divmod(best, ny * nx * 2)
            y, rest = divmod(rest, nx * 2)
            x, f = divmod(rest, 2)
            matches.append((i, y, x, f))
            if not e <= atol:
                problems.append(f"batch {b} sample {s}: no valid crop/flip matches (err {e:.3g})")
    if samples != w.images_per_epoch and not problems:
        problems.append(f"got {samples} samples per epoch, expected {w.images_per_epoch}")
    ok = matches
    used = [m[0] for m in ok]
    if len(set(used)) != len(used):
        problems.append("an image was delivered twice in one epoch (not a permutation)")
    flips = {m[3] for m in ok}
    if "flip" in w.ops and len(ok) >= 16 and flips != {0, 1}:
        problems.append(f"flip never varies (always {flips})")
    if "flip" not in w.ops and 1 in flips:
        problems.append("images were flipped although flip is off")
    if "crop" in w.ops and len(ok) >= 16 and len({(m[1], m[2]) for m in ok}) < 2:
        problems.append("crop position never varies")
    return {
        "passed": not problems,
        "samples": samples,
        "max_abs_err": worst,
        "atol": atol,
        "problems": problems[:10],
    }

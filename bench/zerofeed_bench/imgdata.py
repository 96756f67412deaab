"""Built-in data, workload and oracle of ``zerofeed bench images`` (encoded photographs).

The data: real photographs that scikit-image, scikit-learn and matplotlib ship as sample
data (no one here made them), cut with Pillow into ``images`` JPEGs of ImageNet-like
sizes (a random crop of a quarter to all of the photo, shorter side 300-500 px, quality
85-95, 4:2:0 chroma) in a torchvision ``ImageFolder`` layout, one class per photograph,
written once into the cache.

The oracle of the validation recipe (Resize 256 + CenterCrop 224 + normalize): Pillow's
full decode, then torchvision v2's functional ``resize`` (bilinear, antialiased),
``center_crop`` and ``normalize`` on float tensors. Every implementation's validation
epoch (file order, no shuffle) must match it within :data:`VAL_TOLERANCE`; its labels
exactly. The train recipe is random, so its check is what every correct train epoch has:
each label the dataset's, the class counts of a full pass, values inside the normalized
range, and no two samples alike.

Example:
    >>> w = PhotosWorkload(images=40, batch=8)
    >>> w.batches_per_epoch, w.out_bytes_per_batch
    (5, 4816896)

"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed_bench.data import cache_dir, usable_cores

#: Bumped whenever the generated photos change, so stale caches are not reused.
PHOTO_DATA_VERSION = 1

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: The recipes ``zerofeed bench images`` runs, in order.
RECIPES: tuple[str, ...] = ("train", "val")

#: How far a validation batch may be from the oracle, in normalized units (1.0 is about
#: 58 gray levels): decoders differ in IDCT rounding and chroma upsampling (a level or two
#: per pixel), resamplers in their filter's support at the borders.
VAL_TOLERANCE = {"mean_abs": 0.03, "max_abs": 0.75}


def _photos() -> list[tuple[str, np.ndarray]]:
    """The real photographs, by name: ``(name, HxWx3 uint8)``."""
    import matplotlib
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    out = [(n, getattr(skimage.data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket",
                                                      "hubble_deep_field", "immunohistochemistry",
                                                      "retina")]  # fmt: skip
    sk = load_sample_images()
    for fname, img in zip(sk.filenames, sk.images, strict=True):
        out.append((Path(fname).stem, img))
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as im:
        out.append(("grace_hopper", np.asarray(im.convert("RGB"))))
    return sorted(out)


@dataclasses.dataclass(frozen=True)
class PhotosWorkload:
    """One recipe over the built-in JPEG folder: ``train`` (RandomResizedCrop + flip +
    normalize) or ``val`` (Resize + CenterCrop + normalize), CHW float32 batches.

    Example:
        >>> PhotosWorkload(recipe="val").check_variant().images
        24

    """

    images: int = 1000
    batch: int = 256
    recipe: str = "train"
    crop: int = 224
    resize: int = 256
    # 18 timed batches a round (1000 images, batch 256): what a loader built before the clock
    # started (up to about a batch per worker) is 5-11 % of the stretch on two workers.
    epochs: int = 6
    workers: int = 0
    seed: int = 0

    @property
    def batches_per_epoch(self) -> int:
        """Full batches per epoch (the last partial batch is dropped)."""
        return self.images // self.batch

    @property
    def out_bytes_per_batch(self) -> int:
        """Bytes of float32 CHW output per batch (labels not counted)."""
        return self.batch * 3 * self.crop * self.crop * 4

    def threads(self) -> int:
        """Worker threads: ``workers`` or, when 0, the usable cores."""
        return self.workers if self.workers > 0 else usable_cores()

    def check_variant(self) -> PhotosWorkload:
        """The tiny workload every implementation is checked on before it is timed."""
        return dataclasses.replace(self, images=24, batch=8, epochs=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhotosWorkload:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def photos_path(w: PhotosWorkload, directory: Path | None = None) -> Path:
    """Where the ImageFolder of ``w`` is cached (whether or not it exists yet)."""
    d = directory if directory is not None else cache_dir()
    return d / f"photos-v{PHOTO_DATA_VERSION}-n{w.images}-s{w.seed}"


def write_photos(root: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` JPEGs cut from the sample photographs into ``root/<photo>/NNNNN.jpg``,
    round robin over the photographs (so the classes are balanced).
    """
    from PIL import Image

    photos = _photos()
    rng = np.random.default_rng([seed, PHOTO_DATA_VERSION, 21])
    for name, _ in photos:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name, img = photos[i % len(photos)]
        h, w = img.shape[:2]
        area = rng.uniform(0.25, 1.0) * h * w
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(min(h, round(np.sqrt(area / ratio))))
        cw = int(min(w, round(np.sqrt(area * ratio))))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(img[y : y + ch, x : x + cw])
        short = int(rng.integers(300, 501))
        scale = short / min(ch, cw)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(root / name / f"{i:05d}.jpg", quality=int(rng.integers(85, 96)), subsampling=2)


def ensure_photos(w: PhotosWorkload, directory: Path | None = None) -> Path:
    """Write the ImageFolder of ``w`` once (atomically: a half-written one is never
    reused); return its root.

    Example:
        >>> import tempfile
        >>> root = ensure_photos(PhotosWorkload(images=12), Path(tempfile.mkdtemp()))
        >>> len(list_files(root)[0]), len(list_files(root)[2])
        (12, 10)

    """
    root = photos_path(w, directory)
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    write_photos(tmp, w.images, w.seed)
    os.replace(tmp, root)
    return root


def list_files(root: Path) -> tuple[list[str], list[int], list[str]]:
    """``(paths, labels, classes)`` in torchvision ``ImageFolder``'s order: class folders
    sorted by name, files sorted within each.
    """
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    paths: list[str] = []
    labels: list[int] = []
    for k, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            paths.append(str(f))
            labels.append(k)
    return paths, labels, classes


def val_oracle(root: Path, w: PhotosWorkload) -> tuple[np.ndarray, np.ndarray]:
    """The validation recipe's images (N, 3, crop, crop) float32 and labels, in file order:
    Pillow decode + torchvision v2 functional resize / center_crop / normalize.
    """
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    paths, labels, _ = list_files(root)
    out = np.empty((len(paths), 3, w.crop, w.crop), np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            t = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255
        t = F.center_crop(F.resize(t, [w.resize], antialias=True), [w.crop, w.crop])
        out[i] = F.normalize(t, list(MEAN), list(STD)).numpy()
    return out, np.asarray(labels, np.int64)


def check_val(
    oracle: tuple[np.ndarray, np.ndarray], batches: Iterable[tuple[np.ndarray, np.ndarray]], batch: int
) -> dict[str, Any]:
    """Compare a validation epoch with the oracle: labels exactly, pixels within
    :data:`VAL_TOLERANCE` (mean and max absolute error per image, normalized units).

    Example:
        >>> x = np.zeros((4, 3, 2, 2), np.float32); y = np.arange(4)
        >>> check_val((x, y), [(x[:2], y[:2]), (x[2:], y[2:])], 2)["passed"]
        True
        >>> check_val((x, y), [(x[:2] + 1, y[:2]), (x[2:], y[2:])], 2)["passed"]
        False

    """
    want_x, want_y = oracle
    problems: list[str] = []
    n = 0
    worst_mean = worst_max = 0.0
    for b, (x, y) in enumerate(batches):
        x, y = np.asarray(x), np.asarray(y).astype(np.int64).reshape(-1)
        if x.shape != (batch, *want_x.shape[1:]) or x.dtype != np.float32:
            problems.append(
                f"batch {b}: got {x.dtype}{x.shape}, expected float32{(batch, *want_x.shape[1:])}"
            )
            continue
        lo = b * batch
        if not np.array_equal(y, want_y[lo : lo + batch]):
            problems.append(f"batch {b}: labels {y.tolist()} != {want_y[lo : lo + batch].tolist()}")
        err = np.abs(x - want_x[lo : lo + batch]).reshape(batch, -1)
        worst_mean = max(worst_mean, float(err.mean(axis=1).max()))
        worst_max = max(worst_max, float(err.max()))
        n += batch
    if worst_mean > VAL_TOLERANCE["mean_abs"] or worst_max > VAL_TOLERANCE["max_abs"]:
        problems.append(
            f"pixels differ from Pillow + torchvision: worst image mean |d| {worst_mean:.3f}, "
            f"max |d| {worst_max:.3f} (tolerance {VAL_TOLERANCE})"
        )
    if n != len(want_y) // batch * batch:
        problems.append(f"got {n} images in the epoch, expected {len(want_y) // batch * batch}")
    return {"passed": not problems, "samples": n, "mean_abs": worst_mean, "max_abs": worst_max,
            "problems": problems[:10]}  # fmt: skip


def check_train(
    labels: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]], batch: int, crop: int
) -> dict[str, Any]:
    """Check a train epoch: shapes, labels the dataset's (each class at most as often as
    it has files; drop_last may drop a few), values inside the normalized [0, 1] range,
    and every sample different (a loader repeating one crop fails).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32); y = np.array([0, 0, 1, 1])
        >>> check_train(y, [(x, y)], 4, 8)["passed"], check_train(y, [(x * 0, y)], 4, 8)["passed"]
        (True, False)

    """
    lo = (0 - max(MEAN)) / min(STD) - 1e-3
    hi = (1 - min(MEAN)) / min(STD) + 1e-3
    problems: list[str] = []
    seen: list[int] = []
    digests: set[bytes] = set()
    for b, (x, y) in enumerate(batches):
        x, y = np.asarray(x), np.asarray(y).astype(np.int64).reshape(-1)
        if x.shape != (batch, 3, crop, crop) or x.dtype != np.float32:
            problems.append(f"batch {b}: got {x.dtype}{x.shape}, expected float32{(batch, 3, crop, crop)}")
            continue
        if float(x.min()) < lo or float(x.max()) > hi:
            problems.append(f"batch {b}: values [{x.min():.2f}, {x.max():.2f}] outside [{lo:.2f}, {hi:.2f}]")
        digests.update(s.tobytes()[::97] for s in x)
        seen += y.tolist()
    counts, want = np.bincount(seen, minlength=labels.max() + 1), np.bincount(labels)
    if len(counts) != len(want) or (counts > want).any():
        problems.append(f"class counts {counts.tolist()} exceed the dataset's {want.tolist()}")
    if len(seen) != len(labels) // batch * batch:
        problems.append(f"got {len(seen)} images in the epoch, expected {len(labels) // batch * batch}")
    if len(digests) != len(seen):
        problems.append(f"only {len(digests)} distinct samples among {len(seen)}")
    return {"passed": not problems, "samples": len(seen), "problems": problems[:10]}

"""The implementations ``zerofeed bench images`` times, each from encoded JPEG files.

Each builder is ``build_<name>(root, workload, threads)``: ``root`` is the cached
ImageFolder, which every implementation reads itself the way its users do. The recipe
(``workload.recipe``) is ``train`` (RandomResizedCrop 224 + horizontal flip + normalize,
shuffled) or ``val`` (Resize 256 + CenterCrop 224 + normalize, file order); both give
CHW float32 images and int64 labels. ``to_numpy(batch)`` gives ``(images, labels)``.

Each peer is given its own fastest documented path: DALI decodes only the crop's region
(``fn.decoders.image_random_crop``), tf.data likewise (``tf.image.decode_and_crop_jpeg``,
as TensorFlow's ResNet preprocessing does); torchvision decodes whole images with PIL in
its DataLoader workers.

Example:
    >>> [s.name for s in photo_specs(PhotosWorkload(workers=2))][:3]
    ['zerofeed', 'zerofeed-exact', 'torchvision-w0']

"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed_bench.baselines import Impl, Spec, _split, _ThreadedImpl
from zerofeed_bench.imgdata import MEAN, STD, PhotosWorkload, list_files


def _np(v: Any) -> np.ndarray:
    if hasattr(v, "as_cpu"):  # DALI TensorList
        v = v.as_cpu().as_array()
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


class _PhotoImpl(Impl):
    """Yields ``(images, labels)`` pairs or dicts of them."""

    def to_numpy(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            batch = (batch["image"], batch["label"])
        x, y = batch
        return _np(x), _np(y)


def build_zerofeed(root: Path, w: PhotosWorkload, threads: int, fast_decode: bool = True) -> Impl:
    """``zf.Images(root, labels="folders")`` + ``zf.Loader(ops={"image": [...]})``, through
    ``.torch()``, as issue 12's API shows it.
    """
    import zerofeed as zf

    if w.recipe == "train":
        ops = [zf.RandomResizedCrop(w.crop), zf.RandomFlip(), zf.Normalize(MEAN, STD), zf.ToCHW()]
    else:
        ops = [zf.Resize(w.resize), zf.CenterCrop(w.crop), zf.Normalize(MEAN, STD), zf.ToCHW()]
    images = zf.Images(str(root), labels="folders", fast_decode=fast_decode)
    loader = zf.Loader(
        images,
        batch_size=w.batch,
        shuffle=w.recipe == "train",
        seed=w.seed,
        drop_last=True,
        workers=w.workers or None,
        ops={"image": ops},
    )

    class _Zerofeed(_PhotoImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            loader.set_epoch(e)
            yield from loader.torch()

        def stats(self) -> dict[str, Any]:
            return {str(k): v for k, v in dict(loader.stats).items()}

        def close(self) -> None:
            loader.close()

    return _Zerofeed()


def build_zerofeed_exact(root: Path, w: PhotosWorkload, threads: int) -> Impl:
    """Zerofeed with ``fast_decode=False``: full decode, then crop and resize."""
    return build_zerofeed(root, w, threads, fast_decode=False)


def build_torchvision(root: Path, w: PhotosWorkload, threads: int) -> Impl:
    """Torchvision ``ImageFolder`` (PIL decode) + v2 transforms in a ``DataLoader``."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(MEAN), list(STD))]
    if w.recipe == "train":
        head = [v2.ToImage(), v2.RandomResizedCrop(w.crop, antialias=True), v2.RandomHorizontalFlip()]
    else:
        head = [v2.ToImage(), v2.Resize(w.resize, antialias=True), v2.CenterCrop(w.crop)]
    ds = ImageFolder(str(root), transform=v2.Compose(head + tail))
    loader = DataLoader(
        ds,
        batch_size=w.batch,
        shuffle=w.recipe == "train",
        drop_last=True,
        num_workers=threads,
        persistent_workers=threads > 0,
        generator=torch.Generator().manual_seed(w.seed),
    )

    class _Torchvision(_PhotoImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            yield from loader

        def close(self) -> None:
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()

    return _Torchvision()


def build_dali(root: Path, w: PhotosWorkload, threads: int) -> Impl:
    """DALI on the CPU: ``fn.readers.file`` + ``fn.decoders.image_random_crop`` (region
    decode) + ``fn.resize`` (train) or ``fn.decoders.image`` + ``fn.resize(resize_shorter)``
    (val), then ``fn.crop_mirror_normalize`` to CHW float32.
    """
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali import math as dmath

    paths, labels, _ = list_files(root)
    train = w.recipe == "train"
    mean = [255 * m for m in MEAN]
    std = [255 * s for s in STD]

    @pipeline_def(batch_size=w.batch, num_threads=max(1, threads), device_id=None, seed=w.seed + 1)
    def pipe() -> Any:
        jpegs, y = fn.readers.file(
            files=paths, labels=labels, random_shuffle=train, name="reader", seed=w.seed + 1
        )
        if train:
            x = fn.decoders.image_random_crop(
                jpegs, device="cpu", output_type=types.RGB,
                random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10,
            )  # fmt: skip
            x = fn.resize(x, resize_x=w.crop, resize_y=w.crop, antialias=True)
            mirror = fn.random.coin_flip(probability=0.5)
        else:
            # torchvision's sizes (the longer side truncated, the crop offset rounded), which
            # DALI's resize_shorter and crop_pos round otherwise
            hw = fn.cast(fn.peek_image_shape(jpegs), dtype=types.FLOAT)
            h, wd = hw[0], hw[1]
            short = dmath.min(h, wd)
            # floor, not DALI's float -> int cast (it rounds); + 1e-3 so 403 * 256 / 403 stays 256
            size = dmath.floor(fn.stack(h * w.resize / short, wd * w.resize / short) + 1e-3)
            x = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
            x = fn.resize(x, size=size, antialias=True, subpixel_scale=False)
            k = size - w.crop
            m = dmath.floor(k / 2)  # Python's round(k / 2): halves go to the even side
            off = m + (k - 2 * m) * (m - 2 * dmath.floor(m / 2))
            shape = types.Constant(np.array([w.crop, w.crop], np.float32))
            x = fn.slice(x, off, shape, axis_names="HW", normalized_anchor=False, normalized_shape=False)
            mirror = 0
        x = fn.crop_mirror_normalize(
            x, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std, mirror=mirror
        )
        return x, y

    p = pipe()
    p.build()

    class _Dali(_PhotoImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            for _ in range(w.batches_per_epoch):
                x, y = p.run()
                yield x, y

        def to_numpy(self, batch: Any) -> Any:
            x, y = batch
            return _np(x), _np(y).reshape(-1).astype(np.int64)

    return _Dali()


def build_tfdata(root: Path, w: PhotosWorkload, threads: int) -> Impl:
    """tf.data: ``read_file``, then ``decode_and_crop_jpeg`` of a box from
    ``sample_distorted_bounding_box`` + ``resize`` + ``random_flip_left_right`` (train) or
    ``decode_jpeg`` + shorter-side ``resize`` + central crop (val), normalize, CHW; parallel
    map, batch, prefetch.
    """
    import tensorflow as tf

    paths, labels, _ = list_files(root)
    mean = tf.constant(MEAN, tf.float32)
    std = tf.constant(STD, tf.float32)
    c = w.crop

    def train_image(data: Any) -> Any:
        shape = tf.io.extract_jpeg_shape(data)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            shape, tf.zeros([1, 0, 4]), area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
            max_attempts=10, use_image_if_no_bounding_boxes=True,
        )  # fmt: skip
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        img = tf.io.decode_and_crop_jpeg(data, window, channels=3)
        img = tf.image.resize(img, (c, c), antialias=True)
        return tf.image.random_flip_left_right(img)

    def val_image(data: Any) -> Any:
        img = tf.io.decode_jpeg(data, channels=3)
        hw = tf.cast(tf.shape(img)[:2], tf.float32)
        # torchvision's sizes: the longer side truncated, the crop's offset rounded
        size = tf.cast(hw * (w.resize / tf.reduce_min(hw)), tf.int32)
        img = tf.image.resize(img, tf.minimum(tf.maximum(size, w.resize), 1 << 16), antialias=True)
        off = tf.cast(tf.round(tf.cast(tf.shape(img)[:2] - c, tf.float32) / 2), tf.int32)
        return tf.image.crop_to_bounding_box(img, off[0], off[1], c, c)

    decode = train_image if w.recipe == "train" else val_image

    def load(path: Any, label: Any) -> Any:
        img = (decode(tf.io.read_file(path)) / 255.0 - mean) / std
        return tf.transpose(img, (2, 0, 1)), label

    ds = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int64)))
    if w.recipe == "train":
        ds = ds.shuffle(len(paths), seed=w.seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(w.batch, drop_remainder=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)

    class _Tf(_PhotoImpl):
        def epoch(self, e: int) -> Iterator[Any]:
            yield from itertools.islice(ds, w.batches_per_epoch)

    return _Tf()


class _DecodeFloor(_ThreadedImpl):
    """The floor: read and fully decode the same files with Pillow (libjpeg-turbo; it
    releases the GIL while decoding), split across ``threads`` threads; nothing else.
    """

    def __init__(self, root: Path, w: PhotosWorkload, threads: int) -> None:
        super().__init__(threads)
        self.w = w
        self.paths = list_files(root)[0]

    @staticmethod
    def _decode(paths: list[str], out: list[Any], lo: int, hi: int) -> None:
        from PIL import Image

        for i in range(lo, hi):
            with Image.open(paths[i]) as im:
                out[i] = np.asarray(im.convert("RGB"))

    def epoch(self, e: int) -> Iterator[Any]:
        b = self.w.batch
        for k in range(self.w.batches_per_epoch):
            paths = self.paths[k * b : (k + 1) * b]
            out: list[Any] = [None] * len(paths)
            self._run(self._decode, [(paths, out, lo, hi) for lo, hi in _split(len(paths), self.threads)])
            yield out


def build_decode_floor(root: Path, w: PhotosWorkload, threads: int) -> Impl:
    """Floor: full Pillow decode of the same files (see :class:`_DecodeFloor`)."""
    return _DecodeFloor(root, w, threads)


def photo_specs(w: PhotosWorkload) -> list[Spec]:
    """Every row of ``zerofeed bench images``, zerofeed first, floors last."""
    t = w.threads()
    n = t if t > 1 else 2
    rows: list[tuple[str, str, tuple[str, ...], Any, int, str]] = [
        ("zerofeed", "zerofeed", ("zerofeed._zerofeed", "torch"), build_zerofeed, t,
         "Images(folder) + Loader(ops), fast_decode (region + DCT scale), .torch()"),
        ("zerofeed-exact", "zerofeed", ("zerofeed._zerofeed", "torch"), build_zerofeed_exact, t,
         "the same with fast_decode=False (full decode, then crop/resize)"),
        ("torchvision-w0", "torchvision", ("torchvision",), build_torchvision, 0,
         "ImageFolder (PIL) + v2 transforms, DataLoader, 0 workers"),
        (f"torchvision-w{n}", "torchvision", ("torchvision",), build_torchvision, n,
         f"ImageFolder (PIL) + v2 transforms, DataLoader, {n} workers"),
        ("dali-cpu", "dali", ("nvidia.dali",), build_dali, t,
         "DALI CPU: readers.file + decoders.image(_random_crop) + resize + crop_mirror_normalize"),
        ("tfdata", "tfdata", ("tensorflow",), build_tfdata, t,
         "tf.data read_file + decode_and_crop_jpeg / decode_jpeg + tf.image, AUTOTUNE"),
    ]  # fmt: skip
    out = [Spec(a, g, m, b, th, d) for a, g, m, b, th, d in rows]
    for k in dict.fromkeys((1, n)):
        desc = f"full Pillow decode of the same files, nothing else, {k} thread(s)"
        out.append(Spec(f"floor-decode-{k}t", "floor", ("PIL",), build_decode_floor, k, desc, None, False))
    return out


#: The ``--against`` groups of ``zerofeed bench images``.
PHOTO_GROUPS: tuple[str, ...] = ("torchvision", "dali", "tfdata")

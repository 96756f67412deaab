"""The zero-copy walkthrough: what the usual NumPy -> framework path costs, and what zerofeed does.

Run with `make walkthrough`. Every claim printed is measured in this process: data pointers
are compared, and resident memory (VmRSS) is read before and after each step.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings

import numpy as np

import zerofeed as zf

MiB = 1 << 20


def rss() -> int:
    """Resident memory of this process in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _tf_pointer(tensor: object) -> int:
    """TensorFlow does not expose data pointers; exporting back through DLPack does."""
    import tensorflow as tf

    return zf.view(tf.experimental.dlpack.to_dlpack(tensor)).ptr


def step(title: str) -> None:
    print(f"\n== {title}")


def main() -> None:
    n, h, w = 512, 512, 512
    path = os.path.join(tempfile.mkdtemp(prefix="zerofeed-walkthrough-"), "images.npy")
    step(f"writing {n} images of {h}x{w}x3 uint8 ({n * h * w * 3 / MiB:.0f} MiB) to {path}")
    rng = np.random.default_rng(0)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
    for i in range(0, n, 64):
        images[i : i + 64] = rng.integers(0, 256, size=(min(64, n - i), h, w, 3), dtype=np.uint8)
    images.flush()
    del images

    step("memory-map it with zerofeed.open_npy (header validated, nothing read)")
    before = rss()
    data = zf.open_npy(path)
    print(f"  {data}")
    print(f"  aligned to {data.alignment} bytes; RSS +{(rss() - before) / MiB:.1f} MiB")

    step("crop every image by N-d view (memoryview cannot slice in more than one dimension)")
    try:
        memoryview(np.load(path, mmap_mode="r"))[:, 128:384, 128:384, :]
    except NotImplementedError as err:
        print(f"  memoryview: NotImplementedError: {err}")
    batch = data[:32]
    crop = batch[:, 128:384, 128:384, :]
    print(f"  crop: {crop}")

    step("hand the batch and the crop to each framework")
    frameworks = []
    for name, convert, pointer in (
        ("numpy", zf.to_numpy, lambda t: t.ctypes.data),
        ("torch", zf.to_torch, lambda t: t.data_ptr()),
        ("jax", zf.to_jax, lambda t: t.unsafe_buffer_pointer()),
        ("tensorflow", zf.to_tensorflow, _tf_pointer),
    ):
        try:
            zf.frameworks.require(name)
        except ImportError as err:
            print(f"  {name}: skipped ({err})")
            continue
        frameworks.append(name)
        for label, source in (("batch", batch), ("crop", crop)):
            e = zf.explain(source, name)
            copies_before = zf.copy_stats()["copies"]
            before = rss()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's read-only caveat, explained below
                tensor = convert(source)
            grew = (rss() - before) / MiB
            copied = zf.copy_stats()["copies"] - copies_before
            same = pointer(tensor) == source.ptr
            where = "same pointer" if same else "new buffer"
            print(
                f"  {name:<10} {label}: {'zero-copy' if e.zero_copy else 'ONE copy':<9} "
                f"({where}), RSS +{grew:.1f} MiB, copies made: {copied}"
            )
            del tensor

    step("why a conversion copies: zerofeed.explain")
    for name in frameworks:
        print("  " + str(zf.explain(crop, name)).replace("\n", "\n  "))

    if "tensorflow" in frameworks:
        import tensorflow as tf

        step("the usual path for comparison: tf.convert_to_tensor(np.load(...)) copies everything")
        mapped = np.load(path, mmap_mode="r")
        before, start = rss(), time.perf_counter()
        tensor = tf.convert_to_tensor(mapped[:256])
        print(
            f"  256 images: RSS +{(rss() - before) / MiB:.0f} MiB in "
            f"{time.perf_counter() - start:.2f} s (zerofeed: +0 MiB, no copy)"
        )
        del tensor
    print(f"\nTotal copies made by zerofeed: {zf.copy_stats()}")


if __name__ == "__main__":
    main()

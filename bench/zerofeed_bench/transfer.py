"""``zerofeed bench transfer``: host-to-device GB/s by size, and the Loader on the GPU.

One run measures, per size: a naive pageable copy (``cuMemcpyHtoD`` from NumPy memory,
called through ctypes, as any tool that does not pin does), a pinned copy
(:func:`zerofeed.cuda.to_device` of a :func:`zerofeed.cuda.pinned_empty` array),
zerofeed's staged copy of the pageable array (:func:`zerofeed.cuda.to_device`), and where
installed, torch ``.pin_memory()`` + ``.to(non_blocking=True)`` and CuPy (pageable and
pinned). Then the Loader's images/s on the device with float32 vs uint8 on the wire.
Everything zerofeed does goes through its public API; waiting for the copies is a
``cuCtxSynchronize`` of the primary context, which zerofeed's streams belong to. Ratios
are within this run. Without a CUDA driver it says so and exits 0.

Example:
    >>> from zerofeed_bench.transfer import main
    >>> main(["--sizes", "1"]) in (0,)  # doctest: +SKIP
    True

"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MIB = 1 << 20
DEFAULT_SIZES = [1, 16, 256, 1024]  # MiB; --sizes 1,16,256,1024,4096 for the full sweep


class Driver:
    """The CUDA driver through ctypes, in device ``index``'s primary context.

    Two uses: the naive pageable copy (what the bench compares zerofeed with must not go
    through zerofeed) and waiting for all work of the context, zerofeed's streams included.
    """

    def __init__(self, index: int = 0) -> None:
        self.lib = ctypes.CDLL("libcuda.so.1")
        self._check(self.lib.cuInit(0), "cuInit")
        dev = ctypes.c_int(0)
        self._check(self.lib.cuDeviceGet(ctypes.byref(dev), index), "cuDeviceGet")
        self.device = dev
        self.context = ctypes.c_void_p(0)
        self._check(
            self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), dev), "cuDevicePrimaryCtxRetain"
        )
        self._current()

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with CUDA error {status}")

    def _current(self) -> None:
        # The context is per thread: set it on every call's thread, not just the first one.
        self._check(self.lib.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def synchronize(self) -> None:
        """Wait until every copy and kernel in the primary context has finished."""
        self._current()
        self._check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize")

    def alloc(self, nbytes: int) -> int:
        """Device memory of ``nbytes`` bytes (free it with :meth:`free`)."""
        self._current()
        ptr = ctypes.c_uint64(0)
        self._check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "cuMemAlloc")
        return ptr.value

    def free(self, ptr: int) -> None:
        """Free memory from :meth:`alloc`."""
        self._check(self.lib.cuMemFree_v2(ctypes.c_uint64(ptr)), "cuMemFree")

    def copy_h2d(self, dst: int, src: np.ndarray) -> None:
        """The naive copy: ``cuMemcpyHtoD`` straight from (pageable) host memory."""
        self._current()
        status = self.lib.cuMemcpyHtoD_v2(
            ctypes.c_uint64(dst), ctypes.c_void_p(src.ctypes.data), ctypes.c_size_t(src.nbytes)
        )
        self._check(status, "cuMemcpyHtoD")

    def close(self) -> None:
        """Release the primary context reference taken in the constructor."""
        self.lib.cuDevicePrimaryCtxRelease_v2(self.device)


def _time(fn: Callable[[], Any], sync: Callable[[], Any], repeats: int) -> float:
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def _repeats(nbytes: int) -> int:
    return max(2, min(20, (256 * MIB) // max(nbytes, 1)))


def _copies(size_mib: int, zf: Any, driver: Driver) -> dict[str, float]:
    """GB/s of each method for one size (1 GB = 1e9 bytes)."""
    nbytes = size_mib * MIB
    reps = _repeats(nbytes)
    pageable = np.ones(nbytes, np.uint8)
    results: dict[str, float] = {}
    dst = driver.alloc(nbytes)
    try:
        naive = _time(lambda: driver.copy_h2d(dst, pageable), driver.synchronize, reps)
    finally:
        driver.free(dst)
    results["naive pageable"] = nbytes / naive / 1e9
    pinned = zf.cuda.pinned_empty(nbytes, "uint8")
    pinned[:] = 1
    holder: list[Any] = []

    def upload(source: np.ndarray) -> Callable[[], None]:
        def run() -> None:
            # Keep the last device array alive, as a user would; the one before it goes
            # back to zerofeed's device pool.
            holder[:] = [zf.cuda.to_device(source)]

        return run

    # What users write: to_device of a pinned_empty array, which must take the direct path;
    # a "pinned" row near the "staged" one means it went through the staging ring instead.
    results["zerofeed pinned"] = nbytes / _time(upload(pinned), driver.synchronize, reps) / 1e9
    results["zerofeed staged (pageable)"] = nbytes / _time(upload(pageable), driver.synchronize, reps) / 1e9
    holder.clear()
    try:
        import torch

        if torch.cuda.is_available():
            src = torch.from_numpy(pageable)
            t_pinned = src.pin_memory()
            results["torch pageable .to()"] = (
                nbytes / _time(lambda: src.to("cuda"), torch.cuda.synchronize, reps) / 1e9
            )
            results["torch pin_memory + non_blocking"] = (
                nbytes
                / _time(lambda: t_pinned.to("cuda", non_blocking=True), torch.cuda.synchronize, reps)
                / 1e9
            )
    except ImportError:
        pass
    try:
        import cupy
        import cupyx

        c_pinned = cupyx.empty_pinned((nbytes,), np.uint8)
        c_pinned[:] = 1
        dst_c = cupy.empty((nbytes,), np.uint8)
        stream = cupy.cuda.Stream(non_blocking=True)
        results["cupy pageable asarray"] = (
            nbytes / _time(lambda: cupy.asarray(pageable), cupy.cuda.Device().synchronize, reps) / 1e9
        )
        results["cupy pinned set"] = (
            nbytes / _time(lambda: dst_c.set(c_pinned, stream=stream), stream.synchronize, reps) / 1e9
        )
    except ImportError:
        pass
    return results


def _loader(zf: Any, driver: Driver, images: int, side: int, batch: int) -> dict[str, float]:
    """Images/s of the CUDA Loader, float32 vs uint8 on the wire (normalized on the GPU)."""
    data = np.random.default_rng(0).integers(0, 255, (images, side, side, 3), dtype=np.uint8)
    crop = side * 7 // 8
    out: dict[str, float] = {}
    for label, on_device in (("float32 on the wire", False), ("uint8 on the wire", True)):
        loader = zf.Loader(
            data,
            batch_size=batch,
            ops=[
                zf.CenterCrop(crop, crop),
                zf.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                zf.ToCHW(),
            ],
            device="cuda:0",
            normalize_on_device=on_device,
            prefetch=4,
        )
        for _ in loader:  # warm-up epoch: pools filled, pages registered, kernel JIT'd
            pass
        start = time.perf_counter()
        seen = 0
        for epoch_batch in loader:
            seen += epoch_batch.shape[0]
        driver.synchronize()
        out[label] = seen / (time.perf_counter() - start)
        loader.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the transfer benchmark; print a table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(prog="zerofeed bench transfer", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="MiB, comma-separated")
    parser.add_argument("--images", type=int, default=2048, help="images for the Loader run")
    parser.add_argument("--side", type=int, default=256, help="image side (uint8 HWC, 3 channels)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    import zerofeed as zf
    import zerofeed.cuda

    if not zerofeed.cuda.available():
        print(f"{zerofeed.cuda.unavailable_reason()}; nothing to measure")
        return 0
    print(f"device: {zerofeed.cuda.device_name(0)}")
    driver = Driver(0)
    report: dict[str, Any] = {"device": zerofeed.cuda.device_name(0), "copies": {}, "loader": {}}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        results = _copies(size, zf, driver)
        report["copies"][size] = results
        print(f"\n{size} MiB host-to-device (GB/s)")
        for name, gbs in results.items():
            print(f"  {name:34s} {gbs:8.2f}")
        pinned = results["zerofeed pinned"]
        best = max((v for k, v in results.items() if ("torch pin" in k or "cupy pinned" in k)), default=None)
        print(f"  pinned / naive pageable (the seed's '2-4x'):  {pinned / results['naive pageable']:.2f}x")
        print(
            f"  staged / naive pageable (target >= 1.5x):     "
            f"{results['zerofeed staged (pageable)'] / results['naive pageable']:.2f}x"
        )
        if best:
            print(f"  zerofeed pinned / best framework pinned (target >= 0.90): {pinned / best:.2f}")
    loader = _loader(zf, driver, args.images, args.side, args.batch)
    driver.close()
    report["loader"] = loader
    print(f"\nLoader, {args.side}x{args.side}x3 uint8 images, batch {args.batch} (images/s)")
    for name, rate in loader.items():
        print(f"  {name:34s} {rate:10.0f}")
    ratio = loader["uint8 on the wire"] / loader["float32 on the wire"]
    print(f"  uint8 / float32 on the wire (target >= 3x when the bus is the bottleneck): {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

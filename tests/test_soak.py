"""A soak test: 200,000 small batches through NumPy, PyTorch, TensorFlow and JAX exports,
resident memory sampled; it must not drift, and no worker thread may outlive close()."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import require

SOAK = textwrap.dedent(
    """
    import gc, os, sys
    import numpy as np
    import zerofeed as zf

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def workers():
        n = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/comm") as f:
                    n += f.read().startswith("zerofeed-worke")
            except FileNotFoundError:
                pass
        return n

    import torch, tensorflow as tf, jax
    targets = {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
    data = {"x": np.arange(5000 * 8, dtype=np.float32).reshape(5000, 8), "y": np.arange(5000)}
    total = int(sys.argv[1])
    loader = zf.Loader(data, batch_size=4, shuffle=True, workers=2)

    def run(batches):
        for name in targets:  # each target in turn, through its own iterator
            done = 0
            while done < batches:
                for batch in getattr(loader, name)():
                    done += 1
                    if done >= batches:
                        break
        gc.collect()
        return rss()

    warm = run(total // 16)          # a quarter of the batches: caches and pools settle
    end = run(total * 3 // 16)       # the other three quarters
    loader.close()
    drift = (end - warm) / warm
    print(f"rss warm {warm} end {end} drift {drift:.4f} workers {workers()}")
    assert abs(drift) < 0.01, drift
    assert workers() == 0
    """
)


def test_two_hundred_thousand_batches_hold_memory_steady():
    for name in ("torch", "tensorflow", "jax"):
        require(name)
    done = subprocess.run([sys.executable, "-c", SOAK, "200000"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "drift" in done.stdout

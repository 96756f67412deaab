"""Read-only memory stays read-only, and files that change under a map never crash the process
(issue 9: 1 and 2). Every scenario runs in a child process where a crash would be a signal,
so a regression fails this test instead of killing the test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import require

import zerofeed as zf


def run(code: str, *paths: str, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter; `paths` are passed as sys.argv[1:]."""
    script = "import sys, numpy as np, zerofeed as zf\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=timeout
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.arange(64 * 1024, dtype=np.float32).reshape(256, 256))
    return str(path)


def test_writes_through_torch_land_in_a_private_copy_and_the_file_never_changes(npy):
    require("torch")
    before = open(npy, "rb").read()
    out = ok(
        run(
            """
            import torch
            v = zf.open_npy(sys.argv[1])
            assert v.readonly and not zf.explain(v, "torch").reasons  # shared, no copy
            t = zf.to_torch(v)
            assert t.data_ptr() == v.ptr
            t /= 255; t.add_(1); t[0] = 1              # each was a SIGSEGV on a read-only map
            u = torch.from_dlpack(v)                   # the consumer's own route
            u[1] = 7
            print(float(np.asarray(v)[0, 0]), float(np.asarray(v)[1, 3]))
            """,
            npy,
        )
    )
    assert out.split() == ["1.0", "7.0"]  # this process sees its own writes...
    assert open(npy, "rb").read() == before  # ...and the file is untouched
    assert float(np.asarray(zf.open_npy(npy))[0, 0]) == 0.0


def test_tensorflow_and_jax_tensors_passed_on_to_torch_cannot_crash(npy):
    require("torch")
    require("tensorflow")
    require("jax")
    ok(
        run(
            """
            import torch, tensorflow as tf, jax, jax.dlpack
            v = zf.open_npy(sys.argv[1])
            g = zf.to_tensorflow(v)
            torch.from_dlpack(tf.experimental.dlpack.to_dlpack(g))[0] = 5   # legacy: no flag
            j = zf.to_jax(v)
            torch.from_dlpack(j)[1] = 6
            tf.raw_ops.InplaceUpdate(x=g, i=[2], v=tf.ones((1, 256)))
            print("alive")
            """,
            npy,
        )
    )


def test_read_only_memory_that_is_not_a_private_map_is_copied_for_writers():
    require("torch")
    out = ok(
        run(
            """
            import torch
            one = bytes([0])
            t = zf.to_torch(one)
            t[0] = 65                                    # used to change CPython's cached b"\\x00"
            assert bytes([0]) == b"\\x00" and one == b"\\x00"
            frozen = np.arange(8.0); frozen.flags.writeable = False
            w = zf.to_torch(frozen); w += 1
            assert frozen.tolist() == list(range(8))
            import warnings
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                shared = zf.to_torch(frozen, copy=False)
            assert shared.data_ptr() == frozen.ctypes.data and caught
            m = np.load(sys.argv[1], mmap_mode="r")      # numpy's own read-only map...
            assert zf.explain(m, "torch").zero_copy      # ...viewed through zerofeed's own
            zf.to_torch(m)[0] = 3                        # private map: no SIGSEGV, no copy
            assert float(m[0, 0]) == 0.0                 # numpy's map and the file unchanged
            print("ok")
            """,
            _tmp_npy(),
        )
    )
    assert out.strip() == "ok"


def _tmp_npy() -> str:
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "m.npy")
    np.save(path, np.zeros((4, 4), np.float32))
    return path


TRUNCATE = """
import os, time
path = sys.argv[1]
v = zf.open_npy(path)
loader = zf.Loader(path, batch_size=16, workers=2, prefetch=1)
it = iter(loader)
next(it)
np.save(path, np.zeros(3, np.float32))          # re-running a preprocessing script
tail = np.asarray(v)[-1]                        # other code reading the map: zeros, no SIGBUS
assert float(tail.sum()) == 0.0, tail[:4]
errors = []
for attempt in range(3):
    try:
        next(it)
    except zf.SourceChangedError as err:
        errors.append(err)
for make in (lambda: v.copy(), lambda: zf.to_tensorflow(v[:, ::2]) if TF else v.copy()):
    try:
        make()
    except zf.SourceChangedError as err:
        errors.append(err)
assert len(errors) == 5, errors
assert all(path in str(e) and isinstance(e, OSError) for e in errors), errors
print("survived")
"""


@pytest.mark.parametrize("place", ["tmp", "shm"])
def test_a_file_truncated_under_a_map_raises_source_changed_and_never_kills(tmp_path, place):
    if place == "shm":
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm on this machine")
        base = os.path.join("/dev/shm", f"zf-test-{os.getpid()}.npy")
    else:
        base = str(tmp_path / "big.npy")
    np.save(base, np.arange(512 * 1024, dtype=np.float32).reshape(512, 1024) + 1)
    try:
        code = "TF = False\n" + TRUNCATE
        out = ok(run(code, base))
        assert out.strip() == "survived"
    finally:
        if place == "shm" and os.path.exists(base):
            os.remove(base)


def test_faults_outside_zerofeed_maps_still_reach_the_default_handler(tmp_path):
    """Our SIGBUS handler only handles its own maps: a fault elsewhere still kills."""
    path = tmp_path / "other.bin"
    path.write_bytes(b"x" * 8192)
    done = run(
        """
        import mmap
        zf.open_npy(sys.argv[2])                       # installs zerofeed's handler
        with open(sys.argv[1], "r+b") as f:
            m = mmap.mmap(f.fileno(), 8192)
            f.truncate(0)
            print(m[5000])                             # a real SIGBUS in Python's own map
        """,
        str(path),
        _tmp_npy(),
    )
    assert done.returncode != 0 and "x" not in done.stdout

"""Shared helpers for the zerofeed test suite.

The suite tests the package next to it: when the extension was built in place
(``python/zerofeed/_zerofeed*.so``), ``python/`` goes first on ``sys.path`` so that an
installed zerofeed (e.g. a ``maturin develop`` of another checkout) cannot shadow it.
Subprocesses get the same path through ``PYTHONPATH``.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_DIR = ROOT / "python"
if glob.glob(str(PYTHON_DIR / "zerofeed" / "_zerofeed*.so")):
    sys.path.insert(0, str(PYTHON_DIR))

import zerofeed as zf  # noqa: E402

ZF_PATH = str(Path(zf.__file__).resolve().parent.parent)

# Every dtype zerofeed handles natively through NumPy (bfloat16 is tested separately).
DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]


REQUIREMENTS = ROOT / "requirements" / "test.txt"


def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def pinned_requirements(path: Path | None = None) -> set[str]:
    """The distribution names a requirements file lists (normalized: lower case, ``-``).

    Example: ``jax[cpu]==0.10.2`` gives ``jax``, ``ml_dtypes>=0.5`` gives ``ml-dtypes``.
    """
    names = set()
    for line in (path or REQUIREMENTS).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if name:
            names.add(re.sub(r"[-_.]+", "-", name.group(0)).lower())
    return names


def is_pinned(module: str, requirements: set[str] | None = None) -> bool:
    """Whether the requirements install ``module``: a distribution named after it, or a
    variant of it (``tensorflow-cpu`` for ``tensorflow``, ``nvidia-dali-cuda120`` for
    ``nvidia.dali``).
    """
    names = pinned_requirements() if requirements is None else requirements
    base = re.sub(r"[-_.]+", "-", module).lower()
    return any(name == base or name.startswith(base + "-") for name in names)


def require(module: str, reason: str | None = None) -> ModuleType:
    """Import ``module`` for a test, or skip the test saying why.

    Under CI a framework that requirements/test.txt pins but that fails to import is a
    broken install: the test fails instead of skipping, so CI cannot turn green without it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        why = reason or f"{module} is not installed"
        if in_ci() and is_pinned(module):
            pytest.fail(
                f"{module} is pinned in {os.path.relpath(REQUIREMENTS, ROOT)} but does not import under "
                f"CI=true ({err}); fix the environment ({why})",
                pytrace=False,
            )
        pytest.skip(f"{why} ({err})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: large-memory or many-subprocess tests (run by default)")


def worker_thread_ids() -> set[int]:
    """The kernel thread ids of this process's live zerofeed worker threads (named
    ``zerofeed-worker-N``; the kernel keeps 15 characters)."""
    ids = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                if comm.read().startswith("zerofeed-worke"):
                    ids.add(int(task))
        except FileNotFoundError:  # the thread ended while we looked
            pass
    return ids


def worker_threads() -> int:
    """Live zerofeed worker threads of this process. Other libraries' pools (TF, torch, JAX)
    come and go on their own, so counting every thread would make the shutdown tests flaky."""
    return len(worker_thread_ids())


def worker_threads_settle(expected: int, within: float = 2.0) -> int:
    """Worker threads once they are down to ``expected``, or the count after ``within``
    seconds. Joining a thread returns when it has finished running, a moment before the kernel
    removes its /proc/self/task entry, so a count taken right after a join can still see it."""
    deadline = time.monotonic() + within
    while (count := worker_threads()) != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    return count


def addr(a: np.ndarray) -> int:
    """The data address NumPy reports for ``a``."""
    return a.__array_interface__["data"][0]


def filled(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """A C-contiguous array of ``shape`` with distinct, dtype-appropriate values."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape, dtype=np.int64))
    dt = np.dtype(dtype)
    if dt.kind == "b":
        flat = rng.integers(0, 2, size).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        flat = rng.integers(max(info.min, -(2**62)), min(info.max, 2**62), size, endpoint=True)
        flat = flat.astype(dt)
    elif dt.kind == "f":
        flat = (rng.standard_normal(size) * 100).astype(dt)
    else:
        flat = (rng.standard_normal(size) + 1j * rng.standard_normal(size)).astype(dt)
    return flat.reshape(shape)


def rss_bytes() -> int:
    """Resident set size of this process (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def capsule_name(capsule: object) -> str | None:
    """The name of a PyCapsule (``dltensor``, ``dltensor_versioned``, ``used_...``)."""
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    name = get_name(capsule)
    return None if name is None else name.decode()


def capsule_is_valid(capsule: object, name: str) -> bool:
    """``PyCapsule_IsValid(capsule, name)``."""
    is_valid = ctypes.pythonapi.PyCapsule_IsValid
    is_valid.restype = ctypes.c_int
    is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return bool(is_valid(capsule, name.encode()))


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that imports this zerofeed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ZF_PATH, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


def loopback_env() -> dict[str, str]:
    """:func:`subprocess_env` for a multi-process job on this machine: no launcher variables
    inherited from the test run, and every process talking over loopback only.
    """
    env = subprocess_env()
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "TF_CONFIG"):
        env.pop(name, None)
    env.update(GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    return env


def exec_namespace(code: str) -> dict[str, object]:
    """The globals of ``code`` run here (the data a multi-process test's script shares)."""
    scope: dict[str, object] = {}
    exec(textwrap.dedent(code), scope)
    return scope


def run_python(code: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this zerofeed importable."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def describe_exit(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit status and the tail of the output, for assertion messages."""
    status = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"rc={proc.returncode}"
    return f"{status}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def pytest_report_header(config: pytest.Config) -> str:
    return f"zerofeed from {zf.__file__}"

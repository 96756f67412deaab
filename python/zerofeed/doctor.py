"""``zerofeed doctor``: what this machine can do, and what it means for a zerofeed user.

Every line is a :class:`Finding`: what was found, and what it means. The machine readers
(:func:`cpu_model`, :func:`meminfo`, :func:`version_of`) read ``/proc`` and package metadata
directly and return ``"unknown"`` / ``{}`` / ``None`` for what they cannot read, so the doctor
works in containers and on non-Linux systems with less detail. ``zerofeed-bench`` reuses them.

Example:
    >>> f = memlock_finding()
    >>> f.label
    'memlock limit'

"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import cuda, frameworks
from .explain import TARGETS, explain
from .memory import empty
from .views import view

#: Distribution names of the frameworks zerofeed talks to, by display name.
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
    "torch": ("torch",),
    "jax": ("jax",),
    "jaxlib": ("jaxlib",),
    "cupy": ("cupy", "cupy-cuda12x", "cupy-cuda11x"),
    "zerofeed": ("zerofeed",),
}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_model() -> str:
    """Return the CPU model name from ``/proc/cpuinfo`` (or :func:`platform.processor`).

    Example:
        >>> isinstance(cpu_model(), str)
        True

    """
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Model", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes, e.g. ``{"MemTotal": ..., "MemAvailable": ...}``.

    Example:
        >>> all(isinstance(v, int) for v in meminfo().values())
        True

    """
    out: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            mult = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            out[key] = int(parts[0]) * mult
    return out


def version_of(name: str, dists: tuple[str, ...] | None = None) -> str | None:
    """Installed version of a package by display name, or None when it is not installed.

    ``dists`` are the distribution names to try (default: :data:`FRAMEWORKS` of ``name``,
    else ``name`` itself).

    Example:
        >>> version_of("numpy") is not None, version_of("no-such-package-here")
        (True, None)

    """
    for dist in dists or FRAMEWORKS.get(name, (name,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def format_bytes(n: float | None) -> str:
    """Human-readable bytes (binary units).

    Example:
        >>> format_bytes(512), format_bytes(3 * 2**20), format_bytes(None)
        ('512 B', '3.0 MiB', '-')

    """
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclasses.dataclass
class Finding:
    """One doctor line: ``label: value`` and, indented under it, what it means."""

    label: str
    value: str
    meaning: str
    level: str = "ok"  # ok | warn | info

    def render(self, width: int = 22) -> str:
        """Two lines: the fact, then ``-> meaning``."""
        mark = {"ok": " ", "warn": "!", "info": " "}.get(self.level, " ")
        return f"{mark} {self.label:<{width}} {self.value}\n  {'':<{width}} -> {self.meaning}"


def cpu_finding() -> Finding:
    """CPU model and cores, and the default number of loader workers that follows."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        usable = os.cpu_count() or 1
    online = os.cpu_count() or usable
    value = f"{cpu_model()}, {usable} cores usable ({online} online)"
    meaning = f"zf.Loader(workers=None) runs {usable} worker threads"
    if usable <= 2:
        meaning += "; with so few cores the input pipeline competes with training for CPU"
        return Finding("CPU", value, meaning, "warn")
    return Finding("CPU", value, meaning)


def ram_finding() -> Finding:
    """Total and available RAM, and what size of dataset fits in memory."""
    m = meminfo()
    total, avail = m.get("MemTotal"), m.get("MemAvailable")
    if total is None:
        return Finding("RAM", "unknown", "cannot read /proc/meminfo", "info")
    value = f"{format_bytes(total)} total, {format_bytes(avail)} available"
    meaning = (
        f"datasets up to ~{format_bytes((avail or total) * 0.8)} can be loaded into RAM; "
        "larger ones: open the .npy memory-mapped (zf.open_npy), the page cache keeps "
        "what fits"
    )
    return Finding("RAM", value, meaning)


def memlock_finding() -> Finding:
    """Report the ``RLIMIT_MEMLOCK`` limit: how much ``pin=True`` may page-lock."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    inf = resource.RLIM_INFINITY

    def show(x: int) -> str:
        return "unlimited" if x == inf else format_bytes(x)

    value = f"{show(soft)} (hard {show(hard)})"
    if soft == inf:
        return Finding("memlock limit", value, "pin=True can page-lock as much as RAM allows")
    # zerofeed holds its page-locked batch buffers to the soft limit even for processes that
    # could exceed it (CAP_IPC_LOCK): the limit is how the machine's owner budgets locked RAM.
    meaning = (
        f"pin=True locks at most {show(soft)} of batch buffers; beyond that batches stay "
        "unlocked (one warning, loader.stats['pin_failures']); raise it with `ulimit -l "
        "unlimited` or /etc/security/limits.conf (memlock)"
    )
    return Finding("memlock limit", value, meaning, "warn")


def thp_finding() -> Finding:
    """Transparent huge pages mode and whether zerofeed's buffers can use them."""
    p = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    try:
        text = p.read_text().strip()
    except OSError:
        return Finding("transparent huge pages", "unknown", f"cannot read {p}", "info")
    mode = text.split("[", 1)[1].split("]", 1)[0] if "[" in text else text
    meanings = {
        "always": "large buffers get 2 MiB pages automatically (fewer TLB misses)",
        "madvise": "zerofeed asks for 2 MiB pages on its large buffers (madvise), and gets them",
        "never": "4 KiB pages only: large copies pay more TLB misses; ask your admin for `madvise`",
    }
    level = "warn" if mode == "never" else "ok"
    return Finding("transparent huge pages", f"{mode}  ({text})", meanings.get(mode, text), level)


def cuda_finding() -> Finding:
    """Whether a CUDA driver is loadable and which GPUs it sees."""
    try:
        names = [cuda.device_name(i) for i in range(cuda.device_count())]
    except Exception as e:  # noqa: BLE001 - a broken driver is a finding, not a crash
        return Finding("CUDA", f"error: {e}", "device='cuda' will not work here", "warn")
    if names:
        value = f"{len(names)} GPU(s): " + "; ".join(f"{i}: {n}" for i, n in enumerate(names))
        return Finding("CUDA", value, "device='cuda:N' and pin=True transfers are available")
    return Finding(
        "CUDA",
        f"no GPU ({cuda.unavailable_reason() or 'no device'})",
        "device='cuda' is a clear error here; device='cpu' and everything else works",
        "info",
    )


class _Producer:
    """A DLPack producer that records the ``max_version`` its consumer asks for."""

    def __init__(self) -> None:
        self.array = np.arange(4, dtype=np.float32)
        self.asked: Any = "not called"

    def __dlpack__(self, **kw: Any) -> Any:
        self.asked = kw.get("max_version")
        if self.asked is None:
            return self.array.__dlpack__()
        return self.array.__dlpack__(max_version=self.asked)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


def _dlpack_probe(name: str) -> str:
    """Whether framework ``name`` *takes* versioned DLPack (1.x) when importing.

    Returns ``versioned``, ``legacy only`` or ``probe failed: ...``. The probe hands the
    framework's ``from_dlpack`` a producer and looks at the ``max_version`` it asks for
    (TensorFlow takes capsules: it is handed a versioned one).
    """
    try:
        prod = _Producer()
        if name == "tensorflow":
            import tensorflow as tf

            try:
                tf.experimental.dlpack.from_dlpack(prod.array.__dlpack__(max_version=(1, 0)))
            except Exception:  # noqa: BLE001 - rejecting the capsule is the answer
                return "legacy only"
            return "versioned"
        if name == "numpy":
            out: Any = np.from_dlpack(prod)
        elif name == "torch":
            from torch.utils.dlpack import from_dlpack  # torch.from_dlpack, explicitly exported

            out = from_dlpack(prod)
        elif name == "jax":
            import jax.numpy as jnp

            out = jnp.from_dlpack(prod)
        elif name == "cupy":
            return "not probed (host arrays only)"
        else:
            return "unknown"
        if not np.array_equal(np.asarray(out), prod.array):
            return "probe failed: wrong values"
        asked = prod.asked
        if isinstance(asked, tuple) and asked and asked[0] >= 1:
            return "versioned"
        return "legacy only"
    except Exception as e:  # noqa: BLE001 - report, do not crash the doctor
        return f"probe failed: {type(e).__name__}: {e}"


def framework_findings(probe: bool = True) -> list[Finding]:
    """Installed frameworks with versions and (with ``probe``) their DLPack support."""
    out = []
    for name in TARGETS:
        v = version_of(name)
        if v is None:
            what = "loader.cupy() and CuPy conversions" if name == "cupy" else f"zf.to_{name}"
            out.append(Finding(name, "not installed", f"{what} not available", "info"))
            continue
        if not probe:
            out.append(Finding(name, v, "installed (run without --fast to probe DLPack)"))
            continue
        d = _dlpack_probe(name)
        if d == "versioned":
            meaning = "takes versioned DLPack (1.x): zerofeed hands it read-only flags too"
        elif d == "legacy only":
            meaning = "takes legacy DLPack only: zerofeed hands it the unversioned capsule"
        else:
            meaning = d
        out.append(Finding(name, f"{v}, DLPack: {d}", meaning, "ok" if "fail" not in d else "warn"))
    return out


def zero_copy_findings() -> list[Finding]:
    """Probe live whether zerofeed hands a NumPy array to TensorFlow and JAX zero-copy."""
    src = empty((512, 512), "float32")  # 64-byte aligned: what TF and JAX need to share it
    src[:] = 1.0
    ptr = src.ctypes.data
    out = []
    for target in ("tensorflow", "jax"):
        label = f"numpy -> {target}"
        if version_of(target) is None:
            out.append(Finding(label, "skipped", f"{target} is not installed", "info"))
            continue
        try:
            conv = getattr(frameworks, f"to_{target}")(src)
            got = conv.unsafe_buffer_pointer() if target == "jax" else view(conv).ptr
            if got == ptr:
                out.append(
                    Finding(
                        label,
                        "zero-copy (data pointer is the same)",
                        f"zf.to_{target} shares your array's memory; no copy",
                    )
                )
            else:
                reasons = "; ".join(explain(src, target).reasons or ["unknown"])
                out.append(Finding(label, "COPIES", f"why: {reasons}", "warn"))
        except Exception as e:  # noqa: BLE001 - report, do not crash the doctor
            out.append(
                Finding(
                    label,
                    f"probe failed: {type(e).__name__}: {e}",
                    f"conversion to {target} may not work here",
                    "warn",
                )
            )
    return out


def doctor(probe: bool = True) -> list[Finding]:
    """Every doctor finding, in display order.

    Example:
        >>> [f.label for f in doctor(probe=False)][:2]
        ['CPU', 'RAM']

    """
    out = [cpu_finding(), ram_finding(), memlock_finding(), thp_finding(), cuda_finding()]
    out += framework_findings(probe)
    if probe:
        out += zero_copy_findings()
    return out

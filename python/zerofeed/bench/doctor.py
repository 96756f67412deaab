"""``zerofeed doctor`` and ``zerofeed explain``.

``doctor`` says what this machine can do; ``explain`` what a conversion would do.

Every doctor line is a :class:`Finding`: what was found, and what it means for the user.

Example:
    >>> f = memlock_finding()
    >>> f.label
    'memlock limit'

"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import resource
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed.bench.machine import cpu_model, meminfo, version_of
from zerofeed.bench.report import format_bytes

#: Conversion targets ``zerofeed explain`` knows.
TARGETS: tuple[str, ...] = ("numpy", "tensorflow", "torch", "jax", "cupy")


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


def _zf() -> tuple[Any, str | None]:
    """Return the zerofeed module with its extension, or ``(None, why not)``."""
    try:
        import zerofeed
        import zerofeed._zerofeed  # noqa: F401
    except ImportError as e:
        return None, f"zerofeed extension cannot be imported ({e})"
    return zerofeed, None


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


def _cuda_ctypes() -> tuple[bool, list[str], str]:
    """Probe the CUDA driver directly: (loadable, GPU names, detail)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return False, [], f"libcuda.so.1 not loadable ({e})"
    if lib.cuInit(0) != 0:
        return True, [], "driver loaded but cuInit failed (no usable GPU or driver mismatch)"
    n = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return True, [], "cuDeviceGetCount failed"
    names = []
    for i in range(n.value):
        dev = ctypes.c_int(0)
        buf = ctypes.create_string_buffer(256)
        if lib.cuDeviceGet(ctypes.byref(dev), i) == 0 and lib.cuDeviceGetName(buf, 256, dev) == 0:
            names.append(buf.value.decode(errors="replace"))
        else:
            names.append(f"device {i}")
    return True, names, "libcuda.so.1"


def cuda_finding() -> Finding:
    """Whether a CUDA driver is loadable and which GPUs it sees."""
    zf, _ = _zf()
    cuda = getattr(zf, "cuda", None) if zf else None
    try:
        if cuda is not None:
            ok = bool(cuda.available())
            names = [cuda.device_name(i) for i in range(cuda.device_count())] if ok else []
            detail = "zf.cuda"
        else:
            ok, names, detail = _cuda_ctypes()
    except Exception as e:  # noqa: BLE001 - a broken driver is a finding, not a crash
        return Finding("CUDA", f"error: {e}", "device='cuda' will not work here", "warn")
    if names:
        value = f"{len(names)} GPU(s): " + "; ".join(f"{i}: {n}" for i, n in enumerate(names))
        return Finding("CUDA", value, "device='cuda:N' and pin=True transfers are available")
    return Finding(
        "CUDA",
        f"no GPU ({detail})" if ok else "no driver",
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
            import torch

            out = torch.from_dlpack(prod)
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


def _aligned(nbytes: int, align: int = 64) -> np.ndarray:
    buf = np.empty(nbytes + align, np.uint8)
    start = (-buf.ctypes.data) % align
    return buf[start : start + nbytes]


def zero_copy_findings() -> list[Finding]:
    """Probe live whether zerofeed hands a NumPy array to TensorFlow and JAX zero-copy."""
    zf, why = _zf()
    if zf is None:
        return [Finding("zero-copy probe", "not run", f"{why}; build/install zerofeed", "warn")]
    src = _aligned(1 << 20).view(np.float32).reshape(512, 512)
    src[:] = 1.0
    ptr = src.ctypes.data
    out = []
    for target in ("tensorflow", "jax"):
        label = f"numpy -> {target}"
        if version_of(target) is None:
            out.append(Finding(label, "skipped", f"{target} is not installed", "info"))
            continue
        try:
            conv = getattr(zf, f"to_{target}")(src)
            if target == "jax":
                got = conv.unsafe_buffer_pointer()
            else:
                got = zf.view(conv).ptr
            same = got == ptr
            expl = zf.explain(src, target)
            if same:
                out.append(
                    Finding(
                        label,
                        "zero-copy (data pointer is the same)",
                        f"zf.to_{target} shares your array's memory; no copy",
                    )
                )
            else:
                reasons = "; ".join(getattr(expl, "reasons", []) or ["unknown"])
                out.append(Finding(label, "COPIES", f"why: {reasons}", "warn"))
        except Exception as e:  # noqa: BLE001
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


# -------------------------------------------------------------------------------- explain


@dataclasses.dataclass
class NpyHeader:
    """What a ``.npy`` header says, and where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int
    file_size: int

    @property
    def nbytes(self) -> int:
        """Bytes the header promises."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_npy_header(path: Path) -> NpyHeader:
    """Parse a ``.npy`` header with NumPy's own reader (no data is read).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.npy"
        >>> np.save(p, np.zeros((2, 3), np.float32))
        >>> read_npy_header(p).data_offset % 64
        0

    """
    from numpy.lib import format as npf

    with open(path, "rb") as f:
        major, _ = npf.read_magic(f)
        reader = npf.read_array_header_1_0 if major == 1 else npf.read_array_header_2_0
        shape, fortran, dtype = reader(f)
        offset = f.tell()
    return NpyHeader(tuple(shape), np.dtype(dtype), bool(fortran), offset, path.stat().st_size)


def _facts(shape: tuple[int, ...], dtype: np.dtype, offset: int, fortran: bool, where: str) -> list[str]:
    align = min(offset & -offset if offset else 4096, 4096)
    return [
        f"shape {shape}, dtype {dtype}, {'Fortran' if fortran else 'C'} order",
        f"data at byte offset {offset} {where} (so aligned to {align} bytes)",
    ]


def _advice(dtype: np.dtype, offset: int, fortran: bool, target: str) -> list[str]:
    tips = []
    if offset % 64:
        tips.append(
            "the data is not 64-byte aligned: re-save it with np.save (NumPy pads the header "
            "to 64 bytes), or write it at an aligned offset"
        )
    if fortran:
        tips.append("Fortran order: save a C-ordered array (np.ascontiguousarray before np.save)")
    if dtype.byteorder == ">":
        tips.append("big-endian data always converts with a byte swap: save as little-endian")
    if target == "tensorflow" and dtype.kind == "b":
        tips.append("TensorFlow's DLPack import does not take bool: store uint8")
    return tips


def explain(
    target: str,
    path: Path | None = None,
    shape: tuple[int, ...] | None = None,
    dtype: str = "float32",
    offset: int = 0,
    fortran: bool = False,
) -> tuple[str, bool | None]:
    """Explain converting a ``.npy`` file (or a described array) to ``target``.

    Returns the text to print and the verdict (``True`` zero-copy, ``False`` copies,
    ``None`` when zerofeed could not be asked).
    """
    lines: list[str] = []
    if path is not None:
        h = read_npy_header(path)
        shp, dt, off, fo = h.shape, h.dtype, h.data_offset, h.fortran_order
        lines.append(f"{path}:")
        if h.file_size < off + h.nbytes:
            lines.append(
                f"  ! file is truncated: header promises {h.nbytes} bytes of data, "
                f"file has {h.file_size - off}"
            )
    else:
        shp, dt, off, fo = shape or (1,), np.dtype(dtype), offset, fortran
        lines.append("described array:")
    where = "in the file" if path is not None else "from a 64-byte aligned base"
    lines += [f"  {f}" for f in _facts(shp, dt, off, fo, where)]
    zf, why = _zf()
    verdict: bool | None = None
    if zf is None:
        lines.append(f"  zerofeed's verdict is unavailable: {why}")
    else:
        try:
            if path is not None:
                obj: Any = zf.open_npy(str(path))
            else:
                n = int(np.prod(shp, dtype=np.int64)) * dt.itemsize
                buf = _aligned(n + off + 64)
                obj = buf[off : off + n].view(dt).reshape(shp, order="F" if fo else "C")
            e = zf.explain(obj, target)
            verdict = bool(e.zero_copy)
            lines += ["  " + line for line in str(e).splitlines()]
        except Exception as e:  # noqa: BLE001
            lines.append(f"  zerofeed could not explain it: {type(e).__name__}: {e}")
    if verdict is None:
        tips = _advice(dt, off, fo, target)
        if tips:
            lines.append("  to avoid a copy:")
            lines += [f"   - {t}" for t in tips]
    return "\n".join(lines), verdict

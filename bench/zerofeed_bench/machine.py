"""What this machine is (CPU, memory, versions), and process memory read from ``/proc``.

The CPU, RAM and version readers are :mod:`zerofeed.doctor`'s. Everything reads files
directly (no psutil) and returns ``None`` for what it cannot read, so it works in containers
and on non-Linux systems with less detail.

Example:
    >>> info = machine_info()
    >>> sorted(info)[:3]
    ['available_ram_bytes', 'cores', 'cpu_model']

"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

from zerofeed import doctor

#: Distribution names of every package whose version the report records, by display name.
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    **doctor.FRAMEWORKS,
    "dali": ("nvidia-dali-cuda120", "nvidia-dali-cuda110", "nvidia-dali-cuda130"),
    "grain": ("grain", "grain-nightly"),
}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM and versions of Python, NumPy and each framework."""
    mem = doctor.meminfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        usable = os.cpu_count() or 1
    return {
        "cpu_model": doctor.cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_bytes": mem.get("MemTotal"),
        "available_ram_bytes": mem.get("MemAvailable"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {k: doctor.version_of(k, d) for k, d in FRAMEWORKS.items()},
    }


def children(pid: int) -> list[int]:
    """Direct children of ``pid``: the kernel's ``/proc/PID/task/*/children`` lists (a few
    microseconds), or a scan of every ``/proc/*/stat`` (milliseconds) where it has none.
    """
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    listed = False
    for task in tasks:
        text = _read(f"/proc/{pid}/task/{task}/children")
        if text is None:
            continue
        listed = True
        out.extend(int(child) for child in text.split())
    if listed:
        return out
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read(f"/proc/{entry.name}/stat")
        if not stat:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(entry.name))
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(children(p))
    return seen


def memory_of(pid: int) -> tuple[int, int]:
    """``(rss, pss)`` of one process in bytes (0, 0 when it is gone).

    PSS (proportional set size) counts a page shared by k processes as 1/k in each, so
    dataset pages shared by DataLoader workers are not counted once per worker.
    """
    rss = pss = 0
    text = _read(f"/proc/{pid}/smaps_rollup")
    if text:
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
        return rss, pss
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, rss


def rss_of(pid: int) -> int:
    """Resident bytes of one process from ``/proc/PID/status`` (0 when it is gone): tens of
    microseconds, where ``smaps_rollup`` walks every page table of the process (18 ms for a
    process that imported torch, holding its memory-map lock meanwhile).
    """
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss(pid: int) -> int:
    """Resident bytes summed over ``pid`` and its descendants (see :func:`rss_of`)."""
    return sum(rss_of(p) for p in tree(pid))


def tree_memory(pid: int) -> tuple[int, int]:
    """``(rss, pss)`` summed over ``pid`` and its descendants."""
    rss = pss = 0
    for p in tree(pid):
        r, s = memory_of(p)
        rss += r
        pss += s
    return rss, pss

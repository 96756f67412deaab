"""The parent's memory sampler: cheap RSS every tick, PSS only when resident memory grows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from zerofeed_bench.machine import children, tree, tree_memory, tree_rss
from zerofeed_bench.runner import _Sampler

# A child that starts a grandchild, then (once the marker exists) touches 64 MiB and waits.
CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    marker = Path(sys.argv[1])
    while not marker.exists():
        time.sleep(0.01)
    block = bytearray(64 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    Path(sys.argv[2]).touch()
    time.sleep(30)
    """
)


def test_tree_finds_descendants_and_the_sampler_sees_growth(tmp_path: Path) -> None:
    marker, grown = tmp_path / "timed", tmp_path / "grown"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(grown)])
    try:
        deadline = time.monotonic() + 20
        while len(tree(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(children(proc.pid)) == 1 and len(tree(proc.pid)) == 2
        rss, pss = tree_memory(proc.pid)
        assert 0 < pss <= rss and abs(tree_rss(proc.pid) - rss) < 16 << 20
        sampler = _Sampler(proc.pid, marker, interval=0.01)
        sampler.start()
        time.sleep(0.1)
        assert sampler.samples == 0, "nothing is sampled before the timed part starts"
        marker.touch()
        while not grown.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        sampler.stop()
        assert sampler.samples > 0
        assert sampler.peak_rss >= rss + (60 << 20), "the 64 MiB the child touched"
        assert sampler.peak_pss >= pss + (60 << 20), "PSS is read again once RSS has grown"
    finally:
        for pid in reversed(tree(proc.pid)):
            subprocess.run(["kill", str(pid)], check=False)
        proc.wait()

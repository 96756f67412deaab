"""Tests of zerofeed-bench's command line, reached the way users reach it: `zerofeed bench`.

Usage errors exit 2 with one argparse line and no traceback; `bench transfer` without a
CUDA driver says so and exits 0.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import zerofeed as zf
from zerofeed.cli import main
from zerofeed_bench import transfer
from zerofeed_bench.cli import main as bench_main


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--against", "numpy,dalli"], "choose from numpy, tfdata, torch, jax, dali"),
        (["--ops", "crop,blur"], "choose from crop, flip, meanstd"),
        (["--source", "disk"], "choose from 'memory', 'npy'"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--workers", "-1"], "--workers must be >= 0"),
        (["--size", "abc"], "expected N or HxW"),
        (["--size", "64", "--crop", "128"], "does not fit"),
        (["--images", "4", "--batch", "8"], "more than --images"),
        (["--images", "8", "--batch", "4", "--json", "no/such/folder/b.json"], "does not exist"),
    ],
)
def test_bad_flags_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("usage: zerofeed bench")


def test_cache_dir_that_is_a_file_is_a_usage_error(tmp_path):
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file")
    proc = subprocess.run(
        [sys.executable, "-m", "zerofeed", "bench", "--images", "8", "--batch", "4",
         "--cache-dir", str(not_a_dir / "sub")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("zerofeed bench: error: argument --cache-dir:") and "cache/sub" in last


def test_python_dash_m_and_the_script_are_the_same_command():
    proc = subprocess.run(
        [sys.executable, "-m", "zerofeed_bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: zerofeed bench")
    assert bench_main is not None


def test_transfer_without_cuda_exits_0(capsys):
    if zf.cuda.available():
        pytest.skip("a CUDA driver is present: scripts/gpu_check.sh runs the transfer bench for real")
    assert main(["bench", "transfer"]) == 0
    assert f"{zf.cuda.unavailable_reason()}; nothing to measure" in capsys.readouterr().out
    assert transfer.main(["--sizes", "1"]) == 0


def test_transfer_uses_only_the_public_api():
    import inspect

    source = inspect.getsource(transfer)
    assert "_zerofeed" not in source and "_bench_h2d" not in source

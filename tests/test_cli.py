"""Tests of the product's command line: `--version`, help, `doctor`, `explain`, and how
`zerofeed bench` finds (or misses) zerofeed-bench. The benchmark's own tests are in bench/tests.

Usage errors exit 2, failures 1: each case below checks the status and that the message is
one line, without a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zerofeed as zf
from zerofeed.cli import BENCH_MISSING, main

BENCH_SOURCE = Path(__file__).absolute().parents[1] / "bench"


def _zerofeed(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zerofeed", *argv], capture_output=True, text=True, timeout=300
    )


def _npy(path: Path, header: str, data: bytes = b"") -> Path:
    """Write a version 1.0 .npy file with this header dict, padded as NumPy pads it."""
    raw = header.encode("latin1")
    raw += b" " * (63 - (10 + len(raw)) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + data)
    return path


def test_version():
    proc = _zerofeed("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"zerofeed {zf.__version__}"
    assert zf.__version__ and zf.__version__[0].isdigit()


def test_bare_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: zerofeed") and "doctor" in out and "explain" in out and "bench" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explain", "x.npy"], "required: --to"),
        (["explain", "--to", "tf", "--shape", "2"], "choose from 'numpy', 'torch', 'tensorflow'"),
        (["explain", "--to", "jax"], "needs a .npy PATH or --shape"),
        (["explain", "--to", "jax", "--shape", "2,-1"], "expected a shape"),
        (["explain", "--to", "jax", "--shape", "2", "--offset", "-4"], "integer >= 0"),
        (["explain", "--to", "jax", "no/such/file.npy"], "is not a file"),
        (["doctor", "--slow"], "unrecognized arguments"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_bench_without_zerofeed_bench_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "zerofeed_bench", None)  # as if it were not installed
    assert importlib.util.find_spec("zerofeed_bench") is None
    assert main(["bench", "--images", "8"]) == 1
    err = capsys.readouterr().err
    assert err == BENCH_MISSING + "\n"
    assert "pip install ./bench" in err and "make bench" in err


def test_bench_is_handed_to_zerofeed_bench(monkeypatch, tmp_path, capsys):
    # The source of zerofeed-bench, as `pip install -e ./bench` would put it on the path.
    monkeypatch.syspath_prepend(str(BENCH_SOURCE))
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file, not a folder")
    with pytest.raises(SystemExit) as e:
        main(["bench", "--images", "8", "--batch", "4", "--cache-dir", str(not_a_dir)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: zerofeed bench")
    assert f"argument --cache-dir: {not_a_dir} cannot be a directory" in err
    assert "Traceback" not in err and not (not_a_dir.with_name("images")).exists()
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0 and "--against" in capsys.readouterr().out


def test_doctor_fast(capsys, tmp_path):
    assert main(["doctor", "--fast", "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    for label in ("CPU", "RAM", "memlock limit", "transparent huge pages", "CUDA", "numpy"):
        assert label in out
    assert out.count("->") >= 6
    found = json.loads((tmp_path / "d.json").read_text())
    assert all(f["meaning"] for f in found)
    assert {f["label"] for f in found} >= {"tensorflow", "torch", "jax"}


def test_doctor_probes_frameworks_and_zero_copy():
    proc = _zerofeed("doctor")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "numpy" in out and "DLPack: versioned" in out  # NumPy >= 2.1 takes DLPack 1.x
    for target in ("tensorflow", "jax"):
        line = out.split(f"numpy -> {target}")[1].splitlines()[0]
        assert "zero-copy (data pointer is the same)" in line, line


def test_doctor_cuda_line_matches_zf_cuda():
    from zerofeed.doctor import cuda_finding

    finding = cuda_finding()
    if zf.cuda.available():
        assert finding.value.startswith(f"{zf.cuda.device_count()} GPU(s)")
    else:
        assert finding.value == f"no GPU ({zf.cuda.unavailable_reason()})"


def test_explain_file(tmp_path, capsys):
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((4, 8, 8, 3), np.uint8))
    assert main(["explain", str(p), "--to", "tensorflow"]) == 0
    out = capsys.readouterr().out
    assert "shape (4, 8, 8, 3), dtype uint8, C order" in out and "byte offset 128 in the file" in out
    assert "tensorflow: zero-copy of uint8[4, 8, 8, 3]" in out


def test_explain_fortran_file_copies(tmp_path, capsys):
    p = tmp_path / "f.npy"
    np.save(p, np.asfortranarray(np.zeros((4, 5), np.float32)))
    assert main(["explain", str(p), "--to", "tensorflow"]) == 0
    out = capsys.readouterr().out
    assert "Fortran order" in out and "one copy" in out and "not C-contiguous" in out


def test_explain_described_misaligned(capsys):
    argv = ["explain", "--shape", "4,8", "--dtype", "float32", "--offset", "4", "--to", "tensorflow"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "byte offset 4 from a 64-byte aligned base" in out
    assert "copies 128 bytes" in out and "aligned to 4 bytes" in out


DICT = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"


@pytest.mark.parametrize(
    ("name", "header", "data", "needle"),
    [
        ("text", None, b"not an npy file at all", "magic"),
        ("nested", DICT % ("(" * 5000 + ")" * 5000), b"", "nested"),
        ("huge", DICT % f"({2**70},)", b"", "corrupt"),
        ("overflow", DICT % f"({2**40}, {2**40})", b"", "corrupt"),
        ("truncated", DICT % "(100,)", b"\0" * 10, "truncated"),
        ("bigendian", DICT.replace("<f4", ">f4") % "(4,)", b"\0" * 16, "big-endian"),
    ],
)
def test_explain_bad_file_is_one_line_and_exit_1(tmp_path, name, header, data, needle):
    p = tmp_path / f"{name}.npy"
    if header is None:
        p.write_bytes(data)
    else:
        _npy(p, header, data)
    proc = _zerofeed("explain", str(p), "--to", "tensorflow")
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("zerofeed explain: ") and str(p) in proc.stderr
    assert needle in proc.stderr.lower()


def test_explain_described_too_large_is_exit_1(capsys):
    assert main(["explain", "--shape", str(2**70), "--to", "jax"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than a process can address" in err

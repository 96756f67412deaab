"""Tests of the command line: `zerofeed bench`, `bench transfer`, `doctor`, `explain`.

The bench runs once (module fixture) on a tiny workload with every installed baseline;
the other tests read its JSON. Keep the workload tiny: the whole file must stay well
under a minute on two cores.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from zerofeed.bench import data, runner
from zerofeed.bench.baselines import GROUPS, Spec, build_numpy, specs
from zerofeed.bench.data import Workload, check_outputs, make_images, reference
from zerofeed.cli import main

TINY = ["--images", "16", "--size", "32", "--crop", "16", "--batch", "8", "--epochs", "1",
        "--repeats", "1", "--workers", "2", "--no-progress"]  # fmt: skip

MODULES = {"numpy": "numpy", "tfdata": "tensorflow", "torch": "torch", "jax": "jax",
           "dali": "nvidia.dali", "grain": "grain"}  # fmt: skip


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _zerofeed_reason() -> str | None:
    return runner._zerofeed_missing()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny bench and one full doctor, run side by side to keep the file fast."""
    d = tmp_path_factory.mktemp("bench")
    out = d / "bench.json"
    doctor = subprocess.Popen(
        [sys.executable, "-m", "zerofeed", "doctor"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "zerofeed", "bench", *TINY, "--cache-dir", str(d / "cache"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    doc_out, doc_err = doctor.communicate(timeout=300)
    assert out.exists(), proc.stderr[-3000:]
    return {
        "bench": (proc.returncode, json.loads(out.read_text()), proc.stdout),
        "doctor": (doctor.returncode, doc_out, doc_err),
    }


@pytest.fixture(scope="module")
def bench(runs: dict) -> tuple[int, dict, str]:
    return runs["bench"]


def test_bench_json_shape(bench):
    rc, res, _ = bench
    assert res["schema"] == runner.SCHEMA
    m = res["machine"]
    for key in ("cpu_model", "cores", "ram_bytes", "python", "versions"):
        assert key in m
    assert m["versions"]["numpy"] == np.__version__
    w = res["workload"]
    assert (w["images"], w["height"], w["crop_h"], w["batch"], w["epochs"]) == (16, 32, 16, 8, 1)
    names = {r["name"] for r in res["results"]}
    assert {"zerofeed", "numpy-1t", "numpy-2t", "floor-1t", "floor-2t"} <= names
    for r in res["results"]:
        assert r["status"] in ("ok", "failed", "skipped"), r
        if r["status"] == "ok":
            ips = r["images_per_s"]
            assert 0 < ips["min"] <= ips["median"] <= ips["max"]
            assert r["output_gb_per_s"] > 0
            assert r["ratio_to_floor"] > 0
            assert r["memory"]["above_dataset_bytes"] >= 0
            assert len(r["runs"]) == 1 and len(r["runs"][0]["epochs_s"]) == 1


def test_every_installed_baseline_ran_and_passed_its_check(bench):
    rc, res, _ = bench
    rows = {r["name"]: r for r in res["results"]}
    failed = {n: r.get("error") for n, r in rows.items() if r["status"] == "failed"}
    assert not failed, failed
    assert rc == 0
    for group in GROUPS:
        group_rows = [r for r in rows.values() if r["group"] == group]
        assert group_rows, group
        for r in group_rows:
            if _installed(MODULES[group]):
                assert r["status"] == "ok", r
                assert r["check"]["passed"] is True, r["check"]
                assert r["check"]["samples"] == 32
                assert r["check"]["max_abs_err"] <= data.CHECK_ATOL
            else:
                assert r["status"] == "skipped" and "not installed" in r["reason"]


def test_zerofeed_row(bench):
    _, res, _ = bench
    row = next(r for r in res["results"] if r["name"] == "zerofeed")
    reason = _zerofeed_reason()
    if reason is not None:
        assert row["status"] == "skipped" and row["reason"] == reason
        pytest.skip(f"zerofeed row not measurable: {reason}")
    assert row["status"] == "ok", row.get("error")
    assert row["check"]["passed"]
    assert row["ratio_to_zerofeed"] == pytest.approx(1.0)


def test_table_is_printed(bench):
    _, res, stdout = bench
    assert "implementation" in stdout and "img/s" in stdout and "vs floor" in stdout
    for r in res["results"]:
        assert r["name"] in stdout


def test_check_catches_wrong_results():
    w = Workload().check_variant()
    imgs = make_images(w.images, w.height, w.width)
    rng = np.random.default_rng(0)
    order = rng.permutation(w.images)
    good = []
    for b in range(w.batches_per_epoch):
        batch = []
        for k in order[b * w.batch : (b + 1) * w.batch]:
            y, x = (int(v) for v in rng.integers(0, 9, 2))
            f = bool(k % 2)
            batch.append(reference(imgs[k], y, x, f, 16, 16, w.mean, w.std))
        good.append(np.stack(batch))
    assert check_outputs(imgs, good, w)["passed"]
    # flipped along the wrong axis, missing normalization, duplicated images, wrong dtype
    assert not check_outputs(imgs, [b[:, ::-1] for b in good], w)["passed"]
    assert not check_outputs(imgs, [b * np.float32(58.0) for b in good], w)["passed"]
    assert not check_outputs(imgs, [good[0]] * len(good), w)["passed"]
    assert not check_outputs(imgs, [b.astype(np.float64) for b in good], w)["passed"]
    assert not check_outputs(imgs, good[:-1], w)["passed"]


def test_images_are_deterministic_and_spread():
    a = make_images(3, 16, 16, seed=4)
    assert np.array_equal(a, make_images(3, 16, 16, seed=4))
    assert not np.array_equal(a, make_images(3, 16, 16, seed=5))
    assert a.min() < 30 and a.max() > 225 and a.std() > 30
    assert np.array_equal(make_images(5, 16, 16)[:3], make_images(3, 16, 16))


def test_npy_source_is_memory_mapped(tmp_path):
    w = Workload(images=4, height=8, width=8, source="npy")
    path = data.ensure_dataset(w, tmp_path)
    assert path == data.ensure_dataset(w, tmp_path)
    arr = data.load_dataset(path, "npy")
    assert isinstance(arr, np.memmap) and arr.shape == (4, 8, 8, 3)
    assert np.array_equal(arr, make_images(4, 8, 8))


def broken_build(images, w, threads):
    raise RuntimeError("this baseline is broken on purpose")


def test_a_crashing_baseline_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    mod = tmp_path / "zf_broken_baseline.py"
    mod.write_text(
        textwrap.dedent("""
        def build(images, w, threads):
            raise RuntimeError("this baseline is broken on purpose")
    """)
    )
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    sys.path.insert(0, str(tmp_path))
    import zf_broken_baseline

    w = Workload(images=8, height=24, width=24, crop_h=16, crop_w=16, batch=4, epochs=1)
    ds = data.ensure_dataset(w, tmp_path)
    broken = Spec("broken", "numpy", ("numpy",), zf_broken_baseline.build, 1, "broken")
    res = runner.run_child(broken, w, ds, check=True, timeout=120)
    assert res["status"] == "failed" and "broken on purpose" in res["error"]
    good = Spec("numpy-1t", "numpy", ("numpy",), build_numpy, 1, "numpy")
    ok = runner.run_child(good, w, ds, check=True, timeout=120)
    assert ok["status"] == "ok" and ok["check"]["passed"], ok
    row = runner._median_row(broken, w, [res])
    assert row["status"] == "failed" and "broken on purpose" in row["error"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "--against", "numpy,dalli"], "choose from numpy, tfdata, torch, jax, dali"),
        (["bench", "--ops", "crop,blur"], "choose from crop, flip, meanstd"),
        (["bench", "--source", "disk"], "choose from 'memory', 'npy'"),
        (["bench", "--batch", "0"], "--batch must be > 0"),
        (["bench", "--size", "abc"], "expected N or HxW"),
        (["bench", "--size", "64", "--crop", "128"], "does not fit"),
        (["bench", "--images", "4", "--batch", "8"], "more than --images"),
        (["explain", "x.npy"], "required: --to"),
        (["explain", "--to", "tf", "--shape", "2"], "choose from 'numpy', 'tensorflow'"),
        (["explain", "--to", "jax"], "needs a .npy PATH or --shape"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_flags_give_argparse_errors(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_default_against_covers_every_group():
    names = {s.group for s in runner.select(Workload(workers=2), None)}
    assert set(GROUPS) <= names and {"zerofeed", "floor"} <= names
    only = {s.group for s in runner.select(Workload(workers=2), ["torch"])}
    assert only == {"zerofeed", "floor", "torch"}
    assert [s.name for s in specs(Workload(workers=3))][1:3] == ["numpy-1t", "numpy-3t"]


def test_plot_without_matplotlib_says_so(tmp_path, monkeypatch):
    from zerofeed.bench import report

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    msg = report.plot({"results": [], "workload": {}}, tmp_path / "p.png")
    assert msg is not None and "matplotlib is not installed" in msg


def test_transfer_without_cuda_exits_0(capsys):
    from zerofeed.bench.doctor import cuda_finding

    if cuda_finding().value[:1].isdigit():
        pytest.skip("this machine has a CUDA GPU")
    assert main(["bench", "transfer"]) == 0
    assert "no CUDA driver found" in capsys.readouterr().out


def test_doctor_fast(capsys, tmp_path):
    assert main(["doctor", "--fast", "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    for label in ("CPU", "RAM", "memlock limit", "transparent huge pages", "CUDA", "numpy"):
        assert label in out
    assert out.count("->") >= 6
    found = json.loads((tmp_path / "d.json").read_text())
    assert all(f["meaning"] for f in found)


def test_doctor_probes_frameworks_and_zero_copy(runs):
    rc, out, err = runs["doctor"]
    assert rc == 0, err[-2000:]
    assert "numpy" in out and "DLPack: versioned" in out  # NumPy >= 2.1 takes DLPack 1.x
    if _installed("tensorflow"):
        assert "numpy -> tensorflow" in out
    if _has_extension() and _installed("tensorflow"):
        line = out.split("numpy -> tensorflow")[1].splitlines()[0]
        assert "probe failed" not in line, line


def _has_extension() -> bool:
    from zerofeed.bench.doctor import _zf

    return _zf()[0] is not None


def test_explain_file(tmp_path, capsys):
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((4, 8, 8, 3), np.uint8))
    assert main(["explain", str(p), "--to", "tensorflow"]) == 0
    out = capsys.readouterr().out
    assert "shape (4, 8, 8, 3), dtype uint8" in out and "byte offset 128" in out
    if _has_extension():
        assert "zero-copy" in out
    else:
        assert "unavailable" in out


def test_explain_described_misaligned(capsys):
    assert main(["explain", "--shape", "4,8", "--dtype", "float32", "--offset", "4",
                 "--to", "tensorflow"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "byte offset 4" in out
    if _has_extension():
        assert "copies" in out and "aligned" in out
    else:
        assert "64-byte aligned" in out


def test_explain_bad_file(tmp_path, capsys):
    p = tmp_path / "bad.npy"
    p.write_bytes(b"not an npy file at all")
    assert main(["explain", str(p), "--to", "jax"]) == 2
    assert "not a readable .npy" in capsys.readouterr().err


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed: --plot cannot draw")
    from zerofeed.bench import report

    result = {
        "workload": {"images": 8, "height": 24, "width": 24, "batch": 4},
        "results": [
            {"name": n, "status": "ok", "images_per_s": {"median": m, "min": m * 0.9, "max": m * 1.1}}
            for n, m in (("zerofeed", 1000.0), ("numpy-1t", 300.0), ("floor-1t", 900.0))
        ],
    }
    path = tmp_path / "bench.png"
    assert report.plot(result, path) is None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Tests of zerofeed-bench: a real tiny run through the product's `zerofeed bench`, the
correctness check, the data, the runner's failure handling and the report.

The bench runs once (module fixture) on a tiny workload with every installed baseline; the
other tests read its JSON. Keep the workload tiny: the whole file must stay well under a
minute on two cores. In CI (CI=true) every baseline that bench/requirements.txt pins must be
importable: a broken install fails here instead of showing up as a skipped row.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from zerofeed_bench import baselines, cli, data, report, runner
from zerofeed_bench.baselines import GROUPS, Spec, build_numpy, specs
from zerofeed_bench.data import Workload, check_outputs, make_images, reference
from zerofeed_bench.test_support import installed

TINY = ["--images", "16", "--size", "32", "--crop", "16", "--batch", "8", "--epochs", "1",
        "--repeats", "1", "--workers", "2", "--no-progress"]  # fmt: skip

MODULES = {"numpy": "numpy", "tfdata": "tensorflow", "torch": "torch", "jax": "jax",
           "dali": "nvidia.dali", "grain": "grain"}  # fmt: skip


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, str]:
    """One tiny run of `zerofeed bench` (the product's command, handing over to this package)."""
    d = tmp_path_factory.mktemp("bench")
    out = d / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "zerofeed", "bench", *TINY, "--cache-dir", str(d / "cache"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.exists(), proc.stderr[-3000:]
    return proc.returncode, json.loads(out.read_text()), proc.stdout


def test_pinned_baselines_are_installed_in_ci():
    if os.environ.get("CI") != "true":
        pytest.skip("outside CI a baseline may be missing; its row then says 'not installed'")
    missing = [m for m in MODULES.values() if not installed(m)]
    assert not missing, f"bench/requirements.txt pins these but they do not import: {missing}"


def test_bench_json_shape(bench):
    rc, res, _ = bench
    assert res["schema"] == runner.SCHEMA
    m = res["machine"]
    for key in ("cpu_model", "cores", "ram_bytes", "python", "versions"):
        assert key in m
    assert m["versions"]["numpy"] == np.__version__
    assert m["versions"]["zerofeed"] is not None
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
            if installed(MODULES[group]):
                assert r["status"] == "ok", r
                assert r["check"]["passed"] is True, r["check"]
                assert r["check"]["samples"] == 32
                assert r["check"]["max_abs_err"] <= data.CHECK_ATOL
            else:
                assert r["status"] == "skipped" and "not installed" in r["reason"]


def test_zerofeed_row(bench):
    _, res, _ = bench
    row = next(r for r in res["results"] if r["name"] == "zerofeed")
    assert runner._zerofeed_missing() is None
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


def test_a_crashing_baseline_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    mod = tmp_path / "zf_broken_baseline.py"
    mod.write_text(
        textwrap.dedent("""
        def build(images, w, threads):
            raise RuntimeError("this baseline is broken on purpose")
    """)
    )
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    monkeypatch.syspath_prepend(str(tmp_path))
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


def test_default_against_covers_every_group():
    names = {s.group for s in runner.select(Workload(workers=2), None)}
    assert set(GROUPS) <= names and {"zerofeed", "floor"} <= names
    only = {s.group for s in runner.select(Workload(workers=2), ["torch"])}
    assert only == {"zerofeed", "floor", "floor-pool", "floor-cached", "torch"}
    assert [s.name for s in specs(Workload(workers=3))][1:3] == ["numpy-1t", "numpy-3t"]


def test_plot_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    msg = report.plot({"results": [], "workload": {}}, tmp_path / "p.png")
    assert msg is not None and "matplotlib is not installed" in msg


def test_plot_writes_a_png(tmp_path):
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


def test_the_floor_reads_the_dataset_into_memory_a_consumer_can_keep():
    w = Workload(images=16, height=64, width=64, crop_h=32, crop_w=32, batch=4)
    images = make_images(w.images, w.height, w.width)
    floor = baselines.build_floor(images, w, 1)
    cached = baselines.build_floor_cached(images, w, 1)
    pool = baselines.build_floor_pool(images, w, 2)
    try:
        batch_bytes = w.batch * w.out_bytes_per_image
        assert len(floor.bufs) * batch_bytes >= 2 * baselines.l3_bytes()  # type: ignore[attr-defined]
        assert len(cached.bufs) == 2  # type: ignore[attr-defined]
        # zerofeed's pool with 2 workers: prefetch 2 + 2 workers + the consumer's + one more.
        assert len(pool.bufs) == 6  # type: ignore[attr-defined]
        pool_first = np.array(next(iter(pool.epoch(0))), copy=True)
        first, second = [np.array(b, copy=True) for b in itertools.islice(floor.epoch(0), 2)]
        flat = images.reshape(-1)
        n = first.size
        # Consecutive stretches of the dataset itself, converted: not one cached tile.
        assert np.array_equal(first, flat[:n].astype(np.float32))
        assert np.array_equal(second, flat[n : 2 * n].astype(np.float32))
        assert np.array_equal(pool_first, first)
    finally:
        floor.close()
        cached.close()
        pool.close()


@pytest.mark.parametrize("output", ["chw-f32", "hwc-f16", "hwc-bf16"])
def test_output_variants_run_zerofeed_checked_against_the_floors(tmp_path, output):
    out = tmp_path / "v.json"
    args = ["--images", "24", "--size", "32", "--crop", "16", "--batch", "8", "--epochs", "1",
            "--repeats", "1", "--workers", "1", "--output", output, "--json", str(out),
            "--cache-dir", str(tmp_path), "--no-progress"]  # fmt: skip
    assert cli.main(args) == 0
    rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    floors = {f"floor{kind}-{k}t" for kind in ("", "-pool", "-cached") for k in (1, 2)}
    assert set(rows) == {"zerofeed"} | floors
    assert rows["zerofeed"]["status"] == "ok" and rows["zerofeed"]["check"]["passed"]

"""Tests of `zerofeed bench tiny`: its flags, a small real run through the product's command
(every row checked, the table, the JSON and the chart), the oracle failing wrong gathers (in
the check itself and through a child process of the runner), and rows without torch skipped
with the reason. In CI every row must run: torch is pinned.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zerofeed_bench import report, tinyreport
from zerofeed_bench.baselines import Impl, Spec
from zerofeed_bench.cli import build_parser
from zerofeed_bench.runner import run_bench, run_child
from zerofeed_bench.scenarios import TINY
from zerofeed_bench.test_support import installed
from zerofeed_bench.tinybench import (
    TinyWorkload,
    build_floor,
    build_numpy_labels,
    build_zerofeed_labels,
    check_batches,
    ensure_tiny,
    make_rows,
    run_epochs,
    tiny_specs,
)

RUN = ["--rows", "2000", "--epochs", "1", "--repeats", "1", "--workers", "2", "--no-progress"]
TORCH_ROWS = {"zerofeed", "zerofeed-labels", "numpy", "numpy-labels", "dataloader", "dataloader-labels"}


def test_torch_is_installed_in_ci():
    if os.environ.get("CI") != "true":
        pytest.skip("outside CI torch may be missing; its rows then say 'not installed'")
    assert installed("torch"), "bench/requirements.txt pins torch but it does not import"


def test_parser_defaults_and_flags():
    a = build_parser().parse_args(["tiny"])
    assert (a.rows, a.features, a.batch, a.epochs, a.workers, a.seed) == (100_000, 8, 64, 3, 0, 0)
    a = build_parser().parse_args(["tiny", "--rows", "500", "--features", "2", "--batch", "7",
                                   "--against", "torch", "--json", "t.json"])  # fmt: skip
    assert (a.rows, a.features, a.batch, a.against, a.json) == (500, 2, 7, ("torch",), Path("t.json"))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--rows", "10", "--batch", "64"], "--batch: 64 is more than --rows 10"),
        (["--features", "0"], "--features must be >= 1"),
        (["--against", "numpy,tfdata"], "choose from numpy, torch"),
        (["--plot", "no/such/dir/t.png"], "does not exist"),
    ],
)
def test_bad_flags_exit_2(argv, needle, capsys):
    from zerofeed.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "tiny", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith("usage: zerofeed bench tiny")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("tiny")
    out, png = d / "tiny.json", d / "tiny.png"
    proc = subprocess.run(
        [sys.executable, "-m", "zerofeed", "bench", "tiny", *RUN, "--cache-dir", str(d / "cache"),
         "--json", str(out), "--plot", str(png)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.exists(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text()), png


def test_every_row_ran_and_passed_the_oracle(run):
    proc, res, _ = run
    assert res["scenario"] == "tiny" and res["unit"] == "batches" and res["reference"] == "numpy"
    assert res["workload"]["rows"] == 2000 and res["workload"]["batches_per_epoch"] == 2000 // 64
    rows = {r["name"]: r for r in res["results"]}
    assert set(rows) == {s.name for s in tiny_specs(TinyWorkload())}
    failed = {n: r.get("error") for n, r in rows.items() if r["status"] == "failed"}
    assert not failed, failed
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, r in rows.items():
        if name in TORCH_ROWS and not installed("torch"):
            assert r["status"] == "skipped" and "torch is not installed" in r["reason"]
            continue
        assert r["status"] == "ok" and r["check"]["passed"], r
        assert r["check"]["samples"] == 2 * (1000 // 24) * 24  # two epochs of the check table
        t = r["batches_per_s"]
        assert 0 < t["min"] <= t["median"] <= t["max"] and r["first_batch_s"] > 0
        assert r["ratio_to_floor"] > 0 and r["memory"]["rss_growth_bytes"] >= 0
    assert rows["floor"]["ratio_to_floor"] == pytest.approx(1.0)
    if installed("torch"):
        assert rows["numpy"]["ratio_to_reference"] == pytest.approx(1.0)


def test_table_json_and_plot(run):
    proc, res, png = run
    out = proc.stdout
    for col in ("batch/s", "us/batch", "vs numpy", "vs floor", "check"):
        assert col in out
    for r in res["results"]:
        assert r["name"] in out
    assert report.format_table(res) == out.split("\nraw numbers:")[0].rstrip("\n")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if installed("torch"):
        met = tinyreport.targets(res)
        assert [t.get("against") for t in met] == ["numpy", "numpy-labels", None]
        assert "targets: zerofeed " in out and "us/batch (<= 3 us:" in out
        zf = next(r for r in res["results"] if r["name"] == "zerofeed")
        assert met[-1]["us_per_batch"] == pytest.approx(1e6 / zf["batches_per_s"]["median"])


# ----------------------------------------------------------------------------- the oracle


def test_oracle_passes_real_rows_and_fails_doctored_ones():
    w = TinyWorkload(rows=1000, features=3, batch=24)
    x, y = make_rows(w.rows, w.features)
    kw = dict(batch=24, batches_per_epoch=w.batches_per_epoch)
    impl = build_numpy_labels((x, y), w, 1)
    good = run_epochs(impl, 2)
    assert check_batches(x, y, good, **kw)["passed"]
    zf = build_zerofeed_labels((x, y), w, 2) if installed("torch") else None
    if zf is not None:
        try:
            assert check_batches(x, y, run_epochs(zf, 2), **kw)["passed"]
        finally:
            zf.close()

    def fails(epochs: list[list[Any]], needle: str) -> None:
        res = check_batches(x, y, epochs, **kw)
        assert not res["passed"] and any(needle in p for p in res["problems"]), res["problems"]

    e0, e1 = good
    fails([[(bx, np.roll(by, 1)) for bx, by in e0], e1], "not the label of that row")
    fails([[(bx[:, ::-1], by) for bx, by in e0], e1], "not a row of the data")
    nudged = [(bx.copy(), by) for bx, by in e0]
    nudged[3][0][5, 1] = np.nextafter(nudged[3][0][5, 1], np.float32(np.inf))
    fails([nudged, e1], "not a row of the data")
    fails([[e0[0]] + e0[:-1], e1], "came twice in the epoch")
    fails([e0, e0], "not reshuffled each epoch")
    fails([[(x[k * 24 : (k + 1) * 24], None) for k in range(len(e0))]], "not shuffled")
    fails([e0[:-1], e1], "gave 40 batches, expected 41")
    fails([[(bx.astype(np.float64), by) for bx, by in e0]], "expected float32(24, 3)")
    fails([[(bx, by.astype(np.int32)) for bx, by in e0]], "expected int64(24,)")
    # a row that occurs twice in the table may come twice, not three times
    xd = x.copy()
    xd[3] = xd[2]
    twice = [[(xd[[3, 2]], None)]]
    assert check_batches(xd, y, twice, batch=2, batches_per_epoch=1)["passed"]
    thrice = [[(xd[[3, 2]], None), (xd[[2, 5]], None)]]
    assert not check_batches(xd, y, thrice, batch=2, batches_per_epoch=2)["passed"]


class _Wrong(Impl):
    """Gathers the features of ``idx`` but the labels of ``idx + 1`` (a plausible slip)."""

    def __init__(self, data: tuple[np.ndarray, np.ndarray], w: TinyWorkload) -> None:
        self.x, self.y, self.w = data[0], data[1], w

    def epoch(self, e: int) -> Iterator[Any]:
        idx = np.random.default_rng([self.w.seed, e]).permutation(self.w.rows)
        for k in range(self.w.batches_per_epoch):
            i = idx[k * self.w.batch : (k + 1) * self.w.batch]
            yield self.x[i], self.y[(i + 1) % self.w.rows]

    def to_numpy(self, batch: Any) -> Any:
        return batch


def build_wrong_labels(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    return _Wrong(data, w)


def build_same_order(data: tuple[np.ndarray, np.ndarray], w: TinyWorkload, threads: int) -> Impl:
    """The floor, but every epoch in epoch 0's order (never reshuffled)."""
    impl = build_floor(data, w, threads)
    first = impl.epoch
    impl.epoch = lambda e: first(0)  # type: ignore[method-assign]
    return impl


def test_scenario_check_fails_a_wrong_implementation():
    w = TinyWorkload(rows=2000, batch=64)
    for build, needle in ((build_wrong_labels, "not the label"), (build_same_order, "not reshuffled")):
        res = TINY.check(Spec("wrong", "numpy", ("numpy",), build, 1, "wrong on purpose"), w)
        assert not res["passed"] and any(needle in p for p in res["problems"]), res
    ok = TINY.check(Spec("floor", "floor", ("numpy",), build_floor, 1, "the floor"), w)
    assert ok["passed"], ok


def test_runner_refuses_to_time_a_wrong_implementation(tmp_path, monkeypatch):
    # The child imports this module by name to find the builder.
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    w = TinyWorkload(rows=2000, epochs=1)
    spec = Spec("wrong", "numpy", ("numpy",), build_wrong_labels, 1, "wrong on purpose")
    res = run_child(spec, w, ensure_tiny(w, tmp_path), check=True, timeout=300)
    assert res["status"] == "failed", res
    assert res["error"].startswith("correctness check failed: ") and "not the label" in res["error"]
    assert "epochs_s" not in res  # never timed


def test_rows_needing_torch_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec says: not installed
    res = run_bench(TinyWorkload(rows=2000, epochs=1), repeats=1, progress=False, cache=tmp_path)
    rows = {r["name"]: r for r in res["results"]}
    for name in TORCH_ROWS:
        assert rows[name]["status"] == "skipped" and rows[name]["reason"] == "torch is not installed"
    assert rows["zerofeed-numpy"]["status"] == "ok" and rows["zerofeed-numpy"]["check"]["passed"]
    assert rows["floor"]["status"] == "ok" and rows["zerofeed-numpy"]["ratio_to_reference"] is None
    table = report.format_table(res)
    assert re.search(r"^dataloader +skipped: torch is not installed$", table, re.M), table
    assert "targets:" not in table

"""Tests of `zerofeed bench tokens` and `zerofeed bench series`: a tiny real run of each
through the product's command, the NumPy oracle catching wrong windows, the table, the JSON
and the chart. In CI every baseline bench/requirements.txt pins must run and pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from zerofeed_bench import report, seqreport
from zerofeed_bench.scenarios import SERIES, TOKENS
from zerofeed_bench.seqbaselines import build_nanogpt, build_numpy_series, build_zerofeed_tokens
from zerofeed_bench.seqdata import (
    SeriesWorkload,
    TokensWorkload,
    check_windows,
    ensure_series,
    ensure_tokens,
    make_series,
    make_tokens,
)
from zerofeed_bench.test_support import installed

COMMON = ["--epochs", "1", "--repeats", "1", "--workers", "2", "--no-progress"]
RUNS = {
    "tokens": ["--tokens", "20000", "--block", "64", "--batch", "4", *COMMON],
    "series": ["--steps", "4000", "--features", "3", "--length", "16", "--horizon", "4", "--batch", "8",
               *COMMON],
}  # fmt: skip
MODULES = {"nanogpt": "torch", "torch": "torch", "litdata": "litdata", "keras": "keras",
           "tfdata": "tensorflow", "numpy": "numpy"}  # fmt: skip


def test_pinned_sequence_baselines_are_installed_in_ci():
    if os.environ.get("CI") != "true":
        pytest.skip("outside CI a baseline may be missing; its row then says 'not installed'")
    missing = [m for m in MODULES.values() if not installed(m)]
    assert not missing, f"bench/requirements.txt pins these but they do not import: {missing}"


@pytest.fixture(scope="module", params=["tokens", "series"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp(request.param)
    out, png = d / "bench.json", d / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "zerofeed", "bench", request.param, *RUNS[request.param],
         "--cache-dir", str(d / "cache"), "--json", str(out), "--plot", str(png)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.exists(), proc.stderr[-3000:]
    return request.param, proc, json.loads(out.read_text()), png


def test_every_row_ran_and_matched_the_oracle(run):
    name, proc, res, _ = run
    assert res["scenario"] == name and res["unit"] == ("tokens" if name == "tokens" else "windows")
    rows = {r["name"]: r for r in res["results"]}
    failed = {n: r.get("error") for n, r in rows.items() if r["status"] == "failed"}
    assert not failed, failed
    assert proc.returncode == 0, proc.stderr[-2000:]
    sc = TOKENS if name == "tokens" else SERIES
    assert {"zerofeed", "floor-1t" if name == "series" else "floor-reused-1t"} <= set(rows)
    for group in sc.groups:
        group_rows = [r for r in rows.values() if r["group"] == group]
        assert group_rows, group
        for r in group_rows:
            if installed(MODULES[group]):
                assert r["status"] == "ok" and r["check"]["passed"], r
                assert r["check"]["samples"] >= 8
            else:
                assert r["status"] == "skipped" and "not installed" in r["reason"]
    key = f"{res['unit']}_per_s"
    for r in rows.values():
        if r["status"] == "ok":
            assert 0 < r[key]["min"] <= r[key]["median"] <= r[key]["max"]
            assert r["batches_per_s"] > 0 and r["first_batch_s"] > 0
            assert r["ratio_to_floor"] > 0 and r["memory"]["rss_growth_bytes"] >= 0
    assert rows[sc.reference]["ratio_to_reference"] == pytest.approx(1.0)


def test_table_json_and_plot_have_the_new_rows(run):
    name, proc, res, png = run
    out = proc.stdout
    assert ("tok/s" if name == "tokens" else "win/s") in out and "first batch" in out and "vs floor" in out
    assert ("vs nanoGPT" if name == "tokens" else "vs Keras") in out
    for r in res["results"]:
        assert r["name"] in out
    assert "targets: zerofeed" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.format_table(res) == out.split("\nraw numbers:")[0].rstrip("\n")
    met = seqreport.targets(res)
    assert met and all(t["ratio"] > 0 for t in met)


def test_token_oracle_catches_wrong_windows(tmp_path):
    w = TokensWorkload(tokens=4097, block=64, batch=4)
    path = ensure_tokens(w, tmp_path)
    data = np.fromfile(path, np.uint16)
    impl = build_zerofeed_tokens(path, w, 2)
    try:
        good = [tuple(np.array(v) for v in impl.to_numpy(b)) for b in impl.epoch(0)]
    finally:
        impl.close()
    n = len(good)
    kw = dict(length=64, horizon=0, batch=4, dtype="int64", batches_per_epoch=n)
    assert check_windows(data, good, **kw)["passed"]
    # target not shifted, shifted by two, narrowed dtype, a token off, a window twice, a batch short
    assert not check_windows(data, [(x, x) for x, _ in good], **kw)["passed"]
    assert not check_windows(data, [(x[:, 1:].copy(), y[:, 1:]) for x, y in good], **kw)["passed"]
    assert not check_windows(data, [(x.astype(np.int32), y.astype(np.int32)) for x, y in good], **kw)[
        "passed"
    ]
    bad = [(x.copy(), y) for x, y in good]
    bad[0][0][1, 5] += 1
    assert not check_windows(data, bad, **kw)["passed"]
    assert not check_windows(data, [good[0]] * n, **kw)["passed"]
    assert not check_windows(data, good[:-1], **kw)["passed"]
    # nanoGPT draws with replacement: a repeated window is fine for it, wrong values are not
    assert check_windows(data, [good[0]] * n, **kw, replacement=True)["passed"]
    nano = build_nanogpt(path, w, 1)
    pairs = [tuple(np.array(v) for v in nano.to_numpy(b)) for b in nano.epoch(0)]
    assert check_windows(data, pairs, **{**kw, "batches_per_epoch": w.batches_per_epoch},
                         replacement=True)["passed"]  # fmt: skip


def test_series_oracle_catches_wrong_windows(tmp_path):
    w = SeriesWorkload(steps=2000, features=3, length=16, horizon=4, batch=8)
    path = ensure_series(w, tmp_path)
    data = np.load(path)
    impl = build_numpy_series(path, w, 1)
    good = [tuple(np.array(v) for v in impl.to_numpy(b)) for b in impl.epoch(0)]
    kw = dict(length=16, horizon=4, batch=8, dtype="float32", batches_per_epoch=w.batches_per_epoch)
    assert check_windows(data, good, **kw)["passed"]
    assert not check_windows(data, [(x, x[:, :4]) for x, _ in good], **kw)["passed"]  # target = input
    assert not check_windows(data, [(x, y[:, ::-1]) for x, y in good], **kw)["passed"]
    assert not check_windows(data, [(x[:, :, ::-1], y[:, :, ::-1]) for x, y in good], **kw)["passed"]
    assert not check_windows(data, [(x * 1.0001, y) for x, y in good], **kw)["passed"]


def test_built_in_data_is_deterministic_and_cached(tmp_path):
    assert np.array_equal(make_tokens(100, 3), make_tokens(100, 3))
    assert not np.array_equal(make_tokens(100, 3), make_tokens(100, 4))
    s = make_series(500, 4)
    assert np.array_equal(s, make_series(500, 4)) and s.dtype == np.float32
    assert len(np.unique(s[:, 0])) == 500  # the oracle finds a window by its first row
    w = TokensWorkload(tokens=5000)
    p = ensure_tokens(w, tmp_path)
    assert p.stat().st_size == 10_000 and ensure_tokens(w, tmp_path) == p


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["tokens", "--tokens", "100", "--block", "1024"], "hold no window"),
        (["tokens", "--tokens", "20000", "--batch", "0"], "--batch must be >= 1"),
        (["tokens", "--against", "nanogpt,megatron"], "choose from nanogpt, torch, litdata"),
        (["series", "--steps", "50", "--length", "64"], "hold no window"),
        (["series", "--against", "grain"], "choose from keras, tfdata, torch, numpy"),
        (["series", "--steps", "1000", "--batch", "5000"], "is more than the"),
        (["tokens", "--json", "no/such/dir/t.json"], "does not exist"),
    ],
)
def test_bad_flags_exit_2(argv, needle, capsys):
    from zerofeed.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith(f"usage: zerofeed bench {argv[0]}")

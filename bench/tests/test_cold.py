"""Tests of `zerofeed bench cold`: the parser, zerofeed's batches against the file, and a tiny
real run through the runner with --json (skipped, with the reason, where the page cache
cannot be dropped: that needs root)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zerofeed_bench import cli, coldbench
from zerofeed_bench.coldbench import ColdWorkload, check_cold, cold_specs, ensure_cold


def test_parser_reads_the_cold_flags_and_refuses_bad_ones() -> None:
    a = cli.build_parser().parse_args(["cold", "--images", "64", "--size", "32x16", "--batch", "8"])
    assert (a.bench_command, a.images, a.size, a.batch, a.epochs) == ("cold", 64, (32, 16), 8, 2)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["cold", "--images", "0"])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["cold", "--against", "torch"])


def test_zerofeeds_batches_are_the_files_images_and_a_wrong_row_is_caught() -> None:
    w = ColdWorkload(workers=2)
    for spec in cold_specs(w)[:3]:
        res = check_cold(spec, w)
        assert res["passed"], (spec.name, res)
        assert res["images"] == 40
    # An implementation that hands out a modified image fails the check.
    spec = cold_specs(w)[2]

    class Wrong(coldbench._Memmap):
        def epoch(self, e: int):  # type: ignore[no-untyped-def]
            for b in super().epoch(e):
                b = np.array(b)
                b[0, 0, 0, 0] ^= 1
                yield b

    import dataclasses

    bad = dataclasses.replace(spec, build=lambda p, w, t: Wrong(p, w))
    res = check_cold(bad, w)
    assert not res["passed"] and "no image of the file" in res["problems"][0]


def test_the_floor_yields_one_batch_per_batch_of_bytes(tmp_path: Path) -> None:
    w = ColdWorkload(images=50, height=8, width=8, batch=16)
    path = ensure_cold(w, tmp_path)
    assert np.load(path).shape == (50, 8, 8, 3)
    floor = coldbench.build_floor(path, w, 1)
    assert sum(1 for _ in floor.epoch(0)) == w.batches_per_epoch == 3


def test_a_tiny_cold_run_reports_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    why = coldbench.cache_drop_refused()
    if why is not None:
        pytest.skip(why)
    out = tmp_path / "cold.json"
    argv = ["cold", "--images", "64", "--size", "64", "--batch", "8", "--epochs", "1", "--repeats", "1",
            "--workers", "2", "--no-progress", "--cache-dir", str(tmp_path), "--json", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "MB/s read" in table and "target: zerofeed" in table
    result = json.loads(out.read_text())
    rows = {r["name"]: r for r in result["results"]}
    assert result["scenario"] == "cold" and result["reference"] == "numpy-memmap"
    assert set(rows) == {"zerofeed", "zerofeed-no-readahead", "numpy-memmap", "floor"}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert rows["zerofeed"]["check"]["passed"]
    assert rows["floor"]["ratio_to_floor"] == 1.0
    assert rows["numpy-memmap"]["ratio_to_reference"] == 1.0


def test_refusal_to_drop_the_cache_exits_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(coldbench, "DROP_CACHES", tmp_path / "no" / "drop_caches")
    assert cli.main(["cold", "--images", "8", "--batch", "4", "--no-progress"]) == 2
    assert "cannot drop the page cache" in capsys.readouterr().err

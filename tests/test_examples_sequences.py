"""The sequence examples run end to end in their short mode, as CI runs them (real data: the
standard library's source as bytes; statsmodels' Mauna Loa CO2 series)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import describe_exit, require, subprocess_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--short"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, describe_exit(proc)
    return proc.stdout


@pytest.mark.slow
def test_char_lm_loss_falls_from_uniform() -> None:
    require("torch")
    out = run_example("char_lm.py")
    before, after = map(float, re.search(r"held-out loss ([\d.]+) -> ([\d.]+) nats", out).groups())  # type: ignore[union-attr]
    assert before > 5.0 and after < 5.545 - 2.0, out
    assert "OK: held-out loss fell" in out


@pytest.mark.slow
def test_forecast_beats_the_naive_forecast() -> None:
    require("jax")
    require("optax")
    require("statsmodels")
    out = run_example("forecast_series.py")
    model, naive = map(
        float, re.search(r"model MAE ([\d.]+) ppm, naive last-value MAE ([\d.]+)", out).groups()
    )  # type: ignore[union-attr]
    assert model < naive, out
    assert "OK: the model's held-out error" in out

"""The examples in examples/ run in their short mode (as CI runs them) and their loss falls."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import describe_exit, loopback_env, require

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EPOCH = re.compile(r"^epoch (\d+): train loss ([\d.]+), validation loss ([\d.]+)", re.MULTILINE)

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.mark.parametrize(
    ("launcher", "script", "needs"),
    [
        pytest.param([sys.executable], "digits_torch.py", ("torch", "sklearn"), id="torch"),
        pytest.param(TORCHRUN, "digits_torch.py", ("torch", "sklearn"), id="torchrun-ddp"),
        pytest.param([sys.executable], "digits_keras.py", ("keras", "tensorflow", "sklearn"), id="keras"),
        pytest.param([sys.executable], "patches_jax.py", ("jax", "flax", "optax", "skimage"), id="jax"),
    ],
)
def test_an_example_runs_short_and_its_loss_falls(launcher, script, needs):
    for module in needs:
        require(module)
    env = loopback_env()
    proc = subprocess.run(
        [*launcher, str(EXAMPLES / script), "--short"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, describe_exit(proc)
    epochs = [(int(e), float(t), float(v)) for e, t, v in EPOCH.findall(proc.stdout)]
    assert [e for e, _, _ in epochs] == list(range(len(epochs))) and len(epochs) >= 3, proc.stdout
    (_, first_train, first_val), (_, last_train, last_val) = epochs[0], epochs[-1]
    assert last_train < 0.8 * first_train and last_val < 0.8 * first_val, proc.stdout

"""``conftest.require``: a missing framework skips locally and fails under CI when pinned."""

from __future__ import annotations

import conftest
import pytest
from conftest import is_pinned, pinned_requirements, require

MISSING = "zerofeed_no_such_framework"


@pytest.fixture
def requirements(tmp_path, monkeypatch):
    path = tmp_path / "test.txt"
    path.write_text(
        "# a comment\nnumpy==2.4.6\ntensorflow-cpu==2.21.0  # trailing comment\njax[cpu]==0.10.2\n"
        "ml_dtypes>=0.5\nnvidia-dali-cuda120==2.4.0\n-r other.txt\n" + MISSING + "==1.0\n"
    )
    monkeypatch.setattr(conftest, "REQUIREMENTS", path)
    return path


def test_pins_are_read_from_the_file(requirements):
    assert pinned_requirements() == {
        "numpy",
        "tensorflow-cpu",
        "jax",
        "ml-dtypes",
        "nvidia-dali-cuda120",
        MISSING.replace("_", "-"),
    }
    for module in ("tensorflow", "jax", "ml_dtypes", "nvidia.dali", MISSING):
        assert is_pinned(module), module
    for module in ("torch", "keras", "cupy", "tensor"):
        assert not is_pinned(module), module


def test_the_real_file_pins_the_test_frameworks():
    for module in ("numpy", "torch", "tensorflow", "jax", "ml_dtypes"):
        assert is_pinned(module), module


def test_missing_framework_skips_outside_ci(requirements, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} is not installed"):
        require(MISSING)


def test_missing_pinned_framework_fails_under_ci(requirements, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="is pinned in .* but does not import under CI=true"):
        require(MISSING, reason="needed for the test")


def test_missing_unpinned_framework_still_skips_under_ci(requirements, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.skip.Exception, match="cupy_or_so is not installed"):
        require("cupy_or_so")


def test_an_installed_framework_is_returned():
    assert require("numpy").__name__ == "numpy"

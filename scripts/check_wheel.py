"""Check the built wheel and sdist of zerofeed: the package is there, the benchmark is not.

Usage: python scripts/check_wheel.py DIR   (DIR holds what `maturin build` / `maturin sdist`
wrote; `make check-wheel` does both). Lists both archives, then installs the wheel into a
scratch folder and runs its `zerofeed bench`, which must say how to install zerofeed-bench.
Exits 1 naming every problem.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

#: Must be in the wheel: the front, the extension, the CLI, the product's doctor.
REQUIRED = ("zerofeed/__init__.py", "zerofeed/cli.py", "zerofeed/doctor.py", "zerofeed/py.typed")


def bench_files(names: list[str]) -> list[str]:
    """The names that belong to the benchmark (``bench/``, ``zerofeed_bench``, ``zerofeed/bench``).

    Example:
        >>> bench_files(["zerofeed/cli.py", "zerofeed/bench/runner.py", "x-0.1/bench/README.md"])
        ['zerofeed/bench/runner.py', 'x-0.1/bench/README.md']

    """
    return [n for n in names if "bench" in Path(n).parts or "zerofeed_bench" in n]


def _installed_wheel_problems(wheel: Path) -> list[str]:
    """Install ``wheel`` alone into a scratch folder and run its ``zerofeed bench``."""
    with tempfile.TemporaryDirectory(prefix="zf-wheel-") as target:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target]
        subprocess.run([*pip, str(wheel)], check=True)
        # The scratch folder first on the path: its zerofeed, not this checkout's, is imported.
        env = {**os.environ, "PYTHONPATH": target}
        code = "import sys, zerofeed.cli as c; print(c.__file__); sys.exit(c.main(['bench']))"
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=target
        )
    out = run.stdout.strip()
    problems = []
    if not out.startswith(target):
        problems.append(f"installed wheel: zerofeed was imported from {out or '?'}, not {target}")
    if run.returncode != 1 or "pip install ./bench" not in run.stderr:
        problems.append(f"installed wheel: zerofeed bench gave {run.returncode}: {run.stderr.strip()[-300:]}")
    print(f"check-wheel: installed {wheel.name}: `zerofeed bench` says {run.stderr.strip()[:60]}...")
    return problems


def main(folder: str) -> int:
    """Check every wheel and sdist in ``folder``; print what was checked."""
    wheels = sorted(Path(folder).glob("zerofeed-*.whl"))
    sdists = sorted(Path(folder).glob("zerofeed-*.tar.gz"))
    if not wheels or not sdists:
        print(f"check-wheel: expected a zerofeed wheel and sdist in {folder}", file=sys.stderr)
        return 1
    problems = []
    for wheel in wheels:
        names = zipfile.ZipFile(wheel).namelist()
        problems += [f"{wheel.name}: has {n}" for n in bench_files(names)]
        problems += [f"{wheel.name}: lacks {r}" for r in REQUIRED if r not in names]
        if not any(n.startswith("zerofeed/_zerofeed") and n.endswith(".so") for n in names):
            problems.append(f"{wheel.name}: lacks the extension zerofeed/_zerofeed*.so")
        print(f"check-wheel: {wheel.name}: {len(names)} files")
    for sdist in sdists:
        with tarfile.open(sdist) as tar:
            names = tar.getnames()
        problems += [f"{sdist.name}: has {n}" for n in bench_files(names)]
        print(f"check-wheel: {sdist.name}: {len(names)} files")
    problems += _installed_wheel_problems(wheels[-1])
    for p in problems:
        print(f"check-wheel: {p}", file=sys.stderr)
    if not problems:
        print("check-wheel: the package holds zerofeed and no benchmark")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

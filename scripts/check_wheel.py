"""Check the built wheel and sdist of zerofeed: the package is there, the benchmark is not.

Usage: python scripts/check_wheel.py DIR   (DIR holds what `maturin build` / `maturin sdist`
wrote; `make check-wheel` does both). Exits 1 naming every offending file.
"""

from __future__ import annotations

import sys
import tarfile
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
    for p in problems:
        print(f"check-wheel: {p}", file=sys.stderr)
    if not problems:
        print("check-wheel: the package holds zerofeed and no benchmark")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

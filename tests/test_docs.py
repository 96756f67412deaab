"""Every ```python block in README.md and docs/*.md runs, and what it shows is checked.

Blocks of one file share a namespace and run in order, in a scratch directory holding the
files they open (``train.npy``, ``labels.npy``). A block written as a doctest (``>>>``
lines) has its output compared; any other block must run without raising. A block that
cannot run here is preceded by a marker comment that says why, and shows up as a skip:

    <!-- docs-test: skip (needs CUDA) -->

(``needs CUDA`` blocks do run where a CUDA driver is found: ``pytest tests/test_docs.py -k gpu``.)

A block that imports a framework which is not installed skips (and fails under ``CI=true``
when requirements/test.txt pins it; see ``conftest.require``).
"""

from __future__ import annotations

import contextlib
import doctest
import inspect
import io
import json
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, describe_exit, require, subprocess_env

import zerofeed as zf

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*docs-test:(.*?)-->")
SKIP = re.compile(r"^\s*skip\s*\((.+)\)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str
    skip: str | None  # the marker's reason, when the block cannot run here

    @property
    def skip_here(self) -> str | None:
        """Why the block does not run on this machine: ``needs CUDA`` blocks run where CUDA is."""
        if self.skip == "needs CUDA" and zf.cuda.available():
            return None
        return self.skip

    @property
    def id(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of ``path``, each with the skip reason of a marker right before it."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        marker = MARKER.fullmatch(before.strip())
        skip = None
        if marker:
            reason = SKIP.match(marker.group(1))
            if reason is None:
                raise ValueError(f"{path}: unknown docs-test marker {before.strip()!r}")
            skip = reason.group(1)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(path, line, match.group(2), skip))
    return found


ALL = [block for path in DOCS for block in blocks(path)]


class ShownOutputDiffers(AssertionError):
    """A doctest block printed something other than what the page shows."""


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Run one block in ``namespace``: a doctest compares its output, other code just runs."""
    if block.code.lstrip().startswith(">>>"):
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.code, namespace, block.id, str(block.path), block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report: list[str] = []
        test.globs = namespace  # DocTest copies its globals; the page's blocks share them
        runner.run(test, out=report.append, clear_globs=False)
        if runner.failures:
            raise ShownOutputDiffers(f"shown output differs:\n{''.join(report)}")
    else:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block.code, block.id, "exec"), namespace)
        if printed.getvalue():
            # The page cannot show what this printed, so nothing would check it.
            raise ShownOutputDiffers(
                f"the block prints {printed.getvalue()[:200]!r}; show output as a >>> block instead"
            )


def run_page(path: Path, results: Path) -> None:
    """Run the blocks of one page in order, in one namespace, appending a JSON line per block
    to ``results`` as each finishes (so that a block that kills the interpreter is known)."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    with results.open("a") as out:
        for block in blocks(path):
            if block.skip_here is not None:
                continue
            outcome: dict[str, Any] = {"line": block.line, "error": None, "missing": None}
            try:
                run_block(block, namespace)
            except ModuleNotFoundError as err:
                outcome["missing"] = (err.name or "").split(".")[0]
                outcome["error"] = traceback.format_exc()
            except BaseException as err:  # noqa: BLE001 - every failure is reported to the parent
                outcome["error"] = str(err) if isinstance(err, ShownOutputDiffers) else traceback.format_exc()
            out.write(json.dumps(outcome) + "\n")
            out.flush()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory with the files the examples open."""
    where = tmp_path_factory.mktemp("docs")
    rng = np.random.default_rng(0)
    np.save(where / "train.npy", rng.integers(0, 256, (32, 512, 512, 3), dtype=np.uint8))
    np.save(where / "labels.npy", rng.integers(0, 10, 32).astype(np.int64))
    return where


_pages: dict[Path, tuple[dict[int, dict[str, Any]], str]] = {}


def page_results(path: Path, workdir: Path) -> tuple[dict[int, dict[str, Any]], str]:
    """Each block's outcome, from one fresh interpreter per page: frameworks loaded by one
    page cannot break another (TensorFlow before PyTorch's Triton aborts the process on LLVM
    options registered twice), and a crash is reported, not fatal to the test run."""
    if path not in _pages:
        results = workdir / f"{path.name}.results.jsonl"
        results.unlink(missing_ok=True)
        proc = subprocess.run(
            [sys.executable, __file__, str(path), str(results)],
            cwd=workdir,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = results.read_text().splitlines() if results.exists() else []
        outcomes = {entry["line"]: entry for entry in map(json.loads, lines)}
        _pages[path] = (outcomes, "" if proc.returncode == 0 else describe_exit(proc))
    return _pages[path]


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_block_runs(block: Block, workdir: Path) -> None:
    if block.skip_here is not None:
        pytest.skip(f"{block.id}: {block.skip_here}")
    outcomes, crash = page_results(block.path, workdir)
    outcome = outcomes.get(block.line)
    if outcome is None:
        ran = [line for line in outcomes if line < block.line]
        where = f"after the block at line {max(ran)}" if ran else "before its first block finished"
        pytest.fail(f"{block.id} did not run: the interpreter died {where}\n{crash}", pytrace=False)
    if outcome["missing"] and outcome["missing"] not in ("zerofeed", "numpy"):
        require(outcome["missing"], reason=f"{block.id} uses {outcome['missing']}")
    if outcome["error"]:
        pytest.fail(f"{block.id}: {outcome['error']}", pytrace=False)


def test_the_docs_have_runnable_blocks() -> None:
    """The collection above found the blocks (a changed fence syntax would silently run none)."""
    per_file = {path.name: len(blocks(path)) for path in DOCS}
    assert {"README.md", "guide.md", "views.md"} <= set(per_file), per_file
    assert all(count > 0 for count in per_file.values()), per_file
    assert sum(block.skip is None for block in ALL) >= 10


def test_markers_are_found_and_unknown_ones_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: skip (needs CUDA) -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n"
        "```bash\nmake test\n```\n"
    )
    found = blocks(page)
    assert [(b.line, b.code, b.skip) for b in found] == [(2, "x = 1\n", "needs CUDA"), (6, "y = 2\n", None)]
    page.write_text("<!-- docs-test: skpi -->\n```python\nx = 1\n```\n")
    with pytest.raises(ValueError, match="unknown docs-test marker"):
        blocks(page)


def test_a_page_reports_each_block(tmp_path: Path) -> None:
    """Blocks share a namespace in order; wrong output, an exception and a skip are told apart."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 41\n```\n```python\n>>> x + 1\n42\n```\n```python\n>>> x\n40\n```\n"
        "<!-- docs-test: skip (needs a TPU) -->\n```python\nraise SystemExit(3)\n```\n"
        "```python\nimport zerofeed_no_such_module\n```\n```python\n1 / 0\n```\n```python\nprint(x)\n```\n"
    )
    results = tmp_path / "results.jsonl"
    run_page(page, results)
    outcomes = [json.loads(line) for line in results.read_text().splitlines()]
    assert [o["line"] for o in outcomes] == [1, 4, 8, 16, 19, 22]
    assert outcomes[0]["error"] is None and outcomes[1]["error"] is None
    assert outcomes[2]["error"].startswith("shown output differs") and "40" in outcomes[2]["error"]
    assert outcomes[3]["missing"] == "zerofeed_no_such_module"
    assert "ZeroDivisionError" in outcomes[4]["error"]
    assert "the block prints '41\\n'; show output as a >>> block" in outcomes[5]["error"]


def test_the_guide_describes_every_loader_option() -> None:
    """A Loader parameter without a section in docs/guide.md is a user left guessing."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    options = [name for name in inspect.signature(zf.Loader).parameters if name != "source"]
    missing = [name for name in options if not re.search(rf"^#+ .*`{name}\b", guide, re.MULTILINE)]
    assert not missing, f"docs/guide.md has no heading for Loader options {missing}"


def test_the_readme_first_screen_keeps_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert "make bench" in first_screen and "make test" in first_screen
    assert "docs/guide.md" in first_screen


if __name__ == "__main__":  # the child of page_results: python test_docs.py PAGE RESULTS
    run_page(Path(sys.argv[1]), Path(sys.argv[2]))

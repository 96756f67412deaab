"""The table of ``zerofeed bench tiny`` and its targets (issue 10, target 3).

Example:
    >>> TARGETS[0]
    ('zerofeed', 'numpy', 1.0)
    >>> targets({"results": []})
    []

"""

from __future__ import annotations

from typing import Any

from zerofeed.doctor import format_bytes
from zerofeed_bench.report import _layout, _machine_line, _not_ok, _ratio

#: ``(row, against, at least)``: a row's batches/s as a multiple of another's in the same run.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("zerofeed", "numpy", 1.0),
    ("zerofeed-labels", "numpy-labels", 1.0),
)
#: The per-batch overhead zerofeed must stay under, in microseconds.
MAX_US_PER_BATCH = 3.0

HEADER = (
    "implementation",
    "batch/s",
    "us/batch",
    "min-max batch/s",
    "vs numpy",
    "vs floor",
    "first batch",
    "PSS growth",
    "check",
)


def _check(row: dict[str, Any]) -> str:
    c = row.get("check")
    return "-" if not c else "pass" if c.get("passed") else "FAIL"


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each row of :data:`TARGETS` that ran, as ``{row, against, ratio, target, met}``, and
    zerofeed's microseconds per batch against :data:`MAX_US_PER_BATCH`.
    """
    ok = {r["name"]: r for r in result["results"] if r.get("status") == "ok"}
    out: list[dict[str, Any]] = []
    for name, against, want in TARGETS:
        if name in ok and against in ok:
            ratio = ok[name]["batches_per_s"]["median"] / ok[against]["batches_per_s"]["median"]
            out.append(
                {"row": name, "against": against, "ratio": ratio, "target": want, "met": ratio >= want}
            )
    if "zerofeed" in ok:
        us = 1e6 / ok["zerofeed"]["batches_per_s"]["median"]
        out.append({"row": "zerofeed", "us_per_batch": us, "target": MAX_US_PER_BATCH,
                    "met": us <= MAX_US_PER_BATCH})  # fmt: skip
    return out


def _said(t: dict[str, Any]) -> str:
    met = "met" if t["met"] else "NOT met"
    if "us_per_batch" in t:
        return f"{t['row']} {t['us_per_batch']:.2f} us/batch (<= {t['target']:g} us: {met})"
    return f"{t['row']} {t['ratio']:.2f}x {t['against']} (>= {t['target']:g}x: {met})"


def format_tiny_table(result: dict[str, Any]) -> str:
    """The readable report of a ``zerofeed bench tiny`` run."""
    rows: list[tuple[str, ...]] = []
    for r in result["results"]:
        if r["status"] != "ok":
            rows.append((*_not_ok(r, len(HEADER))[:-1], _check(r)))
            continue
        t = r["batches_per_s"]
        first = r.get("first_batch_s")
        rows.append(
            (
                r["name"],
                f"{t['median']:,.0f}",
                f"{1e6 / t['median']:,.2f}",
                f"{t['min']:,.0f}-{t['max']:,.0f}",
                _ratio(r.get("ratio_to_reference")),
                _ratio(r.get("ratio_to_floor")),
                "-" if first is None else f"{first * 1e3:,.1f} ms",
                format_bytes(r["memory"]["above_dataset_bytes"]),
                _check(r),
            )
        )
    w = result["workload"]
    lines = [
        f"workload: {w['rows']:,} rows x {w['features']} float32 + an int64 label (in memory), "
        f"shuffled, batch {w['batch']}, drop_last, {w['batches_per_epoch']:,} batches/epoch, "
        f"{w['epochs']} timed epochs x {result['repeats']} rounds, {w['threads']} threads",
        _machine_line(result["machine"]),
        "",
        *_layout(HEADER, rows),
    ]
    met = targets(result)
    if met:
        lines += ["", "targets: " + ", ".join(_said(t) for t in met)]
    lines += [
        "",
        "batch/s: median over every timed epoch of every round (min-max beside it); us/batch: 1e6 / it.",
        "vs numpy / vs floor: batch/s ratios in this run. numpy: a permutation per epoch, x[idx[s:s+b]],",
        "torch.from_numpy (numpy-labels gathers the labels too: compare the -labels rows with it). floor:",
        "np.take of the same rows into one reused buffer, one Python loop step and the bytes, nothing else.",
        "first batch: from building the row to its first batch. PSS growth: peak of the process over its",
        "own with the table loaded. check: two epochs of every row on a small table, each batch matched",
        "row by row against the data (labels against their rows), no row twice, reshuffled each epoch.",
    ]
    return "\n".join(lines)

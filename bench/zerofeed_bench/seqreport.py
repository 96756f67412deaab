"""The table of ``zerofeed bench tokens`` and ``zerofeed bench series``, and their targets.

Example:
    >>> TARGETS["tokens"][0]
    ('nanogpt', 20.0)

"""

from __future__ import annotations

from typing import Any

from zerofeed.doctor import format_bytes
from zerofeed_bench.report import _check, _layout, _machine_line, _not_ok, _ratio

#: What zerofeed's throughput must reach, as a multiple of a row (or group) of the same run.
TARGETS: dict[str, tuple[tuple[str, float], ...]] = {
    "tokens": (("nanogpt", 20.0), ("torch", 10.0), ("floor", 0.8)),
    "series": (("floor", 0.8),),
}

_SHORT = {"tokens": "tok/s", "windows": "win/s"}
_REF = {"nanogpt": "vs nanoGPT", "keras": "vs Keras"}


def _header(result: dict[str, Any]) -> tuple[str, ...]:
    return (
        "implementation",
        _SHORT[result["unit"]],
        "batch/s",
        "min-max",
        _REF.get(result["reference"], "vs reference"),
        "vs floor",
        "first batch",
        "RSS growth",
        "PSS growth",
        "check",
    )


def _workload_line(result: dict[str, Any]) -> str:
    w = result["workload"]
    rounds = f"{w['epochs']} timed epochs x {result['repeats']} rounds, {w['threads']} threads"
    if result["scenario"] == "tokens":
        return (
            f"workload: {w['tokens']:,} uint16 tokens (.bin, memory-mapped), windows of "
            f"{w['block']}+1 -> input/target int64 {w['batch']}x{w['block']}, "
            f"{w['batches_per_epoch']} batches/epoch, {rounds}"
        )
    return (
        f"workload: float32 series {w['steps']:,} x {w['features']} (.npy, memory-mapped), windows "
        f"of {w['length']} + target {w['horizon']}, stride {w['stride'] or w['length']}, "
        f"batch {w['batch']}, {w['batches_per_epoch']} batches/epoch, {rounds}"
    )


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Zerofeed's throughput against each target of :data:`TARGETS` (the best row of a
    group, e.g. the faster DataLoader or the faster floor).

    Example:
        >>> targets({"scenario": "series", "unit": "windows", "results": []})
        []

    """
    key = f"{result['unit']}_per_s"
    ok = {r["name"]: r for r in result["results"] if r.get("status") == "ok"}
    zf = ok.get("zerofeed")
    out: list[dict[str, Any]] = []
    if zf is None:
        return out
    for name, want in TARGETS.get(result["scenario"], ()):
        rows = [r for r in ok.values() if r["name"] == name or r["group"] == name]
        if not rows:
            continue
        best = max(rows, key=lambda r: r[key]["median"])
        ratio = zf[key]["median"] / best[key]["median"]
        out.append({"against": best["name"], "ratio": ratio, "target": want, "met": ratio >= want})
    return out


def format_seq_table(result: dict[str, Any]) -> str:
    """The readable report of a tokens or series run."""
    key = f"{result['unit']}_per_s"
    header = _header(result)
    rows: list[tuple[str, ...]] = []
    for r in result["results"]:
        if r["status"] != "ok":
            rows.append(_not_ok(r, len(header)))
            continue
        t = r[key]
        first = r.get("first_batch_s")
        rows.append(
            (
                r["name"],
                f"{t['median']:,.0f}",
                f"{r['batches_per_s']:,.0f}",
                f"{t['min']:,.0f}-{t['max']:,.0f}",
                _ratio(r.get("ratio_to_reference")),
                _ratio(r.get("ratio_to_floor")),
                "-" if first is None else f"{first * 1e3:,.1f} ms",
                format_bytes(r["memory"]["rss_growth_bytes"]),
                format_bytes(r["memory"]["above_dataset_bytes"]),
                _check(r),
            )
        )
    lines = [_workload_line(result), _machine_line(result["machine"]), ""]
    lines += _layout(header, rows)
    met = targets(result)
    if met:
        said = [
            f"zerofeed {t['ratio']:.2f}x {t['against']} (>= {t['target']:g}x: "
            f"{'met' if t['met'] else 'NOT met'})"
            for t in met
        ]
        lines += ["", "targets: " + ", ".join(said)]
    lines += [
        "",
        f"{header[1]}: median over every timed epoch of every round (min-max beside it); batch/s likewise.",
        f"{header[4]} / vs floor: throughput ratios in this run. floor: a plain copy of the same bytes",
        "from the mapped file, widened to the output dtype; 'vs floor' divides by the fastest floor into",
        "buffers used in turn, the honest bound for a pooled loader (zerofeed's). floor-fresh-*: np.empty",
        "per batch, which glibc serves with the block just freed (one cache-hot buffer): optimistic.",
        "first batch: from building the implementation to its first batch. RSS / PSS growth: peak of the",
        "process and its workers minus its own with the data mapped and resident (RSS counts a page of",
        "the file again for each new mapping of it; PSS shares it out).",
        "check: every value of every window, input and target, matched against the data (NumPy oracle).",
    ]
    return "\n".join(lines)

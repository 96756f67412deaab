"""Report a benchmark result: a table, a JSON file and an optional bar chart.

The result is the dict :func:`zerofeed_bench.runner.run_bench` returns.

Example:
    >>> print(format_bytes(3 * 2**20))
    3.0 MiB

"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zerofeed.doctor import format_bytes


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _check(row: dict[str, Any]) -> str:
    c = row.get("check")
    if str(row.get("group")).startswith("floor"):
        return "n/a"
    if not c:
        return "-"
    return "pass" if c.get("passed") else "FAIL"


HEADER = (
    "implementation",
    "img/s",
    "min-max",
    "out GB/s",
    "vs zerofeed",
    "vs floor",
    "mem above data",
    "copies",
    "check",
)


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One tuple of cells per implementation, in :data:`HEADER` order."""
    rows: list[tuple[str, ...]] = []
    for r in result["results"]:
        if r["status"] != "ok":
            rows.append(_not_ok(r, len(HEADER)))
            continue
        ips = r["images_per_s"]
        rows.append(
            (
                r["name"],
                f"{ips['median']:,.0f}",
                f"{ips['min']:,.0f}-{ips['max']:,.0f}",
                f"{r['output_gb_per_s']:.2f}",
                _ratio(r.get("ratio_to_zerofeed")),
                _ratio(r.get("ratio_to_floor")),
                format_bytes(r["memory"]["above_dataset_bytes"]),
                (r.get("copies") or "-").split(" (")[0],
                _check(r),
            )
        )
    return rows


def _machine_line(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['cpu_model']}, {m['usable_cores']} cores, "
        f"{format_bytes(m['ram_bytes'])} RAM, Python {m['python']}"
    )


def _layout(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Align ``rows`` under ``header``; a FAILED/skipped row is its name and reason."""
    rows = [header, *rows]
    ok_rows = [r for r in rows if not r[1].startswith(("FAILED", "skipped"))]
    widths = [max(len(r[i]) for r in ok_rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(rows):
        if r[1].startswith(("FAILED", "skipped")):
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]}")
            continue
        cells = [r[0].ljust(widths[0])] + [c.rjust(widths[j + 1]) for j, c in enumerate(r[1:])]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * x for x in widths))
    return lines


def _not_ok(r: dict[str, Any], width: int) -> tuple[str, ...]:
    why = r.get("error") or r.get("reason") or ""
    why = why.splitlines()[0] if why else ""
    label = "FAILED" if r["status"] == "failed" else "skipped"
    return (r["name"], f"{label}: {why[:90]}", *([""] * (width - 3)), _check(r))


def _output_words(w: dict[str, Any]) -> str:
    """``float32 32x256x256x3`` (or ``float16 32x3x256x256`` for a CHW variant)."""
    h = w["crop_h"] if "crop" in w["ops"] else w["height"]
    wd = w["crop_w"] if "crop" in w["ops"] else w["width"]
    output = w.get("output", "hwc-f32")
    dtype = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[output.split("-")[1]]
    dims = f"3x{h}x{wd}" if output.startswith("chw") else f"{h}x{wd}x3"
    return f"{dtype} {w['batch']}x{dims}"


def format_table(result: dict[str, Any]) -> str:
    """Format the readable report: workload line, machine line, table, and how to read it."""
    if result.get("scenario") == "tiny":
        from zerofeed_bench.tinyreport import format_tiny_table

        return format_tiny_table(result)
    if result.get("scenario", "images") != "images":
        from zerofeed_bench.seqreport import format_seq_table

        return format_seq_table(result)
    w = result["workload"]
    m = result["machine"]
    lines = [
        f"workload: {w['images']} images {w['height']}x{w['width']}x3 uint8 ({w['source']}), "
        f"ops {'+'.join(w['ops'])} -> {_output_words(w)}, "
        f"{w['epochs']} timed epochs x {result['repeats']} rounds, {w['threads']} threads",
        _machine_line(m),
        "",
    ]
    lines += _layout(HEADER, table_rows(result))
    lines += [
        "",
        "img/s: median over every timed epoch of every round (min-max beside it). vs zerofeed / vs floor:",
        "throughput ratios. floor-Nt: a plain u8->f32 copy (u8->u16 for 2-byte outputs) of the same",
        "output bytes from the dataset into a ring of buffers twice the cache, memory a consumer can",
        "keep: the memory-bandwidth bound. floor-pool-Nt: the same copy into as many buffers as",
        "zerofeed's pool keeps in flight with N workers: the same bytes in flight, so a cache that",
        "kept them would serve both alike. floor-cached-Nt: the same copy from a cache-sized source into two",
        "reused buffers, partly cache resident: for comparison, not a bound for a loader.",
        "mem above data: peak PSS of the process and its workers minus its PSS with the dataset loaded.",
        "check: each output was matched against the float64 reference before timing.",
    ]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write the full result (every raw number) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def plot(result: dict[str, Any], path: Path) -> str | None:
    """Write a horizontal bar chart of throughput (images/s, tokens/s, windows/s, batches/s) to ``path``.

    Returns ``None`` on success or a message saying why no chart was written (matplotlib
    missing), so the caller can print it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (
            f"--plot {path}: matplotlib is not installed; `pip install matplotlib` and run "
            "again (the table and --json have the same numbers)"
        )
    unit = result.get("unit", "images")
    key = f"{unit}_per_s"
    ok = [r for r in result["results"] if r["status"] == "ok"]
    names = [r["name"] for r in ok]
    med = [r[key]["median"] for r in ok]
    lo = [m - r[key]["min"] for m, r in zip(med, ok, strict=True)]
    hi = [r[key]["max"] - m for m, r in zip(med, ok, strict=True)]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ok) + 1.5))
    colors = [
        "tab:orange" if n.startswith("zerofeed") else "tab:gray" if n.startswith("floor") else "tab:blue"
        for n in names
    ]
    ax.barh(names, med, xerr=[lo, hi], color=colors)
    ax.invert_yaxis()
    ax.set_xlabel(f"{unit} / s (median, min-max)")
    ax.set_xscale("log" if unit != "images" else "linear")
    ax.set_title(_title(result))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def _title(result: dict[str, Any]) -> str:
    w = result["workload"]
    scenario = result.get("scenario", "images")
    if scenario == "tokens":
        return f"zerofeed bench tokens: {w['tokens']:,} tokens, batch {w['batch']} x {w['block']}"
    if scenario == "tiny":
        return f"zerofeed bench tiny: {w['rows']:,} rows x {w['features']} float32, batch {w['batch']}"
    if scenario == "cold":
        return f"zerofeed bench cold: {w['images']} x {w['height']}x{w['width']} uint8, batch {w['batch']}"
    if scenario == "series":
        return (
            f"zerofeed bench series: {w['steps']:,} x {w['features']}, windows {w['length']}+{w['horizon']}"
        )
    return f"zerofeed bench: {w['images']} x {w['height']}x{w['width']}, batch {w['batch']}"

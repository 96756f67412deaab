"""The table, JSON and chart of ``zerofeed bench images``: one result per recipe (train,
val) in one report, and the issue's targets for the train recipe.

The report is ``{"schema", "scenario": "photos", "unit": "images", "recipes": {name:
result}}``, each ``result`` what :func:`zerofeed_bench.runner.run_bench` returns.

Example:
    >>> TARGETS[0]
    ('floor', 1.5)

"""

from __future__ import annotations

from typing import Any

from zerofeed.doctor import format_bytes
from zerofeed_bench.report import _check, _layout, _machine_line, _not_ok, _ratio

#: What zerofeed's train throughput must reach, as a multiple of the best row of a group.
TARGETS: tuple[tuple[str, float], ...] = (
    ("floor", 1.5),
    ("dali", 3.0),
    ("torchvision", 5.0),
    ("tfdata", 8.0),
)

HEADER = (
    "implementation",
    "img/s",
    "min-max",
    "vs zerofeed",
    "vs floor",
    "first batch",
    "RSS growth",
    "check",
)


def combine(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One report of the recipes' results.

    Example:
        >>> combine({})["scenario"]
        'photos'

    """
    from zerofeed_bench.runner import SCHEMA

    return {"schema": SCHEMA, "scenario": "photos", "unit": "images", "recipes": results}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Zerofeed's throughput against each of :data:`TARGETS` (the best row of a group).

    Example:
        >>> targets({"results": []})
        []

    """
    ok = {r["name"]: r for r in result["results"] if r.get("status") == "ok"}
    zf = ok.get("zerofeed")
    out: list[dict[str, Any]] = []
    if zf is None:
        return out
    for group, want in TARGETS:
        rows = [r for r in ok.values() if r["group"] == group]
        if rows:
            best = max(rows, key=lambda r: r["images_per_s"]["median"])
            ratio = zf["images_per_s"]["median"] / best["images_per_s"]["median"]
            out.append({"against": best["name"], "ratio": ratio, "target": want, "met": ratio >= want})
    return out


def _rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in result["results"]:
        if r["status"] != "ok":
            rows.append(_not_ok(r, len(HEADER)))
            continue
        t, first = r["images_per_s"], r.get("first_batch_s")
        rows.append(
            (
                r["name"],
                f"{t['median']:,.0f}",
                f"{t['min']:,.0f}-{t['max']:,.0f}",
                _ratio(r.get("ratio_to_zerofeed")),
                _ratio(r.get("ratio_to_floor")),
                "-" if first is None else f"{first * 1e3:,.0f} ms",
                format_bytes(r["memory"]["rss_growth_bytes"]),
                _check(r),
            )
        )
    return rows


def format_photos(report: dict[str, Any]) -> str:
    """The readable report: per recipe a workload line and a table; the train targets."""
    lines: list[str] = []
    for name, res in report["recipes"].items():
        w = res["workload"]
        ops = (
            f"RandomResizedCrop {w['crop']} + flip + normalize"
            if name == "train"
            else f"Resize {w['resize']} + CenterCrop {w['crop']} + normalize"
        )
        lines += [
            f"recipe {name}: {w['images']} JPEGs (ImageFolder, {w['dataset']}), {ops} -> float32 "
            f"{w['batch']}x3x{w['crop']}x{w['crop']}, {w['batches_per_epoch']} batches/epoch, "
            f"{w['epochs']} timed epochs x {res['repeats']} rounds, {w['threads']} threads",
            _machine_line(res["machine"]),
            "",
            *_layout(HEADER, _rows(res)),
            "",
        ]
    train = report["recipes"].get("train")
    met = targets(train) if train else []
    if met:
        said = [
            f"zerofeed {t['ratio']:.2f}x {t['against']} (>= {t['target']:g}x: "
            f"{'met' if t['met'] else 'NOT met'})"
            for t in met
        ]
        lines += ["train targets: " + ", ".join(said), ""]
    lines += [
        "img/s: median over the rounds of each round's timed epochs taken as one stretch (min-max",
        "beside it; epochs of a few batches, one by one, would credit a loader with the next epoch's",
        "batches it built before the clock started). vs floor: ratio to the",
        "faster floor row (full Pillow decode of the same files, nothing else). first batch: from",
        "building the implementation to its first batch. RSS growth: peak of the process and its workers",
        "over its RSS before building. check: val batches matched Pillow decode + torchvision v2 resize",
        "and center crop within the stated tolerance, labels exactly; train epochs checked for labels,",
        "class counts, value range and distinct samples.",
    ]
    return "\n".join(lines)


def plot_photos(report: dict[str, Any], path: Any) -> str | None:
    """A bar chart per recipe (images/s, median with min-max) into ``path``; ``None`` on
    success, else why no chart was written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"--plot {path}: matplotlib is not installed (the table and --json have the same numbers)"
    recipes = list(report["recipes"].items())
    height = max(len(r["results"]) for _, r in recipes) if recipes else 1
    fig, axes = plt.subplots(1, max(1, len(recipes)), figsize=(6 * max(1, len(recipes)), 0.45 * height + 1.8))
    axes = axes if hasattr(axes, "__len__") else [axes]
    for ax, (name, res) in zip(axes, recipes, strict=False):
        ok = [r for r in res["results"] if r["status"] == "ok"]
        med = [r["images_per_s"]["median"] for r in ok]
        err = [
            [m - r["images_per_s"]["min"] for m, r in zip(med, ok, strict=True)],
            [r["images_per_s"]["max"] - m for m, r in zip(med, ok, strict=True)],
        ]
        colors = ["tab:orange" if r["group"] == "zerofeed" else "tab:gray" if r["group"] == "floor"
                  else "tab:blue" for r in ok]  # fmt: skip
        ax.barh([r["name"] for r in ok], med, xerr=err, color=colors)
        ax.invert_yaxis()
        ax.set_xlabel("images / s (median, min-max)")
        ax.set_title(f"zerofeed bench images: {name}, {res['workload']['images']} JPEGs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None

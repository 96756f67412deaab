"""The ``zerofeed`` command line: ``bench``, ``bench transfer``, ``doctor``, ``explain``.

Example:
    $ zerofeed bench --images 200 --against numpy,torch --json bench.json
    $ zerofeed doctor
    $ zerofeed explain train.npy --to tensorflow
    $ zerofeed explain --shape 32,256,256,3 --dtype uint8 --offset 80 --to tensorflow

"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from zerofeed.bench.baselines import GROUPS
from zerofeed.bench.data import ALL_OPS

DTYPES = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
)
TARGETS = ("numpy", "tensorflow", "torch", "jax", "cupy")


def _positive(name: str) -> Callable[[str], int]:
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {v}")
        return v

    return parse


def _non_negative(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _hw(s: str) -> tuple[int, int]:
    """``512`` or ``512x384`` -> (height, width)."""
    parts = s.lower().split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {s!r}")
    return (vals[0], vals[-1])


def _choices_list(valid: Sequence[str], what: str) -> Callable[[str], tuple[str, ...]]:
    def parse(s: str) -> tuple[str, ...]:
        items = tuple(x.strip() for x in s.split(",") if x.strip())
        bad = [x for x in items if x not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"invalid {what} {', '.join(map(repr, bad)) or repr(s)} "
                f"(choose from {', '.join(valid)}, comma-separated)"
            )
        return items

    return parse


def _shape(s: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in s.replace("x", ",").split(",") if x.strip())
    except ValueError:
        dims = ()
    if not dims or min(dims) < 0:
        raise argparse.ArgumentTypeError(f"expected a shape like 32,256,256,3, got {s!r}")
    return dims


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="zerofeed",
        description="zerofeed: zero-copy NumPy -> TensorFlow / PyTorch / JAX, and a fused "
        "input pipeline. Measure it against the tools you would otherwise use.",
    )
    sub = p.add_subparsers(dest="command", metavar="{bench,doctor,explain}", required=True)

    b = sub.add_parser(
        "bench",
        help="time zerofeed against the installed baselines on built-in data",
        description="Run the reference workload (random crop, random flip, mean/std "
        "normalize to float32, batches) with zerofeed and every installed baseline, each in "
        "its own process, interleaved and repeated; print a table. Exit status 1 if any "
        "implementation failed (crashed or computed the wrong thing).",
    )
    b.add_argument("--images", type=_positive("--images"), default=1000, help="default 1000")
    b.add_argument("--size", type=_hw, default=(512, 512), metavar="HxW", help="default 512")
    b.add_argument("--crop", type=_hw, default=(256, 256), metavar="HxW", help="default 256")
    b.add_argument("--batch", type=_positive("--batch"), default=32, help="default 32")
    b.add_argument(
        "--epochs",
        type=_positive("--epochs"),
        default=3,
        help="timed epochs per round, after one warm-up epoch (default 3)",
    )
    b.add_argument(
        "--repeats",
        type=_positive("--repeats"),
        default=3,
        help="rounds; each runs every implementation once, order rotated (default 3)",
    )
    b.add_argument(
        "--workers",
        type=_non_negative,
        default=0,
        help="threads/workers for every implementation (0 = usable cores)",
    )
    b.add_argument(
        "--ops",
        type=_choices_list(ALL_OPS, "op"),
        default=ALL_OPS,
        help=f"ops variant, comma-separated from {','.join(ALL_OPS)} (default all)",
    )
    b.add_argument(
        "--source",
        choices=("memory", "npy"),
        default="memory",
        help="memory: dataset loaded into RAM; npy: memory-mapped cached .npy",
    )
    b.add_argument(
        "--against",
        type=_choices_list(GROUPS, "baseline"),
        default=None,
        help=f"baselines, comma-separated from {','.join(GROUPS)} (default: every installed one)",
    )
    b.add_argument("--seed", type=_non_negative, default=0)
    b.add_argument("--json", type=Path, metavar="PATH", help="write every raw number here")
    b.add_argument("--plot", type=Path, metavar="PATH.png", help="bar chart (needs matplotlib)")
    b.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the generated dataset is cached (default ~/.cache/zerofeed/bench)",
    )
    b.add_argument(
        "--timeout",
        type=_positive("--timeout"),
        default=900,
        help="seconds before one implementation's process is killed (default 900)",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    bsub = b.add_subparsers(dest="bench_command", metavar="{transfer}")
    b.set_defaults(parser=b)
    t = bsub.add_parser("transfer", help="host-to-device bandwidth by size (needs CUDA)")
    t.add_argument("--sizes", default=None, help="MiB, comma-separated (default 1,16,256,1024,4096)")
    t.add_argument("--json", type=Path, metavar="PATH", dest="transfer_json")

    d = sub.add_parser("doctor", help="what this machine can do, and what it means for you")
    d.add_argument(
        "--fast",
        action="store_true",
        help="do not import frameworks (no DLPack or zero-copy probes)",
    )
    d.add_argument("--json", type=Path, metavar="PATH", help="also write the findings as JSON")

    e = sub.add_parser(
        "explain",
        help="what converting a .npy (or a described array) to a framework would do",
        description="Say whether converting would copy, why, and how to avoid it. Give a "
        ".npy PATH, or describe the array with --shape/--dtype/--offset.",
    )
    e.set_defaults(parser=e)
    e.add_argument("path", nargs="?", type=Path, help="a .npy file")
    e.add_argument("--to", required=True, choices=TARGETS, help="target framework")
    e.add_argument("--shape", type=_shape, help="e.g. 32,256,256,3 (without a file)")
    e.add_argument("--dtype", choices=DTYPES, default="float32", help="without a file")
    e.add_argument(
        "--offset",
        type=_non_negative,
        default=0,
        help="byte offset of the data from an aligned base (without a file)",
    )
    e.add_argument("--order", choices=("C", "F"), default="C", help="without a file")
    return p


def _bench(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from zerofeed.bench.data import Workload
    from zerofeed.bench.report import format_table, plot, write_json
    from zerofeed.bench.runner import run_bench

    (h, w), (ch, cw) = a.size, a.crop
    if "crop" in a.ops and (ch > h or cw > w):
        p.error(f"argument --crop: {ch}x{cw} does not fit in --size {h}x{w}")
    if a.batch > a.images:
        p.error(f"argument --batch: {a.batch} is more than --images {a.images}")
    wl = Workload(
        images=a.images,
        height=h,
        width=w,
        crop_h=ch,
        crop_w=cw,
        batch=a.batch,
        epochs=a.epochs,
        workers=a.workers,
        ops=a.ops,
        source=a.source,
        seed=a.seed,
    )

    def event(msg: str) -> None:
        print(msg, file=sys.stderr)

    result = run_bench(
        wl,
        against=a.against,
        repeats=a.repeats,
        timeout=a.timeout,
        progress=not a.no_progress,
        cache=a.cache_dir,
        on_event=event,
    )
    print(format_table(result))
    if a.json:
        write_json(result, a.json)
        print(f"\nraw numbers: {a.json}")
    if a.plot:
        msg = plot(result, a.plot)
        print(msg if msg else f"plot: {a.plot}", file=sys.stderr if msg else sys.stdout)
    return 1 if any(r["status"] == "failed" for r in result["results"]) else 0


def _transfer(a: argparse.Namespace) -> int:
    """``zerofeed bench transfer``: the GPU transfer benchmark (says so and exits 0 without CUDA)."""
    from zerofeed.bench.transfer import main as transfer_main

    argv: list[str] = []
    if a.sizes:
        argv += ["--sizes", a.sizes]
    if a.transfer_json:
        argv += ["--json", str(a.transfer_json)]
    return transfer_main(argv)


def _doctor(a: argparse.Namespace) -> int:
    from zerofeed.bench.doctor import doctor

    findings = doctor(probe=not a.fast)
    print("zerofeed doctor: what this machine can do\n")
    for f in findings:
        print(f.render())
    warns = sum(f.level == "warn" for f in findings)
    print(f"\n{len(findings)} checks, {warns} to look at (marked !)")
    if a.json:
        a.json.write_text(json.dumps([f.__dict__ for f in findings], indent=2) + "\n")
    return 0


def _explain(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from zerofeed.bench.doctor import explain

    if a.path is None and a.shape is None:
        p.error("explain needs a .npy PATH or --shape (with --dtype/--offset)")
    if a.path is not None and not a.path.is_file():
        p.error(f"argument path: {a.path} is not a file")
    try:
        text, _ = explain(
            a.to, path=a.path, shape=a.shape, dtype=a.dtype, offset=a.offset, fortran=a.order == "F"
        )
    except (ValueError, OSError) as e:
        print(f"zerofeed explain: {a.path}: not a readable .npy file: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zerofeed`` command line; returns the exit status.

    Example:
        >>> main(["explain", "--shape", "4,4", "--to", "numpy"])  # doctest: +SKIP
        0

    """
    a = build_parser().parse_args(argv)
    if a.command == "bench":
        if a.bench_command == "transfer":
            return _transfer(a)
        return _bench(a, a.parser)
    if a.command == "doctor":
        return _doctor(a)
    return _explain(a, a.parser)


if __name__ == "__main__":
    sys.exit(main())

"""The ``zerofeed`` command line: ``doctor``, ``explain``, and ``bench`` (from zerofeed-bench).

Usage errors exit 2, failures (a file that cannot be explained, a missing zerofeed-bench)
exit 1, success 0. ``zerofeed bench`` lives in its own distribution, ``zerofeed-bench``
(``bench/`` of the repository): it runs when that is installed and otherwise says how to
install it.

Example:
    $ zerofeed doctor
    $ zerofeed explain train.npy --to tensorflow
    $ zerofeed explain --shape 32,256,256,3 --dtype uint8 --offset 80 --to tensorflow
    $ zerofeed bench --images 200 --against numpy,torch --json bench.json

"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._dtypes import numpy_dtype
from .errors import ZerofeedError
from .explain import TARGETS, explain
from .memory import empty
from .sources import open_npy
from .views import View, view

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

#: What ``zerofeed bench`` prints (and exits 1 with) when zerofeed-bench is not installed.
BENCH_MISSING = (
    "zerofeed bench: the benchmark is its own package, zerofeed-bench, and it is not installed "
    "here: run `pip install ./bench` in a zerofeed checkout (or `make bench`, which installs and runs it)"
)


def _non_negative(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _shape(s: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in s.replace("x", ",").split(",") if x.strip())
    except ValueError:
        dims = ()
    if not dims or min(dims) < 0:
        raise argparse.ArgumentTypeError(f"expected a shape like 32,256,256,3, got {s!r}")
    return dims


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (exposed for tests and docs).

    Example:
        >>> build_parser().parse_args(["explain", "--shape", "4,4", "--to", "jax"]).shape
        (4, 4)

    """
    p = argparse.ArgumentParser(
        prog="zerofeed",
        description="zerofeed: zero-copy NumPy -> TensorFlow / PyTorch / JAX, and a fused "
        "input pipeline. Usage errors exit 2, failures 1.",
    )
    p.add_argument("--version", action="version", version=f"zerofeed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{bench,doctor,explain}")
    # Only listed here: `zerofeed bench ...` is handed to zerofeed-bench before parsing.
    sub.add_parser(
        "bench",
        add_help=False,
        help="time zerofeed against the installed baselines on built-in data (needs zerofeed-bench)",
    )

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
        ".npy PATH, or describe the array with --shape/--dtype/--offset. Exit status 1 when "
        "the file cannot be explained (not a valid .npy, unreadable).",
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


def _bench(argv: Sequence[str]) -> int:
    if importlib.util.find_spec("zerofeed_bench") is None:
        print(BENCH_MISSING, file=sys.stderr)
        return 1
    from zerofeed_bench.cli import main as bench_main

    status: int = bench_main(list(argv))
    return status


def _doctor(a: argparse.Namespace) -> int:
    from .doctor import doctor

    findings = doctor(probe=not a.fast)
    print("zerofeed doctor: what this machine can do\n")
    for f in findings:
        print(f.render())
    warns = sum(f.level == "warn" for f in findings)
    print(f"\n{len(findings)} checks, {warns} to look at (marked !)")
    if a.json:
        a.json.write_text(json.dumps([f.__dict__ for f in findings], indent=2) + "\n")
    return 0


def _report(title: str, v: View, offset: int, where: str, target: str) -> str:
    """The facts of ``v``, then zerofeed's explanation of handing it to ``target``."""
    order = "Fortran" if v.is_f_contiguous and not v.is_c_contiguous else "C"
    lines = [
        title,
        f"  shape {tuple(v.shape)}, dtype {v.dtype}, {order} order",
        f"  data at byte offset {offset} {where}",
    ]
    return "\n".join(lines + ["  " + line for line in str(explain(v, target)).splitlines()])


def _explain_file(path: Path, target: str) -> str:
    """The explanation of a ``.npy`` file, read with the core's (fuzzed) header parser."""
    v = open_npy(path)
    # open_npy has checked that the data runs exactly to the end of the file.
    return _report(f"{path}:", v, path.stat().st_size - v.nbytes, "in the file", target)


def _explain_described(a: argparse.Namespace) -> str:
    """The explanation of an array described by flags, built over aligned memory."""
    dtype = numpy_dtype(a.dtype)
    nbytes = math.prod(a.shape) * dtype.itemsize
    if nbytes >= 2**63:
        raise ValueError(f"--shape {a.shape} of {a.dtype} is {nbytes} bytes, more than a process can address")
    base = empty(nbytes + a.offset + 64, "uint8")  # 64-byte aligned, untouched pages
    described = view(base[a.offset : a.offset + nbytes].view(dtype).reshape(a.shape, order=a.order))
    return _report("described array:", described, a.offset, "from a 64-byte aligned base", a.to)


def _explain(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    if a.path is None and a.shape is None:
        p.error("explain needs a .npy PATH or --shape (with --dtype/--offset)")
    if a.path is not None and not a.path.is_file():
        p.error(f"argument path: {a.path} is not a file")
    what = a.path if a.path is not None else "the described array"
    try:
        text = _explain_file(a.path, a.to) if a.path is not None else _explain_described(a)
    except (ZerofeedError, OSError, ValueError, OverflowError, MemoryError) as e:
        # One line: NpyFormatError already names the file and the field at fault.
        message = " ".join(str(e).split()) or type(e).__name__
        if str(what) not in message:
            message = f"{what}: {message}"
        print(f"zerofeed explain: {message}", file=sys.stderr)
        return 1
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zerofeed`` command line; returns the exit status.

    Example:
        >>> main(["explain", "--shape", "4,4", "--to", "numpy"])  # doctest: +ELLIPSIS
        described array:
        ...
        0

    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench"]:
        return _bench(args[1:])
    p = build_parser()
    a = p.parse_args(args)
    if a.command is None:
        p.print_help()
        return 0
    if a.command == "doctor":
        return _doctor(a)
    return _explain(a, a.parser)


if __name__ == "__main__":
    sys.exit(main())

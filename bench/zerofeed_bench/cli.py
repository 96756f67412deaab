"""``zerofeed bench`` and ``zerofeed bench transfer``: the command line of zerofeed-bench.

The product's ``zerofeed`` command hands ``zerofeed bench ARGS`` to :func:`main` when this
package is installed; ``python -m zerofeed_bench ARGS`` and ``zerofeed-bench ARGS`` do the same.
Usage errors exit 2, a failed implementation exits 1.

Example:
    $ zerofeed bench --images 200 --against numpy,torch --json bench.json
    $ zerofeed bench transfer --sizes 1,16,256
    $ zerofeed bench tokens --tokens 20000000 --json tokens.json
    $ zerofeed bench series --steps 1000000 --plot series.png
    $ zerofeed bench images --images 1000 --json images.json
    $ zerofeed bench tiny --rows 100000 --batch 64 --json tiny.json
    $ sudo zerofeed bench cold --images 4000 --json cold.json

"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zerofeed_bench.baselines import GROUPS
from zerofeed_bench.data import ALL_OPS, OUTPUTS


def _int_at_least(minimum: int, name: str) -> Callable[[str], int]:
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {v}")
        return v

    return parse


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


def build_parser() -> argparse.ArgumentParser:
    """Build the ``zerofeed bench`` argument parser (exposed for tests and docs).

    Example:
        >>> build_parser().parse_args(["--images", "64"]).images
        64

    """
    b = argparse.ArgumentParser(
        prog="zerofeed bench",
        description="Run the reference workload (random crop, random flip, mean/std "
        "normalize to float32, batches) with zerofeed and every installed baseline, each in "
        "its own process, interleaved and repeated; print a table. Exit status 1 if any "
        "implementation failed (crashed or computed the wrong thing), 2 for a usage error.",
    )
    integers = (  # flag, smallest value, default, help
        ("--images", 1, 1000, "default 1000"),
        ("--batch", 1, 32, "default 32"),
        ("--epochs", 1, 3, "timed epochs per round, after a warm-up of 8+ batches (default 3)"),
        ("--repeats", 1, 3, "rounds; each runs every implementation once, order rotated (default 3)"),
        ("--workers", 0, 0, "threads/workers for every implementation (0 = usable cores)"),
        ("--seed", 0, 0, "seed of the data and of every random choice (default 0)"),
        ("--timeout", 1, 900, "seconds before one implementation's process is killed (default 900)"),
    )
    for flag, smallest, default, text in integers:
        b.add_argument(flag, type=_int_at_least(smallest, flag), default=default, help=text)
    b.add_argument("--size", type=_hw, default=(512, 512), metavar="HxW", help="default 512")
    b.add_argument("--crop", type=_hw, default=(256, 256), metavar="HxW", help="default 256")
    b.add_argument(
        "--ops",
        type=_choices_list(ALL_OPS, "op"),
        default=ALL_OPS,
        help=f"ops variant, comma-separated from {','.join(ALL_OPS)} (default all)",
    )
    b.add_argument(
        "--output",
        choices=OUTPUTS,
        default="hwc-f32",
        help="layout and dtype of the batches (default hwc-f32); other variants run zerofeed "
        "against the floors only, since the peers compute HWC float32",
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
    b.add_argument("--json", type=Path, metavar="PATH", help="write every raw number here")
    b.add_argument("--plot", type=Path, metavar="PATH.png", help="bar chart (needs matplotlib)")
    b.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the generated dataset is cached (default ~/.cache/zerofeed/bench)",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    bsub = b.add_subparsers(dest="bench_command", metavar="{images,tokens,series,tiny,cold,transfer}")
    _add_photos_parser(bsub)
    _add_sequence_parsers(bsub)
    _add_tiny_parser(bsub)
    _add_cold_parser(bsub)
    t = bsub.add_parser("transfer", help="host-to-device bandwidth by size (needs CUDA)")
    t.add_argument("--sizes", default=None, help="MiB, comma-separated (default 1,16,256,1024)")
    t.add_argument("--json", type=Path, metavar="PATH", dest="transfer_json")
    return b


def _add_photos_parser(bsub: Any) -> None:
    """``zerofeed bench images``: encoded JPEG files, train and validation recipes."""
    from zerofeed_bench.imgbaselines import PHOTO_GROUPS
    from zerofeed_bench.imgdata import RECIPES

    sp = bsub.add_parser(
        "images",
        help="JPEG files to training batches: zerofeed vs torchvision, DALI CPU, tf.data, Pillow decode",
        description="An ImageFolder of JPEGs cut from real sample photographs, read by the train "
        "recipe (RandomResizedCrop 224 + flip + normalize) and the validation recipe (Resize 256 + "
        "CenterCrop 224 + normalize), CHW float32: zerofeed (fast_decode on and off) against "
        "torchvision ImageFolder + DataLoader, DALI on the CPU, tf.data and the floor (full Pillow "
        "decode of the same files), each in its own process, checked first.",
    )
    ints = (
        ("--images", 1, 1000, "JPEGs in the built-in folder (default 1000)"),
        ("--batch", 1, None, "default 256, or half of --images when that is smaller"),
        ("--epochs", 1, 6, "timed epochs a round, as one stretch, after a warm-up of 8+ batches (default 6)"),
    )
    _add_run_flags(sp, ints, PHOTO_GROUPS)
    sp.add_argument(
        "--recipes",
        type=_choices_list(RECIPES, "recipe"),
        default=RECIPES,
        help=f"comma-separated from {','.join(RECIPES)} (default both)",
    )


def _photos(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    """Run each recipe of ``zerofeed bench images`` and report them together."""
    from zerofeed_bench.imgdata import PhotosWorkload
    from zerofeed_bench.imgreport import combine, format_photos, plot_photos
    from zerofeed_bench.report import write_json
    from zerofeed_bench.runner import run_bench

    batch = a.batch if a.batch is not None else min(256, max(1, a.images // 2))
    if batch > a.images:
        p.error(f"argument --batch: {batch} is more than --images {a.images}")
    _check_paths(a, p)
    results = {}
    for recipe in a.recipes:
        w = PhotosWorkload(
            images=a.images, batch=batch, recipe=recipe, epochs=a.epochs, workers=a.workers, seed=a.seed
        )
        results[recipe] = run_bench(
            w,
            against=a.against,
            repeats=a.repeats,
            timeout=a.timeout,
            progress=not a.no_progress,
            cache=a.cache_dir,
            on_event=lambda msg, r=recipe: print(f"{r}: {msg}", file=sys.stderr),
        )
    report = combine(results)
    print(format_photos(report))
    if a.json:
        write_json(report, a.json)
        print(f"\nraw numbers: {a.json}")
    if a.plot:
        msg = plot_photos(report, a.plot)
        print(msg if msg else f"plot: {a.plot}", file=sys.stderr if msg else sys.stdout)
    rows = [r for res in results.values() for r in res["results"]]
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _add_sequence_parsers(bsub: Any) -> None:
    """``zerofeed bench tokens`` and ``zerofeed bench series``: their own flags, after the word."""
    from zerofeed_bench.seqbaselines import SERIES_GROUPS, TOKEN_GROUPS

    tok = bsub.add_parser(
        "tokens",
        help="language-model token windows: zerofeed vs nanoGPT's get_batch, DataLoader, LitData",
        description="Random windows of a uint16 token stream (.bin) widened to int64 input/target "
        "batches, as nanoGPT trains; zerofeed against nanoGPT's get_batch, a PyTorch DataLoader, "
        "LitData and the copy floor, each in its own process, checked against the data first.",
    )
    ser = bsub.add_parser(
        "series",
        help="forecasting windows over a (T, F) series: zerofeed vs Keras, tf.data, DataLoader, NumPy",
        description="Shuffled windows of a float32 (T, F) series with the steps after them as "
        "target; zerofeed against Keras timeseries_dataset_from_array, tf.data, a PyTorch "
        "DataLoader, NumPy fancy indexing and the copy floor.",
    )
    tok_ints = (
        ("--tokens", 2, 20_000_000, "tokens in the built-in stream (default 20,000,000: 40 MB)"),
        ("--block", 1, 1024, "window length in tokens (default 1024; each reads block+1)"),
        ("--batch", 1, 12, "default 12 (nanoGPT's)"),
        ("--epochs", 1, 2, "timed epochs per round, after a warm-up of 8+ batches (default 2)"),
    )
    ser_ints = (
        ("--steps", 2, 2_000_000, "time steps of the built-in series (default 2,000,000)"),
        ("--features", 1, 8, "features per step (default 8)"),
        ("--length", 1, 64, "input window length (default 64)"),
        ("--horizon", 1, 8, "target steps after the window (default 8)"),
        ("--stride", 0, 0, "distance between window starts (default 0 = --length)"),
        ("--batch", 1, 256, "default 256"),
        ("--epochs", 1, 3, "timed epochs per round, after a warm-up of 8+ batches (default 3)"),
    )
    for sp, ints, groups in ((tok, tok_ints, TOKEN_GROUPS), (ser, ser_ints, SERIES_GROUPS)):
        _add_run_flags(sp, ints, groups)


def _add_tiny_parser(bsub: Any) -> None:
    """``zerofeed bench tiny``: the per-batch overhead of tiny batches of a table."""
    from zerofeed_bench.tinybench import TINY_GROUPS

    sp = bsub.add_parser(
        "tiny",
        help="tiny shuffled batches of a table (the per-batch overhead): zerofeed vs NumPy, DataLoader",
        description="Shuffled batches of 64 rows of a (rows, 8) float32 table and its int64 labels, "
        "where moving the bytes costs almost nothing and the rest of a batch is what is measured: "
        "zerofeed (torch tensors, with labels, NumPy) against NumPy fancy indexing + "
        "torch.from_numpy, a PyTorch DataLoader over a TensorDataset and the floor (np.take into "
        "a reused buffer), each in its own process, checked against the data first.",
    )
    ints = (
        ("--rows", 1, 100_000, "rows of the built-in table (default 100,000)"),
        ("--features", 1, 8, "float32 features per row (default 8)"),
        ("--batch", 1, 64, "rows per batch (default 64)"),
        ("--epochs", 1, 3, "timed epochs per round, after a warm-up of 8+ batches (default 3)"),
    )
    _add_run_flags(sp, ints, TINY_GROUPS)


def _add_cold_parser(bsub: Any) -> None:
    """``zerofeed bench cold``: a memory-mapped .npy read shuffled from a cold page cache."""
    from zerofeed_bench.coldbench import GROUPS as COLD_GROUPS

    sp = bsub.add_parser(
        "cold",
        help="shuffled batches of a memory-mapped .npy from a cold page cache (needs root)",
        description="uint8 images in one .npy, read shuffled in raw batches with the page cache "
        "dropped before every timed epoch: zerofeed (reading ahead the decided batches, and "
        "without) against NumPy fancy indexing on np.load(mmap_mode='r') and the sequential "
        "read of the same file (the floor). Needs root to drop the page cache.",
    )
    ints = (
        ("--images", 1, 4000, "images in the built-in file (default 4000: 786 MB at 256x256)"),
        ("--batch", 1, 32, "default 32"),
        ("--epochs", 1, 2, "timed epochs per round, after a warm-up of 8+ batches (default 2)"),
    )
    _add_run_flags(sp, ints, COLD_GROUPS)
    sp.add_argument("--size", type=_hw, default=(256, 256), metavar="HxW", help="default 256")


def _cold(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    """Run ``zerofeed bench cold``; exits 2 with the reason where the cache cannot be dropped."""
    from zerofeed_bench.coldbench import ColdWorkload, cache_drop_refused, format_cold

    if a.batch > a.images:
        p.error(f"argument --batch: {a.batch} is more than --images {a.images}")
    _check_paths(a, p)
    why = cache_drop_refused()
    if why is not None:
        print(f"zerofeed bench cold: {why}", file=sys.stderr)
        return 2
    h, w = a.size
    wl = ColdWorkload(images=a.images, height=h, width=w, batch=a.batch, epochs=a.epochs,
                      workers=a.workers, seed=a.seed)  # fmt: skip
    return _run_and_report(wl, a, format_cold)


def _add_run_flags(sp: argparse.ArgumentParser, ints: Sequence[tuple[str, int, Any, str]],
                   groups: Sequence[str]) -> None:  # fmt: skip
    """A subcommand's own integer flags ``(flag, smallest, default, help)`` and the flags
    every subcommand has (rounds, workers, seed, timeout, --against its groups, outputs).
    """
    common = (
        ("--repeats", 1, 3, "rounds; each runs every implementation once, order rotated (default 3)"),
        ("--workers", 0, 0, "threads/workers for zerofeed and the threaded baselines (0 = usable cores)"),
        ("--seed", 0, 0, "seed of the data and of every random choice (default 0)"),
        ("--timeout", 1, 900, "seconds before one implementation's process is killed (default 900)"),
    )
    for flag, smallest, default, text in (*ints, *common):
        sp.add_argument(flag, type=_int_at_least(smallest, flag), default=default, help=text)
    sp.add_argument(
        "--against",
        type=_choices_list(groups, "baseline"),
        default=None,
        help=f"baselines, comma-separated from {','.join(groups)} (default: every installed one)",
    )
    sp.add_argument("--json", type=Path, metavar="PATH", help="write every raw number here")
    sp.add_argument("--plot", type=Path, metavar="PATH.png", help="bar chart (needs matplotlib)")
    sp.add_argument("--cache-dir", type=Path, default=None, help="where the built-in data is cached")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_paths(a: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """Refuse, before an hour of benchmarking, paths that cannot be written."""
    if a.cache_dir is not None:
        try:
            a.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            p.error(f"argument --cache-dir: {a.cache_dir} cannot be a directory: {e.strerror or e}")
    for flag, path in (("--json", a.json), ("--plot", a.plot)):
        if path is not None and not path.absolute().parent.is_dir():
            p.error(f"argument {flag}: the folder of {path} does not exist")


def _sequence_workload(a: argparse.Namespace, p: argparse.ArgumentParser) -> Any:
    """The tokens or series workload of the flags (usage errors exit 2)."""
    from zerofeed_bench.seqdata import SeriesWorkload, TokensWorkload

    if a.bench_command == "tokens":
        w: Any = TokensWorkload(
            tokens=a.tokens, block=a.block, batch=a.batch, epochs=a.epochs, workers=a.workers, seed=a.seed
        )
        if w.windows < 1:
            p.error(f"argument --tokens: {a.tokens} tokens hold no window of --block {a.block} + 1")
    else:
        w = SeriesWorkload(
            steps=a.steps,
            features=a.features,
            length=a.length,
            horizon=a.horizon,
            stride=a.stride,
            batch=a.batch,
            epochs=a.epochs,
            workers=a.workers,
            seed=a.seed,
        )
        if a.length + a.horizon > a.steps:
            p.error(f"argument --steps: {a.steps} steps hold no window of --length + --horizon")
    if w.batches_per_epoch < 1:
        p.error(f"argument --batch: {a.batch} is more than the {w.windows} windows of the data")
    return w


def _tiny(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    """``zerofeed bench tiny`` (usage errors exit 2)."""
    from zerofeed_bench.tinybench import TinyWorkload

    if a.batch > a.rows:
        p.error(f"argument --batch: {a.batch} is more than --rows {a.rows}")
    _check_paths(a, p)
    w = TinyWorkload(
        rows=a.rows, features=a.features, batch=a.batch, epochs=a.epochs, workers=a.workers, seed=a.seed
    )
    return _run_and_report(w, a)


def _run_and_report(
    w: Any, a: argparse.Namespace, table: Callable[[dict[str, Any]], str] | None = None
) -> int:
    """Run the benchmark of ``w``, print its table, write --json / --plot; the exit status."""
    from zerofeed_bench.report import format_table, plot, write_json
    from zerofeed_bench.runner import run_bench

    def event(msg: str) -> None:
        print(msg, file=sys.stderr)

    result = run_bench(
        w,
        against=a.against,
        repeats=a.repeats,
        timeout=a.timeout,
        progress=not a.no_progress,
        cache=a.cache_dir,
        on_event=event,
    )
    print((table or format_table)(result))
    if a.json:
        write_json(result, a.json)
        print(f"\nraw numbers: {a.json}")
    if a.plot:
        msg = plot(result, a.plot)
        print(msg if msg else f"plot: {a.plot}", file=sys.stderr if msg else sys.stdout)
    return 1 if any(r["status"] == "failed" for r in result["results"]) else 0


def _bench(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from zerofeed_bench.data import Workload

    (h, w), (ch, cw) = a.size, a.crop
    if "crop" in a.ops and (ch > h or cw > w):
        p.error(f"argument --crop: {ch}x{cw} does not fit in --size {h}x{w}")
    if a.batch > a.images:
        p.error(f"argument --batch: {a.batch} is more than --images {a.images}")
    _check_paths(a, p)
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
        output=a.output,
    )
    return _run_and_report(wl, a)


def _transfer(a: argparse.Namespace) -> int:
    """``zerofeed bench transfer``: the GPU transfer benchmark (says so and exits 0 without CUDA)."""
    from zerofeed_bench.transfer import main as transfer_main

    argv: list[str] = []
    if a.sizes:
        argv += ["--sizes", a.sizes]
    if a.transfer_json:
        argv += ["--json", str(a.transfer_json)]
    return transfer_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``zerofeed bench`` with ``argv`` (the arguments after ``bench``); return the exit status.

    Example:
        >>> main(["--images", "16", "--size", "32", "--crop", "16", "--batch", "8"])  # doctest: +SKIP
        0

    """
    p = build_parser()
    a = p.parse_args(argv)
    if a.bench_command == "transfer":
        return _transfer(a)
    if a.bench_command == "cold":
        return _cold(a, p._subparsers._group_actions[0].choices["cold"])  # type: ignore[union-attr]
    if a.bench_command in ("images", "tokens", "series", "tiny"):
        sub = p._subparsers._group_actions[0].choices[a.bench_command]  # type: ignore[union-attr]
        if a.bench_command == "images":
            return _photos(a, sub)
        if a.bench_command == "tiny":
            return _tiny(a, sub)
        w = _sequence_workload(a, sub)
        _check_paths(a, sub)
        return _run_and_report(w, a)
    return _bench(a, p)

"""Run the benchmark: each implementation in its own process, interleaved and repeated.

The parent (:func:`run_bench`) generates the dataset once into the cache, then for each
round starts one child per implementation (``python -m zerofeed_bench.runner``), in an
order rotated every round, and samples the memory of the child's process tree (workers
included) every 50 ms while it runs. The child (:func:`child_main`):

1. checks the implementation on the tiny check workload against the reference (first
   round only; an implementation that fails is not timed),
2. loads the dataset (into RAM, or memory-mapped with ``--source npy``) and records its
   memory as the baseline,
3. builds the implementation, runs the warm-up (one epoch, or as many as make
   ``WARMUP_BATCHES`` batches; the first batch's shape is checked) and the timed epochs,
   and writes its numbers as JSON.

Example:
    >>> from zerofeed_bench.data import Workload
    >>> res = run_bench(Workload(images=8, height=24, width=24, crop_h=16, crop_w=16,
    ...                          batch=4, epochs=1), against=["numpy"], repeats=1,
    ...                 progress=False)  # doctest: +SKIP

"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import site
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zerofeed_bench.baselines import Spec
from zerofeed_bench.machine import machine_info, memory_of, tree_memory, tree_rss
from zerofeed_bench.scenarios import SCENARIOS, Scenario, scenario_of

SCHEMA = "zerofeed-bench/1"
# The fewest batches the warm-up runs: more than zerofeed's pool holds for large batches
# (prefetch + workers + 2), so epochs of a few batches do not time its first allocations.
WARMUP_BATCHES = 8


# ----------------------------------------------------------------------------- child side


def spec_to_json(spec: Spec) -> str:
    """Serialize ``spec`` for the child; its builder travels as ``module:qualname``."""
    d = dataclasses.asdict(spec)
    d["build"] = f"{spec.build.__module__}:{spec.build.__qualname__}"
    return json.dumps(d)


def spec_from_json(text: str) -> Spec:
    """Inverse of :func:`spec_to_json` (imports the builder's module)."""
    d = json.loads(text)
    module, _, qualname = d["build"].partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    d["build"] = obj
    d["modules"] = tuple(d["modules"])
    return Spec(**d)


def run_check(spec: Spec, w: Any) -> dict[str, Any]:
    """Run ``spec`` for one epoch of the check workload and compare with the oracle."""
    return scenario_of(w).check(spec, w)


def run_timed(spec: Spec, w: Any, dataset: Path, marker: Path | None = None) -> dict[str, Any]:
    """Load the data, build, warm up and time ``w.epochs`` epochs of ``spec``.

    ``marker`` is created once the dataset is loaded and the memory baseline taken: the
    parent's memory sampler starts counting the peak from there. ``first_batch_s`` is the
    time from building the implementation to its first batch (build included).
    """
    sc = scenario_of(w)
    data, keep = sc.load(dataset, w)
    for m in spec.modules:  # the framework's own import is not the pipeline's memory
        importlib.import_module(m)
    base_rss, base_pss = memory_of(os.getpid())
    if marker is not None:
        marker.touch()
    t0 = time.perf_counter()
    impl = spec.build(data, w, spec.threads)
    build_s = time.perf_counter() - t0
    first_batch_s = None
    try:
        expected = sc.epoch_batches(impl, w)
        t1 = time.perf_counter()
        n = 0
        for b in impl.epoch(0):
            if n == 0:
                first_batch_s = time.perf_counter() - t0
                problem = sc.first_batch(impl, b, w) if spec.timed_check else None
                if problem:
                    raise RuntimeError(problem)
            n += 1
        # Epochs of a few batches warm up for several: every implementation's pools, caches
        # and worker buffers reach their steady size before the clock starts.
        warm_epochs = max(1, -(-WARMUP_BATCHES // max(1, expected)))
        for e in range(1, warm_epochs):
            sum(1 for _ in impl.epoch(e))
        warmup_s = time.perf_counter() - t1
        epochs_s: list[float] = []
        for e in range(warm_epochs, warm_epochs + w.epochs):
            if sc.before_epoch is not None:
                sc.before_epoch()
            t1 = time.perf_counter()
            n = sum(1 for _ in impl.epoch(e))
            epochs_s.append(time.perf_counter() - t1)
            if n != expected:
                raise RuntimeError(f"epoch {e} gave {n} batches, expected {expected}")
        stats = impl.stats()
    finally:
        impl.close()
    del keep
    return {
        "baseline_rss_bytes": base_rss,
        "baseline_pss_bytes": base_pss,
        "build_s": build_s,
        "first_batch_s": first_batch_s,
        "warmup_s": warmup_s,
        "epochs_s": epochs_s,
        "batches_per_epoch": expected,
        "stats": stats,
    }


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one child process; writes its result JSON to ``--out``."""
    p = argparse.ArgumentParser(prog="python -m zerofeed_bench.runner")
    p.add_argument("--spec", required=True, help="implementation spec as JSON")
    p.add_argument("--workload", required=True, help="workload as JSON")
    p.add_argument("--dataset", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--check", action="store_true")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="images")
    a = p.parse_args(argv)
    w = SCENARIOS[a.scenario].workload.from_dict(json.loads(a.workload))
    res: dict[str, Any] = {"name": json.loads(a.spec).get("name"), "status": "ok"}
    try:
        spec = spec_from_json(a.spec)
        if a.check and spec.timed_check:
            t0 = time.perf_counter()
            res["check"] = run_check(spec, w)
            res["check"]["seconds"] = time.perf_counter() - t0
            if not res["check"]["passed"]:
                res["status"] = "failed"
                res["error"] = "correctness check failed: " + "; ".join(res["check"]["problems"])
        if res["status"] == "ok":
            res.update(run_timed(spec, w, a.dataset, a.out.with_suffix(".timed")))
    except BaseException as e:  # noqa: BLE001 - report any failure, including SystemExit
        res["status"] = "failed"
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc(limit=8)
    a.out.write_text(json.dumps(res, default=str))
    return 0


# ---------------------------------------------------------------------------- parent side


class _Sampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree while it is timed.

    RSS is read every ``interval`` seconds from ``/proc/PID/status``, which costs tens of
    microseconds. PSS needs ``smaps_rollup``, which walks the child's page tables: 18 ms for
    a process that imported torch, under its memory-map lock, on one of the cores the
    implementation being timed runs on, and on this workload's 13 ms epochs, read every 50 ms,
    that slowed zerofeed's epochs by up to 2x. So PSS is read at the first timed sample and
    then only when the tree's RSS has grown by more than ``slack`` (1 MiB, or 1 %) since the
    last PSS read: PSS (shared pages split between processes) cannot grow more than RSS.
    """

    def __init__(self, pid: int, marker: Path, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.marker, self.interval = pid, marker, interval
        self.peak_rss = self.peak_pss = 0
        self.samples = 0
        self.timed = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        pss_at: int | None = None  # the tree's RSS when PSS was last read
        while not self._stop_event.is_set():
            if not self.timed:
                if not self.marker.exists():
                    self._stop_event.wait(self.interval)
                    continue
                self.timed = True
            try:
                rss = tree_rss(self.pid)
                if pss_at is None or rss > pss_at + max(1 << 20, pss_at // 100):
                    rss, pss = tree_memory(self.pid)
                    self.peak_pss, pss_at = max(self.peak_pss, pss), rss
            except OSError:
                rss = 0
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    env.setdefault("JAX_PLATFORMS", "cpu")
    # The children must import this very zerofeed_bench and zerofeed: add their roots to
    # PYTHONPATH unless they are install locations (putting site-packages ahead of the
    # stdlib could shadow modules).
    import zerofeed

    roots = [str(Path(m).absolute().parents[1]) for m in (__file__, zerofeed.__file__)]
    installed = {*site.getsitepackages(), site.getusersitepackages()}
    extra = [r for r in dict.fromkeys(roots) if r not in installed]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*extra, env.get("PYTHONPATH")) if p)
    return env


def run_child(spec: Spec, w: Any, dataset: Path, check: bool, timeout: float) -> dict[str, Any]:
    """Run one child process for ``spec`` and return its result plus sampled memory."""
    with tempfile.TemporaryDirectory(prefix="zf-bench-") as tmp:
        out = Path(tmp) / "result.json"
        errf = Path(tmp) / "stderr.txt"
        cmd = [
            sys.executable,
            "-m",
            "zerofeed_bench.runner",
            "--spec",
            spec_to_json(spec),
            "--workload",
            json.dumps(w.to_dict()),
            "--dataset",
            str(dataset),
            "--out",
            str(out),
            "--scenario",
            scenario_of(w).name,
        ] + (["--check"] if check else [])
        t0 = time.perf_counter()
        with open(errf, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, env=_child_env())
            sampler = _Sampler(proc.pid, out.with_suffix(".timed"))
            sampler.start()
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
                rc = -9999
            finally:
                sampler.stop()
        wall = time.perf_counter() - t0
        tail = errf.read_text(errors="replace")[-2000:]
        if out.exists():
            res = json.loads(out.read_text())
        elif rc == -9999:
            res = {"name": spec.name, "status": "failed", "error": f"timed out after {timeout}s"}
        else:
            res = {
                "name": spec.name,
                "status": "failed",
                "error": f"process exited with code {rc} without a result: {tail[-500:]}",
            }
        if res.get("status") == "failed" and tail:
            res["stderr_tail"] = tail
        res["peak_rss_bytes"] = sampler.peak_rss
        res["peak_pss_bytes"] = sampler.peak_pss
        res["memory_samples"] = sampler.samples
        res["process_s"] = wall
        return res


def select(w: Any, against: Sequence[str] | None) -> list[Spec]:
    """Return the specs to run: zerofeed, the floors, and the ``against`` groups (all if None)."""
    sc = scenario_of(w)
    groups = set(sc.groups if against is None else against)
    always = ("zerofeed", "floor", "floor-pool", "floor-cached", "floor-fresh")
    return [s for s in sc.specs(w) if s.group in always or s.group in groups]


def throughput_key(sc: Scenario) -> str:
    """The JSON key of a row's throughput: ``images_per_s``, ``tokens_per_s``, ``windows_per_s``."""
    return f"{sc.unit}_per_s"


def _median_row(spec: Spec, w: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "group": spec.group,
        "threads": spec.threads,
        "description": spec.description,
        "copies": spec.copies,
        "runs": runs,
    }
    first = runs[0] if runs else {}
    row["check"] = first.get("check")
    failed = [r for r in runs if r.get("status") != "ok"]
    if failed:
        row["status"] = "failed"
        row["error"] = failed[0].get("error", "unknown error")
        return row
    row["status"] = "ok"
    sc = scenario_of(w)
    per_batch = sc.units_per_batch(w)
    # Batches per second of every timed epoch (or of every round's timed epochs together, for
    # scenarios of short epochs); each run says how many batches its epochs had.
    if sc.whole_rounds:
        bps = sorted(
            r["batches_per_epoch"] * len(r["epochs_s"]) / sum(r["epochs_s"])
            for r in runs
            if sum(r["epochs_s"]) > 0
        )
    else:
        bps = sorted(r["batches_per_epoch"] / t for r in runs for t in r["epochs_s"] if t > 0)
    med = statistics.median(bps)
    ups = [b * per_batch for b in bps]
    row["batches_per_s"] = med  # where the unit is batches, the dict below takes its place
    row[throughput_key(sc)] = {"median": med * per_batch, "min": ups[0], "max": ups[-1], "all": ups}
    row["output_gb_per_s"] = med * sc.out_bytes_per_batch(w) / 1e9
    firsts = [r["first_batch_s"] for r in runs if r.get("first_batch_s") is not None]
    row["first_batch_s"] = statistics.median(firsts) if firsts else None
    above = [max(0, r["peak_pss_bytes"] - r["baseline_pss_bytes"]) for r in runs]
    rss_growth = [max(0, r["peak_rss_bytes"] - r["baseline_rss_bytes"]) for r in runs]
    row["memory"] = {
        "above_dataset_bytes": max(above),
        "rss_growth_bytes": max(rss_growth),
        "peak_pss_bytes": max(r["peak_pss_bytes"] for r in runs),
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "baseline_pss_bytes": min(r["baseline_pss_bytes"] for r in runs),
    }
    stats = runs[-1].get("stats") or {}
    if "copies" in stats:
        row["copies"] = f"{stats['copies']} (measured, {stats.get('bytes_copied', '?')} bytes)"
    row["stats"] = stats
    return row


def run_bench(
    w: Any,
    against: Sequence[str] | None = None,
    repeats: int = 3,
    timeout: float = 900.0,
    progress: bool = True,
    cache: Path | None = None,
    on_event: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark and return the JSON-ready report (see :data:`SCHEMA`)."""
    t_start = time.time()
    sc = scenario_of(w)
    dataset = sc.ensure(w, cache)
    chosen = select(w, against)
    skipped, runnable = [], []
    for s in chosen:
        why = s.missing()
        if why is None and s.group == "zerofeed":
            why = _zerofeed_missing(sc.needs)
        (skipped if why else runnable).append((s, why))
    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s, _ in runnable}
    failed: set[str] = set()
    bar = _progress(repeats * len(runnable), progress)
    for r in range(repeats):
        k = r % max(1, len(runnable))
        order = runnable[k:] + runnable[:k]
        for s, _ in order:
            if s.name in failed:
                bar.update(1)
                continue
            bar.set_postfix_str(f"round {r + 1}/{repeats}: {s.name}")
            res = run_child(s, w, dataset, check=not results[s.name], timeout=timeout)
            results[s.name].append(res)
            if res.get("status") != "ok":
                failed.add(s.name)
                if on_event:
                    on_event(f"{s.name} failed: {res.get('error')}")
            bar.update(1)
    bar.close()
    rows = [_median_row(s, w, results[s.name]) for s, _ in runnable]
    rows += [
        {
            "name": s.name,
            "group": s.group,
            "status": "skipped",
            "reason": why,
            "description": s.description,
        }
        for s, why in skipped
    ]
    _ratios(rows, throughput_key(sc), sc.reference)
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": time.time() - t_start,
        "machine": machine_info(),
        "scenario": sc.name,
        "unit": sc.unit,
        "reference": sc.reference,
        "workload": {
            **w.to_dict(),
            "threads": w.threads(),
            "dataset": str(dataset),
            f"{sc.unit}_per_epoch": w.batches_per_epoch * sc.units_per_batch(w),
            "output_bytes_per_batch": sc.out_bytes_per_batch(w),
            **(
                {"output_bytes_per_image": w.out_bytes_per_image}
                if sc.name == "images"
                else {"batches_per_epoch": w.batches_per_epoch}
            ),
        },
        "repeats": repeats,
        "results": rows,
    }


def _ratios(rows: list[dict[str, Any]], key: str, reference: str | None) -> None:
    """Throughput ratios to zerofeed, to the fastest floor, and to the ``reference`` row."""
    ok = {r["name"]: r for r in rows if r.get("status") == "ok"}
    zf = ok.get("zerofeed")
    ref = ok.get(reference) if reference else None
    floors = [r for r in ok.values() if r["group"] == "floor"]
    floor = max((r[key]["median"] for r in floors), default=None)
    for r in ok.values():
        med = r[key]["median"]
        r["ratio_to_zerofeed"] = med / zf[key]["median"] if zf else None
        r["ratio_to_floor"] = med / floor if floor else None
        if reference:
            r["ratio_to_reference"] = med / ref[key]["median"] if ref else None


def _zerofeed_missing(needs: Sequence[str] = ("Loader",)) -> str | None:
    try:
        import zerofeed

        for name in needs:
            if not hasattr(zerofeed, name):
                return f"zerofeed.{name} is not available in this build"
    except ImportError as e:
        return f"zerofeed extension cannot be imported: {e}"
    return None


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="zerofeed bench", unit="run", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(child_main())

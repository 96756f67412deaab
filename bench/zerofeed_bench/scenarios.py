"""The benchmarks the runner knows: ``images`` (the reference workload, decoded arrays),
``tokens``, ``series``, ``photos`` (``zerofeed bench images``: encoded JPEG files) and ``tiny``
(tiny batches of a table: the per-batch overhead). A
:class:`Scenario` says how to make and load its data, which rows it has, how to check a row's
output against the oracle, and what its throughput unit is.

Example:
    >>> SCENARIOS["tokens"].unit, SCENARIOS["tokens"].reference
    ('tokens', 'nanogpt')

"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zerofeed_bench import (
    baselines,
    coldbench,
    imgbaselines,
    imgdata,
    seqbaselines,
    seqdata,
    tinybench,
)
from zerofeed_bench.baselines import Impl, Spec
from zerofeed_bench.data import (
    Workload,
    check_outputs,
    ensure_dataset,
    load_dataset,
    make_images,
    output_dtype,
)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One benchmark: its workload type, rows, data and oracle."""

    name: str
    workload: Any  # the workload class (from_dict, check_variant, batches_per_epoch, ...)
    specs: Callable[[Any], list[Spec]]
    groups: tuple[str, ...]
    ensure: Callable[[Any, Path | None], Path]
    load: Callable[[Path, Any], tuple[Any, Any]]  # -> (what builders get, what to keep alive)
    check: Callable[[Spec, Any], dict[str, Any]]
    first_batch: Callable[[Impl, Any, Any], str | None]  # a problem with batch 0, or None
    unit: str  # what throughput counts: "images", "tokens", "windows"
    units_per_batch: Callable[[Any], int]
    out_bytes_per_batch: Callable[[Any], int]
    reference: str | None = None  # the row every throughput is also compared with
    needs: tuple[str, ...] = ("Loader",)  # what the zerofeed rows need from the zerofeed module
    before_epoch: Callable[[], None] | None = None  # run before every timed epoch (cold cache)
    # Time each round's timed epochs as one stretch (batches / total seconds) instead of
    # epoch by epoch: epochs of a few batches, where a loader that prepares the next epoch's
    # first batches while this one ends (zerofeed) has much of a short epoch built before
    # its clock starts, so its per-epoch rates swing and their median overstates it.
    whole_rounds: bool = False

    def epoch_batches(self, impl: Impl, w: Any) -> int:
        """Batches one epoch of ``impl`` gives (an implementation may say its own)."""
        return int(getattr(impl, "batches_per_epoch", w.batches_per_epoch))


# ------------------------------------------------------------------------------ images


def _images_check(spec: Spec, w: Workload) -> dict[str, Any]:
    cw = w.check_variant()
    imgs = make_images(cw.images, cw.height, cw.width, cw.seed)
    impl = spec.build(imgs, cw, spec.threads)
    try:
        outs = [np.array(impl.to_numpy(b), copy=True) for b in impl.epoch(0)]
    finally:
        impl.close()
    return check_outputs(imgs, outs, cw)


def _images_first(impl: Impl, batch: Any, w: Workload) -> str | None:
    arr = impl.to_numpy(batch)
    if tuple(arr.shape) != w.out_shape or arr.dtype != output_dtype(w.out_dtype):
        return f"first batch is {arr.dtype}{tuple(arr.shape)}, expected {w.out_dtype}{w.out_shape}"
    return None


def _images_load(path: Path, w: Workload) -> tuple[Any, Any]:
    images = load_dataset(path, w.source)
    return images, images


IMAGES = Scenario(
    name="images",
    workload=Workload,
    specs=baselines.specs,
    groups=baselines.GROUPS,
    ensure=ensure_dataset,
    load=_images_load,
    check=_images_check,
    first_batch=_images_first,
    unit="images",
    units_per_batch=lambda w: w.batch,
    out_bytes_per_batch=lambda w: w.batch * w.out_bytes_per_image,
)


# ------------------------------------------------------------------------- sequences


def _seq_load(path: Path, w: Any) -> tuple[Any, Any]:
    # The data is mapped and made resident before the baseline, as `--source npy` does for
    # images; builders open the file themselves, the way their users do.
    return path, seqdata.map_resident(path)


def _seq_check(
    spec: Spec, w: Any, ensure: Callable[[Any, Path | None], Path], *, length: int, horizon: int, dtype: str
) -> dict[str, Any]:
    import tempfile

    cw = w.check_variant()
    with tempfile.TemporaryDirectory(prefix="zf-bench-check-") as tmp:
        path = ensure(cw, Path(tmp))
        data = np.load(path) if path.suffix == ".npy" else np.fromfile(path, np.uint16)
        impl = spec.build(path, cw, spec.threads)
        try:
            pairs = [tuple(np.array(v, copy=True) for v in impl.to_numpy(b)) for b in impl.epoch(0)]
            expected = SCENARIOS_BY_TYPE[type(w)].epoch_batches(impl, cw)
        finally:
            impl.close()
    return seqdata.check_windows(
        data,
        pairs,  # type: ignore[arg-type]
        length=length,
        horizon=horizon,
        batch=cw.batch,
        dtype=dtype,
        batches_per_epoch=expected,
        replacement=spec.group == "nanogpt",
    )


def _tokens_check(spec: Spec, w: seqdata.TokensWorkload) -> dict[str, Any]:
    cw = w.check_variant()
    return _seq_check(spec, w, seqdata.ensure_tokens, length=cw.block, horizon=0, dtype="int64")


def _series_check(spec: Spec, w: seqdata.SeriesWorkload) -> dict[str, Any]:
    cw = w.check_variant()
    return _seq_check(spec, w, seqdata.ensure_series, length=cw.length, horizon=cw.horizon, dtype="float32")


def _seq_first(shapes: Callable[[Any], Sequence[tuple[int, ...]]], dtype: str) -> Callable[..., str | None]:
    def first(impl: Impl, batch: Any, w: Any) -> str | None:
        got = [(tuple(v.shape), str(v.dtype)) for v in impl.to_numpy(batch)]
        want = [(s, dtype) for s in shapes(w)]
        return None if got == want else f"first batch is {got}, expected {want}"

    return first


TOKENS = Scenario(
    name="tokens",
    workload=seqdata.TokensWorkload,
    specs=seqbaselines.token_specs,
    groups=seqbaselines.TOKEN_GROUPS,
    ensure=seqdata.ensure_tokens,
    load=_seq_load,
    check=_tokens_check,
    first_batch=_seq_first(lambda w: [(w.batch, w.block)] * 2, "int64"),
    unit="tokens",
    units_per_batch=lambda w: w.tokens_per_batch,
    out_bytes_per_batch=lambda w: w.out_bytes_per_batch,
    reference="nanogpt",
)

SERIES = Scenario(
    name="series",
    workload=seqdata.SeriesWorkload,
    specs=seqbaselines.series_specs,
    groups=seqbaselines.SERIES_GROUPS,
    ensure=seqdata.ensure_series,
    load=_seq_load,
    check=_series_check,
    first_batch=_seq_first(
        lambda w: [(w.batch, w.length, w.features), (w.batch, w.horizon, w.features)], "float32"
    ),
    unit="windows",
    units_per_batch=lambda w: w.batch,
    out_bytes_per_batch=lambda w: w.out_bytes_per_batch,
    reference="keras",
)

# ----------------------------------------------------------------- encoded photographs


def _photos_check(spec: Spec, w: imgdata.PhotosWorkload) -> dict[str, Any]:
    import tempfile

    cw = w.check_variant()
    with tempfile.TemporaryDirectory(prefix="zf-bench-check-") as tmp:
        root = imgdata.ensure_photos(cw, Path(tmp))
        # The oracle (torch) first: importing torch after TensorFlow aborts in LLVM.
        oracle = imgdata.val_oracle(root, cw) if cw.recipe == "val" else None
        impl = spec.build(root, cw, spec.threads)
        try:
            pairs = [tuple(np.array(v, copy=True) for v in impl.to_numpy(b)) for b in impl.epoch(0)]
        finally:
            impl.close()
        if oracle is not None:
            return imgdata.check_val(oracle, pairs, cw.batch)  # type: ignore[arg-type]
        labels = np.asarray(imgdata.list_files(root)[1])
        return imgdata.check_train(labels, pairs, cw.batch, cw.crop)  # type: ignore[arg-type]


def _photos_first(impl: Impl, batch: Any, w: imgdata.PhotosWorkload) -> str | None:
    x, y = impl.to_numpy(batch)
    expected = (w.batch, 3, w.crop, w.crop)
    if tuple(x.shape) != expected or x.dtype != np.float32 or len(y) != w.batch:
        return f"first batch is {x.dtype}{tuple(x.shape)} with {len(y)} labels, expected float32{expected}"
    return None


PHOTOS = Scenario(
    name="photos",
    workload=imgdata.PhotosWorkload,
    specs=imgbaselines.photo_specs,
    groups=imgbaselines.PHOTO_GROUPS,
    ensure=imgdata.ensure_photos,
    load=lambda path, w: (path, None),  # every implementation reads the files itself
    check=_photos_check,
    first_batch=_photos_first,
    unit="images",
    units_per_batch=lambda w: w.batch,
    out_bytes_per_batch=lambda w: w.out_bytes_per_batch,
    needs=("Loader", "Images"),
    whole_rounds=True,
)

# ------------------------------------------------------------------ tiny batches

TINY = Scenario(
    name="tiny",
    workload=tinybench.TinyWorkload,
    specs=tinybench.tiny_specs,
    groups=tinybench.TINY_GROUPS,
    ensure=tinybench.ensure_tiny,
    load=tinybench.load_tiny,
    check=tinybench.tiny_check,
    first_batch=tinybench.tiny_first,
    unit="batches",
    units_per_batch=lambda w: 1,
    out_bytes_per_batch=lambda w: w.out_bytes_per_batch,
    reference="numpy",
)

# ------------------------------------------------------------------ cold page cache

COLD = Scenario(
    name="cold",
    workload=coldbench.ColdWorkload,
    specs=coldbench.cold_specs,
    groups=coldbench.GROUPS,
    ensure=coldbench.ensure_cold,
    load=lambda path, w: (path, None),  # every implementation opens the file itself
    check=coldbench.check_cold,
    first_batch=coldbench.first_batch,
    unit="images",
    units_per_batch=lambda w: w.batch,
    out_bytes_per_batch=lambda w: w.out_bytes_per_batch,
    reference="numpy-memmap",
    before_epoch=coldbench.drop_page_cache,
)

#: Every scenario by name (what the child process is told to run).
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (IMAGES, TOKENS, SERIES, PHOTOS, TINY, COLD)}
#: The scenario of a workload object.
SCENARIOS_BY_TYPE: dict[type, Scenario] = {s.workload: s for s in SCENARIOS.values()}


def scenario_of(w: Any) -> Scenario:
    """The scenario whose workload type ``w`` is.

    Example:
        >>> scenario_of(Workload()).name
        'images'

    """
    return SCENARIOS_BY_TYPE[type(w)]

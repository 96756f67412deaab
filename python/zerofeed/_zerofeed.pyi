# Type stubs of the native module (crates/zerofeed-py). Keep in step with the Rust bindings;
# `make lint` runs stubtest against the built extension.
#
# PyO3 classes cannot be subclassed unless marked `subclass`: all are @final but Op, which is
# a @disjoint_base instead (its own instance layout). A class without `__new__` here has no
# constructor at runtime ("cannot create ... instances"): Op is only a base, View comes from
# `zerofeed.view`, _Epoch from `_Pipeline.start` or `_Pipeline.start_at`, _DeviceStage from
# `_Pipeline.device_stage`.
import os
from collections.abc import Iterable, Sequence
from typing import Any, Self, final, overload

import numpy as np
from numpy.typing import DTypeLike
from typing_extensions import disjoint_base

__all__ = [
    "View",
    "_Pipeline",
    "Op",
    "RandomCrop",
    "CenterCrop",
    "RandomFlip",
    "Normalize",
    "Cast",
    "ToCHW",
    "Resize",
    "RandomResizedCrop",
    "ColorJitter",
    "Pad",
    "_Epoch",
    "_Windows",
    "_Images",
    "_TarShards",
    "_open_tar",
    "_decode",
    "_probe",
    "_panic_for_tests",
    "_register_errors",
    "_view_from_buffer",
    "_view_from_capsule",
    "_view_from_address",
    "_empty",
    "_copy_stats",
    "_numpy_arrays_available",
    "_open_npy",
    "_view_of_file",
    "_DeviceStage",
    "_cuda_available",
    "_cuda_unavailable_reason",
    "_cuda_device_count",
    "_cuda_device_name",
    "_cuda_driver_version",
    "_cuda_check_device",
    "_cuda_wait",
    "_pinned_empty",
    "_to_device",
    "__version__",
    "_TARGETS",
    "_HOST_DEVICE_TYPES",
]

__version__: str
_TARGETS: list[str]
_HOST_DEVICE_TYPES: list[int]

# -- ops (crates/zerofeed-py/src/ops.rs) -------------------------------------------------------

@disjoint_base
class Op:
    """Base class of the per-sample ops (over the core's OpSpec); only its subclasses are made."""

    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]: ...

@final
class RandomCrop(Op):
    def __new__(cls, height: int, width: int | None = None) -> Self: ...

@final
class CenterCrop(Op):
    def __new__(cls, height: int, width: int | None = None) -> Self: ...

@final
class RandomFlip(Op):
    def __new__(cls, p: float | None = None) -> Self: ...

@final
class Normalize(Op):
    def __new__(
        cls,
        mean: float | Iterable[float],
        std: float | Iterable[float],
        scale: float | None = None,
        dtype: DTypeLike | None = None,
    ) -> Self: ...

@final
class Cast(Op):
    def __new__(cls, dtype: DTypeLike) -> Self: ...

@final
class ToCHW(Op):
    def __new__(cls) -> Self: ...

@final
class Resize(Op):
    def __new__(
        cls,
        size: int | tuple[int, int] | Sequence[int],
        *,
        interpolation: str | None = None,
        antialias: bool = True,
    ) -> Self: ...

@final
class RandomResizedCrop(Op):
    def __new__(
        cls,
        size: int | tuple[int, int] | Sequence[int],
        *,
        scale: Sequence[float] | None = None,
        ratio: Sequence[float] | None = None,
        interpolation: str | None = None,
        antialias: bool = True,
    ) -> Self: ...
    def box(
        self, height: int, width: int, *, seed: int, epoch: int, index: int, position: int = 0
    ) -> tuple[int, int, int, int]: ...

@final
class ColorJitter(Op):
    def __new__(
        cls, brightness: float | None = None, contrast: float | None = None, saturation: float | None = None
    ) -> Self: ...
    def factors(
        self, *, seed: int, epoch: int, index: int, position: int = 0
    ) -> tuple[float, float, float]: ...

@final
class Pad(Op):
    def __new__(cls, padding: int | Sequence[int], *, fill: float | None = None) -> Self: ...

# -- views (view.rs, import.rs, source.rs) -------------------------------------------------

@final
class View:
    """A zero-copy N-d strided view of a buffer; see ``zerofeed.view``."""

    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def ndim(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def itemsize(self) -> int: ...
    @property
    def ptr(self) -> int: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def device(self) -> str: ...
    @property
    def is_c_contiguous(self) -> bool: ...
    @property
    def is_f_contiguous(self) -> bool: ...
    @property
    def alignment(self) -> int: ...
    @property
    def T(self) -> View: ...
    def __len__(self) -> int: ...
    def __getitem__(self, key: Any, /) -> View: ...
    # Both take the values either spread out or as one sequence, as NumPy's do.
    @overload
    def transpose(self, axes: Sequence[int], /) -> View: ...
    @overload
    def transpose(self, *axes: int) -> View: ...
    @overload
    def reshape(self, shape: Sequence[int], /) -> View: ...
    @overload
    def reshape(self, *shape: int) -> View: ...
    def copy(self, *, align: int = 64) -> View: ...
    def __dlpack__(
        self,
        *,
        stream: int | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def _legacy_capsule_for_immutable_consumer(self) -> Any: ...
    def _with_readonly(self, readonly: bool) -> View: ...
    def _plan(self, target: str, *, jax_x64: bool = False) -> dict[str, Any]: ...
    def _conversion(self, target: str, *, copy: bool | None, jax_x64: bool = False) -> str: ...

def _view_from_buffer(obj: Any, *, readonly: bool | None = None, dtype: str | None = None) -> View: ...
def _view_from_capsule(capsule: Any, producer: object = None, *, readonly: bool | None = None) -> View: ...
def _view_from_address(
    address: int,
    shape: Sequence[int],
    strides: Sequence[int] | None,
    dtype: str,
    readonly: bool,
    owner: object,
) -> View: ...
def _empty(shape: int | Sequence[int], dtype: str, *, align: int | str) -> View: ...
def _copy_stats() -> tuple[int, int]: ...
def _numpy_arrays_available() -> bool: ...
def _view_of_file(
    path: str | os.PathLike[str],
    first_offset: int,
    shape: Sequence[int],
    strides: Sequence[int],
    dtype: str,
) -> View: ...
def _open_npy(path: str | os.PathLike[str]) -> View: ...

# Takes a dict (not any Mapping) and keeps it: the first call wins, later ones are ignored.
def _panic_for_tests() -> None: ...
def _register_errors(classes: dict[str, type[Exception]]) -> None: ...

# -- the loader's engine (pipeline.rs) -------------------------------------------------------

@final
class _Epoch:
    """One epoch's batches; closing (or dropping) it stops and joins the workers."""

    def __iter__(self) -> Self: ...
    def __next__(self) -> tuple[View, ...]: ...
    def next_arrays(self) -> tuple[np.ndarray | View, ...]: ...
    def position(self) -> int: ...
    def next_epoch(self) -> bool: ...
    @property
    def epoch(self) -> int | None: ...
    def close(self) -> None: ...

@final
class _Pipeline:
    def __new__(
        cls,
        fields: Sequence[tuple[str, View, Iterable[Op]]],
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        workers: int,
        prefetch: int,
        pin: bool | str,
        rank: int,
        world_size: int,
        memory_budget: int | None,
        pin_device: int | None = None,
        normalize_on_device: bool = False,
        windows: _Windows | _Images | None = None,
        window_ops: Sequence[Iterable[Op]] | None = None,
        op_keys: Sequence[int] | None = None,
    ) -> Self: ...
    @property
    def pinned(self) -> bool: ...
    def __len__(self) -> int: ...
    def field_specs(self) -> list[tuple[str, list[int], str]]: ...
    def samples_per_epoch(self) -> int: ...
    def epoch_order(self, epoch: int) -> list[int]: ...
    def copy_stats(self) -> tuple[int, int]: ...
    def device_stage(self, device: int, prefetch: int) -> _DeviceStage: ...
    def device_field_specs(self) -> list[tuple[str, list[int], str]]: ...
    def start(self, epoch: int, first_batch: int) -> _Epoch: ...
    def start_at(self, epoch: int, consumed: int) -> _Epoch: ...
    def global_consumed(self, consumed: int, batches: int) -> int: ...
    def stats(self) -> dict[str, Any]: ...

@final
class _Windows:
    """Windows over token streams and time series (windows.rs): a source for _Pipeline."""

    def __new__(
        cls,
        series: Sequence[View],
        *,
        length: int,
        stride: int | None,
        target: str,
        horizon: int,
        boundaries: bytes,
        random_phase: bool,
        bos: int | None = None,
        sampling: str = "grid",
        positions: bool = False,
    ) -> Self: ...
    def __len__(self) -> int: ...
    def field_specs(self) -> list[tuple[str, list[int], str]]: ...
    @property
    def stride(self) -> int: ...
    def window_start(self, seed: int, epoch: int, index: int) -> tuple[int, int] | None: ...

# -- encoded images (images.rs) -----------------------------------------------------------------

@final
class _TarShards:
    """Indexed, memory-mapped WebDataset shards (images.rs)."""

    def __len__(self) -> int: ...
    def paths(self) -> list[str]: ...
    def names(self) -> list[str]: ...

def _open_tar(paths: list[str]) -> _TarShards: ...
def _decode(
    data: bytes,
    mode: str,
    region: tuple[int, int, int, int] | None,
    max_scale_denom: int,
    max_pixels: int,
    fast_upsampling: bool = False,
    huffman: str = "zerofeed",
) -> tuple[bytearray, int, int, int, int, int, int]: ...
def _probe(data: bytes) -> tuple[int, int, str]: ...

_ImageSettings = tuple[str, str, int, bool]  # mode, on_error, max_pixels, fast_decode

@final
class _Images:
    """Encoded JPEG/PNG images with optional labels (images.rs): a source for _Pipeline."""

    @staticmethod
    def folder(path: str, by_class: bool, settings: _ImageSettings) -> _Images: ...
    @staticmethod
    def files(paths: list[str], labels: list[int] | None, settings: _ImageSettings) -> _Images: ...
    @staticmethod
    def buffers(buffers: list[bytes], labels: list[int] | None, settings: _ImageSettings) -> _Images: ...
    @staticmethod
    def arrow(
        owner: Any,
        chunks: list[tuple[int, int, int, int, int, int, bool]],
        labels: list[int] | None,
        settings: _ImageSettings,
    ) -> _Images: ...
    @staticmethod
    def tar(shards: _TarShards, settings: _ImageSettings) -> _Images: ...
    def __len__(self) -> int: ...
    def decode(self, index: int) -> tuple[bytearray, int, int, int]: ...
    def label(self, index: int) -> int | None: ...
    @property
    def has_labels(self) -> bool: ...
    @property
    def classes(self) -> list[str]: ...
    def names(self) -> list[str]: ...
    def field_specs(self) -> list[tuple[str, list[int], str]]: ...

# -- CUDA (cuda.rs); every function but the first two raises DeviceError without a driver -----

def _cuda_available() -> bool: ...
def _cuda_unavailable_reason() -> str | None: ...
def _cuda_device_count() -> int: ...
def _cuda_device_name(index: int) -> str: ...
def _cuda_driver_version() -> int: ...
def _cuda_check_device(index: int) -> None: ...
def _cuda_wait(view: View) -> None: ...
def _pinned_empty(shape: int | Sequence[int], dtype: str, device: int) -> View: ...
def _to_device(view: View, device: int) -> View: ...

@final
class _DeviceStage:
    """A loader's device stage: host batches in, device batches out."""

    def submit(self, views: Sequence[View]) -> tuple[View, ...]: ...
    def drain(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...

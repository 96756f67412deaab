"""``zerofeed.Loader``: a fused, multi-threaded, deterministic and resumable input pipeline.

Rust worker threads gather samples (crop, flip, normalize, cast, layout change in one pass)
straight into recycled, aligned, optionally page-locked batch buffers; Python receives
finished batches. A batch buffer returns to the pool only when nothing references it (the
NumPy array, a framework tensor, a DLPack capsule), so a batch you keep never changes.
"""

from __future__ import annotations

import operator
import os
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from . import _zerofeed
from . import cuda as _cuda
from ._dtypes import bfloat16
from .distributed import Shard, agreed_state, check_state
from .errors import DeviceError, PipelineError
from .frameworks import require, to_jax, to_numpy, to_tensorflow, to_torch
from .images import Images
from .ops import Cast, Op
from .sequences import Windows
from .sources import open_npy
from .views import View, view

Batch = Any  # an array/tensor, or a dict of them for dict sources
_SINGLE = ""  # the field name of a single (non-dict) source


def _source_view(name: str, source: Any) -> View:
    if isinstance(source, (str, os.PathLike)):
        return open_npy(source)
    try:
        return view(source)
    except TypeError as err:
        label = f"source[{name!r}]" if name else "source"
        raise PipelineError(
            f"{label}: {err}; pass a NumPy array, a zerofeed.View or a .npy path", "source"
        ) from err


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _resolve_ops(names: Sequence[str], ops: Any) -> dict[str, Any]:
    """Assign op chains to fields; the core checks each chain (and says what is wrong)."""
    if ops is None:
        return {name: [] for name in names}
    if isinstance(ops, Mapping):
        unknown = sorted(set(ops) - set(names), key=repr)
        if unknown:
            raise PipelineError(
                f"ops names fields {unknown} that the source does not have; fields: {list(names)}",
                "ops",
            )
        return {name: ops.get(name, []) for name in names}
    if list(names) == [_SINGLE]:
        return {_SINGLE: ops}
    raise PipelineError("the source is a dict: pass ops as a dict of lists, e.g. ops={'image': [...]}", "ops")


def _op_list(chain: Any) -> list[Any]:
    """The ops of a chain for fingerprints (the core validates chains; this only lists them)."""
    try:
        return list(chain)
    except TypeError:
        return [chain]


def _as_shard(shard: Any) -> Shard:
    if shard is None:
        return Shard(0, 1)
    if isinstance(shard, Shard):
        return shard
    if isinstance(shard, tuple) and len(shard) == 2:
        return Shard(*shard)
    raise PipelineError(f"shard={shard!r} must be a zerofeed.Shard or a (rank, world_size) tuple", "shard")


def _check_world(shard: Shard, length: int, drop_last: bool) -> None:
    """Refuse a world with more ranks than samples: some ranks would read nothing (with
    ``drop_last``) or only the epoch's first samples again (padding), and a DDP job whose
    ranks run different step counts hangs at its first collective.
    """
    if shard.world_size > 1 and shard.world_size > length:
        idle = "would read no sample" if drop_last else "would read only padding (repeated samples)"
        raise PipelineError(
            f"shard: world_size={shard.world_size} is larger than the {length} samples of the "
            f"source, so {shard.world_size - length} of the ranks {idle}; run at most {length} "
            "ranks on this data, or give each rank more samples",
            "shard",
        )


@dataclass(frozen=True)
class _Config:
    """What a Loader was built with (the engine holds the same; this is for reading it back)."""

    batch_size: int
    shuffle: bool
    seed: int
    drop_last: bool
    workers: int
    prefetch: int
    pin: bool
    shard: Shard


class Loader:
    """Batches of samples from arrays or ``.npy`` files, prepared by Rust threads.

    ``source`` is a NumPy array (axis 0 indexes samples), a :class:`zerofeed.View`, a path
    to a ``.npy`` file (memory-mapped, so files larger than RAM work), or a dict of names
    to those (same length; batches are then dicts). ``ops`` is a list (single source) or a
    dict of lists per field; fields without ops are gathered as they are (labels).
    ``source`` may also be :class:`zerofeed.Images` (JPEG/PNG files, tar shards or encoded
    bytes: batches of ``"image"`` and ``"label"``, decoded in the workers; the image chain must
    fix the size, e.g. ``[RandomResizedCrop(224), ...]``), or a :class:`zerofeed.Windows`
    (token streams, time series), whose
    fields are ``"input"``/``"target"`` or one plain window. ``dtype`` casts every field
    last (``dtype="int64"`` widens uint16 tokens), as a final :class:`Cast` would.

    Iterating yields NumPy arrays; :meth:`torch`, :meth:`tensorflow`, :meth:`jax` yield
    framework tensors over the same memory (no copy). See the README for every option.

    ``transform`` is an escape hatch for what the ops do not do: a Python function called on
    each finished batch (the NumPy array, or dict of arrays) in the consumer thread; the
    arrays it returns (alone, in a dict or a tuple) are what :meth:`torch` and the other
    adapters yield. It costs what the function costs, serially, holding the GIL, on top of
    the workers' time; keep it vectorized (a NumPy expression per batch, not a loop per sample).

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> images = np.zeros((10, 32, 32, 3), np.uint8)
        >>> labels = np.arange(10)
        >>> loader = zf.Loader({"image": images, "label": labels}, batch_size=4,
        ...                    ops={"image": [zf.RandomCrop(16, 16), zf.ToCHW()]})
        >>> [b["image"].shape for b in loader]
        [(4, 3, 16, 16), (4, 3, 16, 16), (2, 3, 16, 16)]

    """

    # Internal (zerofeed.ray sets it on a subclass): the dataset index that keys each
    # sample's random ops, for a loader over a block of a larger dataset.
    _op_keys: list[int] | None = None

    def __init__(
        self,
        source: Any,
        *,
        batch_size: int,
        ops: Sequence[Op] | Mapping[str, Sequence[Op]] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        workers: int | None = None,
        prefetch: int = 2,
        pin: bool | str = "auto",
        device: str = "cpu",
        shard: Shard | tuple[int, int] | None = None,
        memory_budget: int | None = None,
        normalize_on_device: bool = False,
        dtype: str | None = None,
        transform: Callable[[Batch], Any] | None = None,
    ) -> None:
        # The device is parsed first, so that a bad one fails before any work.
        self._device_name = device
        self._device_index = _cuda.parse_device(device)
        if normalize_on_device and self._device_index is None:
            raise PipelineError("normalize_on_device=True needs device='cuda[:N]'", "normalize_on_device")
        if transform is not None and not callable(transform):
            raise PipelineError(f"transform={transform!r} must be a function of one batch", "transform")
        if transform is not None and self._device_index is not None:
            raise PipelineError(
                "transform= runs on host NumPy batches; with device='cuda' transform the tensors "
                "in your loop",
                "transform",
            )
        self._transform = transform
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise PipelineError(f"seed={seed!r} must be an integer in [0, 2**64)", "seed")
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, bool):
                raise PipelineError(f"{name}={flag!r} must be True or False", name)
        windows: Windows | Images | None = source if isinstance(source, (Windows, Images)) else None
        self._classes: list[str] | None = source.classes if isinstance(source, Images) else None
        if windows is not None:
            names = list(windows.fields)
            self._single = names == [_SINGLE]
            fields: list[tuple[str, View, Any]] = []
            self._length = len(windows)
        else:
            self._single = not isinstance(source, Mapping)
            sources = {_SINGLE: source} if self._single else dict(source)
            if not sources:
                raise PipelineError("source is an empty dict; give at least one field", "source")
            for name in sources:
                if not isinstance(name, str):
                    raise PipelineError(f"field names must be strings, got {name!r}", "source")
            views = {name: _source_view(name, value) for name, value in sources.items()}
            names = list(views)
            first = views[names[0]]
            self._length = first.shape[0] if first.ndim else 0  # 0-d: the core names the error
        chains = _resolve_ops(names, ops)
        if dtype is not None:  # widening last, after every other op (the Cast checks the dtype)
            chains = {name: [*_op_list(chain), Cast(dtype)] for name, chain in chains.items()}
        if windows is None:
            fields = [(name, views[name], chains[name]) for name in names]
        shard = _as_shard(shard)
        _check_world(shard, self._length, drop_last)
        workers = _default_workers() if workers is None else workers
        self._pipeline = _zerofeed._Pipeline(
            fields,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            workers=workers,
            prefetch=prefetch,
            pin=pin,
            rank=shard.rank,
            world_size=shard.world_size,
            memory_budget=memory_budget,
            pin_device=self._device_index,
            normalize_on_device=normalize_on_device,
            windows=None if windows is None else windows._inner,
            window_ops=None if windows is None else [chains[name] for name in names],
            op_keys=self._op_keys,
        )
        self._config = _Config(
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            workers=workers,
            prefetch=prefetch,
            pin=self._pipeline.pinned,
            shard=shard,
        )
        # device: a copy stream, a device pool and (maybe) the normalize kernel
        self._device: _cuda.DeviceFeed | None = None
        if self._device_index is not None:
            self._device = _cuda.DeviceFeed(self._pipeline, self._device_index, prefetch)
        # Windows with the same count but another length or grid would resume wrongly.
        self._windows_fingerprint = None if windows is None else repr(windows)
        self._epoch = 0
        self._resume_batch = 0
        # Set by load_state_dict for a state of another shard: the next pass starts at this
        # global position of the epoch instead of at a batch (elastic resume).
        self._resume_consumed: int | None = None
        self._active: weakref.ref[_BatchIterator] | None = None
        # The run of the last epoch read to its end: its workers are already preparing the
        # next epoch, which the next iteration takes over when it is that epoch from batch 0.
        self._finished: _zerofeed._Epoch | None = None
        self._ops_fingerprint = {name: [repr(op) for op in _op_list(chain)] for name, chain in chains.items()}
        self._warned_pin = False
        self._names = [name for name, _, _ in self._pipeline.field_specs()]

    # -- configuration (read-only: the engine was built with these) -------------------
    @property
    def classes(self) -> list[str] | None:
        """Class names in label order for a :class:`zerofeed.Images` folder source with
        ``labels="folders"`` (else None).
        """
        return self._classes or None

    @property
    def batch_size(self) -> int:
        """Samples per batch."""
        return self._config.batch_size

    @property
    def shuffle(self) -> bool:
        """Whether each epoch is shuffled."""
        return self._config.shuffle

    @property
    def seed(self) -> int:
        """The seed of the order and of every random op."""
        return self._config.seed

    @property
    def drop_last(self) -> bool:
        """Whether the last partial batch (and uneven shard tails) are dropped."""
        return self._config.drop_last

    @property
    def workers(self) -> int:
        """Worker threads."""
        return self._config.workers

    @property
    def prefetch(self) -> int:
        """Batches prepared ahead of the consumer, beyond one per worker."""
        return self._config.prefetch

    @property
    def pin(self) -> bool:
        """Whether batch buffers are page-locked (``pin="auto"``: only for CUDA loaders)."""
        return self._config.pin

    @property
    def shard(self) -> Shard:
        """This process's share: rank and world size."""
        return self._config.shard

    @property
    def device(self) -> str:
        """Where batches arrive: ``"cpu"`` or ``"cuda:N"``."""
        return self._device_name

    # -- size and order -------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        return len(self._pipeline)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration begins: each ``iter()`` begins the epoch after the last
        one begun (finished or not), unless :meth:`set_epoch` or :meth:`load_state_dict` chose.
        """
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the next iteration (its shuffle and random ops).

        Epochs also advance by themselves: each ``iter()`` begins the next one. Calling this is
        only needed to mirror ``DistributedSampler.set_epoch`` or to replay an epoch; it stops
        a running iterator (which then raises if used).

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> loader = zf.Loader(np.arange(8), batch_size=4, shuffle=True)
            >>> loader.set_epoch(3); loader.epoch
            3

        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**63:
            raise PipelineError(f"epoch={epoch!r} must be a non-negative integer", "epoch")
        self._close_active()
        self._epoch = epoch
        self._resume_batch, self._resume_consumed = 0, None

    def element_spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Per field: the shape of one output sample and its dtype.

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> zf.Loader(np.zeros((4, 8, 8, 3), np.uint8), batch_size=2,
            ...           ops=[zf.ToCHW()]).element_spec()
            {'': ((3, 8, 8), 'uint8')}

        """
        specs = list(self._pipeline.field_specs())
        if self._device is not None:  # device: what arrives on the GPU
            specs = list(self._pipeline.device_field_specs())
        return {name: (tuple(shape), dtype) for name, shape, dtype in specs}

    # -- resumption ------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "length": self._length,
            "rank": self.shard.rank,
            "world_size": self.shard.world_size,
            "ops": self._ops_fingerprint,
        } | ({} if self._windows_fingerprint is None else {"windows": self._windows_fingerprint})

    def _position(self) -> tuple[int, int, int]:
        """(epoch, batch, global samples consumed) where the running iterator is, or where
        the next one starts.
        """
        active = self._active_iterator()
        if active is not None:
            return active.epoch, active.position, active.samples_consumed
        consumed = self._resume_consumed
        if consumed is None:
            consumed = self._pipeline.global_consumed(0, self._resume_batch)
        return self._epoch, self._resume_batch, consumed

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: restore it with :meth:`load_state_dict` to get exactly the
        remaining batches of the epoch, bit-identical, on this or any other number of ranks.

        ``samples_consumed`` is the position in the epoch's global order: with
        DistributedSampler's striping, after ``b`` batches every rank of ``world_size`` has
        read ``b * batch_size`` samples, so the job has read global positions
        ``[0, b * batch_size * world_size)`` (a short last batch counts as the rest of the
        shard). ``batch`` is this rank's batch in its current pass. The state also records the
        configuration (seed, shuffle, batch size, data length, shard, and a fingerprint of the
        op chains), which :meth:`load_state_dict` checks.

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> loader = zf.Loader(np.arange(10), batch_size=2, shuffle=True, seed=1, shard=(0, 2))
            >>> it = iter(loader); first = next(it)
            >>> state = loader.state_dict(); state["epoch"], state["batch"], state["samples_consumed"]
            (0, 1, 4)

        """
        epoch, batch, consumed = self._position()
        return {"epoch": epoch, "batch": batch, "samples_consumed": consumed, **self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Continue from a :meth:`state_dict`: the next iteration starts where it was saved.

        The state may come from a job with another number of ranks (and another batch size):
        each rank of the new job loads the same saved position, and together they read exactly
        the samples of the epoch that the old job had not read, each once (``drop_last`` and
        padding rules: docs/scaling.md); later epochs are those of the new job. Pass the list
        of every rank's state to have them checked for agreement (PipelineError naming the
        ranks that differ). Every key is checked: the loader must be configured like the one
        that saved the state (seed, shuffle, data length, op chains) and the position must be
        inside an epoch; otherwise PipelineError (``argument == "state"``) says which key.

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> a = zf.Loader(np.arange(10), batch_size=2, shuffle=True, seed=1)
            >>> it = iter(a); _ = next(it); state = a.state_dict()
            >>> b = zf.Loader(np.arange(10), batch_size=2, shuffle=True, seed=1)
            >>> b.load_state_dict(state)
            >>> [x.tolist() for x in b] == [x.tolist() for x in it]
            True

        """
        saved: Any = agreed_state(state) if isinstance(state, list | tuple) else state
        fingerprint = self._fingerprint()
        epoch, batch, consumed = check_state(saved, fingerprint)
        same_pass = all(saved[key] == fingerprint[key] for key in ("world_size", "batch_size"))
        self._close_active()
        self._epoch = epoch
        if same_pass and consumed == self._pipeline.global_consumed(0, batch):
            # The same world at a batch of a regular pass: resume by batch, as saved.
            self._resume_batch, self._resume_consumed = batch, None
        else:
            self._resume_batch, self._resume_consumed = 0, consumed

    # -- iteration -------------------------------------------------------------------
    def _active_iterator(self) -> _BatchIterator | None:
        active = self._active() if self._active is not None else None
        return active if active is not None and not active._done else None

    def _close_active(self) -> None:
        active = self._active_iterator()
        if active is not None:
            active._supersede()
        self._active = None

    def _iterate(self, convert: Callable[[View], Any], target: str = "view") -> _BatchIterator:
        # A new iterator supersedes the running one; it begins where the loader says
        # (set_epoch / load_state_dict), else the epoch after the last one begun, so that
        # breaking out of an epoch never replays it.
        self._close_active()
        chained = self._take_finished(self._epoch, self._resume_batch, self._resume_consumed)
        if self._device is not None:  # device: batches are device views -> framework tensors
            from functools import partial

            from .cuda import to_framework

            convert = partial(to_framework, target=target)

        iterator = _BatchIterator(
            self, convert, self._epoch, self._resume_batch, self._resume_consumed, chained
        )
        self._epoch, self._resume_batch, self._resume_consumed = self._epoch + 1, 0, None
        # A weak reference: an iterator the user drops stops its workers at once (no cycle).
        self._active = weakref.ref(iterator)
        return iterator

    def _take_finished(self, epoch: int, batch: int, consumed: int | None) -> _zerofeed._Epoch | None:
        """The finished run, moved on to ``epoch``, when the pass about to begin is that
        epoch from its start on a host loader; otherwise it is stopped and ``None``.
        """
        finished, self._finished = self._finished, None
        if finished is None:
            return None
        if (
            self._device is None
            and batch == 0
            and consumed is None
            and finished.epoch is not None
            and finished.epoch + 1 == epoch
            and finished.next_epoch()
        ):
            return finished
        finished.close()
        return None

    def __iter__(self) -> Iterator[Batch]:
        """Yield NumPy batches (arrays, or dicts of arrays for dict sources); on a CUDA
        loader, device :class:`View` batches (DLPack-ready).
        """
        return self._iterate(to_numpy)

    def numpy(self) -> Iterator[Batch]:
        """Yield NumPy batches; the same as iterating the loader (host loaders only)."""
        if self._device is not None:
            raise DeviceError(f"numpy() on a {self.device} loader: use torch(), cupy() or jax()", "device")
        return self._iterate(to_numpy)

    def torch(self) -> Iterator[Batch]:
        """Yield ``torch.Tensor`` batches over the batch buffers (no copy; on the GPU for CUDA loaders)."""
        return self._iterate(to_torch, "torch")

    def tensorflow(self) -> Iterator[Batch]:
        """Yield ``tf.Tensor`` batches over the batch buffers (aligned, so no copy)."""
        return self._iterate(to_tensorflow, "tensorflow")

    def jax(self, sharding: Any = None) -> Iterator[Batch]:
        """Yield ``jax.Array`` batches over the batch buffers (aligned, so no copy).

        With ``sharding`` (a ``jax.sharding.Sharding``, or a dict of them per field), a job of
        several JAX processes (``jax.distributed.initialize``) gets *global* arrays: each
        process's batch is its addressable part, assembled with
        ``jax.make_array_from_process_local_data`` (at most one copy, onto the devices). Build each
        process's loader with ``shard=zf.Shard.from_env()``; the global batch is then the
        processes' batches in process order. docs/scaling.md has the recipe.

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> import jax  # doctest: +SKIP
            >>> mesh = jax.make_mesh((jax.device_count(),), ("batch",))  # doctest: +SKIP
            >>> rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))  # doctest: +SKIP
            >>> loader = zf.Loader(np.zeros((8, 3), np.float32), batch_size=4, shard=zf.Shard.from_env())
            >>> [b.shape for b in loader.jax(sharding=rows)]  # doctest: +SKIP
            [(4, 3), (4, 3)]

        """
        if sharding is not None:
            from .adapters import jax_global_batches

            return jax_global_batches(self, sharding)
        return self._iterate(to_jax, "jax")

    def cupy(self) -> Iterator[Batch]:
        """Yield ``cupy.ndarray`` batches on the GPU (CUDA loaders only; no device copy)."""
        if self._device is None:
            raise DeviceError("cupy() needs a CUDA loader: pass device='cuda:0'", "device")
        return self._iterate(to_numpy, "cupy")

    def tf_dataset(self) -> Any:
        """A ``tf.data.Dataset`` of this loader's batches with a correct ``element_spec``.

        Each pass over the dataset is one epoch. tf.data's Python-generator boundary
        copies each batch once into a tensor it owns (measured: see README); use
        :meth:`tensorflow` in a custom loop to avoid that copy.
        """
        from .adapters import tf_dataset

        self._no_transform("tf_dataset()")
        return tf_dataset(self)

    def keras(self, x: str | None = None, y: str | None = None) -> Any:
        """A Keras 3 ``PyDataset`` for ``model.fit``: batches ``(batch[x], batch[y])``.

        With a single source, batches are inputs only. Tensors are made for the active Keras
        backend without a copy.
        """
        from .adapters import keras_dataset

        self._no_transform("keras()")
        return keras_dataset(self, x, y)

    def _no_transform(self, what: str) -> None:
        # Their element_spec is the engine's; a transform could change every shape.
        if self._transform is not None:
            raise PipelineError(
                f"{what} declares the engine's shapes, which transform= may change; "
                "iterate loader.tensorflow() instead",
                "transform",
            )

    def _batch_maker(self, convert: Callable[[View], Any]) -> tuple[Callable[[tuple[Any, ...]], Batch], bool]:
        """The per-batch conversion of ``convert``'s target, and whether it takes the NumPy
        arrays of ``_Epoch.next_arrays`` (True) or views. For NumPy and PyTorch on the host,
        each field's export is decided here once (batch buffers are aligned, contiguous and
        writable, so both always share them), which keeps the tax per batch to a few
        microseconds; every other target decides per view, as ``convert`` does.
        """
        if self._transform is not None or self._device is not None:
            return (lambda views: self._views_to_batch(views, convert)), False
        spec = list(self.element_spec().values())
        dtypes = [dtype for _shape, dtype in spec]
        names = self._names
        # NumPy 1 allows 32 dimensions: a batch (the sample's and one more) must fit.
        fits = all(len(shape) < 32 for shape, _dtype in spec)
        if "bfloat16" not in dtypes and fits and _zerofeed._numpy_arrays_available():
            # The core makes each field's array over its buffer (NumPy's C API, the view as
            # base): 0.3 us a field less than np.asarray(view) through the buffer protocol.
            if convert is to_numpy:
                if self._single:
                    return operator.itemgetter(0), True
                return (lambda arrays: dict(zip(names, arrays, strict=True))), True
            if convert is to_torch:
                # torch.from_numpy: the same shared memory as DLPack, at half its cost per
                # call (measured 1.1 us against 2.1 us).
                from_numpy = require("torch").from_numpy
                if self._single:
                    return (lambda arrays: from_numpy(arrays[0])), True
                return (lambda arrays: dict(zip(names, map(from_numpy, arrays), strict=True))), True
        per_field: list[Callable[[Any], Any]] = []
        for dtype in dtypes:
            if convert is to_numpy and dtype == "bfloat16":
                per_field.append(partial(_bfloat16_array, bfloat16()))
            elif convert is to_numpy:
                per_field.append(np.asarray)
            elif convert is to_torch and dtype != "bfloat16":
                per_field.append(partial(_torch_over_numpy, require("torch").from_numpy))
            else:
                return (lambda views: self._views_to_batch(views, convert)), False
        if self._single:
            one = per_field[0]
            return (lambda views: one(views[0])), False
        # map(call, ...) in C: 0.8 us a batch less than a comprehension for two fields; the
        # core hands out exactly one view per field.
        return (lambda views: dict(zip(names, map(operator.call, per_field, views), strict=True))), False

    def _views_to_batch(self, views: tuple[View, ...], convert: Callable[[View], Any]) -> Batch:
        # Batch buffers are aligned and contiguous, so conversions should never copy; if one
        # does (a framework changed its rules), the core counts it for this loader.
        if self._transform is not None:
            return self._transformed(views, convert)
        if self._single:
            return convert(views[0])
        return {name: convert(v) for name, v in zip(self._names, views, strict=True)}

    def _transformed(self, views: tuple[View, ...], convert: Callable[[Any], Any]) -> Batch:
        """``transform`` on the NumPy batch, then each array it returns to the framework."""
        assert self._transform is not None
        arrays = [to_numpy(v) for v in views]
        batch: Batch = arrays[0] if self._single else dict(zip(self._names, arrays, strict=True))
        result = self._transform(batch)

        def out(value: Any) -> Any:
            return convert(value) if isinstance(value, np.ndarray) else value

        if isinstance(result, Mapping):
            return {key: out(value) for key, value in result.items()}
        if isinstance(result, tuple):
            return tuple(out(value) for value in result)
        return out(result)

    def _check_pinning(self) -> None:
        if self._warned_pin or not self.pin:
            return
        error = self._pipeline.stats()["pin_error"]
        if error:
            self._warned_pin = True
            warnings.warn(
                f"zerofeed: pin=True but batch buffers could not be page-locked ({error}); "
                "using unlocked memory (see loader.stats['pin_failures'])",
                RuntimeWarning,
                stacklevel=3,
            )

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: batches, samples, bytes produced (of the batches handed out; those
        prepared ahead count once taken), copies, pinned bytes, pool buffers,
        fresh allocations, the time workers and consumer waited for each other, and (image
        sources with ``on_error="skip"``) ``skipped`` bad samples with their ``skipped_files``.

        Example:
            >>> import numpy as np, zerofeed as zf
            >>> loader = zf.Loader(np.zeros((4, 2), np.float32), batch_size=2)
            >>> _ = list(loader); loader.stats["batches"], loader.stats["copies"]
            (2, 0)

        """
        stats = dict(self._pipeline.stats())
        if self._device is not None:
            stats.update(self._device.stage.stats())
        stats["copies"] = stats.pop("conversion_copies")
        stats["bytes_copied"] = stats.pop("conversion_bytes_copied")
        return stats

    def close(self) -> None:
        """Stop the workers of the current iteration (also done by ``with`` and GC)."""
        self._close_active()
        self._take_finished(-1, -1, None)

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Loader(batches={len(self)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"workers={self.workers}, prefetch={self.prefetch}, epoch={self._epoch}, "
            f"fields={self.element_spec()})"
        )


def _bfloat16_array(dtype: np.dtype[Any], v: View) -> np.ndarray:
    """A batch view as the NumPy bfloat16 array it holds (ml_dtypes' dtype)."""
    return np.asarray(v).view(dtype)


def _torch_over_numpy(from_numpy: Callable[[np.ndarray], Any], v: View) -> Any:
    """A batch view as a ``torch.Tensor`` over the same memory, through NumPy's array."""
    return from_numpy(np.asarray(v))


class _Finished:
    """What a finished iterator keeps of the run it handed on: its final position."""

    def __init__(self, position: int) -> None:
        self._position = position

    def __next__(self) -> tuple[View, ...]:
        raise StopIteration

    def next_arrays(self) -> tuple[np.ndarray, ...]:
        raise StopIteration

    def position(self) -> int:
        return self._position

    def close(self) -> None:
        """Nothing to stop: the run belongs to the loader (or to the next pass) now."""


class _BatchIterator:
    """One pass over an epoch (or its remainder); closing it stops the workers."""

    def __init__(
        self,
        loader: Loader,
        convert: Callable[[View], Any],
        epoch: int,
        first_batch: int,
        consumed: int | None = None,
        chained: _zerofeed._Epoch | None = None,
    ) -> None:
        self._loader = loader
        self._make, self._arrays = loader._batch_maker(convert)
        self._pinned = loader.pin
        self.epoch = epoch
        self._done = True  # until the workers run
        self._superseded = False
        # The global position this pass began at: 0 for a regular pass (its batch numbers
        # count from the epoch's start), else the saved position of an elastic resume.
        self._start = 0 if consumed is None else consumed
        # Host batches, or (device loaders) the same run with each batch copied to the GPU.
        self._run: _zerofeed._Epoch | _cuda._DeviceRun | _Finished
        if chained is not None:  # the workers that read the epoch before, already ahead
            self._run = chained
        elif consumed is None:
            self._run = loader._pipeline.start(epoch, first_batch)
        else:
            self._run = loader._pipeline.start_at(epoch, consumed)
        if loader._device is not None:  # device: host batches -> device batches, in flight
            self._run = loader._device.wrap(self._run)
        self._done = False

    @property
    def position(self) -> int:
        return int(self._run.position())

    @property
    def samples_consumed(self) -> int:
        """Global positions of the epoch read by the whole job once every rank is here."""
        return int(self._loader._pipeline.global_consumed(self._start, self.position))

    def __iter__(self) -> _BatchIterator:
        return self

    def __next__(self) -> Batch:
        if self._superseded:
            raise PipelineError(
                f"this iterator of epoch {self.epoch} was superseded: a newer iter(loader), "
                "set_epoch() or load_state_dict() started another pass and stopped this one; "
                "iterate one pass at a time (zip(loader, loader) cannot work)",
                "iterator",
            )
        if self._done:
            raise StopIteration
        try:
            views = self._run.next_arrays() if self._arrays else next(self._run)
        except StopIteration:
            self._done = True
            if isinstance(self._run, _zerofeed._Epoch):  # host runs chain into the next epoch
                # Handed to the loader and let go of here: the next pass may own it, so this
                # finished iterator's close() or position must never reach it.
                self._loader._finished, self._run = self._run, _Finished(self._run.position())
            raise
        if self._pinned:
            self._loader._check_pinning()
        return self._make(views)

    def _supersede(self) -> None:
        self._superseded = True
        self.close()

    def close(self) -> None:
        """Stop the workers now; the iterator yields nothing more."""
        self._done = True
        self._run.close()

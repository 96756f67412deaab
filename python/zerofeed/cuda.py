"""``zerofeed.cuda``: the GPU path, with CUDA found at run time (``libcuda.so.1``).

Nothing here needs a CUDA toolkit, and importing it never fails: without a driver,
:func:`available` is False and asking for a CUDA device raises :class:`DeviceError`
(a ``ValueError``) that says why.

- :func:`available`, :func:`device_count`, :func:`device_name`: what this machine has.
- :func:`pinned_empty`: a NumPy array in pinned (page-locked, not write-combined) memory.
- :func:`to_device`: a one-off host-to-device copy; pageable sources go through a ring
  of pinned staging chunks (chunk k+1 is filled while chunk k is on the bus).
- ``Loader(..., device="cuda:0")``: batches are copied on a dedicated stream from
  CUDA-registered pool buffers and arrive as device tensors through DLPack; with
  ``normalize_on_device=True`` the uint8 crop crosses the bus and one kernel normalizes,
  casts and transposes it on the GPU.

Example:
    >>> import zerofeed.cuda as zc
    >>> isinstance(zc.available(), bool)
    True
    >>> zc.parse_device("cpu") is None
    True

"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _zerofeed
from ._dtypes import bfloat16
from .errors import DeviceError
from .frameworks import require
from .views import View, view


def available() -> bool:
    """True when a CUDA driver loads and initialises.

    Example:
        >>> import zerofeed.cuda as zc
        >>> zc.available() in (True, False)
        True

    """
    return bool(_zerofeed._cuda_available())


def unavailable_reason() -> str | None:
    """Why CUDA is unavailable (``None`` when it is available).

    Example:
        >>> import zerofeed.cuda as zc
        >>> zc.unavailable_reason() is None or zc.unavailable_reason().startswith("no CUDA")
        True

    """
    return _zerofeed._cuda_unavailable_reason()


def device_count() -> int:
    """The number of visible CUDA devices; 0 where there is no driver.

    Example:
        >>> import zerofeed.cuda as zc
        >>> zc.device_count() >= 0
        True

    """
    if not available():
        return 0
    return int(_zerofeed._cuda_device_count())


def device_name(index: int = 0) -> str:
    """The name of CUDA device ``index``; DeviceError without a driver or for a bad index.

    Example:
        >>> import zerofeed.cuda as zc
        >>> zc.device_name(0) if zc.available() else "no GPU"  # doctest: +SKIP
        'NVIDIA H100 80GB HBM3'

    """
    return str(_zerofeed._cuda_device_name(int(index)))


def parse_device(device: str) -> int | None:
    """``"cpu"`` -> None; ``"cuda"`` / ``"cuda:N"`` -> N after checking the device exists.

    Raises DeviceError (``argument == "device"``) for anything else, without a CUDA driver,
    or for an index this machine does not have.

    Example:
        >>> import zerofeed as zf, zerofeed.cuda as zc
        >>> zc.parse_device("cpu") is None
        True
        >>> try:
        ...     zc.parse_device("tpu")
        ... except zf.DeviceError as err:
        ...     print(err.argument)
        device

    """
    if not isinstance(device, str):
        raise DeviceError(f"device={device!r} must be a string like 'cpu' or 'cuda:0'", "device")
    if device == "cpu":
        return None
    name, _, index = device.partition(":")
    if name != "cuda" or (index and not index.isdigit()):
        raise DeviceError(f"device={device!r} is not understood; use 'cpu', 'cuda' or 'cuda:N'", "device")
    number = int(index) if index else 0
    if not available():
        raise DeviceError(f"device={device!r}: {unavailable_reason()}", "device")
    _zerofeed._cuda_check_device(number)
    return number


def _cuda_index(device: str) -> int:
    number = parse_device(device)
    if number is None:
        raise DeviceError(f"device={device!r}: this needs a CUDA device such as 'cuda:0'", "device")
    return number


def pinned_empty(shape: int | Sequence[int], dtype: Any = "float32", device: str = "cuda:0") -> np.ndarray:
    """A NumPy array over pinned (page-locked, portable, not write-combined) host memory.

    Copies from it to the GPU are asynchronous and run at full bus speed. The memory is
    checked against the available RAM first and freed with the array.

    Example:
        >>> import zerofeed as zf
        >>> a = zf.cuda.pinned_empty((1024, 3), "uint8")  # doctest: +SKIP
        >>> a.shape, a.dtype  # doctest: +SKIP
        ((1024, 3), dtype('uint8'))

    """
    name = "bfloat16" if str(dtype) == "bfloat16" else np.dtype(dtype).name
    v = _zerofeed._pinned_empty(shape, name, _cuda_index(device))
    array = np.asarray(v)
    return array.view(bfloat16()) if name == "bfloat16" else array


def to_device(obj: Any, device: str = "cuda:0") -> View:
    """Copy a host array (NumPy, View, anything zerofeed can view) to a CUDA device.

    Pinned sources (:func:`pinned_empty`) are copied directly; pageable ones go through
    pinned staging chunks in a pipeline; strided views are gathered row by row into the
    chunks (no extra full copy). Returns a device :class:`View` that ``torch.from_dlpack``,
    ``cupy.from_dlpack`` and ``jax.dlpack.from_dlpack`` take without a copy; it orders
    their stream after the copy (DLPack stream rules), nobody synchronizes the device.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> d = zf.cuda.to_device(np.arange(6.0), "cuda:0")  # doctest: +SKIP
        >>> d.device, d.shape  # doctest: +SKIP
        ('cuda:0', (6,))

    """
    return _zerofeed._to_device(view(obj), _cuda_index(device))


# -- the Loader's device stage -------------------------------------------------------------


class DeviceFeed:
    """Turns a loader's host batches into device batches, ``prefetch`` copies in flight.

    The core decides everything (which ops run on the GPU, the kernel's coefficients, the
    device pool's budget); this only keeps the queue of copies in flight.
    """

    def __init__(self, pipeline: _zerofeed._Pipeline, device: int, prefetch: int) -> None:
        self.device = device
        self.prefetch = max(1, prefetch)
        self.stage = pipeline.device_stage(device, self.prefetch)

    def wrap(self, run: _zerofeed._Epoch) -> _DeviceRun:
        """A run whose ``__next__`` yields device views."""
        return _DeviceRun(run, self.stage, self.prefetch)


class _DeviceRun:
    def __init__(self, run: _zerofeed._Epoch, stage: _zerofeed._DeviceStage, prefetch: int) -> None:
        self._run = run
        self._stage = stage
        self._prefetch = prefetch
        self._queue: deque[tuple[View, ...]] = deque()
        self._exhausted = False

    def __iter__(self) -> _DeviceRun:
        return self

    def _fill(self) -> None:
        while not self._exhausted and len(self._queue) < self._prefetch:
            try:
                host = next(self._run)
            except StopIteration:
                self._exhausted = True
                return
            self._queue.append(self._stage.submit(list(host)))
            del host  # the stage holds the host buffers until their copy's event

    def __next__(self) -> tuple[View, ...]:
        self._fill()
        if not self._queue:
            raise StopIteration
        batch = self._queue.popleft()
        self._fill()  # the next copies overlap the consumer's work on this batch
        return batch

    def next_arrays(self) -> tuple[View, ...]:
        """Device batches have no NumPy arrays: the views themselves (the Loader asks for
        host arrays only on host runs).
        """
        return self.__next__()

    def position(self) -> int:
        return int(self._run.position()) - len(self._queue)

    def close(self) -> None:
        self._queue.clear()
        self._run.close()
        self._stage.drain()


def to_framework(v: View, target: str) -> Any:
    """A framework tensor over a device view (no copy), ordered after its copy.

    ``target`` is ``"torch"``, ``"cupy"``, ``"jax"``, ``"tensorflow"`` or ``"view"``.
    Torch, CuPy and JAX pass their stream to ``__dlpack__``, which makes it wait on the
    copy's event; TensorFlow takes no stream, so the host waits for this batch's event.
    """
    if target == "view":
        return v
    if target == "torch":
        return require("torch").from_dlpack(v)
    if target == "cupy":
        return require("cupy").from_dlpack(v)
    if target == "jax":
        require("jax")
        import jax.dlpack

        return jax.dlpack.from_dlpack(v)
    if target == "tensorflow":
        tf = require("tensorflow")
        _zerofeed._cuda_wait(v)
        return tf.experimental.dlpack.from_dlpack(v.__dlpack__(stream=-1))
    raise DeviceError(f"{target!r} cannot take CUDA batches; use torch, cupy, jax or tensorflow", "target")


__all__ = [
    "available",
    "device_count",
    "device_name",
    "parse_device",
    "pinned_empty",
    "to_device",
    "unavailable_reason",
]

"""Framework-level adapters of a :class:`zerofeed.Loader`: ``tf.data``, Keras 3, and global
JAX batches of a multi-process job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._dtypes import numpy_dtype
from .errors import PipelineError
from .frameworks import require, to_jax, to_numpy, to_tensorflow, to_torch

if TYPE_CHECKING:
    from .loader import Loader


def tf_dataset(loader: Loader) -> Any:
    """A ``tf.data.Dataset`` yielding the loader's batches (see :meth:`Loader.tf_dataset`).

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> ds = zf.Loader(np.zeros((4, 3), np.float32), batch_size=2).tf_dataset()  # doctest: +SKIP
        >>> ds.element_spec  # doctest: +SKIP
        TensorSpec(shape=(None, 3), dtype=tf.float32, name=None)

    """
    tf = require("tensorflow")
    leading = loader.batch_size if loader.drop_last else None

    def spec(shape: tuple[int, ...], dtype: str) -> Any:
        return tf.TensorSpec(shape=(leading, *shape), dtype=tf.as_dtype(numpy_dtype(dtype)))

    specs = {name: spec(shape, dtype) for name, (shape, dtype) in loader.element_spec().items()}
    signature = specs[""] if loader._single else specs
    dataset = tf.data.Dataset.from_generator(loader.tensorflow, output_signature=signature)
    # A known length: Keras' fit neither warns "ran out of data" nor guesses steps.
    return dataset.apply(tf.data.experimental.assert_cardinality(len(loader)))


_CONVERTERS = {"tensorflow": to_tensorflow, "jax": to_jax, "torch": to_torch, "numpy": to_numpy}


def keras_dataset(loader: Loader, x: str | None, y: str | None) -> Any:
    """A Keras 3 ``PyDataset`` over the loader (see :meth:`Loader.keras`).

    Each Keras epoch is one pass of the loader, served in the loader's order (Keras' own
    index order is ignored: with ``fit(shuffle=True)`` it would otherwise force restarts).
    """
    keras = require("keras")
    if loader._single:
        if x is not None or y is not None:
            raise PipelineError("x/y name fields of a dict source; this source is single", "x")
    else:
        names = list(loader.element_spec())
        for argument, name in (("x", x), ("y", y)):
            if name is not None and name not in names:
                raise PipelineError(f"{argument}={name!r} is not a field; fields: {names}", argument)
        if x is None:
            raise PipelineError(f"name the input field with x=...; fields: {names}", "x")
    convert = _CONVERTERS.get(keras.backend.backend(), to_numpy)

    def pick(batch: Any) -> Any:
        if loader._single:
            return batch
        return (batch[x], batch[y]) if y is not None else batch[x]

    class ZerofeedPyDataset(keras.utils.PyDataset):  # type: ignore[misc,name-defined]
        """Serves the loader's batches in the loader's order, one pass per Keras epoch.

        Keras asks by index, shuffling the indices when ``fit(shuffle=True)`` (its default).
        The loader already shuffles samples (``shuffle=True``), so a batch's index carries no
        meaning: within an epoch every request gets the next batch of the running pass, which
        never restarts the pipeline. Requests outside an epoch (Keras peeks at a few batches
        to learn their shapes before training) get zero-filled batches of the loader's
        element spec, so the peek costs no pass over the data.
        """

        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self._iterator: Any = None
            self._in_epoch = False
            self._served = 0
            self._epochs_begun = 0
            self._state_at_begin: dict[str, Any] | None = None
            # tf.data's prefetch thread asks for items while Keras' thread begins and ends
            # epochs: one lock keeps the pass and the flags consistent.
            self._lock = threading.Lock()

        def __len__(self) -> int:
            return len(loader)

        def on_epoch_begin(self) -> None:
            with self._lock:
                self._in_epoch = True
                self._served = 0
                self._epochs_begun += 1
                self._state_at_begin = loader.state_dict()

        def __getitem__(self, index: int) -> Any:
            with self._lock:
                if not self._in_epoch:
                    return pick(_zero_batch(loader))
                if self._iterator is None:
                    self._iterator = loader._iterate(convert)
                self._served += 1
                try:
                    return pick(next(self._iterator))
                except StopIteration:
                    # More requests than batches (steps_per_epoch > len): the next pass.
                    self._iterator = loader._iterate(convert)
                    return pick(next(self._iterator))

        def on_epoch_end(self) -> None:
            with self._lock:
                if self._iterator is not None:
                    self._iterator.close()
                self._iterator = None
                self._in_epoch = False
                # The JAX and torch backends build the model by running the first epoch
                # iterator for one batch and resetting it: that peek must not use up the
                # loader's epoch (nor a position set by load_state_dict before fit).
                peek = self._epochs_begun == 1 and self._served == 1 and len(loader) > 1
                if peek and self._state_at_begin is not None:
                    loader.load_state_dict(self._state_at_begin)

    return ZerofeedPyDataset()


def _zero_batch(loader: Loader) -> Any:
    """A batch of zeros with the loader's element spec (for shape inference only)."""
    import numpy as np

    arrays = {
        name: np.zeros((loader.batch_size, *shape), numpy_dtype(dtype))
        for name, (shape, dtype) in loader.element_spec().items()
    }
    return arrays[""] if loader._single else arrays


def jax_global_batches(loader: Loader, sharding: Any) -> Iterator[Any]:
    """Global ``jax.Array`` batches of a multi-process job (see :meth:`Loader.jax`).

    Each process's batch (its shard's rows) becomes its addressable part of one global
    array through ``jax.make_array_from_process_local_data``: the global batch is the
    processes' batches stacked in process order along the sharded axis. ``sharding`` is one
    ``jax.sharding.Sharding`` for every field, or a dict of them per field.

    Example:
        >>> import numpy as np, zerofeed as zf
        >>> import jax  # doctest: +SKIP
        >>> mesh = jax.make_mesh((jax.device_count(),), ("batch",))  # doctest: +SKIP
        >>> rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))  # doctest: +SKIP
        >>> loader = zf.Loader(np.zeros((8, 3), np.float32), batch_size=4)
        >>> next(iter(loader.jax(sharding=rows))).sharding == rows  # doctest: +SKIP
        True

    """
    jax = require("jax")
    names = list(loader.element_spec())
    if isinstance(sharding, Mapping):
        if loader._single:
            raise PipelineError("sharding: a single source takes one Sharding, not a dict", "sharding")
        missing = sorted(set(names) - set(sharding))
        unknown = sorted(set(sharding) - set(names))
        if missing or unknown:
            wrong = [f"names fields {unknown} the source lacks"] if unknown else []
            wrong += [f"lacks fields {missing}"] if missing else []
            raise PipelineError(
                f"sharding {' and '.join(wrong)}; give one Sharding per field of {names} "
                "(or one Sharding for all)",
                "sharding",
            )
        per_field = dict(sharding)
    else:
        per_field = dict.fromkeys(names, sharding)
    for name, value in per_field.items():
        if not isinstance(value, jax.sharding.Sharding):
            label = f"sharding[{name!r}]" if name else "sharding"
            raise PipelineError(
                f"{label}={value!r} is not a jax.sharding.Sharding; pass e.g. "
                'NamedSharding(jax.make_mesh((jax.device_count(),), ("batch",)), PartitionSpec("batch"))',
                "sharding",
            )
    # Host batches stay NumPy (zero-copy views of the batch buffers), so the only copy, if
    # any, is make_array_from_process_local_data's onto the devices.
    local = loader._iterate(to_numpy) if loader._device is None else loader._iterate(to_jax, "jax")
    make = jax.make_array_from_process_local_data

    def glob(batch: Any) -> Any:
        if loader._single:
            return make(per_field[""], batch)
        return {name: make(per_field[name], value) for name, value in batch.items()}

    # A generator holding the loader's iterator: dropping it stops the workers, and
    # state_dict() still reads the pass's position while it runs.
    def run() -> Iterator[Any]:
        try:
            for batch in local:
                yield glob(batch)
        finally:
            local.close()

    return run()

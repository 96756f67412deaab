"""``zf.Loader(..., transform=fn)``: a Python function on each finished NumPy batch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

import zerofeed as zf


def make(**kwargs):
    images = np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3)
    labels = np.arange(6, dtype=np.int64)
    return zf.Loader({"image": images, "label": labels}, batch_size=4, workers=1, **kwargs), images, labels


def test_transform_result_is_what_the_adapters_yield():
    torch = require("torch")
    seen = []

    def mix(batch):
        seen.append({k: v.shape for k, v in batch.items()})
        assert all(isinstance(v, np.ndarray) for v in batch.values())
        return {
            "x": batch["image"].astype(np.float32) / 255,
            "y": batch["label"] * 10,
            "n": len(batch["label"]),
        }

    loader, images, labels = make(transform=mix)
    batches = list(loader.torch())
    assert [b["n"] for b in batches] == [4, 2]
    assert isinstance(batches[0]["x"], torch.Tensor) and batches[0]["x"].dtype == torch.float32
    np.testing.assert_allclose(
        torch.cat([b["x"] for b in batches]).numpy(), images / np.float32(255), rtol=1e-6
    )
    np.testing.assert_array_equal(np.concatenate([b["y"].numpy() for b in batches]), labels * 10)
    assert seen == [{"image": (4, 4, 4, 3), "label": (4,)}, {"image": (2, 4, 4, 3), "label": (2,)}]
    # A tuple result, on the NumPy path, is a tuple of arrays.
    loader, _, _ = make(transform=lambda b: (b["image"], b["label"]))
    first = next(iter(loader))
    assert isinstance(first, tuple) and first[0].shape == (4, 4, 4, 3)


def test_transform_errors_name_the_argument():
    with pytest.raises(zf.PipelineError) as info:
        make(transform=3)
    assert info.value.argument == "transform"
    loader, _, _ = make(transform=lambda b: b)
    with pytest.raises(zf.PipelineError, match="transform") as info:
        loader.tf_dataset()
    assert info.value.argument == "transform"

    def broken(batch):
        raise ValueError("user bug")

    loader, _, _ = make(transform=broken)
    with pytest.raises(ValueError, match="user bug"):
        next(iter(loader))

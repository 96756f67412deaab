"""scikit-learn's digits for the examples: a fixed split, and its training and validation loaders."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

import zerofeed as zf

NORMALIZE = zf.Normalize(mean=[4.9], std=[6.0], scale=1.0)  # pixels are 0..16, not 0..255
TRAIN_OPS = [zf.RandomCrop(7, 7), NORMALIZE, zf.ToCHW()]
VAL_OPS = [zf.CenterCrop(7, 7), NORMALIZE, zf.ToCHW()]


def split(label_dtype: str = "int64") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """1497 training and 300 validation digits, as (8, 8, 1) uint8 images and labels."""
    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    labels = digits.target.astype(label_dtype)
    order = np.random.default_rng(0).permutation(len(images))
    train, val = order[300:], order[:300]
    return {"image": images[train], "label": labels[train]}, {"image": images[val], "label": labels[val]}


def loaders(
    label_dtype: str = "int64", shard: zf.Shard | None = None, device: str = "cpu"
) -> tuple[zf.Loader, zf.Loader]:
    """The training loader (random crops, shuffled, whole batches) and the validation one."""
    train_data, val_data = split(label_dtype)
    common = {"shard": shard, "device": device}
    train = zf.Loader(
        train_data, batch_size=64, shuffle=True, seed=0, drop_last=True, ops={"image": TRAIN_OPS}, **common
    )
    return train, zf.Loader(val_data, batch_size=100, ops={"image": VAL_OPS}, **common)

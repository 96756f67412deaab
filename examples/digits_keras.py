"""Keras 3 ``model.fit`` on scikit-learn's digits, fed by zerofeed loaders.

    python examples/digits_keras.py [--short]          # any Keras backend (KERAS_BACKEND)

The loaders' Keras adapter (``loader.keras(x, y)``) serves a training loader (random 7x7
crops, shuffled) and a validation loader (center crops) to ``fit``; each epoch prints the
training and validation loss.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from sklearn.datasets import load_digits

import zerofeed as zf

NORMALIZE = zf.Normalize(mean=[4.9], std=[6.0], scale=1.0)  # pixels are 0..16, not 0..255


def split() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """1497 training and 300 validation digits, as (8, 8, 1) uint8 images and labels."""
    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(len(images))
    train, val = order[300:], order[:300]
    return (
        {"image": images[train], "label": digits.target[train].astype(np.int32)},
        {"image": images[val], "label": digits.target[val].astype(np.int32)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few epochs (CI)")
    args = parser.parse_args()
    train_data, val_data = split()
    train = zf.Loader(
        train_data,
        batch_size=64,
        shuffle=True,
        seed=0,
        drop_last=True,
        ops={"image": [zf.RandomCrop(7, 7), NORMALIZE, zf.ToCHW()]},
    )
    val = zf.Loader(val_data, batch_size=100, ops={"image": [zf.CenterCrop(7, 7), NORMALIZE, zf.ToCHW()]})
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((1, 7, 7)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(
        train.keras(x="image", y="label"),
        validation_data=val.keras(x="image", y="label"),
        epochs=3 if args.short else 20,
        verbose=0,
    )
    for epoch, (loss, val_loss) in enumerate(
        zip(history.history["loss"], history.history["val_loss"], strict=True)
    ):
        print(f"epoch {epoch}: train loss {loss:.4f}, validation loss {val_loss:.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Keras 3 ``model.fit`` on scikit-learn's digits, fed by zerofeed loaders.

    python examples/digits_keras.py [--short]          # any Keras backend (KERAS_BACKEND)

The loaders' Keras adapter (``loader.keras(x, y)``) serves a training loader (random 7x7
crops, shuffled) and a validation loader (center crops) to ``fit``; each epoch prints the
training and validation loss.
"""

from __future__ import annotations

import argparse

import keras
from digits_data import loaders  # examples/digits_data.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few epochs (CI)")
    args = parser.parse_args()
    train, val = loaders("int32")
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

"""A tiny JAX autoencoder (flax.nnx + optax) on scikit-image's photographs cut into patches.

    python examples/patches_jax.py [--short]

Training patches come from three photographs (random 12x12 crops of 16x16 patches, random
flips), validation patches from a fourth (center crops), both through zerofeed loaders
(``loader.jax()``: batches are ``jax.Array``s over the loaders' buffers). Each epoch prints the
training and validation reconstruction loss.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from skimage import data

import zerofeed as zf

NORMALIZE = zf.Normalize(mean=[128.0] * 3, std=[64.0] * 3, scale=1.0)


def patches(*photos: np.ndarray, size: int = 16) -> np.ndarray:
    """Every whole ``size`` x ``size`` patch of the photos, as (N, size, size, 3) uint8."""
    out = []
    for photo in photos:
        h, w = photo.shape[0] // size * size, photo.shape[1] // size * size
        grid = photo[:h, :w].reshape(h // size, size, w // size, size, 3).swapaxes(1, 2)
        out.append(grid.reshape(-1, size, size, 3))
    return np.ascontiguousarray(np.concatenate(out))


class AutoEncoder(nnx.Module):
    """12x12x3 pixels -> 24 numbers -> 12x12x3 pixels."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.encode = nnx.Linear(12 * 12 * 3, 24, rngs=rngs)
        self.decode = nnx.Linear(24, 12 * 12 * 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        flat = x.reshape(x.shape[0], -1)
        return self.decode(nnx.relu(self.encode(flat))).reshape(x.shape)


def loss_of(model: AutoEncoder, x: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - x) ** 2)


@nnx.jit
def train_step(model: AutoEncoder, optimizer: nnx.Optimizer, x: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_of)(model, x)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def eval_step(model: AutoEncoder, x: jax.Array) -> jax.Array:
    return loss_of(model, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few epochs (CI)")
    args = parser.parse_args()
    train = zf.Loader(
        patches(data.astronaut(), data.coffee(), data.rocket()),
        batch_size=128,
        shuffle=True,
        seed=0,
        drop_last=True,  # one batch shape: jit compiles once
        ops=[zf.RandomCrop(12, 12), zf.RandomFlip(), NORMALIZE],
    )
    val = zf.Loader(
        patches(data.chelsea()), batch_size=128, drop_last=True, ops=[zf.CenterCrop(12, 12), NORMALIZE]
    )
    model = AutoEncoder(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    for epoch in range(3 if args.short else 30):
        losses = [float(train_step(model, optimizer, x)) for x in train.jax()]
        val_losses = [float(eval_step(model, x)) for x in val.jax()]
        print(
            f"epoch {epoch}: train loss {np.mean(losses):.4f}, validation loss {np.mean(val_losses):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

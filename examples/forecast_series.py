"""Forecasting Mauna Loa CO2 with JAX and optax, fed by ``zf.Windows(series, length, target=H)``.

The weekly CO2 series (1958-2001) ships with statsmodels. The first 80% of it trains a small
model that reads two years of weeks and forecasts the next quarter (13 weeks); the last 20%
is held out. The zerofeed Loader cuts the windows in Rust, normalizes them per feature
(``Normalize`` on the ``(length, F)`` window: here the CO2 level and the week of the year as
a second feature) and hands NumPy batches to JAX. The script asserts that the model's
held-out error beats the naive forecast (repeat the last value seen), and says by how much.

    python examples/forecast_series.py           # more epochs
    python examples/forecast_series.py --short   # CI: ~20 s, most of it importing JAX
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import statsmodels.api as sm

import zerofeed as zf

LENGTH, HORIZON = 104, 13  # two years of weeks in, one quarter out


def co2_series() -> np.ndarray:
    """``(T, 2)`` float32: the weekly CO2 level (gaps filled by interpolation), and the week's
    position in the year as a second feature."""
    data = sm.datasets.co2.load_pandas().data["co2"].interpolate().bfill()
    week = (data.index.day_of_year.to_numpy() / 365.25).astype(np.float32)
    return np.stack([data.to_numpy(np.float32), week], axis=1)


def init(key: jax.Array, features: int) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(key)
    hidden = 64
    return {
        "w1": jax.random.normal(k1, (LENGTH * features, hidden)) * 0.02,
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, HORIZON)) * 0.02,
        "skip": jnp.zeros((LENGTH * features, HORIZON)),
        "b2": jnp.zeros(HORIZON),
    }


def predict(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """The next ``HORIZON`` CO2 levels (normalized), as the last level plus a learned change."""
    flat = x.reshape(x.shape[0], -1)
    change = (
        jnp.tanh(flat @ params["w1"] + params["b1"]) @ params["w2"] + flat @ params["skip"] + params["b2"]
    )
    return x[:, -1:, 0] + change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the CI run: fewer epochs")
    args = parser.parse_args()
    epochs = 20 if args.short else 150

    series = co2_series()
    split = int(len(series) * 0.8)
    train_part, test_part = series[:split], series[split - LENGTH :]  # the test inputs may look back
    mean, std = train_part.mean(axis=0), train_part.std(axis=0)
    norm = zf.Normalize(mean.tolist(), std.tolist(), scale=1.0)  # one mean and std per feature
    ops = {"input": [norm], "target": [norm]}
    train = zf.Windows(train_part, LENGTH, stride=1, target=HORIZON)
    test = zf.Windows(test_part, LENGTH, stride=HORIZON, target=HORIZON, phase=0)
    loader = zf.Loader(train, batch_size=64, shuffle=True, seed=0, ops=ops)

    params = init(jax.random.PRNGKey(0), series.shape[1])
    optimizer = optax.adam(3e-3)
    state = optimizer.init(params)

    @jax.jit
    def step(
        params: dict[str, jax.Array], state: optax.OptState, x: jax.Array, y: jax.Array
    ) -> tuple[dict[str, jax.Array], optax.OptState, jax.Array]:
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((predict(p, x) - y[:, :, 0]) ** 2))(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    start = time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)  # a new shuffle each epoch
        for batch in loader:
            params, state, loss = step(
                params, state, jnp.asarray(batch["input"]), jnp.asarray(batch["target"])
            )
        if epoch % 5 == 4:
            print(f"epoch {epoch + 1}: train MSE {float(loss):.4f} (normalized)")

    # Held out: every quarter of the last 20%, in ppm.
    held = [b for b in zf.Loader(test, batch_size=256, ops=ops)]
    x = np.concatenate([b["input"] for b in held])
    y = np.concatenate([b["target"] for b in held])[:, :, 0] * std[0] + mean[0]
    model = np.asarray(predict(params, jnp.asarray(x))) * std[0] + mean[0]
    naive = x[:, -1:, 0] * std[0] + mean[0]
    model_mae, naive_mae = np.abs(model - y).mean(), np.abs(naive - y).mean()
    print(
        f"{epochs} epochs of {len(loader)} batches in {time.perf_counter() - start:.1f} s; "
        f"held-out {len(y)} quarters: "
        f"model MAE {model_mae:.3f} ppm, naive last-value MAE {naive_mae:.3f} ppm"
    )
    assert model_mae < naive_mae, "the model did not beat the naive forecast"
    print(f"OK: the model's held-out error is {naive_mae / model_mae:.1f}x lower than the naive forecast's")


if __name__ == "__main__":
    main()

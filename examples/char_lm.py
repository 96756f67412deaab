"""A byte-level language model in PyTorch, trained on the Python standard library's own source.

Every Python installation ships that text, so this runs anywhere: the ``.py`` files of the
standard library are read as bytes, written once as a uint16 token file (nanoGPT's ``.bin``
format), opened with ``zf.open_tokens`` and cut into next-token windows with
``zf.Windows(target="next")``. A small causal convolutional model learns to predict the next
byte; the held-out loss (the last 10% of the stream, files the model never saw) must fall
from ln(256) = 5.55 nats, what a uniform guess scores, by at least ``MARGIN`` nats.

    python examples/char_lm.py            # ~2 minutes on a laptop
    python examples/char_lm.py --short    # CI: 600 kB of text, 100 steps, ~15 s
"""

from __future__ import annotations

import argparse
import math
import os
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import zerofeed as zf

MARGIN = 2.0  # nats below ln(256) the held-out loss must reach


def stdlib_bytes(limit: int) -> np.ndarray:
    """The standard library's ``.py`` files, in a fixed order, as byte tokens (up to ``limit``)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(np.frombuffer(data, dtype=np.uint8))
        total += len(data)
        if total >= limit:
            break
    return np.concatenate(chunks)[:limit].astype(np.uint16)


class CausalByteModel(nn.Module):
    """Embedding, two causal (left-padded) convolutions, and a byte classifier."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.embed = nn.Embedding(256, width)
        self.conv1 = nn.Conv1d(width, width, kernel)
        self.conv2 = nn.Conv1d(width, width, kernel)
        self.head = nn.Linear(width, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x).transpose(1, 2)  # (batch, width, length)
        for conv in (self.conv1, self.conv2):
            h = h + torch.relu(conv(nn.functional.pad(h, (self.kernel - 1, 0))))
        return self.head(h.transpose(1, 2))  # (batch, length, 256)


def mean_loss(model: nn.Module, loader: zf.Loader) -> float:
    model.eval()
    losses = []
    with torch.no_grad():
        for batch in loader.torch():
            logits = model(batch["input"])
            losses.append(nn.functional.cross_entropy(logits.flatten(0, 1), batch["target"].flatten()).item())
    model.train()
    return float(np.mean(losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the CI run: less text, fewer steps")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tokens_wanted, steps, width = (600_000, 100, 48) if args.short else (20_000_000, 3000, 128)

    tokens = stdlib_bytes(tokens_wanted)
    split = int(len(tokens) * 0.9)
    with tempfile.TemporaryDirectory() as tmp:
        tokens[:split].tofile(os.path.join(tmp, "train.bin"))
        tokens[split:].tofile(os.path.join(tmp, "val.bin"))
        train = zf.Windows(zf.open_tokens(os.path.join(tmp, "train.bin"), dtype="uint16"), 128, target="next")
        val = zf.Windows(
            zf.open_tokens(os.path.join(tmp, "val.bin"), dtype="uint16"), 128, target="next", phase=0
        )
        loader = zf.Loader(
            train, batch_size=32, shuffle=True, seed=0, dtype="int64", shard=zf.Shard.from_env()
        )
        val_loader = zf.Loader(val, batch_size=64, dtype="int64")

        model = CausalByteModel(width, kernel=8)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        start = time.perf_counter()
        before = mean_loss(model, val_loader)
        step, epoch = 0, 0
        while step < steps:
            loader.set_epoch(epoch)
            for batch in loader.torch():
                x, y = batch["input"], batch["target"]  # (32, 128) int64; y is x shifted by one
                loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step % 50 == 0:
                    print(f"step {step}: train loss {loss.item():.3f}")
                if step == steps:
                    break
            epoch += 1
        after = mean_loss(model, val_loader)
    uniform = math.log(256)
    print(
        f"{len(tokens):,} byte tokens, {step} steps in {time.perf_counter() - start:.1f} s: held-out loss "
        f"{before:.3f} -> {after:.3f} nats (uniform {uniform:.3f}; must reach {uniform - MARGIN:.3f})"
    )
    assert after < uniform - MARGIN, f"held-out loss {after:.3f} did not fall {MARGIN} nats below ln(256)"
    print(f"OK: held-out loss fell {uniform - after:.2f} nats below ln(256)")


if __name__ == "__main__":
    main()

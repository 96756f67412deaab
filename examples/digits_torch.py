"""Train a small PyTorch classifier on scikit-learn's digits, fed by zerofeed loaders.

One process, or DDP under any launcher (each rank reads its shard, ``zf.Shard.from_env()``)::

    python examples/digits_torch.py [--short] [--device cuda]
    torchrun --nproc_per_node=2 examples/digits_torch.py --short    # gloo (nccl with --device cuda)

A training loader (random 7x7 crops, shuffled) and a validation loader (center crops, in
order) over a fixed split. Every epoch prints the training and validation loss (validation
averaged over all ranks) and how long each step waited for its batch.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from digits_data import loaders  # examples/digits_data.py
from torch.nn.parallel import DistributedDataParallel

import zerofeed as zf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few epochs (CI)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = args.device
    if distributed:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if device.startswith("cuda") else "cpu"
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    shard = zf.Shard.from_env()
    train, val = loaders(shard=shard, device=device)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(49, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    ).to(device)
    model = DistributedDataParallel(net) if distributed else net
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(3 if args.short else 20):
        losses, waited = [], 0.0
        ready = time.perf_counter()
        for batch in train.torch():
            waited += time.perf_counter() - ready
            loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())  # (synchronises the device, so the wait is the loader's)
            ready = time.perf_counter()
        total = torch.zeros(2, dtype=torch.float64, device=device)
        with torch.no_grad():
            for batch in val.torch():
                logits = net(batch["image"])
                total[0] += torch.nn.functional.cross_entropy(logits, batch["label"], reduction="sum")
                total[1] += len(batch["label"])
        if distributed:
            dist.all_reduce(total)
        if shard.rank == 0:
            print(
                f"epoch {epoch}: train loss {np.mean(losses):.4f}, validation loss "
                f"{(total[0] / total[1]).item():.4f}, wait per step {1e3 * waited / len(losses):.3f} ms",
                flush=True,
            )
    train.close()
    val.close()
    if distributed:
        # A clean shutdown: all ranks are done with the group before any tears it down, and
        # the DDP reducer (which holds the group) goes before the group does.
        dist.barrier()
        del model, opt
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

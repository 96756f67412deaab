"""Real processes: ``torchrun --standalone --nproc_per_node=2``, DDP over gloo, fed by zerofeed.

Two ranks train a small model on bytes of the standard library's own source files through
``zf.Loader(shard=zf.Shard.from_env())``, write the sample ids they saw, stop in epoch 1 at
step ``STOP`` and save their states; the job then resumes on 1 rank (another ``torchrun``) and on
3 ranks (three loaders in this process). Every process talks over the loopback interface only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import exec_namespace, loopback_env, require

import zerofeed as zf

N_SAMPLES, BATCH, STOP = 1000, 16, 7

# Shared by the training script and the test: the same samples, the same loader.
DATA = f"""
import os, sysconfig
import numpy as np
import zerofeed as zf

N_SAMPLES, BATCH = {N_SAMPLES}, {BATCH}

def dataset():
    # Real data: 9-byte windows of stdlib sources; from 8 bytes, guess whether the 9th is blank.
    stdlib = sysconfig.get_paths()["stdlib"]
    raw = b"".join(open(os.path.join(stdlib, name), "rb").read()
                   for name in ("os.py", "textwrap.py", "string.py", "bisect.py", "heapq.py"))
    windows = np.lib.stride_tricks.sliding_window_view(np.frombuffer(raw, np.uint8), 9)[::7]
    windows = windows[:N_SAMPLES]
    assert len(windows) == N_SAMPLES, len(windows)
    x = windows[:, :8].astype(np.int64)
    y = np.isin(windows[:, 8:], np.frombuffer(b" \\n", np.uint8)).astype(np.float32)
    return {{"x": x, "y": y, "id": np.arange(N_SAMPLES)}}

def loader(shard):
    return zf.Loader(dataset(), batch_size=BATCH, shuffle=True, seed=5, shard=shard, workers=1)
"""

SCRIPT = """
import gc, json, os, sys
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

out, mode, stop = sys.argv[1], sys.argv[2], int(sys.argv[3])
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
shard = zf.Shard.from_env()
data = loader(shard)
net = torch.nn.Sequential(torch.nn.Embedding(256, 4), torch.nn.Flatten(), torch.nn.Linear(32, 16),
                          torch.nn.ReLU(), torch.nn.Linear(16, 1))
if mode == "resume":
    net.load_state_dict(torch.load(os.path.join(out, "model.pt")))
    data.load_state_dict([json.load(open(os.path.join(out, f"state{r}.json"))) for r in range(2)])
model = DistributedDataParallel(net)
opt = torch.optim.Adam(model.parameters(), lr=0.02)
seen, losses = {}, []
everything = {k: torch.from_numpy(v) for k, v in dataset().items()}

def full_loss():
    with torch.no_grad():
        logits = net(everything["x"])
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, everything["y"]).item()

loss_before = full_loss()

def train(epoch_name, steps=None):
    seen[epoch_name] = []
    for step, batch in enumerate(data.torch(), 1):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch["x"]), batch["y"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        seen[epoch_name] += batch["id"].tolist()
        if step == steps:  # stopped here: save where this rank is (the pass is still open)
            json.dump(data.state_dict(), open(os.path.join(out, f"state{rank}.json"), "w"))
            return

if mode == "train":
    train("epoch0")
    train("epoch1", steps=stop)
    if rank == 0:
        torch.save(net.state_dict(), os.path.join(out, "model.pt"))
else:
    train("rest")
weights = [float(v) for p in net.parameters() for v in p.detach().flatten()]
json.dump({"describe": shard.describe(), "seen": seen, "losses": losses, "weights": weights,
           "loss_before": loss_before, "loss_after": full_loss(),
           "next_epoch": data.epoch}, open(os.path.join(out, f"{mode}{rank}.json"), "w"))
# A clean shutdown: every rank is done with gloo before any tears it down, the DDP reducer
# (which holds the process group) goes first, and the group is destroyed explicitly rather
# than by interpreter finalisation.
dist.barrier()
del model, opt
gc.collect()
dist.destroy_process_group()
data.close()
"""


def torchrun(tmp_path: Path, nproc: int, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(DATA) + textwrap.dedent(SCRIPT))
    env = loopback_env()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run(
        [*command, str(script), str(tmp_path), mode, str(STOP)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    torch = require("torch")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    out = tmp_path_factory.mktemp("torchrun")
    proc = torchrun(out, 2, "train")
    assert proc.returncode == 0, (
        f"torchrun failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    ranks = [json.loads((out / f"train{r}.json").read_text()) for r in range(2)]
    states = [json.loads((out / f"state{r}.json").read_text()) for r in range(2)]
    return out, ranks, states


def test_each_rank_knows_its_shard_from_the_process_group_and_torchrun(job):
    _, ranks, _ = job
    for rank, result in enumerate(ranks):
        text = result["describe"]
        assert text.startswith(f"rank {rank} of 2 from torch.distributed process group (backend gloo)")
        assert f"agrees: torchrun (RANK={rank}, WORLD_SIZE=2, LOCAL_RANK={rank})" in text


def test_two_ranks_read_disjoint_samples_whose_union_is_the_epoch(job):
    _, ranks, _ = job
    first, second = (set(result["seen"]["epoch0"]) for result in ranks)
    assert len(first) == len(second) == N_SAMPLES // 2
    assert not first & second
    assert first | second == set(range(N_SAMPLES))


def test_the_weights_agree_across_ranks_and_the_loss_falls(job):
    _, ranks, _ = job
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # On the whole dataset, before and after 1.2 epochs.
    assert ranks[0]["loss_after"] < 0.8 * ranks[0]["loss_before"], ranks[0]["losses"]


def read_before(ranks):
    return [i for result in ranks for i in result["seen"]["epoch1"]]


def test_the_states_of_both_ranks_agree_on_the_global_position(job):
    _, ranks, states = job
    assert [len(result["seen"]["epoch1"]) for result in ranks] == [STOP * BATCH] * 2
    for rank, state in enumerate(states):
        assert (state["epoch"], state["batch"], state["rank"]) == (1, STOP, rank)
        assert state["samples_consumed"] == STOP * BATCH * 2


def test_resumed_on_one_rank_it_reads_exactly_the_remaining_samples(job):
    out, ranks, _ = job
    proc = torchrun(out, 1, "resume")
    assert proc.returncode == 0, (
        f"torchrun failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    resumed = json.loads((out / "resume0.json").read_text())
    assert resumed["describe"].startswith("rank 0 of 1 from torch.distributed process group")
    rest, before = resumed["seen"]["rest"], read_before(ranks)
    assert len(rest) == len(set(rest)) == N_SAMPLES - len(before)
    assert set(rest) | set(before) == set(range(N_SAMPLES)) and not set(rest) & set(before)
    assert resumed["next_epoch"] == 2


def test_resumed_on_three_ranks_they_read_exactly_the_remaining_samples(job):
    _, ranks, states = job
    scope = exec_namespace(DATA)
    rest: list[int] = []
    for rank in range(3):
        loader = scope["loader"](zf.Shard(rank, 3))
        loader.load_state_dict(states[rank % 2])
        rest += [int(i) for batch in loader for i in batch["id"]]
    before = read_before(ranks)
    unread = set(range(N_SAMPLES)) - set(before)
    # 776 samples over 3 ranks: padded to 777 with the epoch's first sample (global position
    # 0, which rank 0 of the old job read first).
    assert len(unread) == 776 and len(rest) == 777
    extra = [i for i in rest if i not in unread]
    assert extra == [ranks[0]["seen"]["epoch1"][0]]
    assert sorted(i for i in rest if i in unread) == sorted(unread)

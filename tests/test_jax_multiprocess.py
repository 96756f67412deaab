"""Real processes: two JAX processes (``jax.distributed.initialize`` on a local coordinator,
CPU backend) each feed their shard; ``loader.jax(sharding=...)`` assembles global arrays.

Every process talks over the loopback interface only (coordinator 127.0.0.1, gloo CPU
collectives for the gather that checks the global arrays).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import describe_exit, exec_namespace, loopback_env, require

import zerofeed as zf

BATCH, PROCESSES = 8, 2

# Shared by the processes and the test: the same real data (scikit-learn's digits), the same loader.
DATA = f"""
import numpy as np
import zerofeed as zf
from sklearn.datasets import load_digits

BATCH = {BATCH}

def loader(shard, batch_size=BATCH):
    digits = load_digits()
    images = digits.images.astype(np.float32)[:300, :, :, None]  # (300, 8, 8, 1)
    source = {{"image": images, "label": digits.target[:300].astype(np.int32), "id": np.arange(300)}}
    ops = {{"image": [zf.RandomCrop(6, 6), zf.RandomFlip(), zf.ToCHW()]}}
    return zf.Loader(source, batch_size=batch_size, shuffle=True, seed=3, drop_last=True,
                     ops=ops, shard=shard, workers=1)
"""

SCRIPT = """
import sys
out, port, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                           initialization_timeout=60)
shard = zf.Shard.from_env()
data = loader(shard)
mesh = jax.make_mesh((jax.device_count(),), ("batch",))
rows = NamedSharding(mesh, PartitionSpec("batch"))
local = loader(shard)  # the same shard, as NumPy: what this process contributes
gathered = {"image": [], "label": [], "id": []}
for batch, mine in zip(data.jax(sharding=rows), local, strict=True):
    image = batch["image"]
    assert image.shape == (2 * BATCH, 1, 6, 6) and image.sharding == rows, (image.shape, image.sharding)
    assert not image.is_fully_addressable
    (part,) = image.addressable_shards
    assert part.index[0] == slice(pid * BATCH, (pid + 1) * BATCH), part.index
    assert np.array_equal(np.asarray(part.data), mine["image"])
    whole = multihost_utils.process_allgather(batch, tiled=True)
    for name in gathered:
        gathered[name].append(np.asarray(whole[name]))
if pid == 0:
    np.savez(f"{out}/global.npz", describe=shard.describe(), steps=len(data),
             **{name: np.stack(values) for name, values in gathered.items()})
multihost_utils.sync_global_devices("done")
data.close()
local.close()
jax.distributed.shutdown()
print("ok", shard.describe())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    require("jax")
    require("sklearn")
    out: Path = tmp_path_factory.mktemp("jaxdist")
    script = out / "worker.py"
    script.write_text(textwrap.dedent(DATA) + textwrap.dedent(SCRIPT))
    env = loopback_env()
    env.update(JAX_PLATFORMS="cpu")
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), port, str(pid)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            stdout, stderr = proc.communicate()
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    for result in results:
        assert result.returncode == 0, describe_exit(result)
    with np.load(out / "global.npz") as saved:
        return results, dict(saved)


def test_each_process_knows_its_shard_from_the_jax_runtime(job):
    results, saved = job
    for pid, result in enumerate(results):
        line = result.stdout.strip().splitlines()[-1]
        assert line.startswith(f"ok rank {pid} of 2 from JAX multi-process runtime"), line
    assert str(saved["describe"]).startswith("rank 0 of 2 from JAX multi-process runtime")


def test_global_batches_are_the_shards_batches_in_process_order(job):
    _, saved = job
    scope = exec_namespace(DATA)
    shards = [list(scope["loader"](zf.Shard(r, PROCESSES))) for r in range(PROCESSES)]
    assert int(saved["steps"]) == len(shards[0]) == 300 // PROCESSES // BATCH
    for step in range(int(saved["steps"])):
        for name in ("image", "label", "id"):
            expected = np.concatenate([shard[step][name] for shard in shards])
            assert np.array_equal(saved[name][step], expected), (step, name)


def test_global_batches_hold_the_single_process_global_batch(job):
    _, saved = job
    scope = exec_namespace(DATA)
    # One process reading batches of 2 * BATCH reads the same global positions per step; the
    # samples (and their crops and flips, keyed by sample) are the same, only their order in
    # the batch differs (ranks take every other position).
    single = list(scope["loader"](zf.Shard(0, 1), batch_size=PROCESSES * BATCH))
    for step in range(int(saved["steps"])):
        order = np.argsort(saved["id"][step])
        reference = np.argsort(single[step]["id"])
        assert np.array_equal(saved["id"][step][order], single[step]["id"][reference])
        assert np.array_equal(saved["image"][step][order], single[step]["image"][reference])
        assert np.array_equal(saved["label"][step][order], single[step]["label"][reference])


def test_sharding_must_be_a_jax_sharding_per_field():
    require("jax")
    scope = exec_namespace(DATA)
    loader = scope["loader"](zf.Shard(0, 1))
    with pytest.raises(zf.PipelineError, match="is not a jax.sharding.Sharding") as info:
        loader.jax(sharding="batch")
    assert info.value.argument == "sharding"
    with pytest.raises(zf.PipelineError, match=r"lacks fields \['id', 'label'\]") as info:
        loader.jax(sharding={"image": None})
    assert info.value.argument == "sharding"


def test_a_single_process_global_batch_is_the_local_batch():
    jax = require("jax")
    from jax.sharding import NamedSharding, PartitionSpec

    rows = NamedSharding(jax.make_mesh((jax.device_count(),), ("batch",)), PartitionSpec("batch"))
    scope = exec_namespace(DATA)
    plain = [b["image"] for b in scope["loader"](zf.Shard(0, 1))]
    loader = scope["loader"](zf.Shard(0, 1))
    batches = loader.jax(sharding=rows)
    first = next(batches)
    assert first["image"].sharding == rows and loader.state_dict()["batch"] == 1
    assert np.array_equal(np.asarray(first["image"]), plain[0])
    assert [np.asarray(b["image"]).tolist() for b in batches] == [p.tolist() for p in plain[1:]]

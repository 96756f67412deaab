"""Ray on a local cluster: Ray Train's TorchTrainer fed by zerofeed loaders sharded from
Ray's context, and zerofeed.ray (fused ops on a ray.data.Dataset, device batches from a
``streaming_split`` shard).

The cluster is one node pinned to 127.0.0.1 (Ray otherwise advertises, and Ray Train sets
``MASTER_ADDR`` to, the machine's own address) with 2 CPUs; the trainer's workers take half a
CPU each so that Ray Data's tasks always find one. gloo talks over ``lo``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import describe_exit, require, run_python

import zerofeed as zf

# Ray reads this when it is imported: with clusters "disabled" every address Ray picks,
# including the one Ray Train gives MASTER_ADDR, is the loopback one.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ray_cluster():
    saved = {name: os.environ.get(name) for name in LOOPBACK}
    os.environ.update(LOOPBACK)
    ray = require("ray")
    require("ray.train.torch")
    ray.init(
        num_cpus=2,
        object_store_memory=96 * 2**20,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": dict(LOOPBACK)},
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def patches() -> np.ndarray:
    """Real photographs (scikit-image's astronaut and coffee) cut into 32x32 RGB patches."""
    skimage_data = require("skimage.data")
    out = []
    for photo in (skimage_data.astronaut(), skimage_data.coffee()):
        h, w = photo.shape[0] // 32 * 32, photo.shape[1] // 32 * 32
        grid = photo[:h, :w].reshape(h // 32, 32, w // 32, 32, 3).swapaxes(1, 2)
        out.append(grid.reshape(-1, 32, 32, 3)[::4])
    return np.ascontiguousarray(np.concatenate(out))


OPS = [zf.RandomCrop(24, 24), zf.RandomFlip(), zf.Normalize(mean=[120.0] * 3, std=[60.0] * 3), zf.ToCHW()]


# -- Ray Train -------------------------------------------------------------------------------
def train_loop(config):
    import gc

    import torch
    import torch.distributed as dist
    from sklearn.datasets import load_digits
    from torch.nn.parallel import DistributedDataParallel

    import zerofeed as zf

    digits = load_digits()
    source = {
        "x": (digits.data / 16.0).astype(np.float32),
        "y": digits.target.astype(np.int64),
        "id": np.arange(len(digits.target)),
    }
    shard = zf.Shard.from_env()
    loader = zf.Loader(source, batch_size=32, shuffle=True, seed=4, shard=shard, workers=1)
    torch.manual_seed(0)
    net = torch.nn.Linear(64, 10)
    model = DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen, losses = [], []
    for epoch in range(3):
        for batch in loader.torch():
            loss = torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if epoch == 0:
                seen += batch["id"].tolist()
    weights = [float(v) for p in net.parameters() for v in p.detach().flatten()]
    result = {"describe": shard.describe(), "seen": seen, "losses": losses, "weights": weights}
    Path(config["out"], f"rank{shard.rank}.json").write_text(json.dumps(result))
    dist.barrier()  # every rank is done with gloo before Ray tears the group down
    del model, opt
    gc.collect()
    loader.close()


@pytest.fixture(scope="module")
def trained(ray_cluster, tmp_path_factory):
    import sys

    from ray import cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    # Ray's workers cannot import this test module: ship the training loop by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = tmp_path_factory.mktemp("raytrain")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(storage_path=str(out / "storage"), name="zerofeed"),
    )
    result = trainer.fit()
    assert result.error is None, result.error
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_each_ray_train_worker_reads_its_shard_from_rays_context(trained):
    for rank, result in enumerate(trained):
        assert result["describe"].startswith(f"rank {rank} of 2 from torch.distributed process group")
        assert "agrees: Ray Train context (ray.train.get_context())" in result["describe"]
    first, second = (set(result["seen"]) for result in trained)
    assert len(first) == len(trained[0]["seen"]) == 899 and len(second) == 899
    # 1797 digits over 2 ranks: 899 each, the padding repeats the epoch's first sample.
    assert len(first & second) == 1 and len(first | second) == 1797


def test_the_ray_train_workers_agree_and_the_loss_falls(trained):
    assert trained[0]["weights"] == trained[1]["weights"]
    losses = trained[0]["losses"]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5]), losses


# -- Ray Data: fused ops as map_batches ------------------------------------------------------
def loader_by_id(images: np.ndarray, seed: int, epoch: int) -> dict[int, np.ndarray]:
    loader = zf.Loader(
        {"image": images, "id": np.arange(len(images))},
        batch_size=16,
        shuffle=True,
        seed=seed,
        ops={"image": OPS},
    )
    loader.set_epoch(epoch)
    return {int(i): image for batch in loader for i, image in zip(batch["id"], batch["image"], strict=True)}


def test_map_ops_on_a_dataset_equals_the_loader_for_the_same_keys(ray_cluster):
    import zerofeed.ray as zray

    images = patches()
    items = [{"image": image, "id": i} for i, image in enumerate(images)]
    dataset = ray_cluster.data.from_items(items, override_num_blocks=4).random_shuffle(seed=1)
    rows = zray.map_ops(dataset, OPS, seed=9, epoch=2, batch_size=24).take_all()
    expected = loader_by_id(images, seed=9, epoch=2)
    assert sorted(int(row["id"]) for row in rows) == list(range(len(images)))
    for row in rows:
        assert row["image"].shape == (3, 24, 24) and row["image"].dtype == np.float32
        assert np.array_equal(row["image"], expected[int(row["id"])]), int(row["id"])
    # Another epoch draws other crops and flips, as the Loader does.
    other = zray.map_ops(dataset, OPS, seed=9, epoch=3, batch_size=24).take_all()
    differs = [not np.array_equal(row["image"], expected[int(row["id"])]) for row in other]
    assert sum(differs) > len(images) // 2


def test_the_transform_reads_and_writes_blocks_without_a_copy():
    require("ray")
    from ray.data.block import BlockAccessor

    import zerofeed.ray as zray

    images = patches()[:16]
    block = BlockAccessor.batch_to_block({"image": images, "id": np.arange(16)})
    # What map_batches(batch_format="numpy", zero_copy_batch=True) hands the transform: a view
    # of the Arrow block's tensor buffer.
    batch = BlockAccessor.for_block(block).to_batch_format("numpy")
    tensor_buffer = block.column("image").chunk(0).storage.buffers()[-1]
    assert batch["image"].ctypes.data == tensor_buffer.address
    out = zray.FusedOps(OPS, seed=1)(batch)
    assert out["id"] is batch["id"]  # columns without ops pass through
    # What Ray does with the returned batch: an Arrow block over the same memory.
    out_block = BlockAccessor.batch_to_block(out)
    assert out_block.column("image").chunk(0).storage.buffers()[-1].address == out["image"].ctypes.data
    assert out["image"].ctypes.data % 64 == 0


def test_fused_ops_errors_are_typed():
    import zerofeed.ray as zray

    fused = zray.FusedOps(OPS)
    with pytest.raises(zf.PipelineError, match="no column \\['id'\\]") as info:
        fused({"image": patches()[:2]})
    assert info.value.argument == "key"
    with pytest.raises(zf.PipelineError, match="non-negative integer dataset indices") as info:
        fused({"image": patches()[:2], "id": np.array([0.5, 1.5])})
    assert info.value.argument == "key"
    with pytest.raises(zf.PipelineError, match="batch_format='numpy'") as info:
        fused([1, 2])
    assert info.value.argument == "batch_format"
    with pytest.raises(zf.PipelineError, match="ray.data.Dataset") as info:
        zray.map_ops([1, 2], OPS)
    assert info.value.argument == "dataset"
    with pytest.raises(zf.PipelineError, match="DataIterator") as info:
        next(zray.device_batches([1, 2], batch_size=2))
    assert info.value.argument == "iterator"
    with pytest.raises(zf.PipelineError, match="op keys for a source of 2 samples") as info:
        zray._KeyedLoader([1], np.zeros((2, 3)), batch_size=2)
    assert info.value.argument == "keys"


# -- Ray Data: device batches from a streaming_split shard -----------------------------------
def test_streaming_split_shards_become_zerofeed_batches_that_never_change(ray_cluster):
    import zerofeed.ray as zray

    images = patches()
    items = [{"image": image, "id": i} for i, image in enumerate(images)]
    dataset = zray.map_ops(
        ray_cluster.data.from_items(items, override_num_blocks=4), OPS, seed=2, batch_size=16
    )
    shards = dataset.streaming_split(2, equal=True)
    kept: list[list[dict[str, np.ndarray]]] = [[], []]
    errors: list[BaseException] = []

    def consume(rank: int) -> None:  # streaming_split's shards must be read at the same time
        try:
            kept[rank] = list(zray.device_batches(shards[rank], batch_size=8, to="numpy"))
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)

    threads = [threading.Thread(target=consume, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    first_copy = [{name: value.copy() for name, value in batch.items()} for batch in kept[0][:1]]
    ids = [[int(i) for batch in shard for i in batch["id"]] for shard in kept]
    assert not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == list(range(len(images)))
    expected = loader_by_id(images, seed=2, epoch=0)
    for shard in kept:
        for batch in shard:
            image = batch["image"]
            assert image.ctypes.data % 64 == 0 and image.flags.c_contiguous
            assert not image.flags.owndata  # zerofeed's memory, not NumPy's
            for i, sample in zip(batch["id"], image, strict=True):
                assert np.array_equal(sample, expected[int(i)])
    # Kept batches never change, whatever Ray did with its own buffers meanwhile.
    for name, value in first_copy[0].items():
        assert np.array_equal(kept[0][0][name], value)


def test_device_batches_feed_torch_without_another_copy(ray_cluster):
    torch = require("torch")
    import zerofeed.ray as zray

    dataset = ray_cluster.data.range(20, override_num_blocks=2)
    batches = list(zray.device_batches(dataset, batch_size=8, to="torch"))
    assert [b["id"].tolist() for b in batches] == [list(range(0, 8)), list(range(8, 16)), list(range(16, 20))]
    assert all(isinstance(b["id"], torch.Tensor) and b["id"].data_ptr() % 64 == 0 for b in batches)
    with pytest.raises(zf.PipelineError, match="to='torch' or to='jax'") as info:
        next(zray.device_batches(dataset, batch_size=8, device="cuda:0", to="numpy"))
    assert info.value.argument == "to"


def test_importing_zerofeed_does_not_import_ray():
    proc = run_python(
        """
        import sys, zerofeed, zerofeed.ray
        print(sorted(m for m in ("ray", "torch", "jax", "tensorflow") if m in sys.modules))
        """
    )
    assert proc.returncode == 0, describe_exit(proc)
    assert proc.stdout.splitlines()[-1] == "[]"

"""Scale-out: shards from every launcher, and exact resume on another number of ranks."""

from __future__ import annotations

import json
import random
import sys
import types

import numpy as np
import pytest
from conftest import describe_exit, run_python

import zerofeed as zf

LAUNCHER_VARS = (
    "RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE SLURM_PROCID SLURM_NTASKS SLURM_NPROCS "
    "OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE PMI_RANK PMI_SIZE TF_CONFIG"
).split()


@pytest.fixture
def env(monkeypatch):
    """A clean launcher environment, and no framework runtime that looks initialised."""
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    for module in ("torch", "jax", "ray", "ray.train"):
        monkeypatch.delitem(sys.modules, module, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_env


def fake_torch(monkeypatch, rank, world, initialized=True):
    dist = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: initialized,
        get_rank=lambda: rank,
        get_world_size=lambda: world,
        get_backend=lambda: "gloo",
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(distributed=dist))


def fake_jax(monkeypatch, rank, world, initialized=True):
    jax = types.SimpleNamespace(
        distributed=types.SimpleNamespace(is_initialized=lambda: initialized),
        process_index=lambda: rank,
        process_count=lambda: world,
    )
    monkeypatch.setitem(sys.modules, "jax", jax)


def fake_ray(monkeypatch, rank, world, session=True):
    def get_context():
        if not session:
            raise RuntimeError("not inside a Ray Train session")
        return types.SimpleNamespace(get_world_rank=lambda: rank, get_world_size=lambda: world)

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "ray.train", types.SimpleNamespace(get_context=get_context))


def tf_config(kind, index, workers=3, chief=0):
    cluster = {"worker": [f"w{i}:1" for i in range(workers)], "ps": ["p:1"]}
    if chief:
        cluster["chief"] = [f"c{i}:1" for i in range(chief)]
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


# -- launchers -------------------------------------------------------------------------------
def test_no_launcher_is_a_single_process(env):
    shard = zf.Shard.from_env()
    assert shard == zf.Shard(0, 1)
    assert "no launcher" in shard.describe() and "no launcher" in repr(shard)


@pytest.mark.parametrize(
    ("setup", "expected", "named"),
    [
        (
            lambda mp, env: env(RANK=3, WORLD_SIZE=4, LOCAL_RANK=1),
            (3, 4),
            "torchrun (RANK=3, WORLD_SIZE=4, LOCAL_RANK=1)",
        ),
        (lambda mp, env: env(RANK=2, WORLD_SIZE=4), (2, 4), "torchrun (RANK=2, WORLD_SIZE=4)"),
        (lambda mp, env: env(SLURM_PROCID=5, SLURM_NTASKS=8), (5, 8), "SLURM (SLURM_PROCID=5"),
        (lambda mp, env: env(SLURM_PROCID=1, SLURM_NPROCS=2), (1, 2), "SLURM_NPROCS=2"),
        (lambda mp, env: env(OMPI_COMM_WORLD_RANK=2, OMPI_COMM_WORLD_SIZE=3), (2, 3), "Open MPI"),
        (lambda mp, env: env(PMI_RANK=0, PMI_SIZE=6), (0, 6), "PMI (PMI_RANK=0, PMI_SIZE=6)"),
        (lambda mp, env: fake_torch(mp, 1, 2), (1, 2), "torch.distributed process group (backend gloo)"),
        (lambda mp, env: fake_jax(mp, 3, 5), (3, 5), "JAX multi-process runtime"),
        (lambda mp, env: env(TF_CONFIG=tf_config("worker", 2)), (2, 3), "TF_CONFIG (task worker 2)"),
        (lambda mp, env: env(TF_CONFIG=tf_config("worker", 0, chief=1)), (1, 4), "task worker 0"),
        (lambda mp, env: env(TF_CONFIG=tf_config("chief", 0, chief=1)), (0, 4), "task chief 0"),
        (lambda mp, env: fake_ray(mp, 1, 2), (1, 2), "Ray Train context"),
    ],
)
def test_every_launcher_is_read_and_named(env, monkeypatch, setup, expected, named):
    setup(monkeypatch, env)
    shard = zf.Shard.from_env()
    assert (shard.rank, shard.world_size) == expected
    assert named in shard.describe() and named in repr(shard)


def test_runtimes_that_are_not_initialised_are_not_sources(env, monkeypatch):
    fake_torch(monkeypatch, 1, 2, initialized=False)
    fake_jax(monkeypatch, 1, 2, initialized=False)
    fake_ray(monkeypatch, 1, 2, session=False)
    assert zf.Shard.from_env().describe() == "rank 0 of 1 from no launcher found (a single process)"
    env(SLURM_PROCID=0)  # a batch script without --ntasks: not a task launch
    assert zf.Shard.from_env() == zf.Shard(0, 1)


def test_frameworks_are_never_imported_to_look():
    proc = run_python(
        """
        import sys, zerofeed as zf
        print(zf.Shard.from_env().describe())
        print(sorted(m for m in ("torch", "jax", "ray", "tensorflow") if m in sys.modules))
        """
    )
    assert proc.returncode == 0, describe_exit(proc)
    assert proc.stdout.splitlines()[-1] == "[]"


def test_the_first_source_decides_and_agreeing_ones_are_listed(env, monkeypatch):
    fake_torch(monkeypatch, 1, 2)
    env(RANK=1, WORLD_SIZE=2, LOCAL_RANK=1)
    shard = zf.Shard.from_env()
    assert shard == zf.Shard(1, 2)
    text = shard.describe()
    assert text.startswith("rank 1 of 2 from torch.distributed process group")
    assert "agrees: torchrun (RANK=1, WORLD_SIZE=2, LOCAL_RANK=1)" in text


def test_an_outer_launcher_with_another_world_size_is_reported_not_used(env):
    # srun starting one torchrun per node: SLURM counts 2 nodes, torchrun 8 processes.
    env(RANK=5, WORLD_SIZE=8, LOCAL_RANK=1, SLURM_PROCID=1, SLURM_NTASKS=2)
    shard = zf.Shard.from_env()
    assert shard == zf.Shard(5, 8)
    assert "outer launcher, not used: SLURM (SLURM_PROCID=1, SLURM_NTASKS=2)" in shard.describe()


@pytest.mark.parametrize(
    ("setup", "first", "second"),
    [
        (lambda mp, env: env(RANK=1, WORLD_SIZE=4, SLURM_PROCID=2, SLURM_NTASKS=4), "torchrun", "SLURM"),
        (lambda mp, env: (fake_torch(mp, 0, 2), env(RANK=1, WORLD_SIZE=2)), "torch.distributed", "torchrun"),
        (lambda mp, env: (fake_torch(mp, 0, 2), env(RANK=0, WORLD_SIZE=4)), "torch.distributed", "torchrun"),
        (
            lambda mp, env: env(OMPI_COMM_WORLD_RANK=1, OMPI_COMM_WORLD_SIZE=2, PMI_RANK=0, PMI_SIZE=2),
            "Open MPI",
            "PMI",
        ),
        (lambda mp, env: (env(RANK=0, WORLD_SIZE=2), fake_jax(mp, 0, 3)), "torchrun", "JAX"),
        (
            lambda mp, env: env(RANK=0, WORLD_SIZE=3, TF_CONFIG=tf_config("worker", 1)),
            "torchrun",
            "TF_CONFIG",
        ),
        (lambda mp, env: (fake_jax(mp, 1, 2), fake_ray(mp, 0, 2)), "JAX", "Ray"),
    ],
)
def test_contradictory_sources_are_an_error_naming_both(env, monkeypatch, setup, first, second):
    setup(monkeypatch, env)
    with pytest.raises(zf.PipelineError, match="contradictory launchers") as info:
        zf.Shard.from_env()
    assert info.value.argument == "shard"
    message = str(info.value)
    assert first in message and second in message
    assert message.index(first) < message.index(second)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"RANK": "one", "WORLD_SIZE": 2}, "RANK='one' is not an integer"),
        ({"RANK": -1, "WORLD_SIZE": 2}, "RANK=-1 must be at least 0"),
        ({"RANK": 4, "WORLD_SIZE": 4}, "RANK=4 must be below WORLD_SIZE=4"),
        ({"RANK": 0, "WORLD_SIZE": 0}, "WORLD_SIZE=0 must be at least 1"),
        ({"RANK": 1}, "RANK is set but WORLD_SIZE is not"),
        ({"WORLD_SIZE": 2}, "WORLD_SIZE is set but RANK is not"),
        ({"RANK": 1, "WORLD_SIZE": 4, "LOCAL_RANK": 2}, "LOCAL_RANK=2 cannot belong to RANK=1"),
        ({"RANK": 3, "WORLD_SIZE": 4, "LOCAL_RANK": 2, "LOCAL_WORLD_SIZE": 2}, "LOCAL_WORLD_SIZE=2"),
        ({"RANK": 0, "WORLD_SIZE": 1, "LOCAL_RANK": "x"}, "LOCAL_RANK='x'"),
        ({"SLURM_PROCID": 3, "SLURM_NTASKS": 2}, "SLURM_PROCID=3 must be below SLURM_NTASKS=2"),
        ({"SLURM_NTASKS": 2}, "SLURM_NTASKS is set but SLURM_PROCID is not"),
        ({"OMPI_COMM_WORLD_RANK": "1.5", "OMPI_COMM_WORLD_SIZE": 2}, "OMPI_COMM_WORLD_RANK='1.5'"),
        ({"PMI_SIZE": 2}, "PMI_SIZE is set but PMI_RANK is not"),
        ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not a valid cluster spec"),
        ({"TF_CONFIG": '{"cluster": {}}'}, "TF_CONFIG is not a valid cluster spec"),
        ({"TF_CONFIG": tf_config("ps", 0)}, "task type 'ps' reads no training data"),
        ({"TF_CONFIG": tf_config("worker", 3)}, "task index 3 is not one of the 3 worker tasks"),
    ],
)
def test_malformed_values_are_typed_errors(env, values, match):
    env(**values)
    with pytest.raises(zf.PipelineError, match=match) as info:
        zf.Shard.from_env()
    assert info.value.argument == "shard"


@pytest.mark.parametrize(("rank", "world", "match"), [(0, 0, "no workers"), (2, 2, "outside")])
def test_a_ray_context_without_workers_is_a_typed_error(env, monkeypatch, rank, world, match):
    fake_ray(monkeypatch, rank, world)
    with pytest.raises(zf.PipelineError, match=match) as info:
        zf.Shard.from_env()
    assert info.value.argument == "shard"


@pytest.mark.parametrize(
    ("shard", "match"),
    [
        ((2, 2), r"rank=2 must be in \[0, 2\)"),
        ((-1, 3), r"rank=-1 must be in \[0, 3\)"),
        ((0, 0), "world_size=0 must be at least 1"),
        ((0.0, 2), "shard rank=0.0 must be an integer"),
        ((True, 2), "shard rank=True must be an integer"),
        ((0, 1, 2), "must be a zerofeed.Shard or a \\(rank, world_size\\) tuple"),
    ],
)
def test_a_rank_outside_the_world_is_a_typed_error(shard, match):
    with pytest.raises(zf.PipelineError, match=match) as info:
        zf.Loader(np.arange(10), batch_size=2, shard=shard)
    assert info.value.argument == "shard"


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(("n", "world"), [(3, 5), (1, 2), (7, 8)])
def test_more_ranks_than_samples_is_a_typed_error_naming_the_fix(n, world, drop_last):
    for rank in (0, world - 1):  # every rank refuses, not only those left without samples
        with pytest.raises(
            zf.PipelineError, match=f"world_size={world} is larger than the {n} samples"
        ) as info:
            zf.Loader(np.arange(n), batch_size=2, shard=(rank, world), drop_last=drop_last)
        assert info.value.argument == "shard"
        assert f"run at most {n} ranks" in str(info.value)
        assert ("no sample" if drop_last else "only padding") in str(info.value)
    # As many ranks as samples is fine: each reads one.
    seen = [int(x) for r in range(n) for b in zf.Loader(np.arange(n), batch_size=2, shard=(r, n)) for x in b]
    assert sorted(seen) == list(range(n))


def test_more_ranks_than_windows_is_refused_too():
    windows = zf.Windows(np.arange(20, dtype=np.uint16), length=4)
    with pytest.raises(zf.PipelineError, match="samples of the source") as info:
        zf.Loader(windows, batch_size=2, shard=(0, len(windows) + 1))
    assert info.value.argument == "shard"


def test_shards_compare_by_numbers_and_given_shards_say_so():
    assert zf.Shard(1, 2, "torchrun (RANK=1, WORLD_SIZE=2)") == zf.Shard(1, 2)
    assert repr(zf.Shard(1, 2)) == "Shard(rank=1, world_size=2)"
    assert zf.Shard(1, 2).describe() == "rank 1 of 2 (given)"


# -- elastic resume --------------------------------------------------------------------------
N_SAMPLES = 37


def make(rank, world, batch_size=3, drop_last=False, workers=2, n=N_SAMPLES):
    images = (np.arange(n * 4 * 4 * 3) % 251).astype(np.uint8).reshape(n, 4, 4, 3)
    return zf.Loader(
        {"image": images, "id": np.arange(n)},
        batch_size=batch_size,
        shuffle=True,
        seed=11,
        drop_last=drop_last,
        workers=workers,
        ops={"image": [zf.RandomCrop(2, 2), zf.RandomFlip()]},
        shard=(rank, world),
    )


def take(loader, batches):
    """The first ``batches`` batches of a new pass, and the iterator (still open)."""
    iterator = iter(loader)
    return [next(iterator) for _ in range(batches)], iterator


def ids(batches):
    return [int(i) for batch in batches for i in batch["id"]]


def reference_epoch(drop_last=False):
    """Per sample id: its image bytes in epoch 0 (op randomness is keyed by sample, not rank)."""
    return {
        int(i): img.tobytes()
        for batch in make(0, 1, drop_last=drop_last)
        for i, img in zip(batch["id"], batch["image"], strict=True)
    }


def check_rest(before, after, drop_last, world_after, n=N_SAMPLES):
    """The rules of docs/scaling.md for what M ranks read after N ranks stopped."""
    read_before, read_after = ids(before), ids(after)
    assert len(set(read_before)) == len(read_before)
    unread = set(range(n)) - set(read_before)
    extra = [i for i in read_after if i not in unread]
    counts = {i: read_after.count(i) for i in set(read_after)}
    if drop_last:
        assert not extra and all(c == 1 for c in counts.values())
        # Left out: the cut of the remainder (< M) and each rank's last partial batch.
        assert len(unread) - len(read_after) < world_after * 3
    else:
        # Every unread sample, plus padding (< M): the epoch's first samples again, which are
        # read ones unless the job stopped within the first M samples.
        assert set(read_after) >= unread
        assert len(read_after) - len(unread) < world_after
        assert all(counts[i] <= 2 for i in unread) and all(counts[i] == 1 for i in extra)


@pytest.mark.parametrize(
    ("n_from", "n_to", "step", "drop_last"),
    [
        (2, 3, 2, False),
        (2, 1, 3, False),
        (4, 3, 1, False),
        (3, 5, 2, True),
        (1, 4, 5, True),
        (2, 2, 4, False),
        (5, 2, 0, False),
        (3, 2, 4, False),
    ],
)
def test_a_state_of_n_ranks_resumes_on_m_ranks_exactly(n_from, n_to, step, drop_last):
    old = [make(r, n_from, drop_last=drop_last) for r in range(n_from)]
    before, states = [], []
    for loader in old:
        batches, _iterator = take(loader, step)
        before += batches
        states.append(loader.state_dict())
    assert len({s["samples_consumed"] for s in states}) == 1
    share = N_SAMPLES // n_from if drop_last else -(-N_SAMPLES // n_from)
    assert states[0]["samples_consumed"] == min(step * 3, share) * n_from
    reference = reference_epoch(drop_last)
    after, new = [], []
    for rank in range(n_to):
        loader = make(rank, n_to, drop_last=drop_last, workers=1 + rank % 3)
        loader.load_state_dict(states[random.Random(rank).randrange(n_from)])
        rest = list(loader)
        after += rest
        new.append(loader)
        for batch in rest:  # bytes as an uninterrupted run makes them
            for i, img in zip(batch["id"], batch["image"], strict=True):
                assert img.tobytes() == reference.get(int(i), img.tobytes())
    check_rest(before, after, drop_last, n_to)
    # Later epochs are those of an M-rank run.
    for rank, loader in enumerate(new):
        assert loader.epoch == 1
        fresh = make(rank, n_to, drop_last=drop_last)
        fresh.set_epoch(1)
        assert ids(loader) == ids(fresh)


def test_same_world_resume_keeps_the_batch_and_is_bit_identical():
    full = [b["image"].tobytes() for b in make(1, 3)]
    interrupted = make(1, 3)
    _, _iterator = take(interrupted, 4)
    state = interrupted.state_dict()
    assert (state["batch"], state["samples_consumed"]) == (4, 36)
    resumed = make(1, 3, workers=3)
    resumed.load_state_dict(state)
    assert resumed.state_dict()["batch"] == 4
    assert [b["image"].tobytes() for b in resumed] == full[4:]


def test_a_resumed_job_can_be_saved_and_resumed_again_on_another_world():
    before = []
    states = []
    for r in range(2):
        loader = make(r, 2)
        batches, _it = take(loader, 2)
        before += batches
        states.append(loader.state_dict())
    middle, states3 = [], []
    for r in range(3):
        loader = make(r, 3)
        loader.load_state_dict(states)
        batches, _it = take(loader, 1)
        middle += batches
        state = loader.state_dict()
        assert (state["batch"], state["samples_consumed"], state["world_size"]) == (1, 12 + 9, 3)
        states3.append(state)
    final = make(0, 1, workers=1)
    final.load_state_dict(states3)
    last = list(final)
    check_rest(before + middle, last, False, 1)
    assert sorted(ids(before + middle + last)) == list(range(N_SAMPLES))


def test_the_batch_size_may_change_with_the_world():
    old = [make(r, 2, batch_size=4) for r in range(2)]
    before = []
    for loader in old:
        batches, _it = take(loader, 3)
        before += batches
    state = old[1].state_dict()
    after = []
    for r in range(4):
        loader = make(r, 4, batch_size=2)
        loader.load_state_dict(state)
        after += list(loader)
    check_rest(before, after, False, 4)


def test_the_state_right_after_loading_is_the_loaded_position():
    a = make(0, 2)
    _, _it = take(a, 2)
    state = a.state_dict()
    b = make(2, 3)
    b.load_state_dict(state)
    again = b.state_dict()
    assert (again["epoch"], again["batch"], again["samples_consumed"]) == (0, 0, state["samples_consumed"])
    assert (again["rank"], again["world_size"]) == (2, 3)


def test_the_end_of_an_epoch_resumes_at_the_next_one():
    loaders = [make(r, 4) for r in range(4)]
    for loader in loaders:
        list(loader)
    state = loaders[2].state_dict()
    assert (state["epoch"], state["samples_consumed"]) == (1, 0)
    loader = make(0, 2)
    loader.load_state_dict(state)
    fresh = make(0, 2)
    fresh.set_epoch(1)
    assert ids(loader) == ids(fresh)
    # Stopped after the last (short) batch but before the next pass: nothing left.
    last = make(1, 4)
    iterator = iter(last)
    for _ in range(len(last)):
        next(iterator)
    state = last.state_dict()
    assert state["samples_consumed"] == 40  # padded: 10 per rank
    rest = make(0, 3)
    rest.load_state_dict(state)
    assert list(rest) == []


# -- the list of every rank's state ----------------------------------------------------------
def states_of(world, step=2):
    out = []
    for r in range(world):
        loader = make(r, world)
        _, _it = take(loader, step)
        out.append(loader.state_dict())
    return out


def test_a_list_of_agreeing_states_loads():
    loader = make(0, 1)
    loader.load_state_dict(states_of(3))
    assert loader.state_dict()["samples_consumed"] == 18


def test_states_that_disagree_name_the_ranks():
    states = states_of(4)
    states[2] = states_of(4, step=3)[2]
    with pytest.raises(zf.PipelineError, match=r"ranks \[2\] have batch=3") as info:
        make(0, 2).load_state_dict(states)
    assert info.value.argument == "state"
    assert "ranks [0, 1, 3] have batch=2" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s[:2], "got ranks \\[0, 1\\]"),
        (lambda s: [s[0], s[0], s[2]], "got ranks \\[0, 0, 2\\]"),
        (lambda s: [s[0], s[1], {**s[2], "world_size": 4}], "worlds of different sizes"),
        (lambda s: [], "empty"),
        (lambda s: [s[0], "x", s[2]], "each state must be a dict"),
        (lambda s: [{**st, "seed": 5} for st in s], "seed=5"),
    ],
)
def test_bad_lists_of_states_are_typed_errors(edit, match):
    with pytest.raises(zf.PipelineError, match=match) as info:
        make(0, 2).load_state_dict(edit(states_of(3)))
    assert info.value.argument == "state"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"length": 36}, "length=36"),
        ({"seed": 12}, "seed=12"),
        ({"shuffle": False}, "shuffle=False"),
        ({"drop_last": True}, "drop_last=True"),
        ({"ops": {"image": [], "id": []}}, "ops="),
        ({"samples_consumed": 39}, "samples_consumed=39"),
        ({"samples_consumed": -1}, "samples_consumed=-1"),
        ({"samples_consumed": 2.0}, "samples_consumed=2.0"),
        ({"world_size": 0}, "world_size=0"),
        ({"rank": 2}, "rank=2"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch": 8}, "batch=8"),
    ],
)
def test_a_state_of_another_dataset_or_position_outside_the_epoch_is_refused(change, match):
    state = states_of(2)[0]
    state.update(change)
    with pytest.raises(zf.PipelineError, match=match) as info:
        make(0, 3).load_state_dict(state)
    assert info.value.argument == "state"
    del state["samples_consumed"]
    with pytest.raises(zf.PipelineError, match="missing"):
        make(0, 3).load_state_dict(state)

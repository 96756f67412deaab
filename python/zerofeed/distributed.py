"""Shards from launchers, and the states that let a job resume on another number of ranks.

:meth:`Shard.from_env` asks, in this order (the first one found decides):

1. an initialised ``torch.distributed`` process group (only when torch is already imported),
2. ``torchrun``: ``RANK`` / ``WORLD_SIZE`` (``LOCAL_RANK`` checked and reported),
3. SLURM: ``SLURM_PROCID`` / ``SLURM_NTASKS`` (or ``SLURM_NPROCS``),
4. Open MPI: ``OMPI_COMM_WORLD_RANK`` / ``OMPI_COMM_WORLD_SIZE``,
5. PMI (MPICH, Intel MPI, ``srun --mpi=pmi2``): ``PMI_RANK`` / ``PMI_SIZE``,
6. an initialised JAX multi-process runtime (only when jax is already imported),
7. TensorFlow's ``TF_CONFIG``: the task's index among the chief and the workers,
8. Ray Train's context (only when ``ray.train`` is imported and a session exists).

Frameworks are never imported just to look. Every other source found must agree with the
first. The one exception is an *outer* launcher (SLURM, Open MPI, PMI) reporting another world
size: ``srun`` or ``mpirun`` starting one ``torchrun`` per node counts nodes, not processes, so
it is reported and not used. Anything else that differs (the same world size with another rank,
or a process group, JAX or Ray disagreeing with the launcher) is a :class:`PipelineError`
(``argument == "shard"``) naming both sources.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import PipelineError

_GIVEN = "given"


@dataclass(frozen=True)
class Shard:
    """This process's share of the data: ``rank`` of ``world_size`` (DistributedSampler rules).

    ``source`` says where the numbers came from (not compared: two shards with the same rank
    and world size are equal).

    Example:
        >>> Shard(1, 4)
        Shard(rank=1, world_size=4)
        >>> Shard(1, 4).describe()
        'rank 1 of 4 (given)'

    """

    rank: int
    world_size: int
    source: str = field(default=_GIVEN, compare=False)

    def __post_init__(self) -> None:
        for name, value in (("rank", self.rank), ("world_size", self.world_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise PipelineError(f"shard {name}={value!r} must be an integer", "shard")
        if self.world_size < 1:
            raise PipelineError(f"world_size={self.world_size} must be at least 1", "shard")
        if not 0 <= self.rank < self.world_size:
            raise PipelineError(
                f"rank={self.rank} must be in [0, {self.world_size}) for world_size={self.world_size}",
                "shard",
            )

    def __repr__(self) -> str:
        if self.source == _GIVEN:
            return f"Shard(rank={self.rank}, world_size={self.world_size})"
        return f"Shard(rank={self.rank}, world_size={self.world_size}, source={self.source!r})"

    def describe(self) -> str:
        """Rank, world size and where they came from, in words.

        Example:
            >>> Shard(0, 2, "torchrun (RANK=0, WORLD_SIZE=2)").describe()
            'rank 0 of 2 from torchrun (RANK=0, WORLD_SIZE=2)'

        """
        if self.source == _GIVEN:
            return f"rank {self.rank} of {self.world_size} (given)"
        return f"rank {self.rank} of {self.world_size} from {self.source}"

    @classmethod
    def from_env(cls) -> Shard:
        """The shard the launcher describes (see the module docstring for the order).

        Without any launcher: a single process (rank 0 of 1). Malformed values (not an
        integer, a rank outside the world, half of a pair) and contradictory launchers raise
        :class:`PipelineError` with ``argument == "shard"``.

        Example:
            >>> import os
            >>> os.environ.pop("RANK", None) and None
            >>> Shard.from_env().describe()
            'rank 0 of 1 from no launcher found (a single process)'

        """
        found = [source for source in (detect() for detect in _DETECTORS) if source is not None]
        if not found:
            return cls(0, 1, "no launcher found (a single process)")
        chosen, notes = found[0], []
        for other in found[1:]:
            if (other.rank, other.world_size) == (chosen.rank, chosen.world_size):
                notes.append(f"agrees: {other.text()}")
            elif other.world_size != chosen.world_size and other.name in _OUTER:
                notes.append(f"outer launcher, not used: {other.text()}")
            else:
                raise PipelineError(
                    f"contradictory launchers: {chosen.text()} says rank {chosen.rank} of "
                    f"{chosen.world_size}, but {other.text()} says rank {other.rank} of "
                    f"{other.world_size}; unset the stale variables or pass shard=zf.Shard(rank, world_size)",
                    "shard",
                )
        return cls(chosen.rank, chosen.world_size, "; ".join([chosen.text(), *notes]))


class _Found(NamedTuple):
    name: str
    rank: int
    world_size: int
    detail: str

    def text(self) -> str:
        return f"{self.name} ({self.detail})"


def _env_int(name: str, minimum: int) -> int | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise PipelineError(
            f"{name}={raw!r} is not an integer; fix or unset it (launchers set it to a number)", "shard"
        ) from None
    if value < minimum:
        raise PipelineError(f"{name}={value} must be at least {minimum}; fix or unset it", "shard")
    return value


def _env_pair(name: str, rank_var: str, world_var: str, world: int | None = None) -> _Found | None:
    rank = _env_int(rank_var, 0)
    world = _env_int(world_var, 1) if world is None else world
    if rank is None and world is None:
        return None
    if rank is None or world is None:
        present, missing = (world_var, rank_var) if rank is None else (rank_var, world_var)
        raise PipelineError(f"{name}: {present} is set but {missing} is not; set both (or neither)", "shard")
    if rank >= world:
        raise PipelineError(
            f"{name}: {rank_var}={rank} must be below {world_var}={world}; fix or unset them", "shard"
        )
    return _Found(name, rank, world, f"{rank_var}={rank}, {world_var}={world}")


def _torch_group() -> _Found | None:
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    rank, world = int(dist.get_rank()), int(dist.get_world_size())
    return _Found("torch.distributed process group", rank, world, f"backend {dist.get_backend()}")


def _torchrun() -> _Found | None:
    found = _env_pair("torchrun", "RANK", "WORLD_SIZE")
    local = _env_int("LOCAL_RANK", 0)
    if found is None or local is None:
        return found
    local_world = _env_int("LOCAL_WORLD_SIZE", 1)
    if local > found.rank or (local_world is not None and local >= local_world):
        raise PipelineError(
            f"torchrun: LOCAL_RANK={local} cannot belong to RANK={found.rank}"
            + (f" with LOCAL_WORLD_SIZE={local_world}" if local_world is not None else "")
            + "; fix or unset them",
            "shard",
        )
    return found._replace(detail=f"{found.detail}, LOCAL_RANK={local}")


def _slurm() -> _Found | None:
    # SLURM_PROCID alone (a batch script without --ntasks) is not a task launch.
    count_var = "SLURM_NTASKS" if "SLURM_NTASKS" in os.environ else "SLURM_NPROCS"
    if count_var not in os.environ:
        return None
    return _env_pair("SLURM", "SLURM_PROCID", count_var)


def _open_mpi() -> _Found | None:
    return _env_pair("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")


def _pmi() -> _Found | None:
    return _env_pair("PMI", "PMI_RANK", "PMI_SIZE")


def _jax() -> _Found | None:
    jax = sys.modules.get("jax")
    initialized = getattr(getattr(jax, "distributed", None), "is_initialized", None)
    if jax is None or initialized is None or not initialized():
        return None
    rank, world = int(jax.process_index()), int(jax.process_count())
    return _Found("JAX multi-process runtime", rank, world, "jax.distributed.initialize")


def _tf_config() -> _Found | None:
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], task["index"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise PipelineError(
            f"TF_CONFIG is not a valid cluster spec ({type(err).__name__}: {err}); it needs "
            '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}',
            "shard",
        ) from None
    if kind not in ("chief", "worker"):
        raise PipelineError(
            f"TF_CONFIG task type {kind!r} reads no training data; only 'chief' and 'worker' "
            "tasks are shards: pass shard=None on this task",
            "shard",
        )
    members = chiefs if kind == "chief" else workers
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(members):
        raise PipelineError(
            f"TF_CONFIG task index {index!r} is not one of the {len(members)} {kind} tasks", "shard"
        )
    rank = index if kind == "chief" else len(chiefs) + index
    return _Found("TF_CONFIG", rank, len(chiefs) + len(workers), f"task {kind} {index}")


def _ray() -> _Found | None:
    train = sys.modules.get("ray.train")
    if "ray" not in sys.modules or train is None:
        return None
    try:
        context = train.get_context()
        world, rank = context.get_world_size(), context.get_world_rank()
    # Outside a Ray Train session, Ray versions raise different errors (or none and return
    # None): any of them means there is no session to read.
    except Exception:  # noqa: BLE001
        return None
    if world is None or rank is None:
        return None
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise PipelineError(
            f"Ray Train context has world_size={world!r}: no workers; start the trainer with "
            "ScalingConfig(num_workers>=1)",
            "shard",
        )
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        raise PipelineError(f"Ray Train context has world_rank={rank!r} outside [0, {world})", "shard")
    return _Found("Ray Train context", rank, world, "ray.train.get_context()")


_DETECTORS: tuple[Callable[[], _Found | None], ...] = (
    _torch_group,
    _torchrun,
    _slurm,
    _open_mpi,
    _pmi,
    _jax,
    _tf_config,
    _ray,
)
_OUTER = frozenset({"SLURM", "Open MPI", "PMI"})

# -- states for elastic resume ---------------------------------------------------------------
# Keys of a state that may differ from the loading loader: the shard, and the batch size
# (the position is in samples of the global order, so any batch size can continue it).
ELASTIC_KEYS = ("rank", "world_size", "batch_size")


def _share(length: int, world: int, drop_last: bool) -> int:
    return length // world if drop_last else -(-length // world)


def check_state(state: Any, fingerprint: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(epoch, batch, samples_consumed)`` of one saved state, after checking every key.

    ``fingerprint`` is the loading loader's; keys other than :data:`ELASTIC_KEYS` must match.

    Example:
        >>> fp = {"length": 10, "drop_last": False, "rank": 0, "world_size": 1, "batch_size": 2}
        >>> check_state({"epoch": 1, "batch": 2, "samples_consumed": 4, **fp}, fp)
        (1, 2, 4)

    """
    if not isinstance(state, Mapping):
        raise PipelineError(
            f"state must be a dict from state_dict() (or a list of them), got {type(state).__name__}",
            "state",
        )
    missing = sorted({"epoch", "batch", "samples_consumed", *fingerprint} - set(state))
    if missing:
        raise PipelineError(f"state_dict is missing {missing}; pass what state_dict() returned", "state")
    for key, value in fingerprint.items():
        if key not in ELASTIC_KEYS and state[key] != value:
            raise PipelineError(
                f"state_dict was saved with {key}={state[key]!r} but this loader has "
                f"{key}={value!r}; configure the loader as the saved one was",
                "state",
            )

    def integer(key: str, low: int, high: int) -> int:
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
            raise PipelineError(
                f"state_dict has {key}={value!r}; it must be an integer in [{low}, {high})", "state"
            )
        return value

    world = integer("world_size", 1, 2**63)
    integer("rank", 0, world)
    batch_size = integer("batch_size", 1, 2**63)
    length, drop_last = fingerprint["length"], fingerprint["drop_last"]
    share = _share(length, world, drop_last)
    batches = share // batch_size if drop_last else -(-share // batch_size)
    padded_max = length if drop_last else length + world - 1
    return (
        integer("epoch", 0, 2**63),
        integer("batch", 0, batches + 1),
        integer("samples_consumed", 0, padded_max + 1),
    )


def agreed_state(states: Sequence[Any]) -> Mapping[str, Any]:
    """The one state that all ranks' states of a job at one step agree on.

    The states must come from ranks ``0..N-1`` of one world, each once, and agree on every
    key but ``rank``; otherwise PipelineError (``argument == "state"``) names the ranks.

    Example:
        >>> agreed_state([{"rank": 0, "world_size": 2, "epoch": 0},
        ...               {"rank": 1, "world_size": 2, "epoch": 0}])["epoch"]
        0

    """
    if not states:
        raise PipelineError("the list of states is empty; pass every rank's state_dict()", "state")
    for state in states:
        if not isinstance(state, Mapping) or "rank" not in state or "world_size" not in state:
            raise PipelineError(
                f"each state must be a dict from state_dict(), got {type(state).__name__}", "state"
            )
    ranks = [state["rank"] for state in states]
    worlds = sorted({repr(state["world_size"]) for state in states})
    if len(worlds) > 1:
        raise PipelineError(f"the states come from worlds of different sizes ({worlds})", "state")
    world = states[0]["world_size"]
    whole = isinstance(world, int) and all(isinstance(rank, int) for rank in ranks)
    if not whole or sorted(ranks) != list(range(world)):
        raise PipelineError(
            f"expected one state from each rank of world_size={world!r}, got ranks {ranks}; "
            "pass every rank's state_dict() from the same step",
            "state",
        )
    reference: Mapping[str, Any] = states[0]
    for key in sorted(set().union(*(set(state) for state in states)) - {"rank"}):
        values = {repr(state.get(key)) for state in states}
        if len(values) > 1:
            groups = {
                value: [state["rank"] for state in states if repr(state.get(key)) == value]
                for value in sorted(values)
            }
            said = "; ".join(f"ranks {group} have {key}={value}" for value, group in groups.items())
            raise PipelineError(
                f"the ranks' states differ: {said}; pass the states all ranks saved at the same step",
                "state",
            )
    return reference

"""Windows over token streams and time series (zf.open_tokens, zf.Windows) against NumPy
slicing written here independently of the core's arithmetic."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import describe_exit, in_ci, is_pinned, subprocess_env

import zerofeed as zf


def windows_of(loader: zf.Loader) -> dict[str, np.ndarray] | np.ndarray:
    """Every sample of one epoch, batches concatenated."""
    batches = [b for b in loader]
    if isinstance(batches[0], dict):
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    return np.concatenate(batches)


def oracle_starts(n: int, need: int, stride: int, first: int = 0) -> list[int]:
    return list(range(first, n - need + 1, stride))


@pytest.mark.parametrize(
    ("n", "length", "stride"), [(100, 10, None), (101, 7, 3), (50, 50, None), (64, 5, 1)]
)
def test_every_window_is_the_numpy_slice(n: int, length: int, stride: int | None) -> None:
    tokens = np.random.default_rng(n).integers(0, 60000, n).astype(np.uint16)
    w = zf.Windows(tokens, length, stride=stride, phase=0)
    got = windows_of(zf.Loader(w, batch_size=4))
    expected = np.stack([tokens[s : s + length] for s in oracle_starts(n, length, stride or length)])
    assert len(w) == len(expected)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint16


def test_next_target_is_the_input_shifted_by_one() -> None:
    tokens = np.random.default_rng(0).integers(0, 50000, 1000).astype(np.uint16)
    w = zf.Windows(tokens, 32, target="next", phase=0)
    got = windows_of(zf.Loader(w, batch_size=8, dtype="int64"))
    starts = oracle_starts(1000, 33, 32)
    np.testing.assert_array_equal(got["input"], np.stack([tokens[s : s + 32] for s in starts]))
    np.testing.assert_array_equal(got["target"], np.stack([tokens[s + 1 : s + 33] for s in starts]))
    assert got["input"].dtype == np.int64 and got["target"].dtype == np.int64
    np.testing.assert_array_equal(got["input"][:, 1:], got["target"][:, :-1])


def test_horizon_targets_of_a_2d_series() -> None:
    series = np.random.default_rng(1).standard_normal((200, 3)).astype(np.float32)
    w = zf.Windows(series, 24, stride=5, target=6, phase=0)
    got = windows_of(zf.Loader(w, batch_size=16))
    starts = oracle_starts(200, 30, 5)
    np.testing.assert_array_equal(got["input"], np.stack([series[s : s + 24] for s in starts]))
    np.testing.assert_array_equal(got["target"], np.stack([series[s + 24 : s + 30] for s in starts]))
    assert got["input"].shape == (len(starts), 24, 3) and got["target"].shape == (len(starts), 6, 3)


def test_separate_series_and_boundaries_are_never_crossed() -> None:
    rng = np.random.default_rng(2)
    parts = [np.arange(0, 300, dtype=np.int32), np.arange(1000, 1250, dtype=np.int32)]
    stream = np.concatenate(parts)
    docs = np.unique(np.concatenate([[0], rng.integers(1, len(stream), 25)]))
    length, stride = 8, 3
    w = zf.Windows(parts, length, stride=stride, target="next", boundaries=docs, phase=0)
    got = windows_of(zf.Loader(w, batch_size=10, shuffle=True, seed=5))
    cuts = sorted(set(docs.tolist()) | {0, 300, len(stream)})
    expected = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        expected += [stream[s : s + length + 1] for s in oracle_starts(b, length + 1, stride, a)]
    full = np.concatenate([got["input"], got["target"][:, -1:]], axis=1)
    assert sorted(map(tuple, full.tolist())) == sorted(map(tuple, np.stack(expected).tolist()))
    position = np.searchsorted(stream, full)  # values are unique: the step each came from
    doc = np.searchsorted(cuts, position, side="right")
    assert (doc == doc[:, :1]).all(), "a window crossed a boundary"


@pytest.mark.parametrize("shuffle", [False, True])
def test_default_stride_covers_each_position_once(shuffle: bool) -> None:
    tokens = np.arange(40 * 16, dtype=np.uint32)
    got = windows_of(zf.Loader(zf.Windows(tokens, 16, phase=0), batch_size=7, shuffle=shuffle, seed=3))
    np.testing.assert_array_equal(np.sort(got.ravel()), tokens)


def test_shards_are_disjoint_and_cover_the_epoch() -> None:
    tokens = np.arange(30 * 10 + 10, dtype=np.uint32)  # room for 30 windows + 1 at any phase
    w = zf.Windows(tokens, 10, target="next")  # random phase: 30 windows in every epoch
    assert len(w) == 30
    for epoch in (0, 1):
        seen = []
        for rank in range(3):
            loader = zf.Loader(w, batch_size=4, shuffle=True, seed=9, shard=(rank, 3))
            loader.set_epoch(epoch)
            seen.append({int(s) for s in windows_of(loader)["input"][:, 0]})
        assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])
        union = sorted(set().union(*seen))
        phase = union[0]
        assert union == list(range(phase, phase + 300, 10))


def test_resume_mid_epoch_gives_the_same_remaining_batches() -> None:
    tokens = np.random.default_rng(4).integers(0, 1000, 5000).astype(np.uint16)
    make = lambda: zf.Loader(zf.Windows(tokens, 50, target="next"), batch_size=6, shuffle=True, seed=11)  # noqa: E731
    a = make()
    a.set_epoch(2)
    it = iter(a)
    for _ in range(3):
        next(it)
    state = a.state_dict()
    rest = [b["input"].copy() for b in it]
    b = make()
    b.load_state_dict(state)
    again = [x["input"] for x in b]
    assert len(rest) == len(again) > 0
    for x, y in zip(rest, again, strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_state_from_other_windows_is_refused() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    a = zf.Loader(zf.Windows(tokens, 10, stride=10), batch_size=4)
    b = zf.Loader(zf.Windows(tokens, 5, stride=10), batch_size=4)
    assert len(a) == len(b)
    message = bad(zf.PipelineError, "state", b.load_state_dict, a.state_dict())
    assert "windows=" in message
    a.load_state_dict(a.state_dict())


def test_random_phase_moves_the_grid_by_epoch_and_is_deterministic() -> None:
    tokens = np.arange(1000, dtype=np.uint32)
    w = zf.Windows(tokens, 16)
    count = len(w)
    phases = set()
    for epoch in range(12):
        per_workers = []
        for workers in (1, 3):
            loader = zf.Loader(w, batch_size=8, seed=1, workers=workers)
            loader.set_epoch(epoch)
            per_workers.append(windows_of(loader))
        np.testing.assert_array_equal(*per_workers)
        got = per_workers[0]
        assert len(got) == count
        phase = int(got[0, 0])
        assert 0 <= phase < 16
        np.testing.assert_array_equal(
            got, np.stack([tokens[s : s + 16] for s in range(phase, phase + 16 * count, 16)])
        )
        phases.add(phase)
    assert len(phases) > 3, phases
    by_seed = []
    for seed in (1, 2):
        loader = zf.Loader(w, batch_size=8, seed=seed)
        row = []
        for epoch in range(12):
            loader.set_epoch(epoch)
            row.append(int(next(iter(loader))[0, 0]))
        by_seed.append(row)
    assert by_seed[0] != by_seed[1], "the phase depends on the seed"


def test_token_files_npy_and_views_concatenate(tmp_path: Path) -> None:
    a = np.arange(0, 100, dtype=np.uint16)
    b = np.arange(500, 570, dtype=np.uint16)
    a.tofile(tmp_path / "a.bin")
    np.save(tmp_path / "b.npy", b)
    s = zf.open_tokens([tmp_path / "a.bin", str(tmp_path / "b.npy"), zf.view(a[:30])], dtype="uint16")
    assert len(s) == 200 and s.offsets == (0, 100, 170) and s.dtype == "uint16"
    got = windows_of(zf.Loader(zf.Windows(s, 20, phase=0), batch_size=3))
    expected = [a[i : i + 20] for i in range(0, 81, 20)] + [b[i : i + 20] for i in range(0, 51, 20)]
    expected += [a[0:20]]
    np.testing.assert_array_equal(got, np.stack(expected))
    torch = pytest.importorskip("torch")
    batch = next(iter(zf.Loader(zf.Windows(s, 20, target="next"), batch_size=4, dtype="int64").torch()))
    assert batch["input"].dtype == torch.int64 and tuple(batch["input"].shape) == (4, 20)


def test_real_text_standard_library_source_as_byte_tokens(tmp_path: Path) -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    files = [f for f in sorted(glob.glob(os.path.join(stdlib, "*.py"))) if os.path.getsize(f) > 4096][:12]
    assert len(files) >= 5, stdlib
    shards = []
    for i, name in enumerate(files):
        data = np.frombuffer(Path(name).read_bytes(), np.uint8).astype(np.uint16)
        path = tmp_path / f"shard{i}.bin"
        data.tofile(path)
        shards.append((path, data))
    tokens = zf.open_tokens([p for p, _ in shards], dtype="uint16")
    length = 256
    got = windows_of(
        zf.Loader(zf.Windows(tokens, length, target="next", phase=0), batch_size=32, dtype="int64")
    )
    expected = [d[s : s + length + 1] for _, d in shards for s in oracle_starts(len(d), length + 1, length)]
    np.testing.assert_array_equal(got["input"], np.stack([e[:-1] for e in expected]))
    np.testing.assert_array_equal(got["target"], np.stack([e[1:] for e in expected]))
    text = bytes(got["input"][0].astype(np.uint8)).decode("utf-8", "replace")
    assert text == Path(files[0]).read_bytes()[:length].decode("utf-8", "replace")


def bad(exc: type[zf.ZerofeedError], argument: str, fn, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert info.value.argument == argument, info.value
    return str(info.value)


def test_bad_window_arguments_are_typed_and_named() -> None:
    t = np.arange(100, dtype=np.uint16)
    W = zf.Windows
    assert "length=0" in bad(zf.PipelineError, "length", W, t, 0)
    bad(zf.PipelineError, "length", W, t, -3)
    bad(zf.PipelineError, "length", W, t, True)
    assert "stride=0" in bad(zf.PipelineError, "stride", W, t, 4, stride=0)
    assert "longer than series 1" in bad(zf.PipelineError, "length", W, [t, t[:5]], 10)
    bad(zf.PipelineError, "target", W, t, 100, target="next")
    bad(zf.PipelineError, "target", W, t, 90, target=11)
    bad(zf.PipelineError, "target", W, t, 10, target=0)
    bad(zf.PipelineError, "target", W, t, 10, target="previous")
    assert "boundaries[2]=5" in bad(zf.PipelineError, "boundaries", W, t, 4, boundaries=[0, 10, 5])
    assert "out of range" in bad(zf.PipelineError, "boundaries", W, t, 4, boundaries=[0, 100])
    bad(zf.PipelineError, "boundaries", W, t, 4, boundaries=[-1, 5])
    bad(zf.PipelineError, "boundaries", W, t, 4, boundaries=[0.5])
    bad(zf.PipelineError, "phase", W, t, 4, phase=3)
    bad(zf.DTypeError, "source", W, [t, t.astype(np.int32)], 4)
    bad(zf.PipelineError, "source", W, np.zeros((4, 2, 2)), 2)
    bad(zf.PipelineError, "source", W, object(), 2)
    bad(zf.PipelineError, "index", W(t, 10).window_start, 10)


def test_bad_token_files_are_typed_and_named(tmp_path: Path) -> None:
    np.arange(11, dtype=np.uint8).tofile(tmp_path / "odd.bin")
    assert "odd.bin" in bad(zf.LayoutError, "paths", zf.open_tokens, tmp_path / "odd.bin", dtype="uint16")
    assert "dtype=" in bad(zf.PipelineError, "dtype", zf.open_tokens, tmp_path / "odd.bin")
    bad(zf.FileMissingError, "paths", zf.open_tokens, tmp_path / "missing.bin", dtype="uint16")
    bad(zf.DTypeError, "dtype", zf.open_tokens, tmp_path / "odd.bin", dtype="float32")
    bad(zf.DTypeError, "dtype", zf.open_tokens, tmp_path / "odd.bin", dtype="not a dtype")
    np.save(tmp_path / "t.npy", np.arange(10, dtype=np.int32))
    bad(zf.DTypeError, "dtype", zf.open_tokens, tmp_path / "t.npy", dtype="uint16")
    assert "same dtype" in bad(
        zf.DTypeError, "paths", zf.open_tokens, [tmp_path / "t.npy", np.arange(4, dtype=np.uint16)]
    )
    bad(zf.LayoutError, "paths", zf.open_tokens, np.zeros((3, 3), np.uint16))
    bad(zf.PipelineError, "paths", zf.open_tokens, [])
    (tmp_path / "empty.bin").write_bytes(b"")
    bad(zf.LayoutError, "paths", zf.open_tokens, tmp_path / "empty.bin", dtype="uint16")


def write_megatron(prefix: Path, docs: list[list[np.ndarray]], code: int = 8, dtype: str = "<u2") -> None:
    """An indexed dataset as megatron-core's builder lays it out (written here by hand)."""
    seqs = [s for doc in docs for s in doc]
    lengths = np.array([len(s) for s in seqs], "<i4")
    pointers = np.concatenate([[0], np.cumsum(lengths.astype(np.int64) * np.dtype(dtype).itemsize)[:-1]])
    doc_index = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype("<i8")
    header = b"MMIDIDX\x00\x00" + np.array([1], "<u8").tobytes() + bytes([code])
    header += np.array([len(seqs), len(doc_index)], "<u8").tobytes()
    (prefix.parent / (prefix.name + ".idx")).write_bytes(
        header + lengths.tobytes() + pointers.astype("<i8").tobytes() + doc_index.tobytes()
    )
    np.concatenate(seqs).astype(dtype).tofile(prefix.parent / (prefix.name + ".bin"))


def test_megatron_documents_are_boundaries(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    docs = [
        [rng.integers(0, 9, int(rng.integers(3, 40))).astype(np.uint16) for _ in range(3)] for _ in range(20)
    ]
    write_megatron(tmp_path / "a", docs[:12])
    write_megatron(tmp_path / "b", docs[12:])
    stream = zf.open_tokens([tmp_path / "a", str(tmp_path / "b")], format="megatron")
    flat = [np.concatenate(d) for d in docs]
    expected_starts = np.concatenate([[0], np.cumsum([len(f) for f in flat])[:-1]])
    np.testing.assert_array_equal(stream.boundaries, expected_starts)
    assert stream.dtype == "uint16" and len(stream) == sum(map(len, flat))
    w = zf.Windows(stream, 10, stride=4, target="next", phase=0)
    got = windows_of(zf.Loader(w, batch_size=8))
    expected = [f[s : s + 11] for f in flat for s in oracle_starts(len(f), 11, 4)]
    full = np.concatenate([got["input"], got["target"][:, -1:]], axis=1)
    np.testing.assert_array_equal(full, np.stack(expected))


MEGATRON_WRITER = """
import sys
import numpy as np
try:
    import torch
    from megatron.core.datasets import indexed_dataset as indexed
except ImportError as err:
    print(f"MISSING: {err}")
    sys.exit(3)
prefix, dtype = sys.argv[1], np.dtype(sys.argv[2])
rng = np.random.default_rng(3)
# Documents of one to three sequences, some of them empty: megatron-core allows both.
docs = [[rng.integers(0, 30000, int(rng.integers(0 if j % 7 == 0 else 1, 12))).astype(dtype)
         for _ in range(1 + j % 3)] for j in range(40)]
builder = indexed.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype.type)
for doc in docs:
    builder.add_document(torch.from_numpy(np.concatenate(doc).astype(np.int64)), [len(s) for s in doc])
builder.finalize(prefix + ".idx")
theirs = indexed.IndexedDataset(prefix)  # what megatron-core itself reads back
np.save(prefix + ".tokens.npy", np.concatenate([theirs[i] for i in range(len(theirs))]))
np.save(prefix + ".lengths.npy", np.asarray(theirs.sequence_lengths, np.int64))
np.save(prefix + ".documents.npy", np.asarray(theirs.document_indices, np.int64))
"""


@pytest.mark.parametrize("dtype", ["uint16", "int32"])
def test_megatron_core_builder_files_are_read(tmp_path: Path, dtype: str) -> None:
    """Files written by megatron-core's own builder, checked against its own reader. It runs in
    a fresh interpreter: megatron-core loads Triton, whose LLVM aborts a process that has
    loaded TensorFlow (as earlier tests here do)."""
    prefix = str(tmp_path / "m")
    proc = subprocess.run(
        [sys.executable, "-c", MEGATRON_WRITER, prefix, dtype],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode == 3 and "MISSING" in proc.stdout:
        if in_ci() and is_pinned("megatron-core"):
            pytest.fail(f"megatron-core is pinned but does not import under CI: {proc.stdout}", pytrace=False)
        pytest.skip(f"megatron-core is not installed ({proc.stdout.strip()})")
    assert proc.returncode == 0, describe_exit(proc)
    tokens = np.load(prefix + ".tokens.npy")
    seq_starts = np.concatenate([[0], np.cumsum(np.load(prefix + ".lengths.npy"))])
    documents = np.load(prefix + ".documents.npy")

    stream = zf.open_tokens(tmp_path / "m", format="megatron")
    assert stream.dtype == dtype
    np.testing.assert_array_equal(np.asarray(stream.parts[0]), tokens)
    # Their document index counts sequences; ours are token offsets of non-empty documents.
    starts = np.unique(seq_starts[documents[:-1]])
    np.testing.assert_array_equal(stream.boundaries, starts[starts < len(tokens)])
    ends = np.append(starts[1:], len(tokens))
    flat = [tokens[a:b] for a, b in zip(starts, ends, strict=True) if b > a]
    got = windows_of(zf.Loader(zf.Windows(stream, 4, stride=2, phase=0), batch_size=16))
    np.testing.assert_array_equal(
        got, np.stack([f[s : s + 4] for f in flat for s in oracle_starts(len(f), 4, 2)])
    )


def test_megatron_index_that_lies_is_refused(tmp_path: Path) -> None:
    docs = [[np.arange(6, dtype=np.uint16), np.arange(4, dtype=np.uint16)], [np.arange(5, dtype=np.uint16)]]
    write_megatron(tmp_path / "ok", docs)
    good = (tmp_path / "ok.idx").read_bytes()
    cases = {
        "short": (good[:20], "shorter than"),
        "magic": (b"XXIDIDX\x00\x00" + good[9:], "magic"),
        "version": (good[:9] + np.array([2], "<u8").tobytes() + good[17:], "version 2"),
        "code": (good[:17] + bytes([42]) + good[18:], "unknown dtype code 42"),
        "counts": (good[:18] + np.array([99], "<u8").tobytes() + good[26:], "99 sequences"),
        "order": (
            good[: 34 + 12] + np.array([0, 2, 12], "<i8").tobytes() + good[34 + 36 :],
            "sequence 1 points",
        ),
        "documents": (good[: len(good) - 24] + np.array([0, 2, 1], "<i8").tobytes(), "document indices"),
        "tail": (good + b"\x00" * 5, "the file has"),
    }
    for name, (data, words) in cases.items():
        (tmp_path / f"{name}.idx").write_bytes(data)
        (tmp_path / f"{name}.bin").write_bytes((tmp_path / "ok.bin").read_bytes())
        message = bad(zf.LayoutError, "paths", zf.open_tokens, tmp_path / name, format="megatron")
        assert words in message and f"{name}.idx" in message, (name, message)
    (tmp_path / "float.idx").write_bytes(good[:17] + bytes([7]) + good[18:])
    (tmp_path / "float.bin").write_bytes((tmp_path / "ok.bin").read_bytes())
    assert "float32" in bad(zf.DTypeError, "paths", zf.open_tokens, tmp_path / "float", format="megatron")
    (tmp_path / "ok.bin").write_bytes((tmp_path / "ok.bin").read_bytes()[:-2])
    assert "ok.bin has 28" in bad(zf.LayoutError, "paths", zf.open_tokens, tmp_path / "ok", format="megatron")
    bad(zf.FileMissingError, "paths", zf.open_tokens, tmp_path / "missing", format="megatron")
    bad(zf.PipelineError, "format", zf.open_tokens, tmp_path / "ok", format="hdf5")

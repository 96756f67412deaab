"""Windows: documents from a BOS token, ``document_position``, sampling with replacement.

The streams hold distinct values where a test needs to know where a window came from, so the
oracles (NumPy, written here) recover each window's start from its first value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import describe_exit, run_python
from test_windows import bad, oracle_starts, windows_of

import zerofeed as zf

BOS = 50256


def documents(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Documents that each start with BOS, of lengths 1 (BOS alone) to 60."""
    return [
        np.concatenate([[BOS], rng.integers(0, 50000, int(rng.integers(0, 60)))]).astype(np.uint16)
        for _ in range(count)
    ]


def test_bos_boundaries_are_every_occurrence_of_the_token(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = documents(rng, 300)
    stream = np.concatenate([rng.integers(0, 50000, 7).astype(np.uint16), *docs])  # text before the first BOS
    stream[:150].tofile(tmp_path / "a.bin")
    stream[150:].tofile(tmp_path / "b.bin")
    tokens = zf.open_tokens([tmp_path / "a.bin", tmp_path / "b.bin"], dtype="uint16")
    w = zf.Windows(tokens, 8, stride=3, target="next", bos=BOS, phase=0)
    got = windows_of(zf.Loader(w, batch_size=32))
    cuts = sorted(set(np.flatnonzero(stream == BOS).tolist()) | {0, 150, len(stream)})
    expected = [
        stream[s : s + 9] for a, b in zip(cuts, cuts[1:], strict=False) for s in oracle_starts(b, 9, 3, a)
    ]
    full = np.concatenate([got["input"], got["target"][:, -1:]], axis=1)
    np.testing.assert_array_equal(full, np.stack(expected))
    # The same windows as the boundaries given by hand.
    by_hand = zf.Windows(
        tokens, 8, stride=3, target="next", boundaries=np.flatnonzero(stream == BOS), phase=0
    )
    np.testing.assert_array_equal(windows_of(zf.Loader(by_hand, batch_size=32))["input"], got["input"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.int64])
def test_bos_scan_reads_every_token_dtype(dtype: type) -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 100, 20000).astype(dtype)
    tokens[rng.integers(0, 20000, 50)] = 101
    w = zf.Windows(tokens, 1, bos=101, phase=0, positions=True)
    got = windows_of(zf.Loader(w, batch_size=4096))
    # Length 1, stride 1: the position of each token in its document, a NumPy cumulative count.
    doc_start = np.maximum.accumulate(np.where(tokens == 101, np.arange(20000), 0))
    np.testing.assert_array_equal(got["input"][:, 0], tokens)
    np.testing.assert_array_equal(got["document_position"][:, 0], np.arange(20000) - doc_start)


@pytest.mark.parametrize("target", [None, "next", 5])
def test_document_position_restarts_at_each_document(target: str | int | None) -> None:
    rng = np.random.default_rng(2)
    parts = [np.arange(0, 400, dtype=np.int32), np.arange(1000, 1300, dtype=np.int32)]
    stream = np.concatenate(parts)
    docs = np.unique(rng.integers(1, len(stream), 12))
    length = 6
    w = zf.Windows(parts, length, stride=4, target=target, boundaries=docs, positions=True)
    assert w.fields[-1] == "document_position" and w.fields[0] == "input"
    loader = zf.Loader(w, batch_size=16, shuffle=True, seed=4, dtype="int32")
    loader.set_epoch(3)  # a shifted grid: positions follow it
    got = windows_of(loader)
    cuts = np.array(sorted(set(docs.tolist()) | {0, 400}))
    start = np.searchsorted(stream, got["input"][:, 0])  # values are distinct: the step each came from
    doc_start = cuts[np.searchsorted(cuts, start, side="right") - 1]
    np.testing.assert_array_equal(got["document_position"], (start - doc_start)[:, None] + np.arange(length))
    assert got["document_position"].dtype == np.int32
    if target == "next":  # the target's positions are one later: still inside the document
        last = np.searchsorted(stream, got["target"][:, -1])
        assert (cuts[np.searchsorted(cuts, last, side="right") - 1] == doc_start).all()


def test_replacement_draws_are_keyed_deterministic_and_inside_documents() -> None:
    stream = np.arange(5000, dtype=np.uint32)
    docs = np.array([0, 1000, 1003, 2500])  # one document too short for a window
    w = zf.Windows(stream, 16, target="next", boundaries=docs, sampling="replacement")
    grid = zf.Windows(stream, 16, target="next", boundaries=docs, phase=0)
    assert len(w) == len(grid)  # an epoch reads as many windows as the fixed grid has

    def epoch(workers: int, epoch: int = 0, **kw: object) -> np.ndarray:
        loader = zf.Loader(w, batch_size=7, seed=21, workers=workers, **kw)  # type: ignore[arg-type]
        loader.set_epoch(epoch)
        return windows_of(loader)["input"][:, 0]

    one = epoch(1)
    np.testing.assert_array_equal(one, epoch(3))
    assert not np.array_equal(one, epoch(1, 1)), "a new epoch draws new starts"
    # Every start is one a window fits after, inside its document.
    cuts = np.array([0, 1000, 1003, 2500, 5000])
    doc = np.searchsorted(cuts, one, side="right") - 1
    assert (one + 17 <= cuts[doc + 1]).all()
    assert 0 < len(np.unique(one)) <= len(one)
    # Shards read different indices, so different keys: together they are the whole epoch
    # (ranks are evened out by repeating a sample or two, as for arrays).
    ranks = np.concatenate([epoch(2, shard=(r, 3)) for r in range(3)])
    assert set(ranks.tolist()) == set(one.tolist()) and len(one) <= len(ranks) < len(one) + 3
    assert w.window_start(5, seed=21)[1] == one[5]


def test_replacement_is_uniform_over_valid_starts_and_resumes() -> None:
    stream = np.arange(40, dtype=np.uint16)
    w = zf.Windows([stream[:20], stream[20:]], 5, sampling="replacement")
    loader = zf.Loader(w, batch_size=2, shuffle=True, seed=1)
    counts = np.zeros(40, dtype=int)
    for e in range(300):
        loader.set_epoch(e)
        for b in loader:
            np.add.at(counts, b[:, 0], 1)
    valid = np.array([s for part in (0, 20) for s in range(part, part + 16)])
    assert set(np.flatnonzero(counts)) == set(valid.tolist())
    expected = counts.sum() / len(valid)
    assert (np.abs(counts[valid] - expected) < 5 * np.sqrt(expected)).all(), counts
    # Resume mid-epoch from state_dict.
    loader.set_epoch(7)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    rest = [b.copy() for b in it]
    again = zf.Loader(w, batch_size=2, shuffle=True, seed=1)
    again.load_state_dict(state)
    np.testing.assert_array_equal(np.concatenate(rest), np.concatenate(list(again)))


def test_bad_document_arguments_are_typed_and_named() -> None:
    t = np.arange(100, dtype=np.uint16)
    W = zf.Windows
    assert "70000" in bad(zf.DTypeError, "bos", W, t, 4, bos=70000)
    bad(zf.DTypeError, "bos", W, t, 4, bos=-1)
    bad(zf.DTypeError, "bos", W, t, 4, bos=2**70)
    bad(zf.DTypeError, "bos", W, t.astype(np.float32), 4, bos=1)
    assert "not both" in bad(zf.PipelineError, "bos", W, t, 4, bos=1, boundaries=[0, 5])
    bad(zf.PipelineError, "bos", W, t, 4, bos="1")
    bad(zf.PipelineError, "bos", W, t, 4, bos=True)
    assert "contiguous" in bad(zf.PipelineError, "bos", W, t[::2], 4, bos=1)
    bad(zf.PipelineError, "sampling", W, t, 4, sampling="random")
    bad(zf.PipelineError, "positions", W, t, 4, positions=1)


def test_per_feature_normalize_and_cast_on_series_windows() -> None:
    scaled = np.random.default_rng(5).standard_normal((300, 3)) * [1, 10, 100] + [0, 5, -50]
    series = scaled.astype(np.float32)
    mean, std = series.mean(axis=0), series.std(axis=0)
    w = zf.Windows(series, 24, target=6, phase=0)
    ops = {"input": [zf.Normalize(mean.tolist(), std.tolist(), scale=1.0)], "target": [zf.Cast("float64")]}
    got = windows_of(zf.Loader(w, batch_size=5, ops=ops))
    starts = oracle_starts(300, 30, 24)
    inputs = np.stack([series[s : s + 24] for s in starts]).astype(np.float64)
    np.testing.assert_allclose(got["input"], (inputs - mean) / std, rtol=1e-5, atol=1e-5)
    assert got["input"].shape == (len(starts), 24, 3) and got["input"].dtype == np.float32
    np.testing.assert_array_equal(got["target"], np.stack([series[s + 24 : s + 30] for s in starts]))
    assert got["target"].dtype == np.float64
    # (scale=1.0: the default, 1/255, is for uint8 pixels.) One value per feature only;
    # crops and flips are for images; 1-d tokens have one feature.
    with pytest.raises(zf.PipelineError, match="3 channel"):
        zf.Loader(w, batch_size=5, ops={"input": [zf.Normalize([0.0, 1.0], [1.0, 1.0])]})
    with pytest.raises(zf.PipelineError, match="crop and flip images only"):
        zf.Loader(
            w, batch_size=5, ops={"input": [zf.Normalize(mean.tolist(), std.tolist()), zf.RandomFlip()]}
        )
    tokens = zf.Windows(np.arange(100, dtype=np.uint16), 10)
    with pytest.raises(zf.PipelineError, match="1 channel"):
        zf.Loader(tokens, batch_size=5, ops=[zf.Normalize([0.0, 1.0], [1.0, 1.0])])


def test_a_1e11_token_stream_opens_without_memory_per_window(tmp_path: Path) -> None:
    """A sparse file of 10^11 uint16 tokens (200 GB on paper): open, window, shuffle and read a
    batch in a fresh process; memory must not grow with the ~10^8 windows (8 bytes per window
    would be 780 MB)."""
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(2 * 10**11)
    proc = run_python(
        f"""
        import numpy as np, zerofeed as zf
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * 4096
        before = rss()
        w = zf.Windows(zf.open_tokens({str(path)!r}, dtype="uint16"), 1024, target="next")
        loader = zf.Loader(w, batch_size=12, shuffle=True, seed=0, dtype="int64")
        batch = next(iter(loader))
        assert batch["input"].shape == (12, 1024) and not batch["input"].any()
        print(len(w), rss() - before)
        """
    )
    assert proc.returncode == 0, describe_exit(proc)
    windows, grown = map(int, proc.stdout.split())
    assert windows == (10**11 - 1024) // 1024  # the random phase keeps room for the target
    assert grown < 48 * 2**20, f"open + first batch grew RSS by {grown / 2**20:.1f} MiB"


def test_a_token_file_changed_under_the_map_fails_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / "train.bin"
    np.arange(4096, dtype=np.uint16).tofile(path)
    loader = zf.Loader(zf.Windows(zf.open_tokens(path, dtype="uint16"), 64, target="next"), batch_size=4)
    it = iter(loader)
    next(it)
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(zf.SourceChangedError, match="train.bin"):
        for _ in it:
            pass

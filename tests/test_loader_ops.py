"""Loader ops against a NumPy reference: every op, uint8 and float sources, HWC and CHW,
every output dtype. Random choices are recovered by searching all crop windows."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest

import zerofeed as zf

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def images(n: int = 12, h: int = 10, w: int = 9, c: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal((n, h, w, c)).astype(dtype) * 50 + 100
    return rng.integers(0, 256, (n, h, w, c)).astype(dtype)


def normalize_reference(x: np.ndarray, mean, std, scale: float) -> np.ndarray:
    """What Normalize computes: x*a + b with a = scale/std and b = -mean/std, in float32."""
    a = (np.float64(scale) / np.asarray(std, np.float64)).astype(np.float32)
    b = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    return x.astype(np.float32) * a + b


def all_batches(loader: zf.Loader) -> np.ndarray:
    return np.concatenate([np.asarray(b) for b in loader])


def candidates(sample: np.ndarray, h: int, w: int):
    """Every crop window of a sample, unflipped and flipped."""
    for top, left in itertools.product(range(sample.shape[0] - h + 1), range(sample.shape[1] - w + 1)):
        window = sample[top : top + h, left : left + w]
        yield window
        yield window[:, ::-1]


def test_no_ops_gathers_samples_in_order():
    data = images()
    assert np.array_equal(all_batches(zf.Loader(data, batch_size=5)), data)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.uint16])
def test_center_crop_and_forced_flip(dtype):
    data = images(dtype=dtype)
    plain = all_batches(zf.Loader(data, batch_size=4, ops=[zf.CenterCrop(6, 5)]))
    top, left = (10 - 6) // 2, (9 - 5) // 2
    assert np.array_equal(plain, data[:, top : top + 6, left : left + 5])
    flipped = all_batches(zf.Loader(data, batch_size=4, ops=[zf.CenterCrop(6, 5), zf.RandomFlip(1.0)]))
    assert np.array_equal(flipped, data[:, top : top + 6, left : left + 5][:, :, ::-1])
    never = all_batches(zf.Loader(data, batch_size=4, ops=[zf.RandomFlip(0.0)]))
    assert np.array_equal(never, data)


def test_random_crop_is_a_window_of_its_own_sample():
    data = images(n=20)
    out = all_batches(zf.Loader(data, batch_size=6, ops=[zf.RandomCrop(4, 3), zf.RandomFlip()]))
    assert out.shape == (20, 4, 3, 3)
    for sample, produced in zip(data, out, strict=True):
        assert any(np.array_equal(produced, c) for c in candidates(sample, 4, 3))


@pytest.mark.parametrize("source_dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("out_dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("chw", [False, True])
def test_normalize_every_dtype_and_layout(source_dtype, out_dtype, chw):
    data = images(dtype=source_dtype)
    ops = [zf.CenterCrop(8, 8), zf.Normalize(MEAN, STD, dtype=out_dtype)]
    if chw:
        ops.append(zf.ToCHW())
    out = all_batches(zf.Loader(data, batch_size=5, ops=ops))
    # The default scale follows what Normalize reads: uint8 pixels are taken to [0, 1] first,
    # float values are used as they are.
    scale = 1 / 255 if source_dtype == np.uint8 else 1.0
    expected = normalize_reference(data[:, 1:9, 0:8], MEAN, STD, scale)
    if chw:
        expected = expected.transpose(0, 3, 1, 2)
    assert out.dtype == (np.dtype(ml_dtypes.bfloat16) if out_dtype == "bfloat16" else np.dtype(out_dtype))
    assert out.shape == expected.shape
    tolerance = {"float32": 1e-5, "float64": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}[out_dtype]
    np.testing.assert_allclose(out.astype(np.float64), expected, rtol=tolerance, atol=tolerance)


def test_normalize_default_scale_follows_the_values_it_reads():
    """scale=None: 1/255 for uint8 values, 1 for anything else (a float series is never
    divided by 255 unasked); an explicit scale is used as given."""
    pixels = images(n=6)
    floats = pixels.astype(np.float32)
    mean, std = [0.5, 0.25, 0.75], [2.0, 4.0, 0.5]

    def run(data, ops):
        return all_batches(zf.Loader(data, batch_size=3, ops=ops)).astype(np.float64)

    close = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(
        run(pixels, [zf.Normalize(mean, std)]), normalize_reference(pixels, mean, std, 1 / 255), **close
    )
    np.testing.assert_allclose(
        run(floats, [zf.Normalize(mean, std)]), normalize_reference(floats, mean, std, 1.0), **close
    )
    # After a Cast, Normalize reads floats: no 1/255.
    cast_first = run(pixels, [zf.Cast("float32"), zf.Normalize(mean, std)])
    np.testing.assert_allclose(cast_first, normalize_reference(floats, mean, std, 1.0), **close)
    explicit = run(floats, [zf.Normalize(mean, std, scale=1 / 255)])
    np.testing.assert_allclose(explicit, normalize_reference(floats, mean, std, 1 / 255), **close)
    assert "scale=None" in repr(zf.Normalize(mean, std))


@pytest.mark.parametrize("target", ["float32", "int16", "uint8", "float16"])
def test_cast_matches_astype(target):
    data = images(dtype=np.float32)
    out = all_batches(zf.Loader(data, batch_size=4, ops=[zf.Cast(target)]))
    if np.dtype(target).kind in "iu":
        # NumPy leaves out-of-range float->int undefined; compare where it is defined.
        info = np.iinfo(target)
        inside = (data >= info.min) & (data <= info.max)
        assert np.array_equal(out[inside], data.astype(target)[inside])
    else:
        assert np.array_equal(out, data.astype(target))


def test_grayscale_hw_samples_and_labels():
    data = images(c=1)[..., 0]
    labels = np.arange(12, dtype=np.int64) * 10
    with pytest.raises(zf.PipelineError, match=r"field \"x\".*3-D"):
        zf.Loader({"x": data, "y": labels}, batch_size=5, ops={"x": [zf.CenterCrop(4, 4), zf.ToCHW()]})
    loader = zf.Loader({"x": data, "y": labels}, batch_size=5, ops={"x": [zf.CenterCrop(4, 4)]})
    batches = list(loader)
    assert [b["y"].tolist() for b in batches] == [[0, 10, 20, 30, 40], [50, 60, 70, 80, 90], [100, 110]]
    assert np.array_equal(np.concatenate([b["x"] for b in batches]), data[:, 3:7, 2:6])


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([zf.RandomCrop(20, 20)], "20"),
        ([zf.Normalize([0.5, 0.5], [0.2, 0.2])], "mean"),
        ([zf.ToCHW(), zf.ToCHW()], "ToCHW"),
    ],
)
def test_invalid_chains_are_refused_at_construction(ops, message):
    with pytest.raises(zf.PipelineError, match=message) as info:
        zf.Loader(images(), batch_size=2, ops=ops)
    assert isinstance(info.value, ValueError)


def test_layout_op_on_a_vector_field_names_the_field():
    with pytest.raises(zf.PipelineError, match="label"):
        zf.Loader({"label": np.arange(10.0)}, batch_size=2, ops={"label": [zf.ToCHW()]})


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2, "workers": 0}, "workers"),
        ({"batch_size": 2, "prefetch": -1}, "prefetch"),
        ({"batch_size": 2, "shard": (3, 2)}, "shard"),
        ({"batch_size": 2, "ops": {"nope": []}}, "ops"),
        ({"batch_size": 2, "memory_budget": 10}, "memory_budget"),
    ],
)
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(zf.ZerofeedError) as info:
        zf.Loader(images(), **kwargs)
    assert info.value.argument == argument


def test_op_arguments_are_checked():
    with pytest.raises(zf.PipelineError):
        zf.RandomCrop(0, 4)
    with pytest.raises(zf.PipelineError):
        zf.RandomFlip(1.5)
    with pytest.raises(zf.PipelineError, match="std"):
        zf.Normalize([0.0], [0.0])


def test_fields_of_different_lengths_are_refused():
    with pytest.raises(zf.PipelineError, match="samples"):
        zf.Loader({"a": np.zeros((4, 2)), "b": np.zeros(5)}, batch_size=2)

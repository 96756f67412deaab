"""The image recipes end to end on a folder of real photographs (scikit-image, scikit-learn
and matplotlib sample photos re-encoded by Pillow into ImageFolder class folders): the train
recipe, the validation recipe against Pillow + torchvision, fast (region + DCT-scaled)
decode against exact decode, determinism, and bad files skipped or raised with their names.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import zerofeed as zf

torch = require("torch")
Image = require("PIL.Image")
skdata = require("skimage.data")
datasets = require("sklearn.datasets")
cbook = require("matplotlib.cbook")
from torchvision.transforms.v2 import functional as F  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def real_photos() -> list[np.ndarray]:
    raw = [getattr(skdata, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")]
    raw += list(datasets.load_sample_images().images)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        raw.append(np.asarray(Image.open(f).convert("RGB")))
    out = []
    for i, a in enumerate(raw):
        im = Image.fromarray(a).convert("RGB")
        short = (300, 375, 420, 480)[i % 4]
        scale = short / min(im.size)
        out.append(np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of JPEGs (baseline / progressive, 4:2:0 / 4:4:4, q75-95) and one PNG."""
    root = tmp_path_factory.mktemp("photos")
    for k, pixels in enumerate(real_photos()):
        cls = root / ("cats" if k % 2 else "dogs")
        cls.mkdir(exist_ok=True)
        im = Image.fromarray(pixels)
        if k == 3:
            im.save(cls / f"{k}.png")
        else:
            im.save(
                cls / f"{k}.jpg",
                quality=(75, 85, 95)[k % 3],
                subsampling=2 if k % 2 else 0,
                progressive=k % 3 == 1,
            )
    return root


def batches(loader: zf.Loader) -> list[dict[str, np.ndarray]]:
    return [{k: np.asarray(v).copy() for k, v in b.items()} for b in loader]


def test_train_recipe_on_a_photo_folder_is_deterministic_and_resumes(folder: Path):
    ops = {"image": [zf.RandomResizedCrop(224), zf.RandomFlip(), zf.Normalize(MEAN, STD), zf.ToCHW()]}

    def make(workers: int) -> zf.Loader:
        return zf.Loader(
            zf.Images(folder, labels="folders"), batch_size=3, shuffle=True, seed=4, workers=workers, ops=ops
        )

    loader = make(1)
    assert loader.classes == ["cats", "dogs"]
    tensors = list(loader.torch())
    assert tensors[0]["image"].shape == (3, 3, 224, 224) and tensors[0]["image"].dtype == torch.float32
    assert sorted(torch.cat([t["label"] for t in tensors]).tolist()) == [0, 0, 0, 1, 1, 1, 1]
    one, three = batches(make(1)), batches(make(3))
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    resumed = make(3)
    first = make(2)
    it = iter(first)
    kept = next(it)["image"]
    snapshot = np.array(kept)
    state = first.state_dict()
    rest = [np.asarray(b["image"]).copy() for b in it]
    np.testing.assert_array_equal(kept, snapshot)
    resumed.load_state_dict(state)
    again = [np.asarray(b["image"]).copy() for b in resumed]
    assert len(again) == len(rest) == 2
    for a, b in zip(rest, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_validation_recipe_matches_pillow_and_torchvision(folder: Path):
    """fast_decode=False: zerofeed decodes every pixel, then Resize(256) + CenterCrop(224).
    The reference decodes with Pillow and resizes with torchvision v2 (uint8 tensors).
    Tolerance: the two JPEG decoders' IDCT and chroma upsampling differ by a few levels
    (imgdec's decode tests bound it), and resampling by one level (test_image_ops)."""
    images = zf.Images(folder, fast_decode=False)
    loader = zf.Loader(images, batch_size=7, ops={"image": [zf.Resize(256), zf.CenterCrop(224)]})
    got = next(iter(loader))["image"]
    assert len(images.files) == 7
    for k, path in enumerate(images.files):
        ref = F.resize(torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1), [256])
        ref = F.center_crop(ref, [224, 224]).permute(1, 2, 0).numpy()
        diff = np.abs(got[k].astype(int) - ref.astype(int))
        assert diff.mean() < 1.0 and diff.max() <= 24, (path, diff.mean(), diff.max())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_fast_decode_stays_close_to_exact_decode(folder: Path):
    """Region + DCT-scaled decode against full decode + the same resize, on the train crop
    and a strong downscale (Resize to 64: scale 1/4 or 1/8). Measured on these photos:
    see the printed figures (README states them); bound: PSNR >= 30 dB, mean error <= 3."""
    for ops in ([zf.RandomResizedCrop(112)], [zf.Resize((64, 64))]):
        fast = next(iter(zf.Loader(zf.Images(folder), batch_size=7, seed=1, ops={"image": ops})))["image"]
        exact = next(
            iter(zf.Loader(zf.Images(folder, fast_decode=False), batch_size=7, seed=1, ops={"image": ops}))
        )["image"]
        diff = np.abs(fast.astype(int) - exact.astype(int))
        print(
            f"fast_decode {ops[0]!r}: mean abs {diff.mean():.3f}, max {diff.max()}, "
            f"PSNR {psnr(fast, exact):.1f} dB"
        )
        assert psnr(fast, exact) >= 30 and diff.mean() <= 3
        assert not np.array_equal(fast, exact)  # the fast path did take a shortcut


def test_bad_files_are_skipped_deterministically_or_raised_by_name(folder: Path, tmp_path: Path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    photos = sorted(folder.rglob("*.jpg"))
    for k, src in enumerate(photos[:4]):
        (tmp_path / ("a" if k % 2 else "b") / src.name).write_bytes(src.read_bytes())
    data = photos[4].read_bytes()
    (tmp_path / "a" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "b" / "notes.jpg").write_bytes(b"this is text, not a JPEG")
    ops = {"image": [zf.RandomResizedCrop(64), zf.ToCHW()]}

    def run(workers: int) -> tuple[list[dict[str, np.ndarray]], dict]:
        loader = zf.Loader(
            zf.Images(tmp_path, on_error="skip"), batch_size=2, shuffle=True, seed=2, workers=workers, ops=ops
        )
        return batches(loader), loader.stats

    (one, stats1), (three, stats3) = run(1), run(3)
    assert sum(len(b["image"]) for b in one) == 6
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    for stats in (stats1, stats3):
        assert stats["skipped"] == 2
        assert sorted(os.path.basename(f) for f in stats["skipped_files"]) == ["cut.jpg", "notes.jpg"]
    loader = zf.Loader(zf.Images(tmp_path), batch_size=2, ops=ops)
    with pytest.raises(zf.ImageDecodeError) as info:
        list(loader)
    assert os.path.basename(info.value.file) in ("cut.jpg", "notes.jpg")
    assert info.value.file in str(info.value)


def test_a_variable_size_source_needs_a_chain_that_fixes_the_size(folder: Path):
    for ops in ([], [zf.Resize(256)], [zf.RandomFlip()]):
        with pytest.raises(zf.PipelineError, match="size|shape") as info:
            zf.Loader(zf.Images(folder), batch_size=2, ops={"image": ops})
        assert info.value.argument in ("ops", "source")
    # A crop larger than an image is an error naming the file.
    loader = zf.Loader(zf.Images(folder), batch_size=7, ops={"image": [zf.CenterCrop(460)]})
    with pytest.raises(zf.PipelineError, match=r"\.(jpg|png)") as info:
        list(loader)


def test_images_from_bytes_and_arrow_go_through_the_same_chain(folder: Path):
    pa = require("pyarrow")
    paths = sorted(folder.rglob("*.jpg"))[:3]
    blobs = [p.read_bytes() for p in paths]
    ops = {"image": [zf.Resize((32, 48))]}
    from_files = next(iter(zf.Loader(zf.Images([str(p) for p in paths]), batch_size=3, ops=ops)))["image"]
    for source in (blobs, np.array(blobs, dtype=object), pa.array(blobs, type=pa.binary())):
        got = next(iter(zf.Loader(zf.Images(source), batch_size=3, ops=ops)))["image"]
        np.testing.assert_array_equal(got, from_files)


def test_a_reused_decode_buffer_never_shows_an_earlier_image(folder: Path):
    # One worker decodes every image into the allocation the last one used; big and small
    # images alternate, so stale pixels would sit inside a smaller image's rows.
    big = sorted(folder.rglob("*.jpg"))
    blobs = []
    for k, p in enumerate(big):
        blobs.append(p.read_bytes())
        small = Image.open(p).convert("RGB").resize((97 + 13 * k, 61 + 7 * k))
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())
    ops = {"image": [zf.CenterCrop(56)]}
    together = batches(zf.Loader(zf.Images(blobs), batch_size=1, workers=1, ops=ops))
    for blob, got in zip(blobs, together, strict=True):
        alone = next(iter(zf.Loader(zf.Images([blob]), batch_size=1, workers=1, ops=ops)))
        np.testing.assert_array_equal(got["image"], np.asarray(alone["image"]))


def test_later_epochs_skip_rows_with_entry_points_and_give_the_same_pixels(folder: Path):
    # Epoch 0 records where each JPEG's MCU rows start; later epochs, each with new crops,
    # start the scan at the crop's first row. A fresh Loader set to the same epoch decodes
    # from the first row: the batches must be identical. Uncropped u8 output (no
    # normalize) so that every pixel of the decode shows.
    ops = {"image": [zf.RandomResizedCrop(96, scale=(0.05, 0.3)), zf.RandomFlip()]}

    def make() -> zf.Loader:
        return zf.Loader(
            zf.Images(folder, labels="folders"), batch_size=2, shuffle=True, seed=9, workers=2, ops=ops
        )

    warm = make()
    epochs = [batches(warm) for _ in range(4)]
    for epoch in (1, 2, 3):
        cold = make()
        cold.set_epoch(epoch)
        for a, b in zip(epochs[epoch], batches(cold), strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])


def test_the_training_example_learns_in_short_mode():
    """examples/train_images_torch.py --short: six classes (chance 0.17); two epochs reach
    about 0.5 on held-out tiles, so 0.3 is a clear margin that still fails a broken loader."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "train_images_torch.py"
    spec = importlib.util.spec_from_file_location("train_images_torch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--short"]) > 0.3


def test_a_folder_of_many_files_keeps_no_map_or_memory_per_file(tmp_path: Path):
    """Files are read per sample into the worker's buffer: iterating 600 files adds no map
    entry per file (an ImageNet folder would otherwise run out of vm.max_map_count)."""
    photo = Image.fromarray(real_photos()[0]).resize((64, 48))
    for k in range(600):
        cls = tmp_path / f"c{k % 3}"
        cls.mkdir(exist_ok=True)
        photo.save(cls / f"{k}.jpg", quality=80)
    images = zf.Images(tmp_path, labels="folders")
    loader = zf.Loader(images, batch_size=50, shuffle=True, seed=1, ops={"image": [zf.Resize((32, 32))]})

    def maps() -> int:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)

    before = maps()
    seen = sum(len(b["label"]) for b in loader)
    seen += sum(len(b["label"]) for b in loader)  # a second epoch reads them again
    assert seen == 1200
    assert maps() - before < 100, "image files must not stay mapped after they were read"
    # images[i] reads the file too, and gives the same pixels as the loader's source.
    assert images[5]["image"].shape == (48, 64, 3)
    assert maps() - before < 100

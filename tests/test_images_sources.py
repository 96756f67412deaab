"""zf.Images from folders, file lists, bytes, NumPy object arrays, pyarrow arrays and tar
shards: the same samples every way; bad folders, labels and shards are typed errors."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from image_samples import jpeg, photos, pillow, png

import zerofeed as zf

CLASSES = ["cat", "coffee", "space"]


def _encoded() -> list[tuple[str, int, bytes]]:
    """(file name, label, bytes): JPEGs of several settings and PNGs of real photos."""
    image = require("PIL.Image")
    p = photos()
    return [
        ("chelsea.jpg", 0, jpeg(p["chelsea"], quality=85)),
        ("chelsea_small.png", 0, png(image.fromarray(p["chelsea"][::2, ::2]))),
        ("coffee.jpeg", 1, jpeg(p["coffee"], quality=95, subsampling=0, progressive=True)),
        ("coffee_gray.JPG", 1, jpeg(p["coffee"], mode="L")),
        ("astronaut.png", 2, png(image.fromarray(p["astronaut"]).convert("P"))),
        ("rocket.jpg", 2, jpeg(p["rocket"], quality=75)),
    ]


def _folder(root: Path) -> list[tuple[str, int, bytes]]:
    items = _encoded()
    for name, label, data in items:
        (root / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        (root / CLASSES[label] / name).write_bytes(data)
    (root / "cat" / "notes.txt").write_text("not an image, and ignored by name")
    # sorted paths within each class, as ImageFolder lists them
    return sorted(items, key=lambda it: (it[1], it[0]))


def _tar(path: Path, items: list[tuple[str, int, bytes]], *, extra: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
    with tarfile.open(path, "w") as tar:
        for i, (name, label, data) in enumerate(items):
            ext = name.rsplit(".", 1)[1]
            for member, payload in (
                (f"shard/{i:06d}.{ext}", data),
                (f"shard/{i:06d}.cls", f"{label}\n".encode()),
            ):
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        for member, payload in extra:
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _decoded(images: zf.Images) -> list[tuple[np.ndarray, int | None]]:
    return [(s["image"], s.get("label")) for s in (images[i] for i in range(len(images)))]


def test_every_source_gives_the_same_samples(tmp_path: Path) -> None:
    pa = require("pyarrow")
    items = _folder(tmp_path / "train")
    folder = zf.Images(tmp_path / "train", labels="folders")
    assert folder.classes == CLASSES
    assert [os.path.basename(f) for f in folder.files] == [name for name, _, _ in items]
    labels = [label for _, label, _ in items]
    datas = [data for _, _, data in items]
    files = zf.Images([tmp_path / "train" / CLASSES[lab] / name for name, lab, _ in items], labels=labels)
    from_bytes = zf.Images(datas, labels=labels)
    from_numpy = zf.Images(np.array(datas, dtype=object), labels=np.array(labels))
    from_arrow = zf.Images(pa.array(datas, pa.binary()), labels=labels)
    from_large = zf.Images(
        pa.chunked_array(
            [pa.array(datas[:2], pa.large_binary()), pa.array(datas[1:], pa.large_binary())[1:]]
        ),
        labels=labels,
    )
    _tar(tmp_path / "train-000000.tar", items[:4])
    _tar(tmp_path / "train-000001.tar", items[4:])
    from_tar = zf.Images(zf.open_tar([tmp_path / "train-000000.tar", str(tmp_path / "train-000001.tar")]))
    want = [(pillow(data, "RGB"), label) for _, label, data in items]
    for source in (folder, files, from_bytes, from_numpy, from_arrow, from_large, from_tar):
        assert len(source) == len(items) and source.fields == ("image", "label")
        got = _decoded(source)
        for (image, label), (ref, ref_label) in zip(got, want, strict=True):
            assert label == ref_label
            assert image.shape == ref.shape and image.dtype == np.uint8
            assert np.abs(image.astype(int) - ref).max() <= 1, source
    assert from_tar.files[0].endswith("train-000000.tar:shard/000000.jpg")
    assert "6 images, 3 classes" in repr(folder)
    gray = zf.Images(tmp_path / "train", labels="folders", mode="L")
    assert gray[2]["image"].shape[2] == 1
    assert np.array_equal(gray[2]["image"], pillow(items[2][2], "L"))
    unlabelled = zf.Images(tmp_path / "train")
    assert unlabelled.fields == ("image",) and "label" not in unlabelled[0] and len(unlabelled) == 6


def test_arrow_bytes_are_read_in_place() -> None:
    pa = require("pyarrow")
    datas = [data for _, _, data in _encoded()]
    arr = pa.array(datas, pa.large_binary())
    images = zf.Images(arr)
    del arr, datas  # the source keeps the Arrow buffers alive
    assert images[3]["image"].shape[2] == 3


def test_bad_folders_and_labels(tmp_path: Path) -> None:
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "readme.txt").write_text("no images here")
    for labels in ("folders", None):
        with pytest.raises(zf.ImageSourceError, match="no image files") as err:
            zf.Images(tmp_path / "empty", labels=labels)
        assert err.value.file.startswith(str(tmp_path / "empty"))
    with pytest.raises(zf.FileMissingError, match="nowhere.jpg") as missing:
        zf.Images([tmp_path / "empty" / "a" / "readme.txt", tmp_path / "nowhere.jpg"])
    assert missing.value.file == str(tmp_path / "nowhere.jpg")
    datas = [data for _, _, data in _encoded()]
    with pytest.raises(zf.ImageSourceError, match="labels has 2 entries for 6 images") as err2:
        zf.Images(datas, labels=[1, 2])
    assert err2.value.argument == "labels"
    with pytest.raises(zf.PipelineError, match="mode"):
        zf.Images(datas, mode="CMYK")
    with pytest.raises(zf.PipelineError, match="on_error"):
        zf.Images(datas, on_error="ignore")
    with pytest.raises(zf.UnsupportedSourceError):
        zf.Images(42)
    with pytest.raises(zf.ImageSourceError, match="not a folder"):
        zf.Images(tmp_path / "nowhere")


def test_bad_tar_shards(tmp_path: Path) -> None:
    items = _encoded()[:2]
    good = tmp_path / "good.tar"
    _tar(good, items)
    cut = tmp_path / "cut.tar"
    data = good.read_bytes()
    cut.write_bytes(data[: 512 + len(items[0][2]) // 2])  # inside the first image's data
    with pytest.raises(
        zf.ImageSourceError, match='cut short inside or after member "shard/000000.jpg"'
    ) as err:
        zf.open_tar(cut)
    assert err.value.file == str(cut)
    at_boundary = tmp_path / "boundary.tar"
    at_boundary.write_bytes(data[: data.index(b"shard/000001")])  # whole members, no end blocks
    with pytest.raises(zf.ImageSourceError, match="cut short"):
        zf.open_tar(at_boundary)
    for evil in ("../escape.jpg", "/etc/passwd.jpg", "a/../../b.png"):
        shard = tmp_path / "evil.tar"
        _tar(shard, items, extra=[(evil, items[0][2])])
        with pytest.raises(zf.ImageSourceError, match="outside the archive") as err:
            zf.open_tar(shard)
        assert evil in str(err.value)
    no_image = tmp_path / "noimage.tar"
    _tar(no_image, items, extra=[("shard/999999.cls", b"1")])
    with pytest.raises(zf.ImageSourceError, match="no .jpg, .jpeg or .png member"):
        zf.open_tar(no_image)
    bad_label = tmp_path / "badlabel.tar"
    _tar(bad_label, items, extra=[("shard/999999.jpg", items[0][2]), ("shard/999999.cls", b"cat")])
    with pytest.raises(zf.ImageSourceError, match="not an integer class label"):
        zf.open_tar(bad_label)
    with pytest.raises(zf.FileMissingError):
        zf.open_tar(tmp_path / "missing.tar")
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"x" * 2048)
    with pytest.raises(zf.ImageSourceError, match="checksum"):
        zf.open_tar(garbage)


def test_tar_long_names_and_captions(tmp_path: Path) -> None:
    # GNU long names and pax paths (names over 100 bytes), .txt captions that are not labels
    items = _encoded()[:2]
    long_dir = "d" * 120
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        path = tmp_path / f"long{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            for i, (name, _, data) in enumerate(items):
                for member, payload in (
                    (f"{long_dir}/{i}.{name.rsplit('.', 1)[1]}", data),
                    (f"{long_dir}/{i}.txt", b"a cat"),
                ):
                    info = tarfile.TarInfo(member)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        images = zf.Images(zf.open_tar(path))
        assert len(images) == 2 and images.fields == ("image",)
        assert images.files[1].endswith(f"{long_dir}/1.png")


def test_bad_files_in_a_folder_name_the_file(tmp_path: Path) -> None:
    # A folder is listed by extension; what a file holds is found by content when decoded.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "a" / "notes.jpg").write_text("a text file named .jpg\n")
    good = jpeg(photos()["rocket"])
    (tmp_path / "a" / "really_a_jpeg.png").write_bytes(good)
    images = zf.Images(tmp_path, labels="folders")
    assert [os.path.basename(f) for f in images.files] == ["empty.png", "notes.jpg", "really_a_jpeg.png"]
    for i, message in ((0, "empty"), (1, "not a JPEG or PNG")):
        with pytest.raises(zf.ImageDecodeError, match=message) as err:
            images[i]
        assert err.value.file == images.files[i]
    assert np.array_equal(images[2]["image"], pillow(good))


def test_arrow_bytes_are_not_copied_when_the_source_is_built() -> None:
    """200 MB of Arrow binary data: building zf.Images over it grows RSS by far less than the
    data (the source reads the Arrow data buffer in place; offsets are all it keeps)."""
    pa = require("pyarrow")
    blob = _encoded()[0][2]
    arr = pa.array([blob] * (200_000_000 // len(blob)), pa.large_binary())

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    images = zf.Images(arr)
    grown = rss() - before
    assert len(images) == len(arr)
    assert grown < 40_000_000, f"building the source grew RSS by {grown / 1e6:.0f} MB for 200 MB of data"
    assert images[len(images) - 1]["image"].shape[2] == 3

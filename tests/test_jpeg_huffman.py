"""zerofeed's Huffman decoder (crates/zerofeed-core/src/decode/huffman.rs) against
libjpeg-turbo's own, which it replaces for baseline scans: the same pixels, bit for bit, on
real photographs in every layout Pillow writes, whole and cropped and scaled; the same
answer on mutated files whenever both decode; typed errors on cut ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import require
from image_samples import decode, jpeg, photos, pillow

import zerofeed as zf

PHOTOS = sorted(photos())

# quality, subsampling (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0), progressive: the baseline layouts
# zerofeed decodes itself, and one progressive file, which stays with libjpeg (a check that
# the fallback is taken and still right).
SETTINGS = [(75, 2, False), (95, 2, False), (90, 0, False), (85, 1, False), (90, 2, True)]


def both(data: bytes, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    """The same decode through zerofeed's Huffman decoder and through libjpeg's."""
    ours = decode(data, *args, **kwargs)  # type: ignore[arg-type]
    theirs = decode(data, *args, huffman="libjpeg", **kwargs)  # type: ignore[arg-type]
    assert ours[1:] == theirs[1:], "origin or scale differ"
    return ours[0], theirs[0]


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize(("quality", "subsampling", "progressive"), SETTINGS)
def test_same_pixels_as_libjpeg(name: str, quality: int, subsampling: int, progressive: bool) -> None:
    data = jpeg(photos()[name], quality=quality, subsampling=subsampling, progressive=progressive)
    h, w = photos()[name].shape[:2]
    rng = np.random.default_rng(quality)
    for mode in ("RGB", "L"):
        ours, theirs = both(data, mode)
        assert np.array_equal(ours, theirs), (name, mode)
    # crops (the rows above them only entropy-decoded, the columns beside them not stored),
    # at every DCT scale, with both chroma upsamplings
    for scale in (1, 2, 4, 8):
        for fast in (False, True):
            top, left = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            region = (top, left, int(rng.integers(1, h - top + 1)), int(rng.integers(1, w - left + 1)))
            ours, theirs = both(data, "RGB", region, scale, fast)
            assert np.array_equal(ours, theirs), (name, region, scale, fast)


def test_grayscale_and_restart_markers_match_pillow() -> None:
    """A gray JPEG (one component, one block per MCU) takes zerofeed's decoder; files with
    restart markers stay with libjpeg's. Both agree with Pillow."""
    image = require("PIL.Image")
    pixels = photos()["astronaut"]
    gray = jpeg(pixels, quality=90, mode="L")
    buf = io.BytesIO()
    image.fromarray(pixels).save(buf, "JPEG", quality=90, restart_marker_rows=1)
    restarts = buf.getvalue()
    assert b"\xff\xdd" in restarts, "Pillow wrote no DRI marker"
    for data, mode in ((gray, "L"), (restarts, "RGB")):
        ours, theirs = both(data, mode)
        assert np.array_equal(ours, theirs)
        assert np.abs(ours.astype(int) - pillow(data, mode)).max() <= 1


def test_cut_scans_are_typed_errors() -> None:
    """A file cut anywhere inside its scan: the decode that needs the missing rows fails
    with an ImageDecodeError saying so, from either Huffman decoder."""
    data = jpeg(photos()["chelsea"], quality=85)
    start = data.index(b"\xff\xda")  # the scan header; entropy-coded data follows it
    for cut in np.linspace(start + 20, len(data) - 3, 12).astype(int):
        for huffman in ("zerofeed", "libjpeg"):
            with pytest.raises(zf.ImageDecodeError) as caught:
                decode(data[:cut], huffman=huffman)
            assert "truncated" in str(caught.value) or "premature end" in str(caught.value)


def test_mutated_files_decode_alike() -> None:
    """Random bit flips, splices and cuts of real baseline files: whenever both decoders
    return pixels, they are the same pixels; neither ever crashes. (On a corrupt code or
    a run past a block's end zerofeed's decoder errs where libjpeg's decodes garbage.)"""
    hypothesis = require("hypothesis")
    st = require("hypothesis.strategies")
    small = photos()["coffee"][:48, :64]
    seeds = [jpeg(small, quality=q, subsampling=s) for q, s in ((80, 2), (92, 0), (70, 1))]
    seeds.append(jpeg(small, quality=85, mode="L"))

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(
        which=st.integers(0, len(seeds) - 1),
        flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=6),
        cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
        splice=st.one_of(st.none(), st.tuples(st.integers(0, 1 << 20), st.binary(max_size=32))),
        region=st.booleans(),
    )
    def run(
        which: int,
        flips: list[tuple[int, int]],
        cut: int | None,
        splice: tuple[int, bytes] | None,
        region: bool,
    ) -> None:
        data = bytearray(seeds[which])
        # mutate the entropy-coded data only (past the scan header) half of the time, where
        # the Huffman decoders are what reads it
        start = data.index(b"\xff\xda") + 14 if region else 0
        for at, bit in flips:
            data[start + at % (len(data) - start)] ^= 1 << bit
        if splice is not None:
            at = start + splice[0] % (len(data) - start)
            data[at:at] = splice[1]
        if cut is not None:
            del data[start + cut % (len(data) - start + 1) :]
        box = (3, 5, 30, 40) if region else None
        results = []
        for huffman in ("zerofeed", "libjpeg"):
            try:
                results.append(decode(bytes(data), "RGB", box, 1, False, huffman))
            except zf.ImageDecodeError:
                results.append(None)
        ours, theirs = results
        if ours is not None and theirs is not None:
            assert ours[1:] == theirs[1:]
            assert np.array_equal(ours[0], theirs[0])

    run()

"""JPEG and PNG decoding against Pillow, on real photographs; region and DCT-scaled decode;
every kind of bad input a typed error (property tests on mutated real files)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import require
from image_samples import area, decode, jpeg, photos, pillow, png, png16

import zerofeed as zf
from zerofeed import _zerofeed

PHOTOS = sorted(photos())

# Both sides run libjpeg-turbo's decoder with its defaults (accurate integer IDCT, "fancy"
# triangle-filter chroma upsampling), so the pixels are expected to be identical. The
# tolerance of 1 level leaves room for a Pillow wheel built on another libjpeg-turbo
# release, whose SIMD and C IDCTs may round a coefficient differently; chroma upsampling or
# colour conversion differences would be far larger than 1.
JPEG_TOLERANCE = 1


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize(
    ("quality", "subsampling", "progressive"),
    [(75, 2, False), (95, 2, True), (90, 0, False), (85, 0, True), (80, 1, False)],
)
def test_jpeg_matches_pillow(name: str, quality: int, subsampling: int, progressive: bool) -> None:
    data = jpeg(photos()[name], quality=quality, subsampling=subsampling, progressive=progressive)
    for mode in ("RGB", "L"):
        got, top, left, scale = decode(data, mode)
        ref = pillow(data, mode)
        assert (top, left, scale) == (0, 0, 1)
        assert got.shape == ref.shape
        assert np.abs(got.astype(int) - ref).max() <= JPEG_TOLERANCE, (name, mode)


@pytest.mark.parametrize("name", PHOTOS[:3])
def test_grayscale_and_cmyk_jpeg(name: str) -> None:
    image = require("PIL.Image")
    gray = jpeg(photos()[name], mode="L")
    for mode in ("L", "RGB"):
        got, *_ = decode(gray, mode)
        assert np.abs(got.astype(int) - pillow(gray, mode)).max() <= JPEG_TOLERANCE
    buf = io.BytesIO()
    image.fromarray(photos()[name]).convert("CMYK").save(buf, "JPEG", quality=90)
    cmyk = buf.getvalue()
    assert image.open(io.BytesIO(cmyk)).mode == "CMYK"
    for mode in ("RGB", "L"):
        got, *_ = decode(cmyk, mode)
        assert np.abs(got.astype(int) - pillow(cmyk, mode)).max() <= JPEG_TOLERANCE, mode


@pytest.mark.parametrize("pil_mode", ["1", "L", "LA", "P", "P+tRNS", "RGB", "RGBA", "I;16"])
def test_png_8_bit_and_gray_16_match_pillow(pil_mode: str) -> None:
    image = require("PIL.Image")
    rgb = image.fromarray(photos()["chelsea"])
    if pil_mode == "I;16":
        # 16-bit gray: Pillow keeps it 16-bit; zerofeed rounds to the nearest 8-bit level.
        noise = np.random.default_rng(0).integers(-128, 129, (rgb.height, rgb.width))
        wide = np.clip(np.asarray(rgb.convert("L")).astype(int) * 257 + noise, 0, 65535).astype(np.uint16)
        data = png(image.fromarray(wide))
        got, *_ = decode(data, "L")
        assert np.array_equal(got[..., 0], np.round(wide / 257).astype(np.uint8))
        return
    if pil_mode in ("LA", "RGBA"):
        alpha = image.fromarray(
            (np.arange(rgb.width)[None, :] % 256 * np.ones((rgb.height, 1))).astype(np.uint8)
        )
        src = rgb.convert("RGBA")
        src.putalpha(alpha)
        data = png(src.convert(pil_mode))
    elif pil_mode == "P+tRNS":
        data = png(rgb.convert("P"), transparency=3)  # a palette with a tRNS chunk
    else:
        data = png(rgb.convert(pil_mode))
    for mode in ("RGB", "L"):
        got, *_ = decode(data, mode)
        # alpha is dropped, not composited: as Pillow's convert("RGB") does
        assert np.array_equal(got, pillow(data, mode)), (pil_mode, mode)


@pytest.mark.parametrize("color_type", [0, 2, 4, 6])
def test_png_16_bit_rounds(color_type: int) -> None:
    rng = np.random.default_rng(color_type)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    base = photos()["coffee"][:64, :80].astype(np.uint16) * 257
    samples = np.concatenate([base, base[..., :1]], axis=2)[..., :channels]
    samples = np.clip(samples.astype(int) + rng.integers(-128, 129, samples.shape), 0, 65535).astype(
        np.uint16
    )
    data = png16(samples, color_type)
    expect = np.round(samples / 257).astype(np.uint8)
    got, *_ = decode(data, "RGB" if channels >= 3 else "L")
    want = expect[..., :3] if channels >= 3 else expect[..., :1]
    assert np.array_equal(got, want)
    # Pillow reads the 16-bit RGB(A) ones by taking the high byte: within 1 of rounding.
    if channels >= 3:
        assert np.abs(got.astype(int) - pillow(data, "RGB")).max() <= 1


@pytest.mark.parametrize("name", PHOTOS[:4])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_region_decode_equals_full_decode(name: str, subsampling: int) -> None:
    data = jpeg(photos()[name], subsampling=subsampling, progressive=name < "d")
    h, w, _ = _zerofeed._probe(data)
    rng = np.random.default_rng(len(name))
    for scale in (1, 2, 4, 8):
        full, *_ = decode(data, "RGB", None, scale)
        for _ in range(8):
            t, left = int(rng.integers(0, h)), int(rng.integers(0, w))
            region = (t, left, int(rng.integers(1, h - t + 1)), int(rng.integers(1, w - left + 1)))
            got, top, origin_left, s = decode(data, "RGB", region, scale)
            assert s == scale and top % s == 0 and origin_left % s == 0
            assert top <= region[0] and origin_left <= region[1]
            assert top + got.shape[0] * s >= region[0] + region[2]
            assert origin_left + got.shape[1] * s >= region[1] + region[3]
            assert got.shape[0] < full.shape[0] or region[2] > h - 16 or top == 0  # rows were skipped
            # Pixel for pixel what the full decode at that scale gives.
            assert np.array_equal(
                got,
                full[top // s : top // s + got.shape[0], origin_left // s : origin_left // s + got.shape[1]],
            )


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_scaled_decode_is_close_to_area_resize(scale: int) -> None:
    # The DCT-domain downscale keeps each 8x8 block's lowest frequencies: close to averaging
    # the full decode over scale x scale boxes. Bounds from scripts/image_fast_decode_accuracy.py
    # (README), with margin; a wrong scale, offset or colour conversion fails them by far.
    for name in PHOTOS:
        data = jpeg(photos()[name], quality=90)
        full, *_ = decode(data)
        small, _, _, s = decode(data, "RGB", None, scale)
        ref = area(full.astype(float), scale)
        assert s == scale and small.shape == ref.shape
        err = np.abs(small - ref)
        psnr = 10 * np.log10(255**2 / np.mean(err**2))
        assert err.mean() < 2.5 and psnr > 30, (name, err.mean(), psnr)


def test_probe_reads_the_header_only() -> None:
    data = jpeg(photos()["coffee"])
    h, w = photos()["coffee"].shape[:2]
    assert _zerofeed._probe(data) == (h, w, "JPEG")
    assert _zerofeed._probe(data[:400]) == (h, w, "JPEG")  # header only: no scan data needed
    image = require("PIL.Image")
    assert _zerofeed._probe(png(image.fromarray(photos()["coffee"]))[:40]) == (h, w, "PNG")


def _bomb_png() -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


def _bomb_jpeg() -> bytes:
    # Pillow's own small JPEG with its frame header's size rewritten to 65535x65535.
    data = bytearray(jpeg(photos()["coffee"][:16, :16]))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\xff\xff\xff\xff"
    return bytes(data)


def test_bad_inputs_are_typed_errors() -> None:
    image = require("PIL.Image")
    good_jpeg = jpeg(photos()["chelsea"])
    good_png = png(image.fromarray(photos()["chelsea"]))
    bad_crc = bytearray(good_png)
    idat = bad_crc.index(b"IDAT")
    length = int.from_bytes(bad_crc[idat - 4 : idat], "big")
    bad_crc[idat + 4 + length] ^= 0x10  # the chunk's CRC, its data intact
    gif = io.BytesIO()
    image.fromarray(photos()["chelsea"]).save(gif, "GIF")
    cases = {
        "empty": (b"", "empty"),
        "text named .jpg": (b"this is not a picture\n" * 3, "not a JPEG or PNG"),
        "gif": (gif.getvalue(), "GIF is not supported"),
        "truncated jpeg": (good_jpeg[: len(good_jpeg) // 2], "truncated"),
        "truncated png": (good_png[: len(good_png) // 2], "truncated"),
        "png bad crc": (bytes(bad_crc), "CRC"),
        "jpeg bomb": (_bomb_jpeg(), "max_pixels"),
        "png bomb": (_bomb_png(), "max_pixels"),
    }
    images = zf.Images([data for data, _ in cases.values()], max_pixels=50_000_000)
    for i, (what, (_, message)) in enumerate(cases.items()):
        with pytest.raises(zf.ImageDecodeError) as err:
            images[i]
        assert err.value.file == f"bytes[{i}]", what
        assert message in str(err.value), (what, str(err.value))
        assert isinstance(err.value, ValueError)


def test_decompression_bomb_is_refused_before_allocating() -> None:
    resource = require("resource")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for data in (_bomb_png(), _bomb_jpeg()):
        with pytest.raises(zf.ImageDecodeError, match="65535x65535"):
            zf.Images([data])[0]
    # 65535^2 x 3 bytes is 12 GiB: not one page of it was touched.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


def _check_total(data: bytes) -> None:
    """Decodes ``data`` every way; each either gives pixels of the declared size or a typed
    error, never a crash or an untyped exception."""
    try:
        h, w, _ = _zerofeed._probe(data)
    except zf.ImageDecodeError:
        h = w = 0
    for mode, region, scale in (("RGB", None, 1), ("L", None, 2), ("RGB", (1, 1, 5, 7), 1)):
        try:
            got, top, left, s = decode(data, mode, region if h > 8 and w > 8 else None, scale)
        except zf.ImageDecodeError:
            continue
        assert got.ndim == 3 and got.shape[2] == (3 if mode == "RGB" else 1)
        assert 0 < got.shape[0] <= -(-h // s) and 0 < got.shape[1] <= -(-w // s)


def _fuzz_inputs() -> list[bytes]:
    image = require("PIL.Image")
    small = photos()["coffee"][:40, :56]
    return [
        jpeg(small, quality=80),
        jpeg(small, quality=90, subsampling=0, progressive=True),
        png(image.fromarray(small)),
        png(image.fromarray(small).convert("P")),
    ]


def test_mutated_real_files_never_crash() -> None:
    hypothesis = require("hypothesis")
    st = require("hypothesis.strategies")
    seeds = _fuzz_inputs()

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(
        which=st.integers(0, len(seeds) - 1),
        flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=8),
        cut=st.one_of(st.none(), st.integers(0, 1 << 20)),
        splice=st.one_of(st.none(), st.tuples(st.integers(0, 1 << 20), st.binary(max_size=64))),
    )
    def run(
        which: int, flips: list[tuple[int, int]], cut: int | None, splice: tuple[int, bytes] | None
    ) -> None:
        data = bytearray(seeds[which])
        for at, bit in flips:
            data[at % len(data)] ^= 1 << bit
        if splice is not None:
            at = splice[0] % len(data)
            data[at:at] = splice[1]
        if cut is not None:
            del data[cut % (len(data) + 1) :]
        _check_total(bytes(data))

    run()

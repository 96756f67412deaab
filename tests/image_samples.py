"""Real photographs shipped by scikit-image, scikit-learn and matplotlib, re-encoded with
Pillow (libjpeg / zlib) at ImageNet-like sizes, for the image tests."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import Any

import numpy as np
from conftest import require


@functools.cache
def photos() -> dict[str, np.ndarray]:
    """name -> HWC uint8 RGB, the shorter side scaled to 300-480 px as ImageNet's are."""
    image = require("PIL.Image")
    skdata = require("skimage.data")
    datasets = require("sklearn.datasets")
    cbook = require("matplotlib.cbook")
    raw: dict[str, np.ndarray] = {
        n: getattr(skdata, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")
    }
    china, flower = datasets.load_sample_images().images
    raw["china"], raw["flower"] = china, flower
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        raw["grace_hopper"] = np.asarray(image.open(f).convert("RGB"))
    out = {}
    for i, (name, a) in enumerate(sorted(raw.items())):
        im = image.fromarray(a).convert("RGB")
        short = (300, 375, 420, 480)[i % 4]
        scale = short / min(im.size)
        out[name] = np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), image.BICUBIC))
    return out


def jpeg(
    pixels: np.ndarray,
    *,
    quality: int = 90,
    subsampling: int = 2,
    progressive: bool = False,
    mode: str = "RGB",
) -> bytes:
    """Pillow's JPEG of ``pixels`` (subsampling 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0)."""
    image = require("PIL.Image")
    buf = io.BytesIO()
    image.fromarray(pixels).convert(mode).save(
        buf, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive
    )
    return buf.getvalue()


def png(image: Any, **kwargs: Any) -> bytes:
    """Pillow's PNG of a PIL image."""
    buf = io.BytesIO()
    image.save(buf, "PNG", **kwargs)
    return buf.getvalue()


def png16(samples: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG (gray 0, RGB 2, gray+alpha 4, RGBA 6) from big-endian samples, for the
    color types Pillow cannot write at 16 bits. Chunks per the PNG spec, zlib-compressed."""
    height, width = samples.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = samples.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def decode(
    data: bytes,
    mode: str = "RGB",
    region: tuple[int, int, int, int] | None = None,
    scale: int = 1,
    fast_upsampling: bool = False,
    huffman: str = "zerofeed",
) -> tuple[np.ndarray, int, int, int]:
    """zerofeed's decode: (pixels HWC, origin_top, origin_left, scale_denom); `huffman`
    "libjpeg" reads the scan with libjpeg-turbo's own Huffman decoder instead of zerofeed's."""
    from zerofeed import _zerofeed

    px, h, w, c, top, left, s = _zerofeed._decode(
        data, mode, region, scale, 1 << 40, fast_upsampling, huffman
    )
    return np.frombuffer(px, np.uint8).reshape(h, w, c), top, left, s


def area(full: np.ndarray, s: int) -> np.ndarray:
    """Average over s x s boxes (partial boxes at the edges over the pixels they have): what
    a DCT-domain 1/s decode approximates."""
    h, w, c = full.shape
    hs, ws = -(-h // s), -(-w // s)
    pad = np.zeros((hs * s, ws * s, c))
    count = np.zeros((hs * s, ws * s, 1))
    pad[:h, :w], count[:h, :w] = full, 1
    return pad.reshape(hs, s, ws, s, c).sum((1, 3)) / count.reshape(hs, s, ws, s, 1).sum((1, 3))


def pillow(data: bytes, mode: str = "RGB") -> np.ndarray:
    """Pillow's decode, HWC."""
    image = require("PIL.Image")
    a = np.asarray(image.open(io.BytesIO(data)).convert(mode))
    return a.reshape(a.shape[0], a.shape[1], -1)

"""How far zerofeed's fast JPEG decode (region + DCT-domain downscale) is from an exact
full decode followed by the same resize, on real photographs (scikit-image, scikit-learn,
matplotlib samples re-encoded by Pillow at ImageNet-like sizes).

    python scripts/image_fast_decode_accuracy.py [--boxes 200] [--large]

Prints two tables (the README's "Fast decode accuracy"):

1. Each DCT scale 1/2, 1/4, 1/8 of the whole image against the full decode averaged over
   2x2, 4x4, 8x8 boxes (what the scaled IDCT approximates).
2. RandomResizedCrop(224) boxes drawn by torchvision's rule (scale 0.08-1, ratio 3/4-4/3):
   the crop resized to 224x224 with Pillow's antialiased bilinear from the fast decode
   (region, scale = the largest power of two <= box/224, at most 8, and the fast chroma
   upsampling, as the Loader decodes) against the same resize from the full decode. Also
   the decode time of the fast path relative to the full decode.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from image_samples import area, decode, jpeg, photos

from zerofeed import _zerofeed

OUT = 224


def psnr(err: np.ndarray) -> float:
    """Peak signal-to-noise ratio of absolute errors, in dB."""
    mse = float(np.mean(err.astype(float) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def rrc_box(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, int]:
    """Torchvision's RandomResizedCrop.get_params: (top, left, height, width)."""
    for _ in range(10):
        target = h * w * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        bw, bh = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < bw <= w and 0 < bh <= h:
            return int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def resize(pixels: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The crop `box` (left, upper, right, lower; fractional in a downscaled decode) resized
    to 224x224 with Pillow's antialiased bilinear, reading no pixel outside the crop (as
    torchvision's crop-then-resize does): cut to the enclosing whole pixels first.
    """
    x0, y0 = math.floor(box[0]), math.floor(box[1])
    x1, y1 = math.ceil(box[2]), math.ceil(box[3])
    crop = Image.fromarray(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
    inner = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    return np.asarray(crop.resize((OUT, OUT), Image.BILINEAR, box=inner)).astype(int)


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--boxes", type=int, default=200, help="RandomResizedCrop boxes per photo")
    parser.add_argument("--large", action="store_true", help="the photos upscaled 2x first")
    args = parser.parse_args()
    files = {name: jpeg(p, quality=90) for name, p in photos().items()}
    if args.large:
        # the photos at twice the size: as in datasets whose images are larger than ImageNet's
        files = {
            n: jpeg(
                np.asarray(Image.fromarray(p).resize((p.shape[1] * 2, p.shape[0] * 2), Image.BICUBIC)),
                quality=90,
            )
            for n, p in photos().items()
        }
    print(f"{len(files)} photos, q90 4:2:0, shorter sides {'600-960' if args.large else '300-480'} px\n")
    print("| DCT scale | vs full decode + box average | mean abs | max abs | PSNR (dB) |")
    print("| --- | --- | --- | --- | --- |")
    for s in (2, 4, 8):
        errs = []
        for data in files.values():
            full, *_ = decode(data)
            small, *_ = decode(data, "RGB", None, s)
            errs.append(np.abs(small - area(full.astype(float), s)).ravel())
        e = np.concatenate(errs)
        print(f"| 1/{s} | {s}x{s} boxes | {e.mean():.2f} | {e.max():.0f} | {psnr(e):.1f} |")
    rng = np.random.default_rng(0)
    by_scale: dict[int, list[np.ndarray]] = {1: [], 2: [], 4: [], 8: []}
    fast_t = full_t = 0.0
    for data in files.values():
        h, w, _ = _zerofeed._probe(data)
        t0 = time.perf_counter()
        full, *_ = decode(data)
        full_t += (time.perf_counter() - t0) * args.boxes
        for _ in range(args.boxes):
            top, left, bh, bw = rrc_box(rng, h, w)
            s = 1
            while s < 8 and min(bh, bw) >= 2 * s * OUT:
                s *= 2
            exact = resize(full, (left, top, left + bw, top + bh))
            t0 = time.perf_counter()
            part, ot, ol, s = decode(data, "RGB", (top, left, bh, bw), s, fast_upsampling=True)
            fast_t += time.perf_counter() - t0
            box = ((left - ol) / s, (top - ot) / s, (left + bw - ol) / s, (top + bh - ot) / s)
            by_scale[s].append(np.abs(resize(part, box) - exact).ravel())
    print(f"\n| RandomResizedCrop({OUT}) boxes | share | mean abs | max abs | PSNR (dB) |")
    print("| --- | --- | --- | --- | --- |")
    total = sum(len(v) for v in by_scale.values())
    for s, errs in by_scale.items():
        if errs:
            e = np.concatenate(errs)
            share = len(errs) / total
            print(f"| region + 1/{s} | {share:.0%} | {e.mean():.2f} | {e.max():.0f} | {psnr(e):.1f} |")
    e = np.concatenate([x for v in by_scale.values() for x in v])
    print(f"| all | 100% | {e.mean():.2f} | {e.max():.0f} | {psnr(e):.1f} |")
    print(f"\nfast decode time / full decode time: {fast_t / full_t:.2f} (same run, {total} boxes)")


if __name__ == "__main__":
    main()

"""Train a small PyTorch classifier on a folder of real photographs with zerofeed.

The photographs are the sample images that scikit-image, scikit-learn and matplotlib ship.
Each is cut into tiles and re-encoded by Pillow (JPEG) into an ImageFolder layout, one class
per source photograph: the task is to tell which photograph a tile comes from. Training uses
the ImageNet recipe (RandomResizedCrop + flip + normalize, decoded and fused in Rust threads),
validation Resize + CenterCrop on held-out tiles.

    python examples/train_images_torch.py            # 64 px, 8 epochs
    python examples/train_images_torch.py --short    # what CI runs: 32 px, 2 epochs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def photographs() -> dict[str, np.ndarray]:
    """Real photographs no one here made, as HWC uint8 RGB."""
    import skimage.data
    from matplotlib import cbook
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    return {
        "astronaut": skimage.data.astronaut(),
        "coffee": skimage.data.coffee(),
        "chelsea": skimage.data.chelsea(),
        "china": china,
        "flower": flower,
        "hopper": hopper,
    }


def make_folders(root: Path, tile: int) -> tuple[Path, Path]:
    """Tiles of each photograph as JPEGs in train/<name>/ and val/<name>/ (every 4th tile)."""
    from PIL import Image

    for name, photo in photographs().items():
        h, w = photo.shape[:2]
        k = 0
        for top in range(0, h - tile + 1, tile // 2):
            for left in range(0, w - tile + 1, tile // 2):
                split = "val" if k % 4 == 3 else "train"
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(photo[top : top + tile, left : left + tile]).save(
                    folder / f"{k}.jpg", quality=90
                )
                k += 1
    return root / "train", root / "val"


def main(argv: list[str] | None = None) -> float:
    import torch
    from torch import nn

    import zerofeed as zf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a quick run (CI)")
    args = parser.parse_args(argv)
    size, epochs = (32, 2) if args.short else (64, 8)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, val_dir = make_folders(Path(tmp), tile=160)
        train = zf.Loader(
            zf.Images(train_dir, labels="folders"),
            batch_size=32,
            shuffle=True,
            seed=0,
            drop_last=True,
            ops={
                "image": [
                    zf.RandomResizedCrop(size, scale=(0.25, 1.0)),
                    zf.RandomFlip(),
                    zf.Normalize(MEAN, STD),
                    zf.ToCHW(),
                ]
            },
        )
        val = zf.Loader(
            zf.Images(val_dir, labels="folders"),
            batch_size=64,
            ops={
                "image": [
                    zf.Resize(size + size // 7),
                    zf.CenterCrop(size),
                    zf.Normalize(MEAN, STD),
                    zf.ToCHW(),
                ]
            },
        )
        classes = train.classes or []
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(32, len(classes)),
        )  # fmt: skip
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for epoch in range(epochs):
            train.set_epoch(epoch)
            model.train()
            for batch in train.torch():
                loss = nn.functional.cross_entropy(model(batch["image"]), batch["label"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            correct = total = 0
            with torch.no_grad():
                for batch in val.torch():
                    correct += int((model(batch["image"]).argmax(1) == batch["label"]).sum())
                    total += len(batch["label"])
            accuracy = correct / total
            print(
                f"epoch {epoch}: loss {loss.item():.3f}, val accuracy {accuracy:.2f} "
                f"({total} tiles, {len(classes)} classes)"
            )
    return accuracy


if __name__ == "__main__":
    main()

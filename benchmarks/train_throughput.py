"""Training throughput: sharpkit's on-device loader + trainer vs the plain torchvision pipeline.

Both sides train the same narrow ResNet-18 from the same initial weights on the same images with the
augmentation control's transforms (RandomCrop(32, padding=4, fill=128) + RandomHorizontalFlip), SGD with
momentum, batch 256, on this machine's CPU:

(a) sharpkit: ``sharpkit.train.train`` (DeviceLoader: the uint8 set held as one tensor, shuffled by a
    seeded generator, augmented and normalised batch-wise; the trainer's channels-last option on);
(b) the paper's pipeline: a ``Dataset`` returning PIL images, torchvision's per-image transforms
    (RandomCrop, RandomHorizontalFlip, ToTensor, Normalize), a ``DataLoader`` with shuffling, and the same
    SGD loop (num_workers 0 and 2 are both measured; the faster one is the reference).

Prints images/s of each and the ratio. Usage:
    python benchmarks/train_throughput.py [--width 16] [--images 4096] [--epochs 3] [--npz PATH]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from sharpkit.config import make_train_config
from sharpkit.data import ImageDataset, load_dataset
from sharpkit.models import build_model
from sharpkit.train import train

DEFAULT_NPZ = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg-20k.npz"


class PILDataset(torch.utils.data.Dataset):
    """What the authors' code does: one PIL image per item through torchvision transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def torchvision_pipeline(data: ImageDataset, init: dict, width: int, epochs: int, workers: int) -> float:
    transform = T.Compose([T.RandomCrop(32, padding=4, fill=128), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(data.mean, data.std)])
    images = data.x_train.permute(0, 2, 3, 1).numpy()
    loader = torch.utils.data.DataLoader(PILDataset(images, data.y_train.numpy(), transform), batch_size=256,
                                         shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    model = build_model("resnet18", num_classes=data.num_classes, width=width)
    model.load_state_dict(init)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epochs * len(images) / (time.perf_counter() - start)


def sharpkit_pipeline(data: ImageDataset, width: int, epochs: int, out: Path) -> tuple[float, dict]:
    # channels_last is one of the trainer's options: oneDNN's convolutions are faster in that layout on CPUs.
    config = make_train_config("resnet18", data.name, "augmentation", 0, epochs=epochs, model_size={"width": width},
                               test_subset=256, channels_last=True)
    result = train(config, out / "run", init_dir=out / "init", dataset=data, progress=False)
    init = torch.load(next((out / "init").iterdir()), weights_only=True)
    log = [json.loads(line) for line in (result.out_dir / "log.jsonl").read_text().splitlines()]
    # The trainer's per-epoch test pass is not part of (b), so only the optimisation steps are timed.
    seconds = sum(entry["train_seconds"] for entry in log)
    return epochs * len(data.y_train) / seconds, init


def warm_up(num_classes: int, width: int) -> None:
    """oneDNN builds its kernels on first use, per process and per memory layout: without this the
    pipeline measured first pays for both."""
    model = build_model("resnet18", num_classes=num_classes, width=width)
    x, y = torch.randn(256, 3, 32, 32), torch.randint(0, num_classes, (256,))
    for layout in (torch.contiguous_format, torch.channels_last, torch.contiguous_format, torch.channels_last):
        model.to(memory_format=layout)
        F.cross_entropy(model(x.contiguous(memory_format=layout)), y).backward()
        model.eval()
        with torch.no_grad():
            model(x.contiguous(memory_format=layout))
        model.train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=16)  # the width of the README example run
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--npz", default=str(DEFAULT_NPZ))
    args = parser.parse_args()

    torch.manual_seed(0)
    name = f"npz:{args.npz}" if Path(args.npz).exists() else "digits"
    full = load_dataset(name)
    n = min(args.images, len(full.y_train))
    data = ImageDataset(full.name, full.x_train[:n], full.y_train[:n], full.x_test, full.y_test, full.classes,
                        full.mean, full.std)
    warm_up(data.num_classes, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        ours, init = sharpkit_pipeline(data, args.width, args.epochs, Path(tmp))
    theirs = {w: torchvision_pipeline(data, init, args.width, args.epochs, w) for w in (0, 2)}
    best = max(theirs.values())
    print(f"dataset={name} images={n} epochs={args.epochs} resnet18 width={args.width} batch=256 "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'pipeline':42s} {'images/s':>10s}")
    print(f"{'sharpkit DeviceLoader + trainer (channels_last)':42s} {ours:10.1f}")
    for workers, speed in theirs.items():
        print(f"{f'torchvision PIL + DataLoader (workers={workers})':42s} {speed:10.1f}")
    print(f"ratio sharpkit / best torchvision: {ours / best:.2f}")


if __name__ == "__main__":
    main()

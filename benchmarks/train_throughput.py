"""Training throughput per architecture and precision: sharpkit's trainer against the plain torchvision
pipeline and against this machine's measured matmul peak (the physical limit of that precision).

For each architecture of a profile (default ``cifar10-minima``: narrow ResNet-18, VGG-19, ViT), each
precision (float32; bfloat16 autocast of the training steps) and 1 and 2 CPU threads, in one process:

(a) sharpkit: ``sharpkit.run.train.train`` with the profile's settings (DeviceLoader: the uint8 set held as one
    tensor, shuffled by a seeded generator, augmented and normalised batch-wise; channels-last), the
    augmentation control (so both sides augment), timed over the optimisation steps of its third epoch;
(b) the paper's pipeline: a ``Dataset`` returning PIL images, torchvision's per-image transforms
    (RandomCrop(32, padding=4, fill=128), RandomHorizontalFlip, ToTensor, Normalize), a ``DataLoader`` with
    shuffling and no worker processes (workers would take cores the thread count does not give), and the
    same SGD loop and autocast, timed over its third epoch;
(c) the peak: GFLOP/s of a 1024x1024 matmul in that precision at that thread count; the achieved rate is
    the training FLOPs per image (forward and backward, counted by ``torch.utils.flop_counter``) times the
    images/s of (a).

Usage: python benchmarks/train_throughput.py [--profile cifar10-minima] [--images 2048] [--archs ...]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from sharpkit.data import ImageDataset, load_dataset
from sharpkit.experiments.profiles import get_profile
from sharpkit.models import build_model
from sharpkit.run.checkpoint import read_log
from sharpkit.run.train import _size_kwargs, train

REPO = Path(__file__).resolve().parents[1]


class PILDataset(torch.utils.data.Dataset):
    """What the authors' code does: one PIL image per item through torchvision transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def matmul_peak_gflops(bf16: bool, n: int = 1024, reps: int = 20) -> float:
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * n**3 / best / 1e9


def model_for(config, data: ImageDataset) -> torch.nn.Module:
    return build_model(config.arch, num_classes=data.num_classes, **_size_kwargs(config, data.image_size))


def training_flops_per_image(config, data: ImageDataset, batch: int = 32) -> float:
    model = model_for(config, data)
    x, y = torch.randn(batch, 3, data.image_size, data.image_size), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def sharpkit_images_per_s(config, data: ImageDataset, out: Path) -> float:
    result = train(config, out, init_dir=out.parent / "init", dataset=data, progress=False, device="cpu")
    log = read_log(result.out_dir)
    return len(data.y_train) / log[-1]["train_seconds"]  # the last epoch: kernels built, caches warm


def torchvision_images_per_s(config, data: ImageDataset) -> float:
    transform = T.Compose([T.RandomCrop(32, padding=4, fill=128), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(data.mean, data.std)])
    images = data.x_train.permute(0, 2, 3, 1).numpy()
    loader = torch.utils.data.DataLoader(PILDataset(images, data.y_train.numpy(), transform),
                                         batch_size=config.batch_size, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(0))
    model = model_for(config, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    model.train()
    seconds = 0.0
    for _ in range(3):  # the last epoch is timed, as for sharpkit
        start = time.perf_counter()
        for x, y in loader:
            with autocast(config.bf16):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
    return len(images) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cifar10-minima")
    parser.add_argument("--archs", nargs="+")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    experiments = [e for e in profile.experiments if not args.archs or e.arch in args.archs]
    full = load_dataset(experiments[0].dataset)
    n = min(args.images, len(full.y_train))
    data = ImageDataset(full.name, full.x_train[:n], full.y_train[:n], full.x_test[:256], full.y_test[:256],
                        full.classes, full.mean, full.std)
    print(f"profile={profile.name} dataset={full.name} images={n} torch={torch.__version__} "
          f"cpu_capability={torch.backends.cpu.get_cpu_capability()} load average={os.getloadavg()[0]:.2f}")
    rows = []
    header = (f"{'arch':9s} {'dtype':5s} {'thr':>3s} {'sharpkit img/s':>14s} {'torchvision img/s':>17s} {'ratio':>6s} "
              f"{'GFLOP/img':>9s} {'achieved GF/s':>13s} {'peak GF/s':>9s} {'of peak':>7s}")
    print(header)
    for threads in args.threads:
        torch.set_num_threads(threads)
        peaks = {bf16: matmul_peak_gflops(bf16) for bf16 in (False, True)}
        for exp in experiments:
            base = exp.config("augmentation", 0)
            flops = training_flops_per_image(base, data)
            for bf16 in (False, True):
                import dataclasses

                config = dataclasses.replace(base, epochs=3, bf16=bf16, test_subset=None, train_subset=None)
                with tempfile.TemporaryDirectory() as tmp:
                    ours = sharpkit_images_per_s(config, data, Path(tmp) / "run")
                theirs = torchvision_images_per_s(config, data)
                achieved = ours * flops / 1e9
                row = {"arch": exp.arch, "dtype": "bf16" if bf16 else "fp32", "threads": threads,
                       "sharpkit_images_per_s": ours, "torchvision_images_per_s": theirs, "ratio": ours / theirs,
                       "gflop_per_image": flops / 1e9, "achieved_gflops": achieved, "peak_gflops": peaks[bf16],
                       "fraction_of_peak": achieved / peaks[bf16]}
                rows.append(row)
                print(f"{exp.arch:9s} {row['dtype']:5s} {threads:3d} {ours:14.0f} {theirs:17.0f} {row['ratio']:6.2f} "
                      f"{row['gflop_per_image']:9.3f} {achieved:13.1f} {peaks[bf16]:9.1f} "
                      f"{row['fraction_of_peak']:7.1%}", flush=True)
    for threads in args.threads:
        for exp in experiments:
            pair = {r["dtype"]: r for r in rows if r["arch"] == exp.arch and r["threads"] == threads}
            print(f"bf16 / fp32, {exp.arch}, {threads} thread(s): "
                  f"{pair['bf16']['sharpkit_images_per_s'] / pair['fp32']['sharpkit_images_per_s']:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark of sharpkit.metrics against the reference procedures (issue 3), on this CPU.

Run from the repository root:  python benchmarks/metrics.py [--threads 1] [--quick]

Prints one side-by-side table:

1. relative flatness, closed form vs the full-Hessian reference (autograd, float64 both), from
   precomputed features of a ResNet-18-sized head (512 features, 10 classes, 2,048 images, batches
   of 256): time ratio (target >= 300) and peak memory of both;
2. Fisher-Rao norm, vectorised vs a per-sample loop of the formula, on 50,000 precomputed logits
   (target >= 20x);
3. SAM sharpness, sharpkit (in-place perturbation) vs the authors' procedure (deep-copy the state
   dict and the model for every sample), same small model, loader and noise: time of both (sharpkit
   no slower, and the same value), then the standard error of the "paper" and "clean" conventions at
   equal sample counts;
4. relative flatness on a TinyImageNet-sized head (512 features, 200 classes): time per 10,000 images
   (target < 1 s), and the size of the Hessian the authors' code would have built.

Peak memory: every memory-measured computation runs in a fresh (spawned) process, which records its
peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) just before and after the
computation; the table shows the difference, i.e. the extra memory the computation needed on top of
the inputs (tracemalloc would miss it: torch allocates tensors outside Python's allocator).
Timings use ``--threads`` torch threads (default 1: this machine's 2 cores are shared, and one thread
gives stable, conservative numbers for both sides).
"""
from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from sharpkit.metrics import (
    fisher_rao_norm_from_logits,
    relative_flatness_exact_from_features,
    relative_flatness_from_features,
    sam_sharpness,
)

FEATURES, BATCH = 512, 256


def _head(classes: int, images: int, seed: int = 0):
    """ReLU-like features (B, 512) in batches of 256, a classifier with trained-looking scale."""
    generator = torch.Generator().manual_seed(seed)
    phi = torch.relu(torch.randn(images, FEATURES, generator=generator))
    phi = phi * torch.rand(FEATURES, generator=generator)  # unequal feature scales
    weight = 0.1 * torch.randn(classes, FEATURES, generator=generator)
    bias = 0.1 * torch.randn(classes, generator=generator)
    labels = torch.randint(0, classes, (images,), generator=generator)
    return list(phi.split(BATCH)), list(labels.split(BATCH)), weight, bias


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _relative_flatness_task(method: str, classes: int, images: int, threads: int, repeats: int) -> dict:
    """Runs in a fresh process: time and extra peak RSS of one relative-flatness computation."""
    torch.set_num_threads(threads)
    features, labels, weight, bias = _head(classes, images)
    small = [f[:8] for f in features[:1]]
    relative_flatness_from_features(small, weight, bias)              # warm up kernels and allocator
    before = _peak_mib()
    start = time.perf_counter()
    if method == "closed":
        value = relative_flatness_from_features(features, weight, bias)
    else:
        value = relative_flatness_exact_from_features(list(zip(features, labels)), weight, bias)
    elapsed = time.perf_counter() - start
    peak = _peak_mib() - before
    for _ in range(repeats - 1):  # best of several for the fast method
        start = time.perf_counter()
        relative_flatness_from_features(features, weight, bias)
        elapsed = min(elapsed, time.perf_counter() - start)
    return {"time": elapsed, "peak_mib": peak, "value": value}


def _in_fresh_process(function, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _fisher_rao_loop(logits: torch.Tensor, labels: torch.Tensor, depth: int) -> float:
    """The formula sample by sample, as the authors' code runs it."""
    total = 0.0
    for f, y in zip(logits, labels):
        total += float((torch.softmax(f, dim=0) @ f - f[y]) ** 2)
    return math.sqrt((depth + 1) ** 2 * total / len(labels))


class _SmallNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _AugmentingLoader:
    """Reshuffles and applies random flips + 2-pixel translations on every pass (like the training
    loader of an augmentation control)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            x = self.x[index]
            flip = torch.rand(len(index), generator=self.generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            shift = [int(v) for v in torch.randint(-2, 3, (2,), generator=self.generator)]
            yield torch.roll(x, shifts=shift, dims=(-2, -1)), self.y[index]


def _trained_small_net(images: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN trained for a few epochs on a synthetic 10-class image task."""
    generator = torch.Generator().manual_seed(0)
    templates = torch.randn(10, 3, 16, 16, generator=generator)
    y = torch.randint(0, 10, (images,), generator=generator)
    x = templates[y] + 1.5 * torch.randn(images, 3, 16, 16, generator=generator)
    torch.manual_seed(0)
    net = _SmallNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loader = _AugmentingLoader(x, y, 128, seed=1)
    for _ in range(4):
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            optimizer.step()
    return net.eval(), x, y


def _sam_reference(model, loader, rho, samples, generator):
    """The authors' procedure: copy the state dict, perturb it, load it into a copy of the model."""
    num_params = sum(p.numel() for p in model.parameters())

    def get_loss(m):
        losses = [F.cross_entropy(m(x), y).item() for x, y in loader]
        return sum(losses) / len(losses)

    with torch.no_grad():
        base = get_loss(model)
        values = []
        for _ in range(samples):
            state = copy.deepcopy(model.state_dict())
            for key in state:
                if state[key].dtype != torch.int64:
                    state[key] += torch.randn(state[key].shape, generator=generator,
                                              dtype=state[key].dtype) / num_params ** 0.5 * rho
            perturbed = copy.deepcopy(model)
            perturbed.load_state_dict(state)
            values.append(abs(get_loss(perturbed) - base) / rho)
    return sum(values) / len(values)


def _row(name: str, ours: str, reference: str, ratio: str, target: str) -> str:
    return f"{name:<44} {ours:>14} {reference:>14} {ratio:>10}  {target}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rf_images = 512 if args.quick else 2048
    fr_samples = 5_000 if args.quick else 50_000
    sam_images, sam_samples = (256, 5) if args.quick else (1024, 30)
    lines = [_row("measure", "sharpkit", "reference", "ratio", "target"), "-" * 100]

    # 1. Relative flatness: closed form vs full Hessian, ResNet-18-sized head.
    closed = _in_fresh_process(_relative_flatness_task, "closed", 10, rf_images, args.threads, 5)
    exact = _in_fresh_process(_relative_flatness_task, "exact", 10, rf_images, args.threads, 1)
    ratio = exact["time"] / closed["time"]
    lines += [
        _row(f"RF 512x10 head, {rf_images} imgs: time (s)", f"{closed['time']:.4f}", f"{exact['time']:.2f}",
             f"{ratio:.0f}x", ">= 300x"),
        _row("RF 512x10: extra peak RSS (MiB)", f"{closed['peak_mib']:.1f}", f"{exact['peak_mib']:.1f}",
             f"{exact['peak_mib'] / max(closed['peak_mib'], 0.1):.0f}x", "-"),
        _row("RF 512x10: value (sum over batches)", f"{closed['value']:.6g}", f"{exact['value']:.6g}",
             f"{abs(closed['value'] / exact['value'] - 1):.1e}", "rel. diff ~ 0"),
    ]

    # 2. Fisher-Rao: vectorised vs per-sample loop on precomputed logits.
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(fr_samples, 10, generator=generator)
    labels = torch.randint(0, 10, (fr_samples,), generator=generator)
    fisher_rao_norm_from_logits(logits[:10], labels[:10], 21)
    vectorised = min(_timed(lambda: fisher_rao_norm_from_logits(logits, labels, 21)) for _ in range(5))
    start = time.perf_counter()
    looped_value = _fisher_rao_loop(logits, labels, 21)
    looped = time.perf_counter() - start
    value = fisher_rao_norm_from_logits(logits, labels, 21)
    lines += [
        _row(f"Fisher-Rao, {fr_samples} logits: time (s)", f"{vectorised:.4f}", f"{looped:.2f}",
             f"{looped / vectorised:.0f}x", ">= 20x"),
        _row("Fisher-Rao: value", f"{value:.6g}", f"{looped_value:.6g}",
             f"{abs(value / looped_value - 1):.1e}", "rel. diff ~ 0"),
    ]

    # 3. SAM sharpness: in place vs copy-the-state-dict, same model/loader/noise; then SE.
    net, x, y = _trained_small_net(sam_images)
    rho = 0.005
    ours_time = reference_time = math.inf
    for _ in range(1 if args.quick else 3):  # alternate and keep the best: the machine is shared
        start = time.perf_counter()
        ours = sam_sharpness(net, _AugmentingLoader(x, y, 128, seed=7), rho=rho, samples=sam_samples,
                             generator=torch.Generator().manual_seed(3), convention="paper")
        ours_time = min(ours_time, time.perf_counter() - start)
        start = time.perf_counter()
        reference = _sam_reference(net, _AugmentingLoader(x, y, 128, seed=7), rho, sam_samples,
                                   torch.Generator().manual_seed(3))
        reference_time = min(reference_time, time.perf_counter() - start)
    clean = sam_sharpness(net, _AugmentingLoader(x, y, 128, seed=7), rho=rho, samples=sam_samples,
                          generator=torch.Generator().manual_seed(3), convention="clean")
    lines += [
        _row(f"SAM sharpness, {sam_samples} samples: time (s)", f"{ours_time:.2f}", f"{reference_time:.2f}",
             f"{reference_time / ours_time:.2f}x", ">= 1x (no slower), best of 3"),
        _row("SAM sharpness: value, paper convention", f"{ours.value:.6g}", f"{reference:.6g}",
             f"{abs(ours.value / reference - 1):.1e}", "rel. diff ~ 0"),
        _row("SAM: value +- SE, paper convention", f"{ours.value:.4g}+-{ours.sem:.2g}", "", "", ""),
        _row("SAM: value +- SE, clean convention", f"{clean.value:.4g}+-{clean.sem:.2g}", "",
             f"{ours.sem / clean.sem:.1f}x", "SE paper / SE clean"),
    ]

    # 4. TinyImageNet-sized head: 512 features, 200 classes, 10,000 images.
    features, _, weight, bias = _head(200, 1000 if args.quick else 10_000)
    relative_flatness_from_features(features[:1], weight, bias)
    tin = min(_timed(lambda: relative_flatness_from_features(features, weight, bias)) for _ in range(3))
    per_10k = tin * 10_000 / sum(len(f) for f in features)
    hessian_gib = (200 * FEATURES) ** 2 * 4 / 2 ** 30
    lines += [
        _row("RF 512x200 head: s per 10,000 images", f"{per_10k:.3f}", "", "", "< 1 s"),
        _row("RF 512x200: authors' float32 Hessian (GiB)", "0", f"{hessian_gib:.1f}", "", "per batch"),
    ]

    print(f"sharpkit.metrics benchmark, torch {torch.__version__}, {args.threads} thread(s)")
    print("\n".join(lines))
    print(f"SAM setup: small CNN ({sum(p.numel() for p in net.parameters())} parameters, BatchNorm) "
          f"trained 4 epochs on {sam_images} synthetic 16x16 images; loader reshuffles and augments "
          f"(flips, shifts) every pass; rho={rho}.")


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

"""Batched, on-device versions of the protocol's augmentations.

The paper applies torchvision's PIL transforms one image at a time in DataLoader workers; here the
same operations run on a whole uint8 batch on the training device (the airbench approach), with every
random draw taken from an explicit ``torch.Generator`` so that a seed fixes them.

- CIFAR (32 px): ``RandomCrop(32, padding=4, fill=128)`` then ``RandomHorizontalFlip(0.5)``.
- TinyImageNet (64 px): ``RandomResizedCrop(64, scale=(0.08, 1), ratio=(3/4, 4/3))`` then
  ``RandomHorizontalFlip(0.5)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, fill: int, generator: torch.Generator,
                flip: torch.Tensor | None = None) -> torch.Tensor:
    """Pad every image by ``padding`` pixels of value ``fill`` and take a random crop of the
    original size, as ``torchvision.transforms.RandomCrop(size, padding, fill)`` does per image.

    Args:
        x: uint8 (B, C, H, W). The offsets are drawn on the CPU from ``generator`` so the result does not
            depend on the device.
        flip: optional bool (B,): mirror these crops left-right in the same gather (one pass over the
            batch instead of two).
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), value=fill)
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    span = torch.arange(w, device=x.device)
    if flip is not None:
        span = torch.where(flip.to(x.device)[:, None], span.flip(0), span)  # (B, W)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (left[:, None] + span)[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing with the channel slice in the middle puts channels last: (B, H, W, C).
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_crop_flip(x: torch.Tensor, padding: int, fill: int, generator: torch.Generator,
                     p: float = 0.5) -> torch.Tensor:
    """``random_crop`` then ``random_horizontal_flip`` (same draws, same result) in one gather."""
    b = x.shape[0]
    # Draw in the order of the two-step version: crop offsets first, then the flip coins.
    state = generator.get_state()
    torch.randint(0, 2 * padding + 1, (2 * b,), generator=generator)
    flip = torch.rand(b, generator=generator) < p
    after = generator.get_state()
    generator.set_state(state)
    out = random_crop(x, padding, fill, generator, flip=flip)
    generator.set_state(after)
    return out


def random_horizontal_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_resized_crop(x: torch.Tensor, size: int, generator: torch.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` and resize it to
    ``size`` (bilinear), following torchvision's ``RandomResizedCrop`` sampling: up to 10 tries per image,
    then a central crop clamped to the allowed ratio.

    Returns float (B, C, size, size) on the 0-255 scale (resampling leaves the uint8 grid).
    """
    b, _, h, w = x.shape
    area = h * w
    tries = 10
    target = area * torch.empty(b, tries).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(b, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    cw = torch.sqrt(target * aspect).round()
    ch = torch.sqrt(target / aspect).round()
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1))
    # Fallback of torchvision: whole image clamped to the ratio range.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(h * ratio[1]), h
    else:
        fw, fh = w, h
    idx = first.clamp(min=0)
    crop_w = torch.where(first >= 0, cw[torch.arange(b), idx], torch.full((b,), float(fw)))
    crop_h = torch.where(first >= 0, ch[torch.arange(b), idx], torch.full((b,), float(fh)))
    u = torch.rand(b, 2, generator=generator)
    top = torch.where(first >= 0, torch.floor(u[:, 0] * (h - crop_h + 1)), torch.full((b,), float((h - fh) // 2)))
    left = torch.where(first >= 0, torch.floor(u[:, 1] * (w - crop_w + 1)), torch.full((b,), float((w - fw) // 2)))
    # Affine grid in normalised coordinates (align_corners=False): the crop box maps to [-1, 1].
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = crop_w / w
    theta[:, 1, 1] = crop_h / h
    theta[:, 0, 2] = (2 * left + crop_w) / w - 1
    theta[:, 1, 2] = (2 * top + crop_h) / h - 1
    grid = F.affine_grid(theta.to(x.device), [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

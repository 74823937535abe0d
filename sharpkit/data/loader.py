"""A deterministic, on-device data loader.

The whole (sub)set lives on the target device as one uint8 tensor. Each pass draws its shuffle and its
augmentations from two ``torch.Generator`` streams derived from ``(seed, epoch)``:

- the *order* stream depends on nothing but the seed and the epoch, so every control of a seed sees the
  same batches in the same order, with or without augmentation;
- the *augmentation* stream is separate, so turning augmentation on does not change the order.

Deriving the streams from the epoch (instead of carrying one generator along) makes resuming trivial:
epoch ``e`` looks the same whether the run got there in one go or restarted.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..utils.validation import check_choice, check_positive
from .augment import random_crop_flip, random_horizontal_flip, random_resized_crop

AUGMENTATIONS = ("none", "crop_flip", "resized_crop_flip")
_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


def derived_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, *keys)`` through numpy's SeedSequence, so that
    nearby seeds give unrelated streams."""
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def subset_indices(num_items: int, size: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed random subset of ``size`` items (all items, in order, when ``size`` is None).

    The subset depends on ``seed`` only (default 0, not the run seed), so every run seed trains on the
    same images, as the paper's runs all use the same training set.
    """
    if size is None or size == num_items:
        return torch.arange(num_items)
    if not 0 < size <= num_items:
        raise ValueError(
            f"Expected a subset size between 1 and {num_items} (the number of available images), but got "
            f"{size}. Lower --train-subset/--test-subset or leave it out to use all images."
        )
    return torch.randperm(num_items, generator=derived_generator(seed, 7))[:size].sort().values


class DeviceLoader:
    """Iterate ``(x, y)`` batches of normalised float images from a uint8 tensor held on ``device``.

    Args:
        images: uint8 (N, 3, H, W).
        labels: int64 (N,).
        batch_size: images per batch; the last batch is smaller unless ``drop_last``.
        mean, std: per-channel normalisation on the 0-1 scale.
        shuffle: draw a new order each pass (from the order stream).
        augmentation: one of ``AUGMENTATIONS``.
        seed: run seed from which both random streams derive.
        device: where images live and batches are produced (default: where ``images`` are).
        channels_last: return batches in channels-last memory format (faster convolutions on GPU).

    Each ``iter()`` uses the current epoch, then advances it; :meth:`set_epoch` pins it (the trainer
    does this so that a resumed run replays the same epochs).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 mean: Sequence[float], std: Sequence[float], *, shuffle: bool = False,
                 augmentation: str = "none", seed: int = 0, device: torch.device | str | None = None,
                 drop_last: bool = False, channels_last: bool = False) -> None:
        check_positive("batch_size", batch_size, integer=True)
        check_choice("augmentation", augmentation, AUGMENTATIONS)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"Expected uint8 images (N, C, H, W), but got {images.dtype} {tuple(images.shape)}.")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"Expected {images.shape[0]} labels, but got shape {tuple(labels.shape)}.")
        device = torch.device(device) if device is not None else images.device
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.epoch = 0
        self._scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32, device=device))).view(1, -1, 1, 1)
        self._shift = (torch.tensor(mean, dtype=torch.float32, device=device)
                       / torch.tensor(std, dtype=torch.float32, device=device)).view(1, -1, 1, 1)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        """The index order of pass ``epoch`` (identical for every control of a seed)."""
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=derived_generator(self.seed, epoch, _ORDER_STREAM))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or 0-255 float images -> ``(x / 255 - mean) / std``."""
        return x.float() * self._scale - self._shift

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.augmentation == "crop_flip":
            return random_crop_flip(x, padding=4, fill=128, generator=generator)
        if self.augmentation == "resized_crop_flip":
            x = random_resized_crop(x, x.shape[-1], generator)
            return random_horizontal_flip(x, generator)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = self.order(epoch).to(self.device)
        augment_gen = derived_generator(self.seed, epoch, _AUGMENT_STREAM)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            x = self.normalize(self._augment(self.images[index], augment_gen))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[index]

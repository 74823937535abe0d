"""The in-memory dataset types every sharpkit loader returns.

Images are kept as one uint8 tensor of shape (N, 3, H, W) (channels first, values 0-255) so the
whole (sub)set can be moved to the training device once; normalisation happens batch-wise on the
device (:mod:`sharpkit.data.loader`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Normalisations of the protocol (the authors' code; the book's protocol page, "Design").
CIFAR_MEAN = (0.5, 0.5, 0.5)
CIFAR_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_images(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"Expected `{name}` images as a uint8 tensor of shape (N, 3, H, W), but got dtype "
            f"{x.dtype} and shape {tuple(x.shape)}."
        )
    if y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise ValueError(
            f"Expected `{name}` labels as an int64 tensor of shape ({x.shape[0]},), but got dtype "
            f"{y.dtype} and shape {tuple(y.shape)}."
        )


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image classification dataset with a train and a test split.

    Attributes:
        name: registry name it was loaded under (e.g. ``"cifar10"``, ``"npz:/path/file.npz"``).
        x_train, x_test: uint8 tensors (N, 3, H, W).
        y_train, y_test: int64 tensors (N,), values in ``range(len(classes))``.
        classes: class names in label order.
        mean, std: per-channel normalisation (on the 0-1 scale) the protocol uses for this data.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        _check_images("x_train", self.x_train, self.y_train)
        _check_images("x_test", self.x_test, self.y_test)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])


@dataclass(frozen=True)
class CorruptedImageDataset:
    """A CIFAR-10-C style corrupted test set: per corruption, 5 severities of the same test images.

    Attributes:
        name: registry name (``"cifar10-c"`` / ``"cifar100-c"``).
        images: corruption name -> uint8 tensor (5, N, 3, H, W); index ``s - 1`` is severity ``s``.
        labels: int64 tensor (N,), shared by every corruption and severity.
        classes, mean, std: as in :class:`ImageDataset`.
    """

    name: str
    images: dict[str, torch.Tensor]
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    severities: tuple[int, ...] = field(default=(1, 2, 3, 4, 5))

    @property
    def corruptions(self) -> tuple[str, ...]:
        return tuple(self.images)

    def split(self, corruption: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, H, W) and labels (N,) of one corruption at one severity (1-5)."""
        if corruption not in self.images:
            raise ValueError(
                f"Expected a corruption in {', '.join(self.images)}, but got {corruption!r}."
            )
        if severity not in self.severities:
            raise ValueError(f"Expected severity in {self.severities}, but got {severity!r}.")
        return self.images[corruption][severity - 1], self.labels

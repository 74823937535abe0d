"""Tiny models and loaders for the metric tests, independent of sharpkit.models / sharpkit.data."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


class TinyNet(nn.Module):
    """MLP with the sharpkit model contract: ``features`` (with BatchNorm, so there are buffers)
    feeding ``classifier``; ``model(x) == classifier(features(x))``."""

    def __init__(self, inputs: int = 6, hidden: int = 8, width: int = 5, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(inputs, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, width), nn.ReLU(),
        )
        self.classifier = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TinyConvNet(nn.Module):
    """Convolutional net on (B, 3, H, W) images with the same contract."""

    def __init__(self, classes: int = 4, channels: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_net(seed: int = 0, dtype: torch.dtype = torch.float64, **sizes: int) -> TinyNet:
    """A TinyNet with random weights and non-trivial BatchNorm running statistics."""
    torch.manual_seed(seed)
    net = TinyNet(**sizes).to(dtype)
    with torch.no_grad():
        bn = net.features[1]
        bn.running_mean.normal_(0.0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.2)
        bn.num_batches_tracked.fill_(7)
    return net


class ShuffleLoader:
    """Re-iterable loader: each pass draws a new order and a random "augmentation" (additive noise)
    from its own generator, like sharpkit's DeviceLoader with shuffling and augmentation on."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0,
                 shuffle: bool = True, augment: float = 0.0) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.augment = shuffle, augment
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.x.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            x = self.x[index]
            if self.augment:
                x = x + self.augment * torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
            yield x, self.y[index]


def make_data(n: int = 23, inputs: int = 6, classes: int = 3, seed: int = 1,
              dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, inputs, generator=generator, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=generator)
    return x, y


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == reference.keys()
    for key, value in state.items():
        assert torch.equal(value, reference[key]), key

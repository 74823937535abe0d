"""Small helpers shared by the metric modules: where a model lives, eval mode, batch checks, SEM."""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of ``model``'s first floating parameter (or buffer)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    raise ValueError(
        "Expected a model with at least one floating-point parameter or buffer, but got none; "
        "the metrics take the device and dtype from the model's parameters."
    )


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` (and every submodule) in eval mode, then restore each module's own flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def iterate_batches(loader: Iterable, device: torch.device,
                    dtype: torch.dtype) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` from ``loader`` moved to ``device`` (x cast to the model's floating dtype).

    Raises ``ValueError`` for a malformed batch or an empty loader.
    """
    count = 0
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                "Expected the loader to yield (x, y) pairs, but got a batch of type "
                f"{type(batch).__name__}; wrap the data so each batch is (inputs, int64 labels)."
            )
        x, y = batch
        if not torch.is_tensor(x) or not torch.is_tensor(y):
            raise ValueError("Expected tensors in every (x, y) batch, but got "
                             f"{type(x).__name__} and {type(y).__name__}.")
        count += 1
        yield (x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)), y.to(device)
    if count == 0:
        raise ValueError("Expected a loader with at least one batch, but it yielded none.")


def check_logits_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``logits`` is (N, C) floating and ``labels`` (N,) integer in range."""
    if not torch.is_tensor(logits) or logits.ndim != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"Expected `logits` as a floating tensor of shape (N, C), but got {shape}.")
    if not torch.is_tensor(labels) or labels.shape != (logits.shape[0],) or labels.is_floating_point():
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(
            f"Expected `labels` as an integer tensor of shape ({logits.shape[0]},), but got {shape}."
        )
    if logits.shape[0] == 0:
        raise ValueError("Expected at least one sample, but `logits` is empty.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(
            f"Expected labels in [0, {logits.shape[1] - 1}] (the number of logit columns), but got "
            f"values in [{int(labels.min())}, {int(labels.max())}]."
        )


def mean_and_sem(values: Sequence[float], ddof: int) -> tuple[float, float]:
    """Mean and standard error ``std(values, ddof) / sqrt(n)`` (NaN when undefined)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    data = torch.tensor(values, dtype=torch.float64)
    mean = float(data.mean())
    if n - ddof <= 0:
        return mean, math.nan
    std = math.sqrt(float(((data - mean) ** 2).sum()) / (n - ddof))
    return mean, std / math.sqrt(n)

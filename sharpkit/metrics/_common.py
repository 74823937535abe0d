"""Helpers shared by the metric modules: where a model lives, eval mode, reading batches, the result
type, the default random stream and the standard error."""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

BatchFn = Callable[[Any], tuple[torch.Tensor, torch.Tensor]]

#: Seed of the generator every random measure uses when it is given ``generator=None``, so that two
#: calls on the same model and data return the same value. Pass your own ``torch.Generator`` for
#: independent draws (e.g. to estimate the spread over random seeds).
DEFAULT_SEED = 0

#: Keys the default ``batch_fn`` looks for in dict batches, in this order.
INPUT_KEYS = ("image", "input", "x", "images", "inputs")
LABEL_KEYS = ("label", "target", "y", "labels", "targets")


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


def resolve_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a new CPU generator seeded with :data:`DEFAULT_SEED` when it is None."""
    if generator is None:
        return torch.Generator().manual_seed(DEFAULT_SEED)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"Expected `generator` as a torch.Generator or None, but got {type(generator).__name__}.")
    return generator


def _first_key(batch: Mapping, keys: Sequence[str], what: str) -> Any:
    for key in keys:
        if key in batch:
            return batch[key]
    raise ValueError(
        f"Expected a dict batch with {what} under one of the keys {list(keys)}, but it has the keys "
        f"{sorted(map(str, batch))}; pass batch_fn=lambda b: (b[<inputs key>], b[<labels key>])."
    )


def default_batch_fn(batch: Any) -> tuple[Any, Any]:
    """``(x, y)`` of a batch: ``(x, y)``, ``(x, y, *rest)`` (the rest is ignored, e.g. sample indices)
    or a dict with the inputs under ``"image"``/``"input"``/``"x"``/``"images"``/``"inputs"`` and the
    labels under ``"label"``/``"target"``/``"y"``/``"labels"``/``"targets"`` (first key found).

    Any other layout needs a ``batch_fn`` of its own, a function of one batch returning ``(x, y)``,
    passed to the measure as ``batch_fn=``.

    Examples:
        >>> import operator, torch
        >>> from sharpkit.metrics import default_batch_fn
        >>> x, y = torch.zeros(2, 3), torch.tensor([0, 1])
        >>> default_batch_fn((x, y, torch.arange(2)))[1]  # (x, y, sample indices)
        tensor([0, 1])
        >>> default_batch_fn({"image": x, "label": y})[0].shape
        torch.Size([2, 3])
        >>> batch_fn = operator.itemgetter("pixels", "target")  # a dict with other keys
        >>> batch_fn({"pixels": x, "target": y})[1]
        tensor([0, 1])
    """
    if isinstance(batch, Mapping):
        return _first_key(batch, INPUT_KEYS, "inputs"), _first_key(batch, LABEL_KEYS, "labels")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    length = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
    raise ValueError(
        f"Expected each batch as (x, y), (x, y, ...) or a dict with input and label keys, but got a "
        f"{type(batch).__name__}{length}; pass batch_fn=<function mapping one batch to (x, y)>."
    )


def is_one_shot(loader: Iterable) -> bool:
    """True when iterating ``loader`` consumes it (a generator or any iterator: ``iter(loader) is
    loader``). Tested through the iterator protocol, so a DataLoader is not asked for an iterator
    (which would start its workers)."""
    return isinstance(loader, Iterator)


def check_reiterable(loader: Iterable, measure: str, passes: str) -> None:
    """Raise ``ValueError`` when ``measure`` needs several passes over a one-shot ``loader``."""
    if is_one_shot(loader):
        raise ValueError(
            f"{measure} iterates the loader {passes}, but got a one-shot {type(loader).__name__} (a generator "
            "or iterator can be read only once); pass a re-iterable such as a list of batches or a "
            "torch.utils.data.DataLoader."
        )


def _labels(y: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Integer labels of any width (uint8, int16, int32) become int64, as torch's losses and gather
    # require; floating targets (soft labels, regression) are kept as they are.
    y = y.to(device)
    return y if y.is_floating_point() or y.is_complex() or y.dtype == torch.int64 else y.long()


def iterate_batches(loader: Iterable, device: torch.device, dtype: torch.dtype,
                    batch_fn: BatchFn | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` from ``loader`` moved to ``device``: ``x`` cast to the model's floating
    ``dtype`` (when floating), integer labels cast to int64.

    Each batch is mapped to ``(x, y)`` by ``batch_fn`` (default :func:`default_batch_fn`). Raises
    ``ValueError`` for a malformed batch or an empty (or already consumed) loader.
    """
    batch_fn = default_batch_fn if batch_fn is None else batch_fn
    count = 0
    for batch in loader:
        x, y = batch_fn(batch)
        if not torch.is_tensor(x) or not torch.is_tensor(y):
            raise ValueError("Expected tensors for x and y in every batch, but got "
                             f"{type(x).__name__} and {type(y).__name__}; convert them with torch.as_tensor "
                             "in the dataset or in batch_fn.")
        count += 1
        yield (x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)), _labels(y, device)
    if count == 0:
        hint = (" It is an iterator that was already consumed (a generator can be read only once); pass a "
                "list of batches or a DataLoader." if is_one_shot(loader) else "")
        raise ValueError(f"Expected a loader with at least one batch, but it yielded none.{hint}")


def renamed_argument(old: str, new: str) -> Callable:
    """Decorator: accept the keyword ``old`` as ``new`` with a DeprecationWarning."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{function.__name__}() got both `{new}` and its old name `{old}`; pass `{new}`.")
                warnings.warn(f"{function.__name__}(): the argument `{old}` is now called `{new}`; the old name "
                              "will be removed in sharpkit 0.3.", DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)
        return wrapper
    return decorate


def as_labels(labels: torch.Tensor) -> torch.Tensor:
    """Integer ``labels`` as int64 (uint8/int16/int32 accepted)."""
    return labels if labels.dtype == torch.int64 else labels.long()


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


@dataclass(frozen=True)
class Measurement:
    """The result type of every measure that returns more than a float.

    Attributes:
        value: the measure (a float, in the units its function documents).
        sem: its standard error (NaN where the measure has none, e.g. a deterministic value).
        details: everything else, by name (per-sample values, settings used, ...). Each result class
            also exposes its details as read-only attributes (``result.values``, ``result.base_loss``).

    ``float(result)`` is ``result.value``.

    Examples:
        >>> from sharpkit.metrics import Measurement
        >>> result = Measurement(0.25, sem=0.05, details={"samples": 4})
        >>> float(result), result.sem, result.details["samples"]
        (0.25, 0.05, 4)
    """

    value: float
    sem: float = math.nan
    details: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)


def detail(name: str, doc: str = "") -> property:
    """A read-only attribute of a :class:`Measurement` subclass that returns ``details[name]``."""
    return property(lambda self: self.details[name], doc=doc or f"``details[{name!r}]``.")

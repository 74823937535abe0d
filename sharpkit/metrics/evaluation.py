"""Evaluation metrics of the paper: accuracy, calibration, generalisation gap, prediction
disagreement across seeds and accuracy under corruptions.

Source: "Understanding Deep Learning Requires Rethinking Sharpness", Sec. 3 and App. A, with the
exact conventions of its authors' code.

Functions over tensors are pure (``accuracy``, ``ece``, ``generalization_gap``,
``prediction_disagreement``); ``predict`` and ``corruption_accuracy`` run a model in eval mode without
gradients and restore its train/eval flags afterwards.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import check_choice, check_positive
from ._common import (
    BatchFn,
    Measurement,
    as_labels,
    check_logits_labels,
    detail,
    eval_mode,
    iterate_batches,
    mean_and_sem,
    model_device_dtype,
)

if TYPE_CHECKING:  # only for annotations: corruption_accuracy reads the dataset's attributes
    from ..data.base import CorruptedImageDataset

__all__ = [
    "CorruptionAccuracy",
    "Disagreement",
    "Predictions",
    "accuracy",
    "corruption_accuracy",
    "ece",
    "generalization_gap",
    "predict",
    "prediction_disagreement",
]


@dataclass(frozen=True)
class Predictions:
    """Outputs of :func:`predict`: ``logits`` (N, C) and ``labels`` (N,), on the model's device.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import Predictions, accuracy
        >>> outputs = Predictions(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        >>> accuracy(outputs.logits, outputs.labels)
        0.5
    """

    logits: torch.Tensor
    labels: torch.Tensor


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, *, batch_fn: BatchFn | None = None) -> Predictions:
    """Logits and labels (int64) of every batch of ``loader``, in eval mode, without gradients.

    Batches are moved to the device (and floating dtype) of the model's parameters and mapped to
    ``(x, y)`` by ``batch_fn`` (default: ``(x, y, *rest)`` tuples and dicts). The model's train/eval
    flags are restored afterwards.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import accuracy, predict
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,), dtype=torch.int32)) for _ in range(2)]
        >>> outputs = predict(model, loader)
        >>> outputs.logits.shape, outputs.labels.dtype
        (torch.Size([16, 3]), torch.int64)
        >>> 0.0 <= accuracy(outputs.logits, outputs.labels) <= 1.0
        True
    """
    device, dtype = model_device_dtype(model)
    logits, labels = [], []
    with eval_mode(model):
        for x, y in iterate_batches(loader, device, dtype, batch_fn):
            logits.append(model(x))
            labels.append(y)
    return Predictions(torch.cat(logits), torch.cat(labels))


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction in [0, 1]: ``mean_n [argmax_c logits[n, c] == labels[n]]``.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import accuracy
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
        >>> round(accuracy(logits, torch.tensor([0, 1, 0])), 4)
        0.6667
    """
    check_logits_labels(logits, labels)
    return float((logits.argmax(dim=1) == as_labels(labels)).double().mean())


def _looks_like_probabilities(values: torch.Tensor) -> bool:
    """Every entry in [0, 1] and every row summing to 1 (to 1e-3)."""
    rows = values.double().sum(dim=1)
    return bool(((values >= 0) & (values <= 1)).all() and ((rows - 1).abs() <= 1e-3).all())


def ece(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, *, from_probabilities: bool = False) -> float:
    r"""Expected calibration error (l1) of the softmax probabilities, as torchmetrics computes it.

    .. math::
        \mathrm{ECE} = \sum_k \frac{n_k}{N}\,\bigl|\mathrm{acc}_k - \mathrm{conf}_k\bigr|
                     = \frac{1}{N}\sum_k \Bigl|\sum_{n \in B_k} ([\hat y_n = y_n] - \hat p_n)\Bigr|

    with confidence :math:`\hat p_n = \max_c \mathrm{softmax}(z_n)_c`, prediction :math:`\hat y_n` its
    argmax, and bins :math:`B_k = \{n : k/K \le \hat p_n < (k+1)/K\}`, ``k = 0..K-1`` plus the bin
    :math:`\{\hat p_n = 1\}` (torchmetrics' ``bucketize(right=True)`` convention; confidences binned in
    float32 as torchmetrics does). This equals
    ``torchmetrics.classification.MulticlassCalibrationError(C, n_bins=15, norm="l1")`` fed with
    ``softmax(logits)``, the paper's "Test ECE" (unitless, in [0, 1]).

    Args:
        logits: (N, C) floating logits (or probabilities with ``from_probabilities=True``).
        labels: (N,) integer class labels (any integer dtype).
        n_bins: number of equal-width confidence bins K (default 15 as in the paper).
        from_probabilities: the rows of ``logits`` are already probabilities (used as they are,
            not softmaxed). Without it, input whose rows all lie in [0, 1] and sum to 1 is refused,
            since softmaxing probabilities again flattens them and gives a wrong ECE.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import ece
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
        >>> round(ece(logits, labels), 4) == round(ece(logits.softmax(1), labels, from_probabilities=True), 4)
        True
    """
    check_logits_labels(logits, labels)
    check_positive("n_bins", n_bins, integer=True)
    if from_probabilities:
        if not _looks_like_probabilities(logits):
            raise ValueError("Expected probabilities with from_probabilities=True (entries in [0, 1], rows summing "
                             "to 1), but got other values; pass the logits without the flag instead.")
        probabilities = logits
    elif _looks_like_probabilities(logits):
        raise ValueError("Expected logits, but every row lies in [0, 1] and sums to 1: these look like "
                         "probabilities, and softmaxing them again would give a wrong ECE. Pass "
                         "from_probabilities=True if they are probabilities.")
    else:
        probabilities = torch.softmax(logits, dim=1)
    confidence, prediction = probabilities.max(dim=1)
    confidence = confidence.float()
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype, device=confidence.device)
    bins = torch.bucketize(confidence, boundaries, right=True) - 1
    gap = (prediction == as_labels(labels)).double() - confidence.double()
    per_bin = torch.zeros(n_bins + 1, dtype=torch.float64, device=gap.device).scatter_add_(0, bins, gap)
    return float(per_bin.abs().sum() / logits.shape[0])


def generalization_gap(train_logits: torch.Tensor, train_labels: torch.Tensor,
                       test_logits: torch.Tensor, test_labels: torch.Tensor,
                       measure: str = "accuracy") -> float:
    """Generalisation gap between the training and the test set.

    ``measure="accuracy"``: train accuracy minus test accuracy (fractions, so in [-1, 1]);
    ``measure="loss"``: test minus train mean cross-entropy (nats). Both are positive when the model
    does better on the data it was trained on.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import generalization_gap
        >>> train_logits, train_labels = torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1])
        >>> test_logits, test_labels = torch.tensor([[3.0, 0.0], [3.0, 0.0]]), torch.tensor([0, 1])
        >>> generalization_gap(train_logits, train_labels, test_logits, test_labels)  # 1.0 - 0.5
        0.5
        >>> round(generalization_gap(train_logits, train_labels, test_logits, test_labels, measure="loss"), 4)
        1.5
    """
    check_choice("measure", measure, ("accuracy", "loss"))
    check_logits_labels(train_logits, train_labels)
    check_logits_labels(test_logits, test_labels)
    if measure == "accuracy":
        return accuracy(train_logits, train_labels) - accuracy(test_logits, test_labels)
    train_loss = F.cross_entropy(train_logits.double(), as_labels(train_labels))
    test_loss = F.cross_entropy(test_logits.double(), as_labels(test_labels))
    return float(test_loss - train_loss)


class Disagreement(Measurement):
    """Result of :func:`prediction_disagreement`: ``value`` (also ``mean``) is the mean pairwise
    disagreement (a fraction in [0, 1]), ``sem`` its standard error ``std(ddof=0) / sqrt(n_pairs)``
    (the authors' convention); ``details["n_pairs"]`` (also ``n_pairs``) the number of pairs;
    ``details["per_model"]`` (also ``per_model``) each model's mean disagreement with the other models, in the
    order of the predictions given.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import Disagreement, prediction_disagreement
        >>> result = prediction_disagreement([torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0])])
        >>> isinstance(result, Disagreement), result.mean, result.n_pairs
        (True, 0.25, 2)
    """

    mean = property(lambda self: self.value, doc="The mean pairwise disagreement (= ``value``).")
    n_pairs = detail("n_pairs", "Number of model pairs compared.")
    per_model = detail("per_model", "Each model's mean disagreement with the others, in input order.")


def prediction_disagreement(predictions_by_seed: Sequence[torch.Tensor] | Mapping[object, torch.Tensor],
                            ordered: bool = True) -> Disagreement:
    r"""Pairwise top-1 disagreement between models trained from different seeds.

    For models :math:`i \ne j`: :math:`d_{ij} = 1 - \frac{1}{N}\sum_n [\hat y^i_n = \hat y^j_n]`.
    ``ordered=True`` (the paper's convention) takes every ordered pair (90 values for 10 seeds, each
    unordered value twice); ``ordered=False`` takes each unordered pair once (45 values). The mean is
    the same; the SEM is ``std(d, ddof=0) / sqrt(n_pairs)`` as in the authors' code, so the ordered
    SEM is :math:`\sqrt 2` times smaller.

    Args:
        predictions_by_seed: one tensor per seed (a sequence, or a mapping whose values are used),
            either predicted labels (N,) or logits/probabilities (N, C) (argmax over the last dim).
        ordered: ordered pairs (True, paper) or unordered pairs (False).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import prediction_disagreement
        >>> seeds = [torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]), torch.tensor([1, 1, 0, 0])]
        >>> ordered, unordered = prediction_disagreement(seeds), prediction_disagreement(seeds, ordered=False)
        >>> ordered.n_pairs, unordered.n_pairs, round(ordered.value, 4), round(unordered.value, 4)
        (6, 3, 0.3333, 0.3333)
        >>> ordered.per_model  # model 0 differs from model 1 on 1 of 4 points and from model 2 on 2 of 4
        (0.375, 0.25, 0.375)
    """
    values = list(predictions_by_seed.values()) if isinstance(predictions_by_seed, Mapping) \
        else list(predictions_by_seed)
    if len(values) < 2:
        raise ValueError(
            f"Expected predictions of at least 2 seeds, but got {len(values)}; disagreement compares "
            "pairs of models."
        )
    labels = []
    for k, pred in enumerate(values):
        if not torch.is_tensor(pred) or pred.ndim not in (1, 2):
            raise ValueError(
                f"Expected predicted labels (N,) or logits (N, C) for every seed, but entry {k} is "
                f"{tuple(pred.shape) if torch.is_tensor(pred) else type(pred).__name__}."
            )
        labels.append(pred.argmax(dim=-1) if pred.ndim == 2 else pred)
    n = labels[0].shape[0]
    if n == 0 or any(lab.shape != (n,) for lab in labels):
        raise ValueError(
            "Expected the same non-zero number of test samples for every seed, but got "
            f"{[int(lab.shape[0]) for lab in labels]}."
        )
    stacked = torch.stack([lab.to(labels[0].device) for lab in labels])  # (S, N)
    seeds = range(len(labels))
    d = {(i, j): float((stacked[i] != stacked[j]).double().mean()) for i in seeds for j in seeds if i != j}
    pairs = [value for (i, j), value in d.items() if ordered or i < j]
    mean, sem = mean_and_sem(pairs, ddof=0)
    # Each model's mean disagreement with the others (the mean of these is the mean over ordered pairs).
    others = [[d[i, j] for j in seeds if j != i] for i in seeds]
    per_model = tuple(sum(row) / len(row) for row in others)
    return Disagreement(value=mean, sem=sem, details={"n_pairs": len(pairs), "per_model": per_model})


class CorruptionAccuracy(Measurement):
    """Result of :func:`corruption_accuracy`, all accuracies in percent: ``value`` (also ``mean``) is
    the unweighted mean over every (corruption, severity) split (the paper's number); ``sem`` is NaN
    (the splits are not independent samples).

    ``details`` (also attributes): ``accuracies`` (corruption -> accuracies at each severity, in
    ``severities`` order), ``per_corruption`` (corruption -> mean over severities), ``per_severity``
    (mean over corruptions at each severity), ``corruptions`` (the corruptions used: results must say
    which, e.g. when frost is missing) and ``severities``.

    Examples:
        >>> import torch
        >>> from sharpkit.data import CorruptedImageDataset
        >>> from sharpkit.metrics import CorruptionAccuracy, corruption_accuracy
        >>> _ = torch.manual_seed(0)
        >>> images = {name: torch.randint(0, 256, (5, 6, 3, 8, 8), dtype=torch.uint8) for name in ("fog", "snow")}
        >>> corrupted = CorruptedImageDataset("toy-c", images, torch.randint(0, 2, (6,)), ("a", "b"),
        ...                                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> result = corruption_accuracy(model, corrupted)
        >>> isinstance(result, CorruptionAccuracy), sorted(result.per_corruption), len(result.per_severity)
        (True, ['fog', 'snow'], 5)
    """

    mean = property(lambda self: self.value, doc="The mean accuracy over all splits (= ``value``).")
    accuracies = detail("accuracies")
    per_corruption = detail("per_corruption")
    per_severity = detail("per_severity")
    corruptions = detail("corruptions")
    severities = detail("severities")


@torch.no_grad()
def corruption_accuracy(model: nn.Module, corrupted: CorruptedImageDataset, batch_size: int = 1000,
                        corruptions: Sequence[str] | None = None) -> CorruptionAccuracy:
    """Top-1 accuracy (percent) on every corruption x severity of a CIFAR-10-C style set, eval mode.

    Images (uint8) are normalised batch-wise on the model's device exactly as the training loader
    does, ``(x / 255 - mean) / std`` with the dataset's ``mean``/``std``. The paper's corruption
    accuracy is the unweighted mean of the 19 x 5 = 95 accuracies (``result.mean``).

    Args:
        model: classifier; its device and dtype are used.
        corrupted: a ``sharpkit.data.CorruptedImageDataset`` (``sharpkit.data.load_dataset("cifar10-c")``,
            or ``sharpkit corrupt`` for a generated one).
        batch_size: images per forward pass (memory only; the result does not depend on it).
        corruptions: subset of ``corrupted.corruptions`` to evaluate (default: all of them).

    Examples:
        >>> import torch
        >>> from sharpkit.data import CorruptedImageDataset
        >>> from sharpkit.metrics import corruption_accuracy
        >>> _ = torch.manual_seed(0)
        >>> images = {"fog": torch.randint(0, 256, (5, 6, 3, 8, 8), dtype=torch.uint8)}  # 5 severities
        >>> corrupted = CorruptedImageDataset("toy-c", images, torch.randint(0, 2, (6,)), ("a", "b"),
        ...                                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> result = corruption_accuracy(model, corrupted, batch_size=4)
        >>> result.corruptions, result.severities, 0.0 <= result.mean <= 100.0
        (('fog',), (1, 2, 3, 4, 5), True)
    """
    check_positive("batch_size", batch_size, integer=True)
    available = tuple(corrupted.corruptions)
    names = available if corruptions is None else tuple(corruptions)
    for name in names:
        check_choice("corruptions", name, available, "Pick corruptions present in the dataset.")
    if not names:
        raise ValueError("Expected at least one corruption to evaluate, but got none.")
    severities = tuple(corrupted.severities)
    device, dtype = model_device_dtype(model)
    std = torch.tensor(corrupted.std, dtype=torch.float32, device=device)
    # Same arithmetic as sharpkit.data.loader.DeviceLoader.normalize, so clean and corrupted
    # images go through bit-identical preprocessing.
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (torch.tensor(corrupted.mean, dtype=torch.float32, device=device) / std).view(1, -1, 1, 1)

    accuracies: dict[str, tuple[float, ...]] = {}
    with eval_mode(model):
        for name in names:
            row = []
            for severity in severities:
                images, labels = corrupted.split(name, severity)
                correct = 0
                for start in range(0, images.shape[0], batch_size):
                    x = images[start:start + batch_size].to(device).float() * scale - shift
                    y = labels[start:start + batch_size].to(device)
                    correct += int((model(x.to(dtype)).argmax(dim=1) == y).sum())
                row.append(100.0 * correct / images.shape[0])
            accuracies[name] = tuple(row)
    per_corruption = {name: math.fsum(row) / len(row) for name, row in accuracies.items()}
    per_severity = tuple(math.fsum(accuracies[name][k] for name in names) / len(names)
                         for k in range(len(severities)))
    mean = math.fsum(a for row in accuracies.values() for a in row) / (len(names) * len(severities))
    return CorruptionAccuracy(value=mean, details={"accuracies": accuracies, "per_corruption": per_corruption,
                                                   "per_severity": per_severity, "corruptions": names,
                                                   "severities": severities})

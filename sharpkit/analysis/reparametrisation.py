"""The reparametrisation demo of the book, written once: train a small VGG briefly, rescale it without
changing its function (Dinh et al. 2017: the BatchNorm before the classifier times ``c``, the classifier
divided by ``c``; ReLU is positively homogeneous), and see which sharpness measures move.

Used by the pages "The measures at work" (the paper's three measures, a layer-wise and a per-feature
factor) and "Beyond the paper" (every measure of sharpkit, a layer-wise factor). torch, the trainer and the
measures are imported inside the functions: the analysis layer imports without torch.
"""
from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DemoModel", "all_measures", "head_entries", "logit_changes", "measure_copies", "paper_measures",
           "ratio_reading", "relative_flatness_agreement", "reparametrise", "reparametrised_copies", "split_changed",
           "train_demo_model", "unchanged"]


@dataclass
class DemoModel:
    """A briefly trained model and the fixed, unshuffled loader every measure of the demo sees."""

    model: Any
    loader: Any
    status: str
    test_accuracy: float

    def __str__(self) -> str:
        return (f"status {self.status}; test accuracy {self.test_accuracy:.2f}; classifier "
                f"{tuple(self.model.classifier.weight.shape)} (classes x features)")


def train_demo_model(dataset: str = "digits", width: int = 4, train_images: int = 512, epochs: int = 4,
                     lr: float = 0.01, seed: int = 0, batch_size: int = 32, loader_batch: int = 64) -> DemoModel:
    """sharpkit's VGG-19 at ``width`` trained with the Baseline control (SGD with momentum, no regulariser) on
    ``train_images`` images of ``dataset`` on the CPU, and a fixed loader over the same images in batches of
    ``loader_batch``. The checkpoint lives in a temporary folder, removed before this returns."""
    from ..data import DeviceLoader, load_clean, subset_indices
    from ..run.config import make_train_config
    from ..run.evaluate import load_run
    from ..run.train import train

    config = make_train_config("vgg19", dataset, "baseline", seed, model_size={"width": width}, epochs=epochs,
                               train_subset=train_images, batch_size=batch_size, lr=lr)
    with tempfile.TemporaryDirectory(prefix="sharpkit-demo-") as work:
        run = train(config, Path(work) / "run", device="cpu", progress=False)
        _, model, _ = load_run(run.out_dir)
    data = load_clean(dataset)
    images = subset_indices(len(data.y_train), train_images)
    loader = DeviceLoader(data.x_train[images], data.y_train[images], loader_batch, data.mean, data.std)
    return DemoModel(model, loader, run.status, float(run.metrics["test_accuracy"]))


def reparametrise(model: Any, factor: Any) -> Any:
    """A copy of ``model`` computing the same function: the BatchNorm of the feature layer (``fc[1]``) scaled
    by ``factor`` (a number or one per feature), the classifier's weights divided by it."""
    import torch

    out = copy.deepcopy(model)
    factor = torch.as_tensor(factor, dtype=out.classifier.weight.dtype)
    with torch.no_grad():
        out.fc[1].weight.mul_(factor)
        out.fc[1].bias.mul_(factor)
        out.classifier.weight.div_(factor)
    return out


def reparametrised_copies(model: Any, scale: float, seed: int = 0, per_feature: bool = True) -> dict[str, Any]:
    """``{"original": model, "layer-wise c": ..., "per-feature c_t": ...}``: one factor ``scale`` for every
    feature, and (with ``per_feature``) one factor per feature drawn log-uniformly in [1/scale, scale]."""
    import torch

    copies = {"original": model, "layer-wise c": reparametrise(model, scale)}
    if per_feature:
        generator = torch.Generator().manual_seed(seed)
        factors = scale ** (2 * torch.rand(model.classifier.in_features, generator=generator) - 1)
        copies["per-feature c_t"] = reparametrise(model, factors)
    return copies


def logit_changes(models: Mapping[str, Any], loader: Any) -> dict[str, float]:
    """Largest change of the logits of each copy against ``models["original"]``, relative to the largest logit."""
    from .. import metrics

    logits = {name: metrics.predict(m, loader).logits for name, m in models.items()}
    reference = logits["original"]
    return {name: float((value - reference).abs().max() / reference.abs().max()) for name, value in logits.items()}


def relative_flatness_agreement(model: Any, loader: Any) -> pd.DataFrame:
    """Relative flatness by sharpkit's closed form and by the exact Hessian (``relative_flatness_exact``), for
    both feature normalisations and both reductions, with their relative difference."""
    from .. import metrics

    rows = []
    for normalize in (True, False):
        for reduction in ("sum_batches", "mean"):
            options: dict[str, Any] = {"normalize_features": normalize, "reduction": reduction}
            closed = metrics.relative_flatness(model, loader, **options)
            exact = metrics.relative_flatness_exact(model, loader, **options)
            rows.append({"std normalisation": normalize, "reduction": reduction, "closed form": closed,
                         "exact Hessian": exact, "relative difference": abs(closed - exact) / abs(exact)})
    return pd.DataFrame(rows)


def head_entries(classes: int = 100, features: int = 512) -> str:
    """How large the Hessian of a classifier head is: the reason the exact route is expensive."""
    entries = (classes * features) ** 2
    return (f"CIFAR-100 head: ({classes} x {features})^2 = {entries:.2e} Hessian entries, "
            f"{entries * 4 / 2**30:.1f} GiB in float32 per batch")


def _generator(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def paper_measures(loader: Any, sam_samples: int = 10, seed: int = 0) -> dict[str, Callable[[Any], float]]:
    """The paper's three measures (relative flatness both with and without its std normalisation), each a
    function of a model; SAM sharpness draws the same directions for every model."""
    from .. import metrics

    # The paper's conventions (sharpkit.metrics.PAPER_CONVENTIONS), not the library's defaults: these are
    # the paper's measures as it computed them.
    rf, sam = metrics.PAPER_CONVENTIONS["relative_flatness"], metrics.PAPER_CONVENTIONS["sam_sharpness"]
    return {
        "Fisher-Rao norm": lambda m: metrics.fisher_rao_norm(m, loader),
        "Relative flatness (paper: std-normalised)": lambda m: metrics.relative_flatness(m, loader, **rf),
        "Relative flatness (without std normalisation)":
            lambda m: metrics.relative_flatness(m, loader, **{**rf, "normalize_features": False}),
        "SAM sharpness": lambda m: metrics.sam_sharpness(m, loader, samples=sam_samples, **sam,
                                                         generator=_generator(seed)).value,
    }


def all_measures(loader: Any, seed: int = 0) -> dict[str, Callable[[Any], float]]:
    """Every sharpness measure of sharpkit at the demo's small settings, each a function of a model; the
    random ones draw the same numbers for every model."""
    from .. import metrics

    g = lambda: _generator(seed)  # noqa: E731 - the same draws for every copy
    return {
        "Fisher-Rao norm": lambda m: metrics.fisher_rao_norm(m, loader),
        "Relative flatness": lambda m: metrics.relative_flatness(m, loader),
        "SAM sharpness": lambda m: metrics.sam_sharpness(m, loader, samples=10, generator=g()).value,
        "Adaptive avg. sharpness": lambda m: metrics.adaptive_sharpness(m, loader, 0.02, samples=5,
                                                                        generator=g()).value,
        "Adaptive worst sharpness": lambda m: metrics.adaptive_sharpness(m, loader, 0.002, kind="worst", norm="linf",
                                                                         steps=10, generator=g()).value,
        "Worst-case sharpness": lambda m: metrics.adaptive_sharpness(m, loader, 1e-4, kind="worst", norm="linf",
                                                                     adaptive=False, steps=10, generator=g()).value,
        "Hessian trace": lambda m: metrics.hessian_trace(m, loader, samples=10, generator=g()).value,
        "Adaptive Hessian trace": lambda m: metrics.hessian_trace(m, loader, samples=10, scaling="adaptive",
                                                                  generator=g()).value,
        "Top Hessian eigenvalue": lambda m: metrics.hessian_top_eigenvalues(m, loader, iters=20,
                                                                            generator=g()).values[0],
    }


def measure_copies(models: Mapping[str, Any], measures: Mapping[str, Callable[[Any], float]]) -> pd.DataFrame:
    """Each measure (rows) on each copy (columns), then the ratio of every copy to the original
    (``ratio, <copy>`` columns)."""
    values = pd.DataFrame({name: {k: float(f(m)) for k, f in measures.items()} for name, m in models.items()})
    ratios = values.div(values["original"], axis=0).drop(columns="original").add_prefix("ratio, ")
    return pd.concat([values, ratios], axis=1)


def unchanged(values: pd.DataFrame, rel_tol: float = 1e-4) -> pd.DataFrame:
    """Whether each ratio of :func:`measure_copies` is 1 up to ``rel_tol`` (columns ``unchanged under <copy>``)."""
    ratios = values.filter(like="ratio, ")
    return ratios.apply(lambda column: column.map(lambda r: math.isclose(r, 1.0, rel_tol=rel_tol))).rename(
        columns=lambda c: c.replace("ratio, ", "unchanged under "))


def split_changed(values: pd.DataFrame, copy_name: str, tol: float = 1e-3) -> tuple[list[str], list[str]]:
    """The measures that ``copy_name`` changes by more than ``tol`` (relative), and those it leaves unchanged."""
    changed = (values[f"ratio, {copy_name}"] - 1).abs() > tol
    return list(values.index[changed]), list(values.index[~changed])


def ratio_reading(values: pd.DataFrame, copy_name: str, measures: tuple[str, ...] = (
        "Hessian trace", "Top Hessian eigenvalue", "SAM sharpness")) -> str:
    """The measured factors by which the reparametrisation moved the non-adaptive measures, in one sentence."""
    ratios = values[f"ratio, {copy_name}"]
    parts = [f"{m} x{ratios[m]:.3g}" for m in measures if m in ratios.index]
    return f"Measured under {copy_name}: " + ", ".join(parts) + "."

"""The common API of sharpkit.metrics: batch shapes and label dtypes, one-shot loaders, the renamed
``batches`` argument, the default seed of every random measure, the result type, the paper preset and
the ECE guard against probabilities (against torchmetrics)."""
from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

import sharpkit.metrics as M

from ._helpers import ShuffleLoader, make_data, make_net


def _data(n=12):
    x, y = make_data(n=n)
    return x, y, [(x[:6], y[:6]), (x[6:], y[6:])]


# Every measure that reads a loader, called with a loader (and keyword arguments), returning a float.
READERS = {
    "predict": lambda net, loader, **kw: float(M.predict(net, loader, **kw).logits.sum()),
    "fisher_rao_norm": lambda net, loader, **kw: M.fisher_rao_norm(net, loader, **kw),
    "sam_sharpness": lambda net, loader, **kw: M.sam_sharpness(net, loader, samples=2, **kw).value,
    "sam_sharpness_paper": lambda net, loader, **kw: M.sam_sharpness(net, loader, samples=2, convention="paper",
                                                                     **kw).value,
    "relative_flatness": lambda net, loader, **kw: M.relative_flatness(net, loader, **kw),
    "relative_flatness_exact": lambda net, loader, **kw: M.relative_flatness_exact(net, loader, **kw),
    "adaptive_sharpness": lambda net, loader, **kw: M.adaptive_sharpness(net, loader, 0.01, samples=2,
                                                                         batch_size=None, **kw).value,
    "hessian_trace": lambda net, loader, **kw: M.hessian_trace(net, loader, samples=2, **kw).value,
    "hessian_top_eigenvalues": lambda net, loader, **kw: M.hessian_top_eigenvalues(net, loader, iters=3, **kw).value,
    "hessian_matrix": lambda net, loader, **kw: float(M.hessian_matrix(net, loader, params=["classifier.bias"],
                                                                       **kw).sum()),
    "hessian_vector_product": lambda net, loader, **kw: float(M.hessian_vector_product(
        net, loader, {"classifier.bias": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)},
        **kw)["classifier.bias"].sum()),
    "loss_along_direction": lambda net, loader, **kw: M.loss_along_direction(
        net, loader, {"classifier.bias": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)}, [0.5],
        **kw).losses[0],
    "asymmetry_factor": lambda net, loader, **kw: M.asymmetry_factor(net, loader, 0.5, directions=2, **kw).value,
}


@pytest.mark.parametrize("name", list(READERS))
def test_batch_shapes_and_label_dtypes(name):
    net = make_net()
    x, y, loader = _data()
    expected = READERS[name](net, loader)
    shapes = {
        "(x, y, index)": [(xb, yb, torch.arange(len(yb))) for xb, yb in loader],
        "dict image/label": [{"image": xb, "label": yb} for xb, yb in loader],
        "dict input/target": [{"input": xb, "target": yb, "meta": 0} for xb, yb in loader],
        "dict x/y": [{"x": xb, "y": yb} for xb, yb in loader],
        "int32 labels": [(xb, yb.int()) for xb, yb in loader],
        "int16 labels": [(xb, yb.short()) for xb, yb in loader],
        "uint8 labels": [(xb, yb.to(torch.uint8)) for xb, yb in loader],
    }
    for shape, batches in shapes.items():
        assert READERS[name](net, batches) == expected, shape
    custom = [{"pixels": xb, "classes": yb} for xb, yb in loader]
    assert READERS[name](net, custom, batch_fn=lambda b: (b["pixels"], b["classes"])) == expected
    with pytest.raises(ValueError, match=r"keys \['classes', 'pixels'\].*batch_fn"):
        READERS[name](net, custom)
    with pytest.raises(ValueError, match="tuple of length 1.*batch_fn"):
        READERS[name](net, [(xb,) for xb, _ in loader])


def test_labels_of_any_integer_width_in_the_functions_of_logits():
    logits = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 4, (20,), generator=torch.Generator().manual_seed(1))
    for dtype in (torch.int32, torch.int16, torch.uint8):
        other = labels.to(dtype)
        assert M.accuracy(logits, other) == M.accuracy(logits, labels)
        assert M.ece(logits, other) == M.ece(logits, labels)
        assert torch.equal(M.fisher_rao_terms(logits, other), M.fisher_rao_terms(logits, labels))
        assert M.generalization_gap(logits, other, logits, other, measure="loss") == 0.0
    x, y = make_data()
    assert M.predict(make_net(), [(x, y.int())]).labels.dtype == torch.int64


def test_one_shot_loaders():
    net = make_net()
    x, y, loader = _data()
    generator = (batch for batch in loader)
    assert M.relative_flatness(net, generator) == M.relative_flatness(net, loader)  # one pass: fine
    with pytest.raises(ValueError, match="yielded none.*already consumed.*list of batches or a DataLoader"):
        M.relative_flatness(net, generator)
    with pytest.raises(ValueError, match="iterates the loader 3 times.*one-shot list_iterator.*re-iterable"):
        M.sam_sharpness(net, iter(loader), samples=2, convention="paper")
    assert not M._common.is_one_shot(loader) and not M._common.is_one_shot(ShuffleLoader(x, y, 4))
    assert M._common.is_one_shot(iter(loader))


def _scalar(result):
    if isinstance(result, M.Measurement):
        return result.value
    if isinstance(result, M.LossCurve):
        return result.losses[0]
    if isinstance(result, dict):
        return float(result["classifier.bias"].sum())
    return float(result.sum())


ONES = {"classifier.bias": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)}
KEYWORDS = {"hessian_trace": {"samples": 2}, "hessian_top_eigenvalues": {"iters": 3},
            "hessian_matrix": {"params": ["classifier.bias"]}, "hessian_vector_product": {"vector": ONES},
            "loss_along_direction": {"direction": ONES, "alphas": [0.5]},
            "asymmetry_factor": {"mu": 0.5, "directions": 2}}


@pytest.mark.parametrize("name", list(KEYWORDS))
def test_the_old_name_batches_still_works_with_a_deprecation_warning(name):
    net = make_net()
    _, _, loader = _data()
    function = getattr(M, name)
    with pytest.warns(DeprecationWarning, match="`batches` is now called `loader`"):
        old = function(net, batches=loader, **KEYWORDS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = function(net, loader=loader, **KEYWORDS[name])
    assert _scalar(old) == _scalar(new) == READERS[name](net, loader)
    with pytest.raises(TypeError, match="both `loader` and its old name `batches`"):
        function(net, loader=loader, batches=loader, **KEYWORDS[name])


def test_relative_flatness_exact_from_features_accepts_the_old_name():
    pairs = [(torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0]))]
    weight = torch.randn(3, 5, dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="`batches` is now called `loader`"):
        old = M.relative_flatness_exact_from_features(batches=pairs, weight=weight)
    assert old == M.relative_flatness_exact_from_features(pairs, weight)


RANDOM = {
    "sam_sharpness": lambda net, loader, **kw: M.sam_sharpness(net, loader, samples=3, **kw).values,
    "adaptive_average": lambda net, loader, **kw: M.adaptive_sharpness(net, loader, 0.05, samples=3,
                                                                       batch_size=None, **kw).values,
    "adaptive_worst": lambda net, loader, **kw: M.adaptive_sharpness(net, loader, 0.05, kind="worst", steps=3,
                                                                     batch_size=None, **kw).values,
    "hessian_trace": lambda net, loader, **kw: M.hessian_trace(net, loader, samples=3, **kw).values,
    "hessian_top_eigenvalues": lambda net, loader, **kw: M.hessian_top_eigenvalues(net, loader, k=2, iters=4,
                                                                                   **kw).values,
    "asymmetry_factor": lambda net, loader, **kw: M.asymmetry_factor(net, loader, 0.5, directions=3, **kw).ratios,
}


@pytest.mark.parametrize("name", list(RANDOM))
def test_every_random_measure_defaults_to_a_fixed_seed(name):
    net = make_net()
    _, _, loader = _data()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = RANDOM[name](net, loader)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is not read
    torch.manual_seed(7)
    assert RANDOM[name](net, loader) == first
    assert RANDOM[name](net, loader, generator=torch.Generator().manual_seed(M.DEFAULT_SEED)) == first
    assert RANDOM[name](net, loader, generator=torch.Generator().manual_seed(M.DEFAULT_SEED + 1)) != first


def test_one_result_type():
    net = make_net()
    _, _, loader = _data()
    logits = torch.randn(6, 3, dtype=torch.float64)
    results = {
        M.SamSharpness: (M.sam_sharpness(net, loader, samples=2), ("base_loss", "values", "rho", "convention")),
        M.AdaptiveSharpness: (M.adaptive_sharpness(net, loader, 0.01, samples=2, batch_size=None),
                              ("values", "base_losses", "num_points", "rho", "kind", "norm", "adaptive",
                               "logit_normalization", "steps", "samples", "batch_size")),
        M.HessianTrace: (M.hessian_trace(net, loader, samples=2), ("values", "num_params")),
        M.HessianEigen: (M.hessian_top_eigenvalues(net, loader, k=2, iters=3),
                         ("values", "vectors", "residuals", "iterations", "restarts")),
        M.Asymmetry: (M.asymmetry_factor(net, loader, 0.5, directions=2),
                      ("ratios", "increases_plus", "increases_minus", "base_loss", "mu")),
        M.Disagreement: (M.prediction_disagreement([logits, logits.flip(1), -logits]),
                         ("mean", "n_pairs", "per_model")),
    }
    for cls, (result, attributes) in results.items():
        assert type(result) is cls and isinstance(result, M.Measurement)
        assert isinstance(result.value, float) and isinstance(result.sem, float)
        assert float(result) == result.value
        for attribute in attributes:
            getattr(result, attribute)
        assert set(attributes) - {"mean"} == set(result.details)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.value = 0.0
    eigen = results[M.HessianEigen][0]
    assert eigen.value == eigen.values[0] and eigen.restarts == 0
    disagreement = results[M.Disagreement][0]
    assert disagreement.mean == disagreement.value


def test_paper_conventions():
    assert M.PAPER_CONVENTIONS["sam_sharpness"] == {"convention": "paper"}
    assert M.PAPER_CONVENTIONS["relative_flatness"]["reduction"] == "sum_batches"
    with pytest.raises(TypeError):
        M.PAPER_CONVENTIONS["sam_sharpness"]["convention"] = "clean"
    net = make_net()
    x, y = make_data(n=24)
    by_4 = ShuffleLoader(x, y, 4, shuffle=False)
    paper = M.relative_flatness(net, by_4, **M.PAPER_CONVENTIONS["relative_flatness"])
    assert paper == M.relative_flatness(net, by_4, reduction="sum_batches")
    assert paper > 3 * M.relative_flatness(net, by_4)  # 6 batches: the paper's sum grows with their number
    assert M.relative_flatness_exact(net, by_4, **M.PAPER_CONVENTIONS["relative_flatness_exact"]) == \
        pytest.approx(paper, rel=1e-6)
    loader = [(x, y)]
    assert M.sam_sharpness(net, loader, samples=2, **M.PAPER_CONVENTIONS["sam_sharpness"]).convention == "paper"


def test_ece_refuses_probabilities_unless_told_and_matches_torchmetrics():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(200, 5, generator=generator)
    labels = torch.randint(0, 5, (200,), generator=generator)
    probabilities = logits.softmax(dim=1)
    reference = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")(probabilities, labels)
    assert M.ece(logits, labels) == pytest.approx(float(reference), abs=1e-6)
    assert M.ece(probabilities, labels, from_probabilities=True) == pytest.approx(float(reference), abs=1e-6)
    with pytest.raises(ValueError, match="look like probabilities.*from_probabilities=True"):
        M.ece(probabilities, labels)
    with pytest.raises(ValueError, match="Expected probabilities with from_probabilities=True"):
        M.ece(logits, labels, from_probabilities=True)
    # Softmaxing twice would have given a very different (wrong) value.
    twice = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")(probabilities.softmax(dim=1), labels)
    assert abs(float(twice) - float(reference)) > 0.05

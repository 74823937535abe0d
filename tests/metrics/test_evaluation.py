"""Evaluation metrics against torchmetrics, hand-made examples and direct loops."""
from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from sharpkit.data.base import CorruptedImageDataset
from sharpkit.metrics import (
    accuracy,
    corruption_accuracy,
    ece,
    generalization_gap,
    predict,
    prediction_disagreement,
)

from ._helpers import ShuffleLoader, TinyConvNet, assert_state_equal, make_data, make_net, state_copy


def test_accuracy_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [0.1, 0.2]])
    labels = torch.tensor([0, 1, 1, 0])
    assert accuracy(logits, labels) == 0.5


@pytest.mark.parametrize("classes", [2, 10])
def test_ece_equals_torchmetrics_class_api(classes):
    generator = torch.Generator().manual_seed(classes)
    logits = 3 * torch.randn(997, classes, generator=generator)
    logits[:40, 0] += 40.0  # softmax confidence exactly 1.0: torchmetrics' extra top bin
    labels = torch.randint(0, classes, (997,), generator=generator)
    reference = MulticlassCalibrationError(classes, n_bins=15, norm="l1")
    for start in range(0, 997, 256):  # the authors' per-batch update of softmax probabilities
        reference.update(torch.softmax(logits[start:start + 256], dim=1), labels[start:start + 256])
    assert (torch.softmax(logits, 1).max(1).values == 1.0).sum() >= 40
    assert ece(logits, labels) == pytest.approx(reference.compute().item(), abs=1e-6)


def test_ece_by_hand():
    # Two samples, both confidence 0.8 (bin [0.8, 0.867)), one right one wrong: |0.5 - 0.8| = 0.3.
    p = 0.8
    logits = torch.log(torch.tensor([[p, 1 - p], [p, 1 - p]], dtype=torch.float64))
    assert ece(logits, torch.tensor([0, 1])) == pytest.approx(0.3, abs=1e-7)
    # Different bins: |1 - 0.8| * 1/2 + |0 - 0.6| * 1/2 = 0.4.
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6]], dtype=torch.float64))
    assert ece(logits, torch.tensor([0, 0])) == pytest.approx(0.4, abs=1e-7)


def test_generalization_gap():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    test = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    train_y, test_y = torch.tensor([0, 1, 0, 0]), torch.tensor([0, 1])
    assert generalization_gap(train, train_y, test, test_y) == pytest.approx(0.75 - 0.5)
    ce = torch.nn.functional.cross_entropy
    expected = float(ce(test.double(), test_y) - ce(train.double(), train_y))
    assert generalization_gap(train, train_y, test, test_y, measure="loss") == pytest.approx(expected)
    with pytest.raises(ValueError, match="measure"):
        generalization_gap(train, train_y, test, test_y, measure="error")


def test_disagreement_by_hand():
    a, b, c = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 2, 0])
    # d(a,b) = 1/4, d(a,c) = 2/4, d(b,c) = 1/4: mean 1/3, std (ddof=0) sqrt(1/72).
    std = math.sqrt(1 / 72)
    unordered = prediction_disagreement([a, b, c], ordered=False)
    assert unordered.n_pairs == 3
    assert unordered.mean == pytest.approx(1 / 3)
    assert unordered.sem == pytest.approx(std / math.sqrt(3))
    ordered = prediction_disagreement({"s0": a, "s1": b, "s2": c})
    assert ordered.n_pairs == 6
    assert ordered.mean == pytest.approx(1 / 3)
    assert ordered.sem == pytest.approx(std / math.sqrt(6))
    # each model against the other two: a (1/4 + 2/4) / 2, b (1/4 + 1/4) / 2, c (2/4 + 1/4) / 2
    assert ordered.per_model == pytest.approx((3 / 8, 1 / 4, 3 / 8)) and unordered.per_model == ordered.per_model
    # logits give the same as their argmax
    logits = [torch.nn.functional.one_hot(v, 4).double() for v in (a, b, c)]
    assert prediction_disagreement(logits) == ordered


def test_disagreement_ten_seeds_has_ninety_ordered_pairs():
    generator = torch.Generator().manual_seed(0)
    predictions = [torch.randint(0, 3, (50,), generator=generator) for _ in range(10)]
    result = prediction_disagreement(predictions)
    assert result.n_pairs == 90
    assert prediction_disagreement(predictions, ordered=False).n_pairs == 45
    with pytest.raises(ValueError, match="at least 2"):
        prediction_disagreement(predictions[:1])


def test_predict_uses_eval_mode_and_restores_flags():
    net = make_net()
    x, y = make_data()
    net.train()
    before = state_copy(net)
    out = predict(net, ShuffleLoader(x, y, batch_size=5, shuffle=False))
    net.eval()
    with torch.no_grad():
        # Bit for bit against the same batches (a kernel may sum a batch of 20 in another order than one of 5).
        assert torch.equal(out.logits, torch.cat([net(x[i:i + 5]) for i in range(0, len(x), 5)]))
        torch.testing.assert_close(out.logits, net(x))
    assert torch.equal(out.labels, y)
    net.train()
    assert_state_equal(net, before)  # eval mode: BatchNorm statistics untouched
    predict(net, [(x, y)])
    assert net.training and all(m.training for m in net.modules())


def _tiny_corrupted_set() -> CorruptedImageDataset:
    generator = torch.Generator().manual_seed(3)
    images = {name: torch.randint(0, 256, (5, 7, 3, 4, 4), generator=generator, dtype=torch.uint8)
              for name in ("noise", "blur")}
    labels = torch.randint(0, 4, (7,), generator=generator)
    return CorruptedImageDataset(name="tiny-c", images=images, labels=labels, classes=tuple("abcd"),
                                 mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


def test_corruption_accuracy_equals_a_direct_loop():
    torch.manual_seed(0)
    net = TinyConvNet(classes=4)
    corrupted = _tiny_corrupted_set()
    result = corruption_accuracy(net, corrupted, batch_size=3)
    net.eval()
    mean, std = torch.tensor(corrupted.mean).view(3, 1, 1), torch.tensor(corrupted.std).view(3, 1, 1)
    expected = {}
    for name in ("noise", "blur"):
        row = []
        for severity in range(1, 6):
            hits = 0
            for image, label in zip(corrupted.images[name][severity - 1], corrupted.labels):
                x = (image.float() / 255 - mean) / std
                hits += int(net(x[None]).argmax() == label)
            row.append(100 * hits / 7)
        expected[name] = row
    assert result.corruptions == ("noise", "blur") and result.severities == (1, 2, 3, 4, 5)
    for name in expected:
        assert result.accuracies[name] == pytest.approx(expected[name])
        assert result.per_corruption[name] == pytest.approx(sum(expected[name]) / 5)
    assert result.per_severity == pytest.approx(
        [(expected["noise"][k] + expected["blur"][k]) / 2 for k in range(5)])
    assert result.mean == pytest.approx(sum(expected["noise"] + expected["blur"]) / 10)
    only = corruption_accuracy(net, corrupted, corruptions=["blur"])
    assert only.corruptions == ("blur",) and only.mean == pytest.approx(sum(expected["blur"]) / 5)
    with pytest.raises(ValueError, match="frost"):
        corruption_accuracy(net, corrupted, corruptions=["frost"])


def test_input_errors_are_value_errors():
    with pytest.raises(ValueError, match="logits"):
        accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels in"):
        ece(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="n_bins"):
        ece(torch.zeros(2, 3), torch.tensor([0, 1]), n_bins=0)

"""Fisher-Rao norm against a per-sample loop of the formula."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sharpkit.metrics import count_layers, fisher_rao_norm, fisher_rao_norm_from_logits

from ._helpers import ShuffleLoader, assert_state_equal, make_data, make_net, state_copy


def _loop(logits: torch.Tensor, labels: torch.Tensor, depth: int) -> float:
    # The formula sample by sample, in plain Python floats.
    total = 0.0
    for f, y in zip(logits.tolist(), labels.tolist()):
        top = max(f)
        weights = [math.exp(v - top) for v in f]
        inner = sum(w * v for w, v in zip(weights, f)) / sum(weights)
        total += (inner - f[y]) ** 2
    return math.sqrt((depth + 1) ** 2 * total / len(labels))


def test_from_logits_equals_per_sample_loop():
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(301, 7, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 7, (301,), generator=generator)
    assert fisher_rao_norm_from_logits(logits, labels, depth=5) == pytest.approx(
        _loop(logits, labels, 5), rel=1e-12)


def test_model_version_equals_loop_over_eval_mode_logits():
    net = make_net(classes=4)
    x, y = make_data(n=37, classes=4)
    net.train()
    before = state_copy(net)
    value = fisher_rao_norm(net, ShuffleLoader(x, y, batch_size=8, augment=0.0))
    assert net.training
    assert_state_equal(net, before)
    net.eval()
    with torch.no_grad():
        expected = _loop(net(x), y, depth=3)  # TinyNet: 3 Linear layers
    assert value == pytest.approx(expected, rel=1e-10)
    assert fisher_rao_norm(net, [(x, y)], depth=0) == pytest.approx(expected / 4, rel=1e-10)


def test_count_layers_counts_linear_conv_embedding_only():
    model = nn.Sequential(
        nn.Embedding(5, 3), nn.Conv1d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv3d(3, 3, 1),
        nn.BatchNorm2d(3), nn.LayerNorm(3), nn.ReLU(), nn.Linear(3, 2), nn.MultiheadAttention(4, 2),
    )
    # MultiheadAttention's out_proj is a Linear subclass, counted as in the authors' code.
    assert count_layers(model) == 6


def test_errors():
    with pytest.raises(ValueError, match="depth"):
        fisher_rao_norm_from_logits(torch.zeros(2, 3), torch.tensor([0, 1]), depth=-1)
    with pytest.raises(ValueError, match="at least one batch"):
        fisher_rao_norm(make_net(), [])

"""The registry API, and the model contract checked for every registered architecture."""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpkit.models import build_model, count_parameters, list_models, model_knobs, register_model, registry

from ._helpers import INPUT_SIDE, NUM_CLASSES, SMALL_SIZES, build_small

ALL = list_models()


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made inside a test are dropped afterwards."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))


# --- registry API -----------------------------------------------------------------------------------

def test_paper_models_are_registered():
    assert set(ALL) >= {"resnet18", "vgg19", "vit", "resnet18_tin", "vgg19bn_tin"}
    assert ALL == sorted(ALL)


def test_every_model_has_a_small_test_size():
    missing = [a for a in ALL if a not in SMALL_SIZES]
    assert not missing, f"add a CPU-cheap size for {missing} to tests/models/_helpers.py::SMALL_SIZES"


def test_knobs_are_the_factory_keyword_arguments_with_paper_defaults():
    assert model_knobs("resnet18") == {"width": 64}
    assert model_knobs("vgg19") == {"width": 64, "hidden": None}
    assert model_knobs("vit") == dict(image_size=32, patch_size=4, dim=512, depth=6, heads=6, dim_head=64,
                                      mlp_dim=256, dropout=0.0, emb_dropout=0.0)
    assert model_knobs("resnet18_tin") == {"pretrained": True}
    assert model_knobs("vgg19bn_tin") == {"pretrained": True}


def test_register_and_build_a_new_model(scratch_registry):
    @register_model("_tiny")
    def tiny(num_classes, *, hidden=3):
        return nn.Linear(hidden, num_classes)

    assert "_tiny" in list_models()
    model = build_model("_tiny", 5, hidden=4)
    assert (model.in_features, model.out_features) == (4, 5)


def test_overwriting_a_name_warns(scratch_registry):
    @register_model("_tiny")
    def first(num_classes):
        return nn.Linear(1, num_classes)

    with pytest.warns(UserWarning, match="Overwriting model '_tiny'"):
        @register_model("_tiny")
        def second(num_classes):
            return nn.Linear(2, num_classes)

    assert build_model("_tiny", 3).in_features == 2


def test_first_registration_does_not_warn(scratch_registry):
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @register_model("_fresh")
        def fresh(num_classes):
            return nn.Linear(1, num_classes)


@pytest.mark.parametrize("factory", [
    lambda classes: nn.Linear(1, classes),  # first argument not num_classes
    lambda num_classes, width: nn.Linear(width, num_classes),  # knob not keyword-only
    lambda num_classes, *, width: nn.Linear(width, num_classes),  # knob without default
])
def test_factory_signature_is_checked_at_registration(scratch_registry, factory):
    with pytest.raises(TypeError, match="num_classes|keyword-only"):
        register_model("_bad")(factory)


def test_unknown_arch_lists_registered_names():
    with pytest.raises(ValueError, match="Unknown model architecture 'resnet19'") as info:
        build_model("resnet19", 10)
    for name in ALL:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="Unknown model architecture"):
        model_knobs("resnet19")


@pytest.mark.parametrize("arch", ALL)
def test_unknown_knob_lists_accepted_knobs(arch):
    with pytest.raises(ValueError, match=f"Unknown size argument.*'depthh'.*{arch}") as info:
        build_model(arch, 10, depthh=3)
    for knob in model_knobs(arch):
        assert f"{knob}=" in str(info.value)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True, "10"])
def test_num_classes_must_be_a_positive_integer(num_classes):
    with pytest.raises(ValueError, match="`num_classes`"):
        build_model("resnet18", num_classes, width=2)


@pytest.mark.parametrize("arch, size, knob", [
    ("resnet18", {"width": 0}, "width"),
    ("resnet18", {"width": "8"}, "width"),
    ("vgg19", {"width": 2.0}, "width"),
    ("vgg19", {"width": 2, "hidden": -4}, "hidden"),
    ("vit", {"depth": 0}, "depth"),
    ("vit", {"dropout": 1.0}, "dropout"),
    ("vit", {"emb_dropout": -0.1}, "emb_dropout"),
    ("vit", {"patch_size": 5}, "patch_size"),
    ("resnet18_tin", {"pretrained": "no"}, "pretrained"),
    ("vgg19bn_tin", {"pretrained": 0}, "pretrained"),
])
def test_bad_knob_values_raise(arch, size, knob):
    with pytest.raises(ValueError, match=f"`{knob}`"):
        build_model(arch, 10, **size)


def test_count_parameters_counts_shared_tensors_once_and_skips_buffers():
    linear = nn.Linear(3, 4)  # 3*4 + 4 = 16
    assert count_parameters(linear) == 16
    assert count_parameters(nn.Sequential(linear, nn.ReLU(), linear)) == 16
    assert count_parameters(nn.BatchNorm1d(5)) == 10  # running mean/var are buffers


# --- the contract, for every registered model -------------------------------------------------------

def _classifier_key(model: nn.Module) -> str:
    return next(k for k, v in model.state_dict(keep_vars=True).items() if v is model.classifier.weight)


@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_is_classifier_of_features_exactly(arch, mode, small_model):
    model, _ = small_model(arch)
    model.train(mode == "train")
    x = torch.randn(3, 3, INPUT_SIDE, INPUT_SIDE)
    with torch.no_grad():
        # Re-seeding makes dropout (torchvision VGG's head) draw the same masks in both calls.
        torch.manual_seed(1)
        logits = model(x)
        torch.manual_seed(1)
        feats = model.features(x)
        composed = model.classifier(feats)
    model.eval()
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.out_features == NUM_CLASSES
    assert feats.shape == (3, model.classifier.in_features)
    assert logits.shape == (3, NUM_CLASSES)
    assert torch.equal(logits, composed)


@pytest.mark.parametrize("arch", ALL)
def test_classifier_is_a_registered_submodule_held_once(arch, small_model):
    model, _ = small_model(arch)
    # The classifier's weight must be a parameter of the model (so optimisers and metrics see it) and
    # appear under exactly one state-dict key (a duplicate would be perturbed twice by SAM sharpness).
    assert any(p is model.classifier.weight for p in model.parameters())
    keys = [k for k, v in model.state_dict(keep_vars=True).items() if v is model.classifier.weight]
    assert keys == [_classifier_key(model)]


@pytest.mark.parametrize("arch", ALL)
def test_building_is_deterministic_under_torch_seed_only(arch, small_model):
    _, reference = small_model(arch)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    again = build_small(arch).state_dict()
    # Only torch's generator may be used: Python's and NumPy's are left untouched.
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    assert list(again) == list(reference)
    assert all(torch.equal(again[k], reference[k]) for k in reference)
    other = build_small(arch, seed=1)
    key = _classifier_key(other)
    assert not torch.equal(other.state_dict()[key], reference[key]), "the seed should change the weights"


@pytest.mark.parametrize("arch", ALL)
def test_forward_backward_reaches_every_parameter(arch, small_model):
    model, _ = small_model(arch)
    model.train()
    model.zero_grad(set_to_none=True)
    x = torch.randn(2, 3, INPUT_SIDE, INPUT_SIDE)
    y = torch.tensor([0, NUM_CLASSES - 1])
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad}"
    model.zero_grad(set_to_none=True)
    model.eval()

"""ViT for small datasets: brute-force references for SPT and LSA, and vit-pytorch when installed."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from sharpkit.models import build_model, count_parameters
from sharpkit.models.vit import LocalitySelfAttention, ShiftedPatchTokenizer

from ._helpers import count_linear_conv

HAS_VIT_PYTORCH = importlib.util.find_spec("vit_pytorch") is not None


def _paper_vit_parameters(num_classes: int, image=32, patch=4, dim=512, depth=6, heads=6, dim_head=64,
                          mlp=256) -> int:
    patch_dim = 5 * 3 * patch * patch
    tokens = (image // patch) ** 2 + 1
    inner = heads * dim_head
    spt = 2 * patch_dim + patch_dim * dim + dim
    block = (1 + 2 * dim + dim * 3 * inner + inner * dim + dim  # temperature, LN, qkv (no bias), out
             + 2 * dim + dim * mlp + mlp + mlp * dim + dim)  # LN, MLP
    return spt + tokens * dim + dim + depth * block + 2 * dim + dim * num_classes + num_classes


def test_paper_size_parameter_count():
    assert count_parameters(build_model("vit", 10)) == _paper_vit_parameters(10) == 6_475_248
    assert count_parameters(build_model("vit", 200, image_size=64)) == _paper_vit_parameters(200, image=64)


def test_linear_modules():
    # SPT projection + 4 per block (qkv, out, 2 MLP) + classifier.
    assert count_linear_conv(build_model("vit", 10)) == 1 + 4 * 6 + 1


def test_spt_matches_brute_force_patches():
    torch.manual_seed(0)
    p, c, h, w = 2, 3, 4, 6
    spt = ShiftedPatchTokenizer(dim=5, patch_size=p, channels=c)
    x = torch.randn(2, c, h, w)

    def shifted(img, dy, dx):  # content moved by (dy, dx) pixels, zero fill
        out = torch.zeros_like(img)
        for i in range(h):
            for j in range(w):
                if 0 <= i - dy < h and 0 <= j - dx < w:
                    out[:, :, i, j] = img[:, :, i - dy, j - dx]
        return out

    stack = torch.cat([x, shifted(x, 0, 1), shifted(x, 0, -1), shifted(x, 1, 0), shifted(x, -1, 0)], dim=1)
    patches = []
    for pi in range(h // p):
        for pj in range(w // p):
            vec = [stack[:, ch, pi * p + a, pj * p + b] for a in range(p) for b in range(p)
                   for ch in range(5 * c)]
            patches.append(torch.stack(vec, dim=1))
    patches = torch.stack(patches, dim=1)  # (B, N, p*p*5c)
    with torch.no_grad():
        assert torch.allclose(spt(x), spt.proj(spt.norm(patches)), atol=1e-6)


def test_lsa_matches_brute_force_with_diagonal_mask_and_temperature():
    torch.manual_seed(0)
    dim, heads, dh, n = 6, 2, 3, 5
    lsa = LocalitySelfAttention(dim, heads, dh).eval()
    with torch.no_grad():
        lsa.temperature.fill_(0.3)
        assert math.isclose(LocalitySelfAttention(dim, heads, 16).temperature.item(), math.log(0.25),
                            rel_tol=1e-6)
        x = torch.randn(2, n, dim)
        qkv = lsa.qkv(lsa.norm(x))
        q, k, v = qkv[..., :heads * dh], qkv[..., heads * dh:2 * heads * dh], qkv[..., 2 * heads * dh:]
        out = torch.zeros(2, n, heads * dh)
        for b in range(2):
            for hd in range(heads):
                sl = slice(hd * dh, (hd + 1) * dh)
                for i in range(n):
                    others = [j for j in range(n) if j != i]  # a token never attends to itself
                    logits = torch.stack([math.exp(0.3) * q[b, i, sl] @ k[b, j, sl] for j in others])
                    weights = torch.softmax(logits, dim=0)
                    out[b, i, sl] = sum(wt * v[b, j, sl] for wt, j in zip(weights, others))
        assert torch.allclose(lsa(x), lsa.proj(out), atol=1e-6)


def test_features_are_the_layernormed_cls_token():
    torch.manual_seed(0)
    model = build_model("vit", 10, dim=8, depth=1, heads=2, dim_head=4, mlp_dim=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x)
    assert torch.allclose(feats.mean(dim=1), torch.zeros(2), atol=1e-5)  # LayerNorm, default affine
    # Changing one patch changes the CLS output (it attends to every patch).
    x2 = x.clone()
    x2[:, :, :4, :4] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model.features(x2), feats)


def test_tinyimagenet_size_and_input_checks():
    model = build_model("vit", 200, image_size=64, patch_size=8, dim=8, depth=1, heads=1, dim_head=4,
                        mlp_dim=8).eval()
    assert model.pos_embed.shape == (1, 64 + 1, 8)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 200)
    with pytest.raises(ValueError, match="image_size=32"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="divide"):
        build_model("vit", 10, image_size=32, patch_size=6)


# --- vit-pytorch as a reference (optional test dependency) ------------------------------------------

@pytest.mark.skipif(not HAS_VIT_PYTORCH, reason="vit-pytorch not installed (optional reference)")
@pytest.mark.parametrize("config", [
    dict(image_size=32, patch_size=4, dim=512, depth=6, heads=6, dim_head=64, mlp_dim=256),  # paper
    dict(image_size=64, patch_size=8, dim=16, depth=2, heads=2, dim_head=8, mlp_dim=24),
])
def test_same_weights_and_outputs_as_vit_pytorch_under_one_seed(config):
    from vit_pytorch.vit_for_small_dataset import ViT as ReferenceViT

    torch.manual_seed(3)
    ref = ReferenceViT(num_classes=10, **config).eval()
    torch.manual_seed(3)
    ours = build_model("vit", 10, **config).eval()
    assert count_parameters(ours) == sum(p.numel() for p in ref.parameters())
    ref_state, our_state = list(ref.state_dict().values()), list(ours.state_dict().values())
    assert len(ref_state) == len(our_state)
    assert all(torch.equal(a, b) for a, b in zip(ref_state, our_state))
    side = config["image_size"]
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)

"""Vision Transformer for small datasets (Shifted Patch Tokenization + Locality Self-Attention).

Architecture: Lee, Lee & Song, "Vision Transformer for Small-Size Datasets" (arXiv:2112.13492,
2021), as packaged by ``vit-pytorch`` (``vit_pytorch.vit_for_small_dataset.ViT``), which is what
the authors of "Understanding Deep Learning Requires Rethinking Sharpness" (2025) train
(the book's page "The protocol and where we depart from it", "Models"). Paper size:
image 32, patch 4, dim 512, depth 6, heads 6, dim_head 64, mlp_dim 256, CLS pooling, no dropout.

- Shifted Patch Tokenization (SPT): the image is concatenated along channels with four copies of
  itself shifted by one pixel right, left, down and up (zero fill), cut into p x p patches, each
  flattened in (row, column, channel) order to 5*3*p*p values, then LayerNorm -> Linear(., dim).
  (Lee et al. shift by half a patch along the diagonals; vit-pytorch, and so the authors, shift by
  one pixel along the axes. We follow vit-pytorch.)
- A learnable CLS token is prepended and a learnable position embedding (N+1, dim) added; both are
  initialised N(0, 1).
- ``depth`` pre-norm residual blocks ``x + LSA(LN(x))``, ``x + MLP(LN(x))``; MLP = Linear -> GELU ->
  Linear. Locality Self-Attention: softmax(exp(t) * q k^T with the diagonal masked out) v, a
  learnable log-temperature t initialised to log(dim_head^-1/2); qkv projection without bias.
- ``features(x)`` = LayerNorm(dim) of the final CLS token; ``classifier = Linear(dim, C)``.

Parameters are created in vit-pytorch's order so that, under one seed, the initial weights are those
of ``vit_pytorch.vit_for_small_dataset.ViT`` (the tests check this when vit-pytorch is installed;
sharpkit itself does not depend on it). Linear/Conv modules: 1 + 4*depth + 1 (26 at paper size).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import check_positive
from .registry import register_model

__all__ = ["ShiftedPatchTokenizer", "LocalitySelfAttention", "FeedForward", "TransformerBlock", "ViT",
           "vit"]

# One-pixel shifts as F.pad amounts (left, right, top, bottom); a negative amount crops. In order:
# content moved right, left, down, up.
_SHIFTS = ((1, -1, 0, 0), (-1, 1, 0, 0), (0, 0, 1, -1), (0, 0, -1, 1))


# --- blocks -----------------------------------------------------------------------------------------

class ShiftedPatchTokenizer(nn.Module):
    """(B, C, H, W) image -> (B, (H/p)*(W/p), dim) patch tokens, with the four shifted copies."""

    def __init__(self, dim: int, patch_size: int, channels: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        patch_dim = 5 * channels * patch_size * patch_size
        self.norm = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x] + [F.pad(x, shift) for shift in _SHIFTS], dim=1)  # (B, 5C, H, W)
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p)  # (B, 5C, H/p, p, W/p, p)
        # Each patch flattened as (row in patch, column in patch, channel), channel fastest.
        x = x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)
        return self.proj(self.norm(x))  # (B, N, dim)


class LocalitySelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with a learnable temperature and no self-attention.

    attn = softmax(exp(t) * Q K^T, diagonal masked), out = Linear(concat_heads(attn V)).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        # Log-temperature, so exp(t) starts at the usual 1/sqrt(d_head) scale and stays positive.
        self.temperature = nn.Parameter(torch.tensor(dim_head**-0.5).log())
        self.norm = nn.LayerNorm(dim)
        self.attn_drop = nn.Dropout(dropout)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, -1)  # (B, N, 3, h, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, N, dh)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.temperature.exp()  # (B, h, N, N)
        # Diagonal masking: a token may not attend to itself, which sharpens the attention
        # distribution (Lee et al., Sec. 3.2). A finite minimum keeps low precisions free of NaN.
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        scores = scores.masked_fill(eye, -torch.finfo(scores.dtype).max)
        attn = self.attn_drop(scores.softmax(dim=-1))
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, -1)  # (B, N, h*dh)
        return self.proj_drop(self.proj(out))


class FeedForward(nn.Module):
    """Pre-norm MLP: Linear(dim, hidden) -> GELU -> Linear(hidden, dim)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(self.norm(x))))))


class TransformerBlock(nn.Module):
    """x + LSA(x), then + MLP (each branch normalises its own input)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = LocalitySelfAttention(dim, heads, dim_head, dropout)
        self.mlp = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


# --- model ------------------------------------------------------------------------------------------

class ViT(nn.Module):
    """SPT/LSA Vision Transformer; ``features(x)`` is the normalised CLS token, (B, dim).

    Build it with ``build_model("vit", num_classes, dim=..., depth=..., ...)``.

    Examples:
        >>> import torch
        >>> from sharpkit.models import ViT, build_model
        >>> model = build_model("vit", num_classes=10, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=32)
        >>> isinstance(model, ViT), model.features(torch.randn(2, 3, 32, 32)).shape
        (True, torch.Size([2, 32]))
    """

    def __init__(self, num_classes: int, image_size: int = 32, patch_size: int = 4, dim: int = 512,
                 depth: int = 6, heads: int = 6, dim_head: int = 64, mlp_dim: int = 256,
                 dropout: float = 0.0, emb_dropout: float = 0.0, channels: int = 3) -> None:
        super().__init__()
        self.image_size = image_size
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = ShiftedPatchTokenizer(dim, patch_size, channels)
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.emb_drop = nn.Dropout(emb_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"This ViT was built for {self.image_size}x{self.image_size} images, but got an input of "
                f"shape {tuple(x.shape)}. Build it with `image_size={x.shape[-1]}` or resize the images."
            )
        tokens = self.patch_embed(x)  # (B, N, dim)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, dim)
        tokens = self.emb_drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)  # (B, N+1, dim)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens[:, 0])  # (B, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --- factory and registration -----------------------------------------------------------------------

def _check_rate(argument: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"Expected argument `{argument}` to be a number in [0, 1), but got {value!r}.")


@register_model("vit")
def vit(num_classes: int, *, image_size: int = 32, patch_size: int = 4, dim: int = 512, depth: int = 6,
        heads: int = 6, dim_head: int = 64, mlp_dim: int = 256, dropout: float = 0.0,
        emb_dropout: float = 0.0) -> ViT:
    """ViT for small datasets (SPT + LSA). Defaults are the paper's CIFAR size.

    Args:
        num_classes: outputs C of the classifier.
        image_size: side of the square input images (32 for CIFAR, 64 for TinyImageNet).
        patch_size: side of the square patches; must divide ``image_size``.
        dim: token width, also the feature width d.
        depth: number of transformer blocks.
        heads, dim_head: attention heads and the width of each (inner width heads*dim_head).
        mlp_dim: hidden width of each block's MLP.
        dropout: dropout in attention and MLP (authors: 0).
        emb_dropout: dropout on the token embeddings (authors: 0).
    """
    for name, value in (("image_size", image_size), ("patch_size", patch_size), ("dim", dim),
                        ("depth", depth), ("heads", heads), ("dim_head", dim_head), ("mlp_dim", mlp_dim)):
        check_positive(name, value, integer=True)
    if image_size % patch_size:
        raise ValueError(
            f"Expected `patch_size` to divide `image_size`, but got patch_size={patch_size} and "
            f"image_size={image_size}. Pick a patch size among the divisors of {image_size}."
        )
    _check_rate("dropout", dropout)
    _check_rate("emb_dropout", emb_dropout)
    return ViT(num_classes, image_size=image_size, patch_size=patch_size, dim=dim, depth=depth,
               heads=heads, dim_head=dim_head, mlp_dim=mlp_dim, dropout=dropout, emb_dropout=emb_dropout)

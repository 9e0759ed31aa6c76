"""The mean attention distance of every head and block (Dosovitskiy et al. 2021, Fig. 7), and the patch-distance
matrix it weighs: how local a ViT's attention is.

For a query patch q, the attention distance is the distance from q to the key patches, weighted by how much q
attends to them: ``sum_j a_qj * ||pos_q - pos_j||``. Averaged over queries and images, one number per head and
block. A convolution's first layers look only at neighbours (small distances); a ViT *may* learn that, or not: on
small data, the lower blocks of a ViT often keep attending far away, which is Zhu et al.'s point in numbers.

A positive control for that measurement: :func:`with_distance_bias` copies a course ViT and adds a fixed Gaussian
of the patch distance to every attention layer's logits, so that its attention is local by construction (no
training). Measured the same way, its heads must come out local; if they did not, the measurement could never say
"local". It controls the measurement, not learning.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn

from .models import ViT

__all__ = ["patch_distances", "mean_attention_distance", "MIN_PATCH_WEIGHT", "gaussian_distance_bias",
           "with_distance_bias"]

MIN_PATCH_WEIGHT = 1e-6       # a query's total weight on the patches below which it has no attention distance
ROW_SUM_TOLERANCE = 1e-2      # |row sum - 1| allowed: softmax in bfloat16 rounds to ~4e-3


def _check_grid(grid_size: int, patch_size: float) -> None:
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be a whole number of at least 1 (K, patches per side: img_size // "
                         f"patch_size, e.g. model.grid_size), got {grid_size!r}.")
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, float)) or not patch_size > 0:
        raise ValueError(f"patch_size must be a positive number (pixels per patch side, e.g. 4), got {patch_size!r}.")


def patch_distances(grid_size: int, patch_size: int = 1) -> torch.Tensor:
    """Euclidean distances between the centres of the patches of a KxK grid: (K*K, K*K), in pixels when
    ``patch_size`` is the patch side (row-major patch order, as the ViT's tokens)."""
    _check_grid(grid_size, patch_size)
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).double() * patch_size
    return torch.cdist(centres, centres)


def mean_attention_distance(attentions: Sequence[torch.Tensor], grid_size: int, patch_size: int = 1,
                            num_prefix_tokens: int = 1) -> torch.Tensor:
    """Mean attention distance per block and head.

    Args:
        attentions: per block, (B, heads, T, T) attention weights with T = num_prefix_tokens + grid_size**2
            (``model.forward_with_attention(x)[1]``).
        grid_size: K, patches per side. patch_size: pixels per patch side (distances in pixels).
        num_prefix_tokens: tokens before the patches (1 for a class token); they are left out as queries and keys,
            and each query's weights over the patch keys are renormalised to sum to 1. A query that puts (almost)
            no weight on the patches (below ``MIN_PATCH_WEIGHT``: it attends to the class token) has no distance and
            is left out of its head's mean; a head where every query does so gets NaN, never "the most local".
    Returns:
        (blocks, heads) float64 tensor.
    Raises:
        ValueError: grid_size not a whole number >= 1, patch_size not positive, shapes that do not fit the grid,
            NaN/infinite attention, or values that are no attention weights (negative, or rows that do not sum to
            1: logits or scores before the softmax).
    """
    if not isinstance(attentions, (list, tuple)) or not attentions:
        raise TypeError("attentions must be a non-empty list of (B, heads, T, T) tensors, e.g. "
                        "model.forward_with_attention(x)[1].")
    _check_grid(grid_size, patch_size)
    n = grid_size * grid_size
    dist = patch_distances(grid_size, patch_size)
    for i, a in enumerate(attentions):
        if a.dim() != 4 or a.shape[-1] != a.shape[-2] or a.shape[-1] != n + num_prefix_tokens:
            raise ValueError(f"block {i}: expected (B, heads, {n + num_prefix_tokens}, {n + num_prefix_tokens}) "
                             f"for a {grid_size}x{grid_size} grid with {num_prefix_tokens} prefix token(s), "
                             f"got {tuple(a.shape)}.")
    finite = torch.stack([torch.isfinite(a).all() for a in attentions]).tolist()    # one host sync for all blocks
    if not all(finite):
        raise ValueError(f"attentions[{finite.index(False)}] holds NaN or infinite values: the model produced them "
                         "(check that its weights are finite, and run it in float32, e.g. model.float()).")
    _check_weights(attentions)
    out = []
    for a in attentions:
        p = a[..., num_prefix_tokens:, num_prefix_tokens:].double()       # (B, H, n, n) patch -> patch
        mass = p.sum(-1)                                                   # (B, H, n) each query's patch weight
        seen = mass >= MIN_PATCH_WEIGHT
        d = (p * dist.to(p.device)).sum(-1) / mass.clamp_min(MIN_PATCH_WEIGHT)   # renormalised to sum to 1
        out.append((d * seen).sum(dim=(0, 2)) / seen.sum(dim=(0, 2)))     # (H,), NaN where no query is seen
    return torch.stack(out).cpu()


def _check_weights(attentions: Sequence[torch.Tensor]) -> None:
    """Attention weights are probabilities: non-negative, each query's row summing to 1 (to ``ROW_SUM_TOLERANCE``,
    room for bfloat16 rounding)."""
    worst = torch.stack([torch.stack([a.min().double(), (a.double().sum(-1) - 1).abs().max()]) for a in attentions])
    smallest, off = worst[:, 0].min().item(), worst[:, 1].max().item()          # one host sync each
    if smallest < -ROW_SUM_TOLERANCE or off > ROW_SUM_TOLERANCE:
        raise ValueError(f"attentions are not attention weights (smallest value {smallest:.3g}, a row's sum off 1 by "
                         f"up to {off:.3g}): pass the weights after the softmax, each query's row summing to 1 "
                         "(model.forward_with_attention(x)[1]), not the scores or logits before it.")


# --------------------------------------------------------------------------------------------------------------
# A positive control: attention that is local by construction

def gaussian_distance_bias(grid_size: int, sigma: float = 1.0, num_prefix_tokens: int = 1) -> torch.Tensor:
    """(T, T) logit bias -d^2 / (2 sigma^2) between patches d patches apart (T = num_prefix_tokens + K*K), 0 in the
    rows and columns of the prefix tokens: added before the softmax, it makes each patch attend to its neighbours
    with Gaussian weights of width ``sigma`` patches. ConViT's locality initialisation is of this form
    (``GPSA.local_init`` in facebookresearch/convit's ``convit.py``, read at commit 0a9340a: a positional score
    -alpha * (dx^2 + dy^2) plus a per-head offset term, before a softmax)."""
    _check_grid(grid_size, 1)
    if not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of patches (e.g. 1.0; math.inf gives no bias), "
                         f"got {sigma!r}.")
    bias = torch.zeros(num_prefix_tokens + grid_size ** 2, num_prefix_tokens + grid_size ** 2)
    bias[num_prefix_tokens:, num_prefix_tokens:] = -patch_distances(grid_size).float() ** 2 / (2 * sigma ** 2)
    return bias


class _BiasedAttention(nn.Module):
    """A ViT attention layer whose logits get a fixed bias (T, T) before the softmax; its q, k, v and output
    projection are the wrapped layer's own weights."""

    def __init__(self, attention: nn.Module, bias: torch.Tensor):
        super().__init__()
        self.inner = attention
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        a = self.inner
        B, T, D = x.shape
        q, k, v = a.qkv(x).view(B, T, 3, a.heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1) * a.scale + self.bias.to(q.dtype)).softmax(dim=-1)   # (B, H, T, T)
        out = (attn @ v).transpose(1, 2).reshape(B, T, D)
        return a.proj_dropout(a.proj(out)), attn if return_attention else None


def with_distance_bias(model: ViT, sigma: float = 1.0) -> ViT:
    """A copy of ``model`` (a course :class:`~course_lib.models.ViT`, left unchanged) in evaluation mode whose
    every block adds :func:`gaussian_distance_bias` to its attention logits: the positive control for
    :func:`mean_attention_distance`. ``sigma=math.inf`` adds nothing (the copy computes what ``model`` does)."""
    if not isinstance(model, ViT):
        raise TypeError(f"with_distance_bias needs a course ViT (course_lib.models.ViT, one grid of patch tokens), "
                        f"got {type(model).__name__}.")
    bias = gaussian_distance_bias(model.grid_size, sigma, model.num_prefix_tokens)
    control = copy.deepcopy(model).eval()
    bias = bias.to(next(model.parameters()).device)
    for block in control.blocks:
        block.attn = _BiasedAttention(block.attn, bias)
    return control

"""The mean attention distance of every head and block (Dosovitskiy et al. 2021, Fig. 7), and the patch-distance
matrix it weighs: how local a ViT's attention is.

For a query patch q, the attention distance is the distance from q to the key patches, weighted by how much q
attends to them: ``sum_j a_qj * ||pos_q - pos_j||``. Averaged over queries and images, one number per head and
block. A convolution's first layers look only at neighbours (small distances); a ViT *may* learn that, or not: on
small data, the lower blocks of a ViT often keep attending far away, which is Zhu et al.'s point in numbers.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["patch_distances", "mean_attention_distance", "MIN_PATCH_WEIGHT"]

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

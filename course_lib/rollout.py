"""Attention rollout (Abnar & Zuidema 2020): which input patches the class token's representation comes from.

A block mixes tokens with its attention A (rows sum to 1) and keeps its input through the residual connection, so
rollout models it as Ã = 0.5·A + 0.5·I with rows rescaled to sum to 1, and follows the information through the
blocks by multiplying: R = Ã_L ··· Ã_2 · Ã_1. Row ``cls`` of R, restricted to the patches and reshaped to the K x K
grid, is the rollout map. Shapes: B images, H heads, T = P + K*K tokens (P prefix tokens: 1 class token, or 0).
Each output map is scaled as ``scale`` says: "max", "sum" or "none".
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.common import check_pixels
from .runtime import eval_mode

__all__ = ["rollout_per_block", "attention_rollout", "rollout_matrices", "raw_attention_maps", "model_rollout",
           "upsample_map", "fuse_heads", "concentration", "HEAD_FUSIONS", "MAP_SCALINGS"]

HEAD_FUSIONS = ("mean", "max", "min")
MAP_SCALINGS = ("max", "sum", "none")        # the values of ``scale``


def rollout_matrices(attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0,
                     residual: bool = True, num_prefix_tokens: int | None = None) -> list[torch.Tensor]:
    """The rollout itself: R_l = Ã_l ··· Ã_1 after each block l, a list of L float64 (B, T, T) matrices.

    ``rollout_matrices([a])[0]`` is one block's own factor Ã. Arguments as in :func:`rollout_per_block`.
    """
    attentions, P, _ = _checked(attentions, head_fusion, discard_ratio, num_prefix_tokens)
    I = torch.eye(attentions[0].shape[-1], dtype=_work_dtype(attentions[0].device), device=attentions[0].device)
    R, flows = I, []
    for attention in attentions:
        A = fuse_heads(attention.detach().to(I.dtype), head_fusion)     # (B, T, T): one mixing matrix per image
        A = _discard_lowest(A, discard_ratio, P)
        if residual:
            A = 0.5 * A + 0.5 * I                                       # the skip connection keeps each token
        A = A / A.sum(dim=-1, keepdim=True).clamp_min(1e-12)           # rows sum to 1 again
        R = A @ R                                                       # the newest block multiplies from the left
        flows.append(R)
    return flows


def rollout_per_block(attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0,
                      cls_query: bool = True, residual: bool = True, scale: str | bool = "max",
                      num_prefix_tokens: int | None = None) -> torch.Tensor:
    """Rollout maps after each block: float32 (B, L, K, K), where [:, l] reads R_l = Ã_l ··· Ã_1.

    Args:
        attentions: L tensors (B, heads, T, T) of softmax weights, as ``model.forward_with_attention(x)`` returns.
        head_fusion: "mean", "max" or "min" over the heads.
        discard_ratio: in [0, 1): per image, the ``int(T*T*discard_ratio)`` lowest entries of the fused T x T
            matrix (over the whole matrix, as vit-explain) are set to 0 before the identity is added, except
            (cls, cls). With max/min fusion or discarding, rows no longer sum to 1 and the rescaling makes I weigh
            more or less than half.
        cls_query: read the class token's row (True) or the mean of the patch rows (False; also used without a
            class token: the rollout of the mean-pooled token a mean-pooling classifier reads).
        residual: add the identity for the skip connection (False multiplies the bare attentions).
        scale: how each output map is scaled: "max" (divided by its maximum, for
            overlays), "sum" (sums to 1, a distribution over patches) or "none"; True = "max", False = "none".
            An all-zero map stays all zero.
        num_prefix_tokens: tokens before the patches (1 = class token); None infers 1 if T = 1 + K*K, 0 if T = K*K.

    Conventions follow the common open implementation, jacobgil/vit-explain (its batch bugs fixed). ``0.5·A + 0.5·I``
    and ``A + I`` give the same Ã once the rows are rescaled (the 0.5 cancels); with mean fusion and no discarding,
    A's rows already sum to 1 and the rescaling changes nothing.

    Raises:
        TypeError / ValueError, naming the fix: not a list of (B, heads, T, T) tensors, shapes that differ across
        blocks or do not form a square patch grid, NaN or infinite entries, rows that are not softmax weights.
    """
    scaling = _map_scaling(scale)
    flows = rollout_matrices(attentions, head_fusion, discard_ratio, residual, num_prefix_tokens)
    P, K = _patch_grid(flows[0].shape[-1], num_prefix_tokens)
    return torch.stack([_read_map(R, P, K, cls_query, scaling) for R in flows], dim=1)


def attention_rollout(attentions: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0,
                      cls_query: bool = True, residual: bool = True, scale: str | bool = "max",
                      num_prefix_tokens: int | None = None) -> torch.Tensor:
    """Rollout through all blocks: (B, K, K). Arguments as in :func:`rollout_per_block`.

    Example::

        logits, attentions = model.forward_with_attention(x)      # x: (B, 3, 32, 32)
        maps = attention_rollout(attentions)                        # (B, 8, 8), max = 1
        overlay = upsample_map(maps, 32)                            # (B, 32, 32)
    """
    return rollout_per_block(attentions, head_fusion, discard_ratio, cls_query, residual, scale,
                             num_prefix_tokens)[:, -1]


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(B, H, T, T) -> (B, T, T): mean, max or min over the heads."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, not {head_fusion!r}.")


def _discard_lowest(a: torch.Tensor, ratio: float, num_prefix_tokens: int) -> torch.Tensor:
    """Zero the int(T*T*ratio) lowest entries of each image's (T, T) matrix, never entry (0, 0) of a class token."""
    B, T, _ = a.shape
    n_drop = int(T * T * ratio)
    if n_drop == 0:
        return a
    flat = a.reshape(B, T * T).clone()
    lowest = flat.topk(n_drop, dim=-1, largest=False).indices          # (B, n_drop)
    drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
    if num_prefix_tokens > 0:
        drop[:, 0] = False            # flat index 0 = attention of the class token to itself
    return flat.masked_fill(drop, 0.0).view(B, T, T)


def _read_map(R: torch.Tensor, num_prefix_tokens: int, K: int, cls_query: bool, scaling: str) -> torch.Tensor:
    """(B, T, T) -> float32 (B, K, K): the query row(s) of R over the patches, scaled as ``scale`` says."""
    P = num_prefix_tokens
    m = R[:, 0, P:] if cls_query and P > 0 else R[:, P:, P:].mean(dim=1)    # class token's row, or mean patch row
    if scaling == "max":
        m = m / m.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    elif scaling == "sum":
        m = m / m.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return m.reshape(-1, K, K).float()


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64   # MPS has no float64


# --------------------------------------------------------------------------------------------------------------
# Around the rollout: one block's raw attention, a model's rollout, overlays, concentration

def raw_attention_maps(attentions: Sequence[torch.Tensor], head_fusion: str = "mean", cls_query: bool = True,
                       scale: str | bool = "max", num_prefix_tokens: int | None = None) -> torch.Tensor:
    """Each block's own attention, without rollout: (B, L, K, K).

    Map l is the class token's row (or the mean patch row, see ``cls_query``) of block l's head-fused attention,
    restricted to the patches: where that block alone looks, ignoring the residual path and the earlier blocks.
    Arguments and errors as in :func:`rollout_per_block`.
    """
    scaling = _map_scaling(scale)
    attentions, P, K = _checked(attentions, head_fusion, 0.0, num_prefix_tokens)
    dtype = _work_dtype(attentions[0].device)
    maps = [_read_map(fuse_heads(a.detach().to(dtype), head_fusion), P, K, cls_query, scaling) for a in attentions]
    return torch.stack(maps, dim=1)


def model_rollout(model: nn.Module, images: torch.Tensor, per_block: bool = False, **kwargs) -> torch.Tensor:
    """Run ``model.forward_with_attention(images)`` in eval mode without gradients and roll out its attention.

    Args:
        model: a model with ``forward_with_attention`` (the course's :class:`~course_lib.models.ViT`).
        images: float (B, 3, H, W), the model's input as in training: convert uint8 images with the run's
            preprocessing, ``run.preprocess(images)``. uint8 or raw 0..255 float pixels raise a ValueError.
        per_block: return :func:`rollout_per_block` (B, L, K, K) instead of the final map (B, K, K).
        **kwargs: options of :func:`attention_rollout`; ``num_prefix_tokens`` defaults to the model's.
    """
    if not hasattr(model, "forward_with_attention"):
        raise TypeError(f"{type(model).__name__} has no forward_with_attention(x), so its attention cannot be "
                        "rolled out (a CNN has no attention). Use a course_lib ViT.")
    check_pixels(images, "model_rollout")
    kwargs.setdefault("num_prefix_tokens", getattr(model, "num_prefix_tokens", None))
    with eval_mode(model):
        _, attentions = model.forward_with_attention(images)
    return rollout_per_block(attentions, **kwargs) if per_block else attention_rollout(attentions, **kwargs)


def upsample_map(maps: torch.Tensor, size: int = 32, mode: str = "bilinear") -> torch.Tensor:
    """Resize maps (K, K), (B, K, K) or (B, L, K, K) to ``size`` x ``size`` for overlaying on the images.

    ``mode="bilinear"`` gives smooth overlays (values stay within the input range); ``"nearest"`` shows the patches
    as blocks.
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() not in (2, 3, 4):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"upsample_map expects maps shaped (K, K), (B, K, K) or (B, L, K, K), got {shape}.")
    lead = maps.shape[:-2]
    x = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    x = F.interpolate(x, size=(size, size), mode=mode, **kwargs)
    return x.reshape(*lead, size, size)


def concentration(maps: torch.Tensor) -> torch.Tensor:
    """How far maps that sum to 1 are from uniform: ``1 - H(p) / log(N)`` over the N cells of each map.

    (..., K, K) -> (...): 0 for a uniform map (attention spread evenly over all patches), 1 for a map on a single
    patch. Use ``scale="sum"`` maps; the value of a uniform map is the reference, not a ratio of two maps.
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() < 2:
        raise ValueError("concentration expects maps shaped (..., K, K) that sum to 1 (scale='sum').")
    p = maps.flatten(-2).double()
    if not torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-4):
        raise ValueError("concentration expects maps that sum to 1: compute them with scale='sum'.")
    entropy = -(p * p.clamp_min(1e-300).log()).sum(-1)
    return 1 - entropy / math.log(p.shape[-1])


# --------------------------------------------------------------------------------------------------------------
# Checks, made once per call at the entry points (the errors name the fix)

def _checked(attentions, head_fusion: str, discard_ratio: float,
             num_prefix_tokens: int | None) -> tuple[list[torch.Tensor], int, int]:
    """Validate the options and a list of (B, H, T, T) softmax attentions; return (attentions, P, K)."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, not {head_fusion!r}.")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1) (the fraction of lowest attentions set to 0), got "
                         f"{discard_ratio}. E.g. 0.9 keeps the top 10%.")
    _check_list(attentions)
    for i, a in enumerate(attentions):
        if a.shape != attentions[0].shape:
            raise ValueError(f"Attention shapes differ across blocks: block 1 is {tuple(attentions[0].shape)}, block "
                             f"{i + 1} is {tuple(a.shape)}. Rollout multiplies T x T matrices, so every block must "
                             "see the same tokens (it is not defined across a pooling stage, e.g. HybridViT's two "
                             "stages: roll out each stage separately).")
    P, K = _patch_grid(attentions[0].shape[-1], num_prefix_tokens)
    _check_softmax(attentions)
    return list(attentions), P, K


def _check_list(attentions) -> None:
    """A non-empty list of (B, H, T, T) tensors, not a model output or a single tensor."""
    if isinstance(attentions, tuple) and len(attentions) == 2 and isinstance(attentions[1], (list, tuple)):
        raise TypeError("Got a (logits, attentions) pair: pass only the attentions, e.g. "
                        "`logits, attentions = model.forward_with_attention(x); attention_rollout(attentions)`.")
    if isinstance(attentions, torch.Tensor):
        raise TypeError(f"Expected a list of per-block attention tensors (B, heads, T, T), got one tensor of shape "
                        f"{tuple(attentions.shape)}. A model's output has no attention in it: call "
                        "`logits, attentions = model.forward_with_attention(x)` and pass `attentions` "
                        "(for a single block, pass [attention]).")
    if not isinstance(attentions, (list, tuple)) or not attentions:
        raise TypeError(f"Expected a non-empty list of per-block attention tensors (B, heads, T, T), got "
                        f"{type(attentions).__name__}. Call `logits, attentions = model.forward_with_attention(x)`.")
    for i, a in enumerate(attentions):
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"attentions[{i}] is a {type(a).__name__}, not a tensor. Pass the list returned by "
                            "model.forward_with_attention(x).")
        if a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"attentions[{i}] has shape {tuple(a.shape)}; each block's attention must be "
                             "(B, heads, T, T). For an already head-fused (B, T, T) tensor use a.unsqueeze(1).")


def _check_softmax(attentions: list[torch.Tensor]) -> None:
    """Finite, non-negative rows that sum to 1, in every block: the statistics of all blocks in one host sync."""
    stats = torch.stack([_softmax_stats(a.detach().float()) for a in attentions]).tolist()
    for i, (non_finite, row_error, low) in enumerate(stats):
        if non_finite:
            raise ValueError(f"attentions[{i}] holds NaN or infinite values, so every map it reaches would be NaN. "
                             "The model produced them: check that its weights are finite (a diverged run) and run it "
                             "in float32 (float16 overflows), e.g. model.float().")
        if row_error > 1e-2 or low < -1e-6:
            raise ValueError(f"The rows of attentions[{i}] do not look like softmax weights (rows should be "
                             f"non-negative and sum to 1; largest |row sum - 1| = {row_error:.3g}, min = "
                             f"{low:.3g}). These are probably attention logits (QK^T/sqrt(d)): apply "
                             ".softmax(dim=-1) first, or use model.forward_with_attention(x), which returns weights.")


def _softmax_stats(a: torch.Tensor) -> torch.Tensor:
    """[any NaN or inf, largest |row sum - 1|, smallest entry] of one block's attention, on its device."""
    finite = a.nan_to_num(0.0, 0.0, 0.0)
    return torch.stack([(~torch.isfinite(a)).any().float(), (finite.sum(-1) - 1).abs().max(), finite.min()])


def _patch_grid(T: int, num_prefix_tokens: int | None) -> tuple[int, int]:
    """(P, K) for T tokens: P prefix tokens (given, or inferred from T = K*K or 1 + K*K) before a K x K grid."""
    if num_prefix_tokens is not None and not 0 <= num_prefix_tokens < T:
        raise ValueError(f"num_prefix_tokens must be in [0, {T}) for T={T} tokens, got {num_prefix_tokens}.")
    if num_prefix_tokens is None:       # infer: T = K*K (no class token) or 1 + K*K
        if math.isqrt(T - 1) ** 2 == T - 1 and T > 1:
            num_prefix_tokens = 1
        elif math.isqrt(T) ** 2 == T:
            num_prefix_tokens = 0
        else:
            raise ValueError(f"{T} tokens is neither K*K nor 1 + K*K, so the patches do not form a square grid. Pass "
                             "num_prefix_tokens= (the number of class/distillation tokens before the patches).")
    K = math.isqrt(T - num_prefix_tokens)
    if K * K != T - num_prefix_tokens:
        raise ValueError(f"With num_prefix_tokens={num_prefix_tokens}, the {T - num_prefix_tokens} patch tokens do "
                         f"not form a square grid (T={T}).")
    return num_prefix_tokens, K


def _map_scaling(scale) -> str:
    """``scale`` as one of MAP_SCALINGS (True = "max", False/None = "none")."""
    if scale is True:
        return "max"
    if scale is False or scale is None:
        return "none"
    if scale not in MAP_SCALINGS:
        raise ValueError(f"scale must be one of {MAP_SCALINGS} (or True = 'max', False = 'none'), not "
                         f"{scale!r}.")
    return scale

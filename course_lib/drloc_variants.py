"""The official DRLoc code's variants that the course keeps beside the paper's path (:mod:`course_lib.drloc`).

Notebook 05 invites students to try them, through ``DRLocLoss(loss=..., target=..., grid_size=...)``:

- targets in grid cells (github.com/yhlleo/VTs-Drloc, ``DenseRelativeLoc.forward``, ``normalize`` left off as every
  training command leaves it): ``"abs"``, |delta| in 0 ... k-1, what the official runs regressed (``train.sh``
  passes ``--use_abs``); ``"signed"``, delta + (k - 1) in 0 ... 2k-2, the code's default (``USE_ABS=False``);
- the losses of ``drloc/losses.py`` besides L1: ``"ce"``, a cross-entropy over the offsets of each axis (k classes
  for "abs", 2k - 1 for "signed"), and ``"cbr"``, a cycle-back regression with a variance-aware term (from TCC,
  Dwibedi et al. 2019), both on :class:`DRLocClassifierHead`.

The paper's targets |delta| / k with the L1 loss are :mod:`course_lib.drloc`'s own path, and what the course trains.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .drloc import DRLocHead, DRLocOutput, gather_pairs, sample_positions

__all__ = ["TARGET_MODES", "LOSSES", "official_targets", "DRLocClassifierHead", "cycle_back_regression",
           "variant_forward", "variant_head"]

TARGET_MODES: dict[str, str] = {
    "paper": "|delta| / k in [0, (k-1)/k]: the paper's formula (Sec. 3), course_lib.drloc.relative_targets.",
    "abs": "|delta| in cells, 0 ... k-1: the official code as train.sh runs it (--use_abs, no normalisation).",
    "signed": "delta + (k-1), 0 ... 2k-2: the official code's default (USE_ABS=False, no normalisation).",
}
LOSSES = ("l1", "ce", "cbr")


def official_targets(pos1: torch.Tensor, pos2: torch.Tensor, k: int, mode: str = "abs") -> torch.Tensor:
    """The offset between two cells as a float target (..., 2), per ``mode`` of ``TARGET_MODES``."""
    delta = (pos1 - pos2).float()
    if mode == "paper":
        return delta.abs() / k
    if mode == "abs":
        return delta.abs()
    if mode == "signed":
        return delta + (k - 1)
    raise ValueError(f"Unknown target mode {mode!r}. Choose one of {list(TARGET_MODES)}.")


class DRLocClassifierHead(nn.Module):
    """The official ``ce``/``cbr`` head: the trunk of :class:`~course_lib.drloc.DRLocHead` ending in
    Linear(hidden, hidden) without ReLU (as in the code), then one linear classifier per axis, unshared: logits
    (B, m, num_classes, 2). Initialised as the official Swin runs (truncated normal std 0.02, zero biases)."""

    def __init__(self, dim: int, hidden: int, num_classes: int):
        super().__init__()
        self.dim, self.hidden, self.num_classes = dim, hidden, num_classes
        self.layers = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, hidden))
        self.classifiers = nn.ModuleList(nn.Linear(hidden, num_classes) for _ in range(2))   # rows, columns
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        h = self.layers(torch.cat([e1, e2], dim=-1))
        return torch.stack([c(h) for c in self.classifiers], dim=-1)


def cycle_back_regression(logits: torch.Tensor, target: torch.Tensor, lambda_var: float = 1e-3,
                          eps: float = 1e-8) -> torch.Tensor:
    """The official ``cbr`` loss for one axis: variance-aware regression of the softmax's expected class.

    With ``beta = softmax(logits)`` over classes c, ``mu = sum_c beta_c c`` and ``var = sum_c beta_c (c - mu)^2``:
    ``mean((mu - target)^2 / var + lambda_var * log var)``, as ``variance_aware_regression`` in ``drloc/losses.py``.
    ``logits``: (N, C) scores over the C offsets; ``target``: (N,) the true offsets (class indices).
    """
    beta = logits.float().softmax(dim=-1)
    classes = torch.arange(logits.shape[-1], device=logits.device, dtype=beta.dtype)
    mu = (beta * classes).sum(dim=-1)
    var = (beta * (classes - mu.unsqueeze(-1)) ** 2).sum(dim=-1) + eps
    log_var = var.log()
    return (torch.exp(-log_var) * (mu - target.float()) ** 2 + lambda_var * log_var).mean()


def variant_head(dim: int, hidden: int, loss: str, target: str | None,
                 grid_size: int | None) -> tuple[nn.Module, str]:
    """Check a variant's settings once, when :class:`~course_lib.drloc.DRLocLoss` is built; return its head and
    target (default: "paper" for l1, "abs" for ce/cbr)."""
    if loss not in LOSSES:
        raise ValueError(f"Unknown DRLoc loss {loss!r}. Choose one of {LOSSES}.")
    target = target or ("paper" if loss == "l1" else "abs")
    if target not in TARGET_MODES:
        raise ValueError(f"Unknown target mode {target!r}. Choose one of {list(TARGET_MODES)}.")
    if loss == "l1":
        return DRLocHead(dim, hidden), target
    if target == "paper":
        raise ValueError(f"loss={loss!r} classifies integer offsets: use target='abs' (the official runs) or "
                         f"'signed', not {target!r}.")
    if grid_size is None or grid_size < 2:
        raise ValueError(f"loss={loss!r} needs the grid side to size its classifiers: pass grid_size=k "
                         "(ViT-Lite: 8, HybridViT: 4, model.grid_size), k >= 2.")
    return DRLocClassifierHead(dim, hidden, grid_size if target == "abs" else 2 * grid_size - 1), target


def variant_forward(grid: torch.Tensor, head: nn.Module, m: int, loss: str, target: str,
                    generator: torch.Generator | None = None) -> DRLocOutput:
    """:func:`course_lib.drloc.drloc_forward` with the official code's targets and losses."""
    k = grid.shape[-1]
    pos1, pos2 = sample_positions(grid.shape[0], m, k, generator, None if generator is not None else grid.device)
    pos1, pos2 = pos1.to(grid.device), pos2.to(grid.device)
    t = official_targets(pos1, pos2, k, target)                         # (B, m, 2)
    pred = head(*gather_pairs(grid, pos1, pos2)).float()
    if loss == "l1":
        return DRLocOutput(F.l1_loss(pred, t), pred, t, pos1, pos2)
    logits, labels = pred.flatten(0, 1), t.flatten(0, 1).long()        # (B*m, C, 2), (B*m, 2)
    per_axis = F.cross_entropy if loss == "ce" else cycle_back_regression
    value = per_axis(logits[..., 0], labels[:, 0]) + per_axis(logits[..., 1], labels[:, 1])
    return DRLocOutput(value, pred, t, pos1, pos2)

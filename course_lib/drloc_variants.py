"""The official DRLoc code's other losses, built on the paper's path in :mod:`course_lib.drloc`.

Notebook 05 invites students to try them, through :class:`DRLocVariantLoss` (``loss=..., target=..., grid_size=...``):
the losses of ``drloc/losses.py`` (github.com/yhlleo/VTs-Drloc) besides L1: ``"ce"``, a cross-entropy over the
offsets of each axis (k classes for the targets in cells ``"abs"``, 2k - 1 for ``"signed"``), and ``"cbr"``, a
cycle-back regression with a variance-aware term (from TCC, Dwibedi et al. 2019), both on
:class:`DRLocClassifierHead`. The official targets themselves (``"abs"``, ``"signed"``) are
:func:`course_lib.drloc.relative_targets`' modes, and ``DRLocLoss(dim, target="abs")`` regresses them with L1.

Everything else (sampling, gathering, the schedule of lambda, the checks) is :mod:`course_lib.drloc`'s; this module
imports from it and never the other way round.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .drloc import DRLocLoss

__all__ = ["LOSSES", "DRLocClassifierHead", "cycle_back_regression", "DRLocVariantLoss"]

LOSSES = ("l1", "ce", "cbr")


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


class DRLocVariantLoss(DRLocLoss):
    """:class:`~course_lib.drloc.DRLocLoss` with the official code's ``loss="ce"`` or ``"cbr"`` (or ``"l1"``), on
    targets in cells (``target="abs"``, the default, or ``"signed"``). ``grid_size`` (k) is required: the
    classifiers have k or 2k - 1 classes. Usage: ``DRLocVariantLoss(model.grid_dim, loss="ce", grid_size=8)``."""

    LOSSES = LOSSES
    default_target = "abs"

    def __init__(self, dim: int, loss: str = "ce", target: str | None = None, grid_size: int | None = None,
                 **kwargs):
        if loss not in LOSSES:
            raise ValueError(f"Unknown DRLoc loss {loss!r}. Choose one of {LOSSES}.")
        if loss != "l1" and target == "paper":
            raise ValueError(f"loss={loss!r} classifies integer offsets: use target='abs' (the official runs) or "
                             f"'signed', not {target!r}.")
        if loss != "l1" and (grid_size is None or grid_size < 2):
            raise ValueError(f"loss={loss!r} needs the grid side to size its classifiers: pass grid_size=k "
                             "(ViT-Lite: 8, HybridViT: 4, model.grid_size), k >= 2.")
        super().__init__(dim, loss=loss, target=target, grid_size=grid_size, **kwargs)

    def build_head(self, hidden: int) -> nn.Module:
        if self.loss == "l1":
            return super().build_head(hidden)
        k = self.grid_size
        return DRLocClassifierHead(self.dim, hidden, k if self.target == "abs" else 2 * k - 1)

    def criterion(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per axis, the cross-entropy or the cycle-back regression of the offsets, summed over the two axes."""
        if self.loss == "l1":
            return super().criterion(pred, target)
        logits, labels = pred.flatten(0, 1), target.flatten(0, 1).long()      # (B*m, C, 2), (B*m, 2)
        per_axis = F.cross_entropy if self.loss == "ce" else cycle_back_regression
        return per_axis(logits[..., 0], labels[:, 0]) + per_axis(logits[..., 1], labels[:, 1])

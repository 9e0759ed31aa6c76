"""Dense relative localization (DRLoc): the auxiliary task of Liu et al., NeurIPS 2021.

"Efficient Training of Visual Transformers with Small Datasets" adds to the classification loss a self-supervised
term that makes a transformer learn where its output tokens sit relative to each other:

    final grid of embeddings   G = {e_ij}, 1 <= i, j <= k, e_ij in R^D           (B, D, k, k)
    sample m pairs per image   (i, j), (p, h) uniformly over the k x k cells
    target                     t = (|i - p| / k, |j - h| / k) in [0, 1)^2         max is (k - 1) / k
    prediction                 d = f([e_ij, e_ph])  with f an MLP 2D -> 512 -> 512 -> 2
    loss                       L = L_ce + lambda * L_drloc,  L_drloc = E ||t - d||_1

Nothing about the images is needed: the targets come from the grid coordinates alone, so the task is free
supervision that a classifier trained on few images otherwise lacks (a sense of spatial layout).

What follows the official code (github.com/yhlleo/VTs-Drloc), file by file:

- ``drloc/aux_modules.py``, ``randn_sampling``: both cells of a pair are drawn with ``torch.randint(k, (B, m, 2))``,
  independently, uniformly and with replacement, so a pair may be the same cell (target 0). -> :func:`sample_positions`
- ``collect_samples_faster``: one index op on the flattened grid, row-major cell index ``i * k + j``.
  -> :func:`gather_pairs`
- ``DenseRelativeLoc``: the head (``l1``: Linear(2D, 512)-ReLU-Linear(512, 512)-ReLU-Linear(512, 2); ``ce``/``cbr``:
  the same trunk ending in Linear(512, 512) without ReLU, then two linear classifiers over the offsets, one per
  axis). -> :class:`DRLocHead`
- ``DenseRelativeLoc.forward``: the targets. Offset ``delta = pos1 - pos2``; with ``use_abs`` its absolute value,
  otherwise shifted by ``k - 1`` to be non-negative; divided by ``k - 1`` (abs) or ``2 (k - 1)`` (signed) only if
  ``normalize=True``, which ``models/swin.py`` does not pass (it calls ``self.drloc[idx](feats)``).
  -> :func:`relative_targets`, see ``TARGET_MODES``
- ``drloc/losses.py``: ``l1`` = ``F.l1_loss`` (a mean over pairs *and* the two axes: half the paper's
  ``|t - d|_1``, which sums the axes); ``ce`` = cross-entropy per axis, summed; ``cbr`` = cycle-back regression with
  a variance-aware term (from TCC, Dwibedi et al. 2019). -> :class:`DRLocLoss`
- ``config.py``: ``SAMPLE_SIZE = 32`` pairs, ``LAMBDA_DRLOC = 0.5``, ``DRLOC_MODE = 'l1'``; but ``main.py``'s
  ``--sample_size`` defaults to 64 and overrides it (``train.sh`` does not set it), so the runs used **m = 64**, the
  course's default.
- ``main.py``'s ``_weight_decay``: lambda rises linearly from 0 over 20 epochs, then falls linearly towards 0 at
  epoch 300 while training stops after 100. -> ``DRLocLoss(schedule="official")``, :func:`official_weight`
- ``models/swin.py``: the head reads the last stage's tokens *before* the final norm. -> ``tokens="pre_norm"``

One difference from the official runs, on purpose, because the course follows the paper: the targets.
``train.sh`` passes ``--use_abs`` and the Swin model no ``normalize=True``, so the official Swin runs regress
``|delta|`` in *cells* (0 ... k-1), a loss k times larger than the paper's ``|delta| / k``. Their lambda values
were set at that scale. ``target="abs"`` reproduces it.

The head is trained with the model (:func:`course_lib.train.fit` puts the parameters of every extra loss in the
optimizer and checkpoints them) and never used at evaluation: ``fit``/``evaluate`` call only ``model(x)``, so the
accuracy of a model trained with DRLoc costs nothing extra at test time.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .train import AuxiliaryLoss

__all__ = ["TARGET_MODES", "LOSSES", "sample_positions", "relative_targets", "gather_pairs", "DRLocHead",
           "DRLocOutput", "drloc_forward", "cycle_back_regression", "DRLocLoss", "official_weight", "SCHEDULES",
           "TOKEN_SOURCES", "constant_baseline"]

# How the offset between two cells becomes a regression/classification target. delta = pos1 - pos2.
TARGET_MODES: dict[str, str] = {
    "paper": "|delta| / k in [0, (k-1)/k]: the paper's formula (Sec. 3). The course's default.",
    "abs": "|delta| in cells, 0 ... k-1: the official code as train.sh runs it (--use_abs, no normalisation).",
    "abs_norm": "|delta| / (k-1) in [0, 1]: the official code with use_abs and normalize=True.",
    "signed": "delta + (k-1), 0 ... 2k-2: the official code's default (USE_ABS=False, no normalisation).",
    "signed_norm": "(delta + k-1) / (2(k-1)) in [0, 1]: the official code, signed, with normalize=True.",
}
LOSSES = ("l1", "ce", "cbr")
SCHEDULES = ("constant", "official")          # lambda over the epochs (see DRLocLoss.weight_at)
TOKEN_SOURCES = ("pre_norm", "post_norm")     # read the last tokens before (official) or after the final norm
_CLASS_MODES = ("abs", "signed")   # the integer targets that ce/cbr classify


def sample_positions(batch: int, m: int, k: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``m`` pairs of grid cells per image, as the official code does.

    Every coordinate is independent and uniform on {0, ..., k-1}, with replacement: a pair can repeat a cell and
    the same pair can come up twice. Two ``randint`` calls, first cells then second cells, like ``randn_sampling``.

    Args:
        batch, m, k: images, pairs per image, grid side.
        generator: a ``torch.Generator`` for a reproducible draw; ``None`` uses the global RNG (seeded per epoch by
            ``fit``). It must live on ``device``.
        device: where to create the positions (default: the generator's device, else the CPU).

    Returns:
        ``(pos1, pos2)``, each int64 (batch, m, 2) holding (row, column) in [0, k).
    """
    if m < 1:
        raise ValueError(f"m={m}: DRLoc needs at least one pair per image (the official runs use m=64).")
    if k < 1:
        raise ValueError(f"k={k}: the grid must have at least one cell per side.")
    if device is None and generator is not None:
        device = generator.device
    pos1 = torch.randint(k, (batch, m, 2), generator=generator, device=device)
    pos2 = torch.randint(k, (batch, m, 2), generator=generator, device=device)
    return pos1, pos2


def relative_targets(pos1: torch.Tensor, pos2: torch.Tensor, k: int, mode: str = "paper") -> torch.Tensor:
    """The offset between two cells as a float target, (..., 2) -> (..., 2), one value per axis.

    ``mode`` (see ``TARGET_MODES``): ``"paper"`` (default) is the paper's ``(|i-p|/k, |j-h|/k)``, in
    [0, (k-1)/k]. The others are the official code's variants: ``"abs"`` (|delta| in cells, what its training script
    used), ``"abs_norm"`` (|delta| / (k-1)), ``"signed"`` (delta + k - 1) and ``"signed_norm"`` (that / (2(k-1))).
    """
    if mode not in TARGET_MODES:
        raise ValueError(f"Unknown target mode {mode!r}. Choose one of {list(TARGET_MODES)}.")
    if mode.endswith("_norm") and k < 2:
        raise ValueError(f"mode={mode!r} divides by k-1, so it needs k >= 2 (got k={k}).")
    delta = (pos1 - pos2).float()
    if mode == "paper":
        return delta.abs() / k
    if mode == "abs":
        return delta.abs()
    if mode == "abs_norm":
        return delta.abs() / (k - 1)
    if mode == "signed":
        return delta + (k - 1)
    return (delta + (k - 1)) / (2 * (k - 1))


def gather_pairs(grid: torch.Tensor, pos1: torch.Tensor, pos2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the embeddings at ``pos1`` and ``pos2`` from a grid.

    Args:
        grid: (B, D, k, k) embeddings.
        pos1, pos2: int64 (B, m, 2) cells as (row, column).

    Returns:
        ``(e1, e2)``, each (B, m, D): ``e1[b, n] = grid[b, :, pos1[b, n, 0], pos1[b, n, 1]]``.
    """
    B, D, k, _ = grid.shape
    m = pos1.shape[1]
    tokens = grid.flatten(2).transpose(1, 2)                          # (B, k*k, D), a view
    cells = torch.cat([pos1, pos2], dim=1).to(grid.device)            # (B, 2m, 2): one gather for both ends
    index = cells[..., 0] * k + cells[..., 1]                         # row-major cell index, (B, 2m)
    picked = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, D))  # (B, 2m, D)
    return picked[:, :m], picked[:, m:]


class DRLocHead(nn.Module):
    """The DRLoc MLP on a pair of embeddings: ([e1, e2] in R^2D) -> offset prediction.

    ``num_classes=None`` (the paper, ``l1``): Linear(2D, hidden) - ReLU - Linear(hidden, hidden) - ReLU -
    Linear(hidden, 2), output (B, m, 2). With ``num_classes`` (the official ``ce``/``cbr`` head): the trunk ends in
    Linear(hidden, hidden) with no ReLU (as in the code), then one linear classifier per axis, output logits
    (B, m, num_classes, 2). ``num_classes`` is k for absolute offsets and 2k-1 for signed ones.

    Initialised like the official Swin runs, whose ``_init_weights`` reaches the head: truncated normal (std 0.02)
    weights, zero biases.
    """

    def __init__(self, dim: int, hidden: int = 512, num_classes: int | None = None):
        super().__init__()
        self.dim, self.hidden, self.num_classes = dim, hidden, num_classes
        last = 2 if num_classes is None else hidden
        layers = [nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, last)]
        self.layers = nn.Sequential(*layers)
        self.classifiers = None if num_classes is None else nn.ModuleList(
            nn.Linear(hidden, num_classes) for _ in range(2))   # unshared: one for rows, one for columns
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """(B, m, D), (B, m, D) -> (B, m, 2) offsets, or (B, m, num_classes, 2) logits."""
        h = self.layers(torch.cat([e1, e2], dim=-1))
        if self.classifiers is None:
            return h
        return torch.stack([c(h) for c in self.classifiers], dim=-1)


class DRLocOutput(NamedTuple):
    """One DRLoc evaluation, for inspection. ``pred`` is (B, m, 2), or logits (B, m, C, 2) for ce/cbr."""

    loss: torch.Tensor     # scalar
    pred: torch.Tensor
    target: torch.Tensor   # (B, m, 2) float
    pos1: torch.Tensor     # (B, m, 2) int64
    pos2: torch.Tensor


def cycle_back_regression(logits: torch.Tensor, target: torch.Tensor, lambda_var: float = 1e-3,
                          eps: float = 1e-8) -> torch.Tensor:
    """The official ``cbr`` loss for one axis: variance-aware regression of the softmax's expected class.

    With ``beta = softmax(logits)`` over classes c, ``mu = sum_c beta_c c`` and ``var = sum_c beta_c (c - mu)^2``:
    ``mean((mu - target)^2 / var + lambda_var * log var)``, as ``variance_aware_regression`` in ``drloc/losses.py``.

    Args:
        logits: (N, C) scores over the C offsets; target: (N,) the true offsets (class indices).
    """
    beta = logits.float().softmax(dim=-1)
    classes = torch.arange(logits.shape[-1], device=logits.device, dtype=beta.dtype)
    mu = (beta * classes).sum(dim=-1)
    var = (beta * (classes - mu.unsqueeze(-1)) ** 2).sum(dim=-1) + eps
    log_var = var.log()
    return (torch.exp(-log_var) * (mu - target.float()) ** 2 + lambda_var * log_var).mean()


def _check_grid(grid: torch.Tensor, dim: int | None = None) -> int:
    """Validate a (B, D, k, k) grid and return k."""
    if grid.dim() != 4 or grid.shape[-1] != grid.shape[-2]:
        raise ValueError(f"DRLoc expects a square grid shaped (B, D, k, k), got {tuple(grid.shape)}. A token "
                         "sequence (B, N, D) must be reshaped first: use the model's feature_grid().")
    k = grid.shape[-1]
    if k < 2:
        raise ValueError(f"The grid is {k}x{k}: with a single cell every pair is the same cell, so there is nothing "
                         "to localise. DRLoc needs k >= 2; use a model whose last stage keeps a spatial grid "
                         "(fewer pooling steps, smaller patches or larger images).")
    if dim is not None and grid.shape[1] != dim:
        raise ValueError(f"The grid has {grid.shape[1]} channels but the DRLoc head was built for dim={dim}. "
                         f"Build it with dim={grid.shape[1]} (ViT: model.dim, HybridViT: 2 * model.dim, "
                         "ResNet-18: 512).")
    return k


def _check_settings(loss: str, target: str | None, classes_for_k: int | None = None,
                    head_classes: int | None = None) -> str:
    """Validate loss/target (and, when k is known, the head's classes); return the target, defaulted by loss."""
    if loss not in LOSSES:
        raise ValueError(f"Unknown DRLoc loss {loss!r}. Choose one of {LOSSES}.")
    target = target or ("paper" if loss == "l1" else "abs")
    if target not in TARGET_MODES:
        raise ValueError(f"Unknown target mode {target!r}. Choose one of {list(TARGET_MODES)}.")
    if loss == "l1":
        if head_classes is not None:
            raise ValueError("loss='l1' needs a regression head: build DRLocHead without num_classes.")
        return target
    if target not in _CLASS_MODES:
        raise ValueError(f"loss={loss!r} classifies integer offsets: use target='abs' (the official runs) or "
                         f"'signed', not {target!r}.")
    if classes_for_k is not None:
        classes = classes_for_k if target == "abs" else 2 * classes_for_k - 1
        if head_classes != classes:
            raise ValueError(f"loss={loss!r} with target={target!r} on a {classes_for_k}x{classes_for_k} grid "
                             f"needs a head with num_classes={classes}, got {head_classes}: pass "
                             f"grid_size={classes_for_k}.")
    return target


def drloc_forward(grid: torch.Tensor, head: DRLocHead, m: int = 64, loss: str = "l1", target: str | None = None,
                  generator: torch.Generator | None = None) -> DRLocOutput:
    """The whole DRLoc term on a grid: sample pairs -> targets -> head -> loss. Returns a :class:`DRLocOutput`.

    Args:
        grid: (B, D, k, k) final embeddings (from ``model.feature_grid(features)``); gradients flow into it.
        head: a :class:`DRLocHead` (with ``num_classes`` matching ``target`` for ``ce``/``cbr``).
        m: pairs per image. loss: ``"l1"``, ``"ce"`` or ``"cbr"``.
        target: a key of ``TARGET_MODES``; default ``"paper"`` for l1 and ``"abs"`` for ce/cbr.
        generator: for the pair sampling; ``None`` draws from the global RNG on the grid's device.
    """
    k = _check_grid(grid, head.dim)
    target = _check_settings(loss, target, k, head.num_classes)
    pos1, pos2 = sample_positions(grid.shape[0], m, k, generator, None if generator is not None else grid.device)
    pos1, pos2 = pos1.to(grid.device), pos2.to(grid.device)
    t = relative_targets(pos1, pos2, k, target)                         # (B, m, 2)
    pred = head(*gather_pairs(grid, pos1, pos2)).float()                # float32 even under autocast
    if loss == "l1":
        value = F.l1_loss(pred, t)   # mean over pairs and both axes, as the official code
    else:
        logits, labels = pred.flatten(0, 1), t.flatten(0, 1).long()    # (B*m, C, 2), (B*m, 2)
        per_axis = F.cross_entropy if loss == "ce" else cycle_back_regression
        value = per_axis(logits[..., 0], labels[:, 0]) + per_axis(logits[..., 1], labels[:, 1])
    return DRLocOutput(value, pred, t, pos1, pos2)


class DRLocLoss(AuxiliaryLoss):
    """DRLoc as an extra loss for :func:`course_lib.train.fit`: ``total = cross_entropy + weight * L_drloc``.

    Usage::

        model = vit_lite()
        history = fit(model, train, test, extra_losses=[DRLocLoss(dim=model.grid_dim)])
        history.extra["drloc"]    # mean DRLoc loss per epoch

    Args:
        dim: channels D of the model's final grid (ViT: ``model.dim``; HybridViT: ``2 * model.dim``; ResNet-18: 512).
        weight: lambda. 0.5 is ``config.py``'s default; the repository's ``train.sh`` uses 0.5 for Swin, 0.1 for T2T
            and 0.1 for CvT. Those were set with targets in cells (``target="abs"``), whose loss value is k times
            the paper's; the L1 gradient passes back only the sign of the error, so the backbone's gradient is not
            k times larger, but the term is stronger than with the paper's targets once the head has grown.
        m: pairs per image (``config.py``: 32; ``main.py``'s ``--sample_size`` default, which the official runs
            used: 64, the default here).
        loss: ``"l1"`` (the paper), ``"ce"`` or ``"cbr"`` (the official code's alternatives).
        hidden: width of the head's hidden layers (512 in the paper).
        target: a key of ``TARGET_MODES``; default ``"paper"`` for l1, ``"abs"`` for ce/cbr.
        grid_size: k, required for ``ce``/``cbr`` (the classifiers have k or 2k-1 classes). ViT-Lite: 8,
            HybridViT: 4.
        schedule: ``"constant"`` lambda, or ``"official"``: the official schedule in proportion to the run
            (:meth:`weight_at`).
        tokens: ``"pre_norm"`` reads the last tokens before the final LayerNorm (the official code), ``"post_norm"``
            after it (the tokens the classifier pools).
        generator: a ``torch.Generator`` for the pair sampling (on the grid's device); default the global RNG, which
            ``fit`` seeds every epoch, so runs are reproducible without it.

    The head is trained with the model and dropped at evaluation: ``fit`` trains and checkpoints the parameters of
    its extra losses but never calls them when evaluating. ``last`` holds the latest batch's pairs, targets and
    predictions (detached) for inspection.
    """

    name = "drloc"

    def __init__(self, dim: int, weight: float = 0.5, m: int = 64, loss: str = "l1", hidden: int = 512,
                 target: str | None = None, grid_size: int | None = None, schedule: str = "constant",
                 tokens: str = "pre_norm", generator: torch.Generator | None = None):
        super().__init__()
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"m={m!r}: DRLoc needs a whole number of at least one pair per image (the official "
                             "runs use m=64).")
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight (lambda) must be a finite number >= 0, got {weight!r}.")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}.")
        if tokens not in TOKEN_SOURCES:
            raise ValueError(f"tokens must be one of {TOKEN_SOURCES}, not {tokens!r}.")
        target = _check_settings(loss, target)
        num_classes = None
        if loss != "l1":
            if grid_size is None or grid_size < 2:
                raise ValueError(f"loss={loss!r} needs the grid side to size its classifiers: pass grid_size=k "
                                 "(ViT-Lite: 8, HybridViT: 4, model.grid_size), k >= 2.")
            num_classes = grid_size if target == "abs" else 2 * grid_size - 1
        self.dim, self.weight, self.m, self.loss, self.target = dim, float(weight), m, loss, target
        self.grid_size, self.schedule, self.tokens, self.generator = grid_size, schedule, tokens, generator
        self.head = DRLocHead(dim, hidden, num_classes)
        self.last: DRLocOutput | None = None

    def weight_at(self, epoch: int, epochs: int) -> float:
        """lambda in (0-based) ``epoch`` of ``epochs``: constant, or the official schedule in proportion (over a
        100-epoch run: 0 -> lambda over epochs 0-20, then linearly towards 0 at epoch 300; see
        :func:`official_weight`)."""
        if self.schedule == "constant":
            return self.weight
        return official_weight(epoch, self.weight, warmup_epochs=0.2 * epochs, total_epochs=3.0 * epochs)

    def grid_loss(self, grid: torch.Tensor) -> torch.Tensor:
        """The unweighted DRLoc loss (scalar) on a (B, D, k, k) grid; also records ``last``."""
        if self.grid_size is not None and grid.dim() == 4 and grid.shape[-1] != self.grid_size:
            raise ValueError(f"This DRLocLoss was built for a {self.grid_size}x{self.grid_size} grid, got "
                             f"{grid.shape[-2]}x{grid.shape[-1]}. Pass grid_size={grid.shape[-1]}.")
        out = drloc_forward(grid, self.head, self.m, self.loss, self.target, self.generator)
        self.last = DRLocOutput(*(t.detach() for t in out))
        return out.loss

    def forward(self, model: nn.Module, features: torch.Tensor, images: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        """Unweighted DRLoc loss (scalar) of a batch; ``features`` is ``model.forward_features(images)``."""
        if not hasattr(model, "feature_grid"):
            raise TypeError(f"{type(model).__name__}: this model exposes no token grid; DRLoc needs the final k×k "
                            "grid — use course_lib.models.ViT/HybridViT or add feature_grid() (features -> "
                            "(B, D, k, k)).")
        if self.tokens == "post_norm":
            return self.grid_loss(model.feature_grid(features, normalized=True))
        return self.grid_loss(model.feature_grid(features))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, weight={self.weight}, m={self.m}, loss={self.loss!r}, target={self.target!r}, "
                f"hidden={self.head.hidden}, schedule={self.schedule!r}, tokens={self.tokens!r}")


def official_weight(epoch: float, weight: float, warmup_epochs: float = 20, total_epochs: float = 300) -> float:
    """Lambda at (0-based) ``epoch`` in the official ``main.py`` (``_weight_decay``): 0 -> ``weight`` linearly over
    ``warmup_epochs``, then linearly down towards 0 at ``total_epochs`` (its default 300, while the official loop
    stops after 100 epochs, where lambda is still about 0.71 of its peak). ``DRLocLoss(schedule="official")``
    follows it in proportion to the run's length.
    """
    if epoch <= warmup_epochs:
        return min(weight / warmup_epochs * epoch, weight) if warmup_epochs > 0 else weight
    return weight * (1.0 - (epoch - warmup_epochs) / (total_epochs - warmup_epochs))


def constant_baseline(k: int, target: str = "paper") -> float:
    """The L1 loss (per axis, as ``F.l1_loss`` averages it) of the best head that ignores the embeddings.

    Such a head can only predict one constant offset; the constant that minimises the expected absolute error is
    the median of the target distribution (cells i, p independent and uniform on {0..k-1}). A DRLoc loss that stays
    at this value means the embeddings carry no usable information about position. Exact, by enumeration.
    """
    if target not in ("paper", "abs", "abs_norm"):
        raise ValueError(f"constant_baseline is defined for the absolute targets 'paper', 'abs', 'abs_norm', not "
                         f"{target!r}.")
    i, p = (c.flatten() for c in torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"))  # all k^2 pairs
    t = relative_targets(torch.stack([i, i], -1), torch.stack([p, p], -1), k, target)[:, 0].double()
    return min((t - c).abs().mean().item() for c in t.unique())

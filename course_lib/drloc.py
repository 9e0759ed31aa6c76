"""Dense relative localization (DRLoc), the auxiliary task of Liu et al., NeurIPS 2021.

A self-supervised term, added to the classification loss, that makes a transformer learn where its output tokens sit
relative to each other. The targets come from the grid coordinates alone: free supervision about spatial layout,
which a classifier trained on few images otherwise lacks.

    final grid of embeddings   G = {e_ij}, 1 <= i, j <= k, e_ij in R^D           (B, D, k, k)
    sample m pairs per image   (i, j), (p, h) uniformly over the k x k cells
    target                     t = (|i - p| / k, |j - h| / k) in [0, 1)^2         max is (k - 1) / k
    prediction                 d = f([e_ij, e_ph])  with f an MLP 2D -> 512 -> 512 -> 2
    loss                       L = L_ce + λ L_drloc,  L_drloc = E ||t - d||_1,  λ = ``drloc_weight``

The functions below follow that order; :class:`DRLocLoss` plugs the term into :func:`course_lib.train.fit`. What
follows the official code (github.com/yhlleo/VTs-Drloc) and where the course departs from it is noted above
:class:`DRLocLoss`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .train import ExtraLoss

__all__ = ["sample_positions", "relative_targets", "gather_pairs", "DRLocHead", "DRLocOutput", "drloc_forward",
           "DRLocLoss", "official_drloc_weight", "constant_baseline", "identical_cells_baseline", "SCHEDULES",
           "TOKEN_SOURCES", "TARGET_MODES"]

SCHEDULES = ("constant", "official")          # λ (drloc_weight) over the epochs (see DRLocLoss.weight_at)
TOKEN_SOURCES = ("pre_norm", "post_norm")     # read the last tokens before (official) or after the final norm


MAX_PAIRS = 65_536     # pairs per image: 16 x the 4,096 ordered pairs of an 8x8 grid; more only costs memory


def sample_positions(batch: int, m: int, k: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` pairs of grid cells per image: ``(pos1, pos2)``, each int64 (batch, m, 2) of (row, column) in [0, k).

    Every coordinate is independent and uniform on {0, ..., k-1}, with replacement (a pair can repeat a cell), drawn
    by two ``randint`` calls, first cells then second cells, as the official ``randn_sampling``. ``generator``: for
    a reproducible draw (``None``: the global RNG, which ``fit`` seeds every epoch); ``device``: default the
    generator's, else the CPU.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m={m!r}: DRLoc needs a whole number of at least one pair per image (the official runs "
                         "use m=64).")
    if k < 1:
        raise ValueError(f"k={k}: the grid must have at least one cell per side.")
    if device is None and generator is not None:
        device = generator.device
    pos1 = torch.randint(k, (batch, m, 2), generator=generator, device=device)
    pos2 = torch.randint(k, (batch, m, 2), generator=generator, device=device)
    return pos1, pos2


TARGET_MODES: dict[str, str] = {
    "paper": "|delta| / k in [0, (k-1)/k]: the paper's formula (Sec. 3), what the course trains.",
    "abs": "|delta| in cells, 0 ... k-1: the official code as train.sh runs it (--use_abs, no normalisation).",
    "signed": "delta + (k-1), 0 ... 2k-2: the official code's default (USE_ABS=False, no normalisation).",
}


def relative_targets(pos1: torch.Tensor, pos2: torch.Tensor, k: int, mode: str = "paper") -> torch.Tensor:
    """The offset between two cells as a float32 target (..., 2): the paper's (|i - p| / k, |j - h| / k) in
    [0, (k-1)/k], or one of the official code's targets in cells (``mode``, see :data:`TARGET_MODES`)."""
    delta = (pos1 - pos2).float()
    if mode == "paper":
        return delta.abs() / k
    if mode == "abs":
        return delta.abs()
    if mode == "signed":
        return delta + (k - 1)
    raise ValueError(f"Unknown target mode {mode!r}. Choose one of {list(TARGET_MODES)}.")


def gather_pairs(grid: torch.Tensor, pos1: torch.Tensor, pos2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings at ``pos1`` and ``pos2``: (B, D, k, k) grid, (B, m, 2) cells -> ``(e1, e2)``, each (B, m, D),
    with ``e1[b, n] = grid[b, :, pos1[b, n, 0], pos1[b, n, 1]]``."""
    B, D, k, _ = grid.shape
    m = pos1.shape[1]
    tokens = grid.flatten(2).transpose(1, 2)                          # (B, k*k, D), a view
    cells = torch.cat([pos1, pos2], dim=1).to(grid.device)            # (B, 2m, 2): one gather for both ends
    index = cells[..., 0] * k + cells[..., 1]                         # row-major cell index, (B, 2m)
    picked = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, D))  # (B, 2m, D)
    return picked[:, :m], picked[:, m:]


class DRLocHead(nn.Module):
    """The MLP f([e1, e2]): Linear(2D, hidden) - ReLU - Linear(hidden, hidden) - ReLU - Linear(hidden, 2).

    Initialised like the official Swin runs, whose ``_init_weights`` reaches the head: truncated normal (std 0.02)
    weights, zero biases.
    """

    def __init__(self, dim: int, hidden: int = 512):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.layers = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, 2))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """(B, m, D), (B, m, D) -> (B, m, 2) predicted offsets."""
        return self.layers(torch.cat([e1, e2], dim=-1))


class DRLocOutput(NamedTuple):
    """One DRLoc evaluation, for inspection."""

    loss: torch.Tensor     # scalar
    pred: torch.Tensor     # (B, m, 2) float32 (the ce/cbr variants: logits (B, m, classes, 2))
    target: torch.Tensor   # (B, m, 2) float32
    pos1: torch.Tensor     # (B, m, 2) int64
    pos2: torch.Tensor


def drloc_forward(grid: torch.Tensor, head: nn.Module, m: int = 64, generator: torch.Generator | None = None,
                  target: str = "paper", criterion=F.l1_loss) -> DRLocOutput:
    """The whole term on a (B, D, k, k) grid: sample pairs -> targets -> gather -> head -> loss.

    ``generator`` draws the pairs (``None``: the global RNG, on the grid's device); gradients flow into ``grid``.
    The loss is ``F.l1_loss``, a mean over pairs *and* the two axes, as the official code (half the paper's
    ``||t - d||_1``, which sums the axes). ``target`` and ``criterion(pred, target)``: the official code's other
    targets and losses (:mod:`course_lib.drloc_variants`). :class:`DRLocLoss` checks the grid before it gets here.
    """
    k = grid.shape[-1]
    pos1, pos2 = sample_positions(grid.shape[0], m, k, generator, None if generator is not None else grid.device)
    pos1, pos2 = pos1.to(grid.device), pos2.to(grid.device)
    t = relative_targets(pos1, pos2, k, target)                         # (B, m, 2)
    pred = head(*gather_pairs(grid, pos1, pos2)).float()                # float32 even under autocast
    return DRLocOutput(criterion(pred, t), pred, t, pos1, pos2)


# --------------------------------------------------------------------------------------------------------------
# DRLoc in training: the official code, and where the course departs from it
#
# - drloc/aux_modules.py: ``randn_sampling`` draws both cells with torch.randint(k, (B, m, 2)) -> sample_positions;
#   ``collect_samples_faster`` gathers the row-major cell index i * k + j -> gather_pairs; ``DenseRelativeLoc``'s
#   ``l1`` head -> DRLocHead.
# - drloc/losses.py: ``l1`` = F.l1_loss. The code also offers ``ce``, a classification of each axis's offset, and
#   ``cbr``, a cycle-back regression; the paper and the course's runs use L1 (the others: course_lib.drloc_variants,
#   which builds on this module).
# - config.py: SAMPLE_SIZE = 32, LAMBDA_DRLOC = 0.5; main.py's --sample_size defaults to 64 and overrides it
#   (train.sh does not set it), so the runs used m = 64, the course's default; LAMBDA_DRLOC is our drloc_weight.
# - main.py's ``_weight_decay``: λ rises linearly from 0 over 20 epochs, then falls linearly towards 0 at epoch
#   300 while training stops after 100 -> DRLocLoss(schedule="official"), official_drloc_weight.
# - models/swin.py: the head reads the last stage's tokens before the final norm -> tokens="pre_norm".
# - The targets, on purpose: train.sh passes --use_abs and the Swin model no normalize=True, so the official runs
#   regress |delta| in *cells* (0 ... k-1), a loss k times the paper's |delta| / k, which the course uses
#   (DRLocLoss(target="abs") gives the official targets).
#
# The course's ablation (course_lib.experiments.plan.drloc_ablation) varies drloc_weight, m, schedule and tokens.

class DRLocLoss(ExtraLoss):
    """DRLoc as an extra loss for :func:`course_lib.train.fit`: ``total = cross_entropy + drloc_weight * L_drloc``.

    Usage::

        model = vit_lite()
        history = fit(model, train, test, extra_losses=[DRLocLoss(dim=model.grid_dim)])
        history.extra["drloc"]    # mean DRLoc loss per epoch

    Args:
        dim: channels D of the model's final grid (ViT: ``model.dim``; HybridViT: ``2 * model.dim``; ResNet-18: 512).
        drloc_weight: λ, the weight of the DRLoc loss (``RunSpec.drloc_weight`` of a run). 0.5 is ``config.py``'s
            default; the repository's ``train.sh`` uses 0.5 for Swin, 0.1 for T2T
            and 0.1 for CvT, set with targets in cells (k times the paper's loss value; the L1 gradient passes back
            only the sign of the error, so the backbone's gradient is not k times larger).
        m: pairs per image (64, as the official runs).
        loss: ``"l1"`` (the paper). The official code's ``"ce"`` / ``"cbr"`` are
            :class:`course_lib.drloc_variants.DRLocVariantLoss`.
        hidden: width of the head's hidden layers (512 in the paper).
        target: ``"paper"`` (|delta| / k, the default), or the official code's ``"abs"`` (|delta| in cells) or
            ``"signed"`` (see :data:`TARGET_MODES`).
        grid_size: k, when the grid's side must be checked (ViT-Lite: 8, HybridViT: 4).
        schedule: ``"constant"`` λ, or ``"official"``: the official schedule in proportion to the run
            (:meth:`weight_at`).
        tokens: ``"pre_norm"`` reads the last tokens before the final LayerNorm (the official code), ``"post_norm"``
            after it (the tokens the classifier pools).
        generator: a ``torch.Generator`` for the pair sampling (on the grid's device); default the global RNG, which
            ``fit`` seeds every epoch, so runs are reproducible without it.

    The head is trained with the model and dropped at evaluation: ``fit`` trains and checkpoints the parameters of
    its extra losses but never calls them when evaluating. ``last`` holds the latest batch's pairs, targets and
    predictions (detached) for inspection. The settings are checked here, once; the grid once per shape.
    """

    name = "drloc"
    LOSSES: tuple[str, ...] = ("l1",)      # the official code's others: drloc_variants.DRLocVariantLoss
    default_target = "paper"

    def __init__(self, dim: int, drloc_weight: float = 0.5, m: int = 64, loss: str = "l1", hidden: int = 512,
                 target: str | None = None, grid_size: int | None = None, schedule: str = "constant",
                 tokens: str = "pre_norm", generator: torch.Generator | None = None):
        super().__init__()
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_PAIRS:
            raise ValueError(f"m={m!r}: DRLoc needs a whole number of at least one pair per image, and at most "
                             f"{MAX_PAIRS:,} (an 8x8 grid has 4,096 ordered pairs of cells; the official runs use "
                             "m=64).")
        if isinstance(drloc_weight, bool) or not (isinstance(drloc_weight, (int, float))
                                                  and math.isfinite(drloc_weight) and drloc_weight >= 0):
            raise ValueError(f"drloc_weight (λ) must be a finite number >= 0, got {drloc_weight!r}.")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}.")
        if tokens not in TOKEN_SOURCES:
            raise ValueError(f"tokens must be one of {TOKEN_SOURCES}, not {tokens!r}.")
        if loss not in self.LOSSES:
            raise ValueError(f"Unknown DRLoc loss {loss!r} for {type(self).__name__}. Choose one of {self.LOSSES}"
                             + ("" if self.LOSSES != ("l1",) else "; the official code's 'ce' and 'cbr' are "
                                "course_lib.drloc_variants.DRLocVariantLoss(dim, loss=..., grid_size=k)") + ".")
        target = target or self.default_target
        if target not in TARGET_MODES:
            raise ValueError(f"Unknown target mode {target!r}. Choose one of {list(TARGET_MODES)}.")
        self.dim, self.drloc_weight, self.m, self.loss, self.grid_size = dim, float(drloc_weight), m, loss, grid_size
        self.schedule, self.tokens, self.generator, self.target = schedule, tokens, generator, target
        self.head = self.build_head(hidden)
        self.last: DRLocOutput | None = None
        self._checked_shape: tuple[int, ...] | None = None     # the grid shape (D, k, k) already validated

    def build_head(self, hidden: int) -> nn.Module:
        """The MLP that reads a pair of embeddings (the official variants build their classifiers here)."""
        return DRLocHead(self.dim, hidden)

    def criterion(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss between the head's predictions and the targets: L1, a mean over pairs and axes."""
        return F.l1_loss(pred, target)

    def weight_at(self, epoch: int, epochs: int) -> float:
        """λ in (0-based) ``epoch`` of ``epochs``: ``drloc_weight``, or the official schedule in proportion (over a
        100-epoch run: 0 -> ``drloc_weight`` over epochs 0-20, then linearly towards 0 at epoch 300; see
        :func:`official_drloc_weight`)."""
        if self.schedule == "constant":
            return self.drloc_weight
        return official_drloc_weight(epoch, self.drloc_weight, warmup_epochs=0.2 * epochs, total_epochs=3.0 * epochs)

    def grid_loss(self, grid: torch.Tensor) -> torch.Tensor:
        """The unweighted DRLoc loss (scalar) on a (B, D, k, k) grid; also records ``last``."""
        if tuple(grid.shape[1:]) != self._checked_shape:             # once per grid shape, not every batch
            _check_grid(grid, self.dim, self.grid_size)
            self._checked_shape = tuple(grid.shape[1:])
        out = drloc_forward(grid, self.head, self.m, self.generator, self.target, self.criterion)
        self.last = DRLocOutput(*(t.detach() for t in out))
        return out.loss

    def forward(self, model: nn.Module, tokens: torch.Tensor, images: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        """Unweighted DRLoc loss (scalar) of a batch; ``tokens`` is ``model.forward_blocks(images)`` (before the
        final norm, which ``tokens="post_norm"`` applies here)."""
        if not hasattr(model, "feature_grid"):
            raise TypeError(f"{type(model).__name__}: this model exposes no token grid; DRLoc needs the final k×k "
                            "grid — use course_lib.models.ViT/HybridViT or add feature_grid() (tokens -> "
                            "(B, D, k, k)).")
        if self.tokens == "post_norm":
            return self.grid_loss(model.feature_grid(model.norm(tokens)))
        return self.grid_loss(model.feature_grid(tokens))

    def settings(self) -> dict:
        """Every setting that changes the term, in this order (their text form names the runs of record)."""
        # "weight" is drloc_weight's stored name: these keys are part of every DRLoc run's identity hash.
        return {"dim": self.dim, "weight": self.drloc_weight, "m": self.m, "loss": self.loss, "target": self.target,
                "hidden": self.head.hidden, "schedule": self.schedule, "tokens": self.tokens}


def _check_grid(grid: torch.Tensor, dim: int, grid_size: int | None = None) -> None:
    """A square (B, dim, k, k) grid with k >= 2 (and k = ``grid_size`` when given)."""
    if grid.dim() != 4 or grid.shape[-1] != grid.shape[-2]:
        raise ValueError(f"DRLoc expects a square grid shaped (B, D, k, k), got {tuple(grid.shape)}. A token "
                         "sequence (B, N, D) must be reshaped first: use the model's feature_grid().")
    k = grid.shape[-1]
    if k < 2:
        raise ValueError(f"The grid is {k}x{k}: with a single cell every pair is the same cell, so there is nothing "
                         "to localise. DRLoc needs k >= 2; use a model whose last stage keeps a spatial grid "
                         "(fewer pooling steps, smaller patches or larger images).")
    if grid.shape[1] != dim:
        raise ValueError(f"The grid has {grid.shape[1]} channels but the DRLoc head was built for dim={dim}. "
                         f"Build it with dim={grid.shape[1]} (ViT: model.dim, HybridViT: 2 * model.dim, "
                         "ResNet-18: 512).")
    if grid_size is not None and k != grid_size:
        raise ValueError(f"This DRLocLoss was built for a {grid_size}x{grid_size} grid, got {k}x{k}. Pass "
                         f"grid_size={k}.")


def official_drloc_weight(epoch: float, drloc_weight: float, warmup_epochs: float = 20,
                          total_epochs: float = 300) -> float:
    """λ at (0-based) ``epoch`` in the official ``main.py`` (``_weight_decay``): 0 -> ``drloc_weight`` linearly over
    ``warmup_epochs``, then linearly down towards 0 at ``total_epochs`` (its default 300, while the official loop
    stops after 100 epochs, where λ is still about 0.71 of its peak). ``DRLocLoss(schedule="official")``
    follows it in proportion to the run's length.
    """
    if epoch <= warmup_epochs:
        return min(drloc_weight / warmup_epochs * epoch, drloc_weight) if warmup_epochs > 0 else drloc_weight
    return drloc_weight * (1.0 - (epoch - warmup_epochs) / (total_epochs - warmup_epochs))


def constant_baseline(k: int, target: str = "paper") -> float:
    """The L1 loss (per axis, as ``F.l1_loss`` averages it) of the best head that ignores the embeddings.

    Such a head can only predict one constant offset; the constant that minimises the expected absolute error is
    the median of the target distribution (cells i, p independent and uniform on {0..k-1}). A DRLoc loss that stays
    at this value means the embeddings carry no usable information about position. Exact, by enumeration.
    ``target``: "paper" (|delta| / k) or the official runs' "abs" (|delta| in cells).
    """
    if target not in ("paper", "abs"):
        raise ValueError(f"constant_baseline is defined for the absolute targets 'paper' and 'abs', not {target!r}.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be a whole number of at least 2 (cells per side of the grid), got {k!r}.")
    i, p = (c.flatten() for c in torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"))  # all k^2 pairs
    t = relative_targets(i, p, k, target).double()
    return min((t - c).abs().mean().item() for c in t.unique())


def identical_cells_baseline(k: int, target: str = "paper") -> float:
    """The L1 loss (per axis, as ``F.l1_loss`` averages it) of the best head that reads nothing from the embeddings
    except whether the two are the same cell (then they are equal and the target is 0).

    It predicts exactly 0 for a pair of identical cells (probability 1/k^2) and, for the other pairs, the best
    constant: the median of their target. Exact, by enumeration of all k^4 pairs of cells on the k x k grid, the two
    positions independent and uniform (as DRLoc samples them). Below :func:`constant_baseline`.
    """
    cells = torch.cartesian_prod(torch.arange(k), torch.arange(k))                   # (k^2, 2): (row, column)
    pos1, pos2 = cells.repeat_interleave(k * k, dim=0), cells.repeat(k * k, 1)       # all k^4 ordered pairs
    t = relative_targets(pos1, pos2, k, target)[:, 0].double()                        # one axis (both alike)
    other = t[(pos1 != pos2).any(dim=-1)]
    if len(other) == 0:
        return 0.0
    return min((other - c).abs().sum().item() for c in other.unique()) / len(t)

"""Curves: learning curves, accuracy against training-set size, mean attention distance, the DRLoc loss."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from .layout import MAX_WIDTH, MIN_FONT

if TYPE_CHECKING:     # names used only in annotations
    from ..history import History

__all__ = ["plot_history", "plot_small_data_curve", "plot_attention_distance", "plot_drloc_loss"]


def _finish_curve(fig, ax, xlabel: str, ylabel: str, title: str = ""):
    """Labels, grid, legend and title of a one-panel curve figure; returns the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=MIN_FONT)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _cross_entropy(h: dict) -> list[float | None] | None:
    """The training cross-entropy per epoch: the recorded loss less each auxiliary term times its weight (the
    weight is constant within an epoch, so the epoch means subtract exactly); None when a weight is not recorded."""
    loss = list(h["train_loss"])
    for name, values in (h.get("extra") or {}).items():
        weights = (h.get("extra_weight") or {}).get(name)
        if weights is None or len(weights) != len(values):
            return None
        loss = [None if t is None else t - w * v for t, w, v in zip(loss, weights, values)]
    return loss


def _history_points(h: History | dict, metric: str) -> list[tuple[int, float]]:
    h = h if isinstance(h, dict) else h.to_dict()
    if metric == "train_loss":          # cross-entropy alone, comparable between runs with and without DRLoc
        values = _cross_entropy(h)
        if values is None:
            raise ValueError("plot_history: this history has an auxiliary loss without its weight per epoch, so its "
                             "cross-entropy cannot be separated from it; plot metrics=('test_acc',) instead, or "
                             "retrain it with this course_lib, which records the weight.")
    else:
        values = h[metric] if metric in h else h["extra"][metric]
    return [(e, v) for e, v in zip(h["epoch"], values) if v is not None]


def plot_history(histories: Mapping[str, History | dict], metrics: Sequence[str] = ("train_loss", "test_acc"),
                 title: str | None = None):
    """Learning curves: one panel per metric (two per row), one line per run (``{label: History}``).

    Epochs without an evaluation (``None``) are skipped, so sparse test curves are drawn point to point.
    ``train_loss`` is drawn as the cross-entropy alone: a run with DRLoc records cross-entropy + λ·L_drloc, which on
    one axis with a plain run's cross-entropy would read as worse fitting (:func:`plot_drloc_loss` draws L_drloc).
    """
    names = {"train_loss": "training cross-entropy", "test_loss": "test loss", "train_acc": "training accuracy (%)",
             "test_acc": "test accuracy (%)", "val_acc": "validation accuracy (%)",
             "train_clean_acc": "clean training accuracy (%)"}
    n_cols = min(2, len(metrics))
    n_rows = math.ceil(len(metrics) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(min(MAX_WIDTH, 3.5 * n_cols), 3.0 * n_rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for label, h in histories.items():
            points = _history_points(h, metric)
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 20 else None, ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(names.get(metric, metric))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[len(metrics) - 1].legend(fontsize=MIN_FONT)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _interval_point(p: Sequence[float]) -> tuple[float, float, float | None, float | None]:
    if len(p) == 2:
        return p[0], p[1], None, None
    if len(p) == 4:
        return tuple(p)
    raise ValueError(f"A point is (n, accuracy) or (n, accuracy, low, high), got {tuple(p)!r}.")


def plot_small_data_curve(points: Mapping[str, Sequence[tuple]], title: str = "",
                          xlabel: str = "training images per class"):
    """Accuracy against training-set size on a log axis: ``{label: [(n_per_class, accuracy), ...]}``.

    A point may also be ``(n, accuracy, low, high)``, a 95 % interval drawn as an error bar.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, pts in points.items():
        pts = sorted(_interval_point(p) for p in pts)
        n, acc = [p[0] for p in pts], [p[1] for p in pts]
        if any(p[2] is not None for p in pts):
            err = [[a - (lo if lo is not None else a) for _, a, lo, _ in pts],
                   [(hi if hi is not None else a) - a for _, a, _, hi in pts]]
            ax.errorbar(n, acc, yerr=err, marker="o", capsize=3, label=label)
        else:
            ax.plot(n, acc, marker="o", label=label)
    ax.set_xscale("log")
    sizes = sorted({p[0] for pts in points.values() for p in pts})
    ax.set_xticks(sizes, [str(n) for n in sizes])          # the sizes themselves, not powers of ten
    ax.minorticks_off()
    return _finish_curve(fig, ax, xlabel, "test accuracy (%)", title)


def plot_attention_distance(distances: Mapping[str, torch.Tensor], uniform: float | None = None,
                            title: str = "", local_share: float | None = 0.8):
    """Mean attention distance per block: a dot per head and a line through the per-block mean, one colour per
    label (``{label: (blocks, heads) tensor}``, from :func:`course_lib.locality.mean_attention_distance`).

    ``uniform``: the distance under uniform attention (e.g. ``patch_distances(K, P).mean()``), drawn dashed;
    ``local_share``: with ``uniform``, the distance below which a head counts as local (that share of ``uniform``,
    as :func:`course_lib.internals.locality_verdict` counts them), drawn dotted. The y-axis starts at 0, so both lines
    and every head are in view, and the legend sits below the axes, never on the points.
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    n = len(distances)
    for i, (label, d) in enumerate(distances.items()):
        d = torch.as_tensor(d).detach().double().cpu()
        blocks = torch.arange(1, d.shape[0] + 1, dtype=torch.float64)
        shift = (i - (n - 1) / 2) * 0.12                     # labels side by side, not on top of each other
        color = f"C{i}"
        ax.scatter((blocks + shift).repeat_interleave(d.shape[1]), d.flatten(), s=12, color=color, alpha=0.5)
        ax.plot(blocks, d.mean(1), marker="o", ms=4, color=color, label=f"{label} (mean over heads)")
    if uniform is not None:
        ax.axhline(uniform, ls="--", color="k", lw=0.9, label="uniform attention")
        if local_share is not None:
            ax.axhline(local_share * uniform, ls=":", color="k", lw=0.9,
                       label=f"local: below {local_share:.0%} of uniform")
    top = max([float(torch.as_tensor(d).max()) for d in distances.values()] + [uniform or 0.0])
    ax.set_ylim(0, 1.08 * top)
    ax.set_xticks(range(1, max(len(d) for d in distances.values()) + 1))
    fig = _finish_curve(fig, ax, "block", "mean attention distance (pixels)", title)
    ax.legend(fontsize=MIN_FONT, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def plot_drloc_loss(losses: Mapping[str, Sequence[float]], baseline: float, title: str = ""):
    """The DRLoc loss per epoch of each run (``{label: [loss after epoch 1, 2, ...]}``) and, dashed, the loss of
    the best constant prediction (``baseline``): a loss clearly below it means the embeddings encode position."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for label, values in losses.items():
        values = [float(v) for v in values]
        ax.plot(range(1, len(values) + 1), values, marker="o" if len(values) < 30 else None, ms=3, label=label)
    ax.axhline(baseline, ls="--", color="k", lw=0.9, label=f"constant prediction ({baseline:.3f})")
    return _finish_curve(fig, ax, "epoch", "DRLoc L1 loss", title)

"""CKA figures: layer x layer heat maps, and what CKA compares (two centred Gram matrices side by side)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..cka import center_gram, gram_linear, linear_cka
from .layout import MAX_WIDTH, MIN_FONT, TITLE, _wrap, short_layer_name

__all__ = ["plot_cka", "plot_cka_grid", "plot_gram_pair"]


def _layer_ticks(ax, axis: str, labels: Sequence[str], length_in: float) -> None:
    """Short layer names on one axis, every one if they fit at 8 pt (one per 10 pt), else every k-th."""
    labels = [short_layer_name(s) for s in labels]
    step = max(1, math.ceil(len(labels) * 10 / (length_in * 72)))
    ticks = range(0, len(labels), step)
    if axis == "x":
        ax.set_xticks(ticks, [labels[i] for i in ticks], fontsize=MIN_FONT, rotation=90)
    else:
        ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=MIN_FONT)


def _cka_ticks(ax, row_labels, col_labels, width_share: float = 1.0) -> float:
    """Layer names on both axes for the axes' current size (``width_share``: the part of its width a colour bar
    added later leaves); returns the width in inches."""
    box = ax.get_position()
    w_in, h_in = box.width * ax.figure.get_figwidth(), box.height * ax.figure.get_figheight()
    if row_labels is not None:
        _layer_ticks(ax, "y", row_labels, h_in)
    if col_labels is not None:
        _layer_ticks(ax, "x", col_labels, w_in * width_share)
    return w_in


def plot_cka(matrix: torch.Tensor | np.ndarray, row_labels: Sequence[str] | None = None,
             col_labels: Sequence[str] | None = None, title: str = "", ax=None, vmin: float = 0.0,
             vmax: float = 1.0, ylabel: str = "", xlabel: str = "", colorbar: bool = True):
    """A layer x layer CKA heatmap, first layers at the bottom-left as in Raghu et al. (2021) and Zhu et al.

    Layer names are shortened ("layer1.0.conv1" -> "l1.0.c1") and written at 8 pt, every one if they fit.
    """
    matrix = np.asarray(torch.as_tensor(matrix).detach().cpu(), dtype=float)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.4, 4.0))
    im = ax.imshow(matrix, origin="lower", cmap="magma", vmin=vmin, vmax=vmax, aspect="auto")
    w_in = _cka_ticks(ax, row_labels, col_labels, 0.85 if colorbar else 1.0)
    if title:
        ax.set_title(_wrap(title, w_in, TITLE), fontsize=TITLE)
    ax.set_ylabel(ylabel, fontsize=TITLE)
    ax.set_xlabel(xlabel, fontsize=TITLE)
    if colorbar:
        bar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("CKA", fontsize=TITLE)
        bar.ax.tick_params(labelsize=MIN_FONT)
    if fig is not None:
        fig.tight_layout()
    return ax.figure


def plot_cka_grid(panels: Mapping[str, tuple], n_cols: int = 2, size: float = 3.5):
    """Several CKA heatmaps: ``{title: (matrix, row_labels, col_labels, ylabel, xlabel)}``, at most two per row so
    that the layer names stay legible, with one colour bar for all, as tall as the panels. A last row with fewer
    panels is centred (three panels: two on top, one in the middle below), so no empty slot is left."""
    n = len(panels)
    n_cols = max(1, min(n_cols, 2, n))
    rows = math.ceil(n / n_cols)
    width = min(size, MAX_WIDTH / n_cols)
    fig = plt.figure(figsize=(width * n_cols, width * 1.05 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 2 * n_cols)          # each panel spans two half-columns, so a row can be centred
    axes = []
    for i in range(n):
        row, col = divmod(i, n_cols)
        shift = n_cols - (n - row * n_cols) if row == rows - 1 else 0   # half-columns left empty on each side
        axes.append(fig.add_subplot(grid[row, shift + 2 * col: shift + 2 * col + 2]))
    for ax, (title, (matrix, rl, cl, yl, xl)) in zip(axes, panels.items()):
        plot_cka(matrix, rl, cl, title, ax=ax, ylabel=yl, xlabel=xl, colorbar=False)
    bar = fig.colorbar(axes[0].images[0], ax=axes, shrink=1.0, aspect=25 * rows)
    bar.set_label("CKA", fontsize=TITLE)
    bar.ax.tick_params(labelsize=MIN_FONT)
    fig.get_layout_engine().execute(fig)           # the panels' final size decides how many names fit
    for ax, (matrix, rl, cl, _, _) in zip(axes, panels.values()):
        _cka_ticks(ax, rl, cl)
    return fig


def _group_ticks(ax, groups: Sequence[str]) -> None:
    """One tick label per run of equal consecutive ``groups`` entries, and thin lines between the runs."""
    starts = [i for i in range(len(groups)) if i == 0 or groups[i] != groups[i - 1]] + [len(groups)]
    centres = [(a + b - 1) / 2 for a, b in zip(starts, starts[1:])]
    names = [groups[a] for a in starts[:-1]]
    ax.set_xticks(centres, names, fontsize=MIN_FONT, rotation=90)
    ax.set_yticks(centres, names, fontsize=MIN_FONT)
    for s in starts[1:-1]:
        ax.axhline(s - 0.5, color="white", lw=0.8)
        ax.axvline(s - 0.5, color="white", lw=0.8)


def plot_gram_pair(X: torch.Tensor, Y: torch.Tensor, names: Sequence[str] = ("layer A", "layer B"),
                   groups: Sequence[str] | None = None):
    """What CKA compares: the centred n x n linear Gram matrices of two representations of the same n images,
    side by side, and a scatter of their entries against each other; linear CKA is the cosine between the two
    matrices seen as vectors.

    Args:
        X, Y: (n, ...) features of the same images (flattened to (n, p) and (n, q); p and q may differ).
        names: the two representations' names for the titles.
        groups: optional label of each image (e.g. its class), consecutive equal labels grouped on the axes.
    """
    K, L = (center_gram(gram_linear(torch.as_tensor(Z).detach())) for Z in (X, Y))
    cka = float(linear_cka(torch.as_tensor(X), torch.as_tensor(Y)))
    fig, axes = plt.subplots(1, 3, figsize=(MAX_WIDTH, 3.0))
    for ax, G, name, Z in zip(axes, (K, L), names, (X, Y)):
        s = float(G.abs().max())
        ax.imshow(G.numpy(), cmap="RdBu_r", vmin=-s, vmax=s)
        p = torch.as_tensor(Z)[0].numel()
        ax.set_title(_wrap(f"{name}: centred Gram, {len(G)}×{len(G)} (p = {p:,})", 2.0, TITLE), fontsize=TITLE)
        if groups is not None:
            _group_ticks(ax, groups)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    ax = axes[2]
    ax.scatter(K.flatten().numpy() / float(K.abs().max()), L.flatten().numpy() / float(L.abs().max()), s=6,
               alpha=0.6)
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel(f"entry of {names[0]} (scaled)", fontsize=TITLE)
    ax.set_ylabel(f"entry of {names[1]} (scaled)", fontsize=TITLE)
    ax.set_title(_wrap(f"linear CKA = {cka:.2f}: cosine of the two matrices", 2.0, TITLE), fontsize=TITLE)
    ax.tick_params(labelsize=MIN_FONT)
    fig.tight_layout()
    return fig

"""Figures the notebooks draw in one line each: learning curves, image grids, map overlays, CKA heatmaps, tables.

All functions take plain tensors/arrays (no models) and return the matplotlib ``Figure`` they drew, so a notebook can
``fig = plot_...(...)`` and the book shows it. Images are uint8 (B, 3, H, W) or float in [0, 1].
"""
from __future__ import annotations

import html
import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from .train import History

__all__ = ["plot_history", "show_images", "overlay_maps", "plot_map_grid", "plot_feature_maps", "plot_cka",
           "plot_cka_grid", "plot_small_data_curve", "plot_drloc_pairs", "Table"]


def _as_image(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 or float -> (H, W, 3) float in [0, 1] for imshow."""
    img = torch.as_tensor(img).detach().cpu()
    img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
    return img.permute(1, 2, 0).clamp(0, 1).numpy()


def _grid(n_rows: int, n_cols: int, size: float = 1.6, **kwargs):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows), squeeze=False, **kwargs)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def plot_history(histories: Mapping[str, History | dict], metrics: Sequence[str] = ("train_loss", "test_acc"),
                 title: str | None = None):
    """Learning curves side by side: one panel per metric, one line per run (``{label: History}``).

    Epochs without an evaluation (``None``) are skipped, so sparse test curves are drawn point to point.
    """
    names = {"train_loss": "training loss", "test_loss": "test loss", "train_acc": "training accuracy (%)",
             "test_acc": "test accuracy (%)"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, h in histories.items():
            h = h if isinstance(h, dict) else h.to_dict()
            points = [(e, v) for e, v in zip(h["epoch"], h[metric] if metric in h else h["extra"][metric])
                      if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 20 else None, ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(names.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, n_cols: int = 8, size: float = 1.4):
    """A grid of images (B, 3, H, W) with optional titles."""
    n = len(images)
    n_cols = min(n_cols, n)
    fig, axes = _grid(math.ceil(n / n_cols), n_cols, size)
    for i, ax in enumerate(axes.flat):
        if i < n:
            ax.imshow(_as_image(images[i]))
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def _upsample(maps: torch.Tensor, size: int, rescale: bool = True) -> np.ndarray:
    """(B, k, k) -> (B, size, size), bilinear; with ``rescale`` each map is stretched to [0, 1] for display."""
    maps = torch.as_tensor(maps).detach().float().cpu()
    up = F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    if not rescale:
        return up.numpy()
    lo = up.flatten(1).min(1).values.view(-1, 1, 1)
    hi = up.flatten(1).max(1).values.view(-1, 1, 1)
    return ((up - lo) / (hi - lo).clamp_min(1e-12)).numpy()


def overlay_maps(images: torch.Tensor, maps: torch.Tensor, titles: Sequence[str] | None = None,
                 alpha: float = 0.55, cmap: str = "jet", n_cols: int = 8, size: float = 1.6):
    """Each map (B, k, k) upsampled to the image size and laid over its image (B, 3, H, W); images on top row,
    overlays below."""
    n = len(images)
    n_cols = min(n_cols, n)
    rows = math.ceil(n / n_cols)
    up = _upsample(maps, images.shape[-1])
    fig, axes = _grid(2 * rows, n_cols, size)
    for i in range(rows * n_cols):
        r, c = divmod(i, n_cols)
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        if i >= n:
            top.axis("off")
            bottom.axis("off")
            continue
        top.imshow(_as_image(images[i]))
        bottom.imshow(_as_image(images[i]))
        bottom.imshow(up[i], cmap=cmap, alpha=alpha)
        if titles is not None:
            top.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_map_grid(images: torch.Tensor, maps: torch.Tensor, column_titles: Sequence[str],
                  row_titles: Sequence[str] | None = None, alpha: float = 0.55, cmap: str = "jet",
                  size: float = 1.5, overlay: bool = True, vmin: float = 0.0, vmax: float | None = None):
    """Images as rows, one column per map: ``maps`` is (B, L, k, k) (e.g. the rollout after each block) or a
    (B, L, H, W) stack of feature maps. The first column shows the image itself.

    By default every map is stretched to its own [min, max], which shows its shape but makes a nearly flat map look
    as contrasted as a peaked one. With ``vmax``, all maps share one colour scale from ``vmin`` to ``vmax`` (a
    colour bar is added), so maps can be compared with each other.
    """
    B, L = maps.shape[:2]
    fig, axes = _grid(B, L + 1, size)
    shared = vmax is not None
    im = None
    for b in range(B):
        up = _upsample(maps[b], images.shape[-1], rescale=not shared)
        axes[b, 0].imshow(_as_image(images[b]))
        if row_titles is not None:
            axes[b, 0].set_ylabel(row_titles[b], fontsize=8)
        for l in range(L):
            ax = axes[b, l + 1]
            limits = dict(vmin=vmin, vmax=vmax) if shared else {}
            if overlay:
                ax.imshow(_as_image(images[b]))
                im = ax.imshow(up[l], cmap=cmap, alpha=alpha, **limits)
            else:
                im = ax.imshow(up[l], cmap="viridis", **limits)
            if b == 0:
                ax.set_title(column_titles[l], fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    fig.tight_layout()
    if shared:
        fig.colorbar(im, ax=axes, fraction=0.015, pad=0.01)
    return fig


def plot_feature_maps(images: torch.Tensor, features: Mapping[str, torch.Tensor], reduce: str = "mean_abs",
                      size: float = 1.3):
    """One row per image, one column per layer: each layer's (B, C, H, W) activation reduced over channels
    (``"mean_abs"``: mean of |activation|; ``"max"``: channel maximum) and drawn at its own resolution."""
    names = list(features)
    B = len(images)
    fig, axes = _grid(B, len(names) + 1, size)
    for b in range(B):
        axes[b, 0].imshow(_as_image(images[b]))
        for j, name in enumerate(names):
            f = torch.as_tensor(features[name][b]).detach().float().cpu()
            m = f.abs().mean(0) if reduce == "mean_abs" else f.max(0).values
            axes[b, j + 1].imshow(m.numpy(), cmap="viridis")
            if b == 0:
                axes[b, j + 1].set_title(f"{name}\n{tuple(f.shape[-2:])[0]}x{tuple(f.shape[-2:])[1]}", fontsize=7)
    axes[0, 0].set_title("image", fontsize=8)
    fig.tight_layout()
    return fig


def plot_cka(matrix: torch.Tensor | np.ndarray, row_labels: Sequence[str] | None = None,
             col_labels: Sequence[str] | None = None, title: str = "", ax=None, vmin: float = 0.0,
             vmax: float = 1.0, ylabel: str = "", xlabel: str = "", colorbar: bool = True):
    """A layer x layer CKA heatmap, first layers at the bottom-left as in Raghu et al. (2021) and Zhu et al."""
    matrix = np.asarray(torch.as_tensor(matrix).detach().cpu(), dtype=float)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
    im = ax.imshow(matrix, origin="lower", cmap="magma", vmin=vmin, vmax=vmax, aspect="auto")
    step_r = max(1, len(matrix) // 10)
    step_c = max(1, matrix.shape[1] // 10)
    if row_labels is not None:
        ax.set_yticks(range(0, len(row_labels), step_r), list(row_labels)[::step_r], fontsize=6)
    if col_labels is not None:
        ax.set_xticks(range(0, len(col_labels), step_c), list(col_labels)[::step_c], fontsize=6, rotation=90)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if fig is not None:
        fig.tight_layout()
    return ax.figure


def plot_cka_grid(panels: Mapping[str, tuple], n_cols: int = 3, size: float = 3.6):
    """Several CKA heatmaps: ``{title: (matrix, row_labels, col_labels, ylabel, xlabel)}``."""
    n = len(panels)
    n_cols = min(n_cols, n)
    rows = math.ceil(n / n_cols)
    fig, axes = plt.subplots(rows, n_cols, figsize=(size * n_cols * 1.1, size * rows), squeeze=False)
    for ax, (title, (matrix, rl, cl, yl, xl)) in zip(axes.flat, panels.items()):
        plot_cka(matrix, rl, cl, title, ax=ax, ylabel=yl, xlabel=xl)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_small_data_curve(points: Mapping[str, Sequence[tuple[int, float]]], title: str = "",
                          xlabel: str = "training images per class"):
    """Accuracy against training-set size on a log axis: ``{label: [(n_per_class, accuracy), ...]}``."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    sizes = sorted({p[0] for pts in points.values() for p in pts})
    ax.set_xticks(sizes, [str(n) for n in sizes])          # the sizes themselves, not powers of ten
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_drloc_pairs(image: torch.Tensor, pos1: torch.Tensor, pos2: torch.Tensor, k: int,
                     targets: torch.Tensor | None = None, size: float = 4.2):
    """One image with its k x k grid and DRLoc pairs drawn as segments between cell centres.

    Args:
        image: (3, H, W). pos1, pos2: (m, 2) integer (row, column) cells. targets: (m, 2) to print beside each pair.
    """
    H = image.shape[-1]
    cell = H / k
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(_as_image(image), extent=(0, H, H, 0))
    for t in range(1, k):
        ax.axhline(t * cell, color="white", lw=0.6, alpha=0.7)
        ax.axvline(t * cell, color="white", lw=0.6, alpha=0.7)
    colors = plt.cm.tab10.colors
    for n, (a, b) in enumerate(zip(pos1.tolist(), pos2.tolist())):
        (r1, c1), (r2, c2) = a, b
        y1, x1, y2, x2 = (r1 + 0.5) * cell, (c1 + 0.5) * cell, (r2 + 0.5) * cell, (c2 + 0.5) * cell
        color = colors[n % len(colors)]
        ax.plot([x1, x2], [y1, y2], "-", color=color, lw=2)
        ax.plot([x1], [y1], "o", color=color, ms=7)
        ax.plot([x2], [y2], "s", color=color, ms=7)
        if targets is not None:
            tu, tv = targets[n].tolist()
            ax.annotate(f"({tu:.3f}, {tv:.3f})", ((x1 + x2) / 2, (y1 + y2) / 2), color="white", fontsize=8,
                        ha="center", va="bottom", bbox=dict(boxstyle="round,pad=0.15", fc=color, alpha=0.85, lw=0))
    ax.set_xlim(0, H)
    ax.set_ylim(H, 0)
    ax.set_xticks([(i + 0.5) * cell for i in range(k)], range(k), fontsize=7)
    ax.set_yticks([(i + 0.5) * cell for i in range(k)], range(k), fontsize=7)
    ax.set_xlabel("column j")
    ax.set_ylabel("row i")
    fig.tight_layout()
    return fig


class Table:
    """A small table that renders as HTML in notebooks and the book, and as aligned text elsewhere.

    ``Table(["model", "acc"], [["ViT", 71.2], ...], caption="...")``; floats are shown with ``digits`` decimals,
    ``None`` as an em dash.
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence], caption: str = "", digits: int = 1):
        self.columns, self.rows, self.caption, self.digits = list(columns), [list(r) for r in rows], caption, digits

    def _fmt(self, v) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.{self.digits}f}"
        return str(v)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._fmt(v))}</td>" for v in r) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f'<table class="table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def __repr__(self) -> str:
        cells = [self.columns] + [[self._fmt(v) for v in r] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return ((self.caption + "\n") if self.caption else "") + "\n".join(lines)

"""Figures for the notebooks and the book: curves, image grids, map overlays, CKA heat maps and explanatory diagrams.

Every function takes plain tensors/arrays (no models) and returns the matplotlib ``Figure`` it drew, so a notebook
can ``fig = plot_...(...)`` and the book shows it. Images are uint8 (B, 3, H, W) or float in [0, 1].

Legibility: the book's text column is about 700 px wide at a 1280-px window, and the notebooks' inline backend draws
at 100 dpi, so a figure W inches wide is shown at scale ``min(1, 7 / W)``. Every figure here is at most
``MAX_WIDTH`` = 6.8 inches wide (7 inches with the 0.1-inch padding that ``bbox_inches="tight"`` adds on each side)
and writes no text smaller than ``MIN_FONT`` = 8 pt, so all its text stays at 8 pt or more on the page
(``tests/test_plots_widgets.py`` checks this for every function).

=================================  ==========================================================================
curves                             :func:`plot_history`, :func:`plot_small_data_curve`,
                                   :func:`plot_attention_distance`, :func:`plot_drloc_loss`
images and maps                    :func:`show_images`, :func:`overlay_maps`, :func:`plot_map_grid`,
                                   :func:`plot_feature_maps`
CKA                                :func:`plot_cka`, :func:`plot_cka_grid`, :func:`plot_gram_pair`
diagrams for the background pages  :func:`plot_patch_tokens`, :func:`plot_receptive_fields`,
                                   :func:`plot_rollout_product`, :func:`plot_drloc_pairs`
=================================  ==========================================================================
"""
from __future__ import annotations

import math
import re
import textwrap
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
import numpy as np
import torch

from .cka import center_gram, gram_linear, linear_cka
from .rollout import rollout_per_block, upsample_map

if TYPE_CHECKING:     # names used only in annotations
    from .train import History

__all__ = ["MAX_WIDTH", "MIN_FONT", "short_layer_name", "plot_history", "show_images", "overlay_maps",
           "plot_map_grid", "plot_feature_maps", "plot_cka", "plot_cka_grid", "plot_small_data_curve",
           "plot_attention_distance", "plot_drloc_loss", "plot_drloc_pairs", "plot_patch_tokens",
           "plot_receptive_fields", "plot_rollout_product", "plot_gram_pair"]

MAX_WIDTH = 6.8     # inches: + 2 x 0.1 in of padding = 700 px at 100 dpi, the book's text column at 1280 px
MIN_FONT = 8        # points: the smallest text any figure writes
TITLE = 9           # points: panel titles and axis labels of dense figures
_OUTLINE = [path_effects.withStroke(linewidth=2.2, foreground="black")]   # white text readable on any colour


# --------------------------------------------------------------------------------------------------------------
# Helpers: images, layout in inches, text

def _as_image(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 or float -> (H, W, 3) float in [0, 1] for imshow."""
    img = torch.as_tensor(img).detach().cpu()
    img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
    return img.permute(1, 2, 0).clamp(0, 1).numpy()


def _stretch(maps: torch.Tensor) -> torch.Tensor:
    """Each (..., H, W) map stretched to [0, 1] on its own (a flat map becomes all zeros)."""
    flat = maps.flatten(-2)
    lo = flat.min(-1).values[..., None, None]
    hi = flat.max(-1).values[..., None, None]
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def _display_maps(maps: torch.Tensor, size: int, shared: bool) -> np.ndarray:
    """Maps (..., k, k) upsampled to ``size`` for overlays; stretched to [0, 1] each unless ``shared``."""
    up = upsample_map(torch.as_tensor(maps).detach().float().cpu(), size)
    return (up if shared else _stretch(up)).numpy()


def _fit(n_cols: int, size: float, margins: float = 0.1, gap: float = 0.06) -> float:
    """The side of a square panel: ``size`` inches, or less so that ``n_cols`` panels fit in ``MAX_WIDTH``."""
    return min(size, (MAX_WIDTH - margins - (n_cols - 1) * gap) / n_cols)


def _band(lines: int, fontsize: float = MIN_FONT) -> float:
    """Inches of space for ``lines`` lines of text (0 lines: no band)."""
    return lines * fontsize * 1.3 / 72 + 0.08 if lines else 0.0


def _wrap(text: str, width_in: float, fontsize: float = MIN_FONT) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` (about 0.6 em per character)."""
    chars = max(4, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(part, chars, break_long_words=False) for part in str(text).split("\n"))


def _lines(texts: Sequence[str]) -> int:
    return max((t.count("\n") + 1 for t in texts), default=0)


class _Canvas:
    """A figure of a known size in which axes are placed in inches, measured from its top-left corner."""

    def __init__(self, width: float, height: float):
        self.fig = plt.figure(figsize=(width, height))
        self.width, self.height = width, height

    def axes(self, x: float, y: float, w: float, h: float, bare: bool = True):
        ax = self.fig.add_axes((x / self.width, 1 - (y + h) / self.height, w / self.width, h / self.height))
        if bare:
            ax.set_xticks([])
            ax.set_yticks([])
        return ax


def _panel_grid(bands: Sequence[float], n_cols: int, panel: float, left: float = 0.05, right: float = 0.05,
                gap: float = 0.06, bottom: float = 0.05):
    """Square image panels of side ``panel``: one row per entry of ``bands`` (the inches of title space above that
    row), ``n_cols`` columns. Returns (canvas, axes array (rows, cols))."""
    width = left + n_cols * panel + (n_cols - 1) * gap + right
    height = sum(bands) + len(bands) * panel + (len(bands) - 1) * gap + bottom
    canvas = _Canvas(width, height)
    axes = np.empty((len(bands), n_cols), dtype=object)
    y = 0.0
    for r, band in enumerate(bands):
        y += band
        for c in range(n_cols):
            axes[r, c] = canvas.axes(left + c * (panel + gap), y, panel, panel)
        y += panel + gap
    return canvas, axes


def _colorbar(canvas: _Canvas, image, top: float, height: float, label: str):
    """A vertical colour bar in the right margin of a :func:`_panel_grid` canvas, with a label."""
    cax = canvas.axes(canvas.width - 0.95, top, 0.12, height, bare=False)
    bar = canvas.fig.colorbar(image, cax=cax)
    bar.set_label(label, fontsize=TITLE)
    bar.ax.tick_params(labelsize=MIN_FONT)
    return bar


def short_layer_name(name: str) -> str:
    """A short label for a layer name: "layer1.0.conv1" -> "l1.0.c1", "stem.0" -> "stem", "stage2.block1" ->
    "s2.block1"; other names are kept."""
    name = re.sub(r"^stem\.0$", "stem", str(name))
    name = re.sub(r"layer(\d)", r"l\1", name)
    name = re.sub(r"conv(\d)", r"c\1", name)
    return re.sub(r"stage(\d)", r"s\1", name)


# --------------------------------------------------------------------------------------------------------------
# Curves

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


def _history_points(h: History | dict, metric: str) -> list[tuple[int, float]]:
    h = h if isinstance(h, dict) else h.to_dict()
    values = h[metric] if metric in h else h["extra"][metric]
    return [(e, v) for e, v in zip(h["epoch"], values) if v is not None]


def plot_history(histories: Mapping[str, History | dict], metrics: Sequence[str] = ("train_loss", "test_acc"),
                 title: str | None = None):
    """Learning curves: one panel per metric (two per row), one line per run (``{label: History}``).

    Epochs without an evaluation (``None``) are skipped, so sparse test curves are drawn point to point.
    """
    names = {"train_loss": "training loss", "test_loss": "test loss", "train_acc": "training accuracy (%)",
             "test_acc": "test accuracy (%)"}
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
                            title: str = ""):
    """Mean attention distance per block: a dot per head and a line through the per-block mean, one colour per
    label (``{label: (blocks, heads) tensor}``, from :func:`course_lib.locality.mean_attention_distance`).

    ``uniform``: the distance under uniform attention (e.g. ``patch_distances(K, P).mean()``), drawn dashed.
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
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
    ax.set_xticks(range(1, max(len(d) for d in distances.values()) + 1))
    return _finish_curve(fig, ax, "block", "mean attention distance (pixels)", title)


def plot_drloc_loss(losses: Mapping[str, Sequence[float]], baseline: float, title: str = ""):
    """The DRLoc loss per epoch of each run (``{label: [loss after epoch 1, 2, ...]}``) and, dashed, the loss of
    the best constant prediction (``baseline``): a loss clearly below it means the embeddings encode position."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for label, values in losses.items():
        values = [float(v) for v in values]
        ax.plot(range(1, len(values) + 1), values, marker="o" if len(values) < 30 else None, ms=3, label=label)
    ax.axhline(baseline, ls="--", color="k", lw=0.9, label=f"constant prediction ({baseline:.3f})")
    return _finish_curve(fig, ax, "epoch", "DRLoc L1 loss", title)


# --------------------------------------------------------------------------------------------------------------
# Images and maps

def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, n_cols: int = 8, size: float = 1.4):
    """A grid of images (B, 3, H, W) with optional titles; rows are balanced and the grid fits ``MAX_WIDTH``."""
    n = len(images)
    max_cols = int(MAX_WIDTH // (0.9 if titles is not None else 0.6))
    n_cols = min(n_cols, n, max_cols)
    rows = math.ceil(n / n_cols)
    n_cols = math.ceil(n / rows)                            # e.g. 10 images in 2 rows of 5, not 7 + 3
    panel = _fit(n_cols, size)
    titles = [_wrap(t, panel) for t in titles] if titles is not None else None
    band = _band(_lines(titles)) if titles is not None else 0.0
    canvas, axes = _panel_grid([band] * rows, n_cols, panel)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(_as_image(images[i]))
        if titles is not None:
            ax.set_title(titles[i], fontsize=MIN_FONT)
    return canvas.fig


def overlay_maps(images: torch.Tensor, maps: torch.Tensor, titles: Sequence[str] | None = None,
                 alpha: float = 0.55, cmap: str = "jet", n_cols: int = 8, size: float = 1.6):
    """Each map (B, k, k) upsampled to the image size and laid over its image (B, 3, H, W); images on the top row,
    overlays below. Each map is stretched to its own [min, max]."""
    n = len(images)
    n_cols = min(n_cols, n)
    rows = math.ceil(n / n_cols)
    panel = _fit(n_cols, size)
    titles = [_wrap(t, panel) for t in titles] if titles is not None else None
    band = _band(_lines(titles)) if titles is not None else 0.0
    canvas, axes = _panel_grid([band, 0.0] * rows, n_cols, panel)
    up = _display_maps(maps, images.shape[-1], shared=False)
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
            top.set_title(titles[i], fontsize=MIN_FONT)
    return canvas.fig


def plot_map_grid(images: torch.Tensor, maps: torch.Tensor, column_titles: Sequence[str],
                  row_titles: Sequence[str] | None = None, alpha: float = 0.55, cmap: str = "jet",
                  size: float = 1.5, overlay: bool = True, vmin: float = 0.0, vmax: float | None = None,
                  colorbar_label: str = "map value (shared scale)"):
    """Images as rows, one column per map: ``maps`` is (B, L, k, k) (e.g. the rollout after each block) or a
    (B, L, H, W) stack of feature maps. The first column shows the image itself.

    By default every map is stretched to its own [min, max], which shows its shape but makes a nearly flat map look
    as contrasted as a peaked one. With ``vmax``, all maps share one colour scale from ``vmin`` to ``vmax`` and a
    colour bar labelled ``colorbar_label`` is added, so maps can be compared with each other.
    """
    B, L = maps.shape[:2]
    shared = vmax is not None
    left = 0.3 if row_titles is not None else 0.05
    right = 1.0 if shared else 0.05
    panel = _fit(L + 1, size, margins=left + right)
    titles = [_wrap(t, panel) for t in ["image", *column_titles]]
    canvas, axes = _panel_grid([_band(_lines(titles))] + [0.0] * (B - 1), L + 1, panel, left=left, right=right)
    up = _display_maps(maps, images.shape[-1], shared)
    limits = dict(vmin=vmin, vmax=vmax) if shared else dict(vmin=0.0, vmax=1.0)
    im = None
    for b in range(B):
        axes[b, 0].imshow(_as_image(images[b]))
        if row_titles is not None:
            axes[b, 0].set_ylabel(row_titles[b], fontsize=TITLE)
        for l in range(L):
            ax = axes[b, l + 1]
            if overlay:
                ax.imshow(_as_image(images[b]))
                im = ax.imshow(up[b, l], cmap=cmap, alpha=alpha, **limits)
            else:
                im = ax.imshow(up[b, l], cmap="viridis", **limits)
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=MIN_FONT)
    if shared:
        top = _band(_lines(titles))
        _colorbar(canvas, im, top, B * panel + (B - 1) * 0.06, colorbar_label)
    return canvas.fig


def _channel_map(f: torch.Tensor, reduce: str) -> np.ndarray:
    f = torch.as_tensor(f).detach().float().cpu()
    if reduce == "mean_abs":
        return f.abs().mean(0).numpy()
    if reduce == "max":
        return f.max(0).values.numpy()
    raise ValueError(f"reduce must be 'mean_abs' or 'max', not {reduce!r}.")


def plot_feature_maps(images: torch.Tensor, features: Mapping[str, torch.Tensor], reduce: str = "mean_abs",
                      size: float = 1.3, per_row: int = 6, row_titles: Sequence[str] | None = None):
    """Each layer's (B, C, H, W) activation reduced over channels (``"mean_abs"``: mean of |activation|; ``"max"``:
    channel maximum) and drawn at its own resolution.

    The image and the layers are laid out in blocks of ``per_row`` columns (the 17 convolutions of ResNet-18 and
    the image: three blocks of six); within a block, one row per image. Each column is titled with the layer's
    short name (:func:`short_layer_name`) and its resolution.
    """
    names = list(features)
    items = [None, *names]                                   # None: the image itself
    chunks = [items[i:i + per_row] for i in range(0, len(items), per_row)]
    B = len(images)
    left = 0.3 if row_titles is not None else 0.05
    n_cols = min(per_row, len(items))
    panel = _fit(n_cols, size, margins=left + 0.05)
    band = _band(2) + 0.1
    canvas, axes = _panel_grid(([band] + [0.0] * (B - 1)) * len(chunks), n_cols, panel, left=left)
    for k, chunk in enumerate(chunks):
        for c in range(n_cols):
            for b in range(B):
                ax = axes[k * B + b, c]
                if c >= len(chunk):
                    ax.axis("off")
                elif chunk[c] is None:
                    ax.imshow(_as_image(images[b]))
                else:
                    ax.imshow(_channel_map(features[chunk[c]][b], reduce), cmap="viridis")
                if c == 0 and row_titles is not None:
                    ax.set_ylabel(row_titles[b], fontsize=TITLE)
            if c < len(chunk):
                shape = "" if chunk[c] is None else "{}×{}".format(*features[chunk[c]].shape[-2:])
                label = "image" if chunk[c] is None else short_layer_name(chunk[c])
                axes[k * B, c].set_title(f"{label}\n{shape}" if shape else label, fontsize=MIN_FONT)
    return canvas.fig


# --------------------------------------------------------------------------------------------------------------
# CKA

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
    that the layer names stay legible (three panels: two on top, one below), with one colour bar for all."""
    n = len(panels)
    n_cols = max(1, min(n_cols, 2, n))
    rows = math.ceil(n / n_cols)
    width = min(size, MAX_WIDTH / n_cols)
    fig, axes = plt.subplots(rows, n_cols, figsize=(width * n_cols, width * 1.05 * rows), squeeze=False,
                             layout="constrained")
    for ax, (title, (matrix, rl, cl, yl, xl)) in zip(axes.flat, panels.items()):
        plot_cka(matrix, rl, cl, title, ax=ax, ylabel=yl, xlabel=xl, colorbar=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    bar = fig.colorbar(axes.flat[0].images[0], ax=list(axes.flat), shrink=0.6 if rows > 1 else 0.9)
    bar.set_label("CKA", fontsize=TITLE)
    bar.ax.tick_params(labelsize=MIN_FONT)
    fig.get_layout_engine().execute(fig)           # the panels' final size decides how many names fit
    for ax, (matrix, rl, cl, _, _) in zip(axes.flat, panels.values()):
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


# --------------------------------------------------------------------------------------------------------------
# Diagrams for the background chapters

def _grid_lines(ax, side: float, k: int, color: str = "white") -> None:
    for t in range(1, k):
        ax.axhline(t * side / k, color=color, lw=0.7, alpha=0.8)
        ax.axvline(t * side / k, color=color, lw=0.7, alpha=0.8)


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
    _grid_lines(ax, H, k)
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
            ax.annotate(f"({tu:.3f}, {tv:.3f})", ((x1 + x2) / 2, (y1 + y2) / 2), color="white", fontsize=MIN_FONT,
                        ha="center", va="bottom", bbox=dict(boxstyle="round,pad=0.15", fc=color, alpha=0.85, lw=0))
    ax.set_xlim(0, H)
    ax.set_ylim(H, 0)
    ax.set_xticks([(i + 0.5) * cell for i in range(k)], range(k), fontsize=MIN_FONT)
    ax.set_yticks([(i + 0.5) * cell for i in range(k)], range(k), fontsize=MIN_FONT)
    ax.set_xlabel("column j")
    ax.set_ylabel("row i")
    fig.tight_layout()
    return fig


def _token_strip(ax, image: np.ndarray, patch_size: int, shown: Sequence[int | None]) -> None:
    """Tiles of the token sequence in one axes: "cls", then the patches ``shown`` (None: an ellipsis)."""
    K = image.shape[0] // patch_size
    for x, n in enumerate(["cls", *shown]):
        if n is None:
            ax.text(x + 0.45, 0.5, "…", ha="center", va="center", fontsize=12)
            continue
        if n == "cls":
            ax.add_patch(plt.Rectangle((x, 0), 0.9, 0.9, color="0.55"))
            ax.text(x + 0.45, 0.45, "cls", ha="center", va="center", color="white", fontsize=MIN_FONT)
        else:
            i, j = divmod(n, K)
            tile = image[i * patch_size:(i + 1) * patch_size, j * patch_size:(j + 1) * patch_size]
            ax.imshow(tile, extent=(x, x + 0.9, 0.9, 0), interpolation="nearest")
        ax.text(x + 0.45, 1.3, "t=0" if n == "cls" else str(n + 1), ha="center", va="center", fontsize=MIN_FONT)
    ax.set_xlim(-0.1, len(shown) + 1)
    ax.set_ylim(1.6, -0.1)
    ax.axis("off")


def plot_patch_tokens(image: torch.Tensor, patch_size: int = 4, zoom: int | None = None):
    """How a ViT turns an image into tokens: the image cut into a K x K grid of patches numbered in row-major
    order, the token sequence (class token first, then patch n at position t = n + 1), and one patch enlarged."""
    img = _as_image(image)
    side = img.shape[0]
    K = side // patch_size
    zoom = K * (K // 2 - 1) + K // 2 - 1 if zoom is None else zoom
    canvas = _Canvas(MAX_WIDTH, 3.5)
    ax = canvas.axes(0.3, 0.35, 2.9, 2.9)
    ax.imshow(img, extent=(0, side, side, 0))
    _grid_lines(ax, side, K)
    for n in range(K * K):
        i, j = divmod(n, K)
        ax.text((j + 0.5) * patch_size, (i + 0.5) * patch_size, str(n), ha="center", va="center", color="white",
                fontsize=MIN_FONT, path_effects=_OUTLINE)
    ax.set_title(f"{side}×{side} image, {K}×{K} patches of {patch_size}×{patch_size} px", fontsize=TITLE)
    strip = canvas.axes(3.45, 0.45, 3.3, 0.75)
    _token_strip(strip, img, patch_size, [0, 1, 2, None, zoom, None, K * K - 1])
    strip.set_title(f"the sequence: class token, then patches (T = {K * K + 1})", fontsize=TITLE)
    i, j = divmod(zoom, K)
    big = canvas.axes(3.65, 1.75, 1.3, 1.3)
    big.imshow(img[i * patch_size:(i + 1) * patch_size, j * patch_size:(j + 1) * patch_size],
               interpolation="nearest")
    big.set_title(f"patch {zoom} (token t = {zoom + 1})", fontsize=MIN_FONT)
    d = 3 * patch_size * patch_size
    canvas.fig.text(5.1 / MAX_WIDTH, 1 - 2.4 / 3.5,
                    f"{patch_size}×{patch_size}×3 = {d} numbers\n→ times E ({d}×D)\n→ + position embedding\n"
                    "→ one token in ℝᴰ", fontsize=TITLE, va="center")
    return canvas.fig


def _receptive_fields(convs: Sequence[tuple[str, int, int]]) -> list[int]:
    """Receptive field after each (name, kernel, stride) convolution of a chain: a k x k conv adds (k-1) x the
    product of the strides before it."""
    fields, rf, jump = [], 1, 1
    for _, kernel, stride in convs:
        rf += (kernel - 1) * jump
        jump *= stride
        fields.append(rf)
    return fields


def _resnet18_convs() -> list[tuple[str, int, int]]:
    """The 17 convolutions on ResNet-18's main path (CIFAR stem): (name, kernel, stride)."""
    convs = [("stem.0", 3, 1)]
    for stage in range(1, 5):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            convs += [(f"layer{stage}.{block}.conv1", 3, stride), (f"layer{stage}.{block}.conv2", 3, 1)]
    return convs


def plot_receptive_fields(image: torch.Tensor, convs: Sequence[tuple[str, int, int]] | None = None):
    """Receptive field growth through a CNN (default: ResNet-18's 17 convolutions): left, the input squares that
    can influence the centre unit at the end of each stage, drawn on the image (pixel 16 of a 32-px image); right,
    the receptive field after every convolution against the image side.

    A 3 x 3 convolution adds 2 x (product of the earlier strides) pixels, so the field grows by 2 per layer in the
    first stage and faster after each stride-2 convolution.
    """
    convs = list(convs or _resnet18_convs())
    fields = _receptive_fields(convs)
    img = _as_image(image)
    side = img.shape[0]
    canvas = _Canvas(MAX_WIDTH, 3.7)
    ax = canvas.axes(0.35, 0.3, 2.45, 2.45, bare=False)
    ax.imshow(img, extent=(0, side, side, 0))
    _field_squares(ax, convs, fields, side)
    ax.set_title("field of the centre unit, per stage", fontsize=TITLE)
    canvas.fig.legend(*ax.get_legend_handles_labels(), fontsize=MIN_FONT, ncol=2, frameon=False,
                      loc="upper left", bbox_to_anchor=(0.1 / MAX_WIDTH, 1 - 2.95 / 3.7))
    bx = canvas.axes(3.5, 0.3, 3.2, 2.5, bare=False)
    bx.plot(range(1, len(fields) + 1), fields, marker="o", ms=4)
    bx.axhline(side, ls="--", color="k", lw=0.9, label=f"image side ({side} px): what one ViT block sees")
    bx.set_xticks(range(1, len(fields) + 1), [short_layer_name(n) for n, _, _ in convs], fontsize=MIN_FONT,
                  rotation=90)
    bx.set_ylabel("receptive field (pixels)", fontsize=TITLE)
    bx.set_ylim(0, 1.3 * max(fields))
    bx.tick_params(axis="y", labelsize=MIN_FONT)
    bx.grid(alpha=0.3)
    bx.legend(fontsize=MIN_FONT, loc="upper left")
    bx.set_title("after each convolution", fontsize=TITLE)
    return canvas.fig


def _field_squares(ax, convs: Sequence[tuple[str, int, int]], fields: Sequence[int], side: int) -> None:
    """Squares of the receptive field at the end of each stage, centred on pixel side // 2, on an image axes."""
    stage_ends = [i for i, (name, _, _) in enumerate(convs)
                  if i + 1 == len(convs) or convs[i + 1][0].split(".")[0] != name.split(".")[0]]
    margin = 0.5 * side
    for c, i in enumerate(stage_ends):
        r, centre = fields[i], side // 2 + 0.5             # pixel 16 spans [16, 17): the window is centred at 16.5
        name = f"{short_layer_name(convs[i][0].split('.')[0])}: {r} px"
        if r > side + 2 * margin:
            ax.plot([], [], color=f"C{c}", lw=1.8, ls="--", label=f"{name} (off frame)")
            continue
        ax.add_patch(plt.Rectangle((centre - r / 2, centre - r / 2), r, r, fill=False, lw=1.8, color=f"C{c}",
                                   ls="-" if r <= side else "--", label=name))
    ax.set_xlim(-margin, side + margin)
    ax.set_ylim(side + margin, -margin)
    ax.set_xticks([0, side], ["0", str(side)], fontsize=MIN_FONT)
    ax.set_yticks([0, side], ["0", str(side)], fontsize=MIN_FONT)


def _annotated_matrix(ax, M: np.ndarray, title: str, ticks: Sequence[str], fmt: str = "{:.2f}") -> None:
    ax.imshow(M, cmap="Blues", vmin=0, vmax=max(float(M.max()), 1e-12))
    for (r, c), v in np.ndenumerate(M):
        ax.text(c, r, fmt.format(v).lstrip("0") if v < 1 else fmt.format(v), ha="center", va="center",
                fontsize=MIN_FONT, color="white" if v > 0.6 * M.max() else "black")
    ax.set_xticks(range(M.shape[1]), ticks[:M.shape[1]], fontsize=MIN_FONT)
    ax.set_yticks(range(M.shape[0]), ticks[:M.shape[0]], fontsize=MIN_FONT)
    ax.set_title(title, fontsize=10)


def plot_rollout_product(attentions: Sequence[torch.Tensor], head_fusion: str = "mean"):
    """Attention rollout on a small example: each block's factor Ã_l = rows-normalised(0.5·A_l + 0.5·I) (heads
    fused by ``head_fusion``), their product R = Ã_L ··· Ã_1, and the class token's row of R over the patches
    as a K x K map (from :func:`course_lib.rollout.rollout_per_block`).

    Args:
        attentions: L tensors (1, heads, T, T) of softmax weights with T = 1 + K*K (a class token and few patches:
            T = 5 keeps the numbers readable).
    """
    mats = []
    for a in attentions:
        A = torch.as_tensor(a).detach().double()[0]
        A = {"mean": A.mean(0), "max": A.amax(0), "min": A.amin(0)}[head_fusion]
        A = 0.5 * A + 0.5 * torch.eye(A.shape[-1], dtype=A.dtype)
        mats.append(A / A.sum(-1, keepdim=True))
    R = mats[0]
    for A in mats[1:]:
        R = A @ R
    m = rollout_per_block(list(attentions), head_fusion=head_fusion, normalize="none")[0, -1].double()
    T = R.shape[0]
    ticks = ["cls"] + [str(t) for t in range(1, T)]
    L = len(mats)
    fig, axes = plt.subplots(1, L + 2, figsize=(MAX_WIDTH, 2.5), gridspec_kw=dict(width_ratios=[1] * (L + 1) + [0.8]))
    for l, A in enumerate(mats):
        _annotated_matrix(axes[l], A.numpy(), rf"$\tilde A_{l + 1}$ (block {l + 1})", ticks)
    product = r" ".join(rf"\tilde A_{l}" for l in range(L, 0, -1))
    _annotated_matrix(axes[L], R.numpy(), rf"$R = {product}$", ticks)
    axes[L].add_patch(plt.Rectangle((0.5, -0.5), T - 1, 1, fill=False, color="C3", lw=2))
    K = m.shape[-1]
    _annotated_matrix(axes[L + 1], m.numpy(), f"row cls of R\nas a {K}×{K} map", [str(t) for t in range(K)])
    axes[L + 1].set_xticks([])
    axes[L + 1].set_yticks([])
    for ax in axes[1:L + 1]:
        ax.set_yticklabels([])
    fig.tight_layout()
    return fig

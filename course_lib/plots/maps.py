"""Images and maps: image grids, maps laid over their images, feature maps at each layer's resolution."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from .layout import (MAX_WIDTH, MIN_FONT, TITLE, _as_image, _band, _colorbar, _display_maps, _fit, _label_rows,
                     _lines, _panel_grid, _row_titles, _wrap, short_layer_name)

__all__ = ["show_images", "overlay_maps", "plot_map_grid", "plot_feature_maps"]


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
    row_titles, left = _row_titles(row_titles)
    right = 1.0 if shared else 0.05
    panel = _fit(L + 1, size, margins=left + right)
    titles = [_wrap(t, panel) for t in ["image", *column_titles]]
    canvas, axes = _panel_grid([_band(_lines(titles))] + [0.0] * (B - 1), L + 1, panel, left=left, right=right)
    up = _display_maps(maps, images.shape[-1], shared)
    limits = dict(vmin=vmin, vmax=vmax) if shared else dict(vmin=0.0, vmax=1.0)
    im = None
    for b in range(B):
        axes[b, 0].imshow(_as_image(images[b]))
        for l in range(L):
            ax = axes[b, l + 1]
            if overlay:
                ax.imshow(_as_image(images[b]))
                im = ax.imshow(up[b, l], cmap=cmap, alpha=alpha, **limits)
            else:
                im = ax.imshow(up[b, l], cmap="viridis", **limits)
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=MIN_FONT)
    _label_rows(axes[:, 0], row_titles)
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
    row_titles, left = _row_titles(row_titles)
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
            if c < len(chunk):
                shape = "" if chunk[c] is None else "{}×{}".format(*features[chunk[c]].shape[-2:])
                label = "image" if chunk[c] is None else short_layer_name(chunk[c])
                axes[k * B, c].set_title(f"{label}\n{shape}" if shape else label, fontsize=MIN_FONT)
        _label_rows(axes[k * B:(k + 1) * B, 0], row_titles)
    return canvas.fig

"""Layout for the course's figures: sizes in inches that fit the book's text column, legible text, image panels.

The book's text column is about 700 px wide at a 1280-px window, and the notebooks' inline backend draws at 100 dpi,
so a figure W inches wide is shown at scale ``min(1, 7 / W)``. Every figure is at most ``MAX_WIDTH`` = 6.8 inches
wide (7 inches with the 0.1-inch padding that ``bbox_inches="tight"`` adds on each side) and writes no text smaller
than ``MIN_FONT`` = 8 pt, so all its text stays at 8 pt or more on the page.
"""
from __future__ import annotations

import re
import textwrap
from typing import Sequence

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
from matplotlib.textpath import TextPath
import numpy as np
import torch

from ..rollout import upsample_map

__all__ = ["MAX_WIDTH", "MIN_FONT", "short_layer_name"]

MAX_WIDTH = 6.8     # inches: + 2 x 0.1 in of padding = 700 px at 100 dpi, the book's text column at 1280 px
MIN_FONT = 8        # points: the smallest text any figure writes
TITLE = 9           # points: panel titles and axis labels of dense figures
_OUTLINE = [path_effects.withStroke(linewidth=2.2, foreground="black")]   # white text readable on any colour


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


def _text_width(text: str, fontsize: float) -> float:
    """Inches that ``text`` takes at ``fontsize`` (its longest line), measured on the glyphs' outlines."""
    return max((TextPath((0, 0), line, size=fontsize).get_extents().width for line in text.split("\n")),
               default=0.0) / 72


def _row_titles(row_titles: Sequence[str] | None, max_width: float = 1.1) -> tuple[list[str] | None, float]:
    """(the row titles wrapped to ``max_width`` inches, the left margin in inches that holds them written
    horizontally). Titles are not rotated: a rotated one longer than its panel runs into the next row's."""
    if row_titles is None:
        return None, 0.05
    wrapped = [_wrap(t, max_width, TITLE) for t in row_titles]
    return wrapped, 0.15 + max((_text_width(t, TITLE) for t in wrapped), default=0.0)


def _label_rows(axes: Sequence, row_titles: Sequence[str] | None) -> None:
    """Each title left of its row's first panel, horizontal, right-aligned against the panel."""
    for ax, title in zip(axes, row_titles or []):
        ax.set_ylabel(title, fontsize=TITLE, rotation=0, ha="right", va="center", labelpad=4)


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


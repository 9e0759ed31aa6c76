"""Interactive explorers for the notebooks (ipywidgets 7 and 8): the attention-rollout explorer.

``rollout_explorer(model, data)`` lets a student pick an image, a block, the head fusion (``fusion``: how the
heads' attentions are combined, "mean", "max" or "min"; not a number of heads) and the discard ratio, and see where
the class token looks. ``rollout_explorer_figure(...)`` draws one view of it as a plain matplotlib figure
(the same code the widget runs), so a notebook can show a static first view that renders in the book and on Colab
before the cell is run.

The model runs once, when the explorer is built: the attention of every image is kept, and so is the colour scale.
Maps are scaled to sum to 1 over the patches (``scale="sum"`` of :mod:`course_lib.rollout`, as the static figures of the rollout notebook), and each setting of (map, fusion, discard) has
one colour scale, from the smallest to the largest value
over all images and blocks (as the static figures' ``vmin``/``vmax``), fixed when the explorer is built: colours
can be compared across images and blocks. Moving a slider
only recomputes the rollout of one image, so it stays responsive on a CPU.

Only keyword arguments and widgets that exist in both ipywidgets 7 (Colab) and 8 are used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn

from .data import Preprocessing
from .plots import MAX_WIDTH
from .rollout import HEAD_FUSIONS, raw_attention_maps, rollout_per_block, upsample_map
from .runtime import eval_mode

if TYPE_CHECKING:     # names used only in annotations
    from .data import ImageSet

__all__ = ["rollout_explorer", "rollout_explorer_figure", "DISCARD_RATIOS", "MODES"]

DISCARD_RATIOS = tuple(round(0.05 * i, 2) for i in range(20))      # the slider's values, 0.0 ... 0.95
MODES = {"rollout": "rollout up to this block", "raw": "this block alone"}


@dataclass
class _Explorer:
    """What the explorer keeps after running the model once."""

    images: torch.Tensor            # uint8 (n, 3, H, W)
    labels: list[str]
    predictions: list[str]
    attentions: list[torch.Tensor]  # per block (n, heads, T, T), on the CPU
    scales: dict                    # (mode, fusion, discard) -> (min, max) over all images and blocks

    @property
    def blocks(self) -> int:
        return len(self.attentions)

    def maps(self, mode: str, fusion: str, discard: float, index=slice(None)) -> torch.Tensor:
        """(n, L, K, K) maps that sum to 1, for the images at ``index``."""
        one = [a[index] for a in self.attentions]
        if mode == "rollout":
            return rollout_per_block(one, head_fusion=fusion, discard_ratio=discard, scale="sum")
        if mode == "raw":
            return raw_attention_maps(one, head_fusion=fusion, scale="sum")
        raise ValueError(f"mode must be one of {list(MODES)}, not {mode!r}.")


def _check_model(model: nn.Module) -> None:
    if not hasattr(model, "forward_with_attention"):
        raise TypeError(f"{type(model).__name__} has no attention to explore; pass a course_lib ViT.")


def _build(model: nn.Module, data: ImageSet, n_images: int, preprocess: Preprocessing | None) -> _Explorer:
    """Run the model once on the first ``n_images`` and fix the colour scale of every setting."""
    _check_model(model)
    preprocess = preprocess or Preprocessing.for_dataset(data.dataset)
    images = data.images[:n_images]
    device = next(model.parameters()).device
    with eval_mode(model):
        logits, attentions = model.forward_with_attention(preprocess(images.to(device)))
    state = _Explorer(images=images.cpu(), labels=[data.class_names[int(i)] for i in data.labels[:n_images]],
                      predictions=[data.class_names[int(i)] for i in logits.argmax(1).cpu()],
                      attentions=[a.detach().float().cpu() for a in attentions], scales={})
    for fusion in HEAD_FUSIONS:
        state.scales["raw", fusion, 0.0] = _limits(state.maps("raw", fusion, 0.0))
        for discard in DISCARD_RATIOS:
            state.scales["rollout", fusion, discard] = _limits(state.maps("rollout", fusion, discard))
    return state


def _limits(maps: torch.Tensor) -> tuple[float, float]:
    return float(maps.min()), float(maps.max())


def _scale(state: _Explorer, mode: str, fusion: str, discard: float) -> tuple[float, float]:
    """The fixed (vmin, vmax) of a setting: over all images and blocks, as the notebook's static figures."""
    if mode == "raw":
        return state.scales["raw", fusion, 0.0]
    nearest = min(DISCARD_RATIOS, key=lambda d: abs(d - discard))   # slider floats such as 0.35000000000000003
    return state.scales.get((mode, fusion, nearest)) or _limits(state.maps(mode, fusion, discard))


def _draw(state: _Explorer, image: int, block: int, fusion: str, discard: float, mode: str):
    """The explorer's figure: the image, the K x K map with a colour bar, and the overlay (``block`` from 1)."""
    m = state.maps(mode, fusion, discard, slice(image, image + 1))[0, block - 1]
    vmin, vmax = _scale(state, mode, fusion, discard)
    picture = state.images[image].permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(MAX_WIDTH, 3.0), gridspec_kw=dict(width_ratios=[1, 1.2, 1]))
    axes[0].imshow(picture)
    axes[0].set_title(f"label: {state.labels[image]}\npredicted: {state.predictions[image]}", fontsize=9)
    shown = axes[1].imshow(m.numpy(), cmap="jet", vmin=vmin, vmax=vmax)
    what = "rollout up to" if mode == "rollout" else "attention of"
    axes[1].set_title(f"{m.shape[0]}×{m.shape[1]} map, {what} block {block}", fontsize=9)
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    bar.set_label("share of the map (sums to 1)", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    axes[2].imshow(picture)
    axes[2].imshow(upsample_map(m, picture.shape[0]).numpy(), cmap="jet", alpha=0.55, vmin=vmin, vmax=vmax)
    axes[2].set_title("overlay", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"head fusion: {fusion}, discard {discard:.2f}; maps sum to 1. "
                 f"Colour scale {vmin:.4f} to {vmax:.4f},\n"
                 "fixed for all images and blocks when the explorer was built", fontsize=9)
    fig.tight_layout()
    return fig


def _check_view(state: _Explorer, image: int, block: int | None, fusion: str, mode: str) -> int:
    if not 0 <= image < len(state.images):
        raise ValueError(f"image must be in [0, {len(state.images) - 1}], got {image}.")
    block = state.blocks if block is None else block
    if not 1 <= block <= state.blocks:
        raise ValueError(f"block must be in [1, {state.blocks}] (blocks are counted from 1), got {block}.")
    if fusion not in HEAD_FUSIONS:
        raise ValueError(f"fusion must be one of {HEAD_FUSIONS}, not {fusion!r}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, not {mode!r}.")
    return block


def rollout_explorer_figure(model: nn.Module, data: ImageSet, image: int = 0, block: int | None = None,
                            fusion: str = "mean", discard: float = 0.0, mode: str = "rollout", n_images: int = 16,
                            preprocess: Preprocessing | None = None):
    """One view of :func:`rollout_explorer` as a matplotlib ``Figure``: the same computation and drawing, for a
    static first view that renders without a running kernel.

    Args:
        model, data, n_images, preprocess: as for :func:`rollout_explorer` (the colour scale is fixed over the first
            ``n_images`` images, as in the explorer).
        image: index among those images. block: 1 ... L (None: the last block).
        fusion: how the heads are fused, "mean", "max" or "min". discard: discard ratio in [0, 0.95].
        mode: "rollout" or "raw".
    """
    state = _build(model, data, n_images, preprocess)
    block = _check_view(state, image, block, fusion, mode)
    return _draw(state, image, block, fusion, discard, mode)


def rollout_explorer(model: nn.Module, data: ImageSet, n_images: int = 16, preprocess: Preprocessing | None = None):
    """An ipywidgets panel: image slider, block slider, head fusion, discard ratio, rollout vs single block.

    Args:
        model: a course ViT (with ``forward_with_attention``).
        data: the images to explore (the first ``n_images`` are used).
        preprocess: the run's :class:`~course_lib.data.Preprocessing` (``run.preprocess``), so the model sees the
            pixels it was trained on; default ``Preprocessing.for_dataset(data.dataset)`` (standardised pixels).
    Returns:
        An ``ipywidgets.VBox``; display it (it is the value of the cell).
    """
    state = _build(model, data, n_images, preprocess)
    image = W.IntSlider(value=0, min=0, max=len(state.images) - 1, description="image")
    block = W.IntSlider(value=state.blocks, min=1, max=state.blocks, description="block")
    fusion = W.Dropdown(options=list(HEAD_FUSIONS), value="mean", description="fusion")
    discard = W.FloatSlider(value=0.0, min=0.0, max=max(DISCARD_RATIOS), step=0.05, description="discard")
    mode = W.ToggleButtons(options=[(label, key) for key, label in MODES.items()], value="rollout",
                           description="map")

    def show(i: int, block: int, fusion: str, discard: float, mode: str) -> None:
        _draw(state, i, block, fusion, float(np.round(discard, 2)), mode)
        plt.show()

    out = W.interactive_output(show, {"i": image, "block": block, "fusion": fusion, "discard": discard, "mode": mode})
    return W.VBox(children=[W.HBox(children=[image, block]), W.HBox(children=[fusion, discard]), mode, out])

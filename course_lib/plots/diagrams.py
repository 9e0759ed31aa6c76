"""Diagrams for the background chapters: DRLoc pairs, patch tokens, receptive fields, the rollout product."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..rollout import rollout_matrices, rollout_per_block
from .layout import MAX_WIDTH, MIN_FONT, TITLE, _OUTLINE, _Canvas, _as_image, short_layer_name

__all__ = ["plot_drloc_pairs", "plot_patch_tokens", "plot_receptive_fields", "plot_rollout_product"]


def _grid_lines(ax, side: float, k: int, color: str = "white") -> None:
    for t in range(1, k):
        ax.axhline(t * side / k, color=color, lw=0.7, alpha=0.8)
        ax.axvline(t * side / k, color=color, lw=0.7, alpha=0.8)


def plot_drloc_pairs(image: torch.Tensor, pos1: torch.Tensor, pos2: torch.Tensor, k: int,
                     targets: torch.Tensor | None = None, size: float = 4.2):
    """One image with its k x k grid and DRLoc pairs drawn as segments between cell centres (circle: the first
    cell, square: the second).

    Args:
        image: (3, H, W). pos1, pos2: (m, 2) integer (row, column) cells. targets: (m, 2), listed beside the image
            in each pair's colour (not on the image, where two pairs' labels can fall on the same spot).
    """
    H = image.shape[-1]
    cell = H / k
    fig, ax = plt.subplots(figsize=(size + (1.9 if targets is not None else 0.0), size))
    ax.imshow(_as_image(image), extent=(0, H, H, 0))
    _grid_lines(ax, H, k)
    colors = plt.cm.tab10.colors
    for n, (a, b) in enumerate(zip(pos1.tolist(), pos2.tolist())):
        (r1, c1), (r2, c2) = a, b
        y1, x1, y2, x2 = (r1 + 0.5) * cell, (c1 + 0.5) * cell, (r2 + 0.5) * cell, (c2 + 0.5) * cell
        color = colors[n % len(colors)]
        label = None if targets is None else "({:.3f}, {:.3f})".format(*targets[n].tolist())
        ax.plot([x1, x2], [y1, y2], "-", color=color, lw=2, label=label)
        ax.plot([x1], [y1], "o", color=color, ms=7)
        ax.plot([x2], [y2], "s", color=color, ms=7)
    if targets is not None:
        ax.legend(title="target per pair", loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=MIN_FONT,
                  title_fontsize=MIN_FONT, frameon=False, handlelength=1.5)
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
    """Attention rollout on a small example, computed by :mod:`course_lib.rollout`: each block's factor
    Ã_l = rows rescaled to sum 1 of (0.5·A_l + 0.5·I) (heads fused by ``head_fusion``), their product
    R = Ã_L ··· Ã_1, and the class token's row of R over the patches as a K x K map.

    Args:
        attentions: L tensors (1, heads, T, T) of softmax weights with T = 1 + K*K (a class token and few patches:
            T = 5 keeps the numbers readable); only the first image is drawn.
    """
    attentions = [torch.as_tensor(a).detach()[:1] for a in attentions]
    mats = [rollout_matrices([a], head_fusion)[0][0] for a in attentions]        # each block's own factor
    R = rollout_matrices(attentions, head_fusion)[-1][0]
    m = rollout_per_block(attentions, head_fusion=head_fusion, scale="none")[0, -1].double()
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

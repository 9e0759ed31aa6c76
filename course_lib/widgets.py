"""Interactive explorers for the notebooks (ipywidgets).

``rollout_explorer(model, data)`` lets a student pick an image, a block, the head fusion and the discard ratio, and
see where the class token looks. The attention of every image is computed once when the explorer is built; moving a
slider only recomputes the rollout of one image, so it stays responsive on a CPU.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from .data import ImageSet, normalize
from .rollout import raw_attention_maps, rollout_per_block, upsample_map

__all__ = ["rollout_explorer"]


def rollout_explorer(model: nn.Module, data: ImageSet, n_images: int = 16, normalize_pixels: bool = True):
    """An ipywidgets panel: image slider, block slider, head fusion, discard ratio, rollout vs single block.

    Args:
        model: a course ViT (with ``forward_with_attention``).
        data: the images to explore (the first ``n_images`` are used).
        normalize_pixels: standardise the pixels as in training (False for models trained with normalize=False).
    Returns:
        An ``ipywidgets.VBox``; display it (it is the value of the cell).
    """
    import ipywidgets as W

    if not hasattr(model, "forward_with_attention"):
        raise TypeError(f"{type(model).__name__} has no attention to explore; pass a course_lib ViT.")
    images = data.images[:n_images]
    labels = data.labels[:n_images]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, attentions = model.forward_with_attention(normalize(images.to(device), data.dataset,
                                                                    normalize_pixels))
    model.train(was_training)
    attentions = [a.cpu() for a in attentions]
    predictions = logits.argmax(1).cpu()

    image = W.IntSlider(0, 0, len(images) - 1, description="image")
    block = W.IntSlider(len(attentions), 1, len(attentions), description="block")
    fusion = W.Dropdown(options=["mean", "max", "min"], value="mean", description="heads")
    discard = W.FloatSlider(0.0, min=0.0, max=0.95, step=0.05, description="discard")
    mode = W.ToggleButtons(options=["rollout up to this block", "this block alone"], description="map")

    def draw(i: int, block: int, heads: str, discard: float, mode: str) -> None:
        one = [a[i:i + 1] for a in attentions]
        if mode.startswith("rollout"):
            m = rollout_per_block(one, head_fusion=heads, discard_ratio=discard)[0, block - 1]
        else:
            m = raw_attention_maps(one, head_fusion=heads)[0, block - 1]
        picture = images[i].permute(1, 2, 0).numpy()
        fig, axes = plt.subplots(1, 3, figsize=(8.4, 2.9))
        axes[0].imshow(picture)
        axes[0].set_title(f"label: {data.class_names[int(labels[i])]}\npredicted: "
                          f"{data.class_names[int(predictions[i])]}", fontsize=9)
        axes[1].imshow(m.numpy(), cmap="jet")
        axes[1].set_title(f"{m.shape[0]}x{m.shape[1]} map, block {block}", fontsize=9)
        axes[2].imshow(picture)
        axes[2].imshow(upsample_map(m, images.shape[-1]).numpy(), cmap="jet", alpha=0.55)
        axes[2].set_title("overlay", fontsize=9)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        plt.show()

    out = W.interactive_output(draw, {"i": image, "block": block, "heads": fusion, "discard": discard, "mode": mode})
    return W.VBox([W.HBox([image, block]), W.HBox([fusion, discard]), mode, out])

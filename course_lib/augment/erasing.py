"""timm's random erasing (``timm/data/random_erasing.py``, ``RandomErasing._erase``) on a batch."""
from __future__ import annotations

import math

import torch

__all__ = ["random_erasing"]


def _erasing_boxes(b: int, h: int, w: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """(b, 4) int64 on the CPU: top, left, height, width of each image's box (height = width = 0: none).

    timm's RandomErasing._erase with max_count 1: erase with ``probability``; up to 10 tries of an area uniform in
    [0.02, 1/3] of the image and an aspect ratio log-uniform in [0.3, 1/0.3], sides rounded half to even (Python's
    round); the first box smaller than the image on both sides is placed uniformly.
    """
    erase = torch.rand(b, generator=generator, dtype=torch.float64) < probability
    area = torch.empty(b, 10, dtype=torch.float64).uniform_(0.02, 1 / 3, generator=generator) * (h * w)
    log_ratio = torch.empty(b, 10, dtype=torch.float64).uniform_(math.log(0.3), math.log(1 / 0.3),
                                                                  generator=generator)
    heights = (area * log_ratio.exp()).sqrt().round().long()
    widths = (area / log_ratio.exp()).sqrt().round().long()
    fits = (heights < h) & (widths < w)
    first = fits.int().argmax(1, keepdim=True)                             # the first try that fits
    erase &= fits.any(1)
    height = heights.gather(1, first).squeeze(1) * erase
    width = widths.gather(1, first).squeeze(1) * erase
    top = (torch.rand(b, generator=generator, dtype=torch.float64) * (h - height + 1)).long()
    left = (torch.rand(b, generator=generator, dtype=torch.float64) * (w - width + 1)).long()
    return torch.stack([top, left, height, width], dim=1)


def random_erasing(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """timm's RandomErasing(probability, mode='pixel', max_count=1) on a batch of standardised images.

    Args:
        images: float (B, C, H, W), already standardised (the noise is N(0, 1), i.e. data-like). Not modified.
        probability: chance that an image gets a box.
        generator: CPU generator for the boxes and the noise.
    Returns:
        (B, C, H, W), same dtype and device: each erased box filled with per-pixel N(0, 1) noise.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        raise TypeError("random_erasing expects standardised float images (B, C, H, W): apply it after "
                        "Preprocessing.")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"random_erasing probability must be in [0, 1], got {probability}.")
    b, c, h, w = images.shape
    boxes = _erasing_boxes(b, h, w, probability, generator)
    noise = torch.randn(c * int((boxes[:, 2] * boxes[:, 3]).sum()), generator=generator)
    top, left, height, width = boxes.to(images.device).unbind(1)
    rows = torch.arange(h, device=images.device) - top[:, None]           # (B, H): row inside the box if in
    cols = torch.arange(w, device=images.device) - left[:, None]          # [0, height), resp. [0, width)
    inside = ((rows >= 0) & (rows < height[:, None]))[:, None, :, None] & \
        ((cols >= 0) & (cols < width[:, None]))[:, None, None, :]
    return images.masked_scatter(inside.expand_as(images), noise.to(images.device, images.dtype))

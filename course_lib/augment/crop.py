"""Random crop with zero padding and horizontal flip, for a whole batch in one gather."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]


def random_crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Batched random crop (zero padding ``pad``) and horizontal flip in one gather.

    Args:
        images: (B, C, H, W), any dtype.
        shifts: (B, 2) integer offsets in [0, 2*pad] for rows and columns of the padded image.
        flips: (B,) bool, mirror those images left-right.
    Returns:
        (B, C, H, W): ``out[b] = flip?(pad(images[b])[:, dy:dy+H, dx:dx+W])``.
    """
    B, C, H, W = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    ar_h = torch.arange(H, device=images.device)
    ar_w = torch.arange(W, device=images.device)
    rows = shifts[:, :1] + ar_h                                            # (B, H)
    cols = shifts[:, 1:] + torch.where(flips[:, None], ar_w.flip(0), ar_w)  # (B, W), reversed when flipped
    b = torch.arange(B, device=images.device).view(B, 1, 1, 1)
    c = torch.arange(C, device=images.device).view(1, C, 1, 1)
    return padded[b, c, rows.view(B, 1, H, 1), cols.view(B, 1, 1, W)]

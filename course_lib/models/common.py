"""Small helpers shared by the model files."""
from __future__ import annotations

import torch


def check_images(x: torch.Tensor, in_chans: int, img_size: int | None, model_name: str) -> None:
    """Raise a ValueError that names the fix unless ``x`` is a (B, in_chans, img_size, img_size) float batch."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{model_name} expects a batch of images shaped (B, {in_chans}, H, W), got {shape}. "
                         "Add a batch dimension with x.unsqueeze(0) for a single image.")
    if x.shape[1] != in_chans:
        raise ValueError(f"{model_name} expects {in_chans} channels, got {x.shape[1]} (shape {tuple(x.shape)}). "
                         "Images must be channels-first: use x.permute(0, 3, 1, 2) on (B, H, W, C) arrays.")
    if img_size is not None and tuple(x.shape[-2:]) != (img_size, img_size):
        raise ValueError(f"{model_name} was built for {img_size}x{img_size} images, got "
                         f"{x.shape[-2]}x{x.shape[-1]}. Resize the images (e.g. F.interpolate) or build the "
                         f"model with img_size={x.shape[-1]}.")
    if not x.is_floating_point():
        raise ValueError(f"{model_name} expects float images, got {x.dtype}. Normalise uint8 images first "
                         "(course_lib.data.normalize).")

"""Checks shared by the model files: configuration values and input images, with errors that name the fix."""
from __future__ import annotations

import torch

__all__ = ["as_config", "check_whole", "check_rate", "check_images", "check_dtype", "check_pixels", "RAW_PIXEL_LIMIT"]

# Standardised or [0, 1] pixels stay far below this; raw 0..255 pixels do not.
RAW_PIXEL_LIMIT = 20.0


def as_config(config, config_class: type, model_name: str):
    """``config`` if it is a ``config_class`` (None: the defaults); anything else is refused with the fix."""
    if config is None:
        return config_class()
    if not isinstance(config, config_class):
        raise TypeError(f"{model_name} takes a {config_class.__name__} or keyword arguments naming its fields, got "
                        f"{config!r}. E.g. {model_name}({config_class.__name__}(...)) or {model_name}(num_classes=10).")
    return config


def check_whole(owner: str, **values) -> None:
    """Each value must be a whole number >= 1 (``bool`` is not a number here)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a whole number of at least 1, got {value!r}.")


def check_rate(owner: str, **values) -> None:
    """Each value must be a probability-like rate in [0, 1)."""
    for name, value in values.items():
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{owner}: {name} must lie in [0, 1), got {value!r}.")


def check_images(x: torch.Tensor, in_chans: int, img_size: int | None, model_name: str,
                 check_range: bool = False, dtype: torch.dtype | None = None) -> None:
    """Raise a ValueError that names the fix unless ``x`` is a (B, in_chans, img_size, img_size) float batch.

    ``dtype``: the model's weights' dtype, which the images must have too, except under autocast (which casts them;
    float64 it does not). Checks of shape and dtype only read metadata: no host sync, fine inside training.
    ``check_range`` also refuses raw 0..255 float pixels (one host sync: used outside training only).
    """
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
        raise ValueError(f"{model_name} expects float images, got {x.dtype}. Convert uint8 images with the run's "
                         "preprocessing (run.preprocess(images)) or course_lib.data.normalize(images, dataset).")
    check_dtype(x, dtype, model_name)
    if check_range:
        check_pixels(x, model_name)


def check_dtype(x: torch.Tensor, dtype: torch.dtype | None, model_name: str) -> None:
    """Refuse float images of another precision than the weights (float64 from NumPy, float16 from .half()),
    unless autocast is on and will cast them itself. Metadata only: no host sync."""
    if dtype is None or x.dtype == dtype:
        return
    if x.dtype != torch.float64 and torch.is_autocast_enabled(x.device.type):
        return
    raise ValueError(f"{model_name} has {dtype} weights but got {x.dtype} images. Convert the images with "
                     f"x.to({dtype}) (torch.from_numpy gives float64: add .float()), or the model with "
                     f"model.to({x.dtype}).")


def check_pixels(x, caller: str) -> None:
    """Refuse images a course model never sees: uint8 pixels, or float pixels in 0..255 instead of its input.

    Standardised or [0, 1] pixels stay far below ``RAW_PIXEL_LIMIT`` (20) in absolute value; raw 0..255 pixels do not
    (one host sync: used outside training only). Only 4-D tensors (B, C, H, W) are taken for images: anything else
    passes, so any module can be recorded.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return
    fix = "Convert them with the run's preprocessing, e.g. run.preprocess(images) (it takes the uint8 images)."
    if not x.is_floating_point():
        raise ValueError(f"{caller} got {x.dtype} images, but a model takes the float input it was trained on. {fix}")
    peak = float(x.detach().abs().amax()) if x.numel() else 0.0
    if peak > RAW_PIXEL_LIMIT:
        raise ValueError(f"{caller} got pixel values up to {peak:.0f}: these are raw 0..255 pixels, not the model's "
                         f"input (standardised or [0, 1] pixels stay below {RAW_PIXEL_LIMIT:.0f}). {fix}")

"""Models of the course: a ViT for small images, ResNet-18 for 32x32 images, a small hybrid transformer.

Every model offers the same four calls, which the training loop, DRLoc and the analysis tools rely on:
``forward(x)`` -> logits, ``forward_features(x)``, ``forward_head(features)`` and ``forward_grid(x)`` -> (B, D, k, k).
``create_model(name, num_classes)`` builds one by name.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from .hybrid import HybridViT, hybrid_vit
from .resnet import ResNetCIFAR, resnet18_cifar
from .vit import ViT, vit_lite, vit_paper

__all__ = ["ViT", "ResNetCIFAR", "HybridViT", "vit_lite", "vit_paper", "resnet18_cifar", "hybrid_vit",
           "MODELS", "create_model", "count_parameters"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "vit": vit_lite,            # the course's default ViT-Lite
    "vit_paper": vit_paper,     # Zhu et al.'s ViT (9.5 M parameters)
    "resnet18": resnet18_cifar,
    "hybrid_vit": hybrid_vit,
}


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a model by name (one of ``MODELS``)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Available: {sorted(MODELS)}.") from None
    return factory(num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

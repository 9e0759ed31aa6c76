"""The course's models by name, with one human label each: a ViT for small images, ResNet-18, a small hybrid.

Every model offers the same calls, which the training loop, DRLoc and the analysis tools rely on:
``forward(x)`` -> logits, which is ``forward_head(forward_features(x))`` as in timm: ``forward_features(x)`` is the
last stage after the final norm, ``forward_head(features)`` pools and classifies. ``forward_blocks(x)`` is the last
stage *before* the final norm ``norm`` (where DRLoc's official code reads the tokens; ResNet-18 has no final norm,
its ``norm`` is the identity), ``feature_grid(tokens)`` and ``forward_grid(x)`` -> (B, D, k, k),
``named_layers()`` (the layers the analysis records), plus the attributes ``config`` (a frozen dataclass),
``grid_size`` (k) and ``grid_dim`` (D).
``create_model(name, num_classes)`` builds one by name.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Callable

import torch.nn as nn

from .hybrid import HybridConfig, HybridViT, hybrid_vit
from .resnet import ResNetCIFAR, ResNetConfig, resnet18_cifar
from .vit import ViT, ViTConfig, vit_lite, vit_paper

__all__ = ["ViT", "ViTConfig", "ResNetCIFAR", "ResNetConfig", "HybridViT", "HybridConfig", "vit_lite", "vit_paper",
           "resnet18_cifar", "hybrid_vit", "MODELS", "MODEL_LABELS", "model_label", "create_model",
           "count_parameters", "config_dict", "accepts"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "vit": vit_lite,            # the course's default ViT-Lite
    "vit_paper": vit_paper,     # Zhu et al.'s ViT (9.5 M parameters)
    "resnet18": resnet18_cifar,
    "hybrid_vit": hybrid_vit,
}

# The one place where a model's name for humans is written; runs, tables and notebooks use it.
MODEL_LABELS = {"vit": "ViT", "vit_paper": "ViT (paper)", "resnet18": "ResNet-18", "hybrid_vit": "Hybrid ViT"}
_CONFIGS = {"vit": ViTConfig, "vit_paper": ViTConfig, "resnet18": ResNetConfig, "hybrid_vit": HybridConfig}


def model_label(name: str, drloc: bool = False) -> str:
    """"ViT", "ViT+DRLoc", "ResNet-18", ..."""
    return MODEL_LABELS.get(name, name) + ("+DRLoc" if drloc else "")


def create_model(name: str, num_classes: int = 10, **overrides) -> nn.Module:
    """Build a model by name (one of ``MODELS``); ``overrides`` replace fields of its config."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}. Available: {sorted(MODELS)}.") from None
    return factory(num_classes=num_classes, **overrides)


def accepts(name: str, field: str) -> bool:
    """Whether model ``name``'s config has ``field`` (e.g. "drop_path" for the transformers, not ResNet-18)."""
    return field in {f.name for f in fields(_CONFIGS[name])}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def config_dict(model: nn.Module) -> dict | None:
    """A course model's config as plain JSON-able values (tuples become lists), or None for a foreign model."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}

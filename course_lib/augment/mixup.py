"""timm's mixup / CutMix (``timm/data/mixup.py``: ``Mixup._params_per_batch`` / ``_mix_batch``, ``rand_bbox``,
``cutmix_bbox_and_lam``, ``mixup_target``) and ``SoftTargetCrossEntropy`` (``timm/loss/cross_entropy.py``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["mixup_cutmix", "soft_target_cross_entropy"]


def _sample_gamma(shape: float, generator: torch.Generator) -> float:
    """One Gamma(shape, 1) draw (Marsaglia & Tsang 2000; shape < 1 via Gamma(shape + 1) * U**(1/shape))."""
    def uniform() -> float:
        return float(torch.rand(1, generator=generator, dtype=torch.float64))
    boost = 1.0
    if shape < 1.0:
        boost, shape = uniform() ** (1.0 / shape), shape + 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        z = float(torch.randn(1, generator=generator, dtype=torch.float64))
        v = (1.0 + c * z) ** 3
        if v > 0 and math.log(max(uniform(), 1e-300)) < 0.5 * z * z + d - d * v + d * math.log(v):
            return d * v * boost


def _sample_beta(alpha: float, generator: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw from the CPU generator (torch's Beta takes no generator)."""
    while True:
        a, b = _sample_gamma(alpha, generator), _sample_gamma(alpha, generator)
        if a + b > 0:   # both can underflow to 0 for tiny alpha
            return a / (a + b)


def _cutmix_box(h: int, w: int, lam: float, generator: torch.Generator) -> tuple[tuple[int, int, int, int], float]:
    """timm's rand_bbox + cutmix_bbox_and_lam: a box of about (1 - lam) of the image, centred uniformly, clipped to
    the image; returns ((top, bottom, left, right), lam corrected to 1 - box area / image area)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy = int(torch.randint(h, (1,), generator=generator))
    cx = int(torch.randint(w, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    return (top, bottom, left, right), 1.0 - (bottom - top) * (right - left) / float(h * w)


def _mixup_target(labels: torch.Tensor, num_classes: int, lam: float, smoothing: float) -> torch.Tensor:
    """timm's mixup_target: smoothed one-hot float32 (B, num_classes), mixed with the flipped batch's by ``lam``."""
    off = smoothing / num_classes
    one_hot = torch.full((len(labels), num_classes), off, device=labels.device)
    one_hot.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)
    return one_hot * lam + one_hot.flip(0) * (1.0 - lam)


def _check_mix_args(images: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup_alpha: float,
                    cutmix_alpha: float, switch_prob: float, label_smoothing: float) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        raise TypeError("mixup_cutmix expects float images (B, C, H, W): apply it after Preprocessing.")
    if labels.ndim != 1 or len(labels) != len(images) or labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices (B,) = ({len(images)},), got {labels.dtype} "
                         f"{tuple(labels.shape)}; pass the loader's labels, not one-hot targets.")
    if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha == cutmix_alpha == 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0 and one of them > 0, got {mixup_alpha}, "
                         f"{cutmix_alpha}; to turn both off, do not call mixup_cutmix.")
    if not 0.0 <= switch_prob <= 1.0 or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"switch_prob must be in [0, 1] and label_smoothing in [0, 1), got {switch_prob}, "
                         f"{label_smoothing}.")
    # The labels' range is checked where they are loaded (ImageSet, fit): no device sync here, once per step.
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number >= 1, got {num_classes!r}: pass the data set's "
                         "number of classes.")


def mixup_cutmix(images: torch.Tensor, labels: torch.Tensor, num_classes: int, mixup_alpha: float,
                 cutmix_alpha: float, switch_prob: float, label_smoothing: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup(mode='batch', prob=1.0): one lambda per batch, each image mixed with the flipped batch.

    With both alphas > 0, CutMix is chosen with probability ``switch_prob``, else mixup; lambda ~ Beta(alpha, alpha)
    of the one chosen. CutMix pastes a box of the flipped batch and corrects lambda to the pasted area. Unlike timm,
    an odd batch is accepted (its middle image mixes with itself).

    Args:
        images: float (B, C, H, W) (not modified); labels: int64 (B,) in [0, num_classes).
        generator: CPU generator for the choice, lambda and the box.
    Returns:
        mixed images (B, C, H, W) and soft targets float32 (B, num_classes), rows summing to 1, on the images'
        device; train with :func:`soft_target_cross_entropy`.
    """
    _check_mix_args(images, labels, num_classes, mixup_alpha, cutmix_alpha, switch_prob, label_smoothing)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha == 0 or
                                       float(torch.rand(1, generator=generator, dtype=torch.float64)) < switch_prob)
    lam = _sample_beta(cutmix_alpha if use_cutmix else mixup_alpha, generator)
    flipped = images.flip(0)
    if use_cutmix:
        (top, bottom, left, right), lam = _cutmix_box(images.shape[-2], images.shape[-1], lam, generator)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
    else:
        mixed = images * lam + flipped * (1.0 - lam)
    return mixed, _mixup_target(labels, num_classes, lam, label_smoothing)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """timm's SoftTargetCrossEntropy: mean over the batch of -sum(targets * log_softmax(logits)).

    Args:
        logits: (B, K), any float dtype (computed in float32); targets: (B, K), rows summing to 1.
    Returns:
        scalar float32.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same "
                         f"shape (B, num_classes); build targets with mixup_cutmix.")
    return torch.sum(-targets.float() * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()

"""Evaluation of a trained model: mean cross-entropy, top-1 accuracy and per-image correctness, in eval mode and
without augmentation. :func:`course_lib.train.fit` calls :func:`evaluate_loader` after its epochs."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import GPULoader, Preprocessing
from .runtime import eval_mode, get_device, precision

if TYPE_CHECKING:     # names used only in annotations
    from .data import ImageSet
    from .runtime import Precision

__all__ = ["evaluate", "predict_correct", "evaluate_loader"]


def _check_outputs(model: nn.Module, outputs: int, num_classes: int | None, what: str) -> None:
    """Refuse a model with fewer outputs than the data has classes (the cross-entropy would fail with a bare
    IndexError on the CPU and a device-side assert on a GPU)."""
    if num_classes is not None and outputs < num_classes:
        raise ValueError(f"{what} has {num_classes} classes but the model ({type(model).__name__}) has {outputs} "
                         f"outputs. Evaluate a model built for this data set (num_classes={num_classes}), or the "
                         "data set this model was trained on.")


def evaluate_loader(model: nn.Module, loader: GPULoader, prec: Precision, num_classes: int | None = None
              ) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, top-1 % , per-image correctness bool (N,) on the CPU) over a loader, in eval mode.

    ``num_classes``: the data's classes, checked against the logits' width (a shape: no host sync)."""
    device = loader.device
    autocast = prec.autocast(device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = []
    with eval_mode(model):
        for x, y in loader:
            with autocast():
                logits = model(x)
            if not correct:
                _check_outputs(model, logits.shape[-1], num_classes, "The data")
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct.append(logits.argmax(dim=1) == y)
    hits = torch.cat(correct).cpu()
    return loss_sum.item() / len(hits), 100.0 * hits.float().mean().item(), hits


def evaluate(model: nn.Module, data: ImageSet | GPULoader, device: str | torch.device | None = None,
             batch_size: int = 500, preprocess: Preprocessing | None = None,
             amp: bool | None = None) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (in %) of ``model`` on ``data`` (no augmentation).

    ``preprocess``: how the model's inputs were made in training (default: the data set's standardisation).
    """
    loader, classes = _eval_loader(model, data, get_device(device), batch_size, preprocess)
    loss, acc, _ = evaluate_loader(model, loader, precision(loader.device, amp), classes)
    return loss, acc


def predict_correct(model: nn.Module, data: ImageSet, preprocess: Preprocessing | None = None,
                    device: str | torch.device | None = None, batch_size: int = 500) -> torch.Tensor:
    """Whether each image of ``data`` is classified correctly: bool (N,), in the data's order."""
    loader, classes = _eval_loader(model, data, get_device(device), batch_size, preprocess)
    return evaluate_loader(model, loader, precision(loader.device), classes)[2]


def _eval_loader(model, data, device, batch_size, preprocess) -> tuple[GPULoader, int]:
    """(a loader over ``data``, the number of classes its labels may take), the model's outputs checked first."""
    if isinstance(data, GPULoader):
        loader, classes, what = data, int(data.labels.max()) + 1, "The loader's data"
    else:
        loader = GPULoader(data, batch_size, device, train=False, preprocess=preprocess,
                           channels_last=getattr(model, "prefers_channels_last", False))
        classes, what = data.num_classes, f"{data.info.title} {data.split}"
    outputs = getattr(model, "num_classes", None)
    if isinstance(outputs, int):
        _check_outputs(model, outputs, classes, what)
    return loader, classes

"""One training loop for every notebook: :func:`fit`.

What it does, and why:
- AdamW (or Adam/SGD) with a linear warm-up and a cosine decay, stepped every batch: transformers trained from
  scratch diverge without warm-up.
- Label smoothing, gradient clipping, weight decay only on weight matrices (not on norms, biases, embeddings).
- Mixed precision on CUDA: bfloat16 where the GPU supports it (A100/H100), float16 with a gradient scaler otherwise
  (a Colab T4). CPU runs stay in float32.
- ``channels_last`` memory layout for convolutional models (they say so with ``prefers_channels_last = True``).
- Extra loss terms (:class:`AuxiliaryLoss`, e.g. DRLoc) are added to the cross-entropy with their weight; their
  parameters are trained with the model, checkpointed with it, and never used at evaluation.
- A checkpoint after every epoch and an exact **resume** after an interruption: each epoch's randomness is
  seeded from ``(seed, epoch)``, so a resumed run gives the same weights as an uninterrupted one on the CPU.
- A non-finite loss stops training with the epoch and step where it happened.
"""
from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import GPULoader, ImageSet, Preprocessing

__all__ = ["TrainConfig", "RECIPES", "History", "AuxiliaryLoss", "CheckpointMismatchError", "fit", "evaluate",
           "get_device", "seed_everything", "model_signature", "load_weights"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Build from a recipe and override fields: ``replace(RECIPES["course"], epochs=5)``."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"          # "adamw" | "adam" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9             # SGD only
    schedule: str = "cosine"          # "cosine" | "constant"
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    augment: bool = True              # random crop (pad 4) + horizontal flip where the data set allows it
    normalize: bool = True            # standardise pixels with the data set's mean/std
    amp: bool | None = None           # None: mixed precision on CUDA, float32 elsewhere
    eval_batch_size: int = 500
    eval_every: int = 1               # evaluate every n epochs (and always after the last one)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', not {self.optimizer!r}.")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', not {self.schedule!r}.")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.eval_every < 1:
            raise ValueError(f"epochs, batch_size, lr and eval_every must be positive (got {self.epochs}, "
                             f"{self.batch_size}, {self.lr}, {self.eval_every}).")


RECIPES: dict[str, TrainConfig] = {
    # The course's recipe, the same for the ViT and ResNet-18: AdamW, warm-up + cosine, label smoothing.
    "course": TrainConfig(epochs=10, batch_size=128, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                          warmup_epochs=1.0, label_smoothing=0.1, grad_clip=1.0),
    # Zhu, Chen & Yang (2023) as far as it is published: Adam 1e-4, batch 100, 500 epochs, crop + flip,
    # no pixel normalisation, nothing else.
    "zhu2023": TrainConfig(epochs=500, batch_size=100, optimizer="adam", lr=1e-4, weight_decay=0.0,
                           schedule="constant", warmup_epochs=0.0, label_smoothing=0.0, grad_clip=None,
                           normalize=False),
    # Liu et al. (2021), official code's optimiser and schedule (its RandAugment/mixup/CutMix are not reproduced).
    "liu2021": TrainConfig(epochs=100, batch_size=128, optimizer="adamw", lr=5e-4, weight_decay=0.05,
                           warmup_epochs=20.0, min_lr=5e-6, label_smoothing=0.1, grad_clip=5.0),
}


@dataclass
class History:
    """Per-epoch record of a training run (lists of equal length, one entry per epoch)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float | None] = field(default_factory=list)   # None: not evaluated that epoch
    test_acc: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)   # mean of each auxiliary loss term

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**{f.name: d.get(f.name, {} if f.name == "extra" else []) for f in fields(cls)})

    @property
    def final_test_acc(self) -> float | None:
        return self.test_acc[-1] if self.test_acc else None


class AuxiliaryLoss(nn.Module):
    """An extra loss term for :func:`fit`: ``total = cross_entropy + weight * term``.

    Subclasses set ``name`` and ``weight`` and implement ``forward(model, features, images, labels)`` returning a
    scalar. ``features`` is ``model.forward_features(images)`` from the same forward pass as the logits, so the term
    costs no second pass through the backbone. Any parameters of the term are trained with the model.
    """

    name: str = "aux"
    weight: float = 1.0

    def forward(self, model: nn.Module, features: torch.Tensor, images: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class CheckpointMismatchError(ValueError):
    """A checkpoint was saved from another model (or other auxiliary losses) than the one it is loaded into."""


# --------------------------------------------------------------------------------------------------------------
# Small helpers

def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Call before building a model for a reproducible init."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_signature(model: nn.Module) -> dict:
    """What identifies an architecture in a checkpoint: its class and constructor configuration."""
    config = getattr(model, "config", None)
    if config is None:   # a foreign model: fall back on parameter names and shapes
        config = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"class": type(model).__name__, "config": {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in config.items()}}


def _describe(signature: dict) -> str:
    config = signature["config"]
    if all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in config.values()):
        return f"{signature['class']} ({len(config)} tensors)"
    return f"{signature['class']}({', '.join(f'{k}={v}' for k, v in config.items())})"


def _check_signature(saved: dict, model: nn.Module, path: Path) -> None:
    current = model_signature(model)
    if saved != current:
        raise CheckpointMismatchError(
            f"Checkpoint {path} was saved from {_describe(saved)}, but the model given is {_describe(current)}. "
            "Build the same architecture, pass another checkpoint path, or delete the file to start afresh.")


def load_weights(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a :func:`fit` checkpoint's model weights into ``model`` (checking it is the same architecture)."""
    path = Path(path)
    state = torch.load(path, map_location=map_location, weights_only=False)
    _check_signature(state["signature"], model, path)
    model.load_state_dict(state["model"])
    return model


def _param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Decay only weight matrices/kernels; norms, biases, position embeddings and class tokens are exempt."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and "pos_embed" not in name and "cls_token" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    if cfg.optimizer == "adam":   # Adam's weight decay is L2 in the gradient, as torch.optim.Adam does it
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up to 1, then constant or cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _autocast(device: torch.device, enabled: bool | None):
    """(context manager, GradScaler or None): bf16 on GPUs that support it, fp16 + scaler on others, off on CPU."""
    use = device.type == "cuda" if enabled is None else enabled
    if not use or device.type != "cuda":
        return nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def _forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(features, logits); features is None for a model without forward_features/forward_head."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        features = model.forward_features(x)
        return features, model.forward_head(features)
    return None, model(x)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet | GPULoader, device: str | torch.device | None = None,
             batch_size: int = 500, normalize: bool = True, amp: bool | None = None) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (in %) of ``model`` on ``data`` (no augmentation)."""
    device = get_device(device)
    loader = data if isinstance(data, GPULoader) else GPULoader(
        data, batch_size, device, train=False, preprocess=Preprocessing.for_dataset(data.dataset, normalize),
        channels_last=getattr(model, "prefers_channels_last", False))
    autocast, _ = _autocast(device, amp)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in loader:
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
        count += len(y)
    model.train(was_training)
    return loss_sum.item() / count, 100.0 * correct.item() / count


def _plain_progress() -> bool:
    return os.environ.get("COURSE_PLAIN_PROGRESS", "0") not in ("", "0") or not (
        sys.stderr.isatty() or "ipykernel" in sys.modules)


# --------------------------------------------------------------------------------------------------------------
# The loop

def fit(model: nn.Module, train_data: ImageSet, test_data: ImageSet | None = None,
        config: TrainConfig | None = None, *, extra_losses: Sequence[AuxiliaryLoss] = (),
        checkpoint: str | Path | None = None, resume: bool = True, device: str | torch.device | None = None,
        progress: bool = True, on_epoch_end: Callable[[History], bool] | None = None, **overrides) -> History:
    """Train ``model`` on ``train_data``, evaluating on ``test_data`` after every epoch.

    Args:
        model: any module; ours expose ``forward_features``/``forward_head`` so extra losses can read features.
        train_data, test_data: :class:`~course_lib.data.ImageSet` (uint8 images); they are moved to the device once.
        config: a :class:`TrainConfig` (default ``RECIPES["course"]``); keyword ``overrides`` replace its fields,
            e.g. ``fit(model, train, test, epochs=5, lr=3e-4)``.
        extra_losses: :class:`AuxiliaryLoss` terms added to the cross-entropy (e.g. ``DRLocLoss``).
        checkpoint: file to save after every epoch and to resume from (if ``resume`` and it exists). A finished
            checkpoint makes ``fit`` return at once with the stored history.
        device: default CUDA if available, else CPU.
        progress: show a progress bar (a text one in logs and with ``COURSE_PLAIN_PROGRESS=1``) and print one
            line per epoch.
        on_epoch_end: called with the history after every epoch (and its checkpoint); returning True stops
            training there, e.g. ``lambda h: (h.test_acc[-1] or 0) >= 93`` for a time-to-accuracy run.

    Returns:
        The :class:`History` of the whole run (including epochs done before a resume).

    Raises:
        CheckpointMismatchError: ``checkpoint`` belongs to another architecture or other extra losses.
        FloatingPointError: the loss became NaN or infinite; the message gives the epoch and step.
    """
    cfg = replace(config or RECIPES["course"], **overrides)
    device = get_device(device)
    channels_last = getattr(model, "prefers_channels_last", False)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    aux = nn.ModuleList(extra_losses).to(device)
    if any(not isinstance(t, AuxiliaryLoss) for t in extra_losses):
        raise TypeError("extra_losses must be AuxiliaryLoss instances (e.g. course_lib.drloc.DRLocLoss).")
    if extra_losses and not hasattr(model, "forward_features"):
        raise TypeError(f"{type(model).__name__} has no forward_features(), so extra losses cannot read its "
                        "features. Use a course_lib model or add forward_features/forward_head to yours.")

    train_loader = GPULoader(train_data, cfg.batch_size, device, train=True, augment=cfg.augment,
                             preprocess=Preprocessing.for_dataset(train_data.dataset, cfg.normalize), seed=cfg.seed,
                             channels_last=channels_last)
    test_loader = None if test_data is None else GPULoader(
        test_data, cfg.eval_batch_size, device, train=False,
        preprocess=Preprocessing.for_dataset(test_data.dataset, cfg.normalize), channels_last=channels_last)
    steps_per_epoch = len(train_loader)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    optimizer = _optimizer(_param_groups([model, aux], cfg.weight_decay), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, total_steps, warmup_steps, cfg.schedule, cfg.min_lr / cfg.lr))
    autocast, scaler = _autocast(device, cfg.amp)

    history, start_epoch = History(), 0
    signature = {"model": model_signature(model), "aux": [type(t).__name__ for t in extra_losses]}
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and resume and path.exists():
        state = torch.load(path, map_location=device, weights_only=False)
        _check_signature(state["signature"], model, path)
        if state["aux"] != signature["aux"]:
            raise CheckpointMismatchError(f"Checkpoint {path} was trained with extra losses {state['aux']}, this run "
                                          f"uses {signature['aux']}. Pass another checkpoint path.")
        model.load_state_dict(state["model"])
        aux.load_state_dict(state["aux_state"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        start_epoch = state["epoch"] + 1
        if progress and start_epoch < cfg.epochs:
            print(f"Resuming from {path} after epoch {start_epoch}/{cfg.epochs}.")

    bar = None
    if progress and start_epoch < cfg.epochs:
        from tqdm import tqdm as text_tqdm
        from tqdm.auto import tqdm as auto_tqdm

        plain = _plain_progress()
        bar = (text_tqdm if plain else auto_tqdm)(
            total=(cfg.epochs - start_epoch) * steps_per_epoch, desc=type(model).__name__, unit="step",
            mininterval=30.0 if plain else 0.5, disable=plain, leave=False)

    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)   # dropout / drop-path / DRLoc sampling of this epoch
        train_loader.set_epoch(epoch)
        model.train()
        aux.train()
        start = time.perf_counter()
        step_losses = torch.zeros(steps_per_epoch, device=device)
        aux_sums = torch.zeros(len(extra_losses), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for step, (x, y) in enumerate(train_loader):
            with autocast():
                features, logits = _forward(model, x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                for i, term in enumerate(extra_losses):
                    value = term(model, features, x, y).float()
                    aux_sums[i] += value.detach()
                    loss = loss + term.weight * value
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                               cfg.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            step_losses[step] = loss.detach()
            correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
            if step % 20 == 19 or step == steps_per_epoch - 1:   # one host sync every 20 steps
                finite = torch.isfinite(step_losses[:step + 1])
                if not bool(finite.all()):
                    bad = int((~finite).nonzero()[0])
                    if bar is not None:
                        bar.close()
                    raise FloatingPointError(
                        f"The training loss became {step_losses[bad].item()} at epoch {epoch + 1}, step {bad + 1} of "
                        f"{steps_per_epoch} (global step {epoch * steps_per_epoch + bad + 1}). Lower the learning "
                        f"rate (now {cfg.lr}), keep warm-up and gradient clipping on, or check the inputs.")
                if bar is not None:
                    bar.update((epoch - start_epoch) * steps_per_epoch + step + 1 - bar.n)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{step_losses[step].item():.3f}")

        due = (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1
        test_loss, test_acc = evaluate(model, test_loader, device, amp=cfg.amp) if (
            test_loader is not None and due) else (None, None)
        history.epoch.append(epoch + 1)
        history.train_loss.append(step_losses.mean().item())
        history.train_acc.append(100.0 * correct.item() / max(1, seen))
        history.test_loss.append(test_loss)
        history.test_acc.append(test_acc)
        history.lr.append(optimizer.param_groups[0]["lr"])
        history.seconds.append(time.perf_counter() - start)
        for i, term in enumerate(extra_losses):
            history.extra.setdefault(term.name, []).append(aux_sums[i].item() / steps_per_epoch)
        if progress:
            extra = "".join(f"  {k} {v[-1]:.4f}" for k, v in history.extra.items())
            test = f"  test acc {test_acc:5.1f}%" if test_acc is not None else ""
            print(f"epoch {epoch + 1:>3}/{cfg.epochs}  train loss {history.train_loss[-1]:.4f}  "
                  f"train acc {history.train_acc[-1]:5.1f}%{test}{extra}  ({history.seconds[-1]:.1f}s)", flush=True)
        if path is not None:
            _save(path, {"signature": signature["model"], "aux": signature["aux"], "model": model.state_dict(),
                         "aux_state": aux.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                         "history": history.to_dict(), "epoch": epoch, "config": asdict(cfg)})
        if on_epoch_end is not None and on_epoch_end(history):
            break
    if bar is not None:
        bar.close()
    return history


def _save(path: Path, state: dict) -> None:
    """Write atomically, so an interruption mid-save never leaves a corrupt checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)

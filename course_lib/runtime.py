"""Where and how torch runs: the device, its name, mixed precision, seeding, and eval mode.

- :func:`get_device`: CUDA when available, else the CPU (or the device asked for).
- :func:`precision`: bfloat16 only on GPUs that compute it natively (compute capability 8.0 or newer: A100, H100,
  L4, ...); float16 with a gradient scaler on older ones (a Colab T4 is 7.5: ``torch.cuda.is_bf16_supported()``
  says True there because it counts emulation, and cuDNN has no bf16 convolutions below 8.0); float32 on the CPU.
- :func:`eval_mode` / :func:`train_mode`: context managers that put models in eval (or training) mode and restore
  their modes afterwards, also when an exception passes.
"""
from __future__ import annotations

import platform
import random
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import numpy as np
import torch
import torch.nn as nn

__all__ = ["get_device", "device_name", "seed_everything", "Precision", "precision", "eval_mode", "train_mode"]


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: str | torch.device | None = None) -> str:
    """A human name for the device, e.g. "NVIDIA H100 80GB HBM3" or "CPU (x86_64, 2 threads)"."""
    device = get_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Call before building a model for a reproducible init."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Precision:
    """How a device computes: ``dtype`` for autocast (None: float32), and whether a gradient scaler is needed."""

    dtype: torch.dtype | None
    needs_scaler: bool

    @property
    def name(self) -> str:
        return {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16 + gradient scaler"}[self.dtype]

    def autocast(self, device: torch.device) -> Callable[[], ContextManager]:
        """A factory of autocast contexts for ``device`` (a no-op in float32)."""
        if self.dtype is None:
            return nullcontext
        return lambda: torch.autocast(device.type, dtype=self.dtype)

    def scaler(self, device: torch.device):
        """A fresh ``GradScaler`` when float16 needs one, else None."""
        return torch.amp.GradScaler(device.type) if self.needs_scaler else None


def _native_bf16(device: torch.device) -> bool:
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def precision(device: torch.device, enabled: bool | None = None) -> Precision:
    """Mixed precision for ``device``: None/True on CUDA picks bf16 (native) or fp16 + scaler; CPU stays float32."""
    use = device.type == "cuda" if enabled is None else enabled
    if not use or device.type != "cuda":
        return Precision(None, False)
    if _native_bf16(device):
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, True)


@contextmanager
def eval_mode(*models: nn.Module | None) -> Iterator[None]:
    """Put ``models`` in eval mode (and turn off gradients) for the block; restore each one's mode afterwards.

    Example::

        with eval_mode(model):
            logits = model(x)
    """
    modes = [(m, m.training) for m in dict.fromkeys(m for m in models if m is not None)]
    try:
        for m, _ in modes:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, was_training in modes:
            m.train(was_training)


@contextmanager
def train_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in training mode for the block; restore each one's mode afterwards, also on an exception."""
    modes = [(m, m.training) for m in dict.fromkeys(models)]
    try:
        for m, _ in modes:
            m.train()
        yield
    finally:
        for m, was_training in modes:
            m.train(was_training)

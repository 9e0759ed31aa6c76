"""What a training run produces: its per-epoch :class:`History`, and the per-image correctness bits of its last
evaluation packed into a short string (:func:`pack_bits`), which the records keep for paired tests."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

__all__ = ["History", "pack_bits", "unpack_bits"]


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
    steps: list[int] = field(default_factory=list)                # optimiser steps done by the end of the epoch
    extra: dict[str, list[float]] = field(default_factory=dict)   # mean of each extra loss, by its name
    extra_weight: dict[str, list[float]] = field(default_factory=dict)   # its weight_at that epoch (DRLoc: λ)
    test_correct: str | None = None   # the last evaluation, per test image: packed bits as hex (paired tests)
    # With a validation split (fit(val_data=...)): at every evaluation, the validation images and the training
    # images *without augmentation* ("clean" training accuracy: what the model fits, not what it fits under
    # augmentation). None where not evaluated; empty in runs made without a validation split.
    val_correct: str | None = None    # the last validation evaluation, per image, packed like test_correct
    val_loss: list[float | None] = field(default_factory=list)
    val_acc: list[float | None] = field(default_factory=list)
    train_clean_loss: list[float | None] = field(default_factory=list)
    train_clean_acc: list[float | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        defaults = {f.name: f.default_factory() if callable(f.default_factory) else f.default for f in fields(cls)}
        return cls(**{name: d.get(name, default) for name, default in defaults.items()})

    @property
    def final_test_acc(self) -> float | None:
        return self.test_acc[-1] if self.test_acc else None

    def last(self, series: str) -> float | None:
        """The last evaluated (not None) value of ``series`` (e.g. ``"val_acc"``), None if never evaluated."""
        values = [v for v in getattr(self, series) if v is not None]
        return values[-1] if values else None


def pack_bits(hits: torch.Tensor) -> str:
    """bool (N,) -> hex string of the packed bits (N/4 characters); :func:`unpack_bits` inverts it."""
    return np.packbits(hits.numpy().astype(np.uint8)).tobytes().hex()


def unpack_bits(text: str, n: int) -> torch.Tensor:
    """Hex string from :func:`pack_bits` -> bool (n,)."""
    return torch.from_numpy(np.unpackbits(np.frombuffer(bytes.fromhex(text), np.uint8))[:n].astype(bool))

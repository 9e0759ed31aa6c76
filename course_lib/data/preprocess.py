"""How uint8 pixels become a model's input, recorded with every run so analysis feeds the model what it saw.

A model trained on standardised pixels (the course recipe) and one trained on raw [0, 1] pixels (Zhu et al.'s
recipe) need different inputs; rollout, feature maps, CKA and the widgets read the :class:`Preprocessing` of the
run (``run.preprocess``) instead of assuming one.

    uint8 (B, 3, H, W)  --Preprocessing-->  float32 (B, 3, H, W): x / 255, then (x - mean) / std if standardised
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sets import DATASETS, check_dataset_name

__all__ = ["Preprocessing", "RAW", "normalize"]


@dataclass(frozen=True)
class Preprocessing:
    """Pixels scaled to [0, 1], then standardised per channel when ``mean`` and ``std`` are given.

    Build one with :meth:`for_dataset` (the data set's statistics) or ``Preprocessing()`` (raw [0, 1] pixels).
    """

    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError("Give both mean and std (standardised pixels) or neither (raw [0, 1] pixels).")
        if self.std is not None and (len(self.std) != 3 or len(self.mean) != 3 or min(self.std) <= 0):
            raise ValueError(f"mean and std need 3 values each, std positive; got mean={self.mean}, std={self.std}.")

    @classmethod
    def for_dataset(cls, dataset: str, normalize: bool = True) -> "Preprocessing":
        """The data set's per-channel standardisation (``normalize=True``) or raw [0, 1] pixels."""
        info = DATASETS[check_dataset_name(dataset)]
        return cls(tuple(info.mean), tuple(info.std)) if normalize else cls()

    @property
    def normalized(self) -> bool:
        return self.mean is not None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float32 (B, 3, H, W) on the same device."""
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            what = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(f"Preprocessing expects uint8 images (B, 3, H, W) as the data sets hold them, got "
                            f"{what}. Pass ImageSet.images, not images that were already converted.")
        x = images.float().div_(255)
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
            x = x.sub_(mean).div_(std)
        return x

    def describe(self) -> str:
        if self.mean is None:
            return "raw pixels scaled to [0, 1]"
        return f"standardised: mean {tuple(round(m, 4) for m in self.mean)}, std {tuple(round(s, 4) for s in self.std)}"

    def to_dict(self) -> dict:
        return {"normalize": self.normalized, "mean": list(self.mean) if self.mean else None,
                "std": list(self.std) if self.std else None}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        if not d.get("normalize"):
            return cls()
        return cls(tuple(d["mean"]), tuple(d["std"]))


RAW = Preprocessing()


def normalize(images: torch.Tensor, dataset: str, enabled: bool = True) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1], standardised with the data set's mean/std when ``enabled``.

    Shorthand for ``Preprocessing.for_dataset(dataset, enabled)(images)``. Analysis code should use the
    preprocessing of the run it analyses (``run.preprocess``), which knows whether the model saw standardised pixels.
    """
    return Preprocessing.for_dataset(dataset, enabled)(images)

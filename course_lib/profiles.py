"""Training budgets chosen from the hardware.

A *profile* says how much data and how many epochs a notebook may spend. The recipe (optimiser, learning rate, ...)
lives in :mod:`course_lib.train`; a profile only sets the budget, so the same notebook runs in seconds in CI and for
real on a GPU.

=========  ==========================================================================================
``smoke``  CPU / CI: about 200 training images, 1 epoch. Proves the code runs; the numbers mean nothing.
``cpu``    The best run a 2-core laptop can make in about an hour for a whole chapter: the committed real
           samples (up to 100 images per class), 15 epochs.
``gpu``    A Colab T4 or better: the full data sets, 10 epochs per model, so each notebook trains for
           roughly a quarter of an hour (an estimate for a T4; measured figures are in the results chapter).
``paper``  The papers' long recipes (500 epochs for Zhu et al., 100 for Liu et al.). Hours to days.
=========  ==========================================================================================

Choose with ``get_profile(name)``, the ``COURSE_PROFILE`` environment variable, or a notebook's papermill
``profile`` parameter; with none of these, a CUDA GPU means ``gpu`` and anything else means ``smoke``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """A training budget. ``None`` in a field means "no limit" (the whole split, the recipe's own epochs)."""

    name: str
    epochs: int | None
    train_images: int | None      # training images per data set (spread evenly over the classes)
    test_images: int | None       # test images used for evaluation
    batch_size: int
    eval_images: int              # images used for rollout / feature maps / CKA
    description: str = ""

    def train_per_class(self, num_classes: int) -> int | None:
        """Images per class that ``train_images`` allows, at least 1 (``None``: all)."""
        if self.train_images is None:
            return None
        return max(1, self.train_images // num_classes)

    def with_overrides(self, **changes) -> "Profile":
        """A copy with some fields changed, e.g. ``profile.with_overrides(epochs=3)``."""
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", epochs=1, train_images=200, test_images=200, batch_size=64, eval_images=64,
                     description="CPU/CI smoke run: ~200 images, 1 epoch; numbers are meaningless"),
    "cpu": Profile("cpu", epochs=15, train_images=1000, test_images=None, batch_size=64, eval_images=256,
                   description="best CPU run: committed real samples (<=100 per class), 15 epochs"),
    "gpu": Profile("gpu", epochs=10, train_images=None, test_images=None, batch_size=256, eval_images=1000,
                   description="GPU run: full data sets, 10 epochs per model"),
    "paper": Profile("paper", epochs=None, train_images=None, test_images=None, batch_size=128, eval_images=1000,
                     description="the papers' full recipes (hundreds of epochs)"),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``; else ``$COURSE_PROFILE``; else ``gpu`` with CUDA, ``smoke`` without."""
    name = name or os.environ.get("COURSE_PROFILE") or ("gpu" if torch.cuda.is_available() else "smoke")
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown profile {name!r}. Choose one of {sorted(PROFILES)} "
                         "(or unset COURSE_PROFILE to pick from the hardware).") from None

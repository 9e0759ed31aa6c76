"""Training budgets chosen from the hardware: the eight :class:`Profile` s (six budgets, and ``gpu-samples`` and
``paper-samples``, two of them on the committed samples on purpose) and :func:`get_profile`.

A *profile* says how much data, how many epochs and which models and recipes a notebook spends its time on; the
recipes themselves (optimiser, learning rate, augmentation) live in :mod:`course_lib.recipes`. The same notebook runs
in seconds in CI and for real on a GPU.

=========  ==========================================================================================
``smoke``  CPU / CI: about 200 training images, 1 epoch. Proves the code runs; the numbers mean nothing.
``cpu``    The best run a 2-core laptop can make in about an hour for a whole chapter: the committed real
           samples (up to 100 images per class), 15 epochs.
``gpu``    A Colab T4 or better: the full data sets, 10 epochs per model (estimates of the time are printed
           before each run starts).
``paper``  The papers' own models and recipes: Zhu et al.'s ViT with Adam at 1e-4 for the comparison (500
           epochs; the constant rate is the course's reading, see ``recipes.py``), Liu et al.'s recipe for
           every DRLoc comparison (100 epochs). Hours to days.
``study``  The CPU study of record (:mod:`course_lib.experiments.study`): CIFAR-10's JPEG copy, 500 images
           per class, tested on all 10,000 test images; 29 epochs, where the pilot's held-out accuracy
           plateaued (within the hour a run may take: ResNet-18 needs about 25-45 min here).
``study2`` The study's second design: 100 images per class of CIFAR-10 held out for validation, which
           chooses the learning rate and epochs; 100-500 images per class, three seeds.
=========  ==========================================================================================

Choose with ``get_profile(name)``, the ``COURSE_PROFILE`` environment variable, or a notebook's papermill
``profile`` parameter; with none of these, a CUDA GPU means ``gpu`` and anything else means ``smoke``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch

from .settings import SettingError

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """A training budget. ``None`` in a field means "no limit" (the whole split, the recipe's own epochs).

    Attributes:
        epochs: epochs of a full-budget run (None: the recipe's own).
        train_images, test_images: images per data set (spread evenly over the classes) / for evaluation.
        batch_size: the course recipe's batch (the papers' recipes keep their own).
        eval_images: images used for rollout / feature maps / CKA.
        vit_model: the ViT of the ViT-vs-ResNet comparison ("vit": ViT-Lite; "vit_paper": Zhu et al.'s).
        comparison_recipe: the recipe of that comparison; drloc_recipe: the recipe of every DRLoc comparison
            (both sides: with and without DRLoc).
        curve_sizes, curve_seeds: images per class and seeds of the small-data curve.
        drloc_subset: images per class of the small CIFAR-10 subset of the DRLoc chapter.
        evaluations: test-set evaluations per run (spread evenly, always one after the last epoch).
        drloc_schedule: the schedule of λ (drloc_weight) on the DRLoc side (None: "official" under Liu et al.'s
            recipe, else "constant").
        data_source: which copy of the data its runs load ("auto": the best on disk or downloadable; "samples":
            the committed samples; "jpeg": CIFAR-10's JPEG copy), so a run never changes data behind its name.
        covers: the data sets this profile trains (None: all); ``fallback``: the profile whose runs stand in for
            the rest, for its DRLoc ablation (with ``ablation=False``), and where a notebook asks for them.
        full_data: its runs need the whole data sets: a run that could load only part of one (the committed
            samples, offline) stops before training; the profile ``<name>-samples`` trains on the samples on
            purpose, under that name.
        notebooks_train: notebooks may train this profile's missing runs (False: its own driver trains them, and a
            notebook leaves out what is not trained yet).
        validation_per_class: images per class held out of the official training split as a validation split
            that no training subset draws from (None: none); runs then record validation and clean training
            accuracy at every evaluation, and the test set once, at the end.
        equal_steps: the small-data curve's smaller sizes train as many optimiser steps as the full budget
            (True), or as many epochs, so that compute grows with the data (False, the study's rule).
        tuned_budget: the epochs and learning rate of each model family are those its tuning on the validation
            split chose (:func:`course_lib.experiments.budget_rule.tuned_budget`), named in every run's spec.
        drloc_curve_sizes: the curve sizes at which ViT + DRLoc is paired with the ViT (None: every size).
    """

    name: str
    epochs: int | None
    train_images: int | None
    test_images: int | None
    batch_size: int
    eval_images: int
    description: str = ""
    vit_model: str = "vit"
    comparison_recipe: str = "course"
    drloc_recipe: str = "course"
    curve_sizes: tuple[int, ...] = (50, 100, 250, 500, 1000, 5000)
    curve_seeds: tuple[int, ...] = (0,)
    drloc_subset: int = 500
    evaluations: int = 15
    drloc_schedule: str | None = None
    data_source: str = "auto"
    covers: tuple[str, ...] | None = None
    fallback: str | None = None
    ablation: bool = True
    notebooks_train: bool = True
    full_data: bool = False
    validation_per_class: int | None = None
    equal_steps: bool = True
    tuned_budget: bool = False
    drloc_curve_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        """Refuse a budget that could only train garbage or nothing (``replace(profile, epochs=0)``, a curve size
        of -1 ...), naming the field."""
        def whole(name, value, low=1, none=False):
            if (value is None and none) or (isinstance(value, int) and not isinstance(value, bool) and value >= low):
                return
            raise ValueError(f"Profile {self.name!r}: {name} must be a whole number >= {low}"
                             f"{' or None' if none else ''}, got {value!r}.")
        for name in ("epochs", "train_images", "test_images", "validation_per_class"):
            whole(name, getattr(self, name), none=True)
        for name in ("batch_size", "eval_images", "evaluations", "drloc_subset"):
            whole(name, getattr(self, name))
        for n in self.curve_sizes:
            whole("each of curve_sizes", n)
        for seed in self.curve_seeds:
            whole("each of curve_seeds", seed, low=0)
        if self.drloc_curve_sizes is not None and not set(self.drloc_curve_sizes) <= set(self.curve_sizes):
            raise ValueError(f"Profile {self.name!r}: drloc_curve_sizes {self.drloc_curve_sizes} must be among "
                             f"curve_sizes {self.curve_sizes}.")

    def for_dataset(self, dataset: str) -> "Profile":
        """The profile whose runs serve ``dataset``: this one, or its fallback for a data set it does not cover."""
        if self.covers is None or dataset in self.covers:
            return self
        return PROFILES[self.fallback]

    def for_ablation(self) -> "Profile":
        """The profile whose DRLoc ablation the notebooks show: this one, or its fallback."""
        return self if self.ablation or self.fallback is None else PROFILES[self.fallback]

    def train_per_class(self, num_classes: int) -> int | None:
        """Images per class that ``train_images`` allows, at least 1 (``None``: all)."""
        if self.train_images is None:
            return None
        return max(1, self.train_images // num_classes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", epochs=1, train_images=200, test_images=200, batch_size=64, eval_images=64,
                     description="CPU/CI smoke run: ~200 images, 1 epoch; numbers are meaningless",
                     curve_sizes=(5, 10), drloc_subset=5),
    "cpu": Profile("cpu", epochs=15, train_images=1000, test_images=None, batch_size=64, eval_images=256,
                   description="best CPU run: committed real samples (100 per class, the curve up to 200), 15 epochs",
                   curve_sizes=(25, 50, 100, 200), drloc_subset=25, data_source="samples"),
    "gpu": Profile("gpu", epochs=10, train_images=None, test_images=None, batch_size=256, eval_images=1000,
                   description="GPU run: full data sets, 10 epochs per model", curve_seeds=(0, 1, 2), full_data=True),
    "paper": Profile("paper", epochs=None, train_images=None, test_images=None, batch_size=128, eval_images=1000,
                     description="the papers' models and recipes (hundreds of epochs)", vit_model="vit_paper",
                     comparison_recipe="zhu2023", drloc_recipe="liu2021", curve_seeds=(0, 1, 2), full_data=True),
    # 29 epochs x 78 steps of 64 for every model: the pilot's plateau (course_lib/records/pilot/, the rule in
    # course_lib.experiments.study). About 4 test evaluations: one pass over 10,000 test images costs ResNet-18 1-3
    # minutes here.
    "study": Profile("study", epochs=29, train_images=5000, test_images=None, batch_size=64, eval_images=1000,
                     description="CPU study of record: CIFAR-10 JPEG copy, 500 per class, all 10,000 test images, "
                                 "29 epochs", curve_sizes=(100, 250, 500, 1000), curve_seeds=(0, 1),
                     drloc_subset=500, evaluations=4, drloc_schedule="official", data_source="jpeg",
                     covers=("cifar10",), fallback="cpu", ablation=False, notebooks_train=False),
    # The CPU study of record, second design (issue 28): 100 images per class held out of CIFAR-10's training split
    # as a validation split that chooses the budget; the recipe (learning rate, epochs) tuned on it at 100 per
    # class with the same effort for both families, then kept fixed across sizes (as many epochs at every size, so
    # compute grows with the data); three seeds per curve point. Its runs name their epochs and learning rate in
    # their keys (course_lib.experiments.study: tuning_queue, study2_queue).
    "study2": Profile("study2", epochs=None, train_images=5000, test_images=None, batch_size=64, eval_images=1000,
                      description="CPU study of record with a validation split: CIFAR-10 JPEG copy, 100-500 per "
                                  "class, all 10,000 test images, budget tuned on validation",
                      curve_sizes=(100, 250, 500), curve_seeds=(0, 1, 2), drloc_subset=500, evaluations=10,
                      drloc_schedule="official", data_source="jpeg", covers=("cifar10",), fallback="cpu",
                      ablation=False, notebooks_train=False, validation_per_class=100, equal_steps=False,
                      tuned_budget=True, drloc_curve_sizes=(100, 500)),
}


# The full-data profiles on the committed samples, on purpose and under a name that says so (see ``full_data``).
for _name in ("gpu", "paper"):
    PROFILES[f"{_name}-samples"] = replace(
        PROFILES[_name], name=f"{_name}-samples", data_source="samples", full_data=False,
        description=PROFILES[_name].description + ", on the committed samples instead of the full data sets")


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``; else ``$COURSE_PROFILE``; else ``gpu`` with CUDA, ``smoke`` without."""
    from_environment = not name and bool(os.environ.get("COURSE_PROFILE"))
    name = name or os.environ.get("COURSE_PROFILE") or ("gpu" if torch.cuda.is_available() else "smoke")
    try:
        return PROFILES[name]
    except KeyError:
        raise (SettingError if from_environment else ValueError)(
            f"{'COURSE_PROFILE: ' if from_environment else ''}Unknown profile {name!r}. Choose one of "
            f"{sorted(PROFILES)} (or unset COURSE_PROFILE to pick from the hardware).") from None

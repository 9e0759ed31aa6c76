"""A notebook's parameters, checked in the cell after the parameters cell: a wrong value stops there, with the
values allowed, instead of running to the end on a silent reading (``vit_model="resnet18"`` gave "ResNet-18 vs
ResNet-18: no difference"; ``epochs=0`` meant "the default").

    check_parameters(profile=profile, data_root=data_root, datasets=datasets, vit_model=vit_model, recipe=recipe)

Every parameter a course notebook has is known here (:data:`RULES`); a name that is not is refused too, so a typo
in papermill's ``-p`` or in a hand edit is caught.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .data import DATASETS
from .models import MODEL_LABELS, MODELS
from .profiles import PROFILES
from .recipes import RECIPES

__all__ = ["ParameterError", "check_parameters", "RULES"]

VITS = sorted(name for name in MODELS if "ViT" in MODEL_LABELS.get(name, ""))    # the transformers


class ParameterError(ValueError):
    """A notebook parameter with a value the notebook cannot mean."""


def _choice(allowed, none: bool = False) -> Callable[[Any], str | None]:
    def rule(value):
        if (value is None and none) or (isinstance(value, str) and value in allowed):
            return None
        return f"one of {sorted(allowed)}{' or None' if none else ''}"
    return rule


def _whole(least: int, none: bool = False) -> Callable[[Any], str | None]:
    def rule(value):
        if (value is None and none) or (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            return None
        return f"a whole number of at least {least}{' or None (the profile default)' if none else ''}"
    return rule


def _flag(value) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def _folder(value) -> str | None:
    return None if value is None or (isinstance(value, (str, Path)) and str(value)) else "a folder path or None"


def _datasets(value) -> str | None:
    ok = (isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v in DATASETS for v in value)
          and len(set(value)) == len(value))
    return None if ok else f"a non-empty list of distinct names from {sorted(DATASETS)}"


RULES: dict[str, Callable[[Any], str | None]] = {
    "profile": _choice(PROFILES, none=True), "data_root": _folder, "datasets": _datasets,
    "dataset": _choice(DATASETS), "vit_model": _choice(VITS, none=True), "recipe": _choice(RECIPES, none=True),
    "n_images": _whole(1), "batch_size": _whole(4), "ablation": _flag, "train_missing": _flag,
    "epochs": _whole(1, none=True), "train_images": _whole(1, none=True), "test_images": _whole(1, none=True),
}


def check_parameters(**parameters) -> None:
    """Raise :class:`ParameterError` naming every parameter whose value is not allowed, with what is."""
    problems = []
    for name, value in parameters.items():
        rule = RULES.get(name)
        if rule is None:
            problems.append(f"{name} is no parameter of the course's notebooks (they take {sorted(RULES)})")
        elif (allowed := rule(value)) is not None:
            problems.append(f"{name} = {value!r}: must be {allowed}")
    if problems:
        raise ParameterError("Check the parameters cell: " + "; ".join(problems) + ".")

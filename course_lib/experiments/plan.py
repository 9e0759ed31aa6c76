"""Every run the notebooks use, per chapter and profile: :func:`plan`, the DRLoc ablation and the small-data curve.

The profile decides the models and recipes (:class:`course_lib.profiles.Profile`): the ViT of the comparison
(ViT-Lite, or Zhu et al.'s ViT under ``paper``), the comparison's recipe, and the recipe of both sides of every
DRLoc comparison (the course's, or Liu et al.'s under ``paper``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..data import DATASETS
from ..models import model_label
from .budget_rule import DRLOC, tuned_budget
from .provenance import describe_scale
from .runs import RunSpec, get_record

if TYPE_CHECKING:     # names used only in annotations
    from ..profiles import Profile

__all__ = ["CHAPTERS", "NOTEBOOKS", "DRLOC_WEIGHTS", "DRLOC_PAIRS", "PAIR_VIT", "budget", "comparison_specs",
           "drloc_specs", "comparison_and_pair",
           "drloc_ablation", "curve_specs", "contrast_specs", "contrast_seeds", "plan", "notebook_groups",
           "notebook_specs", "opened_models", "scale_box", "Markdown"]

CHAPTERS = ("ch1", "ch4", "ch5", "results")
NOTEBOOKS = ["01_vit_vs_resnet", "02_attention_rollout", "03_feature_maps", "04_cka", "05_drloc", "06_results"]
DRLOC_WEIGHTS = (0.1, 0.5, 1.0)     # the ablation on λ, drloc_weight (0.5: config.py's default)
DRLOC_PAIRS = (16, 32, 64)          # the ablation on m (64: the official runs)
PAIR_VIT = "ViT (DRLoc pair)"       # the DRLoc pair's ViT where it is not the comparison's (another recipe or budget)


def budget(profile: Profile, model: str) -> dict:
    """The epochs and learning rate a run of ``model`` (or of the DRLoc comparison, :data:`.budget_rule.DRLOC`)
    names in its spec: under a profile with ``tuned_budget``, those its tuning chose on the validation split
    (:func:`.budget_rule.tuned_budget`), else none (the profile's and the recipe's own)."""
    if not profile.tuned_budget:
        return {}
    epochs, lr = tuned_budget(model)
    return {"epochs": epochs, "lr": lr}


def comparison_specs(profile: Profile, dataset: str, train_per_class: int | None = None,
                     seed: int = 0) -> dict[str, RunSpec]:
    """Zhu et al.'s comparison on one data set: {"ViT": ..., "ResNet-18": ...} with the profile's ViT and recipe."""
    profile = profile.for_dataset(dataset)
    specs = [RunSpec(m, dataset, profile, train_per_class=train_per_class, seed=seed, **budget(profile, m))
             for m in (profile.vit_model, "resnet18")]
    return {s.label: s for s in specs}


def drloc_specs(profile: Profile, dataset: str, train_per_class: int | None = None, seed: int = 0,
                **drloc) -> dict[str, RunSpec]:
    """A DRLoc comparison: {"ViT": ..., "ViT+DRLoc": ...}, ViT-Lite with the profile's DRLoc recipe on both sides.

    ``drloc`` sets the DRLoc side's options (``drloc_weight``, ``drloc_pairs``, ``drloc_schedule``, ``drloc_tokens``);
    the schedule defaults to the official one under Liu et al.'s recipe. Both sides train with the DRLoc comparison's
    budget (under ``study2``: ViT + DRLoc's, which may be longer than the ViT's own), so they differ only in the loss.
    """
    profile = profile.for_dataset(dataset)
    recipe = profile.drloc_recipe
    drloc.setdefault("drloc_schedule", profile.drloc_schedule or ("official" if recipe == "liu2021" else "constant"))
    same = dict(recipe=recipe, train_per_class=train_per_class, seed=seed, **budget(profile, DRLOC))
    base = RunSpec("vit", dataset, profile, **same)
    with_drloc = RunSpec("vit", dataset, profile, drloc=True, **same, **drloc)
    return {base.label: base, with_drloc.label: with_drloc}


def comparison_and_pair(profile: Profile, dataset: str, train_per_class: int | None = None, seed: int = 0,
                        drloc: bool = True) -> dict[str, RunSpec]:
    """Zhu et al.'s comparison and (``drloc``) the DRLoc pair, each run once: the pair's ViT is the comparison's
    where they are one run (the course's profiles), else it is listed as :data:`PAIR_VIT` (another recipe under
    ``paper``, the DRLoc comparison's budget under ``study2``)."""
    specs = dict(comparison_specs(profile, dataset, train_per_class, seed))
    for label, spec in (drloc_specs(profile, dataset, train_per_class, seed) if drloc else {}).items():
        if spec not in specs.values():
            specs[PAIR_VIT if label in specs else label] = spec
    return specs


def drloc_ablation(profile: Profile) -> dict[str, RunSpec]:
    """The DRLoc ablation on the CIFAR-10 subset, one setting changed at a time from the default
    (λ = drloc_weight 0.5, m 64, the recipe's schedule, tokens before the final norm): {row label: spec}."""
    profile = profile.for_ablation()
    n = profile.drloc_subset
    default = drloc_specs(profile, "cifar10", n)
    rows = {"no DRLoc": default["ViT"], "default": default["ViT+DRLoc"]}
    for w in DRLOC_WEIGHTS:
        rows[f"λ = {w:g}"] = drloc_specs(profile, "cifar10", n, drloc_weight=w)["ViT+DRLoc"]
    for m in DRLOC_PAIRS:
        rows[f"m = {m}"] = drloc_specs(profile, "cifar10", n, drloc_pairs=m)["ViT+DRLoc"]
    other = "constant" if default["ViT+DRLoc"].drloc_schedule == "official" else "official"
    rows[f"λ {other}"] = drloc_specs(profile, "cifar10", n, drloc_schedule=other)["ViT+DRLoc"]
    rows["tokens after the final norm"] = drloc_specs(profile, "cifar10", n, drloc_tokens="post_norm")["ViT+DRLoc"]
    unique: dict[RunSpec, str] = {}
    for label, spec in rows.items():            # the default appears once, under its first name
        unique.setdefault(spec, label)
    return {label: spec for spec, label in unique.items()}


def curve_specs(profile: Profile) -> dict[str, dict[int, list[RunSpec]]]:
    """The small-data curve on CIFAR-10: {model label: {images per class: [one spec per seed]}}.

    ResNet-18 and the ViT of the comparison, and the DRLoc pair (at the profile's ``drloc_curve_sizes``; its ViT
    under :data:`PAIR_VIT` where it is not the comparison's, :func:`comparison_and_pair`).
    """
    curve: dict[str, dict[int, list[RunSpec]]] = {}
    for n in profile.curve_sizes:
        for seed in profile.curve_seeds:
            paired = profile.drloc_curve_sizes is None or n in profile.drloc_curve_sizes
            for label, spec in comparison_and_pair(profile, "cifar10", n, seed, drloc=paired).items():
                curve.setdefault(label, {}).setdefault(n, []).append(spec)
    return curve


def contrast_specs(profile: Profile, seed: int = 0) -> dict[str, RunSpec]:
    """Notebook 04's data-size contrast, one seed: the comparison's ViT on CIFAR-10 at the curve's smallest size and
    at the full budget, {"ViT on n/class": spec}."""
    vit = model_label(profile.vit_model)
    small, full = (comparison_specs(profile, "cifar10", n, seed)[vit] for n in (profile.curve_sizes[0], None))
    per_class = profile.for_dataset("cifar10").train_per_class(DATASETS["cifar10"].num_classes)
    return {f"{vit} on {profile.curve_sizes[0]:,}/class": small,
            f"{vit} on {f'{per_class:,}/class' if per_class else 'all images'}": full}


def contrast_seeds(profile: Profile) -> tuple[int, ...]:
    """The seeds of notebook 04's contrast: every curve seed where the profile's own driver trains the runs (the
    notebook only opens them), seed 0 where the notebook would train them itself."""
    return (0,) if profile.notebooks_train else profile.curve_seeds


def plan(profile: Profile, datasets: tuple[str, ...] = tuple(DATASETS)) -> dict[str, list[RunSpec]]:
    """Every run the notebooks use, grouped by chapter (runs shared between chapters appear once, first)."""
    chapters = {
        "ch1": [s for d in datasets for s in comparison_specs(profile, d).values()],
        "ch4": [next(iter(contrast_specs(profile).values()))],
        "ch5": ([s for d in datasets for s in drloc_specs(profile, d).values()]
                + list(drloc_ablation(profile).values())),
        "results": [s for by_n in curve_specs(profile).values() for specs in by_n.values() for s in specs],
    }
    if "cifar10" not in datasets:
        chapters = {c: [s for s in specs if s.dataset in datasets] for c, specs in chapters.items()}
    seen: set[RunSpec] = set()
    return {chapter: [s for s in specs if not (s in seen or seen.add(s))] for chapter, specs in chapters.items()}


def notebook_groups(notebook: str, profile: Profile, datasets: tuple[str, ...] = tuple(DATASETS),
                    dataset: str = "cifar10", ablation: bool = True) -> list[list[RunSpec]]:
    """The runs a notebook opens or reads, run alone (those it shares with other chapters included), in the groups
    it shows together (a comparison, a DRLoc pair, the ablation): a group is shown whole or left out whole.
    ``ablation``: notebook 05's parameter (its DRLoc ablation on the CIFAR-10 subset)."""
    comparisons = [list(comparison_specs(profile, d).values()) for d in datasets]
    drloc = [list(drloc_specs(profile, d).values()) for d in datasets]
    if "cifar10" in datasets:
        drloc.append(list(drloc_specs(profile, "cifar10", profile.drloc_subset).values()))
        drloc += [list(drloc_ablation(profile).values())] if ablation else []
        drloc.append([comparison_specs(profile, "cifar10")["ResNet-18"]])          # the CKA of ViT+DRLoc
    by_notebook = {
        "01_vit_vs_resnet": comparisons,
        "02_attention_rollout": [[comparison_specs(profile, dataset)[model_label(profile.vit_model)]]],
        "03_feature_maps": [list(comparison_specs(profile, dataset).values())],
        "04_cka": comparisons + [plan(profile, datasets)["ch4"]] + (
            [list(contrast_specs(profile, seed).values()) for seed in contrast_seeds(profile)[1:]]
            if "cifar10" in datasets else []),
        "05_drloc": drloc,
        "06_results": [[s] for specs in plan(profile, datasets).values() for s in specs],
    }
    if notebook not in by_notebook:
        raise ValueError(f"Unknown notebook {notebook!r}. Choose one of {NOTEBOOKS}.")
    return [group for group in by_notebook[notebook] if group]


def notebook_specs(notebook: str, profile: Profile, datasets: tuple[str, ...] = tuple(DATASETS),
                   dataset: str = "cifar10", ablation: bool = True) -> list[RunSpec]:
    """Every run a notebook opens or reads, run alone, each once (see :func:`notebook_groups`)."""
    groups = notebook_groups(notebook, profile, datasets, dataset, ablation)
    return list(dict.fromkeys(s for group in groups for s in group))


def opened_models(notebook: str, profile: Profile, datasets: tuple[str, ...] = tuple(DATASETS),
                  dataset: str = "cifar10") -> set[RunSpec]:
    """The runs whose trained model a notebook opens (notebook 05 reads the records of the rest; 06 of all)."""
    if notebook == "06_results":
        return set()
    if notebook == "05_drloc":
        return ({*drloc_specs(profile, "cifar10").values(), comparison_specs(profile, "cifar10")["ResNet-18"]}
                if "cifar10" in datasets else set())
    return set(notebook_specs(notebook, profile, datasets, dataset))


class Markdown(str):
    """Text that Jupyter (and the book) render as Markdown when it is a cell's value."""

    def _repr_markdown_(self) -> str:
        return str(self)


def scale_box(notebook: str, profile: Profile, datasets: Sequence[str] = tuple(DATASETS),
              dataset: str = "cifar10") -> Markdown:
    """The box on the scale of a notebook's outputs, from the records of its runs (nothing is trained here)."""
    specs = notebook_specs(notebook, profile, tuple(datasets), dataset)
    found = {s: get_record(s, train_missing=False) for s in specs}
    records = [r for r in found.values() if r is not None]
    trained_below = sum(r is None and s.profile.notebooks_train for s, r in found.items())
    return Markdown(describe_scale(records, trained_below))

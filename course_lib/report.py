"""The results chapter's tables and curves, assembled from the run records in ``results/``.

Every number comes from a record that :func:`course_lib.experiments.train_run` wrote; a run with no record is
trained on the spot (with the profile's budget) by :func:`course_lib.experiments.get_record`. The papers' numbers
come from :mod:`course_lib.papers`, with their sources.
"""
from __future__ import annotations

from pathlib import Path

from .data import DATASETS
from .experiments import RunSpec, drloc_recipe, get_record, small_data_sizes
from .papers import LIU2021, ZHU2023
from .tables import Table
from .profiles import Profile, get_profile

__all__ = ["dataset_table", "small_data_points", "small_data_table", "provenance"]

MODELS = [("ResNet-18", "resnet18", False), ("ViT", "vit", False), ("ViT+DRLoc", "vit", True)]


def _profile(profile: Profile | str | None) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def dataset_table(dataset: str, profile: Profile | str | None = None,
                  data_root: str | Path | None = None) -> tuple[Table, str]:
    """(table, one-line summary) for one data set: ViT and ResNet-18 (Zhu et al.'s comparison) and ViT+DRLoc, ours
    next to the papers'. The DRLoc gain is measured against a ViT trained with the same recipe."""
    P = _profile(profile)
    r = drloc_recipe(P)
    runs = {"ViT": get_record(RunSpec("vit", dataset, P.name), data_root),
            "ResNet-18": get_record(RunSpec("resnet18", dataset, P.name), data_root),
            "ViT+DRLoc": get_record(RunSpec("vit", dataset, P.name, drloc=True, recipe=r), data_root)}
    vit_same_recipe = get_record(RunSpec("vit", dataset, P.name, recipe=r), data_root)
    liu_base, liu_drloc = LIU2021["top1"][dataset]
    zhu = ZHU2023["top1"]
    paper = {"ViT": f"{zhu[('vit', dataset)]:.2f} (Zhu, their ViT)" if ("vit", dataset) in zhu else "—",
             "ResNet-18": f"{zhu[('resnet18', dataset)]:.1f} (Zhu)" if ("resnet18", dataset) in zhu else "—",
             "ViT+DRLoc": f"{liu_base:.2f} → {liu_drloc:.2f} (Liu, Swin-T)"}
    rows = [[label, rec["final_test_acc"], paper[label], rec["epochs"], f"{rec['train_images']:,}",
             f"{rec['train_seconds'] / 60:.1f} min", rec["environment"]["device"]] for label, rec in runs.items()]
    title = DATASETS[dataset].title
    table = Table(["model", "ours top-1 (%)", "paper top-1 (%)", "epochs", "train images", "train time", "device"],
                  rows, caption=f"{title}, profile '{P.name}'")
    gain = runs["ViT+DRLoc"]["final_test_acc"] - vit_same_recipe["final_test_acc"]
    gap = runs["ResNet-18"]["final_test_acc"] - runs["ViT"]["final_test_acc"]
    summary = (f"{title:<10} ResNet-18 - ViT = {gap:+.1f} points; DRLoc changes the ViT by {gain:+.1f} points "
               f"(Liu et al., Swin-T: {liu_drloc - liu_base:+.1f})")
    return table, summary


def small_data_points(profile: Profile | str | None = None,
                      data_root: str | Path | None = None) -> dict[str, list[tuple[int, float]]]:
    """{model label: [(images per class, final test accuracy), ...]} on CIFAR-10, for the small-data curve."""
    P = _profile(profile)
    r = drloc_recipe(P)
    return {label: [(n, get_record(RunSpec(model, "cifar10", P.name, drloc=drloc, train_per_class=n, recipe=r),
                                   data_root)["final_test_acc"]) for n in small_data_sizes(P)]
            for label, model, drloc in MODELS}


def small_data_table(points: dict[str, list[tuple[int, float]]], caption: str = "") -> Table:
    """The small-data curve as a table: one row per training-set size, one column per model."""
    sizes = sorted({n for pts in points.values() for n, _ in pts})
    return Table(["images per class"] + list(points), [[n] + [dict(points[m]).get(n) for m in points]
                                                      for n in sizes], caption=caption)


def provenance(records: list[dict]) -> str:
    """Where the numbers come from: data copies, devices, library versions and total training time."""
    lines = [f"{len(records)} runs."]
    for key, title in [("train_source", "training data"), ("test_source", "test data")]:
        lines += [f"{title}:"] + [f"  {s}" for s in sorted({r[key] for r in records})]
    lines += ["devices:"] + [f"  {d}" for d in sorted({r["environment"]["device"] for r in records})]
    lines += ["software:"] + [f"  torch {v}" for v in sorted({
        f"{r['environment']['torch']}, course_lib {r['environment']['course_lib']} (commit "
        f"{r['environment']['git_commit']})" for r in records})]
    lines.append(f"total training time: {sum(r['train_seconds'] for r in records) / 3600:.2f} h")
    return "\n".join(lines)

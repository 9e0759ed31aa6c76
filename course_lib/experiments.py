"""The course's experiments: every model the notebooks need, trained once, recorded, and reused.

A :class:`RunSpec` names one training run (model, data set, budget, DRLoc or not, ...). :func:`train_run` trains it
with :func:`course_lib.train.fit`, keeps the checkpoint in ``checkpoints/`` (outside git) and writes a record to
``results/<key>.json``: per-epoch history, final accuracy, wall time, device, library versions, git commit and which
copy of the data was used. A run whose checkpoint is complete is loaded, not retrained, so notebooks that need the
same model share it, and an interrupted run resumes where it stopped.

Command line::

    python -m course_lib.experiments list  --profile gpu              # what would run
    python -m course_lib.experiments run   --profile gpu --data-root data [--only ch1,ch5] [--notebooks]
    python -m course_lib.experiments notebooks --profile gpu           # re-execute the notebooks with papermill

``--notebooks`` re-executes the notebooks afterwards (papermill, in place), so their stored outputs come from these
runs; each notebook states the hardware, data and budget that produced them.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from . import __version__
from .data import DATASETS, ImageSet, load_dataset, subset, take
from .models import count_parameters, create_model
from .profiles import Profile, get_profile
from .train import RECIPES, History, TrainConfig, fit, get_device, seed_everything

__all__ = ["RunSpec", "RunResult", "train_run", "load_data", "load_results", "plan", "workdir",
           "environment_summary", "describe_setting", "get_record", "training_config", "small_data_sizes", "drloc_subset_per_class", "drloc_recipe", "DRLOC_WEIGHTS", "DRLOC_PAIRS", "NOTEBOOKS"]

NOTEBOOKS = ["01_vit_vs_resnet", "02_attention_rollout", "03_feature_maps", "04_cka", "05_drloc", "06_results"]


def workdir() -> Path:
    """Where ``checkpoints/`` and ``results/`` live: ``$COURSE_WORKDIR``, else the repository root when run from
    ``notebooks/``, else the current folder (e.g. /content on Colab)."""
    if "COURSE_WORKDIR" in os.environ:
        return Path(os.environ["COURSE_WORKDIR"])
    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "_config.yml").exists():
        return here.parent
    return here


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``train_per_class`` overrides the profile's data budget (for the small-data curve)."""

    model: str
    dataset: str
    profile: str
    drloc: bool = False
    drloc_weight: float = 0.5
    drloc_pairs: int = 32
    train_per_class: int | None = None
    recipe: str | None = None       # None: "course", or Zhu et al.'s recipe under the "paper" profile
    epochs: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.recipe is None:
            object.__setattr__(self, "recipe", "zhu2023" if self.profile == "paper" else "course")
        # One run, one key: a per-class budget equal to the profile's default (or to the whole split) is no override.
        n = self.train_per_class
        info = DATASETS[self.dataset]
        if n is not None and (n == get_profile(self.profile).train_per_class(info.num_classes)
                              or n * info.num_classes >= info.sizes["train"]):
            object.__setattr__(self, "train_per_class", None)

    @property
    def key(self) -> str:
        """A file-name-safe identifier (letters, digits, '.', '_', '-'), e.g. ``cifar10-vit-drloc_l0.5_m32-n100-course-gpu-s0``."""
        parts = [self.dataset, self.model]
        if self.drloc:
            parts.append(f"drloc_l{self.drloc_weight:g}_m{self.drloc_pairs}")
        if self.train_per_class is not None:
            parts.append(f"n{self.train_per_class}")
        if self.epochs is not None:
            parts.append(f"e{self.epochs}")
        parts += [self.recipe, self.profile, f"s{self.seed}"]
        return "-".join(parts)

    @property
    def label(self) -> str:
        """A short human name: "ViT", "ViT+DRLoc", "ResNet-18"."""
        names = {"vit": "ViT", "vit_paper": "ViT (paper)", "resnet18": "ResNet-18", "hybrid_vit": "Hybrid ViT"}
        return names.get(self.model, self.model) + ("+DRLoc" if self.drloc else "")


@dataclass
class RunResult:
    spec: RunSpec
    model: nn.Module
    history: History
    record: dict


def _budget(spec: RunSpec) -> tuple[Profile, int]:
    """The profile and the number of epochs of a run.

    A run on fewer images than the profile's default gets proportionally more epochs, so every point of the
    small-data curve gets the same number of optimiser steps (capped at 20x the epochs), and a run on more images
    gets fewer: "less data" never means "less training".
    """
    profile = get_profile(spec.profile)
    epochs = spec.epochs or profile.epochs or RECIPES[spec.recipe].epochs
    if spec.epochs is None and spec.train_per_class is not None:
        info = DATASETS[spec.dataset]
        default = profile.train_per_class(info.num_classes) or info.sizes["train"] // info.num_classes
        epochs = max(1, min(20 * epochs, round(epochs * default / spec.train_per_class)))
    return profile, epochs


def load_data(dataset: str, profile: Profile | str, data_root: str | Path | None = None,
              train_per_class: int | None = None, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Train and test splits of ``dataset`` within a profile's budget (train: per class, stratified; test: random).

    With fewer images per class than the budget asks (the committed samples), every image of that class is used.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    train = load_dataset(dataset, "train", root=data_root)
    test = load_dataset(dataset, "test", root=data_root)
    per_class = train_per_class or profile.train_per_class(DATASETS[dataset].num_classes)
    if per_class is not None:
        train = subset(train, per_class, seed=seed, allow_fewer=True)
    return train, take(test, profile.test_images, seed=seed)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def environment_summary(device: str | torch.device | None = None) -> dict:
    """Hardware and software a result was produced with."""
    device = get_device(device)
    import torchvision

    return {"device": device_name(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "course_lib": __version__, "git_commit": _git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def describe_setting(profile: Profile | str | None = None, device: str | torch.device | None = None) -> str:
    """One paragraph a notebook prints at the top: which budget, hardware and software produced its outputs."""
    profile = get_profile(profile) if not isinstance(profile, Profile) else profile
    env = environment_summary(device)
    return (f"Budget: profile '{profile.name}' ({profile.description}).\n"
            f"Hardware: {env['device']}. Software: torch {env['torch']}, torchvision {env['torchvision']}, "
            f"Python {env['python']}, course_lib {env['course_lib']}"
            + (f" (commit {env['git_commit']})" if env["git_commit"] else "") + f".\nRun on {env['date']}.")


def _extra_losses(spec: RunSpec, model: nn.Module) -> list:
    if not spec.drloc:
        return []
    from .drloc import DRLocLoss

    was_training = model.training
    model.eval()
    with torch.no_grad():
        dim = model.forward_grid(torch.zeros(1, 3, 32, 32)).shape[1]
    model.train(was_training)
    return [DRLocLoss(dim=dim, weight=spec.drloc_weight, m=spec.drloc_pairs)]


def training_config(spec: RunSpec) -> TrainConfig:
    """The :class:`TrainConfig` a run uses: its recipe, with the profile's epochs and (course recipe) batch size."""
    if spec.recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {spec.recipe!r}. Choose one of {sorted(RECIPES)}.")
    profile, epochs = _budget(spec)
    # About 15 evaluations per run, whatever its length: evaluation is a large part of a CPU run.
    config = replace(RECIPES[spec.recipe], epochs=epochs, seed=spec.seed, eval_every=max(1, round(epochs / 15)))
    if spec.recipe == "course":          # the papers' recipes keep their own batch size
        config = replace(config, batch_size=profile.batch_size)
    return config


def train_run(spec: RunSpec, data_root: str | Path | None = None, device: str | torch.device | None = None,
              root: str | Path | None = None, progress: bool = True) -> RunResult:
    """Train ``spec`` (or load it when its checkpoint is complete) and write ``results/<key>.json``."""
    root = Path(root) if root is not None else workdir()
    device = get_device(device)
    profile, epochs = _budget(spec)
    train, test = load_data(spec.dataset, profile, data_root, spec.train_per_class, spec.seed)
    seed_everything(spec.seed)
    model = create_model(spec.model, num_classes=DATASETS[spec.dataset].num_classes)
    extra = _extra_losses(spec, model)
    recipe = training_config(spec)
    checkpoint = root / "checkpoints" / f"{spec.key}.pt"
    if progress:
        print(f"[{spec.key}] {train.describe()}; {len(test):,} test images; {epochs} epoch(s) on {device_name(device)}")
    history = fit(model, train, test, recipe, extra_losses=extra, checkpoint=checkpoint, device=device,
                  progress=progress)
    record = {
        "key": spec.key, "spec": asdict(spec), "label": spec.label,
        "final_test_acc": history.final_test_acc, "best_test_acc": max(a for a in history.test_acc if a is not None),
        "train_seconds": sum(history.seconds), "epochs": len(history),
        "train_images": len(train), "test_images": len(test), "train_source": train.source,
        "test_source": test.source, "parameters": count_parameters(model), "recipe": asdict(recipe),
        "history": history.to_dict(), "environment": environment_summary(device),
    }
    out = root / "results" / f"{spec.key}.json"
    previous = json.loads(out.read_text()) if out.exists() else None
    if previous and previous.get("history") == record["history"]:
        record = previous                  # loaded from a finished checkpoint: keep the record of who trained it
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1, default=str))
    return RunResult(spec, model.eval(), history, record)


def get_record(spec: RunSpec, data_root: str | Path | None = None, root: str | Path | None = None) -> dict:
    """The stored record of ``spec`` from ``results/``; if there is none, train the run now and return its record."""
    root = Path(root) if root is not None else workdir()
    path = root / "results" / f"{spec.key}.json"
    if path.exists():
        return json.loads(path.read_text())
    return train_run(spec, data_root=data_root, root=root).record


def load_results(results_dir: str | Path | None = None, profile: str | None = None) -> list[dict]:
    """All records in ``results/`` (optionally of one profile), sorted by key."""
    results_dir = Path(results_dir) if results_dir is not None else workdir() / "results"
    records = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    return [r for r in records if profile is None or r["spec"]["profile"] == profile]


# --------------------------------------------------------------------------------------------------------------
# What the notebooks need, per profile

def small_data_sizes(profile: Profile | str) -> list[int]:
    """Images per class for the small-data curve: what the profile's data can hold."""
    name = profile if isinstance(profile, str) else profile.name
    return {"smoke": [5, 10], "cpu": [25, 50, 100, 200]}.get(name, [50, 100, 500, 5000])


def drloc_subset_per_class(profile: Profile | str) -> int:
    """Images per class of the small CIFAR-10 subset in the DRLoc chapter: 10 % of the full set on a GPU (500),
    the smallest point of the small-data curve on the CPU profiles."""
    name = profile if isinstance(profile, str) else profile.name
    return 500 if name in ("gpu", "paper") else small_data_sizes(name)[0]


def drloc_recipe(profile: Profile | str) -> str:
    """The recipe of the DRLoc comparisons (with and without DRLoc alike): Liu et al.'s under the "paper" profile,
    else the course's."""
    name = profile if isinstance(profile, str) else profile.name
    return "liu2021" if name == "paper" else "course"


DRLOC_WEIGHTS = (0.1, 0.5, 1.0)     # the ablation on lambda
DRLOC_PAIRS = (8, 32, 64)           # the ablation on m


def plan(profile: str, datasets: tuple[str, ...] = ("cifar10", "cifar100", "svhn")) -> dict[str, list[RunSpec]]:
    """Every run the notebooks use, grouped by chapter (runs shared between chapters appear once, first)."""
    p = profile
    small = small_data_sizes(p)
    sub = drloc_subset_per_class(p)
    r = drloc_recipe(p)
    chapters = {
        "ch1": [RunSpec(m, d, p) for d in datasets for m in ("vit", "resnet18")],
        "ch4": [RunSpec("vit", "cifar10", p, train_per_class=small[0])],
        "ch5": [RunSpec("vit", d, p, drloc=flag, recipe=r) for d in datasets for flag in (False, True)]
               + [RunSpec("vit", "cifar10", p, train_per_class=sub, drloc=flag, recipe=r) for flag in (False, True)]
               + [RunSpec("vit", "cifar10", p, drloc=True, drloc_weight=w, train_per_class=sub, recipe=r)
                  for w in DRLOC_WEIGHTS]
               + [RunSpec("vit", "cifar10", p, drloc=True, drloc_pairs=m, train_per_class=sub, recipe=r)
                  for m in DRLOC_PAIRS],
        "results": [RunSpec(m, "cifar10", p, train_per_class=n, drloc=dr, recipe=r)
                    for n in small for m, dr in (("resnet18", False), ("vit", False), ("vit", True))],
    }
    seen, out = set(), {}
    for chapter, specs in chapters.items():
        out[chapter] = [s for s in specs if not (s in seen or seen.add(s))]
    return out


def _run_notebooks(profile: str, names: list[str], data_root: str | None,
                   datasets: list[str] | None = None) -> None:
    """Execute the notebooks in place, so that their stored outputs (what the book shows) come from these runs.

    The budget and the data folder go in through the environment, never as papermill parameters: an
    injected-parameters cell is stored with the outputs, and a stored ``profile = "gpu"`` would pin every later run
    of the notebook (nbval in CI included) to that budget. Only ``datasets``, when narrower than all three, is
    injected, into the notebooks that declare it, so a reader sees which data sets the stored run covered.
    """
    import papermill as pm

    folder = Path(__file__).resolve().parents[1] / "notebooks"
    os.environ.setdefault("COURSE_PLAIN_PROGRESS", "1")
    os.environ["COURSE_PROFILE"] = profile
    if data_root:
        os.environ["COURSE_DATA_ROOT"] = str(Path(data_root).resolve())
    for name in names:
        path = folder / f"{name}.ipynb"
        params = {}
        if datasets and set(datasets) != set(DATASETS) and "datasets" in pm.inspect_notebook(str(path)):
            params["datasets"] = list(datasets)
        print(f"executing {path} with COURSE_PROFILE={profile} {params or ''}", flush=True)
        start = time.perf_counter()
        pm.execute_notebook(str(path), str(path), parameters=params or None, cwd=str(folder),
                            kernel_name="python3", progress_bar=False)
        print(f"  done in {time.perf_counter() - start:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_lib.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "run", "notebooks"])
    parser.add_argument("--profile", default=None, help="smoke | cpu | gpu | paper (default: from the hardware)")
    parser.add_argument("--data-root", default=None, help="torchvision data folder (may hold cifar10-jpeg/)")
    parser.add_argument("--only", default=None, help="comma-separated chapters: ch1,ch4,ch5,results")
    parser.add_argument("--datasets", default="cifar10,cifar100,svhn")
    parser.add_argument("--notebooks", action="store_true", help="re-execute the notebooks after training")
    parser.add_argument("--notebook-names", default=",".join(NOTEBOOKS))
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile).name
    chapters = plan(profile, tuple(args.datasets.split(",")))
    if args.only:
        chapters = {c: s for c, s in chapters.items() if c in args.only.split(",")}
    if args.command == "list":
        for chapter, specs in chapters.items():
            print(chapter)
            for s in specs:
                print("  ", s.key)
        return
    if args.command == "run":
        for chapter, specs in chapters.items():
            for s in specs:
                train_run(s, data_root=args.data_root, device=args.device)
    if args.command == "notebooks" or args.notebooks:
        _run_notebooks(profile, args.notebook_names.split(","), args.data_root, args.datasets.split(","))


if __name__ == "__main__":
    main(sys.argv[1:])

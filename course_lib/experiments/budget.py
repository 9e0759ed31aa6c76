"""What a notebook will fetch, load and train before it does any of it (:func:`training_plan`, the first thing each
one prints), and the functions that keep to that plan (:func:`open_run`, :func:`open_record`, :func:`available`).

A student on Colab decides whether to spend half an hour of GPU time before the first run starts, not run by run.
So each notebook, run alone, lists every run it needs (those it shares with other chapters too): the course's
trained models it fetches or loads (``use_course_models``, the analysis notebooks' default: nothing is trained), or
its own runs, recorded already (loaded) or trained now, each with the device it runs on and its expected time. The
time comes from the run's steps at a conservative throughput per model and device, plus a measured per-run
overhead (:data:`CALIBRATION` says how); each run measures its own speed just before it starts and says so again.
Nothing trains that the plan did not announce: a course's model that cannot be had stops the notebook with one
paragraph (:class:`.course_models.CourseModelUnavailable`).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from ..data import DATASETS, load_samples
from ..recipes import steps_per_epoch
from ..runtime import device_name, get_device
from ..settings import workdir
from .course_models import (CourseModel, CourseModelUnavailable, course_manifest, course_model_for, course_models_for,
                            missing_paragraph, open_course_model)
from .of_record import CheckpointFetchError, manifest_entry
from .plan import Markdown, notebook_groups, opened_models
from .records import find_record
from .runs import RunResult, get_record, train_run, training_config

if TYPE_CHECKING:     # names used only in annotations
    from ..profiles import Profile
    from .runs import RunSpec

__all__ = ["CONSERVATIVE_IMAGES_PER_SECOND", "RUN_OVERHEAD_S", "expected_seconds", "has_weights", "at_hand",
           "planned_runs", "training_plan", "open_run", "open_record", "available"]

# Training images per second, conservative. Measured on the course's machines: a 2-core CPU (fp32) runs ViT-Lite at
# 110-140, ViT-Lite + DRLoc at 110, ResNet-18 at 90-118 img/s (benchmarks/ and the study's records); a T4 runs
# them in mixed precision at several thousand. Unknown models count as the slowest.
CONSERVATIVE_IMAGES_PER_SECOND = {
    "cpu": {"vit": 60.0, "vit_paper": 25.0, "resnet18": 30.0, "hybrid": 30.0},
    "cuda": {"vit": 1500.0, "vit_paper": 800.0, "resnet18": 1200.0, "hybrid": 800.0},
}
# Seconds per run besides its steps: loading and checking the data, building the model, measuring its speed, the
# first evaluation's warm-up. The smoke runs of notebook 05 on the course's 2-core CPU took 25-47 s each (issue 31)
# for a few seconds of steps.
RUN_OVERHEAD_S = {"cpu": 30.0, "cuda": 20.0}
CALIBRATION = ("Estimates are conservative: the steps at a throughput below the course's measurements (a 2-core CPU "
               "in fp32: ViT-Lite 110-140, ResNet-18 90-118 images/s, from the study's records; counted as 60 and "
               "30), plus 30 s per run for data and set-up, as measured for the smoke runs. GPU rates are the "
               "course's guess for a T4 in mixed precision, not a measurement. Each run measures its own speed "
               "and says so before it starts.")
NO_GPU = ("**No GPU is attached to this runtime**, and profile '{profile}' is meant for one: on Colab, Runtime → "
          "Change runtime type → a GPU (T4), then Runtime → Restart session and run from the top. Or choose "
          "profile = \"smoke\" (minutes on a CPU), or keep use_course_models = True (the course's trained models: "
          "nothing to train).")


@functools.lru_cache(maxsize=None)
def _split_size(dataset: str, split: str, source: str) -> int:
    """Images in the split that a profile's runs load (the committed samples are read; they are small)."""
    return len(load_samples(dataset, split).labels) if source == "samples" else DATASETS[dataset].sizes[split]


def _train_images(spec: RunSpec) -> int:
    info = DATASETS[spec.dataset]
    size = _split_size(spec.dataset, "train", spec.profile.data_source)
    per_class = spec.train_per_class or spec.profile.train_per_class(info.num_classes)
    return size if per_class is None else min(size, per_class * info.num_classes)


def expected_seconds(spec: RunSpec, device: torch.device) -> float:
    """A conservative wall time for training ``spec`` on ``device`` (its evaluations and overheads included)."""
    table = CONSERVATIVE_IMAGES_PER_SECOND["cuda" if device.type == "cuda" else "cpu"]
    rate = table.get(spec.model, min(table.values())) * (0.9 if spec.drloc else 1.0)
    cfg = training_config(spec, _train_images(spec))
    images = cfg.epochs * steps_per_epoch(_train_images(spec), cfg.batch_size) * cfg.batch_size
    test = min(spec.profile.test_images or 10**9, _split_size(spec.dataset, "test", spec.profile.data_source))
    evaluations = -(-cfg.epochs // cfg.eval_every)
    overhead = RUN_OVERHEAD_S["cuda" if device.type == "cuda" else "cpu"]
    return overhead + 1.2 * (images + evaluations * test / 3) / rate


def has_weights(spec: RunSpec, record: dict) -> bool:
    """Whether the trained model of ``record`` is at hand: a checkpoint of record, or a checkpoint trained here."""
    digest = record.get("identity_hash", "")
    return (manifest_entry(spec.key, digest) is not None
            or (workdir() / "checkpoints" / f"{spec.key}-{digest}.pt").exists())


def at_hand(spec: RunSpec) -> bool:
    """Whether ``spec`` is recorded with its trained weights, so opening it trains nothing."""
    return _step(spec, needs_models=True, use_course_models=False, manifest=dict)[0] == "load"


def _step(spec: RunSpec, needs_models: bool, use_course_models: bool, manifest,
          choice: CourseModel | None = None) -> tuple[str, str]:
    """(what a notebook does with ``spec``: "fetch", "load", "train" or "leave out", the key it opens);
    ``choice``: the course's model that stands for it (with ``use_course_models``); ``manifest()``: the course's
    manifest, asked for only when a recorded run lacks its weights here."""
    if use_course_models:
        if choice is None:
            return "leave out", spec.key
        return ("load" if choice.at_hand else "fetch"), choice.key
    found = find_record(spec.key)
    if found is not None and (not needs_models or has_weights(spec, found[0])):
        return "load", spec.key
    entry = manifest().get(spec.key) if found is not None else None
    if isinstance(entry, dict) and entry.get("identity_hash") == found[0].get("identity_hash"):
        return "fetch", spec.key                # a run of record: train_run fetches its checkpoint of record
    return ("train" if spec.profile.notebooks_train else "leave out"), spec.key


def planned_runs(notebook: str, profile: Profile, datasets=tuple(DATASETS), dataset: str = "cifar10",
                 needs_models: bool = True, use_course_models: bool = False,
                 ablation: bool = True) -> dict[str, list[tuple[RunSpec, str]]]:
    """{"fetch" | "load" | "train" | "leave out": [(spec, the key opened)]} for ``notebook`` run alone. With the
    course's models, a group the notebook shows together (:func:`.plan.notebook_groups`) is left out whole when the
    course lacks one of its models, as :func:`available` leaves it out."""
    groups = notebook_groups(notebook, profile, tuple(datasets), dataset, ablation)
    opened = opened_models(notebook, profile, tuple(datasets), dataset) if needs_models else set()
    manifest = functools.cache(course_manifest)
    steps: dict[str, list[tuple[RunSpec, str]]] = {"fetch": [], "load": [], "train": [], "leave out": []}
    for group in groups:
        choices = course_models_for(group) if use_course_models else [None] * len(group)
        planned = [(spec, *_step(spec, spec in opened, use_course_models, manifest, choice))
                   for spec, choice in zip(group, choices)]
        whole = not use_course_models or all(action != "leave out" for _, action, _ in planned)
        for spec, action, key in planned:
            action, key = (action, key) if whole else ("leave out", spec.key)
            if all(key != k for _, k in (pair for pairs in steps.values() for pair in pairs)):
                steps[action].append((spec, key))
    return steps


def _duration(seconds: float) -> str:
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def training_plan(notebook: str, profile: Profile, datasets=tuple(DATASETS), dataset: str = "cifar10",
                  device: str | torch.device | None = None, needs_models: bool = True,
                  use_course_models: bool = False, ablation: bool = True) -> Markdown:
    """What ``notebook``, run alone, will fetch, load and train under ``profile``, each run with the device it runs on
    and its expected time; nothing is trained or loaded here. :func:`open_run` keeps to it.

    ``use_course_models``: the notebook opens the course's trained models (fetched or loaded, never trained; a run
    the course has no model for is left out). ``needs_models``: the notebook opens the trained models (a run counts
    as loaded only with its weights); False: it reads records only."""
    dev = get_device(device)
    steps = planned_runs(notebook, profile, datasets, dataset, needs_models, use_course_models, ablation)
    total = sum(expected_seconds(s, dev) for s, _ in steps["train"])
    where = device_name(dev)
    head = (f"**What this notebook runs** (profile '{profile.name}', "
            + ("the course's trained models" if use_course_models else "your own runs") + f", {where}): "
            + ", ".join(f"{len(v)} to {k}" for k, v in steps.items() if v) + ".")
    lines = [head.replace("to leave out", "left out").replace("to fetch", "to fetch (seconds each)")]
    if not steps["train"]:
        lines[0] += " Nothing to train."
    lines += [f"- fetch {key}: the course's checkpoint of record, SHA-256 checked" for _, key in steps["fetch"]]
    lines += [f"- load {key}: at hand" for _, key in steps["load"]]
    lines += [f"- train {s.key} on {where}: {_duration(expected_seconds(s, dev))}" for s, _ in steps["train"]]
    why = ("the course has no trained model for it: use_course_models = False trains your own" if use_course_models
           else f"not trained yet: profile '{profile.name}' trains its runs with its own driver")
    lines += [f"- left out {key}: {why}" for _, key in steps["leave out"]]
    if steps["train"]:
        lines.append(f"**{len(steps['train'])} to train: {_duration(total)} in all.** " + CALIBRATION)
    if dev.type != "cuda" and profile.full_data:
        lines.append(NO_GPU.format(profile=profile.name))
    return Markdown("\n".join(lines))


# --------------------------------------------------------------------------------------------------------------
# Keeping to the plan

def _own_time(spec: RunSpec, device: str | torch.device | None) -> str:
    return _duration(expected_seconds(spec, get_device(device)))


def open_run(spec: RunSpec, use_course_models: bool, data_root=None, device: str | torch.device | None = None,
             progress: bool = True) -> RunResult:
    """The run a notebook opens for ``spec``: the course's trained model that stands for it (``use_course_models``;
    fetched or loaded, never trained), else ``spec`` itself, trained here unless it is recorded with its weights.

    Raises :class:`.course_models.CourseModelUnavailable` (one paragraph: what failed, and the two ways on, with the
    time training your own would take on this device) when the course's model cannot be had."""
    if not use_course_models:
        return train_run(spec, data_root=data_root, device=device, progress=progress)
    choice = course_model_for(spec)
    if choice is None:
        raise CourseModelUnavailable(missing_paragraph(spec, _own_time(spec, device)))
    try:
        return open_course_model(choice, device)
    except CheckpointFetchError as error:
        raise CourseModelUnavailable(error.paragraph(
            f"set use_course_models = False in the parameters cell to train your own ({spec.key}: "
            f"{_own_time(spec, device)} on this device)")) from None


def open_record(spec: RunSpec, use_course_models: bool, data_root=None) -> dict:
    """The record a notebook shows for ``spec``: that of the course's model standing for it (no weights needed),
    else ``spec``'s own (:func:`.runs.get_record`: trained when missing, as the plan said)."""
    if not use_course_models:
        return get_record(spec, data_root=data_root)
    choice = course_model_for(spec)
    if choice is None:
        raise CourseModelUnavailable(missing_paragraph(spec, _own_time(spec, None)))
    return choice.record


def available(groups: dict[str, dict[str, RunSpec]], use_course_models: bool) -> dict[str, dict[str, RunSpec]]:
    """The groups of runs (e.g. a comparison per data set) a notebook can open: all of them when it trains its own;
    with the course's models, those the course has every model of, each run replaced by the run of record that
    stands for it (one study per group: :func:`.course_models.course_models_for`), the others named in one line
    (none at all: :class:`.course_models.CourseModelUnavailable`)."""
    if not use_course_models:
        return groups
    kept, missing = {}, None
    for name, specs in groups.items():
        choices = course_models_for(list(specs.values()))
        if None in choices:
            missing = missing or next(s for s, c in zip(specs.values(), choices) if c is None)
        else:
            kept[name] = {label: choice.spec for label, choice in zip(specs, choices)}
    if not kept:
        raise CourseModelUnavailable(missing_paragraph(missing, _own_time(missing, None)))
    if len(kept) < len(groups):
        print(f"Left out: {', '.join(n for n in groups if n not in kept)}: the course has no trained models for "
              "them (use_course_models = False trains your own; the plan above says how long).", flush=True)
    return kept

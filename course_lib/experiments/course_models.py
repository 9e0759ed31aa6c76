"""The course's trained models: what an analysis notebook opens by default, whatever profile and data it runs with.

A student on Colab wants to look inside a ViT trained for hours, not to train one. So a notebook asks for "the
course's ViT-Lite on CIFAR-10" (:func:`course_model`), and gets the model listed in the checkpoints' manifest
(``checkpoints_of_record/manifest.json``, fetched at the release when the package has no copy): it is identified by
its manifest entry, the SHA-256 of its file and the record of record it came from (``course_lib/records/``), never
by the student's profile or data. :func:`open_course_model` loads it (:func:`.of_record.course_weights`) and says in
one line which model it opened, where it was trained and on what. The notebook then evaluates and visualises it on
whatever data the student has.

**Which model stands for a request.** A run that is itself of record stands for itself (:func:`course_model_for`:
the same key in the manifest, so notebook 04 opens each seed of a study as that seed). Otherwise the request is a
*role* (a model on a data set, on the full budget or on few images per class, alone or as one side of a DRLoc
pair), and a study stands in with the run its own plan names for that role (:func:`.plan.comparison_specs`,
:func:`.plan.drloc_specs`: seed 0, at the budget the study chose for it; on few images, the fewest per class at
which that study keeps them all). Runs shown together (a comparison, a DRLoc pair: :func:`course_models_for`) all
come from one study, at one size, so a notebook never pairs two studies' models, and a DRLoc pair's plain ViT is that pair's, at the pair's budget.
Among the studies that have every run asked for: a *complete* one first (it keeps both the ViT and ResNet-18 at its
full budget on that data set), then the one with the newest record (its ``environment.date``). So a later study
whose checkpoints join the manifest replaces the earlier one once it is complete, without a change to any notebook;
a seed other than 0 is only ever opened as itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import DATASETS, Preprocessing
from ..history import History
from ..models import create_model, model_label
from ..profiles import PROFILES, Profile, get_profile
from ..runtime import get_device
from . import of_record
from .plan import comparison_specs, drloc_specs
from .records import RECORDS_OF_RECORD, read_record
from .runs import RunResult, RunSpec

__all__ = ["CourseModel", "CourseModelUnavailable", "course_manifest", "course_model", "course_model_for",
           "course_models_for", "open_course_model", "missing_paragraph"]

DEFAULT_DRLOC = {"drloc_weight": 0.5, "drloc_pairs": 64, "drloc_tokens": "pre_norm"}


@dataclass(frozen=True)
class CourseModel:
    """One of the course's trained models: its manifest ``key``, manifest ``entry`` and record of record."""

    key: str
    entry: dict
    record: dict

    @property
    def spec(self) -> RunSpec:
        return RunSpec.from_dict(self.record["spec"])

    @property
    def at_hand(self) -> bool:
        """Whether it loads without a download (the repository's copy or the fetch cache)."""
        digest = self.entry["identity_hash"]
        return any(of_record.manifest_entry(self.key, digest, folder) is not None
                   for folder in (of_record.OF_RECORD_DIR, of_record.fetch_cache()))

    def describe(self) -> str:
        r, sha = self.record, self.entry["sha256"]
        return (f"the course's {r['label']} {self.key} (checkpoint SHA-256 {sha[:12]}..., record "
                f"course_lib/records/{self.key}.json: {r['final_test_acc']:.1f} % on {r['test_images']:,} test "
                f"images), trained on {r['environment'].get('device', 'an unrecorded device')} on "
                f"{r['train_images']:,} images of {r['train_source']}")


def course_manifest() -> dict:
    """The manifest that lists the course's models: the repository's, else the cache's entries joined with the
    release's (fetched once per process; when it cannot be fetched, the cache's alone, which may be empty)."""
    local = of_record.read_manifest(of_record.OF_RECORD_DIR)
    if local:
        return local
    cached = of_record.read_manifest(of_record.fetch_cache()) if of_record.fetch_cache().is_dir() else {}
    if of_record.fetch_enabled() and not of_record.offline():
        try:
            return {**cached, **of_record._remote_manifest(of_record.checkpoints_url())}
        except of_record._Refused:
            pass                        # the fetch itself says why, when a notebook asks for the model
    return cached


def _course_models() -> list[CourseModel]:
    """Every manifest entry whose record of record is there and matches it."""
    found = []
    for key, entry in course_manifest().items():
        path = RECORDS_OF_RECORD / f"{key}.json"
        if of_record._entry_problem(entry) is not None or not path.is_file():
            continue
        record = read_record(path)
        if record is not None and record.get("identity_hash") == entry["identity_hash"]:
            found.append(CourseModel(key, entry, record))
    return found


@dataclass(frozen=True)
class _Role:
    """What a notebook asks for: a model of a kind, on the full budget or few images, alone or in a DRLoc pair."""

    model: str
    dataset: str
    drloc: bool = False
    few_images: bool = False
    in_pair: bool = False           # the plain ViT of a DRLoc pair (the pair's budget, not the comparison's)

    def planned(self, study: Profile, n: int | None = None) -> RunSpec | None:
        """The run ``study`` plans for this role (seed 0; on few images: ``n`` per class), or None (no such run,
        or the study's budget is not chosen)."""
        n = n if self.few_images else None
        try:
            if self.drloc or self.in_pair:
                return drloc_specs(study, self.dataset, n).get("ViT+DRLoc" if self.drloc else "ViT")
            return comparison_specs(study, self.dataset, n).get(model_label(self.model))
        except RuntimeError:            # the study has not chosen its budget yet (.budget_rule.tuned_budget)
            return None


def _role(spec: RunSpec, in_pair: bool = False) -> _Role | None:
    """The role ``spec`` plays (None for a DRLoc run with other options than the default ones)."""
    if spec.drloc and any(getattr(spec, k) != v for k, v in DEFAULT_DRLOC.items()):
        return None
    return _Role(spec.model, spec.dataset, spec.drloc, spec.train_per_class is not None, in_pair and not spec.drloc)


def _stand_ins(every: list[CourseModel], roles: list[_Role]) -> list[CourseModel] | None:
    """The course's models for ``roles``, all from one study (see the module docstring), or None."""
    by_key = {c.key: c for c in every}
    options = []
    for name in sorted({c.record["spec"]["profile"] for c in every}):
        if name not in PROFILES:
            continue
        study = get_profile(name)
        # On few images: the fewest per class at which the study keeps every run asked for (one size per group).
        sizes = sorted({c.record["spec"]["train_per_class"] for c in every if c.record["spec"]["profile"] == name
                        and c.record["spec"].get("train_per_class")}) if any(r.few_images for r in roles) else [None]
        planned = next((p for p in ([role.planned(study, n) for role in roles] for n in sizes)
                        if all(spec is not None and spec.key in by_key for spec in p)), None)
        if planned is None:
            continue
        chosen = [by_key[spec.key] for spec in planned]
        both = [_Role(m, roles[0].dataset).planned(study) for m in ("vit", "resnet18")]
        complete = all(spec is not None and spec.key in by_key for spec in both)
        newest = max(c.record["environment"].get("date", "") for c in chosen)
        options.append((complete, newest, name, chosen))
    return max(options, key=lambda o: o[:3])[3] if options else None


def course_model(model: str, dataset: str = "cifar10", drloc: bool = False,
                 few_images: bool = False) -> CourseModel | None:
    """The course's trained model of this kind (see the module docstring), or None when the course has none."""
    found = _stand_ins(_course_models(), [_Role(model, dataset, drloc, few_images)])
    return found[0] if found else None


def course_models_for(specs: list[RunSpec]) -> list[CourseModel | None]:
    """The course's models that stand for runs a notebook shows together (a comparison, a DRLoc pair), one per
    run: each run that is of record stands for itself; the others, runs of seed 0 of a profile that notebooks
    train, get the models one study plans for their roles (in a group with a ViT + DRLoc, the plain ViT is that
    pair's), or None all together when no study has them all; a run of a study, which its own driver trains, is
    only ever opened as itself."""
    every = _course_models()
    by_key = {c.key: c for c in every}
    found: list[CourseModel | None] = [by_key.get(spec.key) for spec in specs]
    asked = [i for i, (spec, c) in enumerate(zip(specs, found))
             if c is None and spec.seed == 0 and spec.profile.notebooks_train]
    pair = any(spec.drloc for spec in specs)
    roles = [_role(specs[i], pair) for i in asked]
    if asked and None not in roles:
        stand_ins = _stand_ins(every, roles)
        for i, choice in zip(asked, stand_ins or [None] * len(asked)):
            found[i] = choice
    return found


def course_model_for(spec: RunSpec) -> CourseModel | None:
    """The course's model that stands for the run ``spec`` alone (:func:`course_models_for`)."""
    return course_models_for([spec])[0]


def open_course_model(choice: CourseModel, device: str | torch.device | None = None) -> RunResult:
    """Load the course's model ``choice`` (from the repository, the cache, or fetched at the release) and say so
    in one line. Raises :class:`.of_record.CheckpointFetchError` when it cannot be had: nothing is trained."""
    spec = choice.spec
    model = create_model(spec.model, num_classes=DATASETS[spec.dataset].num_classes)
    state, where = of_record.course_weights(choice.key, choice.entry["identity_hash"])
    of_record._load_state(model, state)
    print(f"Opened {choice.describe()}; weights {where}, SHA-256 checked.", flush=True)
    record = choice.record
    return RunResult(spec, model.to(get_device(device)).eval(), History.from_dict(record["history"]), record,
                     Preprocessing.from_dict(record["preprocess"]))


def missing_paragraph(spec: RunSpec, own_time: str) -> str:
    """Why a notebook cannot open the course's model for ``spec``, and the two ways on (one paragraph)."""
    return (f"The course has no trained {model_label(spec.model, spec.drloc)} on {DATASETS[spec.dataset].title}"
            + (f" with {spec.train_per_class} images per class" if spec.train_per_class else "")
            + f" in its manifest ({of_record.checkpoints_url()}{of_record.MANIFEST} or {Path('checkpoints_of_record')}"
            f"/): nothing was trained. Two ways on: (1) choose what the course has (CIFAR-10, ViT-Lite and ResNet-18, "
            f"the course's recipe); (2) set use_course_models = False in the parameters cell to train your own "
            f"({spec.key}: {own_time} on this device).")


class CourseModelUnavailable(RuntimeError):
    """The course's model a notebook asked for cannot be had (no such model, or its fetch failed): the message is
    one paragraph with what failed and the two ways on. Nothing was trained in its place."""

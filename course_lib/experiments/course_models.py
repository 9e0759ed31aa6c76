"""The course's trained models: what an analysis notebook opens by default, whatever profile and data it runs with.

A student on Colab wants to look inside a ViT trained for hours, not to train one. So a notebook asks for "the
course's ViT-Lite on CIFAR-10" (:func:`course_model`), and gets the model listed in the checkpoints' manifest
(``checkpoints_of_record/manifest.json``, fetched at the release when the package has no copy): it is identified by
its manifest entry, the SHA-256 of its file and the record of record it came from (``course_lib/records/``), never
by the student's profile or data. :func:`open_course_model` loads it (:func:`.of_record.course_weights`) and says in
one line which model it opened, where it was trained and on what. The notebook then evaluates and visualises it on
whatever data the student has.

**Which model stands for a request.** A run that is itself of record stands for itself (:func:`course_model_for`:
the same key in the manifest, so notebook 04 opens each seed of a study as that seed). Otherwise, among the
manifest's entries whose record of record is for the same model, data set and extra loss (DRLoc with the default
λ 0.5, m 64, tokens before the final norm), trained on the full budget of its profile (``few_images=False``) or on
the fewest images per class among them (``few_images=True``): those of a *complete* study first (one that keeps
both the ViT and ResNet-18 at its full budget on that data set, so a notebook never pairs two studies' models),
then the study with the newest record (its ``environment.date``), then the lowest seed. So a later study whose
checkpoints join the manifest replaces the earlier one once it is complete, without a change to any notebook; a
seed other than 0 is only ever opened as itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import DATASETS, Preprocessing
from ..history import History
from ..models import create_model, model_label
from ..runtime import get_device
from . import of_record
from .records import RECORDS_OF_RECORD, read_record
from .runs import RunResult, RunSpec

__all__ = ["CourseModel", "CourseModelUnavailable", "course_manifest", "course_model", "course_model_for",
           "open_course_model", "missing_paragraph"]

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


def _matches(spec: dict, model: str, dataset: str, drloc: bool, few_images: bool) -> bool:
    if (spec.get("model"), spec.get("dataset"), bool(spec.get("drloc"))) != (model, dataset, drloc):
        return False
    if drloc and any(spec.get(k) != v for k, v in DEFAULT_DRLOC.items()):
        return False
    return (spec.get("train_per_class") is not None) == few_images


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


def course_model(model: str, dataset: str = "cifar10", drloc: bool = False,
                 few_images: bool = False) -> CourseModel | None:
    """The course's trained model of this kind (see the module docstring), or None when the course has none."""
    return _stand_in(_course_models(), model, dataset, drloc, few_images)


def _stand_in(every: list[CourseModel], model: str, dataset: str, drloc: bool,
              few_images: bool) -> CourseModel | None:
    """:func:`course_model` among ``every`` (the manifest's models, read once by the caller)."""
    full = {(c.record["spec"]["profile"], c.record["spec"]["model"]) for c in every
            if _matches(c.record["spec"], c.record["spec"]["model"], dataset, False, False)}
    complete = {profile for profile, _ in full if {(profile, "vit"), (profile, "resnet18")} <= full}
    found = [c for c in every if _matches(c.record["spec"], model, dataset, drloc, few_images)]
    if few_images and found:
        fewest = min(c.record["spec"]["train_per_class"] for c in found)
        found = [c for c in found if c.record["spec"]["train_per_class"] == fewest]
    newest: dict[str, str] = {}
    for c in found:
        profile, date = c.record["spec"]["profile"], c.record["environment"].get("date", "")
        newest[profile] = max(newest.get(profile, ""), date)
    found.sort(key=lambda c: (c.record["spec"]["profile"] in complete, newest[c.record["spec"]["profile"]],
                              -c.record["spec"]["seed"], c.record["environment"].get("date", "")), reverse=True)
    return found[0] if found else None


def course_model_for(spec: RunSpec) -> CourseModel | None:
    """The course's model that stands for the run ``spec`` a notebook would otherwise train: ``spec`` itself when it
    is of record; else, for seed 0 of a profile that notebooks train, the course's model of the same model, data set
    and extra loss, on the full budget or on few images per class (``spec.train_per_class`` set); else None (a run
    of a study, which its own driver trains, is only ever opened as itself)."""
    every = _course_models()
    exact = next((c for c in every if c.key == spec.key), None)
    if exact is not None or spec.seed != 0 or not spec.profile.notebooks_train:
        return exact
    if spec.drloc and any(getattr(spec, k) != v for k, v in DEFAULT_DRLOC.items()):
        return None
    return _stand_in(every, spec.model, spec.dataset, spec.drloc, spec.train_per_class is not None)


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

"""One training run: what it is (:class:`RunSpec`), its budget and identity, and :func:`train_run`.

A run's *identity* holds everything that changes its result: the model's configuration, the recipe with every
hyper-parameter, the extra loss, the data (which copy, how many images, a fingerprint of the pixels), the subset
and seed, and the preprocessing. A checkpoint is named by the run's key and the hash of its identity, so a model
trained on other data or with other settings is never reused as this run: it is trained afresh (the other
checkpoint stays where it is). A record whose identity differs is replaced, and the message says what differed.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..data import (DATASETS, DataUnavailableError, Preprocessing, check_dataset_name, hold_out, load_dataset, subset,
                    take)
from ..drloc import DRLocLoss
from ..files import CorruptFileError, file_lock, quarantine
from ..models import MODELS, accepts, count_parameters, create_model, model_label
from ..profiles import PROFILES, Profile
from ..runtime import device_name, get_device, precision, seed_everything
from ..settings import workdir
from ..recipes import RECIPES, steps_per_epoch
from ..checkpoints import CheckpointMismatchError, epochs_saved, fit_identity, identity_hash
from ..history import History
from ..train import fit, train_step
from .provenance import environment_summary
from .of_record import load_fp16
from .records import Record, find_record, write_record

if TYPE_CHECKING:     # names used only in annotations
    from ..data import ImageSet
    from ..recipes import TrainConfig

# The validation split's draw (Profile.validation_per_class): one fixed seed, apart from every run's seed.
VALIDATION_SEED = 20_231_000

__all__ = ["VALIDATION_SEED", "RunSpec", "RunResult", "PreparedRun", "training_config", "load_data", "run_identity",
           "prepare", "execute", "train_run", "get_record", "measure_throughput", "estimate_seconds"]


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``train_per_class`` overrides the profile's data budget (for the small-data curve).

    ``recipe`` None means the profile's recipe: ``profile.comparison_recipe`` without DRLoc settings,
    the caller picks ``profile.drloc_recipe`` for DRLoc comparisons (see :mod:`.plan`).
    """

    model: str
    dataset: str
    profile: Profile
    drloc: bool = False
    drloc_weight: float = 0.5
    drloc_pairs: int = 64
    drloc_schedule: str = "constant"
    drloc_tokens: str = "pre_norm"
    train_per_class: int | None = None
    recipe: str | None = None
    epochs: int | None = None
    seed: int = 0
    lr: float | None = None         # overrides the recipe's learning rate (the study's tuning grid)

    def __post_init__(self) -> None:
        if not isinstance(self.profile, Profile):
            raise TypeError(f"RunSpec.profile must be a Profile, got {self.profile!r}: pass "
                            f"course_lib.profiles.get_profile({self.profile!r}).")
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}. Available: {sorted(MODELS)}.")
        check_dataset_name(self.dataset)
        if self.recipe is None:
            object.__setattr__(self, "recipe", self.profile.comparison_recipe)
        if self.recipe not in RECIPES:
            raise ValueError(f"Unknown recipe {self.recipe!r}. Choose one of {sorted(RECIPES)}.")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise ValueError(f"RunSpec.epochs must be a whole number >= 1 or None, got {self.epochs!r}.")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not math.isfinite(self.lr) or self.lr <= 0):
            raise ValueError(f"RunSpec.lr must be a finite number > 0 or None, got {self.lr!r}.")
        # One run, one key: a per-class budget equal to the profile's default (or to the whole split) is no override.
        n, info = self.train_per_class, DATASETS[self.dataset]
        if n is not None and (n == self.profile.train_per_class(info.num_classes)
                              or n * info.num_classes >= info.sizes["train"]):
            object.__setattr__(self, "train_per_class", None)

    @property
    def key(self) -> str:
        """A file-name-safe identifier, e.g. ``cifar10-vit-drloc_l0.5_m64-n100-course-gpu-s0``."""
        parts = [self.dataset, self.model]
        if self.drloc:
            parts.append(f"drloc_l{self.drloc_weight:g}_m{self.drloc_pairs}"
                         + ("_official" if self.drloc_schedule == "official" else "")
                         + ("_postnorm" if self.drloc_tokens == "post_norm" else ""))
        if self.train_per_class is not None:
            parts.append(f"n{self.train_per_class}")
        if self.epochs is not None:
            parts.append(f"e{self.epochs}")
        if self.lr is not None:
            parts.append(f"lr{self.lr:g}")
        parts += [self.recipe, self.profile.name, f"s{self.seed}"]
        return "-".join(parts)

    @property
    def label(self) -> str:
        """A short human name: "ViT", "ViT+DRLoc", "ResNet-18" (from :data:`course_lib.models.MODEL_LABELS`)."""
        return model_label(self.model, self.drloc)

    def to_dict(self) -> dict:
        """Plain values; ``lr`` only when set, so runs made before it existed keep their identity."""
        d = {**asdict(self), "profile": self.profile.name}
        if d["lr"] is None:
            del d["lr"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(**{**d, "profile": PROFILES[d["profile"]]})


@dataclass
class RunResult:
    """A trained (or loaded) run: the model in eval mode, its history and record, and the preprocessing its
    inputs need (``preprocess(uint8 images) -> model input``)."""

    spec: RunSpec
    model: nn.Module
    history: History
    record: Record
    preprocess: Preprocessing


# --------------------------------------------------------------------------------------------------------------
# Budget and data

def _default_per_class(spec: RunSpec) -> int:
    info = DATASETS[spec.dataset]
    return spec.profile.train_per_class(info.num_classes) or info.sizes["train"] // info.num_classes


def training_config(spec: RunSpec, n_train: int | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a run: its recipe with the profile's epochs (and, for the course recipe, batch).

    Under a profile with ``equal_steps``, a run on fewer images per class than the profile's default gets the same
    number of **optimiser steps** as the full-budget run: its epochs are that step count divided by its steps per
    epoch, rounded. Otherwise (the second study's rule: the recipe fixed across data sizes)
    every size trains the same epochs, so compute grows with the data. ``n_train`` is the number of training
    images actually loaded (default: the plan's).
    """
    recipe = RECIPES[spec.recipe]
    if spec.lr is not None:
        recipe = replace(recipe, lr=spec.lr, min_lr=min(recipe.min_lr, spec.lr / 100))
    epochs = spec.epochs or spec.profile.epochs or recipe.epochs
    batch = spec.profile.batch_size if spec.recipe == "course" else recipe.batch_size
    if spec.epochs is None and spec.train_per_class is not None and spec.profile.equal_steps:
        classes = DATASETS[spec.dataset].num_classes
        full_steps = epochs * steps_per_epoch(_default_per_class(spec) * classes, batch)
        n = n_train if n_train is not None else spec.train_per_class * classes
        epochs = max(1, round(full_steps / steps_per_epoch(n, batch)))
    # About 15 evaluations per run (the profile's number), whatever its length: evaluation is a large part of a
    # CPU run.
    return replace(recipe.with_epochs(epochs), batch_size=batch, seed=spec.seed,
                   eval_every=max(1, round(epochs / spec.profile.evaluations)))


def load_data(spec: RunSpec, data_root: str | Path | None = None) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """(train, test, validation) of a run within its profile's budget, from the profile's copy of the data
    (``Profile.data_source``). Train: per class, stratified, drawn with the run's seed; test: random.

    Validation (profiles with ``validation_per_class``, else None): that many images of every class held out of
    the official training split with :data:`VALIDATION_SEED`, the same for every run and every seed; training
    subsets are drawn from the rest, so no training subset ever touches them. With fewer images per class than
    the budget asks (the committed samples), every image of that class is used.
    """
    source = spec.profile.data_source
    train = load_dataset(spec.dataset, "train", root=data_root, source=source)
    test = load_dataset(spec.dataset, "test", root=data_root, source=source)
    _refuse_samples_for_full_data(spec, train, test)
    val = None
    if spec.profile.validation_per_class is not None:
        train, val = hold_out(train, spec.profile.validation_per_class, seed=VALIDATION_SEED)
    per_class = spec.train_per_class or spec.profile.train_per_class(DATASETS[spec.dataset].num_classes)
    if per_class is not None:
        train = subset(train, per_class, seed=spec.seed, allow_fewer=True)
    return train, take(test, spec.profile.test_images, seed=spec.seed), val


def _refuse_samples_for_full_data(spec: RunSpec, train: ImageSet, test: ImageSet) -> None:
    """A profile that asks for the full data sets never trains on fewer images under its own name: it stops here,
    before any training, and says what failed and the three ways on."""
    if not spec.profile.full_data:
        return
    sizes = DATASETS[spec.dataset].sizes
    short = [f"{d.split} has {len(d):,} of {sizes[d.split]:,} images ({d.source})"
             for d in (train, test) if len(d) < sizes[d.split]]
    if short:
        title = DATASETS[spec.dataset].title
        raise DataUnavailableError(
            f"Profile '{spec.profile.name}' trains on the full {title}, but only a part of it could be loaded: "
            f"{'; '.join(short)}. Nothing was trained. Three ways on: (1) restart the runtime (on Colab: Runtime -> "
            "Disconnect and delete runtime, then run all): this process does not ask a host that failed again, a "
            "new one does; (2) keep the data on Google Drive (KEEP_ON_DRIVE = True in "
            "the first cell), so a later session finds it without downloading; (3) train on the committed samples "
            f"on purpose, with profile='{spec.profile.name}-samples' (COURSE_PROFILE={spec.profile.name}-samples): "
            "its runs and records carry that name, so they are never taken for full-data runs.")


def _build(spec: RunSpec, cfg: TrainConfig) -> tuple[nn.Module, list]:
    """The model (seeded initialisation) and its extra losses."""
    seed_everything(spec.seed)
    overrides = {"drop_path": cfg.drop_path} if cfg.drop_path is not None and accepts(spec.model, "drop_path") else {}
    model = create_model(spec.model, num_classes=DATASETS[spec.dataset].num_classes, **overrides)
    extra_losses = [DRLocLoss(dim=model.grid_dim, drloc_weight=spec.drloc_weight, m=spec.drloc_pairs,
                              schedule=spec.drloc_schedule, tokens=spec.drloc_tokens)] if spec.drloc else []
    return model, extra_losses


def run_identity(spec: RunSpec, model: nn.Module, extra_losses: list, cfg: TrainConfig, train: ImageSet,
                 test: ImageSet, val: ImageSet | None = None) -> dict:
    """Everything that changes a run's result (see the module docstring), as plain JSON values, in two layers:
    what :func:`~course_lib.train.fit` needs (:func:`~course_lib.checkpoints.fit_identity`: model, recipe, extra
    losses, the pixels' fingerprints), then what the runner adds: the spec, each data set's copy and size, and the
    preprocessing. The validation split enters only when there is one, so runs without it keep their identity."""
    fitted = fit_identity(model, train, test, cfg, extra_losses, val)
    model_layer = fitted["model"]

    def data(d: ImageSet, name: str) -> dict:
        return {"source": d.source, "images": len(d), "fingerprint": fitted[name]}

    identity = {"spec": spec.to_dict(), "model": {"class": model_layer["class"], **model_layer["config"]},
                "recipe": fitted["config"], "extra_losses": fitted["extra_losses"],
                "train_data": data(train, "train_data"), "test_data": data(test, "test_data"),
                "preprocess": Preprocessing.for_dataset(spec.dataset, cfg.normalize).to_dict()}
    if val is not None:
        identity["val_data"] = data(val, "val_data")
    return identity


def _what_differs(old: dict, new: dict) -> str:
    parts = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(parts) or "nothing recorded"


# --------------------------------------------------------------------------------------------------------------
# How long will it take?

def measure_throughput(model: nn.Module, extra_losses: list, cfg: TrainConfig, train: ImageSet,
                       device: torch.device) -> float:
    """Training images per second of this model on this device: two timed :func:`~course_lib.train.train_step` s
    on one batch (after one warm-up step), on a copy, so the model and its extra losses are left as they were."""
    model, extra_losses = copy.deepcopy(model).to(device).train(), copy.deepcopy(extra_losses)
    for term in extra_losses:
        term.to(device)
    prec = precision(device, cfg.amp)
    params = [p for module in [model, *extra_losses] for p in module.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.0)
    scaler = torch.amp.GradScaler(device.type, enabled=prec.needs_scaler)
    autocast = torch.autocast(device.type, dtype=prec.dtype, enabled=prec.dtype is not None)
    x = Preprocessing.for_dataset(train.dataset, cfg.normalize)(train.images[:cfg.batch_size].to(device))
    y = train.labels[:cfg.batch_size].to(device)
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        train_step(model, (x, y, y), optimizer, scaler, [(1.0, t) for t in extra_losses], autocast=autocast)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return len(x) / (sum(seconds[1:]) / 2)


def estimate_seconds(cfg: TrainConfig, n_train: int, n_test: int, images_per_second: float,
                     n_val: int | None = None) -> float:
    """Expected wall time: every epoch's training images at the measured rate, plus the evaluations (about a
    third of the cost per image of training) and 10 % for everything else. With a validation split (``n_val``),
    each evaluation covers the validation and the training images, and the test set is evaluated once."""
    evaluations = -(-cfg.epochs // cfg.eval_every)
    images = cfg.epochs * steps_per_epoch(n_train, cfg.batch_size) * cfg.batch_size
    evaluated = evaluations * n_test if n_val is None else evaluations * (n_val + n_train) + n_test
    return 1.1 * (images + evaluated / 3) / images_per_second


def _announce(run: PreparedRun, ips: float | None, device: torch.device) -> None:
    """Say what trains now and how long it should take (the same estimate as :meth:`PreparedRun.estimate_seconds`,
    which the study driver prints before it)."""
    cfg, train, test = run.cfg, run.train, run.test
    steps = cfg.epochs * steps_per_epoch(len(train), cfg.batch_size)
    done = run.epochs_done()
    when = "a few seconds" if ips is None else f"about {_duration(run.estimate_seconds(ips, done))}"
    when += f", resuming after epoch {done}" if done else ""
    rate = "" if ips is None else f", {ips:,.0f} img/s measured"
    val = "" if run.val is None else f"; {len(run.val):,} validation images"
    print(f"[{run.spec.key}] training {run.spec.label} now: {train.describe()}; {len(test):,} test images{val}; "
          f"{cfg.epochs} epoch(s), {steps:,} steps on {device_name(device)} ({when}{rate}).", flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------------------------------------
# Training, recording, reusing

def _record(spec: RunSpec, model: nn.Module, history: History, cfg: TrainConfig, identity: dict, train: ImageSet,
            test: ImageSet, device: torch.device, checkpoint: Path, val: ImageSet | None = None) -> Record:
    validation = {} if val is None else {
        "val_images": len(val), "val_source": val.source, "final_val_acc": history.last("val_acc"),
        "best_val_acc": max(a for a in history.val_acc if a is not None),
        "final_train_clean_acc": history.last("train_clean_acc")}
    classes = DATASETS[spec.dataset].num_classes
    return Record(
        key=spec.key, label=spec.label, identity=identity, identity_hash=identity_hash(identity),
        history=history.to_dict(), environment=environment_summary(device), final_test_acc=history.final_test_acc,
        best_test_acc=max(a for a in history.test_acc if a is not None), train_seconds=sum(history.seconds),
        epochs=len(history), steps=history.steps[-1], train_images=len(train), num_classes=classes,
        images_per_class=len(train) // classes, test_images=len(test), train_source=train.source,
        test_source=test.source, parameters=count_parameters(model),
        images_per_second=len(history) * steps_per_epoch(len(train), cfg.batch_size) * cfg.batch_size
        / max(1e-9, sum(history.seconds)), checkpoint=checkpoint.name, **validation)


@dataclass
class PreparedRun:
    """A run with its data loaded, its model built and its identity known, ready for :func:`execute`."""

    spec: RunSpec
    train: ImageSet
    test: ImageSet
    cfg: TrainConfig
    model: nn.Module
    extra_losses: list
    identity: dict
    checkpoint: Path
    val: ImageSet | None = None

    @property
    def identity_hash(self) -> str:
        return identity_hash(self.identity)

    def epochs_done(self) -> int:
        """The epochs its checkpoint already holds: a run stopped (by the end of a session, say) resumes there."""
        return epochs_saved(self.checkpoint, self.model, fit_identity(self.model, self.train, self.test, self.cfg,
                                                                      self.extra_losses, self.val))

    def estimate_seconds(self, images_per_second: float, epochs_done: int = 0) -> float:
        """The time the epochs still to train take (all of them when ``epochs_done`` is 0)."""
        whole = estimate_seconds(self.cfg, len(self.train), len(self.test), images_per_second,
                                 None if self.val is None else len(self.val))
        return whole * (self.cfg.epochs - epochs_done) / self.cfg.epochs


def prepare(spec: RunSpec, data_root: str | Path | None = None, root: str | Path | None = None) -> PreparedRun:
    """Load the data of ``spec``, build its model and extra losses (seeded), and work out its identity."""
    train, test, val = load_data(spec, data_root)
    cfg = training_config(spec, len(train))
    model, extra_losses = _build(spec, cfg)
    identity = run_identity(spec, model, extra_losses, cfg, train, test, val)
    folder = Path(root if root is not None else workdir()) / "checkpoints"
    checkpoint = folder / f"{spec.key}-{identity_hash(identity)}.pt"
    return PreparedRun(spec, train, test, cfg, model, extra_losses, identity, checkpoint, val)


def _set_aside(run: PreparedRun, error: Exception) -> None:
    """Move the unusable checkpoint at the run's path aside, say why and where, and rebuild the model afresh.

    fit()'s advice for a checkpoint of another run ("Pass resume=False ...") is for callers of fit(); here the
    file is simply moved aside, as a damaged one is."""
    why = str(error).split(" Pass resume=False")[0]
    print(f"{why}\nMoved it to {quarantine(run.checkpoint).name}; training {run.spec.key} afresh.", flush=True)
    run.model, run.extra_losses = _build(run.spec, run.cfg)


def _fit(run: PreparedRun, device: torch.device, progress: bool, finished: bool,
         images_per_second: float | None) -> History:
    """fit(); a damaged checkpoint, or one that holds another run, is moved aside (and named) and the run trained
    afresh."""
    if not finished and progress:
        ips = images_per_second
        if ips is None and run.cfg.epochs * len(run.train) > 20 * run.cfg.batch_size:
            ips = measure_throughput(run.model, run.extra_losses, run.cfg, run.train, device)
        _announce(run, ips, device)
    try:
        return fit(run.model, run.train, run.test, run.cfg, val_data=run.val, extra_losses=run.extra_losses,
                   checkpoint=run.checkpoint, device=device, progress=progress)
    except (CorruptFileError, CheckpointMismatchError) as error:
        _set_aside(run, error)
        return fit(run.model, run.train, run.test, run.cfg, val_data=run.val, extra_losses=run.extra_losses,
                   checkpoint=run.checkpoint, device=device, progress=progress)


def execute(run: PreparedRun, device: str | torch.device | None = None, progress: bool = True,
            records_folder: str | Path | None = None, images_per_second: float | None = None) -> RunResult:
    """Train a prepared run (or load it when this very run is finished) and record it; see :func:`train_run`."""
    device = get_device(device)
    root = run.checkpoint.parents[1]
    spec = run.spec
    with file_lock(run.checkpoint, f"The run {spec.key}"):
        previous = find_record(spec.key, root)
        same = previous is not None and previous[0].identity_hash == run.identity_hash
        if same and not run.checkpoint.exists() and load_fp16(run.model, spec.key, run.identity_hash):
            record = previous[0]          # the course's checkpoint of record: its weights, its record
            return RunResult(spec, run.model.to(device).eval(), History.from_dict(record.history), record,
                             Preprocessing.from_dict(record.preprocess))
        history = _fit(run, device, progress, same and run.checkpoint.exists(), images_per_second)
        record = _record(spec, run.model, history, run.cfg, run.identity, run.train, run.test, device,
                         run.checkpoint, run.val)
        if same and all(record.history.get(k) == v for k, v in previous[0].history.items()):
            # loaded from a finished checkpoint, nothing trained now: the record of who trained it, when and where
            if previous[0].history == record.history:
                record = previous[0]
            else:                         # ... upgraded with the series an older record lacks (val_correct, say)
                record = replace(record, environment=previous[0].environment)
                write_record(record, root, records_folder)
        else:
            if previous is not None and not same:
                print(f"[{spec.key}] replacing the record at {previous[1]}: it was made with other settings or "
                      f"data (differs: {_what_differs(previous[0].identity, run.identity)}).",
                      flush=True)
            write_record(record, root, records_folder)
    return RunResult(spec, run.model.eval(), history, record, Preprocessing.from_dict(record.preprocess))


def train_run(spec: RunSpec, data_root: str | Path | None = None, device: str | torch.device | None = None,
              root: str | Path | None = None, progress: bool = True,
              records_folder: str | Path | None = None) -> RunResult:
    """Train ``spec`` (or load it when this very run is finished) and record it in ``records/<key>.json``.

    Args:
        data_root: the data folder (default ``$COURSE_DATA_ROOT`` or ``./data``).
        root: where ``checkpoints/`` and ``records/`` go (default :func:`course_lib.settings.workdir`).
        records_folder: write the record there instead of ``<root>/results`` (e.g. ``course_lib/records``).

    Before training it says so, with an estimate of the time. Two processes asking for the same run never train
    it twice at once: the second waits for the first, then loads its result.
    """
    return execute(prepare(spec, data_root, root), device, progress, records_folder)


def get_record(spec: RunSpec, data_root: str | Path | None = None, root: str | Path | None = None,
               train_missing: bool = True) -> Record | None:
    """The stored record of ``spec`` (your ``records/`` first, then the course's records of record); if there is
    none, train the run now (``train_missing``) or return None."""
    found = find_record(spec.key, root)
    if found is not None:
        return found[0]
    return train_run(spec, data_root=data_root, root=root).record if train_missing else None

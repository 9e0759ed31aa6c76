"""What a notebook will train before it trains anything: :func:`training_plan`, the first thing each one prints.

A student on Colab decides whether to spend half an hour of GPU time before the first run starts, not run by run.
So each notebook lists the runs it needs: those that have a record already (loaded, seconds) and those it will
train now, with the total expected time on this hardware. The time comes from the run's steps and a conservative
throughput per model and device (below the speeds measured on the course's machines); each run measures its own
speed just before it starts and says so again.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from ..data import DATASETS, load_samples
from ..recipes import steps_per_epoch
from ..runtime import device_name, get_device
from ..settings import workdir
from .of_record import manifest_entry
from .plan import Markdown, notebook_specs
from .records import find_record
from .runs import training_config

if TYPE_CHECKING:     # names used only in annotations
    from ..profiles import Profile
    from .runs import RunSpec

__all__ = ["CONSERVATIVE_IMAGES_PER_SECOND", "expected_seconds", "has_weights", "at_hand", "training_plan"]

# Training images per second, conservative. Measured on the course's machines: a 2-core CPU (fp32) runs ViT-Lite at
# 110-140, ViT-Lite + DRLoc at 110, ResNet-18 at 90-118 img/s (benchmarks/ and the study's records); a T4 runs
# them in mixed precision at several thousand. Unknown models count as the slowest.
CONSERVATIVE_IMAGES_PER_SECOND = {
    "cpu": {"vit": 60.0, "vit_paper": 25.0, "resnet18": 30.0, "hybrid": 30.0},
    "cuda": {"vit": 1500.0, "vit_paper": 800.0, "resnet18": 1200.0, "hybrid": 800.0},
}


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
    return 1.2 * (images + evaluations * test / 3) / rate


def has_weights(spec: RunSpec, record: dict) -> bool:
    """Whether the trained model of ``record`` is at hand: a checkpoint of record, or a checkpoint trained here."""
    digest = record.get("identity_hash", "")
    return (manifest_entry(spec.key, digest) is not None
            or (workdir() / "checkpoints" / f"{spec.key}-{digest}.pt").exists())


def at_hand(spec: RunSpec) -> bool:
    """Whether ``spec`` is recorded with its trained weights, so opening it trains nothing."""
    return _ready(spec, needs_models=True)


def _ready(spec: RunSpec, needs_models: bool) -> bool:
    found = find_record(spec.key)
    return found is not None and (not needs_models or has_weights(spec, found[0]))


def _minutes(seconds: float) -> str:
    return "under a minute" if seconds < 60 else f"about {seconds / 60:.0f} min"


def training_plan(notebook: str, profile: Profile, datasets=tuple(DATASETS), dataset: str = "cifar10",
                  device: str | torch.device | None = None, needs_models: bool = True) -> Markdown:
    """The runs ``notebook`` needs under ``profile``: which are at hand (loaded in seconds) and which it will train
    now, with the total expected time on this device. Nothing is trained or loaded here.

    ``needs_models``: the notebook opens the trained models (a run counts as at hand only with its weights: a
    checkpoint of record or one trained here); False: it reads records only (the results notebook).
    """
    dev = get_device(device)
    specs = list(dict.fromkeys(notebook_specs(notebook, profile, tuple(datasets), dataset)))
    absent = [s for s in specs if not _ready(s, needs_models)]
    left_out = [s for s in absent if not s.profile.notebooks_train]     # trained by the profile's own driver
    missing = [s for s in absent if s.profile.notebooks_train]
    total = sum(expected_seconds(s, dev) for s in missing)
    at_hand = "with their trained weights" if needs_models else "recorded"
    lines = [f"**What this notebook trains** (profile '{profile.name}', {device_name(dev)}): {len(specs)} runs, "
             f"{len(specs) - len(absent)} at hand {at_hand} (loaded in seconds)"]
    if left_out:
        lines[0] += (f"; {len(left_out)} not trained yet and left out (profile '{left_out[0].profile.name}' trains "
                     f"its runs with its own driver: {', '.join(s.key for s in left_out)})")
    if not missing:
        lines[0] += "; nothing to train."
        return Markdown(lines[0])
    lines[0] += (f", **{len(missing)} to train now: {_minutes(total)} in all** (a conservative estimate; each run "
                 "measures its speed and says so before it starts).")
    lines += [f"- {s.key}: {_minutes(expected_seconds(s, dev))}" for s in missing[:12]]
    if len(missing) > 12:
        lines.append(f"- … and {len(missing) - 12} more")
    return Markdown("\n".join(lines))

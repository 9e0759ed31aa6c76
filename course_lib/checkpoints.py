"""Checkpoints of :func:`course_lib.train.fit`: what identifies a run, when a checkpoint may be resumed, and how it
is written.

A checkpoint stores the run's *identity* (:func:`fit_identity`: the model's class and configuration, the recipe, the
extra losses and a fingerprint of every image of the training and test data). It is resumed only by a run with the
same identity; anything else gets :class:`CheckpointMismatchError` naming what differs, never a silent restart or a
mixed run. It is written atomically, so an interruption leaves the previous one intact.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn as nn

from .files import CorruptFileError, atomic_torch_save, safe_torch_load
from .models import config_dict

if TYPE_CHECKING:     # names used only in annotations
    from .data import ImageSet
    from .recipes import TrainConfig

__all__ = ["CheckpointMismatchError", "CheckpointSaveError", "model_signature", "data_fingerprint", "fit_identity",
           "settings_text", "identity_hash", "load_weights", "load_resumable", "epochs_saved", "save_checkpoint"]


class CheckpointMismatchError(ValueError):
    """A checkpoint was made by another model, recipe, data set or extra loss than the run that would resume it."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (a full disk, a read-only folder); the message names the folder and its
    free space."""


def model_signature(model: nn.Module) -> dict:
    """What identifies an architecture in a checkpoint: its class and configuration."""
    config = config_dict(model)
    if config is None:   # a foreign model: fall back on parameter names and shapes
        config = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"class": type(model).__name__, "config": config}


def data_fingerprint(data: ImageSet | None) -> str | None:
    """:meth:`ImageSet.fingerprint` (None for no data): two copies of a data set agree only if every image does."""
    return None if data is None else data.fingerprint()


def fit_identity(model: nn.Module, train_data: ImageSet, test_data: ImageSet | None, cfg: TrainConfig,
                 extra_losses: Sequence[nn.Module], val_data: ImageSet | None = None) -> dict:
    """Everything that changes what :func:`~course_lib.train.fit` produces (eval_every and the seed included): the
    first layer of a run's identity (the runner adds its own, :func:`course_lib.experiments.runs.run_identity`).
    ``val_data`` enters only when given, so runs without a validation split keep their identity."""
    identity = {"model": model_signature(model), "config": asdict(cfg),
                "extra_losses": [t.identity() for t in extra_losses],
                "train_data": data_fingerprint(train_data), "test_data": data_fingerprint(test_data)}
    if val_data is not None:
        identity["val_data"] = data_fingerprint(val_data)
    return identity


def settings_text(settings: dict | str) -> str:
    """An extra loss's settings (``ExtraLoss.identity()["settings"]``) as the text in which they enter a hash:
    ``name=value!r`` joined by ", ", in their order, the form every identity of record was hashed in."""
    return settings if isinstance(settings, str) else ", ".join(f"{k}={v!r}" for k, v in settings.items())


def _hashed_form(identity: dict) -> dict:
    """``identity`` with each extra loss's settings in their text form (:func:`settings_text`)."""
    terms = identity.get("extra_losses")
    if not isinstance(terms, list):
        return identity
    return {**identity, "extra_losses": [{**t, "settings": settings_text(t["settings"])}
                                         if isinstance(t, dict) and "settings" in t else t for t in terms]}


def identity_hash(identity: dict) -> str:
    """The 12 hex digits that name a run's identity (its checkpoint file, its record's ``identity_hash``)."""
    return hashlib.sha256(json.dumps(_hashed_form(identity), sort_keys=True, default=str).encode()).hexdigest()[:12]


def _describe(signature: dict) -> str:
    config = signature["config"]
    if all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in config.values()):
        return f"{signature['class']} ({len(config)} tensors)"
    return f"{signature['class']}({', '.join(f'{k}={v}' for k, v in config.items())})"


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two nested dicts."""
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _check_signature(saved: dict, model: nn.Module, path: Path) -> None:
    current = model_signature(model)
    if saved != current:
        raise CheckpointMismatchError(
            f"Checkpoint {path} was saved from {_describe(saved)}, but the model given is {_describe(current)}. "
            "Build the same architecture, pass another checkpoint path, or delete the file to start afresh.")


def load_weights(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a :func:`~course_lib.train.fit` checkpoint's model weights into ``model`` (checking it is the same
    architecture)."""
    path = Path(path)
    state = safe_torch_load(path, map_location)
    _check_signature(state["signature"], model, path)
    model.load_state_dict({k: v.to(p.dtype) for (k, v), p in zip(state["model"].items(),
                                                                 model.state_dict().values())})
    return model


def load_resumable(path: Path, model: nn.Module, identity: dict, device: torch.device) -> dict:
    """The checkpoint at ``path`` if this very run (``identity``) made it, else :class:`CheckpointMismatchError`
    naming up to eight differences."""
    state = safe_torch_load(path, device)
    _check_signature(state["signature"], model, path)
    changed = _differences(_hashed_form(state.get("identity", {})), _hashed_form(identity))
    if changed:
        raise CheckpointMismatchError(
            f"Checkpoint {path} was made by another run than this one; what differs (saved -> now): "
            + "; ".join(changed[:8]) + ". Pass resume=False to train afresh (the file is then overwritten), "
            "another checkpoint path, or the same settings and data as before.")
    return state


def epochs_saved(path: Path, model: nn.Module, identity: dict) -> int:
    """How many epochs of this very run (``identity``, :func:`fit_identity`'s) the checkpoint at ``path`` holds,
    which :func:`fit` will not train again: 0 where there is none, it is another run's or it is damaged (what the
    runner then does with it is its business: it moves a damaged one aside)."""
    if not Path(path).exists():
        return 0
    try:
        return int(load_resumable(Path(path), model, identity, torch.device("cpu"))["epoch"]) + 1
    except (CheckpointMismatchError, CorruptFileError):
        return 0


def _free_space(folder: Path) -> str:
    """The free space on the disk that holds ``folder`` (or its nearest existing parent), in words."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f"{shutil.disk_usage(folder).free / 1e9:,.2f} GB free"
    except OSError:
        return "free space unknown"


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: an interruption or a second writer never leaves a partial or mixed checkpoint. A failed write (a full
    disk: torch says ``[enforce fail at inline_container.cc]``; a read-only folder) raises
    :class:`CheckpointSaveError` naming the folder, its free space and the fixes; the old checkpoint is kept."""
    try:
        atomic_torch_save(state, path)
    except torch.cuda.OutOfMemoryError:
        raise
    except (OSError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointSaveError(
            f"Could not save the checkpoint {path.name} in {path.parent} ({_free_space(path.parent)}): "
            f"{type(error).__name__}: {first}. Free some space there (e.g. old checkpoints), point COURSE_WORKDIR "
            "(or checkpoint=) at a folder on a disk with room, or pass checkpoint=None to train without one. "
            "The previous checkpoint, if any, is intact.") from None

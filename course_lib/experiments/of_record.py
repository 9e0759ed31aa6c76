"""Checkpoints of record: the fp16 weights of the models the analysis notebooks open, committed with their records.

A GPU run writes them (:func:`export_fp16`, in parts below 16 MiB so they travel back from a lent machine); the
repository keeps them in ``checkpoints_of_record/`` with a manifest of keys, identity hashes and SHA-256 sums. Any
machine can then re-execute the notebooks without a GPU: :func:`load_fp16` restores a model whose identity matches
its record of record, after checking the sum and the key and identity stored inside the file itself.

Exports into one folder take a lock around writing their parts and the manifest's read-modify-write, so two
processes exporting at once keep every entry. The lock file lives outside the folder
(:func:`course_lib.files.outside_lock_path`): the folder holds only the parts and ``manifest.json``.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
import torch.nn as nn

from ..files import CorruptFileError, atomic_write_bytes, atomic_write_json, file_lock, outside_lock_path, read_json

__all__ = ["OF_RECORD_DIR", "MAX_FILE_BYTES", "MANIFEST", "export_fp16", "load_fp16", "manifest_entry"]

OF_RECORD_DIR = Path(__file__).resolve().parents[2] / "checkpoints_of_record"
MAX_FILE_BYTES = 15 * 2**20      # files that come back from the device: at most 16 MiB each (kept with a margin)
MANIFEST = "manifest.json"


def _restore_advice(folder: Path, key: str) -> str:
    return (f"Export {key} again (run it with `python -m course_lib.experiments run`, or "
            f"`python -m course_lib.experiments.study run` for the study), or restore {folder} from git "
            f"(`git checkout -- {folder.name}`).")


def _read_manifest(folder: Path) -> dict:
    """The manifest of ``folder`` ({} if there is none); one that is not an object of entries is named."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise CorruptFileError(path, f"a JSON {type(manifest).__name__}, not an object of entries",
                               f"Restore {folder} from git (`git checkout -- {folder.name}`) or delete {path} "
                               "and export again.")
    return manifest


def _entry_problem(entry) -> str | None:
    """Why a manifest entry cannot be used (None when it is well formed)."""
    if not isinstance(entry, dict):
        return f"its entry is a {type(entry).__name__}, not an object"
    missing = [k for k in ("identity_hash", "sha256", "parts") if k not in entry]
    if missing:
        return f"its entry has no {', '.join(missing)}"
    parts = entry["parts"]
    if not (isinstance(parts, list) and parts and all(isinstance(p, str) and "/" not in p for p in parts)):
        return f"its entry's parts {parts!r} are not a list of file names"
    return None


def export_fp16(model: nn.Module, record: dict, out: str | Path) -> list[Path]:
    """The model's state dict in float16 under ``out`` (split into parts below 16 MiB), entered in the folder's
    manifest with its record's key, identity hash and the SHA-256 of the whole; the file itself holds the key and
    identity hash too. Concurrent exports into one folder are serialised (see the module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = record["key"]
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"key": key, "identity_hash": record["identity_hash"], "model": state}, buffer)
    data = buffer.getvalue()
    parts = [data[i:i + MAX_FILE_BYTES] for i in range(0, len(data), MAX_FILE_BYTES)]
    paths = [out / (f"{key}.fp16.pt" + (f".part{i}" if len(parts) > 1 else "")) for i in range(len(parts))]
    with file_lock(outside_lock_path(out / MANIFEST), f"An export into {out}"):
        for path, part in zip(paths, parts):
            atomic_write_bytes(path, part)
        manifest = _read_manifest(out)
        manifest[key] = {"identity_hash": record["identity_hash"], "sha256": hashlib.sha256(data).hexdigest(),
                         "parts": [p.name for p in paths], "bytes": len(data)}
        atomic_write_json(out / MANIFEST, manifest)
    return paths


def manifest_entry(key: str, identity_hash: str, folder: str | Path | None = None) -> dict | None:
    """The manifest's entry for ``key`` if it is well formed, for this identity, and every part is on disk (with
    the recorded size in all), else None."""
    folder = Path(folder if folder is not None else OF_RECORD_DIR)
    entry = _read_manifest(folder).get(key)
    if _entry_problem(entry) is not None or entry["identity_hash"] != identity_hash:
        return None
    paths = [folder / name for name in entry["parts"]]
    if not all(p.is_file() for p in paths):
        return None
    return entry if entry.get("bytes") in (None, sum(p.stat().st_size for p in paths)) else None


def _read_parts(folder: Path, key: str, entry: dict) -> bytes:
    """The parts of an entry, joined and checked against its SHA-256."""
    missing = [name for name in entry["parts"] if not (folder / name).is_file()]
    if missing:
        raise CorruptFileError(folder / MANIFEST, f"the entry of {key} lists {missing}, which are missing",
                               _restore_advice(folder, key))
    data = b"".join((folder / name).read_bytes() for name in entry["parts"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CorruptFileError(folder / entry["parts"][0], "its SHA-256 differs from the manifest's",
                               f"Restore {folder} from git (`git checkout -- {folder.name}`).")
    return data


def _check_owner(saved, key: str, identity_hash: str, path: Path, folder: Path) -> dict:
    """The state dict of a loaded fp16 file, after checking the file holds this key and identity."""
    owner = (saved.get("key"), saved.get("identity_hash")) if isinstance(saved, dict) else (None, None)
    if owner != (key, identity_hash) or not isinstance(saved.get("model"), dict):
        raise CorruptFileError(path, f"the manifest lists it for {key} ({identity_hash}), but it holds "
                               f"{owner[0]} ({owner[1]}): the entry points at another run's file",
                               _restore_advice(folder, key))
    return saved["model"]


def load_fp16(model: nn.Module, key: str, identity_hash: str, folder: str | Path | None = None) -> bool:
    """Load the checkpoint of record of ``key`` into ``model`` if it exists for this identity; True if loaded.

    Raises :class:`CorruptFileError` (naming the fix) for a malformed manifest entry, a missing or damaged part, or a
    file that holds another run's key or identity than its entry says."""
    folder = Path(folder if folder is not None else OF_RECORD_DIR)
    entry = _read_manifest(folder).get(key)
    if entry is None:
        return False
    if (problem := _entry_problem(entry)) is not None:
        raise CorruptFileError(folder / MANIFEST, f"{problem} (key {key})", _restore_advice(folder, key))
    if entry["identity_hash"] != identity_hash:
        return False
    data = _read_parts(folder, key, entry)
    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    state = _check_owner(saved, key, identity_hash, folder / entry["parts"][0], folder)
    reference = model.state_dict()
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()})
    return True

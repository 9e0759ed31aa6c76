"""Checkpoints of record: the fp16 weights of the models the analysis notebooks open, committed with their records.

A GPU run writes them (:func:`export_fp16`, in parts below 16 MiB so they travel back from a lent machine); the
repository keeps them in ``checkpoints_of_record/`` with a manifest of keys, identity hashes and SHA-256 sums. Any
machine can then re-execute the notebooks without a GPU: :func:`load_fp16` restores a model whose identity matches
its record of record, after checking the sum.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
import torch.nn as nn

from ..files import CorruptFileError, atomic_write_bytes, atomic_write_json, read_json

__all__ = ["OF_RECORD_DIR", "MAX_FILE_BYTES", "export_fp16", "load_fp16", "manifest_entry"]

OF_RECORD_DIR = Path(__file__).resolve().parents[2] / "checkpoints_of_record"
MAX_FILE_BYTES = 15 * 2**20      # files that come back from the device: at most 16 MiB each (kept with a margin)
MANIFEST = "manifest.json"


def export_fp16(model: nn.Module, record: dict, out: str | Path) -> list[Path]:
    """The model's state dict in float16 under ``out`` (split into parts below 16 MiB), entered in the folder's
    manifest with its record's key, identity hash and the SHA-256 of the whole."""
    out = Path(out)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"key": record["key"], "identity_hash": record["identity_hash"], "model": state}, buffer)
    data = buffer.getvalue()
    parts = [data[i:i + MAX_FILE_BYTES] for i in range(0, len(data), MAX_FILE_BYTES)]
    paths = [out / (f"{record['key']}.fp16.pt" + (f".part{i}" if len(parts) > 1 else "")) for i in range(len(parts))]
    for path, part in zip(paths, parts):
        atomic_write_bytes(path, part)
    manifest = read_json(out / MANIFEST) if (out / MANIFEST).exists() else {}
    manifest[record["key"]] = {"identity_hash": record["identity_hash"], "sha256": hashlib.sha256(data).hexdigest(),
                               "parts": [p.name for p in paths], "bytes": len(data)}
    atomic_write_json(out / MANIFEST, manifest)
    return paths


def manifest_entry(key: str, identity_hash: str, folder: str | Path | None = None) -> dict | None:
    """The manifest's entry for ``key`` if it is for this identity and every part is on disk, else None."""
    folder = Path(folder if folder is not None else OF_RECORD_DIR)
    if not (folder / MANIFEST).exists():
        return None
    entry = read_json(folder / MANIFEST).get(key)
    if not isinstance(entry, dict) or entry.get("identity_hash") != identity_hash:
        return None
    return entry if all((folder / name).exists() for name in entry.get("parts", [])) else None


def load_fp16(model: nn.Module, key: str, identity_hash: str, folder: str | Path | None = None) -> bool:
    """Load the checkpoint of record of ``key`` into ``model`` if it exists for this identity; True if loaded."""
    folder = Path(folder if folder is not None else OF_RECORD_DIR)
    if not (folder / MANIFEST).exists():
        return False
    entry = read_json(folder / MANIFEST).get(key)
    if entry is None or entry["identity_hash"] != identity_hash:
        return False
    data = b"".join((folder / name).read_bytes() for name in entry["parts"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CorruptFileError(folder / entry["parts"][0], "its SHA-256 differs from the manifest's",
                               f"Restore {folder} from git (`git checkout -- {folder.name}`).")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["model"]
    reference = model.state_dict()
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()})
    return True

"""Checkpoints of record: the fp16 weights of the models the analysis notebooks open, committed with their records.

A GPU run writes them (:func:`export_fp16`, in parts below 16 MiB so they travel back from a lent machine); the
repository keeps them in ``checkpoints_of_record/`` with a manifest of keys, identity hashes and SHA-256 sums. Any
machine can then re-execute the notebooks without a GPU: :func:`load_fp16` restores a model whose identity matches
its record of record, after checking the sum and the key and identity stored inside the file itself.

**Locks without lock files.** Writers into a folder (an export, a fetch into the cache) lock the folder itself
(``flock`` on the folder's own descriptor) exclusively around writing the parts and the manifest's
read-modify-write; readers hold it shared while they read the manifest and the parts, so a reader never joins an
old manifest to new parts while a run is exported again. Nothing is created for the lock: the folder holds only the
parts and ``manifest.json``, no lock file is left behind, and there is none another user could plant or redirect.

**Fetched at the release.** A pip-installed package (Colab) ships the records of record but not
``checkpoints_of_record/``. :func:`course_weights` then fetches the checkpoint of record from the repository at the
release the package was installed from (:data:`course_lib.release.CHECKPOINTS_URL`: ``manifest.json``, then the
parts, each read against an overall deadline), checks the size and the SHA-256 of the whole against the manifest
and the key and identity stored inside the file, keeps it in a cache (:func:`fetch_cache`, ``checkpoints_of_record/``
in the work folder, the same layout, each file written atomically) and returns it. A later call, in this process or
another, reads it from the cache without a request. A fetch that fails raises :class:`CheckpointFetchError`, which
says what failed (``cause``: the network, the checksum, a key the release does not list) and the two ways on:
nothing is ever trained in its place.

=============================  ==================================================================================
``COURSE_FETCH_CHECKPOINTS``   ``1`` (default) fetches or reuses the course's checkpoints of record; ``0`` never
                               does (train your own)
``COURSE_CHECKPOINTS_URL``     the folder to fetch from (default :data:`course_lib.release.CHECKPOINTS_URL`); an
                               ``http(s)://`` or ``file:`` URL, e.g. a fork's raw folder or a local mirror
``COURSE_OFFLINE``             ``1`` never fetches (the cache is still used)
=============================  ==================================================================================

Inside the repository the cache would be ``checkpoints_of_record/`` itself, which git holds: nothing is fetched
there.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

from ..files import CorruptFileError, atomic_write_bytes, atomic_write_json, read_json
from ..settings import offline, workdir
from .fetching import (CheckpointFetchError, _Refused, _remote_manifest,
                       checkpoints_url, fetch_enabled, get as _get)

try:  # POSIX (Linux, macOS, Colab); elsewhere the folder lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover - not on the course's platforms
    fcntl = None

__all__ = ["OF_RECORD_DIR", "MAX_FILE_BYTES", "MAX_CHECKPOINT_BYTES", "MANIFEST",
           "CheckpointFetchError", "export_fp16", "load_fp16", "course_weights",
           "read_manifest", "manifest_entry", "fetch_enabled", "checkpoints_url", "fetch_cache"]

OF_RECORD_DIR = Path(__file__).resolve().parents[2] / "checkpoints_of_record"
MAX_FILE_BYTES = 15 * 2**20      # files that come back from the device: at most 16 MiB each (kept with a margin)
MAX_CHECKPOINT_BYTES = 2**30     # no checkpoint of record is near this (ResNet-18: 22 MB); a larger entry is damaged
MANIFEST = "manifest.json"
_PART_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@contextmanager
def _folder_lock(folder: Path, shared: bool = False, what: str = "") -> Iterator[None]:
    """Hold ``folder`` locked for the block (exclusive for writers, shared for readers); see the module docstring.
    A file system without locks (some network mounts) goes on unlocked."""
    if fcntl is None or not folder.is_dir():
        yield
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if what:
                print(f"{what}: waiting for another process writing into {folder}.", flush=True)
            fcntl.flock(fd, mode)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def _restore_advice(folder: Path, key: str) -> str:
    again = (f"Export {key} again (run it with `python -m course_lib.experiments run`, or "
             f"`python -m course_lib.experiments.study run` for the study)")
    if folder.resolve() == OF_RECORD_DIR.resolve():
        return f"{again}, or restore {folder} from git (`git checkout -- {folder.name}`)."
    return f"{again} into {folder}."


def read_manifest(folder: str | Path) -> dict:
    """The manifest of ``folder`` ({} if there is none); one that is not an object of entries is named."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        return {}
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        git = folder.resolve() == OF_RECORD_DIR.resolve()
        raise CorruptFileError(path, f"a JSON {type(manifest).__name__}, not an object of entries",
                               f"Restore {folder} from git (`git checkout -- {folder.name}`)." if git else
                               f"Delete {path} and export its runs again.")
    return manifest


def _entry_problem(entry) -> str | None:
    """Why a manifest entry cannot be used (None when it is well formed): every field is checked before any of it
    is used to name a file or size a read."""
    if not isinstance(entry, dict):
        return f"its entry is a {type(entry).__name__}, not an object"
    missing = [k for k in ("identity_hash", "sha256", "parts") if k not in entry]
    if missing:
        return f"its entry has no {', '.join(missing)}"
    if not isinstance(entry["identity_hash"], str) or not isinstance(entry["sha256"], str) \
            or not _SHA256.fullmatch(entry["sha256"]):
        return f"its identity_hash {entry['identity_hash']!r} or sha256 {entry['sha256']!r} is not a hash"
    parts = entry["parts"]
    if not (isinstance(parts, list) and parts and len(set(parts)) == len(parts)
            and all(isinstance(p, str) and _PART_NAME.fullmatch(p) and p != MANIFEST for p in parts)):
        return f"its entry's parts {str(parts)[:200]!r} are not a list of file names"
    size = entry.get("bytes")
    if size is not None and (type(size) is not int or not 0 < size <= MAX_CHECKPOINT_BYTES):
        return f"its size {str(size)[:40]} is not a number of bytes from 1 to {MAX_CHECKPOINT_BYTES:,}"
    return None


def export_fp16(model: nn.Module, record: dict, out: str | Path) -> list[Path]:
    """The model's state dict in float16 under ``out`` (split into parts below 16 MiB), entered in the folder's
    manifest with its record's key, identity hash and the SHA-256 of the whole; the file itself holds the key and
    identity hash too. Concurrent exports into one folder, and readers of it, are serialised by the folder's lock."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = record["key"]
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"key": key, "identity_hash": record["identity_hash"], "model": state}, buffer)
    data = buffer.getvalue()
    parts = [data[i:i + MAX_FILE_BYTES] for i in range(0, len(data), MAX_FILE_BYTES)]
    paths = [out / (f"{key}.fp16.pt" + (f".part{i}" if len(parts) > 1 else "")) for i in range(len(parts))]
    with _folder_lock(out, what=f"An export into {out}"):
        for path, part in zip(paths, parts):
            atomic_write_bytes(path, part)
        manifest = read_manifest(out)
        manifest[key] = {"identity_hash": record["identity_hash"], "sha256": hashlib.sha256(data).hexdigest(),
                         "parts": [p.name for p in paths], "bytes": len(data)}
        atomic_write_json(out / MANIFEST, manifest)
    return paths


def manifest_entry(key: str, identity_hash: str, folder: str | Path | None = None) -> dict | None:
    """The manifest's entry for ``key`` if it is well formed, for this identity, and every part is on disk (with
    the recorded size in all), else None."""
    folder = Path(folder if folder is not None else OF_RECORD_DIR)
    entry = read_manifest(folder).get(key)
    if _entry_problem(entry) is not None or entry["identity_hash"] != identity_hash:
        return None
    paths = [folder / name for name in entry["parts"]]
    if not all(p.is_file() for p in paths):
        return None
    return entry if entry.get("bytes") in (None, sum(p.stat().st_size for p in paths)) else None


def _read_parts(folder: Path, key: str, entry: dict) -> bytes:
    """The parts of an entry, joined and checked against its size and SHA-256."""
    missing = [name for name in entry["parts"] if not (folder / name).is_file()]
    if missing:
        raise CorruptFileError(folder / MANIFEST, f"the entry of {key} lists {missing}, which are missing",
                               _restore_advice(folder, key))
    size = sum((folder / name).stat().st_size for name in entry["parts"])
    if entry.get("bytes") not in (None, size):
        raise CorruptFileError(folder / entry["parts"][0], f"its parts hold {size:,} bytes, the manifest says "
                               f"{entry['bytes']:,}", _restore_advice(folder, key))
    data = b"".join((folder / name).read_bytes() for name in entry["parts"])
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CorruptFileError(folder / entry["parts"][0], "its SHA-256 differs from the manifest's",
                               _restore_advice(folder, key))
    return data


def _check_owner(saved, key: str, identity_hash: str, path: Path, folder: Path) -> dict:
    """The state dict of a loaded fp16 file, after checking the file holds this key and identity."""
    owner = (saved.get("key"), saved.get("identity_hash")) if isinstance(saved, dict) else (None, None)
    if owner != (key, identity_hash) or not isinstance(saved.get("model"), dict):
        raise CorruptFileError(path, f"the manifest lists it for {key} ({identity_hash}), but it holds "
                               f"{owner[0]} ({owner[1]}): the entry points at another run's file",
                               _restore_advice(folder, key))
    return saved["model"]


def _load_state(model: nn.Module, state: dict) -> None:
    reference = model.state_dict()
    model.load_state_dict({k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()})


def _folder_state(folder: Path, key: str, identity_hash: str) -> dict | None:
    """The weights of ``key`` from the checkpoints of record in ``folder``; None when it has none for this
    identity. The manifest and the parts are read under the folder's shared lock (see the module docstring)."""
    with _folder_lock(folder, shared=True):
        entry = read_manifest(folder).get(key)
        if entry is None:
            return None
        if (problem := _entry_problem(entry)) is not None:
            raise CorruptFileError(folder / MANIFEST, f"{problem} (key {key})", _restore_advice(folder, key))
        if entry["identity_hash"] != identity_hash:
            return None
        data = _read_parts(folder, key, entry)
    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return _check_owner(saved, key, identity_hash, folder / entry["parts"][0], folder)


def load_fp16(model: nn.Module, key: str, identity_hash: str, folder: str | Path | None = None) -> bool:
    """Load the checkpoint of record of ``key`` into ``model`` if it exists for this identity; True if loaded.

    Without ``folder``: from ``checkpoints_of_record/`` of the repository, else from the fetch cache, else fetched
    from the repository at the release (see the module docstring; one line says which). False when the run is not
    one of record (or fetching is switched off); a fetch that fails raises :class:`CheckpointFetchError`, so
    nothing is trained in place of a model the plan said would be fetched. With ``folder``: from that folder only,
    never fetched.

    Raises :class:`CorruptFileError` (naming the fix) for a malformed manifest entry, a missing or damaged part, or a
    file that holds another run's key or identity than its entry says, in the repository's folder or ``folder``
    (a damaged cache or download is set right by fetching again instead)."""
    if folder is not None:
        state = _folder_state(Path(folder), key, identity_hash)
    else:
        state = _folder_state(OF_RECORD_DIR, key, identity_hash)
        if state is None and fetch_enabled() and not _in_repository():
            found = _cached_or_fetched(key, identity_hash, strict=False)
            if found is not None:
                state = found[0]
                print(f"Loaded the course's trained model {key} (checkpoint of record, {found[1]}, SHA-256 checked) "
                      "instead of training it (COURSE_FETCH_CHECKPOINTS=0 trains your own).", flush=True)
    if state is None:
        return False
    _load_state(model, state)
    return True


def course_weights(key: str, identity_hash: str) -> tuple[dict, str]:
    """(weights, where they came from in words) of the checkpoint of record ``key`` with this identity: from the
    repository's ``checkpoints_of_record/``, else the fetch cache, else fetched at the release and kept in the
    cache. Raises :class:`CheckpointFetchError` when it cannot be had (fetching switched off or offline counts as
    the network), :class:`CorruptFileError` when the repository's own copy is damaged."""
    state = _folder_state(OF_RECORD_DIR, key, identity_hash)
    if state is not None:
        return state, f"from {OF_RECORD_DIR.name}/ of the repository"
    url = checkpoints_url()
    if not fetch_enabled() or _in_repository():
        why = ("COURSE_FETCH_CHECKPOINTS=0 forbids fetching it" if not fetch_enabled() else
               f"the repository's {OF_RECORD_DIR.name}/ does not list it for identity {identity_hash}")
        raise CheckpointFetchError(key, "missing" if fetch_enabled() else "network", why, url)
    return _cached_or_fetched(key, identity_hash, strict=True)


# --------------------------------------------------------------------------------------------------------------
# Fetched at the release (the requests themselves: :mod:`.fetching`)

def fetch_cache() -> Path:
    """Where fetched checkpoints of record are kept: ``checkpoints_of_record/`` in the work folder."""
    return workdir() / "checkpoints_of_record"


def _in_repository() -> bool:
    """Inside the repository the cache would be its ``checkpoints_of_record/``, which is git's, not a cache."""
    return fetch_cache().resolve() == OF_RECORD_DIR.resolve()


def _checked_state(data: bytes, entry: dict, key: str, identity_hash: str) -> dict:
    """The state dict in ``data`` after checking its size and SHA-256 against ``entry`` and the key and identity
    stored inside it; :class:`_Refused` otherwise."""
    if isinstance(entry.get("bytes"), int) and len(data) != entry["bytes"]:
        raise _Refused(f"it has {len(data)} bytes, the manifest says {entry['bytes']}", "checksum")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise _Refused(f"its SHA-256 {digest[:12]}... differs from the manifest's {str(entry['sha256'])[:12]}...",
                       "checksum")
    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:          # whatever the unpickler says: the file is not one of ours
        raise _Refused(f"PyTorch cannot read it ({type(error).__name__})", "checksum") from None
    owner = (saved.get("key"), saved.get("identity_hash")) if isinstance(saved, dict) else (None, None)
    if owner != (key, identity_hash) or not isinstance(saved.get("model"), dict):
        raise _Refused(f"the file holds {owner[0]} ({owner[1]}), not {key} ({identity_hash})", "checksum")
    return saved["model"]


def _from_cache(cache: Path, key: str, identity_hash: str) -> tuple[dict, str] | None:
    """(state, the URL it was fetched from) from the cache, or None (a damaged cache is named and fetched again)."""
    try:
        with _folder_lock(cache, shared=True):
            entry = manifest_entry(key, identity_hash, cache)
            if entry is None:
                return None
            data = b"".join((cache / name).read_bytes() for name in entry["parts"])
        return _checked_state(data, entry, key, identity_hash), str(entry.get("url", "the repository"))
    except (CorruptFileError, _Refused, OSError) as why:
        print(f"The cached checkpoint of record of {key} in {cache} cannot be used ({why}); fetching it again.",
              flush=True)
        return None


def _store(cache: Path, key: str, entry: dict, url: str, parts: list[bytes]) -> None:
    """Keep a checked download in the cache: the parts, then its manifest entry, each written atomically."""
    cache.mkdir(parents=True, exist_ok=True)
    with _folder_lock(cache, what=f"Fetching into {cache}"):
        for name, part in zip(entry["parts"], parts):
            atomic_write_bytes(cache / name, part)
        try:
            manifest = read_manifest(cache)
        except CorruptFileError:
            manifest = {}                           # a damaged cache manifest: start it again
        manifest[key] = {"identity_hash": entry["identity_hash"], "sha256": entry["sha256"],
                         "parts": list(entry["parts"]), "bytes": sum(map(len, parts)), "url": url}
        atomic_write_json(cache / MANIFEST, manifest)


def _fetch(url: str, key: str, identity_hash: str, retry: bool) -> tuple[dict, list[bytes], dict] | None:
    """(state, parts, entry) of ``key`` fetched from ``url`` and checked; None when ``url`` has none for ``key``."""
    entry = _remote_manifest(url, retry).get(key)
    if entry is None:
        return None
    if (problem := _entry_problem(entry)) is not None:
        raise _Refused(f"in {url}{MANIFEST}, {problem}", "checksum")
    if entry["identity_hash"] != identity_hash:
        raise _Refused(f"it was trained with other settings or data (identity {entry['identity_hash']}, this run "
                       f"{identity_hash})", "missing")
    limit = entry.get("bytes") or MAX_CHECKPOINT_BYTES
    parts = []
    for name in entry["parts"]:
        parts.append(_get(url + urllib.parse.quote(name), limit - sum(map(len, parts))))
    return _checked_state(b"".join(parts), entry, key, identity_hash), parts, entry


def _cached_or_fetched(key: str, identity_hash: str, strict: bool) -> tuple[dict, str] | None:
    """(state, where from in words) from the cache, else fetched (and kept). Not a run of record at the release:
    None, or :class:`CheckpointFetchError` when ``strict``; a failed fetch always raises it."""
    cache = fetch_cache()
    if (cached := _from_cache(cache, key, identity_hash)) is not None:
        return cached[0], f"fetched from {cached[1]} into {cache}"
    url = checkpoints_url()
    if offline():
        if not strict:
            return None
        raise CheckpointFetchError(key, "network", f"COURSE_OFFLINE=1 forbids downloads, and {cache} does not hold "
                                   "it", url)
    try:
        fetched = _fetch(url, key, identity_hash, retry=strict)
    except _Refused as why:
        if why.cause == "missing" and not strict:
            print(f"The course's checkpoint of record of {key} at {url} is not this run: {why}.", flush=True)
            return None
        raise CheckpointFetchError(key, why.cause, str(why), url) from None
    if fetched is None:
        if not strict:
            return None
        raise CheckpointFetchError(key, "missing", f"{url}{MANIFEST} does not list it", url)
    state, parts, entry = fetched
    try:
        _store(cache, key, entry, url, parts)
        kept = ""
    except OSError as error:
        kept = f" (not kept in {cache}: {error})"
    return state, f"fetched from {url}{kept}"

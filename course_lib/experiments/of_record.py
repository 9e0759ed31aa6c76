"""Checkpoints of record: the fp16 weights of the models the analysis notebooks open, committed with their records.

A GPU run writes them (:func:`export_fp16`, in parts below 16 MiB so they travel back from a lent machine); the
repository keeps them in ``checkpoints_of_record/`` with a manifest of keys, identity hashes and SHA-256 sums. Any
machine can then re-execute the notebooks without a GPU: :func:`load_fp16` restores a model whose identity matches
its record of record, after checking the sum and the key and identity stored inside the file itself.

Exports into one folder take a lock around writing their parts and the manifest's read-modify-write, so two
processes exporting at once keep every entry. The lock file lives outside the folder
(:func:`course_lib.files.outside_lock_path`): the folder holds only the parts and ``manifest.json``.

**Fetched at the release.** A pip-installed package (Colab) ships the records of record but not
``checkpoints_of_record/``. When that folder has no entry for a run, :func:`load_fp16` fetches the checkpoint of
record from the repository at the release the package was installed from (:data:`course_lib.release.CHECKPOINTS_URL`:
``manifest.json``, then the parts), checks the SHA-256 of the whole against the manifest and the key and identity
stored inside the file, keeps it in a cache (:func:`fetch_cache`, ``checkpoints_of_record/`` in the work folder, the
same layout, each file written atomically) and loads it, saying so in one line. A later call, in this process or
another, loads it from the cache without a request. A failed fetch (HTTP error, no answer, wrong sum, another run's
file) says why in one line and returns False: the run is then trained.

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
import http.client
import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import torch
import torch.nn as nn

from .. import release
from ..files import CorruptFileError, atomic_write_bytes, atomic_write_json, file_lock, outside_lock_path, read_json
from ..settings import SettingError, env_flag, offline, workdir

__all__ = ["OF_RECORD_DIR", "MAX_FILE_BYTES", "MANIFEST", "FETCH_TIMEOUT_S", "export_fp16", "load_fp16",
           "manifest_entry", "fetch_enabled", "checkpoints_url", "fetch_cache"]

OF_RECORD_DIR = Path(__file__).resolve().parents[2] / "checkpoints_of_record"
MAX_FILE_BYTES = 15 * 2**20      # files that come back from the device: at most 16 MiB each (kept with a margin)
MANIFEST = "manifest.json"
FETCH_TIMEOUT_S = 30.0           # per request: a server that does not answer within it counts as a failed fetch
_REMOTE: dict[str, dict | str] = {}      # base URL -> its manifest, or why it could not be fetched (this process)


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


def _load_state(model: nn.Module, state: dict) -> None:
    reference = model.state_dict()
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()})


def _load_folder(model: nn.Module, key: str, identity_hash: str, folder: Path) -> bool:
    """Load ``key`` from the checkpoints of record in ``folder``; False when it has none for this identity."""
    entry = _read_manifest(folder).get(key)
    if entry is None:
        return False
    if (problem := _entry_problem(entry)) is not None:
        raise CorruptFileError(folder / MANIFEST, f"{problem} (key {key})", _restore_advice(folder, key))
    if entry["identity_hash"] != identity_hash:
        return False
    data = _read_parts(folder, key, entry)
    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    _load_state(model, _check_owner(saved, key, identity_hash, folder / entry["parts"][0], folder))
    return True


def load_fp16(model: nn.Module, key: str, identity_hash: str, folder: str | Path | None = None) -> bool:
    """Load the checkpoint of record of ``key`` into ``model`` if it exists for this identity; True if loaded.

    Without ``folder``: from ``checkpoints_of_record/`` of the repository, else from the fetch cache, else fetched
    from the repository at the release (see the module docstring; one line says which, or why a fetch failed, and
    False is returned then). With ``folder``: from that folder only, never fetched.

    Raises :class:`CorruptFileError` (naming the fix) for a malformed manifest entry, a missing or damaged part, or a
    file that holds another run's key or identity than its entry says, in the repository's folder or ``folder``
    (a damaged cache or download is set right by fetching again instead)."""
    if folder is not None:
        return _load_folder(model, key, identity_hash, Path(folder))
    return _load_folder(model, key, identity_hash, OF_RECORD_DIR) or _load_fetched(model, key, identity_hash)


# --------------------------------------------------------------------------------------------------------------
# Fetched at the release

class _Refused(Exception):
    """Why a checkpoint of record could not be fetched or used (one line)."""


def fetch_enabled() -> bool:
    """``COURSE_FETCH_CHECKPOINTS`` (default yes): may the course's checkpoints of record be fetched and used?"""
    return env_flag("COURSE_FETCH_CHECKPOINTS", default=True)


def checkpoints_url() -> str:
    """The folder the checkpoints of record are fetched from, ending in ``/``: ``$COURSE_CHECKPOINTS_URL``, else the
    repository's ``checkpoints_of_record/`` at the release (:data:`course_lib.release.CHECKPOINTS_URL`)."""
    value = (os.environ.get("COURSE_CHECKPOINTS_URL") or "").strip()
    if not value:
        return release.CHECKPOINTS_URL
    if not value.lower().startswith(("http://", "https://", "file:")):
        raise SettingError(f"COURSE_CHECKPOINTS_URL={value!r} is not an http(s):// or file: URL. Point it at a "
                           f"folder that holds {MANIFEST} and the parts (default {release.CHECKPOINTS_URL}), or "
                           "unset it.")
    return value.rstrip("/") + "/"


def fetch_cache() -> Path:
    """Where fetched checkpoints of record are kept: ``checkpoints_of_record/`` in the work folder."""
    return workdir() / "checkpoints_of_record"


def _get(url: str, limit: int | None = None) -> bytes:
    """The body at ``url`` (at most ``limit`` bytes), or :class:`_Refused` saying why not in a few words."""
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            data = response.read() if limit is None else response.read(limit + 1)
            declared = response.headers.get("Content-Length", "")
    except urllib.error.HTTPError as error:
        error.close()
        raise _Refused(f"HTTP {error.code} {error.reason} for {url}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _Refused(f"no answer within {FETCH_TIMEOUT_S:g} s from {url}") from None
        raise _Refused(f"{error.reason} ({url})") from None
    except TimeoutError:
        raise _Refused(f"no answer within {FETCH_TIMEOUT_S:g} s from {url}") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise _Refused(f"{type(error).__name__}: {str(error)[:200]} ({url})") from None
    if limit is not None and len(data) > limit:
        raise _Refused(f"{url} is larger than its manifest says")
    if declared.isdigit() and len(data) < int(declared):
        raise _Refused(f"the download of {url} was cut short ({len(data)} of {declared} bytes)")
    return data


def _remote_manifest(url: str) -> dict:
    """The manifest at ``url`` (fetched once per process; a failure is remembered too, so it costs no more time)."""
    known = _REMOTE.get(url)
    if isinstance(known, dict):
        return known
    if isinstance(known, str):
        raise _Refused(known)
    try:
        try:
            manifest = json.loads(_get(url + MANIFEST, 16 * 2**20))
        except (ValueError, UnicodeDecodeError):
            raise _Refused(f"{url}{MANIFEST} is not JSON") from None
        if not isinstance(manifest, dict):
            raise _Refused(f"{url}{MANIFEST} is a JSON {type(manifest).__name__}, not an object of entries")
    except _Refused as why:
        _REMOTE[url] = str(why)
        raise
    _REMOTE[url] = manifest
    return manifest


def _checked_state(data: bytes, entry: dict, key: str, identity_hash: str) -> dict:
    """The state dict in ``data`` after checking its size and SHA-256 against ``entry`` and the key and identity
    stored inside it; :class:`_Refused` otherwise."""
    if isinstance(entry.get("bytes"), int) and len(data) != entry["bytes"]:
        raise _Refused(f"it has {len(data)} bytes, the manifest says {entry['bytes']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise _Refused(f"its SHA-256 {digest[:12]}... differs from the manifest's {str(entry['sha256'])[:12]}...")
    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:          # whatever the unpickler says: the file is not one of ours
        raise _Refused(f"PyTorch cannot read it ({type(error).__name__})") from None
    owner = (saved.get("key"), saved.get("identity_hash")) if isinstance(saved, dict) else (None, None)
    if owner != (key, identity_hash) or not isinstance(saved.get("model"), dict):
        raise _Refused(f"the file holds {owner[0]} ({owner[1]}), not {key} ({identity_hash})")
    return saved["model"]


def _from_cache(cache: Path, key: str, identity_hash: str) -> tuple[dict, str] | None:
    """(state, the URL it was fetched from) from the cache, or None (a damaged cache is named and fetched again)."""
    try:
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
    with file_lock(outside_lock_path(cache / MANIFEST), f"Fetching into {cache}"):
        for name, part in zip(entry["parts"], parts):
            atomic_write_bytes(cache / name, part)
        try:
            manifest = _read_manifest(cache)
        except CorruptFileError:
            manifest = {}                           # a damaged cache manifest: start it again
        manifest[key] = {"identity_hash": entry["identity_hash"], "sha256": entry["sha256"],
                         "parts": list(entry["parts"]), "bytes": sum(map(len, parts)), "url": url}
        atomic_write_json(cache / MANIFEST, manifest)


def _fetch(url: str, key: str, identity_hash: str) -> tuple[dict, list[bytes], dict] | None:
    """(state, parts, entry) of ``key`` fetched from ``url`` and checked; None when ``url`` has none for ``key``."""
    entry = _remote_manifest(url).get(key)
    if entry is None:
        return None
    if (problem := _entry_problem(entry)) is not None:
        raise _Refused(f"in {url}{MANIFEST}, {problem}")
    if any(name in (MANIFEST, ".", "..") or name.startswith(".") for name in entry["parts"]):
        raise _Refused(f"in {url}{MANIFEST}, its parts {entry['parts']!r} are not names of parts")
    if entry["identity_hash"] != identity_hash:
        raise _Refused(f"it was trained with other settings or data (identity {entry['identity_hash']}, this run "
                       f"{identity_hash})")
    limit = entry["bytes"] if isinstance(entry.get("bytes"), int) else None
    parts = []
    for name in entry["parts"]:
        parts.append(_get(url + urllib.parse.quote(name), None if limit is None else limit - sum(map(len, parts))))
    return _checked_state(b"".join(parts), entry, key, identity_hash), parts, entry


def _load_fetched(model: nn.Module, key: str, identity_hash: str) -> bool:
    """Load ``key`` from the fetch cache, else fetch it (see the module docstring); True if loaded."""
    if not fetch_enabled():
        return False
    cache = fetch_cache()
    if cache.resolve() == OF_RECORD_DIR.resolve():
        return False                    # in the repository: its checkpoints_of_record/ is git's, not a cache
    instead = "instead of training it (COURSE_FETCH_CHECKPOINTS=0 trains your own)"
    if (cached := _from_cache(cache, key, identity_hash)) is not None:
        state, source = cached
        _load_state(model, state)
        print(f"Loaded the course's trained model {key} (checkpoint of record, fetched from {source} into {cache}, "
              f"SHA-256 checked) {instead}.", flush=True)
        return True
    if offline():
        return False
    url = checkpoints_url()
    try:
        fetched = _fetch(url, key, identity_hash)
    except _Refused as why:
        print(f"Could not fetch the course's trained model {key} from {url}: {why}. Training it instead.",
              flush=True)
        return False
    if fetched is None:
        return False                    # not a run of record
    state, parts, entry = fetched
    _load_state(model, state)
    try:
        _store(cache, key, entry, url, parts)
        kept = ""
    except OSError as error:
        kept = f"; not kept in {cache}: {error}"
    print(f"Loaded the course's trained model {key} (checkpoint of record, fetched from {url}, SHA-256 checked"
          f"{kept}) {instead}.", flush=True)
    return True

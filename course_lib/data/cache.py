"""A compact local cache of verified splits, so the second load of a split takes well under two seconds.

Each split is three files in ``<root>/course_cache/``:

=================================  ==========================================================================
``<name>-<split>.images.npy``      uint8 (N, 3, 32, 32), the layout :class:`~.sets.ImageSet` holds
``<name>-<split>.labels.npy``      int64 (N,)
``<name>-<split>.json``            the sidecar: shapes, byte sizes and sha256 of both arrays, the class names and
                                   the ``source`` string of the verified copy the arrays came from
=================================  ==========================================================================

Every file is written atomically (a temporary file, then ``os.replace``), the arrays first and the sidecar last,
so an interrupted write leaves no sidecar or an old one whose checksums no longer match. :func:`load` trusts
nothing it has not checked: a missing sidecar, a wrong size or a wrong checksum, or an entry that fails the caller's
``check`` (the data set's facts and its committed samples), is reported, the entry deleted and ``None`` returned, so
the caller rebuilds it from a source. Only copies that passed verification are cached.

Writers hold the split's :func:`lock` while they save, and only a holder of that lock may judge an entry damaged
and delete it: an entry half-way through a save looks damaged to anyone else (``on_damage="skip"`` reads without
the lock and leaves such an entry alone). A folder where no lock can be taken (read-only) is reported, not changed.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..files import _atomic, atomic_write_json, file_lock
from .download import notify
from .sets import ImageSet

__all__ = ["FORMAT", "cache_dir", "paths", "exists", "lock", "save", "load", "remove"]

FORMAT = 1     # bump when the layout changes: entries of another format are rebuilt


def cache_dir(root: str | Path) -> Path:
    return Path(root) / "course_cache"


def paths(root: str | Path, name: str, split: str) -> dict[str, Path]:
    """{"images", "labels", "sidecar"}: the three files of one cached split."""
    stem = cache_dir(root) / f"{name}-{split}"
    return {"images": Path(f"{stem}.images.npy"), "labels": Path(f"{stem}.labels.npy"),
            "sidecar": Path(f"{stem}.json")}


def exists(root: str | Path, name: str, split: str) -> bool:
    """Whether any file of the cached split is there (complete or not)."""
    return any(path.exists() for path in paths(root, name, split).values())


@contextmanager
def lock(root: str | Path, name: str, split: str, what: str) -> Iterator[bool]:
    """Hold the split's lock (``course_cache/locks/<name>-<split>.lock``; another holder is waited for, saying
    ``what``). Yields True, or False without a lock when none can be made (a read-only folder): then nothing may be
    written or deleted. (The lock file stays: deleting a flock file another process waits on races.)"""
    path = cache_dir(root) / "locks" / f"{name}-{split}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.lock", "a"):
            pass
    except OSError:
        yield False
        return
    with file_lock(path, what):
        yield True


def _describe(array: np.ndarray) -> dict:
    return {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": int(array.nbytes),
            "sha256": hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()}


def save(data: ImageSet, root: str | Path) -> Path:
    """Cache ``data`` (a verified copy) under ``root``; returns the sidecar's path."""
    files = paths(root, data.dataset, data.split)
    arrays = {"images": data.images.contiguous().numpy(), "labels": data.labels.numpy().astype(np.int64)}
    for key, array in arrays.items():
        _atomic(files[key], lambda f, a=array: np.save(f, a, allow_pickle=False))
    atomic_write_json(files["sidecar"], {
        "format": FORMAT, "dataset": data.dataset, "split": data.split, "source": data.source,
        "class_names": list(data.class_names), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **{key: _describe(array) for key, array in arrays.items()}})
    return files["sidecar"]


def remove(root: str | Path, name: str, split: str) -> None:
    """Delete one cached split (all three files). OSError if one cannot be deleted (a read-only folder)."""
    for path in paths(root, name, split).values():
        path.unlink(missing_ok=True)


def _read_checked(path: Path, expected: dict) -> np.ndarray:
    """The array in ``path`` if it has the sidecar's shape, dtype, size and sha256; else ValueError saying which."""
    if not path.is_file():
        raise ValueError(f"{path.name} is missing")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
        except ValueError as error:
            raise ValueError(f"{path.name} is not a readable .npy file ({error})") from None
        if list(shape) != expected["shape"] or str(dtype) != expected["dtype"] or fortran:
            raise ValueError(f"{path.name} is {dtype} {shape}, expected {expected['dtype']} "
                             f"{tuple(expected['shape'])}")
        size = path.stat().st_size - f.tell()
        if size != expected["bytes"]:
            raise ValueError(f"{path.name} holds {size:,} bytes of data, expected {expected['bytes']:,} (cut short)")
        array = np.fromfile(f, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    if hashlib.sha256(array.data).hexdigest() != expected["sha256"]:
        raise ValueError(f"{path.name} does not match its checksum (the file is damaged)")
    return array


def _read_entry(files: dict[str, Path], name: str, split: str) -> ImageSet:
    """The cached split, checked against its sidecar; ValueError naming the first problem."""
    try:
        meta = json.loads(files["sidecar"].read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the sidecar {files['sidecar'].name} cannot be read ({type(error).__name__})") from None
    if meta.get("format") != FORMAT or (meta.get("dataset"), meta.get("split")) != (name, split):
        raise ValueError(f"the sidecar describes format {meta.get('format')} of {meta.get('dataset')} "
                         f"{meta.get('split')}, not format {FORMAT} of {name} {split}")
    try:
        images, labels = (_read_checked(files[key], meta[key]) for key in ("images", "labels"))
        return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), name, split,
                        list(meta["class_names"]), meta["source"], torch.arange(len(labels)))
    except (KeyError, TypeError) as error:
        raise ValueError(f"the sidecar lacks {error}") from None
    except (OSError, EOFError) as error:
        raise ValueError(f"an array file cannot be read ({type(error).__name__}: {error})") from None


def _problem(files: dict[str, Path], name: str, split: str, check: Callable[[ImageSet], None] | None
             ) -> tuple[ImageSet | None, str]:
    """(the entry, "") when it is intact and passes ``check``, else (None, what is wrong)."""
    if not files["sidecar"].exists():
        return None, f"the sidecar {files['sidecar'].name} is missing (an interrupted write)"
    try:
        data = _read_entry(files, name, split)
    except ValueError as error:
        return None, str(error)
    try:
        if check is not None:
            check(data)
    except (ValueError, RuntimeError) as error:     # DataUnavailableError is a RuntimeError
        return None, f"it does not match the official data set: {error}"
    return data, ""


def _drop(root: str | Path, name: str, split: str, problem: str, delete: bool) -> None:
    """Report a bad entry, and delete it when allowed (and possible)."""
    where = f"The cached copy of {name} {split} in {cache_dir(root)}"
    if not delete:
        notify(f"{where} is damaged or incomplete ({problem}). It is not used; it could not be deleted because "
               f"{cache_dir(root)} is read-only. Fix: delete its three files {name}-{split}.*, or point "
               "COURSE_DATA_ROOT at a writable folder.")
        return
    try:
        remove(root, name, split)
    except OSError as error:
        notify(f"{where} is damaged or incomplete ({problem}). It is not used, but it could not be deleted "
               f"({type(error).__name__}: {error}). Fix: delete its three files {name}-{split}.* by hand.")
        return
    notify(f"{where} is damaged or incomplete ({problem}). It was deleted and will be rebuilt from a verified "
           "source.")


def load(name: str, split: str, root: str | Path, check: Callable[[ImageSet], None] | None = None,
         on_damage: str = "delete") -> ImageSet | None:
    """The cached split, or None when there is none or it is damaged.

    Args:
        check: called with the entry; raises ValueError (or DataUnavailableError) when the entry is not the
            official split (e.g. it differs from the committed samples). Such an entry counts as damaged.
        on_damage: what to do with a damaged or partial entry: ``"delete"`` (report and delete it: only while
            holding :func:`lock`), ``"report"`` (report it, keep it: a read-only folder), ``"skip"`` (say nothing:
            a reader without the lock, which may be looking at a save in progress).
    """
    if on_damage not in ("delete", "report", "skip"):
        raise ValueError(f"on_damage must be 'delete', 'report' or 'skip', not {on_damage!r}.")
    files = paths(root, name, split)
    if not exists(root, name, split):
        return None
    data, problem = _problem(files, name, split, check)
    if data is None and on_damage != "skip":
        _drop(root, name, split, problem, delete=on_damage == "delete")
    return data

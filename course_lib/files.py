"""Every file the course writes is written atomically; every file it reads names itself when it is damaged.

- :func:`atomic_write_text` / :func:`atomic_write_bytes` / :func:`atomic_torch_save`: write to a temporary file with a
  unique name in the same folder, flush it to disk, then ``os.replace`` it over the target. A reader sees the old
  file or the new one, never half of one, whatever kills the writer and however many writers race. The temporary
  file's name holds its writer's host and process id, so the next write of the same file removes those that a
  killed writer left behind (a checkpoint's is tens of MB).
- :func:`read_json` / :func:`safe_torch_load`: a damaged file raises :class:`CorruptFileError`, which names the
  file and what to do, instead of a bare ``JSONDecodeError`` or ``EOFError``. :func:`quarantine` moves it aside.
  ``safe_torch_load`` loads with ``weights_only=True``: a checkpoint holds tensors and plain values only, and a
  ``.pt`` file that holds anything else (code, which unpickling would run) is refused, never executed.
- :func:`file_lock`: an exclusive lock on ``<path>.lock`` (``fcntl.flock``), so two processes never train the same
  run at once; the second one waits and says why. :func:`outside_lock_path` puts that lock file outside a folder
  that must hold only its own files.
"""
from __future__ import annotations

import glob
import json
import os
import pickle
import socket
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

try:  # POSIX (Linux, macOS, Colab); on Windows the lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover - not on the course's platforms
    fcntl = None

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["CorruptFileError", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save",
           "read_json", "safe_torch_load", "quarantine", "file_lock"]


class CorruptFileError(RuntimeError):
    """A file exists but cannot be read (truncated, damaged, or not what its name says)."""

    def __init__(self, path: str | Path, problem: str, fix: str = ""):
        self.path = Path(path)
        fix = fix or f"Delete or move {self.path} aside and run again."
        super().__init__(f"{self.path} is damaged and cannot be read ({problem}). {fix}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (unique temporary file in the same folder + ``os.replace``)."""
    _atomic(Path(path), lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON with one-space indentation (readable diffs of the committed records), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically: an interrupted or concurrent save never leaves a mixed or partial checkpoint."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


STALE_FOREIGN_TEMP_S = 6 * 3600     # a temporary file of another machine's writer this old is a leftover too


def _writer_tag() -> str:
    """This writer's host and process id, as a temporary file's name holds them (no dots: the name splits on them)."""
    return f"{socket.gethostname().replace('.', '_').replace('-', '_')}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:             # PermissionError: it exists, another user's
        return True
    return True


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary files of ``path`` whose writer is gone: killed on this host (its process no longer
    exists), or on another host (a shared Drive folder) more than :data:`STALE_FOREIGN_TEMP_S` ago."""
    host = _writer_tag().rsplit("-", 1)[0]
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tag = tmp.name[len(path.name) + 2:].split(".")[0]
        writer, _, pid = tag.rpartition("-")
        try:
            if (writer == host and pid.isdigit() and not _alive(int(pid))) or (
                    writer != host and time.time() - tmp.stat().st_mtime > STALE_FOREIGN_TEMP_S):
                tmp.unlink()
        except OSError:         # removed by another writer meanwhile, or not ours to remove
            pass


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:          # owns fd from here on: closed whatever happens
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)    # mkstemp makes 0600 files; keep the usual permissions
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a damaged one raises :class:`CorruptFileError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFileError(path, f"not valid JSON: {error}") from None


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` that names the file and the fix when it is truncated or damaged, or
    holds more than tensors and plain values (then it is refused unread: unpickling it could run its code)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except torch.cuda.OutOfMemoryError:   # (torch.OutOfMemoryError from torch 2.5)
        raise                                   # a RuntimeError too, but the file is fine: never quarantine it
    except pickle.UnpicklingError as error:
        if "weights_only" not in str(error).lower() and "weights only" not in str(error).lower():
            raise CorruptFileError(path, f"UnpicklingError: {str(error).splitlines()[0][:200]}",
                                   f"It is probably a checkpoint cut short by an interruption: delete {path} (the "
                                   "run is then trained again) or copy an intact one over it.") from None
        raise CorruptFileError(path, "it holds Python objects besides tensors and plain values, which no checkpoint "
                                     "of the course holds; unpickling them could run code, so it was not loaded",
                               f"Delete {path} unless you know who made it (the run is then trained again).") \
            from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, ValueError, KeyError) as error:
        raise CorruptFileError(path, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}",
                               f"It is probably a checkpoint cut short by an interruption: delete {path} (the run "
                               "is then trained again) or copy an intact one over it.") from None


def quarantine(path: str | Path) -> Path:
    """Move a damaged file aside to ``<name>.corrupt-<time>`` (kept for inspection) and return the new path."""
    path = Path(path)
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    return target


@contextmanager
def file_lock(path: str | Path, what: str = "this run") -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` for the block; if another process holds it, wait, saying why once.

    The lock file is opened without following a symbolic link (one planted there cannot redirect the write) and
    removed when the block ends, so no ``.lock`` is left behind. A waiter that wakes on a file its holder has just
    removed opens the new one and waits again: two processes never both hold the lock."""
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    said = False
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        if fcntl is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not said:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                print(f"{what} is in progress elsewhere ({holder}); waiting for it to finish "
                      f"(lock file {lock_path}).", flush=True)
                said = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(lock_path, follow_symlinks=False).st_ino:
                break                                 # the file we hold is still the lock file
        except FileNotFoundError:
            pass
        os.close(fd)                                  # its holder removed it as we woke: try the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        try:
            lock_path.unlink()                        # while still held, so no one else holds this file
        except FileNotFoundError:
            pass
        os.close(fd)                                  # closing releases the lock

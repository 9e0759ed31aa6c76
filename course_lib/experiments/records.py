"""The run records: one JSON file per run, written atomically, read back with validation.

Two places hold records, read in this order:

1. ``<workdir>/results/`` — runs made here (by a notebook, or ``python -m course_lib.experiments run``);
2. ``course_lib/records/`` — the course's results of record, shipped inside the package, so the results chapter
   shows them anywhere (on Colab too) without training anything.

A record is checked as a whole before anything uses it (:func:`record_problems`):

- its **format** (``"format"``, 1 when absent): a record written by a newer course_lib is refused, with the advice
  to upgrade;
- its **schema**: every required field present, with its type (a number is never a string, ``spec`` is an object);
- its **consistency**: it is filed under its own key, and its ``final_test_acc`` agrees with its per-image results
  (``test_correct``) to 1e-6 of the fraction correct, so an edited accuracy does not pass.

A bad record (an interrupted write from an older version, a hand edit, a newer format) is named, moved aside to
``<name>.corrupt-<time>`` and skipped, never allowed to block later runs: the run is trained again when needed. A
record of record is never moved (it belongs to git): it is skipped with a warning saying how to restore it.
Files in a records folder that are not run records by name (``manifest.json``, the fp16 checkpoints' manifest,
when ``--out`` is the results folder) are not read as records at all.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

from ..files import CorruptFileError, atomic_write_json, quarantine, read_json
from ..settings import workdir
from ..history import unpack_bits

__all__ = ["RECORDS_OF_RECORD", "RECORD_FORMAT", "NOT_RECORDS", "RecordWarning", "RecordError", "NewerRecordError",
           "results_dir", "record_paths", "record_files", "record_problems", "read_record", "find_record",
           "write_record", "load_results"]

RECORDS_OF_RECORD = Path(__file__).resolve().parents[1] / "records"
RECORD_FORMAT = 1                     # the newest record format this course_lib reads (and the one it writes)
NOT_RECORDS = frozenset({"manifest.json"})     # JSON files that may share a folder with records but are none
ACC_TOLERANCE = 1e-6                  # |final_test_acc / 100 - fraction of test_correct|: float32 rounding is ~1e-7

NUMBER = (int, float)
REQUIRED = {"key": str, "spec": dict, "label": str, "final_test_acc": NUMBER, "epochs": int, "steps": int,
            "train_images": int, "images_per_class": int, "num_classes": int, "test_images": int,
            "test_correct": str, "train_seconds": NUMBER, "train_source": str, "test_source": str,
            "history": dict, "identity": dict, "environment": dict}
OPTIONAL = {"format": int, "identity_hash": str, "best_test_acc": NUMBER, "test_fingerprint": str,
            "parameters": int, "images_per_second": NUMBER, "recipe": dict, "preprocess": dict, "checkpoint": str,
            "val_images": int, "val_source": str, "final_val_acc": NUMBER, "best_val_acc": NUMBER,
            "final_train_clean_acc": NUMBER}
REQUIRED_SPEC = {"model": str, "dataset": str, "profile": str, "seed": int}
REUSED = {"preprocess": dict}         # what reusing a trained run needs (records with an identity_hash)


class RecordWarning(UserWarning):
    """A record could not be used (damaged, incomplete, inconsistent or newer) and was set aside."""


class RecordError(CorruptFileError):
    """A readable JSON file that is not a usable run record (schema or consistency)."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.problems = problems
        super().__init__(path, "not a usable run record: " + "; ".join(problems))


class NewerRecordError(CorruptFileError):
    """A record written by a newer course_lib, in a format this one does not know."""

    def __init__(self, path: str | Path, version: int):
        self.path, self.version = Path(path), version
        RuntimeError.__init__(self, f"{self.path} was written by a newer course_lib (record format {version}; this "
                                    f"one reads format {RECORD_FORMAT} and older). Upgrade course_lib (install the "
                                    "course's latest release, or `git pull` in its folder) to use it.")


def results_dir(root: str | Path | None = None) -> Path:
    """``<root>/results`` (root: :func:`course_lib.settings.workdir`)."""
    return Path(root if root is not None else workdir()) / "results"


def record_paths(key: str, root: str | Path | None = None) -> list[Path]:
    """Where a record of ``key`` may be, in the order they are read."""
    return [results_dir(root) / f"{key}.json", RECORDS_OF_RECORD / f"{key}.json"]


def record_files(folder: str | Path) -> list[Path]:
    """The run records of a folder by name: its ``*.json`` files, less those that are never records
    (:data:`NOT_RECORDS`), sorted."""
    return [p for p in sorted(Path(folder).glob("*.json")) if p.name not in NOT_RECORDS]


# --------------------------------------------------------------------------------------------------------------
# Validation

def _type_name(kind) -> str:
    return "a number" if kind == NUMBER else {str: "a string", int: "a whole number", dict: "an object"}[kind]


def _fits(value, kind) -> bool:
    """``value`` has the JSON type ``kind`` (a bool is no number; a number is finite)."""
    if isinstance(value, bool):
        return False
    if kind == NUMBER:
        return isinstance(value, NUMBER) and math.isfinite(value)
    return isinstance(value, kind)


def _schema_problems(record: dict, required: dict, optional: dict | None = None, prefix: str = "") -> list[str]:
    """Missing required fields, and fields (required or optional) of the wrong type."""
    problems = [f"{prefix}{name} is missing" for name in required if name not in record]
    for name, kind in {**required, **(optional or {})}.items():
        if name in record and not _fits(record[name], kind):
            value = repr(record[name])
            problems.append(f"{prefix}{name} is {value[:40]}{'...' if len(value) > 40 else ''}, "
                            f"not {_type_name(kind)}")
    return problems


def _accuracy_problems(record: dict) -> list[str]:
    """The stored accuracy against the per-image results it summarises (and against the history's last one)."""
    n, acc, bits = record["test_images"], record["final_test_acc"], record["test_correct"]
    if n < 1 or not 0 <= acc <= 100:
        return [f"final_test_acc {acc!r} on {n!r} test images is impossible"]
    try:
        hits = unpack_bits(bits, n) if len(bits) == 2 * -(-n // 8) else None
    except ValueError:
        hits = None
    if hits is None:
        return [f"test_correct does not hold one bit per test image ({n} images)"]
    fraction = hits.double().mean().item()
    problems = []
    if abs(acc / 100 - fraction) > ACC_TOLERANCE:
        problems.append(f"final_test_acc {acc!r} disagrees with its per-image results ({100 * fraction:.4f} % of "
                        f"{n} test images correct)")
    test_acc = record["history"].get("test_acc")
    if isinstance(test_acc, list) and test_acc and test_acc[-1] != acc:
        problems.append(f"final_test_acc {acc!r} is not the history's last test accuracy {test_acc[-1]!r}")
    return problems


def record_problems(record, path: str | Path | None = None) -> list[str]:
    """What makes ``record`` unusable as a run record (empty when it is fine); ``path``: the file it was read from
    (a record is filed under its key). Raises :class:`NewerRecordError` for a newer format."""
    if not isinstance(record, dict):
        return [f"it holds a JSON {type(record).__name__}, not an object"]
    version = record.get("format", 1)
    if not _fits(version, int) or version < 1:
        return [f"format {version!r} is not a version number"]
    if version > RECORD_FORMAT:
        raise NewerRecordError(path or "this record", version)
    problems = _schema_problems(record, REQUIRED, OPTIONAL)
    if "identity_hash" in record:
        problems += _schema_problems(record, REUSED)
    if isinstance(record.get("spec"), dict):
        problems += _schema_problems(record["spec"], REQUIRED_SPEC, prefix="spec.")
    if problems:
        return problems
    if path is not None and Path(path).name != f"{record['key']}.json":
        problems.append(f"its key {record['key']!r} is not its file name")
    return problems + _accuracy_problems(record)


def _is_of_record(path: Path) -> bool:
    return path.resolve().parent == Path(RECORDS_OF_RECORD).resolve()


def _set_aside(path: Path, error: CorruptFileError) -> None:
    """Warn about a bad record, moved aside when it is ours and its folder writable; a record of record stays."""
    if _is_of_record(path):
        where = (" It is a record of record, so it stays where it is and is skipped: restore it with "
                 f"`git checkout -- course_lib/records/{path.name}` (or upgrade course_lib).")
    else:
        try:
            where = f" It was moved to {quarantine(path).name}; the run will be trained again when needed."
        except OSError as problem:
            where = f" It could not be moved aside ({problem.strerror}) and is skipped."
    warnings.warn(f"{error}{where}", RecordWarning, stacklevel=4)


# --------------------------------------------------------------------------------------------------------------
# Reading and writing

def read_record(path: Path) -> dict | None:
    """The record at ``path`` if it is usable as a whole (see :func:`record_problems`); a bad one is named, set
    aside (see the module docstring) and None."""
    path = Path(path)
    try:
        record = read_json(path)
        problems = record_problems(record, path)
        if problems:
            raise RecordError(path, problems)
        return record
    except CorruptFileError as error:
        _set_aside(path, error)
        return None


def find_record(key: str, root: str | Path | None = None,
                identity_hash: str | None = None) -> tuple[dict, Path] | None:
    """(record, its path) for ``key`` from the first place that has a usable one, else None. With
    ``identity_hash``: the first usable record of **this very run** (a record of the key made with other settings
    or data does not count)."""
    for path in record_paths(key, root):
        if path.exists() and (record := read_record(path)) is not None:
            if identity_hash is None or record.get("identity_hash") == identity_hash:
                return record, path
    return None


def write_record(record: dict, root: str | Path | None = None, folder: str | Path | None = None) -> Path:
    """Write ``record`` atomically to ``folder`` (default ``<root>/results``) as ``<key>.json``, with its format
    (``record["format"]`` is set to :data:`RECORD_FORMAT` if absent)."""
    record.setdefault("format", RECORD_FORMAT)
    path = Path(folder if folder is not None else results_dir(root)) / f"{record['key']}.json"
    atomic_write_json(path, record)
    return path


def load_results(root: str | Path | None = None, profile: str | None = None,
                 folders: list[Path] | None = None) -> list[dict]:
    """Every usable record (optionally of one profile), sorted by key; a run made here overrides the shipped one."""
    folders = folders if folders is not None else [RECORDS_OF_RECORD, results_dir(root)]
    records: dict[str, dict] = {}
    for folder in folders:
        for path in record_files(folder):
            if (record := read_record(path)) is not None:
                records[record["key"]] = record
    return [records[k] for k in sorted(records)
            if profile is None or records[k]["spec"].get("profile") == profile]

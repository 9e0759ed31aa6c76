"""The run records: one JSON file per run, written atomically, read back with validation.

Two places hold records, read in this order:

1. ``<workdir>/results/`` — runs made here (by a notebook, or ``python -m course_lib.experiments run``);
2. ``course_lib/records/`` — the course's results of record, shipped inside the package, so the results chapter
   shows them anywhere (on Colab too) without training anything.

A damaged record (an interrupted write from an older version, a hand edit) is named, moved aside to
``<name>.corrupt-<time>`` and skipped, never allowed to block later runs.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from ..files import CorruptFileError, atomic_write_json, quarantine, read_json
from ..settings import workdir

__all__ = ["RECORDS_OF_RECORD", "RecordWarning", "results_dir", "record_paths", "read_record", "find_record",
           "write_record", "load_results"]

RECORDS_OF_RECORD = Path(__file__).resolve().parents[1] / "records"
REQUIRED = ("key", "spec", "final_test_acc", "train_images", "test_images", "history", "environment")


class RecordWarning(UserWarning):
    """A record could not be used (damaged or incomplete) and was moved aside."""


def results_dir(root: str | Path | None = None) -> Path:
    """``<root>/results`` (root: :func:`course_lib.settings.workdir`)."""
    return Path(root if root is not None else workdir()) / "results"


def record_paths(key: str, root: str | Path | None = None) -> list[Path]:
    """Where a record of ``key`` may be, in the order they are read."""
    return [results_dir(root) / f"{key}.json", RECORDS_OF_RECORD / f"{key}.json"]


def read_record(path: Path) -> dict | None:
    """The record at ``path``; a damaged or incomplete one is reported, moved aside (if writable) and None."""
    try:
        record = read_json(path)
        missing = [k for k in REQUIRED if not isinstance(record, dict) or k not in record]
        if missing:
            raise CorruptFileError(path, f"not a run record: missing {missing}")
        return record
    except CorruptFileError as error:
        where = ""
        if path.parent != RECORDS_OF_RECORD:
            where = f" It was moved to {quarantine(path).name}; the run will be trained again when needed."
        warnings.warn(f"{error}{where}", RecordWarning, stacklevel=2)
        return None


def find_record(key: str, root: str | Path | None = None) -> tuple[dict, Path] | None:
    """(record, its path) for ``key`` from the first place that has a usable one, else None."""
    for path in record_paths(key, root):
        if path.exists() and (record := read_record(path)) is not None:
            return record, path
    return None


def write_record(record: dict, root: str | Path | None = None, folder: str | Path | None = None) -> Path:
    """Write ``record`` atomically to ``folder`` (default ``<root>/results``) as ``<key>.json``."""
    path = Path(folder if folder is not None else results_dir(root)) / f"{record['key']}.json"
    atomic_write_json(path, record)
    return path


def load_results(root: str | Path | None = None, profile: str | None = None,
                 folders: list[Path] | None = None) -> list[dict]:
    """Every usable record (optionally of one profile), sorted by key; a run made here overrides the shipped one."""
    folders = folders if folders is not None else [RECORDS_OF_RECORD, results_dir(root)]
    records: dict[str, dict] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            if (record := read_record(path)) is not None:
                records[record["key"]] = record
    return [records[k] for k in sorted(records)
            if profile is None or records[k]["spec"].get("profile") == profile]

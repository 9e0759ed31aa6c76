"""The run records: one JSON file per run, written atomically, read back with validation.

Two places hold records, read in this order:

1. ``<workdir>/records/`` — runs made here (by a notebook, or ``python -m course_lib.experiments run``); a work
   folder's ``results/``, where older versions wrote them, is read after it (never written);
2. ``course_lib/records/`` — the course's records of record, shipped inside the package, so the results chapter
   shows them anywhere (on Colab too) without training anything.

A record is one :class:`Record` (format 2: each thing said once; format 1, which kept copies of the spec, recipe,
preprocessing and per-image results at the top, is still read). It is checked as a whole before anything uses it
(:func:`record_problems`):

- its **format** (``"format"``, 1 when absent): a record written by a newer course_lib is refused, with the advice
  to upgrade;
- its **schema**: every required field present, with its type (a number is never a string, ``spec`` is an object),
  and every number in its range (``steps: -1``, ``num_classes: 0`` or a negative time cannot come from a run);
- its **identity**: its ``identity_hash`` is the hash of its identity, so an edited identity (``preprocess: {}``,
  which would feed unnormalised images to a model trained on normalised ones) is refused, and the preprocessing
  says what it did;
- its **consistency**: it is filed under its own key, format 1's copies agree with what they copy, and its
  ``final_test_acc`` agrees with its per-image results (``test_correct``) to 1e-6 of the fraction correct, so an
  edited accuracy does not pass.

A bad record (an interrupted write from an older version, a hand edit, a newer format) is named, moved aside to
``<name>.corrupt-<time>`` and skipped, never allowed to block later runs: the run is trained again when needed. A
record of record is never moved (it belongs to git): it is skipped with a warning saying how to restore it.
Files in a records folder that are not run records by name (``manifest.json``, the fp16 checkpoints' manifest,
when ``--out`` is the records folder) are not read as records at all.
"""
from __future__ import annotations

import ast
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..checkpoints import identity_hash, settings_text
from ..files import CorruptFileError, atomic_write_json, quarantine, read_json
from ..settings import workdir
from ..history import unpack_bits

__all__ = ["Record", "RECORDS_OF_RECORD", "RECORD_FORMAT", "NOT_RECORDS", "RecordWarning", "RecordError",
           "NewerRecordError", "records_dir", "old_records_dir", "record_paths", "record_files", "record_problems",
           "read_record", "find_record", "write_record", "load_records"]

RECORDS_OF_RECORD = Path(__file__).resolve().parents[1] / "records"
OLD_RECORDS_NAME = "results"          # the work folder's records folder before it was named records/ (still read)
RECORD_FORMAT = 2                     # the newest record format this course_lib reads (and the one it writes)
NOT_RECORDS = frozenset({"manifest.json"})     # JSON files that may share a folder with records but are none
ACC_TOLERANCE = 1e-6                  # |final_test_acc / 100 - fraction of test_correct|: float32 rounding is ~1e-7


@dataclass
class Record:
    """One finished training run, as its JSON file holds it (format 2).

    Format 2 says each thing once: what the run *was* is ``identity`` (spec, model, recipe, extra losses, data and
    preprocessing, hashed into ``identity_hash``); what it *did* is ``history`` (per-image test results included);
    the other fields summarise them. Format 1 also kept copies of ``spec``, ``recipe``, ``preprocess``,
    ``test_fingerprint`` and ``test_correct`` at the top; :meth:`from_dict` reads both, and those names remain
    properties. ``record["name"]`` reads any field or property, as the plain dicts of format 1 were read.
    """

    key: str
    label: str
    identity: dict                 # what changes the result; see course_lib.experiments.runs.run_identity
    history: dict                  # History.to_dict(): the per-epoch series and test_correct
    environment: dict              # hardware, software and commit (provenance.environment_summary)
    final_test_acc: float
    epochs: int
    steps: int
    train_images: int
    images_per_class: int
    num_classes: int
    test_images: int
    train_seconds: float
    train_source: str
    test_source: str
    identity_hash: str | None = None
    best_test_acc: float | None = None
    parameters: int | None = None
    images_per_second: float | None = None
    checkpoint: str | None = None
    val_images: int | None = None          # with a validation split only
    val_source: str | None = None
    final_val_acc: float | None = None
    best_val_acc: float | None = None
    final_train_clean_acc: float | None = None
    format: int = field(default=RECORD_FORMAT)

    # What format 1 stored twice, read from its one place.
    spec = property(lambda self: self.identity["spec"])
    recipe = property(lambda self: self.identity["recipe"])
    preprocess = property(lambda self: self.identity["preprocess"])
    test_correct = property(lambda self: self.history["test_correct"])
    test_fingerprint = property(lambda self: self.identity.get("test_data", {}).get("fingerprint"))

    def to_dict(self) -> dict:
        """The JSON of format 2 (fields that do not apply, e.g. the validation split's, left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """A record of format 1 or 2 (already checked by :func:`record_problems`)."""
        d = _as_format_2(d) if d.get("format", 1) == 1 else d
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def __getitem__(self, name: str):
        if name in _NAMES:
            return getattr(self, name)
        raise KeyError(name)

    def get(self, name: str, default=None):
        return self[name] if name in _NAMES and self[name] is not None else default

    def __contains__(self, name: str) -> bool:
        try:
            return name in _NAMES and getattr(self, name) is not None
        except KeyError:            # a format-1 name whose part of the identity this record lacks
            return False

    def __bool__(self) -> bool:     # a record is there, however few fields it holds
        return True

    def keys(self) -> list[str]:
        """The names ``record[name]`` reads (fields and format 1's names) that hold a value, so that
        ``dict(record)`` and ``{**record}`` give the plain dict a format-1 reader expects."""
        return [name for name in (*(f.name for f in fields(self)), *_FORMAT_1_COPIES) if name in self]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


_FORMAT_1_COPIES = ("spec", "recipe", "preprocess", "test_fingerprint", "test_correct")
_NAMES = frozenset([f.name for f in fields(Record)] + list(_FORMAT_1_COPIES))


def _settings_data(text: str) -> dict | str:
    """Format 1's text of an extra loss's settings (``dim=192, loss='l1', ...``) as data; the text itself if it
    does not read back to exactly that text (the form its hash was computed on)."""
    try:
        settings = {name.strip(): ast.literal_eval(value) for name, _, value in
                    (part.partition("=") for part in text.split(", ")) if name}
    except (ValueError, SyntaxError):
        return text
    return settings if settings_text(settings) == text else text


def _as_format_2(d: dict) -> dict:
    """A format-1 record as format 2: the copies at the top dropped (:func:`record_problems` has checked they agree
    with the identity and history; an identity without them, from before the identity held them, gets them), and
    the extra losses' settings as data (their hash is unchanged: :func:`~course_lib.checkpoints.settings_text`)."""
    identity = {**d["identity"]}
    if isinstance(identity.get("extra_losses"), list):
        identity["extra_losses"] = [{**t, "settings": _settings_data(t["settings"])}
                                    if isinstance(t, dict) and isinstance(t.get("settings"), str) else t
                                    for t in identity["extra_losses"]]
    for name in ("spec", "recipe", "preprocess"):
        if name in d:
            identity.setdefault(name, d[name])
    if "test_fingerprint" in d and "test_data" not in identity:
        identity["test_data"] = {"fingerprint": d["test_fingerprint"]}
    history = {**d["history"], "test_correct": d["history"].get("test_correct") or d.get("test_correct")}
    out = {k: v for k, v in d.items() if k not in _FORMAT_1_COPIES}
    return {**out, "identity": identity, "history": history, "format": RECORD_FORMAT}


NUMBER = (int, float)
REQUIRED = {"key": str, "label": str, "final_test_acc": NUMBER, "epochs": int, "steps": int,
            "train_images": int, "images_per_class": int, "num_classes": int, "test_images": int,
            "train_seconds": NUMBER, "train_source": str, "test_source": str,
            "history": dict, "identity": dict, "environment": dict}
OPTIONAL = {"format": int, "identity_hash": str, "best_test_acc": NUMBER, "parameters": int,
            "images_per_second": NUMBER, "checkpoint": str, "val_images": int, "val_source": str,
            "final_val_acc": NUMBER, "best_val_acc": NUMBER, "final_train_clean_acc": NUMBER}
FORMAT_1 = {"spec": dict, "test_correct": str}                              # required in format 1 only
FORMAT_1_OPTIONAL = {"recipe": dict, "preprocess": dict, "test_fingerprint": str}
REQUIRED_SPEC = {"model": str, "dataset": str, "profile": str, "seed": int}
# Ranges: (smallest, largest) of each number a run can have produced.
RANGES = {"epochs": (1, math.inf), "steps": (1, math.inf), "train_images": (1, math.inf),
          "images_per_class": (1, math.inf), "num_classes": (2, math.inf), "test_images": (1, math.inf),
          "val_images": (1, math.inf), "parameters": (1, math.inf), "train_seconds": (0, math.inf),
          "images_per_second": (1e-9, math.inf), "final_test_acc": (0, 100), "best_test_acc": (0, 100),
          "final_val_acc": (0, 100), "best_val_acc": (0, 100), "final_train_clean_acc": (0, 100)}


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


def records_dir(root: str | Path | None = None) -> Path:
    """``<root>/records``, where your runs' records are written (root: :func:`course_lib.settings.workdir`)."""
    return Path(root if root is not None else workdir()) / "records"


def old_records_dir(root: str | Path | None = None) -> Path:
    """``<root>/results``: where course_lib wrote your records before the folder was named ``records/``. Still
    read (after ``records/``), never written, so that a work folder from an older version keeps its runs."""
    return Path(root if root is not None else workdir()) / OLD_RECORDS_NAME


def record_paths(key: str, root: str | Path | None = None) -> list[Path]:
    """Where a record of ``key`` may be, in the order they are read."""
    return [folder / f"{key}.json" for folder in (records_dir(root), old_records_dir(root), RECORDS_OF_RECORD)]


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
    n, acc, bits = record["test_images"], record["final_test_acc"], record["history"]["test_correct"]
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


def _range_problems(record: dict) -> list[str]:
    """Numbers no run can have produced (``steps: -1``, ``num_classes: 0``, a negative time), and counts that
    disagree with each other or with the history."""
    problems = [f"{name} {record[name]!r} is outside [{low}, {high}]" for name, (low, high) in RANGES.items()
                if record.get(name) is not None and not low <= record[name] <= high]
    if problems:
        return problems
    if record["images_per_class"] != record["train_images"] // record["num_classes"]:
        problems.append(f"images_per_class {record['images_per_class']} is not train_images // num_classes "
                        f"({record['train_images']} // {record['num_classes']})")
    epochs = record["history"].get("epoch")
    if isinstance(epochs, list) and len(epochs) != record["epochs"]:
        problems.append(f"epochs {record['epochs']} disagrees with the history's {len(epochs)} epochs")
    return problems


def _preprocess_problems(preprocess) -> list[str]:
    """How the model's inputs were made, which analysis repeats: normalised with three means and three positive
    standard deviations, or not normalised (``{}`` would silently mean the raw pixels)."""
    if not isinstance(preprocess, dict) or not isinstance(preprocess.get("normalize"), bool):
        return [f"identity.preprocess {preprocess!r} does not say whether the inputs were normalised"]
    if not preprocess["normalize"]:
        return []
    mean, std = preprocess.get("mean"), preprocess.get("std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3
            and all(_fits(v, NUMBER) for v in mean + std) and min(std) > 0):
        return [f"identity.preprocess {preprocess!r} needs three means and three standard deviations > 0"]
    return []


def _identity_problems(record: dict, stored: dict) -> list[str]:
    """The identity as a whole: the spec and preprocessing it must hold, the recipe's normalisation, and the hash
    of the identity as ``stored`` in the file."""
    identity = record["identity"]
    if not isinstance(identity.get("spec"), dict):
        return ["identity.spec is missing"]
    problems = _schema_problems(identity["spec"], REQUIRED_SPEC, prefix="spec.")
    if not problems and identity["spec"]["seed"] < 0:
        problems.append(f"spec.seed {identity['spec']['seed']} is negative")
    if "identity_hash" in record or "preprocess" in identity:
        problems += _preprocess_problems(identity.get("preprocess"))
    recipe = identity.get("recipe")
    if not problems and isinstance(recipe, dict) and "preprocess" in identity and \
            recipe.get("normalize", True) != identity["preprocess"]["normalize"]:
        problems.append(f"identity.preprocess {identity['preprocess']!r} disagrees with the recipe's "
                        f"normalize={recipe.get('normalize')!r}")
    if "identity_hash" in record and identity_hash(stored) != record["identity_hash"]:
        problems.append(f"identity_hash {record['identity_hash']} is not the hash of its identity "
                        f"({identity_hash(stored)}): the identity was edited")
    return problems


def _format_1_problems(record: dict) -> list[str]:
    """Format 1's copies, which must agree with the identity and history they copy."""
    problems = _schema_problems(record, FORMAT_1, FORMAT_1_OPTIONAL)
    if problems:
        return problems
    identity, history = record["identity"], record["history"]
    sources = {"spec": identity.get("spec"), "recipe": identity.get("recipe"),
               "preprocess": identity.get("preprocess"), "test_correct": history.get("test_correct"),
               "test_fingerprint": (identity.get("test_data") or {}).get("fingerprint")}
    return [f"{name} disagrees with the {'history' if name == 'test_correct' else 'identity'}"
            for name, copied in sources.items() if name in record and copied is not None and record[name] != copied]


def record_problems(record, path: str | Path | None = None) -> list[str]:
    """What makes ``record`` (the JSON of a record, format 1 or 2) unusable as a run record (empty when it is
    fine); ``path``: the file it was read from (a record is filed under its key). Raises :class:`NewerRecordError`
    for a newer format."""
    if not isinstance(record, dict):
        return [f"it holds a JSON {type(record).__name__}, not an object"]
    version = record.get("format", 1)
    if not _fits(version, int) or version < 1:
        return [f"format {version!r} is not a version number"]
    if version > RECORD_FORMAT:
        raise NewerRecordError(path or "this record", version)
    problems = _schema_problems(record, REQUIRED, OPTIONAL)
    if version == 1:
        problems += _format_1_problems(record) if not problems else []
    if problems:
        return problems
    stored, record = record["identity"], _as_format_2(record) if version == 1 else record
    if not isinstance(record["history"].get("test_correct"), str):
        return ["history.test_correct is missing"]
    problems = _identity_problems(record, stored) + _range_problems(record)
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

def read_record(path: Path) -> Record | None:
    """The record at ``path`` if it is usable as a whole (see :func:`record_problems`); a bad one is named, set
    aside (see the module docstring) and None."""
    path = Path(path)
    try:
        record = read_json(path)
        problems = record_problems(record, path)
        if problems:
            raise RecordError(path, problems)
        return Record.from_dict(record)
    except CorruptFileError as error:
        _set_aside(path, error)
        return None


def find_record(key: str, root: str | Path | None = None,
                identity_hash: str | None = None) -> tuple[Record, Path] | None:
    """(record, its path) for ``key`` from the first place that has a usable one, else None. With
    ``identity_hash``: the first usable record of **this very run** (a record of the key made with other settings
    or data does not count)."""
    for path in record_paths(key, root):
        if path.exists() and (record := read_record(path)) is not None:
            if identity_hash is None or record.identity_hash == identity_hash:
                return record, path
    return None


def write_record(record: Record, root: str | Path | None = None, folder: str | Path | None = None) -> Path:
    """Write ``record`` atomically to ``folder`` (default ``<root>/records``) as ``<key>.json``, in format 2."""
    path = Path(folder if folder is not None else records_dir(root)) / f"{record.key}.json"
    atomic_write_json(path, record.to_dict())
    return path


def load_records(root: str | Path | None = None, profile: str | None = None,
                 folders: list[Path] | None = None) -> list[Record]:
    """Every usable record (optionally of one profile), sorted by key; a run made here overrides the shipped one
    (and one in ``records/`` one in the older ``results/``)."""
    folders = folders if folders is not None else [RECORDS_OF_RECORD, old_records_dir(root), records_dir(root)]
    records: dict[str, Record] = {}
    for folder in folders:
        for path in record_files(folder):
            if (record := read_record(path)) is not None:
                records[record.key] = record
    return [records[k] for k in sorted(records) if profile is None or records[k].spec.get("profile") == profile]

"""The one deadline runner: runs in priority order, each result landing the moment it exists. The GPU loan's queue
(:func:`run_queue`) and the CPU study (:mod:`.study`) both work down their lists with :func:`work_down`.

A lent GPU comes with minutes, not hours, and a command that runs past its limit is killed; a CPU study runs for
hours and may be killed too. So the runner works down a priority list, starts a run only if its expected time (from
the throughput it measures on this device) fits before the deadline (and under the cap per run, when there is one),
and as soon as a run ends its record lands, and for the models of record an fp16 checkpoint. Run the same command
again: finished runs are skipped, so it continues where it stopped. Once the deadline has passed, the remaining runs
are reported "not started" without loading their data or measuring anything.

A run is *done* when a record of **this very run** exists where the queue's records land: the run is prepared and
its identity hash compared, so a record of the same key made with other data or settings does not count. The GPU
queue's records land in the work folder's ``records/`` and a record of record counts too; the study's land in the
records of record, and only a record there counts (a record in ``records/`` never stands in for one). A run of record
is done only when its fp16 file exists too (a manifest entry with the same identity, every part present); if it was
recorded but never exported (killed in between), its finished checkpoint is loaded and exported, nothing is
trained. ``on_landed`` (e.g. a commit in ``tools/study.py``) is called for every run that is done, the runs done
before included, so that a run killed between landing and that call is finished on the rerun; its error stops the
queue at once.
"""
from __future__ import annotations

import io
import math
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..files import atomic_write_bytes
from ..runtime import get_device
from . import of_record as _of_record
from .of_record import export_fp16, manifest_entry
from .plan import comparison_and_pair, curve_specs, drloc_ablation
from .records import find_record, read_record, record_files, records_dir, write_record
from .runs import execute, measure_throughput, prepare

if TYPE_CHECKING:     # names used only in annotations
    from ..profiles import Profile
    from .runs import PreparedRun, RunSpec

__all__ = ["priority_queue", "QueueReport", "Queue", "check_limit", "work_down", "run_queue"]


def priority_queue(profile: Profile) -> tuple[list[RunSpec], set[RunSpec]]:
    """(runs in priority order, the runs whose checkpoints are kept as fp16 files of record).

    1. CIFAR-10, full training set: ResNet-18, the ViT, the ViT with DRLoc (the models the analysis notebooks open);
    2. the small-data curve, seed by seed, smallest size first (the first rungs of every seed before the rest);
    3. the DRLoc ablation on the CIFAR-10 subset.
    """
    full = comparison_and_pair(profile, "cifar10")     # the pair's ViT is its own run where its budget differs
    of_record = set(full.values())
    order = list(full.values())
    curve = curve_specs(profile)
    for seed_index in range(len(profile.curve_seeds)):
        for n in profile.curve_sizes:
            order += [by_n[n][seed_index] for by_n in curve.values() if n in by_n]
    order += list(drloc_ablation(profile).values())
    return list(dict.fromkeys(order)), of_record


@dataclass
class QueueReport:
    """What one call of :func:`work_down` did: per run, "trained", "done before" or why it was not started."""

    outcome: dict[str, str] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)     # model label -> images/s measured

    def summary(self) -> str:
        return "\n".join(f"  {key}: {what}" for key, what in self.outcome.items())


Landed = Callable[["RunSpec", "list[Path]", dict], None]


@dataclass
class Queue:
    """A list of runs and where they land. ``weights``: the folder of the fp16 files of record (with their
    ``manifest.json``); ``records``: where records land (None: the work folder's ``records/``, and a record of
    record counts as done too); ``pack``: also pack every record of the work folder into ``weights/records.tar.gz``
    (the one file a GPU loan brings back); ``max_run_s``: the cap per run (None: none); ``check``: called with each
    prepared run before anything else (raises to refuse it); ``on_landed(spec, paths, record)``: see the module
    docstring; ``name``: the prefix of the lines it prints; ``carry_over``: start a run that will not finish before
    the deadline too (it is stopped with the session and resumed from its checkpoint by the next call)."""

    specs: list[RunSpec]
    weights: Path
    of_record: set[RunSpec] = field(default_factory=set)
    records: Path | None = None
    pack: bool = False
    max_run_s: float | None = None
    check: Callable[[PreparedRun], None] | None = None
    on_landed: Landed | None = None
    name: str = "queue"
    carry_over: bool = False


def check_limit(value, what: str, option: str) -> float:
    """``value`` as a finite number of seconds above 0, else a ValueError naming ``option`` (NaN compares False
    with everything, so it would silently mean "no limit")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{option} must be a finite number above 0 ({what}), got {value!r}.")
    return float(value)


def _pack_records(root: str | Path | None, out: Path) -> None:
    """All records made here, as one archive in ``out`` (one file, however many runs)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in record_files(records_dir(root)):
            tar.add(path, arcname=f"records/{path.name}")
    atomic_write_bytes(out / "records.tar.gz", buffer.getvalue())


def _landed_record(queue: Queue, run: PreparedRun, root) -> tuple[dict, Path] | None:
    """The record of this very run where the queue's records land (see the module docstring), else None."""
    if queue.records is None:
        return find_record(run.spec.key, root, run.identity_hash)
    path = Path(queue.records) / f"{run.spec.key}.json"
    record = read_record(path) if path.exists() else None
    return (record, path) if record is not None and record.get("identity_hash") == run.identity_hash else None


def _weights(queue: Queue, run: PreparedRun) -> list[Path] | None:
    """The paths of this run's fp16 file of record and its manifest ([] for a run not of record), else None."""
    if run.spec not in queue.of_record:
        return []
    folders = [queue.weights] + ([_of_record.OF_RECORD_DIR] if queue.records is None else [])
    for folder in folders:
        if (entry := manifest_entry(run.spec.key, run.identity_hash, folder)) is not None:
            return [Path(folder) / name for name in entry["parts"]] + [Path(folder) / "manifest.json"]
    return None


def _throughput(queue: Queue, run: PreparedRun, report: QueueReport, device) -> float:
    """Images/s of this model here, measured once per model and call: the best of three short measurements (another
    process on the same core only ever slows one down)."""
    label = run.spec.label
    if label not in report.throughput:
        report.throughput[label] = max(measure_throughput(run.model, run.extra_losses, run.cfg, run.train,
                                                          get_device(device)) for _ in range(3))
    return report.throughput[label]


def _land(queue: Queue, run: PreparedRun, result, root) -> list[Path]:
    """Write what a finished run leaves (its record where the queue's records land, its fp16 file); the paths."""
    record = result.record
    if queue.records is not None:
        path = Path(queue.records) / f"{run.spec.key}.json"
        if _landed_record(queue, run, root) is None:     # execute() reused one kept elsewhere (the work folder's)
            write_record(record, folder=queue.records)
        paths = [path]
    else:
        paths = [records_dir(root) / f"{run.spec.key}.json"]
    if queue.pack:
        _pack_records(root, queue.weights)
    if run.spec in queue.of_record:
        paths += export_fp16(result.model, record, queue.weights) + [Path(queue.weights) / "manifest.json"]
    return paths


def _train(queue: Queue, run: PreparedRun, report: QueueReport, time_left, device, root) -> tuple[str, list, dict]:
    """Measure, then train the run if its estimate fits; (outcome, landed paths, record)."""
    ips, done = _throughput(queue, run, report, device), run.epochs_done()
    need, left = run.estimate_seconds(ips, done), time_left()
    resumes = f" (its checkpoint holds {done} of {run.cfg.epochs} epochs)" if done else ""
    print(f"[{queue.name}] {run.spec.key}: {ips:,.0f} img/s measured, needs ~{need:.0f} s{resumes}, {left:.0f} s "
          "left", flush=True)
    if queue.max_run_s is not None and need > queue.max_run_s:
        return f"not started: needs ~{need:.0f} s, over the cap of {queue.max_run_s:.0f} s per run", [], {}
    if need > left and not queue.carry_over:
        return f"skipped: needs ~{need:.0f} s, {left:.0f} s left", [], {}
    if need > left:     # a run longer than a session: the checkpoint after every epoch carries it to the next call
        print(f"[{queue.name}] {run.spec.key}: will not finish before the deadline; it trains until stopped and the "
              f"next call resumes it from {run.checkpoint} (saved after every epoch)", flush=True)
    result = execute(run, device, progress=True, images_per_second=ips, records_folder=queue.records)
    paths = _land(queue, run, result, root)
    record = result.record
    return (f"trained: {record['final_test_acc']:.2f} % on {record['test_images']:,} test images in "
            f"{record['train_seconds']:.0f} s"), paths, record


def _one(queue: Queue, spec: RunSpec, report: QueueReport, time_left, data_root, root, device) -> str:
    """Prepare one run, find out whether it is done, and do what is missing; its outcome."""
    run = prepare(spec, data_root, root)
    if queue.check is not None:
        queue.check(run)
    found, weights = _landed_record(queue, run, root), _weights(queue, run)
    if found is not None and weights is not None:
        outcome, paths, record = "done before", [found[1], *weights], found[0]
    elif found is not None and run.checkpoint.exists():     # recorded, killed before its export: load, export
        result = execute(run, device, progress=False, records_folder=queue.records)
        paths, record = _land(queue, run, result, root), result.record
        outcome = "exported: trained before, its fp16 file was missing"
    else:
        outcome, paths, record = _train(queue, run, report, time_left, device, root)
    if paths and queue.on_landed is not None:
        queue.on_landed(spec, paths, record)
    return outcome


def work_down(queue: Queue, deadline_s: float, data_root: str | Path | None = None, root: str | Path | None = None,
              device: str | torch.device | None = None, start: float | None = None,
              clock=time.monotonic) -> QueueReport:
    """Work down ``queue.specs`` in order while their expected times fit before ``deadline_s`` seconds from
    ``start`` (default now); see the module docstring. Prints each run's outcome as it is decided."""
    check_limit(deadline_s, "seconds until the deadline", "deadline_s")
    if queue.max_run_s is not None:
        check_limit(queue.max_run_s, "the most seconds one run may take", "max_run_s")
    start = clock() if start is None else start
    Path(queue.weights).mkdir(parents=True, exist_ok=True)
    report = QueueReport()
    if queue.pack:
        _pack_records(root, queue.weights)        # records a killed call wrote but never packed come back too
    def time_left() -> float:
        return deadline_s - (clock() - start)

    for spec in queue.specs:
        if time_left() <= 0:
            report.outcome[spec.key] = "not started: the deadline has passed"
        else:
            report.outcome[spec.key] = _one(queue, spec, report, time_left, data_root, root, device)
        print(f"[{queue.name}] {spec.key}: {report.outcome[spec.key]}", flush=True)
    return report


def run_queue(specs: list[RunSpec], deadline_s: float, out: str | Path, of_record: set[RunSpec] = frozenset(),
              data_root: str | Path | None = None, root: str | Path | None = None,
              device: str | torch.device | None = None, start: float | None = None,
              clock=time.monotonic) -> QueueReport:
    """A GPU loan's queue: train ``specs`` in order while their expected times fit before ``deadline_s`` seconds
    from ``start`` (default now). Records land in the work folder's ``records/`` and, packed, in
    ``out/records.tar.gz``; the fp16 checkpoints of the runs in ``of_record`` in ``out`` (see :mod:`.of_record`)."""
    return work_down(Queue(list(specs), Path(out), set(of_record), pack=True), deadline_s, data_root, root, device,
                     start, clock)

"""Runs in priority order against a deadline, each result written out the moment it exists (for short GPU loans).

A lent GPU comes with minutes, not hours, and a command that runs past its limit is killed. So :func:`run_queue`
works down a priority list, starts a run only if its expected time (from the throughput it measures on this device
before each run) fits before the deadline, and as soon as a run ends writes its record, and for the models of record
an fp16 checkpoint, into the output folder that comes back. Run the same command again: finished runs are skipped,
so it continues where it stopped.

A run is *done* when a record of **this very run** exists (in ``results/`` or in the course's records of record):
the run is prepared and its identity hash compared, so a record of the same key made with other data or settings
does not count. A run of record is done only when its fp16 file exists too (a manifest entry with the same identity
in ``out`` or ``checkpoints_of_record/``, every part present); if it was recorded but never exported (killed in
between), its finished checkpoint is loaded and exported, nothing is trained.
"""
from __future__ import annotations

import io
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..files import atomic_write_bytes
from ..runtime import get_device
from .of_record import export_fp16, manifest_entry
from .plan import comparison_specs, curve_specs, drloc_ablation, drloc_specs
from .records import find_record, record_files, results_dir
from .runs import execute, measure_throughput, prepare

if TYPE_CHECKING:     # names used only in annotations
    from ..profiles import Profile
    from .runs import PreparedRun, RunSpec

__all__ = ["priority_queue", "QueueReport", "run_queue"]


def priority_queue(profile: Profile) -> tuple[list[RunSpec], set[RunSpec]]:
    """(runs in priority order, the runs whose checkpoints are kept as fp16 files of record).

    1. CIFAR-10, full training set: ResNet-18, the ViT, the ViT with DRLoc (the models the analysis notebooks open);
    2. the small-data curve, seed by seed, smallest size first (the first rungs of every seed before the rest);
    3. the DRLoc ablation on the CIFAR-10 subset.
    """
    full = {**comparison_specs(profile, "cifar10"), **drloc_specs(profile, "cifar10")}
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
    """What one call of :func:`run_queue` did: per run, "trained", "done before" or why it was skipped."""

    outcome: dict[str, str] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)     # model label -> images/s measured

    def summary(self) -> str:
        return "\n".join(f"  {key}: {what}" for key, what in self.outcome.items())


def _pack_records(root: str | Path | None, out: Path) -> None:
    """All records made here, as one archive in ``out`` (one file, however many runs)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in record_files(results_dir(root)):
            tar.add(path, arcname=f"results/{path.name}")
    atomic_write_bytes(out / "results.tar.gz", buffer.getvalue())


def _status(run: PreparedRun, of_record: bool, out: Path, root: str | Path | None) -> str:
    """"done" (recorded with this identity and, for a run of record, exported), "export" (recorded, its fp16 file
    missing, its finished checkpoint here) or "train"."""
    key, identity_hash = run.spec.key, run.identity_hash
    if find_record(key, root, identity_hash) is None:
        return "train"
    if not of_record or manifest_entry(key, identity_hash, out) or manifest_entry(key, identity_hash):
        return "done"
    return "export" if run.checkpoint.exists() else "train"


def _train(run: PreparedRun, report: QueueReport, time_left, out: Path, of_record: bool,
           device: str | torch.device | None) -> str:
    """Measure the speed, train the run if its estimate fits ``time_left()``, write its results out; the outcome."""
    spec = run.spec
    ips = report.throughput.get(spec.label) or measure_throughput(
        run.model, run.extra_losses, run.cfg, run.train, get_device(device))
    report.throughput[spec.label] = ips
    need, left = run.estimate_seconds(ips), time_left()
    print(f"[queue] {spec.key}: {ips:,.0f} img/s, needs ~{need:.0f} s, {left:.0f} s left", flush=True)
    if need > left:
        return f"skipped: needs ~{need:.0f} s, {left:.0f} s left"
    result = execute(run, device, progress=True, images_per_second=ips)
    _pack_records(run.checkpoint.parents[1], out)
    if of_record:
        export_fp16(result.model, result.record, out)
    return f"trained: {result.record['final_test_acc']:.2f} % in {result.record['train_seconds']:.0f} s"


def run_queue(specs: list[RunSpec], deadline_s: float, out: str | Path, of_record: set[RunSpec] = frozenset(),
              data_root: str | Path | None = None, root: str | Path | None = None,
              device: str | torch.device | None = None, start: float | None = None,
              clock=time.monotonic) -> QueueReport:
    """Train ``specs`` in order while their expected times fit before ``deadline_s`` seconds from ``start``.

    A run that is done (see the module docstring) is skipped; a run that would not finish in the time left is
    skipped (a shorter one later in the list may still fit). After each run its record goes into
    ``out/results.tar.gz`` and, for runs in ``of_record``, an fp16 checkpoint into ``out`` (see :mod:`.of_record`).
    ``start``: when the deadline's clock started (default now).
    """
    start = clock() if start is None else start
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = QueueReport()
    _pack_records(root, out)              # records a killed call wrote but never packed come back too
    for spec in specs:
        if clock() - start >= deadline_s:
            report.outcome[spec.key] = "not started: the deadline has passed"
            continue
        run = prepare(spec, data_root, root)
        status = _status(run, spec in of_record, out, root)
        if status == "done":
            report.outcome[spec.key] = "done before"
        elif status == "export":            # recorded, killed before its export: load the finished checkpoint
            result = execute(run, device, progress=False)
            export_fp16(result.model, result.record, out)
            report.outcome[spec.key] = "exported: trained before, its fp16 file was missing"
        else:
            report.outcome[spec.key] = _train(run, report, lambda: deadline_s - (clock() - start), out,
                                              spec in of_record, device)
    return report

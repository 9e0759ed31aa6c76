"""The CPU study of record: ResNet-18, ViT-Lite and ViT-Lite + DRLoc on 500 CIFAR-10 images per class, tested on
all 10,000 test images (profile ``study``; the data are the JPEG copy of CIFAR-10, quality 75, since the official
pixels cannot be downloaded here).

How many epochs? A *pilot* decides, before any run of record, on data the runs never test on: ViT-Lite (the model
that learns slowest on small data) is trained on 450 of the 500 images per class with a **constant** learning rate
after warm-up, and evaluated every epoch on the 50 held-out images per class. The rule, :func:`plateau_epoch`:

    the first epoch whose held-out accuracy, averaged with its two neighbours, comes within ``tolerance``
    points of the best such average (a constant learning rate, so a rise late in the run is learning, not
    the schedule's annealing).

The runs of record then train for ``min(plateau, the epochs ResNet-18 fits in an hour)`` with the course recipe's
cosine, the same number of optimiser steps for every model. The queue (:func:`study_queue`): (1) the three models
at 500 per class, (2) the small-data curve at 100, 250 and 1,000 per class, (3) a second seed of (1). Each record
lands in ``course_lib/records/``, the fp16 weights of (1) in ``checkpoints_of_record/``; ``--commit`` commits each
file as it lands, so a session that ends loses at most the run in progress (which resumes from its checkpoint).

    python -m course_lib.experiments.study pilot --data-root data
    python -m course_lib.experiments.study run --data-root data --deadline-s 9000 --commit
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..data import hold_out
from ..files import atomic_write_json, read_json
from ..profiles import get_profile
from ..runtime import device_name, get_device
from ..settings import workdir
from ..train import fit
from .of_record import OF_RECORD_DIR, export_fp16, manifest_entry
from .plan import comparison_specs, drloc_specs, plan
from .provenance import environment_summary
from .records import RECORDS_OF_RECORD, find_record
from .runs import RunSpec, execute, load_data, measure_throughput, prepare

__all__ = ["plateau_epoch", "PILOT_DIR", "pilot", "study_queue", "run_study"]

PILOT_DIR = RECORDS_OF_RECORD / "pilot"
HOUR = 3600.0


def plateau_epoch(held_out_acc: list[float], tolerance: float = 2.0) -> int:
    """The pilot's rule: the first epoch (1-based) whose 3-epoch mean held-out accuracy is within ``tolerance``
    points of the best 3-epoch mean. ``tolerance`` 2 points: about one standard error of an accuracy near 60 %
    on 500 held-out images, so a smaller rise could be noise."""
    acc = torch.tensor(held_out_acc, dtype=torch.float64)
    if len(acc) < 3 or not torch.isfinite(acc).all():
        raise ValueError(f"plateau_epoch needs at least 3 finite accuracies, got {held_out_acc!r}.")
    smooth = torch.cat([acc[:2].mean().view(1), acc.unfold(0, 3, 1).mean(dim=1), acc[-2:].mean().view(1)])
    return int(torch.nonzero(smooth >= smooth.max() - tolerance)[0]) + 1


def pilot(data_root: str | Path | None = None, epochs: int = 40, held_out: int = 50, model: str = "vit",
          device: str | None = None, out: Path = PILOT_DIR) -> dict:
    """Train the pilot (see the module docstring), write its record to ``out`` and return it."""
    profile = get_profile("study")
    spec = RunSpec(model, "cifar10", profile)
    train, _, _ = load_data(spec, data_root)
    if "JPEG" not in train.source:
        raise RuntimeError(f"The study trains on the CIFAR-10 JPEG copy, but got {train.source}. Put "
                           "cifar10_yoongikim_jpg.tar.xz under <data root>/cifar10-jpeg/.")
    part, held = hold_out(train, held_out, seed=spec.seed + 1000)
    run = prepare(spec, data_root)        # the run of record's model and recipe, before any change
    cfg = replace(run.cfg.with_epochs(epochs), schedule="constant", eval_every=1)
    dev = get_device(device)
    ips = measure_throughput(run.model, run.extra_losses, cfg, part, dev)
    print(f"[pilot] {spec.label} on {len(part):,} images, {len(held):,} held out; {epochs} epochs at a constant "
          f"learning rate; {ips:,.0f} img/s measured on {device_name(dev)}", flush=True)
    checkpoint = Path(workdir()) / "checkpoints" / f"pilot-{model}-{epochs}.pt"
    history = fit(run.model, part, held, cfg, checkpoint=checkpoint, device=dev)
    chosen = plateau_epoch(history.test_acc)
    record = {"key": f"pilot-cifar10-{model}-study", "model": model, "train_images": len(part),
              "held_out_images": len(held), "train_source": part.source, "recipe": asdict(cfg),
              "images_per_second_measured": ips, "rule": plateau_epoch.__doc__.split("\n")[0],
              "plateau_epoch": chosen, "history": history.to_dict(), "environment": environment_summary(dev)}
    atomic_write_json(Path(out) / f"{record['key']}.json", record)
    print(f"[pilot] held-out accuracy plateaus at epoch {chosen} of {epochs}", flush=True)
    return record


def study_queue(seeds: tuple[int, ...] = (0, 1)) -> tuple[list[RunSpec], set[RunSpec]]:
    """(runs in priority order, the runs whose fp16 weights are kept of record: the first trio, which notebooks
    01-05 open, and the ViT of notebook 04's contrast)."""
    profile = get_profile("study")

    def trio(n: int | None, seed: int) -> list[RunSpec]:
        return [*comparison_specs(profile, "cifar10", n, seed).values(),
                *drloc_specs(profile, "cifar10", n, seed).values()]

    first = trio(None, seeds[0])
    order = first + [s for n in profile.curve_sizes if n != 500 for s in trio(n, seeds[0])]
    order += [s for seed in seeds[1:] for s in trio(None, seed)]
    contrast = plan(profile, ("cifar10",))["ch4"]      # notebook 04 opens the ViT of the curve's smallest size
    return list(dict.fromkeys(order)), set(first) | set(contrast)


# The tuning grid (issue 28): at the cheapest size, the same effort for both families. Three learning rates
# around the course recipe's 1e-3 at 50 epochs; the doubling check (100 epochs at the best rate) follows.
TUNING_SIZE = 100
TUNING_LRS = (1e-3, 5e-4, 2e-3)
TUNING_EPOCHS = 50


def tuning_queue(models: tuple[str, ...] = ("vit", "resnet18")) -> list[RunSpec]:
    """The tuning runs of the study (profile ``study2``), cheapest and most informative first: the course
    recipe's rate for every family, then the others."""
    profile = get_profile("study2")
    return [RunSpec(model, "cifar10", profile, train_per_class=TUNING_SIZE, epochs=TUNING_EPOCHS, lr=lr)
            for lr in TUNING_LRS for model in models]


def _commit(paths: list[Path], message: str) -> None:
    """Commit exactly ``paths`` (other staged work is left alone); retried while another git holds the lock."""
    names = [str(p) for p in paths]
    for _ in range(30):
        add = subprocess.run(["git", "add", "--", *names], capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", *names], capture_output=True, text=True).returncode == 0
        if done:
            return
        time.sleep(10)
    print(f"[study] could not commit {names}; commit them by hand.", flush=True)


def run_study(data_root: str | Path | None = None, deadline_s: float = 10 * HOUR, commit: bool = False,
              device: str | None = None, only: list[str] | None = None, max_run_s: float = HOUR,
              queue: str = "study") -> None:
    """Work down :func:`study_queue` (or the runs whose keys are in ``only``, e.g. to train two at once, one per
    core): a run is done when a record of record with its identity exists (and, for the runs of record, its fp16
    weights with that identity); a run starts only if its estimate fits both ``max_run_s`` (an hour) and the time
    left. The estimate comes from a throughput measured now, which a busy machine lowers: raise ``max_run_s`` for
    a run that the cap refuses only because of that."""
    start = time.monotonic()
    specs, of_record = study_queue()
    if queue == "tune":
        specs, of_record = tuning_queue(), set()
    elif queue == "study2":         # the second study's planned runs (budget_rule.study2_queue), in priority order
        from .budget_rule import study2_queue
        specs, of_record = [s for s, planned in study2_queue() if planned], set()
    if only:
        unknown = sorted(set(only) - {s.key for s in specs})
        if unknown:
            raise SystemExit(f"--only names runs that are not in the study's queue: {unknown}. Choose from "
                             f"{[s.key for s in specs]}.")
        specs = [s for s in specs if s.key in only]
    dev = get_device(device)
    for spec in specs:
        run = prepare(spec, data_root)
        if "JPEG" not in run.train.source:
            raise RuntimeError(f"{spec.key}: the study trains on the CIFAR-10 JPEG copy, got {run.train.source}.")
        found = find_record(spec.key)
        recorded = found is not None and found[0].get("identity_hash") == run.identity_hash
        weights = manifest_entry(spec.key, run.identity_hash) is not None
        if recorded and (weights or spec not in of_record):
            print(f"[study] {spec.key}: done before", flush=True)
            continue
        # The best of three short measurements: another process on the same core only ever slows one down.
        ips = max(measure_throughput(run.model, run.extra_losses, run.cfg, run.train, dev) for _ in range(3))
        need, left = run.estimate_seconds(ips), deadline_s - (time.monotonic() - start)
        print(f"[study] {spec.key}: {ips:,.0f} img/s measured, needs ~{need / 60:.0f} min, {left / 60:.0f} min left",
              flush=True)
        if not recorded and (need > max_run_s or need > left):
            print(f"[study] {spec.key}: not started (over the cap per run or past the deadline)", flush=True)
            continue
        result = execute(run, dev, progress=True, results_folder=RECORDS_OF_RECORD, images_per_second=ips)
        paths = [RECORDS_OF_RECORD / f"{spec.key}.json"]
        if spec in of_record:
            paths += export_fp16(result.model, result.record, OF_RECORD_DIR) + [OF_RECORD_DIR / "manifest.json"]
        print(f"[study] {spec.key}: {result.record['final_test_acc']:.2f} % on {result.record['test_images']:,} "
              f"test images, {result.record['train_seconds'] / 60:.1f} min", flush=True)
        if queue in ("tune", "study2"):      # the second study's progress table lands with each of its records
            from .budget_rule import write_progress
            paths.append(write_progress())
            r = result.record
            print(f"[study] {spec.key}: clean training accuracy {r['final_train_clean_acc']:.1f} %, validation "
                  f"{r['final_val_acc']:.1f} % on {r['val_images']:,} images", flush=True)
        if commit:
            _commit(paths, f"Study of record: {spec.key} ({result.record['final_test_acc']:.2f} % on "
                           f"{result.record['test_images']:,} test images; python -m course_lib.experiments.study "
                           f"run, 2-core CPU)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_lib.experiments.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pilot", "run"])
    parser.add_argument("--queue", choices=["study", "tune", "study2"], default="study",
                        help="which queue `run` works down: the first study's, the second study's tuning grid, or "
                             "the second study's planned runs (budget_rule.study2_queue)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--epochs", type=int, default=40, help="the pilot's epochs")
    parser.add_argument("--deadline-s", type=float, default=10 * HOUR)
    parser.add_argument("--commit", action="store_true", help="git-commit each record and checkpoint as it lands")
    parser.add_argument("--only", default=None, help="comma-separated run keys (default: the whole queue)")
    parser.add_argument("--max-run-minutes", type=float, default=60.0,
                        help="start no run estimated to take longer (default 60)")
    args = parser.parse_args(argv)
    if args.command == "pilot":
        record = pilot(args.data_root, args.epochs)
        if args.commit:
            _commit([PILOT_DIR / f"{record['key']}.json"], f"Study pilot: held-out accuracy plateaus at epoch "
                    f"{record['plateau_epoch']} of {args.epochs} (python -m course_lib.experiments.study pilot)")
    else:
        run_study(args.data_root, args.deadline_s, args.commit, only=args.only.split(",") if args.only else None,
                  max_run_s=60 * args.max_run_minutes, queue=args.queue)


if __name__ == "__main__":
    main(sys.argv[1:])

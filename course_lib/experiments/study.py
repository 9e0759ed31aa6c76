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
lands in ``course_lib/records/``, the fp16 weights of (1) in ``checkpoints_of_record/``; ``--commit`` (done by
``tools/study.py``, which takes the same options: course_lib never writes to git) commits each run as it lands, so
a session that ends loses at most the run in progress (which resumes from its checkpoint). The driver's contract is
:func:`run_study`'s; the loop is the one deadline runner, :func:`course_lib.experiments.queue.work_down`.

    python -m course_lib.experiments.study pilot --data-root data
    python -m course_lib.experiments.study run --data-root data --deadline-s 9000      # records land, uncommitted
    python tools/study.py run --data-root data --deadline-s 9000 --commit               # ... and are committed
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..data import hold_out
from ..files import atomic_write_json
from ..profiles import get_profile
from ..runtime import device_name, get_device
from ..settings import workdir
from ..train import fit
from . import of_record, records
from .budget_rule import DRLOC, choose_budget, study2_queue, tuning_grid, write_progress
from .plan import NOTEBOOKS, comparison_specs, drloc_specs, opened_models, plan
from .provenance import environment_summary
from .queue import Landed, Queue, QueueReport, check_limit, work_down
from .runs import PreparedRun, RunSpec, load_data, measure_throughput, prepare

__all__ = ["plateau_epoch", "PILOT_DIR", "MIN_PILOT_EPOCHS", "check_pilot_epochs", "pilot", "study_queue",
           "tuning_queue", "select", "run_study", "parser", "parse", "run", "main"]

PILOT_DIR = records.RECORDS_OF_RECORD / "pilot"
HOUR = 3600.0
MIN_PILOT_EPOCHS = 3          # plateau_epoch's 3-epoch mean needs three epochs


def plateau_epoch(held_out_acc: list[float], tolerance: float = 2.0) -> int:
    """The pilot's rule: the first epoch (1-based) whose 3-epoch mean held-out accuracy is within ``tolerance``
    points of the best 3-epoch mean. ``tolerance`` 2 points: about one standard error of an accuracy near 60 %
    on 500 held-out images, so a smaller rise could be noise."""
    acc = torch.tensor(held_out_acc, dtype=torch.float64)
    if len(acc) < 3 or not torch.isfinite(acc).all():
        raise ValueError(f"plateau_epoch needs at least 3 finite accuracies, got {held_out_acc!r}.")
    smooth = torch.cat([acc[:2].mean().view(1), acc.unfold(0, 3, 1).mean(dim=1), acc[-2:].mean().view(1)])
    return int(torch.nonzero(smooth >= smooth.max() - tolerance)[0]) + 1


def check_pilot_epochs(epochs) -> int:
    """The pilot's epochs: a whole number of at least :data:`MIN_PILOT_EPOCHS`, refused before any training (the
    rule is applied after it)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < MIN_PILOT_EPOCHS:
        raise ValueError(f"--epochs {epochs!r}: the pilot's rule (plateau_epoch) needs at least {MIN_PILOT_EPOCHS} "
                         "epochs of held-out accuracy; pass --epochs 3 or more (the study's pilot used 40).")
    return epochs


def pilot(data_root: str | Path | None = None, epochs: int = 40, held_out: int = 50, model: str = "vit",
          device: str | None = None, out: Path = PILOT_DIR) -> dict:
    """Train the pilot (see the module docstring), write its record to ``out`` and return it."""
    check_pilot_epochs(epochs)
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


def tuning_queue(models: tuple[str, ...] = ("vit", "resnet18")) -> list[RunSpec]:
    """The tuning grid of the second study (profile ``study2``): :func:`.budget_rule.tuning_grid`."""
    return tuning_grid(models)


QUEUES = ("study", "tune", "study2")


def _queue(name: str) -> tuple[list[RunSpec], set[RunSpec]]:
    """(runs in priority order, the runs whose fp16 weights are of record) of the queue ``name``: the first
    study's, the second study's tuning grid, or the second study's planned runs (:func:`.budget_rule.study2_queue`:
    the grid, its doubling checks, then the curve once the budget is chosen; of record: the runs notebooks 01-05
    open under profile ``study2`` (:func:`.plan.opened_models`: seed 0 at 500 per class of each family, and the
    ViTs of notebook 04's contrast, every seed), once the budget they need is chosen)."""
    if name not in QUEUES:
        raise ValueError(f"queue must be one of {QUEUES}, got {name!r}.")
    if name == "tune":
        return tuning_queue(), set()
    if name == "study2":
        specs = [s for s, planned in study2_queue() if planned]
        profile = get_profile("study2")
        if not all(choose_budget(model)[0] for model in ("vit", "resnet18", DRLOC)):
            return specs, set()                  # the notebooks' runs are not known before the budget is chosen
        opened = {s for notebook in NOTEBOOKS[:-1] for s in opened_models(notebook, profile, ("cifar10",))}
        return specs, opened & set(specs)
    return study_queue()


def _with_progress(on_landed: Landed | None) -> Landed:
    """``on_landed`` with the second study's progress table (course_lib/records/STUDY2.md) rewritten first and
    landed with the record."""
    def landed(spec, paths, record):
        paths = [*paths, write_progress()]
        if record is not None and record.get("final_val_acc") is not None:
            print(f"[study] {record['key']}: clean training accuracy {record['final_train_clean_acc']:.1f} %, "
                  f"validation {record['final_val_acc']:.1f} % on {record['val_images']:,} images", flush=True)
        if on_landed is not None:
            on_landed(spec, paths, record)
    return landed


def _check_study_data(run: PreparedRun) -> None:
    if "JPEG" not in run.train.source:
        raise RuntimeError(f"{run.spec.key}: the study trains on the CIFAR-10 JPEG copy, got {run.train.source}. Put "
                           "cifar10_yoongikim_jpg.tar.xz under <data root>/cifar10-jpeg/.")


def select(specs: list[RunSpec], only: list[str] | None) -> list[RunSpec]:
    """The runs of ``specs`` whose keys are in ``only`` (None: all), in queue order; an empty or unknown selection
    is refused with the choices."""
    if only is None:
        return specs
    only = [key.strip() for key in only if key.strip()]
    if not only:
        raise ValueError(f"--only selects no run. Leave it out for the whole queue, or name runs (comma-separated) "
                         f"from {[s.key for s in specs]}.")
    unknown = sorted(set(only) - {s.key for s in specs})
    if unknown:
        raise ValueError(f"--only names runs that are not in the study's queue: {unknown}. Choose from "
                         f"{[s.key for s in specs]}.")
    return [s for s in specs if s.key in only]


def run_study(data_root: str | Path | None = None, deadline_s: float = 10 * HOUR, device: str | None = None,
              only: list[str] | None = None, max_run_s: float = HOUR, queue: str = "study",
              on_landed: Landed | None = None, carry_over: bool = False) -> QueueReport:
    """Work down :func:`study_queue` (or another of :data:`QUEUES`, see :func:`_queue`), or the runs whose keys are
    in ``only`` (e.g. to train two at once, one per core), with the one deadline runner (:func:`.queue.work_down`).

    The contract (tested in ``tests/test_study_driver.py``):

    - a run is done only when its record of record (``course_lib/records/<key>.json``) exists, validates and holds
      this very run's identity (and, for the runs of record, its fp16 weights are in ``checkpoints_of_record/``)
      and ``on_landed`` returned for it; a record in the work folder's ``records/`` never stands in for it;
    - ``on_landed(spec, paths, record)`` is called for every run that is done, the runs done before included, so
      that a run killed between landing and, say, its commit is committed on the rerun (``tools/study.py`` commits
      there: course_lib never writes to git); an error it raises (git's reason) stops the study at once;
    - ``deadline_s`` and ``max_run_s`` are finite and above 0, ``only`` selects at least one run of the queue;
      anything else is refused before anything is loaded;
    - a run starts only if its estimate fits both ``max_run_s`` (an hour) and the time left; once the deadline has
      passed, the remaining runs are reported "not started" without being loaded or measured.

    The estimate comes from a throughput measured now, which a busy machine lowers: raise ``max_run_s`` for a run
    that the cap refuses only because of that. It counts only the epochs still to train: a run stopped earlier
    resumes from its checkpoint. ``carry_over`` starts a run longer than the time left (one that needs more than
    a session): it trains until the session stops it, and the next call resumes it; its checkpoint (in the work
    folder's ``checkpoints/``) must survive until then."""
    check_limit(deadline_s, "seconds until the study stops starting runs", "--deadline-s")
    check_limit(max_run_s, "the most seconds one run may take", "--max-run-minutes")
    specs, weights_of_record = _queue(queue)
    if queue != "study":
        on_landed = _with_progress(on_landed)
    job = Queue(select(specs, only), of_record.OF_RECORD_DIR, weights_of_record, records=records.RECORDS_OF_RECORD,
                max_run_s=max_run_s, check=_check_study_data, on_landed=on_landed, name="study",
                carry_over=carry_over)
    return work_down(job, deadline_s, data_root, device=device)


def parser() -> argparse.ArgumentParser:
    """The study's command line (``tools/study.py`` takes the same, and commits)."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.experiments.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pilot", "run"])
    parser.add_argument("--queue", choices=QUEUES, default="study",
                        help="which queue `run` works down: the first study's, the second study's tuning grid, or "
                             "the second study's planned runs (budget_rule.study2_queue)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--epochs", type=int, default=40, help=f"the pilot's epochs (at least {MIN_PILOT_EPOCHS})")
    parser.add_argument("--deadline-s", type=float, default=10 * HOUR)
    parser.add_argument("--commit", action="store_true",
                        help="git-commit each record and checkpoint as it lands (done by tools/study.py)")
    parser.add_argument("--only", default=None, help="comma-separated run keys (default: the whole queue)")
    parser.add_argument("--max-run-minutes", type=float, default=60.0,
                        help="start no run estimated to take longer (default 60)")
    parser.add_argument("--carry-over", action="store_true",
                        help="also start a run that will not finish before the deadline: it trains until stopped "
                             "and the next call resumes it from its checkpoint (which must survive until then)")
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The options, every limit and the selection checked before anything is loaded or trained."""
    p = parser()
    args = p.parse_args(argv)
    try:
        check_limit(args.deadline_s, "seconds until the study stops starting runs", "--deadline-s")
        check_limit(args.max_run_minutes, "minutes", "--max-run-minutes")
        if args.command == "pilot":
            check_pilot_epochs(args.epochs)
        else:
            specs = _queue(args.queue)[0]
            select(specs, None if args.only is None else args.only.split(","))
    except ValueError as error:
        p.error(str(error))
    return args


def run(args: argparse.Namespace, on_landed: Landed | None = None) -> None:
    """Run the parsed command; ``on_landed`` as in :func:`run_study` (for the pilot: its record)."""
    if args.command == "pilot":
        record = pilot(args.data_root, args.epochs)
        if on_landed is not None:
            on_landed(None, [PILOT_DIR / f"{record['key']}.json"], record)
        return
    report = run_study(args.data_root, args.deadline_s, only=None if args.only is None else args.only.split(","),
                       max_run_s=60 * args.max_run_minutes, queue=args.queue, on_landed=on_landed,
                       carry_over=args.carry_over)
    print("study:\n" + report.summary(), flush=True)


def main(argv: list[str] | None = None) -> None:
    """``--commit`` hands the same command over to ``tools/study.py``, which commits (course_lib never writes to
    git); without it the records land and are left for you to commit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.commit:
        tool = Path(__file__).resolve().parents[2] / "tools" / "study.py"
        if not tool.is_file():
            raise SystemExit(f"--commit needs the course's git checkout ({tool} is missing); leave --commit out and "
                             "commit the records by hand.")
        print(f"[study] --commit: handing over to {tool}, which commits each run as it lands.", flush=True)
        os.execv(sys.executable, [sys.executable, str(tool), *argv])
        return                      # execv replaced this process; nothing below runs (a test that stubs it out)
    run(args)


if __name__ == "__main__":
    main(sys.argv[1:])

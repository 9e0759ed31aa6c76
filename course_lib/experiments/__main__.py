"""The command line: ``python -m course_lib.experiments list|run|notebooks``.

    python -m course_lib.experiments list  --profile gpu              # what would run, chapter by chapter
    python -m course_lib.experiments run   --profile gpu --data-root data [--only ch1,ch5] [--notebooks]
    python -m course_lib.experiments run   --profile gpu --deadline-s 290 --out OUT   # priority order, a deadline
    python -m course_lib.experiments notebooks --profile gpu          # re-execute the notebooks with papermill

``run`` trains what is missing (resumable; finished runs are skipped) and writes one record per run; with
``--deadline-s`` it works down the priority queue of :mod:`course_lib.experiments.queue` and writes each finished
result into ``--out`` at once (for short GPU loans).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from ..data import DATASETS
from ..profiles import PROFILES, get_profile
from ..settings import SettingError, check_all
from .plan import CHAPTERS, NOTEBOOKS as NOTEBOOK_NAMES, plan
from .queue import priority_queue, run_queue
from .runs import train_run


def _choices(value: str, allowed, what: str, parser: argparse.ArgumentParser) -> list[str]:
    """A comma-separated list whose items must all be known; otherwise exit with the choices."""
    items = [v for v in value.split(",") if v]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        parser.error(f"unknown {what} {unknown or value!r}; choose from {', '.join(allowed)} (comma-separated).")
    return items


def _check_folder(option: str, value: str | None, parser: argparse.ArgumentParser) -> None:
    """A folder option must name a folder or a path that does not exist yet: never a file or a dangling link."""
    if value is None:
        return
    path = Path(value).expanduser()
    if path.is_symlink() and not path.exists():
        parser.error(f"{option} {value} is a symbolic link to a folder that does not exist; create it or pass "
                     "another folder.")
    if path.exists() and not path.is_dir():
        parser.error(f"{option} {value} is a file, not a folder. Pass a folder (it is created if missing).")


def _check_device(value: str | None, parser: argparse.ArgumentParser) -> None:
    """``--device`` must be a device torch knows (cpu, cuda, cuda:1, mps) and one this machine has."""
    if value is None:
        return
    try:
        device = torch.device(value)
    except RuntimeError:
        parser.error(f"--device {value!r} is not a device name. Use cuda (or cuda:0, cuda:1, ...) for a GPU, cpu, "
                     "or mps on a Mac; or leave --device out (a GPU when there is one, else the CPU).")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {value} asks for a CUDA GPU, but none is visible here. Leave --device out or use "
                     "--device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        parser.error(f"--device {value}: the Apple GPU (MPS) is not available here. Use --device cpu.")


def _check_deadline(value: float | None, parser: argparse.ArgumentParser) -> None:
    """``--deadline-s`` must be a finite number of seconds above 0 (``nan`` would silently mean "no deadline")."""
    if value is not None and not (math.isfinite(value) and value > 0):
        parser.error(f"--deadline-s must be a number of seconds above 0, got {value}.")


def _check_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse a bad folder, device or deadline when the command starts, not after training."""
    for option in ("out", "records_dir", "data_root"):
        _check_folder(f"--{option.replace('_', '-')}", getattr(args, option), parser)
    _check_device(args.device, parser)
    _check_deadline(args.deadline_s, parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "run", "notebooks"])
    parser.add_argument("--profile", default=None, choices=sorted(PROFILES),
                        help="the budget (default: gpu with CUDA, else smoke)")
    parser.add_argument("--data-root", default=None, help="the data folder (may hold cifar10-jpeg/)")
    parser.add_argument("--only", default=None, help=f"comma-separated chapters: {','.join(CHAPTERS)}")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--notebooks", action="store_true", help="re-execute the notebooks after training")
    parser.add_argument("--notebook-names", default=",".join(NOTEBOOK_NAMES))
    parser.add_argument("--records-dir", default=None, help="write the records there (e.g. course_lib/records)")
    parser.add_argument("--deadline-s", type=float, default=None, help="stop starting runs that would end later")
    parser.add_argument("--out", default=None, help="with --deadline-s: where finished results are written")
    parser.add_argument("--device", default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        check_all()
        get_profile()                 # COURSE_PROFILE, checked before anything starts
    except SettingError as error:
        parser.error(str(error))
    _check_options(args, parser)
    profile = get_profile(args.profile)
    datasets = tuple(_choices(args.datasets, list(DATASETS), "data set", parser))
    only = _choices(args.only, CHAPTERS, "chapter", parser) if args.only else list(CHAPTERS)
    names = _choices(args.notebook_names, NOTEBOOK_NAMES, "notebook", parser)
    if args.deadline_s is not None and (args.command != "run" or not args.out):
        parser.error("--deadline-s goes with `run` and needs --out (the folder that comes back).")
    if args.deadline_s is not None and (args.only or args.records_dir):
        parser.error("--deadline-s runs the whole priority queue into --out; drop --only and --records-dir "
                     "(or drop --deadline-s to run chosen chapters into a results folder).")
    chapters = {c: specs for c, specs in plan(profile, datasets).items() if c in only}
    if args.command == "list":
        for chapter, specs in chapters.items():
            print(chapter)
            for s in specs:
                print(f"   {s.key:<68} {s.label:<12} recipe {s.recipe}")
        return
    if args.command == "run" and args.deadline_s is not None:
        specs, of_record = priority_queue(profile)
        report = run_queue([s for s in specs if s.dataset in datasets], args.deadline_s, args.out, of_record,
                           args.data_root, device=args.device, start=start)
        print("queue:\n" + report.summary())
    elif args.command == "run":
        for specs in chapters.values():
            for s in specs:
                train_run(s, data_root=args.data_root, device=args.device, records_folder=args.records_dir)
    if args.command == "notebooks" or args.notebooks:
        from .notebooks import run_notebooks   # needs papermill/nbformat, which a bare GPU machine lacks

        run_notebooks(profile.name, names, args.data_root, list(datasets))


if __name__ == "__main__":
    main(sys.argv[1:])

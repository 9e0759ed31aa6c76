"""What every benchmark shares: the name of the device it ran on, how a result is printed and saved, and (for the
CKA benchmarks) the common command-line options and the real images they run on."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:          # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(ROOT))

from course_lib.runtime import device_name  # noqa: E402

__all__ = ["device_name", "report", "cka_arguments", "cka_images"]


def report(result: dict, out: str | None) -> None:
    """Print ``result`` as JSON (with torch's version added) and, with ``out``, write the same text there."""
    result = {**result, "torch": torch.__version__}
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def cka_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options both CKA benchmarks take: --images, --batch-size, --threads, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    return parser


def cka_images(args: argparse.Namespace):
    """Apply ``--threads``, then (the committed CIFAR-10 samples, first ``--images`` of them; their standardisation)."""
    from course_lib.data import Preprocessing, load_dataset, take

    if args.threads:
        torch.set_num_threads(args.threads)
    data = take(load_dataset("cifar10", "train", source="samples"), args.images)
    return data, Preprocessing.for_dataset(data.dataset)

"""What every benchmark shares: the name of the device it ran on, and how a result is printed and saved."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:          # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(ROOT))

from course_lib.runtime import device_name  # noqa: E402

__all__ = ["device_name", "report"]


def report(result: dict, out: str | None) -> None:
    """Print ``result`` as JSON (with torch's version added) and, with ``out``, write the same text there."""
    result = {**result, "torch": torch.__version__}
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")

"""Where a result comes from: hardware, software, commit and date, and the scale of a notebook's stored outputs."""
from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torchvision

from .. import __version__
from ..runtime import device_name, get_device

if TYPE_CHECKING:     # names used only in annotations
    from ..profiles import Profile

__all__ = ["git_commit", "environment_summary", "describe_setting", "describe_scale"]


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The short commit of the course's repository when this process first asked, with "+modified" when tracked
    files differed from it (None outside a git checkout, e.g. a pip install).

    Read once per process: a long run records the commit of the code it loaded, even if the repository moves on
    while it trains.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        modified = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+modified" if modified else "")) or None


def environment_summary(device: str | torch.device | None = None) -> dict:
    """Hardware and software a result was produced with."""
    return {"device": device_name(get_device(device)), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(), "course_lib": __version__,
            "git_commit": git_commit(), "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def describe_setting(profile: Profile, device: str | torch.device | None = None) -> str:
    """One paragraph a notebook prints at the top: which budget, hardware and software run it now."""
    env = environment_summary(device)
    return (f"Budget: profile '{profile.name}' ({profile.description}).\n"
            f"This session: {env['device']}; torch {env['torch']}, torchvision {env['torchvision']}, "
            f"Python {env['python']}, course_lib {env['course_lib']}.")


def describe_scale(records: list[dict], missing: int = 0) -> str:
    """A short Markdown box on the scale of the runs behind a notebook's outputs, and what that scale can show.

    It names the optimiser steps, images per class, test images and devices of the records, and the commit they
    were produced at (not the commit the notebook runs at).
    """
    if not records:
        return ("> **Scale of these outputs:** no run of this notebook is recorded yet for this profile; the cells "
                "below train what they need (each run says so first, with an estimate of its time).")
    steps = sorted({r["steps"] for r in records if r.get("steps") is not None})
    unrecorded = sum(r.get("steps") is None for r in records)
    steps_words = (f"{_span(steps)} optimiser steps" if steps else "optimiser steps not recorded") + \
        (f" ({unrecorded} run(s) do not record theirs)" if steps and unrecorded else "")
    per_class = sorted({r["train_images"] // r.get("num_classes", 10) for r in records})
    tests = sorted({r["test_images"] for r in records})
    devices = sorted({r["environment"]["device"] for r in records})
    commits = sorted({str(r["environment"].get("git_commit")) for r in records})
    # Half-width of a 95 % interval for one accuracy near 50 %, in points, on the smallest and largest test set.
    noise = [f"±{_half_width(n)} points on {n:,} test images" for n in sorted({min(tests), max(tests)})]
    return (f"> **Scale of these outputs.** {len(records)} training run(s): {steps_words}, "
            f"{_span(per_class)} training images per class, {_span(tests)} test images; trained on "
            f"{', '.join(devices)} (commit {', '.join(commits)}). At this scale one run's accuracy is known to about "
            f"{' and '.join(noise)}; a difference between two models tested on the same images is usually known "
            "more tightly. Each comparison below prints its own 95 % confidence interval."
            + (f" {missing} more run(s) are not recorded yet and will be trained below." if missing else ""))


def _half_width(n: int) -> str:
    """The 95 % half-width of an accuracy near 50 % on ``n`` test images, in points, to a sensible precision."""
    half = 100 * 1.96 * (0.25 / n) ** 0.5
    return f"{half:.1f}" if half < 2 else f"{half:.0f}"


def _span(values: list[int]) -> str:
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}-{values[-1]:,}"

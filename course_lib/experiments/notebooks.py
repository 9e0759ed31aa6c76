"""Re-execute the notebooks with papermill so that their stored outputs, which the book shows, come from the runs.

The budget and the data folder go to the kernel through its environment (``COURSE_PROFILE``, ``COURSE_DATA_ROOT``),
never as papermill parameters: an injected-parameters cell is stored with the outputs, and a stored
``profile = "gpu"`` would pin every later run of the notebook (nbval in CI included) to that budget. Only
``datasets``, when narrower than all three, is injected for the run; the stored notebook keeps no injected cell (it
would override the parameters cell a learner edits), so its text says which data sets the stored run covered.
Papermill runs in a child process with an explicit environment: the caller's ``os.environ`` is never changed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from .. import settings
from ..data import DATASETS

__all__ = ["NOTEBOOK_DIR", "run_notebooks", "clean_notebook"]

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _declares(path: Path, name: str) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any("parameters" in c.metadata.get("tags", []) and f"\n{name} =" in f"\n{c.source}" for c in nb.cells)


def clean_notebook(path: Path) -> None:
    """Drop what must not be stored: widget state and views (Colab's ipywidgets 7 cannot show the state that
    ipywidgets 8 stores; the notebooks show a static figure of each explorer instead), local paths, and papermill's
    injected-parameters cell, which would override the parameters cell a learner edits (the notebook's text says
    which data sets its stored run covered)."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.metadata.pop("widgets", None)
    nb.metadata.get("papermill", {}).pop("input_path", None)
    nb.metadata.get("papermill", {}).pop("output_path", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
    nbformat.write(nb, path)


def run_notebooks(profile: str, names: list[str], data_root: str | None = None,
                  datasets: list[str] | None = None, folder: Path = NOTEBOOK_DIR) -> None:
    """Execute the notebooks ``names`` in place with the budget ``profile`` (see the module docstring)."""
    env = {**os.environ, "COURSE_PROFILE": profile, "COURSE_PLAIN_PROGRESS": os.environ.get(
        "COURSE_PLAIN_PROGRESS", "1")}
    # The kernels run in notebooks/: give them this process's data folder, resolved, so they reuse its downloads.
    env["COURSE_DATA_ROOT"] = str(Path(data_root or settings.data_root()).resolve())
    for name in names:
        path = folder / f"{name}.ipynb"
        params = {}
        if datasets and set(datasets) != set(DATASETS) and _declares(path, "datasets"):
            params["datasets"] = list(datasets)
        command = [sys.executable, "-m", "papermill", str(path), str(path), "--cwd", str(folder), "-k", "python3",
                   "--no-progress-bar"] + (["-y", json.dumps(params)] if params else [])
        print(f"executing {path} with COURSE_PROFILE={profile} {params or ''}", flush=True)
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        clean_notebook(path)
        print(f"  done in {time.perf_counter() - start:.0f}s", flush=True)

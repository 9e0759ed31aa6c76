"""The notebooks as documents: structure, the repository URL, and papermill runs with injected parameters.

nbval (``pytest --nbval-lax notebooks``) runs every notebook with its default parameters; here papermill runs each
one with *other* parameters, which proves that the ``parameters`` cell really drives the notebook.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_book_lists_every_notebook():
    from course_lib.experiments import NOTEBOOKS as names

    assert [p.stem for p in NOTEBOOKS] == names
    toc = (ROOT / "_toc.yml").read_text()
    assert all(f"notebooks/{n}" in toc for n in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "python3" and nb.metadata.kernelspec.language == "python"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source and "pip" in code[0].source        # the Colab install cell
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "profile = None" in tagged[0].source
    # A stored injected-parameters cell that set the budget or a data folder would pin nbval in CI to them.
    for cell in code:
        if "injected-parameters" in cell.metadata.get("tags", []):
            assert not re.search(r"^\s*(profile|data_root)\s*=", cell.source, re.M), \
                f"{path.name} is stored with an injected profile/data_root: run " \
                "`python -m course_lib.experiments notebooks`"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "describe_setting" in "".join(c.source for c in code[:4])          # says what produced the outputs
    # Stored outputs come from a real run: every code cell was executed, none ended in an error.
    assert all(c.execution_count is not None for c in code), f"{path.name} is stored without outputs"
    errors = [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name} has stored error outputs"
    # No stored widget state: Colab's ipywidgets 7 cannot show what ipywidgets 8 stores (a static figure stands in).
    assert "widgets" not in nb.metadata and "input_path" not in nb.metadata.get("papermill", {})
    warnings = [o for c in code for o in c.get("outputs", []) if o.get("name") == "stderr" and "Warning" in o.text]
    assert len(warnings) <= 1, f"{path.name} shows {len(warnings)} warning blocks; the book should show one at most"


# The book's text column holds about 80 monospace characters at a 1280-px window; longer lines wrap there, and a
# wrapped trailing comment reads like code. The cells that show an idea by hand must read unwrapped.
BY_HAND_WIDTH = 79


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2] in {"01", "02", "03", "04", "05"}],
                         ids=lambda p: p.stem)
def test_the_idea_is_computed_by_hand_and_checked_against_the_library_in_a_narrow_cell(path):
    nb = nbformat.read(path, as_version=4)
    by_hand = [c for c in nb.cells if c.cell_type == "code" and "torch.testing.assert_close" in c.source
               and "# Solution" not in c.source]
    assert by_hand, f"{path.name} has no cell that computes its idea in plain torch and checks it with assert_close"
    for cell in by_hand:
        wide = [line for line in cell.source.splitlines() if len(line) > BY_HAND_WIDTH]
        assert not wide, f"{path.name}: a by-hand cell has lines over {BY_HAND_WIDTH} characters: {wide[:2]}"
        assert cell.outputs and not any(o.output_type == "error" for o in cell.outputs)


# Every code line a reader sees fits the column. The book shows code 700 px wide: pydata-sphinx-theme 0.17.1 sets
# <pre> to 0.875 x 16 px = 14 px monospace (about 8.4 px a character) inside 1 rem of padding on each side, which
# leaves room for 79 characters. Only the Colab install cell, collapsed in the book (hide-input), may be wider.
CODE_WIDTH = 79


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_visible_code_line_is_wider_than_the_column(path):
    nb = nbformat.read(path, as_version=4)
    wide = [line for cell in nb.cells if cell.cell_type == "code" and "hide-input" not in cell.metadata.get("tags", [])
            for line in cell.source.splitlines() if len(line) > CODE_WIDTH]
    assert not wide, (f"{path.name}: {len(wide)} code line(s) wider than {CODE_WIDTH} characters, which wrap in the "
                      f"book's column; the first: {wide[0]!r}")


def test_notebooks_install_the_release_they_were_written_for():
    tool = _load_tool("set_repo_url")
    url, tag = tool.config_url(), tool.release_tag()
    assert url.startswith("https://") and tag == "v" + __import__("course_lib").__version__
    for name, installs in tool.notebook_installs().items():
        assert installs == {(url, tag)}, f"{name} installs {installs}, _config.yml and pyproject say {url}@{tag}"


def test_set_repo_url_rewrites_config_and_notebooks(tmp_path, monkeypatch):
    import shutil

    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".*"))
    tool = _load_tool("set_repo_url")
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "course_lib").mkdir()
    shutil.copy(ROOT / "course_lib" / "release.py", tmp_path / "course_lib" / "release.py")
    tool.set_url("https://github.com/someone/fork/")
    assert tool.config_url() == "https://github.com/someone/fork"
    expected = {("https://github.com/someone/fork", tool.release_tag())}
    assert all(installs == expected for installs in tool.notebook_installs().values())
    for nb in (tmp_path / "notebooks").glob("*.ipynb"):
        nbformat.validate(nbformat.read(nb, as_version=4))
    release = (tmp_path / "course_lib" / "release.py").read_text()     # what the installed package fetches from
    assert 'REPOSITORY_URL = "https://github.com/someone/fork"' in release


# --------------------------------------------------------------------------------------------------------------
# papermill with other parameters

# 02-05 train their own here (use_course_models = False): tests/test_course_models.py runs them with the course's.
RUNS = {
    "01_vit_vs_resnet": ({"datasets": ["svhn"], "vit_model": "vit_paper", "recipe": "zhu2023"},
                         ["ViT (paper)", "SVHN", "batch_size=100"], ["CIFAR-100 test:"]),
    "02_attention_rollout": ({"dataset": "svhn", "n_images": 3, "use_course_models": False},
                             ["svhn-vit-course-smoke"], []),
    "03_feature_maps": ({"dataset": "cifar100", "n_images": 2, "use_course_models": False}, ["layer4.1.conv2"], []),
    "04_cka": ({"datasets": ["svhn"], "batch_size": 16, "use_course_models": False}, ["svhn: three CKA matrices"],
               ["cifar100:"]),
    # What the notebook shows whether its runs train now or load (a run trained earlier in the same work folder):
    # the run's key is printed only when it trains.
    "05_drloc": ({"datasets": ["svhn"], "ablation": False, "use_course_models": False},
                 ["ViT+DRLoc on SVHN", "SVHN: ViT+DRLoc vs ViT", "Top-1 test accuracy, profile 'smoke'"], ["λ ="]),
    "06_results": ({"datasets": ["svhn"]}, ["SVHN, profile 'smoke'", "images per class"],
                   ["CIFAR-100,", " now: "]),                    # " now: " would announce a training run
}


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def course_workdir(tmp_path_factory) -> Path:
    """One work folder for all papermill runs of this pytest session (they reuse each other's models) and no
    other: a second session starts empty, so what a test sees never depends on an earlier session (make test runs
    these tests twice in a row to check). A caller that sets COURSE_WORKDIR chooses the folder itself; the tests
    hold whether the runs train there or load what an earlier run left."""
    import os

    if os.environ.get("COURSE_WORKDIR"):
        return Path(os.environ["COURSE_WORKDIR"])
    return tmp_path_factory.mktemp("course_workdir")


@pytest.mark.parametrize("name", list(RUNS))
@pytest.mark.slow      # papermill runs whole notebooks
def test_papermill_runs_with_injected_parameters(name, tmp_path, monkeypatch, course_workdir):
    import papermill as pm

    params, present, absent = RUNS[name]
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("COURSE_PLAIN_PROGRESS", "1")
    monkeypatch.setenv("COURSE_WORKDIR", str(course_workdir))
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and all(key in injected[0].source for key in params)
    text = _text(nb)
    for s in present:
        assert s in text, f"{s!r} missing from the outputs of {name} with {params}"
    for s in absent:
        assert s not in text, f"{s!r} in the outputs of {name} with {params}"

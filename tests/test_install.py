"""How the course gets installed: the notebooks' Colab install cell, the release it names, the wheel of course_lib,
and the book's own small environment.

The install cell runs in a subprocess (a fake ``google.colab`` module makes it think it is on Colab) under IPython,
as a notebook would run it. Its pip cannot reach anything there: a proxy on a closed port of 127.0.0.1 stands
between git and GitHub, pip's index is that same port, and pip only does a dry run.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import closed_port

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
INSTALL = re.compile(r'^COURSE_LIB = "course_lib @ git\+(https://[^"@\s]+)@([^"\s]+)"', re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _install_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code").source


def test_install_cells_name_the_release_of_pyproject_and_the_repository_of_config():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    cells = {path.name: _install_cell(path) for path in NOTEBOOKS}
    for name, source in cells.items():
        found = INSTALL.findall(source)
        assert found == [(url, f"v{_version()}")], \
            f"{name} installs {found}; pyproject.toml and _config.yml say {url}@v{_version()}: run " \
            "`python tools/set_repo_url.py`"
    assert len(set(cells.values())) == 1, "the notebooks' install cells differ"


# --------------------------------------------------------------------------------------------------------------
# The install cell, run as on Colab

def _run_cell_on_fake_colab(tmp_path: Path, source: str, mock_pip: bool = False) -> str:
    """Run ``source`` under IPython in a subprocess where ``google.colab`` is importable; its output, uncoloured."""
    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "drive.py").write_text(
        "def mount(path):\n    print('MOUNTED', path)\n")
    (tmp_path / "cell.py").write_text(source)
    mock = textwrap.dedent("""
        import subprocess
        def run(args, **kwargs):
            print("PIP", args[3:])
            return subprocess.CompletedProcess(args, 0, "", "")
        subprocess.run = run
    """) if mock_pip else ""
    runner = tmp_path / "runner.py"
    head = f"import sys\nsys.path.insert(0, {str(fake)!r})\nimport google.colab\n{mock}\n"
    runner.write_text(head + textwrap.dedent(f"""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        result = shell.run_cell(open({str(tmp_path / "cell.py")!r}).read())
        error = result.error_in_exec
        print("RESULT:", "ok" if error is None else type(error).__name__)
        import os
        print("WORKDIR:", os.environ.get("COURSE_WORKDIR"))
    """))
    proxy = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "NO_PROXY", "COURSE_"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": f"{proxy}/simple", "PIP_DRY_RUN": "1",
                "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "https_proxy": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "HTTP_PROXY": proxy,
                "ALL_PROXY": proxy, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)})
    done = subprocess.run([sys.executable, str(runner)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return ANSI.sub("", done.stdout)


@pytest.mark.slow      # IPython or pip in a subprocess, a wheel build
def test_install_cell_stops_with_what_to_do_when_the_repository_cannot_be_reached(tmp_path):
    source = _install_cell(NOTEBOOKS[0])
    url, tag = INSTALL.findall(source)[0]
    start = time.monotonic()
    out = _run_cell_on_fake_colab(tmp_path, source)
    assert time.monotonic() - start < 60, "the install cell should fail fast (no password prompt, no retries)"
    assert "RESULT: SystemExit" in out, out                         # the notebook stops here
    assert "Traceback" not in out and "CalledProcessError" not in out, out
    message = out[out.index("SystemExit:"):out.index("RESULT:")]
    for words in (url, f"tag {tag}", "127.0.0.1",                  # what it tried, and git's own reason
                  "tools/set_repo_url.py", f"git push origin {tag}", "pip install -e"):
        assert words in message, f"{words!r} missing from the install cell's message:\n{message}"
    assert "MOUNTED" not in out


@pytest.mark.slow      # IPython or pip in a subprocess, a wheel build
def test_install_cell_installs_the_release_and_keeps_work_on_drive(tmp_path):
    source = _install_cell(NOTEBOOKS[0]).replace("KEEP_ON_DRIVE = False", "KEEP_ON_DRIVE = True")
    url, tag = INSTALL.findall(source)[0]
    out = _run_cell_on_fake_colab(tmp_path, source, mock_pip=True)
    assert "RESULT: ok" in out, out
    assert f"PIP ['install', '-q', 'course_lib @ git+{url}@{tag}']" in out
    assert "MOUNTED /content/drive" in out and "WORKDIR: /content/drive/MyDrive/vit-small-data" in out


# --------------------------------------------------------------------------------------------------------------
# The book's environment

def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_the_book_environment_is_small_and_agrees_with_the_full_one():
    book, full = _pins(ROOT / "requirements-book.txt"), _pins(ROOT / "requirements.txt")
    assert book["jupyter-book"] == "1.0.4.post1"
    for name in ("sphinxcontrib-bibtex", "pybtex", "linkify-it-py"):     # what _config.yml and book/_ext import
        assert name in book
    assert not {"torch", "torchvision", "course-lib", "nvidia-cublas"} & set(book), "the book runs no code"
    differ = {name: (book[name], full[name]) for name in set(book) & set(full) if book[name] != full[name]}
    assert not differ, f"requirements-book.txt and requirements.txt pin different versions: {differ}"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off", "the book's environment cannot execute notebooks"


# --------------------------------------------------------------------------------------------------------------
# The wheel

def _older_torch(venv_python: Path) -> str | None:
    """Install into the venv a torch older than the running one, if pip finds one without an index (this
    machine's pip config names a folder of wheels); its version, or None."""
    import torch

    running = torch.__version__.split("+")[0]
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv_python), "install", "-q", "--no-deps",
                           "--no-index", f"torch<{running}"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return None
    found = next((venv_python.parents[1] / "lib").glob("python*/site-packages/torch-*.dist-info"))
    return found.name.split("-")[1]


@pytest.mark.slow      # IPython or pip in a subprocess, a wheel build
def test_wheel_builds_and_installs_without_deps_on_top_of_an_older_torch(tmp_path):
    """The wheel that ``pip install git+URL@tag`` builds on Colab: it has its data files, asks only for loose lower
    bounds (Colab's torch satisfies them, so pip leaves it alone), and works on a torch older than ours.

    The older torch is installed only where COURSE_INSTALL_CHECKS=1 (make test sets it; about 30 s and 800 MB)
    and pip finds one offline; otherwise the venv sees the running torch. The venv is clean but for a path to
    this environment's site-packages after its own, for numpy and the other dependencies (installed here
    with --no-deps, offline)."""
    from packaging.requirements import Requirement

    src = tmp_path / "src"                    # a copy: building in the tree would leave build/ in it
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "course_lib", src / "course_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(src), "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("course_lib-*.whl")

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = Parser().parsestr(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    assert meta["Version"] == _version()
    requires = {Requirement(r).name: Requirement(r) for r in meta.get_all("Requires-Dist")
                if "extra ==" not in r}
    assert requires["torch"].specifier.contains("2.4.0") and requires["torchvision"].specifier.contains("0.19.0")
    for data in list((ROOT / "course_lib" / "samples").glob("*.npz")) + list(
            (ROOT / "course_lib" / "records").glob("*.json")):
        assert data.relative_to(ROOT).as_posix() in names, f"{data.name} is missing from the wheel"

    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        site = next((venv / "lib").glob("python*/site-packages"))
        here = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
        (site / "zz_outer_environment.pth").write_text(here + "\n")    # after the venv's own packages
        older = _older_torch(python) if os.environ.get("COURSE_INSTALL_CHECKS") == "1" else None
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                        "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
        smoke = textwrap.dedent("""
            import torch, course_lib
            from pathlib import Path
            import course_lib.drloc, course_lib.rollout, course_lib.train
            from course_lib.models import create_model
            assert Path(course_lib.__file__).is_relative_to(Path(__import__("sys").prefix)), course_lib.__file__
            assert list((Path(course_lib.__file__).parent / "samples").glob("*.npz"))
            for name in ("vit", "resnet18"):
                model = create_model(name, num_classes=10)
                torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
            print("OK", course_lib.__version__, torch.__version__)
        """)
        done = subprocess.run([str(python), "-c", smoke], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                              env={**os.environ, "COURSE_OFFLINE": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        ok, version, torch_version = done.stdout.split()[-3:]
        assert ok == "OK" and version == _version()
        if older is not None:
            assert torch_version.startswith(older.split("+")[0]), (torch_version, older)
        print(f"course_lib {version} from its wheel on torch {torch_version}"
              f"{'' if older else ' (the running torch: no older one offline, or COURSE_INSTALL_CHECKS unset)'}")
    finally:
        shutil.rmtree(venv, ignore_errors=True)     # an older torch takes 800 MB; pytest keeps its tmp folders

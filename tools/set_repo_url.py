"""Point the course at its repository and release: ``python tools/set_repo_url.py [https://github.com/ORG/REPO]``.

The URL lives in ``_config.yml`` (``repository.url``, used by the launch buttons) and ``course_lib/release.py`` (what
the installed package fetches, e.g. the checkpoints of record); the notebooks' first cells
pip-install ``course_lib`` on Colab, where ``_config.yml`` is not available, from the same repository **at the
release the notebooks were written for**: the tag ``v<version>`` with the version of ``pyproject.toml``. This script
rewrites both from those two values: run it after forking (with the new URL) and after bumping the version (without
arguments), and push the tag. ``tests/test_notebooks.py`` and ``tests/test_install.py`` check that they agree.

In a notebook the install line is ``COURSE_LIB = "course_lib @ git+<URL>@v<version>"``; when pip cannot install it
(no such repository or tag, no network) the cell stops with a paragraph that names the URL and the tag and points
here, or to ``pip install -e`` from a local copy.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r"course_lib @ git\+(https://[^\"'\s@]+)(?:@([\w.\-]+))?")


def config_url() -> str:
    match = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    if not match:
        raise SystemExit("_config.yml has no repository.url")
    return match.group(1).strip("\"'")


def release_tag() -> str:
    """``v<version>`` from pyproject.toml: the release the notebooks install."""
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if not match:
        raise SystemExit("pyproject.toml has no version")
    return f"v{match.group(1)}"


def notebook_installs() -> dict[str, set[tuple[str, str | None]]]:
    """{notebook file name: the (repository URL, ref) pairs its code cells install course_lib from}."""
    out = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out[nb.name] = {(url, ref or None) for c in cells if c["cell_type"] == "code"
                        for url, ref in INSTALL.findall("".join(c["source"]))}
    return out


def set_url(url: str | None = None) -> None:
    """Write ``url`` (default: the configured one) and the release tag into _config.yml and every notebook."""
    old = config_url()
    url = (url or old).rstrip("/")
    cfg = ROOT / "_config.yml"
    cfg.write_text(cfg.read_text().replace(old, url))
    tag = release_tag()
    target = f"course_lib @ git+{url}@{tag}"
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        data = json.loads(nb.read_text())
        changed = False
        for cell in data["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                new = INSTALL.sub(target, src)
                if new != src:
                    cell["source"] = new.splitlines(keepends=True)
                    changed = True
        if changed:     # written as nbformat writes notebooks, so that only the install line shows in a diff
            nb.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    release = ROOT / "course_lib" / "release.py"     # what the installed package fetches, at the same release
    text = release.read_text()
    text = re.sub(r'^REPOSITORY_URL = "[^"]*"', f'REPOSITORY_URL = "{url}"', text, flags=re.M)
    release.write_text(re.sub(r'^VERSION = "[^"]*"', f'VERSION = "{tag[1:]}"', text, flags=re.M))
    print(f"repository URL: {old} -> {url}; notebooks install {target}\n"
          f"Commit and push, then publish the release the notebooks install: git tag {tag} && git push origin {tag}")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        raise SystemExit(__doc__)
    set_url(sys.argv[1] if len(sys.argv) == 2 else None)

"""Point the course at its repository: ``python tools/set_repo_url.py https://github.com/ORG/REPO``.

The URL lives in ``_config.yml`` (``repository.url``, used by the launch buttons); the notebooks' first cells pip-install
``course_lib`` from the same repository on Colab, where ``_config.yml`` is not available, so this script rewrites both
from the one value you give it. Run it once after forking; ``tests/test_repository_url.py`` checks they agree.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r"course_lib @ git\+(https://[^\"'\s]+)")


def config_url() -> str:
    match = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+url:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    if not match:
        raise SystemExit("_config.yml has no repository.url")
    return match.group(1).strip("\"'")


def notebook_urls() -> dict[str, set[str]]:
    """{notebook file name: the repository URLs its code cells install course_lib from}."""
    out = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out[nb.name] = {url for c in cells if c["cell_type"] == "code" for url in INSTALL.findall("".join(c["source"]))}
    return out


def set_url(url: str) -> None:
    url = url.rstrip("/")
    cfg = ROOT / "_config.yml"
    old = config_url()
    cfg.write_text(cfg.read_text().replace(old, url))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        data = json.loads(nb.read_text())
        for cell in data["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                new = INSTALL.sub(f"course_lib @ git+{url}", src)
                if new != src:
                    cell["source"] = new.splitlines(keepends=True)
        nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"repository URL: {old} -> {url}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    set_url(sys.argv[1])

"""The course's repository and release, in one place inside the package.

On Colab the package is pip-installed from ``git+<REPOSITORY_URL>@<RELEASE_TAG>`` (the notebooks' first cell), without
``_config.yml`` or ``pyproject.toml``; what the package fetches from the repository (the checkpoints of record, see
:mod:`course_lib.experiments.of_record`) it fetches **at that same release**, so the weights match the records of
record shipped in the package.

These constants must equal ``_config.yml``'s ``repository.url``, ``v`` + ``pyproject.toml``'s version, and the
notebooks' install lines: ``tools/set_repo_url.py`` rewrites all of them from ``_config.yml`` and ``pyproject.toml``,
and a test checks that they agree.
"""
from __future__ import annotations

__all__ = ["REPOSITORY_URL", "VERSION", "RELEASE_TAG", "INSTALL_REQUIREMENT", "raw_url", "CHECKPOINTS_URL"]

REPOSITORY_URL = "https://github.com/course-org/vit-small-data"
VERSION = "0.2.0"
RELEASE_TAG = f"v{VERSION}"
INSTALL_REQUIREMENT = f"course_lib @ git+{REPOSITORY_URL}@{RELEASE_TAG}"     # as the notebooks' install cells write it


def raw_url(path: str, ref: str = RELEASE_TAG, repository: str = REPOSITORY_URL) -> str:
    """The URL of the raw file ``path`` of ``repository`` at ``ref`` (a tag, branch or commit).

    GitHub serves it from ``raw.githubusercontent.com/<org>/<repo>/<ref>/<path>``; other hosts (GitLab, Gitea,
    Codeberg) from ``<repository>/raw/<ref>/<path>``, which they answer or redirect."""
    repository = repository.rstrip("/")
    if repository.endswith(".git"):
        repository = repository[:-4]
    prefix = "https://github.com/"
    if repository.startswith(prefix):
        return f"https://raw.githubusercontent.com/{repository[len(prefix):]}/{ref}/{path.lstrip('/')}"
    return f"{repository}/raw/{ref}/{path.lstrip('/')}"


CHECKPOINTS_URL = raw_url("checkpoints_of_record/")     # the folder of checkpoints of record at the release

"""Commit files of record as they land: the only place where the course's code writes to git (course_lib never
does; it only reads the commit for provenance).

    committer = Committer()          # refuses at once: no repository, a detached HEAD, no git identity
    committer.commit(paths, message) # exactly these paths (other staged work is left alone); nothing if unchanged

A failed commit raises :class:`CommitError` with git's own reason at once. Only contention for git's index lock (a
second driver committing at the same moment) is retried, briefly.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK_RETRIES, LOCK_WAIT_S = 10, 0.5          # a commit of a few files holds the index lock well under a second


class CommitError(RuntimeError):
    """git refused; the message holds its reason and what to do."""


class Committer:
    """Commits into the work tree at ``root`` (default: this checkout), checked once when made."""

    def __init__(self, root: str | Path = ROOT):
        self.root = Path(root).resolve()
        self._git("rev-parse", "--show-toplevel", why="is not inside a git work tree")
        self.branch = self._git("symbolic-ref", "--short", "-q", "HEAD",
                                why="has a detached HEAD: a commit would land on no branch. Check out a branch "
                                    "(git switch <branch>) first").strip()
        self._git("var", "GIT_COMMITTER_IDENT", why="has no git identity to commit with. Set one: git config "
                                                     "user.name '...' && git config user.email '...'")

    def _git(self, *args: str, why: str = "") -> str:
        """Run git in the work tree; its stdout, or CommitError with git's reason (its stderr)."""
        for attempt in range(LOCK_RETRIES):
            done = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True)
            if done.returncode == 0:
                return done.stdout
            reason = (done.stderr or done.stdout).strip()
            if "index.lock" not in reason or attempt == LOCK_RETRIES - 1:
                break
            time.sleep(LOCK_WAIT_S)          # another git (a second driver) holds the index: wait briefly
        what = why or f"`git {' '.join(args[:2])}` failed"
        raise CommitError(f"{self.root} {what}. git said: {reason or f'exit status {done.returncode}'}")

    def changed(self, paths: list[Path]) -> list[str]:
        """Those of ``paths`` that are untracked or differ from HEAD (relative to the work tree)."""
        names = [str(Path(p).resolve().relative_to(self.root)) for p in paths]
        status = self._git("status", "--porcelain", "--untracked-files=all", "--", *names)
        return [n for n in names if any(line[3:].strip('"') == n for line in status.splitlines())]

    def commit(self, paths: list[Path], message: str) -> bool:
        """Commit exactly ``paths``; False when none of them changed (already committed), True when committed."""
        names = self.changed(paths)
        if not names:
            return False
        self._git("add", "--", *names)
        self._git("commit", "-q", "-m", message, "--", *names)
        return True

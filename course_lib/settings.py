"""The course's environment variables, read and checked in one place.

=========================  =====================================================================================
``COURSE_PROFILE``         the training budget; read and checked by :mod:`.profiles` (this module knows no budget)
``COURSE_OFFLINE``         ``1``/``true``/``yes``/``on`` forbids downloads; ``0``/``false``/``no``/``off`` or unset
                           allows them
``COURSE_DATA_ROOT``       the data folder (default ``data/`` in the work folder below); must be a folder, or not
                           exist yet (not a file, nor a symbolic link to nothing); spaces and line breaks around
                           the value are dropped (``"data\\n"`` means ``data``)
``COURSE_WORKDIR``         where ``checkpoints/`` and ``records/`` go; the same rules
``COURSE_PLAIN_PROGRESS``  ``1`` prints text progress (logs, CI) instead of a notebook progress bar
=========================  =====================================================================================

A value that cannot mean anything sensible is refused with a :class:`SettingError` that names the variable and the
fix, at the first read, never after an epoch of training.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SettingError", "env_flag", "offline", "plain_progress", "folder_setting", "data_root", "workdir",
           "check_all"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class SettingError(ValueError):
    """An environment variable of the course holds a value that cannot be used."""


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no environment variable: 1/true/yes/on or 0/false/no/off (any case); unset gives ``default``."""
    value = os.environ.get(name)
    if value is None:
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingError(f"{name}={value!r} is neither yes nor no. Set it to 1 (or true/yes/on) or 0 (or "
                       f"false/no/off), or unset it.")


def offline() -> bool:
    """True when ``COURSE_OFFLINE`` forbids downloads."""
    return env_flag("COURSE_OFFLINE")


def plain_progress() -> bool:
    """True when ``COURSE_PLAIN_PROGRESS`` asks for text progress lines instead of a progress bar."""
    return env_flag("COURSE_PLAIN_PROGRESS")


def _folder_value(name: str) -> str:
    """The value of ``name`` without surrounding spaces or line breaks (a value pasted from a file ends in one)."""
    return (os.environ.get(name) or "").strip()


def folder_setting(name: str, default: str | Path) -> Path:
    """The folder named by environment variable ``name`` (else ``default``), without surrounding whitespace. It must
    be a folder or not exist yet; a file or a symbolic link that points at nothing is refused."""
    path = Path(_folder_value(name) or default).expanduser()
    if path.is_symlink() and not path.exists():
        raise SettingError(f"{name} points at {path}, a symbolic link to {os.readlink(path)}, which does not exist. "
                           f"Create that folder, point {name} at an existing folder, or unset it.")
    if path.exists() and not path.is_dir():
        raise SettingError(f"{name} points at {path}, which is a file, not a folder. Point {name} at a folder "
                           f"(it is created if missing), or unset it.")
    return path


def data_root() -> Path:
    """``$COURSE_DATA_ROOT``, else ``data/`` in :func:`workdir`: a notebook run from ``notebooks/`` finds the data
    that the command line downloaded at the repository root."""
    if _folder_value("COURSE_DATA_ROOT"):
        return folder_setting("COURSE_DATA_ROOT", "data")
    return workdir() / "data"


def workdir() -> Path:
    """Where ``checkpoints/`` and ``records/`` live: ``$COURSE_WORKDIR``; else the repository root when run from its
    ``notebooks/`` folder; else the current folder (e.g. /content on Colab)."""
    if _folder_value("COURSE_WORKDIR"):
        return folder_setting("COURSE_WORKDIR", ".")
    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "_config.yml").exists():
        return here.parent
    return here


def check_all() -> None:
    """Read every setting of this module once, so a bad value is refused when a command starts, not after an epoch
    of training. (``COURSE_PROFILE`` names a budget: :func:`course_lib.profiles.get_profile` checks it.)"""
    offline()
    plain_progress()
    data_root()
    workdir()

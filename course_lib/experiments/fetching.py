"""Files fetched from the repository at the release: each request read against a deadline, the release's manifest
asked once per process, and :class:`CheckpointFetchError`, which says what failed and the two ways on. Used by
:mod:`.of_record` (see its docstring for the settings ``COURSE_FETCH_CHECKPOINTS`` and ``COURSE_CHECKPOINTS_URL``).
The requests themselves are :func:`course_lib.data.download.read_url`'s (timeouts, deadline, wording in one place).
"""
from __future__ import annotations

import json
import os

from .. import release
from ..data import download
from ..settings import SettingError, env_flag

__all__ = ["FETCH_TIMEOUT_S", "FETCH_MIN_BYTES_PER_S", "CheckpointFetchError", "fetch_enabled", "checkpoints_url",
           "get"]

MANIFEST = "manifest.json"
FETCH_TIMEOUT_S = 30.0           # per read: a server silent for this long counts as a failed fetch
FETCH_MIN_BYTES_PER_S = 20_000   # and a whole file must arrive within FETCH_TIMEOUT_S + its size at this rate
_REMOTE: dict[str, dict | str] = {}      # base URL -> its manifest, or why it could not be fetched (this process)


class CheckpointFetchError(RuntimeError):
    """The course's checkpoint of record ``key`` could not be fetched or used. ``cause``: ``"network"`` (no answer,
    an HTTP error, a cut download, downloads switched off), ``"checksum"`` (the bytes are not those the manifest
    lists) or ``"missing"`` (the release does not list this key for this run). :meth:`paragraph` says what failed
    and the two ways on; nothing was trained in its place."""

    def __init__(self, key: str, cause: str, why: str, url: str):
        self.key, self.cause, self.why, self.url = key, cause, why, url
        super().__init__(self.paragraph())

    def retry_advice(self) -> str:
        """What fixes the cause, so that running the cell again works."""
        if self.cause == "checksum":
            return ("run the cell again, which downloads it afresh; if the sum differs again, the copy at "
                    f"{self.url} is not the release's: point COURSE_CHECKPOINTS_URL at a good copy")
        if self.cause == "missing":
            return ("install the release of course_lib whose manifest lists it (the course's latest), or point "
                    "COURSE_CHECKPOINTS_URL at a folder whose manifest.json does")
        return ("check that this runtime reaches the internet (on Colab: Runtime → Disconnect and delete runtime, "
                "then run from the top; unset COURSE_OFFLINE and COURSE_FETCH_CHECKPOINTS=0 if set), then run the "
                "cell again: a failed fetch is asked again")

    def paragraph(self, own_way: str = "set COURSE_FETCH_CHECKPOINTS=0 to train your own instead") -> str:
        return (f"The course's trained model {self.key} could not be fetched ({self.cause}): {self.why}. Nothing "
                f"was trained. Two ways on: (1) fix the cause and retry: {self.retry_advice()}; (2) {own_way}.")


class _Refused(Exception):
    """Why a checkpoint of record could not be fetched or used (one line), and ``cause`` (see above)."""

    def __init__(self, why: str, cause: str = "network"):
        super().__init__(why)
        self.cause = cause


def fetch_enabled() -> bool:
    """``COURSE_FETCH_CHECKPOINTS`` (default yes): may the course's checkpoints of record be fetched and used?"""
    return env_flag("COURSE_FETCH_CHECKPOINTS", default=True)


def checkpoints_url() -> str:
    """The folder the checkpoints of record are fetched from, ending in ``/``: ``$COURSE_CHECKPOINTS_URL``, else the
    repository's ``checkpoints_of_record/`` at the release (:data:`course_lib.release.CHECKPOINTS_URL`)."""
    value = (os.environ.get("COURSE_CHECKPOINTS_URL") or "").strip()
    if not value:
        return release.CHECKPOINTS_URL
    if not value.lower().startswith(("http://", "https://", "file:")):
        raise SettingError(f"COURSE_CHECKPOINTS_URL={value!r} is not an http(s):// or file: URL. Point it at a "
                           f"folder that holds {MANIFEST} and the parts (default {release.CHECKPOINTS_URL}), or "
                           "unset it.")
    return value.rstrip("/") + "/"


def get(url: str, limit: int) -> bytes:
    """The body at ``url`` (at most ``limit`` bytes), or :class:`_Refused` saying why not in a few words: no
    answer or no byte for ``FETCH_TIMEOUT_S``, or not all of it within ``FETCH_TIMEOUT_S`` + ``limit`` at
    ``FETCH_MIN_BYTES_PER_S`` (a server that trickles a byte now and then never trips the per-read timeout)."""
    limits = download.Limits(timeout_s=FETCH_TIMEOUT_S, min_rate=0,
                             deadline_s=FETCH_TIMEOUT_S + limit / FETCH_MIN_BYTES_PER_S)
    try:
        return download.read_url(url, limit, limits)
    except download.TooLargeError as error:
        raise _Refused(str(error).rstrip("."), "checksum") from None      # not the file the manifest lists
    except download.DownloadError as error:
        raise _Refused(str(error).rstrip(".")) from None


def _remote_manifest(url: str, retry: bool = False) -> dict:
    """The manifest at ``url``, fetched once per process; a failure is remembered too, so that it costs no more
    time, except when ``retry`` (a student who fixed the cause runs the cell again)."""
    known = _REMOTE.get(url)
    if isinstance(known, dict):
        return known
    if isinstance(known, str) and not retry:
        raise _Refused(known)
    try:
        try:
            manifest = json.loads(get(url + MANIFEST, 16 * 2**20))
        except (ValueError, UnicodeDecodeError):
            raise _Refused(f"{url}{MANIFEST} is not JSON") from None
        if not isinstance(manifest, dict):
            raise _Refused(f"{url}{MANIFEST} is a JSON {type(manifest).__name__}, not an object of entries")
    except _Refused as why:
        _REMOTE[url] = str(why)
        raise
    _REMOTE[url] = manifest
    return manifest

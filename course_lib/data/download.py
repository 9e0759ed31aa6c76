"""Stream one URL to a file, or fail fast and say why: :func:`fetch`; or read a small one into memory under the same
rules: :func:`read_url`. These are course_lib's only HTTP requests (the checkpoints of record are read with
:func:`read_url` too, by :mod:`course_lib.experiments.fetching`).

What a download does here, and why:

- **progress**: a progress bar (tqdm) naming the data set, with size, rate and time left; text lines instead when
  ``COURSE_PLAIN_PROGRESS=1`` (logs, CI). A one-line summary when done.
- **connect and stall timeout** (``LIMITS.timeout_s``): no connection, or no byte at all for that long, fails.
- **minimum rate** (``LIMITS.min_rate`` bytes/s averaged over ``LIMITS.window_s``): a slow but steady transfer
  never trips a socket timeout (the official CIFAR host served ~75 kB/s in 2026, an hour for CIFAR-10), so a
  source slower than that is given up loudly and the caller moves on to the next source.
- **overall deadline** (``LIMITS.deadline_s``): however the bytes trickle in (one every half second never trips
  the stall timeout, and ``min_rate=0`` turns the rate rule off), one download never takes longer.
- **resume**: bytes go to ``<file>.part``; a later try asks only for the rest (an HTTP ``Range`` request) and
  starts again from zero when the server ignores it.
- **checksum** (md5 or sha256) when one is known; a mismatch deletes the file.
- **atomic completion**: the final file appears (``os.replace``) only once it is complete and verified.

:func:`first_download` tries several sources in order and remembers, for the rest of the process, each one that
failed (the URL; the whole host when the host itself failed), so a notebook that loads six splits without a
connection says so once per source, not once per split and source.

Every failure is a :class:`DownloadError` (a :class:`DataUnavailableError`) naming the URL and what happened; a
:class:`SourceDownError` says the host itself cannot be used now (no connection, a stall, a broken or too slow
transfer), so the caller need not try its other files. :class:`CountProgress` shows progress of other long steps
(decoding images). Only the standard library's ``urllib`` is used.
"""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ..settings import plain_progress
from .sets import DataUnavailableError

__all__ = ["DownloadError", "SourceDownError", "TooSlowError", "TooLargeError", "Limits", "LIMITS", "fetch",
           "read_url", "notify", "file_digest", "CountProgress", "first_download", "earlier_failure",
           "forget_failures"]


class DownloadError(DataUnavailableError):
    """A download failed: the message names the URL and what happened."""


class SourceDownError(DownloadError):
    """The host cannot be used now (no connection, a stall, a broken or too slow transfer): not just this file."""


class TooSlowError(SourceDownError):
    """The source delivered less than the minimum rate for the whole window."""


class TooLargeError(DownloadError):
    """The body is larger than the caller said it can be (:func:`read_url`'s ``max_bytes``)."""


class _CannotResume(Exception):
    """The server refused the Range request (HTTP 416): the partial file does not fit the file it serves."""


@dataclass(frozen=True)
class Limits:
    """When a download gives up. ``timeout_s``: connecting, and the longest wait for any byte (a stalled
    transfer). ``min_rate`` (bytes/s) averaged over ``window_s`` seconds: slower means "try another source"."""

    timeout_s: float = 20.0
    min_rate: float = 1e6
    window_s: float = 30.0
    deadline_s: float = 3 * 3600.0      # CIFAR-10 from the official host at 75 kB/s took an hour

    def __post_init__(self) -> None:
        for name in ("timeout_s", "window_s", "deadline_s", "min_rate"):
            value, least = getattr(self, name), "at least 0" if name == "min_rate" else "above 0"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                    value < 0 if name == "min_rate" else value <= 0):
                raise ValueError(f"Limits.{name} must be a finite number {least}, got {value!r}.")


LIMITS = Limits()        # the defaults; set e.g. ``download.LIMITS = Limits(min_rate=0)`` to wait for any source
TEXT_EVERY_S = 10.0      # one text progress line this often under COURSE_PLAIN_PROGRESS=1
CHUNK = 1 << 20


def notify(message: str) -> None:
    """Say something the student must see (a source failed, a cache was rebuilt): stderr, shown in notebooks."""
    print(message, file=sys.stderr, flush=True)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _seconds(s: float) -> str:
    return f"{s:,.0f}" if s >= 10 else f"{s:.2g}"


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest (``md5``, ``sha256``) of a file, read in 1 MB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class _Progress:
    """A tqdm bar, or text lines every ``TEXT_EVERY_S`` seconds, then a summary line."""

    def __init__(self, what: str, total: int | None, done: int):
        self.what, self.total, self.first = what, total, done
        self.start = self.last_line = time.monotonic()
        self.bar = None
        if not plain_progress():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=what, leave=False,
                            mininterval=0.5)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif time.monotonic() - self.last_line >= TEXT_EVERY_S:
            self.last_line = time.monotonic()
            print(f"{self.what}: {self._status(done)}", flush=True)

    def _status(self, done: int) -> str:
        rate = (done - self.first) / max(time.monotonic() - self.start, 1e-6)
        size = f"{_mb(done)} of {_mb(self.total)}" if self.total else _mb(done)
        left = f", {(self.total - done) / rate:,.0f} s left" if self.total and rate > 0 else ""
        return f"{size}, {rate / 1e6:,.1f} MB/s{left}"

    def close(self, done: int, complete: bool) -> None:
        if self.bar is not None:
            self.bar.close()
        if complete:
            seconds = time.monotonic() - self.start
            print(f"{self.what}: downloaded {_mb(done - self.first)} in {seconds:,.1f} s "
                  f"({(done - self.first) / max(seconds, 1e-6) / 1e6:,.1f} MB/s)", flush=True)


class CountProgress:
    """Progress through ``total`` things (e.g. images decoded): a tqdm bar, or a text line every ``TEXT_EVERY_S``
    seconds under ``COURSE_PLAIN_PROGRESS=1``; a summary line at :meth:`close`. Call :meth:`update` as often as
    you like: it does something at most every ``every`` things."""

    def __init__(self, what: str, total: int, unit: str = "images", every: int = 500):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.start = self.last_line = time.monotonic()
        self.bar = None
        if not plain_progress():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit=unit[:-1] if unit.endswith("s") else unit, desc=what, leave=False,
                            mininterval=0.5)

    def update(self, done: int) -> None:
        if done % self.every and done != self.total:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif time.monotonic() - self.last_line >= TEXT_EVERY_S:
            self.last_line = time.monotonic()
            rate = done / max(time.monotonic() - self.start, 1e-6)
            print(f"{self.what}: {done:,} of {self.total:,} {self.unit}, {(self.total - done) / rate:,.0f} s left",
                  flush=True)

    def close(self, done: int) -> None:
        if self.bar is not None:
            self.bar.close()
        print(f"{self.what}: {done:,} {self.unit} in {time.monotonic() - self.start:,.1f} s", flush=True)


class _RateRule:
    """Raises :class:`TooSlowError` past the deadline ``until``, or when fewer than ``min_rate * window_s`` bytes
    arrived in a window. ``resumable``: a file download, whose part is kept and whose limits are :data:`LIMITS`
    (the message says so, loudly); else a read into memory, with the caller's limits."""

    def __init__(self, limits: Limits, done: int, until: float, resumable: bool = True):
        self.limits, self.since, self.bytes_then, self.until = limits, time.monotonic(), done, until
        self.resumable = resumable

    def _say(self, what: str, fact: str, advice: str) -> str:
        if not self.resumable:
            return fact
        return (f"*** {what}: {fact} The part already downloaded is kept, so a later try resumes it. {advice} "
                "before loading. ***")

    def check(self, done: int, url: str, what: str, total: int | None) -> None:
        at = f"giving up on this source at {_mb(done)}{f' of {_mb(total)}' if total else ''}."
        if time.monotonic() > self.until:
            raise TooSlowError(self._say(
                what, f"{url} did not finish within {_seconds(self.limits.deadline_s)} s (the longest one download may "
                f"take): {at}", "To wait longer, set course_lib.data.download.LIMITS = Limits(deadline_s=...)"))
        elapsed = time.monotonic() - self.since
        if self.limits.min_rate <= 0 or elapsed < self.limits.window_s:
            return
        rate = (done - self.bytes_then) / elapsed
        if rate < self.limits.min_rate:
            raise TooSlowError(self._say(
                what, f"{url} delivered only {rate / 1e3:,.0f} kB/s over the last {elapsed:,.1f} s, below the "
                f"minimum of {self.limits.min_rate / 1e6:g} MB/s: {at}",
                "To wait for a slow source anyway, set course_lib.data.download.LIMITS = Limits(min_rate=0)"))
        self.since, self.bytes_then = time.monotonic(), done


def _open(url: str, offset: int, timeout: float):
    """The HTTP response for ``url`` from byte ``offset`` on (a Range request when ``offset`` > 0)."""
    headers = {"User-Agent": "course_lib (ViT on small datasets)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            raise _CannotResume() from None
        server_side = SourceDownError if error.code >= 500 else DownloadError      # 5xx: the host, not the file
        raise server_side(f"{url}: the server answered HTTP {error.code} {error.reason}.") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise SourceDownError(f"{url}: no answer within {timeout:g} s.") from None
        raise SourceDownError(f"{url}: cannot connect ({type(reason).__name__}: {reason}). Check the internet "
                              "connection.") from None


def _resumed_from(response, offset: int) -> tuple[int, int | None]:
    """(first byte the response holds, total size of the file or None) for a response to a request at ``offset``.

    A server that ignores the Range request answers 200 with the whole file: the download starts again at 0."""
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    if offset and response.status == 206 and match and int(match.group(1)) == offset:
        return offset, int(match.group(2)) if match.group(2) != "*" else None
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and response.status == 200 else None


def _transfer(response, write: Callable[[bytes], None], rule: _RateRule, start: int, total: int | None, url: str,
              what: str, progress: _Progress | None = None) -> int:
    """Pass the response body to ``write`` chunk by chunk under ``rule`` (the deadline, the minimum rate) and the
    socket's timeout (a stall); the bytes done (counting from ``start``)."""
    done, resume = start, " A later try resumes it." if rule.resumable else ""
    try:
        while chunk := response.read1(CHUNK):
            write(chunk)
            done += len(chunk)
            if progress is not None:
                progress.update(done)
            rule.check(done, url, what, total)
    except TimeoutError:
        raise SourceDownError(f"{url}: the transfer stalled: no data for {rule.limits.timeout_s:g} s after "
                              f"{_mb(done)}{f' of {_mb(total)}' if total else ''}.{resume}") from None
    except (OSError, http.client.HTTPException) as error:
        raise SourceDownError(f"{url}: the connection broke after {_mb(done)} ({type(error).__name__}: {error})."
                              f"{resume}") from None
    return done


def _check_whole(done: int, total: int | None, url: str, resumable: bool) -> None:
    """A body that ended before the size the server announced is a cut transfer, not a file."""
    if total is not None and done != total:
        raise SourceDownError(f"{url}: the connection closed after {_mb(done)} of {_mb(total)} ({done:,} of "
                              f"{total:,} bytes).{' A later try resumes it.' if resumable else ''}")


def _copy(response, part: Path, start: int, total: int | None, url: str, what: str, limits: Limits,
          until: float) -> int:
    """Append the response body to ``part`` (truncated first when ``start`` is 0) until the monotonic time
    ``until``; the bytes now in ``part``, which are all of the file."""
    progress, done, complete = _Progress(what, total, start), start, False
    try:
        with open(part, "ab" if start else "wb") as out:
            done = _transfer(response, out.write, _RateRule(limits, start, until), start, total, url, what, progress)
            out.flush()
            os.fsync(out.fileno())
        _check_whole(done, total, url, resumable=True)
        complete = True
    finally:
        progress.close(done, complete)
    return done


def _verify_checksum(part: Path, checksum: tuple[str, str] | None, url: str) -> None:
    if checksum is None:
        return
    algorithm, expected = checksum
    actual = file_digest(part, algorithm)
    if actual != expected.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the downloaded file's {algorithm} is {actual}, but the official file's is "
                            f"{expected}: it is not the official file. Deleted; this source is not used.")


def fetch(url: str, dest: str | Path, what: str, checksum: tuple[str, str] | None = None,
          limits: Limits | None = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and return ``dest`` once complete and verified.

    Args:
        what: the words for the progress line, e.g. "CIFAR-10 train from the Hugging Face Hub".
        checksum: ``("md5" | "sha256", hex digest)`` when one is known; the file must match it.
        limits: :class:`Limits` (default :data:`LIMITS`).

    An existing ``dest`` (complete, and matching ``checksum``) is returned without a download.

    Raises:
        DownloadError: HTTP error, no connection, stalled or broken transfer, wrong checksum.
        TooSlowError: slower than ``limits.min_rate`` for ``limits.window_s`` seconds, or not done within
            ``limits.deadline_s`` seconds.
    """
    limits, dest = limits or LIMITS, Path(dest)
    until = time.monotonic() + limits.deadline_s
    if dest.is_file() and (checksum is None or file_digest(dest, checksum[0]) == checksum[1].lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset, limits.timeout_s)
    except _CannotResume:
        part.unlink()
        offset, response = 0, _open(url, 0, limits.timeout_s)
    with response:
        start, total = _resumed_from(response, offset)
        if offset and start == 0:
            print(f"{what}: the server ignored the request to resume at {_mb(offset)}; starting again.", flush=True)
        elif offset:
            print(f"{what}: resuming at {_mb(offset)}{f' of {_mb(total)}' if total else ''}.", flush=True)
        _copy(response, part, start, total, url, what, limits, until)
    _verify_checksum(part, checksum, url)
    os.replace(part, dest)
    return dest


def read_url(url: str, max_bytes: int, limits: Limits) -> bytes:
    """The body at ``url`` in memory (no file, no progress line, nothing resumed), under :func:`fetch`'s rules:
    ``limits.timeout_s`` to connect and for any byte, ``limits.deadline_s`` for the whole, the minimum rate.

    Raises:
        TooLargeError: more than ``max_bytes`` bytes.
        DownloadError: an HTTP error; :class:`SourceDownError`: no connection or answer, a stalled, broken or cut
            transfer; :class:`TooSlowError`: past the deadline or below the minimum rate.
    """
    body = bytearray()

    def keep(chunk: bytes) -> None:
        body.extend(chunk)
        if len(body) > max_bytes:
            raise TooLargeError(f"{url} is larger than the {max_bytes:,} bytes expected.")

    rule = _RateRule(limits, 0, time.monotonic() + limits.deadline_s, resumable=False)
    with _open(url, 0, limits.timeout_s) as response:
        total = _resumed_from(response, 0)[1]
        _check_whole(_transfer(response, keep, rule, 0, total, url, url), total, url, resumable=False)
    return bytes(body)


# --------------------------------------------------------------------------------------------------------------
# Several sources in order, each failure remembered for the process

_FAILED: dict[str, str] = {}     # URL, or "host:<netloc>", -> why it failed: not tried again in this process


def _keys(url: str) -> tuple[str, str]:
    return url, f"host:{urlsplit(url).netloc}"


def earlier_failure(url: str) -> str | None:
    """Why ``url`` (or its host) failed earlier in this process, or None."""
    return next((_FAILED[key] for key in _keys(url) if key in _FAILED), None)


def forget_failures() -> None:
    """Try every source again (e.g. once the connection works), without restarting the process."""
    _FAILED.clear()


def _remember(url: str, error: Exception) -> str:
    """Remember a failure; the sentence that says so."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    _FAILED[url] = reason
    if isinstance(error, SourceDownError):
        _FAILED[_keys(url)[1]] = reason
        return f"Nothing more is asked of {urlsplit(url).netloc} in this process."
    return "This file is not asked for again in this process."


def first_download(attempts: list[tuple[str, str, Callable]], label: str, retry: bool = False,
                   retry_hint: str = "") -> tuple[object | None, str]:
    """(result, "") of the first attempt ``(what, url, how)`` whose ``how()`` works, or (None, why none did).

    Each failure (a :class:`DataUnavailableError`) is said at once on stderr, prefixed with ``label``, with the
    attempt tried next, and remembered: later calls skip that URL (every URL on the host when the host itself
    failed) silently, their reason listed in the returned text, unless ``retry`` (then a success forgets it).
    ``retry_hint`` ends the first message: how to insist on a source in spite of its failure.
    """
    failures: list[str] = []
    if not retry:
        failures = [f"{what}: not tried, it failed earlier in this process ({earlier_failure(url)})"
                    for what, url, _ in attempts if earlier_failure(url)]
        attempts = [a for a in attempts if not earlier_failure(a[1])]
    for k, (what, url, how) in enumerate(attempts):
        try:
            result = how()
        except DataUnavailableError as error:
            failures.append(f"{what}: {error}")
            memo = f"{_remember(url, error)} {retry_hint}".strip()
            then = f"Trying {attempts[k + 1][0]}." if k + 1 < len(attempts) else "No other source to download from."
            notify(f"{label}: {what} was not used. {error} {memo} {then}")
            continue
        for key in _keys(url):
            _FAILED.pop(key, None)
        return result, ""
    return None, "download failed: " + " | ".join(failures)

"""Shared fixtures. Every test runs offline: any attempt to reach the network fails the test.

The guard raises inside the code that tries (so nothing leaves the machine) *and* records the attempt, so code
that catches the error and falls back still fails the test at teardown. A test that checks the fallback on purpose
marks itself ``@pytest.mark.expects_network_attempt``.

Helpers shared by several test files, each defined here once: :func:`one_thread` (a fixture), :func:`tiny_vit`,
:func:`local_http_server` with :class:`QuietHandler`, and :func:`closed_port` (import them with
``from conftest import ...``). Tests that take more than a few seconds (papermill, venv and wheel builds,
Chromium, training in a subprocess) are marked ``slow``: ``make unit`` leaves them out, ``make test`` runs all.
"""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
import torch


class NetworkAccessError(OSError):
    """A test tried to reach the network."""


def _is_local(host) -> bool:
    return host in (None, "localhost", "::1", "") or (isinstance(host, str) and
                                                       (host.startswith("127.") or host.startswith("/")))


def pytest_configure(config):
    config.addinivalue_line("markers", "expects_network_attempt: the test provokes a (blocked) network attempt")


# --------------------------------------------------------------------------------------------------------------
# Shared helpers

@pytest.fixture
def one_thread():
    """Tiny tensors and many small steps: with 2 intra-op threads on the shared 2-core machine, OpenMP's hand-offs
    and spin-waiting cost more than the arithmetic (10-30x), so these tests run single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_vit(num_classes: int = 10, seed: int | None = 0, **overrides):
    """A ViT small enough for a CPU test (dim 32, 2 blocks of 2 heads; ``overrides`` change any of its settings),
    initialised from ``seed`` (None: the global RNG as it stands)."""
    from course_lib.models import ViT

    if seed is not None:
        torch.manual_seed(seed)
    return ViT(**{"dim": 32, "depth": 2, "heads": 2, "num_classes": num_classes, **overrides})


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not log every request to stderr."""

    def log_message(self, *args):
        pass


@contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering with ``handler``; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def network_guard(monkeypatch, request):
    attempts: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if _is_local(host):
            return real_connect(self, address, *args, **kwargs)
        attempts.append(f"connect {address!r}")
        raise NetworkAccessError(f"test tried to reach the network: {address!r}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if _is_local(host):
            return real_getaddrinfo(host, *args, **kwargs)
        attempts.append(f"resolve {host!r}")
        raise NetworkAccessError(f"test tried to resolve {host!r}")

    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield attempts
    if attempts and request.node.get_closest_marker("expects_network_attempt") is None:
        pytest.fail(f"the test tried to reach the network: {attempts}")


@pytest.fixture
def cifar10_samples():
    """The committed CIFAR-10 samples (train 2,000 and test 870 real images)."""
    from course_lib.data import load_dataset

    return load_dataset("cifar10", "train", source="samples"), load_dataset("cifar10", "test", source="samples")

"""Shared fixtures. Every test runs offline: any attempt to reach the network fails the test.

The guard raises inside the code that tries (so nothing leaves the machine) *and* records the attempt, so code
that catches the error and falls back still fails the test at teardown. A test that checks the fallback on purpose
marks itself ``@pytest.mark.expects_network_attempt``.
"""
from __future__ import annotations

import socket

import pytest
import torch


class NetworkAccessError(OSError):
    """A test tried to reach the network."""


def _is_local(host) -> bool:
    return host in (None, "localhost", "::1", "") or (isinstance(host, str) and
                                                       (host.startswith("127.") or host.startswith("/")))


def pytest_configure(config):
    config.addinivalue_line("markers", "expects_network_attempt: the test provokes a (blocked) network attempt")


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

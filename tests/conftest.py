"""Shared fixtures. Every test runs offline: any attempt to open a network connection fails the test."""
from __future__ import annotations

import socket

import pytest
import torch


class NetworkAccessError(AssertionError):
    """A test tried to reach the network."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that opens a non-local socket connection (loopback stays allowed for Jupyter kernels)."""
    real_connect = socket.socket.connect

    def guarded_connect(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            return real_connect(self, address, *args, **kwargs)
        raise NetworkAccessError(f"test tried to reach the network: {address!r}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host in (None, "localhost", "127.0.0.1", "::1"):
            return real_getaddrinfo(host, *args, **kwargs)
        raise NetworkAccessError(f"test tried to resolve {host!r}")

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield


@pytest.fixture
def seed():
    torch.manual_seed(0)
    return 0

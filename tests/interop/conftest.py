"""Fixtures of the interop tests: our own server, embedded, for the real peers to talk to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gear.server.gear_server import Server


@pytest.fixture
def ours() -> Iterator[Server]:
    """``gear.Server`` on 127.0.0.1 and a free port, shut down after the test."""
    server = Server(0, host="127.0.0.1")
    try:
        yield server
    finally:
        server.shutdown()

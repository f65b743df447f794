"""Fixtures shared by the threaded API's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import gear


@pytest.fixture
def worker() -> Iterator[gear.Worker]:
    """A threaded Worker with no server, shut down after the test."""
    w = gear.Worker("w1")
    yield w
    w.shutdown()

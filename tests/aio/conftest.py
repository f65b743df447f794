"""Fixtures for the gear.aio tests.

``server`` is parametrized over the real gearmand and ``gear.Server`` (our engine), so every main
test runs against both (see :mod:`tests.aio.helpers`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aio.helpers import EmbeddedUnderTest, GearmandUnderTest, ServerUnderTest

SERVER_KINDS = ["gearmand", "geard"]


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerUnderTest]:
    """A fresh job server: gearmand or our own (``gear.Server``)."""
    srv: ServerUnderTest
    srv = GearmandUnderTest() if request.param == "gearmand" else EmbeddedUnderTest()
    try:
        yield srv
    finally:
        srv.stop()

"""Fixtures shared by the whole suite: real gearmand processes and the gear 0.16.0 venv."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.peers import GearmandProcess, gear016_python


@pytest.fixture
def gearmand() -> Iterator[GearmandProcess]:
    """A fresh gearmand on 127.0.0.1 and a free port (``.host``, ``.port``, ``.restart()``)."""
    server = GearmandProcess()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gearmand_factory() -> Iterator[Callable[..., GearmandProcess]]:
    """Start gearmand with extra options, e.g. ``gearmand_factory("--job-retries=2")``."""
    started: list[GearmandProcess] = []

    def start(*args: str) -> GearmandProcess:
        server = GearmandProcess(*args)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def gear016() -> str:
    """The python executable of a venv holding PyPI gear 0.16.0."""
    return gear016_python()

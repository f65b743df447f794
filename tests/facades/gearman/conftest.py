"""Fixtures of the python-gearman facade tests: a geard and a gearmand process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.peers import GeardProcess, GearmandProcess, ServerProcess


@pytest.fixture(scope="session",
                params=["geard", pytest.param("gearmand", marks=pytest.mark.interop)])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Our geard or Debian's gearmand on 127.0.0.1 and a free port, one of each for the whole
    session: every test uses function names of its own."""
    proc: ServerProcess = GeardProcess() if request.param == "geard" else GearmandProcess()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def hosts(server: ServerProcess) -> list[str]:
    """The host list python-gearman's constructors take."""
    return [f"{server.host}:{server.port}"]

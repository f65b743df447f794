"""Fixtures of the gear-admin tests: the tool itself, servers to run it against, jobs."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gear import constants as c
from gear.protocol.packets import request
from tests.support.peers import GeardProcess, GearmandProcess, ServerProcess, require_tool
from tests.support.raw import connect, read_packet

#: The installed console script (the package's [project.scripts] entry).
GEAR_ADMIN = str(Path(sys.executable).parent / "gear-admin")


def run_tool(tool: str, *args: str, env: dict[str, str] | None = None,
             ) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of ``tool args``."""
    result = subprocess.run([tool, *args], capture_output=True, timeout=30, env=env)
    return result.returncode, result.stdout, result.stderr


def gear_admin(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    return run_tool(GEAR_ADMIN, *args, env=env)


def gearadmin(*args: str) -> tuple[int, bytes, bytes]:
    """Debian's gearadmin, run by name so that it calls itself ``gearadmin``."""
    require_tool("gearadmin")
    return run_tool("gearadmin", *args)


def submit_background(port: int, function: bytes, unique: bytes = b"",
                      ptype: int = c.SUBMIT_JOB_BG) -> tuple[socket.socket, bytes]:
    """A client connection that submitted one background job, and the job's handle."""
    sock = connect(port)
    sock.sendall(request(ptype, function, unique, b"data"))
    kind, args = read_packet(sock)
    assert kind == c.JOB_CREATED, (kind, args)
    return sock, args[0]


@pytest.fixture
def geard() -> Iterator[GeardProcess]:
    server = GeardProcess("--queue", "memory", "-l", "none")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["geard", "gearmand"])
def any_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """geard, then gearmand: what gear-admin must work against."""
    server: ServerProcess
    if request.param == "geard":
        server = GeardProcess("--queue", "memory", "-l", "none")
    else:
        server = GearmandProcess()
    try:
        yield server
    finally:
        server.stop()

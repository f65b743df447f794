"""gear-admin and Debian's gearadmin 1.1.20, side by side, byte for byte.

Each case runs both tools with the same arguments against the same server (geard, then
gearmand) in the same state, and compares exit status, stdout and stderr. Normalised: the
program name in option errors (``gearadmin :`` / ``gear-admin :``) and the file descriptor
numbers in ``--workers`` (each tool's own connection gets one of its own). Commands that change
the server are run in do/undo pairs so both tools meet the same state.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from gear import constants as c
from gear.admin_tool.options import EXTRA_HELP, GEARADMIN_HELP
from gear.protocol.packets import request
from tests.admin_tool.conftest import gear_admin, gearadmin, submit_background
from tests.support.peers import GeardProcess, ServerProcess
from tests.support.raw import connect, read_packet

pytestmark = pytest.mark.interop

Result = tuple[int, bytes, bytes]


def normalise(result: Result) -> Result:
    status, out, err = result
    out = out.replace(b"gearadmin : ", b"gear-admin : ", 1)
    out = re.sub(rb"(?m)^\d+ (?=\S+ \S+ :)", b"FD ", out)
    return status, out, err


def both(*args: str) -> tuple[Result, Result]:
    return normalise(gearadmin(*args)), normalise(gear_admin(*args))


@pytest.fixture
def busy(any_server: ServerProcess) -> Iterator[ServerProcess]:
    """The server with queued jobs (two priorities), a running job and idle workers."""
    port = any_server.port
    keep = [submit_background(port, b"resize", b"u1")[0],
            submit_background(port, b"resize", b"", c.SUBMIT_JOB_LOW_BG)[0],
            submit_background(port, b"thumb", b"u2", c.SUBMIT_JOB_HIGH_BG)[0],
            submit_background(port, b"thumb", b"u3")[0]]
    idle = connect(port)
    idle.sendall(request(c.SET_CLIENT_ID, b"idle-worker") + request(c.CAN_DO, b"resize"))
    busy = connect(port)
    busy.sendall(request(c.CAN_DO, b"thumb") + request(c.GRAB_JOB_UNIQ))
    assert read_packet(busy)[0] == c.JOB_ASSIGN_UNIQ
    keep += [idle, busy]
    yield any_server
    for sock in keep:
        sock.close()


READ_ONLY = [
    ["--status"], ["--priority-status"], ["--workers"], ["--show-jobs"], ["--show-unique-jobs"],
    ["--server-verbose"], ["--server-version"], ["--getpid"],
    # several at once: gearadmin runs them in its own fixed order, on one connection
    ["--status", "--workers", "--getpid", "--server-version", "--priority-status",
     "--show-jobs", "--show-unique-jobs", "--server-verbose"],
    ["--workers", "--status"],
    # errors the server answers
    ["--cancel-job", "H:nowhere:1"], ["--drop-function", "no-such-function"],
    ["--drop-function", "resize"], ["--status", "--create-function", "two words"],
    # option forms
    ["--stat"], ["--sta", "--work"], ["extra", "words", "--status"], ["--status", "--", "-x"],
    ["--", "--status"],
]


def test_read_only_commands_match(busy: ServerProcess) -> None:
    host_port = ["-h", busy.host, "-p", str(busy.port)]
    differ = []
    for args in READ_ONLY:
        ours, theirs = both(*host_port, *args)
        if ours != theirs:
            differ.append((args, ours, theirs))
    assert differ == []


def test_the_host_and_port_forms_match(busy: ServerProcess) -> None:
    port = str(busy.port)
    for args in (["-h127.0.0.1", f"-p{port}"], ["--host=127.0.0.1", f"--port={port}"],
                 ["--ho", "127.0.0.1", "--po", port]):
        ours, theirs = both(*args, "--status")
        assert ours == theirs, args
        assert ours[1].endswith(b".\n")


def test_create_and_drop_function_match(busy: ServerProcess) -> None:
    hp = ["-h", busy.host, "-p", str(busy.port)]
    theirs = gearadmin(*hp, "--create-function", "made")
    ours = gear_admin(*hp, "--create-function", "made")
    assert ours == theirs == (0, b"OK\n", b"")
    theirs = gearadmin(*hp, "--drop-function", "made")
    assert gear_admin(*hp, "--create-function", "made")[0] == 0
    ours = gear_admin(*hp, "--drop-function", "made")
    assert ours == theirs == (0, b"OK\n", b"")


def test_cancel_job_matches(busy: ServerProcess) -> None:
    hp = ["-h", busy.host, "-p", str(busy.port)]
    first, handle = submit_background(busy.port, b"doomed")
    theirs = gearadmin(*hp, "--cancel-job", handle.decode())
    second, handle = submit_background(busy.port, b"doomed")
    ours = gear_admin(*hp, "--cancel-job", handle.decode())
    assert ours == theirs == (0, b"OK\n", b"")
    # again: geard answers ERR (stderr, status 0); gearmand 1.1.20 answers OK once more
    ours, theirs = both(*hp, "--cancel-job", handle.decode())
    assert ours == theirs and ours[0] == 0
    first.close()
    second.close()


COMMAND_LINE_ERRORS = [
    [], ["--foo"], ["--foo=3"], ["-x"], ["--s"], ["--sh"], ["--h=3"], ["--status", "--status"],
    ["--status", "--stat"], ["-SS", "--status"], ["--cancel-job"], ["-h"], ["-p1", "-p", "2"],
    ["--help=1"], ["--status=yes"], ["--port="], ["--="], ["-S5"], ["-Sx"], ["-S=1"],
    ["---status"], ["--Status"], ["--status", "--status", "--foo"], ["-p", "--status"],
    ["--", "--status"], ["-"], ["extra"],
]


@pytest.mark.parametrize("args", COMMAND_LINE_ERRORS, ids=lambda a: " ".join(a) or "none")
def test_command_line_errors_match(args: list[str]) -> None:
    ours, theirs = both(*args)
    assert ours == theirs
    assert ours[0] == 1 and ours[2] == b""


def test_help_is_gearadmins_then_the_additions() -> None:
    status, theirs, _ = gearadmin("--help")
    assert status == 0 and theirs == GEARADMIN_HELP.encode() + b"\n"
    assert gear_admin("--help") == (0, theirs + EXTRA_HELP.encode() + b"\n", b"")
    # --help wins over commands, as in gearadmin (nothing is sent)
    assert gear_admin("--help", "--status")[1] == gear_admin("--help")[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", [
    ["-h", "127.0.0.1", "-p", "CLOSED"], ["-p", "CLOSED"], ["-h", "no-such-host.invalid"],
    ["-h", "127.0.0.1", "-p", "no-such-service"], ["-h", "127.0.0.1", "-p", "-1"],
    ["-h", ""],
], ids=" ".join)
def test_connection_failures_match(where: list[str]) -> None:
    port = str(_closed_port())
    args = [port if a == "CLOSED" else a for a in where]
    ours, theirs = both(*args, "--status")
    assert ours == theirs
    assert ours[0] == 1 and ours[2].startswith(b"Error: ")


class Hangup:
    """A server that reads one command and closes the connection without a reply."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)

    def close(self) -> None:
        self.listener.close()


def test_a_server_closing_the_connection_matches() -> None:
    server = Hangup()
    try:
        ours, theirs = both("-h", "127.0.0.1", "-p", str(server.port), "--status")
    finally:
        server.close()
    assert ours == theirs == (1, b"", b"Error: Socket was shutdown while reading from 127.0.0.1\n")


def test_the_same_server_state_reads_the_same_through_tls(tmp_path) -> None:
    """-S is TLS: against geard with TLS, gear-admin -S prints what gearadmin prints against
    the same server without TLS (Debian's gearadmin is built without TLS and ignores -S)."""
    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    server = GeardProcess("--queue", "memory", "-l", "none", "-L", "127.0.0.1",
                          "--ssl-ca", pki.ca, "--ssl-cert", pki.server_cert,
                          "--ssl-key", pki.server_key)
    try:
        files = {"GEARMAND_CA_CERTIFICATE": pki.ca, "GEARMAN_CLIENT_PEM": pki.client_cert,
                 "GEARMAN_CLIENT_KEY": pki.client_key}
        hp = ["-h", "127.0.0.1", "-p", str(server.port)]
        env = {**os.environ, **files}
        assert gear_admin(*hp, "-S", "--create-function", "secure", env=env) == (0, b"OK\n", b"")
        status = gear_admin(*hp, "-S", "--status", env=env)
        assert status == (0, b"secure\t0\t0\t0\n.\n", b"")
        assert gear_admin(*hp, "--ssl-ca", pki.ca, "--ssl-cert", pki.client_cert,
                          "--ssl-key", pki.client_key, "--status") == status
        plain = GeardProcess("--queue", "memory", "-l", "none")
        try:
            php = ["-h", "127.0.0.1", "-p", str(plain.port)]
            assert gearadmin(*php, "-S", "--create-function", "secure") == (0, b"OK\n", b"")
            assert gearadmin(*php, "-S", "--status") == status
        finally:
            plain.stop()
        missing = {**os.environ, "GEARMAND_CA_CERTIFICATE": str(tmp_path / "none.pem")}
        assert gear_admin(*hp, "-S", "--status", env=missing) == (
            1, b"", f"Error: Error loading CA file {tmp_path / 'none.pem'}\n".encode())
    finally:
        server.stop()

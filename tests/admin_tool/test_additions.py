"""What gear-admin has beyond gearadmin: --shutdown [--graceful], --timeout, the --ssl-* files,
and the option checks that go with them (docs/gear-admin.md §3)."""

from __future__ import annotations

import socket

import pytest

from gear.admin_tool.cli import commands_for
from gear.admin_tool.options import GEARADMIN_HELP
from tests.admin_tool.conftest import gear_admin, submit_background
from tests.support.peers import GeardProcess


def test_commands_run_in_gearadmins_order_and_shutdown_last() -> None:
    values: dict[str, str | None] = {"status": None, "workers": None, "getpid": None,
                                     "cancel-job": "H:x:1", "shutdown": None}
    assert commands_for(values) == [b"getpid\r\n", b"cancel job H:x:1\r\n", b"workers\r\n",
                                    b"status\r\n", b"shutdown\r\n"]
    assert commands_for({"shutdown": None, "graceful": None}) == [b"shutdown graceful\r\n"]


@pytest.mark.parametrize("graceful", [False, True])
def test_shutdown_stops_geard(graceful: bool) -> None:
    server = GeardProcess("--queue", "memory", "-l", "none")
    try:
        extra = ["--graceful"] if graceful else []
        result = gear_admin("-h", "127.0.0.1", "-p", str(server.port), "--shutdown", *extra)
        assert result == (0, b"OK\n", b"")
        assert server.proc is not None
        assert server.proc.wait(20) == 0
    finally:
        server.stop()


def test_shutdown_graceful_lets_the_running_job_finish_first(geard: GeardProcess) -> None:
    from gear import constants as c
    from gear.protocol.packets import request
    from tests.support.raw import connect, read_packet

    client, handle = submit_background(geard.port, b"slow")
    worker = connect(geard.port)
    worker.sendall(request(c.CAN_DO, b"slow") + request(c.GRAB_JOB))
    assert read_packet(worker)[0] == c.JOB_ASSIGN
    hp = ["-h", "127.0.0.1", "-p", str(geard.port)]
    assert gear_admin(*hp, "--status", "--shutdown", "--graceful") == (
        0, b"slow\t1\t1\t1\n.\nOK\n", b"")
    assert geard.proc is not None and geard.proc.poll() is None  # the job still runs
    worker.sendall(request(c.WORK_COMPLETE, handle, b"done"))
    assert geard.proc.wait(20) == 0
    client.close()
    worker.close()


def test_graceful_needs_shutdown() -> None:
    assert gear_admin("--graceful", "--status") == (
        1, b"gear-admin : option '--graceful' needs '--shutdown'\n\n" + GEARADMIN_HELP.encode()
        + b"\n", b"")


def test_shutdown_counts_as_a_command_and_prefixes_resolve() -> None:
    # "--shut" matches no gearadmin option, so it resolves among ours; nothing listens there
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    assert gear_admin("-h", "127.0.0.1", "-p", port, "--shut") == (
        1, b"", b"Error: Error connecting to 127.0.0.1.\n\n")


def test_timeout_bounds_a_silent_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = str(silent.getsockname()[1])
        result = gear_admin("-h", "127.0.0.1", "-p", port, "--timeout", "0.3", "--status")
    assert result == (1, b"", b"Error: Timed out after 0.3 seconds reading from 127.0.0.1\n")


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_timeout_must_be_a_positive_number(value: str) -> None:
    status, out, err = gear_admin("--timeout", value, "--status")
    assert status == 1 and err == b""
    assert out.startswith(
        f"gear-admin : the argument ('{value}') for option '--timeout' is invalid\n".encode())


def test_tls_against_a_plain_server_fails_with_the_reason(geard: GeardProcess, tmp_path) -> None:
    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    status, out, err = gear_admin("-h", "127.0.0.1", "-p", str(geard.port), "--ssl-ca", pki.ca,
                                  "--timeout", "5", "--status")
    assert status == 1 and out == b""
    assert err.startswith(b"Error: TLS handshake with 127.0.0.1 failed: ")


def test_server_only_tls_needs_just_the_ca(tmp_path) -> None:
    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    server = GeardProcess("--queue", "memory", "-l", "none", "--ssl-cert", pki.server_cert,
                          "--ssl-key", pki.server_key)
    try:
        assert gear_admin("-h", "127.0.0.1", "-p", str(server.port), "--ssl-ca", pki.ca,
                          "--status") == (0, b".\n", b"")
    finally:
        server.stop()


def test_top_without_a_terminal_says_so() -> None:
    status, out, err = gear_admin("top", "-p", "1")
    assert (status, out) == (2, b"")
    assert err == b"gear-admin top: needs a terminal (for a one-off reading: gear-admin --status)\n"
